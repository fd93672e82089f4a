"""Real Celery worker and beat processes for the integration tests.

They run ``celery -A microlens`` against the test database and kombu's filesystem broker,
each in a session of its own (so a SIGKILL takes the whole process group, as a crash
would). At the end every one is stopped, the tests fail if any process is left, and their
logs are printed, which pytest shows only for a test that failed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def database_url() -> str:
    db = connection.settings_dict
    return f"postgresql://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def filesystem_broker() -> Path:
    """kombu's filesystem broker folders, created and emptied; returns the queue folder."""
    assert settings.CELERY_BROKER_URL == "filesystem://"
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    for key in ("data_folder_in", "processed_folder", "control_folder"):
        Path(options[key]).mkdir(parents=True, exist_ok=True)
    queue = Path(options["data_folder_in"])
    for stale in queue.glob("*"):
        stale.unlink()
    return queue


def wait_for(condition: Callable[[], object], what: str, timeout: float) -> object:
    """Poll ``condition`` every 0.1 s until it returns something true, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.1)


def gone(process: subprocess.Popen) -> bool:
    """The process and every process of its group (session) have exited."""
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return True
    return False


def kill(process: subprocess.Popen) -> None:
    """SIGKILL the process's whole group, as a crash or the OOM killer would."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


class CeleryProcesses:
    """Starts ``worker`` and ``beat`` processes with ``env`` added to this environment
    (plus the test database, and without CELERY_BROKER_URL: the settings' filesystem
    broker), logging to ``folder``."""

    def __init__(
        self, folder: Path, env: Mapping[str, str], name: str, include: Sequence[str] = ()
    ) -> None:
        self.folder = folder
        self.name = name
        self.include = include
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "DJANGO_SETTINGS_MODULE": "microlens.settings",
            "MICROLENS_DB_CONN_MAX_AGE": "0",
            **env,
        }
        self.env.pop("CELERY_BROKER_URL", None)
        self.processes: list[subprocess.Popen] = []

    def start(self, role: str = "worker") -> subprocess.Popen:
        n = len(self.processes)
        if role == "worker":
            args = [
                *("worker", "--pool=solo", "--concurrency=1", "--without-heartbeat"),
                *("--without-gossip", "--without-mingle", "-n", f"{self.name}{n}@%h"),
                *([f"--include={','.join(self.include)}"] if self.include else []),
            ]
        else:
            args = ["beat", "-s", str(self.folder / "celerybeat-schedule")]
        with (self.folder / f"{role}{n}.log").open("w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "microlens", *args, "-l", "info"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        """SIGTERM every group still running, SIGKILL those that do not stop, print the
        logs, and fail if any process is left."""
        for process in self.processes:
            if not gone(process):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        deadline = time.monotonic() + 20
        while not all(gone(p) for p in self.processes) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [p.pid for p in self.processes if not gone(p)]
        for pid in left:
            os.killpg(pid, signal.SIGKILL)
        for path in sorted(self.folder.glob("*.log")):
            lines = path.read_text(errors="replace").splitlines()
            print(f"== {path.name} (last {min(len(lines), 80)} of {len(lines)} lines)")
            print("\n".join(lines[-80:]))
        assert left == [], f"worker or beat process groups left running: {left}"
