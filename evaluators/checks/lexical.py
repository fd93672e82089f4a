"""Lexical primitives shared by the local judge and the benchmark's baseline: sentence
splitting, content words with a light stemmer, negation and number cues."""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_CURLY_APOSTROPHE = "\u2019"
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])|\n+")
_NUMBER = re.compile(r"\b\d+(?:[.,]\d+)?\b")

_STOPWORDS_TEXT = """a about above after again against all am an and any are as at be because
    been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves
    also may might must shall s t don doesn didn isn wasn aren weren won wouldn couldn shouldn
    ll re ve d m o y get got one please tell thing things"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())
_NEGATIONS_TEXT = (
    "not no never none nobody nothing neither nor cannot can't won't isn't wasn't aren't "
    "weren't doesn't don't didn't hasn't haven't hadn't couldn't shouldn't wouldn't "
    "without"
)
NEGATIONS = frozenset(_NEGATIONS_TEXT.split())


def sentences(text: str) -> list[str]:
    """Split text into sentences (claims); very short fragments join their neighbour."""
    parts = [p.strip() for p in _SENTENCE.split(text or "") if p and p.strip()]
    merged: list[str] = []
    for part in parts:
        if merged and len(words(part)) < 3:
            merged[-1] = f"{merged[-1]} {part}"
        else:
            merged.append(part)
    return merged


def words(text: str) -> list[str]:
    return _WORD.findall((text or "").lower().replace(_CURLY_APOSTROPHE, "'"))


def stem(word: str) -> str:
    for suffix in ("ingly", "edly", "ing", "ed", "ies", "es", "ly", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def content_words(text: str) -> set[str]:
    return {stem(w) for w in words(text) if w not in STOPWORDS and w not in NEGATIONS}


def negated(text: str) -> bool:
    return any(w in NEGATIONS or w.endswith("n't") for w in words(text))


def numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in _NUMBER.findall(text or "")}


def support(claim_words: set[str], context_words: set[str]) -> float:
    """Share of the claim's content words found in the context (1.0 for an empty claim)."""
    if not claim_words:
        return 1.0
    return len(claim_words & context_words) / len(claim_words)
