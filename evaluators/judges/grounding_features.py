"""Lexical evidence that an output is grounded in its context, as features for the small
learned Groundedness model (``groundedness_model.json``, trained by
``bench/train_groundedness.py`` on HaluEval pairs the benchmark never sees).

Two kinds of evidence:

- dense: how much of the output the context supports (content words, per claim, bigrams,
  trigrams, names, numbers, extractive fragments, the claim rule's score) and what kind of
  words it adds (numbers, capitalised names, other words);
- novel tokens: each word of the output that the context lacks (``n:<stem>``), and each
  output bigram with such a word (``nb:<stem>_<stem>``). The model weighs which invented
  words signal a hallucination (an added film title or a "despite" that brings in a new
  fact) and which are harmless in a reply (a "yes", a "say").

No feature measures length: the benchmark compares outputs of matched length, and HaluEval's
hallucinated answers are longer, which a length feature would learn instead.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Any

from ..checks import lexical

_TOKEN = re.compile(r"[A-Za-z0-9]+(?:'[a-z]+)?")

DENSE_FEATURES = (
    "support",
    "claim_mean_support",
    "claim_min_support",
    "bigram_support",
    "name_support",
    "number_support",
    "word_support",
    "rule_score",
    "fragment_coverage",
    "fragment_density",
    "longest_fragment",
    "trigram_support",
    "novel_share",
    "novel_number_share",
    "novel_year_share",
    "novel_name_share",
    "novel_word_share",
    "novel_stopword_share",
    "novel_negation",
)


@dataclass(slots=True)
class Features:
    dense: list[float]
    # novel-token feature -> the output's word it came from (for the reason)
    tokens: dict[str, str] = field(default_factory=dict)


def _fragments(output: list[str], context: list[str]) -> list[int]:
    """Lengths of the greedy longest extractive fragments: runs of output words copied
    verbatim from the context (Grusky et al., 2018)."""
    positions: dict[str, list[int]] = {}
    for j, w in enumerate(context):
        positions.setdefault(w, []).append(j)
    found, i = [], 0
    while i < len(output):
        best = 0
        for j in positions.get(output[i], ()):
            k = 0
            while i + k < len(output) and j + k < len(context) and output[i + k] == context[j + k]:
                k += 1
            best = max(best, k)
        if best:
            found.append(best)
            i += best
        else:
            i += 1
    return found


def _share(part: set[Any], whole: set[Any]) -> float:
    return len(part & whole) / len(part) if part else 1.0


def grounding_features(output: str, context: str, rule_score: float) -> Features:
    context_words = lexical.content_words(context)
    claims = lexical.sentences(output) or [output]
    supports = [lexical.support(lexical.content_words(c), context_words) for c in claims]

    output_stems = [lexical.stem(w) for w in lexical.words(output)]
    context_stems = [lexical.stem(w) for w in lexical.words(context)]
    context_stem_set = set(context_stems)
    fragments = _fragments(output_stems, context_stems)
    n = max(1, len(output_stems))
    output_trigrams = set(zip(output_stems, output_stems[1:], output_stems[2:], strict=False))
    context_trigrams = set(zip(context_stems, context_stems[1:], context_stems[2:], strict=False))

    tokens = _TOKEN.findall(output.replace("\u2019", "'"))
    names = [t.lower() for i, t in enumerate(tokens) if i > 0 and t[0].isupper()]
    lowered = context.lower()
    shapes = {"number": 0, "year": 0, "name": 0, "word": 0, "stopword": 0}
    novel: dict[str, str] = {}
    for i, token in enumerate(tokens):
        word = token.lower()
        stem = lexical.stem(word)
        if stem in context_stem_set:
            continue
        novel.setdefault(f"n:{stem}", token)
        if token[0].isdigit():
            shapes["year" if len(token) == 4 and token.isdigit() else "number"] += 1
        elif token[0].isupper() and i > 0:
            shapes["name"] += 1
        elif word in lexical.STOPWORDS:
            shapes["stopword"] += 1
        else:
            shapes["word"] += 1
    for a, b in itertools.pairwise(output_stems):
        if a not in context_stem_set or b not in context_stem_set:
            novel.setdefault(f"nb:{a}_{b}", f"{a} {b}")
    novel_count = sum(shapes.values())
    ntokens = max(1, len(tokens))
    context_all_words = set(lexical.words(context))
    novel_negation = any(
        (w in lexical.NEGATIONS or w.endswith("n't")) and w not in context_all_words
        for w in lexical.words(output)
    )

    dense = [
        lexical.support(lexical.content_words(output), context_words),
        sum(supports) / len(supports),
        min(supports),
        _share(set(itertools.pairwise(output_stems)), set(itertools.pairwise(context_stems))),
        sum(name in lowered for name in names) / len(names) if names else 1.0,
        _share(lexical.numbers(output), lexical.numbers(context)),
        _share(set(lexical.words(output)), context_all_words),
        rule_score,
        sum(fragments) / n,
        sum(f * f for f in fragments) / (n * n),
        max(fragments, default=0) / n,
        _share(output_trigrams, context_trigrams),
        novel_count / ntokens,
        shapes["number"] / ntokens,
        shapes["year"] / ntokens,
        shapes["name"] / ntokens,
        shapes["word"] / ntokens,
        shapes["stopword"] / ntokens,
        float(novel_negation),
    ]
    return Features(dense, novel)


def _logit(model: dict[str, Any], features: Features) -> float:
    z = float(model["bias"])
    for w, x, m, s in zip(
        model["weights"], features.dense, model["mean"], model["std"], strict=True
    ):
        z += w * (x - m) / s
    token_weights = model["tokens"]
    return z + sum(token_weights.get(t, 0.0) for t in features.tokens)


def probability(model: dict[str, Any], features: Features) -> float:
    z = _logit(model, features)
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


def invented_words(model: dict[str, Any], features: Features, limit: int = 3) -> list[str]:
    """The output's words absent from the context that the model holds most against it."""
    token_weights = model["tokens"]
    weighed = sorted(
        (token_weights[t], word)
        for t, word in features.tokens.items()
        if t.startswith("n:") and token_weights.get(t, 0.0) < 0
    )
    return [word for _, word in weighed[:limit]]
