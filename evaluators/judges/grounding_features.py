"""How well a context supports each claim of an output: the evidence the local Groundedness
model weighs (``groundedness_model.json``, trained by ``bench/train_groundedness.py``).

Every feature describes support, never which words the output uses: the share of each
claim's content words the context holds (anywhere, and in the one context sentence that
matches the claim best), numbers and dates the context lacks, and contradictions -- a
claim that matches a context sentence but flips its negation, or puts another number,
date or name where that sentence has one. Discourse words that carry no claim ("actually",
"well", "he says") count for nothing, and nothing depends on casing, spacing or the order
of the sentences, so none of these can move a score (the test suite checks it on generated
cases).

Length enters only to pick the calibration band: a short answer's support is measured on
two or three words, a summary's on dozens, and the same raw value does not mean the same
there (``LENGTH_BANDS``).
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

from ..checks import lexical

FEATURES = (
    "support",
    "mean_support",
    "min_support",
    "mean_local_support",
    "min_local_support",
    "novel_number_share",
    "novel_content_share",
    "contradicted_share",
    "mean_pair_support",
    "min_pair_support",
)
# Content words in an output's claims, upper bounds: short answers, replies, summaries.
LENGTH_BANDS = (("short", 6), ("medium", 20), ("long", 10**9))

# Words that frame a claim without making one: a reply may add them to any answer.
_NEUTRAL_TEXT = """actually well so indeed basically honestly really yes yeah yep ok okay sure oh
    thanks thank hi hello hey say says said saying tell tells told think thinks believe believes
    guess course anyway also just like know mean right great good sorry"""
NEUTRAL = frozenset(_NEUTRAL_TEXT.split())
_CLAIM_SPLIT = re.compile(r"(?<=[.!?;])\s+|\n+")
_TOKEN = re.compile(r"[A-Za-z0-9]+(?:[.,:][0-9]+)*(?:'[a-z]+)?")
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")


@dataclass(frozen=True, slots=True)
class ClaimSupport:
    claim: str
    support: float  # share of its content words anywhere in the context
    pair_support: float  # share of its adjacent content-word pairs found adjacent there
    local_support: float  # share in the best-matching context sentence
    novel_numbers: frozenset[str]
    contradiction: str  # "" or why the claim contradicts the context


@dataclass(frozen=True, slots=True)
class Grounding:
    claims: list[ClaimSupport]
    features: list[float]
    content_words: int  # in all claims: picks the length band


def claims_of(text: str) -> list[str]:
    """Sentences of the output with at least one content word (whatever their casing)."""
    parts = (p.strip() for p in _CLAIM_SPLIT.split(text or ""))
    return [p for p in parts if p and _content(p)]


def _content(text: str) -> set[str]:
    return {
        lexical.stem(w)
        for w in lexical.words(text)
        if w not in lexical.STOPWORDS and w not in lexical.NEGATIONS and w not in NEUTRAL
    }


def _numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in _NUMBER.findall(text or "")}


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall((text or "").replace("\u2019", "'"))


@dataclass(slots=True)
class _Sentence:
    words: set[str]
    tokens: list[str]  # lower-cased
    names: set[str]  # tokens written with a capital inside the sentence, and numbers
    negated: bool


def _pairs(text: str) -> set[tuple[str, str]]:
    """Adjacent content words (stopwords and neutral words skipped): a claim's phrasing
    that the context may hold too."""
    stems = [
        lexical.stem(w)
        for w in lexical.words(text)
        if w not in lexical.STOPWORDS and w not in lexical.NEGATIONS and w not in NEUTRAL
    ]
    return set(itertools.pairwise(stems))


class Context:
    """A context prepared once for the claims checked against it."""

    def __init__(self, documents: list[str]) -> None:
        self.pairs: set[tuple[str, str]] = set()
        self.words: set[str] = set()
        self.tokens: set[str] = set()
        self.numbers: set[str] = set()
        self.sentences: list[_Sentence] = []
        for doc in documents:
            self.words |= lexical.content_words(doc)
            for sentence in _CLAIM_SPLIT.split(doc):
                self.pairs |= _pairs(sentence)
            self.numbers |= _numbers(doc)
            for sentence in _CLAIM_SPLIT.split(doc):
                raw = _tokens(sentence)
                if not raw:
                    continue
                lowered = [t.lower() for t in raw]
                self.tokens.update(lowered)
                names = {t.lower() for i, t in enumerate(raw) if (i > 0 and t[0].isupper())} | {
                    t for t in lowered if t[0].isdigit()
                }
                self.sentences.append(
                    _Sentence(
                        lexical.content_words(sentence), lowered, names, lexical.negated(sentence)
                    )
                )


def _contradiction(claim: str, words: set[str], best: _Sentence, local: float, ctx: Context) -> str:
    # Only a near-verbatim claim that restates much of the sentence: a negation elsewhere in
    # a long context sentence is noise, and a bare answer ("Weston", "30 days") taken from a
    # negated sentence restates no negation to flip (unless it says "not" itself).
    negated = lexical.negated(claim)
    covers = len(words & best.words) / len(best.words) if best.words else 0.0
    restates = covers >= 1 / 3 and (negated or len(words) >= 3)
    if local >= 0.9 and restates and negated != best.negated:
        return "flips the negation of the context"
    if local < 0.5:
        return ""
    tokens = [t.lower() for t in _tokens(claim)]
    matcher = SequenceMatcher(a=best.tokens, b=tokens, autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        # A word or two for a word or two; the context's side may run on only where the
        # claim ends there (a claim cut short after the changed word), or where a bare
        # answer of a few words starts there ("Daniel Lindqvist" for "... is Hugo
        # Lindqvist"; in longer claims that cost 0.016 AUROC on HaluEval dialogue's
        # calibration split). Longer rewrites are paraphrase far more often than a changed
        # fact.
        at_edge = b1 == len(tokens) or (b0 == 0 and len(tokens) <= 4)
        if op != "replace" or b1 - b0 > 2 or a1 - a0 > (8 if at_edge else 2):
            continue
        replaced = set(best.tokens[a0:a1]) & best.names
        # A word the context lacks, or another number where the context has a number (an
        # opening hour given as the closing one is still a changed fact).
        replaced_numbers = {t for t in replaced if t[0].isdigit()}
        added = [
            t
            for t in tokens[b0:b1]
            if (t not in ctx.tokens and lexical.stem(t) not in ctx.words and t not in NEUTRAL)
            or (replaced_numbers and t[0].isdigit() and t not in replaced_numbers)
        ]
        if replaced and added:
            return f"says {' '.join(tokens[b0:b1])!r} where the context says " + repr(
                " ".join(best.tokens[a0:a1])
            )
    return ""


def claim_support(claim: str, ctx: Context) -> ClaimSupport:
    words = _content(claim)
    support = lexical.support(words, ctx.words)
    best, local = None, 0.0
    for sentence in ctx.sentences:
        overlap = lexical.support(words, sentence.words)
        if overlap > local:
            best, local = sentence, overlap
    novel = frozenset(_numbers(claim) - ctx.numbers)
    contradiction = _contradiction(claim, words, best, local, ctx) if best else ""
    if not contradiction and novel:
        contradiction = f"states {', '.join(sorted(novel)[:3])}, which the context does not"
    pairs = _pairs(claim)
    pair_support = len(pairs & ctx.pairs) / len(pairs) if pairs else support
    return ClaimSupport(claim, support, pair_support, local, novel, contradiction)


def grounding(output: str, documents: list[str]) -> Grounding:
    ctx = Context(documents)
    claims = [claim_support(c, ctx) for c in claims_of(output)]
    words = _content(output)
    numbers = _numbers(output)
    if not claims:
        return Grounding([], [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0], 0)
    supports = [c.support for c in claims]
    locals_ = [c.local_support for c in claims]
    features = [
        lexical.support(words, ctx.words),
        sum(supports) / len(supports),
        min(supports),
        sum(locals_) / len(locals_),
        min(locals_),
        len(numbers - ctx.numbers) / len(numbers) if numbers else 0.0,
        len(words - ctx.words) / len(words) if words else 0.0,
        sum(1 for c in claims if c.contradiction) / len(claims),
        sum(c.pair_support for c in claims) / len(claims),
        min(c.pair_support for c in claims),
    ]
    return Grounding(claims, features, sum(len(_content(c.claim)) for c in claims))


def length_band(content_words: int) -> str:
    return next(name for name, top in LENGTH_BANDS if content_words <= top)


def probability(model: dict[str, Any], found: Grounding) -> float:
    """The model's calibrated probability that the output is grounded: a logistic model
    over the features, then the Platt scaling of the output's length band."""
    z = float(model["bias"])
    for w, x, m, s in zip(
        model["weights"], found.features, model["mean"], model["std"], strict=True
    ):
        z += w * (x - m) / s
    a, b = model["calibration"][length_band(found.content_words)]
    z = a * z + b
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))
