"""``{% alerts_banner %}``: a banner of the viewer's firing alerts on every page. It costs
the page no query: the page script polls the small JSON view ``alerts:firing``."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.inclusion_tag("alerts/_banner.html", takes_context=True)
def alerts_banner(context: template.Context) -> dict[str, Any]:
    user = context.get("user")
    return {"show": bool(user is not None and user.is_authenticated)}
