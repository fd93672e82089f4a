"""The Traces page's search on real PostgreSQL: fifteen traces with designed values, each
filter answering exactly the traces it should, keyset pages both ways, the CSV and JSON
exports of the same set, and a clear 400 for every bad parameter."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dashboard import trace_search, views
from dashboard.metrics.refresh import fold_changes
from dashboard.models import ModelPrice
from evaluators.contracts import EvaluationRecord
from evaluators.services import import_evaluation_results
from tests.builders import TraceBuilder
from tracestore.queries import SPAN_TEXT_VECTOR
from tracestore.services import store_spans

pytestmark = pytest.mark.django_db

COUNT = 15
ROUTES = ("billing", "tech", "sales")


def _design(i: int) -> dict:
    """Trace i's designed values (the expectations below are read off these rules)."""
    route = ROUTES[i % 3]
    return {
        "service": "checkout" if i % 5 == 0 else "support-bot",
        "micro_model": "safety-screen" if i in (3, 7) else "intent-mini",
        "route": route,
        "label": "refund" if i == 4 else route,
        "expected": "refund" if i in (1, 2) else ("refund" if i == 4 else route),
        "tier": ("free", "pro")[i % 2],
        "language": "de" if i % 3 == 0 else "en",
        "fallback": i % 4 == 0,
        "error": i == 6,
        "duration_ms": 1000 + 100 * i,
    }


def _expect(rule) -> set[int]:
    return {i for i in range(COUNT) if rule(i, _design(i))}


@pytest.fixture
def seeded(project):
    for pattern in ("intent-mini*", "safety-screen*"):
        ModelPrice.objects.create(
            model_pattern=pattern,
            input_per_million=Decimal("0.10"),
            output_per_million=Decimal("0.40"),
            effective_from=datetime(2026, 1, 1).date(),
        )
    ModelPrice.objects.create(
        model_pattern="gpt-large",
        input_per_million=Decimal("2.50"),
        output_per_million=Decimal("10.00"),
        effective_from=datetime(2026, 1, 1).date(),
    )
    now = timezone.now()
    ids: dict[str, int] = {}
    starts: dict[int, datetime] = {}
    for i in range(COUNT):
        d = _design(i)
        start = now - timedelta(minutes=10 + 7 * i)
        starts[i] = start
        trace = TraceBuilder(service=d["service"], start_ns=int(start.timestamp() * 1e9))
        root = trace.span(
            "POST /chat",
            duration_ms=d["duration_ms"],
            attrs={"user.tier": d["tier"], "language": d["language"]},
        )
        trace.span(
            "classify",
            parent=root,
            offset_ms=5,
            duration_ms=30,
            error=d["error"],
            attrs={
                "micro_model.name": d["micro_model"],
                "llm.model_name": d["micro_model"] + "-v1",
                "micro_model.label": d["label"],
                "micro_model.expected_label": d["expected"],
                "route.name": d["route"],
                "llm.token_count.prompt": 100 * (i + 1),
                "llm.token_count.completion": 10,
                "input.value": f"order code k{i}q, please check",
                "output.value": "the parcel is delayed" if i == 9 else d["label"],
            },
        )
        if i == 7:
            trace.span("lookup-warehouse", parent=root, offset_ms=40, duration_ms=20)
        if d["fallback"]:
            trace.span(
                "fallback",
                parent=root,
                offset_ms=60,
                duration_ms=700,
                attrs={
                    "gen_ai.request.model": "gpt-large",
                    "gen_ai.usage.input_tokens": 800,
                    "gen_ai.usage.output_tokens": 120,
                    "route.fallback": True,
                },
            )
        store_spans(project.id, trace.records())
        ids[trace.trace_hex] = i
    fold_changes()
    # LabelCheck failed on traces 1 (pro) and 2 (free), passed on 5.
    spans = {i: hexid for hexid, i in ids.items()}
    records = []
    for i, passed in ((1, False), (2, False), (5, True)):
        d = _design(i)
        records.append(
            EvaluationRecord(
                trace_id=bytes.fromhex(spans[i]),
                span_id=bytes(8),
                span_start_time=starts[i],
                micro_model=d["micro_model"],
                evaluator="label_check",
                score=1.0 if passed else 0.0,
                passed=passed,
                threshold=0.5,
                reason="labels differ" if not passed else "labels agree",
                judge="exact",
                latency_ms=1.0,
                sampling_probability=1.0,
                cohort={"user.tier": d["tier"], "language": d["language"]},
            )
        )
    import_evaluation_results(project.id, records)
    return {"ids": ids, "starts": starts, "now": now}


def _listed(client: Client, url: str, ids: dict[str, int]) -> list[int]:
    response = client.get(url)
    assert response.status_code == 200, response.content.decode()[:2000]
    html = response.content.decode()
    table = html.split('id="trace-results"', 1)[1] if 'id="trace-results"' in html else ""
    return [ids[t] for t in re.findall(r'href="/traces/([0-9a-f]{32})/"', table)]


@pytest.mark.parametrize(
    ("query", "rule"),
    [
        ("range=24h", lambda i, d: True),
        ("range=1h", lambda i, d: 10 + 7 * i < 60),
        ("service=checkout", lambda i, d: d["service"] == "checkout"),
        ("micro_model=safety-screen", lambda i, d: d["micro_model"] == "safety-screen"),
        ("route=tech", lambda i, d: d["route"] == "tech"),
        # A decision's model is its micro model's name first (DESIGN.md).
        ("model=safety-screen", lambda i, d: d["micro_model"] == "safety-screen"),
        ("label=refund", lambda i, d: d["label"] == "refund"),
        ("expected_label=refund", lambda i, d: d["expected"] == "refund"),
        ("cohort.user.tier=free", lambda i, d: d["tier"] == "free"),
        (
            "cohort.user.tier=pro&cohort.language=de",
            lambda i, d: d["tier"] == "pro" and d["language"] == "de",
        ),
        ("fallback=1", lambda i, d: d["fallback"]),
        ("fallback=0", lambda i, d: not d["fallback"]),
        ("status=error", lambda i, d: d["error"]),
        ("status=ok", lambda i, d: not d["error"]),
        ("failed_evaluator=label_check", lambda i, d: i in (1, 2)),
        ("failed_evaluator=any", lambda i, d: i in (1, 2)),
        ("failed_evaluator=label_check&cohort.user.tier=free", lambda i, d: i == 2),
        ("failed_evaluator=groundedness", lambda i, d: False),
        ("min_ms=2000&max_ms=2300", lambda i, d: 2000 <= d["duration_ms"] <= 2300),
        ("min_ms=2350", lambda i, d: d["duration_ms"] >= 2350),
        ("min_cost=0.001", lambda i, d: d["fallback"]),
        ("max_cost=0.001", lambda i, d: not d["fallback"]),
        ("q=k7q", lambda i, d: i == 7),
        ("q=warehouse", lambda i, d: i == 7),
        ("q=parc+delay", lambda i, d: i == 9),
        ("q=%22POST%22", lambda i, d: True),
        ("q=k7q+parcel", lambda i, d: False),
        ("route=billing&fallback=1", lambda i, d: d["route"] == "billing" and d["fallback"]),
        (
            "route=tech&micro_model=intent-mini&label=refund",
            lambda i, d: i == 4,
        ),
        # A decision filter with every kind of trace filter: the counts then come from the
        # matching decisions (trace_search._decision_count_sql).
        (
            "micro_model=intent-mini&min_cost=0.001",
            lambda i, d: d["micro_model"] == "intent-mini" and d["fallback"],
        ),
        (
            "micro_model=intent-mini&max_cost=0.001",
            lambda i, d: d["micro_model"] == "intent-mini" and not d["fallback"],
        ),
        (
            "route=tech&service=checkout",
            lambda i, d: d["route"] == "tech" and d["service"] == "checkout",
        ),
        ("label=refund&q=k4q", lambda i, d: i == 4),
        ("label=refund&q=k7q", lambda i, d: False),
        ("fallback=0&status=error", lambda i, d: not d["fallback"] and d["error"]),
        (
            "micro_model=safety-screen&min_ms=1500",
            lambda i, d: d["micro_model"] == "safety-screen" and d["duration_ms"] >= 1500,
        ),
        (
            "expected_label=refund&failed_evaluator=label_check",
            lambda i, d: d["expected"] == "refund" and i in (1, 2),
        ),
        (
            "fallback=1&cohort.user.tier=free",
            lambda i, d: d["fallback"] and d["tier"] == "free",
        ),
    ],
)
def test_each_filter_lists_exactly_its_traces(seeded, member_client: Client, query, rule):
    listed = _listed(member_client, f"/?{query}", seeded["ids"])

    assert set(listed) == _expect(rule)
    # The counts above the list: every match, and (one decision a trace) as many decisions
    # when a decision filter is set, failed verdicts when failed_evaluator is.
    html = member_client.get(f"/?{query}").content.decode()
    counts = dict(re.findall(r'<span class="(\w+-count)">(\d+)</span>', html))
    assert int(counts["trace-count"]) == len(_expect(rule))
    decision_filter = any(
        f"{name}=" in query
        for name in ("micro_model", "route", "model", "label", "expected_label", "fallback")
    )
    if decision_filter:
        assert int(counts["decision-count"]) == len(_expect(rule))
    else:
        assert "decision-count" not in counts
    if "failed_evaluator=" in query:
        assert int(counts["failed-count"]) == len(_expect(rule))
    # Newest first: the designed traces start 7 minutes apart, trace 0 the newest.
    assert listed == sorted(listed)


def test_a_custom_range_reads_start_and_end(seeded, member_client: Client) -> None:
    now = seeded["now"]
    start = (now - timedelta(minutes=70)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    end = (now - timedelta(minutes=30)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")

    listed = _listed(member_client, f"/?range=custom&start={start}&end={end}", seeded["ids"])

    assert set(listed) == {i for i in range(COUNT) if 30 <= 10 + 7 * i < 70}


def test_decision_filters_hold_on_one_and_the_same_decision(seeded, member_client: Client) -> None:
    # Trace 4 has route tech and label refund, but no decision of route billing with it.
    assert _listed(member_client, "/?route=billing&label=refund", seeded["ids"]) == []


def test_three_pages_forth_and_back_list_every_trace_once(
    seeded, member_client: Client, monkeypatch
) -> None:
    monkeypatch.setattr(views, "PAGE_SIZE", 6)
    ids = seeded["ids"]
    url, pages, seen = "/?range=24h", [], []
    while url:
        html = member_client.get(url).content.decode()
        pages.append(_listed(member_client, url, ids))
        seen += pages[-1]
        match = re.search(r'<a rel="next" href="([^"]+)"', html)
        url = "/" + match[1].replace("&amp;", "&") if match else ""
        last_html = html
    assert [len(p) for p in pages] == [6, 6, 3]
    assert seen == list(range(COUNT))
    # Back from the last page: the previous links give the same pages in reverse.
    back = []
    match = re.search(r'<a rel="prev" href="([^"]+)"', last_html)
    while match:
        url = "/" + match[1].replace("&amp;", "&")
        back.append(_listed(member_client, url, ids))
        match = re.search(r'<a rel="prev" href="([^"]+)"', member_client.get(url).content.decode())
    assert back == [pages[1], pages[0]]
    assert "range=24h" in url


def test_the_csv_export_holds_the_filtered_rows(seeded, member_client: Client) -> None:
    response = member_client.get("/traces.csv?route=tech&range=24h&cursor=ignored")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    by_id = {seeded["ids"][row["trace_id"]]: row for row in rows}
    assert list(by_id) == sorted(_expect(lambda i, d: d["route"] == "tech"))
    four = by_id[4]
    assert (four["route"], four["label"], four["fallback"], four["service"]) == (
        "tech",
        "refund",
        "True",
        "support-bot",
    )
    assert int(four["prompt_tokens"]) == 500 + 800
    assert json.loads(four["cohort"]) == {"language": "en", "user.tier": "free"}


def test_the_json_export_holds_the_filtered_rows_and_says_when_cut(
    seeded, member_client: Client, monkeypatch
) -> None:
    response = member_client.get("/traces.json?fallback=1")
    body = json.loads(b"".join(response.streaming_content))
    assert [seeded["ids"][t["trace_id"]] for t in body["traces"]] == [0, 4, 8, 12]
    assert (body["count"], body["truncated"]) == (4, False)
    assert body["traces"][0]["cost_usd"] > 0.003

    monkeypatch.setattr(views, "EXPORT_LIMIT", 3)
    body = json.loads(b"".join(member_client.get("/traces.json?fallback=1").streaming_content))
    assert [seeded["ids"][t["trace_id"]] for t in body["traces"]] == [0, 4, 8]
    assert (body["count"], body["truncated"]) == (3, True)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("fallback=yes", "fallback: one of 1, 0, not &#x27;yes&#x27;"),
        ("status=broken", "status: one of error, ok"),
        ("min_ms=fast", "min_ms: a number, not &#x27;fast&#x27;"),
        ("max_cost=-1", "max_cost: a number of 0 or more"),
        ("min_cost=5&max_cost=1", "min_cost must not be above max_cost"),
        ("failed_evaluator=vibes", "failed_evaluator: one of task_completion"),
        ("cohort.shoe.size=9", "&#x27;shoe.size&#x27; is not a cohort dimension"),
        ("range=2h", "range: one of 1h, 24h, 7d, 30d"),
        ("start=yesterday", "start: not an ISO 8601 date or time"),
        ("cursor=bm9wZQ", "cursor: not a cursor of this page"),
        ("q=%21%21", "q: give at least one word"),
    ],
)
def test_an_invalid_parameter_is_a_clear_400(member_client: Client, query, message) -> None:
    urls = [f"/?{query}"] + ([] if query.startswith("cursor=") else [f"/traces.csv?{query}"])
    for url in urls:
        response = member_client.get(url)
        assert response.status_code == 400, url
        assert message in response.content.decode(), url


def test_the_filter_bar_offers_recent_values(seeded, member_client: Client) -> None:
    html = member_client.get("/").content.decode()

    for value in ("safety-screen", "checkout", "refund", "tech", "label_check"):
        assert f'<option value="{value}">' in html
    assert 'name="cohort.user.tier"' in html and '<option value="pro">' in html


def test_the_heatmap_cell_traces_honour_the_cohort_past_500_failures(
    seeded, project, member_client: Client
) -> None:
    # 501 newer failed verdicts in the other cohort: a capped list of failed evaluations
    # would hold none of the cell's.
    newer = seeded["now"] - timedelta(minutes=1)
    import_evaluation_results(
        project.id,
        [
            EvaluationRecord(
                trace_id=n.to_bytes(16, "big"),
                span_id=bytes(8),
                span_start_time=newer,
                micro_model="intent-mini",
                evaluator="label_check",
                score=0.0,
                passed=False,
                threshold=0.5,
                reason="labels differ",
                judge="exact",
                latency_ms=1.0,
                sampling_probability=1.0,
                cohort={"user.tier": "pro"},
            )
            for n in range(1, 502)
        ],
    )

    url = "/?failed_evaluator=label_check&cohort.user.tier=free&range=24h"
    assert _listed(member_client, url, seeded["ids"]) == [2]


def test_the_search_index_expression_is_the_one_searches_use(seeded) -> None:
    from importlib import import_module

    migration = import_module("tracestore.migrations.0010_span_text_search_index")
    expression = SPAN_TEXT_VECTOR.format(prefix="")
    assert expression == migration.EXPRESSION
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(
            f"EXPLAIN SELECT 1 FROM tracestore_span WHERE {expression}"  # noqa: S608 (constant SQL)
            " @@ to_tsquery('simple', 'k7q')"
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Bitmap Index Scan" in plan, plan


def test_a_span_with_megabytes_of_text_is_stored_and_found_by_its_first_words(
    project, member_client: Client
) -> None:
    # Unbounded, this text's tsvector would pass PostgreSQL's 1 MB limit and fail the
    # insert through the index; the index reads the first 16,000 characters.
    text = " ".join(f"w{n}x" for n in range(300_000))
    trace = TraceBuilder()
    trace.span("summarise", attrs={"input.value": text, "micro_model.name": "intent-mini"})
    store_spans(project.id, trace.records())
    fold_changes()

    assert member_client.get("/?q=w7x").content.decode().count(f"/traces/{trace.trace_hex}/") == 1
    assert f"/traces/{trace.trace_hex}/" not in member_client.get("/?q=w299999x").content.decode()


def _range_options(html: str, field: str) -> list[tuple[str, str]]:
    datalist = re.search(rf'<datalist id="t-{field}-values">(.*?)</datalist>', html)
    assert datalist, field
    return re.findall(r'<option value="([^"]*)" label="([^"]*)">', datalist[1])


@pytest.mark.parametrize(
    ("query", "durations", "costs"),
    [
        # Every trace (the newest of any time): durations 1000 ms + 100 ms x i; costs in
        # micro-USD 10 i + 14, plus 3200 for the fallback traces 0, 4, 8 and 12.
        (
            "",
            [("1700", "p50"), ("2300", "p90"), ("2400", "p99")],
            [("0.000114", "p50"), ("0.00329", "p90"), ("0.00333", "p99")],
        ),
        # The last hour: traces 0-7 (1000-1700 ms; 24 ... 84 and 3214, 3254 micro-USD).
        (
            "range=1h",
            [("1300", "p50"), ("1700", "p90, p99")],
            [("0.000064", "p50"), ("0.00325", "p90, p99")],
        ),
        ("range=custom&start=2020-01-01&end=2020-01-02", [], []),
    ],
)
def test_the_duration_and_cost_fields_offer_percentiles_of_the_window(
    seeded, member_client: Client, query, durations, costs
) -> None:
    html = member_client.get(f"/?{query}").content.decode()

    assert _range_options(html, "ms") == durations
    assert _range_options(html, "cost") == costs
    for name in ("min_ms", "max_ms"):
        assert re.search(rf'name="{name}"[^>]* list="t-ms-values"', html)
    for name in ("min_cost", "max_cost"):
        assert re.search(rf'name="{name}"[^>]* list="t-cost-values"', html)


def _minutes_ago(now: datetime, minutes: int) -> str:
    return (now - timedelta(minutes=minutes)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def test_start_and_end_count_only_with_a_custom_range_or_none(seeded, member_client) -> None:
    start, end = (_minutes_ago(seeded["now"], m) for m in (70, 30))
    custom = {i for i in range(COUNT) if 30 <= 10 + 7 * i < 70}
    window = f"start={start}&end={end}"

    assert set(_listed(member_client, f"/?{window}", seeded["ids"])) == custom
    assert set(_listed(member_client, f"/?range=custom&{window}", seeded["ids"])) == custom
    # A preset wins: the form sends its (hidden) custom fields with every range.
    assert set(_listed(member_client, f"/?range=1h&{window}", seeded["ids"])) == set(range(8))
    # "newest, any time" with the custom fields filled: the newest traces, no search.
    html = member_client.get(f"/?range=&{window}&q=").content.decode()
    assert "<h1>Recent traces</h1>" in html and 'id="trace-results"' not in html


def test_the_custom_fields_show_only_for_a_custom_range_prefilled_with_the_window(
    seeded, member_client: Client
) -> None:
    start, end = (_minutes_ago(seeded["now"], m) for m in (70, 30))
    tag = re.compile(r'<span class="field custom-range" id="t-custom"( hidden)?>')
    value = re.compile(r'id="t-(start|end)" name="\1" aria-label="[^"]+" value="([^"]*)"')

    html = member_client.get(f"/?range=custom&start={start}&end={end}").content.decode()
    match = tag.search(html)
    assert match and match[1] is None
    assert dict(value.findall(html)) == {"start": start[:16], "end": end[:16]}

    # A preset: hidden, holding the preset's window (choosing "from - to:" starts there).
    for query in ("range=24h", ""):
        before = timezone.now()
        html = member_client.get(f"/?{query}").content.decode()
        match = tag.search(html)
        assert match and match[1] == " hidden"
        shown = {k: datetime.fromisoformat(v).replace(tzinfo=UTC) for k, v in value.findall(html)}
        assert (
            before - timedelta(hours=24, minutes=1)
            < shown["start"]
            <= before - timedelta(hours=24) + timedelta(minutes=1)
        )
        assert shown["end"] - shown["start"] == timedelta(hours=24)


@pytest.mark.parametrize(
    ("query", "rule"),
    [
        ("q=k7q", lambda i, d: i == 7),
        ("q=warehouse", lambda i, d: i == 7),
        ("q=parc+delay", lambda i, d: i == 9),
        ("q=%22POST%22", lambda i, d: True),
        ("q=k7q+parcel", lambda i, d: False),
        ("q=k4q&label=refund", lambda i, d: i == 4),
        ("q=POST&cohort.user.tier=free", lambda i, d: d["tier"] == "free"),
    ],
)
def test_a_common_text_is_checked_trace_by_trace_with_the_same_matches(
    seeded, member_client: Client, monkeypatch, query, rule
) -> None:
    # Every text counts as common: matched trace by trace down the newest-first walk.
    monkeypatch.setattr(trace_search, "COMMON_TEXT_SPANS", 1)
    listed = _listed(member_client, f"/?{query}", seeded["ids"])

    assert set(listed) == _expect(rule)
    assert listed == sorted(listed)
    html = member_client.get(f"/?{query}").content.decode()
    expected = len(_expect(rule))
    assert f'<span class="trace-count">{expected}</span> trace' in html
    assert "decision-count" not in html


def test_a_common_text_counts_its_traces_up_to_the_cap(
    seeded, member_client: Client, monkeypatch
) -> None:
    monkeypatch.setattr(trace_search, "COMMON_TEXT_SPANS", 1)
    monkeypatch.setattr(trace_search, "TEXT_COUNT_CAP", 4)

    every = member_client.get("/?q=POST").content.decode()
    one = member_client.get("/?q=k7q").content.decode()

    # All 15 traces hold "POST": counted to 4 and marked; one holds "k7q": exact.
    assert '<span class="trace-count">4</span>+ traces' in every
    assert '<span class="trace-count">1</span> trace.' in one
    assert len(_listed(member_client, "/?q=POST", seeded["ids"])) == COUNT


def test_a_text_search_page_asks_the_text_index_once_how_common_its_text_is(
    seeded, member_client: Client
) -> None:
    with CaptureQueriesContext(connection) as queries:
        response = member_client.get("/?q=k7q")

    assert response.status_code == 200
    # The list and its counts share the one answer (trace_search.text_is_common).
    probe = "SELECT count(*) FROM (SELECT 1 FROM tracestore_span s"
    probes = [q["sql"] for q in queries.captured_queries if probe in q["sql"]]
    assert len(probes) == 1
