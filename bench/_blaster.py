"""A FreeSWITCH stand-in that replays the events of a real call as fast as the socket allows.

The mix is one two-leg loopback call recorded from FreeSWITCH 1.10 (captures 04a in json,
03 in plain: originate, answer, transfer, tone playback, setvars, hold, kill). Every call
replayed gets fresh UUIDs (same length, so every Content-Length still holds), so a client's
registry really creates and destroys channels. Events are filtered by the client's own
``event <format> <names…>`` subscription, as FreeSWITCH does.

It speaks enough ESL for eslchan's NodeLink, greenswitch and a raw reader: auth/request,
``+OK accepted``, ``+OK event listener enabled``, ``api show channels as json`` (empty) for
the resync, ``+OK`` to other api commands, and ``exit``. A connection whose subscription has
no channel event (NodeLink's command connection) is never blasted.

Run as a process (``python bench/_blaster.py --calls N [--rate EV_PER_S] [--gate FILE]``): it
prints ``PORT <n>`` and serves until killed; each event connection gets ``N`` calls (0:
endless), as fast as possible or paced at a given event rate, then silence. With ``--gate`` an
event connection waits for FILE to exist before its calls start (several clients, or a
cluster settling who holds which node, all start at once).
"""

from __future__ import annotations

import argparse
import re
import socket
import sys
import threading
import time
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import captures_dir  # noqa: E402
from eslchan.esl.parser import FrameParser, decode_event  # noqa: E402

CAPTURE = {"json": "04a_events_json.c1.recv", "plain": "03_events_plain.c1.recv"}
CTYPE = {"json": b"text/event-json", "plain": b"text/event-plain"}
_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass
class CallTemplate:
    """One call's event frames, split around the UUIDs to replace per call."""

    fmt: str
    names: list[str]  # Event-Name of each frame
    frames: list[bytes]  # whole wire frames (outer headers + body)
    uuids: list[bytes]  # the call's own UUIDs (channels, temporary uuid, job)

    def select(self, subscription: list[str]) -> CallTemplate:
        if "ALL" in subscription:
            return self
        keep = set(subscription)
        idx = [i for i, n in enumerate(self.names) if n in keep]
        return CallTemplate(self.fmt, [self.names[i] for i in idx], [self.frames[i] for i in idx], self.uuids)

    @property
    def events(self) -> int:
        return len(self.frames)

    @property
    def size(self) -> int:
        return sum(len(f) for f in self.frames)

    def renderer(self):
        """A function returning one call's bytes with fresh UUIDs, fast (split once, join)."""
        blob = b"".join(self.frames)
        if not self.uuids:
            return lambda: blob
        pattern = re.compile(b"|".join(re.escape(u) for u in self.uuids))
        parts: list[bytes] = []
        slots: list[int] = []
        pos = 0
        index = {u: i for i, u in enumerate(self.uuids)}
        for m in pattern.finditer(blob):
            parts.append(blob[pos : m.start()])
            slots.append(index[m.group()])
            pos = m.end()
        tail = blob[pos:]
        n = len(self.uuids)

        def render() -> bytes:
            fresh = [str(uuidlib.uuid4()).encode() for _ in range(n)]
            out: list[bytes] = []
            for part, slot in zip(parts, slots, strict=True):
                out.append(part)
                out.append(fresh[slot])
            out.append(tail)
            return b"".join(out)

        return render


def load_call(fmt: str) -> CallTemplate:
    data = (captures_dir() / CAPTURE[fmt]).read_bytes()
    names: list[str] = []
    frames: list[bytes] = []
    uuids: set[bytes] = set()
    for frame in FrameParser().feed(data):
        if not frame.is_event:
            continue
        event = decode_event(frame)
        names.append(event.get("Event-Name", ""))
        frames.append(
            b"Content-Length: %d\nContent-Type: %s\n\n" % (len(frame.raw_body), CTYPE[fmt]) + frame.raw_body
        )
        for key in ("Unique-ID", "Old-Unique-ID", "Job-UUID"):
            if event.get(key):
                uuids.add(event[key].encode())
    return CallTemplate(fmt, names, frames, sorted(uuids))


def parse_subscription(line: str) -> tuple[str, list[str]]:
    parts = line.split()
    return parts[1], parts[2:]


def is_event_feed(subscription: list[str]) -> bool:
    return "ALL" in subscription or "CHANNEL_CREATE" in subscription


def _reply(text: str) -> bytes:
    return f"Content-Type: command/reply\nReply-Text: {text}\n\n".encode()


def _api(body: str) -> bytes:
    raw = body.encode()
    return b"Content-Type: api/response\nContent-Length: %d\n\n" % len(raw) + raw


class Blaster:
    def __init__(self, calls: int, host: str = "127.0.0.1", port: int = 0, rate: float = 0.0,
                 gate: str | None = None) -> None:
        self.calls = calls  # per event connection; 0: until the connection closes
        self.gate = Path(gate) if gate else None
        self.rate = rate  # events/s; 0: as fast as the socket allows
        self.templates = {fmt: load_call(fmt) for fmt in CAPTURE}
        self.sock = socket.create_server((host, port))
        self.port = self.sock.getsockname()[1]

    def serve_forever(self) -> None:
        while True:
            conn, _ = self.sock.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        lock = threading.Lock()

        def send(data: bytes) -> None:
            with lock:
                conn.sendall(data)

        try:
            send(b"Content-Type: auth/request\n\n")
            buf = b""
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while b"\n\n" in buf:
                    raw, buf = buf.split(b"\n\n", 1)
                    line = raw.decode().split("\n", 1)[0].strip()
                    if line.startswith("auth "):
                        send(_reply("+OK accepted"))
                    elif line.startswith("event "):
                        fmt, names = parse_subscription(line)
                        send(_reply(f"+OK event listener enabled {fmt}"))
                        if is_event_feed(names):
                            call = self.templates[fmt].select(names)
                            threading.Thread(target=self._blast, args=(send, call), daemon=True).start()
                    elif line == "api show channels as json":
                        send(_api('{"row_count": 0}\n'))
                    elif line.startswith("api ") or line.startswith("bgapi "):
                        send(_api("+OK\n"))
                    elif line == "exit":
                        send(_reply("+OK bye"))
                        return
                    else:
                        send(_reply("-ERR command not found"))
        except OSError:
            pass
        finally:
            conn.close()

    def _blast(self, send, call: CallTemplate) -> None:
        render = call.renderer()
        while self.gate is not None and not self.gate.exists():
            time.sleep(0.01)
        period = call.events / self.rate if self.rate else 0.0
        due = time.monotonic()
        sent = 0
        try:
            while not self.calls or sent < self.calls:
                send(render())
                sent += 1
                if period:  # paced per call: a call's events leave together, as in a real burst
                    due += period
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
        except OSError:
            pass


def spawn(calls: int, rate: float = 0.0, gate: str | None = None):
    """Start a blaster process; returns (Popen, port). Kill it when done."""
    import subprocess

    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--calls", str(calls), "--rate", str(rate),
         *(["--gate", gate] if gate else [])],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # never hold the parent's stderr open after it exits
        text=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"blaster did not start: {line!r}")
    return proc, int(line.split()[1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, required=True, help="calls per event connection (0: endless)")
    ap.add_argument("--rate", type=float, default=0.0, help="events/s (0: as fast as possible)")
    ap.add_argument("--gate", help="event connections wait for this file to exist before blasting")
    args = ap.parse_args()
    b = Blaster(args.calls, rate=args.rate, gate=args.gate)
    print(f"PORT {b.port}", flush=True)
    b.serve_forever()


if __name__ == "__main__":
    main()
