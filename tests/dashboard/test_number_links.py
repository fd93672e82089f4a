"""Every number links to its spans (overview eval pills and fallback rates): the Traces
page opened from a number counts exactly what the number counts, for the same window."""

from __future__ import annotations

import html as html_lib
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from dashboard import metrics
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
    fallback; three of safety-screen. LabelCheck fails on both decisions of trace 0 and on
    trace 4's, passes on trace 1's."""
    now = timezone.now()
    records = []
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
                        "micro_model.label": "billing",
                        "route.name": "billing",
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
