"""Keyset pages of recent traces, shared by the traces page and the API.

The cursor is opaque to clients: ``<start time in µs since the epoch>.<trace id hex>.<project
id>`` of the last trace on the previous page (cursors without the project id, from before
it was added, are still read).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tracestore.contracts import TraceSummary
from tracestore.queries import recent_traces

_CURSOR = re.compile(r"(-?\d{1,20})\.([0-9a-f]{32})(?:\.(\d{1,18}))?")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InvalidCursor(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class TracePage:
    traces: list[TraceSummary]
    next_cursor: str | None


def encode_cursor(trace: TraceSummary) -> str:
    assert trace.start_time is not None  # recent_traces only returns started traces
    micros = (trace.start_time - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}.{trace.trace_id}.{trace.project_id}"


def decode_cursor(cursor: str) -> tuple[datetime, str] | tuple[datetime, str, int]:
    match = _CURSOR.fullmatch(cursor)
    if match is None:
        raise InvalidCursor("invalid cursor: pass back the one from the previous page")
    try:
        start = _EPOCH + timedelta(microseconds=int(match[1]))
    except OverflowError as exc:
        raise InvalidCursor("invalid cursor: pass back the one from the previous page") from exc
    return (start, match[2]) if match[3] is None else (start, match[2], int(match[3]))


def trace_page(
    project_ids: list[int], *, cursor: str | None, size: int, service: str | None = None
) -> TracePage:
    before = decode_cursor(cursor) if cursor else None
    # One extra row tells whether an older page exists without a COUNT.
    rows = recent_traces(project_ids, limit=size + 1, before=before, service=service or None)
    traces = rows[:size]
    more = len(rows) > size
    return TracePage(traces=traces, next_cursor=encode_cursor(traces[-1]) if more else None)
