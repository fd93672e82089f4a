"""What each metric page shows: the metric calls behind a page, assembled into one context
(views stay thin; figures are built by charts.py from these rows)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import charts, decision_pages, metrics
from .economics_page import economics_section
from .label_cohort import label_cohort_section
from .metric_filters import RANGES, MetricQuery
from .metrics import Filters
from .routing_page import routing_section


@dataclass(frozen=True, slots=True)
class Page:
    context: dict[str, Any]
    figures: dict[str, dict[str, Any]]


def series_interval(filters: Filters) -> str:
    return charts.series_interval(filters.start, filters.end)


def _common(query: MetricQuery) -> dict[str, Any]:
    return {
        "filters": query.filters,
        "range_name": query.range_name,
        "ranges": list(RANGES),
        "dimensions": metrics.cohort_dimensions(),
        "small_n": metrics.SMALL_N,
    }


def overview_page(query: MetricQuery) -> Page:
    f = query.filters
    interval = series_interval(f)
    traffic = metrics.fallback_rate(f, "micro_model")
    retries = {r["group"]: r for r in metrics.retry_rate(f, "micro_model").rows}
    errors = {r["group"]: r for r in metrics.error_rate(f, "micro_model").rows}
    cost = {r["group"]: r for r in metrics.cost_per_trace(f, "micro_model").rows}
    latency = metrics.latency(f, "micro_model")
    lat = {r["group"]: r for r in latency.rows}
    evals = metrics.eval_fail_rate(f, "micro_model")
    fails: dict[str, list[dict[str, Any]]] = {}
    for row in evals.rows:
        fails.setdefault(row["group"], []).append(row)
    models = [
        {
            "name": row["group"],
            "decisions": row,
            "retry": retries.get(row["group"]),
            "error": errors.get(row["group"]),
            "latency": lat.get(row["group"]),
            "cost": cost.get(row["group"]),
            "evals": fails.get(row["group"], []),
        }
        for row in traffic.rows
        if row["group"]
    ]
    figures: dict[str, dict[str, Any]] = {}
    if models:
        figures["route-share"] = charts.route_share_figure(
            metrics.route_share(f, "micro_model", interval).rows,
            f"Route share per {interval}",
            f.start,
            f.end,
            interval,
        )
        figures["fallback"] = charts.rate_series_figure(
            {
                "fallback": metrics.fallback_rate(f, None, interval).rows,
                "retry": metrics.retry_rate(f, None, interval).rows,
            },
            f"Fallback and retry rate per {interval}",
            "% of decisions",
            f.start,
            f.end,
            interval,
        )
        figures["cost"] = charts.cost_figure(
            [cost[m["name"]] for m in models if m["name"] in cost],
            "Cost per 1,000 traces by micro model",
            "micro model",
        )
    return Page(
        context={
            **_common(query),
            "models": models,
            "cost_notes": metrics.cost_per_trace(f).notes,
            "eval_notes": evals.notes,
            "latency_note": latency.notes[0] if latency.notes else "",
            "interval": interval,
        },
        figures=figures,
    )


def micro_model_page(
    query: MetricQuery, name: str, dimension: str | None, target: str | None = None
) -> Page:
    f = query.filters.with_(micro_model=name)
    dims = [key for key, _ in metrics.cohort_dimensions()]
    if f.cohort is not None and f.cohort[0] not in dims:
        raise metrics.InvalidQuery(
            f"cohort.{f.cohort[0]}: not a cohort dimension (one of {', '.join(dims)})"
        )
    # Filtered to one cohort, every section counts that cohort only; the splits by cohort
    # (and routing advice, which weighs cohorts against each other) are left out: the
    # rollups keep one cohort dimension per row, so no other dimension can split it.
    split = f.cohort is None
    dimension = dimension if dimension in dims else (dims[0] if dims else None)
    if not split:
        dimension = None
    interval = series_interval(f)
    routes = metrics.fallback_rate(f, "route")
    quality = metrics.label_quality(f)
    figures: dict[str, dict[str, Any]] = {}
    quality_row = quality.rows[0] if quality.rows else None
    sections: dict[str, Any] = {}
    if routes.rows:
        for context, section_figures in decision_pages.sections(f, dimension, target):
            sections.update(context)
            figures.update(section_figures)
        figures["route-share"] = charts.route_share_figure(
            metrics.route_share(f, "micro_model", interval).rows,
            f"Route share per {interval}",
            f.start,
            f.end,
            interval,
        )
        figures["confidence"] = charts.confidence_figure(metrics.confidence_histogram(f))
        figures["cost-by-route"] = charts.cost_figure(
            metrics.cost_per_trace(f, "route").rows, "Cost per 1,000 traces by route", "route"
        )
        if dimension:
            figures["fallback-by-cohort"] = charts.grouped_rate_figure(
                metrics.fallback_rate(f, dimension).rows,
                f"Fallback rate by {dimension}",
                dimension,
            )
        if quality_row and quality_row["confusion"]["labels"]:
            figures["confusion"] = charts.confusion_figure(
                quality_row["confusion"]["labels"], quality_row["confusion"]["matrix"]
            )
        else:
            figures["confusion"] = charts.empty_figure(
                "Confusion matrix",
                "no expected labels yet (feedback or micro_model.expected_label)",
            )
    economics, economics_figures = economics_section(f, dimension)
    figures.update(economics_figures)
    label_cohort = label_cohort_section(f, dimension) if routes.rows else None
    return Page(
        context={
            **_common(query),
            "name": name,
            "routes": routes.rows,
            "quality": quality_row,
            "dimension": dimension,
            "cohort": f.cohort,
            **economics,
            **(routing_section(f) if split else {"routing": None}),
            "label_cohort": label_cohort.context if label_cohort else None,
            **sections,
        },
        figures={**figures, **(label_cohort.figures if label_cohort else {})},
    )


def cohorts_page(query: MetricQuery, dimension: str | None) -> Page:
    dims = [key for key, _ in metrics.cohort_dimensions()]
    dimension = dimension if dimension in dims else (dims[0] if dims else None)
    f = query.filters.with_(cohort=None)
    result = metrics.eval_fail_rate(f, dimension) if dimension else None
    figures: dict[str, dict[str, Any]] = {}
    if result and result.rows:
        figures["eval-heatmap"] = charts.eval_heatmap_figure(
            result.rows, dimension or "", metrics.SMALL_N
        )
    fallback = metrics.fallback_rate(f, dimension) if dimension else None
    if fallback and fallback.rows:
        figures["fallback-by-cohort"] = charts.grouped_rate_figure(
            fallback.rows, f"Fallback rate by {dimension}", dimension or ""
        )
    return Page(
        context={
            **_common(query),
            "dimension": dimension,
            "eval_rows": result.rows if result else [],
            "eval_notes": result.notes if result else [],
            "fallback_rows": fallback.rows if fallback else [],
        },
        figures=figures,
    )
