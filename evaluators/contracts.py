"""evaluators' public data shapes: frozen dataclasses with no Django import."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TASK_COMPLETION = "task_completion"
GROUNDEDNESS = "groundedness"
LABEL_CHECK = "label_check"
EVALUATORS = (TASK_COMPLETION, GROUNDEDNESS, LABEL_CHECK)


@dataclass(frozen=True, slots=True)
class Verdict:
    """An evaluator's answer. ``score`` and ``passed`` are None when the evaluator does not
    apply (no context to ground on, no expected label): not applicable is not a pass."""

    score: float | None
    passed: bool | None
    reason: str
    judge: str
    latency_ms: float
    predicted_label: str | None = None
    expected_label: str | None = None
    # The model version or file checksum of the judge that decided; why the configured
    # judge did not decide ("" when it did).
    judge_version: str = ""
    judge_fallback: str = ""


@dataclass(frozen=True, slots=True)
class EvaluationView:
    id: int
    project_id: int
    trace_id: str
    span_id: str
    span_start_time: datetime
    micro_model: str
    evaluator: str
    evaluator_version: int
    score: float | None
    passed: bool | None
    threshold: float
    reason: str
    judge: str
    latency_ms: float
    sampling_probability: float
    predicted_label: str | None
    expected_label: str | None
    source: str
    created_at: datetime
    updated_at: datetime
    cohort: dict[str, Any] = field(default_factory=dict)
    judge_version: str = ""
    judge_fallback: str = ""


@dataclass(frozen=True, slots=True)
class JudgeUse:
    """Results one judge (at one version) decided since a time, per evaluator; ``fallback``
    is why the configured judge did not decide them ("" when it did)."""

    evaluator: str
    judge: str
    judge_version: str
    fallback: str
    results: int


@dataclass(frozen=True, slots=True)
class EvaluationCount:
    """Applicable verdicts of one evaluator in one group (micro model or cohort value);
    the weighted counts weigh each verdict by w = 1 / its sampling probability, the squared
    ones by w² (what the interval of the weighted rate needs)."""

    evaluator: str
    group: str | None
    failed: int
    evaluated: int
    weighted_failed: float
    weighted_evaluated: float
    weighted_sq_failed: float = 0.0
    weighted_sq_evaluated: float = 0.0
    # Set only when counted per micro model too (evaluation_counts' per_micro_model).
    micro_model: str | None = None


@dataclass(frozen=True, slots=True)
class EvaluationRecord:
    """A finished verdict to import as is (``import_evaluation_results``): a demo data set,
    or results scored elsewhere. ``micro_model`` is the micro model's name."""

    trace_id: bytes
    span_id: bytes
    span_start_time: datetime
    micro_model: str
    evaluator: str
    score: float | None
    passed: bool | None
    threshold: float
    reason: str
    judge: str
    latency_ms: float
    sampling_probability: float
    predicted_label: str | None = None
    expected_label: str | None = None
    cohort: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EvaluationHourCount:
    """Applicable verdicts of one hour x micro model x evaluator x cohort value (dim_key ''
    for all cohorts), with the sums of w = 1 / sampling probability (the reweighted counts)
    and of w² (for the interval of the weighted rate)."""

    hour: datetime
    micro_model: str
    evaluator: str
    dim_key: str
    dim_value: str
    evaluated: int
    failed: int
    weighted_evaluated: float
    weighted_failed: float
    weighted_sq_evaluated: float = 0.0
    weighted_sq_failed: float = 0.0


@dataclass(frozen=True, slots=True)
class EvaluationPage:
    results: list[EvaluationView]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class FeedbackOutcome:
    feedback_id: int
    trace_id: str
    span_id: str | None
    created: bool
    evaluations: list[EvaluationView]


@dataclass(frozen=True, slots=True)
class ScheduleResult:
    traces: int
    jobs_created: int
    models_registered: int
    skipped_over_budget: int
    job_ids: list[int] = field(default_factory=list)
    # Span x evaluator pairs left without a job: the evaluator does not apply to the span.
    not_applicable: int = 0


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """What one delivery of a job did: ``done``, ``failed``, ``retry`` (with a delay),
    ``busy`` (judge at its concurrency limit) or ``skipped`` (not claimable)."""

    job_id: int
    status: str
    retry_in: float | None = None
    detail: str = ""


ATTRIBUTE = "attribute"
FEEDBACK = "feedback"


@dataclass(frozen=True, slots=True)
class ExpectedLabel:
    """A decision's expected label and where it came from: ``attribute`` (the span's
    ``micro_model.expected_label``) or ``feedback`` (posted later; it wins, a span's own
    feedback over its trace's)."""

    label: str
    source: str


def resolve_expected_label(
    attribute: str | None, feedback: dict[str, str], span_id: str
) -> ExpectedLabel | None:
    """The expected label of span ``span_id`` given its attribute and its trace's feedback
    labels (span id hex -> label; key "" for feedback on the whole trace)."""
    label = feedback.get(span_id) or feedback.get("")
    if label:
        return ExpectedLabel(label, FEEDBACK)
    if attribute and attribute.strip():
        return ExpectedLabel(attribute, ATTRIBUTE)
    return None


@dataclass(frozen=True, slots=True)
class FeedbackNote:
    """The feedback given for one span of a trace ('' span id: the whole trace), as the
    trace page shows it beside its form."""

    span_id: str
    expected_label: str | None
    thumbs_up: bool | None
    comment: str
    author: str
    updated_at: datetime
