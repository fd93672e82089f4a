"""The OTLP gRPC receiver process: TraceService + grpc.health.v1 on one port."""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures

import grpc
from django.conf import settings
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from .decode import Limits
from .servicer import CachedAuthenticator, TraceServicer
from .services import authenticate_api_key, store_spans

log = logging.getLogger(__name__)

TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


def build_server(host: str, port: int, workers: int = 8) -> tuple[grpc.Server, int]:
    """A configured, not yet started server; returns it and the bound port."""
    max_bytes = settings.MICROLENS_GRPC_MAX_MESSAGE_BYTES
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="otlp-grpc"),
        # Bounded: past this many RPCs in flight the server refuses instead of queueing.
        maximum_concurrent_rpcs=workers * 4,
        options=[
            ("grpc.max_receive_message_length", max_bytes),
            ("grpc.so_reuseport", 1),
        ],
        compression=None,
    )
    limits = Limits(
        max_value_bytes=settings.MICROLENS_MAX_ATTRIBUTE_VALUE_BYTES,
        max_attributes=settings.MICROLENS_MAX_ATTRIBUTES,
    )
    servicer = TraceServicer(store_spans, CachedAuthenticator(authenticate_api_key), limits)
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind the OTLP gRPC receiver to {host}:{port}")
    for service in ("", TRACE_SERVICE):
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    return server, bound


def serve(host: str, port: int, workers: int = 8, grace: float = 5.0) -> None:
    """Serve until SIGTERM or SIGINT, then finish in-flight exports within ``grace``."""
    server, bound = build_server(host, port, workers)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    log.info("receiver.started protocol=grpc address=%s:%s workers=%s", host, bound, workers)
    stop.wait()
    log.info("receiver.stopping grace=%ss", grace)
    server.stop(grace).wait()
