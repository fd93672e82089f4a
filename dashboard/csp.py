"""The Content-Security-Policy of every response (pages, admin, API docs, API).

Scripts only from this origin: no inline script or event handler anywhere (page scripts
live under static/, figures travel as ``json_script`` data blocks, the API docs use
drf-spectacular's split view whose init script is its own request). Inline styles are
allowed: Plotly and Swagger UI set them, and a style cannot run code. Nothing may frame
the pages, and forms post only here.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = POLICY
        return response
