"""A tiny scripted ESL server over real TCP, for link fault cases the simulator does not model
(half frames at every byte, rude rejection, silence, floods). It answers like the FreeSWITCH of
the captures: auth/request, +OK accepted / -ERR invalid, api bodies, bgapi Job-UUIDs with a
BACKGROUND_JOB event, events in json or plain."""

from __future__ import annotations

import json
import socket as pysocket
import uuid as uuidlib
from collections.abc import Callable
from urllib.parse import quote

import gevent
import pytest
from gevent.server import StreamServer

pytestmark = pytest.mark.timeout(30)

NOTICE = (
    b"Content-Type: text/disconnect-notice\nContent-Length: 67\n\n"
    b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
)
_SAFE = "/,()'!~*$.-_" + "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def fs_quote(value: str) -> str:
    """URL-encode a header value the way FreeSWITCH does in plain events."""
    return quote(value, safe=_SAFE)


def plain_event(event: dict[str, str]) -> bytes:
    body = event.get("_body")
    lines = "".join(f"{k}: {fs_quote(v)}\n" for k, v in event.items() if k != "_body")
    if body is not None:
        raw = body.encode()
        text = lines.encode() + f"Content-Length: {len(raw)}\n\n".encode() + raw
    else:
        text = lines.encode() + b"\n"
    return b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(text) + text


def json_event(event: dict[str, str]) -> bytes:
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
    return b"Content-Length: %d\nContent-Type: text/event-json\n\n" % len(data) + data


def api_response(body: str) -> bytes:
    raw = body.encode()
    return b"Content-Type: api/response\nContent-Length: %d\n\n" % len(raw) + raw


def reply(text: str, extra: str = "") -> bytes:
    return f"Content-Type: command/reply\nReply-Text: {text}\n{extra}\n".encode()


class FakeConn:
    def __init__(self, server: FakeEsl, sock):
        self.server = server
        self.sock = sock
        self.fmt: str | None = None
        self.events: set[str] = set()
        self.authed = False

    def write(self, data: bytes) -> None:
        if self.server.split:  # one byte at a time: frames split at every boundary
            for i in range(len(data)):
                self.sock.sendall(data[i : i + 1])
        else:
            self.sock.sendall(data)

    def wants(self, name: str) -> bool:
        return self.fmt is not None and ("ALL" in self.events or name in self.events)

    def send_event(self, event: dict[str, str]) -> None:
        if self.wants(event.get("Event-Name", "")):
            self.write(json_event(event) if self.fmt == "json" else plain_event(event))


class FakeEsl:
    def __init__(self, password: str = "ClueCon"):
        self.password = password
        self.commands: list[str] = []
        self.conns: list[FakeConn] = []
        self.api_handler: Callable[[str], str] = lambda line: "+OK\n"
        self.rude = False
        self.silent = False  # accept the TCP connection but never say anything
        self.split = False
        self.flap = False
        self.stall = 0.0  # seconds before each reply
        self.auth_attempts = 0
        self.server = StreamServer(("127.0.0.1", 0), self._handle)

    def start(self) -> FakeEsl:
        self.server.start()
        return self

    @property
    def port(self) -> int:
        return self.server.server_port

    def stop(self) -> None:
        self.server.stop(timeout=1)
        self.drop()

    def drop(self) -> None:
        for conn in list(self.conns):
            try:
                conn.sock.shutdown(pysocket.SHUT_RDWR)
            except OSError:
                pass
            conn.sock.close()
        self.conns.clear()

    def subscribed(self) -> list[FakeConn]:
        return [c for c in self.conns if c.fmt is not None]

    def broadcast(self, event: dict[str, str]) -> None:
        for conn in list(self.conns):
            try:
                conn.send_event(event)
            except OSError:
                pass

    def send_raw(self, event_name: str, data: bytes) -> None:
        """Write pre-built frames to every connection subscribed to ``event_name``."""
        for conn in list(self.conns):
            if conn.wants(event_name):
                conn.sock.sendall(data)

    def _handle(self, sock, _addr) -> None:
        sock.setsockopt(pysocket.SOL_SOCKET, pysocket.SO_SNDBUF, 4 << 20)
        conn = FakeConn(self, sock)
        self.conns.append(conn)
        try:
            if self.silent:
                gevent.sleep(60)
                return
            if self.rude:
                text = b"Access Denied, go away.\n"
                conn.write(b"Content-Type: text/rude-rejection\nContent-Length: %d\n\n" % len(text))
                conn.write(text)
                return
            conn.write(b"Content-Type: auth/request\n\n")
            buf = b""
            while True:
                while b"\n\n" not in buf:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\n\n")
                lines = head.decode().split("\n")
                headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
                body = b""
                size = int(headers.get("content-length", headers.get("Content-Length", 0)))
                while len(buf) < size:
                    buf += sock.recv(65536)
                body, buf = buf[:size], buf[size:]
                record = lines[0] if not body else lines[0] + "\n" + body.decode()
                if not lines[0].startswith("auth "):
                    self.commands.append(record)
                if not self._command(conn, lines[0], headers):
                    return
        except OSError:
            return
        finally:
            if conn in self.conns:
                self.conns.remove(conn)
            sock.close()

    def _command(self, conn: FakeConn, line: str, headers: dict[str, str]) -> bool:
        if self.stall:
            gevent.sleep(self.stall)
        verb, _, rest = line.partition(" ")
        if verb == "auth":
            self.auth_attempts += 1
            if rest != self.password:
                conn.write(reply("-ERR invalid") + NOTICE)
                return False
            conn.authed = True
            conn.write(reply("+OK accepted"))
        elif not conn.authed:
            conn.write(reply("-ERR command not found"))
        elif verb == "event":
            fmt, _, names = rest.partition(" ")
            conn.fmt = fmt
            conn.events |= set(names.split())
            conn.write(reply(f"+OK event listener enabled {fmt}"))
            if self.flap:  # accepted, subscribed, then dropped at once
                return False
        elif verb == "api":
            conn.write(api_response(self.api_handler(rest)))
        elif verb == "bgapi":
            job = headers.get("Job-UUID") or str(uuidlib.uuid4())
            conn.write(reply(f"+OK Job-UUID: {job}", f"Job-UUID: {job}\n"))
            result = self.api_handler(rest)
            event = {
                "Event-Name": "BACKGROUND_JOB",
                "Job-UUID": job,
                "Job-Command": rest.split(" ")[0],
                "_body": result,
            }
            for other in list(self.conns):
                other.send_event(event)
        elif verb == "sendmsg":
            if rest.startswith("00000000"):
                conn.write(reply(f"-ERR invalid session id [{rest}]"))
            else:
                conn.write(reply("+OK"))
        elif verb == "exit":
            conn.write(reply("+OK bye") + NOTICE)
            return False
        else:
            conn.write(reply("-ERR command not found"))
        return True


@pytest.fixture
def fake():
    server = FakeEsl().start()
    yield server
    server.stop()


def test_fake_server_speaks_esl(fake):
    sock = pysocket.create_connection(("127.0.0.1", fake.port))
    assert sock.recv(100) == b"Content-Type: auth/request\n\n"
    sock.sendall(b"auth ClueCon\n\napi status\n\n")
    data = b""
    while not data.endswith(b"+OK\n"):
        data += sock.recv(1000)
    assert data == reply("+OK accepted") + api_response("+OK\n")
    sock.close()


def test_plain_event_encoding_matches_freeswitch():
    raw = plain_event({"Event-Name": "X", "v": "a b:c\nd%"})
    assert b"v: a%20b%3Ac%0Ad%25\n" in raw
