"""Writes of the alerts pipeline, each owning its transaction: rules, evaluations (state
change + transition + deliveries in one transaction), and delivery claims."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from .evaluation import Reading, breached, next_state, read_rule
from .models import AlertDelivery, AlertEvaluation, AlertEvent, AlertRule, AlertState

log = logging.getLogger(__name__)

RULE_FIELDS = (
    "name",
    "project_id",
    "metric",
    "micro_model",
    "route",
    "evaluator",
    "label",
    "cohort_key",
    "cohort_value",
    "split_by",
    "comparator",
    "threshold",
    "window_seconds",
    "min_n",
    "compare_to",
    "statistical",
    "consecutive",
    "hysteresis",
    "severity",
    "enabled",
    "webhook_urls",
    "email_addresses",
)


# -- rules ------------------------------------------------------------------------------


def create_alert_rule(fields: dict[str, Any]) -> AlertRule:
    """Validated (``full_clean``: the model's rules and the metrics' constraints), saved."""
    rule = AlertRule(**{k: v for k, v in fields.items() if k in RULE_FIELDS})
    rule.full_clean()
    rule.save()
    return rule


def update_alert_rule(rule_id: int, fields: dict[str, Any]) -> AlertRule:
    with transaction.atomic():
        rule = AlertRule.objects.select_for_update().get(pk=rule_id)
        changed = [k for k in fields if k in RULE_FIELDS]
        for key in changed:
            setattr(rule, key, fields[key])
        rule.full_clean()
        rule.save(update_fields=[*changed, "updated_at"])
    return rule


def delete_alert_rule(rule_id: int) -> None:
    AlertRule.objects.filter(pk=rule_id).delete()


# -- evaluation -------------------------------------------------------------------------


def evaluation_tick(now: datetime) -> int:
    """The evaluation period ``now`` falls in: a second run in the same period is a no-op,
    and a transition's key carries it."""
    return int(now.timestamp()) // settings.MICROLENS_ALERT_EVAL_SECONDS


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    rule_id: int
    evaluated: int
    events: list[int]
    deliveries: list[int]


def evaluate_alert_rule(rule_id: int, now: datetime | None = None) -> RuleOutcome:
    """Read the rule through the metrics module, then per split value, in one transaction
    holding the state's row lock: store the evaluation, move the state machine, and on a
    transition create the event and its deliveries. Runs twice in one period change
    nothing the second time; two concurrent runs serialise on the lock."""
    now = now or timezone.now()
    rule = AlertRule.objects.filter(pk=rule_id, enabled=True).first()
    if rule is None:
        return RuleOutcome(rule_id, 0, [], [])
    tick = evaluation_tick(now)
    readings = {r.split_value: r for r in read_rule(rule, now)}
    # A split value seen before but absent now reads as no data (it neither fires nor
    # resolves on silence).
    for split_value in AlertState.objects.filter(rule=rule).values_list("split_value", flat=True):
        readings.setdefault(split_value, Reading(split_value, None, 0))
    evaluated, events, deliveries = 0, [], []
    for reading in readings.values():
        outcome = _apply_reading(rule, reading, tick, now)
        if outcome is None:
            continue
        evaluated += 1
        if outcome[0] is not None:
            events.append(outcome[0])
            deliveries += outcome[1]
    return RuleOutcome(rule.id, evaluated, events, deliveries)


def _apply_reading(
    rule: AlertRule, reading: Reading, tick: int, now: datetime
) -> tuple[int | None, list[int]] | None:
    AlertState.objects.bulk_create(
        [AlertState(rule=rule, split_value=reading.split_value)], ignore_conflicts=True
    )
    with transaction.atomic():
        state = AlertState.objects.select_for_update().get(
            rule=rule, split_value=reading.split_value
        )
        # This period was already evaluated. Compared through the last evaluation's time,
        # not its stored tick, so a changed MICROLENS_ALERT_EVAL_SECONDS cannot stall rules.
        if state.last_evaluated_at is not None and evaluation_tick(state.last_evaluated_at) >= tick:
            return None
        step = next_state(rule, state.state, state.streak, reading)
        AlertEvaluation.objects.create(
            rule=rule,
            split_value=reading.split_value,
            tick=tick,
            evaluated_at=now,
            value=reading.value,
            n=reading.n,
            low=reading.low,
            high=reading.high,
            breached=bool(breached(rule, reading)),
            state=step.state,
        )
        if step.state != state.state:
            state.since = now
        state.state, state.streak, state.last_tick = step.state, step.streak, tick
        state.last_value, state.last_n, state.last_evaluated_at = reading.value, reading.n, now
        state.save(
            update_fields=[
                "state",
                "streak",
                "since",
                "last_tick",
                "last_value",
                "last_n",
                "last_evaluated_at",
            ]
        )
        if step.transition is None:
            return None, []
        event = AlertEvent.objects.create(
            rule=rule,
            project_id=rule.project_id,
            split_value=reading.split_value,
            kind=step.transition,
            tick=tick,
            value=reading.value,
            n=reading.n,
            low=reading.low,
            high=reading.high,
            threshold=rule.threshold,
            created_at=now,
        )
        targets = [("webhook", url) for url in rule.webhook_urls]
        targets += [("email", address) for address in rule.email_addresses]
        created = AlertDelivery.objects.bulk_create(
            [
                AlertDelivery(event=event, channel=channel, target=target, next_attempt_at=now)
                for channel, target in dict.fromkeys(targets)
            ]
        )
    log.info(
        "alerts.transition rule=%s split=%r kind=%s event=%s",
        rule.id,
        reading.split_value,
        event.kind,
        event.id,
    )
    return event.id, [d.id for d in created]


def evaluate_alert_rules(now: datetime | None = None) -> list[RuleOutcome]:
    """Every enabled rule; a rule whose evaluation fails is logged and the rest go on."""
    now = now or timezone.now()
    outcomes = []
    for rule_id in AlertRule.objects.filter(enabled=True).values_list("id", flat=True):
        try:
            outcomes.append(evaluate_alert_rule(rule_id, now))
        except Exception:
            log.exception("alerts.evaluation_failed rule=%s", rule_id)
    return outcomes


def expire_alert_evaluations(now: datetime | None = None) -> int:
    """Drop evaluations older than MICROLENS_RETENTION_DAYS (one row per rule, split value
    and period would otherwise grow without bound); events and states are kept."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.MICROLENS_RETENTION_DAYS)
    deleted, _ = AlertEvaluation.objects.filter(evaluated_at__lt=cutoff).delete()
    return deleted


# -- deliveries -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    id: int
    attempt: int
    channel: str
    target: str
    event_id: int


def claim_alert_delivery(delivery_id: int, now: datetime | None = None) -> ClaimedDelivery | None:
    """Claim a due delivery (pending and due, or running with an expired claim) with one
    conditional UPDATE: of two workers handed the same id, one wins."""
    now = now or timezone.now()
    lease = timedelta(seconds=settings.MICROLENS_ALERT_DELIVERY_LEASE_SECONDS)
    claimed = (
        AlertDelivery.objects.filter(pk=delivery_id)
        .filter(
            Q(status="pending", next_attempt_at__lte=now + timedelta(seconds=1))
            | Q(status="running", claimed_until__lt=now)
        )
        .update(
            status="running",
            attempts=F("attempts") + 1,
            claimed_until=now + lease,
            sending_at=None,
        )
    )
    if not claimed:
        return None
    row = AlertDelivery.objects.values("attempts", "channel", "target", "event_id").get(
        pk=delivery_id
    )
    return ClaimedDelivery(
        delivery_id, row["attempts"], row["channel"], row["target"], row["event_id"]
    )


def mark_alert_delivery_sending(claim: ClaimedDelivery, now: datetime | None = None) -> bool:
    """Commit that this claim's request is about to leave, if the claim is still ours and
    alive, and renew its lease for the request. False: the claim expired (the worker
    stalled past it) or was retaken, and the request must not be sent; whoever holds the
    delivery now sends it. Until this mark a crash cannot have sent anything, so the next
    claim's request is the first the receiver sees."""
    now = now or timezone.now()
    lease = timedelta(seconds=settings.MICROLENS_ALERT_DELIVERY_LEASE_SECONDS)
    return bool(
        AlertDelivery.objects.filter(
            pk=claim.id, status="running", attempts=claim.attempt, claimed_until__gt=now
        ).update(sending_at=now, claimed_until=now + lease)
    )


def complete_alert_delivery(claim: ClaimedDelivery) -> bool:
    """Done, if the claim is still ours (a worker whose claim expired and was taken over
    must not overwrite the new owner's outcome)."""
    return bool(
        AlertDelivery.objects.filter(pk=claim.id, status="running", attempts=claim.attempt).update(
            status="done", delivered_at=timezone.now(), claimed_until=None, last_error=""
        )
    )


def fail_alert_delivery(
    claim: ClaimedDelivery, error: str, *, retry_in: float | None
) -> float | None:
    """Back to pending ``retry_in`` seconds from now, or failed for good (permanent error,
    or attempts used up). Returns the delay when it will be retried."""
    retry = retry_in is not None and claim.attempt < settings.MICROLENS_ALERT_MAX_ATTEMPTS
    fields: dict[str, Any] = {"last_error": error[:500], "claimed_until": None}
    if retry and retry_in is not None:
        fields.update(
            status="pending", next_attempt_at=timezone.now() + timedelta(seconds=retry_in)
        )
    else:
        fields.update(status="failed")
    AlertDelivery.objects.filter(pk=claim.id, status="running", attempts=claim.attempt).update(
        **fields
    )
    log.warning(
        "alerts.delivery_failed delivery=%s attempt=%s retry=%s", claim.id, claim.attempt, retry
    )
    return retry_in if retry else None


def due_alert_deliveries(now: datetime | None = None, limit: int = 500) -> list[int]:
    """Deliveries whose message may be lost: pending and due, or claimed by a worker whose
    claim expired (it died mid-send). The beat task sends them again."""
    now = now or timezone.now()
    return list(
        AlertDelivery.objects.filter(
            Q(status="pending", next_attempt_at__lte=now)
            | Q(status="running", claimed_until__lt=now)
        )
        .order_by("next_attempt_at")
        .values_list("id", flat=True)[:limit]
    )
