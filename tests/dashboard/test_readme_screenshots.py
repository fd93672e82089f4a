"""The micro model page's fallback economics and routing advice sections on the demo data,
drawn by a real browser: the README's screenshots of both sections are these
(``test-artifacts/readme-fallback-economics.png`` and ``readme-routing-advice.png``,
copied to ``docs/images/``)."""

from __future__ import annotations

import time

import pytest

from dashboard.demo_data import ensure_demo_prices, seed_demo_data
from dashboard.metrics.evaluations import fold_evaluations
from dashboard.metrics.refresh import fold_changes
from tests.browser import launch_chromium_or_skip, watch_csp_violations
from tracestore.services import create_project


@pytest.fixture
def demo_reader(transactional_db, django_user_model) -> str:
    project = create_project("demo")
    user = django_user_model.objects.create_user("dee", password="browser-test-pw-1")
    user.projects.add(project.id)
    ensure_demo_prices()
    seed_demo_data(project.id, spans=20_000, days=7, end_ns=time.time_ns())
    fold_changes()
    fold_evaluations()
    return "dee"


def test_the_economics_and_routing_advice_sections_draw_on_the_demo_data(
    live_server, demo_reader, artifacts_dir
) -> None:
    with launch_chromium_or_skip() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        violations = watch_csp_violations(page)
        page.goto(live_server.url + "/login/")
        page.fill("input[name=username]", demo_reader)
        page.fill("input[name=password]", "browser-test-pw-1")
        page.click("button[type=submit]")
        page.wait_for_load_state("networkidle")

        response = page.goto(
            live_server.url + "/micro-models/intent-mini/?range=7d&dimension=user.tier"
        )

        assert response is not None and response.status == 200
        economics = page.locator("section#fallback-economics")
        economics.locator('[data-figure="economics-series"] .main-svg').first.wait_for(
            timeout=15_000
        )
        # One row per tier (enterprise, free, pro) and the row over all of them.
        cohorts = economics.locator("table.data tbody tr td:first-child").all_inner_texts()
        assert sorted(c.strip() for c in cohorts) == [
            "all",
            "user.tier=enterprise",
            "user.tier=free",
            "user.tier=pro",
        ]
        economics.screenshot(path=str(artifacts_dir / "readme-fallback-economics.png"))
        advice = page.locator("section#routing-advice")
        items = advice.locator("ul.advice li").all_inner_texts()
        assert items, advice.inner_text()
        assert all("/day" in item for item in items)
        advice.screenshot(path=str(artifacts_dir / "readme-routing-advice.png"))
        assert errors == []
        assert violations == []
