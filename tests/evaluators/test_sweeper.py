"""Lost messages and dead workers: the sweeper finds the jobs, the claim keeps them single."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models.functions import Now
from django.utils import timezone

from evaluators.models import EvaluationJob, EvaluationResult
from evaluators.services import run_evaluation_job, sweep_evaluation_jobs

from .conftest import Tenant, classifier_trace, configure, schedule_all

pytestmark = pytest.mark.django_db


@pytest.fixture
def job_id(tenant: Tenant, settings) -> int:
    settings.MICROLENS_EVAL_REDISPATCH_SECONDS = 120
    settings.MICROLENS_EVAL_LEASE_SECONDS = 300
    configure(tenant.project_id, evaluators={"task_completion": 0.5})
    tenant.store(classifier_trace())
    [job] = schedule_all().job_ids
    return job


def test_a_job_whose_message_was_lost_is_sent_again_once_per_grace_period(job_id: int) -> None:
    assert sweep_evaluation_jobs() == []  # just dispatched

    later = timezone.now() + timedelta(seconds=121)
    assert sweep_evaluation_jobs(now=later) == [job_id]
    assert sweep_evaluation_jobs(now=later) == []
    assert sweep_evaluation_jobs(now=later + timedelta(seconds=121)) == [job_id]


def test_a_job_held_by_a_dead_worker_is_reclaimed_after_its_lease(job_id: int) -> None:
    # The worker claimed it, then died: its claim is older than the lease.
    EvaluationJob.objects.filter(id=job_id).update(
        status="running",
        attempts=1,
        claimed_by="dead-host:1:x",
        claimed_at=Now() - timedelta(seconds=301),
        dispatched_at=Now() - timedelta(seconds=301),
    )
    assert run_evaluation_job(job_id, token="impatient").status == "done"  # lease expired

    job = EvaluationJob.objects.get()
    assert (job.status, job.attempts) == ("done", 2)
    assert EvaluationResult.objects.count() == 1


def test_a_live_claim_is_not_taken_over(job_id: int) -> None:
    EvaluationJob.objects.filter(id=job_id).update(
        status="running", attempts=1, claimed_by="busy-host:1:x", claimed_at=Now()
    )

    assert sweep_evaluation_jobs(now=timezone.now() + timedelta(seconds=121)) == []
    assert run_evaluation_job(job_id).status == "skipped"
    assert not EvaluationResult.objects.exists()


def test_a_job_that_keeps_killing_workers_fails_with_its_reason(job_id: int) -> None:
    EvaluationJob.objects.filter(id=job_id).update(
        status="running",
        attempts=3,
        claimed_by="dead-host:1:x",
        claimed_at=Now() - timedelta(seconds=301),
    )

    outcome = run_evaluation_job(job_id)

    assert outcome.status == "failed"
    job = EvaluationJob.objects.get()
    assert (job.status, job.last_error) == (
        "failed",
        "gave up after 3 attempts (worker lost or timed out)",
    )
