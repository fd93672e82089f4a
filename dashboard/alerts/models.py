"""Alert rules, their per-split state, every evaluation, the transitions (events) and the
notification deliveries. Project ids are plain integers: dashboard never imports
tracestore's models."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

# Rule metric -> (metrics module name, what is read from its rows). One list, shared by the
# admin, the API and the evaluation.
METRIC_CHOICES = [
    ("fallback-rate", "Fallback rate"),
    ("retry-rate", "Retry rate"),
    ("cache-hit-rate", "Cache hit rate"),
    ("error-rate", "Error rate"),
    ("route-share", "Route share (of the route filter)"),
    ("eval-fail-rate", "Eval fail rate (of the evaluator filter)"),
    ("label-recall", "Label recall (of the label filter)"),
    ("label-precision", "Label precision (of the label filter)"),
    ("label-f1", "Label F1 (of the label filter)"),
    ("cost-per-trace-mean", "Cost per trace, mean (USD)"),
    ("cost-per-trace-p90", "Cost per trace, p90 (USD)"),
    ("latency-p50", "Latency p50 (ms)"),
    ("latency-p90", "Latency p90 (ms)"),
    ("latency-p99", "Latency p99 (ms)"),
]

MIN_WINDOW_SECONDS = 5 * 60
MAX_WINDOW_SECONDS = 7 * 24 * 3600


class AlertRule(models.Model):
    class Comparator(models.TextChoices):
        ABOVE = "above", "above"
        BELOW = "below", "below"

    class Compare(models.TextChoices):
        NONE = "", "no (absolute value)"
        DAY = "day", "same window a day earlier (relative change)"
        WEEK = "week", "same window a week earlier (relative change)"

    class Severity(models.TextChoices):
        INFO = "info", "info"
        WARNING = "warning", "warning"
        CRITICAL = "critical", "critical"

    name = models.CharField(max_length=200)
    project_id = models.BigIntegerField()
    metric = models.CharField(max_length=40, choices=METRIC_CHOICES)
    micro_model = models.CharField(max_length=200, blank=True)
    route = models.CharField(max_length=200, blank=True)
    evaluator = models.CharField(max_length=100, blank=True)
    label = models.CharField(max_length=200, blank=True)
    cohort_key = models.CharField(
        max_length=200, blank=True, help_text="Cohort dimension to filter by (e.g. user.tier)."
    )
    cohort_value = models.CharField(max_length=200, blank=True)
    split_by = models.CharField(
        max_length=200,
        blank=True,
        help_text="Evaluate once for each value of this cohort dimension (e.g. language).",
    )
    comparator = models.CharField(max_length=5, choices=Comparator.choices)
    threshold = models.FloatField(
        help_text="In the metric's unit; for a relative change, a fraction (0.3 = +30 %)."
    )
    window_seconds = models.PositiveIntegerField(
        default=3600,
        validators=[MinValueValidator(MIN_WINDOW_SECONDS), MaxValueValidator(MAX_WINDOW_SECONDS)],
        help_text="Evaluation window, 300 (5 min) to 604800 (7 days), read exactly.",
    )
    min_n = models.PositiveIntegerField(
        default=30, help_text="Below this sample count the rule neither fires nor resolves."
    )
    compare_to = models.CharField(max_length=4, choices=Compare.choices, blank=True)
    statistical = models.BooleanField(
        default=False,
        help_text="Fire only when the whole 95 % interval is beyond the threshold.",
    )
    consecutive = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="Evaluations in a row beyond the threshold before it fires.",
    )
    hysteresis = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0.0)],
        help_text="A firing rule resolves only once the value is this far back inside.",
    )
    severity = models.CharField(max_length=10, choices=Severity.choices, default="warning")
    enabled = models.BooleanField(default=True)
    webhook_urls = ArrayField(models.CharField(max_length=500), blank=True, default=list)
    email_addresses = ArrayField(models.EmailField(), blank=True, default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("project_id", "name")
        indexes = [models.Index(fields=["project_id", "name"], name="alert_rule_project_idx")]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        # Imported here: evaluation and notify read this module's constants.
        from .evaluation import rule_problems
        from .notify import UnsafeTarget, check_webhook_url

        problems = rule_problems(self)
        for url in self.webhook_urls or []:
            try:
                check_webhook_url(url, saving=True)
            except UnsafeTarget as exc:
                problems.setdefault("webhook_urls", str(exc))
        if problems:
            raise ValidationError(problems)


class AlertState(models.Model):
    """The state machine of one rule (and one split value): ok -> pending -> firing -> ok.
    Its row lock serialises evaluations of the same rule."""

    class State(models.TextChoices):
        OK = "ok", "ok"
        PENDING = "pending", "pending"
        FIRING = "firing", "firing"

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="states")
    split_value = models.CharField(max_length=200, blank=True)
    state = models.CharField(max_length=8, choices=State.choices, default="ok")
    streak = models.PositiveIntegerField(default=0)
    since = models.DateTimeField(null=True, blank=True)
    last_tick = models.BigIntegerField(null=True, blank=True)
    last_value = models.FloatField(null=True, blank=True)
    last_n = models.PositiveIntegerField(default=0)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["rule", "split_value"], name="alert_state_rule_split")
        ]

    def __str__(self) -> str:
        return f"{self.rule_id}/{self.split_value or '-'}: {self.state}"


class AlertEvaluation(models.Model):
    """One computed value of a rule (per split value): the chart of value over time."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="evaluations")
    split_value = models.CharField(max_length=200, blank=True)
    tick = models.BigIntegerField()
    evaluated_at = models.DateTimeField()
    value = models.FloatField(null=True)
    n = models.PositiveIntegerField(default=0)
    low = models.FloatField(null=True)
    high = models.FloatField(null=True)
    breached = models.BooleanField(default=False)
    state = models.CharField(max_length=8)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "split_value", "tick"], name="alert_evaluation_once_per_tick"
            )
        ]
        indexes = [models.Index(fields=["rule", "evaluated_at"], name="alert_eval_rule_time")]

    def __str__(self) -> str:
        return f"{self.rule_id}/{self.split_value or '-'} = {self.value} (n={self.n})"


class AlertEvent(models.Model):
    """A transition (fired / resolved). The unique key (rule, split value, kind, tick) makes
    a transition exist once, whoever evaluates the rule and however often."""

    class Kind(models.TextChoices):
        FIRED = "fired", "fired"
        RESOLVED = "resolved", "resolved"

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="events")
    project_id = models.BigIntegerField()
    split_value = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    tick = models.BigIntegerField()
    value = models.FloatField(null=True)
    n = models.PositiveIntegerField(default=0)
    low = models.FloatField(null=True)
    high = models.FloatField(null=True)
    threshold = models.FloatField()
    created_at = models.DateTimeField()

    class Meta:
        ordering = ("-created_at", "-id")
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "split_value", "kind", "tick"], name="alert_event_transition_key"
            )
        ]
        indexes = [models.Index(fields=["project_id", "-created_at"], name="alert_event_time")]

    def __str__(self) -> str:
        return f"{self.rule_id}/{self.split_value or '-'} {self.kind} at {self.created_at}"


class AlertDelivery(models.Model):
    """One notification of one event to one target, claimed in the database by the worker
    that sends it (status pending -> running -> done | failed). ``sending_at`` is set,
    committed, just before the request leaves: while it is empty a claim has sent nothing."""

    class Channel(models.TextChoices):
        WEBHOOK = "webhook", "webhook"
        EMAIL = "email", "email"

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    event = models.ForeignKey(AlertEvent, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    target = models.CharField(max_length=500)
    status = models.CharField(max_length=8, choices=Status.choices, default="pending")
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    claimed_until = models.DateTimeField(null=True, blank=True)
    sending_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        verbose_name_plural = "alert deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["event", "channel", "target"], name="alert_delivery_once_per_target"
            )
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="alert_delivery_due")]

    def __str__(self) -> str:
        return f"{self.channel} {self.target}: {self.status}"
