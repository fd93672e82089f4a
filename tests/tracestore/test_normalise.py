"""Semantic conventions -> canonical fields, one convention per case."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tests.builders import micro_model_trace
from tracestore.contracts import SpanRecord
from tracestore.decode import decode_request
from tracestore.normalise import CANONICAL_FIELDS, canonical_fields, checked_canonical_values


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        pytest.param(
            {
                "openinference.span.kind": "LLM",
                "llm.model_name": "gpt-4o-mini",
                "llm.provider": "openai",
                "llm.token_count.prompt": 12,
                "llm.token_count.completion": 7,
                "llm.input_messages.0.message.role": "user",
                "llm.input_messages.0.message.content": "hi",
                "llm.input_messages.1.message.content": "there",
                "llm.output_messages.0.message.content": "hello",
            },
            {
                "span_kind": "LLM",
                "model": "gpt-4o-mini",
                "provider": "openai",
                "prompt_tokens": 12,
                "completion_tokens": 7,
                "input_text": "hi\nthere",
                "output_text": "hello",
            },
            id="openinference",
        ),
        pytest.param(
            {
                "gen_ai.system": "anthropic",
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "claude-x",
                "gen_ai.response.model": "claude-x-2025",
                "gen_ai.usage.prompt_tokens": 30,
                "gen_ai.usage.completion_tokens": 4,
                "gen_ai.prompt": "What is 2+2?",
                "gen_ai.completion": "4",
            },
            {
                "span_kind": "LLM",
                "model": "claude-x-2025",
                "provider": "anthropic",
                "prompt_tokens": 30,
                "completion_tokens": 4,
                "input_text": "What is 2+2?",
                "output_text": "4",
            },
            id="genai-old-names",
        ),
        pytest.param(
            {
                "gen_ai.provider.name": "openai",
                "gen_ai.operation.name": "embeddings",
                "gen_ai.request.model": "text-embed",
                "gen_ai.usage.input_tokens": 9,
                "gen_ai.usage.output_tokens": 0,
                "gen_ai.input.messages": json.dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": "embed me"}]}]
                ),
                "gen_ai.output.messages": json.dumps(
                    [{"role": "assistant", "parts": [{"type": "text", "content": "ok"}]}]
                ),
            },
            {
                "span_kind": "EMBEDDING",
                "model": "text-embed",
                "provider": "openai",
                "prompt_tokens": 9,
                "completion_tokens": 0,
                "input_text": "embed me",
                "output_text": "ok",
            },
            id="genai-current-json-string-messages",
        ),
        pytest.param(
            {
                "traceloop.span.kind": "workflow",
                "gen_ai.system": "openai",
                "llm.usage.prompt_tokens": 100,
                "llm.usage.completion_tokens": 20,
                "gen_ai.prompt.0.role": "user",
                "gen_ai.prompt.0.content": "summarise",
                "gen_ai.completion.0.content": "summary",
            },
            {
                "span_kind": "CHAIN",
                "provider": "openai",
                "prompt_tokens": 100,
                "completion_tokens": 20,
                "input_text": "summarise",
                "output_text": "summary",
            },
            id="openllmetry",
        ),
        pytest.param(
            {"fi.span.kind": "retriever", "input.value": "q"},
            {"span_kind": "RETRIEVER", "input_text": "q"},
            id="traceai-fi-kind",
        ),
        pytest.param(
            {"gen_ai.span.kind": "AGENT"},
            {"span_kind": "AGENT"},
            id="traceai-gen-ai-span-kind",
        ),
    ],
)
def test_conventions_map_to_canonical_fields(attrs: dict, expected: dict) -> None:
    fields = canonical_fields(attrs, {})
    assert {key: fields[key] for key in expected} == expected


def test_micro_model_attributes_win_and_flags_parse() -> None:
    fields = canonical_fields(
        {
            "micro_model.name": "router-small",
            "llm.model_name": "distilbert-router",
            "micro_model.label": "billing",
            "micro_model.confidence": "0.82",
            "micro_model.expected_label": "refunds",
            "route.name": "billing",
            "route.fallback": "true",
            "retry.attempt": 2,
            "cache.hit": True,
            "route.mirrored": True,
            "route.mirror_of": "router-large",
        },
        {"language": "de", "user.tier": "free"},
    )
    assert fields["model"] == "router-small"
    assert fields["micro_model"] == "router-small"
    assert (fields["label"], fields["expected_label"], fields["route"]) == (
        "billing",
        "refunds",
        "billing",
    )
    assert fields["confidence"] == 0.82
    assert (fields["is_fallback"], fields["is_retry"], fields["cache_hit"]) == (True, True, True)
    assert (fields["is_mirrored"], fields["mirror_of"]) == (True, "router-large")
    assert fields["cohort"] == {"language": "de", "user.tier": "free"}


@pytest.mark.parametrize("confidence", ["NaN", "Infinity", "high", True])
def test_an_unusable_confidence_is_absent_not_an_error(confidence: object) -> None:
    assert canonical_fields({"micro_model.confidence": confidence}, {})["confidence"] is None


_POISON = [
    "Infinity",  # a double infinity, as the decoders keep it
    "-Infinity",
    "NaN",
    "1e400",
    "9" * 400,
    10**400,  # an integer no double holds
    "many",
    True,
    [1, 2],
    {"n": 1},
]


_TOO_BIG_FOR_INT4 = [2**31, -(2**31) - 1, 2**63 - 1, -(2**63), "3e9"]


@pytest.mark.parametrize(
    ("key", "field", "value"),
    [
        *[("llm.token_count.prompt", "prompt_tokens", v) for v in _POISON + _TOO_BIG_FOR_INT4],
        *[("gen_ai.usage.output_tokens", "completion_tokens", v) for v in _POISON],
        *[("micro_model.confidence", "confidence", v) for v in _POISON],
    ],
)
def test_a_value_with_no_number_for_its_column_is_null_and_reported(
    key: str, field: str, value: object
) -> None:
    values, unconvertible = checked_canonical_values({key: value, "route.name": "billing"}, {})
    fields = dict(zip(CANONICAL_FIELDS, values, strict=True))
    assert fields[field] is None
    assert fields["route"] == "billing"
    assert unconvertible is True


@pytest.mark.parametrize("value", [*_POISON, 2**63 - 1, -(2**63)])
def test_an_unconvertible_retry_attempt_is_no_retry_and_reported(value: object) -> None:
    values, unconvertible = checked_canonical_values({"retry.attempt": value}, {})
    is_retry = dict(zip(CANONICAL_FIELDS, values, strict=True))["is_retry"]
    # An integer is an attempt number, however large; anything else is no number at all.
    assert (is_retry, unconvertible) == (
        (value > 0, False) if type(value) is int else (False, True)
    )


@pytest.mark.parametrize(
    "attrs",
    [
        {"llm.token_count.prompt": 12, "micro_model.confidence": 0.5, "retry.attempt": "2"},
        {"llm.token_count.prompt": "12", "micro_model.confidence": "0.5"},
        {"retry.attempt": "", "micro_model.confidence": ""},
        {},
    ],
)
def test_ordinary_values_are_not_reported(attrs: dict) -> None:
    assert checked_canonical_values(attrs, {})[1] is False


def test_span_attributes_win_over_resource_for_cohorts() -> None:
    fields = canonical_fields({"language": "en"}, {"language": "de", "task.type": "faq"})
    assert fields["cohort"] == {"language": "en", "task.type": "faq"}


def test_decoded_rows_are_span_record_fields_in_order() -> None:
    names = tuple(f.name for f in dataclasses.fields(SpanRecord))
    assert names[-len(CANONICAL_FIELDS) :] == CANONICAL_FIELDS
    decoded = decode_request(micro_model_trace().request())
    classifier = decoded.records[1]
    assert (classifier.name, classifier.micro_model, classifier.prompt_tokens) == (
        "intent-classifier",
        "intent-mini",
        42,
    )
    assert decoded.records[0].cohort == {
        "user.tier": "enterprise",
        "language": "en",
        "prompt.version": "v3",
        "task.type": "support",
    }
    assert decoded.rows[1] == tuple(getattr(classifier, name) for name in names)
