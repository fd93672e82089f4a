from django.apps import AppConfig


class EvaluatorsConfig(AppConfig):
    name = "evaluators"
    verbose_name = "Evaluators"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import signals, system_checks  # noqa: F401 (connect receivers, register checks)
