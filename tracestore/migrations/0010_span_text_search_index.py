"""A full-text index over each span's name, input and output, for the Traces page's
search (``tracestore.queries.span_text_condition`` repeats the expression verbatim, or the
index would not serve it). The 'simple' configuration: no stemming and no stop words, so
any language and any identifier is found as written.

On the partitioned span table, CREATE INDEX builds the index on every day partition and
blocks writes while it does (no CONCURRENTLY on a partitioned table); on a large table run
it in a quiet hour, or build each partition's index CONCURRENTLY first and attach them.
"""

from django.db import migrations

INDEX = "span_text_search_idx"
# tracestore.queries.SPAN_TEXT_VECTOR as it was written here (a test checks they agree).
EXPRESSION = (
    "to_tsvector('simple'::regconfig,"
    " left(coalesce(name, ''), 16000) || ' ' ||"
    " left(coalesce(input_text, ''), 16000) || ' ' ||"
    " left(coalesce(output_text, ''), 16000))"
)


class Migration(migrations.Migration):
    dependencies = [
        ("tracestore", "0009_cohort_dimensions_configured_for_ingest"),
    ]

    operations = [
        migrations.RunSQL(
            f"CREATE INDEX IF NOT EXISTS {INDEX} ON tracestore_span USING gin"
            f" (({EXPRESSION}))",
            f"DROP INDEX IF EXISTS {INDEX}",
        ),
    ]
