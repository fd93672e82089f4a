"""The alerts page and the firing banner in a real headless browser (the dashboard's
browser test setup: system Chromium through Playwright, skipped where there is none)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from dashboard.alerts.services import evaluate_alert_rule
from tests.browser import ARGS, CHROMIUM, sync_playwright_or_skip

from .conftest import decisions, rule

PASSWORD = "browser-test-pw-1"

pytestmark = pytest.mark.slow


@pytest.fixture
def firing(transactional_db, project) -> None:
    user = get_user_model().objects.create_user("bea", password=PASSWORD)
    user.projects.add(project.id)
    now = timezone.now()
    decisions(project.id, 40, fallbacks=10, at=now - timedelta(minutes=5))
    r = rule(project.id, name="intent-mini fallbacks", split_by="user.tier")
    evaluate_alert_rule(r.id, now - timedelta(minutes=2))
    evaluate_alert_rule(r.id, now)


def test_the_banner_and_the_alert_chart_show_in_a_real_browser(
    live_server, firing, artifacts_dir
) -> None:
    sync_playwright = sync_playwright_or_skip()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(live_server.url + "/login/")
            page.fill("input[name=username]", "bea")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_load_state("networkidle")

            page.goto(live_server.url + "/overview/")
            banner = page.locator("#alerts-banner")
            banner.wait_for(state="visible", timeout=15_000)
            assert banner.inner_text().startswith("1 alert firing:")
            assert "intent-mini fallbacks [user.tier=pro] = 25 % (n=40)" in banner.inner_text()

            page.goto(live_server.url + "/alerts/")
            page.locator('[data-figure^="alert-rule-"] .main-svg').first.wait_for(timeout=15_000)
            page.screenshot(path=str(artifacts_dir / "dashboard-alerts.png"), full_page=True)
            assert errors == []
        finally:
            browser.close()
