"""Sending one claimed delivery: the webhook POST (JSON, idempotency key header) or the
email, and what a failure means (transient: retried with backoff; permanent: failed)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlencode

from django.conf import settings
from django.core.mail import EmailMessage
from django.utils import timezone

from microlens import outbound

from .links import rule_admin_path, traces_path
from .models import AlertDelivery, AlertEvent
from .units import display

BACKOFF_BASE_SECONDS = 5.0
BACKOFF_CAP_SECONDS = 3600.0


# Webhook targets go through the one outbound-request guard (microlens/outbound.py).
UnsafeTarget = outbound.RefusedTarget


def check_webhook_url(url: str, *, saving: bool = False) -> None:
    """Refuse what ``outbound`` refuses: malformed or ambiguous URLs and, unless
    MICROLENS_ALERT_ALLOW_PRIVATE_WEBHOOKS, hosts resolving to any non-public address. When
    ``saving`` a rule, a name that does not resolve is accepted (refused when sending)."""
    try:
        outbound.check_url(
            url,
            allow_private=settings.MICROLENS_ALERT_ALLOW_PRIVATE_WEBHOOKS,
            saving=saving,
        )
    except outbound.RefusedTarget as exc:
        if settings.MICROLENS_ALERT_ALLOW_PRIVATE_WEBHOOKS or "not public" not in str(exc):
            raise
        raise outbound.RefusedTarget(
            f"{exc}; set MICROLENS_ALERT_ALLOW_PRIVATE_WEBHOOKS=true to allow it"
        ) from None


def _base() -> str:
    return (settings.MICROLENS_PUBLIC_URL or "").rstrip("/")


def dashboard_link(event: AlertEvent) -> str:
    """The dashboard page showing the rule's metric, with its filters and window."""
    rule = event.rule
    end = event.created_at
    params: dict[str, str] = {
        "project": str(rule.project_id),
        "start": (end - timedelta(seconds=rule.window_seconds)).isoformat(),
        "end": end.isoformat(),
    }
    for key in ("micro_model", "route"):
        if getattr(rule, key):
            params[key] = getattr(rule, key)
    if rule.cohort_key:
        params[f"cohort.{rule.cohort_key}"] = rule.cohort_value
    if rule.split_by:
        if event.split_value:
            params[f"cohort.{rule.split_by}"] = event.split_value
        else:
            params["group_by"] = rule.split_by
    base = _base()
    # The page that shows the rule's metric: eval fail rates per cohort on Cohorts, label
    # quality and latency on the micro model's page, the rest on the overview.
    if rule.metric == "eval-fail-rate" and (rule.split_by or rule.cohort_key):
        params["dimension"] = rule.split_by or rule.cohort_key
        path = "/cohorts/"
    elif rule.micro_model and rule.metric.startswith(("label-", "latency-")):
        params.pop("micro_model", None)
        path = f"/micro-models/{quote(rule.micro_model, safe='')}/"
    else:
        path = "/overview/"
    return f"{base}{path}?{urlencode(params)}"


def event_payload(event: AlertEvent, delivery_id: int) -> dict[str, Any]:
    rule = event.rule
    return {
        "idempotency_key": event_idempotency_key(event),
        "delivery_id": delivery_id,
        "event_id": event.id,
        "state": "firing" if event.kind == "fired" else "ok",
        "transition": event.kind,
        "rule": {
            "id": rule.id,
            "name": rule.name,
            "project_id": rule.project_id,
            "severity": rule.severity,
            "comparator": rule.comparator,
            "window_seconds": rule.window_seconds,
            "compare_to": rule.compare_to or None,
            "statistical": rule.statistical,
        },
        "metric": rule.metric,
        "split_by": rule.split_by or None,
        "split_value": event.split_value or None,
        "value": event.value,
        "n": event.n,
        "interval": [event.low, event.high] if event.low is not None else None,
        "threshold": event.threshold,
        # The numbers above are stored fractions for percentages; these are the same
        # values as people see them ("12.5 %").
        "shown": {
            "value": display(event.value, rule.metric, rule.compare_to),
            "threshold": display(event.threshold, rule.metric, rule.compare_to),
        },
        "at": event.created_at.isoformat(),
        "link": dashboard_link(event),
        "traces_link": f"{_base()}{traces_path(rule, event.created_at, event.split_value)}",
        "rule_link": f"{_base()}{rule_admin_path(rule)}",
    }


def event_idempotency_key(event: AlertEvent) -> str:
    """Stable for the transition (rule, split value, kind, evaluation period): every retry
    of every delivery of it carries the same key, so a receiver can drop repeats."""
    return f"alert-{event.rule_id}-{event.split_value}-{event.kind}-{event.tick}"


@dataclass(frozen=True, slots=True)
class SendOutcome:
    ok: bool
    error: str = ""
    retry_in: float | None = None  # None: permanent (do not retry)


def backoff(attempt: int) -> float:
    return min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempt - 1))


def _retry_after(response: outbound.Response, attempt: int) -> float:
    value = response.headers.get("Retry-After", "").strip()
    if value.isdigit():
        return min(BACKOFF_CAP_SECONDS, float(value))
    if value:
        try:
            at = parsedate_to_datetime(value)
            return min(BACKOFF_CAP_SECONDS, max(0.0, (at - timezone.now()).total_seconds()))
        except (TypeError, ValueError):
            pass
    return backoff(attempt)


def send_delivery(
    delivery_id: int, attempt: int, before_sending: Callable[[], bool]
) -> SendOutcome | None:
    """Send one claimed delivery. ``before_sending`` commits the claim's sending mark and
    is called last before the request or email leaves (everything that can be prepared
    is); when it returns False the claim is lost, nothing is sent and the result is None."""
    delivery = AlertDelivery.objects.select_related("event__rule").get(pk=delivery_id)
    if delivery.channel == "email":
        return _send_email(delivery, attempt, before_sending)
    return _send_webhook(delivery, attempt, before_sending)


def _send_webhook(
    delivery: AlertDelivery, attempt: int, before_sending: Callable[[], bool]
) -> SendOutcome | None:
    try:
        check_webhook_url(delivery.target)
    except UnsafeTarget as exc:
        return SendOutcome(False, f"refused: {exc}")
    payload = event_payload(delivery.event, delivery.id)
    if not before_sending():
        return None
    try:
        response = outbound.post(
            delivery.target,
            json.dumps(payload).encode(),
            {
                "Content-Type": "application/json",
                "Idempotency-Key": payload["idempotency_key"],
                "User-Agent": "microlens-alerts",
            },
            allow_private=settings.MICROLENS_ALERT_ALLOW_PRIVATE_WEBHOOKS,
            timeout=settings.MICROLENS_ALERT_WEBHOOK_TIMEOUT_SECONDS,
            max_response_bytes=64 * 1024,
        )
    except outbound.RefusedTarget as exc:
        return SendOutcome(False, f"refused: {exc}")
    except outbound.Unreachable as exc:
        return SendOutcome(False, str(exc), backoff(attempt))
    if 200 <= response.status < 300:
        return SendOutcome(True)
    error = f"HTTP {response.status}"
    if response.status == 429:
        return SendOutcome(False, error, _retry_after(response, attempt))
    if response.status >= 500 or response.status == 408:
        return SendOutcome(False, error, backoff(attempt))
    return SendOutcome(False, error)


def _send_email(
    delivery: AlertDelivery, attempt: int, before_sending: Callable[[], bool]
) -> SendOutcome | None:
    event = delivery.event
    payload = event_payload(event, delivery.id)
    rule = event.rule
    split = f" [{rule.split_by}={event.split_value}]" if event.split_value else ""
    verb = "FIRING" if event.kind == "fired" else "resolved"
    interval = payload["interval"]
    lines = [
        f"{rule.name}{split}: {verb}",
        f"metric: {rule.metric}, {rule.comparator} {payload['shown']['threshold']}",
        f"value: {payload['shown']['value']} (n={event.n}"
        + (
            f", 95 % interval {display(interval[0], rule.metric, rule.compare_to)} to"
            f" {display(interval[1], rule.metric, rule.compare_to)})"
            if interval
            else ")"
        ),
        f"window: {rule.window_seconds} s",
        f"dashboard: {payload['link']}",
        f"traces: {payload['traces_link']}",
    ]
    message = EmailMessage(
        subject=f"[microlens {rule.severity}] {rule.name}{split}: {verb}",
        body="\n".join(lines) + "\n",
        to=[delivery.target],
        headers={"X-Microlens-Idempotency-Key": payload["idempotency_key"]},
    )
    if not before_sending():
        return None
    try:
        message.send()
    except OSError as exc:
        return SendOutcome(False, type(exc).__name__, backoff(attempt))
    return SendOutcome(True)
