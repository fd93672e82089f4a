"""Who may read which projects: the one place pages and the API scope their reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tracestore.contracts import ProjectRef
from tracestore.queries import project_ids_for_user


@dataclass(frozen=True, slots=True)
class ApiKeyPrincipal:
    """The caller of an API request authenticated by a project API key.

    A key authenticates a project, not a person: this stands in for ``request.user`` and
    grants exactly that project.
    """

    project: ProjectRef
    is_authenticated = True
    is_anonymous = False

    @property
    def project_ids(self) -> list[int]:
        return [self.project.id]


def visible_project_ids(user: Any) -> list[int]:
    if isinstance(user, ApiKeyPrincipal):
        return user.project_ids
    if user is None or not user.is_authenticated:
        return []
    return project_ids_for_user(user.pk, user.is_superuser)
