"""The event socket server: sessions, authentication, subscriptions, fault injection,
and the :class:`Simulator` facade that tests and the demo use."""

from __future__ import annotations

import collections
import logging
import random
import socket
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gevent
import gevent.event
from gevent.server import StreamServer

from eslchan.simulator.channels import SimChannel, new_uuid
from eslchan.simulator.commands import ApiCommands
from eslchan.simulator.core import Switch
from eslchan.simulator.wire import (
    AUTH_REQUEST,
    GOODBYE,
    SHUTDOWN_TEXT,
    SimEvent,
    api_response,
    command_reply,
    disconnect_notice,
    log_data,
)

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


@dataclass
class SimCall:
    """A call made by :meth:`Simulator.create_call`: the caller's leg and the callee's."""

    a_uuid: str
    b_uuid: str | None
    sim: Simulator

    @property
    def a(self) -> SimChannel | None:
        return self.sim.channel(self.a_uuid)

    @property
    def b(self) -> SimChannel | None:
        return self.sim.channel(self.b_uuid) if self.b_uuid else None

    @property
    def uuids(self) -> list[str]:
        return [u for u in (self.a_uuid, self.b_uuid) if u]


class Simulator:
    """A FreeSWITCH event socket on loopback, modelling channels closely enough for eslchan.

    All call timings (ringing, media, linger, heartbeat) run ``speed`` times faster than
    real time; ``stall`` is in real seconds."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, password: str = "ClueCon", *,
                 speed: float = 1.0, heartbeat_interval: float = 20.0, hostname: str = "sim",
                 core_uuid: str | None = None, event_queue_max: int = 100_000,
                 max_missed: int = 500, domain: str = "sim.local") -> None:
        self.host = host
        self.port = port
        self.password = password
        self.speed = speed
        self.heartbeat_interval = heartbeat_interval
        self.hostname = hostname
        self.domain = domain
        self.event_queue_max = event_queue_max
        self.max_missed = max_missed
        self.commands: list[str] = []
        # every command whole: (first line, headers with lower-cased names, body)
        self.received: list[tuple[str, dict[str, str], str]] = []
        self.stats: dict[str, int] = {"lost_events": 0, "killed_listeners": 0, "events": 0}
        self.split = False
        self.stall_until = 0.0
        self._fail: list[str] = []
        self._sessions: set[Session] = set()
        self._server: StreamServer | None = None
        self._heartbeat: gevent.Greenlet | None = None
        self.switch = Switch(hostname=hostname, core_uuid=core_uuid or str(uuidlib.uuid4()),
                             speed=speed, publish=self._publish)
        self.api_commands = ApiCommands(self.switch, on_shutdown=self._shutdown)
        self.switch.listeners.append(self._log_from_event)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        self._server = StreamServer((self.host, self.port), self._accept)
        self._server.start()
        self.port = self._server.server_port
        if self._heartbeat is None and self.heartbeat_interval > 0:
            self._heartbeat = gevent.spawn(self._heartbeat_loop)

    def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.kill(block=False)
            self._heartbeat = None
        if self._server is not None:
            self._server.stop(timeout=0.1)
            self._server = None
        for s in list(self._sessions):
            s.kill()
        for ch in list(self.switch.channels.values()):
            if ch.greenlet is not None:
                ch.greenlet.kill(block=False)
        self.switch.channels.clear()

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _accept(self, sock: socket.socket, addr: Any) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s = Session(self, sock, addr)
        self._sessions.add(s)
        s.serve()

    # -- events --------------------------------------------------------------------------
    def _publish(self, ev: SimEvent) -> None:
        self.stats["events"] += 1
        for s in list(self._sessions):
            if s.alive and s.wants(ev):
                s.deliver(ev)

    def _log_from_event(self, ev: SimEvent) -> None:
        if not any(s.log_level is not None for s in self._sessions):
            return
        if ev.name == "CHANNEL_CREATE":
            self._log(5, f"New Channel {ev.get('Channel-Name')} [{ev.unique_id}]",
                      "switch_channel.c", "switch_channel_set_name", 1142, ev.unique_id or "")
        elif ev.name == "CHANNEL_HANGUP":
            self._log(5, f"Hangup {ev.get('Channel-Name')} [{ev.get('Channel-State')}] "
                         f"[{ev.get('Hangup-Cause')}]", "switch_core_state_machine.c",
                      "switch_core_session_hangup_state", 635, ev.unique_id or "")
        elif ev.name == "CHANNEL_EXECUTE":
            self._log(7, f"{ev.get('Channel-Name')} Execute [depth=0] "
                         f"{ev.get('Application')}({ev.get('Application-Data', '')})",
                      "switch_core_session.c", "switch_core_session_exec", 2902,
                      ev.unique_id or "")

    def _log(self, level: int, text: str, file: str, func: str, line: int, uuid: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S") + f".{int(time.time() * 1e6) % 1000000:06d}"
        body = f"{stamp} 99.00% [{LOG_NAMES.get(level, 'DEBUG')}] {file}:{line} {text}\n"
        frame = log_data(body, level, file, func, line, uuid)
        for s in list(self._sessions):
            if s.alive and s.log_level is not None and s.log_level >= level:
                s.send(frame)

    def _heartbeat_loop(self) -> None:
        task = 0
        while True:
            gevent.sleep(self.heartbeat_interval / self.speed)
            task += 1
            sw = self.switch
            up = self.api_commands._uptime_text()
            ms = int((time.time() - sw.started) * 1000)
            sw.fire("HEARTBEAT", [
                ("Event-Info", "System Ready"), ("Up-Time", up),
                ("FreeSWITCH-Version", "1.10.12-release~64bit"), ("Uptime-msec", str(ms)),
                ("Session-Count", str(len(sw.channels))), ("Max-Sessions", "1000"),
                ("Session-Per-Sec", "500"), ("Session-Per-Sec-Last", "0"),
                ("Session-Per-Sec-Max", "0"), ("Session-Per-Sec-FiveMin", "0"),
                ("Session-Since-Startup", str(sw.sessions_since_startup)),
                ("Session-Peak-Max", str(sw.peak)), ("Session-Peak-FiveMin", str(sw.peak)),
                ("Idle-CPU", "99.000000"),
            ])
            sw.fire("RE_SCHEDULE", [
                ("Task-ID", "1"), ("Task-Desc", "heartbeat"), ("Task-Group", "core"),
                ("Task-Runtime", str(int(time.time() + self.heartbeat_interval))),
            ])

    # -- api -----------------------------------------------------------------------------
    def _api(self, line: str) -> str:
        name, arg, out = self.api_commands.run(line)
        h = [("API-Command", name)]
        if arg:
            h.append(("API-Command-Argument", arg))
        self.switch.fire("API", h)
        return out

    def _bgapi(self, line: str, job: str, failure: str | None) -> None:
        if failure is not None:
            out = failure if failure.endswith("\n") else failure + "\n"
            name, _, arg = line.strip().partition(" ")
        else:
            name, _, arg = line.strip().partition(" ")
            try:
                out = self._api(line)
            except Exception:
                log.exception("simulator failed on bgapi %r", line)
                out = "-ERR simulator internal error\n"
        h = [("Job-UUID", job), ("Job-Command", name)]
        if arg.strip():
            h.append(("Job-Command-Arg", arg.strip()))
        self.switch.fire("BACKGROUND_JOB", h, body=out)

    def api(self, line: str) -> str:
        """Run an api command as if a client sent it (no ESL round trip)."""
        return self._api(line)

    def _private_command(self, ch: SimChannel, headers: dict[str, str], body: str,
                         first: str) -> None:
        sw = self.switch
        cmd = headers.get("call-command", "execute")
        raw = _raw_headers(headers)
        raw = [(k.lower(), v) for k, v in raw]
        h = [("Command", first)] + raw
        if body:
            h += [("content-type", headers.get("content-type", "text/plain")),
                  ("content-length", str(len(body.encode())))]
        ev = SimEvent("PRIVATE_COMMAND", sw.common("PRIVATE_COMMAND") + h
                      + ch.headers(with_vars=False), body or None, ch.uuid)
        sw.publish(ev)
        if cmd == "execute":
            app = headers.get("execute-app-name", "")
            arg = body if body else headers.get("execute-app-arg", "")
            loops = int(headers.get("loops", "1") or 1)
            for _ in range(max(1, loops)):
                ch.inbox.put(("execute", app, arg, headers.get("event-uuid")))
        elif cmd == "hangup":
            gevent.spawn(sw.hangup, ch.uuid, headers.get("hangup-cause", "NORMAL_CLEARING"))
        elif cmd == "unicast" or cmd == "nomedia":
            pass

    # -- calls ---------------------------------------------------------------------------
    def create_call(self, *, account_id: str | None = None, user_id: str | None = None,
                    device_id: str | None = None, caller_id_name: str = "Alice",
                    caller_id_number: str = "1001", destination: str = "2000",
                    answered: bool = True, bridged: bool = True,
                    variables: dict[str, str] | None = None,
                    username: str | None = None) -> SimCall:
        """A phone (inbound SIP leg) calls ``destination``; when bridged the switch dials
        the callee (outbound leg) and bridges them once answered."""
        user = username or caller_id_number
        a_vars: dict[str, str] = {}
        if account_id:
            a_vars["eslchan_account_id"] = account_id
        if user_id:
            a_vars["eslchan_owner_id"] = user_id
        if device_id:
            a_vars["eslchan_authorizing_id"] = device_id
            a_vars["eslchan_authorizing_type"] = "device"
        a_vars["user_name"] = user
        a_vars["presence_id"] = f"{user}@{self.domain}"
        if variables:
            a_vars.update(variables)
        b_vars: dict[str, str] = {}
        if account_id:
            b_vars["eslchan_account_id"] = account_id
        b_vars["presence_id"] = f"{destination}@{self.domain}"
        a, b = self.switch.create_call(
            a_vars=a_vars, b_vars=b_vars, caller_id_name=caller_id_name,
            caller_id_number=caller_id_number, destination=destination, answered=answered,
            bridged=bridged, a_name=f"sofia/internal/{caller_id_number}@{self.domain}",
            b_name=f"sofia/internal/{destination}@{self.domain}")
        return SimCall(a.uuid, b.uuid if b else None, self)

    def answer_call(self, uuid: str) -> None:
        """The callee of an unanswered create_call picks up (or answer a channel)."""
        ch = self.switch.channels.get(uuid)
        if ch is None:
            return
        if ch.other_type == "originator" and ch.other_leg:
            a = self.switch.channels.get(ch.other_leg)
            if a is not None:
                a.inbox.put(("answer",))
                return
        if ch.app == "bridge" and not ch.answered:
            ch.inbox.put(("answer",))
            return
        self.switch.answer(ch)

    def originate(self, args: str) -> str:
        """``originate <dial> <app|exten> …`` as the api command does (blocks till answer)."""
        return self._api("originate " + args)

    def channel(self, uuid: str | None) -> SimChannel | None:
        if not uuid:
            return None
        ch = self.switch.channels.get(uuid)
        return ch if ch is not None and not ch.gone else None

    def channels(self) -> list[SimChannel]:
        return [c for c in self.switch.channels.values() if not c.gone]

    def press_dtmf(self, uuid: str, digits: str) -> None:
        """The far end pressed ``digits`` on leg ``uuid`` (DTMF events on that channel)."""
        ch = self.channel(uuid)
        if ch is not None:
            self.switch.dtmf(ch, digits)

    def hangup(self, uuid: str, cause: str = "NORMAL_CLEARING") -> None:
        """The far end hangs up ``uuid``."""
        self.switch.hangup(uuid, cause)

    # -- faults --------------------------------------------------------------------------
    def drop_connections(self) -> None:
        for s in list(self._sessions):
            s.kill()

    def restart(self, *, keep_channels: bool = False, down_for: float = 0.0) -> None:
        """Every connection drops; without ``keep_channels`` FreeSWITCH comes back empty,
        with a new Core-UUID, as after a crash. With it, as after a network blip.
        ``down_for`` (real seconds) keeps the port closed meanwhile, so connects are refused."""
        if down_for > 0 and self._server is not None:
            self._server.stop(timeout=0.1)
            self._server = None
        self.drop_connections()
        if not keep_channels:
            for ch in list(self.switch.channels.values()):
                ch.gone = True
                if ch.greenlet is not None:
                    ch.greenlet.kill(block=False)
            self.switch.channels.clear()
            self.switch.core_uuid = str(uuidlib.uuid4())
            self.switch.seq = 0
            self.switch.started = time.time()
        if down_for > 0:
            gevent.sleep(down_for)
            self._server = StreamServer((self.host, self.port), self._accept)
            self._server.start()

    def stall(self, seconds: float) -> None:
        """Commands received in the next ``seconds`` (real time) are answered late."""
        self.stall_until = time.monotonic() + seconds

    def fail_next(self, text: str = "-ERR simulated failure") -> None:
        """The next api/bgapi/sendmsg gets ``text`` instead of running."""
        self._fail.append(text)

    def _take_failure(self) -> str | None:
        return self._fail.pop(0) if self._fail else None

    def split_writes(self, enabled: bool = True) -> None:
        self.split = enabled

    def _shutdown(self) -> None:
        sw = self.switch
        for ch in list(sw.channels.values()):
            sw.hangup(ch.uuid, "SYSTEM_SHUTDOWN")
        deadline = time.monotonic() + 2.0
        while sw.channels and time.monotonic() < deadline:
            gevent.sleep(0.01)
        sw.fire("SHUTDOWN", [("Event-Info", "System Shutting Down")])
        notice = disconnect_notice(SHUTDOWN_TEXT)
        for s in list(self._sessions):
            s.close_after(notice)
        gevent.sleep(0.05)
        self.stop()

    # -- test helpers --------------------------------------------------------------------
    def wait_until(self, predicate: Callable[[], Any], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            gevent.sleep(0.01)
        return bool(predicate())

    @property
    def sessions(self) -> int:
        return len(self._sessions)
