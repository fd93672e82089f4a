"""PostgreSQL stops, or freezes, in the middle of a load: the receivers answer
UNAVAILABLE / 503 (within their bound, not at the client's timeout), the real SDK
exporters retry, and once the database is back every span lands exactly once."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import psycopg
import pytest
import requests
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from microlens.postgres import EmbeddedPostgres, free_port
from tests.builders import micro_model_trace

ROOT = Path(__file__).resolve().parent.parent.parent
KEY = "ml_outage_test_key_0123456789abcdef"

pytestmark = pytest.mark.slow


@pytest.fixture
def own_cluster() -> Iterator[EmbeddedPostgres]:
    """A cluster of this test's own, so it can be stopped without harming the others."""
    root = Path(tempfile.mkdtemp(prefix="microlens-outage-pg-"))
    root.chmod(0o755)
    cluster = EmbeddedPostgres(root, port=free_port())
    cluster.start()
    yield cluster
    cluster.stop()
    shutil.rmtree(root, ignore_errors=True)


def _manage(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, f"manage.py {' '.join(args)} failed:\n{done.stderr}"


def _wait_for_log(path: Path, text: bytes, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_bytes():
        assert time.monotonic() < deadline, f"{text!r} never logged"
        time.sleep(0.05)


def _wait_for_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def test_spans_exported_while_postgres_is_down_land_once_it_is_back(
    own_cluster: EmbeddedPostgres, tmp_path: Path
) -> None:
    env = {**os.environ, "DATABASE_URL": own_cluster.url, "MICROLENS_PG_FSYNC": "off"}
    _manage(env, "migrate", "--noinput")
    _manage(
        env,
        "shell",
        "-c",
        "from tracestore.services import create_project, issue_api_key;"
        f"issue_api_key(create_project('default').id, raw_key='{KEY}')",
    )
    port = free_port()
    log_path = tmp_path / "receiver.log"
    with log_path.open("wb") as log:
        receiver = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "run_receiver", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_port(port)
        provider = TracerProvider(resource=Resource.create({"service.name": "outage"}))
        exporter = OTLPSpanExporter(
            endpoint=f"127.0.0.1:{port}",
            insecure=True,
            headers={"authorization": f"Bearer {KEY}"},
            compression=grpc.Compression.Gzip,
            timeout=60,
        )
        provider.add_span_processor(
            BatchSpanProcessor(exporter, schedule_delay_millis=100, max_export_batch_size=50)
        )
        tracer = provider.get_tracer("outage-test")

        def emit(count: int, label: str) -> None:
            for i in range(count):
                with tracer.start_as_current_span(f"{label}-{i}", attributes={"phase": label}):
                    pass

        emit(200, "before")
        assert provider.force_flush(30_000)

        own_cluster.stop()
        emit(300, "during")  # the exporter gets UNAVAILABLE and backs off
        # At least one export failed against the stopped database before it comes back.
        _wait_for_log(log_path, b"ingest.storage_unavailable")
        own_cluster.start()
        emit(100, "after")
        assert provider.force_flush(60_000)
        provider.shutdown()

        with psycopg.connect(own_cluster.url) as conn:
            rows = conn.execute(
                "SELECT attributes->>'phase', count(*), count(DISTINCT span_id) "
                "FROM tracestore_span GROUP BY 1 ORDER BY 1"
            ).fetchall()
        assert rows == [("after", 100, 100), ("before", 200, 200), ("during", 300, 300)]
    finally:
        receiver.terminate()
        receiver.wait(15)
    # the outage was real: the receiver refused at least one export while it lasted
    assert b"ingest.storage_unavailable" in log_path.read_bytes()


# -- a frozen database ----------------------------------------------------------------------


def _signal_cluster(cluster: EmbeddedPostgres, signum: int) -> None:
    """``signum`` to the postmaster and every backend of this test's own cluster."""
    assert cluster.process is not None
    postmaster = cluster.process.pid
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[1]) == postmaster:
            children.append(int(stat.parent.name))
    # Stopped first, the postmaster forks no new backend meanwhile; resumed last.
    order = [postmaster, *children] if signum == signal.SIGSTOP else [*children, postmaster]
    for pid in order:
        os.kill(pid, signum)


def _start(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _grpc_answer(port: int, body: bytes) -> tuple[str, int]:
    method = grpc.insecure_channel(f"127.0.0.1:{port}").unary_unary(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
    )
    try:
        method(body, metadata=(("authorization", f"Bearer {KEY}"),), timeout=CLIENT_TIMEOUT)
    except grpc.RpcError as error:
        trailing = dict(error.trailing_metadata() or ())
        retry = error_details_pb2.RetryInfo.FromString(
            trailing.get("google.rpc.retryinfo-bin", b"")
        )
        return error.code().name, retry.retry_delay.seconds
    return "OK", 0


def _http_answer(port: int, body: bytes) -> tuple[int, str, int]:
    response = requests.post(
        f"http://127.0.0.1:{port}/v1/traces",
        data=body,
        headers={"Content-Type": "application/x-protobuf", "x-api-key": KEY},
        timeout=CLIENT_TIMEOUT,
    )
    if response.status_code == 200:
        return 200, "", 0
    answer = status_pb2.Status.FromString(response.content)
    return (
        response.status_code,
        code_pb2.Code.Name(answer.code),
        int(response.headers["Retry-After"]),
    )


# Far above the receivers' bound: an answer, not the client giving up, ends each export.
CLIENT_TIMEOUT = 60


def test_with_postgres_frozen_the_receivers_answer_unavailable_and_the_spans_land_after(
    own_cluster: EmbeddedPostgres, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": own_cluster.url,
        "MICROLENS_PG_FSYNC": "off",
        "MICROLENS_INGEST_DB_TIMEOUT_SECONDS": "1",
        "MICROLENS_DB_CONNECT_TIMEOUT_SECONDS": "2",
    }
    _manage(env, "migrate", "--noinput")
    _manage(
        env,
        "shell",
        "-c",
        "from tracestore.services import create_project, issue_api_key;"
        f"issue_api_key(create_project('default').id, raw_key='{KEY}')",
    )
    grpc_port, http_port = free_port(), free_port()
    grpc_log, http_log = tmp_path / "grpc.log", tmp_path / "http.log"
    receivers = [
        _start(env, grpc_log, "run_receiver", "--port", str(grpc_port), "--workers", "2"),
        _start(env, http_log, "run_http_receiver", "--port", str(http_port), "--workers", "1"),
    ]
    frozen = False
    try:
        _wait_for_port(grpc_port)
        _wait_for_port(http_port)
        warm = [micro_model_trace().request().SerializeToString() for _ in range(2)]
        # Both receivers hold a connection now (kept between requests).
        deadline = time.monotonic() + 30
        while _http_answer(http_port, warm[1]) != (200, "", 0):
            assert time.monotonic() < deadline, "the HTTP receiver never stored"
            time.sleep(0.2)
        assert _grpc_answer(grpc_port, warm[0]) == ("OK", 0)

        _signal_cluster(own_cluster, signal.SIGSTOP)
        frozen = True
        bodies = [micro_model_trace().request().SerializeToString() for _ in range(4)]
        # The first export on a kept connection (statement sent, never answered), the
        # second on a new one (the connection never completes): each is answered.
        assert _grpc_answer(grpc_port, bodies[0]) == ("UNAVAILABLE", 2)
        assert _grpc_answer(grpc_port, bodies[1]) == ("UNAVAILABLE", 2)
        assert _http_answer(http_port, bodies[2]) == (503, "UNAVAILABLE", 2)
        assert _http_answer(http_port, bodies[3]) == (503, "UNAVAILABLE", 2)

        # Real exporters keep retrying meanwhile; everything lands once PostgreSQL resumes.
        providers = []
        for exporter in (
            OTLPSpanExporter(
                endpoint=f"127.0.0.1:{grpc_port}",
                insecure=True,
                headers={"authorization": f"Bearer {KEY}"},
                timeout=CLIENT_TIMEOUT,
            ),
            HttpSpanExporter(
                endpoint=f"http://127.0.0.1:{http_port}/v1/traces",
                headers={"x-api-key": KEY},
                timeout=CLIENT_TIMEOUT,
            ),
        ):
            provider = TracerProvider(resource=Resource.create({"service.name": "frozen"}))
            provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=100))
            tracer = provider.get_tracer("frozen-test")
            for i in range(50):
                with tracer.start_as_current_span(f"frozen-{i}", attributes={"phase": "frozen"}):
                    pass
            providers.append(provider)
        _wait_for_log(grpc_log, b"ingest.storage_unavailable")
        _signal_cluster(own_cluster, signal.SIGCONT)
        frozen = False
        for provider in providers:
            assert provider.force_flush(CLIENT_TIMEOUT * 1000)
            provider.shutdown()
        for body in bodies:  # the exporters' resend of the refused requests
            assert _grpc_answer(grpc_port, body) == ("OK", 0)

        with psycopg.connect(own_cluster.url) as conn:
            rows = conn.execute(
                "SELECT attributes->>'phase', count(*), count(DISTINCT span_id)"
                " FROM tracestore_span GROUP BY 1"
            ).fetchall()
        # 2 warm-up and 4 refused traces of 3 spans, and the exporters' 2 x 50 spans.
        assert sorted(rows, key=str) == sorted([(None, 18, 18), ("frozen", 100, 100)], key=str)
    finally:
        if frozen:
            _signal_cluster(own_cluster, signal.SIGCONT)
        for receiver in receivers:
            receiver.terminate()
        for receiver in receivers:
            receiver.wait(30)
