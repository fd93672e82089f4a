"""A real Celery beat and worker (subprocesses) on the filesystem broker against the test
database, delivering a rule's webhook to a local server across forced worker crashes:

- killed while evaluating (blocked on the state's row lock): nothing was committed, the
  next worker makes the one transition and the server receives exactly one request;
- killed after the transition, its delivery and the delivery's sending mark committed but
  before the request reached the server: the next worker sends it, exactly one request;
- killed after the request reached the server and before its answer was recorded (the
  one window the system cannot close): the next worker sends it again with the same
  Idempotency-Key, so a receiver that drops repeats acts on it once.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from dashboard.alerts.models import AlertDelivery, AlertEvent, AlertRule, AlertState
from tests.celery_processes import CeleryProcesses, database_url, kill, wait_for

from .conftest import decisions, rule
from .webhook_server import Reply, WebhookServer, webhook_server

# One POST's timeout and a claim's lease: the test kills a worker well inside the timeout
# (it polls every 0.1 s), and a new worker retakes the delivery once the lease expires.
TIMEOUT = 12
LEASE = 15
WAIT = 90  # seconds for anything a worker or beat must do (a loaded 2-core machine)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

Start = Callable[[str], subprocess.Popen]


@pytest.fixture
def start(broker: Path, tmp_path: Path) -> Iterator[Start]:
    """Starts ``worker`` or ``beat`` processes (tests/celery_processes.py); at the end
    stops them all and checks none is left behind."""
    processes = CeleryProcesses(
        tmp_path,
        {
            "MICROLENS_ALERT_EVAL_SECONDS": "1",
            "MICROLENS_ALERT_ALLOW_PRIVATE_WEBHOOKS": "true",  # the receiver is on loopback
            "MICROLENS_ALERT_WEBHOOK_TIMEOUT_SECONDS": str(TIMEOUT),
            "MICROLENS_ALERT_DELIVERY_LEASE_SECONDS": str(LEASE),
        },
        name="alerts",
    )
    yield processes.start
    processes.stop_all()


@pytest.fixture(autouse=True)
def _loopback_allowed(settings) -> None:
    settings.MICROLENS_ALERT_ALLOW_PRIVATE_WEBHOOKS = True  # as the processes' environment


def _wait_for(condition: Callable[[], object], what: str, timeout: float = WAIT) -> object:
    return wait_for(condition, what, timeout)


def _firing_rule(project_id: int, url: str) -> AlertRule:
    decisions(project_id, 40, fallbacks=10, at=timezone.now() - timedelta(minutes=5))
    return rule(project_id, webhook_urls=[url])


def _delivered() -> AlertDelivery:
    _wait_for(
        lambda: AlertDelivery.objects.filter(status="done").exists(),
        "the delivery done",
        timeout=LEASE + WAIT,
    )
    return AlertDelivery.objects.get()


def _assert_the_transition_was_posted(
    server: WebhookServer, r: AlertRule, delivery: AlertDelivery
) -> None:
    event = AlertEvent.objects.get()
    assert (event.rule_id, event.kind, event.value, event.n) == (r.id, "fired", 0.25, 40)
    assert AlertState.objects.get(rule=r).state == "firing"
    for received in server.requests:
        body = received.body
        assert received.idempotency_key == f"alert-{r.id}--fired-{event.tick}"
        assert (body["delivery_id"], body["event_id"]) == (delivery.id, event.id)
        assert (body["transition"], body["metric"], body["value"], body["n"]) == (
            "fired",
            "fallback-rate",
            0.25,
            40,
        )
        assert body["threshold"] == 0.1


def test_a_worker_killed_while_evaluating_commits_nothing_and_the_webhook_arrives_once(
    project, start: Start
) -> None:
    with webhook_server() as server:
        r = _firing_rule(project.id, server.url)
        AlertState.objects.create(rule=r)
        # Another session holds the state's row lock: the worker's evaluation blocks in
        # the middle of its transaction.
        with psycopg.connect(database_url()) as holder:
            holder.execute("SELECT id FROM alerts_alertstate WHERE rule_id = %s FOR UPDATE", [r.id])
            start("beat")
            first = start("worker")
            _wait_for(lambda: _blocked_by(holder.info.backend_pid), "the evaluation to block")
            kill(first)
            holder.rollback()
        assert (AlertEvent.objects.count(), AlertDelivery.objects.count()) == (0, 0)

        start("worker")
        delivery = _delivered()

    assert len(server.requests) == 1
    assert (delivery.status, delivery.attempts) == ("done", 1)
    _assert_the_transition_was_posted(server, r, delivery)


def _blocked_by(pid: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", [pid]
        )
        return cursor.fetchone()[0]


def test_a_worker_killed_before_its_post_reached_the_receiver_is_replaced_and_it_arrives_once(
    project, start: Start
) -> None:
    # The receiver's door is shut: the worker's connection attempt waits in the kernel.
    with webhook_server(accepting=False) as server:
        r = _firing_rule(project.id, server.url)
        start("beat")
        first = start("worker")
        # Transition, delivery, claim and sending mark are committed; the request has not
        # reached the receiver.
        _wait_for(
            lambda: AlertDelivery.objects.filter(sending_at__isnull=False).exists(),
            "the delivery's sending mark",
        )
        kill(first)
        killed = AlertDelivery.objects.get()
        assert (killed.status, killed.attempts, server.requests) == ("running", 1, [])

        server.open()
        start("worker")
        # The beat task finds the delivery once the dead worker's claim has expired.
        delivery = _delivered()

    assert len(server.requests) == 1
    assert (delivery.status, delivery.attempts) == ("done", 2)
    _assert_the_transition_was_posted(server, r, delivery)


def test_a_worker_killed_after_its_post_reached_the_receiver_resends_it_with_the_same_key(
    project, start: Start
) -> None:
    with webhook_server() as server:
        server.then(Reply(delay=120))  # the first POST hangs: the worker dies waiting
        r = _firing_rule(project.id, server.url)
        start("beat")
        first = start("worker")
        _wait_for(lambda: server.requests, "the first POST")
        kill(first)
        killed = AlertDelivery.objects.get()
        assert (killed.status, killed.attempts) == ("running", 1)

        start("worker")
        delivery = _delivered()

    # The request reached the receiver but its answer was never recorded: the delivery is
    # sent again, with the transition's one key, and a receiver that drops repeated keys
    # acts on it once.
    assert len(server.requests) == 2
    assert len(server.processed) == 1
    assert server.requests[0].body == server.requests[1].body
    assert (delivery.status, delivery.attempts) == ("done", 2)
    _assert_the_transition_was_posted(server, r, delivery)
