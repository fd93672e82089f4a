"""The embedded PostgreSQL cluster: lifecycle, persistence, recovery after killed runs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from microlens.postgres import EmbeddedPostgres, find_bindir, free_port


@pytest.fixture
def cluster_root() -> Iterator[Path]:
    # Not pytest's tmp_path: under root the cluster belongs to an unprivileged user, who
    # must be able to traverse every parent folder.
    root = Path(tempfile.mkdtemp(prefix="microlens-pg-test-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _query(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(sql)
        return cursor.fetchall() if cursor.description else []


def _wait_until_gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_it_starts_stops_and_keeps_data_across_restarts(cluster_root: Path) -> None:
    first = EmbeddedPostgres(cluster_root)
    url = first.start()
    _query(url, "CREATE TABLE kept (v text)")
    _query(url, "INSERT INTO kept VALUES ('across restarts')")
    assert first.process is not None
    pid = first.process.pid

    first.stop()

    assert _wait_until_gone(pid, timeout=1)
    assert not (cluster_root / "data" / "postmaster.pid").exists()
    with EmbeddedPostgres(cluster_root) as second:
        assert _query(second.url, "SELECT v FROM kept") == [("across restarts",)]


def test_the_server_runs_unprivileged_when_we_are_root(cluster_root: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only meaningful as root")
    with EmbeddedPostgres(cluster_root) as cluster:
        assert cluster.process is not None
        owner = Path(f"/proc/{cluster.process.pid}").stat().st_uid
        assert owner != 0
        assert owner == cluster.account.pw_uid


def test_it_recovers_after_the_server_was_killed(cluster_root: Path) -> None:
    first = EmbeddedPostgres(cluster_root)
    _query(first.start(), "CREATE TABLE survived (v int)")
    assert first.process is not None
    first.process.kill()
    first.process.wait()
    assert (cluster_root / "data" / "postmaster.pid").exists()

    with EmbeddedPostgres(cluster_root) as second:
        assert _query(second.url, "SELECT count(*) FROM survived") == [(0,)]


def test_it_stops_a_server_left_running_by_an_earlier_run(cluster_root: Path) -> None:
    cluster = EmbeddedPostgres(cluster_root)
    cluster.start()
    cluster.stop()
    account = cluster.account

    def demote() -> None:
        os.setsid()
        if account is not None:
            os.setgroups([])
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)

    # A server that outlived its run (no parent-death signal, its own session).
    port = free_port()
    leaked = subprocess.Popen(
        [
            str(find_bindir() / "postgres"),
            *("-D", str(cluster_root / "data"), "-p", str(port)),
            *("-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=demote,
    )
    try:
        leaked_url = cluster.url.replace(f":{cluster.port}/", f":{port}/")
        deadline = time.monotonic() + 30
        while True:
            try:
                _query(leaked_url, "SELECT 1")
                break
            except psycopg.OperationalError:
                assert time.monotonic() < deadline, "the leaked server did not start"
                time.sleep(0.1)

        with EmbeddedPostgres(cluster_root) as recovered:
            assert leaked.wait(timeout=5) == 0  # fast shutdown on our SIGINT
            assert _query(recovered.url, "SELECT 1") == [(1,)]
    finally:
        if leaked.poll() is None:
            leaked.send_signal(signal.SIGQUIT)
            leaked.wait()


def test_a_stale_lock_file_naming_a_live_process_does_not_block_the_start(
    cluster_root: Path,
) -> None:
    cluster = EmbeddedPostgres(cluster_root)
    _query(cluster.start(), "CREATE TABLE kept (v int)")
    assert cluster.process is not None
    lock = (cluster_root / "data" / "postmaster.pid").read_text()
    cluster.process.kill()  # the lock file stays behind
    cluster.process.wait()
    # Its pid now belongs to another process of the cluster's user (pids are reused; in a
    # container soon), which PostgreSQL takes for a server still running.
    account = cluster.account

    def as_cluster_user() -> None:
        if account is not None:
            os.setgroups([])
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)

    other = subprocess.Popen(["sleep", "60"], preexec_fn=as_cluster_user)
    try:
        lines = lock.splitlines()
        (cluster_root / "data" / "postmaster.pid").write_text(
            "\n".join([str(other.pid), *lines[1:]]) + "\n"
        )

        with EmbeddedPostgres(cluster_root) as again:
            assert _query(again.url, "SELECT count(*) FROM kept") == [(0,)]
        assert other.poll() is None  # not ours: left alone
    finally:
        other.kill()
        other.wait()


def test_restart_after_a_crash_recovers_on_the_same_port(cluster_root: Path) -> None:
    cluster = EmbeddedPostgres(cluster_root)
    url = cluster.start()
    _query(url, "CREATE TABLE survived (v int)")
    _query(url, "INSERT INTO survived VALUES (7)")
    # A session whose backend outlives the killed server for a moment.
    session = psycopg.connect(url, autocommit=True)
    assert cluster.process is not None
    killed = cluster.process.pid
    os.kill(killed, signal.SIGKILL)

    assert cluster.restart() == url
    try:
        assert cluster.process is not None and cluster.process.pid != killed
        assert _query(url, "SELECT v FROM survived") == [(7,)]
    finally:
        session.close()
        cluster.stop()
