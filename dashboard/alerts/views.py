"""The alerts page: rules, current state, history, value over time against the threshold."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from ..access import visible_project_ids
from .charts import rule_figure
from .queries import alerts_page_data, firing_states


@require_GET
@login_required(login_url=settings.LOGIN_URL)
def alerts_page(request: HttpRequest) -> HttpResponse:
    rules, events = alerts_page_data(visible_project_ids(request.user))
    figures = {
        f"alert-rule-{view.rule.id}": rule_figure(view.rule.name, view.rule.threshold, view.points)
        for view in rules
        if view.points
    }
    return render(
        request, "alerts/alerts.html", {"rules": rules, "events": events, "figures": figures}
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
                    "n": s.last_n,
                    "since": s.since.isoformat() if s.since else None,
                }
                for s in states
            ]
        }
    )
