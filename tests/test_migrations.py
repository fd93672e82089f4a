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
