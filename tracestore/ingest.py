"""Protocol-neutral ingest: authenticate -> load the request -> decode -> store -> Outcome.

Both receivers (gRPC and OTLP/HTTP) call ``Ingest.export`` and only translate the returned
``Outcome`` into their own status codes, so which failure is permanent (bad data) and which
is transient (storage down) is decided here, once.

Order matters: the key is checked before the request body is read or parsed, so an
unauthenticated client costs no decompression or decoding.
"""

from __future__ import annotations

import contextlib
import enum
import gc
import logging
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .contracts import ProjectRef, StoreResult
from .decode import NATIVE, Limits, SpanRow, decode_protobuf, decode_request
from .otlp_protobuf import OtlpProtobufError
from .services import StorageUnavailable

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 2
SATURATED_RETRY_AFTER_SECONDS = 1

# Decoding allocates dicts, lists and tuples per span and attribute, nearly all freed by
# reference counting. At CPython's default thresholds (a collection every 700 net
# allocations) the cyclic collector ran several times per request, and the older
# generations it also sweeps hold every object Django, gRPC and protobuf loaded at start.
GC_THRESHOLDS = (20_000, 50, 100)


def tune_garbage_collector() -> None:
    """For a receiver process, once set up: move what is alive now out of the collector's
    sight (gc.freeze) and collect less often. Cyclic garbage, rare on this path, waits for
    at most GC_THRESHOLDS[0] allocations, so memory stays bounded."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def release_frames(exc: BaseException) -> None:
    """Clear the local variables of the finished frames an exception's traceback holds,
    along its chain of causes.

    Django re-raises a driver error from inside ``wrap_database_errors.__exit__``, whose
    frame holds the new exception: a reference cycle through the traceback, which also
    holds every frame up to the one that caught it, the request's decoded spans included.
    Freed only by the cyclic collector (which this process runs rarely, see
    GC_THRESHOLDS), each failed export kept its request: two receivers grew past 450 MB
    within five seconds of the database going away. Cleared, the cycle is gone and
    everything is freed as soon as the exception is."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        stack += [current.__cause__, current.__context__]


class SpanSink(Protocol):
    """Stores decoded spans (``SpanRow``: a SpanRecord's fields as a tuple) and, by
    position, their attributes' jsonb where the decoder wrote it; e.g.
    ``services.store_span_rows``."""

    def __call__(
        self,
        project_id: int,
        spans: Sequence[SpanRow],
        attributes_json: Sequence[bytes | None] = (),
    ) -> StoreResult: ...


Authenticator = Callable[[str], ProjectRef | None]
# A protobuf body (bytes, decoded by decode_protobuf) or an already parsed request (OTLP/JSON).
RequestLoader = Callable[[], ExportTraceServiceRequest | bytes]


class Status(enum.Enum):
    """What became of an export, named after the gRPC codes OTLP maps to HTTP statuses."""

    OK = "ok"
    INVALID_ARGUMENT = "invalid_argument"
    UNAUTHENTICATED = "unauthenticated"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class Outcome:
    """``OK`` with ``rejected_spans`` > 0 is an OTLP partial success; ``message`` then says
    why those spans were rejected. ``retry_after_seconds`` is set for ``UNAVAILABLE``."""

    status: Status
    message: str = ""
    rejected_spans: int = 0
    retry_after_seconds: int = 0


class RequestRejected(Exception):
    """Raised by a protocol's request loader when the request body itself is unusable."""

    status = Status.INVALID_ARGUMENT


class RequestTooLarge(RequestRejected):
    status = Status.RESOURCE_EXHAUSTED


def api_key_from_headers(headers: Mapping[str, str]) -> str:
    """The project API key from ``authorization: Bearer <key>`` or ``x-api-key``.

    Some instrumentations (traceAI, for one) send an ``x-api-key`` + ``x-secret-key`` pair;
    a microlens key is a single secret, so the ``x-api-key`` value is the key and
    ``x-secret-key`` is ignored.
    """
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


class Ingest:
    """``max_in_flight`` bounds the exports decoding or writing at once; a request that
    finds no room within ``admission_wait`` seconds is answered UNAVAILABLE with a retry
    delay instead of queueing, so memory stays bounded whatever the load or the database
    does, and exporters back off."""

    def __init__(
        self,
        sink: SpanSink,
        authenticate: Authenticator,
        limits: Limits | None = None,
        counters: Counters | None = None,
        max_in_flight: int | None = None,
        admission_wait: float = 0.5,
    ) -> None:
        self._sink = sink
        self._authenticate = authenticate
        self._limits = limits or Limits()
        self.counters = counters or Counters()
        self._slots = threading.BoundedSemaphore(max_in_flight) if max_in_flight else None
        self._admission_wait = admission_wait
        if not NATIVE:
            log.warning(
                "ingest.decoder compiled=false: tracestore/_otlp.c is not built (no C "
                "compiler?), protobuf bodies are decoded in Python, about half as fast"
            )

    def export(self, headers: Mapping[str, str], load: RequestLoader) -> Outcome:
        """Run one export. ``headers`` are lower-cased; ``load`` produces the request (and may
        raise ``RequestRejected``) and is only called once the key is known to be valid."""
        if self._slots is None:
            return self._export(headers, load)
        if not self._slots.acquire(timeout=self._admission_wait):
            self.counters.add("requests_saturated")
            return Outcome(
                Status.UNAVAILABLE,
                "receiver saturated, retry later",
                retry_after_seconds=SATURATED_RETRY_AFTER_SECONDS,
            )
        try:
            return self._export(headers, load)
        finally:
            self._slots.release()

    def _export(self, headers: Mapping[str, str], load: RequestLoader) -> Outcome:
        # Connections are per thread and kept between requests: drop those past their
        # lifetime or left broken by an earlier error before touching the database.
        close_old_connections()
        raw_key = api_key_from_headers(headers)
        if not raw_key:
            self.counters.add("requests_unauthenticated")
            return Outcome(Status.UNAUTHENTICATED, "missing API key")
        try:
            project = self._authenticate(raw_key)
        except (OperationalError, InterfaceError) as exc:
            return self._unavailable(exc)
        if project is None:
            self.counters.add("requests_unauthenticated")
            return Outcome(Status.UNAUTHENTICATED, "invalid API key")

        try:
            request = load()
            decoded = (
                decode_protobuf(request, self._limits)
                if isinstance(request, bytes)
                else decode_request(request, self._limits)
            )
        except RequestRejected as exc:
            self.counters.add(f"requests_{exc.status.value}")
            return Outcome(exc.status, str(exc))
        except OtlpProtobufError as exc:
            self.counters.add(f"requests_{Status.INVALID_ARGUMENT.value}")
            return Outcome(Status.INVALID_ARGUMENT, str(exc))

        self.counters.add("spans_received", len(decoded.rows) + decoded.rejected)
        self.counters.add("spans_rejected", decoded.rejected)
        self.counters.add("values_truncated", decoded.truncated_values)
        try:
            result = self._sink(project.id, decoded.rows, decoded.attributes_json)
        except (OperationalError, InterfaceError, StorageUnavailable) as exc:
            return self._unavailable(exc)
        except DatabaseError as exc:
            # Data the database refused despite sanitising: permanent for this batch.
            log.warning("ingest.batch_refused project=%s error=%s", project.id, exc)
            release_frames(exc)
            self.counters.add("batches_refused")
            return Outcome(Status.INVALID_ARGUMENT, f"batch refused by storage: {exc}")
        self.counters.add("spans_stored", result.inserted)
        self.counters.add("spans_duplicate", result.duplicates)
        return Outcome(Status.OK, decoded.message, rejected_spans=decoded.rejected)

    def _unavailable(self, exc: Exception) -> Outcome:
        log.warning("ingest.storage_unavailable error=%s", exc.__class__.__name__)
        release_frames(exc)
        self.counters.add("requests_unavailable")
        # Drop the broken connection so the next request opens a fresh one.
        with contextlib.suppress(DatabaseError):
            connection.close()
        return Outcome(
            Status.UNAVAILABLE,
            "storage unavailable, retry later",
            retry_after_seconds=RETRY_AFTER_SECONDS,
        )
