"""Configured cohort dimensions at ingest: every configured key is decoded, by the compiled
decoder and the Python one alike (span attribute, else resource attribute), and the
receivers re-read the configuration at most once per period."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from tests.builders import key_values
from tracestore import decode
from tracestore.decode import Limits, decode_protobuf
from tracestore.ingest import CachedCohortDimensions


def _body() -> bytes:
    def span(n: int, attrs: dict) -> Span:
        return Span(
            trace_id=bytes([1]) * 16,
            span_id=bytes([n]) * 8,
            name=f"span-{n}",
            start_time_unix_nano=1_750_000_000 * 10**9,
            end_time_unix_nano=1_750_000_001 * 10**9,
            attributes=key_values(attrs),
        )

    resource = Resource(attributes=key_values({"service.name": "shop", "customer.region": "us"}))
    spans = [
        span(1, {"customer.region": "eu", "user.tier": "pro", "team": 7}),
        span(2, {"micro_model.name": "intent-mini"}),
    ]
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=spans)])]
    )
    return request.SerializeToString()


@pytest.mark.parametrize("native", [True, False], ids=["compiled", "python"])
def test_every_configured_key_is_decoded_from_the_span_else_its_resource(native: bool) -> None:
    assert decode.NATIVE, "tracestore._otlp is not built: run python setup.py build_ext --inplace"
    limits = Limits(cohort_dimensions=("customer.region", "team", "user.tier"))

    records = decode_protobuf(_body(), limits, native=native).records

    assert [record.cohort for record in records] == [
        {"customer.region": "eu", "team": "7", "user.tier": "pro"},
        {"customer.region": "us"},
    ]
    unconfigured = decode_protobuf(_body(), Limits(), native=native).records
    assert [record.cohort for record in unconfigured] == [{"user.tier": "pro"}, {}]


class _Table:
    def __init__(self) -> None:
        self.keys = ["user.tier"]
        self.reads = 0

    def __call__(self) -> list[str]:
        self.reads += 1
        if self.keys is None:
            raise RuntimeError("database down")
        return list(self.keys)


def test_a_change_is_read_once_the_period_has_passed_and_not_before() -> None:
    table, now = _Table(), [100.0]
    keys = CachedCohortDimensions(table, refresh_seconds=10, clock=lambda: now[0])

    assert keys() == ("user.tier",)
    table.keys = ["customer.region", "user.tier"]
    now[0] = 109.9
    assert [keys(), keys()] == [("user.tier",), ("user.tier",)]
    assert table.reads == 1

    now[0] = 110.0
    assert keys() == ("customer.region", "user.tier")
    assert table.reads == 2


def test_a_failed_read_raises_and_the_next_request_reads_again() -> None:
    table, now = _Table(), [0.0]
    keys = CachedCohortDimensions(table, refresh_seconds=0, clock=lambda: now[0])
    table.keys = None  # type: ignore[assignment]

    with pytest.raises(RuntimeError):
        keys()
    table.keys = ["language"]
    assert keys() == ("language",)
    assert table.reads == 2
