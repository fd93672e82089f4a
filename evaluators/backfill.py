"""Backfill: the jobs the scheduler would have created for traces that started in a past
range (same sampling and applicability, no quiet rule, no hourly budget), and with
``rerun`` the existing jobs of those spans put back to pending to be judged again."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone

from tracestore.queries import (
    count_traces_with_models_started_between,
    traces_with_models_started_between,
)

from .micro_models import load_models
from .models import EvaluationJob, JobStatus
from .scheduling import insert_jobs, plan_jobs


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
            models = load_models((t.project_id for t in traces), timezone.now())
            plan = plan_jobs(
                traces,
                models,
                micro_model=micro_model,
                evaluator=evaluator,
                use_budget=False,
                collect_stale=rerun,
            )
            created.extend(insert_jobs(plan.rows))
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
