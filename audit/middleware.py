"""Attributes the configuration changes a request makes to the request's user."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from .services import acting_as


class AuditActorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Read at record time: the API authenticates inside the view (an API key replaces
        # request.user there), after this middleware ran.
        with acting_as(lambda: getattr(request, "user", None)):
            return self.get_response(request)
