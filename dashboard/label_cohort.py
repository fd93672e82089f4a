"""The micro model page's "Labels by cohort" section: per label precision, recall and F1
for each value of one cohort dimension, each with its interval and n (the label-quality
metric grouped by the dimension), and the cohort x label heatmap of recall."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any

from . import metrics
from .metrics import Filters

FIGURE = "label-cohort-recall"


@dataclass(frozen=True, slots=True)
class LabelCohortSection:
    context: dict[str, Any]
    figures: dict[str, dict[str, Any]]


def label_cohort_section(filters: Filters, dimension: str | None) -> LabelCohortSection:
    """``filters`` name the micro model; an empty section without a dimension or labels."""
    if not dimension:
        return LabelCohortSection({"dimension": None, "rows": []}, {})
    result = metrics.label_quality(filters, dimension)
    rows = [
        {"cohort": group["group"], **label}
        for group in result.rows
        for label in group["labels"]
        if group["group"] is not None
    ]
    figures = {FIGURE: recall_heatmap_figure(rows, dimension, metrics.SMALL_N)} if rows else {}
    return LabelCohortSection({"dimension": dimension, "rows": rows}, figures)


def _percent(value: float | None) -> str:
    return "\u2013" if value is None else f"{value * 100:.0f}"


def recall_heatmap_figure(
    rows: list[dict[str, Any]], dimension: str, small_n: int
) -> dict[str, Any]:
    """Cohort value (rows) x expected label (columns), coloured by recall, labelled with
    recall, its n and its interval; cells under ``small_n`` decisions get an asterisk, a
    label never expected in a cohort is left blank."""
    cohorts = sorted({str(r["cohort"]) for r in rows})
    labels = sorted({r["label"] for r in rows})
    cells = {(str(r["cohort"]), r["label"]): r for r in rows}
    z: list[list[float | None]] = []
    text: list[list[str]] = []
    for cohort in cohorts:
        z_row: list[float | None] = []
        text_row: list[str] = []
        for label in labels:
            cell = cells.get((cohort, label))
            if cell is None or cell["recall"] is None:
                z_row.append(None)
                text_row.append("")
                continue
            mark = "*" if cell["recall_n"] < small_n else ""
            z_row.append(cell["recall"] * 100)
            text_row.append(
                f"{cell['recall'] * 100:.1f}%{mark}<br>n={cell['recall_n']}<br>"
                f"[{_percent(cell['recall_low'])}-{_percent(cell['recall_high'])}%]"
            )
        z.append(z_row)
        text.append(text_row)
    return {
        "data": [
            {
                "type": "heatmap",
                "x": [escape(label) for label in labels],
                "y": [escape(cohort) for cohort in cohorts],
                "z": z,
                "text": text,
                "texttemplate": "%{text}",
                "colorscale": [[0, "#d1343a"], [0.5, "#f2c14e"], [1, "#f3f8f4"]],
                "zmin": 0,
                "zmax": 100,
                "hovertemplate": "%{y}, expected %{x}: recall %{text}<extra></extra>",
                "colorbar": {"title": {"text": "recall (%)"}},
            }
        ],
        "layout": {
            "title": {
                "text": f"Recall by {escape(dimension)} and label"
                f" (* fewer than {small_n} decisions)",
                "x": 0,
                "font": {"size": 14},
            },
            "xaxis": {"title": {"text": "expected label"}, "automargin": True},
            "yaxis": {"title": {"text": escape(dimension)}, "automargin": True},
            "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
            "height": max(300, 60 * len(cohorts) + 160),
            "plot_bgcolor": "#ffffff",
        },
    }
