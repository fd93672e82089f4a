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
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    close_old_connections,
    connection,
    connections,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .contracts import (
    PermanentStorageError,
    ProjectRef,
    StorageError,
    StoreResult,
)
from .decode import NATIVE, Limits, SpanRow, decode_protobuf, decode_request
from .otlp_protobuf import OtlpProtobufError
from .services import storage_errors

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 2
SATURATED_RETRY_AFTER_SECONDS = 1
ADMISSION_WAIT_SECONDS = 0.5
STALL_GRACE_SECONDS = 1
# The server's statement and lock timeouts end the statement, not the session: the
# transaction was rolled back and the connection is kept.
_SERVER_CANCELLED = frozenset({"57014", "55P03"})

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
    ``services.store_span_rows``. Fails with ``TransientStorageError`` (answered
    UNAVAILABLE, retried) or ``PermanentStorageError`` (INVALID_ARGUMENT, not retried)."""

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


class CachedCohortDimensions:
    """The configured cohort dimensions' keys, read again once ``refresh_seconds`` have
    passed since the last read: a key added or removed in the admin reaches ingest within
    that time, at the cost of one small query per process per period (never per span or
    per request). A failed read raises, so the export is answered UNAVAILABLE rather than
    stored without the configured keys."""

    def __init__(
        self,
        read: Callable[[], Sequence[str]],
        refresh_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._refresh = refresh_seconds
        self._clock = clock
        self._keys: tuple[str, ...] | None = None
        self._read_at = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> tuple[str, ...]:
        keys = self._keys
        if keys is not None and self._clock() - self._read_at < self._refresh:
            return keys
        # One thread reads; the others wait for it rather than each running the query.
        with self._lock:
            now = self._clock()
            if self._keys is None or now - self._read_at >= self._refresh:
                self._keys = tuple(self._read())
                self._read_at = now
            return self._keys


class Counters:
    """Per-stage counters (no per-span logging)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: dict[str, int] = {}

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.values[name] = self.values.get(name, 0) + amount


class Admission:
    """At most ``max_requests`` exports, and request bodies of at most ``max_bytes`` in
    all, inside at once; ``enter`` waits up to ``wait`` seconds for room, then says no.

    A body larger than the whole budget counts as the whole budget (it runs alone)."""

    def __init__(self, max_requests: int, max_bytes: int, wait: float) -> None:
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self._wait = wait
        self._requests = 0
        self._bytes = 0
        self._room = threading.Condition()

    def enter(self, size: int) -> int | None:
        """Reserve room for a request of ``size`` bytes: the bytes reserved (give them to
        ``leave``), or None when there was no room in time."""
        size = min(max(size, 0), self.max_bytes)
        with self._room:
            if not self._room.wait_for(
                lambda: self._requests < self.max_requests and self._bytes + size <= self.max_bytes,
                timeout=self._wait,
            ):
                return None
            self._requests += 1
            self._bytes += size
            return size

    def leave(self, reserved: int) -> None:
        with self._room:
            self._requests -= 1
            self._bytes -= reserved
            self._room.notify_all()


class StallGuard:
    """Gives up on a database that does not answer: a thread still inside ``bounded()``
    ``seconds`` after entering has its database connection's socket shut down, which ends
    the query it is blocked in with a connection error (a transient storage error).

    PostgreSQL enforces statement and lock timeouts itself, but a frozen server (stopped,
    swapping, a network path that drops packets) enforces nothing, and libpq has no
    client-side query timeout: the export would wait until the client gave up. The guard
    fires later than the server's own timeouts, so a slow but live server cancels the
    statement itself and the connection is kept. One watcher thread per process sleeps
    until the nearest deadline."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._watched: dict[int, tuple[float, Any]] = {}
        self._changed = threading.Condition()
        self._watcher: threading.Thread | None = None

    @contextlib.contextmanager
    def bounded(self) -> Iterator[None]:
        if self.seconds <= 0:
            yield
            return
        ident = threading.get_ident()
        # The wrapper of this thread's own connection (``connection`` is a per-thread proxy).
        wrapper = connections[DEFAULT_DB_ALIAS]
        with self._changed:
            self._watched[ident] = (time.monotonic() + self.seconds, wrapper)
            if self._watcher is None or not self._watcher.is_alive():
                self._watcher = threading.Thread(
                    target=self._watch, name="ingest-stall-guard", daemon=True
                )
                self._watcher.start()
            if len(self._watched) == 1:
                # Every deadline is now + seconds, so a new one is never the nearest unless
                # it is the only one (the watcher then sleeps without a deadline): no wakeup
                # per export.
                self._changed.notify()
        try:
            yield
        finally:
            with self._changed:
                self._watched.pop(ident, None)

    def _watch(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                expired = [i for i, (deadline, _) in self._watched.items() if deadline <= now]
                for ident in expired:
                    # Shut down under the lock: the thread cannot leave bounded() (and go on
                    # to use its connection for something else) meanwhile.
                    _shut_down(self._watched.pop(ident)[1])
                nearest = min((d for d, _ in self._watched.values()), default=None)
                self._changed.wait(None if nearest is None else max(nearest - now, 0.01))


def _shut_down(wrapper: Any) -> None:
    raw = wrapper.connection
    if raw is None:
        return  # still connecting: bounded by the connect timeout instead
    try:
        fd = raw.pgconn.socket
    except Exception:
        return
    log.warning("ingest.database_stalled action=drop_connection")
    # A duplicate of the descriptor: shutdown() acts on the connection both share, and
    # closing the duplicate leaves psycopg's own descriptor for psycopg to close.
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as sock:
        sock.shutdown(socket.SHUT_RDWR)


class Ingest:
    """``admission`` bounds the exports decoding or writing at once (and their bytes); a
    request that finds no room within its wait is answered UNAVAILABLE with a retry delay
    instead of queueing, so memory stays bounded whatever the load or the database does,
    and exporters back off. ``stall_guard`` bounds how long an export waits on the
    database. ``ingest_from_settings`` builds the receivers' one."""

    def __init__(
        self,
        sink: SpanSink,
        authenticate: Authenticator,
        limits: Limits | None = None,
        counters: Counters | None = None,
        admission: Admission | None = None,
        stall_guard: StallGuard | None = None,
        cohort_dimensions: Callable[[], tuple[str, ...]] | None = None,
    ) -> None:
        self._sink = sink
        self._authenticate = authenticate
        self._limits = limits or Limits()
        # The configured cohort dimensions' keys (CachedCohortDimensions); None: the keys
        # in ``limits``, fixed.
        self._cohort_dimensions = cohort_dimensions
        self.counters = counters or Counters()
        self._admission = admission
        self._stall_guard = stall_guard or StallGuard(0)
        if not NATIVE:
            log.warning(
                "ingest.decoder compiled=false: tracestore/_otlp.c is not built (no C "
                "compiler?), protobuf bodies are decoded in Python, about half as fast"
            )

    @property
    def max_in_flight(self) -> int | None:
        return self._admission.max_requests if self._admission else None

    def export(self, headers: Mapping[str, str], load: RequestLoader, size: int = 0) -> Outcome:
        """Run one export. ``headers`` are lower-cased; ``load`` produces the request (and may
        raise ``RequestRejected``) and is only called once the key is known to be valid;
        ``size`` is the request's length in bytes as received, if known, for admission."""
        if self._admission is None:
            return self._export(headers, load)
        reserved = self._admission.enter(size)
        if reserved is None:
            self.counters.add("requests_saturated")
            return Outcome(
                Status.UNAVAILABLE,
                "receiver saturated, retry later",
                retry_after_seconds=SATURATED_RETRY_AFTER_SECONDS,
            )
        try:
            return self._export(headers, load)
        finally:
            self._admission.leave(reserved)

    def _export(self, headers: Mapping[str, str], load: RequestLoader) -> Outcome:
        raw_key = api_key_from_headers(headers)
        if not raw_key:
            self.counters.add("requests_unauthenticated")
            return Outcome(Status.UNAUTHENTICATED, "missing API key")
        try:
            with self._stall_guard.bounded(), storage_errors():
                # Connections are per thread and kept between requests: drop those past
                # their lifetime or left broken by an earlier error before using one.
                close_old_connections()
                project = self._authenticate(raw_key)
                limits = self._limits
                if project is not None and self._cohort_dimensions is not None:
                    keys = self._cohort_dimensions()
                    if keys != limits.cohort_dimensions:
                        limits = self._limits = replace(limits, cohort_dimensions=keys)
        except StorageError as exc:
            return self._storage_failed(exc, None)
        if project is None:
            self.counters.add("requests_unauthenticated")
            return Outcome(Status.UNAUTHENTICATED, "invalid API key")

        try:
            request = load()
            decoded = (
                decode_protobuf(request, limits)
                if isinstance(request, bytes)
                else decode_request(request, limits)
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
            with self._stall_guard.bounded():
                result = self._sink(project.id, decoded.rows, decoded.attributes_json)
        except StorageError as exc:
            return self._storage_failed(exc, project.id)
        self.counters.add("spans_stored", result.inserted)
        self.counters.add("spans_duplicate", result.duplicates)
        return Outcome(Status.OK, decoded.message, rejected_spans=decoded.rejected)

    def _storage_failed(self, exc: StorageError, project_id: int | None) -> Outcome:
        """The outcome for a failed lookup or write. The client is told only the fixed
        text of ``exc`` (the driver's message may quote the data, or other projects')."""
        cause = exc.__cause__
        log.warning(
            "ingest.storage_%s project=%s sqlstate=%s error=%s",
            "refused" if isinstance(exc, PermanentStorageError) else "unavailable",
            project_id,
            exc.sqlstate,
            cause.__class__.__name__ if cause else exc.__class__.__name__,
        )
        release_frames(exc)
        if isinstance(exc, PermanentStorageError):
            self.counters.add("batches_refused")
            return Outcome(Status.INVALID_ARGUMENT, str(exc))
        self.counters.add("requests_unavailable")
        if exc.sqlstate not in _SERVER_CANCELLED:
            # Drop the connection (refused, lost, or cut by the stall guard) so the next
            # request on this thread opens a fresh one.
            with contextlib.suppress(DatabaseError):
                connection.close()
        return Outcome(
            Status.UNAVAILABLE,
            "storage unavailable, retry later",
            retry_after_seconds=RETRY_AFTER_SECONDS,
        )


def ingest_from_settings(max_in_flight: int | None = None) -> Ingest:
    """The receivers' ``Ingest`` (gRPC and HTTP alike): PostgreSQL storage, cached key
    lookups, decoding limits, the configured cohort dimensions (re-read every
    MICROLENS_COHORT_DIMENSIONS_REFRESH_SECONDS), admission and the database bound, all from
    settings.
    ``max_in_flight`` overrides MICROLENS_INGEST_MAX_IN_FLIGHT (a receiver's command line)."""
    from django.conf import settings

    from .queries import cohort_dimension_keys
    from .services import authenticate_api_key, store_span_rows

    limits = Limits(
        max_value_bytes=settings.MICROLENS_MAX_ATTRIBUTE_VALUE_BYTES,
        max_attributes=settings.MICROLENS_MAX_ATTRIBUTES,
    )
    admission = Admission(
        max_in_flight or settings.MICROLENS_INGEST_MAX_IN_FLIGHT,
        settings.MICROLENS_INGEST_MAX_IN_FLIGHT_BYTES,
        ADMISSION_WAIT_SECONDS,
    )
    timeout = settings.MICROLENS_INGEST_DB_TIMEOUT_SECONDS
    # Later than the server's statement and lock timeouts (equal to ``timeout``), so a
    # live server cancels first and the connection is kept.
    stall_guard = StallGuard(timeout + STALL_GRACE_SECONDS if timeout else 0)
    return Ingest(
        store_span_rows,
        CachedAuthenticator(authenticate_api_key),
        limits,
        admission=admission,
        stall_guard=stall_guard,
        cohort_dimensions=CachedCohortDimensions(
            cohort_dimension_keys, settings.MICROLENS_COHORT_DIMENSIONS_REFRESH_SECONDS
        ),
    )
