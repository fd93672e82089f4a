"""Two versions of one micro model side by side: the release gate (``microlens gate``,
``/api/v1/micro-models/<name>/compare/``).

A side is one value of a cohort dimension (``prompt.version=v2``: any configured
dimension names a version). For each side: per label precision and recall (decisions with
a known expected label, from the label rollup) and each evaluator's fail rate (from the
evaluation rollup), each with n and a Wilson 95 % interval; for each value the difference
candidate - baseline with Newcombe's hybrid score interval (method 10 of Newcombe 1998,
built from the two Wilson intervals; independent proportions).

A value regresses when its difference's interval lies wholly beyond the allowed drop:
precision or recall whose interval's upper bound is below ``-max_drop``, a fail rate whose
lower bound is above ``+max_drop``. The verdict is ``fail`` when any value regresses,
``insufficient`` when no value has ``min_n`` on both sides (nothing can be said), else
``pass``. A value below ``min_n`` on a side is listed (``small_n``) but does not pass or
fail the gate alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from . import Filters, InvalidQuery, cohort_dimensions, eval_fail_rate, label_quality
from . import wilson_interval as wilson

DEFAULT_MIN_N = 30


@dataclass(frozen=True, slots=True)
class Side:
    key: str
    value: str

    @classmethod
    def parse(cls, raw: str, name: str) -> Side:
        key, sep, value = raw.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InvalidQuery(f"{name}: key=value, e.g. prompt.version=v2 (got {raw!r})")
        return cls(key.strip(), value.strip())

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


def newcombe_interval(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float] | None:
    """95 % interval of p1 - p2 (p1 = k1/n1, p2 = k2/n2, independent samples): Newcombe's
    hybrid score interval from the two Wilson intervals. None when a side is empty."""
    a, b = wilson(k1, n1), wilson(k2, n2)
    if a is None or b is None:
        return None
    p1, p2 = k1 / n1, k2 / n2
    d = p1 - p2
    low = d - math.sqrt((p1 - a[0]) ** 2 + (b[1] - p2) ** 2)
    high = d + math.sqrt((a[1] - p1) ** 2 + (p2 - b[0]) ** 2)
    return max(-1.0, low), min(1.0, high)


def _proportion(k: int, n: int) -> dict[str, Any]:
    interval = wilson(k, n)
    return {
        "k": k,
        "n": n,
        "value": k / n if n else None,
        "low": interval[0] if interval else None,
        "high": interval[1] if interval else None,
    }


def _compare(
    name: str,
    base: tuple[int, int],
    cand: tuple[int, int],
    *,
    higher_is_better: bool,
    max_drop: float,
    min_n: int,
) -> dict[str, Any]:
    b, c = _proportion(*base), _proportion(*cand)
    interval = newcombe_interval(cand[0], cand[1], base[0], base[1])
    small = base[1] < min_n or cand[1] < min_n
    status = "too_little_data" if small else "ok"
    if interval is not None:
        # A drop is a lower precision or recall, or a higher fail rate.
        worse = interval[1] < -max_drop if higher_is_better else interval[0] > max_drop
        if worse:
            status = "regression"
    return {
        "metric": name,
        "baseline": b,
        "candidate": c,
        "difference": (c["value"] - b["value"])
        if b["value"] is not None and c["value"] is not None
        else None,
        "low": interval[0] if interval else None,
        "high": interval[1] if interval else None,
        "higher_is_better": higher_is_better,
        "small_n": small,
        "status": status,
    }


def _labels(filters: Filters) -> dict[str, dict[str, int]]:
    rows = label_quality(filters).rows
    if not rows:
        return {}
    return {
        item["label"]: {
            "tp": item["true_positives"],
            "predicted": item["predicted"],
            "n": item["n"],
        }
        for item in rows[0]["labels"]
    }


def _fail_rates(filters: Filters) -> dict[str, tuple[int, int]]:
    return {
        row["evaluator"]: (row["failed"], row["evaluated"]) for row in eval_fail_rate(filters).rows
    }


def compare_versions(
    filters: Filters,
    micro_model: str,
    baseline: Side,
    candidate: Side,
    *,
    max_drop: float = 0.02,
    min_n: int = DEFAULT_MIN_N,
) -> dict[str, Any]:
    """Per label precision and recall and each evaluator's fail rate for both sides, the
    differences with their intervals, and the gate's verdict (module docstring)."""
    keys = {key for key, _ in cohort_dimensions()}
    for side in (baseline, candidate):
        if side.key not in keys:
            raise InvalidQuery(
                f"{side.key!r} is not a cohort dimension: one of {sorted(keys)} (add it in"
                " the admin, Cohort dimensions, then rebuild the metrics)"
            )
    if baseline.key != candidate.key:
        raise InvalidQuery("baseline and candidate must name values of the same key")
    if not 0 <= max_drop < 1:
        raise InvalidQuery("max_drop: a fraction in [0, 1), e.g. 0.02 for 2 pp")
    if min_n < 1:
        raise InvalidQuery("min_n: at least 1")
    sides = {
        name: filters.with_(micro_model=micro_model, cohort=(side.key, side.value))
        for name, side in (("baseline", baseline), ("candidate", candidate))
    }
    labels = {name: _labels(f) for name, f in sides.items()}
    fails = {name: _fail_rates(f) for name, f in sides.items()}
    rows: list[dict[str, Any]] = []
    empty = {"tp": 0, "predicted": 0, "n": 0}
    for label in sorted(set(labels["baseline"]) | set(labels["candidate"])):
        b = labels["baseline"].get(label, empty)
        c = labels["candidate"].get(label, empty)
        for metric, total in (("precision", "predicted"), ("recall", "n")):
            row = _compare(
                metric,
                (b["tp"], b[total]),
                (c["tp"], c[total]),
                higher_is_better=True,
                max_drop=max_drop,
                min_n=min_n,
            )
            rows.append({"kind": "label", "name": label, **row})
    for evaluator in sorted(set(fails["baseline"]) | set(fails["candidate"])):
        row = _compare(
            "fail_rate",
            fails["baseline"].get(evaluator, (0, 0)),
            fails["candidate"].get(evaluator, (0, 0)),
            higher_is_better=False,
            max_drop=max_drop,
            min_n=min_n,
        )
        rows.append({"kind": "evaluator", "name": evaluator, **row})
    if any(row["status"] == "regression" for row in rows):
        verdict = "fail"
    elif not any(row["status"] == "ok" for row in rows):
        verdict = "insufficient"
    else:
        verdict = "pass"
    return {
        "micro_model": micro_model,
        "baseline": str(baseline),
        "candidate": str(candidate),
        "start": filters.start,
        "end": filters.end,
        "max_drop": max_drop,
        "min_n": min_n,
        "verdict": verdict,
        "regressions": sum(row["status"] == "regression" for row in rows),
        "rows": rows,
    }
