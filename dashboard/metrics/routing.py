"""Routing advice: which cohorts of a micro model to send to the fallback model now, and
which could be taken back, with what each change would cost or save per day.

For every micro model, cohort dimension, value and evaluator (``eval-fail-rate`` grouped
by the dimension: n and Wilson 95 % interval):

- **send** when the fail rate's interval lies wholly above ``threshold`` (its lower bound
  above it) and ``n >= min_n``. The cost: the cohort's decisions per day not escalated
  today x the observed cost of one rescue (``fallback-economics`` for the cohort, else
  the micro model's own when the cohort had no priced rescue), with the interval that
  cost's interval gives;
- **take back** when the interval lies wholly below ``threshold`` (upper bound below) and
  the cohort is escalated at all: the saving is its rescues per day x the cost of one.

A cohort listed for several evaluators appears once per evaluator. Where no rescue was
ever priced the cost is None (shown as unknown, never as zero).
"""

from __future__ import annotations

from typing import Any

from . import Filters, InvalidQuery, cohort_dimensions, eval_fail_rate, micro_models
from .economics import fallback_economics

DEFAULT_THRESHOLD = 0.10
DEFAULT_MIN_N = 30


def _pct(value: float) -> str:
    return f"{value * 100:.1f} %"


def _advice(
    action: str,
    key: str,
    row: dict[str, Any],
    units_per_day: float,
    per_rescue: tuple[float | None, float | None, float | None],
) -> dict[str, Any]:
    money, low, high = (None if c is None else units_per_day * c for c in per_rescue)
    cohort = f"{key}={row['group']}"
    rate = (
        f"{row['evaluator']} fail rate {_pct(row['rate'])}"
        f" ({row['low'] * 100:.1f}-{row['high'] * 100:.1f} %, n={row['n']})"
    )
    amount = "cost unknown (no priced rescue)" if money is None else f"${money:.2f}/day"
    if action == "send":
        sign = "" if money is None else "+"
        message = f"send `{cohort}` to the fallback now: {sign}{amount}, {rate}"
    else:
        sign = "" if money is None else "-"
        message = f"`{cohort}` could be taken back from the fallback: {sign}{amount}, {rate}"
    return {
        "dimension": key,
        "value": row["group"],
        "evaluator": row["evaluator"],
        "n": row["n"],
        "fail_rate": row["rate"],
        "low": row["low"],
        "high": row["high"],
        "usd_per_day": money,
        "usd_per_day_low": low,
        "usd_per_day_high": high,
        "message": message,
    }


def _per_rescue(row: dict[str, Any] | None) -> tuple[float | None, float | None, float | None]:
    if row is None:
        return None, None, None
    return row["cost_per_rescue"], row["cost_per_rescue_low"], row["cost_per_rescue_high"]


def routing_advice(
    filters: Filters,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    min_n: int = DEFAULT_MIN_N,
) -> list[dict[str, Any]]:
    """Per micro model (``filters.micro_model``, or every one in range): ``send`` and
    ``take_back`` lists (module docstring)."""
    if not 0 < threshold < 1:
        raise InvalidQuery("threshold: a fail rate between 0 and 1, e.g. 0.1")
    if min_n < 1:
        raise InvalidQuery("min_n: at least 1")
    names = (
        [filters.micro_model]
        if filters.micro_model
        else [row["name"] for row in micro_models(filters) if row["name"]]
    )
    days = (filters.end - filters.start).total_seconds() / 86400
    out = []
    for name in names:
        f = filters.with_(micro_model=name)
        overall = fallback_economics(f).rows
        default = _per_rescue(overall[0] if overall else None)
        send: list[dict[str, Any]] = []
        take_back: list[dict[str, Any]] = []
        for key, _ in cohort_dimensions():
            economics = {row["group"]: row for row in fallback_economics(f, key).rows}
            for row in eval_fail_rate(f, key).rows:
                if row["n"] < min_n or row["rate"] is None:
                    continue
                traffic = economics.get(row["group"])
                own = _per_rescue(traffic)
                per_rescue = own if own[0] is not None else default
                decisions = traffic["decisions"] if traffic else 0
                rescues = traffic["rescues"] if traffic else 0
                if row["low"] > threshold:
                    units = (decisions - rescues) / days
                    send.append(_advice("send", key, row, units, per_rescue))
                elif row["high"] < threshold and rescues:
                    take_back.append(_advice("take_back", key, row, rescues / days, per_rescue))
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
