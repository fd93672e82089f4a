"""Who may read and change configuration through the API: the same rules as the admin.

A person (session) must be staff and hold the Django model permission the admin would
ask for: ``view_<model>`` to read, ``add_``/``change_``/``delete_`` to write, and for a
micro model whose ``evaluators`` are given, the evaluator configuration's permissions too
(the admin's inline asks for them). A project API key stands for its project: it reads
and changes that project's own configuration (micro models, alert rules) and never what
every project shares (judges). Objects of other projects stay out of every queryset.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Model
from rest_framework import permissions
from rest_framework.request import Request

_ACTIONS = {
    "GET": ("view",),
    "HEAD": ("view",),
    "OPTIONS": ("view",),
    "POST": ("add",),
    "PUT": ("change",),
    "PATCH": ("change",),
    "DELETE": ("delete",),
}


def _perms(model: type[Model], method: str) -> list[str]:
    meta = model._meta
    return [f"{meta.app_label}.{action}_{meta.model_name}" for action in _ACTIONS[method]]


class ConfigPermissions(permissions.BasePermission):
    """The view sets ``config_model``; ``nested_config`` maps a body key to the model its
    items are stored in; ``project_key_writes`` says whether a project API key may write."""

    message = "you lack the permission to do this"

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if user is None or not user.is_authenticated:
            return False
        method = request.method or "GET"
        if method not in _ACTIONS:
            return False
        if not hasattr(user, "has_perms"):
            # A project API key: no person, no model permissions.
            if method in permissions.SAFE_METHODS:
                return True
            self.message = "a project API key cannot change configuration shared by every project"
            return bool(getattr(view, "project_key_writes", False))
        model: type[Model] = view.config_model
        needed = _perms(model, method)
        if method in ("POST", "PUT", "PATCH"):
            body = request.data if isinstance(request.data, dict) else {}
            for key, nested in getattr(view, "nested_config", {}).items():
                if key in body:
                    needed += [
                        f"{nested._meta.app_label}.{a}_{nested._meta.model_name}"
                        for a in ("add", "change", "delete")
                    ]
        if not user.is_staff:
            self.message = "only staff may read or change configuration"
            return False
        if not user.has_perms(needed):
            missing = [p for p in needed if not user.has_perm(p)]
            self.message = f"you need the {', '.join(missing)} permission to do this"
            return False
        return True
