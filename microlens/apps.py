from django.apps import AppConfig


class MicrolensConfig(AppConfig):
    name = "microlens"
    verbose_name = "microlens"
    default_auto_field = "django.db.models.BigAutoField"
