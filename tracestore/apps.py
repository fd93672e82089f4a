from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _create_span_partitions(sender, using: str = "default", **kwargs) -> None:
    from django.conf import settings
    from django.utils import timezone

    from .partitions import ensure_span_partitions

    ensure_span_partitions(
        timezone.now().date(),
        days_back=settings.MICROLENS_RETENTION_DAYS,
        days_ahead=settings.MICROLENS_PARTITION_DAYS_AHEAD,
    )


class TracestoreConfig(AppConfig):
    name = "tracestore"
    verbose_name = "Trace store"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Daily span partitions exist from the first migrate on, not only after beat runs.
        post_migrate.connect(_create_span_partitions, sender=self)
