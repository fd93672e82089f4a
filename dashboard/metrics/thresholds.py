"""The confidence-threshold optimiser: for each threshold t (escalate a decision to the
fallback when its confidence < t) the accuracy of the decisions kept, the share escalated
and the cost per 1,000 decisions, and the lowest-cost threshold meeting a target accuracy,
per cohort.

Accuracy is read from the label rollups (live decisions only; mirrored calls are not
there): decisions with a confidence, a predicted label and an expected label (feedback wins
over the span attribute), counted per confidence bin, as label-quality counts them. The
unit costs come from the micro model's primary ``dashboard_decisionfact`` rows.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db import connection

from . import Filters, InvalidQuery, _label_rows, wilson_interval
from .histograms import CONFIDENCE_BINS

# Thresholds 0.00, 0.05, ..., 0.95: the label rollups' confidence bins (a decision with
# confidence c is in bin min(floor(20 c), 19)), so escalating below t = k / 20 escalates
# bins 0 .. k - 1 exactly.
STEPS = CONFIDENCE_BINS
DEFAULT_TARGET = 0.95
COST_SAMPLE = 50_000
# A cohort's own unit costs are used from this many priced traces on each side.
MIN_COST_N = 30
ALL = ""


def parse_target(value: str | None) -> float:
    """The target accuracy of a query parameter: a fraction in (0, 1] or a percentage
    ("95%")."""
    if value is None or value == "":
        return DEFAULT_TARGET
    text = value.strip()
    try:
        target = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError as exc:
        raise InvalidQuery(
            f"target: a fraction like 0.95 or a percentage like 95%, not {value!r}."
        ) from exc
    if not 0 < target <= 1:
        raise InvalidQuery(f"target: between 0 (excluded) and 1 (or 100%), not {value!r}.")
    return target


def _unit_costs(
    project_ids: list[int], conditions: list[str], params: list[Any], dimension: str | None
) -> dict[str, dict[str, Any]]:
    """The observed cost of a decision kept and the extra cost of one escalated, overall
    (key ``""``) and per value of ``dimension``: mean cost of the micro model's priced
    traces that did not go to the fallback, and the mean cost of those that did minus it,
    over its newest COST_SAMPLE traces in range (a mean needs no more). ``conditions``
    leave out the project: each project's newest are read in start_time order from the
    index on (project, micro model, start_time) of primary rows, which stops after
    COST_SAMPLE (``project_id = ANY(...)`` would read every row in range and sort them:
    0.5 s over 30 days at 5 M spans, growing with the traffic), then the newest of all
    projects are kept (one project's newest are the sample as they come). The index
    carries the cohort, cost and fallback flag: an index-only scan. Unpriced traces are
    left out (and counted)."""
    cohort_sql = "coalesce(cohort ->> %s, '')" if dimension else "''"
    newest = (
        f"SELECT {cohort_sql} AS grp, is_fallback, cost, start_time"  # noqa: S608 (constant SQL; values are parameters)
        " FROM dashboard_decisionfact"
        f" WHERE project_id = %s AND {' AND '.join(conditions)} AND is_primary"
        " ORDER BY start_time DESC LIMIT %s"
    )
    dim_params = [dimension] if dimension else []
    if len(project_ids) == 1:
        sample, sample_params = newest, [*dim_params, project_ids[0], *params, COST_SAMPLE]
    else:
        sample = (
            "SELECT newest.* FROM unnest(%s::bigint[]) AS p(id) CROSS JOIN LATERAL"  # noqa: S608 (constant SQL; values are parameters)
            f" ({newest.replace('project_id = %s', 'project_id = p.id', 1)}) AS newest"
            " ORDER BY newest.start_time DESC LIMIT %s"
        )
        sample_params = [project_ids, *dim_params, *params, COST_SAMPLE, COST_SAMPLE]
    sql = (
        "SELECT grp, is_fallback, count(*), count(cost), coalesce(sum(cost), 0)"  # noqa: S608 (constant SQL; values are parameters)
        f" FROM ({sample}) AS sample GROUP BY 1, 2"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, sample_params)
        counted = cursor.fetchall()
    sums: dict[str, dict[bool, list]] = defaultdict(lambda: {False: [0, 0, 0.0], True: [0, 0, 0.0]})
    for cohort, escalated, n, priced, total in counted:
        for key in (ALL, cohort) if dimension and cohort else (ALL,):
            acc = sums[key][escalated]
            acc[0] += n
            acc[1] += priced
            acc[2] += total
    return {key: _costs(sides) for key, sides in sums.items()} or {ALL: _costs(sums[ALL])}


def _costs(sides: dict[bool, list]) -> dict[str, Any]:
    kept_n, kept_priced, kept_sum = sides[False]
    esc_n, esc_priced, esc_sum = sides[True]
    kept_mean = kept_sum / kept_priced if kept_priced else None
    esc_mean = esc_sum / esc_priced if esc_priced else None
    return {
        "kept_traces": kept_n,
        "kept_priced": kept_priced,
        "escalated_traces": esc_n,
        "escalated_priced": esc_priced,
        "cost_kept": kept_mean,
        "cost_escalated": esc_mean,
        "fallback_cost": (
            esc_mean - kept_mean if kept_mean is not None and esc_mean is not None else None
        ),
    }


def _cohort_costs(costs: dict[str, dict[str, Any]], cohort: str) -> tuple[dict[str, Any], str]:
    """A cohort's own unit costs when both sides have MIN_COST_N priced traces, else the
    micro model's over every cohort; and which ("cohort" or "all")."""
    own = costs.get(cohort)
    if (
        cohort != ALL
        and own is not None
        and own["fallback_cost"] is not None
        and min(own["kept_priced"], own["escalated_priced"]) >= MIN_COST_N
    ):
        return own, "cohort"
    return costs[ALL], "all"


def threshold_table(
    filters: Filters, target: float = DEFAULT_TARGET, dimension: str | None = None
) -> dict[str, Any]:
    """Per cohort value (``""``: every decision) the row of each threshold and the chosen
    one: the lowest-cost (fewest escalations) threshold whose kept accuracy meets
    ``target``, with the Wilson interval of that accuracy; None when none meets it."""
    if not filters.micro_model:
        raise InvalidQuery("the threshold optimiser needs a micro model.")
    if dimension and filters.cohort and filters.cohort[0] != dimension:
        raise InvalidQuery(
            "A cohort filter on one dimension and a split by another cannot be combined."
        )
    # Accuracy per confidence step from the label rollups (label x expected label x
    # confidence histogram), read like label-quality: whole hours from the rollups, the
    # partial hours at the ends from the facts.
    steps: dict[str, list[list[int]]] = defaultdict(lambda: [[0, 0] for _ in range(STEPS)])
    for group_by in (None, dimension) if dimension else (None,):
        for group, label, expected, _, hists in _label_rows(filters, group_by):
            if not expected or not label:
                continue
            counts = steps[group or ALL]
            right = label == expected
            for hist in hists:
                if hist is None:
                    continue
                for step, n in enumerate(hist):
                    if n:
                        counts[step][0] += n
                        counts[step][1] += n if right else 0
    conditions = ["micro_model = %s", "start_time >= %s", "start_time < %s"]
    params: list[Any] = [filters.micro_model, filters.start, filters.end]
    if filters.cohort is not None:
        conditions.append("cohort ->> %s = %s")
        params += list(filters.cohort)
    costs = _unit_costs(list(filters.project_ids), conditions, params, dimension)
    cohorts = [
        _cohort_rows(cohort, counts, target, *_cohort_costs(costs, cohort))
        for cohort, counts in sorted(steps.items())
    ]
    return {"target": target, "costs": costs[ALL], "cohorts": cohorts}


def _cohort_rows(
    cohort: str, counts: list[list[int]], target: float, costs: dict[str, Any], basis: str
) -> dict[str, Any]:
    total = sum(n for n, _ in counts)
    rows = []
    kept = correct = 0
    # From the top step down: decisions kept at threshold k/STEPS are steps k..STEPS-1.
    for k in range(STEPS - 1, -1, -1):
        kept += counts[k][0]
        correct += counts[k][1]
        interval = wilson_interval(correct, kept)
        escalated = total - kept
        share = escalated / total if total else None
        cost = None
        if share is not None and costs["fallback_cost"] is not None:
            cost = 1000 * (costs["cost_kept"] + share * costs["fallback_cost"])
        rows.append(
            {
                "threshold": k / STEPS,
                "kept": kept,
                "correct": correct,
                "accuracy": correct / kept if kept else None,
                "low": interval[0] if interval else None,
                "high": interval[1] if interval else None,
                "escalated": escalated,
                "escalated_share": share,
                "cost_per_1000": cost,
            }
        )
    rows.reverse()
    # Escalating more never costs less (an escalation's observed extra cost is >= 0 in
    # practice; when it is unknown, fewer escalations is the cheaper side): the lowest
    # threshold that meets the target is the cheapest one.
    best = next((r for r in rows if r["accuracy"] is not None and r["accuracy"] >= target), None)
    if costs["fallback_cost"] is not None and costs["fallback_cost"] < 0:
        meeting = [r for r in rows if r["accuracy"] is not None and r["accuracy"] >= target]
        best = min(meeting, key=lambda r: float(r["cost_per_1000"] or 0.0), default=None)
    return {
        "cohort": cohort,
        "n": total,
        "thresholds": rows,
        "best": best,
        "costs": costs,
        "cost_basis": basis,
    }
