"""Per label precision, recall and F1 by cohort, with intervals and n, on decisions with a
designed confusion per cohort: the metric, the API endpoint and the micro model page's
recall heatmap answer what this test computes from the design itself."""

from __future__ import annotations

import json
import math
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from dashboard import metrics
from dashboard.metrics.refresh import fold_changes
from tests.browser import ARGS, CHROMIUM, sync_playwright_or_skip, watch_csp_violations
from tests.builders import micro_model_trace
from tracestore.services import create_project, store_spans

pytestmark = pytest.mark.django_db

Z = 1.959963984540054
LABELS = ("billing", "refund")
# tier -> {(expected, predicted): decisions}
DESIGN = {
    "free": {
        ("billing", "billing"): 8,
        ("billing", "refund"): 2,
        ("refund", "billing"): 3,
        ("refund", "refund"): 7,
    },
    "pro": {
        ("billing", "billing"): 5,
        ("billing", "refund"): 5,
        ("refund", "billing"): 1,
        ("refund", "refund"): 9,
    },
}


def _store_design(project_id: int) -> None:
    for tier, cells in DESIGN.items():
        for (expected, predicted), count in cells.items():
            for _ in range(count):
                trace = micro_model_trace(
                    tier=tier, label=predicted, route=predicted, expected=expected
                )
                store_spans(project_id, trace.records())
    fold_changes()


@pytest.fixture
def labelled(project):
    _store_design(project.id)
    return project


def _window() -> tuple:
    now = timezone.now()
    return now - timedelta(hours=2), now + timedelta(minutes=5)


def _wilson(k: int, n: int) -> tuple[float, float]:
    """The roots p of (k/n - p)² = z² p (1 - p) / n."""
    a = n + Z * Z
    b = -(2 * k + Z * Z)
    c = k * k / n
    root = math.sqrt(b * b - 4 * a * c)
    return (-b - root) / (2 * a), (-b + root) / (2 * a)


def _expected(tier: str, label: str) -> dict:
    cells = DESIGN[tier]
    tp = cells.get((label, label), 0)
    fp = sum(v for (e, p), v in cells.items() if p == label and e != label)
    fn = sum(v for (e, p), v in cells.items() if e == label and p != label)
    j_low, j_high = _wilson(tp, tp + fp + fn)
    return {
        "precision": tp / (tp + fp),
        "recall": tp / (tp + fn),
        "f1": 2 * tp / (2 * tp + fp + fn),
        "precision_n": tp + fp,
        "recall_n": tp + fn,
        "f1_n": tp + fp + fn,
        "precision_interval": _wilson(tp, tp + fp),
        "recall_interval": _wilson(tp, tp + fn),
        # F1 = 2J / (1 + J) with J = tp / (tp + fp + fn): the interval of J, mapped.
        "f1_interval": (2 * j_low / (1 + j_low), 2 * j_high / (1 + j_high)),
    }


def _check(label_row: dict, tier: str) -> None:
    want = _expected(tier, label_row["label"])
    for name in ("precision", "recall", "f1"):
        assert label_row[name] == pytest.approx(want[name], rel=1e-12), name
        assert label_row[f"{name}_n"] == want[f"{name}_n"], name
        low, high = want[f"{name}_interval"]
        assert label_row[f"{name}_low"] == pytest.approx(low, rel=1e-9), name
        assert label_row[f"{name}_high"] == pytest.approx(high, rel=1e-9), name
        assert label_row[f"{name}_low"] < label_row[name] < label_row[f"{name}_high"]


def test_each_cohort_gets_its_designed_precision_recall_and_f1_with_intervals(labelled) -> None:
    rows = metrics.compute(
        "label-quality",
        metrics.Filters((labelled.id,), *_window(), micro_model="intent-mini"),
        group_by="user.tier",
    ).rows

    assert [r["group"] for r in rows] == ["free", "pro"]
    for row in rows:
        assert [item["label"] for item in row["labels"]] == list(LABELS)
        for item in row["labels"]:
            _check(item, row["group"])
    pro_billing = rows[1]["labels"][0]
    # The designed weak spot: pro billing recall 5 / 10.
    assert pro_billing["recall"] == 0.5
    assert pro_billing["f1"] == pytest.approx(10 / 16)


def test_the_api_answers_label_quality_by_cohort(labelled, member_client: Client) -> None:
    start, end = _window()

    response = member_client.get(
        "/api/v1/micro-models/intent-mini/label-quality/",
        {"start": start.isoformat(), "end": end.isoformat(), "group_by": "cohort.user.tier"},
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["micro_model"], body["group_by"]) == ("intent-mini", "user.tier")
    by_tier = {row["group"]: row for row in body["results"]}
    assert set(by_tier) == {"free", "pro"}
    for tier, row in by_tier.items():
        assert row["n"] == 20
        for item in row["labels"]:
            _check(item, tier)


def test_the_api_refuses_an_unknown_grouping(labelled, member_client: Client) -> None:
    response = member_client.get(
        "/api/v1/micro-models/intent-mini/label-quality/", {"group_by": "cohort.shoe.size"}
    )

    assert response.status_code == 400
    assert "shoe.size" in response.content.decode()


def test_the_micro_model_page_draws_the_cohort_by_label_recall_heatmap(
    labelled, member_client: Client
) -> None:
    html = member_client.get(
        "/micro-models/intent-mini/", {"dimension": "user.tier", "range": "24h"}
    ).content.decode()

    assert 'data-figure="label-cohort-recall"' in html
    start = html.index('<script id="label-cohort-recall" type="application/json">')
    figure = json.loads(html[start:].split(">", 1)[1].split("</script>", 1)[0])
    heatmap = figure["data"][0]
    assert (heatmap["y"], heatmap["x"]) == (["free", "pro"], list(LABELS))
    assert heatmap["z"] == [
        [pytest.approx(80.0), pytest.approx(70.0)],
        [pytest.approx(50.0), pytest.approx(90.0)],
    ]
    assert heatmap["text"][1][0].startswith("50.0%*<br>n=10<br>")
    assert '<tr data-cohort="pro" data-label="billing">' in html


def test_the_recall_heatmap_draws_in_a_real_browser(
    live_server, transactional_db, django_user_model, artifacts_dir
) -> None:
    sync_playwright = sync_playwright_or_skip()
    project = create_project("browser")
    user = django_user_model.objects.create_user("bea", password="browser-test-pw-1")
    user.projects.add(project.id)
    _store_design(project.id)
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

            response = page.goto(live_server.url + "/micro-models/intent-mini/?dimension=user.tier")

            assert response is not None and response.status == 200
            holder = page.locator('[data-figure="label-cohort-recall"]')
            holder.locator(".main-svg").first.wait_for(timeout=15_000)
            assert "50.0%*" in holder.inner_text()
            rows = page.locator("table.label-cohort-table tbody tr")
            assert rows.count() == 4
            section = page.locator("section.label-cohort")
            section.screenshot(path=str(artifacts_dir / "dashboard-label-cohort.png"))
            assert errors == []
            assert violations == []
        finally:
            browser.close()
