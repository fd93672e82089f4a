"""evaluators' Celery tasks: thin wrappers taking ids. Jobs live in PostgreSQL; a message
only wakes a worker, so a lost or duplicated message never loses or doubles work."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from celery import shared_task
from kombu.exceptions import KombuError

from .queues import Queue
from .services import (
    run_evaluation_job,
    schedule_evaluations,
    sweep_evaluation_jobs,
    worker_token,
)

log = logging.getLogger(__name__)
_MAX_BATCHES = 20


def dispatch(job_ids: Sequence[int], countdown: float | None = None) -> int:
    """Send one message per job. A broker failure is counted, not raised: the jobs are
    committed, and the sweeper sends them again."""
    sent = 0
    for job_id in job_ids:
        try:
            run_evaluation.apply_async((job_id,), countdown=countdown, queue=Queue.DEFAULT)
            sent += 1
        except (KombuError, OSError):
            log.warning("evaluations.dispatch_failed job=%s", job_id)
    return sent


@shared_task(name="evaluators.schedule", ignore_result=True)
def schedule() -> None:
    for _ in range(_MAX_BATCHES):
        result = schedule_evaluations()
        dispatch(result.job_ids)
        if result.traces == 0:
            break


# acks_late + reject_on_worker_lost: a worker killed mid-job leaves the message to be
# redelivered (on brokers that redeliver); the run is idempotent (claim + unique result).
@shared_task(
    name="evaluators.run_evaluation",
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
)
def run_evaluation(job_id: int) -> None:
    outcome = run_evaluation_job(job_id, token=worker_token())
    if outcome.status in ("retry", "busy") and outcome.retry_in is not None:
        dispatch([job_id], countdown=outcome.retry_in)
    log.info("evaluation.run job=%s status=%s", job_id, outcome.status)


@shared_task(name="evaluators.sweep", ignore_result=True)
def sweep() -> None:
    dispatch(sweep_evaluation_jobs())
