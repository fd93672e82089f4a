"""Configuration writes of the admin and the API: micro models with their evaluators, and
judges. Each validates like the admin (``full_clean``) and owns its transaction; every row
is saved one by one so configuration changes reach the audit log."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from . import contracts
from .checks.verdicts import DEFAULT_THRESHOLDS
from .models import EvaluatorConfig, Judge, MicroModel

MICRO_MODEL_FIELDS = (
    "name",
    "micro_model_name",
    "model_pattern",
    "task",
    "label_attribute",
    "confidence_attribute",
    "fallback_models",
    "sample_rate",
    "always_on_fallback",
    "always_on_error",
    "always_below_confidence",
    "hourly_judge_budget",
    "label_synonyms",
)


def _set_evaluators(row: MicroModel, evaluators: Sequence[dict[str, Any]]) -> None:
    """Replace the micro model's evaluator set: those not listed are removed."""
    row.evaluators.exclude(evaluator__in=[e["evaluator"] for e in evaluators]).delete()
    for item in evaluators:
        config = EvaluatorConfig.objects.filter(
            micro_model=row, evaluator=item["evaluator"]
        ).first() or EvaluatorConfig(micro_model=row, evaluator=item["evaluator"])
        for key in ("enabled", "threshold", "judge"):
            if key in item:
                setattr(config, key, item[key])
        config.full_clean()
        config.save()


def create_micro_model(
    project_id: int, fields: dict[str, Any], evaluators: Sequence[dict[str, Any]] | None
) -> MicroModel:
    """A configured micro model (validated like the admin); without ``evaluators``, all
    three with their default thresholds."""
    if evaluators is None:
        evaluators = [
            {"evaluator": e, "threshold": DEFAULT_THRESHOLDS[e]} for e in contracts.EVALUATORS
        ]
    with transaction.atomic():
        row = MicroModel(
            project_id=project_id, **{k: v for k, v in fields.items() if k in MICRO_MODEL_FIELDS}
        )
        row.full_clean()
        row.save()
        _set_evaluators(row, evaluators)
    return row


def update_micro_model(
    micro_model_id: int, fields: dict[str, Any], evaluators: Sequence[dict[str, Any]] | None
) -> MicroModel:
    """Change the given fields (and, when given, replace the evaluator set). A micro model
    registered from traffic with defaults is no longer marked so once someone edits it."""
    with transaction.atomic():
        row = MicroModel.objects.select_for_update().get(pk=micro_model_id)
        for key in (k for k in fields if k in MICRO_MODEL_FIELDS):
            setattr(row, key, fields[key])
        row.auto_registered = False
        row.full_clean()
        row.save()
        if evaluators is not None:
            _set_evaluators(row, evaluators)
    return row


def delete_micro_model(micro_model_id: int) -> None:
    """The micro model, its jobs and its results (the dashboard's rollup follows at its
    next fold: signals.py marks the results' hours)."""
    with transaction.atomic():
        for row in MicroModel.objects.filter(pk=micro_model_id):
            row.delete()


def delete_judge(judge_id: int) -> None:
    """A judge no evaluator uses; ``ValidationError`` while one still does."""
    with transaction.atomic():
        if EvaluatorConfig.objects.filter(judge_id=judge_id).exists():
            raise ValidationError(
                {"judge": "still used by an evaluator: point those at another judge first"}
            )
        Judge.objects.filter(pk=judge_id).delete()
