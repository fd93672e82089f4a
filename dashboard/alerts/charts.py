"""The alert chart: a rule's value over time against its threshold (pure, JSON-ready)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from html import escape
from typing import Any

import plotly.graph_objects as go

Point = tuple[datetime, float | None, float | None, float | None]


def rule_figure(name: str, threshold: float, series: dict[str, list[Point]]) -> dict[str, Any]:
    figure = go.Figure()
    times: list[datetime] = []
    for split_value, points in sorted(series.items()):
        label = escape(split_value or "value")
        xs = [p[0] for p in points]
        times += xs
        if any(p[2] is not None for p in points):
            figure.add_trace(
                go.Scatter(
                    x=xs + xs[::-1],
                    y=[p[3] for p in points] + [p[2] for p in points][::-1],
                    fill="toself",
                    line={"width": 0},
                    opacity=0.2,
                    name=f"{label} 95 % interval",
                    showlegend=False,
                    hoverinfo="skip",
                )
            )
        figure.add_trace(
            go.Scatter(
                x=xs, y=[p[1] for p in points], mode="lines+markers", name=label, marker_size=8
            )
        )
    # One evaluation: the threshold drawn across the hour either side, not as a dot.
    span = [min(times), max(times)] if times else []
    if span and span[0] == span[1]:
        span = [span[0] - timedelta(hours=1), span[0] + timedelta(hours=1)]
    if times:
        figure.add_trace(
            go.Scatter(
                x=span,
                y=[threshold, threshold],
                mode="lines",
                line={"dash": "dash", "color": "#d1343a"},
                name="threshold",
            )
        )
    # As the metric charts (dashboard/charts.py): the legend above the plot, never over the
    # axis; dates as on every page; one evaluation gets an axis an hour either side rather
    # than one a millisecond wide.
    xaxis: dict[str, Any] = {
        "type": "date",
        "tickformat": "%m-%d %H:%M",
        "hoverformat": "%Y-%m-%d %H:%M:%S",
        "nticks": 6,
    }
    if times and min(times) == max(times):
        xaxis["range"] = [t.isoformat() for t in span]
    figure.update_layout(
        title={
            "text": escape(name),
            "x": 0,
            "xanchor": "left",
            "y": 1,
            "yref": "container",
            "yanchor": "top",
            "pad": {"t": 8},
        },
        height=280,
        margin={"l": 50, "r": 10, "t": 64, "b": 30},
        legend={"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom"},
        xaxis=xaxis,
    )
    return json.loads(figure.to_json())
