"""The audit log in the admin: read by those with the view permission, changed by nobody."""

from __future__ import annotations

import json

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from .models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ("at", "actor", "action", "model", "object_repr", "changed_fields")
    list_filter = ("action", "model")
    search_fields = ("actor", "object_repr", "object_id")
    date_hierarchy = "at"
    fields = (
        "at",
        "actor",
        "user",
        "action",
        "model",
        "object_id",
        "object_repr",
        "changed",
        "before_json",
        "after_json",
    )
    readonly_fields = fields

    @admin.display(description="changed")
    def changed_fields(self, entry: AuditEntry) -> str:
        return ", ".join(entry.changed)

    @admin.display(description="before")
    def before_json(self, entry: AuditEntry) -> str:
        return format_html("<pre>{}</pre>", json.dumps(entry.before, indent=2, sort_keys=True))

    @admin.display(description="after")
    def after_json(self, entry: AuditEntry) -> str:
        return format_html("<pre>{}</pre>", json.dumps(entry.after, indent=2, sort_keys=True))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
