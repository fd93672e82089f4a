"""A real Celery worker process on a real broker (kombu's filesystem transport) against the
test database: jobs end done with one result each, through duplicate deliveries, a worker
SIGKILLed mid-evaluation and messages lost with the broker's queue."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings

from evaluators.models import EvaluationJob, EvaluationResult, Judge, MicroModel
from evaluators.services import register_micro_model, sweep_evaluation_jobs
from evaluators.tasks import dispatch, schedule, sweep
from tests.celery_processes import CeleryProcesses, filesystem_broker, kill, wait_for

from .conftest import Tenant, classifier_trace, configure, generative_trace, schedule_all
from .judge_server import JudgeServer, Reply, judge_server, verdict

LEASE = 3

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def broker() -> Path:
    return filesystem_broker()


@pytest.fixture
def start_worker(
    broker: Path, settings, tmp_path: Path
) -> Iterator[Callable[[], subprocess.Popen]]:
    settings.MICROLENS_EVAL_LEASE_SECONDS = LEASE
    settings.MICROLENS_EVAL_REDISPATCH_SECONDS = 1
    settings.MICROLENS_JUDGE_ALLOW_PRIVATE = True
    processes = CeleryProcesses(
        tmp_path,
        {
            "MICROLENS_EVAL_LEASE_SECONDS": str(LEASE),
            "MICROLENS_EVAL_REDISPATCH_SECONDS": "1",
            "MICROLENS_EVAL_MAX_ATTEMPTS": "3",
            "MICROLENS_JUDGE_ALLOW_PRIVATE": "true",  # the judge server is on loopback
        },
        name="eval",
    )
    yield processes.start
    processes.stop_all()


def _wait_for(condition: Callable[[], object], timeout: float = 25.0, what: str = "") -> object:
    return wait_for(condition, what, timeout)


def _all_done() -> bool:
    return not EvaluationJob.objects.exclude(status="done").exists()


def _one_result_per_job() -> None:
    jobs = set(EvaluationJob.objects.values_list("id", flat=True))
    results = list(EvaluationResult.objects.values_list("job_id", flat=True))
    assert sorted(results) == sorted(jobs)


def test_a_worker_runs_every_job_once_even_when_each_is_delivered_twice(
    tenant: Tenant, start_worker
) -> None:
    configure(tenant.project_id)
    for _ in range(4):
        tenant.store(classifier_trace(expected="billing"))
    job_ids = schedule_all().job_ids
    assert len(job_ids) == 12
    assert set(EvaluationJob.objects.values_list("status", flat=True)) == {"pending"}

    dispatch(job_ids)
    dispatch(job_ids)  # duplicate delivery
    start_worker()

    _wait_for(_all_done, what="every job done")
    _one_result_per_job()
    assert set(EvaluationJob.objects.values_list("attempts", flat=True)) == {1}


@pytest.fixture
def slow_judge() -> Iterator[JudgeServer]:
    with judge_server(default=verdict(0.9, True, "fine")) as server:
        yield server


def test_a_worker_killed_mid_evaluation_ends_with_one_result(
    tenant: Tenant, start_worker, slow_judge: JudgeServer
) -> None:
    judge = Judge.objects.create(
        name="slow-llm",
        kind="openai-compatible",
        base_url=slow_judge.url,
        model="m",
        timeout_seconds=20,
    )
    configure(tenant.project_id, evaluators={"task_completion": 0.5}, judge=judge)
    tenant.store(classifier_trace())
    [job_id] = schedule_all().job_ids
    slow_judge.then(Reply(delay=15, body={}))  # the first call hangs
    first = start_worker()
    dispatch([job_id])

    _wait_for(lambda: slow_judge.requests, what="the judge call")
    job = EvaluationJob.objects.get()
    assert (job.status, job.attempts) == ("running", 1)
    kill(first)
    first.wait(timeout=10)

    start_worker()
    # The filesystem broker lost the message with the worker: the sweeper finds the job
    # once its claim has expired and sends it again.
    swept = _wait_for(sweep_evaluation_jobs, timeout=LEASE + 10, what="the sweeper")
    assert swept == [job_id]
    dispatch(swept)

    _wait_for(_all_done, what="the job done")
    _one_result_per_job()
    job = EvaluationJob.objects.get()
    assert job.attempts == 2
    assert EvaluationResult.objects.get().judge == "slow-llm"


def test_messages_lost_with_the_broker_are_recovered_by_the_sweeper(
    tenant: Tenant, start_worker, broker: Path
) -> None:
    configure(tenant.project_id, evaluators={"label_check": 1.0, "groundedness": 0.5})
    for _ in range(3):
        tenant.store(classifier_trace(expected="billing"))
    job_ids = schedule_all().job_ids
    dispatch(job_ids)
    # The broker restarts without its queue: every message is gone, the jobs are not.
    lost = list(broker.glob("*"))
    assert len(lost) == len(job_ids) == 6
    for message in lost:
        message.unlink()
    start_worker()

    swept = _wait_for(sweep_evaluation_jobs, timeout=10, what="the sweeper")
    assert swept == job_ids
    dispatch(swept)

    _wait_for(_all_done, what="every job done")
    _one_result_per_job()


def test_the_beat_tasks_schedule_and_the_worker_evaluates(
    tenant: Tenant, start_worker, settings
) -> None:
    settings.MICROLENS_EVAL_QUIET_SECONDS = 0
    configure(tenant.project_id, evaluators={"label_check": 1.0, "task_completion": 0.5})
    for _ in range(2):
        tenant.store(classifier_trace(expected="billing"))
    start_worker()

    schedule()  # what beat runs every MICROLENS_EVAL_SCHEDULE_SECONDS
    sweep()

    _wait_for(lambda: EvaluationJob.objects.count() == 4 and _all_done(), what="4 jobs done")
    _one_result_per_job()


def test_the_tasks_and_beat_entries_are_registered() -> None:
    from microlens.celery import app

    app.loader.import_default_modules()
    assert {"evaluators.schedule", "evaluators.run_evaluation", "evaluators.sweep"} <= set(
        app.tasks
    )
    run = app.tasks["evaluators.run_evaluation"]
    assert (run.acks_late, run.reject_on_worker_lost) == (True, True)
    beat = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"evaluators.schedule", "evaluators.sweep"} <= beat


def test_the_worker_judges_each_span_of_an_auto_registered_model_by_what_it_is(
    tenant: Tenant, broker: Path, settings, tmp_path: Path
) -> None:
    settings.MICROLENS_EVAL_QUIET_SECONDS = 0
    # The lexical judge: loading MiniLM in a fresh worker takes most of the wait on a busy
    # machine, and which judge scores is not what this test is about.
    processes = CeleryProcesses(tmp_path, {"MICROLENS_LOCAL_JUDGE": "lexical"}, name="eval")
    register_micro_model(tenant.project_id, "tone-mini")
    MicroModel.objects.filter(name="tone-mini").update(sample_rate=100.0)
    labelled = [classifier_trace(micro_model="tone-mini", expected="billing") for _ in range(2)]
    generated = generative_trace(micro_model="tone-mini")
    for trace in [*labelled, generated]:
        tenant.store(trace)
    try:
        processes.start()

        schedule()
        sweep()

        _wait_for(lambda: EvaluationJob.objects.count() == 4 and _all_done(), what="4 jobs")
    finally:
        processes.stop_all()
    _one_result_per_job()
    judged = sorted((bytes(r.trace_id).hex(), r.evaluator) for r in EvaluationResult.objects.all())
    assert judged == sorted(
        [(t.trace_hex, "label_check") for t in labelled]
        + [(generated.trace_hex, "groundedness"), (generated.trace_hex, "task_completion")]
    )
    assert EvaluationResult.objects.filter(passed__isnull=True).count() == 0
