"""Micro models as the scheduler, the worker and feedback see them.

Loaded per project with their matchers, "always" rules, enabled evaluators and hourly
judge budget; a span is matched to one, and a span naming a micro model nobody configured
registers it (the one place that happens). A span's label and confidence are read through
its micro model's configured attributes, and which evaluators apply to it follows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from tracestore.contracts import ModelSpan

from . import contracts
from .checks.verdicts import DEFAULT_THRESHOLDS
from .contracts import GROUNDEDNESS, TASK_COMPLETION
from .models import EvaluationJob, EvaluatorConfig, MicroModel, TaskKind
from .sampling import AlwaysRules, Matcher, match, not_applicable_reason

# The evaluators that call a judge: they count against a micro model's hourly budget.
MODEL_BASED = (TASK_COMPLETION, GROUNDEDNESS)


@dataclass
class LoadedModel:
    """A micro model as scheduling and feedback use it: its row, how spans match it, its
    "always" rules, its enabled evaluators and what is left of its hourly judge budget."""

    row: MicroModel
    matcher: Matcher
    rules: AlwaysRules
    configs: dict[str, EvaluatorConfig]
    budget_left: int | None


def load_models(project_ids: Iterable[int], now: datetime) -> dict[int, LoadedModel]:
    models = MicroModel.objects.filter(project_id__in=set(project_ids)).prefetch_related(
        "evaluators"
    )
    loaded = {}
    for row in models.order_by("id"):
        loaded[row.id] = _wrap(row, now)
    return loaded


def _wrap(row: MicroModel, now: datetime) -> LoadedModel:
    budget_left = None
    if row.hourly_judge_budget is not None:
        used = EvaluationJob.objects.filter(
            micro_model=row, evaluator__in=MODEL_BASED, created_at__gt=now - timedelta(hours=1)
        ).count()
        budget_left = max(0, row.hourly_judge_budget - used)
    return LoadedModel(
        row=row,
        matcher=Matcher(row.id, row.project_id, row.micro_model_name, row.model_pattern),
        rules=AlwaysRules(
            on_fallback=row.always_on_fallback,
            on_error=row.always_on_error,
            below_confidence=row.always_below_confidence,
            fallback_models=tuple(row.fallback_models),
        ),
        configs={c.evaluator: c for c in row.evaluators.all() if c.enabled},
        budget_left=budget_left,
    )


def register_micro_model(project_id: int, name: str) -> MicroModel:
    """A micro model seen in traffic before anyone configured it, its task "auto": each span
    gets the evaluators that apply to what it is (``sampling.not_applicable_reason``):
    LabelCheck on every label decision with an expected label, TaskCompletion and
    Groundedness on a 10% sample of generative spans (Groundedness where the trace
    retrieved context)."""
    with transaction.atomic():
        row, created = MicroModel.objects.get_or_create(
            project_id=project_id,
            name=name,
            defaults={
                "micro_model_name": name,
                "auto_registered": True,
                "sample_rate": 10.0,
                "task": TaskKind.AUTO,
            },
        )
        if created:
            # One save each (not bulk_create): configuration saves reach the audit log.
            for e in contracts.EVALUATORS:
                EvaluatorConfig.objects.create(
                    micro_model=row, evaluator=e, threshold=DEFAULT_THRESHOLDS[e]
                )
    return row


def find_or_register(
    span: ModelSpan, models: dict[int, LoadedModel]
) -> tuple[LoadedModel, bool] | None:
    """The loaded micro model the span matches, and whether it was registered just now: a
    span naming a micro model nobody configured (``micro_model.name``) registers it
    (``register_micro_model``), added to ``models``. None for a span that matches no micro
    model and names none."""
    matcher = match(span, [m.matcher for m in models.values()])
    if matcher is not None:
        return models[matcher.id], False
    if not span.micro_model:
        return None
    row = register_micro_model(span.project_id, span.micro_model)
    models[row.id] = _wrap(row, timezone.now())
    return models[row.id], True


def predicted_label(span: ModelSpan, model: MicroModel) -> str | None:
    if model.label_attribute in ("", "micro_model.label"):
        return span.label
    value = span.attributes.get(model.label_attribute)
    return None if value is None else str(value)


def with_confidence(span: ModelSpan, model: MicroModel) -> ModelSpan:
    """The span with its confidence read from the micro model's configured attribute."""
    if model.confidence_attribute in ("", "micro_model.confidence"):
        return span
    value = span.attributes.get(model.confidence_attribute)
    try:
        confidence = None if value is None else float(value)
    except (TypeError, ValueError):
        confidence = None
    return replace(span, confidence=confidence)


def inapplicable(evaluator: str, span: ModelSpan, model: MicroModel, has_context: bool) -> str:
    """Why the evaluator does not apply to this span of this micro model ("" if it does)."""
    return not_applicable_reason(
        evaluator,
        task=model.task,
        predicted_label=predicted_label(span, model),
        expected_label=span.expected_label,
        input_text=span.input_text,
        output_text=span.output_text,
        has_context=has_context,
    )
