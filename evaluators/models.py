"""evaluators' tables: configuration (micro models, judges), durable jobs, results, feedback.

Private to evaluators: the dashboard reads them through ``queries.py`` / ``services.py``.
Spans are referenced by their logical key (project, trace_id, span_id), never by a foreign
key: the span table is partitioned and owned by tracestore.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models.functions import Now

from microlens import outbound


class Evaluator(models.TextChoices):
    TASK_COMPLETION = "task_completion", "TaskCompletion"
    GROUNDEDNESS = "groundedness", "Groundedness"
    LABEL_CHECK = "label_check", "LabelCheck"


class TaskKind(models.TextChoices):
    # Registered from traffic: each span decides (a predicted label makes it a label
    # decision, otherwise it is generated text); sampling.not_applicable_reason.
    AUTO = "auto", "auto (by what each span is)"
    CLASSIFICATION = "classification"
    ROUTING = "routing"
    EXTRACTION = "extraction"
    GENERATION = "generation"
    SAFETY = "safety"


def validate_within_lease(seconds: float) -> None:
    """A judge call must end before the worker's claim on its job expires, or another
    worker re-claims the job and calls the judge again while the first call is running."""
    lease = settings.MICROLENS_EVAL_LEASE_SECONDS
    if seconds >= lease:
        raise ValidationError(
            f"must be shorter than the evaluation lease ({lease} s, MICROLENS_EVAL_LEASE_SECONDS)"
        )


# A judge may only read its API key from variables so named: nothing else of the worker's
# environment (DATABASE_URL with its password, the secret key) can be sent to an endpoint.
JUDGE_KEY_ENV_PREFIX = "MICROLENS_JUDGE_"


def judge_key_env_error(name: str) -> str | None:
    """Why ``name`` may not hold a judge's API key, or None when it may."""
    rest = name[len(JUDGE_KEY_ENV_PREFIX) :] if name.startswith(JUDGE_KEY_ENV_PREFIX) else ""
    if rest and all(c.isascii() and (c.isupper() or c.isdigit() or c == "_") for c in rest):
        return None
    return (
        f"must name an environment variable starting with {JUDGE_KEY_ENV_PREFIX}"
        f" (capitals, digits, _), e.g. {JUDGE_KEY_ENV_PREFIX}OPENAI_KEY"
    )


def validate_judge_key_env(name: str) -> None:
    error = judge_key_env_error(name)
    if error is not None:
        raise ValidationError(error)


class Judge(models.Model):
    """Who scores a verdict. The API key of an OpenAI-compatible endpoint is never stored:
    the row names the environment variable that holds it."""

    class Kind(models.TextChoices):
        LOCAL = "local", "local (offline, CPU)"
        OPENAI_COMPATIBLE = "openai-compatible", "OpenAI-compatible endpoint"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=30, choices=Kind.choices, default=Kind.LOCAL)
    base_url = models.URLField(
        blank=True, help_text="e.g. https://api.example.com/v1 (empty: MICROLENS_JUDGE_URL)."
    )
    model = models.CharField(max_length=200, blank=True, help_text="Empty: MICROLENS_JUDGE_MODEL.")
    api_key_env = models.CharField(
        max_length=100,
        default="MICROLENS_JUDGE_API_KEY",
        validators=[validate_judge_key_env],
        help_text=(
            "Name of the environment variable holding the API key (the key is never stored);"
            " it must start with MICROLENS_JUDGE_."
        ),
    )
    timeout_seconds = models.FloatField(
        default=30.0, validators=[MinValueValidator(0.1), validate_within_lease]
    )
    concurrency = models.PositiveIntegerField(
        default=4, validators=[MinValueValidator(1)], help_text="Calls in flight, all workers."
    )

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    def clean(self) -> None:
        problem = base_url_problem(self.base_url)
        if problem:
            raise ValidationError({"base_url": problem})


def base_url_problem(url: str) -> str | None:
    """Why a judge's endpoint is refused (the outbound-request guard webhooks use too:
    private addresses only with MICROLENS_JUDGE_ALLOW_PRIVATE), or None. A name that does
    not resolve yet is accepted here; the request itself fails closed."""
    if not url:
        return None
    allow_private = settings.MICROLENS_JUDGE_ALLOW_PRIVATE
    try:
        outbound.check_url(url, allow_private=allow_private, saving=True)
    except outbound.RefusedTarget as exc:
        hint = "" if allow_private else "; set MICROLENS_JUDGE_ALLOW_PRIVATE=true for a local one"
        return f"{exc}{hint}" if "not public" in str(exc) else str(exc)
    return None


class MicroModel(models.Model):
    project = models.ForeignKey("tracestore.Project", on_delete=models.CASCADE)
    name = models.CharField(max_length=200)
    micro_model_name = models.CharField(
        max_length=200, blank=True, help_text="Matches spans whose micro_model.name equals this."
    )
    model_pattern = models.CharField(
        max_length=200,
        blank=True,
        help_text="Shell-style pattern on the span's model name, e.g. intent-mini-*.",
    )
    task = models.CharField(
        max_length=20, choices=TaskKind.choices, default=TaskKind.CLASSIFICATION
    )
    label_attribute = models.CharField(max_length=200, default="micro_model.label")
    confidence_attribute = models.CharField(max_length=200, default="micro_model.confidence")
    fallback_models = ArrayField(
        models.CharField(max_length=200),
        default=list,
        blank=True,
        help_text="Larger (baseline) models a decision escalates to.",
    )
    sample_rate = models.FloatField(
        default=10.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(100.0)],
        help_text="Percent of traces whose spans the model-based evaluators score.",
    )
    always_on_fallback = models.BooleanField(default=True)
    always_on_error = models.BooleanField(default=True)
    always_below_confidence = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    hourly_judge_budget = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most model-based jobs created per hour (empty: no cap)."
    )
    label_synonyms = models.JSONField(
        default=dict,
        blank=True,
        help_text='LabelCheck synonyms: {"billing": ["payments", "invoice"]}.',
    )
    auto_registered = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="micromodel_project_name_uniq")
        ]

    def __str__(self) -> str:
        return self.name


class EvaluatorConfig(models.Model):
    micro_model = models.ForeignKey(MicroModel, on_delete=models.CASCADE, related_name="evaluators")
    evaluator = models.CharField(max_length=30, choices=Evaluator.choices)
    enabled = models.BooleanField(default=True)
    threshold = models.FloatField(
        default=0.5, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    judge = models.ForeignKey(
        Judge, null=True, blank=True, on_delete=models.PROTECT, help_text="Empty: local."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["micro_model", "evaluator"], name="evaluatorconfig_model_evaluator_uniq"
            )
        ]

    def __str__(self) -> str:
        return f"{self.micro_model} / {self.evaluator}"


class JobStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class EvaluationJob(models.Model):
    """One evaluation to run, unique per (span, evaluator, evaluator version). The broker
    only wakes workers: a job lives here until it is done or failed."""

    project = models.ForeignKey("tracestore.Project", on_delete=models.CASCADE)
    trace_id = models.BinaryField(max_length=16)
    span_id = models.BinaryField(max_length=8)
    span_start_time = models.DateTimeField()
    micro_model = models.ForeignKey(MicroModel, on_delete=models.CASCADE)
    evaluator = models.CharField(max_length=30, choices=Evaluator.choices)
    evaluator_version = models.PositiveIntegerField()
    sampling_probability = models.FloatField()
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(db_default=Now())
    dispatched_at = models.DateTimeField(db_default=Now())
    judge = models.ForeignKey(
        Judge, null=True, blank=True, on_delete=models.SET_NULL, help_text="Set when claimed."
    )
    claimed_by = models.CharField(max_length=200, blank=True, default="")
    claimed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    # The trace's cohort when scheduled: pending jobs are counted per cohort value beside
    # each eval fail rate.
    cohort = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(db_default=Now())
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "trace_id", "span_id", "evaluator", "evaluator_version"],
                name="evaluationjob_span_evaluator_uniq",
            )
        ]
        indexes = [
            models.Index(
                fields=["status", "next_attempt_at"],
                name="evaluationjob_open_idx",
                condition=models.Q(status__in=["pending", "running"]),
            ),
            models.Index(fields=["micro_model", "created_at"], name="evaluationjob_budget_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.evaluator} {bytes(self.span_id).hex()} ({self.status})"


class EvaluationResult(models.Model):
    """One verdict per (span, evaluator, evaluator version): re-runs and late feedback
    update the row in place. ``passed`` and ``score`` are null when not applicable."""

    class Source(models.TextChoices):
        SCHEDULED = "scheduled"
        FEEDBACK = "feedback"

    project = models.ForeignKey("tracestore.Project", on_delete=models.CASCADE)
    trace_id = models.BinaryField(max_length=16)
    span_id = models.BinaryField(max_length=8)
    span_start_time = models.DateTimeField()
    micro_model = models.ForeignKey(MicroModel, on_delete=models.CASCADE)
    job = models.OneToOneField(
        EvaluationJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="result"
    )
    evaluator = models.CharField(max_length=30, choices=Evaluator.choices)
    evaluator_version = models.PositiveIntegerField()
    score = models.FloatField(null=True)
    passed = models.BooleanField(null=True)
    threshold = models.FloatField()
    reason = models.TextField()
    judge = models.CharField(max_length=100)
    # The model version or file checksum of the judge that decided; why the configured
    # judge did not (a fallback), "" when it did. Database defaults: bulk imports omit them.
    judge_version = models.CharField(max_length=200, blank=True, db_default="")
    judge_fallback = models.TextField(blank=True, db_default="")
    latency_ms = models.FloatField()
    sampling_probability = models.FloatField()
    predicted_label = models.TextField(null=True, blank=True)
    expected_label = models.TextField(null=True, blank=True)
    cohort = models.JSONField(default=dict)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.SCHEDULED)
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "trace_id", "span_id", "evaluator", "evaluator_version"],
                name="evaluationresult_span_evaluator_uniq",
            ),
            models.CheckConstraint(
                condition=models.Q(score__isnull=True) | models.Q(score__gte=0, score__lte=1),
                name="evaluationresult_score_range",
            ),
        ]
        indexes = [
            models.Index(
                fields=["project", "-span_start_time", "-id"], name="evalresult_recent_idx"
            ),
            models.Index(fields=["project", "trace_id"], name="evalresult_trace_idx"),
            # The dashboard's rollups fold the results changed since their watermark.
            models.Index(fields=["updated_at"], name="evalresult_updated_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.evaluator} {bytes(self.span_id).hex()}: {self.passed}"


class Feedback(models.Model):
    """Late ground truth for a trace (span_id empty) or one span; posting again updates it."""

    project = models.ForeignKey("tracestore.Project", on_delete=models.CASCADE)
    trace_id = models.BinaryField(max_length=16)
    span_id = models.BinaryField(max_length=8, default=b"", blank=True)
    expected_label = models.TextField(null=True, blank=True)
    thumbs_up = models.BooleanField(null=True, blank=True)
    comment = models.TextField(blank=True, default="")
    author = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        verbose_name_plural = "feedback"
        # The metric fold re-reads the expected labels of traces given feedback since its
        # last run (queries.feedback_changed_traces).
        indexes = [models.Index(fields=["updated_at"], name="feedback_updated_idx")]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "trace_id", "span_id"], name="feedback_target_uniq"
            )
        ]

    def __str__(self) -> str:
        return f"feedback {bytes(self.trace_id).hex()}"


class SchedulerCursor(models.Model):
    """How far the scheduler has read the trace rollups (updated_at, project, trace id)."""

    name = models.CharField(max_length=50, unique=True)
    updated_at = models.DateTimeField()
    project_id = models.BigIntegerField()
    trace_id = models.BinaryField(max_length=16)

    def __str__(self) -> str:
        return self.name


class EvaluationHourChange(models.Model):
    """An hour whose verdict counts changed while none of its result rows was written:
    results deleted with their micro model, or a micro model renamed. Readers that count
    results per hour (``queries.changed_evaluation_hours``) re-count these hours too.
    No foreign key: rows are written while their project or micro model is being deleted."""

    project_id = models.BigIntegerField()
    hour = models.DateTimeField()
    changed_at = models.DateTimeField(db_default=Now())

    class Meta:
        indexes = [models.Index(fields=["changed_at"], name="evalhourchange_changed_idx")]

    def __str__(self) -> str:
        return f"project {self.project_id} {self.hour:%Y-%m-%d %H}:00"
