"""The alerts page: rules, current state, history, value over time against the threshold."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from ..access import visible_project_ids
from .charts import rule_figure
from .queries import alerts_page_data, firing_states
from .units import display, to_shown


@require_GET
@login_required(login_url=settings.LOGIN_URL)
def alerts_page(request: HttpRequest) -> HttpResponse:
    rules, events = alerts_page_data(visible_project_ids(request.user))
    figures = {}
    for view in rules:
        if not view.points:
            continue
        rule = view.rule

        def shown(x: float | None, rule=rule) -> float | None:
            return to_shown(x, rule.metric, rule.compare_to)

        # The chart is drawn in the unit people type: percent for percentages.
        points = {
            split: [(at, shown(v), shown(lo), shown(hi)) for at, v, lo, hi in series]
            for split, series in view.points.items()
        }
        figures[f"alert-rule-{rule.id}"] = rule_figure(
            rule.name, shown(rule.threshold) or 0.0, points
        )
    return render(
        request,
        "alerts/alerts.html",
        {"rules": rules, "events": events, "figures": figures, "now": timezone.now()},
    )


@require_GET
@login_required(login_url=settings.LOGIN_URL)
def firing(request: HttpRequest) -> JsonResponse:
    """The viewer's firing alerts, for the banner every page polls."""
    states = firing_states(visible_project_ids(request.user))
    return JsonResponse(
        {
            "firing": [
                {
                    "rule_id": s.rule_id,
                    "rule": s.rule.name,
                    "severity": s.rule.severity,
                    "split_by": s.rule.split_by,
                    "split_value": s.split_value,
                    "value": s.last_value,
                    "shown": display(s.last_value, s.rule.metric, s.rule.compare_to),
                    "n": s.last_n,
                    "since": s.since.isoformat() if s.since else None,
                }
                for s in states
            ]
        }
    )
