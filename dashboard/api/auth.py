"""API authentication by project API key: ``authorization: Bearer <key>`` or
``x-api-key: <key>``, the same keys the OTLP receiver takes."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from tracestore.services import authenticate_api_key

from ..access import ApiKeyPrincipal


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """A request with no key falls through to the next class (session); a request with a
    key that is wrong or revoked fails here, whatever else it carries."""

    def authenticate(self, request: Request) -> tuple[ApiKeyPrincipal, Any] | None:
        raw = self._raw_key(request)
        if raw is None:
            return None
        project = authenticate_api_key(raw)
        if project is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        return ApiKeyPrincipal(project=project), project

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) when credentials are missing or wrong.
        return 'Bearer realm="microlens"'

    @staticmethod
    def _raw_key(request: Request) -> str | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() == "bearer":
            return credentials.strip()
        key = request.META.get("HTTP_X_API_KEY")
        return key.strip() if key is not None else None


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = ["ApiKeyBearer", "ApiKeyHeader"]

    def get_security_requirement(self, auto_schema: Any) -> list[dict[str, list[Any]]]:
        # Either header will do.
        return [{"ApiKeyBearer": []}, {"ApiKeyHeader": []}]

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, str]]:
        return [
            {
                "type": "http",
                "scheme": "bearer",
                "description": "A project API key: `authorization: Bearer <key>`.",
            },
            {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        ]
