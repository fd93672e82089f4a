# The configured cohort dimensions move here from the dashboard: ingest reads them. The rows
# are copied by the dashboard's migration that drops its table (it depends on this one).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tracestore", "0008_index_spans_kept_from_receipt")]

    operations = [
        migrations.CreateModel(
            name="CohortDimension",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "key",
                    models.CharField(
                        help_text=(
                            "Span or resource attribute key, e.g. customer.region. The "
                            "receivers start reading a new key within a few seconds "
                            "(MICROLENS_COHORT_DIMENSIONS_REFRESH_SECONDS, default 10); spans "
                            "stored before are not back-filled."
                        ),
                        max_length=200,
                        unique=True,
                    ),
                ),
                ("display_name", models.CharField(max_length=200)),
            ],
            options={"ordering": ("display_name",)},
        ),
    ]
