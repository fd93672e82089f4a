"""OTLP gRPC TraceService: hand the request to ``Ingest`` and map its outcome to a gRPC
status. Thin on purpose: authentication, decoding and storage live behind ``Ingest``."""

from __future__ import annotations

import logging

import grpc
from google.rpc import error_details_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from .ingest import Ingest, Status

log = logging.getLogger(__name__)

_GRPC_CODES = {
    Status.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    Status.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Status.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Status.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
}


def _retry_metadata(seconds: int) -> tuple[tuple[str, bytes], ...]:
    info = error_details_pb2.RetryInfo()
    info.retry_delay.seconds = seconds
    return (("google.rpc.retryinfo-bin", info.SerializeToString()),)


class TraceServicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, ingest: Ingest) -> None:
        self._ingest = ingest
        self.counters = ingest.counters

    def Export(
        self,
        request: bytes | trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.ServicerContext,
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        """``request`` arrives as raw bytes (see receiver.py): decoded only once the key is
        known, and decoded by us (decode_protobuf) so a malformed or too-deep body gets a
        clear answer."""
        headers = {k.lower(): v for k, v in context.invocation_metadata() if isinstance(v, str)}

        size = len(request) if isinstance(request, bytes) else request.ByteSize()
        try:
            outcome = self._ingest.export(headers, lambda: request, size)
        except Exception:
            # gRPC would answer UNKNOWN with the exception's text: never show a client that.
            log.exception("otlp_grpc.unhandled_error")
            self.counters.add("requests_failed")
            context.abort(grpc.StatusCode.INTERNAL, "internal error")
        if outcome.status is not Status.OK:
            if outcome.retry_after_seconds:
                context.set_trailing_metadata(_retry_metadata(outcome.retry_after_seconds))
            context.abort(_GRPC_CODES[outcome.status], outcome.message)
        response = trace_service_pb2.ExportTraceServiceResponse()
        if outcome.rejected_spans:
            response.partial_success.rejected_spans = outcome.rejected_spans
            response.partial_success.error_message = outcome.message
        return response
