from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tracestore.contracts import ProjectRef
from tracestore.services import create_project


@pytest.fixture
def project() -> ProjectRef:
    return create_project("shop")


@pytest.fixture
def member(project: ProjectRef):
    user = get_user_model().objects.create_user("ana", password="pw-for-tests-1")
    user.projects.add(project.id)
    return user


@pytest.fixture
def member_client(member) -> Client:
    client = Client()
    client.force_login(member)
    return client
