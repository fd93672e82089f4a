from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from evaluators.contracts import ScheduleResult
from evaluators.models import EvaluatorConfig, Judge, MicroModel
from evaluators.services import schedule_evaluations
from tests.builders import TraceBuilder
from tracestore.services import create_project, issue_api_key, store_spans

QUIET = 60


@dataclass
class Tenant:
    project_id: int
    key: str

    def client(self) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {self.key}")
        return client

    def store(self, trace: TraceBuilder, spans: list | None = None) -> None:
        store_spans(self.project_id, trace.records(spans))


@pytest.fixture
def tenant() -> Tenant:
    project = create_project("shop")
    return Tenant(project.id, issue_api_key(project.id))


@pytest.fixture
def other_tenant() -> Tenant:
    project = create_project("elsewhere")
    return Tenant(project.id, issue_api_key(project.id))


@pytest.fixture(autouse=True)
def _eval_settings(settings) -> None:
    settings.MICROLENS_EVAL_QUIET_SECONDS = QUIET
    settings.MICROLENS_EVAL_MAX_ATTEMPTS = 3


def after_quiet() -> datetime:
    return timezone.now() + timedelta(seconds=QUIET + 1)


def schedule_all(now: datetime | None = None) -> ScheduleResult:
    """Run the scheduler until it has read every quiet trace; returns the totals."""
    traces = jobs = registered = over = not_applicable = 0
    ids: list[int] = []
    while True:
        result = schedule_evaluations(now=now or after_quiet(), limit=100)
        traces += result.traces
        jobs += result.jobs_created
        registered += result.models_registered
        over += result.skipped_over_budget
        not_applicable += result.not_applicable
        ids += result.job_ids
        if result.traces == 0:
            return ScheduleResult(traces, jobs, registered, over, ids, not_applicable)


def classifier_trace(
    *,
    label: str | None = "billing",
    expected: str | None = None,
    confidence: float = 0.9,
    error: bool = False,
    answer: str = "Duplicate charges are refunded within 3 days.",
    documents: tuple[str, ...] = ("Duplicate charges are refunded within 3 days.",),
    micro_model: str = "intent-mini",
    retriever: bool = True,
    tier: str = "pro",
) -> TraceBuilder:
    """Root request -> micro-model decision (with its own input/output) -> retriever."""
    trace = TraceBuilder()
    root = trace.span(
        "POST /chat",
        duration_ms=900,
        attrs={
            "user.tier": tier,
            "input.value": "Why was I charged twice this month?",
            "output.value": answer,
        },
    )
    attrs = {
        "openinference.span.kind": "LLM",
        "micro_model.name": micro_model,
        "llm.model_name": f"{micro_model}-v2",
        "micro_model.confidence": confidence,
        "input.value": "Why was I charged twice this month?",
        "output.value": answer,
    }
    if label is not None:
        attrs["micro_model.label"] = label
        attrs["route.name"] = label
    if expected is not None:
        attrs["micro_model.expected_label"] = expected
    trace.span("intent-classifier", parent=root, offset_ms=5, attrs=attrs, error=error)
    if retriever:
        retrieved = {"openinference.span.kind": "RETRIEVER"}
        for i, doc in enumerate(documents):
            retrieved[f"retrieval.documents.{i}.document.content"] = doc
        trace.span("retrieve", parent=root, offset_ms=40, attrs=retrieved)
    return trace


def generative_trace(**kwargs) -> TraceBuilder:
    """The same trace whose micro-model span generates the answer: no predicted label."""
    return classifier_trace(label=None, **kwargs)


def configure(
    project_id: int,
    name: str = "intent-mini",
    *,
    sample_rate: float = 100.0,
    evaluators: dict[str, float] | None = None,
    judge: Judge | None = None,
    **fields,
) -> MicroModel:
    # "generation" unless told: every evaluator applies to the spans of classifier_trace
    # (a generated answer that also carries a label); tests of the choice by task pass it.
    fields.setdefault("task", "generation")
    model = MicroModel.objects.create(
        project_id=project_id,
        name=name,
        micro_model_name=name,
        sample_rate=sample_rate,
        **fields,
    )
    for evaluator, threshold in (
        evaluators or {"label_check": 1.0, "task_completion": 0.5, "groundedness": 0.5}
    ).items():
        EvaluatorConfig.objects.create(
            micro_model=model,
            evaluator=evaluator,
            threshold=threshold,
            judge=judge if evaluator != "label_check" else None,
        )
    return model
