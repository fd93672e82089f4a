"""dashboard's tables: prices, cohort dimensions, and the metric rollups.

The rollups are derived data, rebuilt from tracestore's public reads by
``metrics.refresh`` (see dashboard/metrics/README.md): ``DecisionFact`` keeps what each
trace contributes, ``Rollup`` and ``LabelRollup`` the per-bucket sums every metric reads.
Project ids are plain integers: the rows belong to tracestore's projects, but dashboard
never imports tracestore's models.
"""

from __future__ import annotations

from typing import Any

from django.contrib.postgres.fields import ArrayField
from django.db import models, transaction


class ModelPrice(models.Model):
    """A model's price from a date on. The most specific pattern that matches wins (a plain
    name beats a glob), then the latest ``effective_from`` not after the span's day."""

    model_pattern = models.CharField(
        max_length=200,
        help_text="Model name, or a glob such as gpt-4o* (matched against the span's model).",
    )
    input_per_million = models.DecimalField(
        max_digits=14, decimal_places=6, help_text="USD per million input (prompt) tokens."
    )
    output_per_million = models.DecimalField(
        max_digits=14, decimal_places=6, help_text="USD per million output (completion) tokens."
    )
    cached_input_per_million = models.DecimalField(
        max_digits=14,
        decimal_places=6,
        null=True,
        blank=True,
        help_text="USD per million cached input tokens; empty means the input price.",
    )
    effective_from = models.DateField(help_text="Applies to spans from this day (UTC) on.")

    class Meta:
        ordering = ("model_pattern", "-effective_from")
        constraints = [
            models.UniqueConstraint(
                fields=["model_pattern", "effective_from"], name="model_price_pattern_from_uniq"
            )
        ]

    def __str__(self) -> str:
        return f"{self.model_pattern} from {self.effective_from}"

    # One transaction with the PriceChange rows its signals write (dashboard/signals.py),
    # also outside the admin: a fold sees the new price and its change together or not at
    # all. (QuerySet.delete() runs its signals inside its own transaction.)
    def save(self, *args: Any, **kwargs: Any) -> None:
        with transaction.atomic():
            super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        with transaction.atomic():
            return super().delete(*args, **kwargs)


class DecisionFact(models.Model):
    """One micro-model decision (span_id set) or, for a trace with none, one trace row
    (span_id empty). The first decision of a trace is its primary row and carries the
    trace's cost and tokens, so trace metrics count each trace once."""

    project_id = models.BigIntegerField()
    trace_id = models.BinaryField(max_length=16)
    span_id = models.BinaryField(max_length=8)
    hour = models.DateTimeField()
    start_time = models.DateTimeField()
    micro_model = models.TextField(default="")
    model = models.TextField(default="")
    route = models.TextField(default="")
    label = models.TextField(default="")
    expected_label = models.TextField(default="")
    confidence = models.FloatField(null=True)
    is_decision = models.BooleanField()
    is_primary = models.BooleanField()
    is_fallback = models.BooleanField()
    is_retry = models.BooleanField()
    cache_hit = models.BooleanField()
    is_error = models.BooleanField()
    latency_ms = models.FloatField()
    trace_duration_ms = models.FloatField()
    trace_error = models.BooleanField()
    cohort = models.JSONField(default=dict)
    cost = models.FloatField(null=True)
    unpriced_models = ArrayField(models.TextField(), default=list)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    # Primary row of an escalated trace: what its spans on models other than the micro
    # models' cost (the rescue); NULL when not escalated or a model has no price.
    rescue_cost = models.FloatField(null=True)
    # An escalated decision: the fallback's answer in the micro model's label space
    # (refresh.fallback_labels pairs them); '' when the fallback span carried none.
    fallback_label = models.TextField(default="", db_default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project_id", "trace_id", "span_id"], name="decision_fact_uniq"
            )
        ]
        indexes = [
            models.Index(fields=["project_id", "hour"], name="decision_fact_hour_idx"),
            models.Index(
                fields=["project_id", "-start_time"],
                name="decision_fact_trace_idx",
                condition=models.Q(is_primary=True),
            ),
            # The span search (/api/v1/spans/): decisions newest first, per project.
            models.Index(
                fields=["project_id", "-start_time"],
                name="decision_fact_span_idx",
                condition=models.Q(is_decision=True),
            ),
            # The threshold optimiser's unit costs: one micro model's traces, newest first,
            # read from the index alone (the cohort too, for the per-cohort costs).
            models.Index(
                fields=["project_id", "micro_model", "-start_time"],
                name="decision_fact_model_cost_idx",
                condition=models.Q(is_primary=True),
                include=["is_fallback", "cost", "cohort"],
            ),
        ]

    def __str__(self) -> str:
        return f"{bytes(self.trace_id).hex()}/{bytes(self.span_id).hex() or 'trace'}"


class Rollup(models.Model):
    """Sums per bucket (an hour, or a whole UTC day) x project x micro model x model x
    route x cohort value. ``dim_key`` '' is the row for all cohorts; each configured
    dimension key present on the trace adds a row under (key, value)."""

    width = models.CharField(max_length=1)  # "h" or "d"
    bucket = models.DateTimeField()
    project_id = models.BigIntegerField()
    micro_model = models.TextField()
    model = models.TextField()
    route = models.TextField()
    dim_key = models.TextField()
    dim_value = models.TextField()
    decisions = models.IntegerField()
    fallbacks = models.IntegerField()
    retries = models.IntegerField()
    cache_hits = models.IntegerField()
    errors = models.IntegerField()
    traces = models.IntegerField()
    trace_errors = models.IntegerField()
    costed_traces = models.IntegerField()
    cost_sum = models.FloatField()
    prompt_tokens = models.BigIntegerField()
    completion_tokens = models.BigIntegerField()
    latency_hist = ArrayField(models.IntegerField())
    cost_hist = ArrayField(models.IntegerField())
    # Models that left traces in this bucket uncosted (no price): listed, never zero.
    unpriced_models = ArrayField(models.TextField(), default=list)
    # Escalated traces whose rescue (the fallback's spans) is priced, and its cost.
    rescue_costed = models.IntegerField(default=0)
    rescue_cost_sum = models.FloatField(default=0.0)
    # Their sum of squares: the interval of the mean cost of a rescue.
    rescue_cost_sq_sum = models.FloatField(default=0.0)
    # Escalated decisions with an expected label, a label and the fallback's label,
    # paired: which of the two was right (routing advice's accuracy gap).
    paired_both_right = models.IntegerField(default=0, db_default=0)
    paired_micro_right = models.IntegerField(default=0, db_default=0)
    paired_fallback_right = models.IntegerField(default=0, db_default=0)
    paired_neither_right = models.IntegerField(default=0, db_default=0)

    class Meta:
        indexes = [
            models.Index(
                fields=["project_id", "width", "dim_key", "bucket"], name="rollup_lookup_idx"
            )
        ]

    def __str__(self) -> str:
        return f"{self.width}:{self.bucket:%Y-%m-%d %H}h {self.micro_model}/{self.route}"


class LabelRollup(models.Model):
    """Decisions per bucket x project x micro model x route x (label, expected label) x
    cohort value, with a confidence histogram: the confusion matrix and label quality."""

    width = models.CharField(max_length=1)
    bucket = models.DateTimeField()
    project_id = models.BigIntegerField()
    micro_model = models.TextField()
    model = models.TextField()
    route = models.TextField()
    label = models.TextField()
    expected_label = models.TextField()
    dim_key = models.TextField()
    dim_value = models.TextField()
    n = models.IntegerField()
    confidence_hist = ArrayField(models.IntegerField())

    class Meta:
        indexes = [
            models.Index(
                fields=["project_id", "width", "dim_key", "bucket"], name="label_rollup_lookup_idx"
            )
        ]

    def __str__(self) -> str:
        return f"{self.width}:{self.bucket:%Y-%m-%d %H}h {self.label}/{self.expected_label}"


class RollupWatermark(models.Model):
    """How far the rollups have folded tracestore's changed traces (one row)."""

    name = models.CharField(max_length=50, unique=True)
    folded_until = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} until {self.folded_until}"


class EvalRollup(models.Model):
    """Applicable evaluation verdicts per bucket (an hour, or a whole UTC day) x project x
    micro model x evaluator x cohort value (``dim_key`` '' for all cohorts), re-summed from
    evaluators' results by ``metrics.evaluations``. The weighted sums add w = 1 / sampling
    probability per verdict: the counts the whole traffic would have had; the squared sums
    add w², which the interval of the weighted rate (and its effective n) is computed from."""

    width = models.CharField(max_length=1)
    bucket = models.DateTimeField()
    project_id = models.BigIntegerField()
    micro_model = models.TextField()
    evaluator = models.TextField()
    dim_key = models.TextField()
    dim_value = models.TextField()
    evaluated = models.IntegerField()
    failed = models.IntegerField()
    weighted_evaluated = models.FloatField()
    weighted_failed = models.FloatField()
    weighted_sq_evaluated = models.FloatField(default=0.0)
    weighted_sq_failed = models.FloatField(default=0.0)

    class Meta:
        indexes = [
            models.Index(
                fields=["project_id", "width", "dim_key", "bucket"], name="eval_rollup_lookup_idx"
            )
        ]

    def __str__(self) -> str:
        return f"{self.width}:{self.bucket:%Y-%m-%d %H}h {self.micro_model}/{self.evaluator}"


class ShadowPair(models.Model):
    """A mirrored (shadow) decision paired with the live decision it mirrors: same trace,
    the shadow span's ``route.mirror_of`` naming the live micro model. Shadow calls are
    kept here, never in ``DecisionFact``, so no live figure counts them."""

    project_id = models.BigIntegerField()
    trace_id = models.BinaryField(max_length=16)
    span_id = models.BinaryField(max_length=8)  # the shadow span
    hour = models.DateTimeField()
    start_time = models.DateTimeField()  # the trace's, as for DecisionFact
    micro_model = models.TextField()  # the live micro model
    shadow_model = models.TextField()
    live_label = models.TextField(default="")
    shadow_label = models.TextField(default="")
    # The live decision's expected label (feedback wins over the attribute), else the
    # shadow span's own attribute; empty when neither is known.
    expected_label = models.TextField(default="")
    cohort = models.JSONField(default=dict)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project_id", "trace_id", "span_id"], name="shadow_pair_uniq"
            )
        ]
        indexes = [
            models.Index(
                fields=["project_id", "micro_model", "start_time"], name="shadow_pair_model_idx"
            ),
            # The fold re-counts whole (project, hour) buckets of pairs.
            models.Index(fields=["project_id", "hour"], name="shadow_pair_hour_idx"),
        ]

    def __str__(self) -> str:
        return f"{bytes(self.trace_id).hex()}/{bytes(self.span_id).hex()}"


class ShadowPairRollup(models.Model):
    """Shadow pairs per bucket (an hour, or a whole UTC day summed from its hours) x
    project x live micro model x shadow model x cohort value (``dim_key`` '' for all
    cohorts) x (live, shadow, expected) label: what shadow agreement reads for the whole
    hours and days of a window (``shadow.py``), re-counted by the fold from
    ``ShadowPair``."""

    width = models.CharField(max_length=1)
    bucket = models.DateTimeField()
    project_id = models.BigIntegerField()
    micro_model = models.TextField()  # the live micro model
    shadow_model = models.TextField()
    dim_key = models.TextField()
    dim_value = models.TextField()
    live_label = models.TextField()
    shadow_label = models.TextField()
    expected_label = models.TextField()
    n = models.IntegerField()

    class Meta:
        indexes = [
            # The read: one micro model's rows of one cohort key over a range of buckets.
            models.Index(
                fields=["project_id", "micro_model", "width", "dim_key", "bucket"],
                name="shadow_rollup_lookup_idx",
            ),
            # The fold's re-count of some hours (and days) of a project.
            models.Index(fields=["project_id", "width", "bucket"], name="shadow_rollup_bucket_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.width}:{self.bucket:%Y-%m-%d %H}h {self.live_label}/{self.shadow_label}"


class PriceChange(models.Model):
    """A model price saved or deleted since the last fold: the fold re-prices the traces
    that used a model matching ``model_pattern`` from ``effective_from`` on, then deletes
    the row. Written in the price change's own transaction (``dashboard/signals.py``), so
    it commits or rolls back with it."""

    model_pattern = models.CharField(max_length=200)
    effective_from = models.DateField()
    changed_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.model_pattern} from {self.effective_from}"
