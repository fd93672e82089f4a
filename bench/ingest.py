"""Ingest benchmark: the real receivers, driven with realistic micro-model traces.

    .venv/bin/python bench/ingest.py                       # defaults below
    .venv/bin/python bench/ingest.py --spans 100000 --concurrency 1,8 --receivers 2

Reports, per protocol and concurrency: acknowledged spans/s, spans actually in PostgreSQL
afterwards (must equal the acknowledged count), p50/p99 export latency and the receivers'
peak RSS. It measures a baseline on the same machine in the same run, before and again
after the receivers: a bare loop of protobuf decode + row building + binary COPY with one
commit per request, in one process; the ratio is taken against the faster of the two.
Each receiver run starts from the state the first one found: its spans are counted, then
deleted (see clear_run). It also reports where each run's CPU went: receivers, PostgreSQL
(all its processes) and the client threads of this process. Last, with its own cluster,
it stops PostgreSQL under load (``--database-down-seconds``) and reports the receivers'
answers (all must be UNAVAILABLE) and peak RSS.

Uses DATABASE_URL if set, else starts its own PostgreSQL cluster in a temporary folder
(fsync on, default settings), deleted afterwards. Receivers, clients and PostgreSQL share
this machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue  # noqa: E402

from tests.otlp_payloads import build_requests  # noqa: E402

# -- environment ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def setup_database() -> tuple[str, object | None]:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url, None
    from microlens.postgres import EmbeddedPostgres

    root = Path(tempfile.mkdtemp(prefix="microlens-bench-pg-"))
    root.chmod(0o755)
    cluster = EmbeddedPostgres(root)
    return cluster.start(), cluster


def teardown_database(cluster: Any) -> None:
    """Stop the cluster ``setup_database`` started and delete its folder (a run leaves a
    gigabyte of data behind otherwise)."""
    if cluster is None:
        return
    cluster.stop()
    shutil.rmtree(cluster.root, ignore_errors=True)


def django_setup(url: str, home: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ["MICROLENS_HOME"] = home
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "microlens.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def new_project_key() -> tuple[int, str]:
    from tracestore.services import create_project, issue_api_key

    project = create_project(f"bench-{uuid.uuid4().hex[:8]}")
    return project.id, issue_api_key(project.id)


def clear_run(project_id: int) -> None:
    """Delete a run's spans and traces, vacuum, and checkpoint where allowed, so the next
    run starts from the state this one found. The baseline writes into a new table every
    time; without this each receiver run would pay for the ones before it: PostgreSQL's
    CPU per span grew by about half over six runs as the day's partition outgrew
    shared_buffers, which sank the later runs' ratio for a reason the baseline never meets."""
    from django.db import DatabaseError, connection

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM tracestore_span WHERE project_id = %s", [project_id])
        cursor.execute("DELETE FROM tracestore_trace WHERE project_id = %s", [project_id])
        cursor.execute("VACUUM tracestore_span, tracestore_trace")
        with contextlib.suppress(DatabaseError):  # needs superuser or pg_checkpoint
            cursor.execute("CHECKPOINT")


def stored_spans(project_id: int) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM tracestore_span WHERE project_id = %s", [project_id])
        return int(cursor.fetchone()[0])


# -- baseline --------------------------------------------------------------------------------


def _anyvalue_py(value: AnyValue) -> object:
    which = value.WhichOneof("value")
    return getattr(value, which) if which else None


def baseline(url: str, requests: list[tuple[bytes, int]]) -> dict[str, float]:
    """Bare loop: decode + row building + binary COPY, one commit per request."""
    from datetime import UTC, datetime

    import psycopg
    from psycopg.types.json import Jsonb

    with psycopg.connect(url) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_baseline_span")
        conn.execute(
            "CREATE TABLE bench_baseline_span (trace_id bytea, span_id bytea, parent_span_id bytea,"
            " name text, start_time timestamptz, end_time timestamptz, attributes jsonb,"
            " PRIMARY KEY (trace_id, span_id))"
        )
        conn.commit()
        decode_s = rows_s = 0.0
        spans = 0
        started = time.perf_counter()
        for payload, _ in requests:
            t0 = time.perf_counter()
            request = ExportTraceServiceRequest.FromString(payload)
            t1 = time.perf_counter()
            rows = []
            for rs in request.resource_spans:
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        rows.append(
                            (
                                span.trace_id,
                                span.span_id,
                                span.parent_span_id or None,
                                span.name,
                                datetime.fromtimestamp(span.start_time_unix_nano / 1e9, UTC),
                                datetime.fromtimestamp(span.end_time_unix_nano / 1e9, UTC),
                                Jsonb({kv.key: _anyvalue_py(kv.value) for kv in span.attributes}),
                            )
                        )
            t2 = time.perf_counter()
            decode_s += t1 - t0
            rows_s += t2 - t1
            with conn.cursor() as cur:
                with cur.copy("COPY bench_baseline_span FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(
                        ["bytea", "bytea", "bytea", "text", "timestamptz", "timestamptz", "jsonb"]
                    )
                    for row in rows:
                        copy.write_row(row)
            conn.commit()
            spans += len(rows)
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE bench_baseline_span")
        conn.commit()
    return {
        "spans": spans,
        "spans_per_s": spans / elapsed,
        "decode_spans_per_s": spans / decode_s,
        "rows_spans_per_s": spans / rows_s,
    }


# -- receivers -------------------------------------------------------------------------------


class RssSampler(threading.Thread):
    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peak = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for pid in self.pids:
                try:
                    proc = psutil.Process(pid)
                    rss = proc.memory_info().rss + sum(
                        c.memory_info().rss for c in proc.children(recursive=True)
                    )
                except psutil.Error:
                    continue
                self.peak = max(self.peak, rss)
            self._halt.wait(0.05)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return self.peak


def cpu_seconds(receiver_pids: list[int]) -> dict[str, float]:
    """CPU time (user + system) used so far by the receivers (with their children), by
    every PostgreSQL process (backends, WAL writer, checkpointer...) and by this process,
    whose threads are the clients. Differences of two snapshots say where a run's CPU went."""

    def used(proc: psutil.Process) -> float:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            return 0.0
        return times.user + times.system

    receivers = 0.0
    for pid in receiver_pids:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            receivers += used(proc) + sum(used(c) for c in proc.children(recursive=True))
    postgres = 0.0
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "postgres":
            postgres += used(proc)
            with contextlib.suppress(psutil.Error):
                if proc.parent() is None or proc.parent().name() != "postgres":
                    # The postmaster: what its children used and exited with (autovacuum
                    # workers, closed connections) is counted here once they are gone.
                    times = proc.cpu_times()
                    postgres += times.children_user + times.children_system
    return {"receivers": receivers, "postgres": postgres, "client": used(psutil.Process())}


def start_receivers(
    protocol: str, count: int, port: int, env: dict[str, str], threads: int = 8
) -> list:
    procs = []
    for _ in range(count):
        if protocol == "grpc":
            cmd = ["run_receiver", "--port", str(port), "--workers", str(threads)]
        else:
            cmd = ["run_http_receiver", "--port", str(port), "--workers", "1"]
        procs.append(
            subprocess.Popen(
                [sys.executable, str(ROOT / "manage.py"), *cmd, "--host", "127.0.0.1"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.1)
    time.sleep(0.5)  # let every process of the group bind
    return procs


def stop_receivers(procs: list) -> None:
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


class Exporter:
    """One client thread's connection to the receivers, as one exporter has: ``send``
    posts a pre-serialised request once and returns the answer: "ok", "unavailable"
    (gRPC UNAVAILABLE / HTTP 503) or another status's name."""

    def __init__(self, protocol: str, port: int, key: str) -> None:
        self.protocol = protocol
        self.key = key
        if protocol == "grpc":
            import grpc

            self._rpc_error = grpc.RpcError
            # A connection per client thread, as separate exporters would have (gRPC
            # otherwise shares one connection among channels to one target, and
            # SO_REUSEPORT could then feed only one receiver).
            channel = grpc.insecure_channel(
                f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
            )
            self._call = channel.unary_unary(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                request_serializer=None,
                response_deserializer=None,
            )
        else:
            import requests as http

            self._session = http.Session()
            self._url = f"http://127.0.0.1:{port}/v1/traces"

    def send(self, payload: bytes) -> str:
        if self.protocol == "grpc":
            try:
                self._call(payload, metadata=(("authorization", f"Bearer {self.key}"),), timeout=60)
            except self._rpc_error as exc:
                return exc.code().name.lower()  # type: ignore[attr-defined]
            return "ok"
        reply = self._session.post(
            self._url,
            data=payload,
            headers={
                "content-type": "application/x-protobuf",
                "authorization": f"Bearer {self.key}",
            },
            timeout=60,
        )
        return {200: "ok", 503: "unavailable"}.get(reply.status_code, str(reply.status_code))


def _percentile_ms(latencies: list[float], fraction: float) -> float:
    if not latencies:
        return float("nan")
    ordered = sorted(latencies)
    return ordered[max(int(len(ordered) * fraction) - 1, 0)] * 1000


def drive(
    protocol: str,
    port: int,
    key: str,
    requests: list[tuple[bytes, int]],
    concurrency: int,
) -> dict[str, float]:
    """Send every request once acknowledged, retrying (up to 20 times, 0.2 s apart) what
    is not, from ``concurrency`` client threads."""
    latencies: list[float] = []
    acked = 0
    failures = 0
    lock = threading.Lock()
    local = threading.local()

    def sender(item: tuple[bytes, int]) -> None:
        nonlocal acked, failures
        payload, count = item
        if not hasattr(local, "exporter"):
            local.exporter = Exporter(protocol, port, key)
        for _attempt in range(20):
            t0 = time.perf_counter()
            ok = local.exporter.send(payload) == "ok"
            elapsed = time.perf_counter() - t0
            with lock:
                if ok:
                    latencies.append(elapsed)
                    acked += count
                    return
                failures += 1
            time.sleep(0.2)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(sender, requests))
    elapsed = time.perf_counter() - started
    return {
        "acked": acked,
        "failures": failures,
        "elapsed_s": elapsed,
        "spans_per_s": acked / elapsed,
        "p50_ms": _percentile_ms(latencies, 0.5),
        "p99_ms": _percentile_ms(latencies, 0.99),
    }


def database_down(
    protocol: str,
    receivers: int,
    env: dict[str, str],
    requests: list[tuple[bytes, int]],
    cluster: Any,
    seconds: float,
    concurrency: int = 16,
) -> dict[str, Any]:
    """The receivers with PostgreSQL stopped, under ``concurrency`` exporters sending
    without pause for ``seconds``: every answer must be UNAVAILABLE (exporters retry
    later), none OK, and memory must stay bounded. The key is looked up once before the
    stop, so each request is read and decoded before storing fails, as with a database
    that goes away under load."""
    from django.db import connection

    project_id, key = new_project_key()
    port = free_port()
    procs = start_receivers(protocol, receivers, port, env)
    sampler = RssSampler([p.pid for p in procs])
    sampler.start()
    answers: dict[str, int] = {}
    latencies: list[float] = []
    lock = threading.Lock()
    try:
        for _ in range(receivers * 4):
            # A new connection each time, so that every receiver process (SO_REUSEPORT
            # spreads connections) has most likely seen, and cached, the key.
            assert Exporter(protocol, port, key).send(requests[0][0]) == "ok"
        connection.close()
        cluster.stop()
        deadline = time.monotonic() + seconds

        def sender(index: int) -> None:
            exporter = Exporter(protocol, port, key)
            n = index
            while time.monotonic() < deadline:
                payload = requests[n % len(requests)][0]
                t0 = time.perf_counter()
                answer = exporter.send(payload)
                elapsed = time.perf_counter() - t0
                with lock:
                    answers[answer] = answers.get(answer, 0) + 1
                    latencies.append(elapsed)
                n += concurrency

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            list(pool.map(sender, range(concurrency)))
    finally:
        try:
            peak = sampler.stop()
        finally:
            stop_receivers(procs)
            if cluster.process is None:
                cluster.start()
    return {
        "protocol": protocol,
        "answers": answers,
        "p50_ms": _percentile_ms(latencies, 0.5),
        "p99_ms": _percentile_ms(latencies, 0.99),
        "peak_rss_mb": peak / 2**20,
        "in_db": stored_spans(project_id),
        "warm_up_spans": requests[0][1],  # sent several times, stored once
    }


def _print_baseline(when: str, base: dict[str, float]) -> None:
    print(
        f"baseline {when} (1 process, decode+rows+binary COPY, commit per request): "
        f"{base['spans_per_s']:,.0f} spans/s "
        f"(decode alone {base['decode_spans_per_s']:,.0f}/s, "
        f"row building {base['rows_spans_per_s']:,.0f}/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=60_000, help="spans per run")
    parser.add_argument("--batch", type=int, default=512, help="spans per request")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--protocols", default="grpc,http")
    parser.add_argument("--receivers", type=int, default=2, help="receiver processes per port")
    parser.add_argument(
        "--grpc-workers", type=int, default=8, help="exports at once per gRPC receiver process"
    )
    parser.add_argument(
        "--database-down-seconds",
        type=float,
        default=10,
        help="then stop PostgreSQL for this long under 16 exporters per protocol (0: skip; "
        "only with the benchmark's own cluster)",
    )
    parser.add_argument("--json", action="store_true", help="print results as JSON too")
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="microlens-bench-home-")
    url, cluster = setup_database()
    try:
        django_setup(url, home)
        env = {**os.environ, "DATABASE_URL": url, "MICROLENS_HOME": home}
        print(f"machine: {os.cpu_count()} cores; receivers, clients and PostgreSQL on this box")
        requests = build_requests(args.spans, args.batch, seed=1)
        sizes = [len(p) / c for p, c in requests]
        print(
            f"payload: {sum(c for _, c in requests)} spans in {len(requests)} requests, "
            f"{statistics.mean(sizes):.0f} bytes/span (protobuf)"
        )
        base = baseline(url, requests)
        _print_baseline("before the receivers", base)
        results: dict[str, Any] = {"baseline": base}
        runs: list[dict[str, Any]] = []
        header = (
            f"{'protocol':8} {'conc':>4} {'acked/s':>10} {'acked':>8} {'in db':>8} "
            f"{'p50 ms':>8} {'p99 ms':>8} {'peak RSS MB':>11} {'% 1st':>7}"
        )
        print(header)
        for protocol in args.protocols.split(","):
            for concurrency in [int(c) for c in args.concurrency.split(",")]:
                project_id, key = new_project_key()
                # fresh trace ids for every run so every span is new
                run_requests = build_requests(args.spans, args.batch, seed=random.randint(2, 10**9))
                port = free_port()
                procs = start_receivers(protocol, args.receivers, port, env, args.grpc_workers)
                pids = [p.pid for p in procs]
                sampler = RssSampler(pids)
                sampler.start()
                try:
                    cpu_before = cpu_seconds(pids)
                    result = drive(protocol, port, key, run_requests, concurrency)
                    cpu_after = cpu_seconds(pids)
                finally:
                    try:
                        peak = sampler.stop()
                    finally:
                        stop_receivers(procs)  # never leave receivers behind
                in_db = stored_spans(project_id)
                clear_run(project_id)
                result.update(
                    protocol=protocol,
                    concurrency=concurrency,
                    in_db=in_db,
                    peak_rss_mb=peak / 2**20,
                    pct_of_baseline=100 * result["spans_per_s"] / base["spans_per_s"],
                )
                result["cpu_us_per_span"] = {
                    side: (cpu_after[side] - cpu_before[side]) / result["acked"] * 1e6
                    for side in cpu_after
                }
                runs.append(result)
                print(
                    f"{protocol:8} {concurrency:>4} {result['spans_per_s']:>10,.0f} "
                    f"{result['acked']:>8} {in_db:>8} {result['p50_ms']:>8.1f} "
                    f"{result['p99_ms']:>8.1f} {result['peak_rss_mb']:>11.0f} "
                    f"{result['pct_of_baseline']:>6.0f}%"
                    + ("" if in_db == result["acked"] else "  LOST SPANS")
                )
        print("CPU µs per span (user + system): receivers, PostgreSQL (all its processes), clients")
        for run in runs:
            cpu = run["cpu_us_per_span"]
            print(
                f"  {run['protocol']:8} {run['concurrency']:>4} "
                + "  ".join(f"{side} {took:5.1f}" for side, took in cpu.items())
                + f"  = {sum(cpu.values()):5.1f}"
                + f"  (the machine had {os.cpu_count() * 1e6 / run['spans_per_s']:.1f})"
            )
        # The baseline again, after the receivers: other work on the machine comes and goes,
        # and a baseline measured in a lull or a burst would flatter or sink the ratio. The
        # ratio is taken against the faster of the two, which can only make it smaller.
        again = baseline(url, requests)
        _print_baseline("after the receivers", again)
        best = max(base["spans_per_s"], again["spans_per_s"])
        print(f"% of the faster baseline ({best:,.0f} spans/s):")
        for run in runs:
            pct = 100 * run["spans_per_s"] / best
            run["pct_of_best_baseline"] = pct
            print(f"  {run['protocol']:8} {run['concurrency']:>4} {pct:>6.0f}%")
        results.update(baseline_after=again, runs=runs)
        if args.database_down_seconds and cluster is not None:
            print(
                f"PostgreSQL stopped for {args.database_down_seconds:.0f} s under 16 exporters "
                "sending without pause (answers, latency, receivers' peak RSS):"
            )
            down = []
            for protocol in args.protocols.split(","):
                result = database_down(
                    protocol, args.receivers, env, requests, cluster, args.database_down_seconds
                )
                down.append(result)
                answers = ", ".join(f"{n} {name}" for name, n in sorted(result["answers"].items()))
                print(
                    f"  {protocol:8} {answers}; p50 {result['p50_ms']:.1f} ms, "
                    f"p99 {result['p99_ms']:.1f} ms; peak RSS {result['peak_rss_mb']:.0f} MB; "
                    f"in db afterwards {result['in_db']} (the warm-up's {result['warm_up_spans']})"
                )
            results["database_down"] = down
        elif args.database_down_seconds:
            print("(PostgreSQL-down phase skipped: DATABASE_URL is not the benchmark's cluster)")
        if args.json:
            print(json.dumps(results, indent=2))
    finally:
        teardown_database(cluster)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
