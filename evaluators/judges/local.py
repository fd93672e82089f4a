"""The offline judge: lexical evidence, no model download, fast on one CPU core.

Groundedness: each sentence of the output is a claim, checked against the retrieved
context (``grounding_features``): how much of it the context supports, anywhere and in
its best-matching sentence, numbers the context lacks, and contradictions (a claim that
matches a context sentence but flips its negation or puts another number, date or name
where that sentence has one). A small logistic model over that evidence, calibrated per
output length band (``groundedness_model.json``), gives the probability of the output
being grounded; times the share of claims not contradicted (an unsupported claim counts
half) it is the score: one contradicted claim of one fails, one of two halves the score.
No feature says which words the output uses.
The reason names the contradicted or least supported claim. Where the calibration split
showed that the score does not separate grounded from invented outputs of a length band
(the reply band: HaluEval dialogue's right replies carry unsupported claims as often as its
hallucinated ones), an output of that band with unsupported claims and none contradicted
gets no verdict ("not applicable: inconclusive", counted in no rate) instead of a failure.
TaskCompletion: refusals, empty answers and broken requested formats fail; otherwise the
answer must be on the input's topic (content-word overlap).
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from ..checks import lexical
from . import RULE, Score, file_checksum, text_checksum
from .grounding_features import (
    FEATURES,
    LENGTH_BANDS,
    Grounding,
    grounding,
    length_band,
    probability,
)

_MODEL_PATH = Path(__file__).with_name("groundedness_model.json")

_REFUSAL = re.compile(
    r"\b(i\s*(?:am|'m)\s+(?:sorry|afraid|unable|not able)|i\s+(?:can(?:no|')t|cannot|won't|"
    r"will not|am not able to)|as an ai\b|i\s+do(?:n't| not)\s+(?:know|have (?:access|"
    r"information))|unable to (?:help|assist|answer|comply))",
    re.I,
)
_WANTS_JSON = re.compile(r"\bjson\b", re.I)
_WANTS_ONE_WORD = re.compile(r"\b(?:one|single)[- ]word\b", re.I)
_WANTS_YES_NO = re.compile(r"\byes or no\b", re.I)

# A rule's verdict names the rule judge and the checksum of its patterns: changing a rule
# changes the version that results record.
RULES_VERSION = text_checksum(
    _REFUSAL.pattern, _WANTS_JSON.pattern, _WANTS_ONE_WORD.pattern, _WANTS_YES_NO.pattern
)
# A contradicted claim counts as one claim at 0 (weighing it double cost 0.02 AUROC on
# HaluEval summarization's calibration split, whose right summaries are "contradicted" more
# often than its hallucinated ones; a changed fact beside a faithful one still fails).
CONTRADICTION_WEIGHT = 1.0
# A claim the reason calls unsupported (under half its content words in the context) counts
# as half a claim at 0, so an invented claim beside a supported one lowers the score (on the
# calibration split this moved AUROC +0.002 on summarization and +0.004 on dialogue). In
# the reply band such outputs get no verdict at all (the model's ``inconclusive_bands``).
UNSUPPORTED_WEIGHT = 0.5
_UNSUPPORTED = 0.5
# TaskCompletion's topical word overlap (no learned part): bump when its formula changes.
WORD_OVERLAP_VERSION = "word-overlap-1"

_RELEVANCE_FLOOR = 0.3


@cache
def shipped_groundedness_model() -> dict[str, Any] | None:
    try:
        model: dict[str, Any] = json.loads(_MODEL_PATH.read_text())
    except FileNotFoundError:
        return None
    if tuple(model.get("features", ())) != FEATURES:
        raise ValueError(
            f"{_MODEL_PATH.name} was trained on other features than grounding_features "
            "computes: re-train it with bench/train_groundedness.py"
        )
    return model


class LexicalJudge:
    """``model``: the learned Groundedness weights (default: the shipped file; None: the
    rule score alone)."""

    name = "local-lexical"

    def __init__(self, model: dict[str, Any] | str | None = "shipped") -> None:
        self._model: dict[str, Any] | None = (
            shipped_groundedness_model() if isinstance(model, str) else model
        )
        if isinstance(model, str):
            self.version = file_checksum(_MODEL_PATH) if self._model is not None else "rules"
        else:
            self.version = "in-memory" if model is not None else "rules"

    def task_completion(self, input_text: str, output_text: str) -> Score:
        problem = blocking_problem(input_text, output_text)
        if problem is not None:
            return problem
        output = output_text.strip()
        asked = lexical.content_words(input_text)
        if not asked:
            return self._overlap(0.75, "no content words in the input to check the topic against")
        answered = lexical.content_words(output)
        overlap = len(asked & answered) / len(asked)
        score = min(1.0, _RELEVANCE_FLOOR + 1.4 * overlap)
        if overlap == 0:
            return self._overlap(
                score, "off topic: the output shares no content word with the input"
            )
        shared = ", ".join(sorted(asked & answered)[:5])
        return self._overlap(
            score, f"on topic ({overlap:.0%} of the input's content words: {shared})"
        )

    def _overlap(self, score: float, reason: str) -> Score:
        return Score(score, reason, judge=self.name, judge_version=WORD_OVERLAP_VERSION)

    def groundedness(self, output_text: str, documents: list[str]) -> Score:
        """The model's calibrated probability of the output being grounded, times the share
        of claims not contradicted (an unsupported claim counts half). In a length band
        where that score does not separate grounded from invented outputs on the
        calibration split (the model's ``inconclusive_bands``), an output with unsupported
        claims and no contradicted one gets no verdict (score None): only a contradiction
        fails there, and only full support passes."""
        found = grounding(output_text, documents)
        if not found.claims:
            return self._grounded(1.0, "no claims in the output")
        contradicted = [c for c in found.claims if c.contradiction]
        unsupported = [c for c in found.claims if not c.contradiction and c.support < _UNSUPPORTED]
        n = len(found.claims)
        kept = uncontradicted_share(found)
        band = length_band(found.content_words)
        if unsupported and not contradicted and band in self.inconclusive_bands:
            top = next(top for name, top in LENGTH_BANDS if name == band)
            return self._grounded(
                None,
                f"inconclusive: {len(unsupported)} of {n} claims neither supported nor "
                f"contradicted by the context, and for outputs of up to {top} content words "
                "that does not tell grounded from invented ones (docs/benchmarks.md)",
            )
        if contradicted:
            first = contradicted[0]
            reason = f"{len(contradicted)} of {n} claims contradict the context"
            if unsupported:
                reason += f", {len(unsupported)} unsupported"
            reason += f"; {_quote(first.claim)} {first.contradiction}"
        elif unsupported:
            reason = f"{len(unsupported)} of {n} claims not supported by the context"
        else:
            reason = f"all {n} claims supported by the context"
        novel = sorted({x for c in found.claims for x in c.novel_numbers})
        if novel:
            reason += "; numbers not in the context: " + ", ".join(novel[:5])
        weakest = min(found.claims, key=lambda c: c.support)
        if not contradicted and weakest.support < 1.0:
            reason += f"; least supported ({weakest.support:.0%}): {_quote(weakest.claim)}"
        # Without the shipped model (while it is re-trained): the plain mean claim support.
        score = found.features[0] if self._model is None else probability(self._model, found)
        return self._grounded(score * kept, reason)

    @property
    def inconclusive_bands(self) -> frozenset[str]:
        return frozenset(self._model.get("inconclusive_bands", {}) if self._model else ())

    def _grounded(self, score: float | None, reason: str) -> Score:
        return Score(score, reason, judge=self.name, judge_version=self.version)


def uncontradicted_share(found: Grounding) -> float:
    """What the model's probability is multiplied by: the share of claims not contradicted,
    an unsupported claim counting half (1.0 for an output with no claims)."""
    if not found.claims:
        return 1.0
    contradicted = sum(1 for c in found.claims if c.contradiction)
    unsupported = sum(1 for c in found.claims if not c.contradiction and c.support < _UNSUPPORTED)
    n = len(found.claims)
    return max(
        0.0,
        1.0
        - (CONTRADICTION_WEIGHT * contradicted + UNSUPPORTED_WEIGHT * unsupported)
        / (n + (CONTRADICTION_WEIGHT - 1.0) * contradicted),
    )


def _quote(claim: str, limit: int = 120) -> str:
    claim = " ".join(claim.split())
    return f'"{claim if len(claim) <= limit else claim[: limit - 3] + "..."}"'


def blocking_problem(input_text: str, output_text: str) -> Score | None:
    """What fails a task whatever the topic: an empty answer, a refusal, a requested format
    (JSON, one word, yes/no) not followed."""
    output = (output_text or "").strip()
    if not output:
        return Score(0.0, "empty output", judge=RULE, judge_version=RULES_VERSION)
    if _REFUSAL.search(output[:300]):
        return Score(
            0.05,
            "the output refuses or declines the request",
            judge=RULE,
            judge_version=RULES_VERSION,
        )
    format_problem = _format_problem(input_text, output)
    if format_problem:
        return Score(0.15, format_problem, judge=RULE, judge_version=RULES_VERSION)
    return None


def _format_problem(input_text: str, output: str) -> str:
    if _WANTS_JSON.search(input_text or ""):
        try:
            json.loads(output)
        except ValueError:
            return "the input asks for JSON and the output is not valid JSON"
    if _WANTS_ONE_WORD.search(input_text or "") and len(lexical.words(output)) > 1:
        return "the input asks for one word and the output has several"
    if _WANTS_YES_NO.search(input_text or "") and not re.match(r"\s*(yes|no)\b", output, re.I):
        return "the input asks for yes or no and the output is neither"
    return ""
