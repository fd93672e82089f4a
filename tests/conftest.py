from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Keep generated state (secret key, broker folders) out of the checkout during tests.
os.environ.setdefault("MICROLENS_HOME", tempfile.mkdtemp(prefix="microlens-test-home-"))

import pytest


@pytest.fixture
def artifacts_dir() -> Path:
    path = Path(__file__).resolve().parent.parent / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path
