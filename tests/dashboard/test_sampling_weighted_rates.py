"""Sampling-aware eval fail rates, on generated verdicts whose answers this test computes
itself: one cohort evaluated at 100 %, another sampled at 5 % with a much higher fail
rate. The raw share of failed verdicts is biased towards the fully evaluated cohort; the
headline rate is the whole traffic's, with an interval that covers it and the Kish
effective n."""

from __future__ import annotations

import importlib
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.test import Client

import dashboard.migrations
from dashboard import metrics
from dashboard.alerts.evaluation import preview_rule
from dashboard.alerts.models import AlertRule
from dashboard.metrics.evaluations import fold_evaluations
from dashboard.metrics.weighting import weighted_rate
from evaluators.contracts import TASK_COMPLETION, EvaluationRecord
from evaluators.services import import_evaluation_results
from tests.browser import ARGS, CHROMIUM, sync_playwright_or_skip, watch_csp_violations
from tracestore.services import create_project

pytestmark = pytest.mark.django_db

END = datetime(2026, 11, 20, 7, 30, tzinfo=UTC)
# Ragged ends: the first and last hours are read from the results, the rest from the rollup.
WINDOW = (END - timedelta(hours=6, minutes=20), END - timedelta(minutes=10))
Z = 1.959963984540054
# cohort -> (verdicts run, failed among them, sampling probability)
DESIGN = {"free": (400, 40, 1.0), "enterprise": (200, 80, 0.05)}


def _records() -> list[EvaluationRecord]:
    records = []
    i = 0
    for tier, (n, failed, p) in DESIGN.items():
        for j in range(n):
            i += 1
            # Spread over the window's 6 h 10 min, ends included.
            at = WINDOW[0] + timedelta(seconds=(j * 7_919) % 22_199 + 1)
            records.append(
                EvaluationRecord(
                    trace_id=i.to_bytes(16, "big"),
                    span_id=i.to_bytes(8, "big"),
                    span_start_time=at,
                    micro_model="intent-mini",
                    evaluator=TASK_COMPLETION,
                    score=0.0 if j < failed else 1.0,
                    passed=j >= failed,
                    threshold=0.5,
                    reason="",
                    judge="test",
                    latency_ms=1.0,
                    sampling_probability=p,
                    cohort={"user.tier": tier, "language": "en"},
                )
            )
    return records


@pytest.fixture
def sampled(project):
    records = _records()
    import_evaluation_results(project.id, records)
    fold_evaluations()
    return project, records


def _expected(records: list[EvaluationRecord]) -> dict:
    """The whole traffic's rate and the interval, verdict by verdict (no shortcut sums)."""
    w = [1 / r.sampling_probability for r in records]
    y = [0.0 if r.passed else 1.0 for r in records]
    total = sum(w)
    rate = sum(wi * yi for wi, yi in zip(w, y, strict=True)) / total
    variance = sum((wi * (yi - rate)) ** 2 for wi, yi in zip(w, y, strict=True)) / total**2
    n_star = rate * (1 - rate) / variance
    # Wilson at n*: the roots of (p - rate)² = z² p (1 - p) / n*.
    a = 1 + Z * Z / n_star
    b = -(2 * rate + Z * Z / n_star)
    c = rate * rate
    root = math.sqrt(b * b - 4 * a * c)
    return {
        "rate": rate,
        "low": (-b - root) / (2 * a),
        "high": (-b + root) / (2 * a),
        "effective_n": total**2 / sum(wi * wi for wi in w),
        "raw": sum(y) / len(y),
    }


def test_the_headline_rate_is_the_whole_traffics_and_its_interval_covers_it(sampled) -> None:
    project, records = sampled
    # The whole traffic the design stands for: 400 free (40 failed) + 4,000 enterprise
    # (1,600 failed), against the raw 120 failed of 600 run.
    truth = (40 + 80 * 20) / (400 + 200 * 20)
    expected = _expected(records)

    (row,) = metrics.compute(
        "eval-fail-rate", metrics.Filters((project.id,), *WINDOW, micro_model="intent-mini")
    ).rows

    assert truth == pytest.approx(0.372727, abs=1e-6)
    assert row["rate"] == pytest.approx(truth, rel=1e-9)
    assert row["low"] < truth < row["high"]
    assert row["low"] == pytest.approx(expected["low"], rel=1e-9)
    assert row["high"] == pytest.approx(expected["high"], rel=1e-9)
    assert row["effective_n"] == pytest.approx(4400**2 / (400 + 200 * 400), abs=0.01)
    assert row["effective_n"] == pytest.approx(expected["effective_n"], abs=0.01)
    assert (row["n"], row["failed"]) == (600, 120)
    # The raw rate stays available, and is clearly biased: outside the weighted interval.
    assert row["raw_rate"] == pytest.approx(0.2)
    assert row["raw_high"] < row["low"]
    assert row["weighted_rate"] == row["rate"]


def test_each_cohort_alone_has_equal_weights_so_its_interval_is_the_plain_wilson(
    sampled,
) -> None:
    project, _ = sampled

    rows = {
        r["group"]: r
        for r in metrics.compute(
            "eval-fail-rate", metrics.Filters((project.id,), *WINDOW), group_by="user.tier"
        ).rows
    }

    for tier, (n, failed, _) in DESIGN.items():
        row = rows[tier]
        wilson = metrics.wilson_interval(failed, n)
        assert wilson is not None
        assert row["rate"] == pytest.approx(failed / n, rel=1e-9)
        assert (row["low"], row["high"]) == pytest.approx(wilson, rel=1e-9)
        assert (row["raw_low"], row["raw_high"]) == pytest.approx(wilson, rel=1e-12)
        assert row["effective_n"] == pytest.approx(n)


def test_the_api_answers_the_weighted_rate_with_raw_and_effective_n(
    sampled, member_client: Client
) -> None:
    project, _ = sampled
    body = member_client.get(
        "/api/v1/metrics/eval-fail-rate/",
        {"start": WINDOW[0].isoformat(), "end": WINDOW[1].isoformat(), "project": project.id},
    ).json()

    (row,) = body["results"]
    assert row["rate"] == pytest.approx(0.372727, abs=1e-6)
    assert row["raw_rate"] == pytest.approx(0.2)
    assert row["n"] == 600
    assert row["effective_n"] == pytest.approx(240.8, abs=0.01)


def test_the_cohorts_page_shows_the_weighted_rate_beside_the_raw_one(
    sampled, member_client: Client
) -> None:
    html = member_client.get(
        "/cohorts/",
        {"dimension": "language", "start": WINDOW[0].isoformat(), "end": WINDOW[1].isoformat()},
    ).content.decode()

    assert '<td class="num weighted-rate">37.3%</td>' in html
    assert '<td class="num raw-rate">20.0%</td>' in html
    assert '<td class="num effective-n">240.8</td>' in html


def test_an_eval_fail_rate_alert_rule_reads_the_weighted_rate(sampled) -> None:
    project, _ = sampled
    rule = AlertRule(
        name="task completion failing",
        project_id=project.id,
        metric="eval-fail-rate",
        evaluator=TASK_COMPLETION,
        micro_model="intent-mini",
        comparator="above",
        threshold=0.30,
        window_seconds=int((WINDOW[1] - WINDOW[0]).total_seconds()),
        min_n=30,
        statistical=True,
    )
    rule.full_clean()
    rule.save()

    (row,) = preview_rule(rule, WINDOW[1])

    # The raw 20 % would never fire; the whole traffic's 37.3 % (interval above 30 %) does.
    assert row.reading.value == pytest.approx(0.372727, abs=1e-6)
    assert row.reading.n == 600
    assert row.reading.low is not None and row.reading.low > 0.30
    assert row.breached is True


def test_rollup_rows_from_before_the_squared_weights_are_recounted_whole(sampled) -> None:
    """The migration that adds the w² sums drops the old rows and the fold's watermark:
    the next fold re-counts every hour, so no row is left with w² sums of zero."""
    from django.apps import apps as django_apps

    from dashboard.models import EvalRollup

    project, _ = sampled
    migration = importlib.import_module(
        "dashboard.migrations."
        + next(
            Path(dashboard.migrations.__file__).parent.glob(
                "*_eval_rollup_squared_weights_recounted.py"
            )
        ).stem
    )
    before = _rows(project.id)
    EvalRollup.objects.update(weighted_sq_evaluated=0.0, weighted_sq_failed=0.0)

    migration.recount_from_scratch(django_apps, None)
    assert not EvalRollup.objects.exists()
    fold_evaluations()

    assert _rows(project.id) == before
    assert not EvalRollup.objects.filter(weighted_sq_evaluated=0.0).exists()


def _rows(project_id: int) -> list:
    return [
        (r["evaluator"], r["group"], r["n"], r["rate"], r["low"], r["high"], r["effective_n"])
        for r in metrics.compute(
            "eval-fail-rate", metrics.Filters((project_id,), *WINDOW), group_by="user.tier"
        ).rows
    ]


@pytest.mark.parametrize(
    ("failed", "evaluated", "expected"),
    [(0, 4, (0.0, 0.0)), (4, 4, (1.0, 1.0))],
)
def test_all_passed_or_all_failed_uses_the_kish_n(failed, evaluated, expected) -> None:
    # Weights 1, 1, 20, 20: Kish n = 42² / 802.
    w = 1.0 + 1 + 20 + 20
    w2 = 1.0 + 1 + 400 + 400
    got = weighted_rate(failed, evaluated, w * failed / evaluated, w, w2 * failed / 4, w2)
    kish = w * w / w2
    assert got.effective_n == pytest.approx(kish)
    assert got.rate == expected[0]
    bound = Z * Z / kish / (1 + Z * Z / kish)  # Wilson at 0 of n: z²/n / (1 + z²/n)
    assert (got.low, got.high) == pytest.approx((0.0, bound) if failed == 0 else (1 - bound, 1.0))


def test_the_cohorts_table_shows_both_rates_in_a_real_browser(
    live_server, transactional_db, django_user_model, artifacts_dir
) -> None:
    sync_playwright = sync_playwright_or_skip()
    project = create_project("browser")
    user = django_user_model.objects.create_user("bea", password="browser-test-pw-1")
    user.projects.add(project.id)
    import_evaluation_results(project.id, _records())
    fold_evaluations()
    window = f"start={WINDOW[0].isoformat()}&end={WINDOW[1].isoformat()}".replace("+", "%2B")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            violations = watch_csp_violations(page)
            page.goto(live_server.url + "/login/")
            page.fill("input[name=username]", "bea")
            page.fill("input[name=password]", "browser-test-pw-1")
            page.click("button[type=submit]")
            page.wait_for_load_state("networkidle")

            response = page.goto(f"{live_server.url}/cohorts/?dimension=language&{window}")

            assert response is not None and response.status == 200
            page.locator('[data-figure="eval-heatmap"] .main-svg').first.wait_for(timeout=15_000)
            row = page.locator("table.eval-counts tbody tr").first
            assert row.locator("td.weighted-rate").inner_text() == "37.3%"
            assert row.locator("td.raw-rate").inner_text() == "20.0%"
            assert row.locator("td.effective-n").inner_text() == "240.8"
            page.locator("section.card", has=page.locator("table.eval-counts")).screenshot(
                path=str(artifacts_dir / "dashboard-weighted-rates.png")
            )
            assert errors == []
            assert violations == []
        finally:
            browser.close()
