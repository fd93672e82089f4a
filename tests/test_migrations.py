from io import StringIO

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_models_and_migrations_agree() -> None:
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


@pytest.mark.django_db
def test_span_table_indexes_are_what_the_migration_state_says() -> None:
    """The partitioned span table holds only its primary key, the partial index of the
    spans kept from their receipt and the full-text index of the Traces page's search (an
    expression index made in SQL, outside the migration state); the migration state must
    not believe in an index the database lacks (a later AlterField would try to drop it)."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'tracestore_span'")
        in_database = sorted(row[0] for row in cursor.fetchall())
    assert in_database == [
        "span_kept_from_receipt_idx",
        "span_text_search_idx",
        "tracestore_span_pkey",
    ]

    state = MigrationExecutor(connection).loader.project_state()
    span = state.models["tracestore", "span"]
    assert span.fields["project"].db_index is False
    assert [index.name for index in span.options.get("indexes", [])] == [
        "span_kept_from_receipt_idx"
    ]


@pytest.mark.django_db(transaction=True)
def test_moving_the_cohort_dimensions_to_tracestore_keeps_every_row() -> None:
    """Configured dimensions (a removed default, an added key) survive the move with their
    ids, and new ones can still be added after it."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from tracestore.models import CohortDimension

    before = [
        ("dashboard", "0007_eval_rollup_squared_weights_recounted"),
        ("tracestore", "0008_index_spans_kept_from_receipt"),
    ]
    executor = MigrationExecutor(connection)
    leaves = executor.loader.graph.leaf_nodes()
    executor.migrate(before)
    old = executor.loader.project_state(before).apps.get_model("dashboard", "CohortDimension")
    old.objects.filter(key="language").delete()
    region = old.objects.create(key="customer.region", display_name="Customer region")
    expected = sorted(old.objects.values_list("id", "key", "display_name"))

    executor = MigrationExecutor(connection)
    executor.migrate(leaves)

    assert sorted(CohortDimension.objects.values_list("id", "key", "display_name")) == expected
    assert CohortDimension.objects.get(key="customer.region").id == region.id
    assert CohortDimension.objects.create(key="team", display_name="Team").id > region.id
