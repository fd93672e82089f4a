"""Shadow vs live agreement: how a mirrored (shadow) candidate's labels compare with the
live micro model's on the same inputs, per cohort, with intervals.

The window counts the pairs whose trace started inside it, as every other metric does:
its whole UTC days and hours from ``dashboard_shadowpairrollup`` (pairs counted per hour
and day by the fold, ``refresh.SHADOW_ROLLUP``), its partial hours at the ends from
``dashboard_shadowpair`` (one row per shadow decision paired with its live one,
``refresh.shadow_rows``) through its (project, micro model, start_time) index.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from django.db import connection

from . import WILSON_Z, Filters, InvalidQuery, wilson_interval
from .refresh import PAIR_COHORTS
from .sql import _bucket_condition, cohort_dimensions
from .windows import partial_hours, whole_hours

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
    # The rows read: the filtered value's, else all cohorts' and the split's.
    key, dim_value = filters.cohort if filters.cohort else (dimension, None)
    dim_keys = [key] if key and filters.cohort else ["", *([dimension] if dimension else [])]
    counted = _counts(filters, key, dim_keys, dim_value)
    # (shadow model, cohort) -> {(live, shadow, expected): n}; the all-cohort row too.
    cells: dict[tuple[str, str], dict[tuple[str, str, str], int]] = defaultdict(
        lambda: defaultdict(int)
    )
    for shadow_model, dim_key, cohort, live, shadow, expected, n in counted:
        if filters.cohort or dim_key == "":
            cells[(shadow_model, ALL)][(live, shadow, expected)] += n
        if dimension and dim_key == dimension and cohort:
            cells[(shadow_model, cohort)][(live, shadow, expected)] += n
    rows = []
    for (shadow_model, cohort), counts in sorted(cells.items()):
        rows.append(_row(shadow_model, cohort, counts))
    return rows


def _counts(
    filters: Filters, key: str | None, dim_keys: list[str], dim_value: str | None
) -> list[tuple[str, str, str, str, str, str, int]]:
    """(shadow model, dim_key, dim_value, live, shadow, expected label, n) over the
    window: whole days and hours from the rollup, partial hours from the pairs. A key
    that is no configured cohort dimension has no rollup rows: its window is read from
    the pairs whole."""
    if not filters.project_ids:
        return []
    hours = whole_hours(filters.start, filters.end)
    if key and key not in {k for k, _ in cohort_dimensions()}:
        hours, edges = None, [(filters.start, filters.end)]
    else:
        edges = partial_hours(filters.start, filters.end)
    value_sql = " AND dim_value = %s" if dim_value is not None else ""
    pair_value_sql = " AND d.dim_value = %s" if dim_value is not None else ""
    value_params = [dim_value] if dim_value is not None else []
    projects = list(filters.project_ids)
    branches, params = [], []
    if hours:
        bucket_sql, bucket_params = _bucket_condition(*hours, None)
        branches.append(
            "SELECT shadow_model, dim_key, dim_value, live_label, shadow_label,"  # noqa: S608 (constant SQL; values are parameters)
            " expected_label, n FROM dashboard_shadowpairrollup"
            " WHERE project_id = ANY(%s::bigint[]) AND micro_model = %s"
            f" AND dim_key = ANY(%s::text[]){value_sql} AND {bucket_sql}"
        )
        params += [projects, filters.micro_model, dim_keys, *value_params, *bucket_params]
    if edges:
        spans = " OR ".join("(p.start_time >= %s AND p.start_time < %s)" for _ in edges)
        branches.append(
            "SELECT p.shadow_model, d.dim_key, d.dim_value, p.live_label, p.shadow_label,"  # noqa: S608 (constant SQL; values are parameters)
            f" p.expected_label, 1 AS n FROM dashboard_shadowpair p {PAIR_COHORTS}"
            " WHERE p.project_id = ANY(%s::bigint[]) AND p.micro_model = %s"
            f" AND ({spans}) AND d.dim_key = ANY(%s::text[]){pair_value_sql}"
        )
        params += [[key] if key else [], projects, filters.micro_model]
        params += [at for edge in edges for at in edge]
        params += [dim_keys, *value_params]
    if not branches:
        return []
    sql = (
        "SELECT shadow_model, dim_key, dim_value, live_label, shadow_label, expected_label,"  # noqa: S608 (constant SQL; values are parameters)
        f" sum(n)::bigint FROM ({' UNION ALL '.join(branches)}) AS counted"
        " GROUP BY 1, 2, 3, 4, 5, 6"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


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
