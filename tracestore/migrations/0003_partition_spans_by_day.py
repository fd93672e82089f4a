"""Partition the span table by day of start_time.

Whole days are then cheap to drop (retention) and recent partitions stay small and hot.
A partitioned table's primary key must contain the partition column, so the key becomes
(project_id, trace_id, span_id, start_time): an exporter's retry re-sends identical spans,
so deduplication is unchanged. A DEFAULT partition takes any span outside the partitions
created ahead of time (tracestore.partitions.ensure_span_partitions), so ingest never fails
on a missing partition. Rows already stored are copied across (expand, backfill, contract
in one step: the table is new enough that it is small wherever this runs).
"""

from django.db import migrations

FORWARD = """
CREATE TABLE tracestore_span_partitioned
    (LIKE tracestore_span INCLUDING DEFAULTS INCLUDING STORAGE)
    PARTITION BY RANGE (start_time);
ALTER TABLE tracestore_span_partitioned
    ADD CONSTRAINT tracestore_span_partitioned_pkey
    PRIMARY KEY (project_id, trace_id, span_id, start_time);
CREATE TABLE tracestore_span_default PARTITION OF tracestore_span_partitioned DEFAULT;
INSERT INTO tracestore_span_partitioned SELECT * FROM tracestore_span;
DROP TABLE tracestore_span;
ALTER TABLE tracestore_span_partitioned RENAME TO tracestore_span;
ALTER INDEX tracestore_span_partitioned_pkey RENAME TO tracestore_span_pkey;
CREATE INDEX span_project_start_idx ON tracestore_span (project_id, start_time);
CREATE INDEX span_micro_model_idx ON tracestore_span (project_id, micro_model, start_time)
    WHERE micro_model IS NOT NULL;
"""

BACKWARD = """
CREATE TABLE tracestore_span_plain (LIKE tracestore_span INCLUDING DEFAULTS INCLUDING STORAGE);
INSERT INTO tracestore_span_plain SELECT * FROM tracestore_span;
DROP TABLE tracestore_span;
ALTER TABLE tracestore_span_plain RENAME TO tracestore_span;
ALTER TABLE tracestore_span ADD CONSTRAINT tracestore_span_pkey
    PRIMARY KEY (project_id, trace_id, span_id);
CREATE INDEX span_project_start_idx ON tracestore_span (project_id, start_time);
CREATE INDEX span_micro_model_idx ON tracestore_span (project_id, micro_model, start_time)
    WHERE micro_model IS NOT NULL;
"""


class Migration(migrations.Migration):
    dependencies = [("tracestore", "0002_trace_rollup_merge_state")]

    operations = [migrations.RunSQL(sql=FORWARD, reverse_sql=BACKWARD)]
