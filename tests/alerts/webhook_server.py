"""A local webhook receiver (http.server on a thread, loopback): records every request,
processes each idempotency key once (as a receiver that drops repeats does), and answers
from a script of replies (status, headers, delay).

``webhook_server(accepting=False)`` starts with its door shut: the listening socket's
accept queue is full, so a client's connection attempt waits in the kernel (its SYN is
dropped) and nothing reaches the receiver until ``open()``."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Received:
    idempotency_key: str
    body: dict[str, Any]


class WebhookServer:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        # The requests a receiver that drops repeated idempotency keys acts on.
        self.processed: list[Received] = []
        self._script: list[Reply] = []
        self._lock = threading.Lock()
        self.url = ""
        self.open: Callable[[], None] = lambda: None

    def then(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def record(self, received: Received) -> Reply:
        with self._lock:
            self.requests.append(received)
            if received.idempotency_key not in self.keys(self.processed):
                self.processed.append(received)
            return self._script.pop(0) if self._script else Reply()

    def keys(self, requests: list[Received] | None = None) -> set[str]:
        return {r.idempotency_key for r in (self.requests if requests is None else requests)}


@contextmanager
def webhook_server(*, accepting: bool = True) -> Iterator[WebhookServer]:
    state = WebhookServer()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            reply = state.record(Received(self.headers.get("Idempotency-Key", ""), body))
            if reply.delay:
                time.sleep(reply.delay)  # the receiver is slow, not the test waiting
            try:
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:
                pass  # the sender is gone (killed mid-request)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    address = server.server_address
    state.url = f"http://127.0.0.1:{address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    filler: socket.socket | None = None
    if not accepting:
        # Backlog 0 queues one connection: the filler takes that place and is never
        # accepted, so the kernel drops every further SYN (the client keeps retrying).
        server.socket.listen(0)
        filler = socket.create_connection(address, timeout=5)

    def open_door() -> None:
        nonlocal filler
        if filler is not None:
            filler.close()  # accepted by serve_forever, it reads an empty request
            filler = None
            server.socket.listen(16)
            thread.start()

    state.open = open_door
    if accepting:
        thread.start()
    try:
        yield state
    finally:
        if filler is not None:
            filler.close()
        if thread.is_alive():
            server.shutdown()
        server.server_close()
