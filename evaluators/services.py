"""evaluators' writes: named service functions that own their transaction.

Scheduling reads tracestore through its public queries and turns spans into durable job
rows; running a job claims it with a conditional UPDATE, judges outside any transaction,
and commits the result and the job's end together, guarded by the claim token.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone

from tracestore.contracts import ModelSpan, TraceContext, TraceModelSpans
from tracestore.queries import (
    count_traces_with_models_started_between,
    quiet_traces_with_models,
    trace_context,
    traces_with_models_started_between,
)

from . import contracts
from .checks import verdicts
from .checks.inputs import judge_input
from .contracts import (
    GROUNDEDNESS,
    LABEL_CHECK,
    TASK_COMPLETION,
    EvaluationRecord,
    FeedbackOutcome,
    RunOutcome,
    ScheduleResult,
    Verdict,
)
from .judges import JudgeError, JudgeUnavailable
from .judging import judge_for
from .models import (
    EvaluationJob,
    EvaluationResult,
    EvaluatorConfig,
    Feedback,
    JobStatus,
    Judge,
    MicroModel,
    SchedulerCursor,
    TaskKind,
)
from .queries import evaluation_views
from .sampling import (
    AlwaysRules,
    Matcher,
    always_reason,
    in_sample,
    is_evaluated,
    is_label_decision,
    match,
    not_applicable_reason,
)

log = logging.getLogger(__name__)

# Scheduler runs serialise on this advisory lock (two beats, or a slow run overlapping the
# next): the cursor is read and advanced by one of them at a time.
_SCHEDULER_LOCK = 0x6D6C_6576_0001
_JUDGE_LOCK_SPACE = 0x6D6C_6A64
_CURSOR = "quiet-traces"
MODEL_BASED = (TASK_COMPLETION, GROUNDEDNESS)
DEFAULT_THRESHOLDS = verdicts.DEFAULT_THRESHOLDS
_BUSY_DELAY = 2.0
_BACKOFF_BASE = 5.0
_BACKOFF_CAP = 600.0


class UnknownTarget(LookupError):
    """Feedback names a trace or span that is not stored in the caller's project."""


# -- scheduling ----------------------------------------------------------------------------


@dataclass
class _Model:
    row: MicroModel
    matcher: Matcher
    rules: AlwaysRules
    configs: dict[str, EvaluatorConfig]
    budget_left: int | None


def _load_models(project_ids: Iterable[int], now: datetime) -> dict[int, _Model]:
    models = MicroModel.objects.filter(project_id__in=set(project_ids)).prefetch_related(
        "evaluators"
    )
    loaded = {}
    for row in models.order_by("id"):
        loaded[row.id] = _wrap(row, now)
    return loaded


def _wrap(row: MicroModel, now: datetime) -> _Model:
    budget_left = None
    if row.hourly_judge_budget is not None:
        used = EvaluationJob.objects.filter(
            micro_model=row, evaluator__in=MODEL_BASED, created_at__gt=now - timedelta(hours=1)
        ).count()
        budget_left = max(0, row.hourly_judge_budget - used)
    return _Model(
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


# -- configuration (admin and API) -------------------------------------------------------

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


_IMPORT_COLUMNS = (
    ("project_id", "bigint"),
    ("trace_id", "bytea"),
    ("span_id", "bytea"),
    ("span_start_time", "timestamptz"),
    ("micro_model_id", "bigint"),
    ("evaluator", "text"),
    ("evaluator_version", "integer"),
    ("score", "double precision"),
    ("passed", "boolean"),
    ("threshold", "double precision"),
    ("reason", "text"),
    ("judge", "text"),
    ("latency_ms", "double precision"),
    ("sampling_probability", "double precision"),
    ("predicted_label", "text"),
    ("expected_label", "text"),
    ("cohort", "jsonb"),
    ("source", "text"),
)


def _check_record(record: EvaluationRecord) -> None:
    if record.evaluator not in contracts.EVALUATORS:
        raise ValueError(f"unknown evaluator {record.evaluator!r}: one of {contracts.EVALUATORS}")
    if len(record.trace_id) != 16 or len(record.span_id) != 8:
        raise ValueError("trace_id must be 16 bytes and span_id 8 bytes")
    if record.score is not None and not 0.0 <= record.score <= 1.0:
        raise ValueError(f"score {record.score} is outside [0, 1]")
    if not 0.0 < record.sampling_probability <= 1.0:
        raise ValueError(f"sampling_probability {record.sampling_probability} is outside (0, 1]")
    if not record.micro_model:
        raise ValueError("micro_model must name the micro model")


def import_evaluation_results(
    project_id: int, records: Iterable[EvaluationRecord], *, batch: int = 50_000
) -> int:
    """Store finished verdicts in bulk: each batch is checked, COPied into a staging table
    and inserted in one transaction; a result already stored for the same span, evaluator
    and version is kept (the import never overwrites). Micro models are registered by name
    when new. Returns how many results were inserted. Bad records raise ValueError before
    their batch is written; earlier batches stay."""
    model_ids: dict[str, int] = {}
    inserted = 0
    pending: list[EvaluationRecord] = []

    def flush() -> int:
        for record in pending:
            _check_record(record)
            if record.micro_model not in model_ids:
                model_ids[record.micro_model] = register_micro_model(
                    project_id, record.micro_model
                ).id
        columns = ", ".join(name for name, _ in _IMPORT_COLUMNS)
        with transaction.atomic(), connection.cursor() as cursor:
            # Session-local; emptied first (inside an outer transaction no commit did it).
            cursor.execute(
                "CREATE TEMP TABLE IF NOT EXISTS evaluators_import_stage ("
                + ", ".join(f"{name} {kind}" for name, kind in _IMPORT_COLUMNS)
                + ") ON COMMIT DELETE ROWS"
            )
            cursor.execute("TRUNCATE evaluators_import_stage")
            with cursor.copy(f"COPY evaluators_import_stage ({columns}) FROM STDIN") as copy:
                for r in pending:
                    copy.write_row(
                        (
                            project_id,
                            r.trace_id,
                            r.span_id,
                            r.span_start_time,
                            model_ids[r.micro_model],
                            r.evaluator,
                            verdicts.VERSIONS[r.evaluator],
                            r.score,
                            r.passed,
                            r.threshold,
                            r.reason,
                            r.judge,
                            r.latency_ms,
                            r.sampling_probability,
                            r.predicted_label,
                            r.expected_label,
                            json.dumps(r.cohort, separators=(",", ":")),
                            EvaluationResult.Source.SCHEDULED.value,
                        )
                    )
            cursor.execute(
                f"INSERT INTO evaluators_evaluationresult ({columns})"  # noqa: S608 (constant SQL)
                f" SELECT {columns} FROM evaluators_import_stage"
                " ON CONFLICT (project_id, trace_id, span_id, evaluator, evaluator_version)"
                " DO NOTHING"
            )
            return cursor.rowcount

    for record in records:
        pending.append(record)
        if len(pending) >= batch:
            inserted += flush()
            pending = []
    if pending:
        inserted += flush()
    return inserted


def _predicted_label(span: ModelSpan, model: MicroModel) -> str | None:
    if model.label_attribute in ("", "micro_model.label"):
        return span.label
    value = span.attributes.get(model.label_attribute)
    return None if value is None else str(value)


def _with_confidence(span: ModelSpan, model: MicroModel) -> ModelSpan:
    """The span with its confidence read from the micro model's configured attribute."""
    if model.confidence_attribute in ("", "micro_model.confidence"):
        return span
    value = span.attributes.get(model.confidence_attribute)
    try:
        confidence = None if value is None else float(value)
    except (TypeError, ValueError):
        confidence = None
    return replace(span, confidence=confidence)


@dataclass
class _Plan:
    rows: list[EvaluationJob]
    registered: int = 0
    over_budget: int = 0
    not_applicable: int = 0
    stale: list[EvaluationJob] = field(default_factory=list)


def inapplicable(evaluator: str, span: ModelSpan, model: MicroModel, has_context: bool) -> str:
    """Why the evaluator does not apply to this span of this micro model ("" if it does)."""
    return not_applicable_reason(
        evaluator,
        task=model.task,
        predicted_label=_predicted_label(span, model),
        expected_label=span.expected_label,
        input_text=span.input_text,
        output_text=span.output_text,
        has_context=has_context,
    )


def _plan_jobs(
    traces: Sequence[TraceModelSpans],
    models: dict[int, _Model],
    *,
    micro_model: str | None = None,
    evaluator: str | None = None,
    use_budget: bool = True,
    collect_stale: bool = False,
) -> _Plan:
    plan = _Plan(rows=[])
    for trace in traces:
        matchers = [m.matcher for m in models.values()]
        for span in trace.spans:
            if not is_evaluated(span):
                continue
            matcher = match(span, matchers)
            if matcher is None:
                if not span.micro_model:
                    continue
                row = register_micro_model(span.project_id, span.micro_model)
                plan.registered += 1
                models[row.id] = _wrap(row, timezone.now())
                matchers = [m.matcher for m in models.values()]
                matcher = models[row.id].matcher
            model = models[matcher.id]
            if micro_model is not None and model.row.name != micro_model:
                continue
            always = always_reason(_with_confidence(span, model.row), trace.spans, model.rules)
            sampled = in_sample(trace.trace_id, model.row.sample_rate)
            for name in model.configs:
                if evaluator is not None and name != evaluator:
                    continue
                if inapplicable(name, span, model.row, trace.has_retrieval):
                    # Feedback posted later creates a LabelCheck result.
                    plan.not_applicable += 1
                    if collect_stale and name in MODEL_BASED:
                        # A job made before (under another rule or task) is re-run by a
                        # backfill with --rerun: its result becomes "not applicable".
                        plan.stale.append(
                            EvaluationJob(
                                project_id=span.project_id,
                                trace_id=bytes.fromhex(span.trace_id),
                                span_id=bytes.fromhex(span.span_id),
                                evaluator=name,
                                evaluator_version=verdicts.VERSIONS[name],
                            )
                        )
                    continue
                if name == LABEL_CHECK or always:
                    probability = 1.0
                elif sampled:
                    probability = model.row.sample_rate / 100.0
                else:
                    continue
                if name in MODEL_BASED and use_budget and model.budget_left is not None:
                    if model.budget_left <= 0:
                        plan.over_budget += 1
                        continue
                    model.budget_left -= 1
                plan.rows.append(
                    EvaluationJob(
                        project_id=span.project_id,
                        trace_id=bytes.fromhex(span.trace_id),
                        span_id=bytes.fromhex(span.span_id),
                        span_start_time=span.start_time,
                        micro_model_id=model.row.id,
                        evaluator=name,
                        evaluator_version=verdicts.VERSIONS[name],
                        sampling_probability=probability,
                        cohort=trace.cohort,
                    )
                )
    return plan


_INSERT_JOBS = """
INSERT INTO evaluators_evaluationjob (
    project_id, trace_id, span_id, span_start_time, micro_model_id, evaluator,
    evaluator_version, sampling_probability, status, attempts, next_attempt_at,
    dispatched_at, claimed_by, last_error, cohort, created_at
)
SELECT j.project_id, decode(j.trace_id, 'hex'), decode(j.span_id, 'hex'), j.span_start_time,
    j.micro_model_id, j.evaluator, j.evaluator_version, j.sampling_probability, 'pending', 0,
    statement_timestamp(), statement_timestamp(), '', '', coalesce(j.cohort, '{}'::jsonb),
    statement_timestamp()
FROM jsonb_to_recordset(%s::jsonb) AS j(
    project_id bigint, trace_id text, span_id text, span_start_time timestamptz,
    micro_model_id bigint, evaluator text, evaluator_version int, sampling_probability float8,
    cohort jsonb
)
ORDER BY j.project_id, j.trace_id, j.span_id, j.evaluator
ON CONFLICT (project_id, trace_id, span_id, evaluator, evaluator_version) DO NOTHING
RETURNING id
"""


def _insert_jobs(rows: Sequence[EvaluationJob]) -> list[int]:
    """Create the jobs not created before, in one statement; returns the new ids only, so
    a re-read trace or a re-delivered beat creates nothing twice."""
    if not rows:
        return []
    payload = json.dumps(
        [
            {
                "project_id": r.project_id,
                "trace_id": bytes(r.trace_id).hex(),
                "span_id": bytes(r.span_id).hex(),
                "span_start_time": r.span_start_time.isoformat(),
                "micro_model_id": r.micro_model_id,
                "evaluator": r.evaluator,
                "evaluator_version": r.evaluator_version,
                "sampling_probability": r.sampling_probability,
                "cohort": r.cohort or {},
            }
            for r in rows
        ]
    )
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_JOBS, [payload])
        return sorted(row[0] for row in cursor.fetchall())


def schedule_evaluations(*, now: datetime | None = None, limit: int = 500) -> ScheduleResult:
    """Read one batch of traces that went quiet since the cursor, create their jobs and
    advance the cursor, in one transaction. Call again while ``traces == limit``."""
    now = now or timezone.now()
    quiet_before = now - timedelta(seconds=settings.MICROLENS_EVAL_QUIET_SECONDS)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_SCHEDULER_LOCK])
        cursor_row = SchedulerCursor.objects.filter(name=_CURSOR).first()
        after = (
            None
            if cursor_row is None
            else (cursor_row.updated_at, cursor_row.project_id, bytes(cursor_row.trace_id).hex())
        )
        traces = quiet_traces_with_models(after=after, quiet_before=quiet_before, limit=limit)
        if not traces:
            return ScheduleResult(0, 0, 0, 0)
        models = _load_models((t.project_id for t in traces), now)
        plan = _plan_jobs(traces, models)
        job_ids = _insert_jobs(plan.rows)
        at, project_id, trace_hex = traces[-1].position
        SchedulerCursor.objects.update_or_create(
            name=_CURSOR,
            defaults={
                "updated_at": at,
                "project_id": project_id,
                "trace_id": bytes.fromhex(trace_hex),
            },
        )
    log.info(
        "evaluations.scheduled traces=%s jobs=%s registered=%s over_budget=%s not_applicable=%s",
        len(traces),
        len(job_ids),
        plan.registered,
        plan.over_budget,
        plan.not_applicable,
    )
    return ScheduleResult(
        traces=len(traces),
        jobs_created=len(job_ids),
        models_registered=plan.registered,
        skipped_over_budget=plan.over_budget,
        job_ids=job_ids,
        not_applicable=plan.not_applicable,
    )


# -- running a job -------------------------------------------------------------------------


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
        feedback = _feedback_for(job.project_id, bytes(job.trace_id), bytes(job.span_id))
        thumbs = feedback.thumbs_up if feedback is not None else None
        return verdicts.label_check(
            _predicted_label(span, model),
            _expected_with_feedback(span.expected_label, feedback),
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


def _expected_with_feedback(attribute: str | None, feedback: Feedback | None) -> str | None:
    """Feedback's expected label wins over the span's attribute (label quality resolves
    it the same way: contracts.resolve_expected_label); a thumbs up/down without a label
    judges the decision itself."""
    if feedback is None:
        return attribute
    return feedback.expected_label or (None if feedback.thumbs_up is not None else attribute)


def _feedback_for(project_id: int, trace_id: bytes, span_id: bytes) -> Feedback | None:
    """Span-level feedback wins over trace-level feedback."""
    rows = Feedback.objects.filter(
        Q(span_id=span_id) | Q(span_id=b""), project_id=project_id, trace_id=trace_id
    )
    return min(rows, key=lambda f: bytes(f.span_id) == b"", default=None)


def _finish(
    job: EvaluationJob, token: str, verdict: Verdict, threshold: float, cohort: dict
) -> bool:
    with transaction.atomic():
        finished = EvaluationJob.objects.filter(
            id=job.id, status=JobStatus.RUNNING, claimed_by=token
        ).update(status=JobStatus.DONE, finished_at=timezone.now(), last_error="")
        if not finished:
            return False
        _upsert_result(
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


def _upsert_result(
    *,
    job_id: int | None,
    project_id: int,
    trace_id: bytes,
    span_id: bytes,
    span_start_time: datetime,
    micro_model_id: int,
    evaluator: str,
    version: int,
    verdict: Verdict,
    threshold: float,
    sampling_probability: float,
    cohort: dict,
    source: str,
) -> None:
    update_fields = [
        "score",
        "passed",
        "threshold",
        "reason",
        "judge",
        "judge_version",
        "judge_fallback",
        "latency_ms",
        "predicted_label",
        "expected_label",
        "cohort",
        "source",
        "updated_at",
    ]
    if job_id is not None:
        update_fields.append("job")
    EvaluationResult.objects.bulk_create(
        [
            EvaluationResult(
                project_id=project_id,
                trace_id=trace_id,
                span_id=span_id,
                span_start_time=span_start_time,
                micro_model_id=micro_model_id,
                job_id=job_id,
                evaluator=evaluator,
                evaluator_version=version,
                score=verdict.score,
                passed=verdict.passed,
                threshold=threshold,
                reason=verdict.reason,
                judge=verdict.judge,
                judge_version=verdict.judge_version,
                judge_fallback=verdict.judge_fallback,
                latency_ms=verdict.latency_ms,
                sampling_probability=sampling_probability,
                predicted_label=verdict.predicted_label,
                expected_label=verdict.expected_label,
                cohort=cohort,
                source=source,
                updated_at=timezone.now(),
            )
        ],
        update_conflicts=True,
        unique_fields=["project", "trace_id", "span_id", "evaluator", "evaluator_version"],
        update_fields=update_fields,
    )


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


# -- feedback --------------------------------------------------------------------------------


def record_feedback(
    project_ids: Sequence[int],
    *,
    trace_id: str,
    span_id: str | None = None,
    expected_label: str | None = None,
    thumbs_up: bool | None = None,
    comment: str = "",
    author: str = "",
) -> FeedbackOutcome:
    """Store late ground truth for a trace or one span (posting again updates it) and
    create or update the LabelCheck result of each micro-model decision it covers."""
    trace_hex = trace_id.lower()
    context = None
    for project_id in project_ids:
        context = trace_context(project_id, trace_hex)
        if context is not None:
            break
    if context is None:
        raise UnknownTarget("No trace with this id in your projects.")
    span_hex = span_id.lower() if span_id else None
    if span_hex is not None:
        targets = [s for s in context.spans if s.span_id == span_hex]
        if not targets:
            raise UnknownTarget("No model span with this id in the trace.")
    else:
        targets = [s for s in context.spans if s.micro_model or s.label]
    with transaction.atomic():
        feedback, created = Feedback.objects.update_or_create(
            project_id=context.project_id,
            trace_id=bytes.fromhex(trace_hex),
            span_id=bytes.fromhex(span_hex) if span_hex else b"",
            defaults={
                "expected_label": expected_label,
                "thumbs_up": thumbs_up,
                "comment": comment,
                "author": author,
                "updated_at": timezone.now(),
            },
        )
        models = _load_models([context.project_id], timezone.now())
        keys = []
        for span in targets:
            if not is_evaluated(span):
                # A mirrored (shadow) call: the feedback row stays (the live decision's
                # expected label is the pair's), but no verdict may count in a live rate.
                continue
            matcher = match(span, [m.matcher for m in models.values()])
            if matcher is None:
                if not span.micro_model:
                    continue
                row = register_micro_model(context.project_id, span.micro_model)
                models[row.id] = _wrap(row, timezone.now())
                matcher = models[row.id].matcher
            model = models[matcher.id]
            config = model.configs.get(LABEL_CHECK)
            threshold = config.threshold if config else DEFAULT_THRESHOLDS[LABEL_CHECK]
            # The span's own feedback wins over the trace's; the row just written is the
            # one that applies when the span has none of its own.
            precise = (
                _feedback_for(
                    context.project_id, bytes.fromhex(trace_hex), bytes.fromhex(span.span_id)
                )
                or feedback
            )
            predicted = _predicted_label(span, model.row)
            expected = _expected_with_feedback(span.expected_label, precise)
            if not predicted and not is_label_decision(model.row.task, predicted):
                expected = None  # generated text: only a thumbs up/down judges it
            verdict = verdicts.label_check(
                predicted,
                expected,
                synonyms=model.row.label_synonyms or {},
                threshold=threshold,
                thumbs_up=precise.thumbs_up,
            )
            key = {
                "project_id": context.project_id,
                "trace_id": bytes.fromhex(trace_hex),
                "span_id": bytes.fromhex(span.span_id),
                "evaluator": LABEL_CHECK,
            }
            if verdict.passed is None and not EvaluationResult.objects.filter(**key).exists():
                continue  # nothing to judge, and no earlier verdict to replace
            _upsert_result(
                job_id=None,
                project_id=context.project_id,
                trace_id=bytes.fromhex(trace_hex),
                span_id=bytes.fromhex(span.span_id),
                span_start_time=span.start_time,
                micro_model_id=model.row.id,
                evaluator=LABEL_CHECK,
                version=verdicts.VERSIONS[LABEL_CHECK],
                verdict=verdict,
                threshold=threshold,
                sampling_probability=1.0,
                cohort=context.cohort,
                source=EvaluationResult.Source.FEEDBACK,
            )
            keys.append(span.span_id)
    evaluations = evaluation_views(
        [context.project_id], trace_id=trace_hex, evaluator=LABEL_CHECK, span_ids=keys
    )
    return FeedbackOutcome(
        feedback_id=feedback.id,
        trace_id=trace_hex,
        span_id=span_hex,
        created=created,
        evaluations=evaluations,
    )


# -- backfill --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackfillPlan:
    traces: int
    created: list[int]
    rerun: list[int]


def backfill_evaluations(
    *,
    start: datetime,
    end: datetime,
    micro_model: str | None = None,
    evaluator: str | None = None,
    rerun: bool = False,
    project_ids: list[int] | None = None,
    batch: int = 500,
    progress: Callable[[int, int], None] | None = None,
) -> BackfillPlan:
    """Create the jobs the scheduler would have created for traces that started in
    [start, end) (same sampling, no quiet rule, no hourly budget); with ``rerun``, also
    put the existing jobs of those spans back to pending so they are judged again (after a
    threshold or judge change), those of evaluators that no longer apply to their span
    included (their results become "not applicable"). Returns the job ids to run."""
    total = count_traces_with_models_started_between(start=start, end=end, project_ids=project_ids)
    created: list[int] = []
    reset: list[int] = []
    after = None
    seen = 0
    while True:
        traces = traces_with_models_started_between(
            start=start, end=end, after=after, limit=batch, project_ids=project_ids
        )
        if not traces:
            break
        with transaction.atomic():
            models = _load_models((t.project_id for t in traces), timezone.now())
            plan = _plan_jobs(
                traces,
                models,
                micro_model=micro_model,
                evaluator=evaluator,
                use_budget=False,
                collect_stale=rerun,
            )
            created.extend(_insert_jobs(plan.rows))
            if rerun and plan.rows:
                reset.extend(_reset_jobs(plan.rows, exclude=set(created)))
            if rerun and plan.stale:
                reset.extend(_reset_jobs(plan.stale, exclude=set(created)))
        seen += len(traces)
        after = traces[-1].position
        if progress is not None:
            progress(seen, total)
    return BackfillPlan(traces=seen, created=created, rerun=reset)


def _reset_jobs(rows: Sequence[EvaluationJob], exclude: set[int]) -> list[int]:
    keys = Q()
    for r in rows:
        keys |= Q(
            project_id=r.project_id,
            trace_id=r.trace_id,
            span_id=r.span_id,
            evaluator=r.evaluator,
            evaluator_version=r.evaluator_version,
        )
    jobs = EvaluationJob.objects.filter(keys).exclude(id__in=exclude)
    jobs = jobs.exclude(status=JobStatus.RUNNING)
    ids = sorted(jobs.values_list("id", flat=True))
    # The database clock, as new jobs and the claim use it: an app clock ahead of the
    # database's would leave a reset job unclaimable until the two agree.
    EvaluationJob.objects.filter(id__in=ids).update(
        status=JobStatus.PENDING,
        attempts=0,
        next_attempt_at=Now(),
        dispatched_at=Now(),
        claimed_by="",
        claimed_at=None,
        last_error="",
        finished_at=None,
    )
    return ids
