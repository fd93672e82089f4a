"""tracestore's writes: named service functions that own their transaction.

The public face other apps (and the receivers) write through. The work is done in
modules with one reason to change each: ``api_keys`` (projects and keys), ``span_copy``
(a span as a binary COPY row), ``rollups`` (the per-trace rollup merge).
"""

from __future__ import annotations

import contextlib
import operator
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import django.db
import psycopg
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from psycopg.errors import ProgramLimitExceeded, UniqueViolation

from .api_keys import (
    API_KEY_PREFIX,
    authenticate_api_key,
    create_project,
    issue_api_key,
    project_has_keys,
    revoke_api_key,
)
from .contracts import (
    PermanentStorageError,
    SpanRecord,
    StorageError,
    StoreResult,
    TransientStorageError,
)
from .decode import SpanRow
from .partitions import RetentionResult, apply_retention
from .rollups import merge_rollups, recompute_rollups, rollup_deltas
from .span_copy import (
    COPY_SPANS,
    COPY_STAGE,
    INSERT_NEW_FROM_STAGE,
    STAGE_DDL,
    copy_rows,
    oldest_kept_start_ns,
    span_copy_rows,
)
from .span_fields import ROW_FIELDS, SPAN_ID, TRACE_ID

__all__ = [
    "API_KEY_PREFIX",
    "authenticate_api_key",
    "classify_storage_error",
    "create_project",
    "issue_api_key",
    "maintain_span_partitions",
    "project_has_keys",
    "rebuild_trace_rollups",
    "revoke_api_key",
    "storage_errors",
    "store_span_rows",
    "store_spans",
]


# -- storage failures ---------------------------------------------------------------------

# Data the database refuses whatever the moment: a value it cannot store (22xxx), a
# constraint (23xxx), a row or index entry past its size limits (54xxx), a feature it
# lacks (0Axxx). Everything else a database error can mean (connection refused, lost or
# timed out, shutdown, lock or statement timeout, serialization conflict, out of
# resources, even a missing table during a deployment) may pass: retried, not dropped.
_PERMANENT = (
    psycopg.DataError,
    psycopg.IntegrityError,
    psycopg.NotSupportedError,
    ProgramLimitExceeded,
    django.db.DataError,
    django.db.IntegrityError,
    django.db.NotSupportedError,
)


def classify_storage_error(exc: BaseException) -> StorageError | None:
    """``exc`` as a ``TransientStorageError`` or ``PermanentStorageError``, or None when
    it is not a database error (a bug, left to propagate).

    The one place that knows the driver's exceptions: psycopg's own (raised as they are
    by COPY, which Django does not wrap) and Django's wrappers around them (whose
    ``__cause__`` is the psycopg error with its SQLSTATE)."""
    driver = exc.__cause__ if isinstance(exc.__cause__, psycopg.Error) else exc
    if not isinstance(driver, (psycopg.Error, django.db.Error)):
        return None
    sqlstate = driver.sqlstate if isinstance(driver, psycopg.Error) else None
    if isinstance(driver, _PERMANENT):
        return PermanentStorageError(sqlstate)
    return TransientStorageError(sqlstate)


@contextlib.contextmanager
def storage_errors() -> Iterator[None]:
    """Raise any database error inside as ``TransientStorageError`` or
    ``PermanentStorageError`` (from the original, kept as ``__cause__``)."""
    try:
        yield
    except StorageError:
        raise
    except Exception as exc:
        classified = classify_storage_error(exc)
        if classified is None:
            raise
        raise classified from exc


# -- spans -------------------------------------------------------------------------------

# SpanRecord -> the same span as a row (its fields in order).
_record_row = operator.attrgetter(*ROW_FIELDS)


def store_spans(project_id: int, records: Sequence[SpanRecord]) -> StoreResult:
    """Write one batch of spans and merge it into its traces' rollups, in one transaction.

    Idempotent on (project, trace_id, span_id): a re-sent span is counted as a duplicate,
    stored once and merged into the rollup once. Returns only after the commit, so the
    caller may acknowledge.
    """
    return store_span_rows(project_id, [_record_row(r) for r in records])


# A lock held elsewhere or a server too slow to answer ends the batch's transaction
# after MICROLENS_INGEST_DB_TIMEOUT_SECONDS, per statement (server side, the connection
# stays usable); the receivers answer UNAVAILABLE and exporters retry. SET LOCAL: the
# bound ends with the transaction and never reaches other users of the connection.
_BOUND_TRANSACTION = (
    "SELECT set_config('statement_timeout', %(ms)s, true), set_config('lock_timeout', %(ms)s, true)"
)


def _bound_transaction(cursor: Any, timeout_ms: int) -> None:
    if timeout_ms > 0:
        cursor.execute(_BOUND_TRANSACTION, {"ms": str(timeout_ms)})


def store_span_rows(
    project_id: int, spans: Sequence[SpanRow], attributes_json: Sequence[bytes | None] = ()
) -> StoreResult:
    """``store_spans`` for spans as rows (``SpanRow``: a SpanRecord's fields in order), as
    the receivers decode them, with their attributes' jsonb if the decoder wrote it
    (``DecodeResult.attributes_json``).

    Raises ``TransientStorageError`` (retry later: nothing was committed) or
    ``PermanentStorageError`` (the database refuses this batch), never a driver error.
    """
    if not spans:
        return StoreResult(accepted=0, inserted=0, duplicates=0, traces=0)
    rows = span_copy_rows(project_id, spans, attributes_json, oldest_kept_start_ns(time.time_ns()))
    timeout_ms = settings.MICROLENS_INGEST_DB_TIMEOUT_SECONDS * 1000
    new: Sequence[SpanRow]
    with storage_errors():
        try:
            # Fast path: almost every batch is new, so COPY straight into the table and
            # merge the whole batch into the rollups (no savepoint: a conflict undoes it all).
            with transaction.atomic(), connection.cursor() as cursor:
                _bound_transaction(cursor, timeout_ms)
                copy_rows(cursor, COPY_SPANS, rows)
                merge_rollups(cursor, project_id, rollup_deltas(spans))
            new = spans
        except (IntegrityError, UniqueViolation):
            # A retry or an overlapping batch, rolled back: stage it and keep only the
            # unseen spans, in a transaction of its own.
            with transaction.atomic(), connection.cursor() as cursor:
                _bound_transaction(cursor, timeout_ms)
                cursor.execute(STAGE_DDL)
                copy_rows(cursor, COPY_STAGE, rows)
                cursor.execute(INSERT_NEW_FROM_STAGE)
                inserted_keys = {(bytes(t), bytes(s)) for t, s in cursor.fetchall()}
                new = []
                for span in spans:
                    key = (span[TRACE_ID], span[SPAN_ID])
                    if key in inserted_keys:
                        inserted_keys.discard(key)  # a span twice in one batch counts once
                        new.append(span)
                if new:
                    merge_rollups(cursor, project_id, rollup_deltas(new))
    return StoreResult(
        accepted=len(spans),
        inserted=len(new),
        duplicates=len(spans) - len(new),
        traces=len({span[TRACE_ID] for span in spans}),
    )


def rebuild_trace_rollups(project_id: int, trace_ids: Sequence[bytes]) -> None:
    """Recompute rollups from the stored spans (repair, and the reference in tests)."""
    with transaction.atomic(), connection.cursor() as cursor:
        recompute_rollups(cursor, project_id, trace_ids)


# -- retention -----------------------------------------------------------------------------


def maintain_span_partitions(now: datetime | None = None) -> RetentionResult:
    """Create the partitions ahead and apply the retention setting (daily beat task and
    ``manage.py apply_retention``)."""
    return apply_retention(
        now or timezone.now(),
        retention_days=settings.MICROLENS_RETENTION_DAYS,
        days_ahead=settings.MICROLENS_PARTITION_DAYS_AHEAD,
    )
