"""End to end over real TCP: NodeLinks to simulated FreeSWITCH nodes feed the registry, which
must end equal to the channels the nodes really have — through random hangups, a
FreeSWITCH restart, a dropped link that loses events, and a flooded event queue. (Their
`show channels` lags the events, so it is not the witness: the live sessions are.)"""

from __future__ import annotations

import random

import gevent
import pytest
from gevent.event import Event as GEvent

from eslchan.config import LinkOptions, NodeConfig, VariableMapping
from eslchan.esl.link import NodeLink
from eslchan.registry import ChannelRegistry, NodeSync
from eslchan.simulator import Simulator

pytestmark = pytest.mark.timeout(120)

SPEED = 50.0
ACCOUNTS = [f"acc0000000000000000000000000000{i}" for i in range(1, 4)]


def fs_channels(sim: Simulator) -> set[str]:
    """The channels the node really has (its live sessions, what uuid_exists answers)."""
    return {ch.uuid for ch in sim.channels()}


class Cluster:
    def __init__(self, n: int, *, queue_max: dict[str, int] | None = None):
        self.sims = {f"fs{i + 1}": Simulator(speed=SPEED, hostname=f"sim{i + 1}") for i in range(n)}
        for sim in self.sims.values():
            sim.start()
        self.registry = ChannelRegistry(VariableMapping(), stale_grace=60)
        self.sync = NodeSync(self.registry, grace_seconds=60, retry_initial=0.05)
        self.links: dict[str, NodeLink] = {}
        # a closed gate makes the registry a slow consumer of that node's events
        self.gates = {name: GEvent() for name in self.sims}
        for gate in self.gates.values():
            gate.set()
        for name, sim in self.sims.items():
            opts = LinkOptions(
                backoff_initial=0.05,
                backoff_max=0.2,
                backoff_jitter=0.1,
                command_timeout=10.0,
                connect_timeout=2.0,
                event_queue_max=(queue_max or {}).get(name, 100_000),
            )
            link = NodeLink(
                NodeConfig(name, sim.host, sim.port, "ClueCon"),
                opts,
                on_event=self._on_event,
                on_up=self.sync.on_up,
                on_down=self.sync.on_down,
                on_lost_events=self.sync.on_lost_events,
            )
            self.sync.links[name] = link
            self.links[name] = link
        for link in self.links.values():
            link.start()

    def _on_event(self, node: str, event: dict) -> None:
        self.gates[node].wait()
        self.sync.on_event(node, event)

    def stop(self) -> None:
        for gate in self.gates.values():
            gate.set()
        for link in self.links.values():
            link.stop()
        self.sync.stop()
        for sim in self.sims.values():
            sim.stop()

    def wait_synced(self, timeout: float = 20.0) -> None:
        for name in self.sims:
            assert self.sync.wait_synced(name, timeout), f"{name} never synced"

    def mismatch(self) -> dict[str, tuple[set[str], set[str]]]:
        """Per node: (listed by us only, listed by FreeSWITCH only)."""
        out = {}
        for name, sim in self.sims.items():
            ours = {ch.uuid for ch in self.registry.for_node(name)}
            theirs = fs_channels(sim)
            if ours != theirs:
                out[name] = (ours - theirs, theirs - ours)
        return out

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until links are up, resyncs done and the registry equals every node's view."""
        deadline = gevent.get_hub().loop.now() + timeout
        while True:
            if all(link.is_up for link in self.links.values()) and all(
                self.sync.is_synced(n) for n in self.sims
            ):
                if not self.mismatch():
                    return
            if gevent.get_hub().loop.now() > deadline:
                pytest.fail(f"registry never matched the nodes: {self.mismatch()}")
            gevent.sleep(0.05)


@pytest.fixture
def cluster():
    c = Cluster(3, queue_max={"fs1": 300})
    yield c
    c.stop()


def test_thousand_calls_three_nodes_restart_and_lost_events(cluster):
    rng = random.Random(1000)
    reg = cluster.registry
    cluster.wait_synced()
    names = list(cluster.sims)
    live: list[tuple[str, list[str]]] = []  # (node, [a, b]) of calls not hung up by us
    expected_account: dict[str, str] = {}

    def place_calls(count: int, nodes: list[str]) -> None:
        for i in range(count):
            node = rng.choice(nodes)
            account = rng.choice(ACCOUNTS)
            call = cluster.sims[node].create_call(
                account_id=account,
                user_id=f"user{rng.randrange(20)}",
                device_id=f"dev{rng.randrange(40)}",
                caller_id_number=str(1000 + rng.randrange(900)),
                destination=str(2000 + rng.randrange(900)),
                answered=rng.random() < 0.8,
            )
            expected_account[call.a_uuid] = account
            live.append((node, call.uuids))
            if rng.random() < 0.45 and live:  # someone hangs up, from either end
                hang_up_one()
            if i % 25 == 0:
                gevent.sleep(0)

    def hang_up_one() -> None:
        node, legs = live.pop(rng.randrange(len(live)))
        cluster.sims[node].hangup(rng.choice(legs), rng.choice(["NORMAL_CLEARING", "USER_BUSY"]))

    # 1. 400 calls over three nodes
    place_calls(400, names)
    cluster.settle()
    assert len(reg) > 0

    # 2. fs2 restarts (crash): its calls vanish without a single event, Event-Sequence restarts
    before_restart = len(reg.for_node("fs2"))
    assert before_restart > 0
    cluster.sims["fs2"].restart()
    live[:] = [(n, legs) for n, legs in live if n != "fs2"]
    place_calls(300, names)  # includes new calls on the restarted fs2
    cluster.settle()
    assert all(ch.uuid in fs_channels(cluster.sims["fs2"]) for ch in reg.for_node("fs2"))

    # 3. fs3's link drops; calls come and go on it while nobody listens (events lost)
    cluster.sims["fs3"].drop_connections()
    place_calls(150, ["fs3"])
    for _ in range(40):
        if live:
            hang_up_one()
    place_calls(50, names)
    cluster.settle()

    # 4. the registry falls behind fs1: its event queue overflows, events are dropped
    cluster.gates["fs1"].clear()
    place_calls(100, ["fs1"])
    for _ in range(30):
        hang_up_one()
    gevent.sleep(0.3)  # the link keeps reading while nobody consumes
    cluster.gates["fs1"].set()
    cluster.settle()
    assert cluster.links["fs1"].stats["events_dropped"] > 0
    assert cluster.links["fs1"].stats["lost_event_reports"] >= 1

    # 5. the rest hang up at random, from either end, except some that stay up
    while len(live) > 50:
        hang_up_one()
        if rng.random() < 0.1:
            gevent.sleep(0)
    cluster.settle()

    # ended equal to the union of the nodes' own channels: no stale, none missing
    union = set().union(*(fs_channels(sim) for sim in cluster.sims.values()))
    assert {ch.uuid for ch in reg.all()} == union
    assert not any(ch.stale for ch in reg.all())
    assert len(expected_account) == 1000
    for ch in reg.all():  # and the channels carry the right tenancy
        if ch.uuid in expected_account:
            assert ch.account_id == expected_account[ch.uuid]
    assert cluster.links["fs2"].stats["reconnects"] + cluster.links["fs2"].stats["connects"] >= 2
    assert reg.stats["restarts"] >= 1  # fs2 came back with a new Core-UUID


def test_stale_while_down_then_gone_after_the_grace():
    c = Cluster(1)
    try:
        c.wait_synced()
        sim = c.sims["fs1"]
        for _ in range(5):
            sim.create_call(account_id=ACCOUNTS[0])
        c.settle()
        assert len(c.registry) == 10
        c.registry.stale_grace = 0.3
        sim.stop()  # the node dies and does not come back
        gevent.sleep(0.1)
        assert len(c.registry) == 10 and all(ch.stale for ch in c.registry.all())
        deadline = gevent.get_hub().loop.now() + 5
        while len(c.registry) and gevent.get_hub().loop.now() < deadline:
            gevent.sleep(0.05)
        assert len(c.registry) == 0
    finally:
        c.stop()
