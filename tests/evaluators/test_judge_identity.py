"""Every result names the judge that actually decided (rule, lexical model, embedding
model, LLM, exact match) with its model version or file checksum; a MiniLM judge that
cannot load is a fallback: a warning in the log, a mark on each result, on
``microlens status`` and on the trace page."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from evaluators.checks import verdicts
from evaluators.judges import file_checksum
from evaluators.judges.embedding import EmbeddingJudge
from evaluators.judges.local import _MODEL_PATH, RULES_VERSION, LexicalJudge
from evaluators.judges.openai_compatible import OpenAICompatibleJudge
from evaluators.judging import local_judge
from evaluators.models import EvaluationResult
from evaluators.services import run_evaluation_job
from microlens.cli import _print_judges

from .conftest import classifier_trace, configure, schedule_all

LEXICAL_MODEL_VERSION = file_checksum(_MODEL_PATH)
CONTEXT = ["Duplicate charges are refunded within 3 days."]


@pytest.fixture
def fresh_local_judge():
    local_judge.cache_clear()
    yield
    local_judge.cache_clear()


@pytest.fixture
def minilm_missing(fresh_local_judge, settings, monkeypatch):
    def missing() -> EmbeddingJudge:
        raise ImportError("the MiniLM judge needs onnxruntime")

    monkeypatch.setattr(EmbeddingJudge, "load", staticmethod(missing))
    settings.MICROLENS_LOCAL_JUDGE = "auto"


def test_groundedness_under_the_minilm_judge_names_the_lexical_model(
    fresh_local_judge, settings
) -> None:
    settings.MICROLENS_LOCAL_JUDGE = "auto"
    judge = local_judge()
    assert judge.name == "local-minilm"

    verdict = verdicts.groundedness(CONTEXT[0], CONTEXT, judge=judge, threshold=0.5)

    assert (verdict.judge, verdict.judge_version) == ("local-lexical", LEXICAL_MODEL_VERSION)
    assert verdict.judge_fallback == ""


def test_the_minilm_judge_records_its_model_version(fresh_local_judge, settings) -> None:
    settings.MICROLENS_LOCAL_JUDGE = "auto"
    judge = local_judge()

    verdict = verdicts.task_completion(
        "What is your favourite programming language?",
        "I like Python the most.",
        judge=judge,
        threshold=0.5,
    )

    assert verdict.judge == "local-minilm"
    assert verdict.judge_version == judge.version
    assert verdict.judge_version.startswith("onnx-int8 sha256:")


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("Can you help me reset my password?", "I'm sorry, but I can't help with that."),
        ("Return the order as JSON with id and total.", "id 7, total 12.5"),
        ("Summarise the refund policy.", "   "),
    ],
)
def test_rule_verdicts_name_the_rule_judge(
    fresh_local_judge, settings, question: str, answer: str
) -> None:
    settings.MICROLENS_LOCAL_JUDGE = "auto"

    verdict = verdicts.task_completion(question, answer, judge=local_judge(), threshold=0.5)

    assert verdict.passed is False
    assert (verdict.judge, verdict.judge_version) == ("rule", RULES_VERSION)


def test_lexical_task_completion_and_label_check_name_their_version() -> None:
    lexical = verdicts.task_completion(
        "Why was I charged twice?",
        "You were charged twice by a retry.",
        judge=LexicalJudge(),
        threshold=0.5,
    )
    exact = verdicts.label_check("billing", "Billing")

    assert (lexical.judge, lexical.judge_version) == ("local-lexical", "word-overlap-1")
    assert (exact.judge, exact.judge_version) == ("exact", "exact-1")


def test_an_llm_judge_records_the_model_it_serves() -> None:
    judge = OpenAICompatibleJudge(
        name="big-llm", base_url="http://127.0.0.1:9/v1", model="judge-7b", api_key="", timeout=1
    )

    assert (judge.name, judge.version) == ("big-llm", "judge-7b")


def test_a_minilm_load_failure_is_a_logged_and_marked_fallback(minilm_missing, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="evaluators.judging"):
        judge = local_judge()

    [record] = [r for r in caplog.records if "judge.local_fallback" in r.getMessage()]
    assert record.levelno == logging.WARNING
    verdict = verdicts.task_completion(
        "Why was I charged twice?",
        "You were charged twice by a retry.",
        judge=judge,
        threshold=0.5,
    )
    assert (verdict.judge, verdict.judge_version) == ("local-lexical", "word-overlap-1")
    assert verdict.judge_fallback == (
        "local-minilm unavailable: the MiniLM judge needs onnxruntime"
    )


@pytest.mark.django_db
def test_results_status_and_trace_page_show_the_deciding_judge_and_fallback(
    tenant, minilm_missing, capsys
) -> None:
    configure(tenant.project_id, evaluators={"task_completion": 0.5, "groundedness": 0.5})
    tenant.store(classifier_trace())
    for job_id in schedule_all().job_ids:
        run_evaluation_job(job_id)

    rows = {
        r.evaluator: (r.judge, r.judge_version, r.judge_fallback)
        for r in EvaluationResult.objects.all()
    }
    fallback = "local-minilm unavailable: the MiniLM judge needs onnxruntime"
    assert rows == {
        "task_completion": ("local-lexical", "word-overlap-1", fallback),
        "groundedness": ("local-lexical", LEXICAL_MODEL_VERSION, fallback),
    }

    _print_judges()
    printed = capsys.readouterr().out
    assert f"groundedness     local-lexical    {LEXICAL_MODEL_VERSION}" in printed
    assert printed.count(f"FALLBACK ({fallback})") == 2

    user = get_user_model().objects.create_user("ana", password="pw-for-tests-1")
    user.projects.add(tenant.project_id)
    client = Client()
    client.force_login(user)
    trace_id = bytes(EvaluationResult.objects.first().trace_id).hex()
    html = client.get(f"/traces/{trace_id}/").content.decode()
    assert f"judge local-lexical {LEXICAL_MODEL_VERSION}" in html
    assert html.count('class="status status-error judge-fallback"') == 2


@pytest.mark.django_db
def test_an_inconclusive_groundedness_verdict_is_stored_as_not_applicable_with_its_judge(
    tenant, settings
) -> None:
    """The local judge abstains on a reply-length output it neither supports nor
    contradicts: the job finishes, its result counts in no rate and names the judge."""
    settings.MICROLENS_LOCAL_JUDGE = "lexical"
    local_judge.cache_clear()
    configure(tenant.project_id, evaluators={"groundedness": 0.5})
    tenant.store(
        classifier_trace(
            answer="Duplicate charges are refunded within 3 days. Our office dog is called "
            "Biscuit and loves long walks.",
        )
    )
    [job_id] = schedule_all().job_ids

    assert run_evaluation_job(job_id).status == "done"
    local_judge.cache_clear()

    result = EvaluationResult.objects.get()
    assert (result.score, result.passed) == (None, None)
    assert (result.judge, result.judge_version) == ("local-lexical", LEXICAL_MODEL_VERSION)
    assert result.reason.startswith(
        "not applicable: inconclusive: 1 of 2 claims neither supported nor contradicted"
    )
