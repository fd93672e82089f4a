"""The dashboard in a real headless browser: log in, open every page, check the charts
drew (Plotly's ``.main-svg``) and that the Content-Security-Policy was never violated
(pages, the API docs, the admin), save screenshots under test-artifacts/.

Playwright drives the system Chromium (its own browser download cannot work offline);
``bin/test`` installs Debian's ``chromium`` when it is missing. Where there is no browser
the test is skipped and says why.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from dashboard.alerts.services import create_alert_rule, evaluate_alert_rule
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
    # A firing alert: its row, the history and the banner on every page.
    rule = create_alert_rule(
        {
            "project_id": project.id,
            "name": "intent-mini fallback",
            "metric": "fallback-rate",
            "micro_model": "intent-mini",
            "split_by": "user.tier",
            "comparator": "above",
            "threshold": 0.1,
            "window_seconds": 86400,
            "min_n": 5,
            "webhook_urls": [],
            "email_addresses": [],
        }
    )
    evaluate_alert_rule(rule.id)
    return traces


WIDTHS = (1280, 390)
SCHEMES = ("light", "dark")

# The longest word in any table cell spans one line: a cell's text without a space (or a
# hyphen or slash, where a line may break), up to 24 characters long, or a date, drawn on
# more than one line was broken mid-word.
_WORDS_BROKEN = """
() => {
  const broken = [];
  document.querySelectorAll("table.data th, table.data td, table.attrs th").forEach((cell) => {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const text = node.textContent.trim();
      const lines = (start, end) => {
        const range = document.createRange();
        range.setStart(node, start);
        range.setEnd(node, end);
        return new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size;
      };
      // A date (2026-12-06) is one word too, hyphens and all.
      for (const date of node.textContent.matchAll(/\\d{4}-\\d\\d-\\d\\d/g)) {
        if (lines(date.index, date.index + 10) > 1) broken.push(date[0]);
      }
      if (!text || /[\\s\\/-]/.test(text) || text.length > 24) continue;
      if (lines(0, node.textContent.length) > 1) broken.push(text);
    }
  });
  return broken;
}
"""

# Every holder's drawn figure (the trace page's waterfall too): its paper colour, traces
# and points drawn, tick labels.
_FIGURES = """
() => [...document.querySelectorAll("[data-figure], #waterfall")].filter((h) => h._fullLayout)
 .map((h) => ({
  figure: h.dataset.figure || h.id,
  empty: h.dataset.empty || null,
  paper: h._fullLayout.paper_bgcolor,
  traces: h.querySelectorAll(".scatterlayer .trace, .barlayer .trace, .heatmaplayer .hm").length,
  points: h.querySelectorAll(
    ".scatterlayer .points path, .scatterlayer .js-fill, .barlayer .point path").length,
  xticks: [...h.querySelectorAll(".xtick text")].map((t) => t.textContent),
  annotations: [...h.querySelectorAll(".annotation-text")].map((t) => t.textContent),
}))
"""


# The firing-alerts banner's background, once its script has shown it (None before).
_BANNER = """
(() => {
  const banner = document.getElementById("alerts-banner");
  return banner && !banner.hidden ? getComputedStyle(banner).backgroundColor : null;
})()
"""


def _luminance(css_colour: str) -> float:
    """0 (black) .. 255 (white), from "rgb(r, g, b)" or "#rrggbb"."""
    if css_colour.startswith("#"):
        r, g, b = (int(css_colour[i : i + 2], 16) for i in (1, 3, 5))
    else:
        r, g, b = (float(v) for v in css_colour[css_colour.index("(") + 1 : -1].split(",")[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


class Watch:
    """Console errors, uncaught exceptions, failed requests and error responses of a page."""

    def __init__(self, page) -> None:
        self.problems: list[str] = []
        page.on("pageerror", lambda exc: self.problems.append(f"{page.url}: exception {exc}"))
        page.on(
            "console",
            lambda m: m.type == "error" and self.problems.append(f"{page.url}: console {m.text}"),
        )
        # A request the next navigation cancels (the alerts banner's poll) did not fail.
        page.on(
            "requestfailed",
            lambda r: (
                r.failure != "net::ERR_ABORTED"
                and self.problems.append(f"{page.url}: failed {r.url} {r.failure}")
            ),
        )
        page.on(
            "response",
            lambda r: r.status >= 400 and self.problems.append(f"{page.url}: {r.status} {r.url}"),
        )


def _log_in(page, url: str, username: str) -> None:
    page.goto(url + "/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert "/login/" not in page.url


def _tour(page, url, pages, label, artifacts_dir) -> dict[tuple[str, int, str], Any]:
    """Every page at every width and colour scheme: screenshots, and what the tests assert
    on, keyed by (page, width, scheme)."""
    seen: dict[tuple[str, int, str], Any] = {}
    for scheme in SCHEMES:
        page.emulate_media(color_scheme=scheme)
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            for name, path, charts in pages:
                if name == "api-docs" and scheme == "dark":
                    continue  # Swagger UI has no dark theme: the light screenshots suffice.
                response = page.goto(url + path)
                assert response is not None and response.status == 200, (label, name)
                for chart in charts:
                    page.locator(f'[data-figure="{chart}"][data-drawn="true"]').wait_for(
                        timeout=15_000
                    )
                if name == "api-docs":
                    page.locator(".swagger-ui .opblock").first.wait_for(timeout=15_000)
                if name == "trace":
                    page.locator('#waterfall[data-drawn="true"]').wait_for(timeout=15_000)
                seen[(name, width, scheme)] = {
                    "scroll_width": page.evaluate("document.documentElement.scrollWidth"),
                    "background": page.evaluate("getComputedStyle(document.body).backgroundColor"),
                    "banner": page.evaluate(_BANNER),
                    "figures": {f["figure"]: f for f in page.evaluate(_FIGURES)},
                    "broken_words": page.evaluate(_WORDS_BROKEN),
                }
                page.screenshot(
                    path=str(artifacts_dir / f"dashboard-{label}-{name}-{width}-{scheme}.png"),
                    full_page=True,
                )
    return seen


def test_every_page_in_a_real_browser_at_two_widths_light_and_dark(
    live_server, seeded, artifacts_dir
):
    """Seeded and empty project, 1280 and 390 px wide, light and dark: screenshots under
    test-artifacts/, and no console error, failed request or error response anywhere."""
    sync_playwright = sync_playwright_or_skip()
    judged = EvaluationResult.objects.filter(passed__isnull=False).count()
    empty = create_project("empty")
    get_user_model().objects.create_user("eve", password=PASSWORD).projects.add(empty.id)
    # One whole hour holding some of the seeded traces: a chart of a single time bucket.
    hour = (timezone.now() - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    one_hour = f"start={hour:%Y-%m-%dT%H:%M}&end={hour + timedelta(hours=1):%Y-%m-%dT%H:%M}"
    pages = [
        ("overview", "/overview/", ["route-share", "fallback", "cost"]),
        (
            "micro-model",
            "/micro-models/intent-mini/",
            ["route-share", "confusion", "confidence", "fallback-by-cohort", "cost-by-route"],
        ),
        (
            "micro-model-cohort",
            "/micro-models/intent-mini/?cohort.user.tier=free",
            ["route-share", "confusion", "confidence", "cost-by-route"],
        ),
        ("one-hour", f"/overview/?{one_hour}", ["route-share", "fallback"]),
        ("cohorts", "/cohorts/?dimension=user.tier", ["eval-heatmap", "fallback-by-cohort"]),
        ("traces", "/?micro_model=intent-mini&range=24h", []),
        ("trace", f"/traces/{seeded[0]}/", []),
        ("alerts", "/alerts/", []),
        ("api-docs", "/api/docs/", []),
    ]
    empty_pages = [
        ("overview", "/overview/", []),
        ("micro-model", "/micro-models/intent-mini/", []),
        ("cohorts", "/cohorts/", []),
        ("traces", "/", []),
        ("alerts", "/alerts/", []),
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page()
            watch = Watch(page)
            violations = watch_csp_violations(page)
            _log_in(page, live_server.url, "bea")

            # The Traces page: "/" puts the cursor in its search box.
            page.goto(live_server.url + "/?micro_model=intent-mini&range=24h")
            assert page.locator("table.traces tbody tr").count() == 24
            page.keyboard.press("/")
            assert page.evaluate("document.activeElement.tagName") == "INPUT"
            # The trace page lists its one decision; the Cohorts page its counts.
            page.goto(live_server.url + f"/traces/{seeded[0]}/")
            assert page.locator("table.decisions tbody tr").count() == 1
            page.goto(live_server.url + "/cohorts/?dimension=user.tier")
            counts = page.locator("table.eval-counts tbody tr")
            pending = [int(t) for t in counts.locator("td.pending").all_inner_texts()]
            evaluated = [int(t) for t in counts.locator("td.evaluated").all_inner_texts()]
            assert (sum(pending), sum(evaluated)) == (1, judged)
            # The dimension picker submits on change (a handler from a file).
            page.select_option("#dimension", "language")
            page.wait_for_url("**dimension=language**")
            page.locator('[data-figure="eval-heatmap"][data-drawn="true"]').wait_for()
            page.goto(live_server.url + "/alerts/")
            assert page.locator("#alert-rules tr.alert-state-firing").count() == 3
            # The API docs lead back to the dashboard.
            page.goto(live_server.url + "/api/docs/")
            page.locator(".swagger-ui a[href='/overview/']").wait_for(timeout=15_000)

            seen = _tour(page, live_server.url, pages, "seeded", artifacts_dir)

            page.context.clear_cookies()
            _log_in(page, live_server.url, "eve")
            seen_empty = _tour(page, live_server.url, empty_pages, "empty", artifacts_dir)
        finally:
            browser.close()

    assert watch.problems == []
    assert violations == []
    for (name, width, scheme), facts in [*seen.items(), *seen_empty.items()]:
        where = (name, width, scheme)
        # Nothing wider than a phone's screen: wide tables scroll inside their card.
        assert facts["scroll_width"] <= width, where
        assert facts["broken_words"] == [], where
        dark = _luminance(facts["background"]) < 60
        # Swagger UI (the API docs) has no dark theme of its own.
        assert dark == (scheme == "dark" and name != "api-docs"), (where, facts["background"])
        if facts["banner"] is not None:
            assert (_luminance(facts["banner"]) < 80) == (scheme == "dark"), (where, facts)
        for figure in facts["figures"].values():
            # Figures take the page's colours: a dark paper on a dark page.
            assert (_luminance(figure["paper"]) < 60) == (scheme == "dark"), (where, figure)
            # No time axis in milliseconds (what a single point auto-ranged to).
            assert not [t for t in figure["xticks"] if re.search(r"\d:\d\d\.\d", t)], figure
    # Each seeded chart draws something; a window of one hourly bucket too, with hour ticks
    # (not milliseconds): the route share's bars, the rates' markers (a line needs two points).
    for (name, _, _), facts in seen.items():
        for chart in dict((p[0], p[2]) for p in pages)[name]:
            figure = facts["figures"][chart]
            assert figure["traces"] > 0 and figure["empty"] is None, (name, figure)
    assert seen[("trace", 390, "dark")]["figures"]["waterfall"]["traces"] > 0
    for width in WIDTHS:
        for chart in ("route-share", "fallback"):
            figure = seen[("one-hour", width, "light")]["figures"][chart]
            assert figure["points"] > 0, figure
            assert figure["xticks"], figure
            assert all(len(t) == len("12-06 02:00") and ":" in t for t in figure["xticks"]), figure[
                "xticks"
            ]
    # The empty project says why instead of drawing axes.
    for width in WIDTHS:
        assert seen_empty[("overview", width, "light")]["figures"] == {}


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
            watch = Watch(page)
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
                # Every admin page leads back to the dashboard.
                assert page.locator("#user-tools a[href='/overview/']").count() == 1, path
            page.goto(live_server.url + "/admin/")
            assert page.locator("th#alerts-alertdelivery a").inner_text() == ("Alert deliveries")
            assert watch.problems == []
            assert violations == []
        finally:
            browser.close()
