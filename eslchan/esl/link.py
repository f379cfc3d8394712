"""NodeLink: the persistent, self-healing link to one FreeSWITCH node.

Two inbound connections per node (SPEC §8): an *event* connection subscribed to the
configured events, and a *command* connection that carries api/bgapi/sendmsg and only
receives BACKGROUND_JOB results and heartbeats, so an event burst never delays a command.
A command-only link (``events=False``) has the second connection alone.
Either connection dying takes the link down; it is rebuilt forever with exponential backoff,
jitter and a cap. The layers above hear about it through ``on_up``/``on_down`` and receive
events through ``on_event``, all called from one dispatcher greenlet in arrival order.
Events wait in a bounded queue: on overflow they are counted, logged and reported through
``on_lost_events`` (after the events queued before the loss), so the registry resyncs.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import gevent
from gevent.event import Event as GEvent

from eslchan.config import LinkOptions, NodeConfig
from eslchan.esl.commands import Command, control
from eslchan.esl.connection import AuthFailed, EslConnection
from eslchan.esl.errors import CommandRejected, CommandTimeout, EslError, LinkDown
from eslchan.esl.message import Event, Frame
from eslchan.esl.parser import ProtocolError, decode_event

log = logging.getLogger("eslchan.esl")

CommandListener = Callable[[str, Command, float, "str | None"], None]

_UP, _DOWN, _LOST = "up", "down", "lost"  # markers in the event queue
_EVENT_NAME = re.compile(r"[A-Za-z0-9_:]+(?: [A-Za-z0-9_:]+)*")  # "CUSTOM a::b" is one entry
_DISPATCH_YIELD_EVERY = 256


def _noop(*_args: Any) -> None:
    return None


def _with_heartbeat(names: Iterable[str]) -> list[str]:
    """The subscription words plus HEARTBEAT (it feeds the watchdog), placed before CUSTOM:
    FreeSWITCH reads every word after CUSTOM as a subclass name, not an event name."""
    words = list(dict.fromkeys(w for name in names for w in name.split(" ")))
    at = words.index("CUSTOM") if "CUSTOM" in words else len(words)
    head, tail = words[:at], words[at:]
    if "HEARTBEAT" not in head:
        head.append("HEARTBEAT")
        tail = [w for w in tail if w != "HEARTBEAT"]
    return head + tail


def _is_failure(text: str) -> bool:
    return text.startswith("-ERR") or text.startswith("-USAGE")


class NodeLink:
    def __init__(
        self,
        node: NodeConfig,
        options: LinkOptions,
        *,
        on_event: Callable[[str, Event], None] = _noop,
        on_up: Callable[[str], None] = _noop,
        on_down: Callable[[str], None] = _noop,
        on_lost_events: Callable[[str], None] = _noop,
        events: bool = True,
    ) -> None:
        if options.event_format not in ("json", "plain", "xml"):
            raise ValueError(f"event_format must be json, plain or xml, not {options.event_format!r}")
        for name in options.events:  # a bad name would make every subscription fail
            if not isinstance(name, str) or not _EVENT_NAME.fullmatch(name):
                raise ValueError(f"bad event name in the subscription: {name!r}")
        self.node = node
        self.options = options
        self.name = node.name
        self.on_event = on_event
        self.on_up = on_up
        self.on_down = on_down
        self.on_lost_events = on_lost_events
        #: False: a command-only link (a cluster instance that does not own the node sends
        #: its commands there; the owner's link carries the events)
        self.events = events
        self.state = "down"
        self.last_error: str | None = None
        # monotonic time of the last command FreeSWITCH did not answer in time, until one is
        # answered in time again: the link is up but the switch is stalling (/health: degraded)
        self._stalled_since: float | None = None
        self._counters = {
            "events_received": 0,
            "events_dropped": 0,
            "events_undecodable": 0,
            "reconnects": 0,
            "connects": 0,
            "connect_failures": 0,
            "auth_failures": 0,
            "commands": 0,
            "command_errors": 0,
            "command_timeouts": 0,
            "lost_event_reports": 0,
        }
        self._queue: deque[Frame | str] = deque()
        self._wake = GEvent()
        self._overflowing = False
        self._dropped_in_episode = 0
        self._cmd: EslConnection | None = None
        self._evt: EslConnection | None = None
        self._stopping = GEvent()
        self._supervisor: gevent.Greenlet | None = None
        self._dispatcher: gevent.Greenlet | None = None
        self._listeners: list[CommandListener] = []
        self._attempt = 0

    # --- public state ---------------------------------------------------------------------

    @property
    def is_up(self) -> bool:
        return self.state == "up"

    @property
    def degraded(self) -> bool:
        """Up, but the last command FreeSWITCH had to answer was not answered in time."""
        return self.is_up and self._stalled_since is not None

    @property
    def stats(self) -> dict[str, Any]:
        return {
            **self._counters,
            "state": self.state,
            "event_queue": len(self._queue),
            "last_error": self.last_error,
        }

    def add_command_listener(self, fn: CommandListener) -> None:
        """``fn(node, cmd, seconds, error)`` after every command; error is None or a class name."""
        self._listeners.append(fn)

    # --- life -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._supervisor is not None:
            return
        self._stopping.clear()
        self._dispatcher = gevent.spawn(self._dispatch_loop)
        self._supervisor = gevent.spawn(self._supervise)

    def stop(self) -> None:
        self._stopping.set()
        for conn in (self._cmd, self._evt):
            if conn is not None:
                conn.close("link stopped")
        if self._supervisor is not None:
            self._supervisor.kill(block=True, timeout=2)
        if self._dispatcher is not None:
            self._dispatcher.kill(block=True, timeout=2)
        self._supervisor = self._dispatcher = None
        self._cmd = self._evt = None
        self.state = "down"

    def _backoff(self) -> float:
        o = self.options
        delay = min(o.backoff_max, o.backoff_initial * (2 ** min(self._attempt, 30)))
        delay *= 1 + random.uniform(-o.backoff_jitter, o.backoff_jitter)
        self._attempt += 1
        return max(0.0, min(delay, o.backoff_max))

    def _supervise(self) -> None:
        extra = {"node": self.name}
        while not self._stopping.is_set():
            if self.state != "auth_failed":  # stays visible (/health) while retrying
                self.state = "connecting"
            try:
                cmd, evt = self._connect_once()
            except AuthFailed as exc:
                self.state = "auth_failed"
                self.last_error = f"authentication refused: {exc.reason}"
                self._counters["auth_failures"] += 1
                delay = self._backoff()
                log.error(
                    "node %s (%s:%s): authentication refused: %s; retrying in %.2f s",
                    self.name, self.node.host, self.node.port, exc.reason, delay, extra=extra,
                )  # fmt: skip
            except (EslError, OSError) as exc:
                self.state = "down"
                self.last_error = str(exc)
                self._counters["connect_failures"] += 1
                delay = self._backoff()
                log.warning(
                    "node %s: cannot connect: %s; retrying in %.2f s",
                    self.name, exc, delay, extra=extra,
                )  # fmt: skip
            except Exception as exc:  # a bug must not end reconnecting for good
                self.state = "down"
                self.last_error = f"internal error: {exc!r}"
                self._counters["connect_failures"] += 1
                delay = self._backoff()
                log.exception("node %s: connect failed unexpectedly", self.name, extra=extra)
            else:
                up_since = time.monotonic()
                closed = [cmd.closed] if evt is None else [cmd.closed, evt.closed]
                gevent.wait([*closed, self._stopping], count=1)
                reason = cmd.close_reason or (evt.close_reason if evt is not None else None) or "stopped"
                self._teardown(cmd, evt)
                if self._stopping.is_set():
                    break
                # a link that stayed up a while reconnects at once-ish; a flapping one
                # (accepted, then dropped again and again) keeps backing off
                if time.monotonic() - up_since >= self.options.backoff_max:
                    self._attempt = 0
                self.last_error = reason
                self._counters["reconnects"] += 1
                delay = self._backoff()
                log.warning(
                    "node %s: link down: %s; reconnecting in %.2f s",
                    self.name, reason, delay, extra=extra,
                )  # fmt: skip
            if self._stopping.wait(delay):
                break

    def _connect_once(self) -> tuple[EslConnection, EslConnection | None]:
        o, n = self.options, self.node
        timeout = o.connect_timeout
        cmd = EslConnection(
            n.host, n.port, n.password, name=f"{n.name}/cmd", connect_timeout=timeout,
            watchdog=o.watchdog,
        )  # fmt: skip
        evt = EslConnection(
            n.host, n.port, n.password, name=f"{n.name}/events", connect_timeout=timeout,
            watchdog=o.watchdog,
        ) if self.events else None  # fmt: skip
        early: list[Frame] = []  # events that beat the subscription reply to the supervisor
        if evt is not None:
            evt.on_event = early.append
        try:
            cmd.connect()
            self._subscribe(cmd, "json", ["BACKGROUND_JOB", "HEARTBEAT"], timeout)
            if evt is not None:
                evt.connect()
                self._subscribe(evt, o.event_format, _with_heartbeat(o.events), timeout)
        except BaseException:
            cmd.close("connect failed")
            if evt is not None:
                evt.close("connect failed")
            raise
        # no yield from here on: "up" is announced before any event of this connection
        self._cmd, self._evt = cmd, evt
        self.state = "up"
        self._stalled_since = None
        self._counters["connects"] += 1
        self._put_marker(_UP)
        for frame in early:
            self._enqueue_event(frame)
        if evt is not None:
            evt.on_event = self._enqueue_event
        log.info("node %s: link up (%s:%s)", n.name, n.host, n.port, extra={"node": n.name})
        return cmd, evt

    @staticmethod
    def _subscribe(conn: EslConnection, fmt: str, events: list[str], timeout: float) -> None:
        reply = conn.request(control(f"event {fmt} {' '.join(events)}"), timeout)
        if not reply.reply_text.startswith("+OK"):
            raise LinkDown(f"node {conn.name}: subscription refused: {reply.reply_text}")

    def _teardown(self, cmd: EslConnection, evt: EslConnection | None) -> None:
        was_up = self._cmd is cmd
        if was_up:
            self._cmd = self._evt = None
            self.state = "down"
        cmd.close("link down")
        if evt is not None:
            evt.close("link down")
        if was_up:
            self._put_marker(_DOWN)

    # --- events ---------------------------------------------------------------------------

    def _enqueue_event(self, frame: Frame) -> None:
        """From the event connection's reader: never blocks, bounded."""
        self._counters["events_received"] += 1
        if len(self._queue) >= self.options.event_queue_max:
            self._counters["events_dropped"] += 1
            self._dropped_in_episode += 1
            if not self._overflowing:
                self._overflowing = True
                log.error(
                    "node %s: event queue full (%d): dropping events, a resync will follow",
                    self.name, self.options.event_queue_max, extra={"node": self.name},
                )  # fmt: skip
                self._queue.append(_LOST)  # markers bypass the bound
            return
        self._queue.append(frame)
        self._wake.set()

    def _put_marker(self, marker: str) -> None:
        self._queue.append(marker)
        self._wake.set()

    def _dispatch_loop(self) -> None:
        queue = self._queue
        name = self.name
        since_yield = 0
        while True:
            if not queue:
                self._wake.clear()
                if not queue:
                    self._wake.wait()
                continue
            item = queue.popleft()
            if type(item) is Frame:
                try:
                    event = decode_event(item)
                except ProtocolError as exc:
                    self._counters["events_undecodable"] += 1
                    log.warning("node %s: undecodable event: %s", name, exc, extra={"node": name})
                    continue
                try:  # inline rather than through _call: this runs once per event
                    self.on_event(name, event)
                except Exception:
                    log.exception("node %s: on_event failed", name, extra={"node": name})
                since_yield += 1
                if since_yield >= _DISPATCH_YIELD_EVERY:
                    since_yield = 0
                    gevent.sleep(0)
            elif item == _UP:
                self._call(self.on_up, name)
            elif item == _DOWN:
                self._call(self.on_down, name)
            elif item == _LOST:
                dropped, self._dropped_in_episode = self._dropped_in_episode, 0
                self._overflowing = False
                self._counters["lost_event_reports"] += 1
                log.error(
                    "node %s: %d events were dropped; reporting lost events", name, dropped,
                    extra={"node": name},
                )  # fmt: skip
                self._call(self.on_lost_events, name)

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("node %s: %s failed", self.name, getattr(fn, "__name__", fn))

    # --- commands -------------------------------------------------------------------------

    def _conn(self) -> EslConnection:
        conn = self._cmd
        if conn is None or self.state != "up":
            raise LinkDown(f"node {self.name} is not connected ({self.state})")
        return conn

    def _run(self, cmd: Command, fn: Callable[[], str]) -> str:
        self._counters["commands"] += 1
        started = time.monotonic()
        error: str | None = None
        try:
            return fn()
        except EslError as exc:
            error = type(exc).__name__
            self._counters["command_errors"] += 1
            raise
        finally:
            if self._listeners:
                seconds = time.monotonic() - started
                for listener in self._listeners:
                    try:
                        listener(self.name, cmd, seconds, error)
                    except Exception:
                        log.exception("node %s: command listener failed", self.name)

    def _request(self, conn: EslConnection, cmd: Command, wait: float) -> Frame:
        """One request/reply; remembers whether FreeSWITCH answered in time (for /health)."""
        try:
            reply = conn.request(cmd, wait)
        except CommandTimeout:
            self._counters["command_timeouts"] += 1
            if self._stalled_since is None:
                self._stalled_since = time.monotonic()
            raise
        self._stalled_since = None
        return reply

    def api(self, cmd: Command, timeout: float | None = None) -> str:
        """Run an ``api`` command; returns its body. CommandRejected on a -ERR/-USAGE body."""
        if cmd.kind != "api":
            raise ValueError(f"not an api command: {cmd.text}")
        wait = self.options.command_timeout if timeout is None else timeout

        def run() -> str:
            body = self._request(self._conn(), cmd, wait).body
            if _is_failure(body):
                raise CommandRejected(body.strip(), cmd.text)
            return body

        return self._run(cmd, run)

    def bgapi(self, cmd: Command, timeout: float | None = None, *,
              on_accepted: Callable[[str], None] | None = None) -> str:
        """Run a ``bgapi`` command and wait for its BACKGROUND_JOB; returns the job's body.

        FreeSWITCH must accept the job (``+OK Job-UUID``) within the command timeout, like any
        command (CommandTimeout otherwise); ``on_accepted(reply)`` is then called, and the job's
        result is awaited for ``timeout`` seconds (default: the command timeout), since a job
        such as an originate may rightly take as long as a phone rings."""
        if cmd.kind != "bgapi" or not cmd.job_uuid:
            raise ValueError(f"not a bgapi command: {cmd.text}")
        job = cmd.job_uuid
        accept = self.options.command_timeout
        wait = accept if timeout is None else timeout

        def run() -> str:
            conn = self._conn()
            waiter = conn.expect_job(job)  # before sending: the result may beat the reply
            try:
                reply = self._request(conn, cmd, accept).reply_text
                if not reply.startswith("+OK"):
                    raise CommandRejected(reply, cmd.text)
                if on_accepted is not None:
                    on_accepted(reply)
                try:
                    event = waiter.get(timeout=wait)
                except gevent.Timeout:
                    raise CommandTimeout(
                        f"node {self.name}: no result for {cmd.name} (job {job}) within {wait:g} s"
                    ) from None
            finally:
                conn.forget_job(job)
            body = event.get("_body", "")
            if _is_failure(body):
                raise CommandRejected(body.strip(), cmd.text)
            return body

        return self._run(cmd, run)

    def send(self, cmd: Command, timeout: float | None = None) -> str:
        """Send a sendmsg/control command; returns its Reply-Text. CommandRejected on -ERR."""
        if cmd.kind not in ("sendmsg", "control"):
            raise ValueError(f"use api()/bgapi() for {cmd.text}")
        wait = self.options.command_timeout if timeout is None else timeout

        def run() -> str:
            text = self._request(self._conn(), cmd, wait).reply_text
            if _is_failure(text):
                raise CommandRejected(text, cmd.text)
            return text

        return self._run(cmd, run)

    def __repr__(self) -> str:
        return f"<NodeLink {self.name} {self.node.host}:{self.node.port} {self.state}>"
