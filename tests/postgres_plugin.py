"""Starts a real PostgreSQL for the test session when DATABASE_URL is not set.

Loaded with ``-p tests.postgres_plugin`` so it runs before pytest-django reads the
settings. The cluster lives in a temporary folder (reachable by the unprivileged user
that owns it when the suite runs as root) and is stopped when the session ends.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from microlens.postgres import EmbeddedPostgres


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser, args) -> None:
    # Keep generated state (secret key, broker folders, static root) out of the checkout.
    if "MICROLENS_HOME" not in os.environ:
        home = Path(tempfile.mkdtemp(prefix="microlens-test-home-"))
        (home / "static").mkdir()
        os.environ["MICROLENS_HOME"] = str(home)
        early_config.add_cleanup(lambda: shutil.rmtree(home, ignore_errors=True))
    if os.environ.get("DATABASE_URL"):
        return
    root = Path(tempfile.mkdtemp(prefix="microlens-test-pg-"))
    root.chmod(0o755)
    os.environ["MICROLENS_PG_FSYNC"] = "off"
    cluster = EmbeddedPostgres(root)
    os.environ["DATABASE_URL"] = cluster.start()

    def stop() -> None:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)

    early_config.add_cleanup(stop)
