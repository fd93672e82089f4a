"""The micro model page's sections on its decisions: shadow vs live agreement
(``_shadow.html``) and the confidence-threshold optimiser (``_thresholds.html``). Each
section is the context it adds and the Plotly figures it draws (pure functions here)."""

from __future__ import annotations

from typing import Any

from .metrics import Filters
from .metrics.shadow import shadow_agreement
from .metrics.thresholds import parse_target, threshold_table

_PALETTE = ["#3b6fd4", "#2f9e6e", "#c98a2b", "#8a5cc7", "#d1343a", "#5bb5a2", "#b0652a"]


def sections(filters: Filters, dimension: str | None, target: str | None) -> list[tuple]:
    """Every section this module adds to the micro model page, as (context, figures)."""
    return [shadow_section(filters, dimension), thresholds_section(filters, dimension, target)]


def shadow_section(filters: Filters, dimension: str | None) -> tuple[dict, dict]:
    """Context ``shadow`` (rows per shadow model and cohort, overall first) and one
    agreement-matrix figure per shadow model (over every cohort)."""
    rows = [
        {**row, "difference_text": _points(row["difference"])}
        for row in shadow_agreement(filters, dimension)
    ]
    figures = {
        f"shadow-matrix-{i}": shadow_matrix_figure(row)
        for i, row in enumerate(r for r in rows if r["cohort"] == "")
    }
    return {"shadow": rows, "shadow_dimension": dimension}, figures


def _points(difference: dict[str, Any] | None) -> dict[str, str] | None:
    """Shadow - live accuracy in percentage points: "+3.1 pp", "+1.2 to +5.0 pp"."""
    if difference is None:
        return None
    return {
        "value": f"{difference['value'] * 100:+.1f} pp",
        "interval": f"{difference['low'] * 100:+.1f} \u2013 {difference['high'] * 100:+.1f} pp",
    }


def thresholds_section(
    filters: Filters, dimension: str | None, target: str | None
) -> tuple[dict, dict]:
    """Context ``thresholds`` (the optimiser's table) and the frontier figure."""
    table = threshold_table(filters, parse_target(target), dimension)
    figures = {}
    if any(c["n"] for c in table["cohorts"]):
        figures["threshold-frontier"] = threshold_frontier_figure(table)
    return {"thresholds": table, "thresholds_dimension": dimension}, figures


def shadow_matrix_figure(row: dict[str, Any]) -> dict[str, Any]:
    labels = row["matrix"]["labels"]
    matrix = row["matrix"]["live_by_shadow"]
    return {
        "data": [
            {
                "type": "heatmap",
                "x": labels,
                "y": labels,
                "z": matrix,
                "colorscale": [[0, "#f5f8fd"], [1, "#1f4e9c"]],
                "text": [[str(v) for v in r] for r in matrix],
                "texttemplate": "%{text}",
                "hovertemplate": "live %{y}, shadow %{x}: %{z}<extra></extra>",
            }
        ],
        "layout": {
            "title": {
                "text": f"Live \u00d7 {row['shadow_model']} labels",
                "x": 0,
                "font": {"size": 14},
            },
            "xaxis": {"title": {"text": f"shadow ({row['shadow_model']})"}, "automargin": True},
            "yaxis": {"title": {"text": "live"}, "autorange": "reversed", "automargin": True},
            "height": max(320, 40 * len(labels) + 140),
            "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
        },
    }


def threshold_frontier_figure(table: dict[str, Any]) -> dict[str, Any]:
    """Accuracy of the decisions kept against cost per 1,000 decisions (or the share
    escalated when no fallback cost is known), one line per cohort, the chosen thresholds
    marked."""
    priced = table["costs"]["fallback_cost"] is not None
    x_key = "cost_per_1000" if priced else "escalated_share"
    data: list[dict[str, Any]] = []
    for i, cohort in enumerate(table["cohorts"]):
        points = [r for r in cohort["thresholds"] if r["accuracy"] is not None]
        colour = _PALETTE[i % len(_PALETTE)]
        name = cohort["cohort"] or "all"
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": name,
                "x": [r[x_key] for r in points],
                "y": [r["accuracy"] for r in points],
                "customdata": [[r["threshold"], r["kept"], r["escalated_share"]] for r in points],
                "hovertemplate": "t = %{customdata[0]:.2f}: accuracy %{y:.1%}"
                " over %{customdata[1]} kept, %{customdata[2]:.1%} escalated<extra>"
                + name
                + "</extra>",
                "line": {"color": colour},
            }
        )
        best = cohort["best"]
        if best is not None:
            data.append(
                {
                    "type": "scatter",
                    "mode": "markers",
                    "name": f"{name}: t = {best['threshold']:.2f}",
                    "x": [best[x_key]],
                    "y": [best["accuracy"]],
                    "error_y": {
                        "type": "data",
                        "symmetric": False,
                        "array": [best["high"] - best["accuracy"]],
                        "arrayminus": [best["accuracy"] - best["low"]],
                    },
                    "marker": {"color": colour, "size": 13, "symbol": "star"},
                    "showlegend": False,
                    "hovertemplate": f"chosen t = {best['threshold']:.2f}<extra>{name}</extra>",
                }
            )
    return {
        "data": data,
        "layout": {
            "title": {"text": "Accuracy kept vs cost: one point per threshold"},
            "xaxis": {
                "title": {"text": "cost per 1,000 decisions (USD)" if priced else "share escalated"}
            },
            "yaxis": {"title": {"text": "accuracy of decisions kept"}, "tickformat": ".0%"},
            "shapes": [
                {
                    "type": "line",
                    "xref": "paper",
                    "x0": 0,
                    "x1": 1,
                    "y0": table["target"],
                    "y1": table["target"],
                    "line": {"dash": "dot", "color": "#888"},
                }
            ],
            "margin": {"l": 70, "r": 10, "t": 40, "b": 10},
            "height": 420,
            "legend": {"orientation": "h", "y": -0.2},
            "plot_bgcolor": "#ffffff",
        },
    }
