"""Keyset pages of recent traces, shared by the traces page and the API.

The cursor is opaque to clients: the shared codec's (``tracestore.cursors``) encoding of the
start time, trace id and project id of the last trace on the previous page. Cursors of the
earlier dotted form are no longer read: they are answered as invalid (400), and the client
starts again from the first page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from tracestore.contracts import TraceSummary
from tracestore.cursors import decode_cursor, encode_cursor
from tracestore.queries import recent_traces

_KIND = "traces"
_SHAPE = (datetime, re.compile(r"[0-9a-f]{32}"), int)


@dataclass(frozen=True, slots=True)
class TracePage:
    traces: list[TraceSummary]
    next_cursor: str | None


def _cursor(trace: TraceSummary) -> str:
    if trace.start_time is None:  # recent_traces only returns started traces
        raise ValueError(f"trace {trace.trace_id} has no start time to page from")
    return encode_cursor(_KIND, (trace.start_time, trace.trace_id, trace.project_id))


def _before(cursor: str) -> tuple[datetime, str, int]:
    # The shape has checked each value's type.
    return cast(tuple[datetime, str, int], tuple(decode_cursor(cursor, _KIND, _SHAPE)))


def trace_page(
    project_ids: list[int], *, cursor: str | None, size: int, service: str | None = None
) -> TracePage:
    before = _before(cursor) if cursor else None
    # One extra row tells whether an older page exists without a COUNT.
    rows = recent_traces(project_ids, limit=size + 1, before=before, service=service or None)
    traces = rows[:size]
    more = len(rows) > size
    return TracePage(traces=traces, next_cursor=_cursor(traces[-1]) if more else None)
