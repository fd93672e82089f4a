"""Plotly figures, built by pure functions from contracts data. Each returns the figure as
JSON-ready data; pages hand it to their script with ``json_script``.

Plotly renders text (tick labels, hover) as a small subset of HTML, so every value that
came from a span is HTML-escaped here: ``<script>`` in a span name shows as text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape
from typing import Any

import plotly.graph_objects as go

from .span_tree import TreeRow

STATUS_ERROR = 2
# Tick labels are right-aligned, so leading spaces would not show depth: one dot per level
# does (a no-break space, as plain spaces collapse in the SVG labels).
_INDENT = "\u00b7\u00a0"
_MAX_LABEL = 60

# Colour per category: errors stand out whatever the kind; otherwise the span's kind.
_COLOURS = {
    "error": "#d1343a",
    "LLM": "#3b6fd4",
    "RETRIEVER": "#2f9e6e",
    "EMBEDDING": "#5bb5a2",
    "TOOL": "#8a5cc7",
    "CHAIN": "#c98a2b",
    "AGENT": "#b0652a",
    "span": "#8792a2",
}


def span_category(row: TreeRow) -> str:
    if row.span.status_code == STATUS_ERROR:
        return "error"
    kind = (row.span.span_kind or "").upper()
    return kind if kind in _COLOURS else "span"


def _label(row: TreeRow) -> str:
    name = row.span.name
    if len(name) > _MAX_LABEL:
        name = name[: _MAX_LABEL - 1] + "…"
    return _INDENT * row.depth + escape(name)


def _hover(row: TreeRow) -> str:
    span = row.span
    lines = [
        f"<b>{escape(span.name)}</b>",
        f"start +{row.offset_ms:.3f} ms, duration {span.duration_ms:.3f} ms",
    ]
    if span.model:
        lines.append(f"model {escape(span.model)}")
    if span.micro_model and span.micro_model != span.model:
        lines.append(f"micro model {escape(span.micro_model)}")
    if span.route:
        lines.append(f"route {escape(span.route)}")
    if span.status_code == STATUS_ERROR:
        lines.append(f"error {escape(span.status_message)}")
    return "<br>".join(lines)


def waterfall_figure(rows: Sequence[TreeRow]) -> dict[str, Any]:
    """A horizontal bar per span: y is the span's row in tree order (labelled with its name,
    indented by depth), the bar runs from its start to its end in ms from the trace start.
    One Plotly trace per colour category so the legend explains the colours; ``customdata``
    carries the span id for click-through."""
    by_category: dict[str, list[tuple[int, TreeRow]]] = {}
    for index, row in enumerate(rows):
        by_category.setdefault(span_category(row), []).append((index, row))
    figure = go.Figure()
    for category, members in by_category.items():
        figure.add_trace(
            go.Bar(
                name=category.lower(),
                orientation="h",
                y=[index for index, _ in members],
                base=[row.offset_ms for _, row in members],
                x=[row.span.duration_ms for _, row in members],
                marker={"color": _COLOURS[category]},
                customdata=[row.span.span_id for _, row in members],
                hovertext=[_hover(row) for _, row in members],
                hovertemplate="%{hovertext}<extra></extra>",
            )
        )
    figure.update_layout(
        barmode="overlay",
        height=max(160, 26 * len(rows) + 90),
        margin={"l": 10, "r": 10, "t": 30, "b": 40},
        xaxis={"title": {"text": "ms from trace start"}, "zeroline": True, "rangemode": "tozero"},
        yaxis={
            "tickmode": "array",
            "tickvals": list(range(len(rows))),
            "ticktext": [_label(row) for row in rows],
            "autorange": "reversed",
            "automargin": True,
        },
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
        plot_bgcolor="#ffffff",
        bargap=0.3,
    )
    return json.loads(figure.to_json())
