"""The README's first command as a new user runs it, for CI (``.ci/run`` runs this after
``bin/test``; ``.venv/bin/python tests/smoke_up.py`` runs it by hand).

A clean clone of this checkout (committed state only) inside a private ``mktemp -d``
folder runs ``bin/microlens up`` with its own virtualenv, which therefore holds only the
runtime dependencies (``requirements/base.in``; pip's cache makes it minutes, not more),
its own state folder and free ports. Traces sent with the real OpenTelemetry SDK over gRPC
and HTTP must be readable through the REST API, every child must be running without a
single restart, the worker's heartbeat must arrive, and Ctrl-C (SIGINT) must stop it all
with status 0 and nothing left behind. Exit status 0 when all of that held.

Runs with the test virtualenv (it needs the SDK's HTTP exporter and psutil, which the
stack itself does not).
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
import urllib.error
import urllib.request
from pathlib import Path

import psutil
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

REPO = Path(__file__).resolve().parent.parent
# The first start creates the virtualenv and installs the base set (PyTorch's CPU build
# included): generous, but bounded.
INSTALL_AND_START_TIMEOUT = 1200.0
STOP_TIMEOUT = 30.0


class SmokeFailure(Exception):
    pass


def say(message: str) -> None:
    print(f"[smoke] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_environment(checkout: Path, venv: Path) -> dict[str, str]:
    """What a user's shell has: none of this project's settings, no active virtualenv."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MICROLENS_", "DJANGO_", "CELERY_"))
        and key not in {"DATABASE_URL", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}
    }
    env["PATH"] = os.pathsep.join(
        entry
        for entry in os.environ.get("PATH", "").split(os.pathsep)
        if entry and not Path(entry).resolve().is_relative_to(REPO)
    )
    env.update(
        MICROLENS_HOME=str(checkout / ".microlens"),
        MICROLENS_VENV=str(venv),
        MICROLENS_WEB_PORT=str(free_port()),
        MICROLENS_GRPC_PORT=str(free_port()),
        MICROLENS_HTTP_PORT=str(free_port()),
    )
    return env


def export_trace(exporter: SpanExporter, service: str) -> str:
    """One two-span trace through ``exporter``; its trace id (hex)."""
    captured = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(captured))
    tracer = provider.get_tracer("smoke")
    with tracer.start_as_current_span("smoke.request"):
        with tracer.start_as_current_span("intent-classifier") as span:
            span.set_attribute("micro_model.name", "intent-classifier")
            span.set_attribute("micro_model.label", "billing")
    spans = captured.get_finished_spans()
    try:
        result = exporter.export(spans)
    finally:
        exporter.shutdown()
        provider.shutdown()
    if result != SpanExportResult.SUCCESS:
        raise SmokeFailure(f"{service}: export answered {result}")
    return f"{spans[0].context.trace_id:032x}"


def get_json(url: str, api_key: str | None = None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (our own URL)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    except (urllib.error.URLError, OSError):
        return 0, {}  # not answering


def wait_for(what: str, check, timeout: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise SmokeFailure(f"`up` exited with {process.returncode} while waiting for {what}")
        if check():
            return
        if time.monotonic() > deadline:
            raise SmokeFailure(f"no {what} within {timeout:.0f}s")
        time.sleep(0.5)


def leftovers(checkout: Path) -> list[str]:
    marker = str(checkout)
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
                continue
            cmdline = " ".join(proc.cmdline())
            if marker in cmdline or proc.environ().get("MICROLENS_HOME", "").startswith(marker):
                found.append(f"{proc.pid} {cmdline[:160]}")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def run_stack(checkout: Path, env: dict[str, str], log: Path) -> None:
    web = f"http://127.0.0.1:{env['MICROLENS_WEB_PORT']}"
    say(f"bin/microlens up in {checkout} (first start installs {env['MICROLENS_VENV']})")
    started = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["bin/microlens", "up"], cwd=checkout, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for(
            '"microlens is up"',
            lambda: "microlens is up" in log.read_text(errors="replace"),
            INSTALL_AND_START_TIMEOUT,
            process,
        )
        say(f"up after {time.monotonic() - started:.0f}s")
        api_key = json.loads((checkout / ".microlens" / "credentials").read_text())["api_key"]
        headers = {"authorization": f"Bearer {api_key}"}
        grpc_trace = export_trace(
            GrpcSpanExporter(
                endpoint=f"127.0.0.1:{env['MICROLENS_GRPC_PORT']}",
                insecure=True,
                headers=headers,
                timeout=30,
            ),
            "smoke-grpc",
        )
        http_trace = export_trace(
            HttpSpanExporter(
                endpoint=f"http://127.0.0.1:{env['MICROLENS_HTTP_PORT']}/v1/traces",
                headers=headers,
                timeout=30,
            ),
            "smoke-http",
        )
        for trace_id in (grpc_trace, http_trace):
            status, body = get_json(f"{web}/api/v1/traces/{trace_id}/", api_key)
            names = sorted(span["name"] for span in body.get("spans", []))
            if status != 200 or names != ["intent-classifier", "smoke.request"]:
                raise SmokeFailure(f"trace {trace_id} through the API: {status} {names}")
        say("2 traces sent over gRPC and OTLP/HTTP read back through the REST API")
        wait_for(
            "worker heartbeat",
            lambda: get_json(f"{web}/healthz")[1].get("worker_alive") is True,
            120,
            process,
        )
        status_run = subprocess.run(
            ["bin/microlens", "status", "--json"],
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        report = json.loads(status_run.stdout or "{}")
        children = report.get("children", {})
        unhealthy = {
            role: child
            for role, child in children.items()
            if child["restarts"] or child["state"] != "running" or not child["alive"]
        }
        if status_run.returncode != 0 or not children or unhealthy:
            raise SmokeFailure(f"status: {status_run.returncode} {unhealthy or report}")
        say(f"status ok: {', '.join(children)} running, no restarts; worker alive")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            code = process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise SmokeFailure(f"`up` still running {STOP_TIMEOUT:.0f}s after SIGINT") from None
    if code != 0 or not log.read_text(errors="replace").rstrip().endswith("[microlens] stopped"):
        raise SmokeFailure(f"`up` stopped with status {code} after SIGINT")
    deadline = time.monotonic() + 5
    while (left := leftovers(checkout)) and time.monotonic() < deadline:
        time.sleep(0.2)
    if left:
        raise SmokeFailure(f"processes left after `up` stopped: {left}")
    say("SIGINT: stopped with status 0, nothing left running")


def main() -> int:
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if dirty:
        say("note: uncommitted changes are not part of the clone under test")
    # mktemp -d: a private (0700) folder, as a root user's home is.
    work = Path(tempfile.mkdtemp(prefix="microlens-smoke-"))
    checkout, log = work / "microlens", work / "up.log"
    try:
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(checkout)], check=True)
        run_stack(checkout, clean_environment(checkout, work / "venv"), log)
    except SmokeFailure as exc:
        if log.exists():
            print(log.read_text(errors="replace")[-8000:], file=sys.stderr)
        say(f"FAILED: {exc}")
        return 1
    finally:
        # A cluster placed outside the private folder (see microlens/postgres.py) goes too.
        cluster = checkout / ".microlens" / "postgres"
        if cluster.is_symlink():
            shutil.rmtree(cluster.resolve(), ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    say("passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
