"""Routing advice on known-answer data: tiers with designed LabelCheck fail counts and the
priced traffic of the fallback economics test; the answers computed here."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from dashboard.metrics import Filters, InvalidQuery
from dashboard.metrics.evaluations import rebuild_evaluation_days
from dashboard.metrics.routing import routing_advice
from dashboard.models import EvalRollup
from tests.api.gate_data import wilson_roots
from tracestore.services import issue_api_key

from .test_fallback_economics import DESIGN, RESCUE_COST, _hour, store_traffic

pytestmark = pytest.mark.django_db

# tier -> LabelCheck (failed, evaluated)
FAILS = {"enterprise": (60, 200), "free": (4, 200), "pro": (20, 200), "trial": (3, 5)}


@pytest.fixture
def advised(project):
    now = timezone.now()
    store_traffic(project.id, now)
    bucket = _hour(now, 3)
    for tier, (failed, evaluated) in FAILS.items():
        EvalRollup.objects.create(
            width="h",
            bucket=bucket,
            project_id=project.id,
            micro_model="intent-mini",
            evaluator="LabelCheck",
            dim_key="user.tier",
            dim_value=tier,
            evaluated=evaluated,
            failed=failed,
            weighted_evaluated=float(evaluated),
            weighted_failed=float(failed),
            # Every verdict weighs 1 (sampled at 100 %): the sums of w² are the counts.
            weighted_sq_evaluated=float(evaluated),
            weighted_sq_failed=float(failed),
        )
    rebuild_evaluation_days({(project.id, bucket.replace(hour=0))})
    return project, Filters((project.id,), _hour(now, 3), _hour(now, 1))


def _message(action: str, tier: str, money: float) -> str:
    failed, n = FAILS[tier]
    low, high = wilson_roots(failed, n)
    rate = (
        f"LabelCheck fail rate {failed / n * 100:.1f} % ({low * 100:.1f}-{high * 100:.1f} %, n={n})"
    )
    if action == "send":
        return f"send `user.tier={tier}` to the fallback now: +${money:.2f}/day, {rate}"
    return f"`user.tier={tier}` could be taken back from the fallback: -${money:.2f}/day, {rate}"


def test_a_failing_cohort_is_sent_and_a_good_escalated_one_taken_back(advised) -> None:
    _, filters = advised
    days = 2 / 24

    (advice,) = routing_advice(filters, threshold=0.10)

    assert advice["micro_model"] == "intent-mini"
    # Enterprise: 30 % (24-37 %) clears 10 %; 10 of its 20 decisions/2 h are not escalated
    # yet, each rescue costing $0.0045.
    (send,) = advice["send"]
    traces, escalated = DESIGN["enterprise"]
    cost = (traces - escalated) * RESCUE_COST / days
    assert send["value"] == "enterprise"
    assert send["usd_per_day"] == pytest.approx(cost)
    assert send["usd_per_day_low"] == pytest.approx(cost)  # every rescue costs the same
    assert send["usd_per_day_high"] == pytest.approx(cost)
    assert send["low"] == pytest.approx(wilson_roots(60, 200)[0])
    assert send["message"] == _message("send", "enterprise", cost)
    # Free: 2 % (0.8-5.0 %) lies below 10 %, and 10 of its decisions were rescued.
    (back,) = advice["take_back"]
    saving = DESIGN["free"][1] * RESCUE_COST / days
    assert back["value"] == "free"
    assert back["usd_per_day"] == pytest.approx(saving)
    assert back["message"] == _message("take_back", "free", saving)
    # Pro's interval (6.6-15 %) holds 10 %; trial's n of 5 is below min_n.


def test_a_lower_threshold_sends_pro_too_at_an_unknown_cost(advised) -> None:
    _, filters = advised

    (advice,) = routing_advice(filters, threshold=0.05)

    sent = {a["value"]: a for a in advice["send"]}
    assert set(sent) == {"enterprise", "pro"}
    # Pro has no traffic of its own in range: the micro model's cost per rescue prices
    # it, but no decision of it is left to escalate.
    assert sent["pro"]["usd_per_day"] == 0.0


@pytest.mark.parametrize(("threshold", "min_n"), [(0.0, 30), (1.5, 30), (0.1, 0)])
def test_a_bad_threshold_or_min_n_is_refused(advised, threshold, min_n) -> None:
    _, filters = advised
    with pytest.raises(InvalidQuery):
        routing_advice(filters, threshold=threshold, min_n=min_n)


def test_the_routing_advice_endpoint(advised) -> None:
    project, filters = advised
    client = Client(HTTP_AUTHORIZATION=f"Bearer {issue_api_key(project.id)}")

    response = client.get(
        "/api/v1/advice/routing/",
        {"start": filters.start.isoformat(), "end": filters.end.isoformat(), "threshold": "0.1"},
    )

    assert response.status_code == 200, response.content
    (advice,) = response.json()["results"]
    assert [a["value"] for a in advice["send"]] == ["enterprise"]
    assert [a["value"] for a in advice["take_back"]] == ["free"]
    assert client.get("/api/v1/advice/routing/", {"threshold": "x"}).status_code == 400


def test_the_micro_model_page_shows_the_advice(advised, member_client: Client) -> None:
    _, filters = advised
    html = member_client.get(
        "/micro-models/intent-mini/",
        {"start": filters.start.isoformat(), "end": filters.end.isoformat()},
    ).content.decode()

    assert 'id="routing-advice"' in html
    cost = 10 * RESCUE_COST * 12
    assert _message("send", "enterprise", cost) in html


@pytest.mark.parametrize("name", ["route", "model"])
def test_a_route_or_model_filter_is_refused_naming_it(advised, name) -> None:
    # The evaluation rollup has no route or model column: refused as eval-fail-rate does.
    _, filters = advised
    with pytest.raises(InvalidQuery, match=f"^{name}: "):
        routing_advice(filters.with_(**{name: "billing"}))


def test_the_endpoint_answers_400_naming_a_route_filter(advised) -> None:
    project, filters = advised
    client = Client(HTTP_AUTHORIZATION=f"Bearer {issue_api_key(project.id)}")

    response = client.get(
        "/api/v1/advice/routing/",
        {"start": filters.start.isoformat(), "end": filters.end.isoformat(), "route": "billing"},
    )

    assert response.status_code == 400
    assert "route" in response.content.decode()


def test_a_cohort_filter_narrows_the_advice_to_that_cohort(advised) -> None:
    _, filters = advised

    (enterprise,) = routing_advice(filters.with_(cohort=("user.tier", "enterprise")))
    (free,) = routing_advice(filters.with_(cohort=("user.tier", "free")))

    assert [a["value"] for a in enterprise["send"]] == ["enterprise"]
    assert enterprise["take_back"] == []
    assert free["send"] == []
    assert [a["value"] for a in free["take_back"]] == ["free"]


@pytest.mark.parametrize(("name", "value"), [("route", "billing"), ("model", "intent-mini")])
def test_the_micro_model_page_filtered_by_route_shows_the_advice_over_every_route(
    advised, member_client: Client, name, value
) -> None:
    _, filters = advised
    response = member_client.get(
        "/micro-models/intent-mini/",
        {"start": filters.start.isoformat(), "end": filters.end.isoformat(), name: value},
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert _message("send", "enterprise", 10 * RESCUE_COST * 12) in html
    assert f"the advice is read per micro model and cohort, not by {name}." in html
