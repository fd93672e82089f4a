"""Reads for the alerts page and the firing-alerts banner."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from .models import AlertEvaluation, AlertEvent, AlertRule, AlertState

MAX_POINTS = 2000


@dataclass
class RuleView:
    rule: AlertRule
    states: list[AlertState]
    points: dict[str, list[tuple[datetime, float | None, float | None, float | None]]] = field(
        default_factory=dict
    )

    @property
    def firing(self) -> bool:
        return any(s.state == "firing" for s in self.states)


def firing_states(project_ids: list[int], limit: int = 20) -> list[AlertState]:
    return list(
        AlertState.objects.filter(
            state="firing", rule__project_id__in=project_ids, rule__enabled=True
        )
        .select_related("rule")
        .order_by("-since")[:limit]
    )


def alerts_page_data(project_ids: list[int]) -> tuple[list[RuleView], list]:
    """Every rule of the projects with its states and their latest evaluations (value, low,
    high per split value; MAX_POINTS in all), and the recent events."""
    rules = list(AlertRule.objects.filter(project_id__in=project_ids).order_by("name"))
    states: dict[int, list[AlertState]] = defaultdict(list)
    for state in AlertState.objects.filter(rule__in=rules).order_by("split_value"):
        states[state.rule_id].append(state)
    views = {r.id: RuleView(r, states[r.id]) for r in rules}
    evaluations = (
        AlertEvaluation.objects.filter(rule__in=rules)
        .order_by("-evaluated_at")
        .values_list("rule_id", "split_value", "evaluated_at", "value", "low", "high")[:MAX_POINTS]
    )
    for rule_id, split_value, at, value, low, high in reversed(evaluations):
        views[rule_id].points.setdefault(split_value, []).append((at, value, low, high))
    events = list(
        AlertEvent.objects.filter(project_id__in=project_ids)
        .select_related("rule")
        .order_by("-created_at")[:100]
    )
    return list(views.values()), events
