from __future__ import annotations

from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from tracestore.services import create_project, issue_api_key


@dataclass
class Tenant:
    project_id: int
    key: str

    def client(self, header: str = "bearer") -> APIClient:
        client = APIClient()
        if header == "bearer":
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {self.key}")
        else:
            client.credentials(HTTP_X_API_KEY=self.key)
        return client


@pytest.fixture
def tenant() -> Tenant:
    project = create_project("shop")
    return Tenant(project.id, issue_api_key(project.id))


@pytest.fixture
def other_tenant() -> Tenant:
    project = create_project("elsewhere")
    return Tenant(project.id, issue_api_key(project.id))
