"""The alerts' Celery tasks: thin wrappers over services.py and notify.py."""

from __future__ import annotations

import logging

from celery import shared_task

from .notify import send_delivery
from .services import (
    claim_alert_delivery,
    complete_alert_delivery,
    due_alert_deliveries,
    evaluate_alert_rules,
    expire_alert_evaluations,
    fail_alert_delivery,
    mark_alert_delivery_sending,
)

log = logging.getLogger(__name__)


# Safe to run twice: a second run in the same evaluation period changes nothing.
@shared_task(name="alerts.evaluate", ignore_result=True)
def evaluate() -> None:
    outcomes = evaluate_alert_rules()
    created = [d for outcome in outcomes for d in outcome.deliveries]
    # Lost messages and expired claims are found again here every period.
    for delivery_id in dict.fromkeys([*created, *due_alert_deliveries()]):
        deliver.delay(delivery_id)
    expire_alert_evaluations()
    log.info(
        "alerts.evaluated rules=%s events=%s deliveries=%s",
        len(outcomes),
        sum(len(o.events) for o in outcomes),
        len(created),
    )


# Idempotent: the claim in the database lets one worker send a delivery at a time, so a
# redelivered message finds nothing to do.
@shared_task(name="alerts.deliver", ignore_result=True, acks_late=True)
def deliver(delivery_id: int) -> None:
    claim = claim_alert_delivery(delivery_id)
    if claim is None:
        return
    outcome = send_delivery(claim.id, claim.attempt, lambda: mark_alert_delivery_sending(claim))
    if outcome is None:
        log.warning("alerts.claim_lost delivery=%s attempt=%s", claim.id, claim.attempt)
        return
    if outcome.ok:
        complete_alert_delivery(claim)
        log.info("alerts.delivered delivery=%s attempt=%s", claim.id, claim.attempt)
        return
    retry_in = fail_alert_delivery(claim, outcome.error, retry_in=outcome.retry_in)
    if retry_in is not None:
        deliver.apply_async((delivery_id,), countdown=retry_in)
