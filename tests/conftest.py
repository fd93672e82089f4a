from __future__ import annotations

from pathlib import Path

import pytest

from tracestore.normalise import DEFAULT_COHORT_DIMENSIONS


@pytest.fixture
def artifacts_dir() -> Path:
    path = Path(__file__).resolve().parent.parent / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(autouse=True)
def _rows_from_data_migrations(request: pytest.FixtureRequest) -> None:
    """A transactional test's database is flushed after every such test, which also empties
    what data migrations created; put it back so every test starts from a migrated
    database (the default cohort dimensions)."""
    marker = request.node.get_closest_marker("django_db")
    transactional = bool(marker and marker.kwargs.get("transaction")) or any(
        name in request.fixturenames for name in ("transactional_db", "live_server")
    )
    if not transactional:
        return
    request.getfixturevalue("transactional_db")
    from tracestore.models import CohortDimension

    for key, display_name in DEFAULT_COHORT_DIMENSIONS:
        CohortDimension.objects.get_or_create(key=key, defaults={"display_name": display_name})
