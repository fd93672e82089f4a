"""Which local judge a worker loads, and the MiniLM judge's verdicts.

The project installs the MiniLM judge's packages (onnxruntime and tokenizers; the int8 ONNX
model is committed), so ``auto`` loads it; the lexical judge is the floor when they are
missing or fail to load.
"""

from __future__ import annotations

import pytest

from evaluators.checks import verdicts
from evaluators.judges.embedding import EmbeddingJudge
from evaluators.judging import local_judge


@pytest.fixture
def fresh_local_judge():
    local_judge.cache_clear()
    yield
    local_judge.cache_clear()


def test_the_worker_loads_minilm_once(fresh_local_judge, settings) -> None:
    settings.MICROLENS_LOCAL_JUDGE = "auto"

    judge = local_judge()

    assert judge.name == "local-minilm"
    assert local_judge() is judge  # loaded once per process


def test_the_lexical_judge_is_the_floor_when_minilm_cannot_load(
    fresh_local_judge, settings, monkeypatch
) -> None:
    def missing() -> EmbeddingJudge:
        raise ImportError("the MiniLM judge needs onnxruntime")

    monkeypatch.setattr(EmbeddingJudge, "load", staticmethod(missing))
    settings.MICROLENS_LOCAL_JUDGE = "auto"

    assert local_judge().name == "local-lexical"


def test_lexical_can_be_forced(fresh_local_judge, settings) -> None:
    settings.MICROLENS_LOCAL_JUDGE = "lexical"

    assert local_judge().name == "local-lexical"


@pytest.mark.parametrize(
    ("question", "answer", "passed", "decided_by"),
    [
        (
            "What is your favourite programming language?",
            "I like Python the most.",
            True,
            "local-minilm",
        ),
        (
            "What is your favourite programming language?",
            "The weather is rainy today.",
            False,
            "local-minilm",
        ),
        (
            "Can you help me reset my password?",
            "I'm sorry, but I can't help with that.",
            False,
            "rule",
        ),
    ],
)
def test_minilm_task_completion(
    fresh_local_judge, settings, question: str, answer: str, passed: bool, decided_by: str
) -> None:
    settings.MICROLENS_LOCAL_JUDGE = "auto"

    verdict = verdicts.task_completion(question, answer, judge=local_judge(), threshold=0.5)

    assert verdict.passed is passed, verdict.reason
    assert verdict.judge == decided_by
