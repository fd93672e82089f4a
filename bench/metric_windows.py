"""Metric windows benchmark: p50/p95 (warm) of metrics.compute for windows that fall on
whole hours (rollups only) and windows that do not (plus the partial hours from the
decision facts), over whatever data the database holds.

    DATABASE_URL=... .venv/bin/python bench/metric_windows.py --project bench [--runs 20]

For each metric: a 24-hour window ending on the last whole hour, the same window ending
30 minutes later (two partial hours: the last 30 minutes and 30 minutes a day earlier),
and a 5-minute and a 15-minute window ending at the newest decision (facts only, as an
alert rule reads). Prints the decisions per hour around the end, so the figures can be
read against the data's density.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "microlens.settings")

import django

METRICS = [
    ("fallback-rate", None),
    ("fallback-rate", "user.tier"),
    ("route-share", None),
    ("latency", None),
    ("cost-per-trace", None),
    ("label-quality", None),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default="bench")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    options = parser.parse_args()
    if not os.environ.get("DATABASE_URL"):
        parser.error("set DATABASE_URL (a PostgreSQL holding a folded data set)")
    django.setup()
    from django.db import connection

    from dashboard import metrics

    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM tracestore_project WHERE name = %s", [options.project])
        row = cursor.fetchone()
        if row is None:
            parser.error(f"no project {options.project!r}: seed one (manage.py seed_demo_data)")
        project_id = row[0]
        cursor.execute(
            "SELECT max(start_time) FROM dashboard_decisionfact WHERE project_id = %s",
            [project_id],
        )
        newest = cursor.fetchone()[0]
        cursor.execute(
            "SELECT hour, count(*) FROM dashboard_decisionfact WHERE project_id = %s"
            " AND is_decision AND hour >= %s GROUP BY 1 ORDER BY 1",
            [project_id, newest - timedelta(hours=3)],
        )
        density = cursor.fetchall()
    print("decisions per hour near the end:", ", ".join(f"{h:%H}h {n}" for h, n in density))
    aligned_end = metrics.floor_hour(newest)
    windows = {
        "24 h, whole hours": (aligned_end - timedelta(hours=24), aligned_end),
        "24 h, ends :30": (
            aligned_end - timedelta(hours=23, minutes=30),
            aligned_end + timedelta(minutes=30),
        ),
        "15 min": (newest - timedelta(minutes=15), newest),
        "5 min": (newest - timedelta(minutes=5), newest),
    }
    print(f"{'metric':<28} {'window':<18} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for name, group_by in METRICS:
        for label, (start, end) in windows.items():
            filters = metrics.Filters((project_id,), start, end)
            timings = []
            for run in range(options.warmup + options.runs):
                began = time.perf_counter()
                metrics.compute(name, filters, group_by=group_by)
                if run >= options.warmup:
                    timings.append((time.perf_counter() - began) * 1000)
            timings.sort()
            p95 = timings[min(len(timings) - 1, int(0.95 * len(timings)))]
            shown = name + (f" by {group_by}" if group_by else "")
            print(
                f"{shown:<28} {label:<18} {statistics.median(timings):8.1f}"
                f" {p95:8.1f} {timings[-1]:8.1f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
