"""A realistic micro-model data set at scale, for demos and the dashboard benchmark.

Traces are generated as tracestore ``SpanRecord``s (already normalised: no OTLP encoding
to pay for) and written with ``store_spans`` -- the same COPY path the receivers use, so
the rollups the data lands in are the ones real traffic builds. 5.2 spans per trace on
average: the request root (carrying the cohort), an input guardrail (40 %), one
micro-model decision, a query embedding and retrieval (80 %), a tool call (15 %), the
answer LLM call and, when the micro model is not confident enough, a fallback call to a
large model, whose span carries its own answer in the micro model's label space
(``micro_model.label``: far better than the micro model on Japanese traffic, a little
elsewhere; 90 % of escalated decisions carry an expected label, a third of the others).
Part of intent-mini's and router-tiny's traffic is mirrored to a shadow
candidate (``route.mirrored``), three prompt versions share the traffic.

Evaluation results are written with them, through evaluators' bulk import: LabelCheck on
every decision with an expected label, TaskCompletion and Groundedness on each micro
model's sample of traces (5-20 %, other rates for some cohorts, halved in the later half
of the window, and always on fallback or error), with pass/fail rates
that differ by micro model and cohort (Japanese and German traffic and the free tier fail
more).

Names (micro models and their labels, models, cohort values) come from
``demo_vocabulary.py``, which ``microlens demo`` shares; how often each occurs and how each
micro model behaves are set here.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from evaluators.contracts import GROUNDEDNESS, LABEL_CHECK, TASK_COMPLETION, EvaluationRecord
from evaluators.sampling import in_sample
from evaluators.services import import_evaluation_results
from tracestore.contracts import SpanRecord
from tracestore.services import store_spans

from .demo_vocabulary import (
    ANSWER_MODEL,
    BIG_MODELS,
    EMBEDDING_MODEL,
    LANGUAGES,
    MICRO_MODELS,
    PROMPT_VERSIONS,
    RESOURCE,
    SERVICE_NAME,
    SHADOW_CANDIDATES,
    TASK_TYPES,
    TIERS,
)
from .models import ModelPrice

# How each micro model behaves: base fallback probability, median latency (ms).
BEHAVIOUR = {
    "intent-mini": (0.08, 25),
    "safety-screen": (0.03, 12),
    "router-tiny": (0.12, 18),
    "reranker-small": (0.05, 40),
    "lang-detect": (0.02, 6),
}
# Harder cohorts escalate more: the pattern the dashboard should make visible.
FALLBACK_BOOST = {"ja": 3.0, "de": 1.6, "free": 1.3, "v4": 0.7, "v5": 0.6}
# Spans beyond root, decision and answer: an input guardrail, query embedding + retrieval,
# a tool call (and the fallback call): a little over 5 spans per trace on average.
GUARDRAIL_SHARE = 0.4
RETRIEVAL_SHARE = 0.8
TOOL_SHARE = 0.15
# Some cohorts are harder for every micro model (multiplies the label accuracy).
LABEL_ACCURACY = {"ja": 0.88, "de": 0.95, "enterprise": 1.03}

# Evaluations: percent of traces each micro model's model-based evaluators score, and the
# base fail probabilities, skewed by cohort.
SAMPLE_RATES = {
    "intent-mini": 10.0,
    "safety-screen": 20.0,
    "router-tiny": 10.0,
    "reranker-small": 5.0,
    "lang-detect": 5.0,
}
# Mixed sampling rates, as budgets set them: some cohorts are scored at another rate
# (enterprise traffic of intent-mini always, free traffic of safety-screen at 5 %), and in
# the later half of the window every other rate is halved (a budget cut).
SAMPLE_RATE_BY_COHORT = {
    ("intent-mini", "enterprise"): 100.0,
    ("safety-screen", "free"): 5.0,
}
LATE_RATE_FACTOR = 0.5

# Shadow candidates: a share of some micro models' traffic is mirrored to a candidate that
# answers the same input (route.mirrored, route.mirror_of). Each candidate agrees with the
# live label most of the time and is right more often on some cohorts than others.
SHADOWS = {
    # live name: (share mirrored, the candidate's accuracy by tier)
    "intent-mini": (0.3, {"free": 0.9, "pro": 0.93, "enterprise": 0.97}),
    "router-tiny": (0.2, {"free": 0.8, "pro": 0.82, "enterprise": 0.85}),
}
# The fallback's answer on an escalated decision (``micro_model.label`` on its span): it
# keeps a right answer but for FALLBACK_SLIP of them, and puts a wrong one right with the
# cohort's probability: far better than the micro model on Japanese traffic, barely on the
# rest (routing advice's accuracy gap). Drawn from a stream of its own, seeded by the
# trace id: the traffic is the same with or without it.
FALLBACK_RESCUE = {"ja": 0.97}
FALLBACK_RESCUE_ELSEWHERE = 0.35
FALLBACK_SLIP = 0.03
TASK_FAIL = {
    "intent-mini": 0.07,
    "safety-screen": 0.04,
    "router-tiny": 0.10,
    "reranker-small": 0.12,
    "lang-detect": 0.03,
}
TASK_FAIL_BOOST = {
    "ja": 2.2,
    "de": 1.4,
    "free": 1.2,
    "enterprise": 0.8,
    "v4": 0.75,
    "v5": 0.6,
}
GROUNDED_FAIL = {
    "intent-mini": 0.05,
    "safety-screen": 0.03,
    "router-tiny": 0.06,
    "reranker-small": 0.15,
    "lang-detect": 0.04,
}
GROUNDED_FAIL_BOOST = {"ja": 1.8, "fr": 1.2, "search": 1.5}
EVALUATION_BATCH = 50_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# Demo prices (USD per million input / output tokens), created when the table has none
# for the model, so demo traces have costs.
DEMO_PRICES = {
    "gpt-large": (2.50, 10.00),
    "claude-big": (3.00, 15.00),
    "gpt-mini": (0.15, 0.60),
    "text-embed-small": (0.02, 0.0),
    "*-mini-v*": (0.02, 0.02),
    "*-v[0-9]": (0.01, 0.01),
}


def ensure_demo_prices() -> int:
    """Add the demo prices that are missing (from 2020-01-01); returns how many."""
    created = 0
    for pattern, (price_in, price_out) in DEMO_PRICES.items():
        _, new = ModelPrice.objects.get_or_create(
            model_pattern=pattern,
            effective_from=date(2020, 1, 1),
            defaults={"input_per_million": price_in, "output_per_million": price_out},
        )
        created += new
    return created


@dataclass(frozen=True, slots=True)
class SeedResult:
    spans: int
    traces: int
    evaluations: int
    seconds: float


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    roll, acc = rng.random(), 0.0
    for value, weight in weighted:
        acc += weight
        if roll < acc:
            return value
    return weighted[-1][0]


def _span_time(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ns // 1000)


def _judged(rng: random.Random, fail_p: float, threshold: float) -> tuple[float, bool]:
    """A model-based score on the failing or passing side of ``threshold``."""
    if rng.random() < min(0.95, fail_p):
        return round(rng.uniform(0.02, threshold - 0.01), 3), False
    return round(rng.uniform(threshold, 1.0), 3), True


def _boost(table: dict[str, float], cohort: dict[str, str]) -> float:
    factor = 1.0
    for value in cohort.values():
        factor *= table.get(value, 1.0)
    return factor


def _fallback_label(
    trace_id: bytes, cohort: dict[str, str], label: str, expected: str, labels: tuple[str, ...]
) -> str:
    own = random.Random(trace_id)
    if label == expected:
        slipped = own.random() < FALLBACK_SLIP
        return own.choice([x for x in labels if x != expected] or [expected]) if slipped else label
    rescue = FALLBACK_RESCUE.get(cohort["language"], FALLBACK_RESCUE_ELSEWHERE)
    return expected if own.random() < rescue else label


def sample_rate(name: str, cohort: dict[str, str], late: bool) -> float:
    """The percent of a micro model's traces its model-based evaluators score, for this
    cohort and part of the window."""
    for value in cohort.values():
        rate = SAMPLE_RATE_BY_COHORT.get((name, value))
        if rate is not None:
            return rate
    return SAMPLE_RATES[name] * (LATE_RATE_FACTOR if late else 1.0)


def _trace(
    rng: random.Random,
    start_ns: int,
    span_counter: Iterator[int],
    late: bool = False,
    shadow_rng: random.Random | None = None,
) -> tuple[list[SpanRecord], list[EvaluationRecord]]:
    trace_id = rng.getrandbits(128).to_bytes(16, "big")

    def sid() -> bytes:
        return next(span_counter).to_bytes(8, "big")

    cohort = {
        "user.tier": _pick(rng, TIERS),
        "language": _pick(rng, LANGUAGES),
        "prompt.version": _pick(rng, PROMPT_VERSIONS),
        "task.type": _pick(rng, TASK_TYPES),
    }
    name = rng.choice(tuple(MICRO_MODELS))
    version, labels = MICRO_MODELS[name].version, MICRO_MODELS[name].labels
    fallback_p, median_ms = BEHAVIOUR[name]
    fallback_p *= _boost(FALLBACK_BOOST, cohort)
    confidence = min(1.0, max(0.05, rng.betavariate(6, 1.6)))
    fallback = rng.random() < fallback_p * (2.5 if confidence < 0.6 else 0.7)
    expected = rng.choice(labels)
    accuracy = (0.93 if confidence > 0.7 else 0.7) * _boost(LABEL_ACCURACY, cohort)
    correct = rng.random() < accuracy
    label = expected if correct else rng.choice(labels)
    root_id, ms = sid(), 1_000_000
    guarded = rng.random() < GUARDRAIL_SHARE
    guard_ms = rng.lognormvariate(0, 0.3) * 8 if guarded else 0.0
    decision_ms = rng.lognormvariate(0, 0.5) * median_ms
    retrieves = rng.random() < RETRIEVAL_SHARE
    tool = rng.random() < TOOL_SHARE
    answer_ms = rng.lognormvariate(0, 0.4) * 600
    fallback_ms = rng.lognormvariate(0, 0.4) * 1400 if fallback else 0.0
    tool_ms = rng.lognormvariate(0, 0.5) * 120 if tool else 0.0
    total_ms = guard_ms + decision_ms + 60 + tool_ms + answer_ms + fallback_ms + 10
    error = rng.random() < 0.01
    spans: list[SpanRecord] = []

    def span(span_id, parent, name_, offset_ms, dur_ms, attrs, **canonical) -> int:
        start = start_ns + int(offset_ms * ms)
        spans.append(
            SpanRecord(
                trace_id=trace_id,
                span_id=span_id,
                parent_span_id=parent,
                name=name_,
                kind=1,
                start_time_ns=start,
                end_time_ns=start + int(dur_ms * ms),
                status_code=canonical.pop("status_code", 0),
                status_message="",
                service_name=SERVICE_NAME,
                scope_name="demo",
                scope_version="1",
                attributes=attrs,
                resource_attributes=RESOURCE,
                **canonical,
            )
        )
        return start

    span(
        root_id,
        None,
        "POST /chat",
        0,
        total_ms,
        dict(cohort),
        cohort=cohort,
        status_code=2 if error else 0,
    )
    offset = 1.0
    if guarded:
        span(
            sid(),
            root_id,
            "guardrail.input",
            offset,
            guard_ms,
            {"openinference.span.kind": "GUARDRAIL", "guardrail.name": "pii-screen"},
            span_kind="GUARDRAIL",
        )
        offset += guard_ms
    decision_attrs: dict[str, object] = {
        "micro_model.name": name,
        "llm.model_name": version,
        "micro_model.label": label,
        "micro_model.confidence": round(confidence, 3),
        "route.name": label,
    }
    prompt_tokens = rng.randint(20, 120)
    retry = rng.random() < 0.04
    cache = rng.random() < 0.1
    # Escalated decisions are reviewed more often (the rescues a team looks at).
    known = expected if rng.random() < (0.9 if fallback else 0.35) else None
    if known is not None:
        decision_attrs["micro_model.expected_label"] = known
    decision_id = sid()
    decision_start = span(
        decision_id,
        root_id,
        name,
        offset + 1,
        decision_ms,
        decision_attrs,
        span_kind="LLM",
        model=version,
        micro_model=name,
        prompt_tokens=prompt_tokens,
        completion_tokens=2,
        route=label,
        label=label,
        confidence=round(confidence, 3),
        expected_label=known,
        is_retry=retry,
        cache_hit=cache,
        status_code=2 if error and rng.random() < 0.5 else 0,
    )
    if name in SHADOWS and shadow_rng is not None:
        # Its own random stream: the live traffic is the same with or without shadows.
        candidate, candidate_version = SHADOW_CANDIDATES[name]
        share, accuracy_by_tier = SHADOWS[name]
        if shadow_rng.random() < share:
            right = shadow_rng.random() < accuracy_by_tier[cohort["user.tier"]]
            shadow_label = expected if right else shadow_rng.choice(labels)
            shadow_confidence = round(min(1.0, max(0.05, shadow_rng.betavariate(7, 1.5))), 3)
            span(
                sid(),
                root_id,
                candidate,
                offset + 1,
                decision_ms * 1.3,
                {
                    "micro_model.name": candidate,
                    "llm.model_name": candidate_version,
                    "micro_model.label": shadow_label,
                    "micro_model.confidence": shadow_confidence,
                    "route.mirrored": True,
                    "route.mirror_of": name,
                },
                span_kind="LLM",
                model=candidate_version,
                micro_model=candidate,
                prompt_tokens=prompt_tokens,
                completion_tokens=2,
                label=shadow_label,
                confidence=shadow_confidence,
                is_mirrored=True,
                mirror_of=name,
            )
    offset += decision_ms + 5
    if retrieves:
        span(
            sid(),
            root_id,
            "embed query",
            offset,
            12,
            {"openinference.span.kind": "EMBEDDING", "embedding.model_name": EMBEDDING_MODEL},
            span_kind="EMBEDDING",
            model=EMBEDDING_MODEL,
            prompt_tokens=rng.randint(10, 80),
            completion_tokens=0,
        )
        span(
            sid(),
            root_id,
            "retrieve",
            offset + 13,
            40,
            {"openinference.span.kind": "RETRIEVER"},
            span_kind="RETRIEVER",
        )
    offset += 55
    if tool:
        span(
            sid(),
            root_id,
            "tool.lookup_account",
            offset,
            tool_ms,
            {"openinference.span.kind": "TOOL", "tool.name": "lookup_account"},
            span_kind="TOOL",
        )
        offset += tool_ms
    if fallback:
        big = rng.choice(BIG_MODELS)
        answered = _fallback_label(trace_id, cohort, label, expected, labels)
        span(
            sid(),
            root_id,
            "fallback",
            offset,
            fallback_ms,
            {"route.fallback": True, "micro_model.label": answered},
            span_kind="LLM",
            model=big,
            prompt_tokens=rng.randint(600, 2400),
            completion_tokens=rng.randint(80, 400),
            label=answered,
            is_fallback=True,
        )
        offset += fallback_ms
    span(
        sid(),
        root_id,
        "answer",
        offset,
        answer_ms,
        {"openinference.span.kind": "LLM"},
        span_kind="LLM",
        model=ANSWER_MODEL,
        prompt_tokens=rng.randint(300, 1500),
        completion_tokens=rng.randint(40, 300),
    )
    evaluations = _evaluations(
        rng,
        trace_id=trace_id,
        span_id=decision_id,
        at=_span_time(decision_start),
        name=name,
        cohort=cohort,
        label=label,
        expected=known,
        fallback=fallback,
        error=error,
        retrieves=retrieves,
        late=late,
    )
    return spans, evaluations


def _evaluations(
    rng: random.Random,
    *,
    trace_id: bytes,
    span_id: bytes,
    at: datetime,
    name: str,
    cohort: dict[str, str],
    label: str,
    expected: str | None,
    fallback: bool,
    error: bool,
    retrieves: bool,
    late: bool = False,
) -> list[EvaluationRecord]:
    """What evaluators would have stored for this decision: LabelCheck whenever the expected
    label is known, TaskCompletion and Groundedness on the micro model's sample of traces
    (hash of the trace id, as the scheduler samples) and always on fallback or error."""
    out = []

    def add(evaluator: str, score, passed, threshold, reason, judge, latency, p, **labels):
        out.append(
            EvaluationRecord(
                trace_id=trace_id,
                span_id=span_id,
                span_start_time=at,
                micro_model=name,
                evaluator=evaluator,
                score=score,
                passed=passed,
                threshold=threshold,
                reason=reason,
                judge=judge,
                latency_ms=latency,
                sampling_probability=p,
                cohort=cohort,
                **labels,
            )
        )

    if expected is not None:
        ok = label == expected
        add(
            LABEL_CHECK,
            1.0 if ok else 0.0,
            ok,
            1.0,
            f"predicted {label!r}, expected {expected!r}",
            "label-check",
            0.05,
            1.0,
            predicted_label=label,
            expected_label=expected,
        )
    always = fallback or error
    rate = sample_rate(name, cohort, late)
    if not always and not in_sample(trace_id.hex(), rate):
        return out
    probability = 1.0 if always else rate / 100
    fail_p = TASK_FAIL[name] * _boost(TASK_FAIL_BOOST, cohort)
    fail_p *= 3.0 if error else (0.6 if fallback else 1.0)
    score, passed = _judged(rng, fail_p, 0.5)
    reason = "the answer completes the request" if passed else "the request is left unanswered"
    add(
        TASK_COMPLETION,
        score,
        passed,
        0.5,
        reason,
        "local-lexical",
        rng.uniform(2, 15),
        probability,
    )
    grounded_score: float | None = None
    grounded: bool | None = None
    reason = "not applicable: no retrieved context"
    if retrieves:
        fail_p = GROUNDED_FAIL[name] * _boost(GROUNDED_FAIL_BOOST, cohort)
        grounded_score, grounded = _judged(rng, fail_p, 0.5)
        reason = (
            "every claim is supported by the retrieved context"
            if grounded
            else "claims not found in the retrieved context"
        )
    add(
        GROUNDEDNESS,
        grounded_score,
        grounded,
        0.5,
        reason,
        "local-lexical",
        rng.uniform(2, 15),
        probability,
    )
    return out


def seed_demo_data(
    project_id: int, *, spans: int, days: float, seed: int = 7, end_ns: int | None = None
) -> SeedResult:
    """About ``spans`` spans (``spans // 5`` whole traces, a little over 5 spans each)
    spread evenly over the last ``days`` days, written in batches of about 5000 spans in
    time order (as live traffic would be), with their evaluation results in bulk."""
    rng = random.Random(seed)
    shadow_rng = random.Random(seed * 7919 + 1)
    end_ns = end_ns or time.time_ns()
    traces = max(1, spans // 5)
    window_ns = int(days * 86400 * 1e9)
    step = window_ns / traces
    begin = end_ns - window_ns
    counter = iter(range(1, 1 << 62))
    started = time.perf_counter()
    batch: list[SpanRecord] = []
    verdicts: list[EvaluationRecord] = []
    written = evaluated = 0
    for i in range(traces):
        trace_spans, trace_verdicts = _trace(
            rng,
            begin + int(i * step + rng.random() * step),
            counter,
            late=i >= traces // 2,
            shadow_rng=shadow_rng,
        )
        batch += trace_spans
        verdicts += trace_verdicts
        if len(batch) >= 5000:
            written += store_spans(project_id, batch).inserted
            batch = []
        if len(verdicts) >= EVALUATION_BATCH:
            evaluated += import_evaluation_results(project_id, verdicts)
            verdicts = []
    if batch:
        written += store_spans(project_id, batch).inserted
    if verdicts:
        evaluated += import_evaluation_results(project_id, verdicts)
    return SeedResult(
        spans=written,
        traces=traces,
        evaluations=evaluated,
        seconds=time.perf_counter() - started,
    )
