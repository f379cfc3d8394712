"""Rebuilding a node's channels from FreeSWITCH itself, and the node's link life.

A resync asks ``show channels as json`` for what exists and ``uuid_dump <uuid> json`` for
the variables of channels the registry does not know, then removes what FreeSWITCH no
longer has. Events keep flowing into the registry meanwhile; nothing is buffered:

- a dump carries Core-UUID and Event-Sequence, so it is ordered against events like one;
- the registry records the channels events touch during the resync: a ``show channels``
  row never overwrites them, and they are not removed for missing from the snapshot
  (they were created after it);
- a channel destroyed during the resync leaves a tombstone, so its row or dump cannot
  bring it back.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import gevent
from gevent.event import Event as GEvent
from gevent.pool import Pool

from eslchan.esl import commands
from eslchan.esl.commands import Command
from eslchan.esl.errors import CommandRejected, CommandTimeout, EslError, LinkDown
from eslchan.esl.message import Event
from eslchan.esl.parser import flat_event
from eslchan.registry.registry import ChannelRegistry

log = logging.getLogger("eslchan.registry.resync")


class Link(Protocol):
    """What a resync needs of a NodeLink."""

    name: str

    @property
    def is_up(self) -> bool: ...

    def api(self, cmd: Command, timeout: float | None = None) -> str: ...


def show_channels_command() -> Command:
    return commands.api(
        "show",
        commands.word("channels"),
        commands.word("as"),
        commands.enum("json", ("json",), "format"),
    )


def uuid_dump_command(uuid: str) -> Command:
    return commands.api("uuid_dump", commands.uuid(uuid), commands.enum("json", ("json",), "format"))


def parse_show_channels(body: str) -> list[dict[str, str]]:
    """Rows of ``show channels as json``: ``{"row_count": 0}`` (no rows key) when empty."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"show channels: not JSON: {body[:80]!r}") from exc
    if not isinstance(data, dict):
        raise ValueError("show channels: not a JSON object")
    rows = data.get("rows") or []
    if not isinstance(rows, list):
        raise ValueError("show channels: rows is not a list")
    return [r for r in rows if isinstance(r, dict) and r.get("uuid")]


def parse_dump(body: str) -> Event:
    data = json.loads(body)
    if not isinstance(data, dict) or not data.get("Unique-ID"):
        raise ValueError("uuid_dump: not a channel")
    return flat_event(data)  # multi-valued variables come as arrays, as in json events


@dataclass
class ResyncResult:
    node: str
    channels: int = 0  # rows FreeSWITCH listed
    dumped: int = 0  # channels fetched with uuid_dump
    vanished: int = 0  # listed, but gone by the time of their dump
    removed: list[str] = field(default_factory=list)  # uuids FreeSWITCH no longer had
    seconds: float = 0.0


class Resyncer:
    """One resync of one node: ``Resyncer(registry, link).run()``."""

    def __init__(
        self,
        registry: ChannelRegistry,
        link: Link,
        *,
        concurrency: int = 8,
        timeout: float | None = None,
    ) -> None:
        self.registry = registry
        self.link = link
        self.concurrency = max(1, concurrency)
        self.timeout = timeout

    def run(self) -> ResyncResult:
        """Raises LinkDown/CommandTimeout/CommandRejected if the snapshot cannot be taken;
        the registry is then left as it was."""
        node = self.link.name
        reg = self.registry
        started = time.monotonic()
        result = ResyncResult(node)
        mark = reg.begin_resync(node)
        pool = Pool(self.concurrency)
        dumps = None
        try:
            rows = parse_show_channels(self.link.api(show_channels_command(), self.timeout))
            result.channels = len(rows)
            present = {row["uuid"] for row in rows}
            todo: list[dict[str, str]] = []
            for row in rows:
                if reg.needs_dump(node, row["uuid"]):
                    todo.append(row)
                else:
                    reg.apply_row(node, row, mark)
            dumps = pool.imap_unordered(self._dump, todo)
            for row, outcome in dumps:
                uuid = row["uuid"]
                if isinstance(outcome, dict):
                    reg.apply_dump(node, outcome)
                    result.dumped += 1
                elif isinstance(outcome, CommandRejected):  # -ERR No such channel: gone
                    present.discard(uuid)
                    result.vanished += 1
                elif isinstance(outcome, LinkDown):
                    raise outcome
                else:  # no dump (timeout, odd answer): the row is better than nothing
                    reg.apply_row(node, row, mark)
            result.removed = [ch.uuid for ch in reg.end_resync(mark, present)]
        finally:
            # a resync that gave up asks FreeSWITCH for no more dumps: stop the greenlet that
            # feeds the pool, then the dumps in flight
            if dumps is not None:
                dumps.kill()
            pool.kill()
            reg.abort_resync(mark)  # no-op once ended
        result.seconds = time.monotonic() - started
        log.info(
            "resync of %s: %d channel(s), %d dumped, %d removed",
            node,
            result.channels,
            result.dumped,
            len(result.removed),
            extra={"node": node},
        )
        return result

    def _dump(self, row: dict[str, str]) -> tuple[dict[str, str], Any]:
        try:
            return row, parse_dump(self.link.api(uuid_dump_command(row["uuid"]), self.timeout))
        except (EslError, ValueError) as exc:
            return row, exc


class NodeSync:
    """Glue between NodeLinks and the registry: events in, resync on up / lost events, stale
    marking on down, expiry after the grace period. One resync per node at a time; a request
    that comes while one runs makes it run again once done."""

    def __init__(
        self,
        registry: ChannelRegistry,
        *,
        grace_seconds: float | None = None,
        links: Mapping[str, Link] | None = None,
        concurrency: int = 8,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
    ) -> None:
        self.registry = registry
        if grace_seconds is not None:
            registry.stale_grace = grace_seconds
        self.links: dict[str, Link] = dict(links or {})
        self.concurrency = concurrency
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.results: dict[str, ResyncResult] = {}
        self._running: dict[str, gevent.Greenlet] = {}
        self._again: set[str] = set()
        self._synced: dict[str, GEvent] = {}
        self._expiry: dict[str, gevent.Greenlet] = {}

    # -- NodeLink callbacks ----------------------------------------------------------------

    def on_event(self, node: str, event: Event) -> None:
        self.registry.apply(node, event)

    def on_up(self, node: str) -> None:
        self.resync(self.links[node])

    def on_lost_events(self, node: str) -> None:
        self.resync(self.links[node])

    def on_down(self, node: str) -> None:
        self.registry.node_down(node)
        self._synced_event(node).clear()
        self._cancel_expiry(node)
        self._expiry[node] = gevent.spawn_later(
            self.registry.stale_grace + 0.01, self.expire_stale
        )

    # -- resync ----------------------------------------------------------------------------

    def resync(self, link: Link) -> None:
        """Start a resync of the link's node (link up or events lost); returns at once."""
        node = link.name
        self.links[node] = link
        self.registry.node_up(node)
        self._cancel_expiry(node)
        self._synced_event(node).clear()
        running = self._running.get(node)
        if running is not None and not running.dead:
            self._again.add(node)
            return
        self._running[node] = gevent.spawn(self._loop, link)

    def _loop(self, link: Link) -> None:
        node = link.name
        delay = self.retry_initial
        try:
            while True:
                self._again.discard(node)
                try:
                    result = Resyncer(self.registry, link, concurrency=self.concurrency).run()
                except LinkDown:
                    if link.is_up:  # the link came back meanwhile: resync the new connection
                        gevent.sleep(delay)
                        delay = min(delay * 2, self.retry_max)
                        continue
                    return  # the next link up resyncs
                except Exception as exc:  # timeout, -ERR, odd answer: try again, later
                    if isinstance(exc, (CommandTimeout, CommandRejected, ValueError)):
                        log.warning("resync of %s failed: %s; retrying", node, exc,
                                    extra={"node": node})
                    else:
                        log.exception("resync of %s failed; retrying", node, extra={"node": node})
                    if not link.is_up:
                        return
                    gevent.sleep(delay)  # back off before asking a struggling node again
                    delay = min(delay * 2, self.retry_max)
                    continue
                self.results[node] = result
                delay = self.retry_initial
                if node not in self._again:
                    if not self.registry.is_down(node):
                        self._synced_event(node).set()
                    return
        finally:
            if self._running.get(node) is gevent.getcurrent():
                del self._running[node]

    def is_synced(self, node: str) -> bool:
        return self._synced_event(node).is_set()

    def wait_synced(self, node: str, timeout: float | None = None) -> bool:
        """Block until the node's last requested resync has completed (True) or timeout."""
        return self._synced_event(node).wait(timeout)

    def _synced_event(self, node: str) -> GEvent:
        ev = self._synced.get(node)
        if ev is None:
            ev = self._synced[node] = GEvent()
        return ev

    # -- housekeeping ----------------------------------------------------------------------

    def _cancel_expiry(self, node: str) -> None:
        timer = self._expiry.pop(node, None)
        if timer is not None:
            timer.kill(block=False)

    def expire_stale(self, now: float | None = None) -> int:
        """Remove channels of nodes down for longer than the grace; returns how many."""
        return len(self.registry.expire_stale(now))

    def stop(self) -> None:
        for g in list(self._running.values()) + list(self._expiry.values()):
            g.kill(block=False)
        self._running.clear()
        self._expiry.clear()
