"""A tiny raw ESL client for the simulator's tests (no eslchan code besides the parser)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable

import gevent
import gevent.queue

from eslchan.esl.message import Frame
from eslchan.esl.parser import FrameParser, decode_event

REPLY_TYPES = ("command/reply", "api/response")


class EslClient:
    def __init__(self, port: int, password: str | None = "ClueCon", *,
                 host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.parser = FrameParser()
        self.frames: list[Frame] = []
        self.replies: gevent.queue.Queue = gevent.queue.Queue()
        self.events: list[dict] = []
        self.eof = False
        self.chunks = 0
        self._reader = gevent.spawn(self._read)
        first = self.next_frame()
        assert first.content_type == "auth/request"
        if password is not None:
            reply = self.cmd(f"auth {password}")
            assert reply.reply_text == "+OK accepted", reply.reply_text

    def _read(self) -> None:
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                self.chunks += 1
                for f in self.parser.feed(data):
                    self.frames.append(f)
                    if f.is_event:
                        self.events.append(decode_event(f))
                    else:
                        self.replies.put(f)
        except OSError:
            pass
        self.eof = True
        self.replies.put(None)

    def next_frame(self, timeout: float = 10.0) -> Frame:
        f = self.replies.get(timeout=timeout)
        assert f is not None, "connection closed"
        return f

    def send(self, text: str, headers: dict[str, str] | None = None,
             body: str | None = None) -> None:
        out = text + "\n"
        for k, v in (headers or {}).items():
            out += f"{k}: {v}\n"
        raw = out.encode()
        if body is not None:
            data = body.encode()
            raw += f"content-type: text/plain\ncontent-length: {len(data)}\n\n".encode() + data
        else:
            raw += b"\n"
        self.sock.sendall(raw)

    def cmd(self, text: str, headers: dict[str, str] | None = None,
            body: str | None = None, timeout: float = 10.0) -> Frame:
        self.send(text, headers, body)
        while True:
            f = self.next_frame(timeout)
            if f.content_type in REPLY_TYPES:
                return f

    def api(self, text: str) -> str:
        f = self.cmd("api " + text)
        assert f.content_type == "api/response"
        return f.body

    def rows(self, what: str = "channels") -> list[dict]:
        """The rows of ``show <what> as json``."""
        return json.loads(self.api(f"show {what} as json")).get("rows", [])

    def wait_rows(self, predicate: Callable[[list[dict]], bool], what: str = "channels",
                  timeout: float = 10.0) -> list[dict]:
        """Poll ``show <what> as json`` until ``predicate(rows)``: FreeSWITCH's core database
        lags its events, so a client waits for the table as it must with a real switch."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.rows(what)
            if predicate(rows):
                return rows
            if time.monotonic() > deadline:
                raise AssertionError(f"show {what}: never matched; last rows {rows}")
            gevent.sleep(0.005)

    def wait_event(self, pred: Callable[[dict], bool] | str, timeout: float = 10.0,
                   uuid: str | None = None) -> dict:
        if isinstance(pred, str):
            name = pred
            pred = lambda e: e.get("Event-Name") == name  # noqa: E731
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for e in self.events[seen:]:
                if (uuid is None or e.get("Unique-ID") == uuid) and pred(e):
                    return e
            seen = 0
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching event; got {self.names(uuid)}")
            gevent.sleep(0.01)

    def names(self, uuid: str | None = None) -> list[str]:
        return [e["Event-Name"] for e in self.events
                if uuid is None or e.get("Unique-ID") == uuid]

    def wait_eof(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            gevent.sleep(0.01)
        return self.eof

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        self._reader.kill(block=False)
