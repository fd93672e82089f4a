"""Semantic conventions -> microlens' canonical span fields.

OpenInference, OpenTelemetry GenAI (old and current names), OpenLLMetry (traceloop) and
traceAI all say the same things under different keys. The tables below list, per
canonical field, the keys to read, first present wins (DESIGN.md "Span conventions").
Pure functions over the flat attribute dict: no Django, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

MODEL_KEYS = ("micro_model.name", "llm.model_name", "gen_ai.response.model", "gen_ai.request.model")
PROVIDER_KEYS = ("llm.provider", "gen_ai.provider.name", "gen_ai.system", "llm.system")
SPAN_KIND_KEYS = (
    "openinference.span.kind",
    "fi.span.kind",
    "gen_ai.span.kind",
    "gen_ai.operation.name",
    "traceloop.span.kind",
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

DEFAULT_COHORT_KEYS = ("user.tier", "language", "prompt.version", "task.type")

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
    except (TypeError, ValueError):
        return None


def _as_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
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
    if f"{prefix}0{content_suffix}" not in attrs:
        return None  # lists start at 0: skip the scan of every key on the usual span
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
    """GenAI ``*.messages`` are JSON strings or structured lists of {role, parts|content}."""
    if isinstance(value, str):
        stripped = value.strip()
        if not stripped.startswith(("[", "{")):
            return value
        try:
            value = json.loads(stripped)
        except ValueError:
            return value
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return _as_text(value)
    texts: list[str] = []
    for message in value:
        if not isinstance(message, dict):
            texts.append(str(message))
            continue
        content = message.get("content")
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


def input_text(attrs: Mapping[str, Any]) -> str | None:
    value = _first(attrs, INPUT_KEYS)
    if value is not None:
        return _message_text(value)
    return _indexed_messages(attrs, "llm.input_messages.", ".message.content") or _indexed_messages(
        attrs, "gen_ai.prompt.", ".content"
    )


def output_text(attrs: Mapping[str, Any]) -> str | None:
    value = _first(attrs, OUTPUT_KEYS)
    if value is not None:
        return _message_text(value)
    return _indexed_messages(
        attrs, "llm.output_messages.", ".message.content"
    ) or _indexed_messages(attrs, "gen_ai.completion.", ".content")


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


def canonical_fields(
    attrs: Mapping[str, Any],
    resource: Mapping[str, Any],
    cohort_keys: Sequence[str] = DEFAULT_COHORT_KEYS,
) -> dict[str, Any]:
    """Every canonical field of one span, as keyword arguments for SpanRecord."""
    retry_attempt = _as_int(attrs.get("retry.attempt"))
    model = _first(attrs, MODEL_KEYS)
    micro_model = attrs.get("micro_model.name")
    mirror_of = attrs.get("route.mirror_of")
    return {
        "span_kind": span_kind(attrs),
        "model": _as_text(model),
        "provider": _as_text(_first(attrs, PROVIDER_KEYS)),
        "micro_model": _as_text(micro_model) if micro_model not in (None, "") else None,
        "prompt_tokens": _as_int(_first(attrs, PROMPT_TOKEN_KEYS)),
        "completion_tokens": _as_int(_first(attrs, COMPLETION_TOKEN_KEYS)),
        "input_text": input_text(attrs),
        "output_text": output_text(attrs),
        "route": _as_text(attrs.get("route.name")),
        "label": _as_text(attrs.get("micro_model.label")),
        "confidence": _as_float(attrs.get("micro_model.confidence")),
        "expected_label": _as_text(attrs.get("micro_model.expected_label")),
        "is_fallback": _as_bool(attrs.get("route.fallback")),
        "is_retry": _as_bool(attrs.get("route.retry")) or (retry_attempt or 0) > 0,
        "cache_hit": _as_bool(attrs.get("cache.hit")),
        "is_mirrored": _as_bool(attrs.get("route.mirrored")),
        "mirror_of": _as_text(mirror_of) if mirror_of not in (None, "") else None,
        "cohort": cohort_values(attrs, resource, cohort_keys),
    }
