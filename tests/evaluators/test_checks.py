"""The three evaluators on hand-built cases with known verdicts, through the local judge."""

from __future__ import annotations

import pytest

from evaluators.checks import verdicts
from evaluators.judges.grounding_features import FEATURES, LENGTH_BANDS
from evaluators.judges.local import LexicalJudge, shipped_groundedness_model

JUDGE = LexicalJudge()
# The same model judging every band (no band left inconclusive): how the score weighs
# unsupported and contradicted claims, wherever the shipped model gives a verdict on them.
_SHIPPED = shipped_groundedness_model()
assert _SHIPPED is not None
EVERY_BAND = LexicalJudge(
    model={key: value for key, value in _SHIPPED.items() if key != "inconclusive_bands"}
)
CONTEXT = [
    "Duplicate charges are refunded within 3 days. Refunds go back to the original card.",
    "Premium plans cost 20 dollars a month and include phone support.",
]


@pytest.mark.parametrize(
    ("question", "answer", "passed"),
    [
        (
            "Why was I charged twice this month?",
            "You were charged twice because the payment was retried; the duplicate charge "
            "will be refunded.",
            True,
        ),
        ("Why was I charged twice this month?", "I'm sorry, but I can't help with that.", False),
        ("Why was I charged twice this month?", "Paris is the capital of France.", False),
        ("Return the order as JSON with id and total.", '{"id": 7, "total": 12.5}', True),
        ("Return the order as JSON with id and total.", "id 7, total 12.5", False),
        ("Is the order shipped? Answer yes or no.", "Yes", True),
        ("Is the order shipped? Answer yes or no.", "It left the warehouse.", False),
        ("Summarise the refund policy.", "", False),
    ],
)
def test_task_completion_verdicts(question: str, answer: str, passed: bool) -> None:
    verdict = verdicts.task_completion(question, answer, judge=JUDGE, threshold=0.5)

    assert verdict.passed is passed
    assert 0.0 <= verdict.score <= 1.0
    # A refusal, an empty answer or a broken format is the rules' verdict, not the model's.
    assert verdict.judge in ("local-lexical", "rule")
    assert verdict.reason


def test_task_completion_without_input_is_not_applicable() -> None:
    verdict = verdicts.task_completion(None, "anything", judge=JUDGE, threshold=0.5)

    assert (verdict.score, verdict.passed) == (None, None)
    assert verdict.reason.startswith("not applicable")


@pytest.mark.parametrize(
    ("answer", "passed"),
    [
        ("Duplicate charges are refunded within 3 days.", True),
        (
            "Duplicate charges are refunded within 3 days. The refund goes back to the original "
            "card.",
            True,
        ),
        ("Duplicate charges are refunded within 10 days.", False),
        ("Duplicate charges are not refunded.", False),
        # Reply length, nothing supported, nothing contradicted: no verdict (on the calibration
        # split such replies are as common among HaluEval's right replies as its invented ones).
        ("Your account was hacked by a criminal gang in Belgium yesterday evening.", None),
        ("Hacked by a gang.", False),
    ],
)
def test_groundedness_verdicts(answer: str, passed: bool | None) -> None:
    verdict = verdicts.groundedness(answer, CONTEXT, judge=JUDGE, threshold=0.6)

    assert verdict.passed is passed, verdict.reason


def test_a_contradiction_weighs_more_than_an_unsupported_claim() -> None:
    supported = "Duplicate charges are refunded within 3 days."
    unsupported = f"{supported} Our office dog is called Biscuit and loves long walks."
    contradicted = f"{supported} Duplicate charges are refunded within 9 days."

    unsupported_score = verdicts.groundedness(unsupported, CONTEXT, judge=EVERY_BAND, threshold=0.5)
    contradicted_score = verdicts.groundedness(
        contradicted, CONTEXT, judge=EVERY_BAND, threshold=0.5
    )

    assert contradicted_score.score < unsupported_score.score < 1.0
    assert "contradict" in contradicted_score.reason


def test_a_bare_answer_from_a_negated_sentence_flips_no_negation() -> None:
    context = ["Refunds are not issued after 30 days. Premium plans include phone support."]

    bare = verdicts.groundedness("30 days", context, judge=JUDGE, threshold=0.5)
    flipped = verdicts.groundedness(
        "Refunds are issued after 30 days.", context, judge=JUDGE, threshold=0.5
    )

    assert bare.passed is True, bare.reason
    assert bare.reason == "all 1 claims supported by the context"
    assert (flipped.score, flipped.passed) == (0.0, False)
    assert flipped.reason.endswith("flips the negation of the context")


def test_an_invented_claim_fails_and_the_reason_names_it() -> None:
    answer = (
        "Premium plans cost 20 dollars a month. Despite this, Steven Spielberg recommends the "
        "premium plan."
    )

    verdict = verdicts.groundedness(answer, CONTEXT, judge=EVERY_BAND, threshold=0.6)
    supported = verdicts.groundedness(
        "Premium plans cost 20 dollars a month.", CONTEXT, judge=EVERY_BAND, threshold=0.6
    )

    assert verdict.passed is False
    assert supported.passed is True
    assert verdict.score < supported.score - 0.15
    assert verdict.reason.startswith(
        "1 of 2 claims not supported by the context; least supported (33%): "
        '"Despite this, Steven Spielberg recommends the premium plan."'
    )


def test_a_reply_length_output_with_an_unsupported_claim_gets_no_verdict() -> None:
    """On the calibration split the reply band's score does not tell grounded replies from
    invented ones (most right replies carry a claim the context lacks too): the shipped
    judge abstains there rather than failing them, unless a claim is contradicted."""
    invented = (
        "Premium plans cost 20 dollars a month. Despite this, Steven Spielberg recommends the "
        "premium plan."
    )
    contradicted = (
        "Premium plans cost 20 dollars a month. Duplicate charges are refunded in 9 days."
    )
    supported = "Premium plans cost 20 dollars a month. Refunds go back to the original card."

    abstained = verdicts.groundedness(invented, CONTEXT, judge=JUDGE, threshold=0.5)
    failed = verdicts.groundedness(contradicted, CONTEXT, judge=JUDGE, threshold=0.5)
    passed = verdicts.groundedness(supported, CONTEXT, judge=JUDGE, threshold=0.5)

    assert _SHIPPED is not None and set(_SHIPPED["inconclusive_bands"]) == {"medium"}
    assert (abstained.score, abstained.passed) == (None, None)
    assert abstained.reason == (
        "not applicable: inconclusive: 1 of 2 claims neither supported nor contradicted by "
        "the context, and for outputs of up to 20 content words that does not tell grounded "
        "from invented ones (docs/benchmarks.md)"
    )
    assert (abstained.judge, abstained.judge_version) == ("local-lexical", JUDGE.version)
    assert failed.passed is False, failed.reason
    assert passed.passed is True, passed.reason


def test_a_supported_output_passes_and_says_so() -> None:
    answer = "Premium plans cost 20 dollars a month and include phone support."

    verdict = verdicts.groundedness(answer, CONTEXT, judge=JUDGE, threshold=0.5)

    assert verdict.passed is True
    assert verdict.score > 0.6
    assert verdict.reason == "all 1 claims supported by the context"


def test_a_contradicted_claim_scores_zero_and_is_quoted() -> None:
    verdict = verdicts.groundedness(
        "Duplicate charges are refunded within 10 days.", CONTEXT, judge=JUDGE, threshold=0.5
    )

    assert (verdict.score, verdict.passed) == (0.0, False)
    assert verdict.reason == (
        "1 of 1 claims contradict the context; "
        '"Duplicate charges are refunded within 10 days." '
        "says '10' where the context says '3'; numbers not in the context: 10"
    )


def test_the_shipped_groundedness_model_weighs_support_not_words() -> None:
    model = shipped_groundedness_model()

    assert model is not None
    assert tuple(model["features"]) == FEATURES
    assert len(model["weights"]) == len(model["mean"]) == len(model["std"]) == len(FEATURES)
    # No weight per word: nothing in the model names a word of an output.
    assert "tokens" not in model
    assert set(model["calibration"]) == {name for name, _ in LENGTH_BANDS}


def test_groundedness_without_context_is_not_applicable_not_a_pass() -> None:
    verdict = verdicts.groundedness("Refunds take 3 days.", ["", "  "], judge=JUDGE, threshold=0.5)

    assert (verdict.score, verdict.passed) == (None, None)
    assert verdict.reason == "not applicable: no retrieved context in the trace"


@pytest.mark.parametrize(
    ("predicted", "expected", "passed"),
    [
        ("billing", "billing", True),
        ("Billing", " BILLING ", True),
        ("payments", "billing", True),
        ("invoice", "Payments", True),
        ("refund", "billing", False),
        (None, "billing", False),
    ],
)
def test_label_check_is_exact_case_insensitive_with_synonyms(
    predicted: str | None, expected: str, passed: bool
) -> None:
    synonyms = {"billing": ["payments", "invoice"]}

    verdict = verdicts.label_check(predicted, expected, synonyms=synonyms)

    assert verdict.passed is passed
    assert verdict.score == (1.0 if passed else 0.0)
    assert (verdict.predicted_label, verdict.expected_label) == (predicted, expected)


def test_label_check_without_expected_label_uses_thumbs_or_does_not_apply() -> None:
    assert verdicts.label_check("billing", None).passed is None
    assert verdicts.label_check("billing", None, thumbs_up=True).passed is True
    assert verdicts.label_check("billing", None, thumbs_up=False).passed is False
