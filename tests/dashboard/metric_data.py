"""Hand-built micro-model traffic for the metric tests, and the reference: every metric
computed straight from the stored span rows (tracestore's public reads), for comparison
with what the rollups answer."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from dashboard.models import ModelPrice
from tests.builders import TraceBuilder
from tracestore.contracts import TraceDetail
from tracestore.queries import get_trace
from tracestore.services import store_spans

# A fixed clock: two days and a bit before "now", so ranges cross day and hour edges.
NOW = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
TIERS = ("free", "pro", "enterprise")
ROUTES = ("billing", "tech", "sales")


@dataclass
class Built:
    trace: TraceBuilder
    batches: list[list]  # span protobufs per batch, in arrival order


def build_trace(
    i: int,
    *,
    start: datetime,
    route: str,
    label: str,
    expected: str | None,
    tier: str,
    fallback: bool,
    unpriced: bool = False,
    retry: bool = False,
    cache_hit: bool = False,
    error: bool = False,
    reported_cost: float | None = None,
    cohort_on_root_only: bool = True,
    latency_ms: float = 30,
) -> Built:
    trace = TraceBuilder(start_ns=int(start.timestamp() * 1e9))
    cohort = {"user.tier": tier, "language": "en" if i % 2 else "de", "prompt.version": "v3"}
    root = trace.span("POST /chat", duration_ms=900, attrs=cohort)
    attrs = {
        "micro_model.name": "intent-mini",
        "llm.model_name": "intent-mini-v2",
        "micro_model.label": label,
        "micro_model.confidence": 0.5 + (i % 10) / 20,
        "route.name": route,
        "llm.token_count.prompt": 40 + i,
        "llm.token_count.completion": 3,
    }
    if not cohort_on_root_only:
        attrs.update(cohort)
    if expected is not None:
        attrs["micro_model.expected_label"] = expected
    if retry:
        attrs["retry.attempt"] = 1
    if cache_hit:
        attrs["cache.hit"] = True
    trace.span("intent", parent=root, offset_ms=5, duration_ms=latency_ms, attrs=attrs, error=error)
    if fallback:
        big = {
            "gen_ai.request.model": "mystery-xl" if unpriced else "gpt-large",
            "gen_ai.usage.input_tokens": 800,
            "gen_ai.usage.output_tokens": 120,
            "route.fallback": True,
        }
        if reported_cost is not None:
            big["llm.cost.total"] = reported_cost
        trace.span("fallback", parent=root, offset_ms=60, duration_ms=700, attrs=big)
    spans = list(trace.spans)
    # Out of order: children first, the root (with the cohort) in a later batch.
    batches = [spans[1:], spans[:1]] if i % 3 else [spans]
    return Built(trace, batches)


def add_prices() -> None:
    ModelPrice.objects.create(
        model_pattern="intent-mini*",
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
    # A later, higher price applies only from its day on.
    ModelPrice.objects.create(
        model_pattern="gpt-large",
        input_per_million=Decimal("5.00"),
        output_per_million=Decimal("20.00"),
        effective_from=(NOW - timedelta(hours=20)).date(),
    )


def traffic(count: int = 60) -> list[Built]:
    built = []
    for i in range(count):
        route = ROUTES[i % 3]
        expected = None if i % 7 == 0 else (ROUTES[(i // 3) % 3] if i % 4 == 0 else route)
        built.append(
            build_trace(
                i,
                start=NOW - timedelta(hours=52) + timedelta(minutes=53 * i),
                route=route,
                label=route,
                expected=expected,
                tier=TIERS[i % 3 if i % 5 else 2],
                fallback=i % 4 == 1,
                unpriced=i == 13,
                retry=i % 6 == 0,
                cache_hit=i % 8 == 0,
                error=i % 11 == 0,
                reported_cost=0.0123 if i == 21 else None,
                cohort_on_root_only=i % 2 == 0,
                latency_ms=5 + (i * 37) % 400,
            )
        )
    return built


def store(project_id: int, built: list[Built], *, batch: int) -> None:
    """Store the ``batch``-th batch of every trace that has one."""
    for b in built:
        if batch < len(b.batches):
            store_spans(project_id, b.trace.records(b.batches[batch]))


# -- the reference: metrics from raw rows -------------------------------------------------


@dataclass
class Decision:
    trace: TraceDetail
    micro_model: str
    route: str
    label: str
    expected: str
    fallback: bool
    retry: bool
    cache_hit: bool
    error: bool
    latency_ms: float


def raw_decisions(project_id: int, built: list[Built]) -> list[Decision]:
    out = []
    for b in built:
        detail = get_trace([project_id], b.trace.trace_hex)
        assert detail is not None
        for span in sorted(detail.spans, key=lambda s: (s.start_time, s.span_id)):
            if span.micro_model:
                out.append(
                    Decision(
                        trace=detail,
                        micro_model=span.micro_model,
                        route=span.route or "",
                        label=span.label or "",
                        expected=span.expected_label or "",
                        fallback=detail.summary.is_fallback or span.is_fallback,
                        retry=span.is_retry,
                        cache_hit=span.cache_hit,
                        error=span.status_code == 2,
                        latency_ms=span.duration_ms,
                    )
                )
    return out


def raw_trace_cost(detail: TraceDetail) -> float | None:
    """Cost from the raw spans, with the prices the test set (written out by hand)."""
    total = 0.0
    for span in detail.spans:
        if not span.model or not (span.prompt_tokens or span.completion_tokens):
            continue
        if "llm.cost.total" in span.attributes:
            total += span.attributes["llm.cost.total"]
            continue
        if span.model.startswith("intent-mini"):
            price_in, price_out = 0.10, 0.40
        elif span.model == "gpt-large":
            later = span.start_time.date() >= (NOW - timedelta(hours=20)).date()
            price_in, price_out = (5.0, 20.0) if later else (2.5, 10.0)
        else:
            return None
        total += (
            (span.prompt_tokens or 0) * price_in + (span.completion_tokens or 0) * price_out
        ) / 1e6
    return total


def nearest_rank(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p * len(ordered))) - 1]


def by(decisions: list[Decision], key) -> dict:
    groups = defaultdict(list)
    for d in decisions:
        groups[key(d)].append(d)
    return groups
