"""The reads the dashboard's metric fold uses: changed traces by updated_at, and facts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from tests.builders import micro_model_trace
from tracestore.queries import changed_trace_keys, trace_facts
from tracestore.services import create_project, store_spans

pytestmark = pytest.mark.django_db

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def test_changed_traces_page_through_ties_exactly_once() -> None:
    project = create_project("facts")
    traces = [micro_model_trace(fallback=i % 2 == 0) for i in range(7)]
    # One batch: every trace gets the same updated_at, so pages split a tie.
    store_spans(project.id, [r for t in traces for r in t.records()])
    until = timezone.now() + timedelta(seconds=1)

    seen, after = [], None
    while page := changed_trace_keys(EPOCH, until, after=after, limit=3):
        seen += [trace_hex for _, _, trace_hex in page]
        after = page[-1]

    assert sorted(seen) == sorted(t.trace_hex for t in traces)
    assert len(seen) == 7


def test_trace_facts_carry_decisions_usage_and_the_root_cohort() -> None:
    project = create_project("facts")
    trace = micro_model_trace(tier="pro", fallback=True)
    store_spans(project.id, trace.records())

    (facts,) = trace_facts([(project.id, trace.trace_hex)])

    assert facts.cohort["user.tier"] == "pro"
    assert facts.is_fallback
    assert [(d.micro_model, d.route, d.label) for d in facts.decisions] == [
        ("intent-mini", "billing", "billing")
    ]
    assert sorted((u.model, u.prompt_tokens, u.completion_tokens) for u in facts.usage) == [
        ("gpt-large", 800, 120),
        ("intent-mini", 42, 3),
    ]
