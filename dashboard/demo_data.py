"""A realistic micro-model data set at scale, for demos and the dashboard benchmark.

Traces are generated as tracestore ``SpanRecord``s (already normalised: no OTLP encoding
to pay for) and written with ``store_spans`` -- the same COPY path the receivers use, so
the rollups the data lands in are the ones real traffic builds. About 5 spans per trace:
the request root (carrying the cohort), one micro-model decision, a retriever or tool
span, the answer LLM call and, when the micro model is not confident enough, a fallback
call to a large model.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

from tracestore.contracts import SpanRecord
from tracestore.services import store_spans

from .models import ModelPrice

MICRO_MODELS = {
    # name: (model version, routes/labels, base fallback probability, median latency ms)
    "intent-mini": ("intent-mini-v2", ("billing", "tech", "sales", "account", "other"), 0.08, 25),
    "safety-screen": ("safety-screen-v5", ("allow", "review", "block"), 0.03, 12),
    "router-tiny": ("router-tiny-v1", ("faq", "agent", "search", "handoff"), 0.12, 18),
    "reranker-small": ("reranker-small-v3", ("top1", "top3", "none"), 0.05, 40),
    "lang-detect": ("lang-detect-v7", ("en", "de", "fr", "es", "ja"), 0.02, 6),
}
TIERS = (("free", 0.55), ("pro", 0.3), ("enterprise", 0.15))
LANGUAGES = (("en", 0.5), ("de", 0.15), ("fr", 0.12), ("es", 0.13), ("ja", 0.1))
PROMPTS = (("v3", 0.6), ("v4", 0.4))
TASKS = (("support", 0.6), ("sales", 0.25), ("search", 0.15))
# Harder cohorts escalate more: the pattern the dashboard should make visible.
FALLBACK_BOOST = {"ja": 3.0, "de": 1.6, "free": 1.3, "v4": 0.7}
BIG_MODELS = ("gpt-large", "claude-big")
ANSWER_MODEL = "gpt-mini"


# Demo prices (USD per million input / output tokens), created when the table has none
# for the model, so demo traces have costs.
DEMO_PRICES = {
    "gpt-large": (2.50, 10.00),
    "claude-big": (3.00, 15.00),
    "gpt-mini": (0.15, 0.60),
    "*-mini-v*": (0.02, 0.02),
    "*-v[0-9]": (0.01, 0.01),
}


def ensure_demo_prices() -> int:
    """Add the demo prices that are missing (from 2020-01-01); returns how many."""
    created = 0
    for pattern, (price_in, price_out) in DEMO_PRICES.items():
        _, new = ModelPrice.objects.get_or_create(
            model_pattern=pattern,
            effective_from=date(2020, 1, 1),
            defaults={"input_per_million": price_in, "output_per_million": price_out},
        )
        created += new
    return created


@dataclass(frozen=True, slots=True)
class SeedResult:
    spans: int
    traces: int
    seconds: float


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    roll, acc = rng.random(), 0.0
    for value, weight in weighted:
        acc += weight
        if roll < acc:
            return value
    return weighted[-1][0]


def _trace(rng: random.Random, start_ns: int, span_counter: Iterator[int]) -> list[SpanRecord]:
    trace_id = rng.getrandbits(128).to_bytes(16, "big")

    def sid() -> bytes:
        return next(span_counter).to_bytes(8, "big")

    cohort = {
        "user.tier": _pick(rng, TIERS),
        "language": _pick(rng, LANGUAGES),
        "prompt.version": _pick(rng, PROMPTS),
        "task.type": _pick(rng, TASKS),
    }
    name = rng.choice(tuple(MICRO_MODELS))
    version, labels, fallback_p, median_ms = MICRO_MODELS[name]
    for value in cohort.values():
        fallback_p *= FALLBACK_BOOST.get(value, 1.0)
    confidence = min(1.0, max(0.05, rng.betavariate(6, 1.6)))
    fallback = rng.random() < fallback_p * (2.5 if confidence < 0.6 else 0.7)
    expected = rng.choice(labels)
    correct = rng.random() < (0.93 if confidence > 0.7 else 0.7)
    label = expected if correct else rng.choice(labels)
    root_id, ms = sid(), 1_000_000
    decision_ms = rng.lognormvariate(0, 0.5) * median_ms
    answer_ms = rng.lognormvariate(0, 0.4) * 600
    fallback_ms = rng.lognormvariate(0, 0.4) * 1400 if fallback else 0.0
    total_ms = decision_ms + 60 + answer_ms + fallback_ms + 10
    error = rng.random() < 0.01
    spans: list[SpanRecord] = []

    def span(span_id, parent, name_, offset_ms, dur_ms, attrs, **canonical) -> None:
        start = start_ns + int(offset_ms * ms)
        spans.append(
            SpanRecord(
                trace_id=trace_id,
                span_id=span_id,
                parent_span_id=parent,
                name=name_,
                kind=1,
                start_time_ns=start,
                end_time_ns=start + int(dur_ms * ms),
                status_code=canonical.pop("status_code", 0),
                status_message="",
                service_name="support-bot",
                scope_name="demo",
                scope_version="1",
                attributes=attrs,
                resource_attributes=RESOURCE,
                **canonical,
            )
        )

    span(
        root_id,
        None,
        "POST /chat",
        0,
        total_ms,
        dict(cohort),
        cohort=cohort,
        status_code=2 if error else 0,
    )
    decision_attrs = {
        "micro_model.name": name,
        "llm.model_name": version,
        "micro_model.label": label,
        "micro_model.confidence": round(confidence, 3),
        "route.name": label,
    }
    prompt_tokens = rng.randint(20, 120)
    retry = rng.random() < 0.04
    cache = rng.random() < 0.1
    if rng.random() < 0.35:
        decision_attrs["micro_model.expected_label"] = expected
    span(
        sid(),
        root_id,
        name,
        2,
        decision_ms,
        decision_attrs,
        span_kind="LLM",
        model=version,
        micro_model=name,
        prompt_tokens=prompt_tokens,
        completion_tokens=2,
        route=label,
        label=label,
        confidence=round(confidence, 3),
        expected_label=decision_attrs.get("micro_model.expected_label"),
        is_retry=retry,
        cache_hit=cache,
        status_code=2 if error and rng.random() < 0.5 else 0,
    )
    span(
        sid(),
        root_id,
        "retrieve",
        decision_ms + 5,
        50,
        {"openinference.span.kind": "RETRIEVER"},
        span_kind="RETRIEVER",
    )
    offset = decision_ms + 60
    if fallback:
        big = rng.choice(BIG_MODELS)
        span(
            sid(),
            root_id,
            "fallback",
            offset,
            fallback_ms,
            {"route.fallback": True},
            span_kind="LLM",
            model=big,
            prompt_tokens=rng.randint(600, 2400),
            completion_tokens=rng.randint(80, 400),
            is_fallback=True,
        )
        offset += fallback_ms
    span(
        sid(),
        root_id,
        "answer",
        offset,
        answer_ms,
        {"openinference.span.kind": "LLM"},
        span_kind="LLM",
        model=ANSWER_MODEL,
        prompt_tokens=rng.randint(300, 1500),
        completion_tokens=rng.randint(40, 300),
    )
    return spans


RESOURCE = {"service.name": "support-bot", "deployment.environment": "demo"}


def seed_demo_data(
    project_id: int, *, spans: int, days: float, seed: int = 7, end_ns: int | None = None
) -> SeedResult:
    """About ``spans`` spans (whole traces) spread evenly over the last ``days`` days,
    written in batches of about 5000 spans in time order (as live traffic would be)."""
    rng = random.Random(seed)
    end_ns = end_ns or time.time_ns()
    traces = max(1, spans // 5)
    window_ns = int(days * 86400 * 1e9)
    step = window_ns / traces
    begin = end_ns - window_ns
    counter = iter(range(1, 1 << 62))
    started = time.perf_counter()
    batch: list[SpanRecord] = []
    written = 0
    for i in range(traces):
        batch += _trace(rng, begin + int(i * step + rng.random() * step), counter)
        if len(batch) >= 5000:
            written += store_spans(project_id, batch).inserted
            batch = []
    if batch:
        written += store_spans(project_id, batch).inserted
    return SeedResult(spans=written, traces=traces, seconds=time.perf_counter() - started)
