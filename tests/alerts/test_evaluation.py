"""Rules evaluated on hand-built traffic through the metrics module: they fire, stay quiet
on noise, resolve, split per cohort value, compare with last week, and do not flap."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dashboard.alerts.models import AlertEvaluation, AlertEvent, AlertRule, AlertState
from dashboard.alerts.services import evaluate_alert_rule
from tests.dashboard.metric_data import NOW

from .conftest import decisions, rule

pytestmark = pytest.mark.django_db

MINUTE = timedelta(minutes=1)


def _state(rule_id: int, split_value: str = "") -> str:
    return AlertState.objects.get(rule_id=rule_id, split_value=split_value).state


def _events(rule_id: int) -> list[tuple[str, str]]:
    return list(
        AlertEvent.objects.filter(rule_id=rule_id)
        .order_by("created_at", "id")
        .values_list("split_value", "kind")
    )


def test_a_rule_above_its_threshold_fires_with_the_value_that_did_it(project) -> None:
    decisions(project.id, 40, fallbacks=10)
    r = rule(project.id)

    outcome = evaluate_alert_rule(r.id, NOW)

    assert _state(r.id) == "firing"
    event = AlertEvent.objects.get(rule=r)
    assert (event.kind, event.value, event.n, event.threshold) == ("fired", 0.25, 40, 0.10)
    assert event.low is not None and event.low < 0.25 < event.high
    assert outcome.events == [event.id]
    evaluation = AlertEvaluation.objects.get(rule=r)
    assert (evaluation.value, evaluation.n, evaluation.state) == (0.25, 40, "firing")


def test_a_rule_below_its_threshold_stays_ok(project) -> None:
    decisions(project.id, 40, fallbacks=2)
    r = rule(project.id)

    evaluate_alert_rule(r.id, NOW)

    assert _state(r.id) == "ok"
    assert _events(r.id) == []
    assert AlertEvaluation.objects.get(rule=r).value == 0.05


def test_a_small_sample_does_not_fire_in_statistical_mode(project) -> None:
    # 2 of 6 is 33 % but its Wilson interval reaches down to about 10 %.
    decisions(project.id, 6, fallbacks=2)
    noisy = rule(project.id, statistical=True, min_n=1, threshold=0.15)
    plain = rule(project.id, name="plain", min_n=1, threshold=0.15)

    evaluate_alert_rule(noisy.id, NOW)
    evaluate_alert_rule(plain.id, NOW)

    assert _state(noisy.id) == "ok"
    evaluation = AlertEvaluation.objects.get(rule=noisy)
    assert evaluation.low < 0.15 < evaluation.value
    assert _state(plain.id) == "firing"


def test_statistical_mode_fires_when_the_whole_interval_is_beyond(project) -> None:
    decisions(project.id, 200, fallbacks=100)
    r = rule(project.id, statistical=True, threshold=0.3)

    evaluate_alert_rule(r.id, NOW)

    assert _state(r.id) == "firing"


def test_below_minimum_n_the_rule_neither_fires_nor_resolves(project) -> None:
    decisions(project.id, 5, fallbacks=5)
    r = rule(project.id, min_n=10)

    evaluate_alert_rule(r.id, NOW)

    assert _state(r.id) == "ok"
    assert AlertEvaluation.objects.get(rule=r).n == 5


def test_a_firing_rule_resolves_once_the_value_is_back(project) -> None:
    decisions(project.id, 40, fallbacks=10, at=NOW - timedelta(minutes=20))
    r = rule(project.id)
    evaluate_alert_rule(r.id, NOW)
    # Two hours later the last hour is healthy.
    later = NOW + timedelta(hours=2)
    decisions(project.id, 40, fallbacks=1, at=later - timedelta(minutes=20), first=100)

    evaluate_alert_rule(r.id, later)

    assert _state(r.id) == "ok"
    assert _events(r.id) == [("", "fired"), ("", "resolved")]
    resolved = AlertEvent.objects.get(rule=r, kind="resolved")
    assert (resolved.value, resolved.n) == (0.025, 40)


def test_an_evaluation_run_twice_in_one_period_changes_nothing(project) -> None:
    decisions(project.id, 40, fallbacks=10)
    r = rule(project.id, consecutive=2)

    evaluate_alert_rule(r.id, NOW)
    evaluate_alert_rule(r.id, NOW + timedelta(seconds=5))  # the same minute

    assert _state(r.id) == "pending"
    assert AlertEvaluation.objects.filter(rule=r).count() == 1
    evaluate_alert_rule(r.id, NOW + MINUTE)
    evaluate_alert_rule(r.id, NOW + MINUTE)
    assert _state(r.id) == "firing"
    assert _events(r.id) == [("", "fired")]


def test_consecutive_evaluations_are_needed_before_firing(project) -> None:
    decisions(project.id, 40, fallbacks=10)
    r = rule(project.id, consecutive=3)

    states = []
    for minute in range(3):
        evaluate_alert_rule(r.id, NOW + minute * MINUTE)
        states.append(_state(r.id))

    assert states == ["pending", "pending", "firing"]
    assert _events(r.id) == [("", "fired")]


def test_hysteresis_keeps_a_hovering_value_firing(project) -> None:
    decisions(project.id, 40, fallbacks=10, at=NOW - timedelta(minutes=20))
    r = rule(project.id, threshold=0.2, hysteresis=0.05)
    evaluate_alert_rule(r.id, NOW)
    assert _state(r.id) == "firing"
    # Next hour: 18 % (below 20 % but not below 15 %) -> still firing.
    t1 = NOW + timedelta(hours=2)
    decisions(project.id, 50, fallbacks=9, at=t1 - timedelta(minutes=20), first=100)
    evaluate_alert_rule(r.id, t1)
    assert _state(r.id) == "firing"
    # Then 10 %: resolved.
    t2 = NOW + timedelta(hours=4)
    decisions(project.id, 50, fallbacks=5, at=t2 - timedelta(minutes=20), first=200)
    evaluate_alert_rule(r.id, t2)

    assert _state(r.id) == "ok"
    assert _events(r.id) == [("", "fired"), ("", "resolved")]


def test_a_split_rule_keeps_one_state_per_cohort_value(project) -> None:
    decisions(project.id, 40, fallbacks=0, tier="free")
    decisions(project.id, 40, fallbacks=20, tier="enterprise", first=100)
    r = rule(project.id, split_by="user.tier")

    evaluate_alert_rule(r.id, NOW)

    assert _state(r.id, "enterprise") == "firing"
    assert _state(r.id, "free") == "ok"
    assert _events(r.id) == [("enterprise", "fired")]
    assert AlertEvent.objects.get(rule=r).value == 0.5


def test_a_cohort_filter_reads_only_that_cohort(project) -> None:
    decisions(project.id, 40, fallbacks=0, tier="free")
    decisions(project.id, 40, fallbacks=20, tier="enterprise", first=100)
    free = rule(project.id, cohort_key="user.tier", cohort_value="free")

    evaluate_alert_rule(free.id, NOW)

    assert _state(free.id) == "ok"
    assert AlertEvaluation.objects.get(rule=free).n == 40


def test_a_relative_change_rule_compares_with_the_same_window_last_week(project) -> None:
    week_ago = NOW - timedelta(days=7)
    decisions(project.id, 40, fallbacks=4, at=week_ago - timedelta(minutes=20))
    decisions(project.id, 40, fallbacks=8, at=NOW - timedelta(minutes=20), first=100)
    up_30 = rule(project.id, compare_to="week", threshold=0.3)
    up_150 = rule(project.id, name="doubled and more", compare_to="week", threshold=1.5)

    evaluate_alert_rule(up_30.id, NOW)
    evaluate_alert_rule(up_150.id, NOW)

    evaluation = AlertEvaluation.objects.get(rule=up_30)
    assert evaluation.value == pytest.approx(1.0)  # 10 % -> 20 %: +100 %
    assert _state(up_30.id) == "firing"
    assert _state(up_150.id) == "ok"


def test_route_share_and_label_recall_read_the_named_row(project) -> None:
    decisions(project.id, 30, route="billing")
    decisions(project.id, 10, route="tech", first=100)
    share = rule(project.id, metric="route-share", route="tech", comparator="below", threshold=0.3)
    recall = rule(
        project.id,
        name="recall",
        metric="label-recall",
        label="billing",
        comparator="below",
        threshold=0.9,
    )

    evaluate_alert_rule(share.id, NOW)
    evaluate_alert_rule(recall.id, NOW)

    share_eval = AlertEvaluation.objects.get(rule=share)
    assert (share_eval.value, share_eval.n) == (0.25, 40)
    assert _state(share.id) == "firing"
    recall_eval = AlertEvaluation.objects.get(rule=recall)
    assert (recall_eval.value, recall_eval.n) == (1.0, 30)
    assert _state(recall.id) == "ok"


def test_a_latency_percentile_rule_reads_its_micro_models_histogram(project) -> None:
    decisions(project.id, 40)  # 30 ms decisions
    slow = rule(project.id, name="p90 over 20 ms", metric="latency-p90", threshold=20.0)
    fast = rule(project.id, name="p90 over 100 ms", metric="latency-p90", threshold=100.0)

    evaluate_alert_rule(slow.id, NOW)
    evaluate_alert_rule(fast.id, NOW)

    evaluation = AlertEvaluation.objects.get(rule=slow)
    assert evaluation.n == 40
    assert evaluation.value == pytest.approx(30, rel=0.1)  # log buckets: within ±9.1 %
    assert (_state(slow.id), _state(fast.id)) == ("firing", "ok")


def test_a_longer_evaluation_period_does_not_stall_the_rule(project, settings) -> None:
    decisions(project.id, 40, fallbacks=10)
    r = rule(project.id, consecutive=3)
    settings.MICROLENS_ALERT_EVAL_SECONDS = 30
    evaluate_alert_rule(r.id, NOW)
    settings.MICROLENS_ALERT_EVAL_SECONDS = 300  # ticks are now 10 times smaller numbers

    evaluate_alert_rule(r.id, NOW + 5 * MINUTE)
    evaluate_alert_rule(r.id, NOW + 10 * MINUTE)

    assert AlertEvaluation.objects.filter(rule=r).count() == 3
    assert _state(r.id) == "firing"


def test_a_five_minute_rule_reads_exactly_its_five_minutes(project) -> None:
    # 12:05: 100 decisions, none escalated; 12:26: 20 decisions, 10 escalated. One hour
    # bucket holds both; each rule reads its own window of it.
    decisions(project.id, 100, fallbacks=0, at=NOW - 25 * MINUTE)
    decisions(project.id, 20, fallbacks=10, at=NOW - 4 * MINUTE, first=100)
    five = rule(project.id, name="5 min", window_seconds=300)
    quarter = rule(project.id, name="15 min", window_seconds=900)
    hour = rule(project.id, name="1 h", window_seconds=3600)

    # Ten minutes earlier the 15-minute window (12:05 to 12:20) holds only the quiet ones.
    evaluate_alert_rule(quarter.id, NOW - 10 * MINUTE)
    earlier = AlertEvaluation.objects.get(rule=quarter)
    assert (earlier.value, earlier.n) == (0.0, 100)

    for r in (five, quarter, hour):
        evaluate_alert_rule(r.id, NOW)

    readings = {
        r.name: AlertEvaluation.objects.values_list("value", "n").get(rule=r, evaluated_at=NOW)
        for r in (five, quarter, hour)
    }
    assert readings == {"5 min": (0.5, 20), "15 min": (0.5, 20), "1 h": (10 / 120, 120)}
    assert (_state(five.id), _state(quarter.id), _state(hour.id)) == ("firing", "firing", "ok")


def test_rules_saved_with_a_percentage_as_fraction_are_read_as_percent(project) -> None:
    from importlib import import_module

    from django.apps import apps

    migration = import_module("dashboard.alerts.migrations.0004_rate_thresholds_typed_as_percent")
    typed_10 = rule(project.id, name="typed 10", threshold=10.0, hysteresis=2.0)
    rule(project.id, name="fraction", threshold=0.1)
    rule(project.id, name="latency", metric="latency-p90", threshold=250.0)
    rule(project.id, name="doubled", compare_to="week", threshold=1.5)
    decisions(project.id, 50, fallbacks=6)

    migration.thresholds_typed_as_percent(apps, None)

    stored = dict(AlertRule.objects.values_list("name", "threshold"))
    assert stored == {"typed 10": 0.1, "fraction": 0.1, "latency": 250.0, "doubled": 1.5}
    assert AlertRule.objects.get(pk=typed_10.pk).hysteresis == 0.02
    evaluate_alert_rule(typed_10.id, NOW)
    assert _state(typed_10.id) == "firing"  # 12 % above 10 %
