"""Webhooks and emails of transitions: one per transition and target, retried with backoff
(the receiver's Retry-After on 429), refused for private addresses unless allowed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from dashboard.alerts.models import AlertDelivery
from dashboard.alerts.notify import UnsafeTarget, check_webhook_url, send_delivery
from dashboard.alerts.services import (
    claim_alert_delivery,
    complete_alert_delivery,
    due_alert_deliveries,
    evaluate_alert_rule,
    mark_alert_delivery_sending,
)
from dashboard.alerts.tasks import deliver
from tests.dashboard.metric_data import NOW

from .conftest import decisions, rule
from .webhook_server import Reply, webhook_server

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("broker")]


@pytest.fixture
def loopback_allowed(settings) -> None:
    settings.MICROLENS_ALERT_ALLOW_PRIVATE_WEBHOOKS = True


def _fire(project_id: int, **fields) -> list[int]:
    decisions(project_id, 40, fallbacks=10)
    r = rule(project_id, **fields)
    return evaluate_alert_rule(r.id, NOW).deliveries


def test_an_email_is_sent_once_per_transition(project, settings) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    [delivery_id] = _fire(project.id, email_addresses=["oncall@example.com"])

    deliver(delivery_id)
    deliver(delivery_id)  # a duplicate message finds the delivery done

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["oncall@example.com"]
    assert message.subject == "[microlens warning] fallbacks: FIRING"
    assert "metric: fallback-rate, above 10 %" in message.body
    assert "value: 25 % (n=40, 95 % interval" in message.body
    assert "traces: http://" in message.body and "fallback=1" in message.body
    assert "/overview/?project=" in message.body
    assert AlertDelivery.objects.get().status == "done"


def test_a_webhook_carries_the_transition_and_a_link(project, loopback_allowed) -> None:
    with webhook_server() as server:
        [delivery_id] = _fire(project.id, webhook_urls=[server.url], split_by="user.tier")
        deliver(delivery_id)

    [received] = server.requests
    body = received.body
    assert received.idempotency_key == body["idempotency_key"]
    assert (body["metric"], body["value"], body["n"], body["threshold"]) == (
        "fallback-rate",
        0.25,
        40,
        0.1,
    )
    assert (body["state"], body["split_by"], body["split_value"]) == ("firing", "user.tier", "pro")
    low, high = body["interval"]
    assert low < 0.25 < high
    assert "micro_model=intent-mini" in body["link"]
    assert "cohort.user.tier=pro" in body["link"]
    assert body["shown"] == {"value": "25 %", "threshold": "10 %"}
    assert "cohort.user.tier=pro" in body["traces_link"] and "fallback=1" in body["traces_link"]
    assert body["rule_link"].endswith(f"/admin/alerts/alertrule/{body['rule']['id']}/change/")
    assert AlertDelivery.objects.get().status == "done"


def test_a_429_is_retried_after_the_receivers_retry_after(project, loopback_allowed) -> None:
    with webhook_server() as server:
        server.then(Reply(429, {"Retry-After": "120"}))
        [delivery_id] = _fire(project.id, webhook_urls=[server.url])
        before = timezone.now()
        deliver(delivery_id)

        delivery = AlertDelivery.objects.get()
        assert (delivery.status, delivery.attempts, delivery.last_error) == (
            "pending",
            1,
            "HTTP 429",
        )
        wait = delivery.next_attempt_at - before
        assert timedelta(seconds=119) <= wait <= timedelta(seconds=125)
        deliver(delivery_id)  # not due yet: nothing is sent
        assert len(server.requests) == 1

        AlertDelivery.objects.filter(pk=delivery_id).update(next_attempt_at=timezone.now())
        deliver(delivery_id)

    assert AlertDelivery.objects.get().status == "done"
    assert len(server.requests) == 2 and len(server.keys()) == 1


def test_a_server_error_backs_off_and_a_client_error_fails_for_good(
    project, loopback_allowed
) -> None:
    with webhook_server() as server:
        server.then(Reply(503), Reply(410))
        [delivery_id] = _fire(project.id, webhook_urls=[server.url])
        deliver(delivery_id)
        first = AlertDelivery.objects.get()
        assert (first.status, first.last_error) == ("pending", "HTTP 503")
        AlertDelivery.objects.filter(pk=delivery_id).update(next_attempt_at=timezone.now())
        deliver(delivery_id)

    final = AlertDelivery.objects.get()
    assert (final.status, final.attempts, final.last_error) == ("failed", 2, "HTTP 410")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[fe80::1]/hook",
        "http://0.0.0.0/hook",
    ],
)
def test_private_loopback_and_link_local_targets_are_refused(url, settings) -> None:
    with pytest.raises(UnsafeTarget, match="private, loopback or link-local"):
        check_webhook_url(url)
    settings.MICROLENS_ALERT_ALLOW_PRIVATE_WEBHOOKS = True
    check_webhook_url(url)


def test_a_public_address_and_a_bad_scheme(settings) -> None:
    check_webhook_url("https://93.184.216.34/hook")
    with pytest.raises(UnsafeTarget, match="http:// or https://"):
        check_webhook_url("file:///etc/passwd")


def test_a_delivery_to_a_now_refused_address_fails_without_sending(project, settings) -> None:
    settings.MICROLENS_ALERT_ALLOW_PRIVATE_WEBHOOKS = True
    with webhook_server() as server:
        [delivery_id] = _fire(project.id, webhook_urls=[server.url])
        settings.MICROLENS_ALERT_ALLOW_PRIVATE_WEBHOOKS = False
        deliver(delivery_id)

    delivery = AlertDelivery.objects.get()
    assert delivery.status == "failed"
    assert delivery.last_error.startswith("refused:")
    assert server.requests == []


def test_deliveries_whose_message_or_worker_was_lost_are_found_again(project, settings) -> None:
    settings.MICROLENS_ALERT_DELIVERY_LEASE_SECONDS = 60
    # Evaluated, committed, then the process died before sending any message.
    [delivery_id] = _fire(project.id, email_addresses=["oncall@example.com"])
    now = timezone.now()
    assert due_alert_deliveries(now) == [delivery_id]

    claim = claim_alert_delivery(delivery_id, now)
    assert claim is not None and claim.attempt == 1
    assert due_alert_deliveries(now) == []  # a live claim is left alone
    assert claim_alert_delivery(delivery_id, now) is None

    # The claiming worker died: once its claim expires the delivery is due again.
    later = now + timedelta(seconds=61)
    assert due_alert_deliveries(later) == [delivery_id]
    retaken = claim_alert_delivery(delivery_id, later)
    assert retaken is not None and retaken.attempt == 2
    assert complete_alert_delivery(claim) is False  # the stale claim cannot finish it
    assert complete_alert_delivery(retaken) is True


def test_a_worker_that_stalled_past_its_claim_sends_nothing(project, settings) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.MICROLENS_ALERT_DELIVERY_LEASE_SECONDS = 60
    [delivery_id] = _fire(project.id, email_addresses=["oncall@example.com"])
    now = timezone.now()
    # Claimed 61 s ago; the worker stalled (or its host paused) before sending.
    stale = claim_alert_delivery(delivery_id, now - timedelta(seconds=61))
    assert stale is not None

    assert (
        send_delivery(delivery_id, stale.attempt, lambda: mark_alert_delivery_sending(stale, now))
        is None
    )
    assert mail.outbox == []
    assert AlertDelivery.objects.get().sending_at is None

    retaken = claim_alert_delivery(delivery_id, now)
    assert retaken is not None and retaken.attempt == 2
    assert mark_alert_delivery_sending(stale, now) is False  # no longer its delivery
    assert mark_alert_delivery_sending(retaken, now) is True
    marked = AlertDelivery.objects.get()
    # The mark renews the lease for the request.
    assert (marked.sending_at, marked.claimed_until) == (now, now + timedelta(seconds=60))


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({}, "/overview/?project="),
        ({"metric": "latency-p90", "threshold": 20.0}, "/micro-models/intent-mini/?project="),
    ],
)
def test_the_link_opens_the_page_of_the_rules_metric(project, settings, fields, path) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.MICROLENS_PUBLIC_URL = "https://microlens.example.com/"
    [delivery_id] = _fire(project.id, email_addresses=["oncall@example.com"], **fields)

    deliver(delivery_id)

    assert f"dashboard: https://microlens.example.com{path}" in mail.outbox[0].body
