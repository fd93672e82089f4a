"""The OTLP/HTTP receiver: a small WSGI application served by gunicorn (``gthread``).

A plain WSGI callable rather than a Django view: no middleware, no URL resolver, no
request object per export. Django is used for settings and the database only.

    POST /v1/traces (also / and /tracer/v1/traces)
      Content-Type: application/x-protobuf | application/json
      Content-Encoding: gzip | deflate | identity
      -> 404 path, 405 method, 415 content type or encoding   (before anything is read)
      -> Ingest.export: 503 + Retry-After when MICROLENS_INGEST_MAX_IN_FLIGHT exports (or
         MICROLENS_INGEST_MAX_IN_FLIGHT_BYTES of bodies) are in already, 401 key, then
         the body is read:
         413 over MICROLENS_HTTP_MAX_BODY_BYTES after decompression (streamed with a cap,
             so a gzip bomb is stopped at the limit, not inflated in memory),
         400 bad gzip / protobuf / JSON / UTF-8,
         200 (partial success for spans with unusable ids), 503 + Retry-After.

Every answer has the request's content type: an ExportTraceServiceResponse on 200, a
``google.rpc.Status`` otherwise (JSON when the request's type is not one of ours).

Browsers (the OpenTelemetry JS exporter in a web page) may export when their origin is
listed in MICROLENS_OTLP_CORS_ORIGINS (``CorsPolicy``): the preflight ``OPTIONS`` is
answered 204, or 403 saying which origin or header is not allowed; answers to an allowed
origin carry ``Access-Control-Allow-Origin`` and expose ``Retry-After``. With no origins
configured (the default) there is no CORS at all and ``OPTIONS`` is a 405.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.conf import settings
from google.protobuf import json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from .ingest import (
    Ingest,
    Outcome,
    RequestRejected,
    RequestTooLarge,
    Status,
    ingest_from_settings,
)
from .otlp_json import OtlpJsonError, parse_export_request

log = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
PATHS = frozenset({"/v1/traces", "/", "/tracer/v1/traces"})
_MEDIA_TYPES = {PROTOBUF: PROTOBUF, "application/protobuf": PROTOBUF, JSON: JSON}
# zlib window bits: 16 + 15 reads gzip only; 32 + 15 detects zlib or gzip (for "deflate",
# which some clients send zlib-wrapped and some raw; raw is retried below).
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_DEFLATE_WBITS = 32 + zlib.MAX_WBITS
_ENCODINGS = {"": None, "identity": None, "gzip": _GZIP_WBITS, "x-gzip": _GZIP_WBITS}
_ENCODINGS["deflate"] = _DEFLATE_WBITS
_CHUNK = 64 * 1024
# A rejected body is read and discarded (so the client, still sending, sees our answer
# rather than a reset connection) up to this many bytes; past it the connection is dropped.
_DRAIN_LIMIT = 64 * 1024 * 1024
# json.loads recurses once per nesting level; an attribute nested 200 levels deep is about
# 800 JSON levels, more than Python's default limit of 1000 leaves room for.
_JSON_RECURSION_LIMIT = 5000

_HTTP_STATUS = {
    Status.OK: "200 OK",
    Status.INVALID_ARGUMENT: "400 Bad Request",
    Status.UNAUTHENTICATED: "401 Unauthorized",
    Status.RESOURCE_EXHAUSTED: "413 Content Too Large",
    Status.UNAVAILABLE: "503 Service Unavailable",
}
_RPC_CODE = {
    Status.INVALID_ARGUMENT: code_pb2.INVALID_ARGUMENT,
    Status.UNAUTHENTICATED: code_pb2.UNAUTHENTICATED,
    Status.RESOURCE_EXHAUSTED: code_pb2.RESOURCE_EXHAUSTED,
    Status.UNAVAILABLE: code_pb2.UNAVAILABLE,
}

StartResponse = Callable[..., Any]
Reply = tuple[str, list[tuple[str, str]], bytes]

# Request headers a browser exporter may send: what this receiver reads, and the
# instrumentations' secret-key header (ignored, but sent).
CORS_ALLOWED_HEADERS = (
    "content-type",
    "content-encoding",
    "authorization",
    "x-api-key",
    "x-secret-key",
)


class CorsPolicy:
    """Browser origins allowed to export: exact origins (``https://app.example.com``),
    ``*`` for any, or a ``*`` standing for part of a host or port
    (``https://*.example.com``, ``http://localhost:*``)."""

    def __init__(self, origins: Sequence[str], max_age_seconds: int = 7200) -> None:
        self.origins = tuple(origins)
        self.max_age_seconds = max_age_seconds
        self._any = "*" in self.origins
        self._exact = {o.lower() for o in self.origins if "*" not in o}
        self._patterns = [
            re.compile(
                "".join(
                    "[a-z0-9.:-]+" if part == "*" else re.escape(part)
                    for part in re.split(r"(\*)", origin.lower())
                )
            )
            for origin in self.origins
            if "*" in origin and origin != "*"
        ]

    def __bool__(self) -> bool:
        return bool(self.origins)

    def allows(self, origin: str) -> bool:
        origin = origin.lower()
        return (
            self._any or origin in self._exact or any(p.fullmatch(origin) for p in self._patterns)
        )

    def preflight(self, origin: str, method: str, requested: str) -> Reply:
        if not self.allows(origin):
            return _status_reply(
                JSON, "403 Forbidden", code_pb2.PERMISSION_DENIED, f"origin {origin} is not allowed"
            )
        if method.strip().upper() != "POST":
            return _status_reply(
                JSON, "403 Forbidden", code_pb2.PERMISSION_DENIED, "only POST is allowed"
            )
        headers = [h.strip().lower() for h in requested.split(",") if h.strip()]
        refused = [h for h in headers if h not in CORS_ALLOWED_HEADERS]
        if refused:
            return _status_reply(
                JSON,
                "403 Forbidden",
                code_pb2.PERMISSION_DENIED,
                f"request header(s) not allowed: {', '.join(refused)}",
            )
        reply_headers = [
            *self.answer_headers(origin),
            ("Access-Control-Allow-Methods", "POST"),
            ("Access-Control-Max-Age", str(self.max_age_seconds)),
        ]
        if headers:
            reply_headers.append(("Access-Control-Allow-Headers", ", ".join(headers)))
        return "204 No Content", reply_headers, b""

    def answer_headers(self, origin: str) -> list[tuple[str, str]]:
        """Headers that let the page read an answer (its status, and when to retry)."""
        return [
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Expose-Headers", "Retry-After"),
        ]


class OtlpHttpApp:
    def __init__(self, ingest: Ingest, max_body_bytes: int, cors: CorsPolicy | None = None) -> None:
        self.ingest = ingest
        self.max_body_bytes = max_body_bytes
        self.cors = cors or CorsPolicy(())

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        preflight = None
        try:
            preflight = self._cors(environ)
            status, headers, body = preflight or self._handle(environ)
        except Exception:
            # Last resort: one broken request must never take the worker down.
            log.exception("otlp_http.unhandled_error")
            self.ingest.counters.add("requests_failed")
            status, headers, body = _status_reply(
                JSON, "500 Internal Server Error", code_pb2.INTERNAL, "internal error"
            )
        _drain(environ)
        if self.cors:
            origin = environ.get("HTTP_ORIGIN")
            if origin and preflight is None and self.cors.allows(origin):
                headers.extend(self.cors.answer_headers(origin))
            # Answers differ by origin: caches must key them on it.
            headers.append(("Vary", "Origin"))
        headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        return [body]

    def _cors(self, environ: dict[str, Any]) -> Reply | None:
        """The answer to a CORS preflight, or None for any other request."""
        origin = environ.get("HTTP_ORIGIN")
        method = environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD")
        if not (self.cors and origin and method and environ.get("REQUEST_METHOD") == "OPTIONS"):
            return None
        path = environ.get("PATH_INFO") or "/"
        if path not in PATHS and path.rstrip("/") not in PATHS:
            return _status_reply(JSON, "404 Not Found", code_pb2.NOT_FOUND, "not found")
        return self.cors.preflight(
            origin, method, environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "")
        )

    def _handle(self, environ: dict[str, Any]) -> Reply:
        content_type = environ.get("CONTENT_TYPE", "").partition(";")[0]
        media = _MEDIA_TYPES.get(content_type.strip().lower())
        reply_media = media or JSON
        path = environ.get("PATH_INFO") or "/"
        if path not in PATHS and path.rstrip("/") not in PATHS:
            return _status_reply(reply_media, "404 Not Found", code_pb2.NOT_FOUND, "not found")
        if environ.get("REQUEST_METHOD") != "POST":
            status, headers, body = _status_reply(
                reply_media, "405 Method Not Allowed", code_pb2.UNIMPLEMENTED, "use POST"
            )
            headers.append(("Allow", "POST"))
            return status, headers, body
        if media is None:
            return _status_reply(
                JSON,
                "415 Unsupported Media Type",
                code_pb2.INVALID_ARGUMENT,
                f"content type must be {PROTOBUF} or {JSON}",
            )
        encoding = environ.get("HTTP_CONTENT_ENCODING", "").strip().lower()
        if encoding not in _ENCODINGS:
            return _status_reply(
                media,
                "415 Unsupported Media Type",
                code_pb2.INVALID_ARGUMENT,
                "content encoding must be gzip, deflate or identity",
            )
        auth_headers = {
            "authorization": environ.get("HTTP_AUTHORIZATION", ""),
            "x-api-key": environ.get("HTTP_X_API_KEY", ""),
        }

        def load() -> ExportTraceServiceRequest | bytes:
            body = read_body(environ, _ENCODINGS[encoding], self.max_body_bytes)
            if media != JSON:
                return body  # decoded by Ingest (decode_protobuf)
            try:
                return parse_export_request(body)
            except OtlpJsonError as exc:
                raise RequestRejected(str(exc)) from None

        # Admission counts the body as sent; of unknown length (chunked), as the largest.
        length = _content_length_or_zero(environ)
        if not length and environ.get("CONTENT_LENGTH", "") == "":
            length = self.max_body_bytes
        return _outcome_reply(media, self.ingest.export(auth_headers, load, length))


# -- reading the body ---------------------------------------------------------------------


def read_body(environ: dict[str, Any], wbits: int | None, limit: int) -> bytes:
    """The request body, decompressed, or ``RequestTooLarge`` once it passes ``limit``."""
    stream = environ["wsgi.input"]
    remaining = _content_length(environ)
    if remaining is not None and remaining > limit and wbits is None:
        raise RequestTooLarge(f"body is larger than {limit} bytes")
    if wbits is None and remaining is not None:
        # The common case: a plain body of known size, read in one call, no extra copy.
        body = stream.read(remaining) if remaining else b""
        environ["microlens.body_read"] = len(body)
        if len(body) < remaining:
            raise RequestRejected("body is shorter than its Content-Length")
        return body
    out = bytearray()
    decompressor = zlib.decompressobj(wbits) if wbits is not None else None
    wire = 0
    while remaining is None or remaining > 0:
        chunk = stream.read(_CHUNK if remaining is None else min(_CHUNK, remaining))
        if not chunk:
            if remaining:
                raise RequestRejected("body is shorter than its Content-Length")
            break
        environ["microlens.body_read"] = wire = wire + len(chunk)
        if wire > limit:
            # Also bounds a stream of empty gzip members, which inflates to nothing.
            raise RequestTooLarge(f"body is larger than {limit} bytes")
        if remaining is not None:
            remaining -= len(chunk)
        if decompressor is None:
            if len(out) + len(chunk) > limit:
                raise RequestTooLarge(f"body is larger than {limit} bytes")
            out += chunk
        else:
            decompressor = _inflate(decompressor, chunk, out, limit, wbits or 0)
    if decompressor is not None and not decompressor.eof:
        raise RequestRejected("compressed body is truncated")
    return bytes(out)


def _inflate(decompressor: Any, chunk: bytes, out: bytearray, limit: int, wbits: int) -> Any:
    """Inflate ``chunk`` into ``out`` never holding more than ``limit`` + 1 bytes of output,
    so a small body that inflates to gigabytes stops at the limit."""
    data = chunk
    while data:
        try:
            out += decompressor.decompress(data, limit - len(out) + 1)
        except zlib.error as exc:
            if wbits == _DEFLATE_WBITS and not out:
                # "deflate" sent as a raw stream without the zlib header.
                decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
                wbits = -zlib.MAX_WBITS
                continue
            raise RequestRejected(f"body is not valid compressed data: {exc}") from None
        if len(out) > limit:
            raise RequestTooLarge(f"body is larger than {limit} bytes after decompression")
        if decompressor.eof:
            data = decompressor.unused_data
            if data:
                # Concatenated gzip members form one valid gzip stream.
                decompressor = zlib.decompressobj(wbits)
            continue
        data = decompressor.unconsumed_tail
    return decompressor


def _content_length(environ: dict[str, Any]) -> int | None:
    raw = environ.get("CONTENT_LENGTH", "")
    if raw:
        try:
            length = int(raw)
        except ValueError:
            raise RequestRejected("Content-Length is not a number") from None
        if length < 0:
            raise RequestRejected("Content-Length is negative")
        return length
    # Without a length, a chunked body is read to its end (the server de-chunks it).
    if environ.get("wsgi.input_terminated") or "chunked" in environ.get(
        "HTTP_TRANSFER_ENCODING", ""
    ):
        return None
    return 0


def _drain(environ: dict[str, Any]) -> None:
    """Read what is left of a body we stopped reading (rejected early), within a bound."""
    length = _content_length_or_zero(environ)
    left = min(length - environ.get("microlens.body_read", 0), _DRAIN_LIMIT)
    stream = environ.get("wsgi.input")
    while left > 0 and stream is not None:
        chunk = stream.read(min(_CHUNK, left))
        if not chunk:
            break
        left -= len(chunk)


def _content_length_or_zero(environ: dict[str, Any]) -> int:
    try:
        return max(int(environ.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:
        return 0


# -- answers ------------------------------------------------------------------------------


def _outcome_reply(media: str, outcome: Outcome) -> Reply:
    status = _HTTP_STATUS[outcome.status]
    if outcome.status is not Status.OK:
        status, headers, body = _status_reply(
            media, status, _RPC_CODE[outcome.status], outcome.message, outcome.retry_after_seconds
        )
        if outcome.retry_after_seconds:
            headers.append(("Retry-After", str(outcome.retry_after_seconds)))
        return status, headers, body
    if media == JSON:
        partial: dict[str, Any] = {}
        if outcome.rejected_spans:
            # int64 is a string in the proto3 JSON mapping.
            partial = {
                "rejectedSpans": str(outcome.rejected_spans),
                "errorMessage": outcome.message,
            }
        body = json.dumps({"partialSuccess": partial}).encode()
    else:
        response = ExportTraceServiceResponse()
        if outcome.rejected_spans:
            response.partial_success.rejected_spans = outcome.rejected_spans
            response.partial_success.error_message = outcome.message
        body = response.SerializeToString()
    return status, [("Content-Type", media)], body


def _status_reply(
    media: str, http_status: str, code: int, message: str, retry_after: int = 0
) -> Reply:
    status = status_pb2.Status(code=code, message=message)
    if retry_after:
        info = error_details_pb2.RetryInfo()
        info.retry_delay.seconds = retry_after
        status.details.add().Pack(info)
    if media == JSON:
        body = json_format.MessageToJson(status, indent=None).encode()
    else:
        body = status.SerializeToString()
    return http_status, [("Content-Type", media)], body


# -- assembly -----------------------------------------------------------------------------


def build_app(max_in_flight: int | None = None) -> OtlpHttpApp:
    """The receiver wired to PostgreSQL storage, configured from Django settings;
    ``max_in_flight`` overrides MICROLENS_INGEST_MAX_IN_FLIGHT."""
    if sys.getrecursionlimit() < _JSON_RECURSION_LIMIT:
        sys.setrecursionlimit(_JSON_RECURSION_LIMIT)
    cors = CorsPolicy(settings.MICROLENS_OTLP_CORS_ORIGINS, settings.MICROLENS_OTLP_CORS_MAX_AGE)
    return OtlpHttpApp(
        ingest_from_settings(max_in_flight), settings.MICROLENS_HTTP_MAX_BODY_BYTES, cors
    )
