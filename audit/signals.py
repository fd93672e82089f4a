"""Every save and delete of an audited model (and every change of its many-to-many fields,
such as a project's members) is recorded, whichever path made it (admin,
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
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save

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


def _members(instance: models.Model, field: models.ManyToManyField) -> list[Any]:
    return sorted(getattr(instance, field.name).values_list("pk", flat=True))


def _m2m_field(sender: Any, model: type[models.Model]) -> models.ManyToManyField | None:
    return next(
        (f for f in model._meta.many_to_many if f.remote_field.through is sender),
        None,
    )


def _m2m_changed(
    sender: Any,
    instance: models.Model,
    action: str,
    reverse: bool,
    model: type[models.Model],
    pk_set: set[Any] | None,
    **kwargs: Any,
) -> None:
    """A many-to-many change (a project's members) is an update of the audited side: its
    list of related ids before and after."""
    if reverse:
        # user.projects.add(project): the audited objects are the projects in pk_set.
        field = _m2m_field(sender, model)
        if field is None or not pk_set or action not in ("post_add", "post_remove"):
            return
        for owner in model._default_manager.filter(pk__in=pk_set).order_by("pk"):
            after = _members(owner, field)
            before = sorted(
                {*after} - {instance.pk} if action == "post_add" else {*after, instance.pk}
            )
            record_change(
                AuditEntry.Action.UPDATE, owner, {field.name: before}, {field.name: after}
            )
        return
    field = _m2m_field(sender, type(instance))
    if field is None:
        return
    if action.startswith("pre_"):
        setattr(instance, f"{_BEFORE}_{field.name}", _members(instance, field))
    elif action.startswith("post_"):
        before = instance.__dict__.pop(f"{_BEFORE}_{field.name}", [])
        record_change(
            AuditEntry.Action.UPDATE,
            instance,
            {field.name: before},
            {field.name: _members(instance, field)},
        )


def audited_models() -> list[type[models.Model]]:
    return [apps.get_model(label) for label in getattr(settings, "AUDITED_MODELS", ())]


def connect() -> None:
    for model in audited_models():
        uid = f"audit:{model._meta.label}"
        pre_save.connect(_before_save, sender=model, dispatch_uid=f"{uid}:pre_save")
        post_save.connect(_after_save, sender=model, dispatch_uid=f"{uid}:post_save")
        post_delete.connect(_after_delete, sender=model, dispatch_uid=f"{uid}:post_delete")
        for field in model._meta.many_to_many:
            through = field.remote_field.through
            m2m_changed.connect(
                _m2m_changed, sender=through, dispatch_uid=f"{uid}:{field.name}:m2m"
            )
