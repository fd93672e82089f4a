"""Semantic conventions -> microlens' canonical span fields.

OpenInference, OpenTelemetry GenAI (old and current names), OpenLLMetry (traceloop) and
traceAI all say the same things under different keys. The tables below list, per
canonical field, the keys to read, first present wins (DESIGN.md "Span conventions").
Pure functions over the flat attribute dict: no Django, no I/O.

The keys come from payloads recorded with the instrumentation packages themselves
(tests/fixtures/instrumentations/README.md), old releases included: OpenLLMetry's first
names (``llm.vendor``, ``llm.request.type``, ``llm.prompts.N``, ``llm.usage.*``) are still
sent by services nobody has upgraded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from . import span_fields

MODEL_KEYS = (
    "micro_model.name",
    "llm.model_name",
    "gen_ai.response.model",
    "gen_ai.request.model",
    "embedding.model_name",  # OpenInference and traceAI embedding spans
    "llm.response.model",  # OpenLLMetry before gen_ai.*
    "llm.request.model",
)
PROVIDER_KEYS = (
    "llm.provider",
    "gen_ai.provider.name",
    "gen_ai.system",
    "llm.system",
    "llm.vendor",
)
SPAN_KIND_KEYS = (
    "openinference.span.kind",
    "fi.span.kind",
    "gen_ai.span.kind",
    "gen_ai.operation.name",
    "traceloop.span.kind",
    "llm.request.type",  # OpenLLMetry before gen_ai.operation.name: "chat", "embedding"
)
PROMPT_TOKEN_KEYS = (
    "llm.token_count.prompt",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.usage.prompt_tokens",
)
COMPLETION_TOKEN_KEYS = (
    "llm.token_count.completion",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.usage.completion_tokens",
)
INPUT_KEYS = ("input.value", "gen_ai.prompt", "gen_ai.input.messages", "traceloop.entity.input")
OUTPUT_KEYS = (
    "output.value",
    "gen_ai.completion",
    "gen_ai.output.messages",
    "traceloop.entity.output",
)

# Flattened message lists, (prefix, suffix of the text key), tried before the whole-value
# keys: on LLM spans ``input.value`` / ``output.value`` hold the raw request and response
# bodies (OpenInference) or only the first message (traceAI), the lists hold the
# conversation. OpenInference and traceAI < 1.0, traceAI >= 1.0, OpenLLMetry since 2024,
# OpenLLMetry before; embedding inputs last.
INPUT_MESSAGE_LISTS = (
    ("llm.input_messages.", ".message.content"),
    ("gen_ai.input.messages.", ".message.content"),
    ("gen_ai.prompt.", ".content"),
    ("llm.prompts.", ".content"),
    ("embedding.embeddings.", ".embedding.text"),
)
OUTPUT_MESSAGE_LISTS = (
    ("llm.output_messages.", ".message.content"),
    ("gen_ai.output.messages.", ".message.content"),
    ("gen_ai.completion.", ".content"),
    ("llm.completions.", ".content"),
)
# Lists start at 0: one lookup of the first text key per list skips the scan of every key
# on the usual span. Built once, not per span.
_INPUT_PROBES = tuple((f"{p}0{s}", p, s) for p, s in INPUT_MESSAGE_LISTS)
_OUTPUT_PROBES = tuple((f"{p}0{s}", p, s) for p, s in OUTPUT_MESSAGE_LISTS)

# The cohort dimensions a new installation starts with (key, display name); the configured
# ones are the CohortDimension rows (models.py), which ingest reads.
DEFAULT_COHORT_DIMENSIONS = (
    ("user.tier", "User tier"),
    ("language", "Language"),
    ("prompt.version", "Prompt version"),
    ("task.type", "Task type"),
)
DEFAULT_COHORT_DIMENSION_KEYS = tuple(key for key, _ in DEFAULT_COHORT_DIMENSIONS)

# Operation names and framework kinds mapped onto OpenInference span kinds.
_KIND_ALIASES = {
    "chat": "LLM",
    "text_completion": "LLM",
    "completion": "LLM",
    "generate_content": "LLM",
    "llm": "LLM",
    "embeddings": "EMBEDDING",
    "embedding": "EMBEDDING",
    "execute_tool": "TOOL",
    "tool": "TOOL",
    "invoke_agent": "AGENT",
    "create_agent": "AGENT",
    "agent": "AGENT",
    "workflow": "CHAIN",
    "task": "CHAIN",
    "chain": "CHAIN",
    "retriever": "RETRIEVER",
    "retrieval": "RETRIEVER",
    "reranker": "RERANKER",
    "guardrail": "GUARDRAIL",
    "evaluator": "EVALUATOR",
}

_TRUE_STRINGS = {"true", "1", "yes"}


def _first(attrs: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        value = attrs.get(key)
        if value is not None and value != "":
            return value
    return None


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _as_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        # OverflowError: infinities ("Infinity", "1e400") have no integer value.
        return None


_INT4 = 2**31


def _as_count(value: Any) -> int | None:
    """A token count the (32-bit) column can hold; anything else is no count at all."""
    count = _as_int(value)
    return count if count is not None and -_INT4 <= count < _INT4 else None


def _as_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        result = float(value)
    except (TypeError, ValueError, OverflowError):
        # OverflowError: an integer beyond a double's range.
        return None
    return result if result == result and result not in (float("inf"), float("-inf")) else None


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_STRINGS
    if isinstance(value, int | float):
        return value != 0
    return False


def span_kind(attrs: Mapping[str, Any]) -> str | None:
    raw = _first(attrs, SPAN_KIND_KEYS)
    if raw is None:
        return None
    text = str(raw).strip()
    return _KIND_ALIASES.get(text.lower(), text.upper())


def _indexed_messages(attrs: Mapping[str, Any], prefix: str, content_suffix: str) -> str | None:
    """Join ``prefix.N<content_suffix>`` values in index order (OpenInference, OpenLLMetry)."""
    found: list[tuple[int, str]] = []
    plen = len(prefix)
    for key, value in attrs.items():
        if not key.startswith(prefix) or not key.endswith(content_suffix):
            continue
        index = key[plen : len(key) - len(content_suffix)]
        if index.isdigit() and isinstance(value, str):
            found.append((int(index), value))
    if not found:
        return None
    found.sort()
    return "\n".join(text for _, text in found)


def _message_text(value: Any) -> str | None:
    """GenAI ``*.messages`` are JSON strings or structured lists of {role, parts|content};
    ``input.value`` / ``output.value`` may be a JSON request or response body, or a JSON
    string (traceAI's embedding input)."""
    if isinstance(value, str):
        stripped = value.strip()
        if not stripped.startswith(("[", "{", '"')):
            return value
        try:
            value = json.loads(stripped)
        except ValueError:
            return value
        if isinstance(value, str):
            return value
    if isinstance(value, dict):
        value = _body_messages(value)
        if isinstance(value, str):
            return value
    if not isinstance(value, list):
        return _as_text(value)
    texts: list[str] = []
    for message in value:
        if not isinstance(message, dict):
            texts.append(str(message))
            continue
        content = message.get("content", message.get("text"))
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [p.get("text", "") for p in content if isinstance(p, dict) and p.get("text")]
        for part in message.get("parts") or []:
            if isinstance(part, dict) and isinstance(part.get("content"), str):
                texts.append(part["content"])
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
    return "\n".join(t for t in texts if t) or None


def _body_messages(body: dict[str, Any]) -> list[Any] | str:
    """The messages of a chat request or response body, or an embedding request's input."""
    messages = body.get("messages")
    if isinstance(messages, list):
        return messages
    choices = body.get("choices")
    if isinstance(choices, list):
        return [c.get("message") or c for c in choices if isinstance(c, dict)]
    embedded = body.get("input")
    if isinstance(embedded, str):
        return embedded
    if isinstance(embedded, list) and all(isinstance(item, str) for item in embedded):
        return "\n".join(embedded)
    return [body]


def _text(
    attrs: Mapping[str, Any],
    probes: Sequence[tuple[str, str, str]],
    keys: Sequence[str],
    lists: bool = True,
) -> str | None:
    # ``lists=False``: the caller knows no probe key is present.
    if lists:
        for probe, prefix, suffix in probes:
            if probe in attrs:
                text = _indexed_messages(attrs, prefix, suffix)
                if text is not None:
                    return text
    value = _first(attrs, keys)
    return _message_text(value) if value is not None else None


def input_text(attrs: Mapping[str, Any]) -> str | None:
    return _text(attrs, _INPUT_PROBES, INPUT_KEYS)


def output_text(attrs: Mapping[str, Any]) -> str | None:
    return _text(attrs, _OUTPUT_PROBES, OUTPUT_KEYS)


def cohort_values(
    attrs: Mapping[str, Any], resource: Mapping[str, Any], keys: Sequence[str]
) -> dict[str, str]:
    """Cohort attribute values on this span, else on its resource."""
    cohort: dict[str, str] = {}
    for key in keys:
        value = attrs.get(key)
        if value is None:
            value = resource.get(key)
        if value is not None and value != "":
            cohort[key] = value if isinstance(value, str) else _as_text(value) or ""
    return cohort


_SCALAR_KEYS = (
    "retry.attempt",
    "micro_model.name",
    "route.mirror_of",
    "route.name",
    "micro_model.label",
    "micro_model.confidence",
    "micro_model.expected_label",
    "route.fallback",
    "route.retry",
    "cache.hit",
    "route.mirrored",
)
# Every key canonical_fields reads (message lists through their index-0 probe). Most spans
# carry only a few of them, so one C-level set intersection decides which lookups to make.
_KNOWN_KEYS = frozenset(
    (
        *MODEL_KEYS,
        *PROVIDER_KEYS,
        *SPAN_KIND_KEYS,
        *PROMPT_TOKEN_KEYS,
        *COMPLETION_TOKEN_KEYS,
        *INPUT_KEYS,
        *OUTPUT_KEYS,
        *(probe for probe, _, _ in _INPUT_PROBES + _OUTPUT_PROBES),
        *_SCALAR_KEYS,
    )
)
_MODEL_SET = frozenset(MODEL_KEYS)
_PROVIDER_SET = frozenset(PROVIDER_KEYS)
_SPAN_KIND_SET = frozenset(SPAN_KIND_KEYS)
_PROMPT_TOKEN_SET = frozenset(PROMPT_TOKEN_KEYS)
_COMPLETION_TOKEN_SET = frozenset(COMPLETION_TOKEN_KEYS)
_INPUT_PROBE_SET = frozenset(probe for probe, _, _ in _INPUT_PROBES)
_OUTPUT_PROBE_SET = frozenset(probe for probe, _, _ in _OUTPUT_PROBES)
_INPUT_SET = frozenset(INPUT_KEYS) | _INPUT_PROBE_SET
_OUTPUT_SET = frozenset(OUTPUT_KEYS) | _OUTPUT_PROBE_SET


# The canonical fields in a span row's order (it ends with them), from the field table:
# checked_canonical_values returns them as a tuple, which the decoder appends to a span's
# row. A new canonical field is a row of span_fields.SPAN_FIELDS and a value here.
CANONICAL_FIELDS = span_fields.CANONICAL_FIELDS


def canonical_fields(
    attrs: Mapping[str, Any],
    resource: Mapping[str, Any],
    cohort_dimensions: Sequence[str] = DEFAULT_COHORT_DIMENSION_KEYS,
) -> dict[str, Any]:
    """Every canonical field of one span, as keyword arguments for SpanRecord."""
    return dict(
        zip(CANONICAL_FIELDS, canonical_values(attrs, resource, cohort_dimensions), strict=True)
    )


def canonical_values(
    attrs: Mapping[str, Any],
    resource: Mapping[str, Any],
    cohort_dimensions: Sequence[str] = DEFAULT_COHORT_DIMENSION_KEYS,
) -> tuple[Any, ...]:
    """The canonical fields of one span, in the order of CANONICAL_FIELDS."""
    return checked_canonical_values(attrs, resource, cohort_dimensions)[0]


def checked_canonical_values(
    attrs: Mapping[str, Any],
    resource: Mapping[str, Any],
    cohort_dimensions: Sequence[str] = DEFAULT_COHORT_DIMENSION_KEYS,
) -> tuple[tuple[Any, ...], bool]:
    """``canonical_values``, and whether a numeric key was present with a value that has no
    number its column can hold (text, infinity, an integer past the column's range, a list):
    that field is None, the value stays in the attributes, and the decoder flags the span.
    No attribute value raises."""
    # Same rules as reading every key in turn; keys the span does not carry are skipped.
    present = _KNOWN_KEYS.intersection(attrs)
    get = attrs.get
    unconvertible = False
    retry_attempt = None
    if "retry.attempt" in present:
        raw = get("retry.attempt")
        retry_attempt = _as_int(raw)
        unconvertible = retry_attempt is None and raw is not None and raw != ""
    prompt_tokens = completion_tokens = confidence = None
    if not _PROMPT_TOKEN_SET.isdisjoint(present):
        raw = _first(attrs, PROMPT_TOKEN_KEYS)
        prompt_tokens = _as_count(raw)
        unconvertible |= prompt_tokens is None and raw is not None
    if not _COMPLETION_TOKEN_SET.isdisjoint(present):
        raw = _first(attrs, COMPLETION_TOKEN_KEYS)
        completion_tokens = _as_count(raw)
        unconvertible |= completion_tokens is None and raw is not None
    if "micro_model.confidence" in present:
        raw = get("micro_model.confidence")
        confidence = _as_float(raw)
        unconvertible |= confidence is None and raw is not None and raw != ""
    model = _first(attrs, MODEL_KEYS) if not _MODEL_SET.isdisjoint(present) else None
    micro_model = get("micro_model.name")
    mirror_of = get("route.mirror_of")
    provider = (
        _as_text(_first(attrs, PROVIDER_KEYS)) if not _PROVIDER_SET.isdisjoint(present) else None
    )
    values = (
        span_kind(attrs) if not _SPAN_KIND_SET.isdisjoint(present) else None,
        _as_text(model),
        # OpenLLMetry said "OpenAI", the GenAI conventions say "openai": one spelling.
        provider.lower() if provider is not None else None,
        _as_text(micro_model) if micro_model not in (None, "") else None,
        prompt_tokens,
        completion_tokens,
        (
            _text(attrs, _INPUT_PROBES, INPUT_KEYS, not _INPUT_PROBE_SET.isdisjoint(present))
            if not _INPUT_SET.isdisjoint(present)
            else None
        ),
        (
            _text(attrs, _OUTPUT_PROBES, OUTPUT_KEYS, not _OUTPUT_PROBE_SET.isdisjoint(present))
            if not _OUTPUT_SET.isdisjoint(present)
            else None
        ),
        _as_text(get("route.name")) if "route.name" in present else None,
        _as_text(get("micro_model.label")) if "micro_model.label" in present else None,
        confidence,
        (
            _as_text(get("micro_model.expected_label"))
            if "micro_model.expected_label" in present
            else None
        ),
        "route.fallback" in present and _as_bool(attrs["route.fallback"]),
        ("route.retry" in present and _as_bool(attrs["route.retry"])) or (retry_attempt or 0) > 0,
        "cache.hit" in present and _as_bool(attrs["cache.hit"]),
        "route.mirrored" in present and _as_bool(attrs["route.mirrored"]),
        _as_text(mirror_of) if mirror_of not in (None, "") else None,
        cohort_values(attrs, resource, cohort_dimensions),
    )
    return values, unconvertible


# As many values as the table has canonical fields (the names are the table's; the order
# of the values above must follow it).
if len(checked_canonical_values({}, {})[0]) != len(CANONICAL_FIELDS):
    raise span_fields.SpanFieldMismatch(
        "normalise.checked_canonical_values: "
        f"{len(checked_canonical_values({}, {})[0])} values, "
        f"tracestore/span_fields.py has {len(CANONICAL_FIELDS)} canonical fields"
    )
