"""Where a rule or an event leads: the rule in the admin and the dashboard's Traces page
with the rule's filters and window, in the Traces page's own parameters (start, end,
micro_model, route, cohort.<key>, failed_evaluator, fallback=1, status=error)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.urls import reverse

from .evaluation import ANY_EVALUATOR

# The rule metric -> the Traces page filter that shows the traces it counts.
TRACE_FLAGS = {"fallback-rate": {"fallback": "1"}, "error-rate": {"status": "error"}}


def rule_admin_path(rule: Any) -> str:
    return reverse("admin:alerts_alertrule_change", args=[rule.pk])


def traces_path(rule: Any, end: datetime, split_value: str = "") -> str:
    """The Traces page for the rule's window ending at ``end`` (a split rule: the split
    value's traces)."""
    params: dict[str, str] = {
        "start": (end - timedelta(seconds=rule.window_seconds)).isoformat(),
        "end": end.isoformat(),
    }
    if rule.micro_model:
        params["micro_model"] = rule.micro_model
    if rule.route:
        params["route"] = rule.route
    if rule.cohort_key:
        params[f"cohort.{rule.cohort_key}"] = rule.cohort_value
    if rule.split_by and split_value:
        params[f"cohort.{rule.split_by}"] = split_value
    if rule.metric == "eval-fail-rate" and rule.evaluator and rule.evaluator != ANY_EVALUATOR:
        params["failed_evaluator"] = rule.evaluator
    params.update(TRACE_FLAGS.get(rule.metric, {}))
    return f"{reverse('dashboard:trace-list')}?{urlencode(params)}"
