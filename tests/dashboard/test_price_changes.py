"""A model price saved or deleted reaches the figures at the next periodic fold, with no
shell; a trace's cost is its priced part with the unpriced models named beside it."""

from __future__ import annotations

import fnmatch
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.utils import timezone

from dashboard import charts, metrics
from dashboard.metrics.pricing import glob_regex
from dashboard.metrics.refresh import fold_changes
from dashboard.models import ModelPrice, PriceChange
from dashboard.tasks import refresh_metrics
from dashboard.templatetags.dashboard_format import usd
from tests.builders import TraceBuilder
from tracestore.contracts import ProjectRef
from tracestore.services import store_spans

pytestmark = pytest.mark.django_db

INTENT = "intent-mini"  # the span's model: micro_model.name wins over llm.model_name


@pytest.fixture
def admin_client() -> Client:
    user = get_user_model().objects.create_superuser("root", password="pw-for-tests-1")
    client = Client()
    client.force_login(user)
    return client


def _hour(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _store_trace(
    project: ProjectRef,
    start: datetime,
    *,
    model: str = INTENT,
    prompt: int = 41,
    completion: int = 3,
    fallback_model: str | None = None,
    label_only_screen: bool = False,
) -> str:
    trace = TraceBuilder(start_ns=int(start.timestamp() * 1e9))
    root = trace.span("POST /chat", duration_ms=900, attrs={"user.tier": "pro"})
    trace.span(
        "intent",
        parent=root,
        offset_ms=5,
        duration_ms=30,
        attrs={
            "micro_model.name": model,
            "llm.model_name": "v2",
            "micro_model.label": "billing",
            "route.name": "billing",
            "llm.token_count.prompt": prompt,
            "llm.token_count.completion": completion,
        },
    )
    if label_only_screen:
        # A micro model that reports only its decision: no tokens, nothing to price.
        trace.span(
            "screen",
            parent=root,
            offset_ms=2,
            duration_ms=3,
            attrs={"micro_model.name": "safety-screen", "micro_model.label": "safe"},
        )
    if fallback_model:
        trace.span(
            "fallback",
            parent=root,
            offset_ms=60,
            duration_ms=700,
            attrs={
                "gen_ai.request.model": fallback_model,
                "gen_ai.usage.input_tokens": 800,
                "gen_ai.usage.output_tokens": 120,
                "route.fallback": True,
            },
        )
    store_spans(project.id, trace.records())
    return trace.trace_hex


def _cost(project: ProjectRef, start: datetime, end: datetime) -> metrics.MetricResult:
    return metrics.compute("cost-per-trace", metrics.Filters((project.id,), start, end))


def _price_notes(result: metrics.MetricResult) -> list[str]:
    return [note for note in result.notes if note.startswith("no price for")]


def test_a_price_added_then_deleted_in_the_admin_reaches_the_figures_at_the_next_fold(
    admin_client: Client, project: ProjectRef
) -> None:
    now = timezone.now()
    # One trace in a whole hour of the window, one in the partial hour it ends in.
    early = _hour(now) - timedelta(hours=3) + timedelta(minutes=10)
    late = _hour(now) - timedelta(minutes=10)
    _store_trace(project, early, prompt=41, completion=3)
    _store_trace(project, late, prompt=1000, completion=10)
    start, end = _hour(early), late + timedelta(seconds=1)
    refresh_metrics()

    before = _cost(project, start, end).rows[0]
    assert (before["traces"], before["uncosted_traces"], before["mean_usd"]) == (2, 2, None)
    assert before["unpriced_models"] == [INTENT]
    assert _price_notes(_cost(project, start, end)) == [
        f"no price for: {INTENT} (add them under Admin → Model prices; traces using them"
        " count apart, with the cost of their priced spans)"
    ]

    response = admin_client.post(
        "/admin/dashboard/modelprice/add/",
        {
            "model_pattern": "intent-mini*",
            "input_per_million": "1.0",
            "output_per_million": "2.0",
            "effective_from": early.date().isoformat(),
        },
        follow=True,
    )
    assert "costs are recomputed" in response.content.decode()
    assert PriceChange.objects.count() == 1
    refresh_metrics()  # what beat runs every minute

    after = _cost(project, start, end)
    row = after.rows[0]
    expected = [(41 * 1.0 + 3 * 2.0) / 1e6, (1000 * 1.0 + 10 * 2.0) / 1e6]
    assert (row["traces"], row["uncosted_traces"], row["unpriced_models"]) == (2, 0, [])
    assert row["mean_usd"] == pytest.approx(sum(expected) / 2)
    assert row["mean_usd_per_1000_traces"] == pytest.approx(sum(expected) / 2 * 1000)
    assert _price_notes(after) == []
    assert PriceChange.objects.count() == 0
    # Whole hours (rollups) and the partial hour (facts) agree on the new price.
    whole = _cost(project, start, _hour(now) - timedelta(hours=1)).rows[0]
    assert (whole["traces"], whole["mean_usd"]) == (1, pytest.approx(expected[0]))

    price = ModelPrice.objects.get()
    deleted = admin_client.post(
        f"/admin/dashboard/modelprice/{price.pk}/delete/", {"post": "yes"}, follow=True
    )
    assert "Within a minute, the traces it priced show their cost without it" in (
        deleted.content.decode()
    )
    assert not ModelPrice.objects.exists()
    refresh_metrics()

    gone = _cost(project, start, end)
    assert (gone.rows[0]["uncosted_traces"], gone.rows[0]["unpriced_models"]) == (2, [INTENT])
    assert _price_notes(gone) == [
        f"no price for: {INTENT} (add them under Admin → Model prices; traces using them"
        " count apart, with the cost of their priced spans)"
    ]


def test_only_traces_using_a_matching_model_from_its_day_on_are_folded_again(
    project: ProjectRef,
) -> None:
    day = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
    _store_trace(project, day)
    _store_trace(project, day, model="router-small")
    _store_trace(project, day - timedelta(days=3))
    clock = timezone.now() + timedelta(hours=1)
    fold_changes(now=clock)

    ModelPrice.objects.create(
        model_pattern="intent-mini*",
        input_per_million=Decimal("1"),
        output_per_million=Decimal("2"),
        effective_from=(day - timedelta(days=1)).date(),
    )
    result = fold_changes(now=clock + timedelta(hours=1))

    # The trace of another model, and the one from before the price's day, stay as folded.
    assert (result.traces, result.hours, result.days) == (1, 1, 1)
    old = _cost(project, day - timedelta(days=3, hours=1), day - timedelta(days=2)).rows[0]
    assert old["uncosted_traces"] == 1
    row = _cost(project, day - timedelta(hours=1), day + timedelta(hours=1)).rows
    assert [(r["traces"], r["uncosted_traces"], r["unpriced_models"]) for r in row] == [
        (2, 1, ["router-small"])
    ]


def test_an_edited_price_re_prices_under_the_old_pattern_too(project: ProjectRef) -> None:
    day = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
    _store_trace(project, day)
    price = ModelPrice.objects.create(
        model_pattern=INTENT,
        input_per_million=Decimal("1"),
        output_per_million=Decimal("2"),
        effective_from=day.date(),
    )
    # Folds an hour apart: the second re-reads no trace as changed by ingest.
    clock = timezone.now() + timedelta(hours=1)
    fold_changes(now=clock)
    window = (day - timedelta(hours=1), day + timedelta(hours=1))
    assert _cost(project, *window).rows[0]["uncosted_traces"] == 0

    price.model_pattern = "other-model"
    price.save()
    assert fold_changes(now=clock + timedelta(hours=1)).traces == 1

    row = _cost(project, *window).rows[0]
    assert (row["uncosted_traces"], row["unpriced_models"]) == (1, [INTENT])


def test_the_note_never_names_a_model_priced_for_the_whole_window_before_the_fold(
    project: ProjectRef,
) -> None:
    day = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
    _store_trace(project, day)
    fold_changes()
    window = (day - timedelta(hours=1), day + timedelta(hours=1))
    ModelPrice.objects.create(
        model_pattern="intent-*",
        input_per_million=Decimal("1"),
        output_per_million=Decimal("2"),
        effective_from=day.date(),
    )

    pending = _cost(project, *window)
    assert _price_notes(pending) == []
    assert pending.rows[0]["unpriced_models"] == []
    assert (
        "a model price changed: costs and the unpriced models are being updated (within a minute)"
    ) in pending.notes


@pytest.mark.parametrize(
    "pattern",
    ["intent-mini*", "gpt-4o", "gpt-4o?", "a.b+c(d)", "x[12]*", "x[!3]", "x[", "[]]z", "a_b%"],
)
def test_the_price_pattern_query_matches_every_name_fnmatch_does(pattern: str) -> None:
    names = [
        "intent-mini",
        "intent-mini-v2",
        "gpt-4o",
        "gpt-4o1",
        "gpt-4o-mini",
        "a.b+c(d)",
        "axb+c(d)",
        "x1",
        "x2-large",
        "x3",
        "x[",
        "]z",
        "a_b%",
        "aXb%",
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n FROM unnest(%s::text[]) AS n WHERE n ~ %s",
            [names, glob_regex(pattern)],
        )
        matched = {row[0] for row in cursor.fetchall()}
    exact = {n for n in names if fnmatch.fnmatchcase(n, pattern)}
    # A set "[...]" may match more (more traces folded again, never fewer); nothing else.
    assert matched >= exact if "[" in pattern else matched == exact


def test_a_partly_priced_trace_shows_its_priced_part_and_names_what_is_unpriced(
    project: ProjectRef, member_client: Client
) -> None:
    ModelPrice.objects.create(
        model_pattern="intent-mini*",
        input_per_million=Decimal("0.10"),
        output_per_million=Decimal("0.40"),
        effective_from=datetime(2026, 1, 1).date(),
    )
    start = timezone.now() - timedelta(minutes=30)
    trace_hex = _store_trace(project, start, fallback_model="mystery-xl", label_only_screen=True)
    _store_trace(project, start + timedelta(seconds=1), label_only_screen=True)
    # Nothing in this one is priced: it says so rather than "$0".
    unpriced_hex = _store_trace(project, start + timedelta(seconds=2), model="ranker-nano")
    fold_changes()
    priced = (41 * 0.10 + 3 * 0.40) / 1e6  # $0.0000053

    html = member_client.get(f"/traces/{trace_hex}/").content.decode()
    assert "unknown" not in html
    assert "$0.00000530 <span" in html
    assert '<span class="unpriced">+ no price: mystery-xl</span>' in html
    assert "safety-screen" not in html.split("<h2>Cost</h2>")[1].split("</table>")[0]

    other = member_client.get(f"/traces/{unpriced_hex}/").content.decode()
    assert '<span class="unpriced">no price: ranker-nano</span>' in other
    assert "$0<" not in other

    window = {
        "start": (start - timedelta(minutes=5)).isoformat(),
        "end": timezone.now().isoformat(),
    }
    listing = member_client.get("/", window).content.decode()
    assert listing.count('<span class="unpriced">+ no price: mystery-xl</span>') == 1
    assert listing.count("$0.00000530") == 2
    assert listing.count('<span class="unpriced">no price: ranker-nano</span>') == 1

    export = member_client.get("/traces.json", window)
    exported = json.loads(b"".join(export.streaming_content))["traces"]
    assert sorted((t["cost_usd"], tuple(t["unpriced_models"])) for t in exported) == [
        (0.0, ("ranker-nano",)),
        (pytest.approx(priced), ()),
        (pytest.approx(priced), ("mystery-xl",)),
    ]

    api = member_client.get("/api/v1/metrics/cost-per-trace/", window).json()
    row = api["results"][0]
    assert (row["traces"], row["n"], row["uncosted_traces"]) == (3, 1, 2)
    assert row["unpriced_models"] == ["mystery-xl", "ranker-nano"]
    assert row["mean_usd"] == pytest.approx(priced)
    assert row["mean_usd_per_1000_traces"] == pytest.approx(priced * 1000)

    overview = member_client.get("/overview/", window).content.decode()
    assert "Cost per 1,000 traces (mean)" in overview
    assert "$0.00530 <span" in overview
    assert '<span class="unpriced">+ no price: mystery-xl</span>' in overview
    assert '<span class="muted">no price: ranker-nano</span>' in overview
    assert "no price for: mystery-xl, ranker-nano" in overview


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "no price"),
        (0.0, "$0"),
        (0.0000053, "$0.00000530"),
        (0.0000123, "$0.0000123"),
        (0.047, "$0.0470"),
        (1.234, "$1.23"),
        (1234.5, "$1,234.50"),
    ],
)
def test_costs_show_three_significant_digits(value: float | None, text: str) -> None:
    assert usd(value) == text


def test_the_cost_chart_plots_usd_per_1000_traces() -> None:
    rows = [
        {"group": "intent-mini", "n": 4, "mean_usd_per_1000_traces": 0.0053},
        {"group": "ranker-nano", "n": 0, "mean_usd_per_1000_traces": None},
    ]
    rows[0]["p90_usd_per_1000_traces"] = 0.0071
    rows[1]["p90_usd_per_1000_traces"] = None
    figure = charts.cost_figure(rows, "Cost per 1,000 traces by micro model", "micro model")

    assert [(trace["name"], trace["x"], trace["y"]) for trace in figure["data"]] == [
        ("mean", ["intent-mini"], [0.0053]),
        ("p90", ["intent-mini"], [0.0071]),
    ]
    assert figure["layout"]["yaxis"]["title"]["text"] == "USD per 1,000 traces"
