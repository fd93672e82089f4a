from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.management.base import BaseCommand

import tracestore

if TYPE_CHECKING:
    from tracestore.http_receiver import OtlpHttpApp


def create_app(max_in_flight: int | None = None) -> OtlpHttpApp:
    """gunicorn's entry point, called in each worker after the fork, so no database
    connection crosses it."""
    import django

    django.setup()
    from tracestore.http_receiver import build_app
    from tracestore.ingest import tune_garbage_collector

    app = build_app(max_in_flight)
    tune_garbage_collector()
    return app


class Command(BaseCommand):
    help = (
        "Run the OTLP/HTTP receiver (POST /v1/traces) under gunicorn with gthread workers. "
        "Several receivers may share one port (SO_REUSEPORT)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=4318)
        parser.add_argument("--workers", type=int, default=2, help="processes")
        parser.add_argument(
            "--threads",
            type=int,
            default=0,
            help="exports at once per process (twice as many request threads; default "
            "MICROLENS_INGEST_MAX_IN_FLIGHT)",
        )
        parser.add_argument(
            "--backlog", type=int, default=512, help="connections waiting to be accepted"
        )
        parser.add_argument(
            "--connections",
            type=int,
            default=0,
            help="open connections per process, kept-alive included (default 16 x threads)",
        )
        parser.add_argument("--keep-alive", type=int, default=5, help="seconds")
        parser.add_argument("--timeout", type=int, default=60, help="worker heartbeat, seconds")
        parser.add_argument("--graceful-timeout", type=int, default=10, help="seconds")

    def handle(self, *args, **options) -> None:
        argv = gunicorn_argv(**options)
        # Replace this process: gunicorn's arbiter gets the signals (SIGTERM, SIGHUP) and
        # the pid a supervisor knows.
        os.execv(sys.executable, argv)  # noqa: S606 (argv is ours, no shell involved)


def gunicorn_argv(
    *,
    host: str,
    port: int,
    workers: int,
    threads: int,
    backlog: int,
    connections: int,
    keep_alive: int,
    timeout: int,
    graceful_timeout: int,
    **_: object,
) -> list[str]:
    # Bounded everywhere: `threads` exports decode or write at once per process (Ingest's
    # admission), as many more request threads wait briefly for one of them and then answer
    # 503 (as the gRPC receiver does), at most `connections` are open per process,
    # `backlog` more wait in the kernel, the rest are refused, so exporters back off and
    # retry instead of the receiver queueing without limit.
    threads = threads or settings.MICROLENS_INGEST_MAX_IN_FLIGHT
    connections = connections or threads * 16
    return [
        sys.executable,
        "-m",
        "gunicorn",
        # This module, not tracestore.http_receiver: that one imports models, which needs
        # Django set up first, and gunicorn imports the module before calling the factory.
        f"{__name__}:create_app({int(threads)})",
        "--pythonpath",
        str(Path(tracestore.__file__).resolve().parent.parent),
        "--worker-class",
        "gthread",
        "--workers",
        str(workers),
        "--threads",
        str(threads * 2),
        "--worker-connections",
        str(max(connections, threads + 1)),
        "--backlog",
        str(backlog),
        "--bind",
        f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "--reuse-port",
        "--keep-alive",
        str(keep_alive),
        "--timeout",
        str(timeout),
        "--graceful-timeout",
        str(graceful_timeout),
        # Several receivers on one host must not fight over gunicorn's default control
        # socket path.
        "--no-control-socket",
        "--error-logfile",
        "-",
        "--log-level",
        "info",
    ]
