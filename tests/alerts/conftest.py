from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dashboard.alerts.models import AlertRule
from dashboard.metrics.refresh import fold_changes
from tests.celery_processes import filesystem_broker
from tests.dashboard.metric_data import NOW, build_trace
from tracestore.contracts import ProjectRef
from tracestore.services import create_project, store_spans


@pytest.fixture
def project() -> ProjectRef:
    return create_project("shop")


@pytest.fixture
def broker() -> Path:
    """kombu's filesystem broker folders, emptied (retries are sent with a countdown)."""
    return filesystem_broker()


@pytest.fixture(autouse=True)
def _alert_settings(settings) -> None:
    settings.MICROLENS_ALERT_EVAL_SECONDS = 60
    settings.MICROLENS_ALERT_ALLOW_PRIVATE_WEBHOOKS = False


def decisions(
    project_id: int,
    count: int,
    *,
    fallbacks: int = 0,
    at: datetime = NOW - timedelta(minutes=20),
    route: str = "billing",
    tier: str = "pro",
    first: int = 0,
) -> None:
    """``count`` intent-mini decisions on ``route`` in the hour of ``at``, the first
    ``fallbacks`` of them escalated; language alternates de/en with the index."""
    for i in range(first, first + count):
        built = build_trace(
            i,
            start=at + timedelta(seconds=i % 60),
            route=route,
            label=route,
            expected=route,
            tier=tier,
            fallback=i - first < fallbacks,
        )
        for batch in built.batches:
            store_spans(project_id, built.trace.records(batch))
    fold_changes()


def traffic(project_id: int, spec: Iterable[tuple[Any, ...]]) -> None:
    for args in spec:
        decisions(project_id, *args)


def rule(project_id: int, **fields: Any) -> AlertRule:
    values: dict[str, Any] = {
        "name": "fallbacks",
        "project_id": project_id,
        "metric": "fallback-rate",
        "micro_model": "intent-mini",
        "comparator": "above",
        "threshold": 0.10,
        "window_seconds": 3600,
        "min_n": 10,
    }
    values.update(fields)
    created = AlertRule(**values)
    created.full_clean()
    created.save()
    return created
