"""The Groundedness judge reads support, not wording: over generated cases
(``evaluators/checks/robustness.py``, which the benchmark reports too), wording that makes no
claim (a neutral prefix or suffix, casing, spacing, the order of sentences) moves the score by
at most EPS, and an output that changes a number, date, name or place against its context
fails while the faithful one passes."""

from __future__ import annotations

import pytest

from evaluators.checks import robustness, verdicts
from evaluators.judges.local import LexicalJudge

JUDGE = LexicalJudge()
THRESHOLD = verdicts.DEFAULT_THRESHOLDS["groundedness"]
CASES = robustness.cases()


def score(output: str, context: list[str]) -> float:
    verdict = verdicts.groundedness(output, context, judge=JUDGE, threshold=THRESHOLD)
    assert verdict.score is not None
    return verdict.score


@pytest.fixture(scope="module")
def shifts() -> dict[str, robustness.Shift]:
    return robustness.edit_shifts(score, CASES)


@pytest.fixture(scope="module")
def swaps() -> dict[str, robustness.Outcome]:
    return robustness.swap_outcomes(score, CASES, THRESHOLD)


@pytest.mark.parametrize("edit", sorted(robustness.NEUTRAL_EDITS))
def test_neutral_wording_does_not_move_the_score(
    shifts: dict[str, robustness.Shift], edit: str
) -> None:
    shift = shifts[edit]
    assert shift.n == 40 * 10
    assert shift.moved == [], shift.moved[:5]
    assert shift.max_change <= robustness.EPS


def test_sentence_order_does_not_move_the_score(shifts: dict[str, robustness.Shift]) -> None:
    shift = shifts[robustness.SENTENCE_ORDER]
    assert shift.n == 40 * 3
    assert shift.moved == [], shift.moved[:5]


def test_faithful_outputs_pass() -> None:
    outcome = robustness.faithful_outcome(score, CASES, THRESHOLD)
    assert outcome.n == 160
    assert outcome.wrong == [], outcome.wrong[:5]


@pytest.mark.parametrize("kind", robustness.SWAP_KINDS)
def test_a_changed_fact_fails(swaps: dict[str, robustness.Outcome], kind: str) -> None:
    outcome = swaps[kind]
    assert outcome.n == 40
    assert outcome.wrong == [], outcome.wrong[:5]


def test_a_changed_fact_fails_beside_faithful_claims(
    swaps: dict[str, robustness.Outcome],
) -> None:
    outcome = swaps["beside faithful"]
    assert outcome.n == 240
    assert outcome.wrong == [], outcome.wrong[:5]


def test_short_answers_are_calibrated_both_ways() -> None:
    """A short answer's support is measured on a word or two: the short band's calibration
    (fitted on generated short answers, not on any benchmark source) must pass the right
    ones and fail the wrong ones."""
    right, wrong = robustness.short_answer_outcomes(score, CASES, THRESHOLD)
    assert right.n == wrong.n == 200
    assert right.wrong == []
    assert wrong.wrong == []


def test_a_moved_score_is_reported_against_eps() -> None:
    """The report the benchmark prints flags a scorer that wording moves: a scorer that
    counts characters moves under every edit that adds any."""
    by_length = robustness.edit_shifts(lambda output, _context: min(1.0, len(output) / 100), CASES)
    assert by_length["prefix Actually"].max_change == pytest.approx(0.1)
    assert len(by_length["prefix Actually"].moved) == 400
    assert by_length["lower case"].moved == []
    assert by_length[robustness.SENTENCE_ORDER].max_change == 0.0
