"""The OTLP gRPC receiver process: TraceService + grpc.health.v1 on one port."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from concurrent import futures

import grpc
from django.conf import settings
from django.db import connections
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from .ingest import ingest_from_settings, tune_garbage_collector
from .servicer import TraceServicer

log = logging.getLogger(__name__)

TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


class Receiver:
    """A started-on-demand gRPC server and the thread pool whose threads hold DB connections."""

    def __init__(
        self, server: grpc.Server, executor: futures.ThreadPoolExecutor, port: int, workers: int
    ):
        self.server = server
        self.executor = executor
        self.port = port
        self.workers = workers

    def start(self) -> None:
        self.server.start()

    def stop(self, grace: float | None = None) -> None:
        self.server.stop(grace).wait()
        # Django connections are per thread: close each pool thread's own connection so
        # the database sees the sessions end now, not when the threads are collected.
        workers = self.executor._max_workers
        barrier = threading.Barrier(workers)

        def close_in_this_thread() -> None:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=5)
            connections.close_all()

        for _ in range(workers):
            self.executor.submit(close_in_this_thread)
        self.executor.shutdown(wait=True)


def build_server(host: str, port: int, workers: int | None = None) -> Receiver:
    """A configured, not yet started receiver bound to ``host:port`` (0 picks a port);
    ``workers`` exports at once (default MICROLENS_INGEST_MAX_IN_FLIGHT)."""
    max_bytes = settings.MICROLENS_GRPC_MAX_MESSAGE_BYTES
    ingest = ingest_from_settings(workers)
    workers = ingest.max_in_flight or 1
    # ``workers`` exports run at once; as many more threads only wait briefly for a slot
    # and then answer UNAVAILABLE (see Ingest), and gRPC itself refuses past twice that.
    # Memory is bounded by those counts times the message size limit.
    threads = workers * 2
    executor = futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="otlp-grpc")
    server = grpc.server(
        executor,
        maximum_concurrent_rpcs=threads * 2,
        options=[
            ("grpc.max_receive_message_length", max_bytes),
            ("grpc.so_reuseport", 1),
        ],
        compression=None,
    )
    servicer = TraceServicer(ingest)
    # The request reaches the servicer as bytes: it is parsed after authentication, and by
    # our parser, so a malformed or too-deep body is INVALID_ARGUMENT or capped, not an
    # opaque "Exception deserializing request" from the gRPC runtime.
    export = grpc.unary_unary_rpc_method_handler(
        servicer.Export,
        request_deserializer=bytes,
        response_serializer=trace_service_pb2.ExportTraceServiceResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(TRACE_SERVICE, {"Export": export}),)
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind the OTLP gRPC receiver to {host}:{port}")
    for service in ("", TRACE_SERVICE):
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    return Receiver(server, executor, bound, workers)


def serve(host: str, port: int, workers: int | None = None, grace: float = 5.0) -> None:
    """Serve until SIGTERM or SIGINT, then finish in-flight exports within ``grace``."""
    receiver = build_server(host, port, workers)
    tune_garbage_collector()
    # A plain list, not threading.Event: Event.set() takes a lock, and a handler that
    # interrupts the main thread while it holds that lock inside Event.wait() deadlocks.
    stop_requested: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, _frame: stop_requested.append(signum))
    receiver.start()
    log.info(
        "receiver.started protocol=grpc address=%s:%s workers=%s",
        host,
        receiver.port,
        receiver.workers,
    )
    while not stop_requested:
        time.sleep(0.2)  # a signal cuts the sleep short
    log.info("receiver.stopping grace=%ss", grace)
    receiver.stop(grace)
