"""FreeSWITCH's core database, as ``show channels`` and ``show calls`` read it.

FreeSWITCH writes its ``channels`` table from channel events on a background SQL thread,
so the table lags the events (SPEC §8, ``esl-captures/13_show_channels_lag``): a row
appears some 20–180 ms after CHANNEL_CREATE (and after ``originate`` answered ``+OK``) and
goes some 170–200 ms after CHANNEL_DESTROY; a change to a row (state, application, caller
id, bridge) lags like its insert. Statements queued together are committed together, so
the two legs of a loopback call appear, and go, at the same moment. ``uuid_exists`` and
``uuid_dump`` ask the live session and are exact; only ``show`` reads this table.

Delays are in simulated seconds, like every other timing of the simulator: at ``speed``
20 the switch's 20–180 ms become 1–9 ms, so a sped-up test sees the table lag behind its
calls by the same share of their length as churn on a real switch does.
"""

from __future__ import annotations

import heapq
import itertools
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import gevent
import gevent.event

if TYPE_CHECKING:
    from eslchan.simulator.channels import SimChannel
    from eslchan.simulator.core import SwitchCore
    from eslchan.simulator.wire import SimEvent

#: Events after which the SQL thread rewrites the channel's row.
ROW_UPDATES = frozenset({
    "CHANNEL_STATE", "CHANNEL_CALLSTATE", "CHANNEL_EXECUTE", "CHANNEL_ANSWER", "CALL_UPDATE",
    "CHANNEL_HOLD", "CHANNEL_UNHOLD", "CHANNEL_PARK", "CHANNEL_UNPARK",
})


@dataclass(frozen=True)
class DbLag:
    """How long (simulated seconds, uniform between the bounds) the core database takes to
    show a new or changed channel (``insert``) and to forget a destroyed one (``delete``).
    The defaults are the real switch's; :meth:`off` makes ``show`` exact."""

    insert: tuple[float, float] = (0.020, 0.180)
    delete: tuple[float, float] = (0.170, 0.200)

    @classmethod
    def off(cls) -> DbLag:
        return cls((0.0, 0.0), (0.0, 0.0))

    @property
    def enabled(self) -> bool:
        return max(self.insert + self.delete) > 0

    def __post_init__(self) -> None:
        for name, (low, high) in (("insert", self.insert), ("delete", self.delete)):
            if not 0 <= low <= high:
                raise ValueError(f"db lag {name}: need 0 <= min <= max, got {low}, {high}")


@dataclass
class DbRow:
    """One row of the ``channels`` table, plus what ``show calls`` joins on."""

    row: dict[str, str]
    other_leg: str | None
    originatee: bool      # this row's channel is the bridge's A side (fires CHANNEL_BRIDGE)
    created: float


class CoreDb:
    """The ``channels`` table and the SQL thread that writes it from channel events."""

    def __init__(self, switch: SwitchCore, lag: DbLag, seed: int | None = 0) -> None:
        self.switch = switch
        self.lag = lag
        self.rng = random.Random(seed)
        self.rows: dict[str, DbRow] = {}
        # (due, order, uuid, kind, row): kind is insert, update or delete
        self._pending: list[tuple[float, int, str, str, DbRow | None]] = []
        self._order = itertools.count()
        self._last_due: dict[str, float] = {}     # per uuid: statements commit in order
        self._open: dict[str, float] = {}         # the open batch's due time, per kind
        self._closing = False
        self._wake = gevent.event.Event()
        self._writer: gevent.Greenlet | None = None

    # -- the event handler (FreeSWITCH's core_event_handler) -----------------------------
    def on_event(self, ev: SimEvent) -> None:
        name = ev.name
        uuid = ev.unique_id
        if not uuid:
            return
        if name == "CHANNEL_DESTROY":
            self._queue(uuid, None, "delete")
            return
        if name != "CHANNEL_CREATE" and name not in ROW_UPDATES \
                and name not in ("CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE"):
            return
        ch = self.switch.channels.get(uuid)
        if ch is None:
            return
        self._queue(uuid, self._snapshot(ch), "insert" if name == "CHANNEL_CREATE" else "update")
        if name in ("CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE"):
            # only the A side gets the event; the other leg's row changes with it
            other = ev.get("Bridge-B-Unique-ID") or ev.get("Other-Leg-Unique-ID")
            peer = self.switch.channels.get(other or "")
            if peer is not None and peer.uuid != uuid:
                self._queue(peer.uuid, self._snapshot(peer), "update")

    def _snapshot(self, ch: SimChannel) -> DbRow:
        return DbRow(ch.show_row(self.switch.hostname), ch.other_leg,
                     ch.other_type == "originatee", ch.created)

    def _queue(self, uuid: str, row: DbRow | None, kind: str) -> None:
        if not self.lag.enabled:
            self._commit(uuid, row, kind)
            return
        due = max(self._due(kind), self._last_due.get(uuid, 0.0))
        self._last_due[uuid] = due
        heapq.heappush(self._pending, (due, next(self._order), uuid, kind, row))
        if self._writer is None or self._writer.dead:
            self._writer = gevent.spawn(self._write_loop)
        self._wake.set()

    def _due(self, kind: str) -> float:
        """When a statement queued now is committed. Statements queued in one go (until the
        queuing greenlet yields: both legs of a loopback call, a bridge's two rows) share a
        commit, so the number of draws, and with a seed their values, follow the events."""
        group = "delete" if kind == "delete" else "insert"
        due = self._open.get(group)
        if due is None:
            low, high = self.lag.delete if group == "delete" else self.lag.insert
            due = time.monotonic() + self.rng.uniform(low, high) / self.switch.speed
            self._open[group] = due
            if not self._closing:
                self._closing = True
                gevent.get_hub().loop.run_callback(self._close_batches)
        return due

    def _close_batches(self) -> None:
        self._open.clear()
        self._closing = False

    # -- the SQL thread ------------------------------------------------------------------
    def _write_loop(self) -> None:
        pending = self._pending
        while True:
            now = time.monotonic()
            while pending and pending[0][0] <= now:
                _, _, uuid, kind, row = heapq.heappop(pending)
                self._commit(uuid, row, kind)
                if self._last_due.get(uuid, 0.0) <= now:
                    self._last_due.pop(uuid, None)
            self._wake.clear()
            self._wake.wait(None if not pending else max(0.0, pending[0][0] - now))

    def _commit(self, uuid: str, row: DbRow | None, kind: str) -> None:
        if kind == "delete":
            self.rows.pop(uuid, None)
        elif kind == "insert" or uuid in self.rows:
            # an UPDATE of a row that is not (or no longer) there changes nothing
            self.rows[uuid] = row  # type: ignore[assignment]

    # -- queries -------------------------------------------------------------------------
    def channel_rows(self) -> list[dict[str, str]]:
        return [r.row for r in self._ordered()]

    def call_rows(self) -> list[tuple[dict[str, str], dict[str, str] | None]]:
        """``show calls``: each bridge once (its A side, then B), and unbridged channels alone."""
        rows = self._ordered()
        out: list[tuple[dict[str, str], dict[str, str] | None]] = []
        seen: set[str] = set()
        for r in rows:
            uuid = r.row["uuid"]
            if uuid in seen:
                continue
            other = self.rows.get(r.other_leg) if r.other_leg else None
            if other is not None and r.originatee:
                seen.add(other.row["uuid"])
                out.append((r.row, other.row))
            elif other is None:
                out.append((r.row, None))
        return out

    def _ordered(self) -> list[DbRow]:
        return sorted(self.rows.values(), key=lambda r: r.created)

    # -- life ----------------------------------------------------------------------------
    def clear(self) -> None:
        """A restarted FreeSWITCH starts with an empty table and nothing queued."""
        self.rows.clear()
        self._pending.clear()
        self._last_due.clear()
        self._open.clear()

    def stop(self) -> None:
        if self._writer is not None:
            self._writer.kill(block=False)
            self._writer = None
