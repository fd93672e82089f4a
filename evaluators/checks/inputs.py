"""What a judge is given: the one assembly the worker and the benchmark both use, so a
judge is measured on exactly what it sees in production.

- ``input_text``: what the micro model was asked (TaskCompletion's input);
- ``output_text``: what it answered;
- ``documents``: the retrieved documents, and nothing else. Groundedness checks the output
  against them alone: a question or a dialogue history is not evidence, and the worker
  never has it as context.

A routing decision's output is a route name: the input and output judged are then those
of the request the trace's root received and answered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class JudgeInput:
    input_text: str | None
    output_text: str | None
    documents: tuple[str, ...]


def judge_input(
    *,
    input_text: str | None,
    output_text: str | None,
    documents: Sequence[str],
    root_input: str | None = None,
    root_output: str | None = None,
    decides_on_root: bool = False,
) -> JudgeInput:
    """The judge's input for one decision. ``decides_on_root`` (a router) judges the root
    request's input and output; so does a span missing its own input or output, when the
    root has both."""
    use_root = decides_on_root or not (input_text and output_text)
    if use_root and root_input and root_output:
        input_text, output_text = root_input, root_output
    kept = tuple(doc for doc in documents if doc and doc.strip())
    return JudgeInput(input_text, output_text, kept)
