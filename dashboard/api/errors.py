"""The API's one exception handler: every error answers ``{"error": {"code", "message"}}``."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or None)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, DjangoValidationError):
        # A service's full_clean(): the same 400 as a serializer's, field by field.
        detail: Any = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        exc = exceptions.ValidationError(detail)
    # DRF's handler sets the status and headers (WWW-Authenticate, Retry-After); unexpected
    # exceptions (None) are left to Django so they are logged as server errors.
    response = exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    if isinstance(exc, exceptions.ValidationError):
        code, message = "invalid", _validation_message(exc.detail)
    else:
        code, message = str(exc.get_codes()), str(exc.detail)
    response.data = {"error": {"code": code, "message": message}}
    return response


def _validation_message(detail: Any, field: str = "") -> str:
    if isinstance(detail, dict):
        return "; ".join(
            _validation_message(value, f"{field}.{key}" if field else str(key))
            for key, value in detail.items()
        )
    if isinstance(detail, list):
        return "; ".join(_validation_message(item, field) for item in detail)
    return f"{field}: {detail}" if field and field != "non_field_errors" else str(detail)
