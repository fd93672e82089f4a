"""Price change benchmark: how long the periodic fold takes to apply a model price saved in
the admin (re-pricing the traces that used a matching model), next to a fold with nothing
to do and a full rebuild, over whatever data the database holds.

    DATABASE_URL=... .venv/bin/python bench/price_change.py [--seed-spans N --days 30]

With --seed-spans the data set is generated first (manage.py seed_demo_data) and folded.
Each timed fold runs once, on the loaded data, after the one before committed. A fold
re-reads the traces ingested in the 5 minutes before its watermark (late commits): the
folds here run on a clock 10 minutes apart from one another, after an untimed one, so
each figure is the price change's work alone, not a re-read of the seeding.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "microlens.settings")

import django


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed-spans", type=int, default=0)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--project", default="bench")
    parser.add_argument(
        "--pattern",
        action="append",
        help="model pattern to price (repeatable; default: gpt-large, then gpt-mini)",
    )
    options = parser.parse_args()
    if not os.environ.get("DATABASE_URL"):
        parser.error("set DATABASE_URL (a PostgreSQL with the data set, or to seed into)")
    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from dashboard.metrics.refresh import FoldResult, fold_changes, rebuild_all_rollups
    from dashboard.models import ModelPrice

    call_command("migrate", verbosity=0)
    if options.seed_spans:
        call_command(
            "seed_demo_data", spans=options.seed_spans, days=options.days, project=options.project
        )
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM tracestore_span")
        spans = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM tracestore_trace")
        traces = cursor.fetchone()[0]
    print(f"data: {spans:,} spans, {traces:,} traces")

    def timed(what: str, run) -> None:
        started = time.perf_counter()
        result = run()
        seconds = time.perf_counter() - started
        print(
            f"{what:<46} {seconds:8.2f} s  {result.traces:>10,} traces"
            f" {result.hours:>6,} hours {result.days:>4,} days"
        )

    clock = timezone.now()

    def fold() -> FoldResult:
        nonlocal clock
        clock += timedelta(minutes=10)
        return fold_changes(now=clock)

    fold()
    timed("fold, nothing changed", fold)
    for pattern in options.pattern or ["gpt-large", "gpt-mini"]:
        ModelPrice.objects.create(
            model_pattern=pattern,
            input_per_million=Decimal("9.99"),
            output_per_million=Decimal("9.99"),
            effective_from=date(2021, 1, 1),
        )
        timed(f"fold after a price for {pattern!r}", fold)
    timed("rebuild (manage.py refresh_metrics --rebuild)", rebuild_all_rollups)
    return 0


if __name__ == "__main__":
    sys.exit(main())
