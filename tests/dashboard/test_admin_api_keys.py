"""The admin's project and API key screens (tracestore/admin.py), through the admin views."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tracestore.models import ApiKey
from tracestore.services import authenticate_api_key, create_project, issue_api_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client() -> Client:
    user = get_user_model().objects.create_superuser("root", password="pw-for-tests-1")
    client = Client()
    client.force_login(user)
    return client


def test_issuing_a_key_shows_it_once_and_it_authenticates(admin_client: Client) -> None:
    project = create_project("shop")

    response = admin_client.post(
        "/admin/tracestore/project/",
        {"action": "issue_key", "_selected_action": [project.id]},
    )
    html = response.content.decode()
    match = re.search(r'<td>shop</td><td><code class="issued-key">(ml_[A-Za-z0-9_-]+)</code>', html)

    assert response.status_code == 200
    assert match, html
    assert "no-store" in response["Cache-Control"]
    # Shown in this answer only: not carried in a cookie, not kept in the session.
    assert all(match[1] not in morsel.value for morsel in response.cookies.values())
    assert match[1] not in str(dict(admin_client.session))
    assert authenticate_api_key(match[1]) == project
    again = admin_client.get("/admin/tracestore/project/").content.decode()
    assert match[1] not in again
    assert match[1] not in admin_client.get("/admin/tracestore/apikey/").content.decode()


def test_the_key_list_shows_the_prefix_never_the_digest(admin_client: Client) -> None:
    project = create_project("shop")
    raw = issue_api_key(project.id)

    listing = admin_client.get("/admin/tracestore/apikey/").content.decode()

    assert raw[:10] in listing
    assert raw not in listing
    assert "digest" not in listing.lower()
    assert admin_client.get("/admin/tracestore/apikey/add/").status_code == 403


def test_revoking_keys_stops_them_authenticating(admin_client: Client) -> None:
    project = create_project("shop")
    raw = issue_api_key(project.id)
    key_id = ApiKey.objects.get().pk

    response = admin_client.post(
        "/admin/tracestore/apikey/",
        {"action": "revoke", "_selected_action": [key_id]},
        follow=True,
    )

    assert "Revoked 1 API key(s)." in response.content.decode()
    assert authenticate_api_key(raw) is None
