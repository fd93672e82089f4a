"""Routing advice's accuracy gap on known-answer traffic: escalated decisions whose fallback
span carries the fallback's label (``micro_model.label`` on the ``route.fallback`` span),
with a designed cross table of who was right per tier; the gap and its interval computed
here from Newcombe's paper, not by the code under test."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.test import Client
from django.utils import timezone

from dashboard.metrics import Filters
from dashboard.metrics.evaluations import rebuild_evaluation_days
from dashboard.metrics.refresh import fallback_labels, fold_changes
from dashboard.metrics.routing import routing_advice
from dashboard.models import DecisionFact, EvalRollup, ModelPrice, Rollup
from evaluators.contracts import GROUNDEDNESS, LABEL_CHECK
from evaluators.services import record_feedback
from tests.builders import TraceBuilder
from tracestore.contracts import FallbackAnswer, MicroModelDecision, TraceFacts
from tracestore.services import issue_api_key, store_spans

pytestmark = pytest.mark.django_db

Z = 1.959963984540054
# tier -> (both right, only the micro model right, only the fallback right, neither)
PAIRED = {
    # micro model 56/80 = 70 %, fallback 76/80 = 95 %: a gap of 25 points.
    "enterprise": (54, 2, 22, 2),
    # a tie: both 33/40.
    "free": (30, 3, 3, 4),
    # too few pairs for the gap (min_n 10): the fail rate decides.
    "pro": (3, 0, 1, 0),
}
NOT_ESCALATED = {"enterprise": 20, "free": 0, "pro": 10}
BIG_IN, BIG_OUT = 1000, 200
RESCUE_COST = (BIG_IN * 2.50 + BIG_OUT * 10.00) / 1e6


def _hour(now: datetime, back: int) -> datetime:
    return now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=back)


def _wilson(k: int, n: int) -> tuple[float, float]:
    p = k / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z / (1 + Z * Z / n) * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    return centre - half, centre + half


def _newcombe_gap(both: int, micro: int, fallback: int, neither: int) -> tuple[float, float]:
    """Newcombe (1998) method 10 for p_fallback - p_micro over the same pairs."""
    n = both + micro + fallback + neither
    p1, p2 = (both + fallback) / n, (both + micro) / n
    l1, u1 = _wilson(both + fallback, n)
    l2, u2 = _wilson(both + micro, n)
    denominator = (both + fallback) * (micro + neither) * (both + micro) * (fallback + neither)
    phi = (both * neither - fallback * micro) / math.sqrt(denominator) if denominator else 0.0
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2)
    return low, high


def _trace(
    start: datetime,
    tier: str,
    *,
    micro_right: bool,
    fallback: str | None,
    escalated: bool = True,
    expected: bool = True,
) -> TraceBuilder:
    """A trace whose micro model answers ``billing`` or ``refund`` against an expected
    ``billing``; escalated, its fallback span answers ``fallback`` (None: says nothing)."""
    trace = TraceBuilder(start_ns=int(start.timestamp() * 1e9))
    root = trace.span("POST /chat", attrs={"user.tier": tier})
    decision = {
        "micro_model.name": "intent-mini",
        "llm.model_name": "intent-mini-v2",
        "micro_model.label": "billing" if micro_right else "refund",
    }
    if expected:
        decision["micro_model.expected_label"] = "billing"
    trace.span("intent", parent=root, offset_ms=5, attrs=decision)
    if escalated:
        attrs: dict = {
            "gen_ai.request.model": "gpt-large",
            "gen_ai.usage.input_tokens": BIG_IN,
            "gen_ai.usage.output_tokens": BIG_OUT,
            "route.fallback": True,
        }
        if fallback is not None:
            attrs["micro_model.label"] = fallback
        trace.span("fallback", parent=root, offset_ms=60, attrs=attrs)
    return trace


def _store_paired(project_id: int, start: datetime) -> None:
    ModelPrice.objects.create(
        model_pattern="gpt-large",
        input_per_million=Decimal("2.50"),
        output_per_million=Decimal("10.00"),
        effective_from=(start - timedelta(days=30)).date(),
    )
    records = []
    for tier, (both, micro, fallback, neither) in PAIRED.items():
        cells = (
            [(True, "billing")] * both
            + [(True, "refund")] * micro
            + [(False, "billing")] * fallback
            + [(False, "refund")] * neither
        )
        for micro_right, answer in cells:
            records += _trace(start, tier, micro_right=micro_right, fallback=answer).records()
        for _ in range(NOT_ESCALATED[tier]):
            kept = _trace(start, tier, micro_right=True, fallback=None, escalated=False)
            records += kept.records()
    # Escalated traces whose fallback span said nothing: in no paired sum.
    for _ in range(7):
        records += _trace(start, "trial", micro_right=False, fallback=None).records()
    store_spans(project_id, records)
    fold_changes()


@pytest.fixture
def gapped(project):
    now = timezone.now()
    _store_paired(project.id, _hour(now, 3) + timedelta(minutes=10))
    bucket = _hour(now, 3)
    # Pro and enterprise fail LabelCheck at 30 %: only pro is decided by it.
    for tier in ("pro", "enterprise"):
        _fail_thirty_percent(project.id, bucket, LABEL_CHECK, tier)
    return project, Filters((project.id,), _hour(now, 3), _hour(now, 1))


def _fail_thirty_percent(project_id: int, bucket: datetime, evaluator: str, tier: str) -> None:
    EvalRollup.objects.create(
        width="h",
        bucket=bucket,
        project_id=project_id,
        micro_model="intent-mini",
        evaluator=evaluator,
        dim_key="user.tier",
        dim_value=tier,
        evaluated=200,
        failed=60,
        weighted_evaluated=200.0,
        weighted_failed=60.0,
        weighted_sq_evaluated=200.0,
        weighted_sq_failed=60.0,
    )
    rebuild_evaluation_days({(project_id, bucket.replace(hour=0))})


def _paired_sums(project_id: int, tier: str, width: str = "h") -> tuple[int, int, int, int]:
    sums = Rollup.objects.filter(
        project_id=project_id, width=width, dim_key="user.tier", dim_value=tier
    ).aggregate(
        both=Sum("paired_both_right"),
        micro=Sum("paired_micro_right"),
        fallback=Sum("paired_fallback_right"),
        neither=Sum("paired_neither_right"),
    )
    return (sums["both"], sums["micro"], sums["fallback"], sums["neither"])


def test_the_fold_counts_the_designed_pairs_per_cohort(gapped) -> None:
    project, _ = gapped
    for tier, cells in PAIRED.items():
        assert _paired_sums(project.id, tier) == cells
        assert _paired_sums(project.id, tier, "d") == cells
    # The trial tier was escalated, but its fallback never said its label.
    assert _paired_sums(project.id, "trial") == (0, 0, 0, 0)
    assert DecisionFact.objects.filter(project_id=project.id, fallback_label="billing").count() == (
        54 + 22 + 30 + 3 + 3 + 1
    )


def test_the_gap_decides_where_the_fallbacks_answers_are_known(gapped) -> None:
    _, filters = gapped
    days = 2 / 24

    (advice,) = routing_advice(filters, threshold=0.10)

    sent = {a["value"]: a for a in advice["send"]}
    assert set(sent) == {"enterprise", "pro"}
    gap = sent["enterprise"]
    low, high = _newcombe_gap(*PAIRED["enterprise"])
    assert gap["criterion"] == "accuracy_gap"
    assert gap["evaluator"] is None
    assert gap["n"] == 80
    assert gap["accuracy_gap"] == pytest.approx(0.25)
    assert gap["fallback_accuracy"] == pytest.approx(0.95)
    assert gap["micro_model_accuracy"] == pytest.approx(0.70)
    assert gap["fail_rate"] is None
    assert (gap["low"], gap["high"]) == pytest.approx((low, high))
    assert low > 0.10
    # The 20 enterprise decisions not escalated yet, each rescue costing $0.0045.
    cost = 20 * RESCUE_COST / days
    assert gap["usd_per_day"] == pytest.approx(cost)
    assert gap["message"] == (
        f"send `user.tier=enterprise` to the fallback now: +${cost:.2f}/day,"
        " fallback accuracy 95.0 % vs 70.0 %, gap +25.0 points"
        f" ({low * 100:+.1f} points to {high * 100:+.1f} points, n=80 escalated decisions)"
    )
    # A ragged window reads the traffic's hour from the facts: the same pairs.
    ragged = Filters(filters.project_ids, filters.start + timedelta(minutes=5), filters.end)
    (edge,) = routing_advice(ragged, threshold=0.10)
    (edge_gap,) = [a for a in edge["send"] if a["value"] == "enterprise"]
    assert (edge_gap["n"], edge_gap["low"], edge_gap["high"]) == (80, gap["low"], gap["high"])
    # Pro has 4 pairs only: its LabelCheck fail rate (30 %) decides.
    assert sent["pro"]["criterion"] == "fail_rate"
    assert sent["pro"]["evaluator"] == LABEL_CHECK
    assert sent["pro"]["accuracy_gap"] is None


def test_a_tied_escalated_cohort_is_taken_back_when_the_gap_is_clearly_small(gapped) -> None:
    _, filters = gapped
    low, high = _newcombe_gap(*PAIRED["free"])
    # The tie's interval straddles 0; it lies below a threshold above its upper bound.
    assert low < 0 < high < 0.2

    (advice,) = routing_advice(filters, threshold=0.2)

    (back,) = advice["take_back"]
    assert back["value"] == "free"
    assert back["criterion"] == "accuracy_gap"
    assert back["accuracy_gap"] == 0.0
    assert (back["low"], back["high"]) == pytest.approx((low, high))
    assert back["usd_per_day"] == pytest.approx(40 * RESCUE_COST / (2 / 24))
    assert "free" not in {a["value"] for a in advice["send"]}
    # At 10 % the tie's interval holds the threshold: neither sent nor taken back.
    (advice,) = routing_advice(filters, threshold=0.10)
    assert advice["take_back"] == []
    assert "free" not in {a["value"] for a in advice["send"]}


def test_the_gap_stands_in_for_the_label_check_only(gapped) -> None:
    project, filters = gapped
    # Free's tie would be taken back at 20 % (above), and enterprise is sent on its gap; both
    # now fail groundedness at 30 %, which the fallback's labels say nothing about.
    for tier in ("free", "enterprise"):
        _fail_thirty_percent(project.id, _hour(timezone.now(), 3), GROUNDEDNESS, tier)
    low, _ = _wilson(60, 200)
    assert low > 0.2

    (advice,) = routing_advice(filters, threshold=0.2)

    sent = sorted((a["value"], a["criterion"], a["evaluator"]) for a in advice["send"])
    # (Enterprise's gap, +14.1 to +35.9 points, does not clear 20 %.)
    assert sent == [
        ("enterprise", "fail_rate", GROUNDEDNESS),
        ("free", "fail_rate", GROUNDEDNESS),
        ("pro", "fail_rate", LABEL_CHECK),
    ]
    assert advice["take_back"] == []
    # Enterprise's LabelCheck fail rate gave way to its gap: no LabelCheck row for it.
    assert ("enterprise", "fail_rate", LABEL_CHECK) not in sent


def test_the_endpoint_and_the_page_say_which_criterion_decided(gapped, member_client) -> None:
    project, filters = gapped
    client = Client(HTTP_AUTHORIZATION=f"Bearer {issue_api_key(project.id)}")
    window = {"start": filters.start.isoformat(), "end": filters.end.isoformat()}

    response = client.get("/api/v1/advice/routing/", {**window, "threshold": "0.1"})

    assert response.status_code == 200, response.content
    (advice,) = response.json()["results"]
    criteria = {a["value"]: a["criterion"] for a in advice["send"]}
    assert criteria == {"enterprise": "accuracy_gap", "pro": "fail_rate"}
    html = member_client.get("/micro-models/intent-mini/", window).content.decode()
    assert 'data-criterion="accuracy_gap"' in html
    assert 'data-criterion="fail_rate"' in html


def test_a_fallback_label_arriving_later_updates_the_pairs(project) -> None:
    start = _hour(timezone.now(), 2) + timedelta(minutes=5)
    trace = _trace(start, "enterprise", micro_right=False, fallback="billing")
    decision, answer = (
        [r for r in trace.records() if r.name != "fallback"],
        [r for r in trace.records() if r.name == "fallback"],
    )
    store_spans(project.id, decision)
    fold_changes()
    assert _paired_sums(project.id, "enterprise") == (0, 0, 0, 0)

    store_spans(project.id, answer)
    fold_changes()

    assert _paired_sums(project.id, "enterprise") == (0, 0, 1, 0)
    (fact,) = DecisionFact.objects.filter(project_id=project.id, is_decision=True)
    assert (fact.label, fact.fallback_label, fact.is_fallback) == ("refund", "billing", True)


def test_an_expected_label_posted_later_as_feedback_makes_a_pair(project) -> None:
    start = _hour(timezone.now(), 2) + timedelta(minutes=5)
    trace = _trace(start, "pro", micro_right=True, fallback="refund", expected=False)
    store_spans(project.id, trace.records())
    fold_changes()
    assert _paired_sums(project.id, "pro") == (0, 0, 0, 0)

    record_feedback([project.id], trace_id=trace.trace_hex, expected_label="billing")
    fold_changes()

    # The micro model said billing, the fallback refund: only the micro model was right.
    assert _paired_sums(project.id, "pro") == (0, 1, 0, 0)


def _decision(span_id: str, at: datetime, label: str) -> MicroModelDecision:
    return MicroModelDecision(
        span_id=span_id,
        start_time=at,
        micro_model="intent-mini",
        model=None,
        route=None,
        label=label,
        expected_label=None,
        confidence=None,
        is_fallback=False,
        is_retry=False,
        cache_hit=False,
        is_error=False,
        duration_ms=1.0,
    )


def test_a_fallback_answer_pairs_with_the_last_decision_before_it() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    first = _decision("01" * 8, t0, "billing")
    second = _decision("02" * 8, t0 + timedelta(seconds=2), "refund")
    trace = TraceFacts(
        project_id=1,
        trace_id="ab" * 16,
        updated_at=t0,
        start_time=t0,
        duration_ms=5.0,
        is_fallback=True,
        error_count=0,
        prompt_tokens=0,
        completion_tokens=0,
        cohort={},
        decisions=[first, second],
        usage=[],
        fallback_answers=(
            FallbackAnswer("0a" * 8, t0 - timedelta(seconds=1), "early"),
            FallbackAnswer("0b" * 8, t0 + timedelta(seconds=1), "after-first"),
            FallbackAnswer("0c" * 8, t0 + timedelta(seconds=3), "after-second"),
            FallbackAnswer("0d" * 8, t0 + timedelta(seconds=4), "second-again"),
        ),
    )

    assert fallback_labels([first, second], trace) == {
        first.span_id: "after-first",
        second.span_id: "after-second",
    }
