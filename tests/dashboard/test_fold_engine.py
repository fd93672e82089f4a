"""The fold engine writes each declared sum to the column of its name: a declaration that
names no column of its rollup model is refused when it is made (at import), and the three
declared rollups cover every column of their models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from dashboard.metrics import evaluations, refresh
from dashboard.metrics.fold import RollupTable, Sum, ceil_day, ceil_hour, floor_day, floor_hour
from dashboard.models import EvalRollup, LabelRollup, Rollup


def test_a_sum_that_is_no_column_of_its_rollup_is_refused() -> None:
    with pytest.raises(ValueError, match="Rollup has no column 'decision'"):
        RollupTable(Rollup, keys=("micro_model",), sums=(Sum("decision"),))


def test_a_key_that_is_no_column_of_its_rollup_is_refused() -> None:
    with pytest.raises(ValueError, match="EvalRollup has no column 'label'"):
        RollupTable(EvalRollup, keys=("label",), sums=(Sum("evaluated"),))


def test_a_column_declared_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        RollupTable(LabelRollup, keys=("label",), sums=(Sum("n"), Sum("n")))


@pytest.mark.parametrize(
    ("rollup", "model"),
    [
        (refresh.ROLLUP, Rollup),
        (refresh.LABEL_ROLLUP, LabelRollup),
        (evaluations.EVAL_ROLLUP, EvalRollup),
    ],
    ids=["rollup", "label rollup", "evaluation rollup"],
)
def test_each_declared_rollup_writes_every_column_of_its_model(rollup, model) -> None:
    columns = {f.column for f in model._meta.concrete_fields if not f.primary_key}
    assert set(rollup.columns) == columns
    assert rollup.table == model._meta.db_table


def test_the_evaluation_rollup_declares_the_squared_weights() -> None:
    assert [s.name for s in evaluations.EVAL_ROLLUP.sums] == [
        "evaluated",
        "failed",
        "weighted_evaluated",
        "weighted_failed",
        "weighted_sq_evaluated",
        "weighted_sq_failed",
    ]


def test_floors_are_utc_hours_and_days() -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    at = datetime(2026, 3, 1, 2, 10, 7, tzinfo=india)  # 2026-02-28 20:40:07 UTC
    assert floor_hour(at) == datetime(2026, 2, 28, 20, tzinfo=UTC)
    assert ceil_hour(at) == datetime(2026, 2, 28, 21, tzinfo=UTC)
    assert floor_day(at) == datetime(2026, 2, 28, tzinfo=UTC)
    assert ceil_day(at) == datetime(2026, 3, 1, tzinfo=UTC)
    whole = datetime(2026, 2, 28, 20, tzinfo=UTC)
    assert ceil_hour(whole) == whole
    assert ceil_day(datetime(2026, 3, 1, tzinfo=india)) == datetime(2026, 3, 1, tzinfo=UTC)
    assert ceil_day(datetime(2026, 3, 1, tzinfo=UTC)) == datetime(2026, 3, 1, tzinfo=UTC)
