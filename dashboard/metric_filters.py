"""Query parameters -> a metrics query, the same for pages and the API (so a page's URL
and the API call behind a chart read alike).

``start``/``end`` (ISO 8601; default the last 24 hours) or ``range=1h|24h|7d|30d``
(which wins over both),
``project`` (one of the caller's), ``micro_model``, ``route``, ``model``,
``cohort.<key>=<value>`` (one: two dimensions, or two values of one, answer 400),
``group_by``, ``interval`` (hour or day).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from .metrics import Filters, InvalidQuery

RANGES = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
RANGES["30d"] = timedelta(days=30)
DEFAULT_RANGE = "24h"
COHORT_PREFIX = "cohort."
MAX_RANGE = timedelta(days=400)
# Every parameter parse_metric_query reads ("cohort.<key>": any cohort.-prefixed name).
QUERY_PARAMS = ("start", "end", "range", "project", "micro_model", "route", "model",
                "cohort.<key>", "group_by", "interval")  # fmt: skip
RANGE_PARAMS = ("start", "end", "range", "project")


class ProjectNotFound(LookupError):
    """The ``project`` asked for is not one of the caller's (answered as 404)."""


@dataclass(frozen=True, slots=True)
class MetricQuery:
    filters: Filters
    group_by: str | None
    interval: str | None
    range_name: str | None  # the named range picked, if any


def _time(value: str, name: str) -> datetime:
    # parse_* answer None for what does not look like a date and raise ValueError for what
    # looks like one but is not (2026-13-45, an hour 25, an offset of 24 h).
    try:
        parsed = parse_datetime(value)
        day = parse_date(value) if parsed is None else None
    except ValueError:
        parsed = day = None
    if parsed is None:
        if day is None:
            raise InvalidQuery(f"{name}: not an ISO 8601 date or time: {value!r}")
        parsed = datetime(day.year, day.month, day.day)
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def parse_metric_query(
    params: Mapping[str, str], project_ids: list[int], now: datetime | None = None
) -> MetricQuery:
    now = now or timezone.now()
    range_name = params.get("range") or None
    if range_name is not None and range_name not in RANGES:
        raise InvalidQuery(f"range: one of {', '.join(RANGES)}")
    if range_name is not None:
        # A named range wins over start/end (the page form sends both).
        end, start = now, now - RANGES[range_name]
    else:
        end = _time(params["end"], "end") if params.get("end") else now
        if params.get("start"):
            start = _time(params["start"], "start")
        else:
            start = end - RANGES[DEFAULT_RANGE]
            range_name = None if params.get("end") else DEFAULT_RANGE
    if end <= start:
        raise InvalidQuery("end must be after start")
    if end - start > MAX_RANGE:
        raise InvalidQuery("the range may span at most 400 days")
    projects = tuple(project_ids)
    if params.get("project"):
        try:
            wanted = int(params["project"])
        except ValueError as exc:
            raise InvalidQuery("project: a project id") from exc
        if wanted not in project_ids:
            raise ProjectNotFound("No such project among yours.")
        projects = (wanted,)
    cohorts = [
        (k[len(COHORT_PREFIX) :], v) for k, v in params.items() if k.startswith(COHORT_PREFIX)
    ]
    cohorts = [(k, v) for k, v in cohorts if v != ""]
    if len(cohorts) > 1:
        names = " and ".join(sorted(k for k, _ in cohorts))
        raise InvalidQuery(
            f"filter by one cohort dimension at a time (asked for {names}): metrics are"
            " pre-aggregated per cohort dimension, so two cannot be combined; keep one"
            " cohort filter (and group by micro_model, route or model if needed)"
        )
    getlist = getattr(params, "getlist", None)
    if cohorts and getlist is not None and len(getlist(COHORT_PREFIX + cohorts[0][0])) > 1:
        raise InvalidQuery(f"cohort.{cohorts[0][0]}: give one value, not several")
    interval = params.get("interval") or None
    return MetricQuery(
        filters=Filters(
            project_ids=projects,
            start=start,
            end=end,
            micro_model=params.get("micro_model") or None,
            route=params.get("route") or None,
            model=params.get("model") or None,
            cohort=cohorts[0] if cohorts else None,
        ),
        group_by=params.get("group_by") or None,
        interval=interval,
        range_name=range_name,
    )
