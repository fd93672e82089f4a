"""Recording configuration changes: ``record_change`` writes one audit entry in the
caller's transaction; ``acting_as`` names who is acting for the code it wraps.

Who acts is kept in a context variable: the web middleware sets it to the request's user
(resolved when a change is recorded, so an API key authenticated later by the API is seen),
management commands wrap their work in ``acting_as("command <name>")``; anything else
(the scheduler registering a micro model seen in traffic) is ``system``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from .models import AuditEntry

REDACTED = "[redacted]"
# Field names whose values are secrets or stand-ins for them (an API key's digest): the
# entry says that they changed, never what they hold.
_SECRET_NAME = re.compile(r"digest|hash|secret|password|token", re.IGNORECASE)
# Webhook URLs often carry their credential in the path (chat services' incoming hooks):
# only the scheme and host are kept.
_URL_NAME = re.compile(r"webhook", re.IGNORECASE)

Actor = str | Callable[[], Any]
_actor: ContextVar[Actor] = ContextVar("audit_actor", default="system")


@contextmanager
def acting_as(actor: Actor) -> Iterator[None]:
    """Changes recorded inside are attributed to ``actor``: a description (``"command
    seed_demo_data"``) or a function returning the acting user."""
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


def _who() -> tuple[str, Any]:
    actor = _actor.get()
    if isinstance(actor, str):
        return actor, None
    user = actor()
    if user is None or not getattr(user, "is_authenticated", False):
        return "anonymous", None
    project = getattr(user, "project", None)
    if project is not None and not hasattr(user, "get_username"):
        return f"API key of project {project.name}", None
    return f"user {user.get_username()}", user


def _redact_url(value: str) -> str:
    parts = urlsplit(value)
    if not parts.scheme or not parts.hostname:
        return REDACTED
    return f"{parts.scheme}://{parts.hostname}/{REDACTED}"


def _value(field: models.Field, value: Any) -> Any:
    if value is None:
        return None
    if _SECRET_NAME.search(field.name):
        return REDACTED
    if _URL_NAME.search(field.name):
        if isinstance(value, str):
            return _redact_url(value)
        if isinstance(value, list | tuple):
            return [_redact_url(v) if isinstance(v, str) else REDACTED for v in value]
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def snapshot(instance: models.Model) -> dict[str, Any]:
    """The row's stored fields as JSON values, secrets redacted."""
    return {
        field.attname: _value(field, field.value_from_object(instance))
        for field in instance._meta.concrete_fields
    }


def record_change(
    action: str,
    instance: models.Model,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> AuditEntry | None:
    """One entry for a created, updated or deleted object; an update that changed nothing
    is not recorded. ``changed`` names an update's changed fields."""
    changed: list[str] = []
    if action == AuditEntry.Action.UPDATE:
        changed = sorted(
            key
            for key in {*(before or {}), *(after or {})}
            if (before or {}).get(key) != (after or {}).get(key)
        )
        if not changed:
            return None
    actor, user = _who()
    return AuditEntry.objects.create(
        actor=actor[:300],
        user=user,
        action=action,
        model=instance._meta.label,
        object_id=str(instance.pk),
        object_repr=str(instance)[:300],
        before=before,
        after=after,
        changed=changed,
    )
