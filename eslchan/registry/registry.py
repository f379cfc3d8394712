"""The channel registry: every live channel of every node, from events, with no I/O.

``apply(node, event)`` is the only way events change state. FreeSWITCH does not deliver
events in Event-Sequence order, so each channel remembers the ordering key of the last
update it took, per part of its state (headers, variables, application, hold, bridge), and
an older event never overwrites newer state. The key is ``generation << 48 | sequence``:
Event-Sequence restarts when FreeSWITCH restarts, and the restarted process has a new
Core-UUID, which gets the next generation for that node.

A channel is created from whichever of its events arrives first; CHANNEL_DESTROY removes it
and leaves a tombstone for a while, so a late event cannot bring it back. Tombstones come
only from CHANNEL_DESTROY (and the temporary uuid a CHANNEL_UUID retires): a channel a
resync or check removes because FreeSWITCH said it is gone gets a softer mark, which keeps
its late stray events out but gives way to a ``uuid_dump`` of it; one removed because its
node stayed down past the grace gets none, so the resync after the outage brings back a
call the switch still has.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping

from eslchan.config import VariableMapping
from eslchan.esl.message import Event
from eslchan.registry.channel import Channel, intern
from eslchan.registry.table import ChannelTable

log = logging.getLogger("eslchan.registry")

_GEN_SHIFT = 48
_DEAD = -2  # ordering key of an event from a FreeSWITCH process that has since restarted
#: How long a variable eslchan set outweighs events showing another value: events generated
#: before the set but read after its reply (a backlog on the event connection) say otherwise.
RECORDED_VARIABLE_SECONDS = 5.0

#: Events that concern a channel even when they lack a Channel-State header.
CHANNEL_EVENTS = frozenset(
    """CHANNEL_CREATE CHANNEL_UUID CHANNEL_ANSWER CHANNEL_BRIDGE CHANNEL_UNBRIDGE CHANNEL_HOLD
    CHANNEL_UNHOLD CHANNEL_CALLSTATE CHANNEL_STATE CALL_UPDATE CHANNEL_EXECUTE
    CHANNEL_EXECUTE_COMPLETE CHANNEL_HANGUP CHANNEL_HANGUP_COMPLETE CHANNEL_DESTROY
    CHANNEL_PROGRESS CHANNEL_PROGRESS_MEDIA CHANNEL_ORIGINATE CHANNEL_OUTGOING CHANNEL_PARK
    CHANNEL_UNPARK CHANNEL_DATA""".split()
)


class ResyncMark:
    """What happened on a node while a snapshot is compared: the uuids events (and dumps)
    touched, from ``started`` (the registry's clock) on."""

    __slots__ = ("node", "touched", "started")

    def __init__(self, node: str, started: float) -> None:
        self.node = node
        self.touched: set[str] = set()
        self.started = started


class ChannelRegistry(ChannelTable):
    """In-memory channels of all nodes, keyed by (node, uuid), with tenancy indexes."""

    def __init__(
        self,
        mapping: VariableMapping | None = None,
        *,
        clock: Callable[[], float] = time.time,
        stale_grace: float = 30.0,
        snapshot_lag: float = 0.5,
        tombstone_ttl: float = 300.0,
        tombstone_max: int = 200_000,
        extra_prefixes: Iterable[str] = (),
    ) -> None:
        self.mapping = mapping or VariableMapping()
        self.clock = clock
        self.stale_grace = stale_grace
        # how far `show channels` may lag the events: a channel learned this recently may
        # be missing from a snapshot without being gone
        self.snapshot_lag = snapshot_lag
        self.tombstone_ttl = tombstone_ttl
        self.tombstone_max = tombstone_max
        m = self.mapping
        self._v_account = "variable_" + m.account
        self._v_owner = "variable_" + m.owner
        self._v_authz_id = "variable_" + m.authorizing_id
        self._v_authz_type = "variable_" + m.authorizing_type
        self._v_username = "variable_" + m.username
        self._v_presence = "variable_" + m.presence_id
        self._v_prefix = "variable_" + m.custom_prefix if m.custom_prefix else None
        # mapped names outside the prefix keep their full name in custom_channel_vars
        self._mapped = {
            "variable_" + n: intern(n)
            for n in (
                m.account,
                m.owner,
                m.authorizing_id,
                m.authorizing_type,
                m.username,
                m.presence_id,
            )
        }
        prefix = self._v_prefix
        self._mapped_outside = {
            k: n for k, n in self._mapped.items() if prefix is None or not k.startswith(prefix)
        }
        self.show_prefixes(extra_prefixes)
        super().__init__()
        self._tombstones: dict[str, OrderedDict[str, float]] = {}
        # removed because FreeSWITCH said so (uuid_exists/uuid_dump): uuid -> expiry
        self._removed_gone: dict[str, OrderedDict[str, float]] = {}
        # channels learned within the last snapshot_lag: uuid -> when (registry clock)
        self._learned: dict[str, OrderedDict[str, float]] = {}
        self._gens: dict[str, dict[str, int]] = {}
        self._current_gen: dict[str, int] = {}
        self._pending_legs: dict[str, dict[str, tuple[str | None, int, float]]] = {}
        self._resyncs: dict[str, list[ResyncMark]] = {}
        self._down_since: dict[str, float] = {}
        self.stats = {"events": 0, "ignored_old": 0, "ignored_destroyed": 0,
                      "ignored_removed": 0, "created": 0, "destroyed": 0, "removed": 0,
                      "restarts": 0}
        #: per node: channels a snapshot comparison added (FreeSWITCH had them, the
        #: registry did not) and removed (the other way round); comparisons completed
        self.repairs: dict[str, dict[str, int]] = {}
        self.checks: dict[str, int] = {}

    def show_prefixes(self, prefixes: Iterable[str]) -> None:
        """The prefixes tenants may set variables under (the policy's) that the mapping's
        prefix does not cover: such variables show in custom_channel_vars under their full
        name. A reload sets them anew; each channel shows them from its next event."""
        prefix = self._v_prefix
        self._v_extra = tuple(
            "variable_" + p for p in dict.fromkeys(prefixes)
            if p and not (prefix is not None and ("variable_" + p).startswith(prefix))
        )

    # -- queries ---------------------------------------------------------------------------

    def is_destroyed(self, node: str, uuid: str) -> bool:
        """True if the channel was destroyed recently (late events for it are ignored)."""
        return self._tombstoned(node, uuid)

    def _unknown_reason(self, node: str, uuid: str) -> str:
        return "destroyed" if self._tombstoned(node, uuid) else "unknown"

    # -- variables eslchan set -------------------------------------------------------------

    def record_variable(self, node: str, uuid: str, name: str, value: str | None) -> None:
        """A variable eslchan set (``None``: unset) with FreeSWITCH's ``+OK``: shown in
        custom_channel_vars at once, since uuid_setvar fires no event. Until an event carries
        the same value, or for RECORDED_VARIABLE_SECONDS, an event showing another value is
        taken as older than the set; after that, events decide again."""
        ch = self.get(node, uuid)
        label = self.custom_label(name)
        if ch is None or label is None:
            return
        ch.record_variable(label, None if value is None else _share(value),
                           self.clock() + RECORDED_VARIABLE_SECONDS)

    def custom_label(self, name: str) -> str | None:
        """The key a channel variable has in custom_channel_vars, if it is shown there."""
        full = "variable_" + name
        prefix = self._v_prefix
        if prefix is not None and full.startswith(prefix):
            return intern(full[len(prefix):])
        if full.startswith(self._v_extra):  # under a policy's own prefix: its full name
            return intern(name)
        return self._mapped_outside.get(full)

    # -- applying events -------------------------------------------------------------------

    def apply(self, node: str, event: Event) -> Channel | None:
        """Apply one event from ``node``; returns the channel it concerns (None if none)."""
        return self._apply(node, event, wake=True)

    def _apply(self, node: str, event: Event, *, wake: bool, confirmed: bool = False) -> Channel | None:
        self.stats["events"] += 1
        key = self._order_key(node, event)
        if key == _DEAD:
            self.stats["ignored_old"] += 1
            return None
        uuid = event.get("Unique-ID")
        if not uuid:
            return None
        name = event.get("Event-Name", "")
        if name not in CHANNEL_EVENTS and "Channel-State" not in event:
            return None
        nodemap = self._nodes.get(node)
        if nodemap is None:
            nodemap = self._nodes[node] = {}
        if name == "CHANNEL_UUID":
            old = event.get("Old-Unique-ID")
            if old and old != uuid:
                self._rename(node, nodemap, old, uuid)
        marks = self._resyncs.get(node)
        if marks:
            for mark in marks:
                mark.touched.add(uuid)
        ch = nodemap.get(uuid)
        if name == "CHANNEL_DESTROY":
            self._destroy(node, nodemap, uuid, ch, event, name, key)
            return ch
        if ch is None:
            if self._tombstoned(node, uuid):
                self.stats["ignored_destroyed"] += 1
                return None
            if event.get("Channel-State") == "CS_DESTROY":
                return None  # a dying channel's last word: its CHANNEL_DESTROY removes it
            if self._removed_gone and self._marked_gone(node, uuid, confirmed):
                self.stats["ignored_removed"] += 1
                return None
            ch = self._create(node, nodemap, uuid, _created(event, self.clock))
        self._update(ch, event, name, key)
        if wake:
            self._wake(node, uuid, event)
        self._notify(node, ch, event)
        return ch

    def _order_key(self, node: str, event: Event) -> int | None:
        core = event.get("Core-UUID")
        gen = 0
        if core:
            gens = self._gens.get(node)
            if gens is None:
                gens = self._gens[node] = {}
            gen = gens.get(core, -1)
            if gen < 0:
                gen = len(gens)
                gens[core] = gen
                if gen:
                    self.stats["restarts"] += 1
                    log.info("node %s restarted (new Core-UUID %s)", node, core)
                self._current_gen[node] = gen
            elif gen < self._current_gen.get(node, 0):
                return _DEAD
        seq = event.get("Event-Sequence")
        if not seq:
            return None
        try:
            return (gen << _GEN_SHIFT) | int(seq)
        except ValueError:
            return None

    def _create(self, node: str, nodemap: dict[str, Channel], uuid: str, created: float) -> Channel:
        ch = Channel(node, uuid, created)
        nodemap[uuid] = ch
        self.stats["created"] += 1
        self._note_learned(node, uuid)
        if node in self._down_since:  # learned late (a dump answered as the link fell)
            ch.stale = True
        pending = self._pending_legs.get(node)
        if pending:
            leg = pending.pop(uuid, None)
            if leg is not None:
                ch.other_leg, ch.leg_seq = leg[0], leg[1]
        return ch

    def _update(self, ch: Channel, event: Event, name: str, key: int | None) -> None:
        get = event.get
        newer = key is None or key > ch.seq
        if newer and key is not None:
            ch.seq = key
        # Most events repeat the channel's headers unchanged: compare them all at once (C speed)
        # and go field by field only when something differs.
        # Only a hash is kept: holding the strings would double the channel's memory.
        values = tuple(map(get, _HEADER_NAMES))
        seen = hash(values)
        if seen != ch.headers_seen:
            ch.headers_seen = seen
            self._update_headers(ch, values, newer)
        # answered and the hangup cause only ever move forward: take them from any event
        if not ch.answered and (
            name == "CHANNEL_ANSWER"
            or get("Answer-State") == "answered"
            or get("Caller-Channel-Answered-Time", "0") not in ("0", "")
        ):
            ch.answered = True
        value = get("Hangup-Cause")
        if value and ch.hangup_cause is None:
            ch.hangup_cause = intern(value)
        if key is None or key > ch.var_seq:
            self._update_variables(ch, event, key)
        if name == "CHANNEL_EXECUTE":
            if key is None or key > ch.app_seq:
                ch.application = intern(get("Application"))
                if key is not None:
                    ch.app_seq = key
        elif name == "CHANNEL_EXECUTE_COMPLETE":
            # last writer wins: nothing newer than this completion is known to run
            if key is None or key > ch.app_seq:
                ch.application = None
                if key is not None:
                    ch.app_seq = key
        elif name in ("CHANNEL_HOLD", "CHANNEL_UNHOLD"):
            if key is None or key > ch.hold_seq:
                ch.is_onhold = name == "CHANNEL_HOLD"
                if key is not None:
                    ch.hold_seq = key
        elif name in ("CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE"):
            self._bridge(ch, event, name == "CHANNEL_BRIDGE", key)
        if ch.presence_id is None:
            value = get("Channel-Presence-ID")
            if value:
                ch.presence_id = value

    @staticmethod
    def _update_headers(ch: Channel, values: tuple, newer: bool) -> None:
        # an older event only fills what is still unknown, so arrival order does not matter
        for (slot, interned), value in zip(_HEADER_SLOTS, values, strict=False):
            if value is None:
                continue
            current = getattr(ch, slot)
            if value == current or (not newer and current is not None):
                continue
            if not value and slot in _NONEMPTY_SLOTS:
                continue
            setattr(ch, slot, intern(value) if interned else value)
        created = values[-1]  # constant for a channel: take it from any event
        if created and created != "0":
            try:
                ch.created = int(created) / 1e6
            except ValueError:
                pass

    def _update_variables(self, ch: Channel, event: Event, key: int | None) -> None:
        """Tenancy fields and custom variables, from an event that carries the variables."""
        # Events carry ~150 headers and this runs for each: find the few wanted names with
        # str.find over the joined header names (C speed) instead of testing every name.
        names = "\n" + "\n".join(event)
        if "\nvariable_" not in names:
            return  # this event type carries no variables: keep what we know
        custom: dict[str, str] = {}
        get = event.get
        prefix = self._v_prefix
        if prefix is not None:
            skip = len(prefix)
            for name in _prefixed(names, prefix):
                value = get(name)
                if value is not None:
                    custom[intern(name[skip:])] = _share(value)
        for extra in self._v_extra:  # full names: "variable_" only is cut
            for name in _prefixed(names, extra):
                value = get(name)
                if value is not None:
                    custom[intern(name[9:])] = _share(value)
        for name, label in self._mapped_outside.items():
            value = get(name)
            if value is not None:
                custom[label] = _share(value)
        if ch.var_pending:
            ch.overlay_recorded(custom, self.clock())
        if key is not None:
            ch.var_seq = key
        elif ch.var_seq < 0:
            ch.var_seq = 0
        custom = custom or None
        # the fields below derive from these alone: most events repeat them unchanged
        extra = hash((get("variable_user_name"), get("Channel-Presence-ID")))
        if custom == ch.custom and extra == ch.var_extra:
            self._fill_from_variables(ch, get)
            return
        ch.var_extra = extra
        account = _nonempty(get(self._v_account))
        owner = _nonempty(get(self._v_owner))
        authz = _nonempty(get(self._v_authz_id))
        account, owner, authz = intern(account), intern(owner), intern(authz)
        if account != ch.account_id or owner != ch.owner_id or authz != ch.authorizing_id:
            self._unindex(ch)
            ch.account_id, ch.owner_id, ch.authorizing_id = account, owner, authz
            self._index(ch)
        ch.authorizing_type = intern(_nonempty(get(self._v_authz_type)))
        username = _nonempty(get(self._v_username)) or _nonempty(get("variable_user_name"))
        ch.username = intern(username.lower()) if username else None
        presence = _nonempty(get(self._v_presence)) or _nonempty(get("Channel-Presence-ID"))
        ch.presence_id = intern(presence)
        ch.custom = custom
        self._fill_from_variables(ch, get)

    @staticmethod
    def _fill_from_variables(ch: Channel, get: Callable[[str], str | None]) -> None:
        """A channel first seen mid-call learns its application and peer from its variables."""
        if ch.app_seq < 0:
            app = _nonempty(get("variable_current_application"))
            if app is not None:
                ch.application = intern(app)
        if ch.leg_seq < 0:
            bridged = _nonempty(get("variable_bridge_uuid"))
            if bridged is not None:
                ch.other_leg = bridged

    def _bridge(self, ch: Channel, event: Event, bridged: bool, key: int | None) -> None:
        """CHANNEL_BRIDGE/UNBRIDGE reach only the A side: set (or clear) both legs."""
        other_uuid = event.get("Other-Leg-Unique-ID") or event.get("Bridge-B-Unique-ID")
        if other_uuid == ch.uuid:
            other_uuid = event.get("Bridge-A-Unique-ID")
        order = -1 if key is None else key
        if key is None or key > ch.leg_seq:
            ch.other_leg = other_uuid if bridged else None
            ch.leg_seq = order
        if not other_uuid:
            return
        other = self.get(ch.node, other_uuid)
        if other is None:  # that leg's first event is still to come: keep it for then
            if not self._tombstoned(ch.node, other_uuid):
                pending = self._pending_legs.setdefault(ch.node, {})
                known = pending.get(other_uuid)
                if known is None or order > known[1]:
                    if known is not None:  # re-insert: the dict stays in announcement order
                        del pending[other_uuid]
                    pending[other_uuid] = (ch.uuid if bridged else None, order, self.clock())
            return
        if key is None or key > other.leg_seq:
            if bridged:
                other.other_leg = ch.uuid
            elif other.other_leg == ch.uuid:
                other.other_leg = None
            other.leg_seq = order

    def _rename(self, node: str, nodemap: dict[str, Channel], old: str, new: str) -> None:
        """CHANNEL_UUID: the channel created under a temporary uuid takes its final one."""
        ch = nodemap.pop(old, None)
        self._tombstone(node, old)  # a late event under the old uuid must not recreate it
        destroyed = self._tombstoned(node, new)  # the rename itself arrived late
        if ch is not None:
            if new in nodemap or destroyed:  # events under the new uuid came first: keep those
                self._unindex(ch)
            else:
                ch.uuid = new
                nodemap[new] = ch
        waiters = self._waiters.pop((node, old), None)
        if waiters:
            for w in waiters:
                w.uuid = new
                if destroyed:
                    w.gone("destroyed")
                else:
                    self._waiters.setdefault((node, new), []).append(w)

    def _destroy(
        self,
        node: str,
        nodemap: dict[str, Channel],
        uuid: str,
        ch: Channel | None,
        event: Event,
        name: str,
        key: int | None,
    ) -> None:
        self._tombstone(node, uuid)
        if ch is None:
            return
        self._update(ch, event, name, key)
        del nodemap[uuid]
        self._unindex(ch)
        self.stats["destroyed"] += 1
        self._wake(node, uuid, event)
        self._gone(node, uuid, "destroyed")
        self._notify(node, ch, event)

    def _remove(self, ch: Channel, reason: str, *, confirmed: bool = False) -> None:
        """Drop a channel without an event for it. ``confirmed``: FreeSWITCH said it is gone
        (uuid_exists/uuid_dump), so its late stray events are kept out; otherwise (its node
        stayed down) nothing stops a later resync from bringing it back."""
        nodemap = self._nodes.get(ch.node)
        if nodemap is None or nodemap.get(ch.uuid) is not ch:
            return
        del nodemap[ch.uuid]
        self._unindex(ch)
        if confirmed:
            self._mark(self._removed_gone, ch.node, ch.uuid)
        self.stats["removed"] += 1
        self._gone(ch.node, ch.uuid, reason)
        event: Event = {
            "Event-Name": "CHANNEL_DESTROY",
            "Unique-ID": ch.uuid,
            "Eslchan-Removed": reason,
        }
        self._notify(ch.node, ch, event)

    # -- tombstones ------------------------------------------------------------------------

    def _tombstone(self, node: str, uuid: str) -> None:
        now = self._mark(self._tombstones, node, uuid)
        gone = self._removed_gone.get(node)
        if gone:
            gone.pop(uuid, None)  # the tombstone says it better
        pending = self._pending_legs.get(node)
        if pending:
            pending.pop(uuid, None)  # a tombstoned leg is never created to take it
            # bridges announced for legs that never showed up, oldest first: this runs on
            # every destroy, so it looks only at the entries that expire
            while pending:
                leg_uuid, (_, _, announced) = next(iter(pending.items()))
                if now - announced <= self.tombstone_ttl:
                    break
                del pending[leg_uuid]

    def _mark(self, marks: dict[str, OrderedDict[str, float]], node: str, uuid: str) -> float:
        """Mark ``uuid`` for tombstone_ttl (bounded by tombstone_max); returns the time."""
        stones = marks.get(node)
        if stones is None:
            stones = marks[node] = OrderedDict()
        now = self.clock()
        stones[uuid] = now + self.tombstone_ttl
        stones.move_to_end(uuid)
        while stones:
            expiry = next(iter(stones.values()))
            if expiry > now and len(stones) <= self.tombstone_max:
                break
            stones.popitem(last=False)
        return now

    def _tombstoned(self, node: str, uuid: str) -> bool:
        stones = self._tombstones.get(node)
        if not stones:
            return False
        expiry = stones.get(uuid)
        return expiry is not None and expiry > self.clock()

    def _marked_gone(self, node: str, uuid: str, confirmed: bool) -> bool:
        """Removed as gone and not seen alive since; a dump (``confirmed``) lifts the mark."""
        gone = self._removed_gone.get(node)
        if not gone or uuid not in gone:
            return False
        if confirmed or gone[uuid] <= self.clock():
            del gone[uuid]
            return False
        return True

    def _note_learned(self, node: str, uuid: str) -> None:
        learned = self._learned.get(node)
        if learned is None:
            learned = self._learned[node] = OrderedDict()
        now = self.clock()
        learned[uuid] = now
        learned.move_to_end(uuid)
        horizon = now - self.snapshot_lag
        while learned:
            if next(iter(learned.values())) > horizon:
                break
            learned.popitem(last=False)

    def learned_after(self, node: str, uuid: str, when: float) -> bool:
        """Was the channel learned after ``when`` (registry clock; within snapshot_lag)?"""
        learned = self._learned.get(node)
        at = learned.get(uuid) if learned else None
        return at is not None and at > when

    # -- snapshots: resyncs and checks ------------------------------------------------------

    def begin_resync(self, node: str) -> ResyncMark:
        """Start recording which channels events touch while a snapshot is being taken."""
        mark = ResyncMark(node, self.clock())
        self._resyncs.setdefault(node, []).append(mark)
        return mark

    def abort_resync(self, mark: ResyncMark) -> None:
        marks = self._resyncs.get(mark.node)
        if marks and mark in marks:
            marks.remove(mark)

    def confirm_point(self, node: str) -> int:
        """An ordering key that every update applied so far is at or below: a channel whose
        last update is above it has been heard of (event or dump) since this call."""
        return max((ch.seq for ch in self._nodes.get(node, {}).values()), default=-1)

    def needs_dump(self, node: str, uuid: str, confirm_after: int | None = None) -> bool:
        """Should a snapshot comparison ask FreeSWITCH for this listed channel (uuid_dump)?
        When the registry lacks it (unless destroyed: a lagging row), lacks its variables,
        or has heard nothing of it since ``confirm_after`` (after a link cut or lost events:
        the row may be a dead channel's, and its state may have changed)."""
        ch = self.get(node, uuid)
        if ch is None:
            return not self._tombstoned(node, uuid)
        if not ch.has_variables:
            return True
        return confirm_after is not None and ch.seq <= confirm_after

    def apply_dump(self, node: str, dump: Event) -> Channel | None:
        """Apply a ``uuid_dump <uuid> json`` result: like an event (it carries Core-UUID and
        Event-Sequence, so it is ordered against real events), but it wakes no waiter, and
        it is exact: it brings back a channel a comparison had removed as gone."""
        return self._apply(node, dump, wake=False, confirmed=True)

    def apply_row(self, node: str, row: Mapping[str, str], mark: ResyncMark) -> Channel | None:
        """Failing a dump, create a channel from its ``show channels`` row (or refresh one
        known only from rows). Events are above snapshots: a row never overwrites what an
        event or a dump said, and a channel destroyed or removed as gone stays so."""
        uuid = row.get("uuid")
        if (not uuid or uuid in mark.touched or self._tombstoned(node, uuid)
                or self._marked_gone(node, uuid, False)):
            return self.get(node, uuid) if uuid else None
        nodemap = self._nodes.setdefault(node, {})
        ch = nodemap.get(uuid)
        if ch is not None and ch.seq >= 0:
            return ch
        if ch is None:
            try:
                created = float(row.get("created_epoch") or 0) or self.clock()
            except ValueError:
                created = self.clock()
            ch = self._create(node, nodemap, uuid, created)
            ch.name = row.get("name") or None
            ch.direction = intern(row.get("direction") or None)
            ch.destination = intern(row.get("dest"))
            ch.context = intern(row.get("context") or None)
            ch.caller_id_name = row.get("cid_name")
            ch.caller_id_number = row.get("cid_num")
            ch.callee_id_name = row.get("callee_name")
            ch.callee_id_number = row.get("callee_num")
            ch.presence_id = row.get("presence_id") or None
        state = row.get("state")
        if state:
            ch.state = intern(state)
        callstate = row.get("callstate")
        if callstate:
            ch.callstate = intern(callstate)
            if callstate in ("ACTIVE", "HELD"):
                ch.answered = True
            ch.answer_state = _ROW_ANSWER_STATE.get(callstate, ch.answer_state)
        if ch.app_seq < 0 and row.get("application"):
            ch.application = intern(row["application"])
        return ch

    def missing(self, mark: ResyncMark, listed: Collection[str]) -> tuple[list[str], int]:
        """Known channels a snapshot does not list: those to ask FreeSWITCH about (untouched
        since the mark and learned before the snapshot's lag window, or last heard of from a
        FreeSWITCH process that has since restarted), and how many are too new to judge (the
        snapshot may predate them; a later comparison looks again)."""
        node = mark.node
        horizon = mark.started - self.snapshot_lag
        current = self._current_gen.get(node, 0) << _GEN_SHIFT  # the live process's first key
        ask: list[str] = []
        young = 0
        for uuid, ch in self._nodes.get(node, {}).items():
            if uuid in listed or uuid in mark.touched:
                continue
            if self.learned_after(node, uuid, horizon) and not 0 <= ch.seq < current:
                young += 1
            else:
                ask.append(uuid)
        return ask, young

    def confirm_gone(self, node: str, uuid: str) -> Channel | None:
        """FreeSWITCH said the channel does not exist (uuid_exists, uuid_dump: both exact):
        remove it, and keep its late stray events out. Returns the removed channel."""
        ch = self.get(node, uuid)
        if ch is not None:
            self._remove(ch, "gone", confirmed=True)
        return ch

    def end_resync(self, mark: ResyncMark, *, added: int = 0, removed: int = 0) -> None:
        """A comparison is over: count what it repaired; a node whose link is up has no stale
        channels left."""
        self.abort_resync(mark)
        node = mark.node
        self.checks[node] = self.checks.get(node, 0) + 1
        repairs = self.repairs.setdefault(node, {"added": 0, "removed": 0})
        repairs["added"] += added
        repairs["removed"] += removed
        if node not in self._down_since:  # a link lost again meanwhile keeps them stale
            for ch in self._nodes.get(node, {}).values():
                ch.stale = False

    def node_down(self, node: str, now: float | None = None) -> None:
        """The node's link is lost: its channels stay listed, marked stale, for the grace."""
        self._down_since.setdefault(node, self.clock() if now is None else now)
        for ch in self._nodes.get(node, {}).values():
            ch.stale = True

    def node_up(self, node: str) -> None:
        """The link is back; the resync that follows settles the stale channels."""
        self._down_since.pop(node, None)

    def is_down(self, node: str) -> bool:
        return node in self._down_since

    def expire_stale(self, now: float | None = None) -> list[Channel]:
        """Remove the channels of nodes down for longer than the grace period."""
        now = self.clock() if now is None else now
        removed: list[Channel] = []
        for node, since in list(self._down_since.items()):
            if now - since >= self.stale_grace:
                removed.extend(self.remove_node(node, "node down"))
        return removed

    def adopt(self, node: str, channels: Iterable[Channel]) -> int:
        """Take channels another eslchan knew on ``node`` (a cluster instance taking the node
        over): stale and unconfirmed, as after a link cut, so the next resync asks FreeSWITCH
        about each. Returns how many were taken."""
        nodemap = self._nodes.setdefault(node, {})
        taken = 0
        for other in channels:
            if other.uuid in nodemap or self._tombstoned(node, other.uuid):
                continue
            ch = Channel(node, other.uuid, other.created)
            ch.take_shared_state(other.shared_state())
            ch.stale = True
            nodemap[ch.uuid] = ch
            self._index(ch)
            taken += 1
        return taken

    def remove_node(self, node: str, reason: str = "removed") -> list[Channel]:
        gone = list(self._nodes.get(node, {}).values())
        for ch in gone:
            self._remove(ch, reason)
        return gone


#: (event header, Channel slot, intern the value?) taken from every channel event.
_HEADER_FIELDS = (
    ("Channel-State", "state", True),
    ("Channel-Call-State", "callstate", True),
    ("Channel-Name", "name", False),
    ("Call-Direction", "direction", True),
    ("Caller-Destination-Number", "destination", True),
    ("Caller-Context", "context", True),
    ("Caller-Caller-ID-Name", "caller_id_name", True),
    ("Caller-Caller-ID-Number", "caller_id_number", True),
    ("Caller-Callee-ID-Name", "callee_id_name", True),
    ("Caller-Callee-ID-Number", "callee_id_number", True),
    ("Answer-State", "answer_state", True),
)
_HEADER_NAMES = tuple(h for h, _, _ in _HEADER_FIELDS) + ("Caller-Channel-Created-Time",)
_HEADER_SLOTS = tuple((slot, interned) for _, slot, interned in _HEADER_FIELDS)
#: what a `show channels` row's callstate says of the answer state (rows have no Answer-State)
_ROW_ANSWER_STATE = {"RINGING": "ringing", "EARLY": "early", "ACTIVE": "answered", "HELD": "answered",
                     "UNHELD": "answered", "HANGUP": "hangup"}
_NONEMPTY_SLOTS = frozenset({"state", "callstate", "name", "direction", "context", "answer_state"})


def _prefixed(names: str, prefix: str) -> Iterator[str]:
    """The header names starting with ``prefix`` in ``names`` (newline-joined, with a leading
    newline): str.find over the joined names runs at C speed, unlike a test of every name."""
    needle = "\n" + prefix
    at = names.find(needle)
    while at >= 0:
        end = names.find("\n", at + 1)
        yield names[at + 1 : end] if end >= 0 else names[at + 1 :]
        at = names.find(needle, end) if end >= 0 else -1


def _share(value: str) -> str:
    """Short values (ids, names, flags) repeat across channels: keep one copy of each."""
    return intern(value) if len(value) <= 64 else value


def _nonempty(value: str | None) -> str | None:
    return value if value else None


def _created(event: Event, clock: Callable[[], float]) -> float:
    for header in ("Caller-Channel-Created-Time", "Event-Date-Timestamp"):
        value = event.get(header)
        if value and value != "0":
            try:
                return int(value) / 1e6
            except ValueError:
                pass
    return clock()
