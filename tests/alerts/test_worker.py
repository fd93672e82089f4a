"""A real Celery beat and worker (subprocesses) on the filesystem broker against the test
database: a rule fires and its webhook reaches a local server exactly once (by idempotency
key) even though the worker is SIGKILLed while the POST is in flight."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from dashboard.alerts.models import AlertDelivery, AlertEvent, AlertState

from .conftest import decisions, rule
from .webhook_server import Reply, WebhookServer, webhook_server

ROOT = Path(__file__).resolve().parents[2]
LEASE = 6

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _database_url() -> str:
    db = connection.settings_dict
    return f"postgresql://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture
def start(broker: Path, tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen]]:
    """Starts ``worker`` or ``beat`` processes; stops whatever is left at the end."""
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "DJANGO_SETTINGS_MODULE": "microlens.settings",
        "MICROLENS_DB_CONN_MAX_AGE": "0",
        "MICROLENS_ALERT_EVAL_SECONDS": "1",
        "MICROLENS_ALERT_ALLOW_PRIVATE_WEBHOOKS": "true",  # the receiver is on loopback
        "MICROLENS_ALERT_WEBHOOK_TIMEOUT_SECONDS": str(LEASE - 1),
        "MICROLENS_ALERT_DELIVERY_LEASE_SECONDS": str(LEASE),
    }
    env.pop("CELERY_BROKER_URL", None)
    processes: list[subprocess.Popen] = []

    def run(role: str) -> subprocess.Popen:
        if role == "worker":
            args = [
                *("worker", "--pool=solo", "--concurrency=1", "--without-heartbeat"),
                *("--without-gossip", "--without-mingle", "-n", f"alerts{len(processes)}@%h"),
            ]
        else:
            args = ["beat", "-s", str(tmp_path / "celerybeat-schedule")]
        log = (tmp_path / f"{role}{len(processes)}.log").open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "microlens", *args, "-l", "info"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        processes.append(process)
        return process

    yield run
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def receiver() -> Iterator[WebhookServer]:
    with webhook_server() as server:
        yield server


def test_a_webhook_arrives_once_across_a_worker_killed_mid_delivery(
    project, start, receiver: WebhookServer, settings
) -> None:
    settings.MICROLENS_ALERT_ALLOW_PRIVATE_WEBHOOKS = True
    decisions(project.id, 40, fallbacks=10, at=timezone.now() - timedelta(minutes=5))
    r = rule(project.id, webhook_urls=[receiver.url])
    receiver.then(Reply(delay=30))  # the first POST hangs: the worker dies waiting

    start("beat")
    first = start("worker")
    _wait_for(lambda: receiver.requests, timeout=20, what="the first POST")
    delivery = AlertDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("running", 1)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=10)

    start("worker")
    # The beat task finds the delivery once its claim has expired and sends it again.
    _wait_for(
        lambda: AlertDelivery.objects.filter(status="done").exists(),
        timeout=LEASE + 20,
        what="the delivery done",
    )

    delivery = AlertDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("done", 2)
    event = AlertEvent.objects.get()
    assert (event.rule_id, event.kind, event.value, event.n) == (r.id, "fired", 0.25, 40)
    assert AlertState.objects.get(rule=r).state == "firing"
    # Both POSTs (the one cut short and the retry) carry the transition's one key.
    assert len(receiver.requests) == 2
    assert receiver.keys() == {f"alert-{r.id}--fired-{event.tick}"}
    assert {req.body["delivery_id"] for req in receiver.requests} == {delivery.id}
