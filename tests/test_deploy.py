"""The deploy files agree with the code (no Docker engine here to run them)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_every_role_from_one_image_against_postgres_and_redis() -> None:
    services = _compose()["services"]
    assert set(services) == {
        "postgres",
        "redis",
        "migrate",
        "web",
        "receiver",
        "http-receiver",
        "worker",
        "beat",
    }
    roles = {name: svc["command"][0] for name, svc in services.items() if "build" in svc}
    assert roles == {
        "migrate": "migrate",
        "web": "web",
        "receiver": "receiver",
        "http-receiver": "http-receiver",
        "worker": "worker",
        "beat": "beat",
    }
    for name in roles:
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql://")
        assert env["CELERY_BROKER_URL"] == "redis://redis:6379/0"
    ports = {name: services[name].get("ports") for name in ("web", "receiver", "http-receiver")}
    assert ports == {
        "web": ["8000:8000"],
        "receiver": ["4317:4317"],
        "http-receiver": ["4318:4318"],
    }


def test_the_entrypoint_knows_every_role_compose_uses() -> None:
    script = (ROOT / "deploy/entrypoint.sh").read_text()
    handled = set(re.findall(r"^\s{2}([a-z-]+)\)$", script, re.M))
    roles = {svc["command"][0] for svc in _compose()["services"].values() if "build" in svc}
    assert roles <= handled
    syntax = subprocess.run(["sh", "-n", str(ROOT / "deploy/entrypoint.sh")], check=False)
    assert syntax.returncode == 0


def test_the_entrypoint_commands_exist() -> None:
    from django.core.management import get_commands

    commands = get_commands()
    assert {"migrate", "run_receiver", "run_http_receiver", "apply_retention"} <= set(commands)


def test_every_compose_variable_is_documented() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    referenced = set(re.findall(r"\$\{([A-Z_]+)", compose))
    documented = set(
        re.findall(r"^([A-Z][A-Z0-9_]+)=", (ROOT / "deploy/env.example").read_text(), re.M)
    )
    assert referenced == {"POSTGRES_PASSWORD"}
    assert referenced <= documented
