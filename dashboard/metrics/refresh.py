"""Keeping the metric rollups up to date: fold the traces tracestore changed since the
watermark (a beat task every minute; ``manage.py refresh_metrics``).

For each changed trace its ``DecisionFact`` rows are replaced (what it contributes now),
then every hour bucket it contributed to before or contributes to now is re-summed from
the facts, and every day bucket from its hours. Re-summing whole buckets instead of adding
deltas makes the fold idempotent and exact whatever order spans arrived in: a late root
span that moves a trace's start or adds its cohort just moves the trace's facts.

A model price saved or deleted leaves a ``PriceChange`` row (``dashboard/signals.py``): the
same fold re-prices every trace that used a matching model from the price's day on, in
the same transaction as the hours it re-sums, so no window mixes old and new prices.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from evaluators.contracts import resolve_expected_label
from evaluators.queries import feedback_changed_traces, feedback_labels
from tracestore.contracts import MicroModelDecision, TraceFacts
from tracestore.queries import (
    changed_trace_keys,
    cohort_dimension_keys,
    trace_facts,
    traces_with_model_matching,
)

from ..models import (
    DecisionFact,
    LabelRollup,
    PriceChange,
    Rollup,
    ShadowPair,
    ShadowPairRollup,
)
from .fold import (
    EPOCH,
    Fold,
    RollupRow,
    RollupTable,
    Sum,
    clear_rollups,
    cohort_dims,
    copy_rows,
    expire_rollups,
    floor_hour,
    fold_window,
    lock,
    refold,
)
from .histograms import (
    CONFIDENCE_BINS,
    COST_BASE_USD,
    COST_BINS,
    LATENCY_BASE_MS,
    LATENCY_BINS,
    confidence_bin,
    log_bin,
)
from .pricing import PriceBook, glob_regex

CHUNK = 2000
ANALYZE_EVERY = 50_000  # traces

_FACT_COLUMNS = (
    "project_id",
    "trace_id",
    "span_id",
    "hour",
    "start_time",
    "micro_model",
    "model",
    "route",
    "label",
    "expected_label",
    "confidence",
    "is_decision",
    "is_primary",
    "is_fallback",
    "is_retry",
    "cache_hit",
    "is_error",
    "latency_ms",
    "trace_duration_ms",
    "trace_error",
    "cohort",
    "cost",
    "unpriced_models",
    "prompt_tokens",
    "completion_tokens",
    "rescue_cost",
    "fallback_label",
)


@dataclass(frozen=True, slots=True)
class FoldResult:
    traces: int
    hours: int
    days: int
    folded_until: datetime


def fact_rows(trace: TraceFacts, prices: PriceBook) -> list[tuple]:
    """The DecisionFact rows of one trace (pure given the price book)."""
    hour = floor_hour(trace.start_time)
    cost = prices.trace_cost(trace.usage)
    rescue = _rescue_cost(trace, prices)
    trace_id = bytes.fromhex(trace.trace_id)
    cohort = json.dumps(trace.cohort, separators=(",", ":"))
    trace_error = trace.error_count > 0
    common = (trace.duration_ms, trace_error, cohort)
    rows = []
    # Mirrored (shadow) calls are no live decisions: they go to ShadowPair (shadow_rows).
    live = [d for d in trace.decisions if not d.is_mirrored]
    answered = fallback_labels(live, trace)
    for index, d in enumerate(live):
        primary = index == 0
        rows.append(
            (
                trace.project_id,
                trace_id,
                bytes.fromhex(d.span_id),
                hour,
                trace.start_time,
                d.micro_model,
                d.model or "",
                d.route or "",
                d.label or "",
                d.expected_label or "",
                d.confidence,
                True,
                primary,
                # Escalated when its trace went to a fallback model (the fallback span is
                # usually a sibling, not the decision span itself).
                trace.is_fallback or d.is_fallback,
                d.is_retry,
                d.cache_hit,
                d.is_error,
                d.duration_ms,
                *common,
                cost.cost if primary else None,
                list(cost.unpriced_models) if primary else [],
                trace.prompt_tokens if primary else 0,
                trace.completion_tokens if primary else 0,
                rescue if primary else None,
                answered.get(d.span_id, ""),
            )
        )
    if not rows:
        rows.append(
            (
                trace.project_id,
                trace_id,
                b"",
                hour,
                trace.start_time,
                "",
                "",
                "",
                "",
                "",
                None,
                False,
                True,
                trace.is_fallback,
                False,
                False,
                False,
                0.0,
                *common,
                cost.cost,
                list(cost.unpriced_models),
                trace.prompt_tokens,
                trace.completion_tokens,
                None,
                "",
            )
        )
    return rows


def fallback_labels(live: list[MicroModelDecision], trace: TraceFacts) -> dict[str, str]:
    """span id -> the fallback's label for the live decisions a fallback answered: each
    fallback answer (a ``route.fallback`` span that is no micro-model span and carries
    ``micro_model.label``) pairs with the last live decision that started at or before
    it, the decision it rescued; a decision answered more than once keeps the first
    answer. An answer that started before every decision pairs with none."""
    out: dict[str, str] = {}
    for answer in trace.fallback_answers:
        rescued = None
        for d in live:  # in start order
            if (d.start_time, d.span_id) <= (answer.start_time, answer.span_id):
                rescued = d
            else:
                break
        if rescued is not None:
            out.setdefault(rescued.span_id, answer.label)
    return out


def _rescue_cost(trace: TraceFacts, prices: PriceBook) -> float | None:
    """An escalated trace's spend on models other than its micro models' (the fallback
    that rescued it), or None (not escalated, nothing spent, or a model without a price)."""
    if not (trace.is_fallback or any(d.is_fallback for d in trace.decisions)):
        return None
    own = {d.model for d in trace.decisions if d.model}
    usage = [u for u in trace.usage if u.model not in own]
    if not usage:
        return None
    cost = prices.trace_cost(usage)
    return None if cost.unpriced_models else cost.cost


_SHADOW_COLUMNS = (
    "project_id",
    "trace_id",
    "span_id",
    "hour",
    "start_time",
    "micro_model",
    "shadow_model",
    "live_label",
    "shadow_label",
    "expected_label",
    "cohort",
)


def shadow_rows(trace: TraceFacts) -> list[tuple]:
    """The ShadowPair rows of one trace: each mirrored decision with the first live
    decision of the micro model its ``mirror_of`` names. A shadow whose live decision has
    not arrived yet has no row; the live span's arrival changes the trace, which is then
    folded again."""
    live: dict[str, MicroModelDecision] = {}
    for d in trace.decisions:
        if not d.is_mirrored:
            live.setdefault(d.micro_model, d)
    rows = []
    for d in trace.decisions:
        if not d.is_mirrored or not d.mirror_of or d.mirror_of not in live:
            continue
        pair = live[d.mirror_of]
        rows.append(
            (
                trace.project_id,
                bytes.fromhex(trace.trace_id),
                bytes.fromhex(d.span_id),
                floor_hour(trace.start_time),
                trace.start_time,
                pair.micro_model,
                d.micro_model,
                pair.label or "",
                d.label or "",
                pair.expected_label or d.expected_label or "",
                json.dumps(trace.cohort, separators=(",", ":")),
            )
        )
    return rows


def with_feedback_labels(traces: list[TraceFacts]) -> list[TraceFacts]:
    """The traces with each decision's expected label as evaluators resolve it: feedback
    posted later wins over the span's attribute, so label quality counts a label the same
    wherever it came from."""
    labels = feedback_labels([(t.project_id, t.trace_id) for t in traces])
    if not labels:
        return traces
    out = []
    for trace in traces:
        posted = labels.get((trace.project_id, trace.trace_id))
        if posted is None:
            out.append(trace)
            continue
        decisions = []
        for d in trace.decisions:
            if not d.label:
                # Generated text (feedback on a whole trace reaches every decision in
                # it): no predicted label for an expected one to be compared with.
                decisions.append(d)
                continue
            expected = resolve_expected_label(d.expected_label, posted, d.span_id)
            decisions.append(replace(d, expected_label=expected.label if expected else None))
        out.append(replace(trace, decisions=decisions))
    return out


def replace_facts(traces: list[TraceFacts], keys: list[tuple[int, str]], prices: PriceBook):
    """Replace the facts of ``keys`` (traces gone from tracestore just lose theirs);
    returns the (project, hour) buckets touched before and after."""
    touched: set[tuple[int, datetime]] = set()
    by_project: dict[int, list[bytes]] = defaultdict(list)
    for project_id, trace_hex in keys:
        by_project[project_id].append(bytes.fromhex(trace_hex))
    rows = [row for trace in traces for row in fact_rows(trace, prices)]
    pairs = [row for trace in traces for row in shadow_rows(trace)]
    with connection.cursor() as cursor:
        for project_id, trace_ids in by_project.items():
            cursor.execute(
                "DELETE FROM dashboard_shadowpair"
                " WHERE project_id = %s AND trace_id = ANY(%s::bytea[])",
                [project_id, trace_ids],
            )
            # = ANY on the unique index's leading columns: an index lookup per trace (a
            # join against unnest() was planned as a scan of the whole fact table).
            cursor.execute(
                "DELETE FROM dashboard_decisionfact"
                " WHERE project_id = %s AND trace_id = ANY(%s::bytea[])"
                " RETURNING project_id, hour",
                [project_id, trace_ids],
            )
            touched.update(cursor.fetchall())
        copy_rows(cursor, "dashboard_decisionfact", _FACT_COLUMNS, rows)
        copy_rows(cursor, "dashboard_shadowpair", _SHADOW_COLUMNS, pairs)
    touched.update((row[0], row[3]) for row in rows)
    return touched


def _add_fact(sums: dict[str, Any], f: _Fact) -> None:
    if f.is_decision:
        sums["decisions"] += 1
        sums["fallbacks"] += f.is_fallback
        sums["retries"] += f.is_retry
        sums["cache_hits"] += f.cache_hit
        sums["errors"] += f.is_error
        sums["latency_hist"][log_bin(f.latency_ms, LATENCY_BASE_MS, LATENCY_BINS)] += 1
    if f.is_primary:
        sums["traces"] += 1
        sums["trace_errors"] += f.trace_error
        sums["prompt_tokens"] += f.prompt_tokens
        sums["completion_tokens"] += f.completion_tokens
        # Mean and percentiles count fully priced traces only; a partly priced trace (or
        # one folded before priced parts were kept: cost NULL) lists what it lacks.
        if f.unpriced_models or f.cost is None:
            sums["unpriced_models"].update(f.unpriced_models)
        else:
            sums["costed_traces"] += 1
            sums["cost_sum"] += f.cost
            sums["cost_hist"][log_bin(f.cost, COST_BASE_USD, COST_BINS)] += 1
        if f.rescue_cost is not None:
            sums["rescue_costed"] += 1
            sums["rescue_cost_sum"] += f.rescue_cost
            sums["rescue_cost_sq_sum"] += f.rescue_cost * f.rescue_cost
    if f.is_decision and f.fallback_label and f.label and f.expected_label:
        micro, fallback = f.label == f.expected_label, f.fallback_label == f.expected_label
        sums[_PAIRED[micro][fallback]] += 1


# [micro model right][fallback right] -> the paired sum it counts in
_PAIRED = (
    ("paired_neither_right", "paired_fallback_right"),
    ("paired_micro_right", "paired_both_right"),
)


ROLLUP = RollupTable(
    Rollup,
    keys=("micro_model", "model", "route", "dim_key", "dim_value"),
    sums=(
        Sum("decisions"),
        Sum("fallbacks"),
        Sum("retries"),
        Sum("cache_hits"),
        Sum("errors"),
        Sum("traces"),
        Sum("trace_errors"),
        Sum("costed_traces"),
        Sum("cost_sum", "float"),
        Sum("prompt_tokens"),
        Sum("completion_tokens"),
        Sum("latency_hist", "hist", LATENCY_BINS),
        Sum("cost_hist", "hist", COST_BINS),
        Sum("unpriced_models", "set"),
        Sum("rescue_costed"),
        Sum("rescue_cost_sum", "float"),
        Sum("rescue_cost_sq_sum", "float"),
        Sum("paired_both_right"),
        Sum("paired_micro_right"),
        Sum("paired_fallback_right"),
        Sum("paired_neither_right"),
    ),
)
LABEL_ROLLUP = RollupTable(
    LabelRollup,
    keys=("micro_model", "model", "route", "label", "expected_label", "dim_key", "dim_value"),
    sums=(Sum("n"), Sum("confidence_hist", "hist", CONFIDENCE_BINS)),
)


SHADOW_ROLLUP = RollupTable(
    ShadowPairRollup,
    keys=(
        "micro_model",
        "shadow_model",
        "dim_key",
        "dim_value",
        "live_label",
        "shadow_label",
        "expected_label",
    ),
    sums=(Sum("n"),),
)

# A pair counts in the all-cohorts row ('', '') and in one row per configured key its
# cohort has (the JSON value as text, as shadow.py reads the pairs of partial hours).
PAIR_COHORTS = (
    "CROSS JOIN LATERAL (SELECT ''::text AS dim_key, ''::text AS dim_value UNION ALL"
    " SELECT k, p.cohort ->> k FROM unnest(%s::text[]) AS k"
    " WHERE p.cohort ->> k IS NOT NULL) AS d"
)
_PAIR_COUNT = (
    "SELECT p.hour, p.micro_model, p.shadow_model, d.dim_key, d.dim_value, p.live_label,"  # noqa: S608 (constant SQL; values are parameters)
    f" p.shadow_label, p.expected_label, count(*) FROM dashboard_shadowpair p {PAIR_COHORTS}"
    " WHERE p.project_id = %s AND p.hour = ANY(%s::timestamptz[])"
    " GROUP BY 1, 2, 3, 4, 5, 6, 7, 8"
)


def count_pair_hours(
    cursor, project_id: int, hours: list[datetime], keys: list[str]
) -> Iterable[RollupRow]:
    """The ShadowPairRollup hour rows of ``hours``, counted from the shadow pairs."""
    cursor.execute(_PAIR_COUNT, [keys, project_id, hours])
    return [(row[0], tuple(row[1:8]), {"n": row[8]}) for row in cursor.fetchall()]


class _Fact(NamedTuple):
    """A DecisionFact as the hour rollups read it."""

    hour: datetime
    micro_model: str
    model: str
    route: str
    label: str
    expected_label: str
    confidence: float | None
    cohort: str
    is_decision: bool
    is_primary: bool
    is_fallback: bool
    is_retry: bool
    cache_hit: bool
    is_error: bool
    latency_ms: float
    trace_error: bool
    cost: float | None
    prompt_tokens: int
    completion_tokens: int
    unpriced_models: list[str]
    rescue_cost: float | None
    fallback_label: str


_FACT_SELECT = (
    f"SELECT {', '.join(c + '::text' if c == 'cohort' else c for c in _Fact._fields)}"  # noqa: S608 (declared names)
    " FROM dashboard_decisionfact WHERE project_id = %s AND hour = ANY(%s::timestamptz[])"
)


def count_fact_hours(
    cursor, project_id: int, hours: list[datetime], keys: list[str]
) -> dict[RollupTable, Iterable[RollupRow]]:
    """The Rollup and LabelRollup hour rows of ``hours``, summed from the decision facts."""
    cursor.execute(_FACT_SELECT, [project_id, hours])
    rollups: dict[tuple, dict[str, Any]] = {}
    labels: dict[tuple, dict[str, Any]] = {}
    for row in cursor.fetchall():
        f = _Fact._make(row)
        for dim in cohort_dims(f.cohort, keys):
            key = (f.hour, f.micro_model, f.model, f.route, *dim)
            sums = rollups.get(key)
            if sums is None:
                sums = rollups[key] = ROLLUP.new_sums()
            _add_fact(sums, f)
            if f.is_decision:
                lkey = (f.hour, f.micro_model, f.model, f.route, f.label, f.expected_label, *dim)
                lsums = labels.get(lkey)
                if lsums is None:
                    lsums = labels[lkey] = LABEL_ROLLUP.new_sums()
                lsums["n"] += 1
                if f.confidence is not None:
                    lsums["confidence_hist"][confidence_bin(f.confidence)] += 1
    return {
        ROLLUP: ((k[0], k[1:], sums) for k, sums in rollups.items()),
        LABEL_ROLLUP: ((k[0], k[1:], sums) for k, sums in labels.items()),
    }


def count_hours(
    cursor, project_id: int, hours: list[datetime], keys: list[str]
) -> dict[RollupTable, Iterable[RollupRow]]:
    """Every rollup's hour rows of ``hours``: decisions from the facts, shadow pairs from
    the pairs (a pair's hour is its trace's, which always has a fact row there, so the
    hours a fold touches cover the pairs it replaced)."""
    counted = count_fact_hours(cursor, project_id, hours, keys)
    counted[SHADOW_ROLLUP] = count_pair_hours(cursor, project_id, hours, keys)
    return counted


FOLD = Fold(
    watermark="metrics",
    lock_id=0x6D6C_6D65,
    rollups=(ROLLUP, LABEL_ROLLUP, SHADOW_ROLLUP),
    count_hours=count_hours,
)


def expire_metrics(now: datetime | None = None) -> None:
    """Apply tracestore's retention setting to the derived rows (the beat task)."""
    expire_before((now or timezone.now()) - timedelta(days=settings.MICROLENS_RETENTION_DAYS))


def expire_before(cutoff: datetime) -> None:
    """Drop facts and rollups of traces past tracestore's retention (their spans are gone,
    so no change will ever fold them again). Day rows go once the whole day has expired."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM dashboard_decisionfact WHERE hour < %s", [floor_hour(cutoff)])
        cursor.execute("DELETE FROM dashboard_shadowpair WHERE hour < %s", [floor_hour(cutoff)])
    expire_rollups(FOLD, cutoff)


def fold_changes(now: datetime | None = None, *, since: datetime | None = None) -> FoldResult:
    """Fold every trace changed since the watermark (or since ``since``: a rebuild re-folds
    history), and every trace a price saved or deleted since the last fold re-prices, into
    the facts and rollups."""
    keys_config = cohort_dimension_keys()
    with fold_window(FOLD, now, since=since) as window:
        start, until = window.start, window.until
        # Read the price changes before the prices: a change committed in between is
        # applied at the next fold, never deleted unapplied.
        price_changes = list(PriceChange.objects.order_by("id"))
        prices = PriceBook.load()
        touched: set[tuple[int, datetime]] = set()
        folded: set[tuple[int, str]] = set()
        after = None
        count = 0
        while True:
            changed = changed_trace_keys(start, until, after=after, limit=CHUNK)
            if not changed:
                break
            keys = [(project_id, trace_hex) for _, project_id, trace_hex in changed]
            touched |= replace_facts(with_feedback_labels(trace_facts(keys)), keys, prices)
            folded.update(keys)
            count += len(keys)
            after = changed[-1]
            if count % ANALYZE_EVERY < len(keys):
                # A big fold (a rebuild, a backlog) grows the fact table from what the
                # planner last saw as empty: without fresh statistics it looks facts up
                # by scanning a whole project's rows.
                with connection.cursor() as cursor:
                    cursor.execute("ANALYZE dashboard_decisionfact")
        # Feedback changes no span: its traces are folded again for their expected labels.
        relabelled = [k for k in feedback_changed_traces(start, until) if k not in folded]
        for i in range(0, len(relabelled), CHUNK):
            keys = relabelled[i : i + CHUNK]
            touched |= replace_facts(with_feedback_labels(trace_facts(keys)), keys, prices)
            count += len(keys)
        folded.update(relabelled)
        if start > EPOCH:  # a rebuild has just folded every trace with these prices
            for change in price_changes:
                count, touched = _reprice(change, folded, prices, count, touched)
        PriceChange.objects.filter(id__in=[c.id for c in price_changes]).delete()
        days = refold(FOLD, touched, keys_config)
    return FoldResult(traces=count, hours=len(touched), days=len(days), folded_until=until)


def _reprice(
    change: PriceChange,
    folded: set[tuple[int, str]],
    prices: PriceBook,
    count: int,
    touched: set[tuple[int, datetime]],
) -> tuple[int, set[tuple[int, datetime]]]:
    """Fold again every trace that used a model ``change`` prices, from its day on (the
    traces this fold has not folded already)."""
    since = datetime.combine(change.effective_from, datetime.min.time(), tzinfo=UTC)
    regex = glob_regex(change.model_pattern)
    after = None
    while True:
        page = traces_with_model_matching(
            regex, change.model_pattern, since, after=after, limit=CHUNK
        )
        if not page:
            return count, touched
        after = page[-1]
        keys = [k for k in page if k not in folded]
        if keys:
            touched |= replace_facts(with_feedback_labels(trace_facts(keys)), keys, prices)
            folded.update(keys)
            count += len(keys)


def rebuild_all_rollups() -> FoldResult:
    """Re-fold everything (after a new cohort dimension; price changes need no rebuild)."""
    # One transaction: readers keep the old rollups until the new ones commit, and an
    # interrupted rebuild leaves the old ones in place (the watermark would not re-read
    # history on its own).
    with transaction.atomic():
        DecisionFact.objects.all().delete()
        ShadowPair.objects.all().delete()
        clear_rollups(FOLD)
        return fold_changes(since=EPOCH)


def resum_rollups() -> FoldResult:
    """Re-sum every rollup from the facts, without re-reading spans: enough after a cohort
    dimension change (facts keep every cohort key tracestore reads). Costs are in the
    facts: a price change is applied by ``fold_changes`` itself."""
    keys_config = cohort_dimension_keys()
    with transaction.atomic():
        lock(FOLD)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT DISTINCT project_id, hour FROM dashboard_decisionfact"
                " UNION SELECT DISTINCT project_id, hour FROM dashboard_shadowpair"
            )
            touched = set(cursor.fetchall())
        clear_rollups(FOLD)
        days = refold(FOLD, touched, keys_config)
    return FoldResult(traces=0, hours=len(touched), days=len(days), folded_until=timezone.now())
