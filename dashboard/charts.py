"""Plotly figures, built by pure functions from contracts data. Each returns the figure as
JSON-ready data; pages hand it to their script with ``json_script``.

Plotly renders text (tick labels, hover) as a small subset of HTML, so every value that
came from a span is HTML-escaped here: ``<script>`` in a span name shows as text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from html import escape
from typing import Any

import plotly.graph_objects as go

from .metrics.fold import floor_day, floor_hour
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


# -- metric charts -------------------------------------------------------------------------
# Each takes rows from dashboard.metrics (plain dicts) and returns a figure with a title,
# axis titles and units. Values from spans (routes, labels, cohort values) are escaped.

_PALETTE = ["#3b6fd4", "#2f9e6e", "#c98a2b", "#8a5cc7", "#d1343a", "#5bb5a2", "#b0652a"]
_OTHER_COLOUR = "#aab3c5"
# One date format on every page: tables and the filter bar print 2026-12-06 14:00 (UTC).
DATE_FORMAT = "%Y-%m-%d %H:%M"
# Route share: the routes with most decisions per micro model, the rest summed as "other".
TOP_ROUTES = 5
# A window of a week or less is drawn per hour, a longer one per day.
_HOURLY_UP_TO = timedelta(days=7)


def series_interval(start: datetime, end: datetime) -> str:
    """The time bucket a window is drawn in: hourly up to a week (at most 168 points, and a
    1 h window still shows its hour), daily beyond (at most 400 points)."""
    return "hour" if end - start <= _HOURLY_UP_TO else "day"


def _layout(title: str, x_title: str, y_title: str, **extra: Any) -> dict[str, Any]:
    # The legend sits above the plot, under the title: below it, it covered the x-axis
    # title whenever the tick labels took two lines.
    layout: dict[str, Any] = {
        "title": {
            "text": title,
            "x": 0,
            "xanchor": "left",
            "y": 1,
            "yref": "container",
            "yanchor": "top",
            "pad": {"t": 8},
            "font": {"size": 14},
        },
        "xaxis": {"title": {"text": x_title}, "automargin": True},
        "yaxis": {"title": {"text": y_title}, "automargin": True},
        "margin": {"l": 10, "r": 10, "t": 64, "b": 10},
        "height": 320,
        "legend": {"orientation": "h", "x": 0, "xanchor": "left", "y": 1.0, "yanchor": "bottom"},
        "plot_bgcolor": "#ffffff",
    }
    layout.update(extra)
    return layout


def empty_figure(title: str, reason: str) -> dict[str, Any]:
    """A chart with nothing to draw says why (no axes pretending there is a scale)."""
    layout = _layout(title, "", "", height=200)
    layout["xaxis"] = {"visible": False}
    layout["yaxis"] = {"visible": False}
    layout["annotations"] = [
        {
            "text": escape(reason),
            "xref": "paper",
            "yref": "paper",
            "x": 0.5,
            "y": 0.5,
            "showarrow": False,
            "font": {"size": 14, "color": "#6b7385"},
        }
    ]
    return {"data": [], "layout": layout, "empty": reason}


_PERIOD_MS = {"hour": 3_600_000, "day": 86_400_000}


def _time_axis(start: datetime, end: datetime, interval: str) -> dict[str, Any]:
    """The whole window on the x axis, from the start of its first bucket to the end of its
    last, whatever the buckets drawn: a single bucket would otherwise be auto-ranged to a
    millisecond wide."""
    step = timedelta(days=1) if interval == "day" else timedelta(hours=1)
    floor = floor_day if interval == "day" else floor_hour
    first, last = floor(start), floor(end)
    if last < end:
        last += step
    return {
        "type": "date",
        "range": [first.isoformat(), last.isoformat()],
        "tickformat": "%Y-%m-%d" if interval == "day" else "%m-%d %H:%M",
        "hoverformat": DATE_FORMAT,
        "title": {"text": "time (UTC)"},
        "automargin": True,
    }


def _in_period(trace: dict[str, Any], interval: str) -> dict[str, Any]:
    """A point per bucket drawn in the middle of its bucket (its time is the bucket's start)."""
    trace["xperiod"] = _PERIOD_MS[interval]
    trace["xperiodalignment"] = "middle"
    return trace


def _name(value: Any) -> str:
    return escape("(none)" if value in (None, "") else str(value))


def _top_routes(rows: Sequence[dict[str, Any]], top: int) -> dict[Any, list[str]]:
    """Per micro model (row "group"), its ``top`` routes by decisions in the window."""
    totals: dict[Any, dict[str, int]] = {}
    for row in rows:
        by_route = totals.setdefault(row["group"], {})
        by_route[row["route"]] = by_route.get(row["route"], 0) + row["count"]
    return {
        group: [r for r, _ in sorted(by_route.items(), key=lambda i: (-i[1], i[0]))[:top]]
        for group, by_route in totals.items()
    }


_OTHER = "other"
# The Traces page's parameters a route share bar's click sets, in its customdata's order
# (chart_page.js): the bar's micro model, route and time bucket.
ROUTE_SHARE_CLICK_PARAMS = ("micro_model", "route", "range", "start", "end")


def _bucket_bounds(time: str, start: datetime, end: datetime, interval: str) -> tuple[str, str]:
    """A bucket's start and end (its time is its start), clipped to the window: the exact
    span of time its decisions started in."""
    bucket = datetime.fromisoformat(time)
    step = timedelta(days=1) if interval == "day" else timedelta(hours=1)
    return max(bucket, start).isoformat(), min(bucket + step, end).isoformat()


def route_share_figure(
    rows: Sequence[dict[str, Any]],
    title: str,
    start: datetime,
    end: datetime,
    interval: str,
    top: int = TOP_ROUTES,
) -> dict[str, Any]:
    """Stacked bars per micro model (rows grouped by micro model in "group"; one panel
    each, sharing the time axis): each of its top routes' share of its decisions per
    bucket, the other routes summed as "other". A bar's customdata holds, in the order of
    ROUTE_SHARE_CLICK_PARAMS, the Traces page's filters for its decisions (none for
    "other" or a decision without a route, which no route filter names), then its count
    and n."""
    if not rows:
        return empty_figure(title, "no traffic in this window")
    tops = _top_routes(rows, top)
    groups = sorted(tops, key=lambda g: "" if g is None else str(g))
    # (group, route or None for the rest) -> time -> [count, n]
    points: dict[tuple[Any, str | None], dict[str, list[int]]] = {}
    for row in rows:
        route = row["route"] if row["route"] in tops[row["group"]] else None
        cell = points.setdefault((row["group"], route), {}).setdefault(row["time"], [0, 0])
        cell[0] += row["count"]
        cell[1] = row["n"]
    routes = sorted({r for rs in tops.values() for r in rs})
    colours: dict[str | None, str] = {r: _PALETTE[i % len(_PALETTE)] for i, r in enumerate(routes)}
    colours[None] = _OTHER_COLOUR
    panel_height = 220
    gap = 0.08 if len(groups) > 1 else 0.0
    span = (1 - gap * (len(groups) - 1)) / len(groups)
    layout = _layout(title, "", "", height=80 + panel_height * len(groups), barmode="stack")
    data: list[dict[str, Any]] = []
    shown: set[str] = set()
    for index, group in enumerate(groups):
        axis = "" if index == 0 else str(index + 1)
        top_of = 1 - index * (span + gap)
        layout[f"yaxis{axis}"] = {
            "domain": [max(0.0, top_of - span), top_of],
            "range": [0, 100],
            "title": {
                "text": f"<b>{_name(group)}</b><br>share (%)" if len(groups) > 1 else "share (%)"
            },
            "automargin": True,
        }
        for route in [*tops[group], None]:
            series = points.get((group, route))
            if not series:
                continue
            times = sorted(series)
            name = _OTHER if route is None else _name(route)
            # "(none)" is how metrics name decisions without a route: no filter selects them.
            linked = group is not None and route not in (None, "(none)")
            data.append(
                _in_period(
                    {
                        "type": "bar",
                        "name": name,
                        "legendgroup": name,
                        "showlegend": name not in shown,
                        "xaxis": "x",
                        "yaxis": f"y{axis}",
                        "x": times,
                        "y": [series[t][0] * 100 / series[t][1] for t in times],
                        "width": _PERIOD_MS[interval] * 0.8,
                        "customdata": [
                            [
                                group if linked else None,
                                route if linked else None,
                                "custom",
                                *_bucket_bounds(t, start, end, interval),
                                *series[t],
                            ]
                            for t in times
                        ],
                        "hovertemplate": "%{y:.1f}% (%{customdata[5]} of %{customdata[6]})<extra>"
                        + (f"{_name(group)}: " if len(groups) > 1 else "")
                        + name
                        + "</extra>",
                        "marker": {"color": colours[route]},
                    },
                    interval,
                )
            )
            shown.add(name)
    layout["xaxis"] = _time_axis(start, end, interval)
    layout["xaxis"]["anchor"] = f"y{'' if len(groups) == 1 else len(groups)}"
    return {"data": data, "layout": layout}


def rate_series_figure(
    series: dict[str, Sequence[dict[str, Any]]],
    title: str,
    y_title: str,
    start: datetime,
    end: datetime,
    interval: str,
) -> dict[str, Any]:
    """One line per named rate over time, in %, hover with n."""
    if not any(series.values()):
        return empty_figure(title, "no traffic in this window")
    single = len({row["time"] for rows in series.values() for row in rows}) == 1
    data = [
        _in_period(
            {
                "type": "scatter",
                "mode": "markers" if single else "lines+markers",
                "name": _name(name),
                "x": [row["time"] for row in rows],
                "y": [None if row["rate"] is None else row["rate"] * 100 for row in rows],
                "customdata": [[row["count"], row["n"]] for row in rows],
                "hovertemplate": "%{y:.2f}% (%{customdata[0]} of n=%{customdata[1]})<extra>"
                + _name(name)
                + "</extra>",
                "line": {"color": _PALETTE[i % len(_PALETTE)]},
                "marker": {"size": 10 if single else 6},
            },
            interval,
        )
        for i, (name, rows) in enumerate(series.items())
    ]
    layout = _layout(title, "time (UTC)", y_title)
    layout["xaxis"] = _time_axis(start, end, interval)
    layout["yaxis"]["rangemode"] = "tozero"
    return {"data": data, "layout": layout}


def grouped_rate_figure(rows: Sequence[dict[str, Any]], title: str, x_title: str) -> dict[str, Any]:
    """A bar per group with its Wilson interval as error bars and n in the label."""
    rows = [row for row in rows if row["n"]]
    if not rows:
        return empty_figure(title, "no traffic in this window")
    rates = [row["rate"] * 100 for row in rows]
    data = [
        {
            "type": "bar",
            "x": [_name(row["group"]) for row in rows],
            "y": rates,
            "text": [f"n={row['n']}" for row in rows],
            "textposition": "outside",
            "error_y": {
                "type": "data",
                "symmetric": False,
                "array": [row["high"] * 100 - r for row, r in zip(rows, rates, strict=True)],
                "arrayminus": [r - row["low"] * 100 for row, r in zip(rows, rates, strict=True)],
            },
            "marker": {"color": _PALETTE[0]},
            # The group's value and its count: a click opens the traces the count counts.
            "customdata": [[row["group"], row.get("count")] for row in rows],
            "hovertemplate": "%{x}: %{y:.2f}% (%{customdata[1]} of %{text})<extra></extra>",
        }
    ]
    return {"data": data, "layout": _layout(title, x_title, "rate (%, 95% interval)")}


def cost_figure(rows: Sequence[dict[str, Any]], title: str, x_title: str) -> dict[str, Any]:
    """Mean and p90 cost per trace per group, in USD per 1,000 traces (a micro model's
    trace costs micro-dollars; the same unit as the Overview's table)."""
    if rows and all(row.get("mean_usd_per_1000_traces") is None for row in rows):
        return empty_figure(title, "no priced traces in this window (prices: Admin → Model prices)")
    rows = [row for row in rows if row["n"]]
    if not rows:
        return empty_figure(title, "no traffic in this window")
    x = [_name(row["group"]) for row in rows]
    data = [
        {
            "type": "bar",
            "name": name,
            "x": x,
            "y": [row[field] for row in rows],
            "text": [f"n={row['n']}" for row in rows],
            "hovertemplate": "%{x}: $%{y:,.3~g} per 1,000 traces (%{text})<extra>"
            + name
            + "</extra>",
            "marker": {"color": colour},
        }
        for name, field, colour in (
            ("mean", "mean_usd_per_1000_traces", _PALETTE[0]),
            ("p90", "p90_usd_per_1000_traces", _PALETTE[2]),
        )
    ]
    return {"data": data, "layout": _layout(title, x_title, "USD per 1,000 traces")}


def latency_figure(rows: Sequence[dict[str, Any]], title: str) -> dict[str, Any]:
    """p50 and p99 decision latency per micro model and route, in ms."""
    x = [f"{_name(row['micro_model'])} / {_name(row['route'])}" for row in rows]
    data = [
        {
            "type": "bar",
            "name": name,
            "x": x,
            "y": [row[field] for row in rows],
            "text": [f"n={row['n']}" for row in rows],
            "hovertemplate": "%{x}: %{y:.1f} ms (%{text})<extra>" + name + "</extra>",
            "marker": {"color": colour},
        }
        for name, field, colour in (("p50", "p50_ms", _PALETTE[1]), ("p99", "p99_ms", _PALETTE[4]))
    ]
    return {"data": data, "layout": _layout(title, "micro model / route", "latency (ms)")}


def confusion_figure(labels: Sequence[str], matrix: Sequence[Sequence[int]]) -> dict[str, Any]:
    names = [_name(label) for label in labels]
    data = [
        {
            "type": "heatmap",
            "x": names,
            "y": names,
            "z": [list(row) for row in matrix],
            "colorscale": [[0, "#f5f8fd"], [1, "#1f4e9c"]],
            "text": [[str(v) for v in row] for row in matrix],
            # Each cell's (predicted, expected) labels: a click opens its decisions' traces.
            "customdata": [[[p, e] for p in labels] for e in labels],
            "texttemplate": "%{text}",
            "hovertemplate": "expected %{y}, predicted %{x}: %{z}<extra></extra>",
            "colorbar": {"title": {"text": "decisions"}},
        }
    ]
    layout = _layout("Confusion matrix", "predicted label", "expected label")
    layout["yaxis"]["autorange"] = "reversed"
    layout["height"] = max(320, 40 * len(labels) + 140)
    return {"data": data, "layout": layout}


def confidence_figure(hists: Mapping[str, Sequence[int]]) -> dict[str, Any]:
    if not any(any(hist) for hist in hists.values()):
        return empty_figure(
            "Confidence, split by pass / fail", "no decisions with a confidence in this window"
        )
    bins = len(next(iter(hists.values()))) if hists else 0
    x = [(i + 0.5) / bins for i in range(bins)]
    colours = {"pass": _PALETTE[1], "fail": _PALETTE[4], "unknown": "#aab3c5"}
    data = [
        {
            "type": "bar",
            "name": {"pass": "label = expected", "fail": "label ≠ expected"}.get(
                key, "no expected label"
            ),
            "x": x,
            "y": list(hist),
            "marker": {"color": colours[key]},
            "hovertemplate": "confidence %{x:.2f}: %{y} decisions<extra></extra>",
        }
        for key, hist in hists.items()
    ]
    layout = _layout("Confidence, split by pass / fail", "confidence", "decisions", barmode="stack")
    layout["xaxis"]["range"] = [0, 1]
    return {"data": data, "layout": layout}


def eval_heatmap_figure(
    rows: Sequence[dict[str, Any]], dimension: str, small_n: int
) -> dict[str, Any]:
    """Evaluator x cohort value, coloured by the (sampling-weighted) fail rate, labelled
    with the rate, the effective n (Kish) of the verdicts against their raw n, and the
    interval; cells whose effective n is under ``small_n`` are marked with an asterisk (a
    cohort sampled at mixed rates can have many verdicts that weigh like a few)."""
    if not rows:
        return empty_figure(f"Eval fail rate by {escape(dimension)}", "no evaluations yet")
    evaluators = sorted({row["evaluator"] for row in rows})
    values = sorted({str(row["group"]) for row in rows})
    cells = {(row["evaluator"], str(row["group"])): row for row in rows}
    z, text, custom = [], [], []
    for evaluator in evaluators:
        z_row: list[float | None] = []
        text_row: list[str] = []
        custom_row: list[Any] = []
        for value in values:
            row = cells.get((evaluator, value))
            if row is None:
                z_row.append(None)
                text_row.append("")
                custom_row.append([evaluator, value])
                continue
            pending = row.get("pending", 0)
            if row["rate"] is None:
                # Scheduled, nothing run yet: no rate to colour.
                z_row.append(None)
                text_row.append(f"{pending} pending")
                custom_row.append([evaluator, value])
                continue
            effective_n = row.get("effective_n", row["n"])
            mark = "*" if effective_n < small_n else ""
            z_row.append(row["rate"] * 100)
            text_row.append(
                f"{row['rate'] * 100:.1f}%{mark}<br>n_eff={effective_n:g} of {row['n']}<br>"
                f"[{row['low'] * 100:.0f}-{row['high'] * 100:.0f}%]"
                + (f"<br>{pending} pending" if pending else "")
            )
            custom_row.append([evaluator, value])
        z.append(z_row)
        text.append(text_row)
        custom.append(custom_row)
    data = [
        {
            "type": "heatmap",
            "x": [_name(v) for v in values],
            "y": [_name(e) for e in evaluators],
            "z": z,
            "text": text,
            "texttemplate": "%{text}",
            "customdata": custom,
            "colorscale": [[0, "#f3f8f4"], [0.5, "#f2c14e"], [1, "#d1343a"]],
            "zmin": 0,
            "zmax": 100,
            "hovertemplate": (
                "%{y}, %{x}: %{text}<br>n_eff: effective n (Kish) of the sampling-weighted"
                " verdicts, of n run<extra>click for failing traces</extra>"
            ),
            "colorbar": {"title": {"text": "fail rate (%)"}},
        }
    ]
    layout = _layout(
        f"Eval fail rate by {escape(dimension)} (* effective n under {small_n})",
        escape(dimension),
        "evaluator",
    )
    layout["height"] = max(300, 70 * len(evaluators) + 160)
    return {"data": data, "layout": layout}


def economics_figure(
    rows: Sequence[dict[str, Any]],
    title: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[str, Any]:
    """Per day: what the rescues cost and what the micro model saved against sending every
    trace to the fallback (USD), and the rescue rate (%, right axis); over the whole window
    when it is given (a single day would otherwise be auto-ranged to a millisecond)."""
    x = [row["time"] for row in rows]
    data = [
        {
            "type": "bar",
            "name": name,
            "x": x,
            "y": [row[field] for row in rows],
            "customdata": [row["n"] for row in rows],
            "hovertemplate": "%{x}: $%{y:.4f} (n=%{customdata})<extra>" + name + "</extra>",
            "marker": {"color": colour},
        }
        for name, field, colour in (
            ("rescue cost", "rescue_cost", _PALETTE[2]),
            ("savings", "savings", _PALETTE[1]),
        )
    ]
    data.append(
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": "rescue rate",
            "x": x,
            "y": [None if row["rescue_rate"] is None else row["rescue_rate"] * 100 for row in rows],
            "yaxis": "y2",
            "customdata": [[row["rescues"], row["decisions"]] for row in rows],
            "hovertemplate": "%{y:.1f}% (%{customdata[0]} of n=%{customdata[1]})"
            "<extra>rescue rate</extra>",
            "line": {"color": _PALETTE[0]},
        }
    )
    layout = _layout(title, "day (UTC)", "USD")
    layout["yaxis2"] = {
        "title": {"text": "rescue rate (%)"},
        "overlaying": "y",
        "side": "right",
        "rangemode": "tozero",
        "automargin": True,
    }
    # Room for the right axis' ticks and title: the shared 10 px cut them off.
    layout["margin"] = {**layout["margin"], "r": 64}
    _daily_axis(layout, start, end)
    return {"data": data, "layout": layout}


def _daily_axis(layout: dict[str, Any], start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None:
        layout["xaxis"] = {**_time_axis(start, end, "day"), "title": {"text": "day (UTC)"}}


def savings_by_cohort_figure(
    rows: Sequence[dict[str, Any]],
    title: str,
    dimension: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[str, Any]:
    """Savings per day (USD) against always-fallback, one line per cohort value, with the
    interval of the cost of a rescue as hover and n (priced traces) per point."""
    series: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        series.setdefault(row["group"], []).append(row)
    data = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": f"{escape(dimension)}={_name(value)}",
            "x": [row["time"] for row in points],
            "y": [row["savings"] for row in points],
            "customdata": [[row["n"], row["savings_low"], row["savings_high"]] for row in points],
            "hovertemplate": "$%{y:.4f} ($%{customdata[1]:.4f} to $%{customdata[2]:.4f},"
            " n=%{customdata[0]})<extra>%{fullData.name}</extra>",
            "line": {"color": _PALETTE[i % len(_PALETTE)]},
        }
        for i, (value, points) in enumerate(sorted(series.items(), key=lambda kv: str(kv[0])))
    ]
    layout = _layout(title, "day (UTC)", "savings (USD)")
    _daily_axis(layout, start, end)
    return {"data": data, "layout": layout}
