"""The Celery queues evaluators' tasks go to (the workers of `microlens up` and the
container roles consume the default queue)."""

from __future__ import annotations

from enum import StrEnum


class Queue(StrEnum):
    DEFAULT = "default"
