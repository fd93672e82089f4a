"""Projects and their API keys: creation, authentication, revocation.

Reached through ``services`` (the app's public writes); the receivers authenticate every
export here (``ingest.py``).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from .contracts import ProjectRef
from .models import ApiKey, Project

API_KEY_PREFIX = "ml_"
_LAST_USED_GRANULARITY = timedelta(minutes=1)


def create_project(name: str) -> ProjectRef:
    project, _ = Project.objects.get_or_create(name=name)
    return ProjectRef(id=project.id, name=project.name)


def _digest(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def issue_api_key(project_id: int, name: str = "default", raw_key: str | None = None) -> str:
    """Create an API key for the project and return it; only its digest is stored.

    With ``raw_key`` given (bootstrap from the environment), that exact key is registered,
    idempotently.
    """
    key = raw_key or API_KEY_PREFIX + secrets.token_urlsafe(32)
    ApiKey.objects.get_or_create(
        digest=_digest(key),
        defaults={"project_id": project_id, "name": name, "prefix": key[:10]},
    )
    return key


def project_has_keys(project_id: int) -> bool:
    return ApiKey.objects.filter(project_id=project_id, revoked_at__isnull=True).exists()


def authenticate_api_key(raw_key: str) -> ProjectRef | None:
    """The project a key belongs to, or None for an unknown or revoked key."""
    if not raw_key:
        return None
    key = (
        ApiKey.objects.select_related("project")
        .filter(digest=_digest(raw_key), revoked_at__isnull=True)
        .only("id", "last_used_at", "project__id", "project__name")
        .first()
    )
    if key is None:
        return None
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > _LAST_USED_GRANULARITY:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return ProjectRef(id=key.project.id, name=key.project.name)


def revoke_api_key(raw_key: str) -> bool:
    # Saved (not a queryset update) so that the revocation reaches the audit log.
    with transaction.atomic():
        key = (
            ApiKey.objects.select_for_update()
            .filter(digest=_digest(raw_key), revoked_at__isnull=True)
            .first()
        )
        if key is None:
            return False
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return True
