"""Model prices and cohort dimensions through the admin, and what a price change does."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from dashboard import metrics
from dashboard.metrics.refresh import fold_changes, rebuild_all_rollups
from dashboard.models import ModelPrice
from tests.dashboard.metric_data import NOW, build_trace
from tracestore.models import CohortDimension
from tracestore.services import create_project, store_spans

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client() -> Client:
    user = get_user_model().objects.create_superuser("root", password="pw-for-tests-1")
    client = Client()
    client.force_login(user)
    return client


def test_the_default_cohort_dimensions_exist() -> None:
    assert sorted(CohortDimension.objects.values_list("key", flat=True)) == [
        "language",
        "prompt.version",
        "task.type",
        "user.tier",
    ]


def test_a_price_added_in_the_admin_costs_history_after_a_rebuild(admin_client: Client) -> None:
    project = create_project("prices")
    b = build_trace(1, start=NOW, route="r", label="r", expected=None, tier="pro", fallback=False)
    for batch in b.batches:
        store_spans(project.id, b.trace.records(batch))
    fold_changes()
    filters = metrics.Filters((project.id,), NOW - timedelta(hours=1), NOW + timedelta(hours=1))
    assert metrics.compute("cost-per-trace", filters).rows[0]["uncosted_traces"] == 1

    response = admin_client.post(
        "/admin/dashboard/modelprice/add/",
        {
            "model_pattern": "intent-mini*",
            "input_per_million": "1.0",
            "output_per_million": "2.0",
            "effective_from": "2026-01-01",
        },
        follow=True,
    )
    rebuild_all_rollups()

    assert "costs are recomputed for the traces that used a matching model" in (
        response.content.decode()
    )
    assert ModelPrice.objects.count() == 1
    row = metrics.compute("cost-per-trace", filters).rows[0]
    assert row["uncosted_traces"] == 0
    assert row["mean_usd"] == pytest.approx((41 * 1.0 + 3 * 2.0) / 1e6)
