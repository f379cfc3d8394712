"""Node ownership: which instance holds each FreeSWITCH node's event link.

Every ``lease_seconds / 4`` an instance says it is alive (a member entry that expires after
``lease_seconds``) and, in the same script, reads who is alive and who holds each node's
lease. A lease is ``SET lease:<node> <instance>|<token> NX PX lease``, renewed only by a script
that finds its own value; ``token`` comes from a counter per node incremented on every
acquisition (the fencing token stamped on every write the owner makes, see store.py).

An owner keeps a node only while its lease is surely valid on *its own* clock: a renewal sent
at ``t`` and accepted keeps the node until ``t + lease - margin``, which comes before Redis can
expire it. Past that without a renewal (Redis unreachable, stalled) the owner lets the node go
by itself, so two instances never both think they own it.

Nodes spread over the live instances by rendezvous hashing with bounded loads: each node goes
to the live instance with the highest hash of instance and node that holds fewer than its
share (``nodes // instances``, then one more for the remainder), nodes taken in name order,
so every instance computes the same assignment from the same members. Plain rendezvous
hashing moves the fewest nodes when an instance joins or leaves, but with the handful of
nodes a cluster has it can leave an instance with none and another with most; the bound
keeps them even and still moves few.

A free node is taken at once by the instance it goes to, and by any instance once it has
stayed free for two rounds (that one may be unable to). A lease its holder stopped renewing
(the holder died) is looked at again the moment it expires, so its node is taken over then.
An instance a node goes to that another holds asks for it (``want:<node>``); the holder,
after holding it a little while, lets it go and the asker takes it on its next round.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gevent
from gevent.lock import BoundedSemaphore

from eslchan.cluster.store import Store

log = logging.getLogger("eslchan.cluster")


@dataclass
class Lease:
    node: str
    value: str  # "<instance>|<token>": what the lease key holds while it is ours
    token: int
    valid_until: float  # monotonic: past it, we may no longer be the owner
    acquired: float  # monotonic


def _score(instance: str, node: str) -> bytes:
    return hashlib.sha1(f"{instance}\0{node}".encode()).digest()


def assignment(nodes: Sequence[str], instances: Sequence[str]) -> dict[str, str]:
    """Which live instance each node goes to (rendezvous hashing with bounded loads): every
    instance gets ``nodes // instances`` nodes or one more."""
    if not instances:
        return {}
    load = dict.fromkeys(instances, 0)
    out: dict[str, str] = {}
    ranked = {node: sorted(instances, key=lambda i: _score(i, node), reverse=True) for node in nodes}
    floor = len(nodes) // len(instances)
    for cap in (floor, floor + 1):  # everyone's share first, then the remainder one each
        for node in sorted(nodes):
            if node in out:
                continue
            for name in ranked[node]:
                if load[name] < cap:
                    out[node] = name
                    load[name] += 1
                    break
    return out


def _text(value: Any) -> str | None:
    if value is None or value is False:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


class Leases:
    """This instance's side of node ownership. ``on_acquire(node, value)`` and
    ``on_release(node, reason)`` are called (in their own greenlets' order) when a node
    becomes ours and when it stops being ours; ``on_release`` runs before a lease we give up
    is deleted, so the next owner never overlaps with us."""

    def __init__(
        self,
        store: Store,
        nodes: Sequence[str],
        *,
        on_acquire: Callable[[str, Lease], None],
        on_release: Callable[[str, str], None],
        info: Callable[[], dict[str, Any]] = dict,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.keys = store.keys
        self.instance = store.instance
        self.nodes = list(nodes)
        self._index = {node: i for i, node in enumerate(self.nodes)}
        self.on_acquire = on_acquire
        self.on_release = on_release
        self.info = info
        self.clock = clock
        self.lease_seconds = store.config.lease_seconds
        self.interval = self.lease_seconds / 4
        self.margin = self.lease_seconds / 10
        self.owned: dict[str, Lease] = {}
        #: what the last round saw: node -> holder instance (None: free); the live instances
        #: with the Redis time (ms) their presence ends
        self.owners: dict[str, str | None] = {}
        self.live: dict[str, int] = {}
        self.assignment: dict[str, str] = {}  # node -> the live instance it should go to
        self.redis_ok = False
        self.last_contact: float | None = None  # monotonic time of the last round that worked
        self.rounds = 0
        self.handovers = 0
        self._free_rounds: dict[str, int] = {}
        self._loops: list[gevent.Greenlet] = []
        self._lapsing: dict[str, gevent.Greenlet] = {}
        self._round_lock = BoundedSemaphore()
        self._stopping = False

    # -- life ------------------------------------------------------------------------------

    def start(self) -> None:
        if not self._loops:
            self._loops = [gevent.spawn(self._round_loop), gevent.spawn(self._expiry_loop)]

    def stop(self) -> None:
        """Give every node up (released at once for the others) and leave the members."""
        self._stopping = True
        gevent.killall([*self._loops, *self._lapsing.values()], block=True, timeout=2)
        self._loops = []
        for node in list(self.owned):
            self._let_go(node, "instance stopping", release=True)
        try:
            self.store.redis.zrem(self.keys.members, self.instance)
            self.store.redis.delete(self.keys.member(self.instance))
        except self.store.errors as exc:
            log.warning("cluster: could not leave the members: %s", exc)

    def _round_loop(self) -> None:
        while True:
            started = self.clock()
            try:
                self.round()
            except Exception:  # a bug or an odd answer must not end ownership rounds
                log.exception("cluster: lease round failed")
            took = self.clock() - started
            if took > self.interval:
                log.warning("cluster: a lease round took %.2f s (more than %.2f s)", took, self.interval)
            gevent.sleep(max(0.0, self.interval - took))

    def _expiry_loop(self) -> None:
        """Let a node go as soon as its lease may have expired, whatever Redis is doing."""
        while True:
            gevent.sleep(self.margin / 4)  # well within the margin: never past Redis's expiry
            self.expire()

    def expire(self) -> None:
        now = self.clock()
        for node, lease in list(self.owned.items()):
            if now >= lease.valid_until:
                log.warning("cluster: lease of %s not renewed in time; letting the node go", node,
                            extra={"node": node})
                self._let_go(node, "lease not renewed in time", release=False)

    # -- one round -------------------------------------------------------------------------

    def round(self) -> None:
        with self._round_lock:  # the regular rounds and those at a lapsing lease
            self._round()

    def _round(self) -> None:
        k = self.keys
        ttl_ms = int(self.lease_seconds * 1000)
        info = json.dumps({**self.info(), "owned": sorted(self.owned)})
        held = [lease for lease in self.owned.values() if lease.node in self._index]
        renewals: list[Any] = []
        for lease in held:
            renewals += (self._index[lease.node] + 1, lease.value)
        sent = self.clock()
        try:
            out = self.store.heartbeat_script(
                keys=[k.members, k.member(self.instance), *(k.lease(n) for n in self.nodes),
                      *(k.want(n) for n in self.nodes)],
                args=[self.instance, ttl_ms, info, len(self.nodes), *renewals],
            )
        except self.store.errors as exc:
            if self.redis_ok:
                log.warning("cluster: Redis unreachable: %s", exc)
            self.redis_ok = False
            return
        if not self.redis_ok:
            log.info("cluster: Redis reachable")
        self.redis_ok = True
        self.last_contact = self.clock()
        self.rounds += 1
        flat = out[1]
        self.live = {_text(flat[i]) or "": int(float(flat[i + 1])) for i in range(0, len(flat), 2)}
        n = len(self.nodes)
        holders = [_text(v) for v in out[2:2 + n]]
        wants = [_text(v) for v in out[2 + n:2 + 2 * n]]
        left = [int(v) for v in out[2 + 2 * n:2 + 3 * n]]
        for lease, kept in zip(held, out[2 + 3 * n:], strict=False):
            if self.owned.get(lease.node) is not lease:
                continue  # let go meanwhile
            if int(kept):
                lease.valid_until = sent + self.lease_seconds - self.margin
            else:
                log.warning("cluster: the lease of %s is no longer ours", lease.node,
                            extra={"node": lease.node})
                self._let_go(lease.node, "lease lost", release=False)
        self.owners = {node: (h.split("|", 1)[0] if h else None) for node, h in zip(self.nodes, holders,
                                                                                     strict=False)}
        self.assignment = assignment(self.nodes, sorted(self.live))
        for node, holder, want in zip(self.nodes, holders, wants, strict=False):
            self._decide(node, holder, want)
        self._watch_lapsing(holders, left)

    def _watch_lapsing(self, holders: list[str | None], left: list[int]) -> None:
        """A lease another instance no longer renews (its holder died or was cut off) is
        looked at again the moment it expires, not a round later: the node is taken over as
        soon as Redis allows."""
        renewed_within = (self.lease_seconds - 1.5 * self.interval) * 1000
        for node, holder, ms in zip(self.nodes, holders, left, strict=False):
            if holder is None or holder.startswith(f"{self.instance}|") or not 0 <= ms < renewed_within:
                continue
            if node not in self._lapsing:
                self._lapsing[node] = gevent.spawn_later(ms / 1000 + 0.01, self._lapsed, node)

    def _lapsed(self, node: str) -> None:
        self._lapsing.pop(node, None)
        if node not in self.owned and not self._stopping:
            self.round()

    def _decide(self, node: str, holder: str | None, want: str | None) -> None:
        me = self.instance
        best = self.assignment.get(node)
        lease = self.owned.get(node)
        if lease is not None:
            # give the node to the live instance it prefers once that one asks, after holding
            # it a little (instances joining together see each other a round apart)
            held = self.clock() - lease.acquired
            if want and want != me and want == best and held >= 2 * self.interval:
                log.info("cluster: handing %s over to %s", node, want, extra={"node": node})
                self.handovers += 1
                self._let_go(node, f"handed over to {want}", release=True)
            return
        if holder is None:
            rounds = self._free_rounds.get(node, 0) + 1
            self._free_rounds[node] = rounds
            if best == me or rounds > 2:
                self._acquire(node)
            return
        self._free_rounds.pop(node, None)
        name, _, token = holder.partition("|")
        if name == me:  # ours, but the reply that said so was lost: carry on with it
            sent = self.clock()
            try:
                kept = self.store.renew_script(keys=[self.keys.lease(node)],
                                               args=[holder, int(self.lease_seconds * 1000)])
            except self.store.errors:
                return
            if kept:
                self._own(node, holder, int(token or 0), sent)
        elif best == me:
            try:
                self.store.redis.set(self.keys.want(node), me, px=int(self.lease_seconds * 1000))
            except self.store.errors as exc:
                log.debug("cluster: asking for %s failed: %s", node, exc)

    def _acquire(self, node: str) -> None:
        sent = self.clock()
        try:
            token = int(self.store.acquire_script(
                keys=[self.keys.lease(node), self.keys.fence(node)],
                args=[self.instance, int(self.lease_seconds * 1000)]))
        except self.store.errors as exc:
            log.warning("cluster: acquiring %s failed: %s", node, exc, extra={"node": node})
            return
        if token:
            self._free_rounds.pop(node, None)
            self._own(node, f"{self.instance}|{token}", token, sent)

    def _own(self, node: str, value: str, token: int, sent: float) -> None:
        lease = Lease(node, value, token, sent + self.lease_seconds - self.margin, self.clock())
        self.owned[node] = lease
        self.owners[node] = self.instance
        log.info("cluster: %s is ours (token %d)", node, token, extra={"node": node})
        try:
            self.on_acquire(node, lease)
        except Exception:
            log.exception("cluster: taking %s on failed", node)

    def _let_go(self, node: str, reason: str, *, release: bool) -> None:
        lease = self.owned.pop(node, None)
        if lease is None:
            return
        try:
            self.on_release(node, reason)
        except Exception:
            log.exception("cluster: letting %s go failed", node)
        if release:
            try:
                self.store.release_script(keys=[self.keys.lease(node)], args=[lease.value])
                self.store.redis.delete(self.keys.want(node))
            except self.store.errors as exc:
                log.warning("cluster: releasing %s failed (it expires by itself): %s", node, exc)
        if self.owners.get(node) == self.instance:
            self.owners[node] = None

    # -- what others read ------------------------------------------------------------------

    def owner_value(self, node: str) -> str | None:
        lease = self.owned.get(node)
        return lease.value if lease is not None else None

    def is_live(self, instance: str) -> bool:
        return instance in self.live
