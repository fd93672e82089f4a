"""A trace's spans in tree order (depth first, children by start time), for the waterfall
and the span table. Pure: no database, no Django."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from tracestore.contracts import SpanView


@dataclass(frozen=True, slots=True)
class TreeRow:
    span: SpanView
    depth: int
    offset_ms: float  # from the trace's first span start


def span_tree(spans: Sequence[SpanView]) -> list[TreeRow]:
    """Spans depth first. A span whose parent was not received (yet) is shown as a root,
    so a partial trace still draws every span; every span appears exactly once, even if
    hostile input makes parent links cycle."""
    if not spans:
        return []
    ordered = sorted(spans, key=lambda s: (s.start_time, s.span_id))
    trace_start: datetime = ordered[0].start_time
    ids = {s.span_id for s in ordered}
    children: dict[str, list[SpanView]] = defaultdict(list)
    roots: list[SpanView] = []
    for span in ordered:
        parent = span.parent_span_id
        if parent is None or parent not in ids or parent == span.span_id:
            roots.append(span)
        else:
            children[parent].append(span)

    rows: list[TreeRow] = []
    seen: set[str] = set()

    def walk(start: SpanView) -> None:
        stack = [(start, 0)]
        while stack:
            span, depth = stack.pop()
            if span.span_id in seen:
                continue
            seen.add(span.span_id)
            offset = (span.start_time - trace_start).total_seconds() * 1000
            rows.append(TreeRow(span=span, depth=depth, offset_ms=offset))
            stack.extend((child, depth + 1) for child in reversed(children[span.span_id]))

    for root in roots:
        walk(root)
    # Spans only reachable through a cycle have no root: show them at the top level.
    for span in ordered:
        if span.span_id not in seen:
            walk(span)
    return rows
