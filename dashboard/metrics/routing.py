"""Routing advice: which cohorts of a micro model to send to the fallback model now, and
which could be taken back, with what each change would cost or save per day.

For every micro model, cohort dimension and value, the measures are:

- the **accuracy gap** where the fallback's answers are known (``refresh.fallback_labels``)
  on at least ``min_n`` escalated decisions with an expected label: the fallback's
  accuracy less the micro model's on those same decisions, with Newcombe's interval for
  paired proportions (``shadow.newcombe_paired_interval``). It stands in for the label
  check's fail rate (both judge the label); the other evaluators' fail rates still
  count. The gap is measured on escalated decisions only (those the fallback answered),
  usually the harder ones: it says what the fallback buys where it is used;
- the **fail rate** of every other evaluator, and of the label check where no gap is
  known (``eval-fail-rate`` grouped by the dimension: n and Wilson
  95 % interval). An evaluator counts for a cohort when its Kish effective n
  (``effective_n``: what the sampling weights leave of the raw n) is at least ``min_n``
  (default 10: why at ``DEFAULT_MIN_N``).

**send** when any measure's interval lies wholly above ``threshold`` (its lower bound above
it); **take back** only when every measure's interval lies wholly below ``threshold``
(upper bound below), and the cohort is escalated at all.

Each row says which criterion decided it (``criterion``: ``accuracy_gap`` or
``fail_rate``); ``low`` and ``high`` are that criterion's interval. The cost of a send:
the cohort's decisions per day not escalated today x the observed cost of one rescue
(``fallback-economics`` for the cohort, else the micro model's own when the cohort had no
priced rescue), with the interval that cost's interval gives; the saving of a take back:
its rescues per day x the cost of one. A cohort is never both sent and taken back.

A cohort appears once per measure that decided it (the gap, or an evaluator's fail rate).

Cost: the figures are read once per cohort dimension for every micro model at once
(grouped by micro model and cohort value), not once per micro model: over whole hours
3 + 4 x dimensions queries (the dimension look-ups included), plus the partial hours at a
ragged window's ends counted from the results, one query per partial hour and dimension
for every micro model (grouped by micro model too): 27 for 4 dimensions. The answers
are those of ``eval-fail-rate`` and ``fallback-economics`` for each micro model.

Where no rescue was ever priced the cost is None (shown as unknown, never as zero).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db import connection

from evaluators.contracts import LABEL_CHECK
from evaluators.queries import evaluation_counts

from . import Filters, InvalidQuery, _where, cohort_dimensions, micro_models
from .economics import _SQL, economics_from_sums
from .evaluations import _add, add_count, whole_hour_counts
from .shadow import newcombe_paired_interval
from .weighting import weighted_rate
from .windows import partial_hours

DEFAULT_THRESHOLD = 0.10
# Compared with the Kish effective n, not the raw n. Sampled evaluations weigh 1 / their
# sampling probability, and verdicts always taken (on fallback or error) weigh 1, so a
# cohort's effective n is often a third of its raw n: 30, the small-n mark of the heatmap,
# would leave most sampled cohorts without advice however clear their interval. The
# interval (Wilson at the linearisation n*, weighting.py) already widens with a small n;
# the floor only keeps out the few verdicts whose estimated variance cannot be trusted.
DEFAULT_MIN_N = 10


# (both right, only the micro model right, only the fallback right, neither right)
_PAIRED_SQL = (
    "sum(paired_both_right), sum(paired_micro_right), sum(paired_fallback_right),"
    " sum(paired_neither_right)"
)


def _pct(value: float) -> str:
    return f"{value * 100:.1f} %"


def _advice(
    action: str,
    key: str,
    group: Any,
    measure: dict[str, Any],
    units_per_day: float,
    per_rescue: tuple[float | None, float | None, float | None],
) -> dict[str, Any]:
    money, low, high = (None if c is None else units_per_day * c for c in per_rescue)
    cohort = f"{key}={group}"
    if measure["criterion"] == GAP:
        said = (
            f"fallback accuracy {_pct(measure['fallback_accuracy'])} vs"
            f" {_pct(measure['micro_model_accuracy'])}, gap {_points(measure['accuracy_gap'])}"
            f" ({_points(measure['low'])} to {_points(measure['high'])},"
            f" n={measure['n']} escalated decisions)"
        )
    else:
        # The effective n is said only where the weights make it differ from the raw n.
        effective = (
            f", effective n={measure['effective_n']:.1f}"
            if abs(measure["effective_n"] - measure["n"]) >= 0.05
            else ""
        )
        said = (
            f"{measure['evaluator']} fail rate {_pct(measure['fail_rate'])}"
            f" ({measure['low'] * 100:.1f}-{measure['high'] * 100:.1f} %,"
            f" n={measure['n']}{effective})"
        )
    amount = "cost unknown (no priced rescue)" if money is None else f"${money:.2f}/day"
    if action == "send":
        sign = "" if money is None else "+"
        message = f"send `{cohort}` to the fallback now: {sign}{amount}, {said}"
    else:
        sign = "" if money is None else "-"
        message = f"`{cohort}` could be taken back from the fallback: {sign}{amount}, {said}"
    return {
        "dimension": key,
        "value": group,
        **measure,
        "usd_per_day": money,
        "usd_per_day_low": low,
        "usd_per_day_high": high,
        "message": message,
    }


def _points(value: float) -> str:
    return f"{value * 100:+.1f} points"


FAIL_RATE = "fail_rate"
GAP = "accuracy_gap"


def _fail_rate_measure(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "criterion": FAIL_RATE,
        "evaluator": row["evaluator"],
        "n": row["n"],
        "effective_n": row["effective_n"],
        "fail_rate": row["rate"],
        "accuracy_gap": None,
        "micro_model_accuracy": None,
        "fallback_accuracy": None,
        "low": row["low"],
        "high": row["high"],
    }


def _gap_measure(paired: tuple[int, int, int, int]) -> dict[str, Any] | None:
    """The fallback's accuracy less the micro model's on the same escalated decisions,
    with Newcombe's interval for paired proportions; None without a pair."""
    both, micro_only, fallback_only, neither = paired
    n = sum(paired)
    interval = newcombe_paired_interval(both, fallback_only, micro_only, neither)
    if interval is None:
        return None
    return {
        "criterion": GAP,
        "evaluator": None,
        "n": n,
        "effective_n": float(n),
        "fail_rate": None,
        "accuracy_gap": (fallback_only - micro_only) / n,
        "micro_model_accuracy": (both + micro_only) / n,
        "fallback_accuracy": (both + fallback_only) / n,
        "low": interval[0],
        "high": interval[1],
    }


def _per_rescue(row: dict[str, Any] | None) -> tuple[float | None, float | None, float | None]:
    if row is None:
        return None, None, None
    return row["cost_per_rescue"], row["cost_per_rescue_low"], row["cost_per_rescue_high"]


def _economics(
    filters: Filters, key: str | None, days: float
) -> dict[str, dict[Any, dict[str, Any]]]:
    """micro model -> group -> fallback-economics row, in one query: grouped by micro
    model (``key`` None: group None) or by micro model and the cohort value of ``key``."""
    where, params, group_sql = _where(filters, key or "micro_model", None, histograms=False)
    group = "NULL::text" if key is None else group_sql
    sql = f"SELECT micro_model, {group}, {_SQL}, {_PAIRED_SQL} {where} GROUP BY 1, 2"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        fetched = cursor.fetchall()
    out: dict[str, dict[Any, dict[str, Any]]] = defaultdict(dict)
    for name, grp, *sums in fetched:
        out[name][grp] = economics_from_sums(sums[:7], days) | {
            "paired": tuple(int(v or 0) for v in sums[7:11])
        }
    return out


def _fail_rates(filters: Filters, key: str, names: list[str]) -> dict[str, list[dict[str, Any]]]:
    """micro model -> eval-fail-rate rows grouped by ``key`` (evaluator, group, n, rate,
    low, high, effective_n), the whole hours of every micro model in one query."""
    counts: dict[str, dict[tuple[str, Any], list]] = defaultdict(
        lambda: defaultdict(lambda: [0, 0, 0.0, 0.0, 0.0, 0.0])
    )
    for name, evaluator, grp, *sums in whole_hour_counts(filters, key, per_micro_model=True):
        _add(counts[name][(evaluator, grp)], *sums)
    wanted = set(names)
    for edge_start, edge_end in partial_hours(filters.start, filters.end):
        for c in evaluation_counts(
            list(filters.project_ids),
            start=edge_start,
            end=edge_end,
            micro_model=filters.micro_model,
            group_by=key,
            cohort=filters.cohort,
            per_micro_model=True,
        ):
            if c.micro_model in wanted:
                add_count(counts[c.micro_model][(c.evaluator, c.group)], c)
    out: dict[str, list[dict[str, Any]]] = {}
    for name, by_group in counts.items():
        rows = []
        for (evaluator, grp), (failed, evaluated, *sums) in sorted(
            by_group.items(), key=lambda item: (item[0][0], str(item[0][1]))
        ):
            weighted = weighted_rate(failed, evaluated, *sums)
            rows.append(
                {
                    "evaluator": evaluator,
                    "group": grp,
                    "n": evaluated,
                    "rate": weighted.rate,
                    "low": weighted.low,
                    "high": weighted.high,
                    "effective_n": round(weighted.effective_n, 2),
                }
            )
        out[name] = rows
    return out


def routing_advice(
    filters: Filters,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    min_n: int = DEFAULT_MIN_N,
) -> list[dict[str, Any]]:
    """Per micro model (``filters.micro_model``, or every one in range): ``send`` and
    ``take_back`` lists (module docstring)."""
    if not 0 < threshold < 1:
        raise InvalidQuery("threshold: a fail rate (or accuracy gap) between 0 and 1, e.g. 0.1")
    if min_n < 1:
        raise InvalidQuery("min_n: at least 1")
    # The evaluation rollup has no route or model column (as in eval-fail-rate).
    for name in ("route", "model"):
        if getattr(filters, name) is not None:
            raise InvalidQuery(
                f"{name}: routing advice is filtered by micro model and cohort, not {name}"
            )
    names = (
        [filters.micro_model]
        if filters.micro_model
        else [row["name"] for row in micro_models(filters) if row["name"]]
    )
    days = (filters.end - filters.start).total_seconds() / 86400
    # A cohort filter narrows the advice to that cohort: its own dimension only (the
    # rollups keep one cohort dimension per row).
    dimensions = (
        [key for key, _ in cohort_dimensions()] if filters.cohort is None else [filters.cohort[0]]
    )
    overall = _economics(filters, None, days)
    by_dimension = [
        (key, _economics(filters, key, days), _fail_rates(filters, key, names))
        for key in dimensions
    ]
    out = []
    for name in names:
        own_overall = overall.get(name, {}).get(None)
        default = _per_rescue(own_overall)
        send: list[dict[str, Any]] = []
        take_back: list[dict[str, Any]] = []
        for key, economics_by_model, rates_by_model in by_dimension:
            economics = economics_by_model.get(name, {})
            cohorts: dict[Any, list[dict[str, Any]]] = defaultdict(list)
            for row in rates_by_model.get(name, []):
                if row["effective_n"] < min_n or row["rate"] is None:
                    continue
                cohorts[row["group"]].append(_fail_rate_measure(row))
            # Where the fallback's answers are known on enough escalated decisions, the
            # accuracy gap stands in for the label check's fail rate; the evaluators that
            # judge something else (task completion, groundedness) still count.
            for grp, figures in economics.items():
                gap = _gap_measure(figures["paired"])
                if gap is not None and gap["n"] >= min_n:
                    others = [m for m in cohorts[grp] if m["evaluator"] != LABEL_CHECK]
                    cohorts[grp] = [gap, *others]
            for grp, measures in cohorts.items():
                traffic = economics.get(grp)
                own = _per_rescue(traffic)
                per_rescue = own if own[0] is not None else default
                decisions = traffic["decisions"] if traffic else 0
                rescues = traffic["rescues"] if traffic else 0
                failing = [m for m in measures if m["low"] > threshold]
                if failing:
                    units = (decisions - rescues) / days
                    send += [_advice("send", key, grp, m, units, per_rescue) for m in failing]
                elif rescues and all(m["high"] < threshold for m in measures):
                    take_back += [
                        _advice("take_back", key, grp, m, rescues / days, per_rescue)
                        for m in measures
                    ]
        send.sort(key=lambda a: -a["low"])
        take_back.sort(key=lambda a: a["high"])
        out.append(
            {
                "micro_model": name,
                "threshold": threshold,
                "min_n": min_n,
                "send": send,
                "take_back": take_back,
            }
        )
    return out
