"""``$MICROLENS_HOME/credentials``: the secrets bootstrap generated (JSON, mode 0600).

No Django here: ``microlens demo`` reads the API key without touching the database.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def credentials_path(home: Path) -> Path:
    return home / "credentials"


def read_credentials(home: Path) -> dict[str, str]:
    try:
        data = json.loads(credentials_path(home).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def write_credentials(home: Path, data: dict[str, str]) -> None:
    """Replace the file atomically; it is never readable by others, not even briefly."""
    path = credentials_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
    tmp.replace(path)
