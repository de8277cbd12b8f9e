"""A Slack Web API stand-in on 127.0.0.1 for the real ``slack_sdk`` client.

Usage::

    with SlackStub() as stub:
        stub.respond(rate_limited(retry_after=1), OK)   # first call 429, then 200
        os.environ["SLACK_API_URL"] = stub.url
        ...
        stub.wait_for_messages(1)
        assert stub.messages[0]["channel"] == "#alerts"
"""

from __future__ import annotations

import json
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from loopback_server import LoopbackServer


@dataclass(frozen=True)
class Response:
    status: int = 200
    body: dict[str, Any] = field(default_factory=lambda: {"ok": True})
    headers: dict[str, str] = field(default_factory=dict)


OK = Response()
INVALID_AUTH = Response(200, {"ok": False, "error": "invalid_auth"})


def rate_limited(retry_after: int = 1) -> Response:
    return Response(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)})


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    params: dict[str, Any]
    status: int
    accepted: bool


class SlackStub(LoopbackServer):
    """Records every Slack API call; answers from a programmable queue, then ``default``."""

    def __init__(self, default: Response = OK):
        self.default = default
        self.requests: list[Request] = []
        self._queue: list[Response] = []
        super().__init__(self._handler())

    @property
    def url(self) -> str:
        return f"{self.base_url}/api/"

    def respond(self, *responses: Response) -> None:
        """Answer the next calls with these responses, in order."""
        with self._lock:
            self._queue.extend(responses)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Parameters of the ``chat.postMessage`` calls the stub accepted (200, ``ok: true``)."""
        return [r.params for r in self.post_attempts if r.accepted]

    @property
    def post_attempts(self) -> list[Request]:
        return [r for r in self.requests if r.path.endswith("/chat.postMessage")]

    def wait_for_requests(self, count: int, timeout_s: float = 15.0) -> list[Request]:
        deadline = time.monotonic() + timeout_s
        while len(self.post_attempts) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.post_attempts

    def _next_response(self) -> Response:
        with self._lock:
            return self._queue.pop(0) if self._queue else self.default

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                if "json" in (self.headers.get("Content-Type") or ""):
                    params = json.loads(raw or "{}")
                else:
                    params = {k: v[0] for k, v in urllib.parse.parse_qs(raw).items()}
                response = stub._next_response()
                stub.requests.append(
                    Request(
                        "POST",
                        self.path,
                        dict(self.headers),
                        params,
                        response.status,
                        response.status == 200 and bool(response.body.get("ok")),
                    )
                )
                body = json.dumps(response.body).encode()
                self.send_response(response.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        return Handler
