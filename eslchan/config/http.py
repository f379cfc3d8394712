"""``[http]``: where the REST API listens and how much it accepts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from eslchan.config.reader import Reader


@dataclass(frozen=True)
class HttpConfig:
    listen: str = "127.0.0.1:8000"
    max_body_bytes: int = 64 * 1024
    drain_seconds: float = 10.0
    #: an event-stream client that takes longer than this to accept a write is dropped
    stream_write_timeout: float = 10.0
    #: unauthenticated /health shows node details (address, errors, counts), not only states
    health_details: bool = False
    #: event-stream messages kept for clients that reconnect with Last-Event-ID (single
    #: process; in cluster mode the shared stream is the history), at most this many ...
    event_history: int = 10_000
    #: ... and for at most this long after the last stream of the instance closed
    event_history_seconds: float = 300.0

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])


def parse_http(r: Reader, data: Any) -> HttpConfig:
    h = r.table(
        data,
        "http",
        {"listen", "max_body_bytes", "drain_seconds", "stream_write_timeout", "health_details",
         "event_history", "event_history_seconds"},
    )
    http = HttpConfig(
        listen=r.get(h, "http", "listen", str, HttpConfig.listen),
        max_body_bytes=r.positive(h, "http", "max_body_bytes", HttpConfig.max_body_bytes, int),
        drain_seconds=r.positive(h, "http", "drain_seconds", HttpConfig.drain_seconds),
        stream_write_timeout=r.positive(h, "http", "stream_write_timeout", HttpConfig.stream_write_timeout),
        health_details=r.get(h, "http", "health_details", bool, False),
        event_history=r.positive(h, "http", "event_history", HttpConfig.event_history, int),
        event_history_seconds=r.positive(h, "http", "event_history_seconds",
                                         HttpConfig.event_history_seconds),
    )
    if not re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):\d{1,5}", http.listen):
        r.problems.append(("http.listen", f"must be HOST:PORT, not {http.listen!r}"))
    return http
