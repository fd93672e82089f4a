"""Chaos benchmark: a running ``microlens up`` under faults, with exact accounting.

    bin/bench chaos.py                      # 240 s of traffic, 6,000 spans
    bin/bench chaos.py --duration 600 --spans 20000

Starts ``microlens up`` on a fresh ``MICROLENS_HOME`` and free ports (two gRPC receiver
processes, one OTLP/HTTP receiver), then sends a fixed number of spans through the real
OpenTelemetry SDK exporters, half over gRPC and half over OTLP/HTTP, paced over
``--duration``. Among them, by construction:

- spans with invalid ids (trace id or span id all zero): the only ones the receivers may
  refuse (OTLP partial success); they are the *permanently rejected*;
- poison attribute values (token counts of +Inf, ``"1e400"``, an integer string beyond
  int64, ``retry.attempt`` of -Inf, a NaN confidence): valid spans that must be stored;
- root spans with a start time of 0 (replaced by the receive time): a re-send must not
  store them twice.

Every micro-model span is a fallback decision, so the scheduler must give each one
evaluation jobs whatever the sample rate. While the spans flow, on a schedule scaled to
``--duration``:

1. ``pg_terminate_backend`` on every backend seen running a ``COPY``, for 5 s;
2. ``kill -9`` of the postmaster;
3. ``SIGSTOP`` of the postmaster and all its backends for ``--freeze`` (20) seconds;
4. ``SIGKILL`` of the Celery worker;
5. ``SIGKILL`` of one gRPC receiver;
6. the broker folder (``MICROLENS_HOME/broker``) deleted.

Each fault waits for the previous one's parts to come back (or ``--recovery-timeout``).
Nothing is done by hand between them: whatever comes back, ``up`` brought back.

Reported: spans sent, permanently rejected, acknowledged (exports the SDK reported as
successful), stored (distinct span ids in PostgreSQL), duplicates (rows beyond one per
span id), acknowledged spans missing from the database, exports the SDK gave up on,
evaluations lost (stored fallback spans without a job, and jobs not done at the end), and
per fault the time each part took to come back: the database (a new connection answers),
the killed process (a new one of its role runs), the worker and the broker (a heartbeat
newer than the fault: beat -> broker -> worker -> database), ingest (the first export
started after the fault that succeeded), and ``up`` itself (still running).

The invariant, checked for the whole run: **stored == sent - permanently rejected,
duplicates 0, no acknowledged span missing, no evaluation lost, every part back by
itself** (and ``up`` still running). The exit status is 1 when it does not hold.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

API_KEY = "ml_chaos-bench-key-0123456789abcdef"
ADMIN_PASSWORD = "chaos bench admin password"  # noqa: S105 (a throwaway stack)
MICRO_MODEL = "chaos-router"


# -- the stack ----------------------------------------------------------------------------


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    home: Path
    log: Path
    grpc_port: int
    http_port: int
    web_port: int
    # Every process seen in the stack's tree (pid -> create time), so that none outlives
    # the run, whatever state ``up`` ends in.
    seen: dict[int, float] = field(default_factory=dict)

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def tree(self) -> list[Any]:
        import psutil

        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                self.seen.setdefault(child.pid, child.create_time())
        return children

    def role_processes(self, role: str) -> list[Any]:
        import psutil

        found = []
        for proc in self.tree():
            try:
                if _role_of(proc) == role:
                    found.append(proc)
            except psutil.NoSuchProcess:
                continue
        return found

    def database_url(self) -> str | None:
        path = self.home / "run" / "database_url"
        return path.read_text().strip() if path.exists() else None


def _role_of(proc: Any) -> str:
    cmdline = " ".join(proc.cmdline())
    if "run_http_receiver" in cmdline:
        return "http-receiver"
    if "run_receiver" in cmdline:
        return "receiver"
    if "celery" in cmdline and " worker" in cmdline:
        return "worker"
    if "celery" in cmdline and " beat" in cmdline:
        return "beat"
    if proc.name() == "postgres":
        parent = proc.parent()
        return "postgres" if parent is None or parent.name() != "postgres" else "backend"
    return "other"


def start_stack(parent: Path, receivers: int) -> Stack:
    from microlens.postgres import free_port

    home = parent / "home"
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env.update(
        MICROLENS_HOME=str(home),
        MICROLENS_PG_FSYNC="off",
        MICROLENS_HEARTBEAT_SECONDS="1",
        MICROLENS_BOOTSTRAP_API_KEY=API_KEY,
        MICROLENS_ADMIN_PASSWORD=ADMIN_PASSWORD,
        MICROLENS_WEB_WORKERS="1",
        MICROLENS_RECEIVERS=str(receivers),
        # Evaluations within the run: traces quiet for 5 s, scheduled and swept every 5 s,
        # a lost message re-sent after 15 s, a dead worker's claim taken over after 30 s.
        MICROLENS_EVAL_QUIET_SECONDS="5",
        MICROLENS_EVAL_SCHEDULE_SECONDS="5",
        MICROLENS_EVAL_REDISPATCH_SECONDS="15",
        MICROLENS_EVAL_LEASE_SECONDS="30",
    )
    grpc_port, http_port, web_port = free_port(), free_port(), free_port()
    log = parent / "up.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "microlens", "up"),
                *("--grpc-port", str(grpc_port), "--http-port", str(http_port)),
                *("--web-port", str(web_port)),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Stack(process, home, log, grpc_port, http_port, web_port)


def wait_up(stack: Stack, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while "microlens is up" not in stack.output:
        if not stack.alive() or time.monotonic() > deadline:
            sys.exit(f"chaos: `microlens up` did not start:\n{stack.output[-4000:]}")
        time.sleep(0.5)
    stack.tree()


def stop_stack(stack: Stack) -> None:
    import psutil

    if stack.alive():
        stack.process.send_signal(signal.SIGINT)
        try:
            stack.process.wait(60)
        except subprocess.TimeoutExpired:
            stack.process.kill()
            stack.process.wait()
    # Anything of the stack's tree still running (a child `up` lost track of).
    for pid, created in stack.seen.items():
        try:
            proc = psutil.Process(pid)
            if proc.create_time() == created:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
        except psutil.NoSuchProcess:
            continue


# -- the spans ------------------------------------------------------------------------------


@dataclass
class Batch:
    protocol: str
    spans: list[Any]
    valid: list[tuple[bytes, bytes]]  # ids of the spans that must be stored
    bad: int
    poison: int
    started: float = 0.0
    finished: float = 0.0
    ok: bool | None = None
    answer: str = ""  # the last failure the exporter logged for it (code or "timeout")


def build_batches(total: int, batch_size: int, prefix: bytes) -> list[Batch]:
    """Traces of two spans (a root and a micro-model decision), alternately for gRPC and
    HTTP: 1 trace in 20 has a child with an all-zero trace id or span id, 1 in 60 carries
    poison values, 1 in 25 has a root starting at 0."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

    resource = Resource.create({"service.name": "chaos", "user.tier": "pro"})
    scope = InstrumentationScope("chaos.bench", "1.0")
    sampled = TraceFlags(TraceFlags.SAMPLED)
    now = time.time_ns()
    per_protocol: dict[str, list[tuple[list[Any], list[tuple[bytes, bytes]], int, int]]] = {
        "grpc": [],
        "http": [],
    }
    made = 0
    n = 0
    while made < total:
        n += 1
        protocol = "grpc" if n % 2 else "http"
        k = n // 2  # the trace's number within its protocol
        trace_id = int.from_bytes(prefix + n.to_bytes(8, "big"), "big")
        root_id, child_id = 2 * n + 1, 2 * n + 2
        start = now + n * 1000
        root_ctx = SpanContext(trace_id, root_id, is_remote=False, trace_flags=sampled)
        root = ReadableSpan(
            name="POST /chat",
            context=root_ctx,
            resource=resource,
            attributes={"language": "en"},
            kind=SpanKind.SERVER,
            start_time=0 if k % 25 == 3 else start,
            end_time=start + 5_000_000,
            instrumentation_scope=scope,
        )
        attributes: dict[str, Any] = {
            "micro_model.name": MICRO_MODEL,
            "micro_model.label": "refund",
            "micro_model.expected_label": "refund",
            "micro_model.confidence": 0.8,
            "route.name": "refunds",
            "route.fallback": True,
            "input.value": f"where is my refund {n}",
            "output.value": "refund",
            "llm.token_count.prompt": 12,
            "llm.token_count.completion": 1,
        }
        poison = int(k % 60 == 30)
        if poison:
            attributes.update(
                {
                    "llm.token_count.prompt": float("inf"),
                    "llm.token_count.completion": "1e400",
                    "gen_ai.usage.input_tokens": "9" * 30,
                    "retry.attempt": float("-inf"),
                    "micro_model.confidence": float("nan"),
                }
            )
        child_trace, child_span, bad = trace_id, child_id, 0
        if k % 20 == 0:
            bad = 1
            if k % 40 == 0:
                child_trace = 0
            else:
                child_span = 0
        child = ReadableSpan(
            name="intent-classifier",
            context=SpanContext(child_trace, child_span, is_remote=False, trace_flags=sampled),
            parent=root_ctx,
            resource=resource,
            attributes=attributes,
            kind=SpanKind.CLIENT,
            start_time=start + 1_000_000,
            end_time=start + 3_000_000,
            instrumentation_scope=scope,
        )
        valid = [(trace_id.to_bytes(16, "big"), root_id.to_bytes(8, "big"))]
        if not bad:
            valid.append((trace_id.to_bytes(16, "big"), child_id.to_bytes(8, "big")))
        per_protocol[protocol].append(([root, child], valid, bad, poison))
        made += 2
    batches = []
    for protocol, traces in per_protocol.items():
        per_batch = max(1, batch_size // 2)
        for i in range(0, len(traces), per_batch):
            chunk = traces[i : i + per_batch]
            batches.append(
                Batch(
                    protocol,
                    [s for spans, _, _, _ in chunk for s in spans],
                    [ids for _, valid, _, _ in chunk for ids in valid],
                    sum(bad for _, _, bad, _ in chunk),
                    sum(poison for _, _, _, poison in chunk),
                )
            )
    return batches


class ExporterAnswers(logging.Handler):
    """The exporters log each failed attempt (the SDK gives export() no reason): the last
    one per sending thread, reduced to its status ("UNKNOWN", "500", "timeout", ...)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.last: dict[int | None, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        found = re.search(r"StatusCode\.(\w+)|code: (\d+)|(timeout)", record.getMessage())
        if found:
            self.last[record.thread] = next(g for g in found.groups() if g)

    def take(self) -> str:
        return self.last.pop(threading.get_ident(), "")


ANSWERS = ExporterAnswers()


def exporter_for(protocol: str, stack: Stack, timeout: float) -> Any:
    headers = {"authorization": f"Bearer {API_KEY}"}
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(
            endpoint=f"127.0.0.1:{stack.grpc_port}", insecure=True, headers=headers, timeout=timeout
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter(
        endpoint=f"http://127.0.0.1:{stack.http_port}/v1/traces", headers=headers, timeout=timeout
    )


def send(
    batches: list[Batch],
    stack: Stack,
    started: float,
    duration: float,
    deadline: float,
    senders: int,
    export_timeout: float,
) -> list[threading.Thread]:
    """Start ``senders`` threads per protocol, each with its own exporter, sending their
    batches paced evenly over ``duration``; none starts a batch after ``deadline`` or once
    ``up`` has exited (those are reported as not sent)."""
    from opentelemetry.sdk.trace.export import SpanExportResult

    threads = []
    for protocol in ("grpc", "http"):
        mine = [b for b in batches if b.protocol == protocol]
        work: queue.Queue[tuple[float, Batch]] = queue.Queue()
        for i, batch in enumerate(mine):
            work.put((started + duration * i / max(len(mine), 1), batch))

        def run(work: queue.Queue[tuple[float, Batch]] = work, protocol: str = protocol) -> None:
            exporter = exporter_for(protocol, stack, export_timeout)
            while True:
                try:
                    due, batch = work.get_nowait()
                except queue.Empty:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if time.monotonic() > deadline or not stack.alive():
                    continue  # left unsent: reported
                batch.started = time.monotonic()
                result = exporter.export(batch.spans)
                batch.finished = time.monotonic()
                batch.ok = result == SpanExportResult.SUCCESS
                batch.answer = ANSWERS.take()
            exporter.shutdown()

        for _ in range(senders):
            thread = threading.Thread(target=run, name=f"send-{protocol}", daemon=True)
            thread.start()
            threads.append(thread)
    return threads


# -- probes ---------------------------------------------------------------------------------


def db_answers(url: str | None) -> bool:
    import psycopg

    if not url:
        return False
    try:
        with psycopg.connect(url, connect_timeout=2, autocommit=True) as conn:
            conn.execute("SET statement_timeout = 2000")
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def query(url: str | None, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]] | None:
    import psycopg

    if not url:
        return None
    try:
        with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SET statement_timeout = 20000")
            return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]
    except psycopg.Error:
        return None


def heartbeat_after(url: str | None, wall: float) -> bool:
    rows = query(
        url,
        "SELECT count(*) FROM microlens_heartbeat WHERE role = 'worker' "
        "AND seen_at > to_timestamp(%s)",
        (wall,),
    )
    return bool(rows and rows[0][0])


# -- faults ---------------------------------------------------------------------------------


@dataclass
class Fault:
    name: str
    at: float = 0.0  # seconds into the run
    ended: float = 0.0  # monotonic time the fault stopped being applied
    ended_wall: float = 0.0
    applied: str = ""  # what was done, or why it could not be
    back: dict[str, float | None] = field(default_factory=dict)  # part -> seconds, None: never


def wait_back(
    fault: Fault, parts: dict[str, Callable[[], bool]], timeout: float, stack: Stack
) -> None:
    pending = dict(parts)
    deadline = fault.ended + timeout
    while pending:
        for part, probe in list(pending.items()):
            if probe():
                fault.back[part] = time.monotonic() - fault.ended
                del pending[part]
        if pending and time.monotonic() > deadline:
            for part in pending:
                fault.back[part] = None
            return
        time.sleep(0.25)


def signal_all(procs: list[Any], sig: int) -> int:
    import psutil

    done = 0
    for proc in procs:
        try:
            proc.send_signal(sig)
            done += 1
        except psutil.NoSuchProcess:
            pass
    return done


def terminate_copies(
    fault: Fault, url: str | None, parts: dict[str, Callable[[], bool]]
) -> dict[str, Callable[[], bool]]:
    """For 5 s, every backend running a COPY is terminated. A SHARE lock on the span table
    holds each receiver's COPY into it waiting, so it is caught mid-statement, not only
    when the poll happens to land in the few milliseconds a COPY takes."""
    import psycopg

    terminated = 0
    try:
        with psycopg.connect(url or "", connect_timeout=3) as holder:
            holder.execute("LOCK TABLE tracestore_span IN SHARE MODE")
            stop = time.monotonic() + 5
            while time.monotonic() < stop:
                rows = query(
                    url,
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE query ILIKE 'COPY%%' AND state = 'active' "
                    "AND pid <> pg_backend_pid()",
                )
                terminated += rows[0][0] if rows else 0
                time.sleep(0.02)
            holder.rollback()
    except psycopg.Error as exc:
        fault.applied = f"{terminated} backend(s) terminated, then {exc}"
        return parts
    fault.applied = f"{terminated} backend(s) terminated"
    return parts


def inject(fault: Fault, stack: Stack, args: argparse.Namespace) -> dict[str, Callable[[], bool]]:
    """Apply one fault; the parts whose return it waits for, as probes."""
    url = stack.database_url()
    database = {"database": lambda: db_answers(stack.database_url())}
    if fault.name == "terminate backends mid-COPY":
        return terminate_copies(fault, url, database)
    if fault.name == "kill -9 PostgreSQL":
        postmasters = stack.role_processes("postgres")
        fault.applied = f"SIGKILL to {signal_all(postmasters, signal.SIGKILL)} postmaster(s)"
        return database
    if fault.name == "SIGSTOP PostgreSQL":
        cluster = stack.role_processes("postgres") + stack.role_processes("backend")
        stopped = signal_all(cluster, signal.SIGSTOP)
        time.sleep(args.freeze)
        signal_all(cluster, signal.SIGCONT)
        fault.applied = f"{stopped} process(es) stopped for {args.freeze:.0f} s"
        return database
    if fault.name == "SIGKILL worker":
        workers = stack.role_processes("worker")
        old = {p.pid for p in workers}
        fault.applied = f"SIGKILL to {signal_all(workers, signal.SIGKILL)} worker(s)"
        return {
            "worker process": lambda: any(p.pid not in old for p in stack.role_processes("worker")),
            "worker heartbeat": lambda: heartbeat_after(stack.database_url(), fault.ended_wall),
        }
    if fault.name == "SIGKILL one receiver":
        receivers = stack.role_processes("receiver")
        # The receiver processes themselves, not a pool's children.
        top = [p for p in receivers if p.parent() and _role_of(p.parent()) != "receiver"]
        count = len(top)
        fault.applied = f"SIGKILL to 1 of {count} gRPC receiver(s)" if top else "none found"
        signal_all(top[:1], signal.SIGKILL)
        return {"receiver process": lambda: len(stack.role_processes("receiver")) >= count}
    if fault.name == "delete the broker folder":
        broker = stack.home / "broker"
        shutil.rmtree(broker, ignore_errors=True)
        fault.applied = f"{broker} deleted"
        # Back when a heartbeat went beat -> broker -> worker -> database after it.
        return {
            "broker": lambda: heartbeat_after(stack.database_url(), fault.ended_wall + 2),
        }
    raise AssertionError(fault.name)


SCHEDULE = (
    (0.10, "terminate backends mid-COPY"),
    (0.20, "kill -9 PostgreSQL"),
    (0.35, "SIGSTOP PostgreSQL"),
    (0.55, "SIGKILL worker"),
    (0.65, "SIGKILL one receiver"),
    (0.80, "delete the broker folder"),
)


def run_faults(stack: Stack, started: float, args: argparse.Namespace) -> list[Fault]:
    faults = []
    for fraction, name in SCHEDULE:
        fault = Fault(name)
        faults.append(fault)
        wait = started + fraction * args.duration - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        fault.at = time.monotonic() - started
        if not stack.alive():
            fault.applied = "not applied: `microlens up` had exited"
            continue
        parts = inject(fault, stack, args)
        fault.ended, fault.ended_wall = time.monotonic(), time.time()
        parts["up"] = stack.alive
        wait_back(fault, parts, args.recovery_timeout, stack)
    return faults


def ingest_back(fault: Fault, batches: list[Batch]) -> float | None:
    after = [b.finished for b in batches if b.ok and b.started >= fault.ended]
    return min(after) - fault.ended if after else None


# -- the run --------------------------------------------------------------------------------


def settle(stack: Stack, prefix: bytes, timeout: float) -> None:
    """Until the stored count is stable and no evaluation job is pending or running."""
    deadline = time.monotonic() + timeout
    last: tuple[Any, ...] | None = None
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        url = stack.database_url()
        stored = query(
            url, "SELECT count(*) FROM tracestore_span WHERE substr(trace_id, 1, 8) = %s", (prefix,)
        )
        jobs = query(
            url,
            "SELECT count(*) FILTER (WHERE status IN ('pending', 'running')), count(*) "
            "FROM evaluators_evaluationjob",
        )
        now = (stored[0][0] if stored else None, *(jobs[0] if jobs else (None, None)))
        if now != last:
            last, stable_since = now, time.monotonic()
        elif now[1] == 0 and now[2] and time.monotonic() - stable_since > 15:
            return
        time.sleep(1)


def count_database(url: str | None, prefix: bytes) -> dict[str, Any] | None:
    rows = query(
        url,
        "SELECT trace_id, span_id, count(*) FROM tracestore_span "
        "WHERE substr(trace_id, 1, 8) = %s GROUP BY 1, 2",
        (prefix,),
    )
    if rows is None:
        return None
    jobs = query(
        url,
        "SELECT status, count(*) FROM evaluators_evaluationjob GROUP BY 1",
    )
    fallback_without_job = query(
        url,
        "SELECT count(*) FROM tracestore_span s WHERE substr(s.trace_id, 1, 8) = %s "
        "AND s.micro_model = %s AND NOT EXISTS (SELECT 1 FROM evaluators_evaluationjob j "
        "WHERE j.trace_id = s.trace_id AND j.span_id = s.span_id)",
        (prefix, MICRO_MODEL),
    )
    return {
        "ids": {(bytes(t), bytes(s)) for t, s, _ in rows},
        "rows": sum(n for _, _, n in rows),
        "jobs": dict(jobs or []),
        "without_job": fallback_without_job[0][0] if fallback_without_job else None,
    }


def database_after(stack: Stack, prefix: bytes) -> tuple[dict[str, Any] | None, str]:
    """The counts from the stack's database; if the stack left it down, from the cluster
    started again here (its data folder as ``up`` lays it out)."""
    counts = count_database(stack.database_url(), prefix)
    if counts is not None:
        return counts, "the running stack's database"
    from microlens.postgres import EmbeddedPostgres

    cluster = EmbeddedPostgres(stack.home / "postgres")
    try:
        url = cluster.start()
        return count_database(url, prefix), "the cluster started again by the benchmark"
    except Exception as exc:  # the report says so; the run still fails
        return None, f"no database ({exc})"
    finally:
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=240, help="seconds of traffic")
    parser.add_argument("--spans", type=int, default=6000, help="spans to send in all")
    parser.add_argument("--batch", type=int, default=50, help="spans per export")
    parser.add_argument("--senders", type=int, default=2, help="exporters per protocol")
    parser.add_argument("--receivers", type=int, default=2, help="gRPC receiver processes")
    parser.add_argument("--freeze", type=float, default=20, help="seconds PostgreSQL is stopped")
    parser.add_argument(
        "--export-timeout", type=float, default=60, help="the exporters' timeout (retries)"
    )
    parser.add_argument("--recovery-timeout", type=float, default=90, help="per fault")
    parser.add_argument("--settle", type=float, default=120, help="seconds to wait at the end")
    parser.add_argument("--keep", action="store_true", help="keep the home folder and log")
    args = parser.parse_args()
    # The exporters log every failed export with its traceback: the report counts them.
    logging.basicConfig(level=logging.CRITICAL)
    exporters = logging.getLogger("opentelemetry.exporter")
    exporters.setLevel(logging.INFO)
    exporters.propagate = False
    exporters.addHandler(ANSWERS)

    parent = Path(tempfile.mkdtemp(prefix="microlens-chaos-"))
    # Under root the embedded cluster runs as an unprivileged user, who must traverse it.
    parent.chmod(0o755)
    prefix = os.urandom(8)
    stack = start_stack(parent, args.receivers)
    ok = False
    try:
        booted = time.monotonic()
        wait_up(stack, timeout=300)
        print(f"chaos: stack up in {time.monotonic() - booted:.0f} s ({parent})", flush=True)
        batches = build_batches(args.spans, args.batch, prefix)
        started = time.monotonic()
        deadline = started + args.duration + args.export_timeout + args.recovery_timeout
        threads = send(
            batches, stack, started, args.duration, deadline, args.senders, args.export_timeout
        )
        faults = run_faults(stack, started, args)
        for thread in threads:
            thread.join(max(0.0, deadline + args.export_timeout * 2 - time.monotonic()))
        sent_at = time.monotonic() - started
        if stack.alive():
            settle(stack, prefix, args.settle)
        up_alive = stack.alive()
        counts, source = database_after(stack, prefix)
        ok = report(batches, faults, counts, source, up_alive, sent_at, started, args)
    finally:
        stop_stack(stack)
        if args.keep or not ok:
            print(f"chaos: home and up.log kept in {parent}")
        else:
            shutil.rmtree(parent, ignore_errors=True)
    return 0 if ok else 1


def report(
    batches: list[Batch],
    faults: list[Fault],
    counts: dict[str, Any] | None,
    source: str,
    up_alive: bool,
    sent_at: float,
    started: float,
    args: argparse.Namespace,
) -> bool:
    planned = sum(len(b.spans) for b in batches)
    sent_batches = [b for b in batches if b.ok is not None]
    sent = sum(len(b.spans) for b in sent_batches)
    rejected = sum(b.bad for b in sent_batches)
    acked = {ids for b in sent_batches if b.ok for ids in b.valid}
    failed = [b for b in sent_batches if not b.ok]
    print(f"\n== chaos: {args.duration:.0f} s of traffic, all sent after {sent_at:.0f} s")
    print(f"planned                {planned} spans in {len(batches)} exports")
    print(f"sent                   {sent} spans in {len(sent_batches)} exports")
    if sent < planned:
        print(
            f"not sent               {planned - sent} spans (past the deadline, or up had exited)"
        )
    print(f"permanently rejected   {rejected} (invalid ids, by construction)")
    print(
        f"acknowledged           {len(acked)} valid spans, "
        f"in {len(sent_batches) - len(failed)} exports"
    )
    print(f"exports given up       {len(failed)} ({sum(len(b.spans) for b in failed)} spans)")
    by_protocol = {
        p: (
            sum(1 for b in failed if b.protocol == p),
            sum(1 for b in sent_batches if b.protocol == p),
        )
        for p in ("grpc", "http")
    }
    for protocol, (lost, total) in by_protocol.items():
        print(f"  {protocol:<20} {lost} of {total} exports given up")
    answers: dict[str, int] = {}
    for batch in failed:
        key = f"{batch.answer or 'no answer logged'}{' (poison values)' if batch.poison else ''}"
        answers[key] = answers.get(key, 0) + 1
    for answer, n in sorted(answers.items(), key=lambda item: -item[1]):
        print(f"  {'last answer ' + answer:<40} {n}")
    print("exports by phase (started between two faults): acknowledged / given up")
    edges = [0.0] + [f.at for f in faults] + [float("inf")]
    names = ["before the faults"] + [f"after {f.name}" for f in faults]
    for (low, high), name in zip(itertools.pairwise(edges), names, strict=True):
        phase = [b for b in sent_batches if low <= b.started - started < high]
        if phase:
            print(
                f"  {name:<38} {sum(1 for b in phase if b.ok)} / "
                f"{sum(1 for b in phase if not b.ok)}"
            )
    holds = True
    if counts is None:
        print(f"stored                 unknown: {source}")
        holds = False
    else:
        stored = len(counts["ids"])
        duplicates = counts["rows"] - stored
        missing = len(acked - counts["ids"])
        jobs = counts["jobs"]
        not_done = sum(n for status, n in jobs.items() if status != "done")
        lost_evaluations = not_done + (counts["without_job"] or 0)
        print(f"stored                 {stored} distinct spans ({source})")
        print(f"expected               {sent - rejected} (sent - permanently rejected)")
        print(f"duplicates             {duplicates}")
        print(f"acknowledged, missing  {missing}")
        print(f"evaluation jobs        {dict(sorted(jobs.items()))}")
        print(
            f"evaluations lost       {lost_evaluations} "
            f"({counts['without_job']} stored fallback spans without a job, "
            f"{not_done} jobs not done)"
        )
        holds = (
            stored == sent - rejected
            and duplicates == 0
            and missing == 0
            and lost_evaluations == 0
            and sent == planned
        )
    print(f"up still running       {'yes' if up_alive else 'NO'}")
    holds = holds and up_alive
    print("\nfaults (seconds into the run; time each part took to come back by itself):")
    for fault in faults:
        ingest = ingest_back(fault, batches) if fault.ended else None
        parts = dict(fault.back)
        if fault.ended:
            parts["ingest"] = ingest
        shown = ", ".join(
            f"{part} {'NOT BACK' if s is None else f'{s:.1f} s'}" for part, s in parts.items()
        )
        print(f"  {fault.at:6.1f} s  {fault.name}: {fault.applied}")
        print(f"           {shown or '-'}")
        holds = holds and bool(fault.ended) and all(s is not None for s in parts.values())
    print(
        "\ninvariant (stored == sent - permanently rejected, duplicates 0, nothing acknowledged "
        f"missing, no evaluation lost, every part back by itself): {'HOLDS' if holds else 'BROKEN'}"
    )
    return holds


if __name__ == "__main__":
    sys.exit(main())
