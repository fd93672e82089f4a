"""The evaluation rollup stays exact: eval fail rate read from it (and, for the partial
hours at a window's ends, from the results) equals the counts of evaluators' raw results
over exactly the window, for every window, filter and grouping, and late feedback that
flips a LabelCheck moves the counts once, however often the fold runs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction

from dashboard import metrics
from dashboard.demo_data import ensure_demo_prices, seed_demo_data
from dashboard.metrics.evaluations import (
    expire_evaluation_rollups,
    fold_evaluations,
    rebuild_evaluation_rollups,
)
from dashboard.metrics.refresh import fold_changes
from evaluators.contracts import LABEL_CHECK
from evaluators.queries import evaluation_counts, list_evaluations
from evaluators.services import record_feedback
from tracestore.contracts import ProjectRef
from tracestore.services import create_project

pytestmark = pytest.mark.django_db

END = datetime(2026, 11, 20, 7, 30, tzinfo=UTC)
WINDOWS = {
    "ragged 5 hours": (END - timedelta(hours=5, minutes=20), END - timedelta(minutes=10)),
    "24 h": (END - timedelta(hours=24), END),
    "3 days with ragged ends": (END - timedelta(days=3, hours=2), END + timedelta(hours=1)),
}


@pytest.fixture(scope="module")
def _seeded_once(django_db_setup, django_db_blocker) -> Iterator[ProjectRef]:
    """The demo data set, seeded and folded once for the module inside a transaction that
    is rolled back after its last test. Each test runs in a savepoint of it (the
    ``django_db`` mark), so whatever a test changes is gone before the next one starts."""
    with django_db_blocker.unblock(), transaction.atomic():
        project = create_project("shop")
        ensure_demo_prices()
        seed_demo_data(project.id, spans=8_000, days=3, end_ns=int(END.timestamp()) * 10**9)
        fold_changes()
        _fold()
        yield project
        transaction.set_rollback(True)


@pytest.fixture
def seeded(_seeded_once: ProjectRef) -> ProjectRef:
    return _seeded_once


def _database_now() -> datetime:
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]


def _fold() -> tuple[int, int]:
    """fold_evaluations on the database's clock. The module's tests share one transaction,
    whose now() (the time of the hour-change marks) stands still from the fixture's start;
    folding on that clock keeps the late-commit margin meaning the same however long the
    module runs."""
    return fold_evaluations(now=_database_now())


def _raw(project_id, window, **options) -> dict:
    start, end = window
    return {
        (c.evaluator, c.group): [c.failed, c.evaluated]
        for c in evaluation_counts(
            [project_id],
            start=start,
            end=end,
            **options,
        )
    }


def _rolled(project_id, window, group_by=None, **filters) -> dict:
    result = metrics.compute(
        "eval-fail-rate", metrics.Filters((project_id,), *window, **filters), group_by=group_by
    )
    return {(r["evaluator"], r["group"]): [r["failed"], r["n"]] for r in result.rows}


@pytest.mark.parametrize("window", list(WINDOWS.values()), ids=list(WINDOWS))
@pytest.mark.parametrize("group_by", [None, "micro_model", "user.tier", "language"])
def test_fail_rates_from_the_rollup_equal_the_raw_counts(seeded, window, group_by) -> None:
    raw = _raw(seeded.id, window, group_by=group_by)

    assert len(raw) >= 3
    assert _rolled(seeded.id, window, group_by) == raw


@pytest.mark.parametrize("window", list(WINDOWS.values()), ids=list(WINDOWS))
def test_micro_model_and_cohort_filters_equal_the_raw_counts(seeded, window) -> None:
    raw = _raw(seeded.id, window, micro_model="router-tiny", cohort=("language", "ja"))
    rolled = _rolled(seeded.id, window, micro_model="router-tiny", cohort=("language", "ja"))
    assert raw and rolled == raw

    raw_by_tier = _raw(seeded.id, window, group_by="micro_model", cohort=("user.tier", "free"))
    assert _rolled(seeded.id, window, "micro_model", cohort=("user.tier", "free")) == raw_by_tier


@pytest.mark.parametrize("window", list(WINDOWS.values()), ids=list(WINDOWS))
def test_weighted_rates_reweight_by_the_sampling_probability(seeded, window) -> None:
    views = list_evaluations(
        [seeded.id],
        limit=20_000,
        micro_model="intent-mini",
        start=window[0],
        end=window[1],
    ).results
    result = metrics.compute(
        "eval-fail-rate", metrics.Filters((seeded.id,), *window, micro_model="intent-mini")
    )

    for row in result.rows:
        applicable = [v for v in views if v.evaluator == row["evaluator"] and v.passed is not None]
        weight = sum(1 / v.sampling_probability for v in applicable)
        failed = sum(1 / v.sampling_probability for v in applicable if not v.passed)
        assert row["n"] == len(applicable)
        assert row["weighted_rate"] == pytest.approx(failed / weight, rel=1e-9)
        if row["evaluator"] != LABEL_CHECK and window == WINDOWS["3 days with ragged ends"]:
            # The 10 % sample, the 5 % of the later half (a budget cut), and the
            # always-evaluated fallbacks and enterprise traffic are all in the sum.
            assert {v.sampling_probability for v in applicable} == {0.1, 0.05, 1.0}
    assert len(result.rows) == 3


def test_late_feedback_flipping_a_label_check_counts_once(seeded) -> None:
    window = WINDOWS["3 days with ragged ends"]
    before = _rolled(seeded.id, window, "micro_model")
    passing = next(
        v
        for v in list_evaluations([seeded.id], limit=500, evaluator=LABEL_CHECK).results
        if v.passed and v.micro_model == "intent-mini"
    )
    wrong = next(
        label for label in ("billing", "tech", "sales") if label != passing.predicted_label
    )

    record_feedback(
        [seeded.id], trace_id=passing.trace_id, span_id=passing.span_id, expected_label=wrong
    )
    _fold()
    _fold()  # folding again (the late-commit margin re-reads it) changes nothing

    after = _rolled(seeded.id, window, "micro_model")
    key = (LABEL_CHECK, "intent-mini")
    assert after[key] == [before[key][0] + 1, before[key][1]]
    assert {k: v for k, v in after.items() if k != key} == {
        k: v for k, v in before.items() if k != key
    }
    assert after == _raw(seeded.id, window, group_by="micro_model")


def test_a_rebuild_gives_the_same_rollup(seeded) -> None:
    window = WINDOWS["3 days with ragged ends"]
    before = _rolled(seeded.id, window, "language")

    rebuild_evaluation_rollups()

    assert _rolled(seeded.id, window, "language") == before


def test_expired_hours_leave_the_rollup(seeded, settings) -> None:
    settings.MICROLENS_RETENTION_DAYS = 1
    # 24 h after END's hour: the first two days expire, the day of the cutoff keeps 0:00-07:00.
    expire_evaluation_rollups(now=datetime(2026, 11, 20, 7, 0, tzinfo=UTC) + timedelta(days=1))

    window = (END - timedelta(days=4), END + timedelta(hours=1))
    kept = (datetime(2026, 11, 20, 7, tzinfo=UTC), END + timedelta(hours=1))
    assert _rolled(seeded.id, window) == _raw(seeded.id, kept)


def _settle(project_id) -> None:
    """Make the seeded results older than the fold's late-commit margin, so the next fold
    re-counts only what changes from here on."""
    from django.utils import timezone

    from evaluators.models import EvaluationResult

    EvaluationResult.objects.filter(project_id=project_id).update(
        updated_at=timezone.now() - timedelta(hours=1)
    )
    _fold()
    assert _fold() == (0, 0)


def _rollup_micro_models(project_id) -> set[str]:
    from dashboard.models import EvalRollup

    return set(
        EvalRollup.objects.filter(project_id=project_id).values_list("micro_model", flat=True)
    )


def test_deleting_a_micro_model_takes_its_verdicts_out_of_the_rollup(seeded) -> None:
    from evaluators.models import MicroModel

    window = WINDOWS["3 days with ragged ends"]
    before = _rolled(seeded.id, window, "micro_model")
    assert before[(LABEL_CHECK, "router-tiny")][1] > 0
    assert "router-tiny" in _rollup_micro_models(seeded.id)
    _settle(seeded.id)

    MicroModel.objects.get(project_id=seeded.id, name="router-tiny").delete()
    _fold()

    after = _rolled(seeded.id, window, "micro_model")
    assert not any(group == "router-tiny" for _, group in after)
    assert after == {k: v for k, v in before.items() if k[1] != "router-tiny"}
    assert after == _raw(seeded.id, window, group_by="micro_model")
    assert "router-tiny" not in _rollup_micro_models(seeded.id)


def test_renaming_a_micro_model_moves_its_verdicts_in_the_rollup(seeded) -> None:
    from evaluators.models import MicroModel

    window = WINDOWS["24 h"]
    before = _rolled(seeded.id, window, "micro_model")
    micro_model = MicroModel.objects.get(project_id=seeded.id, name="router-tiny")
    _settle(seeded.id)

    micro_model.name = "router-small"
    micro_model.save()
    _fold()

    after = _rolled(seeded.id, window, "micro_model")
    moved = {
        (evaluator, "router-small"): v for (evaluator, g), v in before.items() if g == "router-tiny"
    }
    assert moved
    assert after == {**{k: v for k, v in before.items() if k[1] != "router-tiny"}, **moved}
    assert after == _raw(seeded.id, window, group_by="micro_model")
    assert "router-tiny" not in _rollup_micro_models(seeded.id)


def test_a_rolled_back_deletion_changes_no_count(seeded) -> None:
    from django.db import transaction

    from evaluators.models import MicroModel

    window = WINDOWS["24 h"]
    before = _rolled(seeded.id, window, "micro_model")
    _settle(seeded.id)

    with pytest.raises(RuntimeError), transaction.atomic():
        MicroModel.objects.get(project_id=seeded.id, name="router-tiny").delete()
        raise RuntimeError("the admin's transaction fails after the delete")

    assert _fold() == (0, 0)

    assert _rolled(seeded.id, window, "micro_model") == before


def test_each_day_row_equals_the_raw_counts_of_its_day(seeded) -> None:
    """Days are re-summed from the hour rows; counted from the results directly they are
    the same, the w- and w²-weighted sums included."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT bucket, evaluator, failed, evaluated, weighted_failed, weighted_evaluated,"
            " weighted_sq_failed, weighted_sq_evaluated FROM dashboard_evalrollup"
            " WHERE project_id = %s AND width = 'd' AND dim_key = ''",
            [seeded.id],
        )
        rows = cursor.fetchall()
    by_day: dict[datetime, dict] = {}
    for day, evaluator, *sums in rows:
        total = by_day.setdefault(day, {}).setdefault(evaluator, [0, 0, 0.0, 0.0, 0.0, 0.0])
        for i, value in enumerate(sums):
            total[i] += value
    assert len(by_day) >= 3
    for day, rolled in by_day.items():
        raw = {
            c.evaluator: [
                c.failed,
                c.evaluated,
                pytest.approx(float(c.weighted_failed)),
                pytest.approx(float(c.weighted_evaluated)),
                pytest.approx(float(c.weighted_sq_failed)),
                pytest.approx(float(c.weighted_sq_evaluated)),
            ]
            for c in evaluation_counts([seeded.id], start=day, end=day + timedelta(days=1))
        }
        assert rolled == raw
