"""The OTLP gRPC receiver, driven by the real OpenTelemetry SDK exporter and a raw stub."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator

import grpc
import psycopg
import pytest
from django.db import connection
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

from tests.builders import micro_model_trace
from tests.sdk_traces import assert_classifier_trace_stored, export_classifier_trace
from tracestore.contracts import FLAG_TRUNCATED
from tracestore.decode import MAX_DEPTH
from tracestore.ingest import GC_THRESHOLDS, tune_garbage_collector
from tracestore.models import Span, Trace
from tracestore.receiver import build_server
from tracestore.services import create_project, issue_api_key, revoke_api_key

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def receiver() -> Iterator[str]:
    receiver = build_server("127.0.0.1", 0, workers=4)
    receiver.start()
    yield f"127.0.0.1:{receiver.port}"
    receiver.stop(0)


@pytest.fixture
def api_key() -> str:
    project = create_project("default")
    return issue_api_key(project.id)


def _stub(address: str) -> trace_service_pb2_grpc.TraceServiceStub:
    return trace_service_pb2_grpc.TraceServiceStub(grpc.insecure_channel(address))


def test_spans_from_the_real_sdk_exporter_are_stored_field_for_field(
    receiver: str, api_key: str
) -> None:
    exporter = OTLPSpanExporter(
        endpoint=receiver,
        insecure=True,
        headers={"authorization": f"Bearer {api_key}"},
        compression=grpc.Compression.Gzip,
    )
    assert_classifier_trace_stored(*export_classifier_trace(exporter))


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param((), id="missing"),
        pytest.param((("authorization", "Bearer ml_wrong"),), id="wrong-bearer"),
        pytest.param((("x-api-key", "ml_wrong"),), id="wrong-x-api-key"),
        pytest.param((("authorization", "Basic abc"),), id="other-scheme"),
    ],
)
def test_it_answers_unauthenticated_without_a_valid_key(
    receiver: str, api_key: str, metadata: tuple
) -> None:
    request = micro_model_trace().request()
    with pytest.raises(grpc.RpcError) as caught:
        _stub(receiver).Export(request, metadata=metadata, timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert Span.objects.count() == 0


def test_the_sdk_exporter_reports_failure_for_a_wrong_key(receiver: str, api_key: str) -> None:
    exporter = OTLPSpanExporter(
        endpoint=receiver, insecure=True, headers={"authorization": "Bearer nope"}, timeout=5
    )
    provider = TracerProvider()
    span = provider.get_tracer("t").start_span("x")
    span.end()
    assert exporter.export([span]) == SpanExportResult.FAILURE
    assert Span.objects.count() == 0


def test_x_api_key_header_is_accepted(receiver: str, api_key: str) -> None:
    trace = micro_model_trace()
    response = _stub(receiver).Export(
        trace.request(), metadata=(("x-api-key", api_key),), timeout=5
    )
    assert response.partial_success.rejected_spans == 0
    assert Span.objects.count() == 3


def test_a_revoked_key_stops_working(receiver: str, api_key: str) -> None:
    revoke_api_key(api_key)
    with pytest.raises(grpc.RpcError) as caught:
        _stub(receiver).Export(
            micro_model_trace().request(),
            metadata=(("authorization", f"Bearer {api_key}"),),
            timeout=5,
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_duplicate_resend_is_stored_once(receiver: str, api_key: str) -> None:
    trace = micro_model_trace(fallback=True)
    stub = _stub(receiver)
    metadata = (("authorization", f"Bearer {api_key}"),)
    stub.Export(trace.request(), metadata=metadata, timeout=5)
    stub.Export(trace.request(), metadata=metadata, timeout=5)
    assert Span.objects.count() == 4
    assert Trace.objects.get().span_count == 4


def test_spans_with_invalid_ids_are_rejected_and_the_rest_kept(receiver: str, api_key: str) -> None:
    trace = micro_model_trace()
    trace.span("zero-span-id", span_id=b"\x00" * 8)
    trace.span("short-span-id", span_id=b"\x01\x02")
    response = _stub(receiver).Export(
        trace.request(), metadata=(("authorization", f"Bearer {api_key}"),), timeout=5
    )
    assert response.partial_success.rejected_spans == 2
    assert "span_id must be 8 bytes" in response.partial_success.error_message
    assert sorted(Span.objects.values_list("name", flat=True)) == [
        "POST /chat",
        "intent-classifier",
        "retrieve",
    ]


def test_an_empty_request_succeeds_with_nothing_stored(receiver: str, api_key: str) -> None:
    response = _stub(receiver).Export(
        trace_service_pb2.ExportTraceServiceRequest(),
        metadata=(("authorization", f"Bearer {api_key}"),),
        timeout=5,
    )
    assert response.partial_success.rejected_spans == 0
    assert Span.objects.count() == 0


def test_the_health_service_reports_serving(receiver: str) -> None:
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(receiver))
    for service in ("", "opentelemetry.proto.collector.trace.v1.TraceService"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def _nest(value: AnyValue, depth: int) -> None:
    # Built outside-in: the protobuf runtime would refuse to copy a value this deep.
    for _ in range(depth):
        value = value.kvlist_value.values.add(key="k").value
    value.string_value = "bottom"


def test_an_attribute_nested_200_deep_is_stored_capped_and_flagged(
    receiver: str, api_key: str
) -> None:
    trace = micro_model_trace()
    request = trace.request()
    deep = request.resource_spans[0].scope_spans[0].spans[1].attributes.add(key="deep")
    _nest(deep.value, 200)
    answer = _raw_export(receiver)(
        request.SerializeToString(),
        metadata=(("authorization", f"Bearer {api_key}"),),
        timeout=10,
    )
    assert trace_service_pb2.ExportTraceServiceResponse.FromString(answer).ListFields() == []
    stored = Span.objects.get(name="intent-classifier")
    assert stored.flags & FLAG_TRUNCATED
    value, depth = stored.attributes["deep"], 0
    while isinstance(value, dict):
        value, depth = value["k"], depth + 1
    assert value == "[nesting too deep]"
    assert depth == MAX_DEPTH
    assert Span.objects.count() == 3


def test_a_malformed_body_is_invalid_argument_and_the_receiver_keeps_serving(
    receiver: str, api_key: str
) -> None:
    raw = _raw_export(receiver)
    metadata = (("authorization", f"Bearer {api_key}"),)
    with pytest.raises(grpc.RpcError) as caught:
        raw(b"\x0a\xff\xff\xff\xff\x0f garbage", metadata=metadata, timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid ExportTraceServiceRequest" in caught.value.details()
    _stub(receiver).Export(micro_model_trace().request(), metadata=metadata, timeout=5)
    assert Span.objects.count() == 3


def test_a_saturated_receiver_answers_unavailable_with_retry_info(api_key: str) -> None:
    receiver = build_server("127.0.0.1", 0, workers=1)
    receiver.start()
    stub = _stub(f"127.0.0.1:{receiver.port}")
    metadata = (("authorization", f"Bearer {api_key}"),)
    blocker = _connect()
    try:
        # Hold the span table: the first export takes the only slot and waits on the lock.
        blocker.execute("LOCK TABLE tracestore_span IN ACCESS EXCLUSIVE MODE")
        first = stub.Export.future(micro_model_trace().request(), metadata=metadata, timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not _waiting_on_lock(blocker):
            time.sleep(0.02)
        assert _waiting_on_lock(blocker)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Export(micro_model_trace().request(), metadata=metadata, timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert caught.value.details() == "receiver saturated, retry later"
        trailing = dict(caught.value.trailing_metadata())
        retry = error_details_pb2.RetryInfo.FromString(trailing["google.rpc.retryinfo-bin"])
        assert retry.retry_delay.seconds == 1
        blocker.rollback()
        assert first.result(timeout=30).partial_success.rejected_spans == 0
        stub.Export(micro_model_trace().request(), metadata=metadata, timeout=10)
        assert Span.objects.count() == 6
    finally:
        blocker.close()
        receiver.stop(0)


def _waiting_on_lock(conn: psycopg.Connection) -> bool:
    with _connect() as probe:
        row = probe.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> %s",
            [conn.info.backend_pid],
        ).fetchone()
    return bool(row and row[0])


def _connect() -> psycopg.Connection:
    """A connection of the test's own to the test database, outside Django."""
    params = connection.get_connection_params()
    keys = ("dbname", "user", "password", "host", "port")
    return psycopg.connect(**{k: params[k] for k in keys if params.get(k) is not None})


def _raw_export(address: str):
    """The Export method taking and returning bytes, to send what a stub would refuse to."""
    return grpc.insecure_channel(address).unary_unary(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        request_serializer=None,
        response_deserializer=None,
    )


def test_integers_too_large_for_their_columns_are_stored_as_zero_or_null_and_flagged(
    receiver: str, api_key: str
) -> None:
    # Protobuf enums are open and token counts are int64 attributes; the columns are
    # smallint and integer. The span is stored (and the rest of the batch with it).
    trace = micro_model_trace()
    request = trace.request()
    classifier = request.resource_spans[0].scope_spans[0].spans[1]
    classifier.kind = 70_000
    classifier.status.code = 2**31 - 1
    for kv in classifier.attributes:
        if kv.key == "llm.token_count.prompt":
            kv.value.int_value = 10**12
    _stub(receiver).Export(request, metadata=(("authorization", f"Bearer {api_key}"),), timeout=5)
    stored = Span.objects.get(name="intent-classifier")
    assert (stored.kind, stored.status_code, stored.prompt_tokens) == (0, 0, None)
    assert stored.completion_tokens == 3
    assert stored.flags & FLAG_TRUNCATED
    assert Span.objects.count() == 3
    assert Trace.objects.get().prompt_tokens == 0


def test_a_receiver_process_freezes_its_startup_objects_and_collects_less_often() -> None:
    before = gc.get_threshold()
    try:
        tune_garbage_collector()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert GC_THRESHOLDS[0] > before[0]
        assert gc.get_freeze_count() > 1000  # Django, gRPC and protobuf, at least
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
