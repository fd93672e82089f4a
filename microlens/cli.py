"""The ``microlens`` command: ``up`` (the whole stack), ``status``, ``demo``, ``gate``."""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"microlens: {name}={raw!r} is not an integer") from None


def _home(value: str | None) -> Path:
    raw = value or os.environ.get("MICROLENS_HOME") or str(Path.cwd() / ".microlens")
    return Path(raw).expanduser().resolve()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="microlens", description="Observability for micro models."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser(
        "up",
        help="run the whole stack: PostgreSQL, OTLP receivers, web, worker, beat",
        description="Run the whole stack until Ctrl-C or SIGTERM.",
    )
    up.add_argument("--home", help="state folder (MICROLENS_HOME, default ./.microlens)")
    up.add_argument(
        "--host",
        default=os.environ.get("MICROLENS_HOST", "127.0.0.1"),
        help="bind address of every server (MICROLENS_HOST, default 127.0.0.1)",
    )
    up.add_argument(
        "--web-port",
        type=int,
        default=_env_int("MICROLENS_WEB_PORT", 8000),
        help="dashboard, admin and API port (MICROLENS_WEB_PORT, default 8000)",
    )
    up.add_argument(
        "--grpc-port",
        type=int,
        default=_env_int("MICROLENS_GRPC_PORT", 4317),
        help="OTLP gRPC port (MICROLENS_GRPC_PORT, default 4317)",
    )
    up.add_argument(
        "--http-port",
        type=int,
        default=_env_int("MICROLENS_HTTP_PORT", 4318),
        help="OTLP/HTTP port (MICROLENS_HTTP_PORT, default 4318)",
    )
    up.add_argument(
        "--web-workers",
        type=int,
        default=_env_int("MICROLENS_WEB_WORKERS", 2),
        help="gunicorn worker processes (MICROLENS_WEB_WORKERS, default 2)",
    )

    up.add_argument(
        "--receivers",
        type=int,
        default=_env_int("MICROLENS_RECEIVERS", 1),
        help="OTLP receiver processes per protocol, sharing the port (MICROLENS_RECEIVERS, "
        "default 1; one per core helps under load)",
    )

    status = commands.add_parser("status", help="is the stack on this home alive?")
    status.add_argument("--home", help="state folder (MICROLENS_HOME, default ./.microlens)")
    status.add_argument(
        "--json", action="store_true", help="one JSON object instead of text (for scripts)"
    )

    demo = commands.add_parser("demo", help="send sample micro-model traces to a running stack")
    demo.add_argument("--home", help="state folder (MICROLENS_HOME, default ./.microlens)")
    demo.add_argument(
        "--endpoint",
        help="OTLP gRPC address (default: the running stack's, else localhost:4317)",
    )
    demo.add_argument(
        "--api-key",
        help="project API key (default: MICROLENS_BOOTSTRAP_API_KEY, else the credentials file)",
    )
    demo.add_argument("--traces", type=int, default=200, help="how many traces (default 200)")
    demo.add_argument("--seed", type=int, default=None, help="random seed, for repeatable runs")

    gate = commands.add_parser(
        "gate",
        help="release gate for CI: compare two versions of a micro model on a running stack",
        description="Exit 0 when no drop's interval lies wholly beyond --max-drop, 1 when one"
        " does, 2 when there is too little data to say, 3 when the gate could not run.",
    )
    from .gate import add_arguments

    add_arguments(gate)
    return parser


def _gate(options: argparse.Namespace) -> int:
    from .gate import run_from_arguments

    return run_from_arguments(options)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        options = build_parser().parse_args(arguments)
    except SystemExit as exc:
        # The gate's 2 means "too little data": a usage error must not read as that.
        if arguments[:1] == ["gate"] and exc.code == 2:
            return 3
        raise
    if options.command == "gate":
        return _gate(options)
    home = _home(options.home)
    os.environ["MICROLENS_HOME"] = str(home)
    if options.command == "up":
        from .up import UpOptions, run_up

        return run_up(
            UpOptions(
                home=home,
                host=options.host,
                web_port=options.web_port,
                grpc_port=options.grpc_port,
                http_port=options.http_port,
                web_workers=options.web_workers,
                receivers=max(1, options.receivers),
            )
        )
    if options.command == "status":
        return status(home, as_json=options.json)
    if options.command == "demo":
        from .demo import run_demo

        return run_demo(
            home,
            endpoint=options.endpoint,
            traces=options.traces,
            seed=options.seed,
            api_key=options.api_key,
        )
    raise AssertionError(options.command)


def _supervisor_running(home: Path) -> bool:
    lock = home / "run" / "up.lock"
    if not lock.exists():
        return False
    with lock.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ago(wall: float | None) -> str:
    return f"{max(0.0, time.time() - wall):.0f}s ago" if wall else "?"


def status(home: Path, as_json: bool = False) -> int:
    """Print the stack's liveness; exit 0 only when the database answers and the worker's
    heartbeat is fresh. ``as_json``: one object with the same facts (see README)."""
    running = _supervisor_running(home)
    state_file = home / "run" / "up.json"
    state = json.loads(state_file.read_text()) if running and state_file.exists() else {}
    children: dict[str, dict] = state.get("children", {})
    for child in children.values():
        child["alive"] = child.get("pid") is not None and _pid_alive(child["pid"])

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "microlens.settings")
    import django

    django.setup()
    from .health import read_health

    report = read_health()
    worker = report.last_heartbeat("worker")
    healthy = report.database_ok and report.worker_alive
    if as_json:
        print(
            json.dumps(
                {
                    "home": str(home),
                    "ok": healthy,
                    "supervisor": {"running": running, "pid": state.get("pid")},
                    "children": children,
                    "database": {"ok": report.database_ok, "error": report.database_error},
                    "worker": {
                        "alive": report.worker_alive,
                        "heartbeat_age_seconds": round(worker.age_seconds, 3) if worker else None,
                    },
                },
                indent=2,
            )
        )
        return 0 if healthy else 1

    if running:
        print(f"supervisor  running (pid {state.get('pid', '?')}, home {home})")
        for role, child in children.items():
            line = (
                f"  {role:<12} pid {child['pid']} {child['state']}"
                f"{'' if child['alive'] else ' (gone)'}, restarts {child['restarts']}"
            )
            if child.get("last_exit"):
                line += f" (last: {child['last_exit']}, {_ago(child.get('last_exit_at'))})"
            print(line)
    else:
        print(f"supervisor  not running on {home}")
    if not report.database_ok:
        print(f"database    unreachable ({report.database_error})")
        return 1
    print("database    ok")
    if worker is None:
        print("worker      no heartbeat recorded yet")
    else:
        verdict = "alive" if report.worker_alive else "STALE"
        print(
            f"worker      {verdict}: last heartbeat {worker.age_seconds:.1f}s ago "
            f"({worker.hostname}, pid {worker.pid})"
        )
    _print_judges()
    return 0 if healthy else 1


def _print_judges() -> None:
    """The judges that decided the last day's results, with their versions; a fallback
    (the configured judge could not run) is flagged with its reason."""
    from datetime import timedelta

    from django.utils import timezone

    from evaluators.queries import judge_uses

    uses = judge_uses(timezone.now() - timedelta(days=1))
    if not uses:
        print("judges      no results in the last 24 h")
        return
    print("judges      (results of the last 24 h)")
    for use in uses:
        line = f"  {use.evaluator:<16} {use.judge:<16} {use.judge_version or '-':<40} {use.results}"
        if use.fallback:
            line += f"  FALLBACK ({use.fallback})"
        print(line)


if __name__ == "__main__":
    sys.exit(main())
