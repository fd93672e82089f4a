"""tracestore's public data shapes: frozen dataclasses with no Django import.

Other apps and the receiver exchange these, never tracestore's models.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from .span_fields import ROW_FIELDS, check_fields

# Span flags (bit field stored with every span; tracestore/README.md "Span flags").
FLAG_END_BEFORE_START = 1
FLAG_TRUNCATED = 2
# The start was 0 or too far in the future: replaced by a function of the span itself.
FLAG_ZERO_TIMESTAMP = 4
# A numeric canonical attribute had no value its column can hold: the column is NULL.
FLAG_UNCONVERTIBLE_VALUE = 8
# The start was older than retention keeps when the span was received: the span is kept
# for the retention period counted from its receipt instead of from its start.
FLAG_OLD_START = 16


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """One span, decoded from OTLP and normalised to microlens' canonical fields.

    ``attributes`` keeps every attribute exactly as sent (after hostile-input
    sanitising); the canonical fields are read from the conventions in DESIGN.md.
    """

    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes | None
    name: str
    kind: int
    start_time_ns: int
    end_time_ns: int
    status_code: int
    status_message: str
    service_name: str
    scope_name: str
    scope_version: str
    attributes: dict[str, Any]
    resource_attributes: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    flags: int = 0
    # canonical fields
    span_kind: str | None = None
    model: str | None = None
    provider: str | None = None
    micro_model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    input_text: str | None = None
    output_text: str | None = None
    route: str | None = None
    label: str | None = None
    confidence: float | None = None
    expected_label: str | None = None
    is_fallback: bool = False
    is_retry: bool = False
    cache_hit: bool = False
    is_mirrored: bool = False
    mirror_of: str | None = None
    cohort: dict[str, str] = field(default_factory=dict)


# A span's row is SpanRecord's fields in order (``SpanRecord(*row)``): both follow the one
# field table.
check_fields("SpanRecord", tuple(f.name for f in fields(SpanRecord)), ROW_FIELDS)


@dataclass(frozen=True, slots=True)
class StoreResult:
    """What ``store_spans`` committed: new spans, and duplicates of spans already stored."""

    accepted: int
    inserted: int
    duplicates: int
    traces: int


@dataclass(frozen=True, slots=True)
class ProjectRef:
    id: int
    name: str


@dataclass(frozen=True, slots=True)
class SpanView:
    """A stored span as read back (API, pages)."""

    project_id: int
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: int
    start_time: datetime
    end_time: datetime
    duration_ms: float
    status_code: int
    status_message: str
    service_name: str
    scope_name: str
    attributes: dict[str, Any]
    resource_attributes: dict[str, Any]
    events: list[dict[str, Any]]
    flags: int
    span_kind: str | None
    model: str | None
    provider: str | None
    micro_model: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    route: str | None
    label: str | None
    confidence: float | None
    expected_label: str | None
    is_fallback: bool
    is_retry: bool
    cache_hit: bool
    scope_version: str = ""
    links: list[dict[str, Any]] = field(default_factory=list)
    input_text: str | None = None
    output_text: str | None = None
    is_mirrored: bool = False
    mirror_of: str | None = None
    # The trace's cohort (its root span's values, else the earliest span's), as traces,
    # evaluations and metrics carry it: every span of a trace shows the same cohort.
    cohort: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TraceSummary:
    """One trace's rollup, maintained as its spans arrive."""

    project_id: int
    trace_id: str
    start_time: datetime | None
    end_time: datetime | None
    duration_ms: float | None
    root_span_id: str | None
    root_name: str | None
    service_name: str | None
    span_count: int
    error_count: int
    models: list[str]
    micro_models: list[str]
    routes: list[str]
    is_fallback: bool
    prompt_tokens: int
    completion_tokens: int
    cohort: dict[str, str]

    @property
    def status(self) -> str:
        return "error" if self.error_count else "ok"


@dataclass(frozen=True, slots=True)
class TraceDetail:
    summary: TraceSummary
    spans: list[SpanView]


@dataclass(frozen=True, slots=True)
class SpanUsage:
    """What one span of a trace spent, for costing: its model, its token counts and the
    cost the provider reported (None when it did not)."""

    model: str
    start_time: datetime
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reported_cost: float | None


@dataclass(frozen=True, slots=True)
class MicroModelDecision:
    """One micro-model span: the decision it made and how it went."""

    span_id: str
    start_time: datetime
    micro_model: str
    model: str | None
    route: str | None
    label: str | None
    expected_label: str | None
    confidence: float | None
    is_fallback: bool
    is_retry: bool
    cache_hit: bool
    is_error: bool
    duration_ms: float
    # A mirrored (shadow) call: a candidate answering the live micro model's input; it is
    # no live decision.
    is_mirrored: bool = False
    mirror_of: str | None = None


@dataclass(frozen=True, slots=True)
class FallbackAnswer:
    """A fallback span's answer in the micro model's label space: a span with
    ``route.fallback = true`` that is no micro-model span and carries ``micro_model.label``."""

    span_id: str
    start_time: datetime
    label: str


@dataclass(frozen=True, slots=True)
class TraceFacts:
    """A trace as the metrics see it (read by ``queries.trace_facts``): its rollup, its
    micro-model decisions in start order, and per-span usage for costing."""

    project_id: int
    trace_id: str
    updated_at: datetime
    start_time: datetime
    duration_ms: float
    is_fallback: bool
    error_count: int
    prompt_tokens: int
    completion_tokens: int
    cohort: dict[str, str]
    decisions: list[MicroModelDecision]
    usage: list[SpanUsage]
    # In start order (then span id): what the fallback answered, where it said so.
    fallback_answers: tuple[FallbackAnswer, ...] = ()


@dataclass(frozen=True, slots=True)
class ModelSpan:
    """A span that names a model (or a micro model), with what evaluators judge it on."""

    project_id: int
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    start_time: datetime
    status_code: int
    span_kind: str | None
    model: str | None
    micro_model: str | None
    input_text: str | None
    output_text: str | None
    route: str | None
    label: str | None
    confidence: float | None
    expected_label: str | None
    is_fallback: bool
    attributes: dict[str, Any]
    # A mirrored (shadow) call: evaluators leave it out of their jobs.
    is_mirrored: bool = False


@dataclass(frozen=True, slots=True)
class TraceModelSpans:
    """One trace's model spans; ``position`` is the trace's place in the read order, to
    resume from (``updated_at`` or ``start_time``, project id, trace id hex).
    ``has_retrieval``: the trace has a RETRIEVER span (retrieved context to ground on)."""

    project_id: int
    trace_id: str
    position: tuple[datetime, int, str]
    cohort: dict[str, str]
    spans: list[ModelSpan]
    has_retrieval: bool = False


@dataclass(frozen=True, slots=True)
class TraceContext:
    """What surrounds a span when it is judged: the root's input and output, the documents
    retriever spans returned, the trace's cohort and its model spans."""

    project_id: int
    trace_id: str
    root_input: str | None
    root_output: str | None
    documents: list[str]
    cohort: dict[str, str]
    spans: list[ModelSpan]


# -- storage failures ---------------------------------------------------------------------


class StorageError(Exception):
    """A write or lookup the database did not complete; nothing of it was committed.

    Raised by tracestore's services in place of the driver's own exceptions (see
    ``services.storage_errors``), so callers decide on two types, as the OpenTelemetry
    Collector's consumer errors do, and never need to know the driver. ``str()`` is a
    fixed text naming the SQLSTATE, safe to show a client; the driver's message (which
    may quote data) stays in ``__cause__`` for the logs."""

    reason = "storage failed"

    def __init__(self, sqlstate: str | None = None) -> None:
        self.sqlstate = sqlstate
        suffix = f" (SQLSTATE {sqlstate})" if sqlstate else ""
        super().__init__(f"{self.reason}{suffix}")


class TransientStorageError(StorageError):
    """The database cannot take it now (unreachable, restarting, connection lost, timed
    out, overloaded, a conflict with another transaction): the same request may succeed
    later, so the client should retry."""

    reason = "storage unavailable"


class PermanentStorageError(StorageError):
    """The database refuses this data for good (a value or row it cannot store): sending
    it again fails again, so the client must not retry."""

    reason = "batch refused by storage"
