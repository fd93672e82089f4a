"""Every metric read from the rollups equals the same metric computed from the raw span
rows, on hand-built traffic that arrives out of order (roots with the cohort last)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection

from dashboard import metrics
from dashboard.metrics.histograms import RESOLUTION_FACTOR
from dashboard.metrics.refresh import fold_changes, rebuild_all_rollups
from tests.dashboard.metric_data import (
    NOW,
    add_prices,
    build_trace,
    by,
    nearest_rank,
    raw_decisions,
    raw_trace_cost,
    store,
    traffic,
)
from tracestore.services import create_project

pytestmark = pytest.mark.django_db

FULL = (NOW - timedelta(hours=60), NOW + timedelta(days=1))
# Ragged: starts and ends mid-hour, crosses whole days in between.
RAGGED = (NOW - timedelta(hours=40, minutes=43), NOW - timedelta(hours=2, minutes=10))


@pytest.fixture
def loaded():
    project = create_project("metrics")
    add_prices()
    built = traffic()
    store(project.id, built, batch=0)
    fold_changes()  # folds the children-first half of out-of-order traces...
    store(project.id, built, batch=1)
    fold_changes()  # ...and again once their roots (with the cohort) arrive
    return project.id, built


def _in_range(decisions, start, end):
    # Exactly the window: a ragged window's partial hours are read from the facts.
    return [d for d in decisions if start <= d.trace.summary.start_time < end]


def _primary(decisions):
    seen, out = set(), []
    for d in decisions:
        if d.trace.summary.trace_id not in seen:
            seen.add(d.trace.summary.trace_id)
            out.append(d)
    return out


RATES = {
    "fallback-rate": lambda d: d.fallback,
    "retry-rate": lambda d: d.retry,
    "cache-hit-rate": lambda d: d.cache_hit,
    "error-rate": lambda d: d.error,
}


@pytest.mark.parametrize("window", [FULL, RAGGED], ids=["full", "ragged"])
@pytest.mark.parametrize("group_by", [None, "route", "user.tier"])
@pytest.mark.parametrize("name", sorted(RATES))
def test_rates_match_raw_rows(loaded, window, group_by, name) -> None:
    project_id, built = loaded
    decisions = _in_range(raw_decisions(project_id, built), *window)
    result = metrics.compute(name, metrics.Filters((project_id,), *window), group_by=group_by)

    key = {
        None: lambda d: None,
        "route": lambda d: d.route,
        "user.tier": lambda d: d.trace.summary.cohort.get("user.tier"),
    }[group_by]
    expected = {
        group: (len(ds), sum(1 for d in ds if RATES[name](d)))
        for group, ds in by(decisions, key).items()
        if group is not None or group_by is None
    }
    got = {row["group"]: (row["n"], row["count"]) for row in result.rows}
    assert got == expected
    assert all(row["low"] <= row["rate"] <= row["high"] for row in result.rows)


def test_a_cohort_filter_matches_raw_rows_with_cohorts_only_on_roots(loaded) -> None:
    project_id, built = loaded
    decisions = raw_decisions(project_id, built)
    filters = metrics.Filters((project_id,), *FULL, cohort=("user.tier", "enterprise"))

    result = metrics.compute("fallback-rate", filters, group_by="route")

    chosen = [d for d in decisions if d.trace.summary.cohort.get("user.tier") == "enterprise"]
    expected = {
        route: (len(ds), sum(d.fallback for d in ds))
        for route, ds in by(chosen, lambda d: d.route).items()
    }
    assert {row["group"]: (row["n"], row["count"]) for row in result.rows} == expected
    assert sum(n for n, _ in expected.values()) == 28  # tier read from roots that came last


@pytest.mark.parametrize("window", [FULL, RAGGED], ids=["full", "ragged"])
def test_route_share_matches_raw_rows(loaded, window) -> None:
    project_id, built = loaded
    decisions = _in_range(raw_decisions(project_id, built), *window)

    result = metrics.compute("route-share", metrics.Filters((project_id,), *window))

    total = len(decisions)
    expected = {route: len(ds) for route, ds in by(decisions, lambda d: d.route).items()}
    assert {row["route"]: row["count"] for row in result.rows} == expected
    assert {row["n"] for row in result.rows} == {total}
    assert sum(row["share"] for row in result.rows) == pytest.approx(1.0)


def test_route_share_per_day_sums_to_one_in_each_window(loaded) -> None:
    project_id, built = loaded
    decisions = raw_decisions(project_id, built)

    result = metrics.compute("route-share", metrics.Filters((project_id,), *FULL), interval="day")

    per_day = by(decisions, lambda d: d.trace.summary.start_time.date().isoformat())
    got = by(result.rows, lambda row: row["time"][:10])
    assert set(got) == set(per_day)
    for day, rows in got.items():
        assert rows[0]["n"] == len(per_day[day])
        assert sum(row["share"] for row in rows) == pytest.approx(1.0)


@pytest.mark.parametrize("window", [FULL, RAGGED], ids=["full", "ragged"])
def test_latency_percentiles_are_within_the_bucket_resolution(loaded, window) -> None:
    project_id, built = loaded
    decisions = _in_range(raw_decisions(project_id, built), *window)

    result = metrics.compute("latency", metrics.Filters((project_id,), *window))

    raw = by(decisions, lambda d: (d.micro_model, d.route))
    assert {(r["micro_model"], r["route"]): r["n"] for r in result.rows} == {
        k: len(v) for k, v in raw.items()
    }
    for row in result.rows:
        values = [d.latency_ms for d in raw[(row["micro_model"], row["route"])]]
        for p, field in ((0.5, "p50_ms"), (0.9, "p90_ms"), (0.99, "p99_ms")):
            exact = nearest_rank(values, p)
            assert exact / RESOLUTION_FACTOR <= row[field] <= exact * RESOLUTION_FACTOR


@pytest.mark.parametrize("window", [FULL, RAGGED], ids=["full", "ragged"])
@pytest.mark.parametrize("group_by", [None, "route", "language"])
def test_cost_per_trace_matches_raw_rows(loaded, window, group_by) -> None:
    project_id, built = loaded
    traces = _primary(_in_range(raw_decisions(project_id, built), *window))

    result = metrics.compute(
        "cost-per-trace", metrics.Filters((project_id,), *window), group_by=group_by
    )

    key = {
        None: lambda d: None,
        "route": lambda d: d.route,
        "language": lambda d: d.trace.summary.cohort.get("language"),
    }[group_by]
    for row in result.rows:
        group = [d for d in traces if key(d) == row["group"]]
        costs = [raw_trace_cost(d.trace) for d in group]
        known = [c for c in costs if c is not None]
        assert row["traces"] == len(group)
        assert row["n"] == len(known)
        assert row["uncosted_traces"] == len(group) - len(known)
        assert row["mean_usd"] == pytest.approx(sum(known) / len(known))
        for p, field in ((0.5, "p50_usd"), (0.9, "p90_usd")):
            exact = nearest_rank(known, p)
            assert exact / RESOLUTION_FACTOR <= row[field] <= exact * RESOLUTION_FACTOR
        prompt = sum(d.trace.summary.prompt_tokens for d in group)
        assert row["prompt_tokens_per_trace"] == pytest.approx(prompt / len(group))
    assert sum(row["traces"] for row in result.rows) == len(traces)


def test_unknown_prices_are_listed_and_never_costed_as_zero(loaded) -> None:
    project_id, _ = loaded

    result = metrics.compute("cost-per-trace", metrics.Filters((project_id,), *FULL))

    assert result.rows[0]["uncosted_traces"] == 1
    assert any("mystery-xl" in note for note in result.notes)


@pytest.mark.parametrize("window", [FULL, RAGGED], ids=["full", "ragged"])
@pytest.mark.parametrize("group_by", [None, "user.tier"])
def test_label_quality_matches_raw_rows(loaded, window, group_by) -> None:
    project_id, built = loaded
    decisions = _in_range(raw_decisions(project_id, built), *window)

    result = metrics.compute(
        "label-quality", metrics.Filters((project_id,), *window), group_by=group_by
    )

    key = (lambda d: None) if group_by is None else (lambda d: d.trace.summary.cohort["user.tier"])
    for row in result.rows:
        group = [d for d in decisions if key(d) == row["group"]]
        known = [d for d in group if d.expected]
        assert row["n"] == len(known)
        assert row["without_expected_label"] == len(group) - len(known)
        labels = row["confusion"]["labels"]
        for e, expected_label in enumerate(labels):
            for p, predicted in enumerate(labels):
                assert row["confusion"]["matrix"][e][p] == sum(
                    1 for d in known if d.expected == expected_label and d.label == predicted
                )
        for entry in row["labels"]:
            tp = sum(1 for d in known if d.label == d.expected == entry["label"])
            predicted = sum(1 for d in known if d.label == entry["label"])
            actual = sum(1 for d in known if d.expected == entry["label"])
            assert entry["precision"] == (pytest.approx(tp / predicted) if predicted else None)
            assert entry["recall"] == (pytest.approx(tp / actual) if actual else None)


def test_a_late_root_moves_a_trace_to_its_cohort_and_start() -> None:
    project = create_project("late")
    add_prices()
    b = build_trace(
        1,
        start=NOW - timedelta(hours=5),
        route="billing",
        label="billing",
        expected=None,
        tier="pro",
        fallback=True,
    )
    child_only = b.batches[0]
    store(project.id, [b], batch=0)
    fold_changes()
    filters = metrics.Filters((project.id,), *FULL, cohort=("user.tier", "pro"))
    assert metrics.compute("fallback-rate", filters).rows == []

    store(project.id, [b], batch=1)
    fold_changes()

    rows = metrics.compute("fallback-rate", filters).rows
    assert [(row["n"], row["count"]) for row in rows] == [(1, 1)]
    assert len(child_only) == 2


def test_rebuilding_everything_gives_the_same_answers(loaded) -> None:
    project_id, _ = loaded
    filters = metrics.Filters((project_id,), *RAGGED)
    before = {name: metrics.compute(name, filters, "route").rows for name in RATES}

    rebuild_all_rollups()

    assert {name: metrics.compute(name, filters, "route").rows for name in RATES} == before


@pytest.mark.usefixtures("loaded")
def test_another_projects_traffic_is_not_counted() -> None:
    other = create_project("other")

    assert metrics.compute("fallback-rate", metrics.Filters((other.id,), *FULL)).rows == []


def test_the_wilson_interval_of_a_known_proportion() -> None:
    low, high = metrics.wilson_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    assert metrics.wilson_interval(0, 0) is None


def test_a_second_cohort_dimension_cannot_be_combined() -> None:
    filters = metrics.Filters((1,), *FULL, cohort=("language", "en"))
    with pytest.raises(metrics.InvalidQuery):
        metrics.compute("fallback-rate", filters, group_by="user.tier")


def test_expiry_drops_facts_and_rollups_past_retention(loaded) -> None:
    from dashboard.metrics.refresh import expire_before

    project_id, _ = loaded
    cutoff = NOW - timedelta(hours=30)

    expire_before(cutoff)

    rows = metrics.compute("route-share", metrics.Filters((project_id,), *FULL)).rows
    kept = metrics.compute(
        "route-share", metrics.Filters((project_id,), metrics.floor_hour(cutoff), FULL[1])
    ).rows
    assert rows == kept and sum(r["count"] for r in rows) == 35


def test_resumming_from_facts_picks_up_a_new_cohort_dimension(loaded) -> None:
    from dashboard.metrics.refresh import resum_rollups
    from tracestore.models import CohortDimension

    project_id, _ = loaded
    CohortDimension.objects.filter(key="language").delete()
    resum_rollups()
    filters = metrics.Filters((project_id,), *FULL)
    with pytest.raises(metrics.InvalidQuery):
        metrics.compute("fallback-rate", filters, group_by="language")

    CohortDimension.objects.create(key="language", display_name="Language")
    resum_rollups()

    rows = metrics.compute("fallback-rate", filters, group_by="language").rows
    assert {row["group"]: row["n"] for row in rows} == {"de": 30, "en": 30}


def test_day_rows_equal_the_sums_of_their_days_facts(loaded) -> None:
    """Days are re-summed from the hour rows; summed from the facts directly (in SQL, not
    by the fold) they are the same."""
    project_id, _ = loaded
    day = "date_trunc('day', hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    priced = "is_primary AND cost IS NOT NULL AND cardinality(unpriced_models) = 0"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {day}, micro_model, model, route, count(*) FILTER (WHERE is_decision),"  # noqa: S608 (constant SQL)
            " count(*) FILTER (WHERE is_decision AND is_fallback),"
            " count(*) FILTER (WHERE is_decision AND is_error),"
            " count(*) FILTER (WHERE is_primary),"
            " coalesce(sum(prompt_tokens) FILTER (WHERE is_primary), 0),"
            f" count(*) FILTER (WHERE {priced}),"
            f" round(coalesce(sum(cost) FILTER (WHERE {priced}), 0)::numeric, 9),"
            " count(*) FILTER (WHERE is_primary AND rescue_cost IS NOT NULL),"
            " round(coalesce(sum(rescue_cost * rescue_cost)"
            " FILTER (WHERE is_primary AND rescue_cost IS NOT NULL), 0)::numeric, 12)"
            " FROM dashboard_decisionfact WHERE project_id = %s GROUP BY 1, 2, 3, 4",
            [project_id],
        )
        from_facts = {tuple(row[:4]): tuple(row[4:]) for row in cursor.fetchall()}
        cursor.execute(
            "SELECT bucket, micro_model, model, route, decisions, fallbacks, errors, traces,"
            " prompt_tokens, costed_traces, round(cost_sum::numeric, 9), rescue_costed,"
            " round(rescue_cost_sq_sum::numeric, 12), latency_hist, cost_hist"
            " FROM dashboard_rollup WHERE project_id = %s AND width = 'd' AND dim_key = ''",
            [project_id],
        )
        rows = cursor.fetchall()
        cursor.execute(
            f"SELECT {day}, micro_model, model, route, label, expected_label, count(*)"  # noqa: S608 (constant SQL)
            " FROM dashboard_decisionfact WHERE project_id = %s AND is_decision"
            " GROUP BY 1, 2, 3, 4, 5, 6",
            [project_id],
        )
        labels_from_facts = {tuple(row[:6]): row[6] for row in cursor.fetchall()}
        cursor.execute(
            "SELECT bucket, micro_model, model, route, label, expected_label, n"
            " FROM dashboard_labelrollup WHERE project_id = %s AND width = 'd' AND dim_key = ''",
            [project_id],
        )
        labels = {tuple(row[:6]): row[6] for row in cursor.fetchall()}
    assert len({key[0] for key in from_facts}) >= 3
    assert {tuple(row[:4]): tuple(row[4:13]) for row in rows} == from_facts
    for row in rows:
        assert sum(row[13]) == row[4]  # every decision in the latency histogram
        assert sum(row[14]) == row[9]  # every fully priced trace in the cost histogram
    assert labels == labels_from_facts
