"""The Traces page's filter bar in a real headless Chromium: the filters set in the form
land in the address (and only those), a reload gives back the same form and rows, and a
custom range travels as start/end."""

from __future__ import annotations

from datetime import UTC, timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from dashboard.metrics.refresh import fold_changes
from tests.browser import launch_chromium_or_skip, watch_csp_violations
from tests.dashboard.metric_data import build_trace
from tracestore.services import create_project, store_spans

PASSWORD = "browser-test-pw-2"
ROUTES = ("billing", "tech", "sales")
TIERS = ("free", "pro")


@pytest.fixture
def seeded(transactional_db):
    project = create_project("traces-browser")
    user = get_user_model().objects.create_user("tess", password=PASSWORD)
    user.projects.add(project.id)
    now = timezone.now()
    by_trace = {}
    for i in range(12):
        b = build_trace(
            i,
            start=now - timedelta(minutes=20 + 30 * i),
            route=ROUTES[i % 3],
            label=ROUTES[i % 3],
            expected=None,
            tier=TIERS[i % 2],
            fallback=i % 4 == 1,
        )
        for batch in b.batches:
            store_spans(project.id, b.trace.records(batch))
        by_trace[b.trace.trace_hex] = i
    fold_changes()
    return {"ids": by_trace, "now": now}


def _rows(page, ids) -> list[int]:
    links = page.locator("#trace-results tbody tr td:nth-child(2) a")
    return [
        ids[href.split("/")[2]]
        for href in links.evaluate_all("a => a.map(e => e.getAttribute('href'))")
    ]


def test_the_filter_bar_round_trips_through_the_url(live_server, seeded) -> None:
    ids = seeded["ids"]
    # route tech is i % 3 == 1; tier pro is odd i; fallback i % 4 == 1.
    expected = [i for i in range(12) if i % 3 == 1 and i % 2 == 1 and i % 4 == 1]
    assert expected == [1]
    with launch_chromium_or_skip() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        violations = watch_csp_violations(page)
        page.goto(live_server.url + "/login/")
        page.fill("input[name=username]", "tess")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_load_state("networkidle")

        page.goto(live_server.url + "/")
        # The filter bar is there before any filter, with suggestions from recent traffic.
        assert page.locator("#trace-filters").is_visible()
        route_field = page.locator("#trace-filters input[name=route]")
        options = route_field.evaluate("f => Array.from(f.list.options).map(o => o.value)")
        assert options == ["billing", "sales", "tech"]

        page.select_option("#t-range", "24h")
        route_field.fill("tech")
        page.fill("#trace-filters input[name='cohort.user.tier']", "pro")
        page.select_option("#t-fallback", "1")
        page.click("#trace-filters button[type=submit]")
        page.wait_for_url("**route=tech**")

        query = dict(parse_qsl(urlsplit(page.url).query))
        assert query == {
            "range": "24h",
            "route": "tech",
            "cohort.user.tier": "pro",
            "fallback": "1",
        }
        assert _rows(page, ids) == expected

        page.reload()
        assert page.locator("#t-range").input_value() == "24h"
        assert route_field.input_value() == "tech"
        assert page.locator("#trace-filters input[name='cohort.user.tier']").input_value() == "pro"
        assert page.locator("#t-fallback").input_value() == "1"
        assert _rows(page, ids) == expected

        # A custom range: start/end travel in the address, the preset says "custom".
        now = seeded["now"].astimezone(UTC)
        start = (now - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M")
        end = (now - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M")
        page.select_option("#t-range", "custom")
        page.fill("#t-start", start)
        page.fill("#t-end", end)
        route_field.fill("")
        page.select_option("#t-fallback", "")
        page.click("#trace-filters button[type=submit]")
        page.wait_for_url("**range=custom**")
        query = dict(parse_qsl(urlsplit(page.url).query))
        assert query == {"range": "custom", "start": start, "end": end, "cohort.user.tier": "pro"}
        in_range = [i for i in range(12) if i % 2 == 1 and 1 <= 20 + 30 * i <= 180]
        assert _rows(page, ids) == in_range
        page.reload()
        assert page.locator("#t-start").input_value() == start
        assert page.locator("#t-end").input_value() == end
        assert errors == []
        assert violations == []
