"""``microlens demo``: realistic micro-model traffic, sent with the OpenTelemetry SDK.

Each trace is one request to a support assistant::

    chat.request                      cohort attributes: user.tier, language, ...
    ├── semantic-cache.lookup         cache.hit (8 %: the answer comes from the cache)
    ├── intent-mini                   the micro model: label, confidence, route
    ├── retrieve-docs                 RETRIEVER with retrieval.documents.N.document.*
    ├── generate-answer               the cheap model writes the answer
    └── fallback-llm                  in ~15 % of traces: the big model rescues the answer,
                                      its micro_model.label the intent it reads

Micro model, labels, routes, models, cohort values and questions are the seeded data set's
(``dashboard/demo_vocabulary.py``), so both demos name the same things and the demo prices
cover both. The classifier is worse on some cohorts (Japanese, the oldest prompt version)
and falls back more often when unsure, so the dashboard has something to find. About a
third of the classifier spans carry ``micro_model.expected_label`` (ground truth). Traces
are spread over the last hour so time charts have a shape.

The key: ``--api-key``, else ``MICROLENS_BOOTSTRAP_API_KEY``, else the credentials file
that ``up`` wrote on this home.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dashboard.demo_vocabulary import (
    ANSWER_MODEL,
    BIG_MODELS,
    DOCUMENTS,
    LANGUAGES,
    MICRO_MODELS,
    PROMPT_VERSIONS,
    QUESTIONS,
    RESOURCE,
    TASK_TYPES,
    TIERS,
)

from .credentials import read_credentials

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Tracer

CLASSIFIER = "intent-mini"
CLASSIFIER_MODEL = MICRO_MODELS[CLASSIFIER].version
LABELS = MICRO_MODELS[CLASSIFIER].labels
# How often users really ask about each intent, in LABELS' order.
LABEL_WEIGHTS = (0.3, 0.3, 0.1, 0.2, 0.1)
FALLBACK_MODEL = BIG_MODELS[0]
OLDEST_PROMPT = PROMPT_VERSIONS[0][0]


@dataclass(frozen=True, slots=True)
class DemoResult:
    traces: int
    spans: int
    ok: bool


def _pick(rng: random.Random, weighted: Sequence[tuple[str, float]]) -> str:
    values, weights = zip(*weighted, strict=True)
    return rng.choices(values, weights=weights)[0]


def _tokens(text: str) -> int:
    return max(1, round(len(text.split()) * 1.3))


def _api_key(home: Path, given: str | None) -> str | None:
    return (
        given
        or os.environ.get("MICROLENS_BOOTSTRAP_API_KEY")
        or read_credentials(home).get("api_key")
    )


def _endpoint(home: Path) -> str:
    try:
        state = json.loads((home / "run" / "up.json").read_text())
    except (FileNotFoundError, ValueError):
        return "localhost:4317"
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(state["host"], state["host"])  # noqa: S104
    return f"[{host}]:{state['grpc_port']}" if ":" in host else f"{host}:{state['grpc_port']}"


def record_traces(tracer: Tracer, count: int, rng: random.Random, now_ns: int) -> None:
    """Record ``count`` traces through ``tracer`` with explicit timestamps in the past hour."""
    for _ in range(count):
        _record_trace(tracer, rng, now_ns - rng.randrange(0, 3600 * 10**9))


def _child(tracer: Tracer, ctx: Context, name: str, start: int, ms: float, attrs: dict) -> int:
    span = tracer.start_span(name, context=ctx, start_time=start, attributes=attrs)
    end = start + int(ms * 1e6)
    span.end(end_time=end)
    return end


# The fallback keeps a right label but for FALLBACK_SLIP of them, and corrects a wrong one
# with the language's probability: far better than the classifier on Japanese traffic.
FALLBACK_RESCUE = {"ja": 0.97}
FALLBACK_RESCUE_ELSEWHERE = 0.35
FALLBACK_SLIP = 0.03


def _fallback_label(own: random.Random, truth: str, label: str, language: str) -> str:
    if label == truth:
        slipped = own.random() < FALLBACK_SLIP
        return own.choice([x for x in LABELS if x != truth]) if slipped else label
    rescue = FALLBACK_RESCUE.get(language, FALLBACK_RESCUE_ELSEWHERE)
    return truth if own.random() < rescue else label


def _record_trace(tracer: Tracer, rng: random.Random, t: int) -> None:
    from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

    truth = rng.choices(LABELS, weights=LABEL_WEIGHTS)[0]
    question = rng.choice(QUESTIONS[truth])
    language = _pick(rng, LANGUAGES)
    prompt_version = _pick(rng, PROMPT_VERSIONS)
    # The classifier's blind spots: Japanese traffic and the oldest prompt.
    accuracy = 0.93 - (0.25 if language == "ja" else 0.0)
    accuracy -= 0.08 if prompt_version == OLDEST_PROMPT else 0.0
    correct = rng.random() < accuracy
    label = truth if correct else rng.choice([x for x in LABELS if x != truth])
    confidence = rng.uniform(0.8, 0.99) if correct else rng.uniform(0.35, 0.75)
    route = label  # a decision's route is named after its label
    cache_hit = rng.random() < 0.08
    fallback = not cache_hit and rng.random() < (0.45 if confidence < 0.6 else 0.14)
    answer = rng.choice(DOCUMENTS[truth])

    root = tracer.start_span(
        "chat.request",
        kind=SpanKind.SERVER,
        start_time=t,
        attributes={
            "user.tier": _pick(rng, TIERS),
            "language": language,
            "prompt.version": prompt_version,
            "task.type": _pick(rng, TASK_TYPES),
            "openinference.span.kind": "CHAIN",
            "input.value": question,
        },
    )
    ctx = set_span_in_context(root)
    cursor = _child(
        tracer,
        ctx,
        "semantic-cache.lookup",
        t + 200_000,
        rng.uniform(1, 4),
        {"cache.hit": cache_hit, "openinference.span.kind": "CHAIN"},
    )
    if not cache_hit:
        classifier = {
            "openinference.span.kind": "LLM",
            "micro_model.name": CLASSIFIER,
            "micro_model.label": label,
            "micro_model.confidence": round(confidence, 3),
            "route.name": route,
            "llm.model_name": CLASSIFIER_MODEL,
            "llm.provider": "self-hosted",
            "llm.token_count.prompt": _tokens(question) + 12,
            "llm.token_count.completion": 1,
            "input.value": question,
            "output.value": label,
        }
        if rng.random() < 0.33:
            classifier["micro_model.expected_label"] = truth
        cursor = _child(tracer, ctx, CLASSIFIER, cursor, rng.uniform(6, 25), classifier)

        documents = rng.sample(DOCUMENTS[label], k=min(2, len(DOCUMENTS[label])))
        retriever: dict = {"openinference.span.kind": "RETRIEVER", "input.value": question}
        for n, document in enumerate(documents):
            prefix = f"retrieval.documents.{n}.document"
            retriever[f"{prefix}.content"] = document
            retriever[f"{prefix}.id"] = f"kb-{label}-{n}"
            retriever[f"{prefix}.score"] = round(rng.uniform(0.55, 0.95), 3)
        cursor = _child(tracer, ctx, "retrieve-docs", cursor, rng.uniform(15, 60), retriever)

        prompt = f"{question}\n\nContext:\n" + "\n".join(documents)
        generation: dict[str, Any] = {
            "openinference.span.kind": "LLM",
            "llm.model_name": ANSWER_MODEL,
            "llm.provider": "self-hosted",
            "route.name": route,
            "llm.token_count.prompt": _tokens(prompt) + 40,
            "llm.token_count.completion": _tokens(answer) + rng.randrange(5, 40),
            "input.value": prompt,
            "output.value": answer,
        }
        generator = tracer.start_span(
            "generate-answer", context=ctx, start_time=cursor, attributes=generation
        )
        if rng.random() < 0.02:
            generator.set_status(Status(StatusCode.ERROR, "upstream timeout"))
        cursor += int(rng.uniform(250, 900) * 1e6)
        generator.end(end_time=cursor)
        if fallback:
            rescue = {
                **generation,
                "llm.model_name": FALLBACK_MODEL,
                "llm.provider": "openai",
                "route.fallback": True,
                # The fallback's answer in the classifier's label space (routing advice's
                # accuracy gap), drawn apart from ``rng``: the traffic stays the same.
                "micro_model.label": _fallback_label(random.Random(t), truth, label, language),
                "llm.token_count.prompt": _tokens(prompt) + 120,
                "llm.token_count.completion": _tokens(answer) + rng.randrange(30, 120),
            }
            cursor = _child(tracer, ctx, "fallback-llm", cursor, rng.uniform(900, 2600), rescue)
    root.set_attribute("output.value", answer)
    root.end(end_time=cursor + 300_000)


def send_demo_traffic(endpoint: str, api_key: str, traces: int, seed: int | None) -> DemoResult:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    captured = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({**RESOURCE, "service.version": "1.8.2"}))
    provider.add_span_processor(SimpleSpanProcessor(captured))
    record_traces(
        provider.get_tracer("microlens.demo"), traces, random.Random(seed), time.time_ns()
    )
    provider.shutdown()
    spans = captured.get_finished_spans()

    exporter = OTLPSpanExporter(
        endpoint=endpoint,
        insecure=True,
        headers={"authorization": f"Bearer {api_key}"},
        timeout=15,
    )
    ok = True
    try:
        # The SDK's usual batch size; each batch is one Export call, stored in one commit.
        for start in range(0, len(spans), 512):
            if exporter.export(spans[start : start + 512]) != SpanExportResult.SUCCESS:
                ok = False
                break
    finally:
        exporter.shutdown()
    return DemoResult(traces=traces, spans=len(spans), ok=ok)


def run_demo(
    home: Path,
    *,
    endpoint: str | None,
    traces: int,
    seed: int | None,
    api_key: str | None = None,
) -> int:
    api_key = _api_key(home, api_key)
    if not api_key:
        print(
            "microlens demo: no API key: pass --api-key, or start `microlens up` on "
            f"this home first ({home})"
        )
        return 2
    target = endpoint or _endpoint(home)
    result = send_demo_traffic(target, api_key, traces, seed)
    if not result.ok:
        print(f"microlens demo: the receiver at {target} refused the traces (see above)")
        return 1
    print(f"sent {result.traces} traces ({result.spans} spans) to {target}")
    return 0
