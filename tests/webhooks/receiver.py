"""A real HTTP receiver on 127.0.0.1 for the webhook tests: records every POST, answers
as the test says, and can be stopped and started again on the same port."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook as Verifier


@dataclass
class Request:
    headers: dict[str, str]
    body: bytes
    status: int = 0

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


# (request, how many times this webhook-id was seen before) -> (status, headers)
Answer = Callable[[Request, int], tuple[int, dict[str, str]]]


def ok(_: Request, __: int) -> tuple[int, dict[str, str]]:
    return 200, {}


class Receiver:
    def __init__(self, port: int, secret: str) -> None:
        self.port = port
        self.secret = secret
        self.requests: list[Request] = []
        self.answer: Answer = ok
        self.delay_s = 0.0  # before answering
        self.huge_body = False  # answer with a body of 100 MB
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                request = Request({k.lower(): v for k, v in self.headers.items()},
                                  self.rfile.read(length))
                with receiver.lock:
                    seen = sum(1 for r in receiver.requests if r.id == request.id)
                    receiver.requests.append(request)
                    status, extra = receiver.answer(request, seen)
                    request.status = status
                time.sleep(receiver.delay_s)
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                if receiver.huge_body:
                    self.send_header("content-length", str(100 * 2**20))
                    self.end_headers()
                    chunk = b"x" * 65536
                    for _ in range(1600):
                        self.wfile.write(chunk)  # until the hub hangs up
                    return
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # the hub hung up (a timeout, a kill): nothing to report

        self._server = Server(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def verify(self, request: Request) -> dict[str, Any]:
        """The payload, once the standardwebhooks package has verified its signature."""
        return dict(Verifier(self.secret).verify(request.body, request.headers))

    def accepted(self) -> list[Request]:
        """Each event once, in the order it was first received (2xx answered)."""
        with self.lock:
            requests = list(self.requests)
        seen: set[str] = set()
        out = []
        for r in requests:
            if r.id not in seen and 200 <= r.status < 300:
                seen.add(r.id)
                out.append(r)
        return out

    def wait_for(self, count: Callable[[], int], wanted: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while count() < wanted:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {count()} of {wanted} webhooks arrived")
            time.sleep(0.05)
