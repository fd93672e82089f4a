"""Two evaluations of the same rule at once (beat sent twice, two workers) make one
transition: they serialise on the state's row lock in PostgreSQL. Two workers handed the
same delivery send it once: one wins the claim."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from dashboard.alerts.models import AlertDelivery, AlertEvaluation, AlertEvent
from dashboard.alerts.services import evaluate_alert_rule, evaluate_alert_rules
from dashboard.alerts.tasks import deliver, evaluate
from tests.dashboard.metric_data import NOW

from .conftest import decisions, rule
from .webhook_server import webhook_server

pytestmark = pytest.mark.django_db(transaction=True)


def _at_once(count: int, work: Callable[[], object]) -> tuple[list, list[Exception]]:
    """``work`` in ``count`` threads (each its own database session) released together."""
    barrier = threading.Barrier(count)
    outcomes: list = []
    errors: list[Exception] = []

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            outcomes.append(work())
        except Exception as exc:  # surfaced by the callers' assertions
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes, errors


def test_concurrent_evaluations_make_one_transition_and_one_delivery(project) -> None:
    decisions(project.id, 40, fallbacks=10)
    r = rule(project.id, email_addresses=["oncall@example.com"])

    outcomes, errors = _at_once(4, lambda: evaluate_alert_rule(r.id, NOW))

    assert errors == []
    assert sorted(len(o.events) for o in outcomes) == [0, 0, 0, 1]
    assert AlertEvent.objects.count() == 1
    assert AlertEvaluation.objects.count() == 1
    assert AlertDelivery.objects.count() == 1


def test_disabled_rules_are_not_evaluated(project) -> None:
    decisions(project.id, 40, fallbacks=10)
    on = rule(project.id, name="on")
    rule(project.id, name="off", enabled=False)

    outcomes = evaluate_alert_rules(NOW)

    assert [o.rule_id for o in outcomes] == [on.id]


@pytest.mark.usefixtures("broker")
def test_the_beat_task_run_twice_at_once_makes_one_transition_and_one_delivery(
    project, settings
) -> None:
    settings.MICROLENS_ALERT_EVAL_SECONDS = 3600
    decisions(project.id, 40, fallbacks=10, at=timezone.now() - timedelta(minutes=5))
    rule(project.id, email_addresses=["oncall@example.com"])

    _, errors = _at_once(2, evaluate)
    evaluate()  # and once more, later in the period

    assert errors == []
    assert AlertEvent.objects.count() == 1
    assert AlertDelivery.objects.count() == 1


@pytest.mark.usefixtures("broker")
def test_two_workers_handed_the_same_delivery_post_it_once(project, settings) -> None:
    settings.MICROLENS_ALERT_ALLOW_PRIVATE_WEBHOOKS = True
    decisions(project.id, 40, fallbacks=10)
    with webhook_server() as server:
        r = rule(project.id, webhook_urls=[server.url])
        [delivery_id] = evaluate_alert_rule(r.id, NOW).deliveries

        _, errors = _at_once(4, lambda: deliver(delivery_id))

    assert errors == []
    assert len(server.requests) == 1
    assert server.requests[0].body["delivery_id"] == delivery_id
    delivery = AlertDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("done", 1)
