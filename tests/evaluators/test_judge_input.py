"""The worker and the benchmark (bench/evaluators.py) give a judge the same input,
assembled by one function, ``judge_input``: Groundedness sees the retrieved documents only
(never the question or dialogue history)."""

from __future__ import annotations

import pytest

from evaluators.checks import verdicts
from evaluators.checks.inputs import JudgeInput, judge_input
from evaluators.judges.local import LexicalJudge
from evaluators.models import EvaluationResult
from evaluators.services import run_evaluation_job

from .conftest import classifier_trace, configure, schedule_all


def test_a_dialogue_item_is_judged_on_its_answer_and_its_documents() -> None:
    given = judge_input(
        input_text="[Human]: Do you like Tom Hanks?",
        output_text="He starred in Big.",
        documents=["Hanks starred in Big."],
    )

    assert given == JudgeInput(
        input_text="[Human]: Do you like Tom Hanks?",
        output_text="He starred in Big.",
        documents=("Hanks starred in Big.",),
    )


@pytest.mark.parametrize(
    ("decides_on_root", "span_output", "expected"),
    [
        (False, "refund within 3 days", ("span question", "refund within 3 days")),
        (True, "billing", ("root question", "root answer")),
        (False, None, ("root question", "root answer")),
    ],
)
def test_a_router_or_a_span_without_output_is_judged_on_the_root(
    decides_on_root: bool, span_output: str | None, expected: tuple[str, str]
) -> None:
    given = judge_input(
        input_text="span question",
        output_text=span_output,
        documents=["doc", "  ", ""],
        root_input="root question",
        root_output="root answer",
        decides_on_root=decides_on_root,
    )

    assert (given.input_text, given.output_text) == expected
    assert given.documents == ("doc",)


@pytest.mark.django_db
def test_the_worker_grounds_on_the_documents_alone(tenant, settings) -> None:
    settings.MICROLENS_LOCAL_JUDGE = "lexical"
    answer = "Duplicate charges are refunded within 3 days."
    documents = ("Duplicate charges are refunded within 3 days.",)
    configure(tenant.project_id, evaluators={"groundedness": 0.5})
    tenant.store(classifier_trace(answer=answer, documents=documents))
    for job_id in schedule_all().job_ids:
        run_evaluation_job(job_id)

    stored = EvaluationResult.objects.get(evaluator="groundedness")
    given = judge_input(
        input_text="Why was I charged twice this month?", output_text=answer, documents=documents
    )
    expected = verdicts.groundedness(
        given.output_text, given.documents, judge=LexicalJudge(), threshold=0.5
    )
    assert (stored.score, stored.reason) == (pytest.approx(expected.score), expected.reason)
