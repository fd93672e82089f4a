"""OTLP gRPC TraceService: authenticate, decode, hand the batch to a sink, map the outcome
to a gRPC status. Thin on purpose: storage lives behind the sink."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import grpc
from django.db import DatabaseError, InterfaceError, OperationalError, close_old_connections
from google.rpc import error_details_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from .contracts import ProjectRef, SpanRecord, StoreResult
from .decode import Limits, decode_request
from .services import StorageUnavailable

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 2


class SpanSink(Protocol):
    def __call__(self, project_id: int, records: Sequence[SpanRecord]) -> StoreResult: ...


Authenticator = Callable[[str], ProjectRef | None]


def api_key_from_headers(headers: dict[str, str]) -> str:
    """The project API key from ``authorization: Bearer <key>`` or ``x-api-key``."""
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key", "").strip()


class CachedAuthenticator:
    """Remembers recent key lookups for ``ttl`` seconds so a busy exporter costs one query
    a minute, not one per request; a revoked key stops working within ``ttl``."""

    def __init__(self, lookup: Authenticator, ttl: float = 30.0, max_entries: int = 10_000) -> None:
        self._lookup = lookup
        self._ttl = ttl
        self._max = max_entries
        self._entries: dict[str, tuple[float, ProjectRef | None]] = {}
        self._lock = threading.Lock()

    def __call__(self, raw_key: str) -> ProjectRef | None:
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(raw_key)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        project = self._lookup(raw_key)
        with self._lock:
            if len(self._entries) >= self._max:
                self._entries.clear()
            self._entries[raw_key] = (now, project)
        return project


class Counters:
    """Per-stage counters (no per-span logging)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: dict[str, int] = {}

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.values[name] = self.values.get(name, 0) + amount


def _retry_metadata() -> tuple[tuple[str, bytes], ...]:
    info = error_details_pb2.RetryInfo()
    info.retry_delay.seconds = RETRY_AFTER_SECONDS
    return (("google.rpc.retryinfo-bin", info.SerializeToString()),)


class TraceServicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(
        self,
        sink: SpanSink,
        authenticate: Authenticator,
        limits: Limits | None = None,
        counters: Counters | None = None,
    ) -> None:
        self._sink = sink
        self._authenticate = authenticate
        self._limits = limits or Limits()
        self.counters = counters or Counters()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        close_old_connections()
        headers = {k.lower(): v for k, v in context.invocation_metadata() if isinstance(v, str)}
        raw_key = api_key_from_headers(headers)
        if not raw_key:
            self.counters.add("requests_unauthenticated")
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing API key")
        try:
            project = self._authenticate(raw_key)
        except (OperationalError, InterfaceError) as exc:
            self._unavailable(context, exc)
        if project is None:
            self.counters.add("requests_unauthenticated")
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid API key")

        decoded = decode_request(request, self._limits)
        self.counters.add("spans_received", len(decoded.records) + decoded.rejected)
        self.counters.add("spans_rejected", decoded.rejected)
        self.counters.add("values_truncated", decoded.truncated_values)
        try:
            result = self._sink(project.id, decoded.records)
        except (OperationalError, InterfaceError, StorageUnavailable) as exc:
            self._unavailable(context, exc)
        except DatabaseError as exc:
            # Data the database refused despite sanitising: permanent for this batch.
            log.warning("ingest.batch_refused project=%s error=%s", project.id, exc)
            self.counters.add("batches_refused")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"batch refused by storage: {exc}")
        self.counters.add("spans_stored", result.inserted)
        self.counters.add("spans_duplicate", result.duplicates)
        response = trace_service_pb2.ExportTraceServiceResponse()
        if decoded.rejected:
            response.partial_success.rejected_spans = decoded.rejected
            response.partial_success.error_message = decoded.message
        return response

    def _unavailable(self, context: grpc.ServicerContext, exc: Exception) -> None:
        from django.db import connection

        log.warning("ingest.storage_unavailable error=%s", exc.__class__.__name__)
        self.counters.add("requests_unavailable")
        # Drop the broken connection so the next request opens a fresh one.
        with contextlib.suppress(DatabaseError):
            connection.close()
        context.set_trailing_metadata(_retry_metadata())
        context.abort(grpc.StatusCode.UNAVAILABLE, "storage unavailable, retry later")
