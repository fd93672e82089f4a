"""Unknown query parameters answer 400 on every API endpoint, rather than being ignored:
``/api/v1/traces/?fallback=true`` would otherwise list every trace, unfiltered, to a caller
who believes the list is filtered.

Each view lists what it reads in ``query_params`` (``cohort.<key>`` stands for every
``cohort.``-prefixed name); its pagination's cursor and page-size parameters and DRF's
``format`` are added. Checked before the view runs, for API views only (views of any app
under ``/api/``: the configuration views of evaluators too, through their pagination).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import BadRequest
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework.views import APIView

COHORT = "cohort.<key>"
COHORT_PREFIX = "cohort."


def known_query_params(view_class: type[APIView]) -> frozenset[str]:
    known = set(getattr(view_class, "query_params", ()))
    known.add("format")
    pagination = getattr(view_class, "pagination_class", None)
    if pagination is not None:
        for attribute in ("cursor_query_param", "page_size_query_param"):
            name = getattr(pagination, attribute, None)
            if name:
                known.add(name)
    return frozenset(known)


def unknown_query_params(view_class: type[APIView], names: list[str]) -> list[str]:
    known = known_query_params(view_class)
    return [
        name
        for name in names
        if name not in known and not (COHORT in known and name.startswith(COHORT_PREFIX))
    ]


class UnknownQueryParamsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: Any,
        view_kwargs: Any,
    ) -> HttpResponse | None:
        # PostgreSQL text cannot hold NUL: refused here for every page and endpoint.
        for name, values in request.GET.lists():
            if "\x00" in name or any("\x00" in value for value in values):
                return _bad_request(request, f"{name!r}: contains a NUL character")
        view_class = getattr(view_func, "cls", None)
        if not (isinstance(view_class, type) and issubclass(view_class, APIView)):
            return None
        if not request.path.startswith("/api/v1/"):
            return None
        unknown = unknown_query_params(view_class, list(request.GET))
        if not unknown:
            return None
        known = sorted(known_query_params(view_class) - {"format"})
        takes = ", ".join(known) if known else "no query parameters"
        return _bad_request(
            request, f"{unknown[0]}: unknown query parameter (this endpoint takes {takes})"
        )


def _bad_request(request: HttpRequest, message: str) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"error": {"code": "invalid", "message": message}}, status=400)
    # Pages: the project's 400 page, with the message.
    from ..views import bad_request

    return bad_request(request, BadRequest(message))
