"""PostgreSQL stops in the middle of a load: the receiver answers UNAVAILABLE, the real
SDK exporters retry, and once the database is back every span lands exactly once."""

from __future__ import annotations

import os
import shutil
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
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from microlens.postgres import EmbeddedPostgres, free_port

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
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args], env=env, check=True, capture_output=True
    )


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
        time.sleep(1.5)  # let at least one export fail against the stopped database
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
