"""Authentication: failed logins on the dashboard's /login/ and the admin's /admin/login/ are
throttled per account and per client address (django-axes on the database). After the limit
even the right password is refused with a clear message (429), and the block ends by itself
once the cool-off has passed (the test shortens the cool-off instead of waiting)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

pytestmark = pytest.mark.django_db

LIMIT = 5
PASSWORD = "right-password-for-tests"
LOCKED = "Too many failed logins for this account or from this address"


@pytest.fixture(autouse=True)
def _throttle(settings) -> None:
    settings.AXES_FAILURE_LIMIT = LIMIT
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)


@pytest.fixture
def staff() -> None:
    get_user_model().objects.create_user("ops", password=PASSWORD, is_staff=True)
    get_user_model().objects.create_user("other", password=PASSWORD, is_staff=True)


LOGIN_PAGES = ["/login/", "/admin/login/"]


def _login(client: Client, page: str, username: str, password: str):
    return client.post(page, {"username": username, "password": password, "next": "/"})


def _logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


@pytest.mark.usefixtures("staff")
@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_the_right_password_is_refused_after_too_many_wrong_ones(page: str) -> None:
    client = Client(REMOTE_ADDR="203.0.113.10")
    for _ in range(LIMIT - 1):
        wrong = _login(client, page, "ops", "wrong")
        assert wrong.status_code == 200  # the form again, with its error
    last = _login(client, page, "ops", "wrong")
    right = _login(client, page, "ops", PASSWORD)

    assert last.status_code == 429
    assert right.status_code == 429
    assert LOCKED in right.content.decode()
    assert "0:15:00" in right.content.decode()
    assert not _logged_in(client)


@pytest.mark.usefixtures("staff")
@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_the_lockout_ends_by_itself_after_the_cool_off(page: str, settings) -> None:
    client = Client(REMOTE_ADDR="203.0.113.11")
    for _ in range(LIMIT):
        _login(client, page, "ops", "wrong")
    assert _login(client, page, "ops", PASSWORD).status_code == 429

    # The cool-off has passed (shortened rather than waited for).
    settings.AXES_COOLOFF_TIME = timedelta(microseconds=1)
    after = _login(client, page, "ops", PASSWORD)

    assert after.status_code == 302
    assert _logged_in(client)


@pytest.mark.usefixtures("staff")
def test_one_address_trying_many_accounts_is_blocked_for_every_account() -> None:
    attacker = Client(REMOTE_ADDR="198.51.100.20")
    for i in range(LIMIT):
        _login(attacker, "/login/", f"guess{i}", "wrong")

    refused = _login(attacker, "/login/", "other", PASSWORD)
    elsewhere = _login(Client(REMOTE_ADDR="198.51.100.21"), "/login/", "other", PASSWORD)

    assert refused.status_code == 429
    assert LOCKED in refused.content.decode()
    assert elsewhere.status_code == 302  # the account itself had no failures


@pytest.mark.usefixtures("staff")
def test_one_account_tried_from_many_addresses_is_blocked_from_every_address() -> None:
    for i in range(LIMIT):
        _login(Client(REMOTE_ADDR=f"192.0.2.{i + 1}"), "/admin/login/", "ops", "wrong")

    owner = Client(REMOTE_ADDR="192.0.2.200")
    refused = _login(owner, "/login/", "ops", PASSWORD)
    other_account = _login(owner, "/login/", "other", PASSWORD)

    assert refused.status_code == 429
    assert other_account.status_code == 302


@pytest.mark.usefixtures("staff")
def test_a_successful_login_clears_earlier_failures() -> None:
    client = Client(REMOTE_ADDR="203.0.113.30")
    for _ in range(LIMIT - 1):
        _login(client, "/login/", "ops", "wrong")
    assert _login(client, "/login/", "ops", PASSWORD).status_code == 302
    client.post("/logout/")
    for _ in range(LIMIT - 1):
        _login(client, "/login/", "ops", "wrong")

    assert _login(client, "/login/", "ops", PASSWORD).status_code == 302
