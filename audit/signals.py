"""Every save and delete of an audited model is recorded, whichever path made it (admin,
API, service function, management command), in the transaction that made it.

Queryset ``update()`` sends no signal: code changing audited rows uses ``save()``.
The audited models are named in the settings (``AUDITED_MODELS``), so this app imports
nothing of the others.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import models
from django.db.models.signals import post_delete, post_save, pre_save

from .models import AuditEntry
from .services import record_change, snapshot

_BEFORE = "_audit_before"


def _ignored(sender: type[models.Model], update_fields: Any) -> bool:
    """Saves touching only bookkeeping fields (an API key's last use) are not changes."""
    ignored = set(getattr(settings, "AUDIT_IGNORED_FIELDS", {}).get(sender._meta.label, ()))
    return bool(update_fields) and set(update_fields) <= ignored


def _before_save(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    if instance._state.adding or instance.pk is None or _ignored(sender, kwargs["update_fields"]):
        return
    stored = sender._default_manager.filter(pk=instance.pk).first()
    setattr(instance, _BEFORE, snapshot(stored) if stored is not None else None)


def _after_save(
    sender: type[models.Model], instance: models.Model, created: bool, **kwargs: Any
) -> None:
    if kwargs.get("raw") or _ignored(sender, kwargs["update_fields"]):
        return
    before = None if created else instance.__dict__.pop(_BEFORE, None)
    action = AuditEntry.Action.CREATE if created or before is None else AuditEntry.Action.UPDATE
    record_change(action, instance, before, snapshot(instance))


def _after_delete(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    record_change(AuditEntry.Action.DELETE, instance, snapshot(instance), None)


def audited_models() -> list[type[models.Model]]:
    return [apps.get_model(label) for label in getattr(settings, "AUDITED_MODELS", ())]


def connect() -> None:
    for model in audited_models():
        uid = f"audit:{model._meta.label}"
        pre_save.connect(_before_save, sender=model, dispatch_uid=f"{uid}:pre_save")
        post_save.connect(_after_save, sender=model, dispatch_uid=f"{uid}:post_save")
        post_delete.connect(_after_delete, sender=model, dispatch_uid=f"{uid}:post_delete")
