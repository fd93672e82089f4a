"""The micro model page's routing advice section (``_routing_advice.html``)."""

from __future__ import annotations

from typing import Any

from .metrics import Filters
from .metrics.routing import routing_advice


def routing_section(f: Filters) -> dict[str, Any]:
    """Context for one micro model (``f`` carries it) over the page's range."""
    advice = routing_advice(f)
    return {"routing": advice[0] if advice else None}
