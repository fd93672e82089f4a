"""Lexical evidence that an output is grounded in its context, as a feature vector for the
small learned Groundedness model (``groundedness_model.json``, trained by
``bench/train_groundedness.py`` on HaluEval pairs the benchmark never sees)."""

from __future__ import annotations

import itertools
import math
import re

from ..checks import lexical

_TOKEN = re.compile(r"[A-Za-z0-9]+")

FEATURES = (
    "support",
    "claim_mean_support",
    "claim_min_support",
    "bigram_support",
    "name_support",
    "number_support",
    "word_support",
    "rule_score",
    "log_novel_words",
    "bias",
)


def _bigrams(text: str) -> set[tuple[str, str]]:
    stems = [lexical.stem(w) for w in lexical.words(text)]
    return set(itertools.pairwise(stems))


def grounding_features(output: str, context: str, rule_score: float) -> list[float]:
    context_words = lexical.content_words(context)
    claims = lexical.sentences(output) or [output]
    supports = [lexical.support(lexical.content_words(c), context_words) for c in claims]
    output_bigrams = _bigrams(output)
    bigram_support = (
        len(output_bigrams & _bigrams(context)) / len(output_bigrams) if output_bigrams else 1.0
    )
    tokens = _TOKEN.findall(output)
    names = [t.lower() for i, t in enumerate(tokens) if i > 0 and t[0].isupper()]
    lowered = context.lower()
    name_support = sum(n in lowered for n in names) / len(names) if names else 1.0
    output_numbers = lexical.numbers(output)
    number_support = (
        len(output_numbers & lexical.numbers(context)) / len(output_numbers)
        if output_numbers
        else 1.0
    )
    output_words = set(lexical.words(output))
    word_support = (
        len(output_words & set(lexical.words(context))) / len(output_words) if output_words else 1.0
    )
    novel = len(lexical.content_words(output) - context_words)
    return [
        lexical.support(lexical.content_words(output), context_words),
        sum(supports) / len(supports),
        min(supports),
        bigram_support,
        name_support,
        number_support,
        word_support,
        rule_score,
        math.log1p(novel),
        1.0,
    ]


def probability(model: dict, features: list[float]) -> float:
    z = sum(
        w * (x - m) / s
        for w, x, m, s in zip(model["weights"], features, model["mean"], model["std"], strict=True)
    )
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))
