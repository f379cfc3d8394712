"""One hardened inbound ESL connection, built on greenswitch's InboundESL.

greenswitch 0.0.19 supplies the connection object; eslchan replaces its reader, parser,
reply matching and send (SPEC §8):

- bytes are framed by :class:`~eslchan.esl.parser.FrameParser` (any chunking, json/xml/plain
  events, values decoded one by one after splitting, bodies kept apart);
- requests are written and queued for their reply under one lock, so the n-th reply always
  goes to the n-th request; a caller that times out leaves its slot behind, so a late reply
  is dropped instead of reaching the next caller;
- every call has a timeout, the write included: a peer that stops reading cannot hold a
  writer (or the writers queued behind it) past the call's timeout, and a write cut short by
  the timeout closes the connection (half a command must never be followed by another);
  every pending call fails with :class:`LinkDown` as soon as the connection closes;
- the reader yields to other greenlets every few frames even while data keeps arriving, and
  a socket silent for ``watchdog`` seconds is declared dead.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

import gevent
from gevent import socket
from gevent.event import AsyncResult
from gevent.event import Event as GEvent
from gevent.lock import Semaphore
from greenswitch.esl import InboundESL

from eslchan.esl.commands import Command, CommandError, control
from eslchan.esl.errors import CommandTimeout, EslError, LinkDown
from eslchan.esl.message import Frame
from eslchan.esl.parser import FrameParser, ProtocolError, decode_event

log = logging.getLogger("eslchan.esl")

#: Frames handled between two forced yields of the reader (an api caller is never starved).
YIELD_EVERY = 256  # frames read before letting other greenlets run (bounds their wait to ~5 ms)
RECV_SIZE = 256 * 1024


class AuthFailed(EslError):
    """FreeSWITCH refused us: wrong password (``-ERR invalid``) or an ACL rude-rejection."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class _Slot:
    """A request waiting for its reply; ``abandoned`` once its caller gave up."""

    __slots__ = ("result", "abandoned")

    def __init__(self) -> None:
        self.result: AsyncResult = AsyncResult()
        self.abandoned = False


class EslConnection(InboundESL):
    """An authenticated inbound connection.

    ``on_event(frame)`` is called from the reader greenlet for every event frame that is not
    a BACKGROUND_JOB awaited through :meth:`expect_job` (it must not block: queue and return).
    ``on_close(reason)`` is called once when the connection ends, whatever the cause.
    """

    def __init__(
        self,
        host: str,
        port: int,
        password: str,
        *,
        name: str = "",
        connect_timeout: float = 5.0,
        watchdog: float | None = 60.0,
        on_event: Callable[[Frame], None] | None = None,
        on_close: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(host, port, password, timeout=connect_timeout)
        self.name = name or f"{host}:{port}"
        self.watchdog = watchdog
        self.on_event = on_event
        self.on_close = on_close
        self.sock: socket.socket | None = None
        self.parser = FrameParser()
        self.last_rx = 0.0
        self.frames_received = 0
        self.close_reason: str | None = None
        self.closed = GEvent()
        self._send_lock = Semaphore()
        self._slots: deque[_Slot] = deque()
        self._jobs: dict[str, AsyncResult] = {}
        self._reader: gevent.Greenlet | None = None
        self._early: list[Frame] = []  # frames read during the handshake beyond the one used

    # --- life -----------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect, authenticate and start the reader; raises AuthFailed, LinkDown."""
        deadline = time.monotonic() + self.timeout
        try:
            self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise LinkDown(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connected = True
        try:
            first = self._read_handshake_frame(deadline)
            ctype = first.content_type
            if ctype == "text/rude-rejection":
                raise AuthFailed(f"rude rejection: {first.body.strip() or 'access denied'}")
            if ctype != "auth/request":
                raise LinkDown(f"expected auth/request, got {ctype or 'no content type'}")
            try:
                auth = control(f"auth {self.password}")
            except CommandError:
                raise AuthFailed("the configured password is not one line of text") from None
            self.sock.sendall(auth.wire)
            reply = self._read_handshake_frame(deadline)
            text = reply.reply_text
            if reply.content_type == "text/rude-rejection":
                raise AuthFailed(f"rude rejection: {reply.body.strip()}")
            if not text.startswith("+OK"):
                raise AuthFailed(text or f"unexpected {reply.content_type}")
        except BaseException:
            self._abort()
            raise
        self.sock.settimeout(None)
        self.last_rx = time.monotonic()
        self._reader = gevent.spawn(self.receive_events)

    def _read_handshake_frame(self, deadline: float) -> Frame:
        """Read exactly one frame before the reader runs (auth/request, the auth reply)."""
        assert self.sock is not None
        while True:
            if self._early:
                return self._early.pop(0)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LinkDown("timed out during authentication")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(RECV_SIZE)
            except TimeoutError:
                raise LinkDown("timed out during authentication") from None
            except OSError as exc:
                raise LinkDown(f"connection failed during authentication: {exc}") from None
            if not data:
                raise LinkDown("connection closed during authentication")
            self._early.extend(self.parser.feed(data))

    def _abort(self) -> None:
        self.connected = False
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass

    def close(self, reason: str = "closed by eslchan") -> None:
        """Close the socket; the reader then fails all pending calls."""
        if self.close_reason is None:
            self.close_reason = reason
        self._abort()
        if self._reader is None:
            self._finish(reason)

    def stop(self) -> None:  # greenswitch's name
        self.close("stopped")
        if self._reader is not None and self._reader is not gevent.getcurrent():
            self._reader.join(timeout=2)

    # --- reading --------------------------------------------------------------------------

    def receive_events(self) -> None:
        """The reader greenlet: frames in, replies to their callers, events to ``on_event``."""
        sock = self.sock
        assert sock is not None
        parser = self.parser
        reason = "connection closed by FreeSWITCH"
        since_yield = 0
        try:
            sock.settimeout(self.watchdog or None)  # no watchdog when 0/None
            pending, self._early = self._early, []  # read during the handshake
            while True:
                for frame in pending:
                    self._dispatch(frame)
                    since_yield += 1
                    if since_yield >= YIELD_EVERY:
                        since_yield = 0
                        gevent.sleep(0)
                try:
                    data = sock.recv(RECV_SIZE)
                except TimeoutError:
                    reason = f"watchdog: no traffic for {self.watchdog:g} s"
                    break
                if not data:
                    break
                self.last_rx = time.monotonic()
                pending = parser.feed(data)
        except ProtocolError as exc:
            reason = f"protocol error: {exc}"
        except OSError as exc:
            reason = self.close_reason or f"connection error: {exc}"
        except gevent.GreenletExit:
            reason = self.close_reason or "stopped"
        finally:
            self._abort()
            self._finish(self.close_reason or reason)

    def _dispatch(self, frame: Frame) -> None:
        self.frames_received += 1
        ctype = frame.headers.get("Content-Type", "")
        if ctype == "command/reply" or ctype == "api/response":
            self._reply(frame)
        elif ctype.startswith("text/event-"):
            if self._jobs and self._job_result(frame):
                return
            if self.on_event is not None:
                self.on_event(frame)
        elif ctype == "text/disconnect-notice":
            if frame.headers.get("Content-Disposition") != "linger":
                self.close_reason = self.close_reason or (
                    "disconnected by FreeSWITCH: " + (frame.body.strip() or "no reason")
                )
        elif ctype == "text/rude-rejection":
            self.close_reason = f"rude rejection: {frame.body.strip()}"
        # log/data and anything else: not subscribed, ignored

    def _reply(self, frame: Frame) -> None:
        # FreeSWITCH answers the commands of one connection in order: the oldest slot owns it
        if not self._slots:
            log.warning("node %s: reply with no request pending: %s", self.name, frame.headers)
            return
        slot = self._slots.popleft()
        if not slot.abandoned:  # else: the late reply of a caller that timed out, dropped
            slot.result.set(frame)

    def _job_result(self, frame: Frame) -> bool:
        # cheap test before decoding, on the bytes: decoding the whole body to text first
        # would be wasted on json events (decoded from the bytes) and on every other job
        if frame.raw_body.find(b"BACKGROUND_JOB", 0, 4096) < 0:
            return False
        try:
            event = decode_event(frame)
        except ProtocolError:
            return False
        if event.get("Event-Name") != "BACKGROUND_JOB":
            return False
        waiter = self._jobs.pop(event.get("Job-UUID", ""), None)
        if waiter is None:
            return False
        waiter.set(event)
        return True

    def _finish(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.connected = False
        self.close_reason = self.close_reason or reason
        error = LinkDown(f"node {self.name}: {self.close_reason}")
        slots, self._slots = self._slots, deque()
        for slot in slots:
            slot.result.set_exception(error)
        jobs, self._jobs = self._jobs, {}
        for waiter in jobs.values():
            waiter.set_exception(error)
        self.closed.set()
        if self.on_close is not None:
            try:
                self.on_close(self.close_reason)
            except Exception:
                log.exception("node %s: on_close handler failed", self.name)

    # --- requests -------------------------------------------------------------------------

    def request(self, cmd: Command, timeout: float) -> Frame:
        """Send ``cmd`` and return its reply frame (command/reply or api/response), all
        within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        slot = self._send(cmd, timeout)
        try:
            return slot.result.get(timeout=max(0.0, deadline - time.monotonic()))
        except gevent.Timeout:
            slot.abandoned = True
            raise CommandTimeout(f"node {self.name}: no answer to {cmd.name} within {timeout:g} s") from None
        except BaseException:
            slot.abandoned = True
            raise

    def expect_job(self, job_uuid: str) -> AsyncResult:
        """Register interest in the BACKGROUND_JOB of ``job_uuid`` (before sending the bgapi)."""
        if self.closed.is_set():
            raise LinkDown(f"node {self.name}: {self.close_reason}")
        waiter = AsyncResult()
        self._jobs[job_uuid] = waiter
        return waiter

    def forget_job(self, job_uuid: str) -> None:
        self._jobs.pop(job_uuid, None)

    def _send(self, cmd: Command, timeout: float) -> _Slot:
        slot = _Slot()
        deadline = time.monotonic() + timeout
        if not self._send_lock.acquire(timeout=timeout):
            raise CommandTimeout(f"node {self.name}: {cmd.name} not sent within {timeout:g} s "
                                 "(an earlier write is still stuck)")
        try:
            if not self.connected or self.closed.is_set() or self.sock is None:
                raise LinkDown(f"node {self.name}: {self.close_reason or 'not connected'}")
            # queue first, then write: the reply cannot overtake its slot
            self._slots.append(slot)
            timer = gevent.Timeout(max(0.0, deadline - time.monotonic()))
            timer.start()
            try:
                self.sock.sendall(cmd.wire)
            except gevent.Timeout as exc:
                if exc is not timer:
                    raise
                slot.abandoned = True
                self.close(f"write of {cmd.name} timed out after {timeout:g} s")
                raise CommandTimeout(f"node {self.name}: FreeSWITCH did not take {cmd.name} "
                                     f"within {timeout:g} s") from None
            except OSError as exc:
                self.close(f"send failed: {exc}")
                raise LinkDown(f"node {self.name}: send failed: {exc}") from None
            finally:
                timer.close()
        finally:
            self._send_lock.release()
        return slot

    def send(self, data: str) -> Frame:  # greenswitch's signature, for compatibility
        """Send a fixed control line (greenswitch API); user data goes through commands."""
        return self.request(control(data), self.timeout)

    # greenswitch's event processing greenlet is not used: events go to ``on_event``
    def start_event_handlers(self) -> None:  # pragma: no cover - never called
        raise NotImplementedError
