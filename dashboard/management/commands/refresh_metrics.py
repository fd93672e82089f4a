from django.core.management.base import BaseCommand

from ...metrics.refresh import fold_changes, rebuild_all_rollups


class Command(BaseCommand):
    help = (
        "Fold traces changed since the last run into the metric rollups (beat does this "
        "every minute). --rebuild recomputes all history: run it after changing model "
        "prices or cohort dimensions."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--rebuild", action="store_true")

    def handle(self, *args, **options) -> None:
        result = rebuild_all_rollups() if options["rebuild"] else fold_changes()
        self.stdout.write(
            f"folded {result.traces} traces: {result.hours} hour and {result.days} day buckets"
        )
