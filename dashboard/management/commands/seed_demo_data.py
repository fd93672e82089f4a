import time

from django.core.management.base import BaseCommand, CommandError

from audit.services import acting_as
from tracestore.services import create_project

from ...demo_data import ensure_demo_prices, seed_demo_data
from ...metrics.evaluations import fold_evaluations
from ...metrics.refresh import fold_changes


class Command(BaseCommand):
    help = (
        "Generate a realistic micro-model data set (--spans // 5 traces of about 5.2 spans, "
        "spread over the last --days days, with evaluation results on a sample) into a "
        "project, then fold it into the metric rollups."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--spans", type=int, default=100_000)
        parser.add_argument("--days", type=float, default=30)
        parser.add_argument("--project", default="demo", help="project name (created if new)")
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--no-fold", action="store_true", help="leave the rollups to beat")

    def handle(self, *args, **options) -> None:
        if options["spans"] <= 0 or options["days"] <= 0:
            raise CommandError("--spans and --days must be positive")
        # The project, prices and micro models it creates are recorded in the audit log.
        with acting_as("command seed_demo_data"):
            project = create_project(options["project"])
            ensure_demo_prices()
            result = seed_demo_data(
                project.id, spans=options["spans"], days=options["days"], seed=options["seed"]
            )
        self.stdout.write(
            f"stored {result.spans} spans in {result.traces} traces and "
            f"{result.evaluations} evaluation results in {result.seconds:.1f} s "
            f"({result.spans / result.seconds:,.0f} spans/s)"
        )
        if not options["no_fold"]:
            started = time.perf_counter()
            fold = fold_changes()
            self.stdout.write(
                f"folded {fold.traces} traces into {fold.hours} hour buckets"
                f" in {time.perf_counter() - started:.1f} s"
            )
            started = time.perf_counter()
            hours, _ = fold_evaluations()
            self.stdout.write(
                f"counted evaluations into {hours} hour buckets"
                f" in {time.perf_counter() - started:.1f} s"
            )
