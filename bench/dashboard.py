"""Dashboard benchmark: p50/p95 (warm) of every metric page and metrics endpoint (and the
span search) for a 24-hour and a 30-day range, over whatever data the database holds.

    DATABASE_URL=... .venv/bin/python bench/dashboard.py [--seed-spans N --days 30] [--runs 20]

With --seed-spans the data set is generated first (manage.py seed_demo_data: --seed-spans
// 5 traces of about 5.2 spans over --days days, with evaluation results on a sample) and
folded into the rollups. After the timed requests it times evaluators' request-time count
over the raw results (what eval-fail-rate read before the evaluation rollup). Requests go
through Django's test client in this process (session login, no network), so the figures
are the server's time to answer: URL routing, the metric queries, figures and templates or JSON.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "microlens.settings")

import django

METRICS = [
    "route-share",
    "fallback-rate",
    "retry-rate",
    "cache-hit-rate",
    "error-rate",
    "latency",
    "cost-per-trace",
    "eval-fail-rate",
    "label-quality",
]

# The Traces page's searches (docs/traces.md), each timed for 24 h and 30 d: a common and a
# rare span-name word, a failed evaluator in one cohort, a duration and a cost range.
TRACES_PAGE = [
    ("text 'retrieve'", "q=retrieve"),
    ("text 'lookup_account'", "q=lookup_account"),
    ("label_check failed, language=ja", "failed_evaluator=label_check&cohort.language=ja"),
    ("fallback, user.tier=free", "fallback=1&cohort.user.tier=free"),
    ("duration >= 5 s", "min_ms=5000"),
    ("cost >= 0.01 USD", "min_cost=0.01"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed-spans", type=int, default=0)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--project", default="bench")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="time only the requests whose name contains TEXT (repeatable)",
    )
    parser.add_argument(
        "--raw-eval-runs",
        type=int,
        default=5,
        help="also time evaluators' request-time count (the path before the evaluation rollup)",
    )
    options = parser.parse_args()
    if not os.environ.get("DATABASE_URL"):
        parser.error("set DATABASE_URL (a PostgreSQL with the data set, or to seed into)")
    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    from tracestore.services import create_project

    setup_test_environment()  # lets the test client's host through ALLOWED_HOSTS
    call_command("migrate", verbosity=0)
    if options.seed_spans:
        call_command(
            "seed_demo_data",
            spans=options.seed_spans,
            days=options.days,
            project=options.project,
        )
    project = create_project(options.project)
    user, _ = get_user_model().objects.get_or_create(username="bench-viewer")
    user.projects.add(project.id)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM tracestore_span WHERE project_id = %s", [project.id])
        spans = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM tracestore_trace WHERE project_id = %s", [project.id])
        traces = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM dashboard_rollup WHERE project_id = %s", [project.id])
        rollups = cursor.fetchone()[0]
        cursor.execute(
            "SELECT count(*), count(*) FILTER (WHERE passed IS NOT NULL)"
            " FROM evaluators_evaluationresult WHERE project_id = %s",
            [project.id],
        )
        evaluations, applicable = cursor.fetchone()
        cursor.execute(
            "SELECT count(*) FROM dashboard_evalrollup WHERE project_id = %s", [project.id]
        )
        eval_rollups = cursor.fetchone()[0]
        cursor.execute(
            "SELECT encode(trace_id, 'hex') FROM dashboard_decisionfact"
            " WHERE project_id = %s AND is_primary ORDER BY start_time DESC LIMIT 1",
            [project.id],
        )
        row = cursor.fetchone()
    print(f"data: {spans:,} spans, {traces:,} traces, {rollups:,} rollup rows")
    print(
        f"      {evaluations:,} evaluation results ({applicable:,} applicable),"
        f" {eval_rollups:,} evaluation rollup rows"
    )
    client = Client()
    client.force_login(user)
    urls = []
    for range_name in ("24h", "30d"):
        r = f"range={range_name}"
        urls += [
            (f"page overview {range_name}", f"/overview/?{r}"),
            (f"page micro model {range_name}", f"/micro-models/intent-mini/?{r}"),
            (f"page cohorts {range_name}", f"/cohorts/?dimension=user.tier&{r}"),
            (f"page cohorts language {range_name}", f"/cohorts/?dimension=language&{r}"),
            (f"page traces {range_name}", f"/?micro_model=intent-mini&{r}"),
        ]
        urls += [(f"page traces {n} {range_name}", f"/?{q}&{r}") for n, q in TRACES_PAGE]
        urls += [(f"api {m} {range_name}", f"/api/v1/metrics/{m}/?{r}") for m in METRICS]
        urls += [
            (
                f"api fallback-rate by user.tier per day {range_name}",
                f"/api/v1/metrics/fallback-rate/?{r}&group_by=user.tier&interval=day",
            ),
            (
                f"api latency cohort.language=ja {range_name}",
                f"/api/v1/metrics/latency/?{r}&cohort.language=ja",
            ),
            (
                f"api eval-fail-rate by language {range_name}",
                f"/api/v1/metrics/eval-fail-rate/?{r}&group_by=language",
            ),
            (
                f"api eval-fail-rate by micro_model, user.tier=free {range_name}",
                f"/api/v1/metrics/eval-fail-rate/?{r}&group_by=micro_model&cohort.user.tier=free",
            ),
            (
                f"api label-quality by language {range_name}",
                f"/api/v1/metrics/label-quality/?{r}&group_by=language",
            ),
            (
                f"api label-quality by cohort {range_name}",
                f"/api/v1/micro-models/intent-mini/label-quality/?{r}&group_by=cohort.user.tier",
            ),
            (
                f"api spans micro_model, cohort.language=ja {range_name}",
                f"/api/v1/spans/?{r}&micro_model=intent-mini&cohort.language=ja",
            ),
            (
                f"api spans label, fallback {range_name}",
                f"/api/v1/spans/?{r}&label=billing&fallback=true",
            ),
        ]
        mm, pv = "/api/v1/micro-models/intent-mini", "prompt.version"
        urls += [(f"api {u.split('/')[-2]} {range_name}", u) for u in (f"{mm}/economics/?{r}&group_by=user.tier&interval=day", f"/api/v1/advice/routing/?{r}", f"{mm}/compare/?baseline={pv}=v3&candidate={pv}=v4&window={range_name}")]  # fmt: skip  # noqa: E501
        for part in ("shadow", "thresholds"):  # the micro model's decision analyses
            urls.append(
                (
                    f"api {part} by user.tier {range_name}",
                    f"/api/v1/micro-models/intent-mini/{part}/?{r}&group_by=user.tier",
                )
            )
    if row:
        urls.append(("page trace detail", f"/traces/{row[0]}/"))
        urls.append(("api trace's spans", f"/api/v1/traces/{row[0]}/spans/"))
    if options.only:
        urls = [(name, url) for name, url in urls if any(text in name for text in options.only)]
    print(f"{'request':58} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    worst = 0.0
    for name, url in urls:
        timings = []
        for i in range(options.warmup + options.runs):
            started = time.perf_counter()
            response = client.get(url)
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise SystemExit(f"{url}: HTTP {response.status_code}")
            if i >= options.warmup:
                timings.append(elapsed)
        timings.sort()
        p95 = timings[max(0, math.ceil(0.95 * len(timings)) - 1)]
        worst = max(worst, p95)
        print(f"{name:58} {statistics.median(timings):8.1f} {p95:8.1f} {timings[-1]:8.1f}")
    print(f"worst p95: {worst:.1f} ms")
    for range_name in ("24h", "30d"):
        check = client.get(f"/api/v1/metrics/eval-fail-rate/?range={range_name}").json()
        evaluated = sum(row["n"] for row in check["results"])
        print(f"eval-fail-rate {range_name}: {len(check['results'])} rows, n = {evaluated:,}")
    if options.raw_eval_runs:
        _time_raw_evaluation_counts(project.id, options.raw_eval_runs)
    return 0


def _time_raw_evaluation_counts(project_id: int, runs: int) -> None:
    """evaluators' grouped COUNT over the raw results, as eval-fail-rate used to run it
    on every request."""
    from datetime import timedelta

    from django.utils import timezone

    from evaluators.queries import evaluation_counts

    now = timezone.now()
    print(f"request-time count over raw results ({runs} runs after 1 warm-up):")
    for range_name, width in (("24h", timedelta(hours=24)), ("30d", timedelta(days=30))):
        for group_by in (None, "language"):
            timings = []
            for i in range(runs + 1):
                started = time.perf_counter()
                evaluation_counts([project_id], start=now - width, end=now, group_by=group_by)
                if i:
                    timings.append((time.perf_counter() - started) * 1000)
            timings.sort()
            label = f"raw evaluation_counts group_by={group_by} {range_name}"
            print(f"{label:58} {statistics.median(timings):8.1f} {'':>8} {timings[-1]:8.1f}")


if __name__ == "__main__":
    raise SystemExit(main())
