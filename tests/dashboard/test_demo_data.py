"""The demo data set: more than 5 spans per trace, evaluation results on a sample that
agree with the spans, written in bulk through evaluators' import."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dashboard import metrics
from dashboard.demo_data import (
    LATE_RATE_FACTOR,
    SAMPLE_RATE_BY_COHORT,
    SAMPLE_RATES,
    ensure_demo_prices,
    seed_demo_data,
)
from dashboard.demo_vocabulary import LANGUAGES, MICRO_MODELS, TASK_TYPES, TIERS
from dashboard.metrics.refresh import fold_changes
from dashboard.metrics.shadow import shadow_agreement
from evaluators.contracts import LABEL_CHECK, TASK_COMPLETION, EvaluationRecord
from evaluators.queries import evaluation_counts, list_evaluations
from evaluators.services import import_evaluation_results

pytestmark = pytest.mark.django_db

END = datetime(2026, 11, 20, tzinfo=UTC)


@pytest.fixture
def seeded(project):
    ensure_demo_prices()
    result = seed_demo_data(project.id, spans=10_000, days=2, end_ns=int(END.timestamp()) * 10**9)
    fold_changes()
    return project, result


def _filters(project) -> metrics.Filters:
    return metrics.Filters((project.id,), END - timedelta(days=3), END)


def test_traces_average_more_than_five_spans(seeded) -> None:
    _, result = seeded

    assert result.traces == 2000
    assert 5.0 < result.spans / result.traces < 6.0


def test_label_check_agrees_with_the_decisions_labels(seeded) -> None:
    project, _ = seeded
    quality = metrics.compute("label-quality", _filters(project)).rows[0]
    wrong = quality["n"] - round(quality["accuracy"] * quality["n"])

    counts = evaluation_counts([project.id], evaluator=LABEL_CHECK)

    assert counts[0].evaluated == quality["n"]
    assert counts[0].failed == wrong
    assert 0 < wrong < quality["n"]


def test_model_based_evaluations_are_a_sample_with_its_probability(seeded) -> None:
    project, result = seeded
    views = list_evaluations([project.id], limit=5000, evaluator=TASK_COMPLETION).results
    probabilities = {v.micro_model: set() for v in views}
    for view in views:
        probabilities[view.micro_model].add(view.sampling_probability)

    assert 0.05 * result.traces < len(views) < 0.4 * result.traces
    for name, seen in probabilities.items():
        base = SAMPLE_RATES[name] / 100
        by_cohort = {r / 100 for (n, _), r in SAMPLE_RATE_BY_COHORT.items() if n == name}
        assert seen <= {1.0, base, base * LATE_RATE_FACTOR, *by_cohort}, name
        # Mixed rates: the early and the late half of the window are scored differently.
        assert {base, base * LATE_RATE_FACTOR} <= seen, name
    assert 0.05 in probabilities["safety-screen"]  # its free tier


def test_part_of_the_traffic_is_mirrored_to_a_shadow_that_is_no_live_decision(seeded) -> None:
    project, _ = seeded
    f = _filters(project)
    rows = shadow_agreement(f.with_(micro_model="intent-mini"), "user.tier")
    overall = next(r for r in rows if r["cohort"] == "")
    live = next(r for r in metrics.micro_models(f) if r["name"] == "intent-mini")

    assert overall["shadow_model"] == "intent-mini-next"
    assert 0.2 * live["n"] < overall["n"] < 0.4 * live["n"]
    assert 0.6 < overall["agreement"]["rate"] < 1.0
    assert overall["with_expected_label"] > 0
    assert {r["cohort"] for r in rows} == {"", "free", "pro", "enterprise"}
    assert "intent-mini-next" not in {r["name"] for r in metrics.micro_models(f)}
    versions = {r["group"] for r in metrics.fallback_rate(f, "prompt.version").rows}
    assert versions == {"v3", "v4", "v5"}


def test_the_seeded_data_set_speaks_the_demo_vocabulary(seeded) -> None:
    project, _ = seeded
    f = _filters(project)

    assert {r["name"] for r in metrics.micro_models(f)} == set(MICRO_MODELS)
    for key, values in (("user.tier", TIERS), ("language", LANGUAGES), ("task.type", TASK_TYPES)):
        groups = {r["group"] for r in metrics.fallback_rate(f, key).rows}
        assert groups == {value for value, _ in values}, key


def test_fail_rates_differ_by_cohort(seeded) -> None:
    project, _ = seeded
    rates = {
        row.group: row.failed / row.evaluated
        for row in evaluation_counts([project.id], evaluator=TASK_COMPLETION, group_by="language")
    }

    assert rates["ja"] > 1.5 * rates["en"]


def test_seeding_again_adds_no_duplicate_evaluations(seeded) -> None:
    project, result = seeded
    before = sum(c.evaluated for c in evaluation_counts([project.id]))

    again = seed_demo_data(project.id, spans=10_000, days=2, end_ns=int(END.timestamp()) * 10**9)

    assert again.evaluations == 0
    assert sum(c.evaluated for c in evaluation_counts([project.id])) == before
    assert result.evaluations > 0


def _record(**changes) -> EvaluationRecord:
    fields = dict(
        trace_id=bytes(range(16)),
        span_id=bytes(range(8)),
        span_start_time=END,
        micro_model="intent-mini",
        evaluator=TASK_COMPLETION,
        score=0.9,
        passed=True,
        threshold=0.5,
        reason="ok",
        judge="local-lexical",
        latency_ms=3.0,
        sampling_probability=0.1,
    )
    fields.update(changes)
    return EvaluationRecord(**fields)


def test_a_bad_record_is_refused_and_its_batch_is_not_written(project) -> None:
    good = _record()
    bad = _record(span_id=bytes(8), evaluator="vibes")

    with pytest.raises(ValueError, match="unknown evaluator 'vibes'"):
        import_evaluation_results(project.id, [good, bad])
    assert evaluation_counts([project.id]) == []

    assert import_evaluation_results(project.id, [good]) == 1
    with pytest.raises(ValueError, match="sampling_probability"):
        import_evaluation_results(project.id, [_record(sampling_probability=0.0)])
