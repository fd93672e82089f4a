"""Routing advice on the demo data (``microlens demo``, the README's screenshot): its
evaluations are sampled at 5-20 % and always taken on fallback or error, so a cohort's
effective n is a fraction of its raw n; the default ``min_n`` still lets the cohorts whose
interval lies wholly above the threshold through."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dashboard.demo_data import ensure_demo_prices, seed_demo_data
from dashboard.metrics import Filters
from dashboard.metrics.evaluations import fold_evaluations
from dashboard.metrics.refresh import fold_changes
from dashboard.metrics.routing import routing_advice
from tracestore.services import create_project

pytestmark = pytest.mark.django_db

# The micro models, the overall economics, the dimensions; per dimension one economics and
# one evaluation rollup query, each with its look-up of the dimensions (3 + 4 x 4); and
# per dimension the two partial hours' evaluation counts for every micro model (2 x 4).
# Counting those per micro model took 2 x 4 x 5 (59 queries in all).
QUERIES = 27


@pytest.fixture
def demo_week() -> Filters:
    project = create_project("demo")
    ensure_demo_prices()
    now = timezone.now()
    # What the README's screenshot test seeds: 20,000 spans over 7 days (seed 7).
    seed_demo_data(project.id, spans=20_000, days=7, end_ns=int(now.timestamp() * 1e9))
    fold_changes()
    fold_evaluations()
    return Filters((project.id,), now - timedelta(days=7), now + timedelta(seconds=1))


def _rounded(advice: list[dict]) -> list[dict]:
    return [
        {
            **one,
            **{
                action: [
                    {
                        k: round(v, 9) if k.startswith("usd") and v is not None else v
                        for k, v in row.items()
                    }
                    for row in one[action]
                ]
                for action in ("send", "take_back")
            },
        }
        for one in advice
    ]


def _sent(advice: dict) -> list[tuple[str, str, str]]:
    return sorted((a["dimension"], a["value"], a["evaluator"]) for a in advice["send"])


def test_the_demo_data_yields_advice_for_intent_mini(demo_week) -> None:
    (advice,) = routing_advice(demo_week.with_(micro_model="intent-mini"))

    # Groundedness fails on search (n=35) and on pro (n=18), their intervals wholly above
    # 10 %; sampled, their effective n are about 13 and 10. Pro and ja have 11 and 10
    # escalated decisions with the fallback's label: there the accuracy gap stands in for
    # LabelCheck (ja's LabelCheck fail rate is not sent), and neither gap's interval clears
    # 10 %; pro's groundedness, which the labels say nothing about, still counts.
    assert _sent(advice) == [
        ("task.type", "search", "groundedness"),
        ("user.tier", "pro", "groundedness"),
    ]
    assert advice["take_back"] == []
    for row in advice["send"]:
        assert row["low"] > 0.10
        assert 10 <= row["effective_n"] < row["n"]
        assert f"effective n={row['effective_n']:.1f})" in row["message"]
        assert row["usd_per_day"] is not None and row["usd_per_day"] > 0


def test_a_min_n_of_30_leaves_ja_to_its_label_check_fail_rate(demo_week) -> None:
    (advice,) = routing_advice(demo_week.with_(micro_model="intent-mini"), min_n=30)

    # Ja's 10 pairs are too few now: its LabelCheck fail rate (7 of 35) decides, and its
    # interval's lower bound lies just above 10 %. Groundedness on search falls short.
    (send,) = advice["send"]
    assert (send["dimension"], send["value"], send["criterion"]) == ("language", "ja", "fail_rate")
    assert (send["evaluator"], send["n"], send["fail_rate"]) == ("label_check", 35, 0.2)
    assert send["low"] > 0.10
    assert advice["take_back"] == []


def test_the_demo_data_yields_advice_decided_by_the_accuracy_gap(demo_week) -> None:
    def english(threshold: float) -> list[tuple]:
        (advice,) = routing_advice(demo_week.with_(micro_model="router-tiny"), threshold=threshold)
        assert not [r for r in advice["send"] if r["value"] == "en"]
        return sorted(
            (r["criterion"], r["evaluator"], r["n"])
            for r in advice["take_back"]
            if (r["dimension"], r["value"]) == ("language", "en")
        )

    # router-tiny's English traffic: 30 escalated decisions with the fallback's label, where
    # the fallback does no better (gap interval wholly below 8.4 points). The gap stands in
    # for LabelCheck, whose fail rate (9.5 %, 5.8-15.4 %) would have kept the cohort at 13 %;
    # groundedness (0.1-2.0 %) and task completion (0.9-12.4 %) still count.
    assert english(0.13) == [
        ("accuracy_gap", None, 30),
        ("fail_rate", "groundedness", 52),
        ("fail_rate", "task_completion", 59),
    ]
    # At 10 % task completion's interval holds the threshold: not taken back.
    assert english(0.10) == []
    (advice,) = routing_advice(demo_week.with_(micro_model="router-tiny"), threshold=0.13)
    (gap,) = [
        r for r in advice["take_back"] if r["criterion"] == "accuracy_gap" and r["value"] == "en"
    ]
    assert gap["fail_rate"] is None and gap["high"] < 0.13
    assert gap["low"] <= gap["accuracy_gap"] <= gap["high"]
    assert "n=30 escalated decisions)" in gap["message"]


def test_every_micro_model_at_once_answers_as_each_alone_in_a_fixed_number_of_queries(
    demo_week,
) -> None:
    # The window is ragged at both ends: its partial hours are counted from the evaluation
    # results, once per hour and cohort dimension for every micro model.
    with CaptureQueriesContext(connection) as queries:
        advice = routing_advice(demo_week)

    names = [a["micro_model"] for a in advice]
    assert len(names) == len(set(names)) >= 3
    alone = [routing_advice(demo_week.with_(micro_model=n))[0] for n in names]
    # The costs are sums over other row orders: equal to the last few bits.
    assert _rounded(alone) == _rounded(advice)
    assert len(queries) == QUERIES, [q["sql"][:80] for q in queries]
