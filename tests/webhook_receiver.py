"""A real HTTP webhook receiver on loopback, as a tenant would run one: it records what it gets,
answers what the test tells it to, and can verify the Standard Webhooks signature itself (its
own code, not eslchan's), refusing forgeries and replays."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import gevent
from gevent.pywsgi import WSGIServer


@dataclass
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)
    verdict: str = "unchecked"

    @property
    def payload(self) -> dict:
        if self.method == "GET":
            return dict(parse_qsl(self.query))
        return json.loads(self.body)


class Receiver:
    """``status`` (or ``answer(received) -> status``) decides the reply; ``delay`` stalls it."""

    def __init__(self, host: str = "127.0.0.1", secret: str | None = None, tolerance: float = 300.0):
        self.got: list[Received] = []
        self.status = 200
        self.answer = None
        self.delay = 0.0
        self.secret = secret
        self.tolerance = tolerance
        self.seen_ids: set[str] = set()
        self.server = WSGIServer((host, 0), self._app, log=None, error_log=None)

    def start(self) -> Receiver:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop(timeout=1)

    @property
    def port(self) -> int:
        return self.server.server_port

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def accepted(self) -> list[Received]:
        """Requests answered 2xx, in arrival order."""
        return [r for r in self.got if r.verdict == "ok"]

    def verify(self, received: Received) -> str:
        """'ok', or why the request is refused: the signature of ``webhook-id.timestamp.content``
        with the whsec_ key, a timestamp within the tolerance, and an id not seen before."""
        h = received.headers
        msg_id, stamp, signature = h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")
        if not (msg_id and stamp and signature and stamp.isdigit()):
            return "missing headers"
        content = received.query.encode() if received.method == "GET" else received.body
        key = base64.b64decode(self.secret.removeprefix("whsec_"))
        mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + content, hashlib.sha256).digest()
        expected = base64.b64encode(mac).decode()
        if not any(
            v.startswith("v1,") and hmac.compare_digest(v[3:], expected) for v in signature.split(" ")
        ):
            return "bad signature"
        if abs(time.time() - int(stamp)) > self.tolerance:
            return "stale timestamp"
        if msg_id in self.seen_ids:
            return "replayed id"
        self.seen_ids.add(msg_id)
        return "ok"

    def _app(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        received = Received(
            environ["REQUEST_METHOD"], environ["PATH_INFO"], environ.get("QUERY_STRING", ""), headers, body
        )
        self.got.append(received)
        if self.delay:
            gevent.sleep(self.delay)
        status = self.answer(received) if self.answer else self.status
        if self.secret is not None and 200 <= status < 300:
            received.verdict = self.verify(received)
            if received.verdict != "ok":
                status = 401
        else:
            received.verdict = "ok" if 200 <= status < 300 else f"answered {status}"
        start_response(f"{status} X", [("Content-Type", "text/plain")])
        return [b"ok"]
