"""Hostile attribute values and timestamps through the running receivers (gRPC, OTLP/HTTP
protobuf and JSON) to the stored rows: one bad value never costs the request, a re-sent
span is stored once whatever its timestamps."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
import requests
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.builders import POISON_VALUES, TraceBuilder, otlp_json, poisoned_trace
from tests.tracestore.test_receiver_http import _serve
from tracestore.contracts import FLAG_OLD_START, FLAG_UNCONVERTIBLE_VALUE, FLAG_ZERO_TIMESTAMP
from tracestore.http_receiver import build_app
from tracestore.models import Span, Trace
from tracestore.receiver import build_server
from tracestore.services import create_project, issue_api_key

pytestmark = pytest.mark.django_db(transaction=True)

Send = Callable[[ExportTraceServiceRequest], None]


@pytest.fixture
def api_key() -> str:
    return issue_api_key(create_project("default").id)


@pytest.fixture
def grpc_address() -> Iterator[str]:
    receiver = build_server("127.0.0.1", 0, workers=2)
    receiver.start()
    yield f"127.0.0.1:{receiver.port}"
    receiver.stop(0)


@pytest.fixture
def http_url() -> Iterator[str]:
    yield from _serve(build_app())


@pytest.fixture(params=["grpc", "http-protobuf", "http-json"])
def send(request: pytest.FixtureRequest, api_key: str) -> Send:
    """Export one request over the protocol under test; fails unless it is a full success."""
    if request.param == "grpc":
        address = request.getfixturevalue("grpc_address")
        stub = trace_service_pb2_grpc.TraceServiceStub(grpc.insecure_channel(address))

        def over_grpc(export: ExportTraceServiceRequest) -> None:
            response = stub.Export(
                export, metadata=(("authorization", f"Bearer {api_key}"),), timeout=10
            )
            assert response == trace_service_pb2.ExportTraceServiceResponse()

        return over_grpc
    url = request.getfixturevalue("http_url") + "/v1/traces"
    as_json = request.param == "http-json"

    def over_http(export: ExportTraceServiceRequest) -> None:
        if as_json:
            body = json.dumps(otlp_json(export)).encode()
            content_type = "application/json"
        else:
            body = export.SerializeToString()
            content_type = "application/x-protobuf"
        response = requests.post(
            url,
            data=body,
            headers={"Content-Type": content_type, "Authorization": f"Bearer {api_key}"},
            timeout=30,
        )
        assert response.status_code == 200, response.content
        if as_json:
            assert json.loads(response.content) == {"partialSuccess": {}}

    return over_http


@pytest.mark.parametrize(("key", "value", "kept_as"), POISON_VALUES)
def test_one_poison_value_costs_no_span_of_the_request(
    send: Send, key: str, value: Any, kept_as: str
) -> None:
    trace = poisoned_trace(key, value, valid=4)
    send(trace.request())

    assert Span.objects.filter(trace_id=trace.trace_id).count() == 5
    poisoned = Span.objects.get(name="poisoned")
    assert poisoned.flags == FLAG_UNCONVERTIBLE_VALUE
    assert poisoned.attributes == {key: kept_as, "route.name": "billing"}
    assert (poisoned.prompt_tokens, poisoned.completion_tokens, poisoned.confidence) == (
        None,
        None,
        None,
    )
    assert (poisoned.is_retry, poisoned.route) == (False, "billing")
    valid = Span.objects.exclude(name="poisoned")
    assert sorted(valid.values_list("flags", "prompt_tokens", "is_retry")) == [(0, 7, True)] * 4
    assert Trace.objects.get().span_count == 5


@pytest.mark.parametrize(
    ("start", "end", "stored_at_end"),
    [
        pytest.param(0, 0, False, id="no-times"),
        pytest.param(0, "end", True, id="zero-start"),
        pytest.param(2**64 - 1, "end", True, id="far-future-start"),
        pytest.param(2**63, 2**63 + 5, False, id="far-future-both"),
    ],
)
def test_a_span_with_a_replaced_start_sent_twice_is_stored_once(
    send: Send, start: int, end: int | str, stored_at_end: bool
) -> None:
    trace = TraceBuilder()
    trace.span("replaced-start")
    span = trace.spans[0]
    end_ns = span.end_time_unix_nano if end == "end" else end
    span.start_time_unix_nano = start
    span.end_time_unix_nano = end_ns
    send(trace.request())
    send(trace.request())

    stored = Span.objects.get(trace_id=trace.trace_id)
    expected_ns = end_ns if stored_at_end else 0
    assert int(stored.start_time.timestamp() * 10**6) == expected_ns // 1000
    assert stored.start_time == stored.end_time
    # At the epoch the span is also older than retention keeps (kept from its receipt).
    assert stored.flags == FLAG_ZERO_TIMESTAMP | (0 if stored_at_end else FLAG_OLD_START)
    assert Trace.objects.get().span_count == 1


def test_a_json_integer_past_int64_costs_no_span_of_the_request(
    http_url: str, api_key: str
) -> None:
    trace = poisoned_trace("llm.token_count.prompt", 0, valid=2)
    document = otlp_json(trace.request())
    spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    (value,) = [a["value"] for a in spans[2]["attributes"] if a["key"] == "llm.token_count.prompt"]
    value["intValue"] = "9" * 30
    response = requests.post(
        http_url + "/v1/traces",
        data=json.dumps(document).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.content
    assert Span.objects.filter(trace_id=trace.trace_id).count() == 3
    poisoned = Span.objects.get(name="poisoned")
    assert poisoned.attributes["llm.token_count.prompt"] == "9" * 30
    assert (poisoned.prompt_tokens, poisoned.flags) == (None, FLAG_UNCONVERTIBLE_VALUE)
