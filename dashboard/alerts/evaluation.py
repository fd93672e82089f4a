"""A rule's value, n and 95 % interval, read through the metrics module (never a second
definition of a metric), and the pure decision of what the state machine does next."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .. import metrics
from .models import MAX_WINDOW_SECONDS, MIN_WINDOW_SECONDS

# Rule metric -> (metrics module name, how a value is read from a row).
RATE_METRICS = ("fallback-rate", "retry-rate", "cache-hit-rate", "error-rate")
LABEL_METRICS = {"label-recall": "recall", "label-precision": "precision", "label-f1": "f1"}
LATENCY_METRICS = {"latency-p50": "p50_ms", "latency-p90": "p90_ms", "latency-p99": "p99_ms"}
COST_METRICS = {"cost-per-trace-mean": "mean_usd", "cost-per-trace-p90": "p90_usd"}
# Metrics whose value is a proportion with a Wilson interval (statistical mode needs one).
WITH_INTERVAL = {*RATE_METRICS, "route-share", "eval-fail-rate", "label-recall", "label-precision"}
COMPARE_OFFSETS = {"day": timedelta(days=1), "week": timedelta(days=7)}
# An eval-fail-rate rule's evaluator filter that watches every evaluator (its value is the
# worst evaluator's fail rate, so it fires when any one of them crosses the threshold).
ANY_EVALUATOR = "*"


@dataclass(frozen=True, slots=True)
class Reading:
    """One rule's value for one split value ('' when the rule is not split)."""

    split_value: str
    value: float | None
    n: int
    low: float | None = None
    high: float | None = None
    baseline: float | None = None  # the earlier window's value of a relative-change rule
    evaluator: str = ""  # an any-evaluator rule: the evaluator the value is of


def source_metric(metric: str) -> str:
    if metric in RATE_METRICS or metric in ("route-share", "eval-fail-rate"):
        return metric
    if metric in LABEL_METRICS:
        return "label-quality"
    if metric in LATENCY_METRICS:
        return "latency"
    if metric in COST_METRICS:
        return "cost-per-trace"
    raise metrics.InvalidQuery(f"unknown alert metric {metric!r}")


def rule_problems(rule: Any) -> dict[str, str]:
    """Field -> message for a rule the evaluation cannot answer (empty when it can)."""
    problems: dict[str, str] = {}
    metric = rule.metric
    dimensions = {key for key, _ in metrics.cohort_dimensions()}
    if metric == "route-share" and not rule.route:
        problems["route"] = "route share needs the route whose share is watched"
    if metric == "eval-fail-rate":
        if not rule.evaluator:
            problems["evaluator"] = (
                "eval fail rate needs an evaluator (e.g. label_check), or * for any evaluator"
            )
        if rule.route:
            problems["route"] = "eval fail rate is filtered by micro model and cohort, not route"
    elif rule.evaluator:
        problems["evaluator"] = "only eval fail rate is filtered by evaluator"
    if metric in LABEL_METRICS and not rule.label:
        problems["label"] = "label recall / precision / F1 need the label"
    if metric not in LABEL_METRICS and rule.label:
        problems["label"] = "only label recall / precision / F1 are filtered by label"
    if metric in LATENCY_METRICS and not rule.micro_model and not rule.split_by:
        problems["micro_model"] = "a latency percentile is per micro model: name one"
    if bool(rule.cohort_key) != bool(rule.cohort_value):
        problems["cohort_value"] = "give both the cohort dimension and its value, or neither"
    if rule.cohort_key and rule.cohort_key not in dimensions:
        problems["cohort_key"] = f"unknown cohort dimension; one of {sorted(dimensions)}"
    if rule.split_by:
        if rule.split_by not in dimensions:
            problems["split_by"] = f"unknown cohort dimension; one of {sorted(dimensions)}"
        elif rule.cohort_key and rule.cohort_key != rule.split_by:
            problems["split_by"] = (
                "split by the same cohort dimension as the cohort filter (the rollups keep"
                " one cohort dimension per row)"
            )
    if rule.statistical and metric not in WITH_INTERVAL:
        problems["statistical"] = (
            "statistical mode needs a proportion with a 95 % interval (rates, shares,"
            " eval fail rate, label recall or precision)"
        )
    if rule.compare_to and rule.compare_to not in COMPARE_OFFSETS:
        problems["compare_to"] = "compare to the same window a day or a week earlier"
    if not MIN_WINDOW_SECONDS <= (rule.window_seconds or 0) <= MAX_WINDOW_SECONDS:
        problems["window_seconds"] = "the window is 5 minutes (300) to 7 days (604800)"
    return problems


def _filters(rule: Any, start: datetime, end: datetime) -> metrics.Filters:
    cohort = (rule.cohort_key, rule.cohort_value) if rule.cohort_key else None
    return metrics.Filters(
        project_ids=(rule.project_id,),
        start=start,
        end=end,
        micro_model=rule.micro_model or None,
        # Route share is a share among routes: its filter picks the row, not the data.
        route=(rule.route or None) if rule.metric != "route-share" else None,
        cohort=cohort,
    )


def _group_by(rule: Any) -> str | None:
    if rule.split_by:
        return rule.split_by
    if rule.metric in LATENCY_METRICS:
        return "micro_model"  # one histogram per micro model (see rule_problems)
    return None


def _key(group: Any) -> str:
    return "" if group is None else str(group)


def _worse(rule: Any, kept: Reading | None, new: Reading) -> Reading:
    """Of two evaluators' readings, the one further beyond the threshold's side (the
    bound statistical mode compares): a reading with n below the minimum counts only
    while no evaluator has enough."""
    if kept is None:
        return new
    enough = max(rule.min_n, 1)
    if (kept.n >= enough) != (new.n >= enough):
        return kept if kept.n >= enough else new
    if kept.n < enough:
        return kept if kept.n >= new.n else new
    above = rule.comparator == "above"

    def bound(r: Reading) -> float:
        x = (r.low if above else r.high) if rule.statistical else r.value
        if x is None:
            return float("-inf") if above else float("inf")
        return x

    if above:
        return new if bound(new) > bound(kept) else kept
    return new if bound(new) < bound(kept) else kept


def _read(rule: Any, start: datetime, end: datetime) -> dict[str, Reading]:
    """split value -> Reading, straight from the metrics module's rows."""
    split = bool(rule.split_by)
    result = metrics.compute(
        source_metric(rule.metric), _filters(rule, start, end), _group_by(rule)
    )
    out: dict[str, Reading] = {}
    metric = rule.metric
    for row in result.rows:
        group = _key(row.get("group")) if split else ""
        if metric in RATE_METRICS:
            out[group] = Reading(group, row["rate"], row["n"], row["low"], row["high"])
        elif metric == "route-share":
            if row["route"] != rule.route:
                continue
            interval = metrics.wilson_interval(row["count"], row["n"])
            out[group] = Reading(group, row["share"], row["n"], *(interval or (None, None)))
        elif metric == "eval-fail-rate":
            if rule.evaluator == ANY_EVALUATOR:
                reading = Reading(
                    group, row["rate"], row["n"], row["low"], row["high"], None, row["evaluator"]
                )
                out[group] = _worse(rule, out.get(group), reading)
                continue
            if row["evaluator"] != rule.evaluator:
                continue
            out[group] = Reading(group, row["rate"], row["n"], row["low"], row["high"])
        elif metric in LABEL_METRICS:
            for item in row["labels"]:
                if item["label"] != rule.label:
                    continue
                field = LABEL_METRICS[metric]
                if field == "recall":
                    n, k = item["n"], item["true_positives"]
                elif field == "precision":
                    n, k = item["predicted"], item["true_positives"]
                else:
                    n, k = item["n"], None
                interval = metrics.wilson_interval(k, n) if k is not None else None
                out[group] = Reading(group, item[field], n, *(interval or (None, None)))
        elif metric in LATENCY_METRICS:
            if not split and row.get("group") != rule.micro_model:
                continue
            out[group] = Reading(group, row[LATENCY_METRICS[metric]], row["n"])
        else:
            out[group] = Reading(group, row[COST_METRICS[metric]], row["n"])
    # Unsplit, no data: a reading with n 0 (neither fires nor resolves).
    if not split and "" not in out:
        out[""] = Reading("", None, 0)
    return out


def read_rule(rule: Any, now: datetime) -> list[Reading]:
    """The rule's readings over [now - window, now), one per split value; a relative-change
    rule's value is (current - earlier) / earlier with the interval scaled alike."""
    window = timedelta(seconds=rule.window_seconds)
    current = _read(rule, now - window, now)
    if not rule.compare_to:
        return sorted(current.values(), key=lambda r: r.split_value)
    offset = COMPARE_OFFSETS[rule.compare_to]
    earlier = _read(rule, now - window - offset, now - offset)
    readings = []
    for split_value, cur in sorted(current.items()):
        base = earlier.get(split_value)
        if base is None or not base.value or cur.value is None:
            readings.append(Reading(split_value, None, cur.n))
            continue
        b = base.value

        def change(x: float | None, b: float = b) -> float | None:
            return None if x is None else (x - b) / b

        readings.append(
            Reading(split_value, change(cur.value), cur.n, change(cur.low), change(cur.high), b)
        )
    return readings


def breached(rule: Any, reading: Reading) -> bool | None:
    """Whether the reading is beyond the threshold; None when it cannot say (n below the
    minimum, no value, or no interval in statistical mode)."""
    if reading.value is None or reading.n < max(rule.min_n, 1):
        return None
    above = rule.comparator == "above"
    threshold = rule.threshold
    if rule.statistical:
        bound = reading.low if above else reading.high
        if bound is None:
            return None
        return bound > threshold if above else bound < threshold
    return reading.value > threshold if above else reading.value < threshold


@dataclass(frozen=True, slots=True)
class Step:
    state: str
    streak: int
    transition: str | None  # "fired" | "resolved" | None


def next_state(rule: Any, state: str, streak: int, reading: Reading) -> Step:
    """ok/pending count breaching evaluations up to ``consecutive`` and fire; firing stays
    until the value is back inside the threshold by the hysteresis margin. An unknown
    reading (small n) changes nothing."""
    if state == "firing":
        # Fired on the interval (statistical mode) or the value; resolves on the value once
        # it is back inside the threshold by the hysteresis margin.
        if reading.value is None or reading.n < max(rule.min_n, 1):
            return Step("firing", streak, None)
        if rule.comparator == "above":
            inside = reading.value <= rule.threshold - rule.hysteresis
        else:
            inside = reading.value >= rule.threshold + rule.hysteresis
        return Step("ok", 0, "resolved") if inside else Step("firing", streak, None)
    now_breached = breached(rule, reading)
    if now_breached is None:
        return Step(state, streak, None)
    if not now_breached:
        return Step("ok", 0, None)
    streak += 1
    if streak >= rule.consecutive:
        return Step("firing", streak, "fired")
    return Step("pending", streak, None)


@dataclass(frozen=True, slots=True)
class PreviewRow:
    reading: Reading
    breached: bool | None


def preview_rule(rule: Any, now: datetime) -> list[PreviewRow]:
    """What the rule reads right now (it need not be saved): value, n, interval and whether
    it is beyond the threshold, per split value."""
    return [PreviewRow(reading, breached(rule, reading)) for reading in read_rule(rule, now)]


TRAFFIC_DAYS = 7
MIN_SUGGESTED_N = 10


@dataclass(frozen=True, slots=True)
class MinNSuggestion:
    typical_n: float  # the n a window of the rule's length held on average (per split value)
    min_n: int | None  # None: too little traffic to suggest one


def suggest_min_n(rule: Any, now: datetime) -> MinNSuggestion:
    """A minimum n from current traffic: a quarter of what a window of the rule's length
    held on average over the last 7 days (per split value), at least 10. A quarter lets a
    normal window be evaluated while a near-empty one (night, an outage of the sender)
    neither fires nor resolves on a handful of decisions."""
    readings = _read(rule, now - timedelta(days=TRAFFIC_DAYS), now)
    counted = [r.n for r in readings.values() if r.n]
    if not counted:
        return MinNSuggestion(0.0, None)
    per_window = sum(counted) / len(counted) * rule.window_seconds / (TRAFFIC_DAYS * 86400)
    if per_window / 4 < MIN_SUGGESTED_N:
        return MinNSuggestion(per_window, None)
    return MinNSuggestion(per_window, int(per_window // 4))
