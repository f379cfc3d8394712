"""Every instance's copy of every node's channels, fed by the cluster's stream.

The mirror is a read-only registry: the same queries (get, find, listings by account, owner,
device), waiting on a channel's events and listeners as the registry, so the API, the event
stream, the interpreter's waits and webhooks work on it unchanged and answer from memory.

It starts from the nodes' snapshots, read in one script together with the stream position
they match, then applies the stream's records in order (``XREAD BLOCK``). Stream ids are the
cluster's own sequence numbers (``<n>-0``), one after the other: a record whose number is not
the next one means the stream was trimmed past this mirror (it fell further behind than the
retention), and the mirror starts again from the snapshots. Listeners hear what changed then:
a CHANNEL_DATA for a channel new or changed, a CHANNEL_DESTROY (``Eslchan-Removed``) for one
gone. ``on_reset`` callbacks are told, so event streams can tell their clients to re-list.

Freshness: ``age`` is the time since Redis last answered this mirror (an empty ``XREAD``
returns every ``block`` seconds); ``lag`` is how long the last record took from its owner to
here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import gevent
from gevent.event import Event as GEvent

from eslchan import jsoncodec
from eslchan.cluster.publish import DOWN, EVENT, GONE, RELOAD, STATE, SYNCED
from eslchan.cluster.store import NODE_FIELD, RECORD_FIELD, Store
from eslchan.esl.message import Event
from eslchan.registry.channel import Channel
from eslchan.registry.registry import RECORDED_VARIABLE_SECONDS
from eslchan.registry.table import ChannelTable

log = logging.getLogger("eslchan.cluster")

#: the key under which a mirror's events carry their stream number (the event stream's id)
SEQ_HEADER = "Eslchan-Seq"
_TENANCY = slice(-3, None)  # account, owner, authorizing id: the last three of the state
#: records read per XREAD at most
READ_COUNT = 2000


def decode(raw: bytes) -> list:
    return jsoncodec.loads(raw)


def channel_from(node: str, uuid: str, state: list) -> Channel:
    """A detached channel holding a record's state (for a replayed event's message)."""
    ch = Channel(node, uuid, 0.0)
    ch.take_shared_state(state)
    return ch


def channel_event(seq: int, record: list) -> tuple[str, Channel, Event] | None:
    """Stream record ``seq`` as listeners hear it, (node, a detached channel, event); None for a
    record that is not a channel event (a state alone, a node's state)."""
    kind, node, uuid, name, _when, state, headers = record[:7]
    if kind not in (EVENT, GONE):
        return None
    event: Event = dict(headers)
    event.update({"Event-Name": name, "Unique-ID": uuid, SEQ_HEADER: str(seq)})
    return node, channel_from(node, uuid, state), event


def seq_of(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


class Mirror(ChannelTable):
    """The channels of every node as the owners published them."""

    def __init__(
        self,
        store: Store,
        nodes: Sequence[str],
        *,
        mapping: Any = None,
        custom_label: Callable[[str], str | None] = lambda name: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.store = store
        self.node_names = list(nodes)
        self.mapping = mapping
        self.custom_label = custom_label
        self.clock = clock
        self.seq = 0  # the last record applied
        self.epoch = ""
        self.lag = 0.0
        self.last_contact: float | None = None  # monotonic
        self.rebuilds = 0
        self.applied = 0
        self.on_reset: list[Callable[[], None]] = []
        #: called as on_variable(node, uuid, name, value) when a metaflow run here set one
        self.on_variable: Callable[[str, str, str, str | None], None] | None = None
        self._down: set[str] = set()
        self._skip_until: dict[str, int] = {}  # node -> records up to this number are in its reload
        self._reader: gevent.Greenlet | None = None
        self._built = GEvent()
        #: comparisons this instance ran as an owner (for /metrics): set by the cluster
        self.checks: dict[str, int] = {}
        self.repairs: dict[str, dict[str, int]] = {}

    # -- life ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._reader is None:
            self._reader = gevent.spawn(self._read_loop)

    def stop(self) -> None:
        if self._reader is not None:
            self._reader.kill(block=True, timeout=2)
            self._reader = None

    def wait_built(self, timeout: float | None = None) -> bool:
        return self._built.wait(timeout)

    @property
    def age(self) -> float | None:
        """Seconds since Redis last answered this mirror (None: never)."""
        return None if self.last_contact is None else time.monotonic() - self.last_contact

    def _read_loop(self) -> None:
        backoff = 0.1
        need_build = True
        while True:
            try:
                if need_build:
                    self.rebuild()
                    need_build = False
                need_build = not self._read_once()
                backoff = 0.1
            except self.store.errors as exc:
                log.warning("cluster: mirror cannot read Redis: %s", exc)
                gevent.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
            except Exception:
                log.exception("cluster: mirror failed; rebuilding")
                need_build = True
                gevent.sleep(backoff)

    def _read_once(self) -> bool:
        """One XREAD; False when a gap means the mirror must start again."""
        block_ms = int(self.store.block_seconds * 1000)
        reply = self.store.blocking.xread({self.store.keys.stream: f"{self.seq}-0"},
                                          count=READ_COUNT, block=block_ms)
        self.last_contact = time.monotonic()
        if not reply:
            return True
        _, entries = reply[0]
        since_yield = 0
        for entry_id, fields in entries:
            seq = seq_of(entry_id)
            if seq != self.seq + 1:
                log.warning("cluster: mirror missed records %d-%d (past the retention); rebuilding",
                            self.seq + 1, seq - 1)
                return False
            self.seq = seq
            self.apply(seq, fields[RECORD_FIELD])
            since_yield += 1
            if since_yield >= 256:
                since_yield = 0
                gevent.sleep(0)
        return True

    # -- starting from the snapshots -------------------------------------------------------

    def rebuild(self, nodes: Sequence[str] | None = None) -> None:
        """Take the nodes' channels (all by default) from their snapshots, read at once with
        the stream position they match; listeners hear what differs from what we had."""
        wanted = list(nodes) if nodes is not None else self.node_names
        seq, epoch, snaps = self.store.snapshots(wanted)
        self.last_contact = time.monotonic()
        whole = nodes is None
        first = not self._built.is_set()
        if whole:
            if epoch != self.epoch or seq < self.seq:
                self.epoch = epoch  # Redis lost its data, or this is the first build
            self.seq = seq
            self._skip_until.clear()
            self.rebuilds += 1
        for node in wanted:
            self._take_snapshot(node, snaps.get(node, {}), notify=not first)
            if not whole:
                self._skip_until[node] = seq
        self._built.set()
        if whole and not first:
            for callback in list(self.on_reset):
                try:
                    callback()
                except Exception:
                    log.exception("cluster: a mirror reset callback failed")
        log.info("cluster: mirror built from the snapshots at %d: %d channel(s)", seq, len(self))

    def _take_snapshot(self, node: str, snapshot: dict[bytes, bytes], *, notify: bool) -> None:
        nodemap = self._nodes.setdefault(node, {})
        seen: set[str] = set()
        self._down.discard(node)
        for field, raw in snapshot.items():
            key = field.decode() if isinstance(field, bytes) else field
            record = decode(raw)
            if key == NODE_FIELD:
                if record[0] == DOWN:
                    self._down.add(node)
                continue
            seen.add(key)
            ch = nodemap.get(key)
            before = ch.shared_state() if ch is not None else None
            ch = self._take(node, nodemap, key, record[5])
            if notify and before != record[5]:
                self._notify(node, ch, {"Event-Name": "CHANNEL_DATA", "Unique-ID": key})
        for uuid in [u for u in nodemap if u not in seen]:
            self._drop(node, nodemap, uuid, {"Event-Name": "CHANNEL_DESTROY", "Unique-ID": uuid,
                                             "Eslchan-Removed": "gone"}, notify=notify)

    # -- applying records ------------------------------------------------------------------

    def apply(self, seq: int, raw: bytes) -> None:
        """Apply one record of the stream."""
        record = decode(raw)
        kind, node = record[0], record[1]
        self.applied += 1
        self.lag = max(0.0, self.clock() - record[7])
        skip = self._skip_until.get(node)
        if skip is not None:
            if seq <= skip:
                return
            del self._skip_until[node]
        if kind == EVENT or kind == GONE or kind == STATE:
            self._apply_channel(seq, record)
        elif kind == DOWN or kind == SYNCED:
            stale = kind == DOWN
            (self._down.add if stale else self._down.discard)(node)
            for ch in self._nodes.get(node, {}).values():
                ch.stale = stale
        elif kind == RELOAD:
            self.rebuild([node])

    def _apply_channel(self, seq: int, record: list) -> None:
        kind, node, uuid, name, _when, state, headers = record[:7]
        nodemap = self._nodes.setdefault(node, {})
        event: Event = dict(headers)
        event["Event-Name"] = name
        event["Unique-ID"] = uuid
        event[SEQ_HEADER] = str(seq)
        old = headers.get("Old-Unique-ID") if name == "CHANNEL_UUID" else None
        if old and old != uuid:
            self._rename(node, nodemap, old, uuid)
        if kind == GONE:
            ch = nodemap.get(uuid)
            if ch is None:
                ch = channel_from(node, uuid, state)
                self._notify(node, ch, event)
                return
            self._take(node, nodemap, uuid, state)
            self._drop(node, nodemap, uuid, event, notify=True)
            return
        ch = self._take(node, nodemap, uuid, state)
        if kind == EVENT:
            self._wake(node, uuid, event)
            self._notify(node, ch, event)

    def _take(self, node: str, nodemap: dict[str, Channel], uuid: str, state: list) -> Channel:
        """The channel with ``state``, created or updated, indexed by its tenancy."""
        ch = nodemap.get(uuid)
        if ch is None:
            ch = nodemap[uuid] = Channel(node, uuid, 0.0)
            ch.take_shared_state(state)
            self._index(ch)
        else:
            retenant = state[_TENANCY] != [ch.account_id, ch.owner_id, ch.authorizing_id]
            if retenant:
                self._unindex(ch)
            ch.take_shared_state(state)
            if retenant:
                self._index(ch)
        if ch.var_pending:  # what a run here set, until the owner's state shows it
            custom = dict(ch.custom or {})
            ch.overlay_recorded(custom, self.clock())
            ch.custom = custom or None
        if node in self._down:
            ch.stale = True
        return ch

    def _drop(self, node: str, nodemap: dict[str, Channel], uuid: str, event: Event, *, notify: bool) -> None:
        ch = nodemap.pop(uuid, None)
        if ch is None:
            return
        self._unindex(ch)
        removed = event.get("Eslchan-Removed")
        if removed:
            self._gone(node, uuid, removed)
        else:
            self._wake(node, uuid, event)
            self._gone(node, uuid, "destroyed")
        if notify:
            self._notify(node, ch, event)

    def _rename(self, node: str, nodemap: dict[str, Channel], old: str, new: str) -> None:
        ch = nodemap.pop(old, None)
        if ch is not None:
            self._unindex(ch)
            if new not in nodemap:
                ch.uuid = new
                nodemap[new] = ch
                self._index(ch)
        for w in self._waiters.pop((node, old), ()):
            w.uuid = new
            self._waiters.setdefault((node, new), []).append(w)

    # -- what a run on this instance does --------------------------------------------------

    def record_variable(self, node: str, uuid: str, name: str, value: str | None) -> None:
        """A variable a run here set: shown here at once, and the owner is told so that
        every instance shows it (FreeSWITCH fires no event for it)."""
        ch = self.get(node, uuid)
        label = self.custom_label(name)
        if ch is None or label is None:
            return
        ch.record_variable(label, value, self.clock() + RECORDED_VARIABLE_SECONDS)
        if self.on_variable is not None:
            self.on_variable(node, uuid, name, value)

    # -- node state ------------------------------------------------------------------------

    def is_down(self, node: str) -> bool:
        return node in self._down

    def nodes(self) -> list[str]:
        return list(self._nodes)

    # -- the event stream's history --------------------------------------------------------

    def replay(self, after: int, limit: int) -> list[tuple[int, str, Channel, Event]] | None:
        """The channel events after stream number ``after`` (at most ``limit``), as
        (number, node, channel, event); None when some are no longer in the stream."""
        reply = self.store.redis.xrange(self.store.keys.stream, min=f"{after + 1}-0", max="+",
                                        count=limit + 1)
        last = int(self.store.redis.get(self.store.keys.seq) or 0)
        if last > after and (not reply or seq_of(reply[0][0]) != after + 1):
            return None  # trimmed past it
        if len(reply) > limit:
            return None  # more than a client may be sent again: it re-lists instead
        out: list[tuple[int, str, Channel, Event]] = []
        for entry_id, fields in reply:
            seq = seq_of(entry_id)
            found = channel_event(seq, decode(fields[RECORD_FIELD]))
            if found is not None:
                out.append((seq, *found))
        return out
