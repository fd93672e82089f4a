from __future__ import annotations

import re
from collections import Counter

import plotly
import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from dashboard.metrics.refresh import fold_changes
from tests.builders import TraceBuilder, micro_model_trace
from tracestore.contracts import ProjectRef
from tracestore.services import create_project, store_spans

pytestmark = pytest.mark.django_db

BASE_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z


def _trace_links(html: str) -> list[str]:
    return re.findall(r'href="/traces/([0-9a-f]{32})/"', html)


def _walk_older_links(client: Client) -> tuple[list[str], int]:
    """Every trace link on the list, following its "older" link to the end; and the pages."""
    seen: list[str] = []
    url, pages = "/", 0
    while url:
        html = client.get(url).content.decode()
        seen += _trace_links(html)
        pages += 1
        match = re.search(r'<a rel="next" href="([^"]+)"', html)
        url = "/" + match[1].replace("&amp;", "&") if match else ""
    return seen, pages


def test_pages_require_login() -> None:
    client = Client()
    for url in ["/", f"/traces/{'ab' * 16}/"]:
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"] == f"/login/?next={url}"


def test_a_member_logs_in_through_the_login_page(member) -> None:
    client = Client()
    response = client.post("/login/", {"username": "ana", "password": "pw-for-tests-1"})
    assert (response.status_code, response["Location"]) == (302, "/")
    assert client.get("/").status_code == 200


def test_the_empty_state_says_how_to_send_traces(member_client: Client) -> None:
    html = member_client.get("/").content.decode()

    assert "No traces yet" in html
    assert "<code>localhost:4317</code>" in html
    assert "authorization=Bearer &lt;key&gt;" in html
    assert "export OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317" in html
    assert 'export OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer%20&lt;key&gt;"' in html


def test_a_user_in_no_project_is_told_so() -> None:
    user = get_user_model().objects.create_user("bo", password="pw-for-tests-1")
    client = Client()
    client.force_login(user)

    html = client.get("/").content.decode()

    assert "Your account is not a member of any project" in html
    assert "No traces yet" not in html


def test_recent_traces_are_listed_newest_first_with_their_rollup(
    member_client: Client, project: ProjectRef
) -> None:
    older = micro_model_trace(fallback=True)
    older.start_ns = BASE_NS
    older.spans.clear()
    root = older.span("POST /chat", duration_ms=900)
    older.span(
        "classify",
        parent=root,
        offset_ms=5,
        duration_ms=30,
        attrs={"micro_model.name": "intent-mini"},
        error=True,
    )
    newer = TraceBuilder(service="search-api", start_ns=BASE_NS + 60 * 10**9)
    child_of_missing_root = newer.span("rerank", parent=b"\x01" * 8, duration_ms=7.25)
    assert child_of_missing_root
    store_spans(project.id, older.records() + newer.records())

    html = member_client.get("/").content.decode()

    assert _trace_links(html) == [newer.trace_hex, older.trace_hex]
    assert "(root not received yet)" in html
    assert "search-api" in html
    assert "POST /chat" in html
    assert "900 ms" in html
    assert "7.25 ms" in html
    assert '<span class="chip">intent-mini</span>' in html
    assert "error (1)" in html
    assert "2026-01-01 00:00:00" in html
    assert "No traces yet" not in html


def test_the_list_shows_only_the_users_projects(member_client: Client, project) -> None:
    other = create_project("elsewhere")
    mine, theirs = micro_model_trace(), micro_model_trace()
    store_spans(project.id, mine.records())
    store_spans(other.id, theirs.records())

    html = member_client.get("/").content.decode()

    assert _trace_links(html) == [mine.trace_hex]
    assert member_client.get(f"/traces/{theirs.trace_hex}/").status_code == 404


def test_older_links_walk_every_trace_exactly_once(member_client: Client, project) -> None:
    records = []
    expected = []
    # 120 traces over 2.5 pages; groups of three share a start instant, to exercise the
    # trace_id tie-break of the cursor.
    for i in range(120):
        trace = TraceBuilder(start_ns=BASE_NS + (i // 3) * 10**9)
        trace.span("job")
        records += trace.records()
        expected.append((trace.start_ns, trace.trace_hex))
    store_spans(project.id, records)
    newest_first = [hex_id for _, hex_id in sorted(expected, reverse=True)]

    seen, pages = _walk_older_links(member_client)

    assert pages == 3
    assert seen == newest_first


def test_one_trace_id_in_two_projects_is_listed_once_per_project(
    member, member_client: Client, project
) -> None:
    """The same traces exported to two projects: the cursor tells the copies apart, so a
    page boundary between them neither skips nor repeats one."""
    other = create_project("shop-mirror")
    member.projects.add(other.id)
    records = []
    for i in range(60):
        trace = TraceBuilder(start_ns=BASE_NS + (i // 2) * 10**9)
        trace.span("job")
        records += trace.records()
    store_spans(project.id, records)
    store_spans(other.id, records)
    # One newer trace in the first project only: the 50th row, where the first page ends,
    # is then the first of a trace's two copies.
    newest = TraceBuilder(start_ns=BASE_NS + 3600 * 10**9)
    newest.span("job")
    store_spans(project.id, newest.records())

    seen, pages = _walk_older_links(member_client)

    assert pages == 3
    assert len(seen) == 121
    assert seen[0] == newest.trace_hex
    assert Counter(seen[1:]) == {trace_id: 2 for trace_id in set(seen[1:])}
    assert len(set(seen)) == 61


def test_a_cursor_of_the_earlier_dotted_form_is_a_bad_request(member_client: Client) -> None:
    for old in (f"1767225600000000.{'ab' * 16}", f"1767225600000000.{'ab' * 16}.7"):
        response = member_client.get(f"/?before={old}")
        assert response.status_code == 400
        assert b"invalid cursor: pass back the one from the previous page" in response.content


def test_an_invalid_cursor_is_a_bad_request(member_client: Client) -> None:
    assert member_client.get("/?before=not-a-cursor").status_code == 400


def test_the_service_filter_keeps_one_service(member_client: Client, project) -> None:
    a, b = TraceBuilder(service="a-svc"), TraceBuilder(service="b-svc")
    a.span("x")
    b.span("y")
    store_spans(project.id, a.records() + b.records())
    fold_changes()

    html = member_client.get("/?service=b-svc").content.decode()

    assert _trace_links(html) == [b.trace_hex]


def test_the_list_page_runs_a_fixed_number_of_queries(
    member_client: Client, project, django_assert_max_num_queries
) -> None:
    records = []
    for _ in range(30):
        records += micro_model_trace(fallback=True).records()
    store_spans(project.id, records)

    # session, user, project ids, traces; the filter bar's cohort dimensions and its
    # suggestions (decision values, services, duration and cost percentiles)
    with django_assert_max_num_queries(8):
        response = member_client.get("/")
    assert len(_trace_links(response.content.decode())) == 30


def test_the_trace_page_shows_the_tree_waterfall_and_every_attribute(
    member_client: Client, project
) -> None:
    trace = micro_model_trace(fallback=True)
    trace.resource = {"deployment.environment": "staging"}
    store_spans(project.id, trace.records())

    response = member_client.get(f"/traces/{trace.trace_hex.upper()}/")
    html = response.content.decode()

    assert response.status_code == 200
    assert '<script id="waterfall-figure" type="application/json">' in html
    assert "/assets/plotly-" in html
    assert "dashboard/trace_detail.js" in html
    # span tree rows, children indented one level
    assert 'style="padding-left: calc(0.6rem + 0.00rem)"><a href="#span-' in html
    assert html.count('style="padding-left: calc(0.6rem + 1.25rem)"') == 3
    # canonical fields and attributes of the classifier span
    assert "<dt>Micro model</dt><dd>intent-mini</dd>" in html
    assert "<dt>Route</dt><dd>billing</dd>" in html
    assert "<dt>Label</dt><dd>billing</dd>" in html
    assert "<dt>Confidence</dt><dd>0.93</dd>" in html
    assert "<dt>Tokens (prompt / completion)</dt><dd>42 / 3</dd>" in html
    assert "<dt>Fallback</dt><dd>yes</dd>" in html
    assert '<th scope="row">micro_model.confidence</th><td>0.93</td>' in html
    assert '<th scope="row">llm.token_count.prompt</th><td>42</td>' in html
    assert '<th scope="row">route.fallback</th><td>true</td>' in html
    assert '<th scope="row">deployment.environment</th><td>staging</td>' in html
    assert '<th scope="row">service.name</th><td>support-bot</td>' in html


def test_span_text_with_markup_renders_as_text(member_client: Client, project) -> None:
    trace = TraceBuilder(service="<b>svc</b>")
    trace.span(
        "<script>alert(1)</script>",
        attrs={
            "input.value": "<script>alert(1)</script>",
            "<img src=x onerror=alert(2)>": "key with markup",
            "items": "a key named like a dict method",
            "nested": {"html": "<script>alert(3)</script>"},
        },
    )
    store_spans(project.id, trace.records())

    html = member_client.get(f"/traces/{trace.trace_hex}/").content.decode()
    listing = member_client.get("/").content.decode()

    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert "<b>svc</b>" not in html + listing
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert '<th scope="row">&lt;img src=x onerror=alert(2)&gt;</th>' in html
    assert '<th scope="row">items</th><td>a key named like a dict method</td>' in html
    assert "&quot;&lt;script&gt;alert(3)&lt;/script&gt;&quot;" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in listing
    assert "<script>alert" not in listing


@pytest.mark.parametrize("trace_id", ["nothex" * 4, "ab" * 15, "ab" * 17, "ab" * 16])
def test_an_invalid_or_unknown_trace_id_is_not_found(member_client: Client, trace_id) -> None:
    assert member_client.get(f"/traces/{trace_id}/").status_code == 404


def test_a_superuser_sees_every_project(project) -> None:
    other = create_project("elsewhere")
    trace = micro_model_trace()
    store_spans(other.id, trace.records())
    admin = get_user_model().objects.create_superuser("root", password="pw-for-tests-1")
    client = Client()
    client.force_login(admin)

    assert _trace_links(client.get("/").content.decode()) == [trace.trace_hex]
    assert client.get(f"/traces/{trace.trace_hex}/").status_code == 200


def test_plotly_is_served_locally_with_long_caching() -> None:
    response = Client().get(f"/assets/plotly-{plotly.__version__}.min.js")
    body = b"".join(response.streaming_content)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    assert "immutable" in response["Cache-Control"]
    assert "max-age=31536000" in response["Cache-Control"]
    assert len(body) > 1_000_000
    assert b"plotly" in body[:2000].lower()
