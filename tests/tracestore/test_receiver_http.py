"""The OTLP/HTTP receiver, driven by the real SDK exporter, `requests`, and hostile bodies.

Most tests serve the WSGI application in-process on a threaded loopback server; the
``gunicorn`` tests start the real ``manage.py run_http_receiver`` process.
"""

from __future__ import annotations

import base64
import functools
import gzip
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import psycopg
import pytest
import requests
from django.db import connection, connections
from google.protobuf import json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.builders import TraceBuilder, micro_model_trace
from tests.sdk_traces import assert_classifier_trace_stored, export_classifier_trace
from tracestore.contracts import FLAG_TRUNCATED
from tracestore.http_receiver import build_app
from tracestore.models import Span, Trace
from tracestore.services import create_project, issue_api_key

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "otlp"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MAX_BODY = 16 * 1024 * 1024


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            # Django connections are per thread; this thread ends here.
            connections.close_all()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def _serve(app: Any) -> Iterator[str]:
    server = make_server(
        "127.0.0.1", 0, app, server_class=_ThreadingServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def receiver() -> Iterator[str]:
    yield from _serve(build_app())


@pytest.fixture
def cors_receiver(settings: Any) -> Iterator[str]:
    settings.MICROLENS_OTLP_CORS_ORIGINS = ["https://app.example.test", "http://*.shop.test:*"]
    settings.MICROLENS_OTLP_CORS_MAX_AGE = 600
    yield from _serve(build_app())


@pytest.fixture
def api_key() -> str:
    project = create_project("default")
    return issue_api_key(project.id)


def _post(
    url: str,
    body: bytes,
    key: str | None,
    content_type: str = PROTOBUF,
    encoding: str | None = None,
    path: str = "/v1/traces",
    **headers: str,
) -> requests.Response:
    sent = {"Content-Type": content_type, **headers}
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    if encoding:
        sent["Content-Encoding"] = encoding
    return requests.post(url + path, data=body, headers=sent, timeout=30)


def _status(response: requests.Response) -> status_pb2.Status:
    if response.headers["Content-Type"] == JSON:
        document = response.json()
        return status_pb2.Status(code=document["code"], message=document["message"])
    return status_pb2.Status.FromString(response.content)


def _assert_still_serving(url: str, key: str) -> None:
    trace = micro_model_trace()
    response = _post(url, trace.request().SerializeToString(), key)
    assert response.status_code == 200
    assert Span.objects.filter(trace_id=trace.trace_id).count() == 3


# -- the real SDK exporter ----------------------------------------------------------------


def _http_exporter(endpoint: str, headers: dict[str, str]) -> OTLPSpanExporter:
    return OTLPSpanExporter(
        endpoint=endpoint, headers=headers, compression=Compression.Gzip, timeout=10
    )


def test_spans_from_the_real_sdk_exporter_with_gzip_are_stored_field_for_field(
    receiver: str, api_key: str
) -> None:
    root, child = export_classifier_trace(
        _http_exporter(f"{receiver}/v1/traces", {"authorization": f"Bearer {api_key}"})
    )
    assert_classifier_trace_stored(root, child)


def test_the_recorded_sdk_payload_is_accepted_as_sent(receiver: str, api_key: str) -> None:
    body = (FIXTURES / "sdk_traces.pb.gz").read_bytes()
    response = _post(receiver, body, api_key, encoding="gzip")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == PROTOBUF
    assert (
        ExportTraceServiceResponse.FromString(response.content).partial_success.rejected_spans == 0
    )
    assert sorted(Span.objects.values_list("name", flat=True)) == [
        "POST /chat",
        "fallback-llm",
        "intent-classifier",
    ]


# -- protocol surface ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/traces", "/", "/tracer/v1/traces", "/v1/traces/"])
def test_every_path_clients_post_to_is_served(receiver: str, api_key: str, path: str) -> None:
    response = _post(
        receiver, micro_model_trace().request().SerializeToString(), api_key, path=path
    )
    assert response.status_code == 200
    assert Span.objects.count() == 3


def test_json_with_upper_case_hex_ids_is_stored_under_those_ids(
    receiver: str, api_key: str
) -> None:
    document = json.loads((FIXTURES / "spec_trace.json").read_text())
    span = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    now = time.time_ns()
    span["startTimeUnixNano"], span["endTimeUnixNano"] = now - 10**9, str(now)
    response = _post(
        receiver,
        json.dumps(document).encode(),
        api_key,
        content_type="application/json; charset=utf-8",
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == JSON
    assert response.json() == {"partialSuccess": {}}
    stored = Span.objects.get()
    assert stored.trace_id == bytes.fromhex("5b8efff798038103d269b633813fc60c")
    assert stored.span_id == bytes.fromhex("eee19b7ec3c1b174")
    assert stored.parent_span_id == bytes.fromhex("eee19b7ec3c1b173")
    assert (stored.kind, stored.status_code, stored.status_message) == (2, 2, "upstream timeout")
    assert stored.attributes["nested"] == {"inner": "NaN"}
    assert stored.links[0]["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert stored.duration_ns == 10**9


def test_the_sdk_payload_as_gzipped_json_lands_like_the_protobuf(
    receiver: str, api_key: str
) -> None:
    body = gzip.compress((FIXTURES / "sdk_traces.json").read_bytes())
    assert _post(receiver, body, api_key, content_type=JSON, encoding="gzip").status_code == 200
    from_json = sorted(Span.objects.values_list("trace_id", "span_id", "name", "attributes"))
    Span.objects.all().delete()
    protobuf = (FIXTURES / "sdk_traces.pb.gz").read_bytes()
    assert _post(receiver, protobuf, api_key, encoding="gzip").status_code == 200
    assert (
        sorted(Span.objects.values_list("trace_id", "span_id", "name", "attributes")) == from_json
    )


def test_deflate_is_accepted(receiver: str, api_key: str) -> None:
    body = zlib.compress(micro_model_trace().request().SerializeToString())
    assert _post(receiver, body, api_key, encoding="deflate").status_code == 200
    assert Span.objects.count() == 3


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(lambda key: {"Authorization": f"Bearer {key}"}, id="bearer"),
        pytest.param(lambda key: {"x-api-key": key}, id="x-api-key"),
        pytest.param(lambda key: {"X-Api-Key": key, "X-Secret-Key": "anything"}, id="key-pair"),
    ],
)
def test_every_supported_key_header_authenticates(
    receiver: str, api_key: str, headers: Callable[[str], dict[str, str]]
) -> None:
    body = micro_model_trace().request().SerializeToString()
    response = _post(receiver, body, None, **headers(api_key))
    assert response.status_code == 200
    assert Span.objects.count() == 3


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
@pytest.mark.parametrize(
    ("headers", "message"),
    [
        pytest.param({}, "missing API key", id="missing"),
        pytest.param({"Authorization": "Bearer ml_wrong"}, "invalid API key", id="wrong-bearer"),
        pytest.param({"x-api-key": "ml_wrong"}, "invalid API key", id="wrong-x-api-key"),
        pytest.param({"Authorization": "Basic abc"}, "missing API key", id="other-scheme"),
    ],
)
def test_it_answers_401_with_a_status_body_in_the_request_type(
    receiver: str, api_key: str, content_type: str, headers: dict[str, str], message: str
) -> None:
    body = b"{}" if content_type == JSON else micro_model_trace().request().SerializeToString()
    response = _post(receiver, body, None, content_type=content_type, **headers)
    assert response.status_code == 401
    assert response.headers["Content-Type"] == content_type
    assert _status(response) == status_pb2.Status(code=code_pb2.UNAUTHENTICATED, message=message)
    assert Span.objects.count() == 0


def test_a_partial_success_in_json_names_the_rejected_spans(receiver: str, api_key: str) -> None:
    document = json.loads((FIXTURES / "spec_trace.json").read_text())
    spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans.append({**spans[0], "spanId": "0000000000000000"})
    spans.append({**spans[0], "spanId": "nothex!!"})
    response = _post(receiver, json.dumps(document).encode(), api_key, content_type=JSON)
    assert response.status_code == 200
    assert response.json() == {
        "partialSuccess": {
            "rejectedSpans": "2",
            "errorMessage": "2 span(s) rejected: span_id must be 8 bytes and not all zero",
        }
    }
    assert Span.objects.count() == 1


def test_other_methods_and_paths_are_refused(receiver: str, api_key: str) -> None:
    get = requests.get(f"{receiver}/v1/traces", timeout=5)
    assert (get.status_code, get.headers["Allow"]) == (405, "POST")
    assert _status(get).code == code_pb2.UNIMPLEMENTED
    other = _post(receiver, b"", api_key, path="/v1/metrics")
    assert other.status_code == 404
    assert _status(other) == status_pb2.Status(code=code_pb2.NOT_FOUND, message="not found")


# -- the bad-input table ------------------------------------------------------------------


def _valid() -> bytes:
    return micro_model_trace().request().SerializeToString()


def _invalid_utf8_protobuf() -> bytes:
    # A span whose name (field 5) is the bytes ff fe: not UTF-8, which proto3 forbids.
    good = TraceBuilder().request()
    good.resource_spans[0].scope_spans[0].spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
    good.resource_spans[0].scope_spans[0].spans[0].name = "XY"
    return good.SerializeToString().replace(b"\x2a\x02XY", b"\x2a\x02\xff\xfe")


@functools.cache
def _gzip_bomb() -> bytes:
    """1 GiB of zeros, gzip-compressed to about 1 MiB, without holding the GiB in memory."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    parts = [compressor.compress(zeros) for _ in range(1024)]
    parts.append(compressor.flush())
    return b"".join(parts)


BAD_INPUT = [
    pytest.param(
        lambda: (b"\xff\xff\xff\xff", PROTOBUF, None),
        400,
        "body is not a valid ExportTraceServiceRequest",
        id="malformed-protobuf",
    ),
    pytest.param(
        lambda: (_valid()[:-7], PROTOBUF, None),
        400,
        "body is not a valid ExportTraceServiceRequest",
        id="truncated-protobuf",
    ),
    pytest.param(
        lambda: (gzip.compress(_valid())[:-12], PROTOBUF, "gzip"),
        400,
        "compressed body is truncated",
        id="truncated-gzip",
    ),
    pytest.param(
        lambda: (b"this is not gzip", PROTOBUF, "gzip"),
        400,
        "body is not valid compressed data",
        id="bad-gzip",
    ),
    pytest.param(
        lambda: (_invalid_utf8_protobuf(), PROTOBUF, None),
        400,
        "body is not a valid ExportTraceServiceRequest",
        id="invalid-utf8-protobuf",
    ),
    pytest.param(
        lambda: (b'{"resourceSpans": [{"x": "\xff"}]}', JSON, None),
        400,
        "body is not valid UTF-8",
        id="invalid-utf8-json",
    ),
    pytest.param(
        lambda: (b'{"resourceSpans": [', JSON, None), 400, "body is not valid JSON", id="bad-json"
    ),
    pytest.param(
        lambda: (b'{"resourceSpans": [{"scopeSpans": 7}]}', JSON, None),
        400,
        "resourceSpans[0].scopeSpans must be a list",
        id="json-wrong-structure",
    ),
    pytest.param(
        lambda: (bytes(MAX_BODY + 1), PROTOBUF, None),
        413,
        f"body is larger than {MAX_BODY} bytes",
        id="oversize",
    ),
    pytest.param(
        lambda: (_gzip_bomb(), PROTOBUF, "gzip"),
        413,
        f"body is larger than {MAX_BODY} bytes after decompression",
        id="gzip-bomb",
    ),
    pytest.param(
        lambda: (_valid(), "text/plain", None),
        415,
        f"content type must be {PROTOBUF} or {JSON}",
        id="wrong-content-type",
    ),
    pytest.param(
        lambda: (_valid(), PROTOBUF, "br"),
        415,
        "content encoding must be gzip, deflate or identity",
        id="unknown-encoding",
    ),
]


@pytest.mark.parametrize(("make", "status", "message"), BAD_INPUT)
def test_bad_input_gets_its_exact_answer_and_the_receiver_keeps_serving(
    receiver: str, api_key: str, make: Callable, status: int, message: str
) -> None:
    body, content_type, encoding = make()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    response = _post(receiver, body, api_key, content_type=content_type, encoding=encoding)
    elapsed = time.monotonic() - started

    assert response.status_code == status
    reply_type = content_type if content_type in (PROTOBUF, JSON) else JSON
    assert response.headers["Content-Type"] == reply_type
    answer = _status(response)
    expected_code = {400: code_pb2.INVALID_ARGUMENT, 413: code_pb2.RESOURCE_EXHAUSTED}
    assert answer.code == expected_code.get(status, code_pb2.INVALID_ARGUMENT)
    assert answer.message.startswith(message)
    assert Span.objects.count() == 0
    if encoding == "gzip" and status == 413:
        # Stopped at the limit: neither the GiB nor the time to inflate it.
        assert elapsed < 5
        grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
        assert grown_kib < 128 * 1024
    _assert_still_serving(receiver, api_key)


def _nest_deeply(span: Any, depth: int) -> None:
    # Built in place: upb copies (append, CopyFrom) re-parse and refuse this depth.
    value = span.attributes.add(key="deep").value
    for level in range(depth):
        value = value.kvlist_value.values.add(key=f"k{level}").value
    value.string_value = "leaf"


def test_zero_and_wrong_length_ids_are_a_partial_success(receiver: str, api_key: str) -> None:
    trace = micro_model_trace()
    trace.span("zero-trace-id-span")
    trace.spans[-1].trace_id = b"\x00" * 16
    trace.span("zero-span-id", span_id=b"\x00" * 8)
    trace.span("short-span-id", span_id=b"\x01\x02")
    response = _post(receiver, trace.request().SerializeToString(), api_key)
    assert response.status_code == 200
    partial = ExportTraceServiceResponse.FromString(response.content).partial_success
    assert partial.rejected_spans == 3
    assert partial.error_message == (
        "3 span(s) rejected: trace_id must be 16 bytes and not all zero; "
        "span_id must be 8 bytes and not all zero"
    )
    assert Span.objects.count() == 3


def test_hostile_values_are_stored_sanitised(receiver: str, api_key: str) -> None:
    trace = TraceBuilder()
    nul = trace.span("nul\x00name", attrs={"text": "a\x00b"})
    many = trace.span("many", attrs={f"attr.{i}": i for i in range(10_000)})
    nan = trace.span("nan", attrs={"score": float("nan"), "big": float("inf")})
    deep = trace.span("deep")
    request = trace.request()
    _nest_deeply(request.resource_spans[0].scope_spans[0].spans[-1], 200)

    response = _post(receiver, request.SerializeToString(), api_key)

    assert response.status_code == 200
    assert (
        ExportTraceServiceResponse.FromString(response.content).partial_success.rejected_spans == 0
    )
    by_id = {span.span_id: span for span in Span.objects.all()}
    assert by_id[nul].name == "nul\ufffdname"
    assert by_id[nul].attributes == {"text": "a\ufffdb"}
    assert len(by_id[many].attributes) == 512
    assert by_id[many].flags & FLAG_TRUNCATED
    assert by_id[nan].attributes == {"score": "NaN", "big": "Infinity"}
    stored_deep = by_id[deep]
    depth, node = 0, stored_deep.attributes["deep"]
    while isinstance(node, dict):
        node, depth = next(iter(node.values())), depth + 1
    assert (depth, node) == (16, "[nesting too deep]")
    assert stored_deep.flags & FLAG_TRUNCATED
    _assert_still_serving(receiver, api_key)


def test_an_empty_request_succeeds_with_nothing_stored(receiver: str, api_key: str) -> None:
    for body in (b"", ExportTraceServiceRequest().SerializeToString()):
        response = _post(receiver, body, api_key)
        assert response.status_code == 200
        assert ExportTraceServiceResponse.FromString(response.content) == (
            ExportTraceServiceResponse()
        )
    assert _post(receiver, b"{}", api_key, content_type=JSON).json() == {"partialSuccess": {}}
    assert Span.objects.count() == 0


def test_a_duplicate_resend_is_stored_once(receiver: str, api_key: str) -> None:
    body = micro_model_trace(fallback=True).request().SerializeToString()
    assert _post(receiver, body, api_key).status_code == 200
    assert _post(receiver, gzip.compress(body), api_key, encoding="gzip").status_code == 200
    assert Span.objects.count() == 4
    assert Trace.objects.get().span_count == 4


# -- admission -----------------------------------------------------------------------------


def _connect(autocommit: bool = False) -> psycopg.Connection:
    """A connection of the test's own to the test database, outside Django."""
    params = connection.get_connection_params()
    keys = ("dbname", "user", "password", "host", "port")
    return psycopg.connect(
        **{k: params[k] for k in keys if params.get(k) is not None}, autocommit=autocommit
    )


def _waiting_on_lock(timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    # Autocommit: inside one transaction, pg_stat_activity would repeat its first answer.
    with _connect(autocommit=True) as probe:
        while time.monotonic() < deadline:
            row = probe.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            ).fetchone()
            if row and row[0]:
                return True
            time.sleep(0.02)
    return False


def _assert_a_full_receiver_answers_503(url: str, key: str, first: bytes) -> None:
    """With ``first`` inside the receiver (its COPY waiting on a lock the test holds), the
    next export is turned away at once with a retry delay; both land afterwards."""
    blocker = _connect()
    pool = ThreadPoolExecutor(1)
    try:
        blocker.execute("LOCK TABLE tracestore_span IN ACCESS EXCLUSIVE MODE")
        inside = pool.submit(_post, url, first, key)
        assert _waiting_on_lock()
        turned_away = _post(url, _valid(), key)  # the client would wait 30 s
        assert turned_away.status_code == 503
        assert turned_away.headers["Retry-After"] == "1"
        answer = _status(turned_away)
        assert (answer.code, answer.message) == (
            code_pb2.UNAVAILABLE,
            "receiver saturated, retry later",
        )
        retry = error_details_pb2.RetryInfo()
        assert answer.details[0].Unpack(retry)
        assert retry.retry_delay.seconds == 1
        blocker.rollback()
        assert inside.result(timeout=30).status_code == 200
        _assert_still_serving(url, key)
    finally:
        blocker.close()
        pool.shutdown()


def _body_over(size: int) -> bytes:
    trace = micro_model_trace()
    for i in range(20):
        trace.span(f"step-{i}", parent=trace.spans[0].span_id, attrs={"i": i})
    body = trace.request().SerializeToString()
    assert len(body) > size
    return body


@pytest.mark.parametrize(
    "limit",
    [{"MICROLENS_INGEST_MAX_IN_FLIGHT": 1}, {"MICROLENS_INGEST_MAX_IN_FLIGHT_BYTES": 1024}],
    ids=["requests", "bytes"],
)
def test_past_its_admission_limit_it_answers_503_with_retry_after(
    settings: Any, api_key: str, limit: dict[str, int]
) -> None:
    settings.MICROLENS_INGEST_DB_TIMEOUT_SECONDS = 30  # the lock is the test's, not a stall
    for name, value in limit.items():
        setattr(settings, name, value)
    serving = _serve(build_app())
    url = next(serving)
    try:
        # Over the byte budget alone: it takes all of it, and nothing else fits beside it.
        _assert_a_full_receiver_answers_503(url, api_key, _body_over(1024))
    finally:
        next(serving, None)


# -- the real gunicorn process ------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _database_url(port: int | None = None) -> str:
    settings = connection.settings_dict
    return (
        f"postgresql://{settings['USER']}:{settings['PASSWORD']}@{settings['HOST']}:"
        f"{port or settings['PORT']}/{settings['NAME']}"
    )


@pytest.fixture
def start_gunicorn() -> Iterator[Callable[[str], str]]:
    processes: list[subprocess.Popen] = []

    def start(database_url: str, workers: int = 2, threads: int = 4) -> str:
        port = _free_port()
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "DJANGO_SETTINGS_MODULE": "microlens.settings",
        }
        process = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "run_http_receiver",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--threads",
                str(threads),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(url + "/v1/traces", timeout=2)
                return url
            except (requests.ConnectionError, requests.Timeout):
                # Not bound yet, or bound while the workers still set Django up.
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(process.stderr.read().decode()) from None
                time.sleep(0.1)

    yield start
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        process.wait(timeout=30)


@pytest.mark.slow
def test_the_gunicorn_receiver_stores_what_the_sdk_exports(
    start_gunicorn: Callable[[str], str], api_key: str
) -> None:
    url = start_gunicorn(_database_url())
    root, child = export_classifier_trace(
        _http_exporter(f"{url}/v1/traces", {"x-api-key": api_key})
    )
    assert_classifier_trace_stored(root, child)
    bomb = _post(url, _gzip_bomb(), api_key, encoding="gzip")
    assert bomb.status_code == 413
    _assert_still_serving(url, api_key)


@pytest.mark.slow
@pytest.mark.parametrize("encoding", [None, "gzip"])
def test_the_gunicorn_receiver_takes_chunked_bodies(
    start_gunicorn: Callable[[str], str], api_key: str, encoding: str | None
) -> None:
    url = start_gunicorn(_database_url())
    body = _valid() if encoding is None else gzip.compress(_valid())
    headers = {"Content-Type": PROTOBUF, "x-api-key": api_key}
    if encoding:
        headers["Content-Encoding"] = encoding
    # An iterator body is sent with Transfer-Encoding: chunked and no Content-Length.
    parts = iter([body[:100], body[100:]])
    response = requests.post(f"{url}/v1/traces", data=parts, headers=headers, timeout=10)
    assert response.status_code == 200
    assert Span.objects.count() == 3


@pytest.mark.slow
def test_the_gunicorn_receiver_turns_away_exports_past_its_limit_at_once(
    start_gunicorn: Callable[..., str], api_key: str
) -> None:
    # One export at a time: gunicorn runs a second thread to answer the surplus.
    url = start_gunicorn(_database_url(), workers=1, threads=1)
    _assert_a_full_receiver_answers_503(url, api_key, _valid())


@pytest.mark.slow
def test_with_the_database_unreachable_it_answers_503_with_retry_after(
    start_gunicorn: Callable[[str], str], api_key: str
) -> None:
    url = start_gunicorn(_database_url(port=_free_port()))
    for content_type, body in ((PROTOBUF, _valid()), (JSON, b"{}")):
        response = _post(url, body, api_key, content_type=content_type)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "2"
        assert response.headers["Content-Type"] == content_type
        answer = _status(response)
        assert (answer.code, answer.message) == (
            code_pb2.UNAVAILABLE,
            "storage unavailable, retry later",
        )
    detail = status_pb2.Status.FromString(_post(url, _valid(), api_key).content).details[0]
    retry = error_details_pb2.RetryInfo()
    assert detail.Unpack(retry)
    assert retry.retry_delay.seconds == 2


@pytest.mark.slow
def test_after_its_database_connections_are_killed_the_receiver_reconnects(
    start_gunicorn: Callable[[str], str], api_key: str
) -> None:
    url = start_gunicorn(_database_url())
    for _ in range(8):  # give several worker threads a kept connection
        assert _post(url, _valid(), api_key).status_code == 200
    with connection.cursor() as cursor:
        # What a PostgreSQL restart does to every open session.
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] >= 1

    answers: list[requests.Response] = []
    while len(answers) < 40 and [r.status_code for r in answers[-4:]] != [200] * 4:
        answers.append(_post(url, _valid(), api_key))

    # Each thread's dead connection is replaced before use (CONN_HEALTH_CHECKS), or at
    # worst that thread answers 503 once (the exporter retries) and reconnects; nothing
    # else, and no worker is lost. 2 workers x 4 threads.
    statuses = [response.status_code for response in answers]
    assert set(statuses) <= {200, 503}
    assert statuses.count(503) <= 8
    assert statuses[-4:] == [200] * 4
    assert all(r.headers["Retry-After"] == "2" for r in answers if r.status_code == 503)
    assert Span.objects.count() == (statuses.count(200) + 8) * 3


# -- browsers (CORS) ----------------------------------------------------------------------


def _otlp_json(request: ExportTraceServiceRequest) -> Any:
    """The request in the OTLP/JSON encoding (ids as hex), as a browser exporter sends it."""

    def hex_ids(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: base64.b64decode(v).hex()
                if k in ("traceId", "spanId", "parentSpanId")
                else hex_ids(v)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [hex_ids(v) for v in node]
        return node

    return hex_ids(json_format.MessageToDict(request))


def _preflight(url: str, origin: str, headers: str = "content-type, authorization") -> Any:
    return requests.options(
        url + "/v1/traces",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": headers,
        },
        timeout=10,
    )


def test_a_preflight_from_an_allowed_origin_is_answered(cors_receiver) -> None:
    exact = _preflight(cors_receiver, "https://app.example.test")
    wildcard = _preflight(cors_receiver, "http://eu.shop.test:8080", "content-type, x-api-key")

    assert exact.status_code == 204
    assert exact.headers["Access-Control-Allow-Origin"] == "https://app.example.test"
    assert exact.headers["Access-Control-Allow-Methods"] == "POST"
    assert exact.headers["Access-Control-Allow-Headers"] == "content-type, authorization"
    assert exact.headers["Access-Control-Max-Age"] == "600"
    assert exact.headers["Vary"] == "Origin"
    assert wildcard.status_code == 204
    assert wildcard.headers["Access-Control-Allow-Origin"] == "http://eu.shop.test:8080"
    assert wildcard.headers["Access-Control-Allow-Headers"] == "content-type, x-api-key"


def test_a_preflight_from_another_origin_or_with_other_headers_is_refused(cors_receiver) -> None:
    other = _preflight(cors_receiver, "https://evil.example.test")
    lookalike = _preflight(cors_receiver, "https://app.example.test.evil.test")
    no_port = _preflight(cors_receiver, "http://shop.test")
    header = _preflight(cors_receiver, "https://app.example.test", "content-type, x-debug")

    for response in (other, lookalike, no_port, header):
        assert response.status_code == 403
        assert "Access-Control-Allow-Origin" not in response.headers
    assert _status(other).message == "origin https://evil.example.test is not allowed"
    assert _status(header).message == "request header(s) not allowed: x-debug"


def test_answers_to_an_allowed_origin_can_be_read_by_the_page(cors_receiver, api_key) -> None:
    trace = micro_model_trace()
    body = trace.request().SerializeToString()

    allowed = _post(cors_receiver, body, api_key, Origin="https://app.example.test")
    refused = _post(cors_receiver, body, "wrong-key", Origin="https://app.example.test")
    other = _post(cors_receiver, body, api_key, Origin="https://evil.example.test")

    assert allowed.status_code == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example.test"
    assert allowed.headers["Access-Control-Expose-Headers"] == "Retry-After"
    assert refused.status_code == 401
    assert refused.headers["Access-Control-Allow-Origin"] == "https://app.example.test"
    # Not a browser's request (no preflight passed): stored, but the page may not read it.
    assert other.status_code == 200
    assert "Access-Control-Allow-Origin" not in other.headers
    assert Span.objects.filter(trace_id=trace.trace_id).count() == 3


def test_without_configured_origins_there_is_no_cors(receiver) -> None:
    response = _preflight(receiver, "https://app.example.test")

    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Vary" not in response.headers


@pytest.fixture
def page_server() -> Iterator[int]:
    """A plain page on a loopback port of its own: the origin a browser exporter runs in."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<!doctype html><title>app</title>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_port
    server.shutdown()
    server.server_close()


@pytest.fixture
def page_receiver(settings: Any, page_server: int) -> Iterator[str]:
    """A receiver that allows the page server's origin (127.0.0.1 and its port)."""
    settings.MICROLENS_OTLP_CORS_ORIGINS = [f"http://127.0.0.1:{page_server}"]
    yield from _serve(build_app())


def test_a_web_page_exports_to_the_receiver_from_a_real_browser(
    page_receiver: str, page_server: int, api_key: str
) -> None:
    """Chromium itself sends the preflight and the POST, from a page whose origin is
    allowed, and from one whose origin is not (the browser then never sends the POST)."""
    from tests.browser import launch_chromium_or_skip

    allowed_origin = f"http://127.0.0.1:{page_server}"
    other_origin = f"http://localhost:{page_server}"
    allowed, refused = micro_model_trace(), micro_model_trace()
    script = """async ([url, key, body]) => {
        try {
            const r = await fetch(url, {method: "POST", body: body, headers: {
                "Content-Type": "application/json", "Authorization": "Bearer " + key}});
            return {status: r.status, body: await r.json()};
        } catch (e) { return {error: String(e)}; }
    }"""
    results = {}
    with launch_chromium_or_skip() as browser:
        for origin, trace in ((allowed_origin, allowed), (other_origin, refused)):
            page = browser.new_page()
            page.goto(origin + "/")
            body = json.dumps(_otlp_json(trace.request()))
            results[origin] = page.evaluate(script, [page_receiver + "/v1/traces", api_key, body])
            page.close()

    assert results[allowed_origin] == {"status": 200, "body": {"partialSuccess": {}}}
    assert Span.objects.filter(trace_id=allowed.trace_id).count() == 3
    assert results[other_origin] == {"error": "TypeError: Failed to fetch"}
    assert Span.objects.filter(trace_id=refused.trace_id).count() == 0
