"""Judges score what needs language understanding: ``local`` (offline, CPU) and
``openai-compatible`` (an LLM endpoint). LabelCheck needs no judge."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Score:
    score: float
    reason: str


class JudgeError(Exception):
    """Permanent: retrying the same call cannot help (a malformed answer, a 4xx)."""


class JudgeUnavailable(Exception):
    """Transient: the judge is down, overloaded or too slow; retry later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Judge(Protocol):
    name: str

    def task_completion(self, input_text: str, output_text: str) -> Score: ...

    def groundedness(self, output_text: str, documents: list[str]) -> Score: ...
