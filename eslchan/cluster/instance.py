"""One instance of a cluster: what the daemon runs instead of a link per node when the
configuration has a ``[cluster]`` table.

- a *command-only* link to every node (the interpreter's actions and runs go straight to the
  node from whichever instance the request reached);
- an *event* link to each node whose lease it holds (:mod:`eslchan.cluster.lease`), feeding
  the daemon's registry and its resyncs, whose changes the publisher writes to Redis;
- the mirror of every node's channels (:mod:`eslchan.cluster.mirror`) that the API, the event
  stream, the interpreter's waits and webhooks read;
- runs, limits and stream slots shared through Redis; a control channel on which others ask
  this instance to stop one of its runs or to record a variable a run set on one of its nodes.

When a node becomes ours, the registry takes the mirror's channels of that node as stale (as
after a link cut), so the resync that follows the link's first connection confirms each with
FreeSWITCH: channels that ended while no one held the node are removed, the others refreshed,
and the channels stay listed all along. When it stops being ours, its channels leave the
registry silently: the next owner speaks for them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import gevent

from eslchan.cluster.lease import Lease, Leases
from eslchan.cluster.limits import ClusterFailureLimiter, StreamSlots
from eslchan.cluster.mirror import SEQ_HEADER, Mirror
from eslchan.cluster.publish import STATE, Publisher, encode
from eslchan.cluster.runs import ClusterRuns
from eslchan.cluster.store import Store
from eslchan.cluster.webhooks import RedisWebhookStore, WebhookDeliverer
from eslchan.config import Config, WebhooksConfig
from eslchan.esl.link import NodeLink
from eslchan.registry import ChannelRegistry, NodeSync
from eslchan.webhooks import WebhookService

log = logging.getLogger("eslchan.cluster")


class ClusterInstance:
    def __init__(
        self,
        config: Config,
        registry: ChannelRegistry,
        sync: NodeSync,
        *,
        on_node_up: Callable[[str], None] = lambda node: None,
        store: Store | None = None,
    ) -> None:
        assert config.cluster is not None
        self.config = config
        self.settings = config.cluster
        self.name = config.cluster.instance
        self.registry = registry
        self.sync = sync
        self.store = store if store is not None else Store(config.cluster)
        self.keys = self.store.keys
        names = [n.name for n in config.nodes]
        self.node_configs = {n.name: n for n in config.nodes}
        #: a command-only link to every node: what the interpreter and the API use
        self.command_links: dict[str, NodeLink] = {
            n.name: NodeLink(n, config.link, events=False, on_up=on_node_up) for n in config.nodes
        }
        #: the event links of the nodes this instance owns
        self.event_links: dict[str, NodeLink] = {}
        self.mirror = Mirror(self.store, names, mapping=registry.mapping, custom_label=registry.custom_label)
        self.mirror.checks = registry.checks
        self.mirror.repairs = registry.repairs
        self.mirror.on_variable = self._variable_set_here
        self.publisher = Publisher(self.store, extra_headers=config.cluster.event_headers,
                                   on_lost=self._publish_refused)
        registry.listen(self.publisher.on_event)
        sync.on_synced = lambda node: self.publisher.node_state(node, synced=True)
        self.leases = Leases(self.store, names, on_acquire=self._acquired, on_release=self._released,
                             info=self._info)
        self.runs = ClusterRuns(
            self.store,
            is_live=self.leases.is_live,
            live_known=self._membership_known,
            keep_seconds=lambda: float(self.config.metaflow.finished_runs_seconds),
            per_account=lambda: int(self.config.metaflow.finished_runs_per_account),
        )
        self.streams = StreamSlots(self.store)
        self.mirror.listen(self._on_mirror_event)
        self.started = time.time()
        self._greenlets: list[gevent.Greenlet] = []
        self._pubsub: Any = None
        self.stale_runs_failed = 0
        self._events_before = 0  # received by event links since let go
        #: who delivers the shared webhooks, with a [webhooks] table (see webhooks.py)
        self.webhooks: WebhookDeliverer | None = None
        self._gone_channels: list[tuple[str, str]] = []  # their run memory is forgotten next round

    # -- life ------------------------------------------------------------------------------

    def shared_webhooks(self, config: WebhooksConfig, accounts: Any) -> WebhookService:
        """The webhook service of this instance, on the cluster's shared store; delivering
        while this instance holds the webhooks lease."""
        store = RedisWebhookStore(self.store)
        service = WebhookService(config, None, accounts, store=store)
        self.webhooks = WebhookDeliverer(self.store, service, store, self.mirror)
        return service

    def start(self, *, wait_mirror: float = 10.0) -> None:
        """Connect: the mirror is built from the snapshots (waited for, up to ``wait_mirror``
        seconds), then the command links, leases and the rest start."""
        self.mirror.start()
        if not self.mirror.wait_built(wait_mirror):
            log.warning("cluster: Redis did not answer within %.0f s; serving 503 until it does", wait_mirror)
        for link in self.command_links.values():
            link.start()
        self.publisher.start(self._snapshot_of)
        try:
            self.runs.start()
        except self.store.errors as exc:
            log.warning("cluster: runs of a former process not checked: %s", exc)
        self.leases.start()
        if self.webhooks is not None:
            self.webhooks.start()
        self._greenlets = [gevent.spawn(self._control_loop), gevent.spawn(self._round_loop),
                           gevent.spawn(self._cut_off_loop)]

    def stop(self) -> None:
        """Write what is left, give the nodes up (at once, for the others), disconnect."""
        if self.webhooks is not None:
            self.webhooks.stop()  # the webhooks lease too: another instance delivers at once
        try:
            self.runs.close()
        except self.store.errors as exc:
            log.warning("cluster: last run records not written: %s", exc)
        self.publisher.stop()
        self.leases.stop()
        gevent.killall(self._greenlets, block=True, timeout=2)
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception:  # closing a connection Redis already dropped
                pass
        for link in self.command_links.values():
            link.stop()
        self.mirror.stop()

    # -- nodes becoming ours, and not -------------------------------------------------------

    def _acquired(self, node: str, lease: Lease) -> None:
        self.publisher.own(node, lease.value)
        # the channels as the last owner left them, stale until the resync confirms them
        adopted = self.registry.adopt(node, self.mirror.for_node(node))
        self.sync.on_down(node)
        self.publisher.node_state(node, synced=False)
        reg, sync = self.registry, self.sync

        def lost_events(name: str) -> None:
            log.warning("node %s lost events; resyncing", name, extra={"node": name})
            sync.resync(link)

        def down(name: str) -> None:
            sync.on_down(name)
            self.publisher.node_state(name, synced=False)

        link = NodeLink(
            self.node_configs[node], self.config.link,
            on_event=reg.apply, on_up=lambda name: sync.resync(link), on_down=down,
            on_lost_events=lost_events,
        )  # fmt: skip
        self.event_links[node] = link
        link.start()
        log.info("cluster: took %s over with %d channel(s) to confirm", node, adopted, extra={"node": node})

    def _released(self, node: str, reason: str) -> None:
        self.publisher.disown(node)
        link = self.event_links.pop(node, None)
        if link is not None:
            link.stop()
            self._events_before += int(link.stats.get("events_received", 0))
        self.sync.forget(node)
        self.registry.remove_node(node, reason)  # heard by no one: the publisher let go first
        log.info("cluster: let %s go: %s", node, reason, extra={"node": node})

    def _publish_refused(self, node: str) -> None:
        """Redis refused our writes for the node: someone else holds its lease now."""
        if node in self.leases.owned:
            self.leases._let_go(node, "lease lost (writes refused)", release=False)

    def _snapshot_of(self, node: str) -> list[tuple[str, bytes]]:
        return [(ch.uuid, encode(STATE, node, ch.uuid, "", time.time(), ch.shared_state(), {}))
                for ch in self.registry.for_node(node)]

    # -- requests from other instances ------------------------------------------------------

    def _variable_set_here(self, node: str, uuid: str, name: str, value: str | None) -> None:
        owner = self.leases.owners.get(node)
        message = {"kind": "variable", "node": node, "uuid": uuid, "name": name, "value": value}
        if owner == self.name:
            self._handle(message)
        elif owner:
            try:
                self.store.redis.publish(self.keys.control(owner), json.dumps(message))
            except self.store.errors as exc:
                log.info("cluster: could not tell %s of a variable set: %s", owner, exc)

    def _control_loop(self) -> None:
        while True:
            try:
                self._pubsub = self.store.blocking.pubsub(ignore_subscribe_messages=True)
                self._pubsub.subscribe(self.keys.control(self.name))
                while True:
                    message = self._pubsub.get_message(timeout=self.store.block_seconds)
                    if message and message.get("type") == "message":
                        self._handle(json.loads(message["data"]))
            except self.store.errors as exc:
                log.info("cluster: control channel lost: %s", exc)
                gevent.sleep(0.5)
            except Exception:
                log.exception("cluster: control message failed")
                gevent.sleep(0.5)

    def _handle(self, message: Mapping[str, Any]) -> None:
        kind = message.get("kind")
        if kind == "stop":
            self.runs.wake_stop(str(message.get("run")))
        elif kind == "variable":
            node, uuid = str(message.get("node")), str(message.get("uuid"))
            if not self.publisher.owns(node):
                return
            value = message.get("value")
            self.registry.record_variable(node, uuid, str(message.get("name")),
                                          None if value is None else str(value))
            ch = self.registry.get(node, uuid)
            if ch is not None:
                self.publisher.channel_state(node, ch)

    # -- the mirror's events that concern runs --------------------------------------------------

    def _on_mirror_event(self, node: str, channel: Any, event: Mapping[str, str]) -> None:
        """The owner of a node forgets what runs shared on its channels once they are gone
        (in one batch per round), and a recording FreeSWITCH stopped by itself."""
        name = event.get("Event-Name")
        if name not in ("CHANNEL_DESTROY", "RECORD_STOP") or not self.publisher.owns(node):
            return
        uuid = event.get("Unique-ID", "")
        if name == "CHANNEL_DESTROY":
            self._gone_channels.append((node, uuid))
        else:
            gevent.spawn(self._recording_stopped, node, uuid, event.get("Record-File-Path"))

    def _recording_stopped(self, node: str, uuid: str, path: str | None) -> None:
        try:
            self.runs.recording_stopped(node, uuid, path)
        except self.store.errors as exc:
            log.info("cluster: channel memory of %s not updated: %s", uuid, exc)

    # -- every round -----------------------------------------------------------------------

    def _membership_known(self) -> bool:
        contact = self.leases.last_contact
        return contact is not None and time.monotonic() - contact < self.leases.interval * 2

    def _round_loop(self) -> None:
        while True:
            gevent.sleep(self.leases.interval)
            try:
                gone, self._gone_channels = self._gone_channels, []
                if gone:
                    self.runs.forget_channels(gone)
                self.runs.keep_slots()
                self.streams.keep()
                self.runs.reap_dead()
                for run_id in self.runs.taken_for_dead():
                    self._fail_run(run_id, "another instance took this one for dead (Redis did not "
                                   "hear from it) and marked the run failed")
            except self.store.errors as exc:
                log.debug("cluster: round of slots and runs failed: %s", exc)
            except Exception:
                log.exception("cluster: round of slots and runs failed")

    def _cut_off_loop(self) -> None:
        """Runs here wait on a mirror Redis no longer feeds: past the lease bound the others
        mark them failed, so end them here too rather than let them act blind. (A loop of
        its own: the round's Redis calls may hang meanwhile.)"""
        while True:
            gevent.sleep(self.leases.margin)  # no I/O: often, so runs end as serving stops
            runs = self.runs.local_runs()
            if runs and not self.fresh:
                log.warning("cluster: Redis unreachable for %.1f s: ending %d run(s) here",
                            self.mirror.age or 0.0, len(runs))
                for run in runs:
                    self._fail_run(run.id, "this instance lost the cluster's state (Redis unreachable)")

    def _fail_run(self, run_id: str, reason: str) -> None:
        if self.runs.stop_local is not None:
            self.stale_runs_failed += 1
            gevent.spawn(self.runs.stop_local, run_id, reason)

    # -- what the API shows ----------------------------------------------------------------

    @property
    def stale_after(self) -> float:
        """Past this many seconds without Redis, the mirror is not served."""
        return self.settings.lease_seconds

    @property
    def fresh(self) -> bool:
        age = self.mirror.age
        return age is not None and age <= self.stale_after

    def failure_limiter(self, per_minute: int, local: Any) -> ClusterFailureLimiter:
        return ClusterFailureLimiter(self.store, per_minute, local)

    def event_id(self, event: Mapping[str, str]) -> int | None:
        seq = event.get(SEQ_HEADER)
        return int(seq) if seq else None

    def _info(self) -> dict[str, Any]:
        return {"http": self.config.http.listen, "started": self.started, "mirror_lag": self.mirror.lag,
                "mirror_seq": self.mirror.seq}

    def status(self) -> dict[str, Any]:
        """This instance's role and view of the cluster (for /health and /metrics)."""
        age = self.mirror.age
        return {
            "instance": self.name,
            "redis": "reachable" if self.leases.redis_ok and self.fresh else "unreachable",
            "serving": self.fresh,
            "owned_nodes": sorted(self.leases.owned),
            "owners": dict(self.leases.owners),
            "instances": sorted(self.leases.live),
            "mirror_lag_s": round(self.mirror.lag, 4),
            "mirror_age_s": None if age is None else round(age, 3),
            "mirror_seq": self.mirror.seq,
            "publish_pending": self.publisher.pending,
            "webhooks_deliverer": None if self.webhooks is None else self.webhooks.holder,
        }

    @property
    def events_received(self) -> int:
        """Events the event links of this instance received, those it let go of included."""
        return self._events_before + sum(int(link.stats.get("events_received", 0))
                                         for link in self.event_links.values())

    def stream_length(self) -> int | None:
        try:
            return int(self.store.redis.xlen(self.keys.stream))
        except self.store.errors:
            return None
