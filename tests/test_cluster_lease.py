"""Node leases against a real Redis: one owner per node, spread evenly; fencing (a stale
owner's writes are refused); an owner cut off from Redis lets go on its own clock before
anyone else can take the node; nodes move to an instance that joins, never to two at once."""

from __future__ import annotations

import time

import gevent
import pytest
from cluster_support import TcpProxy
from conftest import eventually

from eslchan.cluster.lease import Leases, assignment
from eslchan.cluster.publish import Publisher
from eslchan.cluster.store import Store
from eslchan.config import ClusterConfig

pytestmark = pytest.mark.timeout(60)

NODES = [f"fs{i}" for i in range(8)]


def make_store(url: str, name: str, lease: float = 1.0) -> Store:
    return Store(ClusterConfig(redis_url=url, instance=name, lease_seconds=lease, redis_timeout=0.5))


class Member:
    """One instance's leases, with what it was told (acquired, let go) and when."""

    def __init__(self, url: str, name: str, lease: float = 1.0, nodes: list[str] = NODES):
        self.store = make_store(url, name, lease)
        self.events: list[tuple[float, str, str]] = []
        self.leases = Leases(self.store, nodes, on_acquire=lambda node, lease: self._note("acquired", node),
                             on_release=lambda node, why: self._note("released", node))

    def _note(self, what: str, node: str) -> None:
        self.events.append((time.monotonic(), what, node))

    @property
    def owned(self) -> set[str]:
        return set(self.leases.owned)


def rounds(members: list[Member], seconds: float, check=None) -> None:
    """Every member runs its rounds for ``seconds``; ``check()`` after each round."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for m in members:
            m.leases.round()
            if check is not None:
                check()
        gevent.sleep(members[0].leases.interval)


def never_shared(members: list[Member]) -> None:
    seen: dict[str, str] = {}
    for m in members:
        for node in m.owned:
            assert node not in seen, f"{node} owned by {seen[node]} and {m.leases.instance} at once"
            seen[node] = m.leases.instance


def test_each_node_has_one_owner_the_live_instance_it_prefers(redis_url):
    members = [Member(redis_url, name) for name in ("a", "b", "c")]
    rounds(members, 3.0, check=lambda: never_shared(members))
    wanted = assignment(NODES, ["a", "b", "c"])
    for m in members:
        assert m.owned == {n for n in NODES if wanted[n] == m.leases.instance}
        assert len(m.owned) in (2, 3)  # eight nodes over three: as even as it gets
    assert set().union(*(m.owned for m in members)) == set(NODES)


def test_an_instance_that_joins_gets_its_nodes_handed_over_never_shared(redis_url):
    a = Member(redis_url, "a")
    rounds([a], 0.6)
    assert a.owned == set(NODES)  # alone, it holds every node
    b = Member(redis_url, "b")
    rounds([a, b], 3.0, check=lambda: never_shared([a, b]))
    wanted = {n for n, name in assignment(NODES, ["a", "b"]).items() if name == "b"}
    assert len(wanted) == 4  # half of them
    assert b.owned == wanted and a.owned == set(NODES) - wanted
    assert a.leases.handovers == len(wanted)
    # each handed-over node was let go by a before b took it
    for node in wanted:
        released = max(t for t, what, n in a.events if n == node and what == "released")
        acquired = max(t for t, what, n in b.events if n == node and what == "acquired")
        assert released < acquired


def test_a_stale_owners_writes_are_refused(redis_url):
    a, b = Member(redis_url, "a", nodes=["fs1"]), Member(redis_url, "b", nodes=["fs1"])
    a.leases.round()
    assert a.owned == {"fs1"}
    stale_value = a.leases.owner_value("fs1")
    lost: list[str] = []
    publisher = Publisher(a.store, on_lost=lost.append)
    publisher.own("fs1", stale_value)
    assert a.store.publish("fs1", stale_value, f"{stale_value}:1", [("s", "u1", b"first")]) == 1
    # a stalls (no rounds): its lease lapses in Redis, and b takes the node
    gevent.sleep(1.1)
    eventually(lambda: (b.leases.round(), b.owned == {"fs1"})[1], timeout=5)
    assert b.leases.owned["fs1"].token > a.leases.owned["fs1"].token  # a new fencing token
    redis = a.store.redis
    length = redis.xlen(a.store.keys.stream)
    # the stale owner's write is refused whole: nothing reaches the stream or the snapshot
    assert a.store.publish("fs1", stale_value, f"{stale_value}:2", [("s", "u2", b"late")]) == -1
    assert redis.xlen(a.store.keys.stream) == length
    assert redis.hget(a.store.keys.snapshot("fs1"), "u2") is None
    # through the publisher: refused, and it stops publishing the node and says so
    publisher.start(lambda node: [])
    publisher.channel_state("fs1", type("Ch", (), {"uuid": "u3", "shared_state": lambda self: []})())
    eventually(lambda: lost == ["fs1"])
    assert not publisher.owns("fs1") and publisher.stats["refused"] == 1
    assert redis.hget(a.store.keys.snapshot("fs1"), "u3") is None
    publisher.stop()
    # and a's own clock had let the node go already
    a.leases.expire()
    assert a.owned == set()
    # the new owner writes
    value = b.leases.owner_value("fs1")
    assert b.store.publish("fs1", value, f"{value}:1", [("s", "u4", b"ok")]) == 2


def test_the_same_batch_is_written_once(redis_url):
    a = Member(redis_url, "a", nodes=["fs1"])
    a.leases.round()
    value = a.leases.owner_value("fs1")
    assert a.store.publish("fs1", value, f"{value}:7", [("s", "u1", b"r")]) == 1
    # a reply lost on the way back, the batch sent again: not written twice
    assert a.store.publish("fs1", value, f"{value}:7", [("s", "u1", b"r")]) == -2
    assert a.store.redis.xlen(a.store.keys.stream) == 1


def test_an_owner_cut_off_from_redis_lets_go_before_anyone_can_take_over(redis_server, redis_url):
    proxy = TcpProxy(redis_server.port)
    try:
        a = Member(f"redis://127.0.0.1:{proxy.port}/0", "a", lease=2.0, nodes=["fs1"])
        b = Member(redis_url, "b", lease=2.0, nodes=["fs1"])
        a.leases.round()
        assert a.owned == {"fs1"}
        a.leases.start()  # its rounds and its own-clock expiry
        gevent.sleep(0.6)
        proxy.cut()
        cut_at = time.monotonic()
        eventually(lambda: not a.owned, timeout=5)
        let_go = [t for t, what, _ in a.events if what == "released"][-1]
        assert let_go - cut_at < 2.0  # within the lease, on its own clock, Redis unreachable
        eventually(lambda: (b.leases.round(), b.owned == {"fs1"})[1], timeout=6, interval=0.1)
        taken = [t for t, what, _ in b.events if what == "acquired"][-1]
        assert let_go < taken  # never two owners
        a.leases.stop()
    finally:
        proxy.stop()
