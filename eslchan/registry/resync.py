"""Keeping a node's channels equal to FreeSWITCH's own: resyncs, checks and the node's link life.

FreeSWITCH's ``show channels`` is read from its core database, which lags the events
(SPEC §8): a snapshot omits the newest channels and still lists ones destroyed some 200 ms
ago. No snapshot is trusted on its own; ``uuid_dump``/``uuid_exists`` ask the live session
and are exact, so every difference between a snapshot and the registry is confirmed with
them before anything changes:

- a listed channel the registry lacks is added from its dump, and not at all when the dump
  answers no such channel (a dead channel's lagging row);
- a known channel the snapshot does not list is removed only once ``uuid_exists`` says it
  is gone, and only if the registry learned of it before the snapshot's lag window (the
  snapshot may predate it) and no event touched it since the snapshot was asked for;
- after a link cut or lost events, known channels the snapshot lists are dumped unless an
  event showed them since: the row may be a dead channel's whose CHANNEL_DESTROY was lost,
  and their state may have changed meanwhile.

Events keep flowing into the registry meanwhile and stay above snapshots: a dump is
ordered against them by Event-Sequence, a row fills only a channel no event or dump told
of, and a channel destroyed during a comparison keeps its tombstone.

A *resync* runs on every link up and after lost events, then a *check* (the same
comparison, without confirming what events already showed) a lag window later, for
channels the first snapshot was too early to list; a periodic check repairs any other drift
within a bounded time. What they repair is counted in ``registry.repairs``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import gevent
from gevent.event import Event as GEvent
from gevent.pool import Pool

from eslchan import jsoncodec
from eslchan.esl import commands
from eslchan.esl.commands import Command
from eslchan.esl.errors import CommandRejected, CommandTimeout, EslError, LinkDown
from eslchan.esl.message import Event
from eslchan.esl.parser import flat_event
from eslchan.registry.registry import ChannelRegistry, ResyncMark

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
        data = jsoncodec.loads(body)  # a big switch lists megabytes, every check: orjson
    except ValueError as exc:
        raise ValueError(f"show channels: not JSON: {body[:80]!r}") from exc
    if not isinstance(data, dict):
        raise ValueError("show channels: not a JSON object")
    rows = data.get("rows") or []
    if not isinstance(rows, list):
        raise ValueError("show channels: rows is not a list")
    return [r for r in rows if isinstance(r, dict) and r.get("uuid")]


def parse_dump(body: str) -> Event:
    data = jsoncodec.loads(body)
    if not isinstance(data, dict) or not data.get("Unique-ID"):
        raise ValueError("uuid_dump: not a channel")
    return flat_event(data)  # multi-valued variables come as arrays, as in json events


@dataclass
class ResyncResult:
    node: str
    channels: int = 0  # rows FreeSWITCH listed
    dumped: int = 0  # channels fetched with uuid_dump
    vanished: int = 0  # listed, but gone by the time of their dump
    added: list[str] = field(default_factory=list)  # channels the registry lacked
    removed: list[str] = field(default_factory=list)  # uuids FreeSWITCH no longer had
    deferred: int = 0  # unlisted, but too new to judge: a later check looks again
    seconds: float = 0.0
    asked_at: float = 0.0  # time.monotonic() when the snapshot was asked for


def uuid_exists_command(uuid: str) -> Command:
    return commands.api("uuid_exists", commands.uuid(uuid))


def _no_such_channel(exc: Exception) -> bool:
    return isinstance(exc, CommandRejected) and "no such channel" in exc.text.lower()


class Resyncer:
    """One comparison of one node's snapshot with the registry:
    ``Resyncer(registry, link).run()``. With ``confirm_after`` (an ordering key from
    ``registry.confirm_point``), known channels the snapshot lists are dumped unless heard
    of since; without it (a check) only differences are asked about."""

    def __init__(
        self,
        registry: ChannelRegistry,
        link: Link,
        *,
        concurrency: int = 8,
        timeout: float | None = None,
        confirm_after: int | None = None,
        count_repairs: bool = True,
    ) -> None:
        self.registry = registry
        self.link = link
        self.concurrency = max(1, concurrency)
        self.timeout = timeout
        self.confirm_after = confirm_after
        self.count_repairs = count_repairs

    def run(self) -> ResyncResult:
        """Raises LinkDown/CommandTimeout/CommandRejected if the snapshot cannot be taken;
        the registry is then left as it was."""
        node = self.link.name
        reg = self.registry
        started = time.monotonic()
        result = ResyncResult(node)
        mark = reg.begin_resync(node)
        pool = Pool(self.concurrency)
        answers = None
        try:
            result.asked_at = time.monotonic()
            rows = parse_show_channels(self.link.api(show_channels_command(), self.timeout))
            result.channels = len(rows)
            listed = {row["uuid"]: row for row in rows}
            # the listed first: their dumps may show that FreeSWITCH restarted, which settles
            # the unlisted ones of its former process however new they are
            dumps = [("dump", row) for row in rows if reg.needs_dump(node, row["uuid"], self.confirm_after)]
            for batch in (dumps, None):
                if batch is None:
                    unlisted, result.deferred = reg.missing(mark, listed)
                    batch = [("exists", {"uuid": uuid}) for uuid in unlisted]
                answers = pool.imap_unordered(self._ask, batch)
                for kind, row, answer in answers:
                    if isinstance(answer, LinkDown):
                        raise answer
                    self._settle(kind, row, answer, mark, result)
            reg.end_resync(
                mark,
                added=len(result.added) if self.count_repairs else 0,
                removed=len(result.removed) if self.count_repairs else 0,
            )
        finally:
            # a comparison that gave up asks FreeSWITCH nothing more: stop the greenlet
            # that feeds the pool, then the questions in flight
            if answers is not None:
                answers.kill()
            pool.kill()
            reg.abort_resync(mark)  # no-op once ended
        result.seconds = time.monotonic() - started
        log.info(
            "%s of %s: %d channel(s) listed, %d dumped, %d added, %d removed, %d too new",
            "resync" if self.confirm_after is not None else "check",
            node,
            result.channels,
            result.dumped,
            len(result.added),
            len(result.removed),
            result.deferred,
            extra={"node": node},
        )
        return result

    def _settle(self, kind: str, row: dict[str, str], answer: Any, mark: ResyncMark,
                result: ResyncResult) -> None:
        reg, node, uuid = self.registry, self.link.name, row["uuid"]
        if kind == "exists":
            if answer is False and reg.confirm_gone(node, uuid) is not None:
                result.removed.append(uuid)
            return  # alive, or no clear answer: kept, asked again by the next comparison
        if isinstance(answer, dict):
            known = reg.get(node, uuid) is not None
            if reg.apply_dump(node, answer) is not None and not known:
                result.added.append(uuid)
            result.dumped += 1
        elif isinstance(answer, Exception) and _no_such_channel(answer):
            result.vanished += 1  # a dead channel's row, or one gone since
            if reg.confirm_gone(node, uuid) is not None:
                result.removed.append(uuid)
        elif reg.get(node, uuid) is None:
            # no dump (timeout, odd answer): the row is better than nothing, and the
            # channel, without variables, is dumped again by the next comparison
            if reg.apply_row(node, row, mark) is not None:
                result.added.append(uuid)

    def _ask(self, item: tuple[str, dict[str, str]]) -> tuple[str, dict[str, str], Any]:
        kind, row = item
        try:
            if kind == "dump":
                body = self.link.api(uuid_dump_command(row["uuid"]), self.timeout)
                return kind, row, parse_dump(body)
            body = self.link.api(uuid_exists_command(row["uuid"]), self.timeout).strip()
            return kind, row, {"true": True, "false": False}.get(body, body)
        except (EslError, ValueError) as exc:
            return kind, row, exc


class NodeSync:
    """Glue between NodeLinks and the registry: events in, a resync on up / lost events and
    a check a lag window after it, periodic checks, stale marking on down, expiry after the
    grace period. One comparison per node at a time; a resync requested while one runs
    makes it run again once done."""

    def __init__(
        self,
        registry: ChannelRegistry,
        *,
        grace_seconds: float | None = None,
        links: Mapping[str, Link] | None = None,
        concurrency: int = 8,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        snapshot_lag: float | None = None,
        check_interval: float = 0.0,
        on_synced: Callable[[str], None] | None = None,
    ) -> None:
        self.registry = registry
        #: called with the node's name each time a resync of it completed
        self.on_synced = on_synced
        if grace_seconds is not None:
            registry.stale_grace = grace_seconds
        if snapshot_lag is not None:
            registry.snapshot_lag = snapshot_lag
        self.links: dict[str, Link] = dict(links or {})
        self.concurrency = concurrency
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.check_interval = check_interval  # seconds between periodic checks; 0: none
        self.results: dict[str, ResyncResult] = {}
        self._running: dict[str, gevent.Greenlet] = {}
        self._want: dict[str, str] = {}  # node -> "resync" or "check": what runs next
        self._confirm_after: dict[str, int] = {}
        self._synced_once: set[str] = set()
        self._synced: dict[str, GEvent] = {}
        self._expiry: dict[str, gevent.Greenlet] = {}
        self._followup: dict[str, gevent.Greenlet] = {}
        self._checker: gevent.Greenlet | None = None

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

    # -- comparisons -----------------------------------------------------------------------

    def resync(self, link: Link) -> None:
        """Start a resync of the link's node (link up or events lost); returns at once.
        Called in event order, before any event of the new connection is applied: what
        the registry knows by now is confirmed by the resync unless an event shows it."""
        node = link.name
        self.links[node] = link
        self.registry.node_up(node)
        self._cancel_expiry(node)
        self._synced_event(node).clear()
        point = self.registry.confirm_point(node)
        self._confirm_after[node] = max(point, self._confirm_after.get(node, point))
        self._want[node] = "resync"
        self._start(link)

    def check(self, node: str) -> None:
        """Compare the node's snapshot with the registry and repair the differences (after
        confirming each), unless its link is down; returns at once."""
        link = self.links.get(node)
        if link is None or not link.is_up:
            return
        self._want.setdefault(node, "check")
        self._start(link)

    def _start(self, link: Link) -> None:
        running = self._running.get(link.name)
        if running is None or running.dead:
            self._running[link.name] = gevent.spawn(self._loop, link)

    def _loop(self, link: Link) -> None:
        node = link.name
        delay = self.retry_initial
        try:
            while node in self._want:
                kind = self._want.pop(node)
                confirm = None
                if kind == "resync":
                    confirm = self._confirm_after.pop(node, None)
                    if confirm is None:
                        confirm = self.registry.confirm_point(node)
                try:
                    result = Resyncer(
                        self.registry,
                        link,
                        concurrency=self.concurrency,
                        confirm_after=confirm,
                        count_repairs=node in self._synced_once,
                    ).run()
                except Exception as exc:
                    if kind != "resync":  # a failed check waits for the next one
                        log.warning("check of %s failed: %s", node, exc, extra={"node": node})
                        continue
                    self._retry_later(node, confirm)
                    if isinstance(exc, LinkDown):
                        if not link.is_up:
                            return  # the next link up resyncs
                    elif isinstance(exc, (CommandTimeout, CommandRejected, ValueError)):
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
                if kind == "resync":
                    delay = self.retry_initial
                    self._synced_once.add(node)
                    self._follow_up(node, result.asked_at)
                    if self.on_synced is not None:
                        try:
                            self.on_synced(node)
                        except Exception:
                            log.exception("on_synced of %s failed", node, extra={"node": node})
                if self._want.get(node) != "resync" and not self.registry.is_down(node):
                    self._synced_event(node).set()
        finally:
            if self._running.get(node) is gevent.getcurrent():
                del self._running[node]

    def _retry_later(self, node: str, confirm: int | None) -> None:
        """A resync that failed runs again, confirming at least what it had to."""
        self._want[node] = "resync"
        if confirm is not None:
            self._confirm_after[node] = max(confirm, self._confirm_after.get(node, confirm))

    def _follow_up(self, node: str, asked_at: float) -> None:
        """A check once the lag window has passed since the resync's snapshot: channels
        created during a link cut that it was too early to list, and the ones it was too
        new to judge."""
        timer = self._followup.pop(node, None)
        if timer is not None:
            timer.kill(block=False)
        wait = max(0.0, asked_at + self.registry.snapshot_lag - time.monotonic())
        self._followup[node] = gevent.spawn_later(wait, self.check, node)

    def start(self) -> None:
        """Start the periodic checks (every ``check_interval`` seconds, if any)."""
        if self.check_interval > 0 and self._checker is None:
            self._checker = gevent.spawn(self._check_loop)

    def _check_loop(self) -> None:
        while True:
            gevent.sleep(self.check_interval)
            for node in list(self.links):
                if self.is_synced(node):
                    self.check(node)

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

    def forget(self, node: str) -> None:
        """Stop every comparison, timer and check of ``node`` (its link is no longer ours)."""
        self.links.pop(node, None)
        self._want.pop(node, None)
        self._confirm_after.pop(node, None)
        self._synced_once.discard(node)
        self._cancel_expiry(node)
        for timers in (self._running, self._followup):
            greenlet = timers.pop(node, None)
            if greenlet is not None:
                greenlet.kill(block=False)
        self._synced_event(node).clear()

    def stop(self) -> None:
        others = [self._checker] if self._checker is not None else []
        for g in [*self._running.values(), *self._expiry.values(), *self._followup.values(), *others]:
            g.kill(block=False)
        self._running.clear()
        self._expiry.clear()
        self._followup.clear()
        self._checker = None
