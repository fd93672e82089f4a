"""The dashboard in a real headless browser: log in, open every page, check the charts
drew (Plotly's ``.main-svg``) and that the Content-Security-Policy was never violated
(pages, the API docs, the admin), save screenshots under test-artifacts/.

Playwright drives the system Chromium (its own browser download cannot work offline);
``bin/test`` installs Debian's ``chromium`` when it is missing. Where there is no browser
the test is skipped and says why.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from dashboard.metrics.evaluations import fold_evaluations
from dashboard.metrics.refresh import fold_changes
from evaluators.models import EvaluationResult
from evaluators.services import run_evaluation_job, schedule_evaluations
from tests.browser import ARGS, CHROMIUM, sync_playwright_or_skip, watch_csp_violations
from tests.dashboard.metric_data import add_prices, build_trace
from tracestore.services import create_project, store_spans

PASSWORD = "browser-test-pw-1"


@pytest.fixture
def seeded(transactional_db):
    project = create_project("browser")
    user = get_user_model().objects.create_user("bea", password=PASSWORD)
    user.projects.add(project.id)
    add_prices()
    now = timezone.now()
    traces = []
    for i in range(24):
        b = build_trace(
            i,
            start=now - timedelta(hours=1, minutes=9 * i),
            route=("billing", "tech", "sales")[i % 3],
            label=("billing", "tech", "sales")[i % 3],
            expected=("billing", "tech", "sales")[(i // 2) % 3],
            tier=("free", "pro", "enterprise")[i % 3],
            fallback=i % 4 == 0,
        )
        for batch in b.batches:
            store_spans(project.id, b.trace.records(batch))
        traces.append(b.trace.trace_hex)
    fold_changes()
    result = schedule_evaluations(now=now + timedelta(minutes=10))
    # One evaluation is left pending: the Cohorts page shows it beside its rate.
    for job_id in result.job_ids[:-1]:
        run_evaluation_job(job_id)
    fold_evaluations()
    return traces


def test_every_page_draws_its_charts_in_a_real_browser(live_server, seeded, artifacts_dir):
    sync_playwright = sync_playwright_or_skip()
    judged = EvaluationResult.objects.filter(passed__isnull=False).count()
    pages = [
        ("overview", "/overview/", ["route-share", "fallback", "cost"]),
        (
            "micro-model",
            "/micro-models/intent-mini/",
            ["route-share", "confusion", "confidence", "fallback-by-cohort", "cost-by-route"],
        ),
        ("cohorts", "/cohorts/?dimension=user.tier", ["eval-heatmap", "fallback-by-cohort"]),
        ("traces", "/?micro_model=intent-mini&range=24h", []),
        ("trace", f"/traces/{seeded[0]}/", []),
        ("alerts", "/alerts/", []),
        ("api-docs", "/api/docs/", []),
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            violations = watch_csp_violations(page)
            page.goto(live_server.url + "/login/")
            page.fill("input[name=username]", "bea")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_load_state("networkidle")
            assert "/login/" not in page.url

            for name, path, charts in pages:
                response = page.goto(live_server.url + path)
                assert response is not None and response.status == 200, name
                for chart in charts:
                    holder = page.locator(f'[data-figure="{chart}"]')
                    holder.locator(".main-svg").first.wait_for(timeout=15_000)
                    assert (
                        holder.get_attribute("data-drawn") == "true"
                        or holder.locator(".main-svg").count()
                    )
                if name == "trace":
                    page.locator("#waterfall .main-svg").first.wait_for(timeout=15_000)
                    assert page.locator("table.decisions tbody tr").count() == 1
                if name == "cohorts":
                    counts = page.locator("table.eval-counts tbody tr")
                    pending = [int(t) for t in counts.locator("td.pending").all_inner_texts()]
                    evaluated = [int(t) for t in counts.locator("td.evaluated").all_inner_texts()]
                    assert (sum(pending), sum(evaluated)) == (1, judged)
                if name == "traces":
                    assert page.locator("table.traces tbody tr").count() == 24
                if name == "cohorts":
                    # The dimension picker submits on change (a handler from a file).
                    page.select_option("#dimension", "language")
                    page.wait_for_url("**dimension=language**")
                    page.locator('[data-figure="eval-heatmap"] .main-svg').first.wait_for(
                        timeout=15_000
                    )
                if name == "api-docs":
                    page.locator(".swagger-ui .opblock").first.wait_for(timeout=15_000)
                page.screenshot(path=str(artifacts_dir / f"dashboard-{name}.png"), full_page=True)
            assert errors == []
            assert violations == []
        finally:
            browser.close()


def test_the_admin_passes_the_content_security_policy(live_server, transactional_db):
    sync_playwright = sync_playwright_or_skip()
    get_user_model().objects.create_superuser("root", password=PASSWORD)
    pages = [
        "/admin/",
        "/admin/evaluators/judge/add/",
        "/admin/evaluators/micromodel/add/",
        "/admin/alerts/alertrule/add/",
        "/admin/auth/user/",
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            violations = watch_csp_violations(page)
            page.goto(live_server.url + "/admin/login/")
            page.fill("input[name=username]", "root")
            page.fill("input[name=password]", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_load_state("networkidle")
            for path in pages:
                response = page.goto(live_server.url + path)
                assert response is not None and response.status == 200, path
                assert "Content-Security-Policy" in response.headers or (
                    "content-security-policy" in response.headers
                ), path
                page.wait_for_load_state("networkidle")
            assert errors == []
            assert violations == []
        finally:
            browser.close()
