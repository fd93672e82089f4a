"""The three evaluators: each turns its inputs into a ``Verdict`` against a threshold."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from ..contracts import Verdict
from ..judges import Judge, Score

EXACT = "exact"
EXACT_VERSION = "exact-1"  # LabelCheck's comparison (case-folded, through synonyms)

# Bump when an evaluator's logic changes: results are unique per (span, evaluator, version),
# so a new version is evaluated afresh and the old results stay comparable.
# groundedness 2: the local judge's model weighs the words an output adds to its context.
# groundedness 3: it weighs claim support only (no word weights), calibrated per length
# band, and the benchmark's and worker's inputs are the retrieved documents alone.
VERSIONS = {"task_completion": 1, "groundedness": 3, "label_check": 1}
# Pass thresholds of a newly registered micro model. The local Groundedness score is a
# probability of being grounded, calibrated per output length band on data the benchmark
# does not score (docs/benchmarks.md).
DEFAULT_THRESHOLDS = {"label_check": 1.0, "task_completion": 0.5, "groundedness": 0.5}


def task_completion(
    input_text: str | None, output_text: str | None, *, judge: Judge, threshold: float
) -> Verdict:
    if not (input_text or "").strip():
        return _not_applicable("no input to judge the output against", judge.name)
    if output_text is None:
        return _not_applicable("the span has no output", judge.name)
    started = time.perf_counter()
    result = judge.task_completion(input_text or "", output_text)
    return _judged(result, judge, threshold, started)


def groundedness(
    output_text: str | None, documents: Sequence[str], *, judge: Judge, threshold: float
) -> Verdict:
    context = [doc for doc in documents if doc and doc.strip()]
    if not context:
        return _not_applicable("no retrieved context in the trace", judge.name)
    if not (output_text or "").strip():
        return _not_applicable("the span has no output", judge.name)
    started = time.perf_counter()
    result = judge.groundedness(output_text or "", context)
    return _judged(result, judge, threshold, started)


def _judged(result: Score, judge: Judge, threshold: float, started: float) -> Verdict:
    """The verdict names what decided: the part of the judge the score names, else the
    judge asked."""
    verdict = _verdict(
        result.score,
        result.reason,
        result.judge or judge.name,
        threshold,
        started,
        version=result.judge_version or judge.version,
    )
    if not result.fallback:
        return verdict
    return Verdict(
        score=verdict.score,
        passed=verdict.passed,
        reason=verdict.reason,
        judge=verdict.judge,
        latency_ms=verdict.latency_ms,
        judge_version=verdict.judge_version,
        judge_fallback=result.fallback,
    )


def canonical_label(label: str, synonyms: Mapping[str, Sequence[str]]) -> str:
    folded = label.strip().casefold()
    for canonical, alternatives in synonyms.items():
        if folded == canonical.strip().casefold() or folded in {
            a.strip().casefold() for a in alternatives
        }:
            return canonical.strip().casefold()
    return folded


def label_check(
    predicted: str | None,
    expected: str | None,
    *,
    synonyms: Mapping[str, Sequence[str]] | None = None,
    threshold: float = 1.0,
    thumbs_up: bool | None = None,
) -> Verdict:
    """Exact comparison, case-insensitive, through the synonym map. Without an expected
    label a thumbs up/down from feedback decides; without either it does not apply."""
    started = time.perf_counter()
    if expected is None or not expected.strip():
        if thumbs_up is None:
            return _not_applicable("no expected label", EXACT)
        reason = "feedback: thumbs up" if thumbs_up else "feedback: thumbs down"
        verdict = _verdict(
            1.0 if thumbs_up else 0.0, reason, EXACT, threshold, started, version=EXACT_VERSION
        )
        return _with_labels(verdict, predicted, None)
    if predicted is None or not predicted.strip():
        verdict = _verdict(
            0.0,
            f"no predicted label, expected {expected!r}",
            EXACT,
            threshold,
            started,
            version=EXACT_VERSION,
        )
        return _with_labels(verdict, predicted, expected)
    same = canonical_label(predicted, synonyms or {}) == canonical_label(expected, synonyms or {})
    reason = (
        f"predicted {predicted!r} matches expected {expected!r}"
        if same
        else f"predicted {predicted!r}, expected {expected!r}"
    )
    verdict = _verdict(
        1.0 if same else 0.0, reason, EXACT, threshold, started, version=EXACT_VERSION
    )
    return _with_labels(verdict, predicted, expected)


def _with_labels(verdict: Verdict, predicted: str | None, expected: str | None) -> Verdict:
    return Verdict(
        score=verdict.score,
        passed=verdict.passed,
        reason=verdict.reason,
        judge=verdict.judge,
        latency_ms=verdict.latency_ms,
        predicted_label=predicted,
        expected_label=expected,
        judge_version=verdict.judge_version,
    )


def _verdict(
    score: float | None,
    reason: str,
    judge: str,
    threshold: float,
    started: float,
    *,
    version: str,
) -> Verdict:
    if score is None:  # the judge abstained: not applicable, with its reason and version
        return Verdict(
            score=None,
            passed=None,
            reason=f"not applicable: {reason}",
            judge=judge,
            latency_ms=(time.perf_counter() - started) * 1000,
            judge_version=version,
        )
    score = max(0.0, min(1.0, score))
    return Verdict(
        score=score,
        passed=score >= threshold,
        reason=reason,
        judge=judge,
        latency_ms=(time.perf_counter() - started) * 1000,
        judge_version=version,
    )


def _not_applicable(reason: str, judge: str) -> Verdict:
    return Verdict(
        score=None, passed=None, reason=f"not applicable: {reason}", judge=judge, latency_ms=0.0
    )
