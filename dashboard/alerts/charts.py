"""The alert chart: a rule's value over time against its threshold (pure, JSON-ready)."""

from __future__ import annotations

import json
from datetime import datetime
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
                    hoverinfo="skip",
                )
            )
        figure.add_trace(
            go.Scatter(x=xs, y=[p[1] for p in points], mode="lines+markers", name=label)
        )
    if times:
        figure.add_trace(
            go.Scatter(
                x=[min(times), max(times)],
                y=[threshold, threshold],
                mode="lines",
                line={"dash": "dash", "color": "#d1343a"},
                name="threshold",
            )
        )
    figure.update_layout(
        title=escape(name),
        height=260,
        margin={"l": 50, "r": 10, "t": 40, "b": 30},
        legend={"orientation": "h"},
    )
    return json.loads(figure.to_json())
