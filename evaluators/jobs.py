"""Running evaluation jobs: claim, judge, finish; and sweeping the ones whose message was
lost.

A job is claimed by a conditional UPDATE that records a per-claim token; the judge runs
outside any transaction; the job's end and its result commit together, guarded by the
token, so only the holder of the current claim finishes it. Transient judge errors put the
job back to pending with a backoff; permanent ones, or exhausted attempts, fail it.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models.functions import Now
from django.utils import timezone

from tracestore.contracts import ModelSpan, TraceContext
from tracestore.queries import trace_context

from .checks import verdicts
from .checks.inputs import judge_input
from .checks.verdicts import DEFAULT_THRESHOLDS
from .contracts import LABEL_CHECK, TASK_COMPLETION, RunOutcome, Verdict
from .feedback import expected_with_feedback, feedback_for
from .judges import JudgeError, JudgeUnavailable
from .judging import judge_for
from .micro_models import inapplicable, predicted_label
from .models import EvaluationJob, EvaluationResult, EvaluatorConfig, JobStatus, TaskKind
from .results import upsert_result

log = logging.getLogger(__name__)

_JUDGE_LOCK_SPACE = 0x6D6C_6A64
_BUSY_DELAY = 2.0
_BACKOFF_BASE = 5.0
_BACKOFF_CAP = 600.0


def worker_token() -> str:
    """Who claims a job: host, process and a per-claim nonce (a restarted worker with the
    same pid must not be mistaken for the one that died)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


_CLAIM = """
UPDATE evaluators_evaluationjob
SET status = 'running', claimed_by = %(token)s, claimed_at = statement_timestamp(),
    attempts = attempts + 1, judge_id = %(judge_id)s
WHERE id = %(id)s AND (
    (status = 'pending' AND next_attempt_at <= statement_timestamp())
    OR (status = 'running'
        AND claimed_at < statement_timestamp() - make_interval(secs => %(lease)s))
)
RETURNING attempts
"""


def _claim(job: EvaluationJob, config: EvaluatorConfig | None, token: str) -> str | int:
    """Claim the job; returns the attempt number, or why it was not claimed."""
    judge = config.judge if config is not None else None
    params: dict[str, Any] = {
        "token": token,
        "id": job.id,
        "lease": float(settings.MICROLENS_EVAL_LEASE_SECONDS),
        "judge_id": judge.id if judge is not None else None,
    }
    with transaction.atomic(), connection.cursor() as cursor:
        if judge is not None and judge.kind != judge.Kind.LOCAL:
            # The judge's concurrency limit holds across every worker: claims of one judge
            # serialise on its advisory lock and count the live claims.
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_JUDGE_LOCK_SPACE, judge.id])
            cursor.execute(
                "SELECT count(*) FROM evaluators_evaluationjob WHERE judge_id = %s "
                "AND status = 'running' "
                "AND claimed_at >= statement_timestamp() - make_interval(secs => %s)",
                [judge.id, params["lease"]],
            )
            if cursor.fetchone()[0] >= judge.concurrency:
                return "busy"
        cursor.execute(_CLAIM, params)
        row = cursor.fetchone()
    return "unclaimable" if row is None else row[0]


def run_evaluation_job(job_id: int, *, token: str | None = None) -> RunOutcome:
    """One delivery of a job. Safe to call any number of times, concurrently: only the
    holder of the current claim can finish it, and the result is unique per job key."""
    token = token or worker_token()
    job = EvaluationJob.objects.select_related("micro_model").filter(id=job_id).first()
    if job is None:
        return RunOutcome(job_id, "skipped", detail="no such job")
    if job.status in (JobStatus.DONE, JobStatus.FAILED):
        return RunOutcome(job_id, "skipped", detail=f"already {job.status}")
    config = (
        EvaluatorConfig.objects.select_related("judge")
        .filter(micro_model_id=job.micro_model_id, evaluator=job.evaluator)
        .first()
    )
    claimed = _claim(job, config, token)
    if claimed == "busy":
        return RunOutcome(job_id, "busy", retry_in=_BUSY_DELAY, detail="judge at its limit")
    if claimed == "unclaimable":
        return RunOutcome(job_id, "skipped", detail="claimed elsewhere or not due")
    attempt = int(claimed)
    max_attempts = settings.MICROLENS_EVAL_MAX_ATTEMPTS
    if attempt > max_attempts:
        _fail(job_id, token, f"gave up after {max_attempts} attempts (worker lost or timed out)")
        return RunOutcome(job_id, "failed", detail="attempts exhausted")
    context = trace_context(job.project_id, bytes(job.trace_id).hex())
    span = _find_span(context, bytes(job.span_id).hex())
    if context is None or span is None:
        _fail(job_id, token, "the span is no longer stored")
        return RunOutcome(job_id, "failed", detail="span gone")
    threshold = config.threshold if config else DEFAULT_THRESHOLDS[job.evaluator]
    try:
        verdict = _evaluate(job, config, context, span, threshold)
    except JudgeUnavailable as exc:
        if attempt >= max_attempts:
            _fail(job_id, token, f"judge unavailable after {attempt} attempts: {exc}")
            return RunOutcome(job_id, "failed", detail=str(exc))
        delay = max(exc.retry_after or 0.0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** (attempt - 1)))
        _release_for_retry(job_id, token, delay, str(exc))
        return RunOutcome(job_id, "retry", retry_in=delay, detail=str(exc))
    except JudgeError as exc:
        _fail(job_id, token, f"judge error: {exc}")
        return RunOutcome(job_id, "failed", detail=str(exc))
    if not _finish(job, token, verdict, threshold, context.cohort):
        return RunOutcome(job_id, "skipped", detail="claim lost before finishing")
    return RunOutcome(job_id, "done")


def _find_span(context: TraceContext | None, span_hex: str) -> ModelSpan | None:
    if context is None:
        return None
    return next((s for s in context.spans if s.span_id == span_hex), None)


def _evaluate(
    job: EvaluationJob,
    config: EvaluatorConfig | None,
    context: TraceContext,
    span: ModelSpan,
    threshold: float,
) -> Verdict:
    model = job.micro_model
    if job.evaluator == LABEL_CHECK:
        feedback = feedback_for(job.project_id, bytes(job.trace_id), bytes(job.span_id))
        thumbs = feedback.thumbs_up if feedback is not None else None
        return verdicts.label_check(
            predicted_label(span, model),
            expected_with_feedback(span.expected_label, feedback),
            synonyms=model.label_synonyms or {},
            threshold=threshold,
            thumbs_up=thumbs,
        )
    # A job created before its micro model's task changed (or before evaluators were
    # chosen per span) may not apply: not applicable, counted in no rate.
    reason = inapplicable(job.evaluator, span, model, bool(context.documents))
    if reason:
        return Verdict(
            score=None,
            passed=None,
            reason=f"not applicable: {reason}",
            judge="rule",
            latency_ms=0.0,
        )
    judge = judge_for(config.judge if config else None)
    given = judge_input(
        input_text=span.input_text,
        output_text=span.output_text,
        documents=context.documents,
        root_input=context.root_input,
        root_output=context.root_output,
        decides_on_root=model.task == TaskKind.ROUTING,
    )
    if job.evaluator == TASK_COMPLETION:
        return verdicts.task_completion(
            given.input_text, given.output_text, judge=judge, threshold=threshold
        )
    return verdicts.groundedness(
        given.output_text, given.documents, judge=judge, threshold=threshold
    )


def _finish(
    job: EvaluationJob, token: str, verdict: Verdict, threshold: float, cohort: dict
) -> bool:
    with transaction.atomic():
        finished = EvaluationJob.objects.filter(
            id=job.id, status=JobStatus.RUNNING, claimed_by=token
        ).update(status=JobStatus.DONE, finished_at=timezone.now(), last_error="")
        if not finished:
            return False
        upsert_result(
            job_id=job.id,
            project_id=job.project_id,
            trace_id=bytes(job.trace_id),
            span_id=bytes(job.span_id),
            span_start_time=job.span_start_time,
            micro_model_id=job.micro_model_id,
            evaluator=job.evaluator,
            version=job.evaluator_version,
            verdict=verdict,
            threshold=threshold,
            sampling_probability=job.sampling_probability,
            cohort=cohort,
            source=EvaluationResult.Source.SCHEDULED,
        )
    return True


def _release_for_retry(job_id: int, token: str, delay: float, error: str) -> None:
    # The database clock, as the claim compares against it.
    later = Now() + timedelta(seconds=delay)
    EvaluationJob.objects.filter(id=job_id, status=JobStatus.RUNNING, claimed_by=token).update(
        status=JobStatus.PENDING,
        next_attempt_at=later,
        dispatched_at=later,
        claimed_by="",
        claimed_at=None,
        last_error=error[:1000],
    )


def _fail(job_id: int, token: str, reason: str) -> None:
    EvaluationJob.objects.filter(id=job_id, status=JobStatus.RUNNING, claimed_by=token).update(
        status=JobStatus.FAILED,
        finished_at=timezone.now(),
        last_error=reason[:1000],
    )
    log.warning("evaluation.failed job=%s reason=%s", job_id, reason[:200])


# -- recovering lost messages ---------------------------------------------------------------

_SWEEP = """
WITH due AS (
    SELECT id FROM evaluators_evaluationjob
    WHERE dispatched_at < %(now)s - make_interval(secs => %(grace)s) AND (
        (status = 'pending' AND next_attempt_at < %(now)s - make_interval(secs => %(grace)s))
        OR (status = 'running' AND claimed_at < %(now)s - make_interval(secs => %(lease)s))
    )
    ORDER BY id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE evaluators_evaluationjob j SET dispatched_at = %(now)s
FROM due WHERE j.id = due.id
RETURNING j.id
"""


def sweep_evaluation_jobs(*, now: datetime | None = None, limit: int = 1000) -> list[int]:
    """Jobs whose wake-up message was lost (still pending long after they were due, or
    running under a claim that expired): returns their ids to dispatch again. A job that
    is delivered twice is still run once (see the claim)."""
    params: dict[str, Any] = {
        "now": now or timezone.now(),
        "grace": float(settings.MICROLENS_EVAL_REDISPATCH_SECONDS),
        "lease": float(settings.MICROLENS_EVAL_LEASE_SECONDS),
        "limit": limit,
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_SWEEP, params)
        ids = sorted(row[0] for row in cursor.fetchall())
    if ids:
        log.info("evaluations.swept jobs=%s", len(ids))
    return ids
