"""Fallback economics on known-answer traffic: two tiers with designed escalation shares and
token counts, priced by hand here, compared with the metric over whole and partial hours,
the API and the micro model page."""

from __future__ import annotations

import math
import statistics
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from dashboard.metrics import Filters
from dashboard.metrics.economics import economics_row, fallback_economics
from dashboard.metrics.refresh import fold_changes
from dashboard.models import ModelPrice
from tests.builders import TraceBuilder
from tracestore.services import issue_api_key, store_spans

pytestmark = pytest.mark.django_db

# tier -> (traces, escalated)
DESIGN = {"free": (40, 10), "enterprise": (20, 10)}
MICRO_IN, MICRO_OUT = 100, 5
BIG_IN, BIG_OUT = 1000, 200
# USD per million tokens: intent-mini* 0.10 / 0.40, gpt-large 2.50 / 10.00.
MICRO_COST = (MICRO_IN * 0.10 + MICRO_OUT * 0.40) / 1e6
RESCUE_COST = (BIG_IN * 2.50 + BIG_OUT * 10.00) / 1e6


def _hour(now: datetime, back: int) -> datetime:
    return now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=back)


def store_traffic(project_id: int, now: datetime) -> None:
    prices = (("intent-mini*", "0.10", "0.40"), ("gpt-large", "2.50", "10.00"))
    for pattern, price_in, price_out in prices:
        ModelPrice.objects.create(
            model_pattern=pattern,
            input_per_million=Decimal(price_in),
            output_per_million=Decimal(price_out),
            effective_from=(now - timedelta(days=30)).date(),
        )
    start = _hour(now, 3) + timedelta(minutes=10)
    for tier, (traces, escalated) in DESIGN.items():
        for i in range(traces):
            trace = TraceBuilder(start_ns=int(start.timestamp() * 1e9))
            root = trace.span("POST /chat", attrs={"user.tier": tier})
            trace.span(
                "intent",
                parent=root,
                offset_ms=5,
                attrs={
                    "micro_model.name": "intent-mini",
                    "llm.model_name": "intent-mini-v2",
                    "micro_model.label": "billing",
                    "route.name": "billing",
                    "llm.token_count.prompt": MICRO_IN,
                    "llm.token_count.completion": MICRO_OUT,
                },
            )
            if i < escalated:
                trace.span(
                    "fallback",
                    parent=root,
                    offset_ms=60,
                    attrs={
                        "gen_ai.request.model": "gpt-large",
                        "gen_ai.usage.input_tokens": BIG_IN,
                        "gen_ai.usage.output_tokens": BIG_OUT,
                        "route.fallback": True,
                    },
                )
            store_spans(project_id, trace.records())
    fold_changes()


def expected(tier: str, days: float) -> dict:
    traces, escalated = DESIGN[tier]
    actual = traces * MICRO_COST + escalated * RESCUE_COST
    always = traces * RESCUE_COST
    return {
        "n": traces,
        "decisions": traces,
        "rescues": escalated,
        "rescue_rate": escalated / traces,
        "priced_rescues": escalated,
        "rescue_cost": escalated * RESCUE_COST,
        "cost_per_rescue": RESCUE_COST,
        "actual_cost": actual,
        "always_fallback_cost": always,
        "savings": always - actual,
        "savings_per_day": (always - actual) / days,
        "savings_per_1k_traces": (always - actual) / traces * 1000,
    }


@pytest.fixture
def traffic(project):
    now = timezone.now()
    store_traffic(project.id, now)
    return project, now


@pytest.mark.parametrize("ragged", [False, True], ids=["whole-hours", "partial-hours"])
def test_rescue_costs_and_savings_per_tier_are_the_known_answers(traffic, ragged) -> None:
    project, now = traffic
    # Ragged: the range starts 5 minutes into the traffic's hour, which is then read from
    # the facts, not the rollup.
    start = _hour(now, 3) + (timedelta(minutes=5) if ragged else timedelta(0))
    end = _hour(now, 1)
    days = (end - start).total_seconds() / 86400
    filters = Filters((project.id,), start, end, micro_model="intent-mini")

    rows = {row["group"]: row for row in fallback_economics(filters, "user.tier").rows}

    assert set(rows) == {"free", "enterprise"}
    for tier, row in rows.items():
        for field, value in expected(tier, days).items():
            assert row[field] == pytest.approx(value, rel=1e-9), (tier, field)
        low, high = row["rescue_rate_low"], row["rescue_rate_high"]
        assert low < row["rescue_rate"] < high
        # Every rescue costs the same: the cost of one has a zero-width interval.
        for field in ("cost_per_rescue", "savings", "savings_per_day", "savings_per_1k_traces"):
            assert row[f"{field}_low"] == pytest.approx(row[field], rel=1e-6)
            assert row[f"{field}_high"] == pytest.approx(row[field], rel=1e-6)
    # Free: 40 traces, 10 rescued at $0.0045 -> $0.18 always-fallback vs $0.04548 actual.
    assert rows["free"]["savings"] == pytest.approx(0.13452)


def test_all_traffic_per_day_is_the_sum_of_the_tiers(traffic) -> None:
    project, now = traffic
    filters = Filters((project.id,), _hour(now, 3), _hour(now, 1))

    (row,) = fallback_economics(filters).rows

    assert row["rescues"] == 20
    assert row["n"] == 60
    assert row["rescue_cost"] == pytest.approx(20 * RESCUE_COST)


def test_the_economics_endpoint_answers_with_the_same_figures(traffic) -> None:
    project, now = traffic
    client = Client(HTTP_AUTHORIZATION=f"Bearer {issue_api_key(project.id)}")

    response = client.get(
        "/api/v1/micro-models/intent-mini/economics/",
        {
            "start": _hour(now, 3).isoformat(),
            "end": _hour(now, 1).isoformat(),
            "group_by": "user.tier",
        },
    )

    assert response.status_code == 200, response.content
    rows = {row["group"]: row for row in response.json()["results"]}
    assert rows["enterprise"]["rescues"] == 10
    assert rows["enterprise"]["savings_per_1k_traces"] == pytest.approx(
        expected("enterprise", 1 / 12)["savings_per_1k_traces"]
    )


def test_the_micro_model_page_shows_the_economics(traffic, member_client: Client) -> None:
    html = member_client.get(
        "/micro-models/intent-mini/?range=24h&dimension=user.tier"
    ).content.decode()

    assert 'id="fallback-economics"' in html
    assert 'id="economics-series" type="application/json"' in html
    assert 'id="economics-by-cohort" type="application/json"' in html
    # 60 traces, 20 rescued at $0.0045: always-fallback $0.27, actual $0.09072.
    assert "$0.179" in html  # $0.17928, to three significant digits
    assert "33.3%" in html


def test_the_cost_of_a_rescue_has_a_normal_interval_from_its_sums() -> None:
    costs = [0.001, 0.002, 0.003, 0.004]
    half = 1.959963984540054 * statistics.stdev(costs) / math.sqrt(len(costs))

    row = economics_row(
        decisions=100,
        rescues=4,
        costed_traces=100,
        cost_sum=0.05,
        rescue_costed=4,
        rescue_cost_sum=sum(costs),
        days=2.0,
        rescue_cost_sq_sum=sum(c * c for c in costs),
    )

    assert row["cost_per_rescue"] == pytest.approx(0.0025)
    assert row["cost_per_rescue_low"] == pytest.approx(0.0025 - half)
    assert row["cost_per_rescue_high"] == pytest.approx(0.0025 + half)
    # 100 traces at the cost of a rescue, less the $0.05 they cost, over 2 days.
    assert row["savings_per_day"] == pytest.approx((100 * 0.0025 - 0.05) / 2)
    assert row["savings_per_day_low"] == pytest.approx((100 * (0.0025 - half) - 0.05) / 2)
    assert row["savings_per_1k_traces_high"] == pytest.approx((100 * (0.0025 + half) - 0.05) * 10)


def test_one_priced_rescue_gives_a_cost_without_an_interval() -> None:
    row = economics_row(10, 1, 10, 0.01, 1, 0.004, 1.0, 0.004**2)

    assert row["cost_per_rescue"] == pytest.approx(0.004)
    assert row["cost_per_rescue_low"] is None
    assert row["savings_low"] is None
