"""``{{ value|alert_value:rule }}``: a stored value in the unit people see ('12.5 %');
``{% alert_traces rule end split_value %}`` / ``{{ rule|alert_rule_url }}``: the links."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import template

from ..links import rule_admin_path, traces_path
from ..units import display

register = template.Library()


@register.filter
def alert_value(value: float | None, rule: Any) -> str:
    return display(value, rule.metric, rule.compare_to)


@register.filter
def alert_rule_url(rule: Any) -> str:
    return rule_admin_path(rule)


@register.simple_tag
def alert_traces(rule: Any, end: datetime, split_value: str = "") -> str:
    return traces_path(rule, end, split_value)
