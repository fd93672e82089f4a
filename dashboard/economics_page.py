"""The micro model page's fallback economics section: its rows and its chart (the page
calls ``economics_section`` once; the template is ``_economics.html``)."""

from __future__ import annotations

from typing import Any

from . import charts
from .metrics import Filters
from .metrics.economics import fallback_economics


def economics_section(f: Filters, dimension: str | None) -> tuple[dict[str, Any], dict]:
    """(context, figures) for one micro model (``f`` carries it) over the page's range."""
    total = fallback_economics(f).rows
    by_cohort = fallback_economics(f, dimension).rows if dimension else []
    series = fallback_economics(f, None, "day").rows
    figures = {}
    if dimension and by_cohort:
        figures["economics-by-cohort"] = charts.savings_by_cohort_figure(
            fallback_economics(f, dimension, "day").rows,
            f"Savings per day by {dimension}",
            dimension,
            f.start,
            f.end,
        )
    if series:
        figures["economics-series"] = charts.economics_figure(
            series, "Rescue cost, savings and rescue rate per day", f.start, f.end
        )
    return (
        {
            "economics": total[0] if total else None,
            "economics_by_cohort": by_cohort,
            "economics_dimension": dimension,
        },
        figures,
    )
