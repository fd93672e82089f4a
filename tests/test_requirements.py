"""`bin/microlens up` installs only requirements/base.in: every module the running code
imports must come from it (or from a package it pulls in), not from the test set."""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent
RUNTIME_PACKAGES = ("microlens", "tracestore", "evaluators", "dashboard", "audit")


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(path: Path) -> list[Requirement]:
    found = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            found.append(Requirement(line))
    return found


def _installed_closure(roots: list[Requirement]) -> set[str]:
    """Distribution names (normalised) that installing ``roots`` installs."""
    seen: set[str] = set()
    todo = [(root, frozenset(root.extras)) for root in roots]
    while todo:
        requirement, extras = todo.pop()
        name = _normalised(metadata.distribution(requirement.name).metadata["Name"])
        key = f"{name}[{','.join(sorted(extras))}]"
        if key in seen:
            continue
        seen.add(key)
        for raw in metadata.requires(requirement.name) or []:
            dependency = Requirement(raw)
            environments = [{"extra": extra} for extra in extras] or [{"extra": ""}]
            if dependency.marker is None or any(
                dependency.marker.evaluate(env) for env in environments
            ):
                todo.append((dependency, frozenset(dependency.extras)))
    return {key.split("[", 1)[0] for key in seen}


def _runtime_imports() -> dict[str, list[str]]:
    """Top-level module -> files importing it, outside ``if TYPE_CHECKING:`` blocks."""
    found: dict[str, list[str]] = {}
    for package in RUNTIME_PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            typing_only = {
                id(inner)
                for node in ast.walk(tree)
                if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                for statement in node.body
                for inner in ast.walk(statement)
            }
            for node in ast.walk(tree):
                if id(node) in typing_only:
                    continue
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".", 1)[0]
                    found.setdefault(top, []).append(str(path.relative_to(REPO)))
    return found


def test_every_runtime_import_is_installed_by_the_base_requirements() -> None:
    base = _installed_closure(_requirements(REPO / "requirements" / "base.in"))
    providers = metadata.packages_distributions()
    missing = {}
    for module, files in _runtime_imports().items():
        if module in sys.stdlib_module_names or module in RUNTIME_PACKAGES:
            continue
        distributions = {_normalised(name) for name in providers.get(module, [])}
        if not distributions & base:
            missing[module] = (sorted(distributions), sorted(set(files))[:3])
    assert missing == {}
