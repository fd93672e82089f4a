"""The audit log: one row per change of a configuration object, never edited."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Now


class AuditEntry(models.Model):
    class Action(models.TextChoices):
        CREATE = "create"
        UPDATE = "update"
        DELETE = "delete"

    at = models.DateTimeField(db_default=Now(), db_index=True)
    # Who, as it was at the time: "user alice", "API key of project shop", "command
    # seed_demo_data", "system". The user link survives only as long as the user does.
    actor = models.CharField(max_length=300)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=10, choices=Action.choices)
    model = models.CharField(max_length=100, help_text="app_label.ModelName")
    object_id = models.CharField(max_length=100)
    object_repr = models.CharField(max_length=300)
    # Field values before and after (null on create / delete); secrets are redacted.
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    changed = models.JSONField(default=list, help_text="An update's changed fields.")

    class Meta:
        verbose_name = "audit entry"
        verbose_name_plural = "audit log"
        indexes = [models.Index(fields=["model", "object_id"], name="auditentry_object_idx")]

    def __str__(self) -> str:
        return f"{self.actor} {self.action} {self.model} {self.object_repr}"
