from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from evaluators.sampling import AlwaysRules, Matcher, always_reason, in_sample, match, sample_point
from tracestore.contracts import ModelSpan

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _span(**overrides) -> ModelSpan:
    fields = {
        "project_id": 1,
        "trace_id": "ab" * 16,
        "span_id": "01" * 8,
        "parent_span_id": None,
        "name": "intent",
        "start_time": T0,
        "status_code": 0,
        "span_kind": "LLM",
        "model": "intent-mini-v2",
        "micro_model": "intent-mini",
        "input_text": "hi",
        "output_text": "billing",
        "route": "billing",
        "label": "billing",
        "confidence": 0.9,
        "expected_label": None,
        "is_fallback": False,
        "attributes": {},
    }
    return ModelSpan(**{**fields, **overrides})


def test_sampling_10_percent_of_10000_traces_keeps_9_to_11_percent_the_same_each_time() -> None:
    trace_ids = [os.urandom(16).hex() for _ in range(10_000)]

    first = [in_sample(t, 10.0) for t in trace_ids]
    second = [in_sample(t, 10.0) for t in trace_ids]

    assert first == second
    assert 900 <= sum(first) <= 1100


def test_sampling_is_uniform_even_for_sequential_trace_ids() -> None:
    trace_ids = [i.to_bytes(16, "big").hex() for i in range(10_000)]

    assert 2400 <= sum(in_sample(t, 25.0) for t in trace_ids) <= 2600


@pytest.mark.parametrize("rate", [0.0, 100.0])
def test_sampling_at_the_edges_takes_none_or_all(rate: float) -> None:
    assert {in_sample(os.urandom(16).hex(), rate) for _ in range(500)} == {rate == 100.0}


def test_a_trace_id_maps_to_one_fixed_point() -> None:
    assert sample_point("00" * 16) == sample_point("00" * 16)
    assert 0.0 <= sample_point("ff" * 16) < 1.0


RULES = AlwaysRules(
    on_fallback=True, on_error=True, below_confidence=0.5, fallback_models=("gpt-large",)
)


def test_always_rules() -> None:
    span = _span()
    later_fallback = _span(
        span_id="02" * 8, model="gpt-large", micro_model=None, start_time=T0 + timedelta(seconds=1)
    )
    earlier_fallback = _span(
        span_id="03" * 8, model="gpt-large", micro_model=None, start_time=T0 - timedelta(seconds=1)
    )

    assert always_reason(span, [span], RULES) == ""
    assert always_reason(_span(status_code=2), [], RULES) == "error"
    assert always_reason(_span(confidence=0.3), [], RULES) == "low-confidence"
    assert always_reason(_span(is_fallback=True), [], RULES) == "fallback"
    assert always_reason(span, [span, later_fallback], RULES) == "fallback"
    assert always_reason(span, [span, earlier_fallback], RULES) == ""
    off = AlwaysRules(on_fallback=False, on_error=False, below_confidence=None, fallback_models=())
    assert always_reason(_span(status_code=2, confidence=0.1, is_fallback=True), [], off) == ""


def test_matching_prefers_the_micro_model_name_then_the_model_pattern() -> None:
    by_pattern = Matcher(1, 1, "", "intent-*")
    by_name = Matcher(2, 1, "intent-mini", "")
    other_project = Matcher(3, 2, "intent-mini", "")

    assert match(_span(), [by_pattern, by_name, other_project]) is by_name
    assert match(_span(micro_model=None), [by_pattern, by_name]) is by_pattern
    assert match(_span(micro_model=None, model="gpt-large"), [by_pattern, by_name]) is None
