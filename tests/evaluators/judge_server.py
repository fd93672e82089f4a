"""A loopback HTTP server standing in for an OpenAI-compatible judge endpoint."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def verdict(score: float, passed: bool, reason: str = "looks right") -> Reply:
    content = json.dumps({"score": score, "pass": passed, "reason": reason})
    return Reply(body={"choices": [{"message": {"role": "assistant", "content": content}}]})


def content(raw: str) -> Reply:
    return Reply(body={"choices": [{"message": {"role": "assistant", "content": raw}}]})


@dataclass
class JudgeServer:
    url: str
    replies: list[Reply]
    requests: list[dict[str, Any]]
    default: Reply

    def then(self, *replies: Reply) -> None:
        self.replies.extend(replies)


@contextmanager
def judge_server(default: Reply | None = None) -> Iterator[JudgeServer]:
    state = JudgeServer(url="", replies=[], requests=[], default=default or verdict(0.9, True))
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            body = json.loads(self.rfile.read(length))
            with lock:
                state.requests.append(
                    {"path": self.path, "body": body, "auth": self.headers.get("authorization")}
                )
                reply = state.replies.pop(0) if state.replies else state.default
            if reply.delay:
                time.sleep(reply.delay)  # a slow judge, not a test wait
            payload = (
                reply.body.encode()
                if isinstance(reply.body, str)
                else json.dumps(reply.body).encode()
            )
            try:
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
