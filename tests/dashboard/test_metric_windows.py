"""Windows that do not fall on whole hours are read exactly: the whole hours from the
rollups, the partial hours at the ends from the decision facts, with the same sums."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from dashboard import metrics
from dashboard.metrics.refresh import fold_changes
from dashboard.metrics.windows import _COLUMNS, partial_hour_rows, partial_hours, whole_hours
from tests.dashboard.metric_data import add_prices, build_trace, store, traffic
from tracestore.services import create_project

pytestmark = pytest.mark.django_db

DAY = datetime(2026, 3, 10, tzinfo=UTC)


def at(hh_mm: str) -> datetime:
    hours, minutes = map(int, hh_mm.split(":"))
    return DAY + timedelta(hours=hours, minutes=minutes)


def window(start: str, end: str) -> tuple[datetime, datetime]:
    return at(start), at(end)


@pytest.fixture
def project_id() -> int:
    """Decisions (trace starts) at 10:01 (billing, fallback), 10:50 (tech), 10:55
    (billing, fallback, enterprise), 11:02 (sales) and 11:30 (billing)."""
    project = create_project("windows")
    add_prices()
    spec = [
        ("10:01", "billing", True, "pro", 400.0),
        ("10:50", "tech", False, "pro", 20.0),
        ("10:55", "billing", True, "enterprise", 80.0),
        ("11:02", "sales", False, "free", 10.0),
        ("11:30", "billing", False, "pro", 160.0),
    ]
    built = [
        build_trace(
            i + 1,  # odd: language "en" on every trace
            start=at(hh_mm),
            route=route,
            label=route,
            expected="billing",
            tier=tier,
            fallback=fallback,
            latency_ms=latency,
        )
        for i, (hh_mm, route, fallback, tier, latency) in enumerate(spec)
    ]
    for batch in (0, 1):
        store(project.id, built, batch=batch)
    fold_changes()
    return project.id


def fallbacks(project_id: int, start: datetime, end: datetime, **kw) -> list[tuple]:
    result = metrics.compute("fallback-rate", metrics.Filters((project_id,), start, end), **kw)
    return [(row["group"], row["n"], row["count"]) for row in result.rows]


def test_a_five_minute_window_counts_only_the_decisions_inside_it(project_id) -> None:
    # 10:48 to 10:53 holds the 10:50 decision, not 10:01 nor 10:55 of the same hour.
    assert fallbacks(project_id, *window("10:48", "10:53")) == [(None, 1, 0)]
    assert fallbacks(project_id, *window("10:53", "10:58")) == [(None, 1, 1)]
    assert fallbacks(project_id, *window("10:02", "10:07")) == []


def test_a_fifteen_minute_window_across_an_hour_edge(project_id) -> None:
    # 10:50 to 11:05: 10:50, 10:55 and 11:02; not 10:01 nor 11:30.
    assert fallbacks(project_id, *window("10:50", "11:05")) == [(None, 3, 1)]
    assert fallbacks(project_id, *window("10:50", "11:05"), group_by="route") == [
        ("billing", 1, 1),
        ("sales", 1, 0),
        ("tech", 1, 0),
    ]


def test_the_end_is_excluded_and_the_start_included(project_id) -> None:
    assert fallbacks(project_id, *window("10:45", "10:50")) == []
    assert fallbacks(project_id, *window("10:50", "10:51")) == [(None, 1, 0)]


def test_whole_hours_and_partial_hours_add_up(project_id) -> None:
    # 10:30 to 12:00: 10:50, 10:55 from the facts, the 11:00 hour (11:02, 11:30) from
    # its rollup row.
    assert fallbacks(project_id, *window("10:30", "12:00")) == [(None, 4, 1)]
    assert fallbacks(project_id, *window("10:00", "12:00")) == [(None, 5, 2)]


def test_a_cohort_filter_and_split_read_the_partial_hours_too(project_id) -> None:
    start, end = window("10:40", "11:10")
    filters = metrics.Filters((project_id,), start, end, cohort=("user.tier", "enterprise"))
    assert [(r["n"], r["count"]) for r in metrics.compute("fallback-rate", filters).rows] == [
        (1, 1)
    ]
    assert fallbacks(project_id, start, end, group_by="user.tier") == [
        ("enterprise", 1, 1),
        ("free", 1, 0),
        ("pro", 1, 0),
    ]


def test_route_share_latency_and_labels_of_a_short_window(project_id) -> None:
    filters = metrics.Filters((project_id,), *window("10:45", "11:00"))

    share = metrics.compute("route-share", filters).rows
    latency = metrics.compute("latency", filters).rows
    labels = metrics.compute("label-quality", filters).rows

    assert {(r["route"], r["count"], r["n"]) for r in share} == {("billing", 1, 2), ("tech", 1, 2)}
    assert {(r["route"], r["n"]) for r in latency} == {("billing", 1), ("tech", 1)}
    [row] = labels
    assert (row["n"], row["confusion"]["labels"]) == (2, ["billing", "tech"])
    # Rows: expected label; columns: predicted. Both expected billing, one predicted tech.
    assert row["confusion"]["matrix"] == [[1, 1], [0, 0]]


def test_cost_per_trace_of_a_short_window(project_id) -> None:
    filters = metrics.Filters((project_id,), *window("10:52", "11:05"))

    [row] = metrics.compute("cost-per-trace", filters).rows

    # 10:55 (with its fallback to gpt-large) and 11:02, at metric_data's prices (the
    # later gpt-large price applies on this day).
    intent = [(43 * 0.10 + 3 * 0.40) / 1e6, (44 * 0.10 + 3 * 0.40) / 1e6]
    fallback = (800 * 5.0 + 120 * 20.0) / 1e6
    assert (row["traces"], row["n"]) == (2, 2)
    assert row["mean_usd"] == pytest.approx((intent[0] + fallback + intent[1]) / 2)


def test_an_hourly_series_puts_the_partial_hours_in_their_hours(project_id) -> None:
    result = metrics.compute(
        "fallback-rate",
        metrics.Filters((project_id,), *window("10:45", "11:15")),
        interval="hour",
    )
    assert [(r["time"], r["n"], r["count"]) for r in result.rows] == [
        (at("10:00").isoformat(), 2, 1),
        (at("11:00").isoformat(), 1, 0),
    ]


def test_the_result_reports_the_exact_window(project_id) -> None:
    start, end = window("10:48", "10:53")
    result = metrics.compute("fallback-rate", metrics.Filters((project_id,), start, end))
    assert (result.start, result.end) == (start, end)


@pytest.mark.parametrize(
    ("start", "end", "whole", "partial"),
    [
        ("10:48", "10:53", None, [("10:48", "10:53")]),
        ("10:00", "10:05", None, [("10:00", "10:05")]),
        ("10:50", "11:05", None, [("10:50", "11:00"), ("11:00", "11:05")]),
        ("10:30", "12:00", ("11:00", "12:00"), [("10:30", "11:00")]),
        ("10:00", "12:00", ("10:00", "12:00"), []),
        ("09:59", "12:01", ("10:00", "12:00"), [("09:59", "10:00"), ("12:00", "12:01")]),
    ],
)
def test_a_window_splits_into_whole_and_partial_hours(start, end, whole, partial) -> None:
    assert whole_hours(at(start), at(end)) == (window(*whole) if whole else None)
    assert partial_hours(at(start), at(end)) == [window(*p) for p in partial]


def _normalised(table: str, rows: list[tuple]) -> list[tuple]:
    """Without the width; the cost sum rounded (floats summed in another order differ in
    their last bits) and the unpriced models as a set."""
    if table == "dashboard_labelrollup":
        return sorted(row[1:] for row in rows)
    return sorted((*row[1:16], round(row[16], 12), *row[17:21], sorted(row[21])) for row in rows)


def _sums(rows: list[tuple]) -> list[tuple]:
    # ... and the rescue sums (columns 22-24).
    return sorted(
        (*row[1:16], round(row[16], 12), *row[17:19], row[22], *(round(v, 12) for v in row[23:25]))
        for row in rows
    )


@pytest.mark.parametrize("dim_key", ["", "user.tier"])
@pytest.mark.parametrize("table", ["dashboard_rollup", "dashboard_labelrollup"])
def test_partial_hours_are_summed_as_the_hour_rows_are(table, dim_key) -> None:
    # The metric tests' traffic: out of order, priced and unpriced, errors, retries, cache
    # hits, labels with and without an expected label, over 53 hours.
    project = create_project("sums")
    add_prices()
    built = traffic()
    for batch in (0, 1):
        store(project.id, built, batch=batch)
        fold_changes()
    names = _COLUMNS[table]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT hour FROM dashboard_decisionfact WHERE project_id = %s ORDER BY 1",
            [project.id],
        )
        hours = [row[0] for row in cursor.fetchall()]
        assert len(hours) == 53  # 60 traces 53 minutes apart
        compared = 0
        for hour in hours:
            sql, params = partial_hour_rows(
                table, [project.id], [(hour, hour + timedelta(hours=1))], dim_key, {}
            )
            cursor.execute(sql, params)
            summed = cursor.fetchall()
            cursor.execute(
                f"SELECT {names} FROM {table} WHERE project_id = %s AND width = 'h'"  # noqa: S608 (constant SQL; values are parameters)
                " AND bucket = %s AND dim_key = %s",
                [project.id, hour, dim_key],
            )
            stored = cursor.fetchall()
            assert _normalised(table, summed) == _normalised(table, stored), hour
            if table == "dashboard_rollup":
                # Sums-only rows (rates, shares): the same sums, no histograms.
                sql, params = partial_hour_rows(
                    table,
                    [project.id],
                    [(hour, hour + timedelta(hours=1))],
                    dim_key,
                    {},
                    histograms=False,
                )
                cursor.execute(sql, params)
                sums_only = cursor.fetchall()
                # Histograms and unpriced models (columns 19-21) are left out.
                assert {row[19:22] for row in sums_only} == {(None, None, None)}
                assert _sums(sums_only) == _sums(stored)
            compared += len(stored)
    assert compared >= 53


@pytest.fixture
def traffic_project_id() -> int:
    project = create_project("shared")
    add_prices()
    built = traffic(30)
    for batch in (0, 1):
        store(project.id, built, batch=batch)
    fold_changes()
    return project.id


SHARED_QUERIES = [
    {},
    {"group_by": "route"},
    {"group_by": "user.tier"},
    {"micro_model": "intent-mini", "group_by": "language"},
    {"route": "billing", "interval": "hour"},
    {"cohort": ("user.tier", "pro")},
]


@pytest.mark.parametrize("query", SHARED_QUERIES, ids=lambda q: ",".join(map(str, q)) or "all")
def test_shared_partial_hours_give_the_same_answers(traffic_project_id, query) -> None:
    """Inside partial_hours_once() (the pages) every metric reads the partial hours from
    one temporary table per cohort key; the answers are those each query sums itself."""
    from django.test.utils import CaptureQueriesContext

    from tests.dashboard.metric_data import NOW

    start, end = NOW - timedelta(hours=40, minutes=43), NOW - timedelta(hours=3, minutes=19)
    query = dict(query)
    group_by, interval = query.pop("group_by", None), query.pop("interval", None)
    filters = metrics.Filters((traffic_project_id,), start, end, **query)
    names = sorted(metrics.METRICS)

    def answers() -> dict[str, object]:
        out: dict[str, object] = {}
        for name in names:
            try:
                out[name] = metrics.compute(name, filters, group_by, interval).rows
            except metrics.InvalidQuery as exc:  # e.g. eval-fail-rate by route
                out[name] = str(exc)
        return out

    with CaptureQueriesContext(connection) as alone_queries:
        alone = answers()
    with CaptureQueriesContext(connection) as queries, metrics.partial_hours_once():
        shared = answers()

    assert shared == alone
    assert sum(len(rows) for rows in alone.values() if isinstance(rows, list)) >= 8
    created = [q["sql"] for q in queries.captured_queries if "CREATE TEMPORARY" in q["sql"]]
    # One per rollup table (spans, labels) and cohort key read, however many queries.
    assert 1 <= len(created) <= 3
    assert len(queries.captured_queries) >= 12
    assert not any("CREATE TEMPORARY" in q["sql"] for q in alone_queries.captured_queries)


@pytest.mark.parametrize("cohort", [None, ("user.tier", "pro")])
def test_a_page_reads_its_label_rows_and_edge_facts_once(traffic_project_id, cohort) -> None:
    """The micro model page's label quality, confidence histogram and threshold optimiser
    ask the label rollups the same question: inside partial_hours_once() it is read once,
    and the edges' facts are found through the index once for every partial-hour sum,
    with the answers of the unshared reads."""
    from django.test.utils import CaptureQueriesContext

    from dashboard.metrics.thresholds import threshold_table
    from tests.dashboard.metric_data import NOW

    start, end = NOW - timedelta(hours=40, minutes=43), NOW - timedelta(hours=3, minutes=19)
    f = metrics.Filters((traffic_project_id,), start, end, micro_model="intent-mini", cohort=cohort)

    def answers() -> tuple:
        return (
            metrics.label_quality(f).rows,
            metrics.confidence_histogram(f),
            threshold_table(f, 0.9),
            metrics.fallback_rate(f, "route").rows,
            metrics.latency(f, "route").rows,
        )

    alone = answers()
    with CaptureQueriesContext(connection) as queries, metrics.partial_hours_once():
        shared = answers()
    assert shared == alone
    assert alone[0][0]["n"] > 0 and sum(alone[1]["pass"]) > 0
    sqls = [q["sql"] for q in queries.captured_queries]
    assert sum("FROM (SELECT width" in s and "dashboard_labelrollup" in s for s in sqls) == 1
    # The facts of the two partial hours: one read through the index, into a copy.
    assert sum("FROM dashboard_decisionfact" in s and "(hour = " in s for s in sqls) == 1
