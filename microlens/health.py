"""Liveness of the stack: heartbeats written by the worker, read by ``/healthz`` and
``microlens status``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from .models import Heartbeat


@dataclass(frozen=True, slots=True)
class HeartbeatView:
    role: str
    hostname: str
    pid: int
    seen_at: datetime
    age_seconds: float


@dataclass(frozen=True, slots=True)
class HealthReport:
    database_ok: bool
    database_error: str | None
    heartbeats: list[HeartbeatView]
    stale_after_seconds: float

    def last_heartbeat(self, role: str) -> HeartbeatView | None:
        mine = [beat for beat in self.heartbeats if beat.role == role]
        return min(mine, key=lambda beat: beat.age_seconds) if mine else None

    @property
    def worker_alive(self) -> bool:
        beat = self.last_heartbeat("worker")
        return beat is not None and beat.age_seconds <= self.stale_after_seconds


def record_heartbeat(role: str, hostname: str, pid: int) -> None:
    """Upsert the (role, hostname) row in one statement: concurrent beats cannot collide."""
    Heartbeat.objects.bulk_create(
        [Heartbeat(role=role, hostname=hostname, pid=pid, seen_at=timezone.now())],
        update_conflicts=True,
        unique_fields=["role", "hostname"],
        update_fields=["pid", "seen_at"],
    )


def read_health() -> HealthReport:
    # Three missed beats before a worker counts as gone: one late beat is not an outage.
    stale_after = 3.0 * settings.CELERY_HEARTBEAT_SECONDS
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        rows = list(Heartbeat.objects.order_by("role", "hostname"))
    except DatabaseError as exc:
        return HealthReport(False, exc.__class__.__name__, [], stale_after)
    now = timezone.now()
    beats = [
        HeartbeatView(
            role=row.role,
            hostname=row.hostname,
            pid=row.pid,
            seen_at=row.seen_at,
            age_seconds=max(0.0, (now - row.seen_at).total_seconds()),
        )
        for row in rows
    ]
    return HealthReport(True, None, beats, stale_after)


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """200 while the database answers (the web process can serve); the worker's heartbeat
    age is reported, not required, so a load balancer does not drop web for a slow worker."""
    report = read_health()
    worker = report.last_heartbeat("worker")
    body = {
        "status": "ok" if report.database_ok and report.worker_alive else "degraded",
        "database": "ok" if report.database_ok else f"unreachable ({report.database_error})",
        "worker_heartbeat_age_seconds": round(worker.age_seconds, 3) if worker else None,
        "worker_alive": report.worker_alive,
    }
    if not report.database_ok:
        body["status"] = "down"
    return JsonResponse(body, status=200 if report.database_ok else 503)
