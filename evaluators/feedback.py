"""Feedback: late ground truth for a trace or one of its spans, and the LabelCheck verdicts
it decides. Span-level feedback wins over trace-level feedback, and a feedback label over
the span's own ``micro_model.expected_label`` (as ``contracts.resolve_expected_label``)."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from tracestore.queries import trace_context

from .checks import verdicts
from .checks.verdicts import DEFAULT_THRESHOLDS
from .contracts import LABEL_CHECK, FeedbackOutcome
from .micro_models import find_or_register, load_models, predicted_label
from .models import EvaluationResult, Feedback
from .queries import evaluation_views
from .results import upsert_result
from .sampling import is_evaluated, is_label_decision


class UnknownTarget(LookupError):
    """Feedback names a trace or span that is not stored in the caller's project."""


def expected_with_feedback(attribute: str | None, feedback: Feedback | None) -> str | None:
    """Feedback's expected label wins over the span's attribute (label quality resolves
    it the same way: contracts.resolve_expected_label); a thumbs up/down without a label
    judges the decision itself."""
    if feedback is None:
        return attribute
    return feedback.expected_label or (None if feedback.thumbs_up is not None else attribute)


def feedback_for(project_id: int, trace_id: bytes, span_id: bytes) -> Feedback | None:
    """Span-level feedback wins over trace-level feedback."""
    rows = Feedback.objects.filter(
        Q(span_id=span_id) | Q(span_id=b""), project_id=project_id, trace_id=trace_id
    )
    return min(rows, key=lambda f: bytes(f.span_id) == b"", default=None)


def record_feedback(
    project_ids: Sequence[int],
    *,
    trace_id: str,
    span_id: str | None = None,
    expected_label: str | None = None,
    thumbs_up: bool | None = None,
    comment: str = "",
    author: str = "",
) -> FeedbackOutcome:
    """Store late ground truth for a trace or one span (posting again updates it) and
    create or update the LabelCheck result of each micro-model decision it covers."""
    trace_hex = trace_id.lower()
    context = None
    for project_id in project_ids:
        context = trace_context(project_id, trace_hex)
        if context is not None:
            break
    if context is None:
        raise UnknownTarget("No trace with this id in your projects.")
    span_hex = span_id.lower() if span_id else None
    if span_hex is not None:
        targets = [s for s in context.spans if s.span_id == span_hex]
        if not targets:
            raise UnknownTarget("No model span with this id in the trace.")
    else:
        targets = [s for s in context.spans if s.micro_model or s.label]
    with transaction.atomic():
        feedback, created = Feedback.objects.update_or_create(
            project_id=context.project_id,
            trace_id=bytes.fromhex(trace_hex),
            span_id=bytes.fromhex(span_hex) if span_hex else b"",
            defaults={
                "expected_label": expected_label,
                "thumbs_up": thumbs_up,
                "comment": comment,
                "author": author,
                "updated_at": timezone.now(),
            },
        )
        models = load_models([context.project_id], timezone.now())
        keys = []
        for span in targets:
            if not is_evaluated(span):
                # A mirrored (shadow) call: the feedback row stays (the live decision's
                # expected label is the pair's), but no verdict may count in a live rate.
                continue
            found = find_or_register(span, models)
            if found is None:
                continue
            model, _ = found
            config = model.configs.get(LABEL_CHECK)
            threshold = config.threshold if config else DEFAULT_THRESHOLDS[LABEL_CHECK]
            # The span's own feedback wins over the trace's; the row just written is the
            # one that applies when the span has none of its own.
            precise = (
                feedback_for(
                    context.project_id, bytes.fromhex(trace_hex), bytes.fromhex(span.span_id)
                )
                or feedback
            )
            predicted = predicted_label(span, model.row)
            expected = expected_with_feedback(span.expected_label, precise)
            if not predicted and not is_label_decision(model.row.task, predicted):
                expected = None  # generated text: only a thumbs up/down judges it
            verdict = verdicts.label_check(
                predicted,
                expected,
                synonyms=model.row.label_synonyms or {},
                threshold=threshold,
                thumbs_up=precise.thumbs_up,
            )
            key = {
                "project_id": context.project_id,
                "trace_id": bytes.fromhex(trace_hex),
                "span_id": bytes.fromhex(span.span_id),
                "evaluator": LABEL_CHECK,
            }
            if verdict.passed is None and not EvaluationResult.objects.filter(**key).exists():
                continue  # nothing to judge, and no earlier verdict to replace
            upsert_result(
                job_id=None,
                project_id=context.project_id,
                trace_id=bytes.fromhex(trace_hex),
                span_id=bytes.fromhex(span.span_id),
                span_start_time=span.start_time,
                micro_model_id=model.row.id,
                evaluator=LABEL_CHECK,
                version=verdicts.VERSIONS[LABEL_CHECK],
                verdict=verdict,
                threshold=threshold,
                sampling_probability=1.0,
                cohort=context.cohort,
                source=EvaluationResult.Source.FEEDBACK,
            )
            keys.append(span.span_id)
    evaluations = evaluation_views(
        [context.project_id], trace_id=trace_hex, evaluator=LABEL_CHECK, span_ids=keys
    )
    return FeedbackOutcome(
        feedback_id=feedback.id,
        trace_id=trace_hex,
        span_id=span_hex,
        created=created,
        evaluations=evaluations,
    )
