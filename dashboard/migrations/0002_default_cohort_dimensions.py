from django.db import migrations

DEFAULTS = (
    ("user.tier", "User tier"),
    ("language", "Language"),
    ("prompt.version", "Prompt version"),
    ("task.type", "Task type"),
)


def create_defaults(apps, schema_editor):
    CohortDimension = apps.get_model("dashboard", "CohortDimension")
    for key, display_name in DEFAULTS:
        CohortDimension.objects.get_or_create(key=key, defaults={"display_name": display_name})


def remove_defaults(apps, schema_editor):
    CohortDimension = apps.get_model("dashboard", "CohortDimension")
    CohortDimension.objects.filter(key__in=[key for key, _ in DEFAULTS]).delete()


class Migration(migrations.Migration):
    dependencies = [("dashboard", "0001_metrics_prices_cohorts_rollups")]

    operations = [migrations.RunPython(create_defaults, remove_defaults)]
