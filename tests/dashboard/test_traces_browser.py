"""The Traces page's filter bar in a real headless Chromium: the filters set in the form
land in the address (and only those), a reload gives back the same form and rows, and a
custom range travels as start/end, its fields shown only for it (with JavaScript or
without). A click on a Cohorts heatmap cell, a confusion-matrix cell or a route share bar
opens the traces it counts."""

from __future__ import annotations

import json
from datetime import UTC, timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from dashboard.metrics.evaluations import fold_evaluations
from dashboard.metrics.refresh import fold_changes
from evaluators.contracts import EvaluationRecord
from evaluators.services import import_evaluation_results
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


def _log_in(page, live_server) -> None:
    page.goto(live_server.url + "/login/")
    page.fill("input[name=username]", "tess")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")


def _rows(page, ids) -> list[int]:
    links = page.locator("#trace-results tbody tr td:nth-child(2) a")
    return [
        ids[href.split("/")[2]]
        for href in links.evaluate_all("a => a.map(e => e.getAttribute('href'))")
    ]


def test_the_filter_bar_round_trips_through_the_url(live_server, seeded, artifacts_dir) -> None:
    ids = seeded["ids"]
    # route tech is i % 3 == 1; tier pro is odd i; fallback i % 4 == 1.
    expected = [i for i in range(12) if i % 3 == 1 and i % 2 == 1 and i % 4 == 1]
    assert expected == [1]
    with launch_chromium_or_skip() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        violations = watch_csp_violations(page)
        _log_in(page, live_server)

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
        page.screenshot(path=str(artifacts_dir / "traces-filtered.png"), full_page=True)
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


def test_a_heatmap_cell_opens_its_failing_traces(live_server, seeded) -> None:
    ids = seeded["ids"]
    by_index = {i: trace for trace, i in ids.items()}
    # LabelCheck fails on traces 0-3 (tiers free, pro, free, pro) and passes on 4-7.
    import_evaluation_results(
        get_user_model().objects.get(username="tess").projects.get().id,
        [
            EvaluationRecord(
                trace_id=bytes.fromhex(by_index[i]),
                span_id=bytes(8),
                span_start_time=seeded["now"] - timedelta(minutes=20 + 30 * i),
                micro_model="intent-mini",
                evaluator="label_check",
                score=0.0 if i < 4 else 1.0,
                passed=i >= 4,
                threshold=0.5,
                reason="labels differ" if i < 4 else "labels agree",
                judge="exact",
                latency_ms=1.0,
                sampling_probability=1.0,
                cohort={"user.tier": TIERS[i % 2]},
            )
            for i in range(8)
        ],
    )
    fold_evaluations()
    with launch_chromium_or_skip() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        _log_in(page, live_server)
        page.goto(live_server.url + "/cohorts/?dimension=user.tier&range=24h")
        heatmap = page.locator('[data-figure="eval-heatmap"]')
        plot_area = heatmap.locator(".nsewdrag").first
        plot_area.wait_for(timeout=15_000)
        # One evaluator row, two cohort columns (free, pro): the right half is "pro".
        box = plot_area.bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + box["width"] * 0.75, box["y"] + box["height"] / 2)
        page.wait_for_url("**failed_evaluator=**")

        query = dict(parse_qsl(urlsplit(page.url).query))
        assert query == {
            "failed_evaluator": "label_check",
            "cohort.user.tier": "pro",
            "range": "24h",
        }
        assert _rows(page, ids) == [1, 3]
        assert errors == []


# (predicted, expected) of the six traces of labelled_traffic; 0 and 2 fall back.
LABELLED = [("billing", "billing"), ("tech", "billing"), ("tech", "billing"),
            ("tech", "tech"), ("billing", "tech"), ("billing", "billing")]  # fmt: skip


@pytest.fixture
def labelled_traffic(transactional_db):
    project = create_project("confusion-browser")
    user = get_user_model().objects.create_user("tess", password=PASSWORD)
    user.projects.add(project.id)
    now = timezone.now()
    by_trace = {}
    for i, (label, expected) in enumerate(LABELLED):
        b = build_trace(
            i,
            start=now - timedelta(minutes=20 + 30 * i),
            route="billing",
            label=label,
            expected=expected,
            tier=TIERS[i % 2],
            fallback=i in (0, 2),
        )
        for batch in b.batches:
            store_spans(project.id, b.trace.records(batch))
        by_trace[b.trace.trace_hex] = i
    fold_changes()
    return by_trace


def test_a_confusion_cell_and_a_fallback_bar_open_their_decisions_traces(
    live_server, labelled_traffic
) -> None:
    with launch_chromium_or_skip() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        violations = watch_csp_violations(page)
        _log_in(page, live_server)
        page.goto(live_server.url + "/micro-models/intent-mini/?range=24h")
        plot_area = page.locator('[data-figure="confusion"] .nsewdrag').first
        plot_area.wait_for(timeout=15_000)
        # Labels billing, tech: columns predicted, rows expected (billing on top). The
        # top-right cell is "predicted tech, expected billing".
        plot_area.scroll_into_view_if_needed()
        box = plot_area.bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + box["width"] * 0.75, box["y"] + box["height"] * 0.25)
        page.wait_for_url("**expected_label=**")

        query = dict(parse_qsl(urlsplit(page.url).query))
        assert query == {
            "range": "24h",
            "micro_model": "intent-mini",
            "label": "tech",
            "expected_label": "billing",
        }
        assert _rows(page, labelled_traffic) == [1, 2]
        assert page.locator(".decision-count").inner_text() == "2"

        # A fallback-by-cohort bar: traces 0 and 2 (tier free) fell back; the left bar.
        page.goto(live_server.url + "/micro-models/intent-mini/?range=24h&dimension=user.tier")
        bar = page.locator('[data-figure="fallback-by-cohort"] .barlayer .point path').first
        bar.wait_for(timeout=15_000)
        bar.scroll_into_view_if_needed()
        # Plotly's drag layer lies over the bars: click where the bar is drawn.
        bar_box = bar.bounding_box()
        assert bar_box is not None
        page.mouse.click(bar_box["x"] + bar_box["width"] / 2, bar_box["y"] + bar_box["height"] / 2)
        page.wait_for_url("**fallback=1**")
        query = dict(parse_qsl(urlsplit(page.url).query))
        assert query == {
            "range": "24h",
            "micro_model": "intent-mini",
            "fallback": "1",
            "cohort.user.tier": "free",
        }
        assert _rows(page, labelled_traffic) == [0, 2]
        assert page.locator(".decision-count").inner_text() == "2"
        assert errors == []
        assert violations == []


def _window_shown(page) -> tuple[str, str]:
    """The window the search page prints ("2026-12-06 14:05 - 2026-12-07 14:05 UTC", an en
    dash between), in the custom fields' format."""
    text = page.locator("#trace-filters .muted").inner_text()
    start, end = text.removesuffix(" UTC").split(" \N{EN DASH} ")
    return start.replace(" ", "T"), end.replace(" ", "T")


def test_the_custom_fields_show_only_for_a_custom_range(live_server, seeded) -> None:
    ids = seeded["ids"]
    with launch_chromium_or_skip() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        violations = watch_csp_violations(page)
        _log_in(page, live_server)

        page.goto(live_server.url + "/?range=24h")
        start, end = _window_shown(page)
        assert not page.locator("#t-start").is_visible()
        assert not page.locator("#t-end").is_visible()
        # "from - to:" shows them, holding the window the page shows.
        page.select_option("#t-range", "custom")
        assert page.locator("#t-start").is_visible() and page.locator("#t-end").is_visible()
        assert (page.locator("#t-start").input_value(), page.locator("#t-end").input_value()) == (
            start,
            end,
        )
        # A preset again hides them, and leaves them out of the address.
        page.select_option("#t-range", "1h")
        assert not page.locator("#t-start").is_visible()
        page.click("#trace-filters button[type=submit]")
        page.wait_for_url("**range=1h**")
        assert dict(parse_qsl(urlsplit(page.url).query)) == {"range": "1h"}
        # From a preset to its window as a custom range: the address holds start and end.
        start, end = _window_shown(page)
        page.select_option("#t-range", "custom")
        page.click("#trace-filters button[type=submit]")
        page.wait_for_url("**range=custom**")
        assert dict(parse_qsl(urlsplit(page.url).query)) == {
            "range": "custom",
            "start": start,
            "end": end,
        }
        assert page.locator("#t-start").is_visible()
        # Traces 0 and 1 started 20 and 50 minutes ago (the window is cut to the minute).
        assert _rows(page, ids) == [0, 1]
        assert errors == []
        assert violations == []


def test_without_javascript_the_custom_fields_still_work(live_server, seeded) -> None:
    ids = seeded["ids"]
    with launch_chromium_or_skip() as browser:
        context = browser.new_context(
            java_script_enabled=False, viewport={"width": 1400, "height": 1000}
        )
        page = context.new_page()
        _log_in(page, live_server)

        page.goto(live_server.url + "/?range=1h")
        assert not page.locator("#t-start").is_visible()
        start, end = _window_shown(page)
        # The chosen option alone (a CSS rule) shows the fields, holding the window.
        page.select_option("#t-range", "custom")
        assert page.locator("#t-start").is_visible()
        page.click("#trace-filters button[type=submit]")
        page.wait_for_url("**range=custom**")
        query = {k: v for k, v in parse_qsl(urlsplit(page.url).query)}
        assert (query["range"], query["start"], query["end"]) == ("custom", start, end)
        assert _rows(page, ids) == [0, 1]
        # Back to "newest, any time": the filled custom fields the form sends are ignored.
        page.select_option("#t-range", "")
        page.click("#trace-filters button[type=submit]")
        page.wait_for_url("**range=&**")
        assert page.locator("h1").inner_text() == "Recent traces"
        assert page.locator("table.traces tbody tr").count() == 12
        context.close()


def test_a_route_share_bar_opens_the_decisions_of_its_bucket(live_server, labelled_traffic) -> None:
    with launch_chromium_or_skip() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        violations = watch_csp_violations(page)
        _log_in(page, live_server)
        page.goto(live_server.url + "/micro-models/intent-mini/?range=24h")
        figure = json.loads(page.locator("script#route-share").text_content() or "")
        bars = {
            (custom[3], custom[4]): custom[5]
            for trace in figure["data"]
            for custom in trace["customdata"]
        }
        bar = page.locator('[data-figure="route-share"] .barlayer .point path').first
        bar.wait_for(timeout=15_000)
        bar.scroll_into_view_if_needed()
        # Plotly's drag layer lies over the bars: click where the bar is drawn.
        box = bar.bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.wait_for_url("**route=**")

        query = dict(parse_qsl(urlsplit(page.url).query))
        bucket = (query.pop("start"), query.pop("end"))
        assert query == {"range": "custom", "micro_model": "intent-mini", "route": "billing"}
        assert bucket in bars
        assert page.locator(".decision-count").inner_text() == str(bars[bucket])
        assert len(_rows(page, labelled_traffic)) == bars[bucket]
        # Every decision of the six traces is in some bucket.
        assert sum(bars.values()) == len(LABELLED)
        assert errors == []
        assert violations == []
