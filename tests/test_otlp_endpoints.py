"""The dashboard names the OTLP endpoints the stack really serves: `microlens up` passes its
ports (and, unless set, its address) to every process; settings turn them into the
endpoints the empty states show."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from microlens.up import UpOptions, child_environment
from tracestore.services import create_project

REPO = Path(__file__).resolve().parent.parent


def _endpoints(env: dict[str, str]) -> list[str]:
    """The endpoints as settings compute them in a process started with ``env``."""
    code = (
        "from microlens import settings as s;"
        "print(s.MICROLENS_OTLP_GRPC_ENDPOINT); print(s.MICROLENS_OTLP_HTTP_ENDPOINT)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def _base_env(tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "MICROLENS_HOME": str(tmp_path),
        "MICROLENS_SECRET_KEY": "k" * 50,
    }


def test_up_gives_its_children_its_ports_and_address(tmp_path: Path) -> None:
    every_interface = "0.0.0.0"  # noqa: S104 (a bind address under test, nothing binds)
    options = UpOptions(
        home=tmp_path, host=every_interface, web_port=18000, grpc_port=14317, http_port=14318
    )
    env = child_environment(options, {**_base_env(tmp_path), "MICROLENS_ADMIN_PASSWORD": "x"})

    assert env["MICROLENS_GRPC_PORT"] == "14317"
    assert env["MICROLENS_HTTP_PORT"] == "14318"
    assert env["MICROLENS_PUBLIC_URL"] == "http://127.0.0.1:18000"
    assert "MICROLENS_ADMIN_PASSWORD" not in env
    assert _endpoints(env) == ["127.0.0.1:14317", "http://127.0.0.1:14318/v1/traces"]


def test_a_public_url_set_by_the_operator_is_kept_and_names_the_host(tmp_path: Path) -> None:
    options = UpOptions(home=tmp_path, grpc_port=14317, http_port=14318)
    environ = {**_base_env(tmp_path), "MICROLENS_PUBLIC_URL": "https://obs.example.com"}
    env = child_environment(options, environ)

    assert env["MICROLENS_PUBLIC_URL"] == "https://obs.example.com"
    assert _endpoints(env) == ["obs.example.com:14317", "http://obs.example.com:14318/v1/traces"]


def test_explicit_endpoints_win(tmp_path: Path) -> None:
    env = {
        **_base_env(tmp_path),
        "MICROLENS_OTLP_GRPC_ENDPOINT": "otlp.example.com:443",
        "MICROLENS_OTLP_HTTP_ENDPOINT": "https://otlp.example.com/v1/traces",
    }
    assert _endpoints(env) == ["otlp.example.com:443", "https://otlp.example.com/v1/traces"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/", "/overview/", "/cohorts/", "/micro-models/intent-mini/"])
def test_the_empty_states_name_the_configured_endpoints(settings, path: str) -> None:
    settings.MICROLENS_OTLP_GRPC_ENDPOINT = "127.0.0.1:14317"
    settings.MICROLENS_OTLP_HTTP_ENDPOINT = "http://127.0.0.1:14318/v1/traces"
    user = get_user_model().objects.create_user("ana", password="pw-for-tests-1")
    user.projects.add(create_project("shop").id)
    client = Client()
    client.force_login(user)

    html = client.get(path).content.decode()

    assert "<code>127.0.0.1:14317</code>" in html
    assert "<code>http://127.0.0.1:14318/v1/traces</code>" in html
    assert "4317<" not in html.replace("14317<", "")
    assert "localhost:431" not in html
