"""The owner's side of the shared state: each channel change of the nodes it owns, as a compact
record appended to the cluster's stream and kept in the node's snapshot.

A record is a JSON list ``[kind, node, uuid, event, time, state, headers, published]``:

- ``kind``: ``e`` a channel event, ``x`` the channel is gone (destroyed, or removed by a
  comparison or an expired node), ``s`` the channel's state alone (a variable eslchan set,
  which FreeSWITCH announces with no event), ``d``/``u`` the node's link is down (its
  channels are stale) / synced again, ``r`` the node's snapshot was written whole again;
- ``state``: :meth:`Channel.shared_state`, what the API serves of it; ``headers``: the few
  headers of the event that metaflow modules, the event stream and webhooks read
  (:data:`CARRIED_HEADERS`, plus ``[cluster] event_headers``); ``time`` the event's time and
  ``published`` the owner's clock when it took the change (mirror lag is measured from it).

The registry listener only encodes the record and queues it (it runs inside ``apply()``); one
greenlet writes what is queued, node by node, in one fenced script call per batch. While Redis
is slow or away the queue holds up to ``publish_buffer_max`` records; past that a node's
records are dropped and, once Redis answers again, the node is written again whole (``r``).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import gevent
from gevent.event import Event as GEvent

from eslchan import jsoncodec
from eslchan.cluster.store import NODE_FIELD, Store
from eslchan.esl.message import Event

log = logging.getLogger("eslchan.cluster")

#: Event headers the shared stream carries: what the metaflow modules wait on, what the event
#: stream and webhooks put in their messages ...
CARRIED_HEADERS = (
    "Event-Date-Timestamp", "Old-Unique-ID", "Eslchan-Removed", "DTMF-Digit", "Application",
    "Application-UUID", "Application-Data", "Application-Response", "Playback-Status",
    "Record-File-Path", "Hangup-Cause", "Other-Leg-Unique-ID", "Other-Leg-Destination-Number",
    "Bridge-A-Unique-ID", "Bridge-B-Unique-ID",
)
#: ... and on CHANNEL_DESTROY what webhooks compute a call's durations from
DESTROY_HEADERS = (
    "Caller-Channel-Created-Time", "Caller-Channel-Answered-Time", "Caller-Channel-Hangup-Time",
    "variable_duration", "variable_billsec", "variable_progresssec",
    "variable_proto_specific_hangup_cause", "variable_last_bridge_proto_specific_hangup_cause",
)
#: records written per script call at most
BATCH = 500
#: kinds of records
EVENT, GONE, STATE, DOWN, SYNCED, RELOAD = "e", "x", "s", "d", "u", "r"


def encode(kind: str, node: str, uuid: str, name: str, when: float, state: Any,
           headers: dict[str, str]) -> bytes:
    return jsoncodec.dumps_bytes([kind, node, uuid, name, when, state, headers, time.time()])


class Publisher:
    """Queues the records of the nodes this instance owns and writes them, fenced."""

    def __init__(self, store: Store, *, extra_headers: Iterable[str] = (),
                 on_lost: Callable[[str], None] = lambda node: None) -> None:
        self.store = store
        self.headers = tuple(dict.fromkeys((*CARRIED_HEADERS, *extra_headers)))
        self.destroy_headers = tuple(h for h in DESTROY_HEADERS if h not in self.headers)
        self.buffer_max = store.config.publish_buffer_max
        self.on_lost = on_lost
        self._owners: dict[str, str] = {}  # node -> the lease value our writes carry
        self._queues: dict[str, deque[tuple[str, str, bytes]]] = {}
        self._overflowed: set[str] = set()
        self._pending = 0  # records queued, all nodes
        self._batches = 0
        self._wake = GEvent()
        self._writer: gevent.Greenlet | None = None
        self._snapshot_of: Callable[[str], list[tuple[str, bytes]]] | None = None
        self.stats = {"published": 0, "dropped": 0, "refused": 0, "failures": 0, "reloads": 0}
        self.last_seq = 0
        self.redis_ok = True

    def start(self, snapshot_of: Callable[[str], list[tuple[str, bytes]]]) -> None:
        """``snapshot_of(node)``: the node's (uuid, record) pairs, to write it again whole."""
        self._snapshot_of = snapshot_of
        if self._writer is None:
            self._writer = gevent.spawn(self._write_loop)

    def stop(self, flush_seconds: float = 2.0) -> None:
        """Write what is queued (for up to ``flush_seconds``), then stop."""
        deadline = time.monotonic() + flush_seconds
        while any(self._queues.values()) and self.redis_ok and time.monotonic() < deadline:
            self._wake.set()
            gevent.sleep(0.02)
        if self._writer is not None:
            self._writer.kill(block=True, timeout=2)
            self._writer = None

    # -- what is ours ----------------------------------------------------------------------

    def own(self, node: str, owner_value: str) -> None:
        self.disown(node)
        self._owners[node] = owner_value
        self._queues[node] = deque()

    def disown(self, node: str) -> None:
        """Nothing more of the node is written (what is queued is dropped: no longer ours)."""
        self._owners.pop(node, None)
        queue = self._queues.pop(node, None)
        if queue is not None:
            self._pending -= len(queue)
        self._overflowed.discard(node)

    def owns(self, node: str) -> bool:
        return node in self._owners

    @property
    def pending(self) -> int:
        return self._pending

    # -- taking changes (never blocks) -----------------------------------------------------

    def on_event(self, node: str, channel: Any, event: Event) -> None:
        """Registry listener: one record per applied channel event of an owned node."""
        queue = self._queues.get(node)
        if queue is None or channel is None:
            return
        name = event.get("Event-Name", "")
        get = event.get
        headers = {h: v for h in self.headers if (v := get(h)) is not None}
        micros = get("Event-Date-Timestamp", "")
        when = int(micros) / 1e6 if micros.isdigit() else time.time()
        uuid = channel.uuid
        if name == "CHANNEL_DESTROY":
            headers.update((h, v) for h in self.destroy_headers if (v := get(h)) is not None)
            kind, op, field = GONE, "d", uuid
        else:
            kind, op, field = EVENT, "s", uuid
            old = get("Old-Unique-ID") if name == "CHANNEL_UUID" else None
            if old and old != uuid:
                op, field = "m", f"{uuid}|{old}"
        record = encode(kind, node, uuid, name, when, channel.shared_state(), headers)
        self._put(node, queue, op, field, record)

    def channel_state(self, node: str, channel: Any) -> None:
        """The channel's state changed with no event (a variable eslchan set)."""
        queue = self._queues.get(node)
        if queue is not None:
            record = encode(STATE, node, channel.uuid, "", time.time(), channel.shared_state(), {})
            self._put(node, queue, "s", channel.uuid, record)

    def node_state(self, node: str, synced: bool) -> None:
        """The node's link is down (its channels stale) or synced again."""
        queue = self._queues.get(node)
        if queue is not None:
            record = encode(SYNCED if synced else DOWN, node, "", "", time.time(), None, {})
            self._put(node, queue, "s", NODE_FIELD, record)

    def _put(self, node: str, queue: deque, op: str, field: str, record: bytes) -> None:
        if node in self._overflowed:
            self.stats["dropped"] += 1
            return
        if self._pending >= self.buffer_max:
            log.error("cluster: publish buffer full (%d); %s will be written again whole",
                      self.buffer_max, node, extra={"node": node})
            self._overflowed.add(node)
            self._pending -= len(queue)
            queue.clear()
            self.stats["dropped"] += 1
            return
        queue.append((op, field, record))
        self._pending += 1
        self._wake.set()

    # -- writing ---------------------------------------------------------------------------

    def _write_loop(self) -> None:
        backoff = 0.05
        while True:
            self._wake.wait()
            self._wake.clear()
            try:
                while self._write_some():
                    gevent.sleep(0)
                backoff = 0.05
            except self.store.errors as exc:
                if self.redis_ok:
                    log.warning("cluster: publishing failed: %s; retrying", exc)
                self.redis_ok = False
                self.stats["failures"] += 1
                gevent.sleep(backoff)
                backoff = min(1.0, backoff * 2)
                self._wake.set()
            except Exception:
                log.exception("cluster: publishing failed")
                gevent.sleep(backoff)
                self._wake.set()

    def _write_some(self) -> bool:
        """One batch per node with something to write; True if any was written."""
        wrote = False
        for node in list(self._queues):
            owner = self._owners.get(node)
            queue = self._queues.get(node)
            if owner is None or queue is None:
                continue
            if node in self._overflowed:
                self._reload(node, owner)
                wrote = True
                continue
            if not queue:
                continue
            batch = [queue[i] for i in range(min(BATCH, len(queue)))]
            self._batches += 1
            last = self.store.publish(node, owner, f"{owner}:{self._batches}", batch)
            self.redis_ok = True
            if self._queues.get(node) is not queue:
                continue  # let go of meanwhile
            if last == -1:
                self.stats["refused"] += len(batch)
                log.warning("cluster: %s: the lease is no longer ours; not publishing", node,
                            extra={"node": node})
                self.disown(node)
                self.on_lost(node)
                continue
            for _ in batch:
                queue.popleft()
            self._pending -= len(batch)
            if last > 0:
                self.last_seq = last
            self.stats["published"] += len(batch)
            wrote = True
        return wrote

    def _reload(self, node: str, owner: str) -> None:
        assert self._snapshot_of is not None
        snapshot = self._snapshot_of(node)
        record = encode(RELOAD, node, "", "", time.time(), None, {})
        self._batches += 1
        last = self.store.reload(node, owner, f"{owner}:{self._batches}", record, snapshot)
        self.redis_ok = True
        if last == -1:
            self.disown(node)
            self.on_lost(node)
            return
        self._overflowed.discard(node)
        queue = self._queues.get(node)
        if queue is not None:
            self._pending -= len(queue)
            queue.clear()  # the snapshot holds what they said
        self.stats["reloads"] += 1
        log.info("cluster: %s written again whole (%d channels)", node, len(snapshot), extra={"node": node})
