"""dashboard's Celery tasks."""

from __future__ import annotations

import logging

from celery import shared_task

from .metrics.evaluations import expire_evaluation_rollups, fold_evaluations
from .metrics.refresh import expire_metrics, fold_changes

log = logging.getLogger(__name__)


# Idempotent (re-folding a trace replaces its facts) and serialised by an advisory lock.
@shared_task(name="dashboard.refresh_metrics", ignore_result=True)
def refresh_metrics() -> None:
    result = fold_changes()
    expire_metrics()
    eval_hours, eval_days = fold_evaluations()
    expire_evaluation_rollups()
    log.info("metrics.folded traces=%s hours=%s days=%s", result.traces, result.hours, result.days)
    log.info("metrics.evaluations_folded hours=%s days=%s", eval_hours, eval_days)
