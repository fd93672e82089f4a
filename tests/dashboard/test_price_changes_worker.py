"""A price added and deleted in the admin reaches the figures through a real Celery worker
running the periodic fold task (kombu's filesystem broker, the test database): no shell,
no rebuild."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from dashboard import metrics
from dashboard.models import DecisionFact, ModelPrice, PriceChange
from dashboard.tasks import refresh_metrics
from tests.builders import TraceBuilder
from tests.celery_processes import CeleryProcesses, filesystem_broker, wait_for
from tracestore.services import create_project, store_spans

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WAIT = 90  # seconds for the worker to start and fold (a loaded 2-core machine)


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[None]:
    filesystem_broker()
    processes = CeleryProcesses(tmp_path, {}, name="prices")
    processes.start()
    yield
    processes.stop_all()


def _cost_row(project_id: int, start: datetime, end: datetime) -> dict:
    return metrics.compute("cost-per-trace", metrics.Filters((project_id,), start, end)).rows[0]


def test_a_price_reaches_the_figures_at_the_workers_next_fold(worker) -> None:
    project = create_project("prices-worker")
    start = timezone.now().astimezone(UTC) - timedelta(minutes=20)
    trace = TraceBuilder(start_ns=int(start.timestamp() * 1e9))
    root = trace.span("POST /chat", duration_ms=900)
    trace.span(
        "intent",
        parent=root,
        offset_ms=5,
        attrs={
            "micro_model.name": "intent-mini",
            "micro_model.label": "billing",
            "llm.token_count.prompt": 41,
            "llm.token_count.completion": 3,
        },
    )
    store_spans(project.id, trace.records())
    window = (start - timedelta(minutes=1), timezone.now() + timedelta(minutes=1))
    admin = Client()
    admin.force_login(get_user_model().objects.create_superuser("root", password="pw-1-tests"))

    refresh_metrics.delay()
    wait_for(lambda: DecisionFact.objects.exists(), "the first fold", WAIT)
    assert _cost_row(project.id, *window)["unpriced_models"] == ["intent-mini"]

    admin.post(
        "/admin/dashboard/modelprice/add/",
        {
            "model_pattern": "intent-mini",
            "input_per_million": "1.0",
            "output_per_million": "2.0",
            "effective_from": start.date().isoformat(),
        },
    )
    refresh_metrics.delay()
    wait_for(lambda: not PriceChange.objects.exists(), "the fold after the price", WAIT)
    row = _cost_row(project.id, *window)
    assert (row["uncosted_traces"], row["unpriced_models"]) == (0, [])
    assert row["mean_usd"] == pytest.approx((41 * 1.0 + 3 * 2.0) / 1e6)

    admin.post(
        f"/admin/dashboard/modelprice/{ModelPrice.objects.get().pk}/delete/", {"post": "yes"}
    )
    refresh_metrics.delay()
    wait_for(lambda: not PriceChange.objects.exists(), "the fold after the delete", WAIT)
    row = _cost_row(project.id, *window)
    assert (row["uncosted_traces"], row["unpriced_models"]) == (1, ["intent-mini"])
