from django.core.management.base import BaseCommand

from tracestore.services import maintain_span_partitions


class Command(BaseCommand):
    help = (
        "Create the span partitions ahead of time and drop those older than "
        "MICROLENS_RETENTION_DAYS (also run hourly by Celery beat)."
    )

    def handle(self, *args, **options) -> None:
        result = maintain_span_partitions()
        self.stdout.write(
            f"partitions created: {result.partitions_created}, "
            f"dropped: {result.partitions_dropped}, "
            f"old spans deleted from the default partition: {result.default_rows_deleted}, "
            f"expired traces deleted: {result.traces_deleted}"
        )
