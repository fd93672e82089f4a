"""The micro model page's routing advice section (``_routing_advice.html``)."""

from __future__ import annotations

from typing import Any

from .metrics import Filters
from .metrics.routing import routing_advice


def routing_section(f: Filters) -> dict[str, Any]:
    """Context for one micro model (``f`` carries it) over the page's range and cohort. The
    advice is read from the evaluation rollup, which has no route or model: a page filtered
    by either shows the advice over every route and model, and says so (``routing_unfiltered``
    names the filters left out)."""
    left_out = [name for name in ("route", "model") if getattr(f, name) is not None]
    advice = routing_advice(f.with_(route=None, model=None))
    return {"routing": advice[0] if advice else None, "routing_unfiltered": left_out}
