"""GET /v2/accounts/{A}/events: the account's channel events, live, as Server-Sent Events.

One registry listener serves every stream of the app (registered while at least one stream is
open). It runs inside the registry's apply(), so it only matches the event against each stream
and does a ``put_nowait`` into that stream's bounded queue; the channel's listing view is built
and serialised once per event, and only when some stream wants it. A stream whose queue is full
has fallen behind: it is dropped from the fan-out at once, told ``event: overflow`` and closed, so
a slow client never grows memory nor slows the registry. The client re-lists the channels
(GET .../channels) and reconnects.

Browsers' EventSource cannot set headers, so the token may also come as ``?auth_token=``.
The token is checked again at every keepalive: a stream ends when its token expires or is
revoked, or when the account is no longer reachable after a configuration reload.

Every message has an id, ``<epoch>.<number>``, numbers rising by one per event the instance
heard (in a cluster: the cluster's stream numbers, the same on every instance). A client that
reconnects with ``Last-Event-ID`` first gets what it missed, if the instance still has all of
it: the single process keeps the last ``[http] event_history`` messages while streams are open
and for ``event_history_seconds`` after the last one closed; a cluster instance reads them
back from the shared stream (its retention). Otherwise the stream starts with
``event: reset``: re-list the channels, then carry on. A cluster instance whose mirror had to
start again from the snapshots sends ``event: reset`` on its open streams too.

Streams are bounded per token's account (its policy's ``max_streams``, 429 beyond; in a
cluster counted across the instances) and per instance (503 beyond). A client that stops
reading cannot hold its greenlet, socket or queue: on overflow its queue is emptied at once,
and a write it does not take within ``http.stream_write_timeout`` ends the connection. A
client that goes away frees its slot at once: a watcher on the socket (which the server puts
in the WSGI environ) sees the end of the connection without waiting for the next write.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import gevent.queue
import gevent.socket
from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from eslchan.api.auth import authenticate
from eslchan.api.channels import checked_account, limit_error
from eslchan.api.envelope import ApiError, field_error
from eslchan.config import DEFAULT_EVENTS, Account
from eslchan.policy import LimitExceeded
from eslchan.registry.channel import GREGORIAN_OFFSET
from eslchan.registry.registry import CHANNEL_EVENTS

#: Flask config keys (defaults set by :func:`install`); read when a stream opens.
KEEPALIVE = "EVENTS_KEEPALIVE_SECONDS"
QUEUE_MAX = "EVENTS_QUEUE_MAX"
MAX_STREAMS = "EVENTS_MAX_STREAMS"
WRITE_TIMEOUT = "EVENTS_WRITE_TIMEOUT"
DEFAULTS = {KEEPALIVE: 15.0, QUEUE_MAX: 1000, MAX_STREAMS: 100, WRITE_TIMEOUT: 10.0}
#: The WSGI environ key under which the server hands the client's socket to the app.
SOCKET_KEY = "eslchan.socket"
#: Bytes a stream's client may send after its request before it is cut off (it has no reason to).
_MAX_INBOUND = 64 * 1024
#: The kernel's send buffer of a stream's socket (left alone it grows to megabytes per client).
_SEND_BUFFER = 128 * 1024

#: ?events=: comma-separated FreeSWITCH event names (either case), at most 32 of them.
EVENT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
MAX_FILTER_NAMES = 32
#: SSE field values must not break the framing; event names are plain tokens anyway.
_UNSAFE_NAME = re.compile(r"[^a-z0-9_]")
#: Most events one socket write carries when the queue holds a burst.
_BATCH = 64
_RETRY_MS = 3000

_CLOSE = object()
_RESET = object()
#: a Last-Event-ID: the epoch of the ids, a dot, the number of the last event the client had
LAST_EVENT_ID = re.compile(r"^([0-9a-f]{1,16})\.([0-9]{1,18})$")


class _Stream:
    """One open stream: who it is for, what it wants, and its bounded queue."""

    __slots__ = (
        "account_id",
        "actor",
        "token",
        "descendants",
        "names",
        "queue",
        "queue_max",
        "overflowed",
        "closing",
        "watcher",
        "slot",
        "skip_upto",
        "last_id",
    )

    def __init__(
        self,
        account_id: str,
        actor: Account,
        token: str,
        descendants: bool,
        names: frozenset[str] | None,
        queue_max: int,
    ):
        self.account_id = account_id
        self.actor = actor
        self.token = token
        self.descendants = descendants
        self.names = names
        self.queue_max = queue_max
        # maxsize 0 would mean unbounded in gevent: never allow it
        self.queue: gevent.queue.Queue = gevent.queue.Queue(maxsize=max(1, queue_max))
        self.overflowed = False
        self.closing = False
        self.watcher: gevent.Greenlet | None = None
        self.slot: str | None = None  # its slot in the cluster's count of the account's streams
        self.skip_upto = 0  # live messages up to this number were sent as the replay
        self.last_id = ""

    def wants(self, account: str, name: str, tenancy: Any) -> bool:
        if self.names is not None and name not in self.names:
            return False
        return account == self.account_id or (self.descendants and tenancy.within(account, self.account_id))


def _message(node: str, channel: Any, event: dict[str, str], name: str) -> tuple[str, str]:
    """(SSE event name, data JSON) of one registry event; built once, shared by every stream.
    From the hangup on, it names the hangup cause."""
    now = time.time()
    micros = event.get("Event-Date-Timestamp", "")
    when = int(micros) / 1e6 if micros.isdigit() else now
    data: dict[str, Any] = {
        "uuid": channel.uuid,
        # with ?descendants=true the stream mixes accounts; acting on a channel needs its own
        "account_id": channel.account_id,
        "node": node,
        "event": name,
        "timestamp": int(when) + GREGORIAN_OFFSET,
        "channel": channel.listing(now),
    }
    if name == "CHANNEL_UUID" and event.get("Old-Unique-ID"):
        data["old_uuid"] = event["Old-Unique-ID"]  # renamed: the client's row under it is this one
    if channel.hangup_cause:
        data["hangup_cause"] = channel.hangup_cause  # why a call ended, or never answered
    removed = event.get("Eslchan-Removed")
    if removed:
        data["removed"] = removed  # eslchan dropped it (gone, node down) without a FreeSWITCH event
    return _UNSAFE_NAME.sub("_", name.lower()), json.dumps(data, separators=(",", ":"))


class EventHub:
    """The app's open streams and the one registry listener that feeds them; in the single
    process also the recent messages, for clients that come back with Last-Event-ID."""

    def __init__(self, app: Flask):
        self._app = app
        self._streams: list[_Stream] = []
        self._unlisten: Callable[[], None] | None = None
        self.closed = False
        self.opened = 0
        self.overflows = 0
        self.resets = 0
        self._epoch = secrets.token_hex(4)
        self._seq = 0
        self._first_id = 1  # the first id of the current listening period
        self._dropped_upto = 0  # the newest id no longer in the history
        # (id, monotonic time, account, event name, (sse name, data))
        self._history: deque[tuple[int, float, str, str, tuple[str, str]]] = deque()
        self._linger: gevent.Greenlet | None = None

    @property
    def _cluster(self) -> Any:
        return self._state.cluster

    @property
    def epoch(self) -> str:
        cluster = self._cluster
        return cluster.mirror.epoch if cluster is not None else self._epoch

    @property
    def _state(self) -> Any:
        return self._app.extensions["eslchan"]

    @property
    def streams(self) -> int:
        """Streams open now."""
        return len(self._streams)

    @property
    def listening(self) -> bool:
        """Whether the hub is subscribed to the registry (only while a stream is open)."""
        return self._unlisten is not None

    def open(self, stream: _Stream, per_account: int) -> None:
        """Count ``stream`` in; 503 past the instance's cap, 429 past its account's."""
        if self.closed:
            raise ApiError(503, "shutting down", {"reason": "eslchan is stopping"})
        limit = int(self._app.config[MAX_STREAMS])
        if len(self._streams) >= limit:
            raise ApiError(
                503, "too many event streams", {"max_streams": limit}, headers={"Retry-After": "5"}
            )
        held = sum(1 for s in self._streams if s.actor.id == stream.actor.id)
        if held >= per_account:
            raise limit_error(LimitExceeded("max_streams", per_account,
                                            f"the account already holds {held} event streams"))
        cluster = self._cluster
        if cluster is not None:  # the account's streams on every instance
            slot = f"{cluster.name}:{secrets.token_hex(8)}"
            if cluster.streams.take(stream.actor.id, slot, per_account) is False:
                raise limit_error(LimitExceeded("max_streams", per_account,
                                                "the account already holds its event streams in the cluster"))
            stream.slot = slot
        self._streams.append(stream)
        self.opened += 1
        if self._linger is not None:
            self._linger.kill(block=False)
            self._linger = None
        if self._unlisten is None:
            self._first_id = self._seq + 1
            self._history.clear()
            self._unlisten = self._state.registry.listen(self._on_event)

    def close_stream(self, stream: _Stream) -> None:
        try:
            self._streams.remove(stream)
        except ValueError:
            pass
        watcher, stream.watcher = stream.watcher, None
        if watcher is not None and watcher is not gevent.getcurrent():
            watcher.kill(block=False)
        slot, stream.slot = stream.slot, None
        if slot is not None:
            self._cluster.streams.release(slot)
        if not self._streams and self._unlisten is not None and self._linger is None:
            if self._cluster is not None:  # the shared stream is the history
                self._stop_listening()
            else:  # clients that come back soon get what they missed
                seconds = float(self._app.config["ESLCHAN"].http.event_history_seconds)
                self._linger = gevent.spawn_later(seconds, self._stop_listening)

    def _stop_listening(self) -> None:
        self._linger = None
        if not self._streams and self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
            self._dropped_upto = self._seq
            self._history.clear()

    def close(self) -> None:
        """End every stream and refuse new ones (the daemon is stopping)."""
        self.closed = True
        for stream in list(self._streams):
            stream.closing = True
            try:
                stream.queue.put_nowait(_CLOSE)
            except gevent.queue.Full:
                pass  # its greenlet is busy draining and sees ``closing`` next

    def reset_all(self) -> None:
        """Every open stream tells its client to re-list (the cluster's mirror started again)."""
        for stream in tuple(self._streams):
            self._put(stream, _RESET)

    def _on_event(self, node: str, channel: Any, event: dict[str, str]) -> None:
        """Registry listener: match and put_nowait, nothing that blocks or scales with history."""
        account = getattr(channel, "account_id", None)
        if not account:
            return
        name = event.get("Event-Name", "")
        cluster = self._cluster
        if cluster is not None:
            seq = cluster.event_id(event) or self._seq
        else:
            self._seq += 1
        seq = self._seq if cluster is None else seq
        message: tuple[int, str, str] | None = None
        if cluster is None:
            message = (seq, *_message(node, channel, event, name))
            self._remember(seq, account, name, message[1:])
        tenancy = self._state.tenancy
        for stream in tuple(self._streams):
            if not stream.wants(account, name, tenancy):
                continue
            if message is None:
                message = (seq, *_message(node, channel, event, name))
            self._put(stream, message)

    def _remember(self, seq: int, account: str, name: str, message: tuple[str, str]) -> None:
        config = self._app.config["ESLCHAN"].http
        history = self._history
        now = time.monotonic()
        history.append((seq, now, account, name, message))
        horizon = now - config.event_history_seconds
        while history and (len(history) > config.event_history or history[0][1] < horizon):
            self._dropped_upto = history.popleft()[0]

    def replay(self, stream: _Stream, last_event_id: str) -> tuple[list[tuple[int, str, str]], str | None]:
        """What ``stream`` missed after ``last_event_id``: (messages, None), or ([], why not)
        when the instance no longer has all of it (the client gets event: reset)."""
        matched = LAST_EVENT_ID.fullmatch(last_event_id)
        if matched is None or matched.group(1) != self.epoch:
            return [], "unknown event id (eslchan restarted, or another cluster's)"
        after = int(matched.group(2))
        tenancy = self._state.tenancy
        limit = stream.queue_max
        cluster = self._cluster
        if cluster is not None:
            try:
                entries = cluster.mirror.replay(after, limit)
            except cluster.store.errors:
                return [], "the cluster's stream cannot be read"
            if entries is None:
                return [], "the events missed are no longer kept"
            out = [(seq, *_message(node, ch, event, event.get("Event-Name", "")))
                   for seq, node, ch, event in entries
                   if ch.account_id and stream.wants(ch.account_id, event.get("Event-Name", ""), tenancy)]
            stream.skip_upto = max([after, *(seq for seq, *_ in entries)])
            return out, None
        if self._unlisten is None or after < max(self._first_id, self._dropped_upto) or after > self._seq:
            return [], "the events missed are no longer kept"
        out = [(seq, *message) for seq, _, account, name, message in self._history
               if seq > after and stream.wants(account, name, tenancy)]
        if len(out) > limit:
            return [], "more events were missed than a stream holds"
        return out, None

    def _put(self, stream: _Stream, item: Any) -> None:
        if True:
            try:
                stream.queue.put_nowait(item)
            except gevent.queue.Full:
                stream.overflowed = True
                self.overflows += 1
                self.close_stream(stream)  # no more work for it; its greenlet says overflow and ends
                _drain(stream)  # what it will never read is freed now, not when its socket gives up


def _drain(stream: _Stream) -> None:
    """Empty a stream's queue and leave only the marker that wakes its greenlet."""
    while True:
        try:
            stream.queue.get_nowait()
        except gevent.queue.Empty:
            break
    stream.queue.put_nowait(_CLOSE)


def _watch(hub: EventHub, stream: _Stream, sock: Any) -> None:
    """End the stream as soon as its client closes the connection (pywsgi only notices on the
    next write, up to a keepalive later). Anything the client sends meanwhile is discarded."""
    received = 0
    try:
        while True:
            gevent.socket.wait_read(sock.fileno())
            data = sock.recv(4096)
            received += len(data)
            if not data or received > _MAX_INBOUND:
                break
    except (OSError, ValueError):  # reset, or the server closed the socket first
        pass
    if stream.watcher is gevent.getcurrent():
        stream.watcher = None
        stream.closing = True
        hub.close_stream(stream)
        try:
            stream.queue.put_nowait(_CLOSE)
        except gevent.queue.Full:
            _drain(stream)


def hub_of(app: Flask) -> EventHub:
    return app.extensions["eslchan.events"]


class _Collector(Collector):
    """eslchan_event_streams / eslchan_event_stream_overflows, summed over the apps sharing Metrics."""

    def __init__(self) -> None:
        self.hubs: list[EventHub] = []

    def collect(self) -> Iterator[Any]:
        yield GaugeMetricFamily(
            "eslchan_event_streams", "Open live event streams (SSE)", value=sum(h.streams for h in self.hubs)
        )
        yield CounterMetricFamily(
            "eslchan_event_stream_overflows",
            "Event streams closed because the client fell behind",
            value=sum(h.overflows for h in self.hubs),
        )


def install(app: Flask) -> None:
    """Create the app's hub, its config defaults and its metrics; register the blueprint after."""
    for key, value in DEFAULTS.items():
        app.config.setdefault(key, value)
    hub = EventHub(app)
    app.extensions["eslchan.events"] = hub
    cluster = app.extensions["eslchan"].cluster
    if cluster is not None:  # a mirror that starts again: streams' clients must re-list
        cluster.mirror.on_reset.append(hub.reset_all)
    metrics = app.extensions["eslchan"].metrics
    collector = getattr(metrics, "_event_streams", None)
    if collector is None:  # one collector per Metrics, which several apps may share
        collector = _Collector()
        metrics.registry.register(collector)
        metrics._event_streams = collector
    collector.hubs.append(hub)


# --- the endpoint --------------------------------------------------------------------------

bp = Blueprint("events", __name__)


def _authenticate() -> tuple[Account, str]:
    """Header token as everywhere, else ``?auth_token=`` (for EventSource); 401/429 as everywhere."""
    account = authenticate(request.args.get("auth_token", "").strip() or None)
    return account, g.auth_token


#: Subscribed names that never reach a stream: they concern no channel.
_NOT_CHANNEL_EVENTS = frozenset({"ALL", "BACKGROUND_JOB", "HEARTBEAT", "SHUTDOWN", "CUSTOM"})


def streamable(subscribed: Iterable[str]) -> frozenset[str]:
    """The event names a stream may ask for: every channel event the registry understands,
    and whatever else the links subscribe to (a client need not know the subscription)."""
    names = {n for n in subscribed if n.isupper()}  # lower-case entries are CUSTOM subclasses
    names |= CHANNEL_EVENTS
    if "ALL" in names:
        names |= set(DEFAULT_EVENTS)
    return frozenset(names - _NOT_CHANNEL_EVENTS)


def _names() -> frozenset[str] | None:
    raw = request.args.get("events")
    if raw is None:
        return None
    names = raw.split(",")
    if len(names) > MAX_FILTER_NAMES or not all(EVENT_NAME.fullmatch(n) for n in names):
        raise field_error(
            "events",
            "pattern",
            f"a comma-separated list of at most {MAX_FILTER_NAMES} event names such as "
            "CHANNEL_CREATE,CHANNEL_DESTROY",
            value=raw[:256],
        )
    wanted = frozenset(n.upper() for n in names)
    known = streamable(current_app.extensions["eslchan"].config.link.events)
    unknown = sorted(wanted - known)
    if unknown:  # a name that can never come would leave the stream silent for good
        raise field_error(
            "events", "enum", f"unknown event name(s): {', '.join(unknown)}", target=sorted(known)
        )
    return wanted


def _descendants() -> bool:
    raw = request.args.get("descendants", "false")
    if raw not in ("true", "false"):
        raise field_error(
            "descendants",
            "enum",
            "Value not found in enumerated list of values",
            target=["true", "false"],
            value=raw[:64],
        )
    return raw == "true"


def _frame(epoch: str, seq: int, name: str, data: str) -> str:
    return f"id: {epoch}.{seq}\nevent: {name}\ndata: {data}\n\n"


def _reset(reason: str) -> str:
    return f"event: reset\ndata: {json.dumps({'reason': reason})}\n\n"


def _still_allowed(app: Flask, stream: _Stream) -> bool:
    """The token still verifies (not expired, key not replaced) and still reaches the account."""
    ext = app.extensions["eslchan"]
    account = ext.tokens.verify(stream.token)
    if account is None or account.id != stream.actor.id:
        return False
    stream.actor = account
    return bool(ext.tenancy.may_access(account, stream.account_id))


def _run(app: Flask, hub: EventHub, stream: _Stream, keepalive: float,
         missed: list[tuple[int, str, str]], reset: str | None) -> Iterator[str]:
    epoch = hub.epoch
    checked = time.monotonic()
    try:
        # the first bytes carry the headers: once the client has them, the stream is subscribed
        head = f"retry: {_RETRY_MS}\n: eslchan events for account {stream.account_id}\n\n"
        if reset is not None:
            head += _reset(reset)
        yield head + "".join(_frame(epoch, *item) for item in missed)
        if missed:
            stream.last_id = f"{epoch}.{missed[-1][0]}"
        while True:
            if stream.overflowed:
                detail = json.dumps(
                    {"reason": "the client fell behind", "queue_max": stream.queue_max,
                     "last_id": stream.last_id}
                )
                yield f"event: overflow\ndata: {detail}\n\n"
                return
            if stream.closing:
                return
            if time.monotonic() - checked >= keepalive:
                checked = time.monotonic()
                if not _still_allowed(app, stream):
                    yield 'event: unauthorized\ndata: {"reason": "the token expired or was revoked"}\n\n'
                    return
            try:
                item = stream.queue.get(timeout=keepalive)
            except gevent.queue.Empty:
                yield ": keepalive\n\n"
                continue
            if item is _CLOSE:
                continue  # the loop's head says why (overflow, closing)
            out: list[str] = []
            while item is not _CLOSE:
                if item is _RESET:
                    out.append(_reset("eslchan's view of the channels started again: re-list them"))
                elif item[0] > stream.skip_upto:  # not already sent as the replay
                    out.append(_frame(epoch, *item))
                    stream.last_id = f"{epoch}.{item[0]}"
                if len(out) >= _BATCH or stream.overflowed:
                    break
                try:
                    item = stream.queue.get_nowait()
                except gevent.queue.Empty:
                    break
            if out:
                yield "".join(out)
            if item is _CLOSE:
                return
    finally:
        hub.close_stream(stream)  # runs on client disconnect too (the generator is closed)


@bp.route("/v2/accounts/<account_id>/events", methods=["GET"])
def account_events(account_id: str) -> Response:
    actor, token = _authenticate()
    checked_account(account_id)
    names = _names()
    descendants = _descendants()
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    if request.method == "HEAD":  # nothing to stream, no subscriber to leak
        return Response(status=200, mimetype="text/event-stream", headers=headers)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    hub = hub_of(app)
    stream = _Stream(account_id, actor, token, descendants, names, int(app.config[QUEUE_MAX]))
    hub.open(stream, current_app.extensions["eslchan"].policies.for_account(actor.id).max_streams)
    # registered first, then what the client missed: nothing between the two is lost
    missed: list[tuple[int, str, str]] = []
    reset: str | None = None
    last_event_id = request.headers.get("Last-Event-ID", "").strip()
    if last_event_id:
        missed, reset = hub.replay(stream, last_event_id[:64])
    sock = request.environ.get(SOCKET_KEY)
    if sock is not None:
        # a write the client does not take in time ends the connection (and the greenlet),
        # and what the kernel holds for a client that stopped reading is bounded too
        sock.settimeout(float(app.config[WRITE_TIMEOUT]))
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER)
        except OSError:
            pass
        stream.watcher = gevent.spawn(_watch, hub, stream, sock)
    # the watcher reads the socket: no second request may follow on this connection
    headers["Connection"] = "close"
    response = Response(
        _run(app, hub, stream, float(app.config[KEEPALIVE]), missed, reset),
        status=200,
        mimetype="text/event-stream",
        headers=headers,
    )
    # if the body is never iterated (client gone before the first write) the generator's
    # finally does not run, but the server still closes the response
    response.call_on_close(lambda: hub.close_stream(stream))
    return response
