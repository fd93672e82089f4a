"""Writing result rows: one verdict upserted on its key (the worker finishing a job,
feedback judging a decision), or finished verdicts imported in bulk (the demo data set).
A result is unique per (project, trace id, span id, evaluator, evaluator version)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from . import contracts
from .checks import verdicts
from .contracts import EvaluationRecord, Verdict
from .micro_models import register_micro_model
from .models import EvaluationResult

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


def upsert_result(
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
