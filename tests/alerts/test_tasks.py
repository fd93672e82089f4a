"""The alerts' Celery wiring: explicit task names, the beat entry, retention."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings

from dashboard.alerts.models import AlertEvaluation
from dashboard.alerts.services import evaluate_alert_rule, expire_alert_evaluations
from microlens.celery import app
from tests.dashboard.metric_data import NOW

from .conftest import decisions, rule


def test_the_tasks_are_registered_by_name_and_evaluate_runs_on_beat() -> None:
    app.loader.import_default_modules()
    assert {"alerts.evaluate", "alerts.deliver"} <= set(app.tasks)
    entry = settings.CELERY_BEAT_SCHEDULE["alerts-evaluate"]
    assert entry["task"] == "alerts.evaluate"
    assert entry["schedule"] == float(settings.MICROLENS_ALERT_EVAL_SECONDS)


@pytest.mark.django_db
def test_evaluations_older_than_the_retention_are_dropped(project, settings) -> None:
    settings.MICROLENS_RETENTION_DAYS = 30
    decisions(project.id, 40, fallbacks=10)
    r = rule(project.id)
    evaluate_alert_rule(r.id, NOW - timedelta(days=31))
    evaluate_alert_rule(r.id, NOW)

    assert expire_alert_evaluations(NOW) == 1
    assert list(AlertEvaluation.objects.values_list("evaluated_at", flat=True)) == [NOW]
