"""tracestore's tables. Private to tracestore: other apps use queries.py / services.py.

Every unique key and join of the span and trace tables starts with (project, trace_id)
so both can be distributed by it (Citus) unchanged.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Now
from django.db.models.lookups import GreaterThan


class Project(models.Model):
    name = models.CharField(max_length=100, unique=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="projects")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class ApiKey(models.Model):
    """A project's ingest/API key. Only a SHA-256 digest is stored: keys are 256-bit random
    tokens, so a fast hash is as safe as a slow one and keeps per-request auth cheap."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, default="default")
    prefix = models.CharField(max_length=16, help_text="First characters, to recognise the key.")
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.project.name})"


class CohortDimension(models.Model):
    """An attribute key traces are grouped by. Ingest copies each configured key's value into
    the span's cohort (the span's attribute, else its resource's) and the trace's (its root
    span's value, else the earliest span's); the dashboard filters and groups metrics by it.
    Receivers re-read this table every MICROLENS_COHORT_DIMENSIONS_REFRESH_SECONDS; spans
    stored before a key was added are not back-filled."""

    key = models.CharField(
        max_length=200,
        unique=True,
        help_text=(
            "Span or resource attribute key, e.g. customer.region. The receivers start "
            "reading a new key within a few seconds (MICROLENS_COHORT_DIMENSIONS_REFRESH_"
            "SECONDS, default 10); spans stored before are not back-filled."
        ),
    )
    display_name = models.CharField(max_length=200)

    class Meta:
        ordering = ("display_name",)

    def __str__(self) -> str:
        return self.display_name


class Span(models.Model):
    # The logical identity. In the database the table is partitioned by day of start_time
    # (migration 0003), so its primary key also holds start_time.
    pk = models.CompositePrimaryKey("project_id", "trace_id", "span_id")
    # No index of its own (the partitioned table never had one): the primary key's prefix
    # serves project lookups.
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, db_constraint=False, db_index=False
    )
    trace_id = models.BinaryField(max_length=16)
    span_id = models.BinaryField(max_length=8)
    parent_span_id = models.BinaryField(max_length=8, null=True)
    name = models.TextField()
    kind = models.SmallIntegerField(db_default=0)
    start_time = models.DateTimeField()
    end_time = models.DateTimeField()
    duration_ns = models.BigIntegerField()
    status_code = models.SmallIntegerField(db_default=0)
    status_message = models.TextField(db_default="")
    service_name = models.TextField(db_default="")
    scope_name = models.TextField(db_default="")
    scope_version = models.TextField(db_default="")
    attributes = models.JSONField(db_default={})
    resource_attributes = models.JSONField(db_default={})
    events = models.JSONField(db_default=[])
    links = models.JSONField(db_default=[])
    flags = models.IntegerField(db_default=0)
    # canonical fields (DESIGN.md "Span conventions we normalise")
    span_kind = models.TextField(null=True)
    model = models.TextField(null=True)
    provider = models.TextField(null=True)
    micro_model = models.TextField(null=True)
    prompt_tokens = models.IntegerField(null=True)
    completion_tokens = models.IntegerField(null=True)
    input_text = models.TextField(null=True)
    output_text = models.TextField(null=True)
    route = models.TextField(null=True)
    label = models.TextField(null=True)
    confidence = models.FloatField(null=True)
    expected_label = models.TextField(null=True)
    is_fallback = models.BooleanField(db_default=False)
    is_retry = models.BooleanField(db_default=False)
    cache_hit = models.BooleanField(db_default=False)
    is_mirrored = models.BooleanField(db_default=False)
    mirror_of = models.TextField(null=True)
    cohort = models.JSONField(db_default={})
    received_at = models.DateTimeField(db_default=Now())

    # Two secondary indexes only: every read of spans goes by (project_id, trace_id), the
    # primary key's prefix (queries.py), and each index costs every ingested span an
    # insert. One is the partial index below; the other is the full-text index of the
    # Traces page's search (span_text_search_idx on name, input and output), an expression
    # index made by migration 0010 in SQL (queries.SPAN_TEXT_VECTOR).

    class Meta:
        indexes = [
            # The spans retention keeps by their receipt (FLAG_OLD_START = 16), looked up
            # in each day it drops while it holds the table's lock (partitions.py). Only
            # flagged spans are in it: an ordinary span costs the predicate's test.
            models.Index(
                fields=["received_at"],
                name="span_kept_from_receipt_idx",
                condition=Q(GreaterThan(F("flags").bitand(16), 0)),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({bytes(self.span_id).hex()})"


class Trace(models.Model):
    """Per-trace rollup: each stored batch merges its per-trace delta into it (the spans
    are not re-read); ``services.rebuild_trace_rollups`` recomputes it from the spans."""

    pk = models.CompositePrimaryKey("project_id", "trace_id")
    # No index of its own: the primary key (project_id, trace_id) serves project lookups.
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, db_constraint=False, db_index=False
    )
    trace_id = models.BinaryField(max_length=16)
    start_time = models.DateTimeField(null=True)
    end_time = models.DateTimeField(null=True)
    duration_ns = models.BigIntegerField(null=True)
    root_span_id = models.BinaryField(max_length=8, null=True)
    root_start_time = models.DateTimeField(null=True)
    root_name = models.TextField(null=True)
    service_name = models.TextField(null=True)
    span_count = models.IntegerField(db_default=0)
    error_count = models.IntegerField(db_default=0)
    models_used = ArrayField(models.TextField(), db_default=[], db_column="models")
    micro_models = ArrayField(models.TextField(), db_default=[])
    routes = ArrayField(models.TextField(), db_default=[])
    is_fallback = models.BooleanField(db_default=False)
    prompt_tokens = models.BigIntegerField(db_default=0)
    completion_tokens = models.BigIntegerField(db_default=0)
    cohort = models.JSONField(db_default={})
    # Where the cohort values came from, so batches merge in any order to one answer:
    # the root span's values win; otherwise, per key, the earliest span's (start, value).
    root_cohort = models.JSONField(null=True)
    cohort_sources = models.JSONField(db_default={})
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        indexes = [
            models.Index(fields=["project", "-start_time"], name="trace_project_recent_idx"),
            models.Index(fields=["project", "-updated_at"], name="trace_project_updated_idx"),
            # Readers that follow every project's traces as they change (the evaluation
            # scheduler) walk this order from a watermark.
            models.Index(fields=["updated_at", "project", "trace_id"], name="trace_updated_idx"),
        ]

    def __str__(self) -> str:
        return bytes(self.trace_id).hex()
