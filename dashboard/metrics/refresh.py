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
from typing import Any

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
    RollupWatermark,
    ShadowPair,
)
from .histograms import (
    CONFIDENCE_BINS,
    COST_BASE_USD,
    COST_BINS,
    LATENCY_BASE_MS,
    LATENCY_BINS,
    add_into,
    confidence_bin,
    log_bin,
)
from .pricing import PriceBook, glob_regex

WATERMARK = "metrics"
# updated_at is its transaction's start time: a batch that began before the last fold's
# end may commit after it. Re-reading this margin catches every batch shorter than it.
LATE_COMMIT_MARGIN = timedelta(minutes=5)
CHUNK = 2000
ANALYZE_EVERY = 50_000  # traces
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LOCK_ID = 0x6D6C_6D65  # pg advisory lock: one fold at a time

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
)


@dataclass(frozen=True, slots=True)
class FoldResult:
    traces: int
    hours: int
    days: int
    folded_until: datetime


def _hour(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _day(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def fact_rows(trace: TraceFacts, prices: PriceBook) -> list[tuple]:
    """The DecisionFact rows of one trace (pure given the price book)."""
    hour = _hour(trace.start_time)
    cost = prices.trace_cost(trace.usage)
    rescue = _rescue_cost(trace, prices)
    trace_id = bytes.fromhex(trace.trace_id)
    cohort = json.dumps(trace.cohort, separators=(",", ":"))
    trace_error = trace.error_count > 0
    common = (trace.duration_ms, trace_error, cohort)
    rows = []
    # Mirrored (shadow) calls are no live decisions: they go to ShadowPair (shadow_rows).
    live = [d for d in trace.decisions if not d.is_mirrored]
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
            )
        )
    return rows


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
                _hour(trace.start_time),
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


def _array(values: list) -> str:
    # An array literal in COPY text: psycopg's generic list dumper is ten times slower.
    if values and type(values[0]) is int:
        return "{" + ",".join(map(str, values)) + "}"
    return "{" + ",".join(map(_element, values)) + "}"


def _element(value: object) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


def _copy(cursor, table: str, columns: Iterable[str], rows: Iterable[tuple]) -> None:
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(tuple(_array(v) if type(v) is list else v for v in row))


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
        _copy(cursor, "dashboard_decisionfact", _FACT_COLUMNS, rows)
        _copy(cursor, "dashboard_shadowpair", _SHADOW_COLUMNS, pairs)
    touched.update((row[0], row[3]) for row in rows)
    return touched


def _new_rollup() -> list:
    # decisions, fallbacks, retries, cache_hits, errors, traces, trace_errors,
    # costed_traces, cost_sum, prompt_tokens, completion_tokens, latency, cost hist,
    # unpriced models, rescue_costed, rescue_cost_sum, rescue_cost_sq_sum
    acc = [0, 0, 0, 0, 0, 0, 0, 0, 0.0, 0, 0, [0] * LATENCY_BINS, [0] * COST_BINS, set()]
    return [*acc, 0, 0.0, 0.0]


def _add_fact(acc: list, f: tuple) -> None:
    (is_decision, is_primary, fallback, retry, cache, error, latency, trace_error) = f[:8]
    cost, prompt, completion = f[8:11]
    if is_decision:
        acc[0] += 1
        acc[1] += fallback
        acc[2] += retry
        acc[3] += cache
        acc[4] += error
        acc[11][log_bin(latency, LATENCY_BASE_MS, LATENCY_BINS)] += 1
    if is_primary:
        acc[5] += 1
        acc[6] += trace_error
        acc[9] += prompt
        acc[10] += completion
        # Mean and percentiles count fully priced traces only; a partly priced trace (or
        # one folded before priced parts were kept: cost NULL) lists what it lacks.
        if f[11] or cost is None:
            acc[13].update(f[11])
        else:
            acc[7] += 1
            acc[8] += cost
            acc[12][log_bin(cost, COST_BASE_USD, COST_BINS)] += 1
        if f[12] is not None:
            acc[14] += 1
            acc[15] += f[12]
            acc[16] += f[12] * f[12]


_ROLLUP_COLUMNS = (
    "width",
    "bucket",
    "project_id",
    "micro_model",
    "model",
    "route",
    "dim_key",
    "dim_value",
    "decisions",
    "fallbacks",
    "retries",
    "cache_hits",
    "errors",
    "traces",
    "trace_errors",
    "costed_traces",
    "cost_sum",
    "prompt_tokens",
    "completion_tokens",
    "latency_hist",
    "cost_hist",
    "unpriced_models",
    "rescue_costed",
    "rescue_cost_sum",
    "rescue_cost_sq_sum",
)
_LABEL_COLUMNS = (
    "width",
    "bucket",
    "project_id",
    "micro_model",
    "model",
    "route",
    "label",
    "expected_label",
    "dim_key",
    "dim_value",
    "n",
    "confidence_hist",
)


def _dims(cohort: dict[str, str], keys: list[str]) -> list[tuple[str, str]]:
    return [("", "")] + [(k, cohort[k]) for k in keys if k in cohort]


def rebuild_hours(buckets: set[tuple[int, datetime]], keys: list[str]) -> None:
    by_project: dict[int, list[datetime]] = defaultdict(list)
    for project_id, hour in buckets:
        by_project[project_id].append(hour)
    with connection.cursor() as cursor:
        for project_id, hours in by_project.items():
            for table in ("dashboard_rollup", "dashboard_labelrollup"):
                cursor.execute(
                    f"DELETE FROM {table} WHERE project_id = %s AND width = 'h'"  # noqa: S608 (constant table names)
                    " AND bucket = ANY(%s::timestamptz[])",
                    [project_id, hours],
                )
            cursor.execute(
                "SELECT hour, micro_model, model, route, label, expected_label, confidence,"
                " cohort::text, is_decision, is_primary, is_fallback, is_retry, cache_hit,"
                " is_error, latency_ms, trace_error, cost, prompt_tokens, completion_tokens,"
                " unpriced_models, rescue_cost"
                " FROM dashboard_decisionfact"
                " WHERE project_id = %s AND hour = ANY(%s::timestamptz[])",
                [project_id, hours],
            )
            rollups: dict[tuple, list] = {}
            labels: dict[tuple, list] = {}
            for row in cursor.fetchall():
                hour, micro_model, model, route, label, expected, confidence, cohort = row[:8]
                dims = _dims(json.loads(cohort), keys)
                for dim in dims:
                    key = (hour, micro_model, model, route, *dim)
                    acc = rollups.get(key)
                    if acc is None:
                        acc = rollups[key] = _new_rollup()
                    _add_fact(acc, row[8:])
                    if row[8]:  # a decision
                        lkey = (hour, micro_model, model, route, label, expected, *dim)
                        lacc = labels.get(lkey)
                        if lacc is None:
                            lacc = labels[lkey] = [0, [0] * CONFIDENCE_BINS]
                        lacc[0] += 1
                        if confidence is not None:
                            lacc[1][confidence_bin(confidence)] += 1
            _write_rows(cursor, "h", project_id, rollups, labels)


def _write_rows(
    cursor, width: str, project_id: int, rollups: dict[tuple, list], labels: dict[tuple, list]
) -> None:
    """COPY accumulated rollup and label rows of one width ("h" or "d")."""
    _copy(
        cursor,
        "dashboard_rollup",
        _ROLLUP_COLUMNS,
        (
            (width, k[0], project_id, *k[1:], *acc[:13], sorted(acc[13]), *acc[14:17])
            for k, acc in rollups.items()
        ),
    )
    _copy(
        cursor,
        "dashboard_labelrollup",
        _LABEL_COLUMNS,
        ((width, k[0], project_id, *k[1:], *acc) for k, acc in labels.items()),
    )


def rebuild_days(buckets: set[tuple[int, datetime]]) -> None:
    """Day rows are the sums of their hours' rows."""
    with connection.cursor() as cursor:
        for project_id, day in sorted(buckets):
            span: list[Any] = [project_id, day, day + timedelta(days=1)]
            for table in ("dashboard_rollup", "dashboard_labelrollup"):
                cursor.execute(
                    f"DELETE FROM {table} WHERE project_id = %s AND width = 'd'"  # noqa: S608 (constant table names)
                    " AND bucket = %s",
                    span[:2],
                )
            day_filter = (
                " FROM {table} WHERE project_id = %s AND width = 'h'"
                " AND bucket >= %s AND bucket < %s"
            )
            cursor.execute(
                f"SELECT {', '.join(_ROLLUP_COLUMNS[1:])}"
                + day_filter.format(table="dashboard_rollup"),
                span,
            )
            rollups: dict[tuple, list] = {}
            for row in cursor.fetchall():
                key = (day, *row[2:7])
                acc = rollups.get(key)
                if acc is None:
                    acc = rollups[key] = [0, 0, 0, 0, 0, 0, 0, 0, 0.0, 0, 0, None, None, set()]
                    acc += [0, 0.0, 0.0]
                for i in range(11):
                    acc[i] += row[7 + i]
                for i in (11, 12):
                    if acc[i] is None:
                        acc[i] = list(row[7 + i])
                    else:
                        add_into(acc[i], row[7 + i])
                acc[13].update(row[20])
                acc[14] += row[21]
                acc[15] += row[22]
                acc[16] += row[23]
            cursor.execute(
                f"SELECT {', '.join(_LABEL_COLUMNS[1:])}"
                + day_filter.format(table="dashboard_labelrollup"),
                span,
            )
            labels: dict[tuple, list] = {}
            for row in cursor.fetchall():
                key = (day, *row[2:9])
                acc = labels.get(key)
                if acc is None:
                    labels[key] = [row[9], list(row[10])]
                else:
                    acc[0] += row[9]
                    add_into(acc[1], row[10])
            _write_rows(cursor, "d", project_id, rollups, labels)


def expire_metrics(now: datetime | None = None) -> None:
    """Apply tracestore's retention setting to the derived rows (the beat task)."""
    expire_before((now or timezone.now()) - timedelta(days=settings.MICROLENS_RETENTION_DAYS))


def expire_before(cutoff: datetime) -> None:
    """Drop facts and rollups of traces past tracestore's retention (their spans are gone,
    so no change will ever fold them again). Day rows go once the whole day has expired."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM dashboard_decisionfact WHERE hour < %s", [_hour(cutoff)])
        cursor.execute("DELETE FROM dashboard_shadowpair WHERE hour < %s", [_hour(cutoff)])
        for table in ("dashboard_rollup", "dashboard_labelrollup"):
            cursor.execute(
                f"DELETE FROM {table} WHERE (width = 'h' AND bucket < %s)"  # noqa: S608 (constant table names)
                " OR (width = 'd' AND bucket < %s)",
                [_hour(cutoff), _day(cutoff)],
            )
        # The day the cutoff falls in keeps only its unexpired hours.
        day = _day(cutoff)
        cursor.execute(
            "SELECT DISTINCT project_id FROM dashboard_rollup WHERE width = 'd' AND bucket = %s",
            [day],
        )
        projects = [row[0] for row in cursor.fetchall()]
    rebuild_days({(project_id, day) for project_id in projects})


def fold_changes(now: datetime | None = None, *, since: datetime | None = None) -> FoldResult:
    """Fold every trace changed since the watermark (or since ``since``: a rebuild re-folds
    history), and every trace a price saved or deleted since the last fold re-prices, into
    the facts and rollups."""
    until = now or timezone.now()
    keys_config = cohort_dimension_keys()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_ID])
        # Read the price changes before the prices: a change committed in between is
        # applied at the next fold, never deleted unapplied.
        price_changes = list(PriceChange.objects.order_by("id"))
        prices = PriceBook.load()
        mark, _ = RollupWatermark.objects.select_for_update().get_or_create(
            name=WATERMARK, defaults={"folded_until": _EPOCH}
        )
        start = since if since is not None else max(mark.folded_until - LATE_COMMIT_MARGIN, _EPOCH)
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
        if start > _EPOCH:  # a rebuild has just folded every trace with these prices
            for change in price_changes:
                count, touched = _reprice(change, folded, prices, count, touched)
        PriceChange.objects.filter(id__in=[c.id for c in price_changes]).delete()
        rebuild_hours(touched, keys_config)
        days = {(project_id, _day(hour)) for project_id, hour in touched}
        rebuild_days(days)
        mark.folded_until = max(until, mark.folded_until)
        mark.save(update_fields=["folded_until"])
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
        Rollup.objects.all().delete()
        LabelRollup.objects.all().delete()
        return fold_changes(since=_EPOCH)


def resum_rollups() -> FoldResult:
    """Re-sum every rollup from the facts, without re-reading spans: enough after a cohort
    dimension change (facts keep every cohort key tracestore reads). Costs are in the
    facts: a price change is applied by ``fold_changes`` itself."""
    keys_config = cohort_dimension_keys()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_ID])
            cursor.execute("SELECT DISTINCT project_id, hour FROM dashboard_decisionfact")
            touched = set(cursor.fetchall())
            cursor.execute("DELETE FROM dashboard_rollup")
            cursor.execute("DELETE FROM dashboard_labelrollup")
        rebuild_hours(touched, keys_config)
        days = {(project_id, _day(hour)) for project_id, hour in touched}
        rebuild_days(days)
    return FoldResult(traces=0, hours=len(touched), days=len(days), folded_until=timezone.now())
