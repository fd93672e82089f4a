"""The OpenAI-compatible judge against a loopback server: verdicts, timeouts, 429 with
Retry-After, malformed answers and the attempt cap, through run_evaluation_job."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from email.utils import format_datetime

import pytest
from django.db.models.functions import Now
from django.utils import timezone

from evaluators.judges.openai_compatible import parse_retry_after
from evaluators.models import EvaluationJob, EvaluationResult, Judge, SchedulerCursor
from evaluators.services import run_evaluation_job

from .conftest import Tenant, classifier_trace, configure, schedule_all
from .judge_server import JudgeServer, Reply, content, judge_server, verdict

pytestmark = pytest.mark.django_db


@pytest.fixture
def server() -> Iterator[JudgeServer]:
    with judge_server() as running:
        yield running


@pytest.fixture
def llm_judge(server: JudgeServer, settings) -> Judge:
    settings.MICROLENS_JUDGE_API_KEY = "sk-test-judge"
    settings.MICROLENS_JUDGE_ALLOW_PRIVATE = True  # the judge server is on loopback
    return Judge.objects.create(
        name="llm",
        kind="openai-compatible",
        base_url=server.url,
        model="judge-7b",
        timeout_seconds=0.5,
        concurrency=2,
    )


@pytest.fixture
def job_id(tenant: Tenant, llm_judge: Judge) -> int:
    configure(tenant.project_id, evaluators={"task_completion": 0.5}, judge=llm_judge)
    tenant.store(classifier_trace())
    [job] = schedule_all().job_ids
    return job


def _make_due(job_id: int) -> None:
    # Stands in for the retry delay having passed.
    EvaluationJob.objects.filter(id=job_id).update(next_attempt_at=Now())


def test_a_valid_verdict_is_recorded_with_the_judge_name(server: JudgeServer, job_id: int) -> None:
    server.then(verdict(0.8, True, "answers the billing question"))

    outcome = run_evaluation_job(job_id)

    assert outcome.status == "done"
    result = EvaluationResult.objects.get()
    assert (result.score, result.passed, result.judge, result.reason) == (
        0.8,
        True,
        "llm",
        "answers the billing question",
    )
    [request] = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["auth"] == "Bearer sk-test-judge"
    assert request["body"]["model"] == "judge-7b"
    assert request["body"]["response_format"]["type"] == "json_schema"
    assert "Why was I charged twice" in request["body"]["messages"][1]["content"]


def test_the_configured_threshold_decides_and_a_disagreeing_judge_is_noted(
    server: JudgeServer, job_id: int
) -> None:
    server.then(verdict(0.3, True, "partly"))

    run_evaluation_job(job_id)

    result = EvaluationResult.objects.get()
    assert (result.passed, result.reason) == (False, "partly (judge said pass=true)")


def test_429_with_retry_after_releases_the_job_until_then(server: JudgeServer, job_id: int) -> None:
    server.then(Reply(status=429, body={"error": "slow down"}, headers={"Retry-After": "7"}))

    outcome = run_evaluation_job(job_id)

    assert (outcome.status, outcome.retry_in) == ("retry", 7.0)
    job = EvaluationJob.objects.get()
    assert (job.status, job.attempts, job.claimed_by) == ("pending", 1, "")
    assert job.last_error == "judge answered HTTP 429"
    wait = (job.next_attempt_at - timezone.now()).total_seconds()
    assert 5 < wait <= 7
    assert run_evaluation_job(job_id).status == "skipped"  # not due yet

    _make_due(job_id)
    assert run_evaluation_job(job_id).status == "done"
    assert EvaluationResult.objects.count() == 1
    assert EvaluationJob.objects.get().attempts == 2


def test_a_timeout_is_retried_with_backoff(server: JudgeServer, job_id: int) -> None:
    server.then(Reply(delay=1.5, body={"late": True}))

    outcome = run_evaluation_job(job_id)

    assert (outcome.status, outcome.retry_in) == ("retry", 5.0)
    assert EvaluationJob.objects.get().last_error == "judge timed out after 0.5s"


def test_attempts_are_capped_and_the_terminal_failure_keeps_its_reason(
    server: JudgeServer, job_id: int
) -> None:
    server.then(*[Reply(status=503, body={}, headers={"Retry-After": "0"})] * 3)

    statuses = []
    for _ in range(3):
        statuses.append(run_evaluation_job(job_id).status)
        _make_due(job_id)

    assert statuses == ["retry", "retry", "failed"]
    job = EvaluationJob.objects.get()
    assert (job.status, job.attempts) == ("failed", 3)
    assert job.last_error == "judge unavailable after 3 attempts: judge answered HTTP 503"
    assert not EvaluationResult.objects.exists()


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (content("Sure! It passes."), "malformed verdict: not a JSON object"),
        (content('{"score": 0.9, "pass": true}'), "malformed verdict: expected exactly"),
        (
            content('{"score": 1.7, "pass": true, "reason": "x"}'),
            "malformed verdict: score outside",
        ),
        (content('{"score": 0.9, "pass": "yes", "reason": "x"}'), "malformed verdict: pass is not"),
        (content('{"score": "high", "pass": true, "reason": "x"}'), "malformed verdict: score is"),
        (Reply(body={"id": "x"}), "judge answer has no choices"),
        (Reply(body="<html>oops</html>"), "judge answer is not JSON"),
        (Reply(status=400, body={"error": "bad"}), "judge answered HTTP 400"),
    ],
)
def test_a_malformed_answer_is_a_recorded_failure_never_a_pass(
    server: JudgeServer, job_id: int, reply: Reply, error: str
) -> None:
    server.then(reply)

    outcome = run_evaluation_job(job_id)

    assert outcome.status == "failed"
    job = EvaluationJob.objects.get()
    assert job.status == "failed"
    assert job.last_error.startswith(f"judge error: {error}")
    assert not EvaluationResult.objects.exists()


def test_the_judge_concurrency_limit_holds_across_workers(
    server: JudgeServer, tenant: Tenant, job_id: int, llm_judge: Judge
) -> None:
    llm_judge.concurrency = 1
    llm_judge.save(update_fields=["concurrency"])
    tenant.store(classifier_trace())
    # Same transaction, same updated_at as the first trace: read from the start again.
    SchedulerCursor.objects.all().delete()
    [other] = schedule_all().job_ids
    # Another worker holds a live claim on the judge's only slot.
    EvaluationJob.objects.filter(id=other).update(
        status="running", claimed_by="elsewhere", claimed_at=timezone.now(), judge=llm_judge
    )

    outcome = run_evaluation_job(job_id)

    assert (outcome.status, outcome.retry_in) == ("busy", 2.0)
    assert EvaluationJob.objects.get(id=job_id).attempts == 0
    assert server.requests == []


def test_retry_after_as_an_http_date() -> None:
    later = timezone.now() + timedelta(seconds=30)

    assert 28 <= parse_retry_after(format_datetime(later, usegmt=True)) <= 30
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after("soon") is None
