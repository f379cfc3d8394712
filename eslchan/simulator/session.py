"""One inbound event socket connection: authentication, the commands a client sends,
event subscriptions and filters, myevents/linger, log forwarding and the write queue that
drops events for a listener that does not read (as FreeSWITCH does)."""

from __future__ import annotations

import collections
import logging
import random
import socket
import time
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event

from eslchan.simulator.channels import new_uuid
from eslchan.simulator.wire import (
    AUTH_REQUEST,
    GOODBYE,
    SimEvent,
    api_response,
    command_reply,
    disconnect_notice,
)

if TYPE_CHECKING:
    from eslchan.simulator.server import Simulator

log = logging.getLogger(__name__)

# What `myevents` subscribes to (mod_event_socket): channel life only, no PLAYBACK_*,
# no CHANNEL_HOLD, no CHANNEL_CALLSTATE.
MYEVENTS = frozenset({
    "CHANNEL_ANSWER", "CHANNEL_APPLICATION", "CHANNEL_BRIDGE", "CHANNEL_CREATE", "CHANNEL_DATA",
    "CHANNEL_DESTROY", "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HANGUP",
    "CHANNEL_HANGUP_COMPLETE", "CHANNEL_ORIGINATE", "CHANNEL_OUTGOING", "CHANNEL_PARK",
    "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_STATE", "CHANNEL_UNBRIDGE",
    "CHANNEL_UNPARK", "DETECTED_SPEECH", "DTMF", "MEDIA_BUG_START", "MEDIA_BUG_STOP",
})
LOG_LEVELS = {"console": 0, "alert": 1, "crit": 2, "err": 3, "warning": 4, "notice": 5,
              "info": 6, "debug": 7}
LOG_NAMES = {v: k.upper() for k, v in LOG_LEVELS.items()}
_CLOSE = object()


class Session:
    """One inbound ESL connection."""

    def __init__(self, sim: Simulator, sock: socket.socket, addr: Any) -> None:
        self.sim = sim
        self.sock = sock
        self.addr = addr
        self.authed = False
        self.fmt: str | None = None
        self.all_events = False
        self.names: set[str] = set()
        self.subclasses: set[str] = set()
        self.filters: list[tuple[str, str]] = []
        self.bound: str | None = None          # myevents <uuid>
        self.bound_name = ""
        self.bound_done = False
        self.linger: int | None = None
        self.log_level: int | None = None
        self.out: collections.deque = collections.deque()
        self.queued_events = 0
        self.lost_events = 0
        self.wake = gevent.event.Event()
        self.alive = True
        self.writer = gevent.spawn(self._write_loop)

    # -- output --------------------------------------------------------------------------
    def send(self, data: bytes | object) -> None:
        if not self.alive:
            return
        self.out.append((data, False))
        self.wake.set()

    def send_event(self, data: bytes) -> None:
        if not self.alive:
            return
        if self.queued_events >= self.sim.event_queue_max:
            # FreeSWITCH drops the event; past max_missed it kills the listener
            self.lost_events += 1
            self.sim.stats["lost_events"] += 1
            if self.lost_events > self.sim.max_missed:
                self.sim.stats["killed_listeners"] += 1
                self.kill()
            return
        self.lost_events = 0
        self.queued_events += 1
        self.out.append((data, True))
        self.wake.set()

    def _write_loop(self) -> None:
        sock = self.sock
        try:
            while True:
                if not self.out:
                    self.wake.clear()
                    self.wake.wait()
                    continue
                batch: list[bytes] = []
                size = 0
                close = False
                while self.out and size < 262144:
                    data, is_event = self.out.popleft()
                    if is_event:
                        self.queued_events -= 1
                    if data is _CLOSE:
                        close = True
                        break
                    batch.append(data)  # type: ignore[arg-type]
                    size += len(data)  # type: ignore[arg-type]
                if batch:
                    buf = b"".join(batch)
                    if self.sim.split:
                        # random cuts, often inside a header line, with a pause so the
                        # peer really reads them apart
                        pos = 0
                        while pos < len(buf):
                            n = random.choice((1, 2, 7, 13, 64, 500, 1500, 4096))
                            sock.sendall(buf[pos:pos + n])
                            pos += n
                            gevent.sleep(0.0005)
                    else:
                        sock.sendall(buf)
                if close:
                    self._close_socket()
                    return
        except (OSError, gevent.GreenletExit):
            self._close_socket()

    def _close_socket(self) -> None:
        self.alive = False
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        self.sim._sessions.discard(self)

    def kill(self) -> None:
        """Close at once, without a notice (a dropped or killed listener)."""
        self.alive = False
        self.out.clear()
        self.writer.kill(block=False)
        self._close_socket()

    def close_after(self, notice: bytes | None) -> None:
        if notice is not None:
            self.send(notice)
        self.send(_CLOSE)
        self.alive = False

    # -- events --------------------------------------------------------------------------
    def wants(self, ev: SimEvent) -> bool:
        if self.fmt is None:
            return False
        name = ev.name
        if self.bound is not None:
            if ev.unique_id != self.bound or self.bound_done:
                return False
            if not (name in MYEVENTS or name in self.names or self.all_events):
                return False
        elif not self.all_events:
            if name == "CUSTOM":
                if ev.subclass not in self.subclasses and not (
                        "CUSTOM" in self.names and not self.subclasses):
                    return False
            elif name not in self.names:
                return False
        if self.filters:
            for h, v in self.filters:
                if ev.get(h) == v:
                    return True
            return False
        return True

    def deliver(self, ev: SimEvent) -> None:
        self.send_event(ev.frame(self.fmt or "plain"))
        if self.bound is not None and ev.name == "CHANNEL_HANGUP_COMPLETE" \
                and ev.unique_id == self.bound:
            self.bound_done = True
            gevent.spawn(self._bound_hangup)

    def _bound_hangup(self) -> None:
        notice_headers = [("Controlled-Session-UUID", self.bound or ""),
                          ("Content-Disposition", "disconnect")]
        if self.linger:
            self.send(disconnect_notice("", [
                ("Controlled-Session-UUID", self.bound or ""),
                ("Content-Disposition", "linger"), ("Channel-Name", self.bound_name),
                ("Linger-Time", str(self.linger))]))
            deadline = time.monotonic() + self.linger / self.sim.speed
            while self.alive and time.monotonic() < deadline:
                gevent.sleep(0.02)
            if not self.alive:
                return
        self.close_after(disconnect_notice(GOODBYE, notice_headers))

    # -- input ---------------------------------------------------------------------------
    def serve(self) -> None:
        self.send(AUTH_REQUEST)
        buf = b""
        try:
            while self.alive:
                try:
                    data = self.sock.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                buf += data
                while self.alive:
                    cmd, buf = _take_command(buf)
                    if cmd is None:
                        break
                    self._handle(*cmd)
        finally:
            if self.alive:
                self.kill()
            else:
                # let the writer flush the goodbye before the socket goes
                self.writer.join(timeout=5)

    def _handle(self, lines: list[str], body: str) -> None:
        if not lines:
            return
        first = lines[0].strip()
        headers: dict[str, str] = {}
        for ln in lines[1:]:
            k, sep, v = ln.partition(":")
            if sep:
                headers[k.strip().lower()] = v.strip()
        word, _, rest = first.partition(" ")
        rest = rest.strip()
        sim = self.sim
        if word == "auth":
            sim.commands.append("auth ***")
            sim.received.append(("auth ***", {}, ""))
        else:
            sim.commands.append(first if not body else f"{first}\n{body}")
            sim.received.append((first, headers, body))
        if sim.stall_until > time.monotonic():
            gevent.sleep(sim.stall_until - time.monotonic())
        if not self.authed:
            if word == "auth":
                if rest == sim.password:
                    self.authed = True
                    self.send(command_reply("+OK accepted"))
                else:
                    self.send(command_reply("-ERR invalid"))
                    self.close_after(disconnect_notice(GOODBYE))
                return
            self.send(command_reply("-ERR command not found"))
            return
        handler = getattr(self, "cmd_" + word, None)
        if handler is None:
            self.send(command_reply("-ERR command not found"))
            return
        try:
            handler(rest, headers, body)
        except Exception:
            # answer instead of dropping the connection, so the client sees the failure
            log.exception("simulator failed on %r", first)
            if word == "api":
                self.send(api_response("-ERR simulator internal error\n"))
            else:
                self.send(command_reply("-ERR simulator internal error"))

    # -- commands ------------------------------------------------------------------------
    def cmd_auth(self, rest: str, headers: dict[str, str], body: str) -> None:
        self.send(command_reply("-ERR command not found"))

    def cmd_exit(self, rest: str, headers: dict[str, str], body: str) -> None:
        self.send(command_reply("+OK bye"))
        h = None
        if self.bound is not None:
            h = [("Controlled-Session-UUID", self.bound), ("Content-Disposition", "disconnect")]
        self.close_after(disconnect_notice(GOODBYE, h))

    def cmd_event(self, rest: str, headers: dict[str, str], body: str) -> None:
        words = rest.split()
        fmt = "plain"
        if words and words[0] in ("plain", "json", "xml"):
            fmt = words.pop(0)
        self.fmt = fmt
        custom = False
        for w in words:
            if custom:
                self.subclasses.add(w)
            elif w == "ALL":
                self.all_events = True
            elif w == "CUSTOM":
                custom = True
                self.names.add("CUSTOM")
            else:
                self.names.add(w)
        self.send(command_reply(f"+OK event listener enabled {fmt}"))

    def cmd_nixevent(self, rest: str, headers: dict[str, str], body: str) -> None:
        custom = False
        for w in rest.split():
            if custom:
                self.subclasses.discard(w)
            elif w == "ALL":
                self.all_events = False
                self.names.clear()
            elif w == "CUSTOM":
                custom = True
            else:
                self.names.discard(w)
        self.send(command_reply("+OK events nixed"))

    def cmd_noevents(self, rest: str, headers: dict[str, str], body: str) -> None:
        self.fmt = None
        self.all_events = False
        self.names.clear()
        self.subclasses.clear()
        self.send(command_reply("+OK no longer listening for events"))

    def cmd_filter(self, rest: str, headers: dict[str, str], body: str) -> None:
        words = rest.split(" ", 2)
        if words and words[0] == "delete":
            if len(words) < 2:
                self.send(command_reply("-ERR invalid syntax"))
                return
            h = words[1]
            v = words[2] if len(words) > 2 else None
            if h == "all":
                self.filters.clear()
            else:
                self.filters = [(fh, fv) for fh, fv in self.filters
                                if not (fh == h and (v is None or fv == v))]
            self.send(command_reply(f"+OK filter deleted. [{h}][{v or ''}]"))
            return
        if len(words) < 2:
            self.send(command_reply("-ERR invalid syntax"))
            return
        h, v = words[0], " ".join(words[1:])
        self.filters.append((h, v))
        self.send(command_reply(f"+OK filter added. [{h}]=[{v}]"))

    def cmd_myevents(self, rest: str, headers: dict[str, str], body: str) -> None:
        words = rest.split()
        fmt = "plain"
        uuid = None
        for w in words:
            if w in ("plain", "json", "xml"):
                fmt = w
            else:
                uuid = w
        ch = self.sim.switch.channels.get(uuid or "")
        if ch is None:
            self.send(command_reply("-ERR invalid uuid"))
            return
        self.bound = ch.uuid
        self.bound_name = ch.name
        self.fmt = fmt
        self.send(command_reply("+OK Events Enabled"))

    def cmd_linger(self, rest: str, headers: dict[str, str], body: str) -> None:
        if self.bound is None:
            self.send(command_reply("-ERR not controlling a session"))
            return
        if rest.strip().isdigit():
            self.linger = int(rest.strip())
            self.send(command_reply(f"+OK will linger {self.linger} seconds"))
        else:
            self.linger = 10
            self.send(command_reply("+OK will linger"))

    def cmd_nolinger(self, rest: str, headers: dict[str, str], body: str) -> None:
        if self.bound is None:
            self.send(command_reply("-ERR not controlling a session"))
            return
        self.linger = None
        self.send(command_reply("+OK will not linger"))

    def cmd_log(self, rest: str, headers: dict[str, str], body: str) -> None:
        word = rest.strip().lower() or "debug"
        level = int(word) if word.isdigit() else LOG_LEVELS.get(word, 7)
        self.log_level = level
        name = LOG_NAMES.get(level, "DEBUG").lower()
        self.send(command_reply(f"+OK log level {name} [{level}]"))

    def cmd_nolog(self, rest: str, headers: dict[str, str], body: str) -> None:
        self.log_level = None
        self.send(command_reply("+OK no longer logging"))

    def cmd_divert_events(self, rest: str, headers: dict[str, str], body: str) -> None:
        on = rest.strip() == "on"
        self.send(command_reply("+OK events diverted" if on else "+OK events not diverted"))

    def cmd_api(self, rest: str, headers: dict[str, str], body: str) -> None:
        text = self.sim._take_failure()
        if text is not None:
            self.send(api_response(text if text.endswith("\n") else text + "\n"))
            return
        self.send(api_response(self.sim._api(rest)))

    def cmd_bgapi(self, rest: str, headers: dict[str, str], body: str) -> None:
        job = headers.get("job-uuid") or new_uuid()
        failure = self.sim._take_failure()
        self.send(command_reply(f"+OK Job-UUID: {job}", [("Job-UUID", job)]))
        gevent.spawn(self.sim._bgapi, rest, job, failure)

    def cmd_sendmsg(self, rest: str, headers: dict[str, str], body: str) -> None:
        text = self.sim._take_failure()
        if text is not None:
            self.send(command_reply(text.rstrip("\n")))
            return
        uuid = rest.strip() or (self.bound or "")
        sw = self.sim.switch
        ch = sw.channels.get(uuid)
        if ch is None or ch.gone:
            self.send(command_reply(f"-ERR invalid session id [{uuid}]"))
            return
        self.send(command_reply("+OK"))
        self.sim._private_command(ch, headers, body, f"sendmsg {rest}".strip())

    def cmd_sendevent(self, rest: str, headers: dict[str, str], body: str) -> None:
        name = rest.strip() or "CUSTOM"
        ev_uuid = new_uuid()
        sw = self.sim.switch
        raw = [(k, v) for k, v in _raw_headers(headers)]
        subclass = headers.get("event-subclass")
        h: list[tuple[str, str]] = []
        if subclass:
            h.append(("Event-Subclass", subclass))
        h.append(("Command", f"sendevent {name}"))
        h += [(k, v) for k, v in raw if k.lower() != "event-subclass"]
        h.append(("Event-UUID", ev_uuid))
        ev = SimEvent(name, h + sw.common(name), body or None,
                      headers.get("unique-id"), subclass)
        sw.publish(ev)
        self.send(command_reply(f"+OK {ev_uuid}"))


_HEADER_CASE: dict[str, str] = {}


def _raw_headers(headers: dict[str, str]) -> list[tuple[str, str]]:
    return [(_HEADER_CASE.get(k, "-".join(p.capitalize() for p in k.split("-"))), v)
            for k, v in headers.items() if k not in ("content-length", "content-type")]


def _take_command(buf: bytes) -> tuple[tuple[list[str], str] | None, bytes]:
    """Split one command (header block up to a blank line, then an optional body)."""
    # clients sometimes send leading blank lines; FreeSWITCH skips them
    stripped = buf.lstrip(b"\r\n")
    end = stripped.find(b"\n\n")
    end_crlf = stripped.find(b"\r\n\r\n")
    if end < 0 and end_crlf < 0:
        return None, buf
    if end_crlf >= 0 and (end < 0 or end_crlf < end):
        head, after = stripped[:end_crlf], stripped[end_crlf + 4:]
    else:
        head, after = stripped[:end], stripped[end + 2:]
    lines = head.decode("utf-8", "replace").replace("\r", "").split("\n")
    body = b""
    for ln in lines[1:]:
        k, sep, v = ln.partition(":")
        if sep and k.strip().lower() == "content-length":
            try:
                n = int(v.strip())
            except ValueError:
                n = 0
            if len(after) < n:
                return None, buf
            body, after = after[:n], after[n:]
    return (lines, body.decode("utf-8", "replace")), after
