"""Which spans get evaluated: pure decisions, the same on every worker and every run.

Sampling hashes the trace id, so every span and evaluator of one trace share one decision
(a trace is either in the sample or not) and a re-run decides the same.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from tracestore.contracts import ModelSpan

_SPACE = float(2**64)


def sample_point(trace_id_hex: str) -> float:
    """A uniform point in [0, 1) fixed by the trace id (even for non-random ids)."""
    digest = hashlib.blake2b(bytes.fromhex(trace_id_hex), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SPACE


def in_sample(trace_id_hex: str, rate_percent: float) -> bool:
    return sample_point(trace_id_hex) < rate_percent / 100.0


def is_evaluated(span: ModelSpan) -> bool:
    """Whether the scheduler looks at a span at all: not when it is a mirrored (shadow)
    call (``route.mirrored``). A shadow serves no one: its verdicts would count in the live
    rates under the candidate's name (or, matched by a model-name pattern, under the live
    micro model's), and spend the judges' budget. A shadow is compared with its live model
    on the very same inputs by shadow agreement instead (agreement, and accuracy against
    the expected label with a paired interval), which needs no judge; the candidate is not
    registered as a micro model either."""
    return not span.is_mirrored


@dataclass(frozen=True, slots=True)
class Matcher:
    """A registered micro model as the scheduler matches spans to it."""

    id: int
    project_id: int
    micro_model_name: str
    model_pattern: str

    def matches(self, span: ModelSpan) -> bool:
        if self.micro_model_name and span.micro_model == self.micro_model_name:
            return True
        return bool(
            self.model_pattern
            and span.model is not None
            and fnmatch.fnmatchcase(span.model, self.model_pattern)
        )


def match(span: ModelSpan, matchers: Sequence[Matcher]) -> Matcher | None:
    """The micro model a span belongs to: an exact ``micro_model.name`` match first, then
    the first model-name pattern (in registration order)."""
    candidates = [m for m in matchers if m.project_id == span.project_id]
    for matcher in candidates:
        if matcher.micro_model_name and span.micro_model == matcher.micro_model_name:
            return matcher
    for matcher in candidates:
        if matcher.matches(span):
            return matcher
    return None


@dataclass(frozen=True, slots=True)
class AlwaysRules:
    on_fallback: bool
    on_error: bool
    below_confidence: float | None
    fallback_models: tuple[str, ...]


def always_reason(span: ModelSpan, trace_spans: Sequence[ModelSpan], rules: AlwaysRules) -> str:
    """Why a span is evaluated whatever the sample says ("" when no rule applies)."""
    if rules.on_error and span.status_code == 2:
        return "error"
    if (
        rules.below_confidence is not None
        and span.confidence is not None
        and span.confidence < rules.below_confidence
    ):
        return "low-confidence"
    if rules.on_fallback and (span.is_fallback or _escalated(span, trace_spans, rules)):
        return "fallback"
    return ""


def _escalated(span: ModelSpan, trace_spans: Sequence[ModelSpan], rules: AlwaysRules) -> bool:
    # DESIGN.md: a span to one of the model's fallback models after it in the same trace,
    # or any later span of the trace flagged route.fallback.
    for other in trace_spans:
        if other.span_id == span.span_id or other.start_time < span.start_time:
            continue
        if other.is_fallback or (other.model is not None and other.model in rules.fallback_models):
            return True
    return False


# -- which evaluators apply to a span --------------------------------------------------------

# Micro-model tasks whose output is a label (a class, a route, a verdict): their decisions
# are judged against an expected label, never as generated text.
LABEL_TASKS = frozenset({"classification", "routing", "safety"})
# "auto" (micro models registered from traffic): the span decides, a predicted label
# making it a label decision.
AUTO_TASK = "auto"


def is_label_decision(task: str, predicted_label: str | None) -> bool:
    if task == AUTO_TASK:
        return bool(predicted_label and predicted_label.strip())
    return task in LABEL_TASKS


def not_applicable_reason(
    evaluator: str,
    *,
    task: str,
    predicted_label: str | None,
    expected_label: str | None,
    input_text: str | None,
    output_text: str | None,
    has_context: bool,
) -> str:
    """Why ``evaluator`` does not apply to a span ("" when it does). LabelCheck judges a
    label decision with an expected label; TaskCompletion a generative span with an input
    and an output; Groundedness a generative span's output where retrieved context exists.
    The scheduler creates no job where this is not empty, and a job run on a span it does
    not apply to records "not applicable", which counts in no rate."""
    if evaluator == "label_check":
        if not (predicted_label and predicted_label.strip()):
            return "no predicted label"
        if not (expected_label and expected_label.strip()):
            return "no expected label"
        return ""
    if is_label_decision(task, predicted_label):
        return "a label decision is judged by LabelCheck, not as generated text"
    if not (output_text and output_text.strip()):
        return "the span has no output"
    if evaluator == "task_completion" and not (input_text and input_text.strip()):
        return "no input to judge the output against"
    if evaluator == "groundedness" and not has_context:
        return "no retrieved context in the trace"
    return ""
