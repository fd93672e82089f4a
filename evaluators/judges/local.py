"""The offline judge: lexical evidence, no model download, fast on one CPU core.

Groundedness: each sentence of the output is a claim; its support is the share of its
content words found in the context; a claim whose best-matching context sentence shares
most of its words but flips a negation or changes a number is contradicted, and weighs
double at score 0. That rule and richer lexical evidence (``grounding_features``: support
of words, n-grams and copied fragments, and which words the output invents) feed a small
logistic model shipped as JSON (``groundedness_model.json``); its probability of the
output being grounded, times the share of claim weight not contradicted, is the score.
The reason names the least supported claim and the invented words held most against it.
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
    DENSE_FEATURES,
    grounding_features,
    invented_words,
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
# TaskCompletion's topical word overlap (no learned part): bump when its formula changes.
WORD_OVERLAP_VERSION = "word-overlap-1"

CONTRADICTION_WEIGHT = 2.0
_RELEVANCE_FLOOR = 0.3


@cache
def shipped_groundedness_model() -> dict[str, Any] | None:
    try:
        model: dict[str, Any] = json.loads(_MODEL_PATH.read_text())
    except FileNotFoundError:
        return None
    if tuple(model.get("features", ())) != DENSE_FEATURES:
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
        rule, kept = self.claim_groundedness(output_text, documents)
        if self._model is None:
            return Score(rule.score, rule.reason, judge=self.name, judge_version=self.version)
        features = grounding_features(output_text, "\n".join(documents), rule.score)
        # The learned model ranks invented content; contradictions (which HaluEval barely
        # rewards) keep their double weight: the score keeps only the non-contradicted
        # claims' share of the weight.
        reason = rule.reason
        invented = invented_words(self._model, features)
        if invented:
            reason += "; invented: " + ", ".join(invented)
        return Score(
            probability(self._model, features) * kept,
            reason,
            judge=self.name,
            judge_version=self.version,
        )

    def claim_groundedness(self, output_text: str, documents: list[str]) -> tuple[Score, float]:
        """The rule score (its reason names the least supported claim), and the share of
        claim weight not contradicted."""
        claims = lexical.sentences(output_text)
        if not claims:
            return Score(1.0, "no claims in the output"), 1.0
        context_sentences = [s for doc in documents for s in lexical.sentences(doc)]
        context_words = set().union(*(lexical.content_words(d) for d in documents))
        context_numbers = set().union(*(lexical.numbers(d) for d in documents))
        weighted = total = 0.0
        unsupported = contradicted = 0
        weakest, weakest_support, first_contradicted = "", 2.0, ""
        for claim in claims:
            words = lexical.content_words(claim)
            claim_support = lexical.support(words, context_words)
            if _contradicts(claim, words, context_sentences, context_numbers):
                contradicted += 1
                first_contradicted = first_contradicted or claim
                total += CONTRADICTION_WEIGHT
                continue
            if claim_support < weakest_support:
                weakest, weakest_support = claim, claim_support
            if claim_support < 0.5:
                unsupported += 1
            weighted += claim_support
            total += 1.0
        score = weighted / total if total else 1.0
        if contradicted:
            reason = f"{contradicted} of {len(claims)} claims contradict the context"
            if unsupported:
                reason += f", {unsupported} unsupported"
            reason += f"; contradicted: {_quote(first_contradicted)}"
        elif unsupported:
            reason = f"{unsupported} of {len(claims)} claims not supported by the context"
        else:
            reason = f"all {len(claims)} claims supported by the context"
        if weakest and weakest_support < 1.0 and not contradicted:
            reason += f"; least supported ({weakest_support:.0%}): {_quote(weakest)}"
        kept = 1.0 - CONTRADICTION_WEIGHT * contradicted / total if total else 1.0
        return Score(max(0.0, min(1.0, score)), reason), kept


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


def _contradicts(
    claim: str, words: set[str], context_sentences: list[str], context_numbers: set[str]
) -> bool:
    if not words or not context_sentences:
        return False
    best, best_overlap = "", 0.0
    for sentence in context_sentences:
        overlap = lexical.support(words, lexical.content_words(sentence))
        if overlap > best_overlap:
            best, best_overlap = sentence, overlap
    # Thresholds measured on HaluEval (bench/evaluators.py): a polarity flip only counts on
    # a near-verbatim claim (negations elsewhere in a long context sentence are noise); a
    # changed number on a claim sharing most of a sentence's words.
    if best_overlap >= 0.9 and lexical.negated(claim) != lexical.negated(best):
        return True
    claim_numbers = lexical.numbers(claim)
    best_numbers = lexical.numbers(best)
    return bool(
        best_overlap >= 0.8
        and claim_numbers
        and best_numbers
        and not claim_numbers <= context_numbers
    )


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
