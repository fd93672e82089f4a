"""Shadow vs live agreement: how a mirrored (shadow) candidate's labels compare with the
live micro model's on the same inputs, per cohort, with intervals.

Read from ``dashboard_shadowpair`` (one row per shadow decision paired with its live one,
written by the fold: ``refresh.shadow_rows``) through its (project, micro model,
start_time) index; the window counts the pairs whose trace started inside it, as every
other metric does.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from django.db import connection

from . import WILSON_Z, Filters, InvalidQuery, wilson_interval

ALL = ""  # the cohort value of the row over every cohort


def newcombe_paired_interval(
    both: int, first_only: int, second_only: int, neither: int, z: float = WILSON_Z
) -> tuple[float, float] | None:
    """Newcombe's interval (1998, method 10: Wilson score intervals of each proportion
    combined with the correlation of the pairs) for p1 - p2 of paired proportions, where
    ``first_only`` counts pairs with only the first a success. None when there is no pair."""
    n = both + first_only + second_only + neither
    if n == 0:
        return None
    p1 = (both + first_only) / n
    p2 = (both + second_only) / n
    l1, u1 = wilson_interval(both + first_only, n, z) or (0.0, 1.0)
    l2, u2 = wilson_interval(both + second_only, n, z) or (0.0, 1.0)
    margins = (
        (both + first_only)
        * (second_only + neither)
        * (both + second_only)
        * (first_only + neither)
    )
    phi = 0.0 if margins == 0 else (both * neither - first_only * second_only) / math.sqrt(margins)
    d = p1 - p2
    low = d - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    high = d + math.sqrt(
        max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2)
    )
    return max(-1.0, low), min(1.0, high)


def _proportion(successes: int, n: int) -> dict[str, Any]:
    interval = wilson_interval(successes, n)
    return {
        "n": n,
        "successes": successes,
        "rate": successes / n if n else None,
        "low": interval[0] if interval else None,
        "high": interval[1] if interval else None,
    }


def shadow_agreement(filters: Filters, dimension: str | None = None) -> list[dict[str, Any]]:
    """One row per (shadow model, cohort value) of the live micro model ``filters.micro_model``
    (``cohort`` ``""``: every pair), each with n, the agreement rate and its Wilson
    interval, the live x shadow label matrix, and over the pairs with a known expected
    label each side's accuracy and the difference shadow - live with Newcombe's interval."""
    if not filters.micro_model:
        raise InvalidQuery("shadow agreement needs a micro model.")
    if dimension and filters.cohort and filters.cohort[0] != dimension:
        raise InvalidQuery(
            "A cohort filter on one dimension and a split by another cannot be combined."
        )
    conditions = ["project_id = ANY(%s)", "micro_model = %s", "start_time >= %s", "start_time < %s"]
    params: list[Any] = [
        list(filters.project_ids),
        filters.micro_model,
        filters.start,
        filters.end,
    ]
    if filters.cohort is not None:
        conditions.append("cohort ->> %s = %s")
        params += list(filters.cohort)
    cohort_sql = "coalesce(cohort ->> %s, '')" if dimension else "''"
    sql = (
        f"SELECT shadow_model, {cohort_sql}, live_label, shadow_label, expected_label, count(*)"  # noqa: S608 (constant SQL; values are parameters)
        f" FROM dashboard_shadowpair WHERE {' AND '.join(conditions)}"
        " GROUP BY 1, 2, 3, 4, 5"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, ([dimension] if dimension else []) + params)
        counted = cursor.fetchall()
    # (shadow model, cohort) -> {(live, shadow, expected): n}; the all-cohort row too.
    cells: dict[tuple[str, str], dict[tuple[str, str, str], int]] = defaultdict(
        lambda: defaultdict(int)
    )
    for shadow_model, cohort, live, shadow, expected, n in counted:
        cells[(shadow_model, ALL)][(live, shadow, expected)] += n
        if dimension and cohort:
            cells[(shadow_model, cohort)][(live, shadow, expected)] += n
    rows = []
    for (shadow_model, cohort), counts in sorted(cells.items()):
        rows.append(_row(shadow_model, cohort, counts))
    return rows


def _row(shadow_model: str, cohort: str, counts: dict[tuple[str, str, str], int]) -> dict:
    n = sum(counts.values())
    agree = sum(c for (live, shadow, _), c in counts.items() if live == shadow)
    labels = sorted({k[0] for k in counts} | {k[1] for k in counts})
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for (live, shadow, _), c in counts.items():
        matrix[index[live]][index[shadow]] += c
    # Pairs with an expected label: (live right, shadow right) in four cells.
    both = shadow_only = live_only = neither = 0
    for (live, shadow, expected), c in counts.items():
        if not expected:
            continue
        if live == expected and shadow == expected:
            both += c
        elif shadow == expected:
            shadow_only += c
        elif live == expected:
            live_only += c
        else:
            neither += c
    labelled = both + shadow_only + live_only + neither
    difference = None
    interval = newcombe_paired_interval(both, shadow_only, live_only, neither)
    if interval is not None:
        difference = {
            "n": labelled,
            "value": (shadow_only - live_only) / labelled,
            "low": interval[0],
            "high": interval[1],
            "shadow_only_right": shadow_only,
            "live_only_right": live_only,
        }
    return {
        "shadow_model": shadow_model,
        "cohort": cohort,
        "n": n,
        "agreement": _proportion(agree, n),
        "matrix": {"labels": labels, "live_by_shadow": matrix},
        "with_expected_label": labelled,
        "live_accuracy": _proportion(both + live_only, labelled) if labelled else None,
        "shadow_accuracy": _proportion(both + shadow_only, labelled) if labelled else None,
        "difference": difference,
    }
