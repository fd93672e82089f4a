from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from microlens.bootstrap import bootstrap, bootstrap_from_environment
from microlens.credentials import credentials_path, read_credentials
from tracestore.services import authenticate_api_key, revoke_api_key

pytestmark = pytest.mark.django_db

User = get_user_model()


def _stored_keys() -> list[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT prefix, digest FROM tracestore_apikey ORDER BY id")
        return list(cursor.fetchall())


def test_first_start_creates_project_key_and_admin(tmp_path: Path) -> None:
    result = bootstrap(tmp_path)

    assert result.first_start
    assert result.new_api_key is not None
    assert result.new_admin_password is not None
    project = authenticate_api_key(result.new_api_key)
    assert project is not None
    assert (project.id, project.name) == (result.project_id, "default")
    admin = User.objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff and admin.is_active
    assert admin.check_password(result.new_admin_password)
    assert result.api_key_note == result.new_api_key
    assert result.password_note == f"password {result.new_admin_password}"


def test_generated_secrets_are_kept_in_a_private_file(tmp_path: Path) -> None:
    result = bootstrap(tmp_path)

    path = credentials_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {
        "api_key": result.new_api_key,
        "admin_user": "admin",
        "admin_password": result.new_admin_password,
    }


def test_the_api_key_is_stored_as_its_sha256_digest_only(tmp_path: Path) -> None:
    key = bootstrap(tmp_path).new_api_key
    assert key is not None

    [(prefix, digest)] = _stored_keys()
    assert digest == hashlib.sha256(key.encode()).hexdigest()
    assert key not in (prefix, digest)
    assert len(prefix) < len(key) // 2


def test_a_second_start_changes_nothing_and_shows_no_secret(tmp_path: Path) -> None:
    first = bootstrap(tmp_path)
    second = bootstrap(tmp_path)

    assert not second.first_start
    assert second.project_id == first.project_id
    assert second.new_api_key is None and second.new_admin_password is None
    assert second.api_key_note == f"shown on first start (kept in {credentials_path(tmp_path)})"
    assert second.password_note.startswith("password shown on first start")
    assert first.new_api_key not in second.api_key_note
    assert len(_stored_keys()) == 1
    assert User.objects.count() == 1
    assert User.objects.get(username="admin").check_password(first.new_admin_password)


def test_key_password_and_user_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MICROLENS_BOOTSTRAP_API_KEY", "ml_fixed-key-for-scripts-0123456789")
    monkeypatch.setenv("MICROLENS_ADMIN_PASSWORD", "a fixed password 1")
    monkeypatch.setenv("MICROLENS_ADMIN_USER", "ops")

    result = bootstrap_from_environment(tmp_path)

    assert not result.first_start
    assert result.admin_user == "ops"
    assert result.api_key_note == "from MICROLENS_BOOTSTRAP_API_KEY"
    assert result.password_note == "password from MICROLENS_ADMIN_PASSWORD"
    project = authenticate_api_key("ml_fixed-key-for-scripts-0123456789")
    assert project is not None and project.name == "default"
    assert User.objects.get(username="ops").check_password("a fixed password 1")
    assert not User.objects.filter(username="admin").exists()
    # Values given by the environment are never written down.
    assert not credentials_path(tmp_path).exists()


def test_fixed_values_are_applied_again_on_every_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MICROLENS_BOOTSTRAP_API_KEY", "ml_fixed-key-for-scripts-0123456789")
    monkeypatch.setenv("MICROLENS_ADMIN_PASSWORD", "a fixed password 1")
    bootstrap_from_environment(tmp_path)
    monkeypatch.setenv("MICROLENS_ADMIN_PASSWORD", "another password 2")

    bootstrap_from_environment(tmp_path)
    bootstrap_from_environment(tmp_path)

    admin = User.objects.get(username="admin")
    assert admin.check_password("another password 2")
    assert [prefix for prefix, _ in _stored_keys()] == ["ml_fixed-k"]


def test_an_admin_made_before_keeps_its_password(tmp_path: Path) -> None:
    User.objects.create_superuser(username="admin", email="", password="chosen by a human 7")

    result = bootstrap(tmp_path)

    assert result.new_admin_password is None
    assert result.password_note == "password as set before"
    assert User.objects.get(username="admin").check_password("chosen by a human 7")
    assert "admin_password" not in read_credentials(tmp_path)


def test_a_remembered_key_is_registered_again_in_an_empty_database(tmp_path: Path) -> None:
    credentials_path(tmp_path).write_text(json.dumps({"api_key": "ml_remembered-key-123456789"}))

    result = bootstrap(tmp_path)

    assert result.new_api_key is None
    assert result.api_key_note.startswith("shown on first start, registered again")
    assert authenticate_api_key("ml_remembered-key-123456789") is not None


def test_a_revoked_key_is_not_resurrected(tmp_path: Path) -> None:
    old_key = bootstrap(tmp_path).new_api_key
    assert old_key is not None and revoke_api_key(old_key)

    result = bootstrap(tmp_path)

    assert authenticate_api_key(old_key) is None
    assert result.new_api_key is not None and result.new_api_key != old_key
    assert authenticate_api_key(result.new_api_key) is not None
    assert read_credentials(tmp_path)["api_key"] == result.new_api_key
