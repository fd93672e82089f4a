"""The waterfall figure and the span tree: pure functions, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dashboard.alerts.charts import rule_figure
from dashboard.charts import (
    ROUTE_SHARE_CLICK_PARAMS,
    confidence_figure,
    cost_figure,
    economics_figure,
    eval_heatmap_figure,
    grouped_rate_figure,
    rate_series_figure,
    route_share_figure,
    series_interval,
    waterfall_figure,
)
from dashboard.span_tree import span_tree
from tracestore.contracts import SpanView

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def span(
    span_id: str,
    parent: str | None,
    *,
    start_ms: float,
    duration_ms: float,
    name: str | None = None,
    kind: str | None = None,
    status: int = 0,
    model: str | None = None,
) -> SpanView:
    start = T0 + timedelta(milliseconds=start_ms)
    return SpanView(
        project_id=1,
        trace_id="ab" * 16,
        span_id=span_id,
        parent_span_id=parent,
        name=name or span_id,
        kind=1,
        start_time=start,
        end_time=start + timedelta(milliseconds=duration_ms),
        duration_ms=duration_ms,
        status_code=status,
        status_message="boom" if status == 2 else "",
        service_name="svc",
        scope_name="",
        attributes={},
        resource_attributes={},
        events=[],
        flags=0,
        span_kind=kind,
        model=model,
        provider=None,
        micro_model=None,
        prompt_tokens=None,
        completion_tokens=None,
        route=None,
        label=None,
        confidence=None,
        expected_label=None,
        is_fallback=False,
        is_retry=False,
        cache_hit=False,
    )


def bars(figure: dict) -> dict[int, tuple[float, float, str]]:
    """row -> (base, length, span id) over every bar trace of the figure."""
    out = {}
    for trace in figure["data"]:
        assert trace["type"] == "bar" and trace["orientation"] == "h"
        for y, base, x, sid in zip(
            trace["y"], trace["base"], trace["x"], trace["customdata"], strict=True
        ):
            out[y] = (base, x, sid)
    return out


def test_the_tree_is_depth_first_with_children_by_start_time() -> None:
    spans = [
        span("c2", "root", start_ms=50, duration_ms=10),
        span("root", None, start_ms=0, duration_ms=100),
        span("g1", "c1", start_ms=12, duration_ms=5),
        span("c1", "root", start_ms=10, duration_ms=20),
    ]
    rows = span_tree(spans)
    assert [(r.span.span_id, r.depth, r.offset_ms) for r in rows] == [
        ("root", 0, 0.0),
        ("c1", 1, 10.0),
        ("g1", 2, 12.0),
        ("c2", 1, 50.0),
    ]


def test_spans_whose_parent_is_missing_or_cyclic_are_still_shown_once() -> None:
    spans = [
        span("orphan", "never-received", start_ms=5, duration_ms=1),
        span("a", "b", start_ms=1, duration_ms=1),
        span("b", "a", start_ms=2, duration_ms=1),
        span("self", "self", start_ms=3, duration_ms=1),
    ]
    rows = span_tree(spans)
    assert sorted(r.span.span_id for r in rows) == ["a", "b", "orphan", "self"]
    assert {r.span.span_id: r.depth for r in rows}["orphan"] == 0


def test_the_waterfall_has_one_bar_per_span_at_its_start_offset() -> None:
    rows = span_tree(
        [
            span("root", None, start_ms=0, duration_ms=900, name="POST /chat"),
            span("cls", "root", start_ms=5, duration_ms=30, kind="LLM", model="intent-mini"),
            span("ret", "root", start_ms=40, duration_ms=50, kind="RETRIEVER"),
            span("llm", "root", start_ms=100.5, duration_ms=700, kind="LLM", status=2),
        ]
    )
    figure = waterfall_figure(rows)

    assert bars(figure) == {
        0: (0.0, 900.0, "root"),
        1: (5.0, 30.0, "cls"),
        2: (40.0, 50.0, "ret"),
        3: (100.5, 700.0, "llm"),
    }
    assert [t["name"] for t in figure["data"]] == ["span", "llm", "retriever", "error"]
    yaxis = figure["layout"]["yaxis"]
    assert yaxis["tickvals"] == [0, 1, 2, 3]
    indent = "\u00b7\u00a0"
    assert yaxis["ticktext"] == ["POST /chat", indent + "cls", indent + "ret", indent + "llm"]
    assert yaxis["autorange"] == "reversed"
    assert figure["layout"]["xaxis"]["title"]["text"] == "ms from trace start"
    hover = {t["name"]: t["hovertext"] for t in figure["data"]}
    assert "duration 30.000 ms" in hover["llm"][0]
    assert "model intent-mini" in hover["llm"][0]
    assert "error boom" in hover["error"][0]


def test_span_text_in_the_figure_is_escaped_for_plotlys_html_labels() -> None:
    rows = span_tree([span("x", None, start_ms=0, duration_ms=1, name="<b onclick=x>hi</b>")])
    figure = waterfall_figure(rows)

    assert figure["layout"]["yaxis"]["ticktext"] == ["&lt;b onclick=x&gt;hi&lt;/b&gt;"]
    assert "<b onclick" not in figure["data"][0]["hovertext"][0]


def test_an_empty_trace_draws_an_empty_figure() -> None:
    assert waterfall_figure([])["data"] == []


# -- metric charts ---------------------------------------------------------------------


def share_row(group: str, time: str, route: str, count: int, n: int) -> dict:
    return {"group": group, "time": time, "route": route, "count": count, "n": n}


def test_a_single_time_bucket_draws_stacked_bars_over_the_whole_window() -> None:
    start, end = T0, T0 + timedelta(hours=1)
    rows = [
        share_row("m", T0.isoformat(), "a", 3, 4),
        share_row("m", T0.isoformat(), "b", 1, 4),
    ]
    figure = route_share_figure(rows, "Route share", start, end, "hour")
    assert [t["type"] for t in figure["data"]] == ["bar", "bar"]
    assert figure["layout"]["barmode"] == "stack"
    assert [t["y"] for t in figure["data"]] == [[75.0], [25.0]]
    assert figure["layout"]["xaxis"]["range"] == [T0.isoformat(), end.isoformat()]
    assert {t["xperiod"] for t in figure["data"]} == {3_600_000}


def test_a_route_share_bar_carries_its_traces_filters_with_the_bucket_clipped_to_the_window() -> (
    None
):
    # A window from 10:20 to 12:05: its buckets are 10:00, 11:00 and 12:00.
    start, end = T0 + timedelta(minutes=20), T0 + timedelta(hours=2, minutes=5)
    hours = [(T0 + timedelta(hours=h)).isoformat() for h in range(3)]
    rows = [share_row("m", t, "a", 3, 4) for t in hours]
    # Decisions without a route (metrics name them "(none)"); r0 below the top 2.
    rows += [share_row("m", t, "(none)", 1, 4) for t in hours[1:]]
    rows += [share_row("m", hours[0], "r0", 1, 4)]

    figure = route_share_figure(rows, "Route share", start, end, "hour", top=2)

    assert ROUTE_SHARE_CLICK_PARAMS == ("micro_model", "route", "range", "start", "end")
    bars = {t["name"]: t["customdata"] for t in figure["data"]}
    assert list(bars) == ["a", "(none)", "other"]
    assert bars["a"] == [
        ["m", "a", "custom", start.isoformat(), (T0 + timedelta(hours=1)).isoformat(), 3, 4],
        ["m", "a", "custom", hours[1], hours[2], 3, 4],
        ["m", "a", "custom", hours[2], end.isoformat(), 3, 4],
    ]
    # No route filter selects a decision without a route, nor "other": no link.
    assert [c[:2] for c in bars["(none)"]] == [[None, None], [None, None]]
    assert bars["other"] == [
        [None, None, "custom", start.isoformat(), hours[1], 1, 4],
    ]


def test_route_share_keeps_the_top_routes_per_micro_model_and_groups_the_rest() -> None:
    t1, t2 = T0.isoformat(), (T0 + timedelta(hours=1)).isoformat()
    rows = [share_row("m1", t, f"r{i}", 10 - i, 45) for t in (t1, t2) for i in range(9)]
    rows += [share_row("m2", t1, "x", 2, 2)]
    figure = route_share_figure(rows, "Route share", T0, T0 + timedelta(hours=2), "hour", top=3)
    m1 = [(t["name"], t["y"]) for t in figure["data"] if t["yaxis"] == "y"]
    assert m1 == [
        ("r0", [10 * 100 / 45] * 2),
        ("r1", [9 * 100 / 45] * 2),
        ("r2", [8 * 100 / 45] * 2),
        ("other", [(7 + 6 + 5 + 4 + 3 + 2) * 100 / 45] * 2),
    ]
    m2 = [(t["name"], t["y"], t["type"]) for t in figure["data"] if t["yaxis"] == "y2"]
    assert m2 == [("x", [100.0], "bar")]
    # One panel per micro model, named on its axis, the time axis shared below them.
    assert figure["layout"]["yaxis"]["title"]["text"].startswith("<b>m1</b>")
    assert figure["layout"]["yaxis2"]["title"]["text"].startswith("<b>m2</b>")
    assert figure["layout"]["xaxis"]["anchor"] == "y2"


@pytest.mark.parametrize(
    ("days", "interval"), [(1 / 24, "hour"), (1, "hour"), (7, "hour"), (8, "day"), (30, "day")]
)
def test_the_interval_follows_the_range(days: float, interval: str) -> None:
    assert series_interval(T0, T0 + timedelta(days=days)) == interval


def test_empty_charts_say_why_instead_of_drawing_axes() -> None:
    window = (T0, T0 + timedelta(hours=1), "hour")
    figures = {
        "route": route_share_figure([], "Route share", *window),
        "rates": rate_series_figure({"fallback": [], "retry": []}, "Fallback", "%", *window),
        "grouped": grouped_rate_figure([{"group": "a", "n": 0}], "Fallback by tier", "tier"),
        "cost": cost_figure([{"group": "a", "n": 3, "mean_usd": None}], "Cost", "model"),
        "confidence": confidence_figure({"pass": [0, 0], "fail": [0, 0]}),
        "heatmap": eval_heatmap_figure([], "user.tier", 30),
    }
    reasons = {key: figure["empty"] for key, figure in figures.items()}
    assert reasons == {
        "route": "no traffic in this window",
        "rates": "no traffic in this window",
        "grouped": "no traffic in this window",
        "cost": "no priced traces in this window (prices: Admin → Model prices)",
        "confidence": "no decisions with a confidence in this window",
        "heatmap": "no evaluations yet",
    }
    for figure in figures.values():
        assert figure["data"] == []
        assert figure["layout"]["xaxis"] == {"visible": False}
        assert figure["layout"]["annotations"][0]["text"] == figure["empty"]


def test_legends_sit_above_the_plot_clear_of_the_axis_titles() -> None:
    figure = grouped_rate_figure(
        [{"group": "a", "n": 4, "rate": 0.5, "low": 0.2, "high": 0.8}], "Fallback", "tier"
    )
    legend = figure["layout"]["legend"]
    assert (legend["y"], legend["yanchor"]) == (1.0, "bottom")
    # The title sits at the very top, the legend under it, in a top margin made for both.
    assert figure["layout"]["title"]["yref"] == "container"
    assert figure["layout"]["margin"]["t"] >= 60


def test_an_alert_rule_with_one_evaluation_spans_an_hour_either_side() -> None:
    at = T0 + timedelta(minutes=30)
    figure = rule_figure("fallback", 0.1, {"": [(at, 0.25, 0.1, 0.5)]})
    before, after = (at - timedelta(hours=1)).isoformat(), (at + timedelta(hours=1)).isoformat()
    assert figure["layout"]["xaxis"]["range"] == [before, after]
    assert figure["layout"]["xaxis"]["tickformat"] == "%m-%d %H:%M"
    threshold = figure["data"][-1]
    assert (threshold["name"], threshold["y"]) == ("threshold", [0.1, 0.1])
    assert [x[:19] for x in threshold["x"]] == [before[:19], after[:19]]
    assert figure["layout"]["legend"]["yanchor"] == "bottom"


def _heat_row(group: str, n: int, effective_n: float, rate: float = 0.2) -> dict:
    return {
        "evaluator": "task_completion",
        "group": group,
        "n": n,
        "pending": 0,
        "rate": rate,
        "low": 0.1,
        "high": 0.3,
        "effective_n": effective_n,
        "small_n": effective_n < 30,
    }


def test_the_cohort_heatmap_shows_and_marks_cells_by_their_effective_n() -> None:
    rows = [
        # 200 verdicts sampled at mixed rates weigh like 12.5: too few to trust.
        _heat_row("enterprise", 200, 12.5),
        # 40 verdicts all sampled alike: effective n = n.
        _heat_row("free", 40, 40.0),
        _heat_row("pro", 25, 25.0),
    ]

    figure = eval_heatmap_figure(rows, "user.tier", 30)

    heat = figure["data"][0]
    assert heat["text"] == [
        [
            "20.0%*<br>n_eff=12.5 of 200<br>[10-30%]",
            "20.0%<br>n_eff=40 of 40<br>[10-30%]",
            "20.0%*<br>n_eff=25 of 25<br>[10-30%]",
        ]
    ]
    assert "effective n (Kish)" in heat["hovertemplate"]
    assert figure["layout"]["title"]["text"] == (
        "Eval fail rate by user.tier (* effective n under 30)"
    )


def test_the_economics_chart_leaves_room_for_its_rescue_rate_axis() -> None:
    day = {
        "time": "2026-01-01",
        "n": 10,
        "rescue_cost": 0.1,
        "savings": 0.5,
        "rescue_rate": 0.07,
        "rescues": 7,
        "decisions": 100,
    }

    layout = economics_figure([day], "Economics")["layout"]

    assert layout["yaxis2"]["side"] == "right"
    assert layout["yaxis2"]["automargin"] is True
    assert layout["margin"]["r"] == 64


def test_a_single_day_of_economics_spans_the_whole_window_not_a_millisecond() -> None:
    """One day bucket in a window that crosses midnight: the x axis covers both whole days
    (auto-ranging a single bar gave ticks like 23:59:59.9996)."""
    from datetime import UTC, datetime

    from dashboard.charts import economics_figure, savings_by_cohort_figure

    day = {
        "time": "2026-01-01T00:00:00+00:00",
        "group": "pro",
        "n": 10,
        "rescue_cost": 0.1,
        "savings": 0.5,
        "savings_per_day": 0.5,
        "savings_low": None,
        "savings_high": None,
        "cost_per_rescue_low": None,
        "cost_per_rescue_high": None,
        "rescue_rate": 0.07,
        "rescues": 7,
        "decisions": 100,
    }
    start = datetime(2025, 12, 31, 23, 30, tzinfo=UTC)
    end = datetime(2026, 1, 1, 5, 0, tzinfo=UTC)

    series = economics_figure([day], "Economics", start, end)["layout"]["xaxis"]
    by_cohort = savings_by_cohort_figure([day], "Savings", "user.tier", start, end)
    assert series["range"] == ["2025-12-31T00:00:00+00:00", "2026-01-02T00:00:00+00:00"]
    assert by_cohort["layout"]["xaxis"]["range"] == series["range"]
    assert series["tickformat"] == "%Y-%m-%d"
