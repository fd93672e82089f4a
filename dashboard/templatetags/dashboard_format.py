"""Formatting filters for the dashboard templates. They return plain strings: Django's
autoescape escapes them like any other value."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from django import template

register = template.Library()


@register.filter
def attr_value(value: Any) -> str:
    """An attribute value as sent: strings verbatim, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


@register.filter
def duration(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    if ms >= 10:
        return f"{ms:.0f} ms"
    return f"{ms:.2f} ms"


@register.filter
def indent(depth: int) -> str:
    """Left padding for a span at ``depth`` in the tree, in rem (used in a style attribute)."""
    return f"{depth * 1.25:.2f}rem"


@register.filter
def pairs(mapping: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """``(key, value)`` pairs of a mapping. ``{% for k, v in d.items %}`` would look up a key
    named "items" first, and span attributes are user data."""
    return list(mapping.items()) if mapping else []


@register.filter
def percent(value: float | None) -> str:
    """A rate (0..1) as a percentage; a dash when there is no rate (n = 0)."""
    if value is None:
        return "\u2013"
    return f"{value * 100:.1f}%"


@register.filter
def usd(value: float | None) -> str:
    """USD to three significant digits (a micro model's span costs micro-dollars: a fixed
    five decimals would show it as $0.00000), never in exponent notation."""
    if value is None:
        return "no price"
    if value == 0:
        return "$0"
    decimals = max(2, 2 - math.floor(math.log10(abs(value))))
    return f"${value:,.{decimals}f}"


@register.filter
def unpriced_marker(models: Sequence[str] | None) -> str:
    """What a partly priced cost leaves out: "+ no price: a, b" (empty when nothing)."""
    if not models:
        return ""
    return "+ no price: " + ", ".join(models)
