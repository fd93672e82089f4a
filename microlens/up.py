"""``microlens up``: the whole stack in one command.

Order of start: lock the home -> database (``DATABASE_URL`` or the embedded cluster) ->
broker folders -> migrate -> bootstrap -> children (receivers, web, worker, beat) ->
readiness (gRPC health SERVING, OTLP/HTTP answers, ``/healthz`` 200) -> banner.
Order of stop: children (SIGTERM, SIGKILL after a grace period), then PostgreSQL, then
the run files.

While it runs, ``up`` supervises: a child that dies is restarted after a delay that doubles
with each failure in a row (0.5, 1, 2, 4 s; capped at 30 s) while the others keep serving;
the embedded PostgreSQL likewise (crash recovery, same port, so the children's URL stays valid; the
receivers answer UNAVAILABLE meanwhile and reconnect by themselves); a missing broker
folder is recreated. A child (or the database) that fails 5 times in a row, each within
60 s of its start, is broken rather than unlucky: ``up`` then stops everything and exits 1
with the reason, instead of serving on with a part missing. Only SIGINT/SIGTERM stop it
otherwise.

Files under ``MICROLENS_HOME``::

    postgres/             the embedded cluster (owned by an unprivileged user under root;
                          a link to /var/lib/microlens/clusters/... when that user cannot
                          reach this folder, see postgres.cluster_root_for)
    broker/queue|processed|control  kombu's filesystem transport (microlens/broker.py)
    broker/quarantine     message files that did not decode (created when needed)
    credentials           generated API key and admin password (0600), see bootstrap.py
    run/up.lock           flock held while an ``up`` runs on this home
    run/up.json           addresses, and per child (postgres included) pid, state and
                          restarts, rewritten on every change (for ``status``)
    run/database_url      the embedded cluster's URL for other shells (0600)
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING

from .credentials import credentials_path
from .supervisor import RestartPolicy, Restarts, StopFlag, Supervisor, describe_exit

if TYPE_CHECKING:
    from .bootstrap import BootstrapResult
    from .postgres import EmbeddedPostgres

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Secrets `up` consumes itself; children do not need them in their environment.
_BOOTSTRAP_ONLY_VARIABLES = ("MICROLENS_ADMIN_PASSWORD", "MICROLENS_BOOTSTRAP_API_KEY")


@dataclass(frozen=True)
class UpOptions:
    home: Path
    host: str = "127.0.0.1"
    web_port: int = 8000
    grpc_port: int = 4317
    http_port: int = 4318
    web_workers: int = 2
    # OTLP receiver processes per protocol, sharing their port through SO_REUSEPORT:
    # decoding is CPU-bound Python, so one per core is what helps.
    receivers: int = 1
    ready_timeout: float = 90.0
    stop_grace: float = 8.0
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)


class StartupError(RuntimeError):
    """The stack could not start; the message says why."""


class _Interrupted(BaseException):
    """SIGINT/SIGTERM during preparation. BaseException: Django's ``except Exception``
    blocks must not swallow it."""


def connect_host(host: str) -> str:
    """Where a client on this machine reaches a server bound to ``host``."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def child_environment(options: UpOptions, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of every process `up` starts: its own, less the secrets only `up`
    consumes, plus where this stack lives and listens, so the dashboard names the ports
    and address it really serves (where it tells apps to send traces, links in alerts)."""
    env = {key: value for key, value in environ.items() if key not in _BOOTSTRAP_ONLY_VARIABLES}
    env.update(
        PYTHONUNBUFFERED="1",
        DJANGO_SETTINGS_MODULE="microlens.settings",
        MICROLENS_HOME=str(options.home),
        MICROLENS_GRPC_PORT=str(options.grpc_port),
        MICROLENS_HTTP_PORT=str(options.http_port),
    )
    if not env.get("MICROLENS_PUBLIC_URL"):
        web = host_port(connect_host(options.host), options.web_port)
        env["MICROLENS_PUBLIC_URL"] = f"http://{web}"
    return env


def run_dir(home: Path) -> Path:
    return home / "run"


@contextlib.contextmanager
def _home_lock(home: Path) -> Iterator[None]:
    path = run_dir(home) / "up.lock"
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StartupError(
                f"another `microlens up` is running with MICROLENS_HOME={home}; stop it first"
            ) from None
        yield


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    tmp.replace(path)


_BROKER_FOLDERS = ("broker/queue", "broker/processed", "broker/control")


def _prepare_home(options: UpOptions) -> None:
    for folder in ("run", *_BROKER_FOLDERS):
        (options.home / folder).mkdir(parents=True, exist_ok=True)


def _recreate_broker_folders(home: Path) -> list[Path]:
    """kombu's filesystem transport fails while its folders are missing: recreate them."""
    if os.environ.get("CELERY_BROKER_URL"):
        return []
    missing = [home / folder for folder in _BROKER_FOLDERS if not (home / folder).is_dir()]
    for folder in missing:
        folder.mkdir(parents=True, exist_ok=True)
    return missing


def _child_argv(options: UpOptions) -> dict[str, list[str]]:
    python = sys.executable
    schedule = run_dir(options.home) / "celerybeat-schedule"
    grpc_receiver = [
        *(python, "-m", "django", "run_receiver"),
        *("--host", options.host, "--port", str(options.grpc_port)),
    ]
    receivers = {
        "receiver" if n == 1 else f"receiver-{n}": grpc_receiver
        for n in range(1, options.receivers + 1)
    }
    return {
        **receivers,
        "http-receiver": [
            *(python, "-m", "django", "run_http_receiver"),
            *("--host", options.host, "--port", str(options.http_port)),
            *("--workers", str(options.receivers), "--graceful-timeout", "5"),
        ],
        "web": [
            *(python, "-m", "gunicorn", "microlens.wsgi:application"),
            *("--bind", host_port(options.host, options.web_port)),
            *("--workers", str(options.web_workers), "--graceful-timeout", "5"),
            *("--access-logfile", "-", "--no-control-socket"),
        ],
        # solo pool: one process, so the parent-death signal covers all of it (prefork's
        # pool children would not carry it) and a warm shutdown is one task away.
        "worker": [
            *(python, "-m", "celery", "-A", "microlens", "worker"),
            *("--pool=solo", "--concurrency=1", "-l", "info", "-n", "worker@%h"),
            *("--without-gossip", "--without-mingle"),
        ],
        "beat": [
            *(python, "-m", "celery", "-A", "microlens", "beat"),
            *("-s", str(schedule), "-l", "info"),
        ],
    }


def _check_ports_free(host: str, ports: dict[str, int]) -> None:
    """Fail fast on a taken port. The receivers bind with SO_REUSEPORT (several may share a
    port behind one address), so a second stack would otherwise start *beside* the first
    and split its traffic; this probe does not set SO_REUSEPORT and so does collide."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for role, port in ports.items():
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise StartupError(
                    f"cannot use {host_port(host, port)} for {role}: {exc.strerror}; "
                    "stop what uses it or choose another port (see `microlens up --help`)"
                ) from None


def _grpc_serving(target: str) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=1.0
            )
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def _http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:  # noqa: S310 (our own URL)
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


class Up:
    def __init__(self, options: UpOptions, out: IO[str] | None = None) -> None:
        self.options = options
        self.out = out or sys.stdout
        # Set from signal handlers, so not threading.Event (see StopFlag).
        self.stopping = StopFlag()
        self.hurry = StopFlag()
        self.preparing = True
        self.postgres: EmbeddedPostgres | None = None
        self.supervisor: Supervisor | None = None
        self.postgres_restarts: Restarts | None = None
        self.database_url_file = run_dir(options.home) / "database_url"
        self.state_file = run_dir(options.home) / "up.json"

    def say(self, message: str) -> None:
        self.out.write(f"[microlens] {message}\n")
        self.out.flush()

    # -- signals ---------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping.is_set():
            self.hurry.set()  # a second Ctrl-C: do not wait for graceful stops
            return
        self.stopping.set()
        self.say(f"{signal.Signals(signum).name} received, stopping")
        if self.preparing:
            raise _Interrupted

    # -- run ---------------------------------------------------------------------------

    def run(self) -> int:
        options = self.options
        os.environ["MICROLENS_HOME"] = str(options.home)
        _prepare_home(options)
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            with _home_lock(options.home):
                return self._run_locked()
        except StartupError as exc:
            self.say(f"error: {exc}")
            return 1
        except _Interrupted:
            return 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _run_locked(self) -> int:
        try:
            banner = self._prepare()
            self.preparing = False
            if self.stopping.is_set():
                return 0
            return self._supervise(banner)
        finally:
            self.preparing = False
            self._shutdown()

    def _prepare(self) -> list[str]:
        _check_ports_free(
            self.options.host,
            {
                "web": self.options.web_port,
                "OTLP gRPC": self.options.grpc_port,
                "OTLP/HTTP": self.options.http_port,
            },
        )
        if os.environ.get("DATABASE_URL"):
            self.say("database: DATABASE_URL")
        else:
            from .postgres import EmbeddedPostgres, EmbeddedPostgresError, cluster_root_for

            try:
                self.postgres = EmbeddedPostgres(cluster_root_for(self.options.home))
                self.say(f"database: embedded PostgreSQL in {self.postgres.data_dir}")
                url = self.postgres.start()
            except EmbeddedPostgresError as exc:
                raise StartupError(str(exc)) from exc
            self.postgres_restarts = Restarts(self.options.restart_policy)
            os.environ["DATABASE_URL"] = url
            _write_private(self.database_url_file, url + "\n")
        broker = os.environ.get("CELERY_BROKER_URL") or "filesystem://"
        self.say(f"broker: {broker.split('://', 1)[0]}://")

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "microlens.settings")
        import django
        from django.core import checks
        from django.core.management import call_command
        from django.db import connections

        django.setup()
        from django.conf import settings

        from .bootstrap import bootstrap_from_environment

        # whitenoise serves from finders, but warns on every request without this folder.
        Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)

        migrations = io.StringIO()
        call_command("migrate", interactive=False, verbosity=1, stdout=migrations)
        for line in migrations.getvalue().splitlines():
            if line.strip().startswith("Applying"):
                self.say(f"migrate: {line.strip()}")
        # Stored configuration this version no longer uses (a judge's key variable without
        # the MICROLENS_JUDGE_ prefix) is reported, not fatal.
        for message in checks.run_checks(databases=["default"], tags=[checks.Tags.database]):
            if message.level >= checks.WARNING:
                self.say(f"check: {message}")
        result = bootstrap_from_environment(self.options.home)
        # The supervisor holds no connection while it only watches children.
        connections.close_all()
        return self._banner(result)

    def _banner(self, result: BootstrapResult) -> list[str]:
        host = connect_host(self.options.host)
        web = f"http://{host_port(host, self.options.web_port)}"
        lines = [
            f"  dashboard   {web}/",
            f"  admin       {web}/admin/   user {result.admin_user!r}, {result.password_note}",
            f"  API         {web}/api/v1/",
            f"  OTLP gRPC   {host_port(host, self.options.grpc_port)}"
            "   (header: authorization: Bearer <API key>)",
            f"  OTLP/HTTP   http://{host_port(host, self.options.http_port)}/v1/traces",
            f"  API key     {result.api_key_note}",
        ]
        if result.first_start:
            lines.append(
                "  generated secrets are shown on this first start only; they are kept in "
                f"{credentials_path(self.options.home)} (mode 0600)"
            )
        return lines

    def _supervise(self, banner: list[str]) -> int:
        options = self.options
        env = child_environment(options, os.environ)
        supervisor = self.supervisor = Supervisor(
            env=env,
            cwd=PROJECT_ROOT,
            out=self.out,
            grace_seconds=options.stop_grace,
            policy=options.restart_policy,
            before_start=self._check_broker_folders,
        )
        for role, argv in _child_argv(options).items():
            child = supervisor.spawn(role, argv)
            self.say(f"started {role} (pid {child.pid})")
        self._write_state(supervisor)

        probes = self._readiness_probes()
        deadline = time.monotonic() + options.ready_timeout
        while not self.stopping.is_set():
            problem = self._tick(supervisor)
            if problem is not None:
                self.say(f"{problem}; stopping everything")
                return 1
            if probes:
                for name, probe in list(probes.items()):
                    if probe():
                        del probes[name]
                if not probes:
                    self.say("microlens is up")
                    for line in banner:
                        self.out.write(line + "\n")
                    self.out.flush()
                elif time.monotonic() > deadline:
                    self.say(
                        f"not ready after {options.ready_timeout:.0f}s: {', '.join(probes)}; "
                        "stopping everything"
                    )
                    return 1
            self.stopping.wait(0.2)
        return 0

    def _check_broker_folders(self) -> None:
        for folder in _recreate_broker_folders(self.options.home):
            self.say(f"broker folder {folder} was missing; recreated it")

    def _tick(self, supervisor: Supervisor) -> str | None:
        """One round of supervision; why to give up, if it is time to."""
        self._check_broker_folders()
        changed, given_up = supervisor.tick()
        if given_up is not None:
            self._write_state(supervisor)
            return f"{given_up.role} keeps failing (last: {given_up.restarts.last_exit})"
        problem, postgres_changed = self._tick_postgres()
        if changed or postgres_changed:
            self._write_state(supervisor)
        return problem

    def _tick_postgres(self) -> tuple[str | None, bool]:
        postgres, restarts = self.postgres, self.postgres_restarts
        if postgres is None or restarts is None:
            return None, False
        from .postgres import EmbeddedPostgresError

        now = time.monotonic()
        if restarts.restart_at is None:
            # (No process only while a restart is pending: a failed start sets one.)
            if postgres.process is None or postgres.process.poll() is None:
                return None, False
            exit_ = describe_exit(postgres.process.returncode)
            return self._postgres_exited(postgres, restarts, exit_, now), True
        if not restarts.due(now):
            return None, False
        self.say(f"restarting PostgreSQL (restart {restarts.count + 1})")
        try:
            postgres.restart(abort=self.stopping.is_set)
        except EmbeddedPostgresError as exc:
            if self.stopping.is_set():
                return None, True
            restarts.started(time.monotonic(), restart=True)
            reason = str(exc).splitlines()[0]
            problem = self._postgres_exited(
                postgres, restarts, f"could not start: {reason}", time.monotonic()
            )
            return problem, True
        restarts.started(time.monotonic(), restart=True)
        # start() leaves a running process or raises; should stop() have run meanwhile,
        # the line goes without a pid rather than stopping the supervisor.
        process = postgres.process
        pid = f"pid {process.pid}, " if process is not None else ""
        self.say(f"PostgreSQL is back ({pid}restart {restarts.count})")
        return None, True

    def _postgres_exited(
        self, postgres: EmbeddedPostgres, restarts: Restarts, description: str, now: float
    ) -> str | None:
        delay = restarts.exited(description, now)
        if delay is None:
            return f"PostgreSQL keeps failing (last: {description})"
        self.say(
            f"PostgreSQL {description}; the receivers answer UNAVAILABLE until it is back; "
            f"restarting it in {delay:g}s (see {postgres.log_file})"
        )
        return None

    def _readiness_probes(self) -> dict[str, Callable[[], bool]]:
        host = connect_host(self.options.host)
        grpc_target = host_port(host, self.options.grpc_port)
        healthz = f"http://{host_port(host, self.options.web_port)}/healthz"
        otlp_http = f"http://{host_port(host, self.options.http_port)}/v1/traces"
        return {
            "receiver (gRPC health)": lambda: _grpc_serving(grpc_target),
            # The receiver answers GET with 405: an answer from the app, so it serves.
            "http-receiver (GET /v1/traces)": lambda: _http_status(otlp_http) == 405,
            "web (/healthz)": lambda: _http_status(healthz) == 200,
        }

    def _write_state(self, supervisor: Supervisor) -> None:
        children = {
            child.role: child.restarts.as_dict(child.pid, child.poll() is None)
            for child in supervisor.children
        }
        if self.postgres is not None and self.postgres_restarts is not None:
            process = self.postgres.process
            alive = process is not None and process.poll() is None
            children["postgres"] = self.postgres_restarts.as_dict(
                process.pid if process else None, alive
            )
        state = {
            "pid": os.getpid(),
            "home": str(self.options.home),
            "host": self.options.host,
            "web_port": self.options.web_port,
            "grpc_port": self.options.grpc_port,
            "http_port": self.options.http_port,
            "children": children,
        }
        _write_private(self.state_file, json.dumps(state, indent=2) + "\n")

    def _shutdown(self) -> None:
        if self.supervisor is not None:
            self.say("stopping children")
            self.supervisor.stop(self.hurry)
        if self.postgres is not None:
            self.say("stopping PostgreSQL")
            self.postgres.stop(timeout=3.0 if self.hurry.is_set() else 15.0)
            self.database_url_file.unlink(missing_ok=True)
        self.state_file.unlink(missing_ok=True)
        self.say("stopped")


def run_up(options: UpOptions) -> int:
    return Up(options).run()
