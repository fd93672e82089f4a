"""The composition root's Celery tasks."""

from __future__ import annotations

import os
import socket

from celery import shared_task

from .health import record_heartbeat


@shared_task(name="microlens.heartbeat", ignore_result=True)
def heartbeat() -> None:
    """Scheduled by beat, run by a worker: proves beat, broker, worker and database work."""
    record_heartbeat("worker", heartbeat.request.hostname or socket.gethostname(), os.getpid())
