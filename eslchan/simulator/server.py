"""The :class:`Simulator` facade that tests and the demo use (the TCP server, the switch,
api/bgapi/sendmsg dispatch, heartbeats, calls created from Python, fault injection) and
:class:`SimCall`; each connection is a :class:`~eslchan.simulator.session.Session`."""

from __future__ import annotations

import logging
import socket
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gevent
from gevent.server import StreamServer

from eslchan.simulator.channels import Exec, SimChannel
from eslchan.simulator.commands import ApiCommands
from eslchan.simulator.coredb import DbLag
from eslchan.simulator.hooks import HookRun
from eslchan.simulator.interfaces import DEFAULT_MODULES
from eslchan.simulator.session import LOG_NAMES, Session, _raw_headers
from eslchan.simulator.switch import Switch
from eslchan.simulator.wire import SHUTDOWN_TEXT, SimEvent, disconnect_notice, log_data

log = logging.getLogger(__name__)


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

    All call timings (ringing, media, linger, heartbeat, the core database's lag) run
    ``speed`` times faster than real time; ``stall`` is in real seconds. ``show channels``
    and ``show calls`` lag the events as on the real switch unless ``db_lag`` says
    otherwise (:class:`~eslchan.simulator.coredb.DbLag`; ``DbLag.off()`` for none), with
    delays drawn from ``seed``. ``modules`` are the FreeSWITCH modules loaded (default: the
    recorded server's, with no TTS engine and no mod_soundtouch) and ``sound_files`` whether
    the say engine finds its prompts (the recorded server had none); ``execute_pickup`` is how
    long (real seconds) a queued sendmsg execute waits for the channel's thread to pick it up;
    without ``core_db`` `show` answers -ERR, as a switch running with its core database off
    does."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, password: str = "ClueCon", *,
                 speed: float = 1.0, heartbeat_interval: float = 20.0, hostname: str = "sim",
                 core_uuid: str | None = None, event_queue_max: int = 100_000,
                 max_missed: int = 500, domain: str = "sim.local",
                 modules: set[str] | frozenset[str] = DEFAULT_MODULES, sound_files: bool = False,
                 execute_pickup: float = 0.01, core_db: bool = True,
                 db_lag: DbLag | None = None, seed: int | None = 0) -> None:
        self.host = host
        self.port = port
        self.password = password
        self.speed = speed
        self.heartbeat_interval = heartbeat_interval
        self.hostname = hostname
        self.domain = domain
        self.event_queue_max = event_queue_max
        self.max_missed = max_missed
        self.commands: list[str] = []  # every command received, in order (the switch's command log)
        # every command whole: (first line, headers with lower-cased names, body)
        self.received: list[tuple[str, dict[str, str], str]] = []
        self.stats: dict[str, int] = {"lost_events": 0, "killed_listeners": 0, "events": 0}
        self.split = False
        self.stall_until = 0.0
        self._fail: list[str] = []
        self._lose = 0
        self._outages = 0  # restarts with down_for under way
        self._running = False
        self._sessions: set[Session] = set()
        self._server: StreamServer | None = None
        self._heartbeat: gevent.Greenlet | None = None
        self.switch = Switch(hostname=hostname, core_uuid=core_uuid or str(uuidlib.uuid4()),
                             speed=speed, publish=self._publish, modules=modules,
                             sound_files=sound_files, execute_pickup=execute_pickup,
                             core_db=core_db, db_lag=db_lag, seed=seed)
        self.switch.domain = domain
        self.api_commands = ApiCommands(self.switch, on_shutdown=self._shutdown)
        self.switch.run_api = self._api
        self.switch.listeners.append(self._log_from_event)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        self._running = True
        self._server = StreamServer((self.host, self.port), self._accept)
        self._server.start()
        self.port = self._server.server_port
        if self._heartbeat is None and self.heartbeat_interval > 0:
            self._heartbeat = gevent.spawn(self._heartbeat_loop)

    def stop(self) -> None:
        self._running = False
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
        self.switch.coredb.stop()

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
        if self._lose > 0:  # lose_events: no listener gets it
            self._lose -= 1
            self.stats["lost_events"] += 1
            return
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
        """sendmsg: an execute is queued for the channel's thread (its PRIVATE_COMMAND event
        fires once it has run); a hangup is carried out at once."""
        sw = self.switch
        cmd = headers.get("call-command", "execute")
        raw = _raw_headers(headers)
        raw = [(k.lower(), v) for k, v in raw]
        h = [("Command", first)] + raw
        if body:
            h += [("content-type", headers.get("content-type", "text/plain")),
                  ("content-length", str(len(body.encode())))]
        if cmd == "execute":
            app = headers.get("execute-app-name", "")
            arg = body if body else headers.get("execute-app-arg", "")
            try:
                loops = int(headers.get("loops", "1") or 1)
            except ValueError:
                loops = 1
            sw.queue_private(ch, Exec(app, arg, headers.get("event-uuid"), loops=loops or 1,
                                      event_lock=headers.get("event-lock", "") == "true",
                                      private_headers=h, body=body or None))
            return
        ev = SimEvent("PRIVATE_COMMAND", sw.common("PRIVATE_COMMAND") + h
                      + ch.headers(with_vars=False), body or None, ch.uuid)
        sw.publish(ev)
        if cmd == "hangup":
            gevent.spawn(sw.hangup, ch.uuid, headers.get("hangup-cause", "NORMAL_CLEARING"))

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

    def register(self, user: str, behaviour: str = "answer") -> None:
        """A phone registers as directory user ``user``: ``user/<user>`` now rings it, and it
        answers (or ``early``: early media first, ``busy``, ``no_answer``, ``reject``);
        ``unregistered`` takes it away again (USER_NOT_REGISTERED, no channel)."""
        self.switch.endpoint_behaviour[user] = behaviour

    def add_gateway(self, name: str, state: str = "up") -> None:
        """A sofia gateway ``name`` (``up`` or ``down``): ``sofia/gateway/<name>/<number>``
        dials through it; the numbers answer unless ``register`` (by number) says otherwise."""
        self.switch.gateways[name] = state

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
        ``down_for`` (real seconds) keeps the port closed meanwhile, so connects are refused;
        outages that overlap end with the last of them."""
        if down_for > 0:
            self._outages += 1
            if self._server is not None:
                self._server.stop(timeout=0.1)
                self._server = None
        self.drop_connections()
        if not keep_channels:
            for ch in list(self.switch.channels.values()):
                ch.gone = True
                if ch.greenlet is not None:
                    ch.greenlet.kill(block=False)
            self.switch.channels.clear()
            self.switch.coredb.clear()
            self.switch.core_uuid = str(uuidlib.uuid4())
            self.switch.seq = 0
            self.switch.started = time.time()
        if down_for > 0:
            try:
                gevent.sleep(down_for)
            finally:
                self._outages -= 1
            if self._outages == 0 and self._server is None and self._running:
                self._server = StreamServer((self.host, self.port), self._accept)
                self._server.start()

    def stall(self, seconds: float) -> None:
        """Commands received in the next ``seconds`` (real time) are answered late."""
        self.stall_until = time.monotonic() + seconds

    def lose_events(self, count: int) -> None:
        """The next ``count`` events reach no listener, and nothing says so: what a client
        sees when FreeSWITCH drops events for it without (yet) killing it."""
        self._lose += max(0, count)

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
    def hooks(self) -> list[HookRun]:
        """Every time FreeSWITCH would have acted on a hook variable (``simulator.hooks``)."""
        return self.switch.hooks

    @property
    def sessions(self) -> int:
        return len(self._sessions)
