"""Two evaluations of the same rule at once (beat sent twice, two workers) make one
transition: they serialise on the state's row lock in PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from dashboard.alerts.models import AlertDelivery, AlertEvaluation, AlertEvent
from dashboard.alerts.services import evaluate_alert_rule, evaluate_alert_rules
from tests.dashboard.metric_data import NOW

from .conftest import decisions, rule

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_evaluations_make_one_transition_and_one_delivery(project) -> None:
    decisions(project.id, 40, fallbacks=10)
    r = rule(project.id, email_addresses=["oncall@example.com"])
    barrier = threading.Barrier(4)
    outcomes, errors = [], []

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            outcomes.append(evaluate_alert_rule(r.id, NOW))
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

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
