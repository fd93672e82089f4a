"""Routing advice: how many queries a request makes, and the rules that decide a cohort
(several evaluators, sampling weights) on designed rollup rows."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dashboard.metrics import cohort_dimensions, eval_fail_rate
from dashboard.metrics.economics import fallback_economics
from dashboard.metrics.evaluations import rebuild_evaluation_days
from dashboard.metrics.refresh import fold_changes
from dashboard.metrics.routing import routing_advice
from dashboard.models import EvalRollup
from tests.builders import TraceBuilder
from tracestore.services import store_spans

from . import test_routing_advice as known

pytestmark = pytest.mark.django_db

# The known-answer data: intent-mini's priced traffic and LabelCheck verdicts by user.tier.
advised = known.advised


def _decisions(project_id: int, start: datetime, micro_model: str, traces: int) -> None:
    for _ in range(traces):
        trace = TraceBuilder(start_ns=int(start.timestamp() * 1e9) + 600 * 10**9)
        root = trace.span("POST /chat", attrs={"user.tier": "x"})
        trace.span(
            "screen",
            parent=root,
            offset_ms=5,
            attrs={"micro_model.name": micro_model, "route.name": "allow"},
        )
        store_spans(project_id, trace.records())
    fold_changes()


def _verdicts(
    project_id: int,
    bucket: datetime,
    micro_model: str,
    evaluator: str,
    dim_key: str,
    value: str,
    failed: int,
    evaluated: int,
    weight: float = 1.0,
    weight_sq: float | None = None,
) -> None:
    """One hour's verdicts; every one weighing ``weight`` unless ``weight_sq`` (Σw² over
    the evaluated, failed in proportion) says the weights vary."""
    sq = weight * weight * evaluated if weight_sq is None else weight_sq
    EvalRollup.objects.create(
        width="h",
        bucket=bucket,
        project_id=project_id,
        micro_model=micro_model,
        evaluator=evaluator,
        dim_key=dim_key,
        dim_value=value,
        evaluated=evaluated,
        failed=failed,
        weighted_evaluated=weight * evaluated,
        weighted_failed=weight * failed,
        weighted_sq_evaluated=sq,
        weighted_sq_failed=sq * failed / evaluated,
    )
    rebuild_evaluation_days({(project_id, bucket.replace(hour=0))})


def _cohorts(advice: dict, action: str) -> list[tuple[str, str, str]]:
    return sorted((a["dimension"], a["value"], a["evaluator"]) for a in advice[action])


def test_two_micro_models_by_four_dimensions_take_a_fixed_number_of_queries(advised) -> None:
    project, filters = advised
    keys = [key for key, _ in cohort_dimensions()]
    assert len(keys) == 4
    _decisions(project.id, filters.start, "screen-mini", 5)
    for key in keys:
        _verdicts(project.id, filters.start, "intent-mini", "Tone", key, "x", 50, 100)
        _verdicts(project.id, filters.start, "screen-mini", "Tone", key, "x", 50, 100)

    with CaptureQueriesContext(connection) as queries:
        advice = routing_advice(filters.with_(micro_model=None), threshold=0.10)

    assert [a["micro_model"] for a in advice] == ["intent-mini", "screen-mini"]
    for one in advice:
        # 50 % (40-60 %) fails Tone on every dimension's value "x"; enterprise LabelCheck.
        expected = sorted((k, "x", "Tone") for k in keys)
        if one["micro_model"] == "intent-mini":
            expected = sorted([*expected, ("user.tier", "enterprise", "LabelCheck")])
        assert _cohorts(one, "send") == expected
    # The same answers as asking for each micro model alone.
    alone = [routing_advice(filters.with_(micro_model=a["micro_model"]))[0] for a in advice]
    assert alone == advice
    # Whole hours only: the micro models, the overall economics, the dimensions and, per
    # dimension, one economics and one evaluation query, each with its look-up of the
    # dimensions: 3 + 4 x 4 = 19. Reading per micro model and dimension took 61.
    assert len(queries) <= 19, [q["sql"][:80] for q in queries]


@pytest.mark.parametrize(
    ("tone_failed", "sent"),
    [
        # Tone 30 % (24-37 %) clears 10 % on free: sent, and so not taken back too.
        (60, [("user.tier", "enterprise", "LabelCheck"), ("user.tier", "free", "Tone")]),
        # Tone 10 % (6.6-15 %) holds 10 %: free is neither sent nor taken back.
        (20, [("user.tier", "enterprise", "LabelCheck")]),
    ],
)
def test_a_cohort_is_taken_back_only_when_every_evaluator_is_below(
    advised, tone_failed, sent
) -> None:
    project, filters = advised
    # Free passes LabelCheck (2 %, 0.8-5.0 %): alone, it would be taken back.
    _verdicts(
        project.id, filters.start, "intent-mini", "Tone", "user.tier", "free", tone_failed, 200
    )

    (advice,) = routing_advice(filters, threshold=0.10)

    assert _cohorts(advice, "send") == sent
    assert _cohorts(advice, "take_back") == []


def test_min_n_compares_the_effective_n_not_the_raw_n(advised) -> None:
    project, filters = advised
    # 200 verdicts on pro whose weights vary: Σw = 1,000, Σw² = 50,000, so the Kish
    # effective n is 1,000² / 50,000 = 20; weighted fail rate 50 %.
    _verdicts(
        project.id,
        filters.start,
        "intent-mini",
        "Tone",
        "user.tier",
        "pro",
        100,
        200,
        weight=5.0,
        weight_sq=50_000.0,
    )

    (advice,) = routing_advice(filters, threshold=0.10, min_n=30)
    (lenient,) = routing_advice(filters, threshold=0.10, min_n=20)

    assert _cohorts(advice, "send") == [("user.tier", "enterprise", "LabelCheck")]
    (pro,) = [a for a in lenient["send"] if a["value"] == "pro"]
    assert (pro["evaluator"], pro["n"], pro["fail_rate"]) == ("Tone", 200, pytest.approx(0.5))


def test_a_ragged_window_gives_the_figures_of_each_metric(advised) -> None:
    project, filters = advised
    # Traffic starts 10 min into the first hour: a window from its 5th minute reads that
    # hour from the facts and the evaluation results, the next from the rollups.
    ragged = filters.with_(start=filters.start + timedelta(minutes=5))
    _verdicts(
        project.id,
        filters.start + timedelta(hours=1),
        "intent-mini",
        "Tone",
        "user.tier",
        "enterprise",
        60,
        200,
    )

    (advice,) = routing_advice(ragged, threshold=0.10)

    days = (ragged.end - ragged.start).total_seconds() / 86400
    rates = {(r["evaluator"], r["group"]): r for r in eval_fail_rate(ragged, "user.tier").rows}
    economics = {r["group"]: r for r in fallback_economics(ragged, "user.tier").rows}
    (sent,) = advice["send"]
    assert (sent["value"], sent["evaluator"]) == ("enterprise", "Tone")
    rate = rates[("Tone", "enterprise")]
    assert (sent["n"], sent["fail_rate"], sent["low"], sent["high"]) == (
        rate["n"],
        rate["rate"],
        rate["low"],
        rate["high"],
    )
    enterprise = economics["enterprise"]
    assert enterprise["decisions"] == 20
    assert sent["usd_per_day"] == pytest.approx(
        (enterprise["decisions"] - enterprise["rescues"]) / days * enterprise["cost_per_rescue"]
    )
