"""Every environment variable the code reads is listed in deploy/env.example and README."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_READ = re.compile(
    r"""(?:env_(?:str|bool|int|list)\(|os\.environ\.get\(|os\.environ\[|getenv\()\s*["']"""
    r"""((?:MICROLENS|DATABASE|CELERY|POSTGRES)_[A-Z0-9_]*|DATABASE_URL)["']"""
)


def _variables_read_by_code() -> set[str]:
    names: set[str] = set()
    for package in ("microlens", "tracestore", "evaluators", "dashboard"):
        for path in (ROOT / package).rglob("*.py"):
            names.update(_READ.findall(path.read_text()))
    return names


def test_the_code_reads_the_documented_core_variables() -> None:
    assert {
        "DATABASE_URL",
        "CELERY_BROKER_URL",
        "MICROLENS_SECRET_KEY",
    } <= _variables_read_by_code()


def test_every_variable_the_code_reads_is_in_env_example() -> None:
    documented = set(
        re.findall(r"^([A-Z][A-Z0-9_]+)=", (ROOT / "deploy/env.example").read_text(), re.M)
    )
    missing = sorted(_variables_read_by_code() - documented)
    assert missing == []


def test_every_variable_the_code_reads_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = sorted(name for name in _variables_read_by_code() if f"`{name}`" not in readme)
    assert missing == []
