"""Heartbeats and /healthz, in-process (test_up covers the beat -> broker -> worker chain)."""

from __future__ import annotations

import os

import pytest
from django.db import connection
from django.test import Client

from microlens.health import read_health, record_heartbeat
from microlens.postgres import free_port
from microlens.tasks import heartbeat

pytestmark = pytest.mark.django_db


def test_the_heartbeat_task_records_the_worker() -> None:
    heartbeat.apply()

    beat = read_health().last_heartbeat("worker")
    assert beat is not None
    assert beat.pid == os.getpid()
    assert beat.age_seconds < 5


def test_heartbeats_upsert_one_row_per_role_and_host() -> None:
    record_heartbeat("worker", "worker@a", 10)
    record_heartbeat("worker", "worker@a", 11)
    record_heartbeat("worker", "worker@b", 12)

    beats = read_health().heartbeats
    assert [(b.hostname, b.pid) for b in beats] == [("worker@a", 11), ("worker@b", 12)]


def test_healthz_without_a_worker_is_degraded_but_serving() -> None:
    response = Client().get("/healthz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "degraded",
        "database": "ok",
        "worker_heartbeat_age_seconds": None,
        "worker_alive": False,
    }


def test_healthz_with_a_fresh_worker_heartbeat_is_ok() -> None:
    record_heartbeat("worker", "worker@a", 10)

    body = Client().get("/healthz").json()

    assert body["status"] == "ok" and body["worker_alive"] is True
    assert 0 <= body["worker_heartbeat_age_seconds"] < 5


@pytest.mark.django_db(transaction=True)
def test_healthz_answers_503_when_the_database_is_unreachable() -> None:
    original = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update(HOST="127.0.0.1", PORT=str(free_port()))
    try:
        response = Client().get("/healthz")
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(original)

    assert response.status_code == 503
    assert response.json() == {
        "status": "down",
        "database": "unreachable (OperationalError)",
        "worker_heartbeat_age_seconds": None,
        "worker_alive": False,
    }
    assert Client().get("/healthz").status_code == 200  # and back once it answers
