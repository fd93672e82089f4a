"""`microlens up` as a user runs it: a real process tree on the embedded default.

All tests share one MICROLENS_HOME (the first start pays for initdb and migrations) but
each runs its own `up`, so any one of them can run alone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from microlens.postgres import SHARED_CLUSTERS, cluster_root_for, free_port
from tests.builders import micro_model_trace

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
API_KEY = "ml_test-up-key-0123456789abcdef"
ADMIN_PASSWORD = "test-up admin password"
START_TIMEOUT = 90.0


@dataclass
class UpRun:
    process: subprocess.Popen[bytes]
    home: Path
    log: Path
    web_port: int
    grpc_port: int
    http_port: int

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.process.poll() is not None:
                pytest.fail(f"up exited with {self.process.returncode}:\n{self.output[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {text!r} within {timeout}s:\n{self.output[-4000:]}")
            time.sleep(0.1)

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"up still running after {timeout}s:\n{self.output[-4000:]}")

    def state(self) -> dict:
        return json.loads((self.home / "run" / "up.json").read_text())

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.web_port}{path}"


def _start_up(home: Path) -> UpRun:
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env.update(
        MICROLENS_HOME=str(home),
        MICROLENS_PG_FSYNC="off",
        MICROLENS_HEARTBEAT_SECONDS="1",
        MICROLENS_BOOTSTRAP_API_KEY=API_KEY,
        MICROLENS_ADMIN_PASSWORD=ADMIN_PASSWORD,
        MICROLENS_WEB_WORKERS="1",
        MICROLENS_RECEIVERS="2",
    )
    web_port, grpc_port, http_port = free_port(), free_port(), free_port()
    log = home.parent / f"up-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "microlens", "up"),
                *("--web-port", str(web_port), "--grpc-port", str(grpc_port)),
                *("--http-port", str(http_port)),
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return UpRun(process, home, log, web_port, grpc_port, http_port)


@pytest.fixture
def up(stack_home: Path) -> Iterator[UpRun]:
    run = _start_up(stack_home)
    yield run
    if run.process.poll() is None:  # a failed test: do not leak the stack
        run.process.send_signal(signal.SIGTERM)
        run.process.wait(30)
    # Shown by pytest when the test failed.
    print(run.output[-6000:])


@pytest.fixture(scope="module")
def stack_home() -> Iterator[Path]:
    # Under root the embedded cluster runs as an unprivileged user, who must be able to
    # traverse the folder: not pytest's tmp_path (0700).
    parent = Path(tempfile.mkdtemp(prefix="microlens-test-up-"))
    parent.chmod(0o755)
    yield parent / "home"
    if not _leftovers(parent / "home", set()):
        shutil.rmtree(parent, ignore_errors=True)


def _leftovers(home: Path, pids: set[int]) -> list[str]:
    """Live processes of a stack on ``home``: by pid, command line or environment."""
    marker = str(home)
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            mine = proc.pid in pids or any(marker in part for part in proc.cmdline())
            if not mine:
                mine = proc.environ().get("MICROLENS_HOME") == marker
            if mine:
                found.append(f"{proc.pid} {' '.join(proc.cmdline())[:200]}")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _wait_no_leftovers(home: Path, pids: set[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (left := _leftovers(home, pids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == []


def _recorded_pids(run: UpRun) -> set[int]:
    state = run.state()
    return {state["pid"], *(child["pid"] for child in state["children"].values())}


def _wait_for_state(run: UpRun, role: str, restarts: int, timeout: float = 60.0) -> dict:
    """The child ``role`` once it runs again after ``restarts`` restarts."""
    deadline = time.monotonic() + timeout
    while True:
        child = run.state()["children"][role]
        if child["restarts"] == restarts and child["state"] == "running":
            return child
        if run.process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{role} not running after {restarts} restarts: {child}\n{run.output}")
        time.sleep(0.1)


def _status_json(run: UpRun) -> tuple[int, dict]:
    result = subprocess.run(
        [sys.executable, "-m", "microlens", "status", "--json", "--home", str(run.home)],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.returncode, json.loads(result.stdout)


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (http only)
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _grpc_health(port: int) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5
        )
    return reply.status


def _grpc_exporter(run: UpRun, key: str) -> SpanExporter:
    return GrpcSpanExporter(
        endpoint=f"127.0.0.1:{run.grpc_port}",
        insecure=True,
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    )


def _http_exporter(run: UpRun, key: str) -> SpanExporter:
    return HttpSpanExporter(
        endpoint=f"http://127.0.0.1:{run.http_port}/v1/traces",
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    )


def _export_one_trace(exporter: SpanExporter) -> SpanExportResult:
    return _export_traced(exporter)[0]


def _export_traced(exporter: SpanExporter) -> tuple[SpanExportResult, str]:
    """Export one two-span trace; the result and the trace id (hex)."""
    captured = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "test-up"}))
    provider.add_span_processor(SimpleSpanProcessor(captured))
    with provider.get_tracer("test-up").start_as_current_span("request"):
        with provider.get_tracer("test-up").start_as_current_span("intent-classifier") as span:
            span.set_attribute("micro_model.name", "intent-classifier")
    spans = captured.get_finished_spans()
    try:
        return exporter.export(spans), f"{spans[0].context.trace_id:032x}"
    finally:
        exporter.shutdown()
        provider.shutdown()


def _raw_grpc_export(run: UpRun) -> grpc.StatusCode:
    """One export without the SDK's retries: the receiver's own answer."""
    with grpc.insecure_channel(f"127.0.0.1:{run.grpc_port}") as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        try:
            stub.Export(
                micro_model_trace().request(),
                metadata=(("authorization", f"Bearer {API_KEY}"),),
                timeout=20,
            )
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def _raw_http_export(run: UpRun) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{run.http_port}/v1/traces",
        data=micro_model_trace().request().SerializeToString(),
        headers={"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {API_KEY}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:  # noqa: S310 (http only)
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _api_trace_span_count(run: UpRun, trace_id: str) -> int:
    url = run.url(f"/api/v1/traces/{trace_id}/")
    headers = {"Authorization": f"Bearer {API_KEY}"}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (http only)
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (http only)
        return len(json.loads(response.read())["spans"])


def _api_traces(run: UpRun) -> list[dict]:
    url, headers = run.url("/api/v1/traces/"), {"Authorization": f"Bearer {API_KEY}"}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (http only)
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (http only)
        return json.loads(response.read())["results"]


def _wait_for_worker_heartbeat(run: UpRun, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status, body = _get(run.url("/healthz"))
        health = json.loads(body)
        if status == 200 and health["worker_alive"]:
            return health
        assert time.monotonic() < deadline, f"no worker heartbeat: {health}"
        time.sleep(0.2)


def test_up_serves_everything_and_stops_cleanly_on_sigterm(up: UpRun) -> None:
    up.wait_for_output("microlens is up")
    pids = _recorded_pids(up)
    # two gRPC receiver processes share the port
    assert {"receiver", "receiver-2"} <= set(up.state()["children"])

    assert _grpc_health(up.grpc_port) == health_pb2.HealthCheckResponse.SERVING
    assert _export_one_trace(_grpc_exporter(up, API_KEY)) == SpanExportResult.SUCCESS
    assert _export_one_trace(_grpc_exporter(up, "ml_wrong")) == SpanExportResult.FAILURE
    assert _export_one_trace(_http_exporter(up, API_KEY)) == SpanExportResult.SUCCESS
    status, body = _get(up.url("/admin/login/"))
    assert status == 200 and b"csrfmiddlewaretoken" in body
    status, body = _get(up.url("/static/admin/css/base.css"))
    assert status == 200 and b"body" in body
    health = _wait_for_worker_heartbeat(up)
    assert health["database"] == "ok" and health["status"] == "ok"
    status_cmd = subprocess.run(
        [sys.executable, "-m", "microlens", "status", "--home", str(up.home)],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert status_cmd.returncode == 0, status_cmd.stdout + status_cmd.stderr
    assert "worker      alive" in status_cmd.stdout
    demo = subprocess.run(
        [
            *(sys.executable, "-m", "microlens", "demo", "--home", str(up.home)),
            *("--traces", "20", "--api-key", API_KEY),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "sent 20 traces" in demo.stdout
    traces = _api_traces(up)
    assert sorted({t["root_name"] for t in traces}) == ["chat.request", "request"]
    assert len(traces) == 22  # the demo's and two exported above, not the refused one
    # A second `up` on the same home is refused instead of fighting over the cluster.
    second = subprocess.run(
        [sys.executable, "-m", "microlens", "up", "--home", str(up.home)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 1
    assert "another `microlens up` is running" in second.stdout
    # The fixed secrets were used, not echoed.
    assert "API key     from MICROLENS_BOOTSTRAP_API_KEY" in up.output
    assert "password from MICROLENS_ADMIN_PASSWORD" in up.output
    assert API_KEY not in up.output and ADMIN_PASSWORD not in up.output

    started = time.monotonic()
    up.process.send_signal(signal.SIGTERM)

    assert up.wait_exit(15) == 0
    assert time.monotonic() - started < 15
    _wait_no_leftovers(up.home, pids, timeout=2)
    assert up.output.rstrip().endswith("[microlens] stopped")
    assert not (up.home / "run" / "database_url").exists()
    assert not (up.home / "run" / "up.json").exists()


def test_a_sigkilled_up_leaves_nothing_and_the_next_up_starts(up: UpRun) -> None:
    up.wait_for_output("microlens is up")
    pids = _recorded_pids(up)

    up.process.kill()
    up.process.wait()

    _wait_no_leftovers(up.home, pids, timeout=20)
    again = _start_up(up.home)
    try:
        again.wait_for_output("microlens is up")
        assert _grpc_health(again.grpc_port) == health_pb2.HealthCheckResponse.SERVING
    finally:
        again.process.send_signal(signal.SIGTERM)
    assert again.wait_exit(15) == 0


def test_killed_children_are_restarted_while_the_others_keep_serving(up: UpRun) -> None:
    up.wait_for_output("microlens is up")
    before = up.state()["children"]
    worker, receiver = before["worker"]["pid"], before["receiver"]["pid"]

    os.kill(worker, signal.SIGKILL)  # what the OOM killer does

    # The receivers and the web answer while the worker is down or coming back.
    result, trace_id = _export_traced(_grpc_exporter(up, API_KEY))
    assert result == SpanExportResult.SUCCESS
    assert _export_one_trace(_http_exporter(up, API_KEY)) == SpanExportResult.SUCCESS
    assert _api_trace_span_count(up, trace_id) == 2
    restarted = _wait_for_state(up, "worker", restarts=1)
    assert restarted["pid"] != worker
    assert restarted["last_exit"] == "was killed by SIGKILL"
    assert f"worker (pid {worker}) was killed by SIGKILL; restarting it in 0.5s" in up.output

    os.kill(receiver, signal.SIGKILL)

    assert _wait_for_state(up, "receiver", restarts=1)["pid"] != receiver
    assert _export_one_trace(_grpc_exporter(up, API_KEY)) == SpanExportResult.SUCCESS
    _wait_for_worker_heartbeat(up)
    code, status = _status_json(up)
    assert code == 0
    assert status["supervisor"]["running"] is True
    restarts = {role: child["restarts"] for role, child in status["children"].items()}
    assert restarts == {
        "receiver": 1,
        "receiver-2": 0,
        "http-receiver": 0,
        "web": 0,
        "worker": 1,
        "beat": 0,
        "postgres": 0,
    }
    assert all(child["alive"] for child in status["children"].values())
    text = subprocess.run(
        [sys.executable, "-m", "microlens", "status", "--home", str(up.home)],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    worker_line = next(line for line in text.splitlines() if line.startswith("  worker "))
    assert worker_line.startswith(
        f"  worker       pid {restarted['pid']} running, restarts 1 (last: was killed by SIGKILL"
    )
    assert up.process.poll() is None

    up.process.send_signal(signal.SIGINT)
    assert up.wait_exit(15) == 0


def test_a_killed_postgres_is_recovered_and_spans_sent_after_are_stored(up: UpRun) -> None:
    up.wait_for_output("microlens is up")
    before = up.state()["children"]
    postmaster = before["postgres"]["pid"]

    # `up` paused, the database stays down: the receivers answer, asking for a retry.
    up.process.send_signal(signal.SIGSTOP)
    try:
        os.kill(postmaster, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while psutil.Process(postmaster).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        down = (_raw_grpc_export(up), _raw_http_export(up))
    finally:
        up.process.send_signal(signal.SIGCONT)
    assert down == (grpc.StatusCode.UNAVAILABLE, 503)

    back = _wait_for_state(up, "postgres", restarts=1)
    assert back["pid"] != postmaster
    assert back["last_exit"] == "was killed by SIGKILL"
    # The receivers' connections died with the server: they reconnect by themselves.
    grpc_result, grpc_trace = _export_traced(_grpc_exporter(up, API_KEY))
    http_result, http_trace = _export_traced(_http_exporter(up, API_KEY))
    assert (grpc_result, http_result) == (SpanExportResult.SUCCESS, SpanExportResult.SUCCESS)
    assert _api_trace_span_count(up, grpc_trace) == 2
    assert _api_trace_span_count(up, http_trace) == 2
    _, status = _status_json(up)
    assert status["children"]["postgres"]["restarts"] == 1
    assert status["database"] == {"ok": True, "error": None}
    assert "PostgreSQL is back" in up.output
    # Nothing else was restarted, and the worker writes its heartbeats again.
    after = up.state()["children"]
    assert {role: after[role]["pid"] for role in before if role != "postgres"} == {
        role: before[role]["pid"] for role in before if role != "postgres"
    }
    _wait_for_worker_heartbeat(up)
    assert up.process.poll() is None

    up.process.send_signal(signal.SIGTERM)
    assert up.wait_exit(20) == 0


def test_a_deleted_broker_folder_is_recreated_and_work_goes_on(up: UpRun) -> None:
    up.wait_for_output("microlens is up")
    _wait_for_worker_heartbeat(up)

    shutil.rmtree(up.home / "broker")
    deleted = time.monotonic()

    deadline = time.monotonic() + 10
    while not (up.home / "broker" / "queue").is_dir():
        assert time.monotonic() < deadline, up.output
        time.sleep(0.1)
    assert f"broker folder {up.home / 'broker' / 'queue'} was missing; recreated it" in up.output
    # Beat's heartbeats reach the worker through the new folder: one recorded after it.
    deadline = time.monotonic() + 30
    while True:
        age = _wait_for_worker_heartbeat(up)["worker_heartbeat_age_seconds"]
        if age < time.monotonic() - deleted - 0.5:
            break
        assert time.monotonic() < deadline, up.output
        time.sleep(0.2)
    assert _export_one_trace(_grpc_exporter(up, API_KEY)) == SpanExportResult.SUCCESS
    assert up.process.poll() is None

    up.process.send_signal(signal.SIGTERM)
    assert up.wait_exit(20) == 0


def test_a_child_that_keeps_failing_at_start_stops_the_stack(up: UpRun) -> None:
    up.wait_for_output("microlens is up")
    web = up.state()["children"]["web"]["pid"]
    # Something else takes the web port while the web is down: every restart fails to bind
    # it. (`up` is paused meanwhile, so that its restart does not win the port first.)
    up.process.send_signal(signal.SIGSTOP)
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
        try:
            os.killpg(web, signal.SIGKILL)  # the web and its workers, which share the port
            deadline = time.monotonic() + 10
            while True:
                try:
                    squatter.bind(("127.0.0.1", up.web_port))
                    break
                except OSError:  # until the kernel has closed the dead workers' socket
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
            squatter.listen()
        finally:
            up.process.send_signal(signal.SIGCONT)

        assert up.wait_exit(120) == 1

    assert "web (pid" in up.output and "within 60s of its start: giving up" in up.output
    assert "[microlens] web keeps failing (last: exited with code 1); stopping everything" in (
        up.output
    )
    assert up.output.rstrip().endswith("[microlens] stopped")


def test_up_starts_inside_a_private_folder_and_its_cluster_goes_with_it() -> None:
    # mktemp -d: 0700, as root's home or many containers' working folders are.
    private = Path(tempfile.mkdtemp(prefix="microlens-test-private-"))
    assert private.stat().st_mode & 0o777 == 0o700
    home = private / "checkout" / ".microlens"
    home.parent.mkdir()
    run = _start_up(home)
    try:
        run.wait_for_output("microlens is up")
        result, trace_id = _export_traced(_grpc_exporter(run, API_KEY))
        assert result == SpanExportResult.SUCCESS
        assert _api_trace_span_count(run, trace_id) == 2
        cluster = (home / "postgres").resolve()
        if os.geteuid() == 0:  # the unprivileged cluster user cannot enter `private`
            assert (home / "postgres").is_symlink()
            assert cluster.parent == SHARED_CLUSTERS
            assert (cluster / "home").read_text() == f"{home}\n"
            assert private.stat().st_mode & 0o777 == 0o700  # left as it was
        run.process.send_signal(signal.SIGINT)
        assert run.wait_exit(20) == 0
    except BaseException:
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait()
        shutil.rmtree((home / "postgres").resolve(), ignore_errors=True)
        shutil.rmtree(private, ignore_errors=True)
        raise
    finally:
        print(run.output[-6000:])

    shutil.rmtree(private)
    # The next stack started anywhere removes the cluster of the deleted folder.
    other = Path(tempfile.mkdtemp(prefix="microlens-test-private-"))
    try:
        cluster_root_for(other / ".microlens")
        assert not cluster.exists()
    finally:
        shutil.rmtree((other / ".microlens" / "postgres").resolve(), ignore_errors=True)
        shutil.rmtree(other)


def test_a_taken_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = subprocess.run(
            [
                *(sys.executable, "-m", "microlens", "up", "--home", str(home)),
                *("--grpc-port", str(port), "--web-port", str(free_port())),
                *("--http-port", str(free_port())),
            ],
            cwd=REPO,
            env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
            capture_output=True,
            text=True,
            timeout=30,
        )

    assert result.returncode == 1
    assert f"cannot use 127.0.0.1:{port} for OTLP gRPC: Address already in use" in result.stdout
    assert not (home / "postgres").exists()
