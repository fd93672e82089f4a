"""The composition root's own table: liveness heartbeats of the stack's processes."""

from __future__ import annotations

from django.db import models


class Heartbeat(models.Model):
    """The last sign of life of one process role on one host (one row each, upserted).

    The worker writes it from the ``microlens.heartbeat`` task that beat schedules, so a
    fresh row proves the whole beat -> broker -> worker -> database chain.
    """

    role = models.CharField(max_length=50)
    hostname = models.CharField(max_length=255)
    pid = models.IntegerField()
    seen_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["role", "hostname"], name="heartbeat_role_host_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.role}@{self.hostname}"
