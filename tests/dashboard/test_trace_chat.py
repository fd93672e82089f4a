"""An LLM span's messages on the trace page as a chat (role, content, tool calls) from
the OpenTelemetry GenAI and the OpenInference attribute layouts, escaped, with the raw
attributes one click away."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.test import Client
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from dashboard.chat import ChatMessage, ToolCall, chat_messages
from tests.builders import TraceBuilder, key_values
from tracestore.decode import decode_request
from tracestore.services import store_spans

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "instrumentations"

GENAI = {
    "gen_ai.system": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.prompt.0.role": "system",
    "gen_ai.prompt.0.content": "You are a billing assistant.",
    "gen_ai.prompt.1.role": "user",
    "gen_ai.prompt.1.content": "Refund order <b>42</b>, please",
    "gen_ai.completion.0.role": "assistant",
    "gen_ai.completion.0.finish_reason": "tool_calls",
    "gen_ai.completion.0.tool_calls.0.id": "call_1",
    "gen_ai.completion.0.tool_calls.0.name": "refund_order",
    "gen_ai.completion.0.tool_calls.0.arguments": '{"order": 42}',
}

OPENINFERENCE = {
    "openinference.span.kind": "LLM",
    "llm.model_name": "gpt-4o-mini",
    "llm.input_messages.0.message.role": "user",
    "llm.input_messages.0.message.content": "Where is my parcel? <script>alert(1)</script>",
    "llm.input_messages.1.message.role": "tool",
    "llm.input_messages.1.message.contents.0.message_content.text": "status: shipped",
    "llm.input_messages.1.message.tool_call_id": "call_8",
    "llm.output_messages.0.message.role": "assistant",
    "llm.output_messages.0.message.content": "It was shipped yesterday.",
    "llm.output_messages.0.message.tool_calls.0.tool_call.id": "call_9",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "track",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": '{"id": "P-7"}',
}


def _page(client: Client, project_id: int, attrs: dict, events=()) -> str:
    trace = TraceBuilder()
    trace.span("chat gpt-4o-mini", attrs=attrs)
    for name, event_attrs in events:
        trace.spans[-1].events.add(name=name).attributes.extend(key_values(event_attrs))
    store_spans(project_id, trace.records())
    response = client.get(f"/traces/{trace.trace_hex}/")
    assert response.status_code == 200
    return response.content.decode()


def test_opentelemetry_genai_prompts_and_completions_render_as_a_chat(
    member_client: Client, project
) -> None:
    html = _page(member_client, project.id, GENAI)

    assert "<h4>Messages</h4>" in html
    assert (
        '<div class="chat-message chat-input" data-role="system">\n'
        '    <div class="chat-role">system</div>\n'
        '    <div class="chat-content">You are a billing assistant.</div>'
    ) in html
    assert '<div class="chat-content">Refund order &lt;b&gt;42&lt;/b&gt;, please</div>' in html
    assert '<div class="chat-role">assistant <span class="muted">(tool_calls)</span></div>' in html
    assert (
        '<div class="chat-tool-call"><span class="chat-tool-label">tool call</span>'
        ' <strong class="chat-tool-name">refund_order</strong> <code class="muted">call_1</code>'
        '<pre class="chat-tool-arguments">{&quot;order&quot;: 42}</pre></div>'
    ) in html
    # The raw attributes stay one click away.
    raw = html[html.index('<details class="raw-attributes">') :]
    assert raw.startswith('<details class="raw-attributes"><summary>Raw attributes</summary>')
    assert '<th scope="row">gen_ai.prompt.1.content</th>' in raw[: raw.index("</details>")]


def test_openinference_messages_render_as_a_chat(member_client: Client, project) -> None:
    html = _page(member_client, project.id, OPENINFERENCE)

    assert (
        '<div class="chat-content">Where is my parcel? &lt;script&gt;alert(1)&lt;/script&gt;</div>'
        in html
    )
    assert "<script>alert" not in html
    assert (
        '<div class="chat-message chat-input" data-role="tool">\n'
        '    <div class="chat-role">tool'
        ' <span class="muted">answers <code>call_8</code></span></div>\n'
        '    <div class="chat-content">status: shipped</div>'
    ) in html
    assert '<div class="chat-content">It was shipped yesterday.</div>' in html
    assert (
        '<strong class="chat-tool-name">track</strong> <code class="muted">call_9</code>'
        '<pre class="chat-tool-arguments">{&quot;id&quot;: &quot;P-7&quot;}</pre>'
    ) in html
    assert "script-src 'self'" in member_client.get("/").headers["Content-Security-Policy"]


def test_genai_message_events_render_as_a_chat(member_client: Client, project) -> None:
    events = [
        ("gen_ai.user.message", {"content": "Hi <there>"}),
        (
            "gen_ai.choice",
            {
                "finish_reason": "stop",
                "message": json.dumps({"role": "assistant", "content": "Hello!"}),
            },
        ),
    ]
    html = _page(member_client, project.id, {"gen_ai.system": "openai"}, events)

    assert '<div class="chat-content">Hi &lt;there&gt;</div>' in html
    assert '<div class="chat-role">assistant <span class="muted">(stop)</span></div>' in html
    assert '<div class="chat-content">Hello!</div>' in html


def test_a_span_without_messages_shows_its_attributes_as_before(
    member_client: Client, project
) -> None:
    html = _page(member_client, project.id, {"http.route": "/chat"})

    assert "<h4>Messages</h4>" not in html and "raw-attributes" not in html
    assert "<h4>Attributes</h4>" in html


def test_genai_json_messages_with_parts_are_read() -> None:
    attributes = {
        "gen_ai.input.messages": json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]}]
        ),
        "gen_ai.output.messages": json.dumps(
            [
                {
                    "role": "assistant",
                    "finish_reason": "tool_call",
                    "parts": [
                        {
                            "type": "tool_call",
                            "id": "c1",
                            "name": "weather",
                            "arguments": {"city": "Paris"},
                        }
                    ],
                }
            ]
        ),
    }

    assert chat_messages(attributes, []) == [
        ChatMessage("input", "user", "Weather in Paris?"),
        ChatMessage(
            "output",
            "assistant",
            "",
            (ToolCall("weather", '{"city": "Paris"}', "c1"),),
            "tool_call",
        ),
    ]


# Payloads recorded from the instrumentation packages (tests/fixtures/instrumentations);
# otel_genai_legacy sends message content to log events, never to the span.
RECORDED = [
    "openinference",
    "otel_genai_latest",
    "openllmetry",
    "openllmetry_legacy",
    "openllmetry_2024",
    "traceai",
    "traceai_legacy",
]
SYSTEM_PROMPT = "classify intent: answer with one word, billing, technical, account or other"


@pytest.mark.parametrize("name", RECORDED)
def test_recorded_instrumentation_payloads_show_their_chat(
    member_client: Client, project, name
) -> None:
    request = ExportTraceServiceRequest.FromString((FIXTURES / f"{name}.pb").read_bytes())
    records = decode_request(request).records
    store_spans(project.id, records)

    html = member_client.get(f"/traces/{records[0].trace_id.hex()}/").content.decode()

    assert html.count('<div class="chat-message ') == 3  # the embedding span has no chat
    assert f'<div class="chat-content">{SYSTEM_PROMPT}</div>' in html
    assert (
        '<div class="chat-role">user</div>\n'
        '    <div class="chat-content">I was charged twice for my subscription this month.</div>'
    ) in html
    assert '<div class="chat-content">billing</div>' in html
