"""The embedded default broker (microlens/broker.py) with a real Celery worker process on
real files: messages sent while the worker reads the same folder each run exactly once, and
a message file that does not decode is quarantined while the worker goes on."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from microlens.celery import app
from tests.celery_processes import CeleryProcesses, filesystem_broker, gone, wait_for

pytestmark = pytest.mark.slow

WAIT = 30  # seconds for a worker to run one message (a loaded 2-core machine)
MESSAGES = 1000


@pytest.fixture
def quarantine() -> Path:
    folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["quarantine_folder"])
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*"):
        stale.unlink()
    return folder


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[tuple[CeleryProcesses, Path]]:
    """One worker that runs tests.broker_probe.record; yields it and the file it records to."""
    filesystem_broker()
    probe_log = tmp_path / "recorded.txt"
    probe_log.touch()
    processes = CeleryProcesses(
        tmp_path, {"MICROLENS_TEST_PROBE_LOG": str(probe_log)}, "broker", ["tests.broker_probe"]
    )
    processes.start()
    yield processes, probe_log
    processes.stop_all()


def recorded(probe_log: Path) -> list[int]:
    return [int(line) for line in probe_log.read_text().split()]


def worker_log(processes: CeleryProcesses) -> str:
    return (processes.folder / "worker0.log").read_text(errors="replace")


def send(number: int, queue: str = "default") -> None:
    app.send_task(
        "tests.broker_probe.record", args=[number], kwargs={"padding": "x" * 4000}, queue=queue
    )


def test_messages_written_while_the_worker_reads_the_folder_each_run_exactly_once(
    worker: tuple[CeleryProcesses, Path],
) -> None:
    processes, probe_log = worker
    # Each message is sent once the previous one has run, so the idle worker (listing the
    # folder every millisecond) takes each file as soon as it shows up: with kombu's own
    # transport it often took one still being written (JSONDecodeError, the worker
    # stopped, the message lost).
    for number in range(MESSAGES):
        send(number)
        deadline = time.monotonic() + WAIT
        while len(recorded(probe_log)) <= number and not gone(processes.processes[0]):
            assert time.monotonic() < deadline, f"message {number} not recorded in {WAIT} s"
        if gone(processes.processes[0]):
            break
    counts = Counter(recorded(probe_log))
    assert "JSONDecodeError" not in worker_log(processes)
    assert not gone(processes.processes[0])
    assert sorted(counts) == list(range(MESSAGES))
    assert set(counts.values()) == {1}
    assert "quarantined" not in worker_log(processes)


def test_a_truncated_message_file_is_quarantined_and_the_next_message_runs(
    worker: tuple[CeleryProcesses, Path], quarantine: Path
) -> None:
    processes, probe_log = worker
    queue = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
    # What a crash mid-write (or a full disk) left under kombu's own transport: the first
    # half of a message (sent to a queue no worker reads, to take its file), named so the
    # worker takes it before the next message.
    send(1, queue="held")
    (whole,) = queue.glob("*.held.msg")
    content = whole.read_bytes()
    whole.unlink()
    truncated = queue / f"0_{uuid.uuid4()}.default.msg"
    truncated.write_bytes(content[: len(content) // 2])
    send(2)
    wait_for(lambda: recorded(probe_log), "the message after the truncated one", WAIT)
    assert recorded(probe_log) == [2]
    assert [path.name for path in quarantine.iterdir()] == [truncated.name]
    assert (quarantine / truncated.name).read_bytes() == content[: len(content) // 2]
    assert list(queue.iterdir()) == []
    log = worker_log(processes)
    assert f"file={quarantine / truncated.name} queue=default" in log
    # The message's body is its first field: the cut falls inside that string.
    assert "error=JSONDecodeError: Unterminated string starting at: char 9\n" in log
    assert not gone(processes.processes[0])
