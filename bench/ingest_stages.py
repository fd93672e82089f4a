"""Where ingest spends its time, per span, stage by stage, in one process.

    .venv/bin/python bench/ingest_stages.py                # 30,000 spans
    .venv/bin/python bench/ingest_stages.py --spans 60000
    .venv/bin/python bench/ingest_stages.py --python       # without the compiled decoder

Runs the receivers' path (decode + normalise, COPY rows, rollup deltas, binary COPY,
rollup upsert, commit), with their garbage-collector settings, on bench/ingest.py's
payload, one 512-span request per transaction, and reports CPU time per span: this
process's (``time.process_time``) per stage, and the PostgreSQL backend's (from
``/proc``, so Linux only, in clock ticks: a stage that takes less than a tick per request
is measured statistically over many).
CPU time is far less disturbed than wall time by other work on the machine, which is why
this, not a throughput figure, is the one to compare changes with.

Uses DATABASE_URL if set, else starts its own PostgreSQL like bench/ingest.py.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import (  # noqa: E402
    build_requests,
    django_setup,
    new_project_key,
    setup_database,
    teardown_database,
)


def backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=30_000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument(
        "--python",
        action="store_true",
        help="decode with the protobuf runtime and Python (the reference), not tracestore._otlp",
    )
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="microlens-bench-home-")
    url, cluster = setup_database()
    try:
        django_setup(url, home)
        from django.db import connection

        from tracestore import rollups, span_copy
        from tracestore.decode import NATIVE, decode_protobuf
        from tracestore.ingest import tune_garbage_collector

        project_id, _ = new_project_key()
        requests = build_requests(args.spans, args.batch, seed=random.randint(2, 10**9))
        native = NATIVE and not args.python
        print(f"decoder: {'compiled (tracestore._otlp)' if native else 'Python (reference)'}")
        client = dict.fromkeys(("decode", "rows", "deltas", "copy", "upsert", "commit"), 0.0)
        server = dict.fromkeys(("copy", "upsert", "commit"), 0.0)
        clock = time.process_time
        spans = 0
        tune_garbage_collector()  # as the receivers do once set up
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = int(cursor.fetchone()[0])
            for payload, _ in requests:
                t1 = clock()
                result = decode_protobuf(payload, native=native)
                decoded = result.rows
                t2 = clock()
                rows = span_copy.span_copy_rows(project_id, decoded, result.attributes_json)
                t3 = clock()
                deltas = rollups.rollup_deltas(decoded)
                t4 = clock()
                cursor.execute("BEGIN")
                s0, t5 = backend_cpu(backend), clock()
                span_copy.copy_rows(cursor, span_copy.COPY_SPANS, rows)
                s1, t6 = backend_cpu(backend), clock()
                rollups.merge_rollups(cursor, project_id, deltas)
                s2, t7 = backend_cpu(backend), clock()
                cursor.execute("COMMIT")
                s3, t8 = backend_cpu(backend), clock()
                for name, took in zip(
                    client,
                    (t2 - t1, t3 - t2, t4 - t3, t6 - t5, t7 - t6, t8 - t7),
                    strict=True,
                ):
                    client[name] += took
                for name, took in zip(server, (s1 - s0, s2 - s1, s3 - s2), strict=True):
                    server[name] += took
                spans += len(decoded)
        print(f"{spans} spans in {len(requests)} requests; CPU µs per span")
        for side, stages in (("receiver process", client), ("PostgreSQL backend", server)):
            total = sum(stages.values())
            parts = "  ".join(f"{name} {took / spans * 1e6:.1f}" for name, took in stages.items())
            print(f"{side:19} {parts}  = {total / spans * 1e6:.1f}")
    finally:
        teardown_database(cluster)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
