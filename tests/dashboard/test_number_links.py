"""Every number links to its spans (overview eval pills and fallback rates, the micro
model page's label rows, confusion-matrix cells, route rows and fallback-by-cohort bars,
route share bars of both pages, the Cohorts page's table rows and fallbacks): the Traces
page opened from a number counts exactly what the number counts, for the same window."""

from __future__ import annotations

import html as html_lib
import json
import re
from datetime import timedelta

import pytest
from django.http import QueryDict
from django.test import Client
from django.utils import timezone

from dashboard import charts, metrics
from dashboard.metrics.evaluations import fold_evaluations
from dashboard.metrics.refresh import fold_changes
from evaluators.contracts import EvaluationRecord
from evaluators.services import import_evaluation_results
from tests.builders import TraceBuilder
from tracestore.services import store_spans

pytestmark = pytest.mark.django_db


@pytest.fixture
def traffic(project):
    """Ten traces of intent-mini (every third with a retried second decision), four with a
    fallback, trace 7 on route refund; three of safety-screen. LabelCheck fails on both
    decisions of trace 0 and on trace 4's, passes on trace 1's."""
    now = timezone.now()
    records = []
    # Expected labels on intent-mini's traces 0-5: billing on the even ones, refund on the
    # odd; trace 3 predicts refund, every other decision billing.
    expected = {i: {"micro_model.expected_label": ("billing", "refund")[i % 2]} for i in range(6)}
    for i in range(13):
        model = "intent-mini" if i < 10 else "safety-screen"
        start = now - timedelta(minutes=15 + 11 * i)
        trace = TraceBuilder(start_ns=int(start.timestamp() * 1e9))
        root = trace.span(
            "POST /chat", duration_ms=900, attrs={"user.tier": ("free", "pro")[i % 2]}
        )
        decisions = 2 if i % 3 == 0 else 1
        span_ids = []
        for n in range(decisions):
            span_ids.append(
                trace.span(
                    "classify",
                    parent=root,
                    offset_ms=5 + 40 * n,
                    duration_ms=30,
                    attrs={
                        "micro_model.name": model,
                        "micro_model.label": "refund" if i == 3 else "billing",
                        "route.name": "refund" if i == 7 else "billing",
                        **expected.get(i, {}),
                        **({"retry.attempt": 1} if n else {}),
                    },
                )
            )
        if i in (0, 2, 5, 10):
            trace.span(
                "fallback",
                parent=root,
                offset_ms=100,
                duration_ms=500,
                attrs={"gen_ai.request.model": "gpt-large", "route.fallback": True},
            )
        store_spans(project.id, trace.records())
        verdicts = {0: [False, False], 4: [False], 1: [True]}.get(i, [])
        for span_id, passed in zip(span_ids, verdicts, strict=False):
            records.append(
                EvaluationRecord(
                    trace_id=trace.trace_id,
                    span_id=span_id,
                    span_start_time=start + timedelta(milliseconds=5),
                    micro_model=model,
                    evaluator="label_check",
                    score=1.0 if passed else 0.0,
                    passed=passed,
                    threshold=0.5,
                    reason="labels agree" if passed else "labels differ",
                    judge="exact",
                    latency_ms=1.0,
                    sampling_probability=1.0,
                    cohort={"user.tier": ("free", "pro")[i % 2]},
                )
            )
    fold_changes()
    import_evaluation_results(project.id, records)
    fold_evaluations()
    return project


def _links(html: str, css_class: str) -> list[tuple[str, str]]:
    """(href, text) of the overview's links of ``css_class``."""
    found = re.findall(
        rf'<a class="[^"]*\b{css_class}\b[^"]*"[^>]*href="([^"]+)"[^>]*>([^<]*)</a>', html
    )
    return [(html_lib.unescape(href), text) for href, text in found]


def _count(client: Client, url: str, css_class: str) -> int:
    page = client.get(url)
    assert page.status_code == 200, url
    match = re.search(rf'<span class="{css_class}">(\d+)</span>', page.content.decode())
    assert match, url
    return int(match[1])


@pytest.mark.usefixtures("traffic")
@pytest.mark.parametrize(
    "window", ["range=24h", "range=24h&cohort.user.tier=free", "start={-100}&end={-30}"]
)
def test_fallback_counts_link_to_exactly_the_decisions_they_count(
    member_client: Client, window: str
) -> None:
    if window.startswith("start="):
        # A custom window in minutes from now, cutting through the designed traffic.
        now = timezone.now()
        window = "start={}&end={}".format(
            *((now + timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%S") for m in (-100, -30))
        )
    html = member_client.get(f"/overview/?{window}").content.decode()
    shown = _links(html, "fallback-count") + _links(html, "decision-count")

    # Two micro models (one in the custom window), a fallback and a decision count each.
    assert len(shown) == (2 if window.startswith("start=") else 4)
    for href, number in shown:
        css = "decision-count"
        assert _count(member_client, href, css) == int(number), href
    # The designed numbers, so the test cannot pass on empty pages.
    if window == "range=24h":
        assert [n for _, n in _links(html, "fallback-count")] == ["4", "1"]
        assert [n for _, n in _links(html, "decision-count")] == ["14", "4"]


@pytest.mark.usefixtures("traffic")
def test_eval_pills_link_to_exactly_the_failed_verdicts_they_count(
    member_client: Client, project
) -> None:
    html = member_client.get("/overview/?range=24h").content.decode()
    pills = _links(html, "eval-rate")
    now = timezone.now()
    rows = metrics.eval_fail_rate(
        metrics.Filters((project.id,), now - timedelta(hours=24), now), "micro_model"
    ).rows
    failed = {(r["group"], r["evaluator"]): r["failed"] for r in rows}
    assert failed == {("intent-mini", "label_check"): 3}

    assert len(pills) == 1
    href, _ = pills[0]
    assert "micro_model=intent-mini" in href and "failed_evaluator=label_check" in href
    assert _count(member_client, href, "failed-count") == 3
    # Two traces hold those three failed verdicts.
    assert _count(member_client, href, "trace-count") == 2


@pytest.mark.usefixtures("traffic")
def test_a_heatmap_cell_links_to_exactly_its_failed_verdicts(
    member_client: Client, project
) -> None:
    now = timezone.now()
    rows = metrics.eval_fail_rate(
        metrics.Filters((project.id,), now - timedelta(hours=24), now), "user.tier"
    ).rows
    failed = {(r["evaluator"], r["group"]): r["failed"] for r in rows}
    assert failed == {("label_check", "free"): 3, ("label_check", "pro"): 0}

    for (evaluator, tier), count in failed.items():
        url = f"/?failed_evaluator={evaluator}&cohort.user.tier={tier}&range=24h"
        assert _count(member_client, url, "failed-count") == count


def _window(window: str) -> str:
    """A custom window (``start={-100}&end={-30}``, minutes from now) as the page's query."""
    if not window.startswith("start="):
        return window
    now = timezone.now()
    return "start={}&end={}".format(
        *((now + timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%S") for m in (-100, -30))
    )


def _micro_model_page(client: Client, window: str) -> str:
    page = client.get(f"/micro-models/intent-mini/?{_window(window)}")
    assert page.status_code == 200
    return page.content.decode()


WINDOWS = ["range=24h", "start={-100}&end={-30}"]
# Filtered to one cohort, the page's numbers and their links count that cohort only.
MM_WINDOWS = [*WINDOWS, "range=24h&cohort.user.tier=free"]


@pytest.mark.usefixtures("traffic")
@pytest.mark.parametrize("window", MM_WINDOWS)
def test_label_rows_link_to_exactly_the_decisions_they_count(
    member_client: Client, window: str
) -> None:
    html = _micro_model_page(member_client, window)
    shown = _links(html, "expected-count")
    for href, number in shown:
        assert "micro_model=intent-mini" in href and "expected_label=" in href
        assert ("cohort.user.tier=free" in href) == ("cohort." in window)
        assert _count(member_client, href, "decision-count") == int(number), href
    expected = {
        # Traces 0-5: billing on 0 (two decisions), 2 and 4; refund on 1, 3 (two), 5.
        "range=24h": ["4", "4"],
        # Minutes -100 to -30: traces 2 (-37), 3 (-48, two), 4 (-59) and 5 (-70).
        "start={-100}&end={-30}": ["2", "3"],
        # Free (even traces): billing expected on 0 (two decisions), 2 and 4.
        "range=24h&cohort.user.tier=free": ["4"],
    }[window]
    assert [n for _, n in shown] == expected


@pytest.mark.usefixtures("traffic")
@pytest.mark.parametrize("window", MM_WINDOWS)
def test_route_rows_link_to_exactly_the_decisions_they_count(
    member_client: Client, window: str
) -> None:
    html = _micro_model_page(member_client, window)
    shown = _links(html, "route-count")
    for href, number in shown:
        assert "micro_model=intent-mini" in href and "route=" in href
        assert ("cohort.user.tier=free" in href) == ("cohort." in window)
        assert _count(member_client, href, "decision-count") == int(number), href
    # The route's name opens the same traces, as does the page's "Its traces" (all of them).
    assert [href for href, _ in _links(html, "route-name")] == [href for href, _ in shown]
    (its_traces, _), *_ = _links(html, "its-traces")
    assert (
        _count(member_client, its_traces, "decision-count")
        == {
            "range=24h": 14,
            "start={-100}&end={-30}": 8,
            # Free: traces 0 and 6 (two decisions each), 2, 4 and 8.
            "range=24h&cohort.user.tier=free": 7,
        }[window]
    )
    expected = {
        "range=24h": ["13", "1"],
        "start={-100}&end={-30}": ["7", "1"],
        "range=24h&cohort.user.tier=free": ["7"],
    }[window]
    assert [n for _, n in shown] == expected


@pytest.mark.usefixtures("traffic")
@pytest.mark.parametrize("window", MM_WINDOWS)
def test_confusion_cells_link_to_exactly_the_decisions_they_count(
    member_client: Client, window: str
) -> None:
    html = _micro_model_page(member_client, window)
    holder = re.search(r'data-figure="confusion" data-traces-url="([^"]+)" '
                       r'data-traces-query="([^"]+)"', html)  # fmt: skip
    figure = re.search(r'<script id="confusion" type="application/json">(.*?)</script>', html)
    assert holder and figure
    heatmap = json.loads(figure[1])["data"][0]
    cells = {}
    for z_row, custom_row in zip(heatmap["z"], heatmap["customdata"], strict=True):
        for z, (predicted, expected_label) in zip(z_row, custom_row, strict=True):
            # The URL chart_page.js opens on a click on the cell.
            query = f"{html_lib.unescape(holder[2])}&label={predicted}"
            url = f"{holder[1]}?{query}&expected_label={expected_label}"
            assert _count(member_client, url, "decision-count") == z, url
            cells[(predicted, expected_label)] = z
    assert (
        cells
        == {
            "range=24h": {
                ("billing", "billing"): 4,
                ("refund", "billing"): 0,
                ("billing", "refund"): 2,
                ("refund", "refund"): 2,
            },
            "start={-100}&end={-30}": {
                ("billing", "billing"): 2,
                ("refund", "billing"): 0,
                ("billing", "refund"): 1,
                ("refund", "refund"): 2,
            },
            "range=24h&cohort.user.tier=free": {("billing", "billing"): 4},
        }[window]
    )


COHORT_WINDOWS = ["range=24h", "range=24h&micro_model=intent-mini", "start={-100}&end={-30}"]


@pytest.mark.usefixtures("traffic")
@pytest.mark.parametrize("window", COHORT_WINDOWS)
def test_cohort_table_rows_link_to_exactly_the_failed_verdicts_they_count(
    member_client: Client, window: str
) -> None:
    url = f"/cohorts/?{_window(window)}&dimension=user.tier&cohort.user.tier=pro"
    html = member_client.get(url).content.decode()
    shown = _links(html, "failed-verdicts")
    for href, number in shown:
        # Every cohort value's row, whatever the page's own cohort filter.
        assert "failed_evaluator=label_check" in href and href.count("cohort.") == 1
        assert _count(member_client, href, "failed-count") == int(number), href
    expected = {
        # Free: both verdicts of trace 0 and trace 4's; pro: trace 1's passed.
        "range=24h": ["3", "0"],
        "range=24h&micro_model=intent-mini": ["3", "0"],
        # Minutes -100 to -30: only trace 4's.
        "start={-100}&end={-30}": ["1"],
    }[window]
    assert [n for _, n in shown] == expected


@pytest.mark.usefixtures("traffic")
@pytest.mark.parametrize("window", COHORT_WINDOWS)
def test_fallback_by_cohort_links_to_exactly_the_decisions_it_counts(
    member_client: Client, window: str
) -> None:
    html = member_client.get(f"/cohorts/?{_window(window)}&dimension=user.tier").content.decode()
    shown = _links(html, "fallback-count")
    for href, number in shown:
        assert "fallback=1" in href and "cohort.user.tier=" in href
        assert _count(member_client, href, "decision-count") == int(number), href
    expected = {
        # Free: trace 0 (two decisions), 2 and safety-screen's trace 10; pro: trace 5.
        "range=24h": ["4", "1"],
        "range=24h&micro_model=intent-mini": ["3", "1"],
        # Minutes -100 to -30: traces 2 and 5.
        "start={-100}&end={-30}": ["1", "1"],
    }[window]
    assert [n for _, n in shown] == expected


@pytest.mark.usefixtures("traffic")
@pytest.mark.parametrize("window", WINDOWS)
def test_fallback_by_cohort_bars_link_to_exactly_the_decisions_they_count(
    member_client: Client, window: str
) -> None:
    url = f"/micro-models/intent-mini/?{_window(window)}&dimension=user.tier"
    html = member_client.get(url).content.decode()
    holder = re.search(
        r'data-figure="fallback-by-cohort" data-traces-url="([^"]+)" '
        r'data-traces-query="([^"]+)" data-click-params="([^"]+)"',
        html,
    )
    figure = re.search(
        r'<script id="fallback-by-cohort" type="application/json">(.*?)</script>', html
    )
    assert holder and figure
    assert holder[3] == "cohort.user.tier"
    bars = json.loads(figure[1])["data"][0]
    shown = {}
    for value, count in bars["customdata"]:
        # The URL chart_page.js opens on a click on the bar.
        link = f"{holder[1]}?{html_lib.unescape(holder[2])}&{holder[3]}={value}"
        assert "fallback=1" in link and "micro_model=intent-mini" in link
        assert _count(member_client, link, "decision-count") == count, link
        shown[value] = count
    assert (
        shown
        == {
            # Free: trace 0 (two decisions) and 2; pro: trace 5.
            "range=24h": {"free": 3, "pro": 1},
            "start={-100}&end={-30}": {"free": 1, "pro": 1},
        }[window]
    )


@pytest.mark.usefixtures("traffic")
@pytest.mark.parametrize(
    ("page", "window"),
    [
        ("/overview/", "range=24h"),
        ("/overview/", "range=24h&cohort.user.tier=free"),
        ("/overview/", "start={-100}&end={-30}"),
        ("/micro-models/intent-mini/", "range=24h"),
        ("/micro-models/intent-mini/", "start={-100}&end={-30}"),
    ],
)
def test_route_share_bars_link_to_exactly_the_decisions_of_their_bucket(
    member_client: Client, page: str, window: str
) -> None:
    response = member_client.get(f"{page}?{_window(window)}")
    assert response.status_code == 200
    html = response.content.decode()
    holder = re.search(
        r'data-figure="route-share" data-traces-url="([^"]+)" '
        r'data-traces-query="([^"]+)" data-click-params="([^"]+)"',
        html,
    )
    figure = re.search(r'<script id="route-share" type="application/json">(.*?)</script>', html)
    assert holder and figure
    names = holder[3].split(" ")
    assert tuple(names) == charts.ROUTE_SHARE_CLICK_PARAMS
    totals: dict[tuple[str, str], int] = {}
    for bar in json.loads(figure[1])["data"]:
        for custom in bar["customdata"]:
            link, (count, _n) = custom[: len(names)], custom[len(names) :]
            # The URL chart_page.js opens on a click on the bar: the page's query with the
            # bar's parameters set (a preset range becomes the bucket's custom range).
            query = QueryDict(html_lib.unescape(holder[2]), mutable=True)
            for name, value in zip(names, link, strict=True):
                query[name] = value
            url = f"{holder[1]}?{query.urlencode()}"
            assert _count(member_client, url, "decision-count") == count, url
            totals[(link[0], link[1])] = totals.get((link[0], link[1]), 0) + count
    # The designed numbers, summed over the buckets (where hours fall depends on the clock).
    assert (
        totals
        == {
            ("/overview/", "range=24h"): {
                ("intent-mini", "billing"): 13,
                ("intent-mini", "refund"): 1,
                ("safety-screen", "billing"): 4,
            },
            # Free: the even traces, 0-8 of intent-mini and 10 and 12 of safety-screen
            # (0, 6 and 12 with two decisions).
            ("/overview/", "range=24h&cohort.user.tier=free"): {
                ("intent-mini", "billing"): 7,
                ("safety-screen", "billing"): 3,
            },
            # Minutes -100 to -30: traces 2 (-37) to 7 (-92), 3 and 6 with two decisions.
            ("/overview/", "start={-100}&end={-30}"): {
                ("intent-mini", "billing"): 7,
                ("intent-mini", "refund"): 1,
            },
            ("/micro-models/intent-mini/", "range=24h"): {
                ("intent-mini", "billing"): 13,
                ("intent-mini", "refund"): 1,
            },
            ("/micro-models/intent-mini/", "start={-100}&end={-30}"): {
                ("intent-mini", "billing"): 7,
                ("intent-mini", "refund"): 1,
            },
        }[(page, window)]
    )


@pytest.mark.usefixtures("traffic")
@pytest.mark.parametrize("micro_model", ["intent-mini", None])
def test_cohort_rows_open_the_page_filtered_to_the_cohort(
    member_client: Client, micro_model: str | None
) -> None:
    mm = f"&micro_model={micro_model}" if micro_model else ""
    html = member_client.get(f"/cohorts/?range=24h&dimension=user.tier{mm}").content.decode()
    # The fallback table's rows (after the evaluation table's), one per tier.
    opened = {text: href for href, text in _links(html, "cohort-page")}
    assert set(opened) == {"free", "pro"}
    decisions = {
        # intent-mini: free on traces 0 and 6 (two decisions each), 2, 4, 8; pro likewise.
        "intent-mini": {"free": 7, "pro": 7},
        # Every micro model: also safety-screen's free traces 10 and 12 (two decisions), pro 11.
        None: {"free": 10, "pro": 8},
    }[micro_model]
    for tier, href in opened.items():
        if micro_model:
            assert href == f"/micro-models/{micro_model}/?range=24h&cohort.user.tier={tier}"
            page = member_client.get(href)
            assert page.status_code == 200
            assert sum(r["n"] for r in page.context["routes"]) == decisions[tier]
        else:
            assert href == f"/overview/?range=24h&cohort.user.tier={tier}"
            page = member_client.get(href)
            assert page.status_code == 200
            shown = [int(n) for _, n in _links(page.content.decode(), "decision-count")]
            assert sum(shown) == decisions[tier]
