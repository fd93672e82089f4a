"""Known-answer traffic for the release gate: prompt versions with designed confusion
matrices and LabelCheck fail counts, and the gate's expected answers computed here, apart
from the metrics module (Wilson bounds as the roots of the score equation's quadratic)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from dashboard.metrics.evaluations import rebuild_evaluation_days
from dashboard.metrics.refresh import fold_changes
from dashboard.models import EvalRollup
from tests.builders import TraceBuilder
from tracestore.services import store_spans

Z = 1.959963984540054
# (expected, predicted) -> decisions, per prompt version.
DESIGN: dict[str, dict[tuple[str, str], int]] = {
    # Baseline: 90 % recall on both labels.
    "v1": {("billing", "billing"): 90, ("billing", "tech"): 10, ("tech", "tech"): 90,
           ("tech", "billing"): 10},
    # A designed drop: billing recall 90 % -> 60 %.
    "v2": {("billing", "billing"): 60, ("billing", "tech"): 40, ("tech", "tech"): 90,
           ("tech", "billing"): 10},
    # The same as the baseline.
    "v3": {("billing", "billing"): 90, ("billing", "tech"): 10, ("tech", "tech"): 90,
           ("tech", "billing"): 10},
    # Far too few to say anything.
    "v4": {("billing", "billing"): 3, ("tech", "tech"): 2},
}  # fmt: skip
# LabelCheck (failed, evaluated) per prompt version.
EVALUATIONS = {"v1": (20, 200), "v2": (50, 200), "v3": (20, 200), "v4": (0, 5)}


def hour_ago(now: datetime, hours: int) -> datetime:
    return now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours)


def store_design(project_id: int, now: datetime) -> None:
    """Every decision of DESIGN as a real trace (root with the prompt version, decision
    span with label and expected label) stored and folded, in a whole hour 3 hours back;
    the LabelCheck counts as that hour's evaluation rollup rows (and its day's)."""
    start = hour_ago(now, 3) + timedelta(minutes=10)
    for version, cells in DESIGN.items():
        for (expected, predicted), count in cells.items():
            for _ in range(count):
                trace = TraceBuilder(start_ns=int(start.timestamp() * 1e9))
                root = trace.span("POST /chat", attrs={"prompt.version": version})
                trace.span(
                    "intent",
                    parent=root,
                    offset_ms=5,
                    attrs={
                        "micro_model.name": "intent-mini",
                        "llm.model_name": "intent-mini-v2",
                        "micro_model.label": predicted,
                        "micro_model.expected_label": expected,
                        "route.name": predicted,
                    },
                )
                store_spans(project_id, trace.records())
    fold_changes()
    bucket = hour_ago(now, 3)
    for version, (failed, evaluated) in EVALUATIONS.items():
        for dim_key, dim_value in (("prompt.version", version), ("", "")):
            EvalRollup.objects.create(
                width="h",
                bucket=bucket,
                project_id=project_id,
                micro_model="intent-mini",
                evaluator="LabelCheck",
                dim_key=dim_key,
                dim_value=dim_value,
                evaluated=evaluated,
                failed=failed,
                weighted_evaluated=float(evaluated),
                weighted_failed=float(failed),
                # Every verdict weighs 1 (sampled at 100 %): the sums of w² are the counts.
                weighted_sq_evaluated=float(evaluated),
                weighted_sq_failed=float(failed),
            )
    # The fold's day rows: the sums of the day's hour rows.
    rebuild_evaluation_days({(project_id, bucket.replace(hour=0))})


def wilson_roots(k: int, n: int) -> tuple[float, float]:
    """The two roots in p of (k/n - p)^2 = Z^2 p (1 - p) / n."""
    phat = k / n
    a = 1 + Z * Z / n
    b = -(2 * phat + Z * Z / n)
    c = phat * phat
    disc = math.sqrt(max(0.0, b * b - 4 * a * c))
    return (-b - disc) / (2 * a), (-b + disc) / (2 * a)


def difference_interval(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float]:
    """Newcombe's method 10 for p1 - p2, written out from the 1998 paper."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson_roots(k1, n1)
    l2, u2 = wilson_roots(k2, n2)
    delta = math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    epsilon = math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return p1 - p2 - delta, p1 - p2 + epsilon
