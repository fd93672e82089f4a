"""What a metric query asks for: ``Filters`` (projects, the range ``[start, end)``, micro
model, route, model, one cohort value) and the error for a query the rollups cannot
answer. Imports nothing of the metrics package, so the SQL builder (sql.py), the decision
search (decisions.py), the evaluation rollup (evaluations.py) and the metric definitions
(``__init__.py``) all build on it without importing each other."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

COLUMN_GROUPS = ("micro_model", "route", "model")


class InvalidQuery(ValueError):
    """A metric query the rollups cannot answer (the message says why)."""


@dataclass(frozen=True, slots=True)
class Filters:
    project_ids: tuple[int, ...]
    start: datetime
    end: datetime
    micro_model: str | None = None
    route: str | None = None
    model: str | None = None
    cohort: tuple[str, str] | None = None

    def with_(self, **changes: Any) -> Filters:
        return replace(self, **changes)
