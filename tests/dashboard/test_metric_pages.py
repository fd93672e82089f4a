from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from dashboard.metrics.refresh import fold_changes
from tests.builders import TraceBuilder
from tests.dashboard.metric_data import add_prices, build_trace
from tracestore.services import store_spans

pytestmark = pytest.mark.django_db

PAGES = ["/overview/", "/micro-models/intent-mini/", "/cohorts/"]


@pytest.fixture
def traffic(project):
    add_prices()
    now = timezone.now()
    for i in range(12):
        b = build_trace(
            i,
            start=now - timedelta(hours=3, minutes=7 * i),
            route=("billing", "tech")[i % 2],
            label=("billing", "tech")[i % 2],
            expected="billing",
            tier=("free", "pro")[i % 2],
            fallback=i % 3 == 0,
        )
        for batch in b.batches:
            store_spans(project.id, b.trace.records(batch))
    fold_changes()


@pytest.mark.parametrize("url", PAGES)
def test_pages_need_a_login(url) -> None:
    response = Client().get(url)
    assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.parametrize("url", PAGES)
def test_pages_without_traffic_say_how_to_send_it(member_client: Client, url) -> None:
    response = member_client.get(url)

    assert response.status_code == 200
    assert "No micro-model decisions in this range" in response.content.decode()


@pytest.mark.usefixtures("traffic")
def test_the_overview_lists_each_micro_model_with_its_rates(member_client: Client) -> None:
    response = member_client.get("/overview/")

    html = response.content.decode()
    assert response.status_code == 200
    assert 'href="/micro-models/intent-mini/?' in html
    assert re.search(r'33\.3% <span class="muted">\(<a [^>]*>4</a>/<a [^>]*>12</a>\)</span>', html)
    for chart in ("route-share", "fallback", "cost"):
        assert f'<script id="{chart}" type="application/json">' in html


@pytest.mark.usefixtures("traffic")
def test_the_micro_model_page_has_labels_and_a_confusion_matrix(member_client: Client) -> None:
    html = member_client.get("/micro-models/intent-mini/?dimension=user.tier").content.decode()

    assert re.search(
        r'<td>billing</td><td class="num"><a [^>]*>12</a></td>'
        r'<td class="num">100\.0%</td><td class="num">50\.0%</td>',
        html,
    )
    assert 'id="confusion" type="application/json"' in html
    assert "Fallback rate by user.tier" in html


@pytest.mark.usefixtures("traffic")
def test_the_cohorts_page_says_when_there_are_no_evaluations(member_client: Client) -> None:
    html = member_client.get("/cohorts/?dimension=user.tier").content.decode()

    assert "No evaluations yet" in html
    assert 'id="fallback-by-cohort"' in html


@pytest.mark.usefixtures("traffic")
def test_the_traces_page_filters_by_metric_facts(member_client: Client) -> None:
    html = member_client.get("/?route=tech&fallback=1&cohort.user.tier=pro").content.decode()

    assert html.count('class="chip">user.tier=pro</span>') == 2
    assert "free" not in html.split("<tbody>")[1]


def test_a_bad_range_is_a_bad_request(member_client: Client) -> None:
    assert member_client.get("/overview/?range=forever").status_code == 400


def test_markup_in_span_text_renders_as_text(member_client: Client, project) -> None:
    add_prices()
    trace = TraceBuilder()
    root = trace.span("<script>alert(1)</script>", attrs={"user.tier": "<b>x</b>"})
    trace.span(
        "<img src=x onerror=alert(2)>",
        parent=root,
        attrs={
            "micro_model.name": "<script>mm</script>",
            "llm.model_name": "intent-mini-v2",
            "route.name": "<i>r</i>",
            "micro_model.label": "<script>l</script>",
            "<b>key</b>": "v",
            "llm.token_count.prompt": 5,
        },
    )
    store_spans(project.id, trace.records())
    fold_changes()

    pages = [
        member_client.get(f"/traces/{trace.trace_hex}/"),
        member_client.get("/?micro_model=<script>mm</script>"),
        member_client.get("/overview/"),
        member_client.get("/micro-models/%3Cscript%3Emm%3C/script%3E/"),
    ]

    for response in pages:
        html = response.content.decode()
        assert response.status_code == 200
        assert "<script>alert" not in html and "<script>mm" not in html
        assert "<b>key</b>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;mm&lt;/script&gt;" in pages[1].content.decode()


def test_two_cohort_dimensions_at_once_are_a_400_page_that_says_why(
    member_client: Client,
) -> None:
    response = member_client.get("/overview/?cohort.user.tier=enterprise&cohort.language=de")

    assert response.status_code == 400
    html = response.content.decode()
    assert "filter by one cohort dimension at a time (asked for language and user.tier)" in html
    assert "This page cannot answer that query" in html


def test_a_chart_with_nothing_to_draw_says_why(project, member_client: Client) -> None:
    """Decisions without expected labels and without prices: the confusion matrix and the
    cost chart say so instead of drawing empty axes."""
    now = timezone.now()
    for i in range(3):
        b = build_trace(
            i,
            start=now - timedelta(hours=2, minutes=5 * i),
            route="billing",
            label="billing",
            expected=None,
            tier="free",
            fallback=False,
        )
        for batch in b.batches:
            store_spans(project.id, b.trace.records(batch))
    fold_changes()

    html = member_client.get("/micro-models/intent-mini/").content.decode()

    assert re.findall(r'"empty": "[^"]*"', html) == [
        '"empty": "no priced traces in this window (prices: Admin \\u2192 Model prices)"',
        '"empty": "no expected labels yet (feedback or micro_model.expected_label)"',
    ]
