"""Golden tests: payloads the real instrumentation packages sent -> canonical fields.

Each ``tests/fixtures/instrumentations/<name>.pb`` is the exact OTLP/HTTP body the SDK's
exporter posted while that instrumentation traced the same app (README.md there says how
and with which versions). The app asked a fake OpenAI-compatible server to embed
EMBEDDING_INPUT, then, inside an ``intent-router`` span carrying ``micro_model.name`` and
``route.name``, to classify SYSTEM_PROMPT + USER_MESSAGE; the server answered "billing"
with 31 prompt and 1 completion tokens (the embedding: 4 prompt tokens).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tracestore.contracts import SpanRecord
from tracestore.decode import decode_request
from tracestore.models import Span, Trace
from tracestore.services import create_project, store_spans

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "instrumentations"

SYSTEM_PROMPT = "classify intent: answer with one word, billing, technical, account or other"
USER_MESSAGE = "I was charged twice for my subscription this month."
PROMPT = f"{SYSTEM_PROMPT}\n{USER_MESSAGE}"
EMBEDDING_INPUT = "charged twice subscription"
# traceAI 0.1.10 puts Python's repr of the embedding response in output.value.
TRACEAI_EMBEDDING_OUTPUT = (
    "{'data': [{'embedding': [0.0123, -0.0456, 0.0789, 0.1011, -0.1213, 0.1415], "
    "'index': 0, 'object': 'embedding'}], 'model': 'text-embedding-3-small', "
    "'object': 'list', 'usage': {'prompt_tokens': 4, 'total_tokens': 4}}"
)

CANONICAL = (
    "span_kind",
    "model",
    "provider",
    "prompt_tokens",
    "completion_tokens",
    "input_text",
    "output_text",
)
CHAT = ("LLM", "intent-mini", "openai", 31, 1, PROMPT, "billing")
EMBEDDING = ("EMBEDDING", "text-embedding-3-small", "openai", 4, None, EMBEDDING_INPUT, None)


@dataclass(frozen=True)
class Recording:
    scope: str
    chat_span: str
    chat: tuple
    embedding_span: str | None
    embedding: tuple | None


RECORDINGS = {
    "openinference": Recording(
        "openinference.instrumentation.openai",
        "ChatCompletion",
        CHAT,
        "CreateEmbeddings",
        EMBEDDING,
    ),
    # Latest experimental GenAI conventions: messages as JSON strings on the span. The
    # embedding span records no input content.
    "otel_genai_latest": Recording(
        "opentelemetry.util.genai.handler",
        "chat intent-mini",
        CHAT,
        "embeddings text-embedding-3-small",
        (*EMBEDDING[:5], None, None),
    ),
    # gen_ai.system; content goes to OTel log events, never to the span, and this release
    # does not trace embeddings.
    "otel_genai_legacy": Recording(
        "opentelemetry.instrumentation.openai_v2",
        "chat intent-mini",
        (*CHAT[:5], None, None),
        None,
        None,
    ),
    "openllmetry": Recording(
        "opentelemetry.instrumentation.openai.v1",
        "openai.chat",
        CHAT,
        "openai.embeddings",
        EMBEDDING,
    ),
    # gen_ai.system "OpenAI", llm.request.type, gen_ai.prompt.N, gen_ai.usage.prompt_tokens
    "openllmetry_legacy": Recording(
        "opentelemetry.instrumentation.openai.v1",
        "openai.chat",
        CHAT,
        "openai.embeddings",
        EMBEDDING,
    ),
    # llm.vendor, llm.request.type, llm.request/response.model, llm.prompts.N, llm.usage.*
    "openllmetry_2024": Recording(
        "opentelemetry.instrumentation.openai.v1",
        "openai.chat",
        CHAT,
        "openai.embeddings",
        EMBEDDING,
    ),
    # gen_ai.span.kind, gen_ai.input.messages.N.message.content
    "traceai": Recording(
        "traceai_openai",
        "ChatCompletion",
        CHAT,
        "CreateEmbeddingResponse",
        (*EMBEDDING[:6], TRACEAI_EMBEDDING_OUTPUT),
    ),
    # fi.span.kind, llm.input_messages.N, input.value as a JSON list of messages
    "traceai_legacy": Recording(
        "traceai_openai", "ChatCompletion", CHAT, "CreateEmbeddingResponse", EMBEDDING
    ),
}


def _decode(name: str) -> list[SpanRecord]:
    request = ExportTraceServiceRequest.FromString((FIXTURES / f"{name}.pb").read_bytes())
    result = decode_request(request)
    assert (result.rejected, result.truncated_values, result.dropped_attributes) == (0, 0, 0)
    return result.records


def _by_name(records: list[SpanRecord]) -> dict[str, SpanRecord]:
    spans = {record.name: record for record in records}
    assert len(spans) == len(records)
    return spans


def _canonical(record: SpanRecord | Span) -> tuple:
    return tuple(getattr(record, field) for field in CANONICAL)


def test_every_recorded_payload_has_a_golden_test() -> None:
    assert sorted(path.stem for path in FIXTURES.glob("*.pb")) == sorted(RECORDINGS)
    assert sorted(
        path.name.removesuffix(".meta.json") for path in FIXTURES.glob("*.meta.json")
    ) == (sorted(RECORDINGS))


@pytest.mark.parametrize("name", RECORDINGS)
def test_instrumented_llm_calls_normalise_to_canonical_fields(name: str) -> None:
    recording = RECORDINGS[name]
    spans = _by_name(_decode(name))

    chat = spans[recording.chat_span]
    assert chat.scope_name == recording.scope
    assert _canonical(chat) == recording.chat
    assert (chat.micro_model, chat.route, chat.label) == (None, None, None)
    if recording.embedding_span is None:
        assert len(spans) == 3
    else:
        assert len(spans) == 4
        assert _canonical(spans[recording.embedding_span]) == recording.embedding


@pytest.mark.parametrize("name", RECORDINGS)
def test_the_apps_own_spans_carry_the_micro_model_decision(name: str) -> None:
    recording = RECORDINGS[name]
    spans = _by_name(_decode(name))
    root, router, chat = spans["POST /support"], spans["intent-router"], spans[recording.chat_span]

    assert (router.micro_model, router.model, router.route, router.label) == (
        "intent-mini",
        "intent-mini",
        "billing",
        "billing",
    )
    assert (router.span_kind, router.provider, router.prompt_tokens) == (None, None, None)
    assert chat.parent_span_id == router.span_id
    assert router.parent_span_id == root.span_id
    assert root.parent_span_id is None
    assert {span.trace_id for span in spans.values()} == {root.trace_id}
    assert {span.service_name for span in spans.values()} == {"support-bot"}
    assert root.cohort == {"user.tier": "pro", "language": "en"}
    # cohort attributes stay on the span that set them; the trace rollup gathers them
    assert chat.cohort == {}
    if recording.embedding_span is not None:
        assert spans[recording.embedding_span].parent_span_id == root.span_id


@pytest.mark.django_db
@pytest.mark.parametrize("name", RECORDINGS)
def test_recorded_traces_store_with_their_rollup(name: str) -> None:
    recording = RECORDINGS[name]
    records = _decode(name)
    project_id = create_project(name).id

    result = store_spans(project_id, records)

    assert (result.accepted, result.inserted, result.duplicates, result.traces) == (
        len(records),
        len(records),
        0,
        1,
    )
    stored = Span.objects.get(project_id=project_id, name=recording.chat_span)
    assert _canonical(stored) == recording.chat
    rollup = Trace.objects.get(project_id=project_id)
    embedded = recording.embedding is not None
    assert rollup.root_name == "POST /support"
    assert rollup.span_count == len(records)
    assert sorted(rollup.models_used) == (
        ["intent-mini", "text-embedding-3-small"] if embedded else ["intent-mini"]
    )
    assert rollup.micro_models == ["intent-mini"]
    assert rollup.routes == ["billing"]
    assert (rollup.prompt_tokens, rollup.completion_tokens) == ((35, 1) if embedded else (31, 1))
    assert rollup.cohort == {"user.tier": "pro", "language": "en"}
