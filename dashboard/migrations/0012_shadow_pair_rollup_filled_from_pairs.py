"""Shadow pairs counted per hour and per day (``ShadowPairRollup``), so shadow agreement
reads whole hours and days from a rollup instead of every pair of its window; filled here,
in SQL, from the pairs already stored (no ``refresh_metrics --rebuild`` needed), and an
index on the pairs' (project, hour) for the fold's re-count of whole hours.

The fill runs under the metrics fold's advisory lock, so a fold running meanwhile has
either committed its pairs before the count or waits for the migration to commit."""

from django.db import migrations, models

# refresh.FOLD.lock_id at the time of this migration.
METRICS_FOLD_LOCK = 0x6D6C_6D65

COUNT_HOURS = """
INSERT INTO dashboard_shadowpairrollup (width, bucket, project_id, micro_model, shadow_model,
    dim_key, dim_value, live_label, shadow_label, expected_label, n)
SELECT 'h', p.hour, p.project_id, p.micro_model, p.shadow_model, d.dim_key, d.dim_value,
    p.live_label, p.shadow_label, p.expected_label, count(*)
FROM dashboard_shadowpair p
CROSS JOIN LATERAL (
    SELECT ''::text AS dim_key, ''::text AS dim_value
    UNION ALL
    SELECT k, p.cohort ->> k FROM unnest(%s::text[]) AS k WHERE p.cohort ->> k IS NOT NULL
) AS d
GROUP BY 2, 3, 4, 5, 6, 7, 8, 9, 10
"""

SUM_DAYS = """
INSERT INTO dashboard_shadowpairrollup (width, bucket, project_id, micro_model, shadow_model,
    dim_key, dim_value, live_label, shadow_label, expected_label, n)
SELECT 'd', date_trunc('day', bucket, 'UTC'), project_id, micro_model, shadow_model, dim_key,
    dim_value, live_label, shadow_label, expected_label, sum(n)
FROM dashboard_shadowpairrollup WHERE width = 'h'
GROUP BY 2, 3, 4, 5, 6, 7, 8, 9, 10
"""


def fill_from_pairs(apps, schema_editor):
    CohortDimension = apps.get_model("tracestore", "CohortDimension")
    keys = sorted(CohortDimension.objects.values_list("key", flat=True))
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [METRICS_FOLD_LOCK])
        cursor.execute(COUNT_HOURS, [keys])
        cursor.execute(SUM_DAYS)


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0011_decision_fact_model_index_covers_cohort"),
        ("tracestore", "0009_cohort_dimensions_configured_for_ingest"),
    ]

    operations = [
        migrations.CreateModel(
            name="ShadowPairRollup",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("width", models.CharField(max_length=1)),
                ("bucket", models.DateTimeField()),
                ("project_id", models.BigIntegerField()),
                ("micro_model", models.TextField()),
                ("shadow_model", models.TextField()),
                ("dim_key", models.TextField()),
                ("dim_value", models.TextField()),
                ("live_label", models.TextField()),
                ("shadow_label", models.TextField()),
                ("expected_label", models.TextField()),
                ("n", models.IntegerField()),
            ],
        ),
        # Filled before its indexes are built: one sort each instead of one insert per row.
        migrations.RunPython(fill_from_pairs, migrations.RunPython.noop, elidable=False),
        migrations.AddIndex(
            model_name="shadowpair",
            index=models.Index(fields=["project_id", "hour"], name="shadow_pair_hour_idx"),
        ),
        migrations.AddIndex(
            model_name="shadowpairrollup",
            index=models.Index(
                fields=["project_id", "micro_model", "width", "dim_key", "bucket"],
                name="shadow_rollup_lookup_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="shadowpairrollup",
            index=models.Index(
                fields=["project_id", "width", "bucket"], name="shadow_rollup_bucket_idx"
            ),
        ),
    ]
