from django.core.management.base import BaseCommand

from ...metrics.evaluations import fold_evaluations, rebuild_evaluation_rollups
from ...metrics.refresh import fold_changes, rebuild_all_rollups, resum_rollups


class Command(BaseCommand):
    help = (
        "Fold traces changed since the last run into the metric rollups (beat does this "
        "every minute; model prices saved or deleted since are applied too), and evaluation "
        "results changed since the last run into the evaluation rollup. --rebuild "
        "recomputes all history from the spans; --resum re-sums the rollups from the folded "
        "facts (after a cohort dimension change, much faster). Both re-count the evaluation "
        "rollup."
    )

    def add_arguments(self, parser) -> None:
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--rebuild", action="store_true")
        group.add_argument("--resum", action="store_true")

    def handle(self, *args, **options) -> None:
        if options["rebuild"]:
            result = rebuild_all_rollups()
        elif options["resum"]:
            result = resum_rollups()
        else:
            result = fold_changes()
        self.stdout.write(
            f"folded {result.traces} traces: {result.hours} hour and {result.days} day buckets"
        )
        if options["rebuild"] or options["resum"]:
            hours, days = rebuild_evaluation_rollups()
        else:
            hours, days = fold_evaluations()
        self.stdout.write(f"evaluations: {hours} hour and {days} day buckets re-counted")
