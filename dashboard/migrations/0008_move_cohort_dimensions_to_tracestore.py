# The configured cohort dimensions now live in tracestore (ingest reads them): copy every row,
# ids included, then drop the dashboard's table. Reversible: the rows are copied back.

from django.db import migrations

# Rows are written with explicit ids: each table's id sequence is then moved past them.
_RESET_SEQUENCE = {
    app: f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), coalesce(max(id), 1),"  # noqa: S608 (constant table names)
    f" max(id) IS NOT NULL) FROM {table}"
    for app, table in (
        ("dashboard", "dashboard_cohortdimension"),
        ("tracestore", "tracestore_cohortdimension"),
    )
}


def _copy(apps, schema_editor, source: str, target: str) -> None:
    Source = apps.get_model(source, "CohortDimension")
    Target = apps.get_model(target, "CohortDimension")
    Target.objects.all().delete()
    Target.objects.bulk_create(
        Target(id=row.id, key=row.key, display_name=row.display_name)
        for row in Source.objects.order_by("id")
    )
    schema_editor.execute(_RESET_SEQUENCE[target])


def copy_to_tracestore(apps, schema_editor):
    _copy(apps, schema_editor, "dashboard", "tracestore")


def copy_to_dashboard(apps, schema_editor):
    _copy(apps, schema_editor, "tracestore", "dashboard")


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0007_eval_rollup_squared_weights_recounted"),
        ("tracestore", "0009_cohort_dimensions_configured_for_ingest"),
    ]

    operations = [
        migrations.RunPython(copy_to_tracestore, copy_to_dashboard),
        migrations.DeleteModel(name="CohortDimension"),
    ]
