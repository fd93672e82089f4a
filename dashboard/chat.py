"""An LLM span's messages as a chat, read from the attribute layouts instrumentations use.
Pure: no database, no Django; the template escapes every string it shows.

- OpenTelemetry GenAI, indexed attributes: ``gen_ai.prompt.N.role`` / ``.content`` /
  ``.tool_calls.M.{id,name,arguments}``, ``gen_ai.completion.N.*`` (also ``.finish_reason``);
- OpenTelemetry GenAI, one JSON attribute per side: ``gen_ai.input.messages`` /
  ``gen_ai.output.messages`` (``[{role, parts: [{type: text|tool_call, ...}]}]``);
- OpenTelemetry GenAI events: ``gen_ai.{system,user,assistant,tool}.message`` (attributes
  ``content``, ``tool_calls``) and ``gen_ai.choice`` (``message`` or ``content``);
- OpenLLMetry before the GenAI names: ``llm.prompts.N.*``, ``llm.completions.N.*``;
- OpenInference: ``llm.input_messages.N.message.role`` / ``.content`` /
  ``.contents.K.message_content.text`` /
  ``.tool_calls.M.tool_call.{id,function.name,function.arguments}``, ``llm.output_messages``
  (traceAI: the same under ``gen_ai.input.messages.N.message.*``).

The first layout a span carries wins (instrumentations write one; a span carrying two
would otherwise show every message twice)."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tracestore.contracts import SpanView

INDEXED = re.compile(
    r"^(?P<side>gen_ai\.prompt|gen_ai\.completion|llm\.prompts|llm\.completions)"
    r"\.(?P<n>\d+)\.(?P<rest>.+)$"
)
INDEXED_SIDES = {
    "gen_ai.prompt": "input",
    "gen_ai.completion": "output",
    "llm.prompts": "input",
    "llm.completions": "output",
}
OPENINFERENCE = re.compile(
    r"^(?P<side>llm\.input_messages|llm\.output_messages|gen_ai\.input\.messages"
    r"|gen_ai\.output\.messages)\.(?P<n>\d+)\.message\.(?P<rest>.+)$"
)
OPENINFERENCE_SIDES = {
    "llm.input_messages": "input",
    "llm.output_messages": "output",
    "gen_ai.input.messages": "input",
    "gen_ai.output.messages": "output",
}
TOOL_CALL = re.compile(r"^tool_calls\.(?P<m>\d+)\.(?P<rest>.+)$")
CONTENT_PART = re.compile(r"^contents\.(?P<k>\d+)\.message_content\.text$")
EVENT_ROLE = re.compile(r"^gen_ai\.(?P<role>system|user|assistant|tool)\.message$")


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: str
    id: str = ""


@dataclass(frozen=True, slots=True)
class ChatMessage:
    side: str  # "input" | "output"
    role: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str = ""
    tool_call_id: str = ""  # a tool's answer: the call it answers


@dataclass
class _Draft:
    fields: dict[str, Any] = field(default_factory=dict)
    parts: dict[int, str] = field(default_factory=dict)
    calls: dict[int, dict[str, Any]] = field(default_factory=lambda: defaultdict(dict))


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _indexed(
    attributes: Mapping[str, Any], pattern: re.Pattern[str], sides: dict[str, str]
) -> list[ChatMessage]:
    drafts: dict[tuple[str, int], _Draft] = defaultdict(_Draft)
    for key, value in attributes.items():
        match = pattern.match(key)
        if match is None:
            continue
        draft = drafts[(sides[match["side"]], int(match["n"]))]
        rest = match["rest"]
        call = TOOL_CALL.match(rest)
        part = CONTENT_PART.match(rest)
        if call is not None:
            name = call["rest"].removeprefix("tool_call.").removeprefix("function.")
            draft.calls[int(call["m"])][name] = value
        elif part is not None:
            draft.parts[int(part["k"])] = _text(value)
        else:
            draft.fields[rest] = value
    messages = []
    # Inputs before outputs, each in index order.
    for (side, _n), draft in sorted(
        drafts.items(), key=lambda item: (item[0][0] != "input", item[0][1])
    ):
        content = _text(draft.fields.get("content"))
        if not content and draft.parts:
            content = "\n".join(draft.parts[k] for k in sorted(draft.parts))
        calls = tuple(
            ToolCall(_text(c.get("name")), _text(c.get("arguments")), _text(c.get("id")))
            for _m, c in sorted(draft.calls.items())
        )
        messages.append(
            ChatMessage(
                side,
                _text(draft.fields.get("role")) or ("user" if side == "input" else "assistant"),
                content,
                calls,
                _text(draft.fields.get("finish_reason")),
                _text(draft.fields.get("tool_call_id")),
            )
        )
    return messages


def _tool_calls(value: Any) -> tuple[ToolCall, ...]:
    calls = _json(value)
    if not isinstance(calls, list):
        return ()
    out = []
    for call in calls:
        if not isinstance(call, dict):
            continue
        nested = call.get("function")
        function: dict[str, Any] = nested if isinstance(nested, dict) else call
        out.append(
            ToolCall(
                _text(function.get("name")),
                _text(function.get("arguments")),
                _text(call.get("id")),
            )
        )
    return tuple(out)


def _parts_messages(value: Any, side: str) -> list[ChatMessage]:
    """``gen_ai.input.messages`` / ``gen_ai.output.messages``: role + typed parts."""
    items = _json(value)
    if not isinstance(items, list):
        return []
    messages = []
    for item in items:
        if not isinstance(item, dict):
            continue
        texts, calls, answers = [], [], []
        for part in item.get("parts") or []:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "tool_call":
                calls.append(
                    ToolCall(
                        _text(part.get("name")), _text(part.get("arguments")), _text(part.get("id"))
                    )
                )
            elif part.get("type") == "tool_call_response":
                texts.append(_text(part.get("response")))
                answers.append(_text(part.get("id")))
            else:
                texts.append(_text(part.get("content")))
        messages.append(
            ChatMessage(
                side,
                _text(item.get("role")) or ("user" if side == "input" else "assistant"),
                "\n".join(texts),
                tuple(calls),
                _text(item.get("finish_reason")),
                ", ".join(a for a in answers if a),
            )
        )
    return messages


def _event_messages(events: list[dict[str, Any]]) -> list[ChatMessage]:
    messages = []
    for event in events:
        name = str(event.get("name", ""))
        attributes = event.get("attributes") or {}
        role_match = EVENT_ROLE.match(name)
        if role_match is not None:
            messages.append(
                ChatMessage(
                    "input",
                    _text(attributes.get("role")) or role_match["role"],
                    _text(attributes.get("content")),
                    _tool_calls(attributes.get("tool_calls")),
                    tool_call_id=_text(attributes.get("id") or attributes.get("tool_call_id")),
                )
            )
        elif name == "gen_ai.choice":
            message = _json(attributes.get("message"))
            message = message if isinstance(message, dict) else {}
            messages.append(
                ChatMessage(
                    "output",
                    _text(message.get("role")) or "assistant",
                    _text(message.get("content", attributes.get("content"))),
                    _tool_calls(message.get("tool_calls", attributes.get("tool_calls"))),
                    _text(attributes.get("finish_reason")),
                )
            )
    return messages


def span_chat(span: SpanView) -> list[ChatMessage]:
    """A span's chat; none for an embedding span (its input is text to embed, not a turn)."""
    if span.span_kind == "EMBEDDING":
        return []
    return chat_messages(span.attributes, span.events)


def chat_messages(attributes: Mapping[str, Any], events: list[dict[str, Any]]) -> list[ChatMessage]:
    """The span's messages, inputs first; empty when the span carries none."""
    for read in (
        lambda: _indexed(attributes, INDEXED, INDEXED_SIDES),
        lambda: (
            _parts_messages(attributes.get("gen_ai.input.messages"), "input")
            + _parts_messages(attributes.get("gen_ai.output.messages"), "output")
        ),
        lambda: _event_messages(events),
        lambda: _indexed(attributes, OPENINFERENCE, OPENINFERENCE_SIDES),
    ):
        messages = read()
        if messages:
            return messages
    return []
