"""Scheduling: traces that went quiet become durable evaluation jobs.

One run reads a batch of traces past the cursor, matches their spans to micro models,
keeps the evaluators that apply and the spans sampled (or caught by an "always" rule,
within the hourly budget), inserts the jobs not created before and advances the cursor,
in one transaction under an advisory lock. A backfill plans and inserts jobs the same way
(``plan_jobs``, ``insert_jobs``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from tracestore.contracts import TraceModelSpans
from tracestore.queries import quiet_traces_with_models

from .checks import verdicts
from .contracts import LABEL_CHECK, ScheduleResult
from .micro_models import (
    MODEL_BASED,
    LoadedModel,
    find_or_register,
    inapplicable,
    load_models,
    with_confidence,
)
from .models import EvaluationJob, SchedulerCursor
from .sampling import always_reason, in_sample, is_evaluated

log = logging.getLogger(__name__)

# Scheduler runs serialise on this advisory lock (two beats, or a slow run overlapping the
# next): the cursor is read and advanced by one of them at a time.
_SCHEDULER_LOCK = 0x6D6C_6576_0001
_CURSOR = "quiet-traces"


@dataclass
class JobPlan:
    """The jobs to create for a batch of traces, and what was left out: counted, and for a
    backfill with ``--rerun`` the keys of model-based jobs that no longer apply (stale)."""

    rows: list[EvaluationJob]
    registered: int = 0
    over_budget: int = 0
    not_applicable: int = 0
    stale: list[EvaluationJob] = field(default_factory=list)


def plan_jobs(
    traces: Sequence[TraceModelSpans],
    models: dict[int, LoadedModel],
    *,
    micro_model: str | None = None,
    evaluator: str | None = None,
    use_budget: bool = True,
    collect_stale: bool = False,
) -> JobPlan:
    """The jobs the traces' micro-model spans call for: each span matched to its micro model
    (registered when unknown), each enabled evaluator that applies, on the sample or by an
    "always" rule, within the hourly budget when ``use_budget``."""
    plan = JobPlan(rows=[])
    for trace in traces:
        for span in trace.spans:
            if not is_evaluated(span):
                continue
            found = find_or_register(span, models)
            if found is None:
                continue
            model, registered = found
            plan.registered += registered
            if micro_model is not None and model.row.name != micro_model:
                continue
            always = always_reason(with_confidence(span, model.row), trace.spans, model.rules)
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
SELECT j.project_id, j.trace_id, j.span_id, j.span_start_time,
    j.micro_model_id, j.evaluator, j.evaluator_version, j.sampling_probability, 'pending', 0,
    statement_timestamp(), statement_timestamp(), '', '', j.cohort::jsonb,
    statement_timestamp()
FROM unnest(
    %s::bigint[], %s::bytea[], %s::bytea[], %s::timestamptz[], %s::bigint[], %s::text[],
    %s::int[], %s::float8[], %s::text[]
) AS j(
    project_id, trace_id, span_id, span_start_time, micro_model_id, evaluator,
    evaluator_version, sampling_probability, cohort
)
ORDER BY j.project_id, j.trace_id, j.span_id, j.evaluator
ON CONFLICT (project_id, trace_id, span_id, evaluator, evaluator_version) DO NOTHING
RETURNING id
"""


def insert_jobs(rows: Sequence[EvaluationJob]) -> list[int]:
    """Create the jobs not created before, in one statement; returns the new ids only, so
    a re-read trace or a re-delivered beat creates nothing twice. The ids go in as bytes,
    one array per column (no hex text on the way)."""
    if not rows:
        return []
    columns: list[list[Any]] = [
        [r.project_id for r in rows],
        [bytes(r.trace_id) for r in rows],
        [bytes(r.span_id) for r in rows],
        [r.span_start_time for r in rows],
        [r.micro_model_id for r in rows],
        [r.evaluator for r in rows],
        [r.evaluator_version for r in rows],
        [r.sampling_probability for r in rows],
        [json.dumps(r.cohort or {}) for r in rows],
    ]
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_JOBS, columns)
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
        models = load_models((t.project_id for t in traces), now)
        plan = plan_jobs(traces, models)
        job_ids = insert_jobs(plan.rows)
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
