from django.apps import AppConfig


class TracestoreConfig(AppConfig):
    name = "tracestore"
    verbose_name = "Trace store"
    default_auto_field = "django.db.models.BigAutoField"
