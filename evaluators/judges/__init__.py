"""Judges score what needs language understanding: ``local`` (offline, CPU) and
``openai-compatible`` (an LLM endpoint). LabelCheck needs no judge."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

RULE = "rule"  # the judge name of verdicts a fixed rule decided (refusal, empty, format)


def file_checksum(path: Path) -> str:
    """The version of a judge that is a file: the start of its SHA-256."""
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def text_checksum(*parts: str) -> str:
    """The version of a judge that is code-held rules: the start of their SHA-256."""
    return "sha256:" + hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Score:
    """A judge's score. ``judge`` and ``judge_version`` name what actually decided when it
    is not the judge asked (a rule before the model, the lexical model inside the MiniLM
    judge); ``fallback`` says why the configured judge did not decide, when it did not.
    ``score`` None: the judge abstains (its evidence is inconclusive; ``reason`` says why),
    a "not applicable" verdict that counts in no rate."""

    score: float | None
    reason: str
    judge: str = ""
    judge_version: str = ""
    fallback: str = ""


class JudgeError(Exception):
    """Permanent: retrying the same call cannot help (a malformed answer, a 4xx)."""


class JudgeUnavailable(Exception):
    """Transient: the judge is down, overloaded or too slow; retry later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Judge(Protocol):
    name: str
    # The model version or file checksum of what decides by default (``Score`` may name
    # another part of the judge that decided instead).
    version: str

    def task_completion(self, input_text: str, output_text: str) -> Score: ...

    def groundedness(self, output_text: str, documents: list[str]) -> Score: ...
