"""NodeLink against the simulator over real TCP: calls, concurrency, and the simulator's faults."""

from __future__ import annotations

import json

import gevent
import pytest
from conftest import wait_for
from gevent.event import Event as GEvent

from eslchan.config import LinkOptions, NodeConfig
from eslchan.esl import commands as c
from eslchan.esl.errors import CommandRejected, CommandTimeout, LinkDown
from eslchan.esl.link import NodeLink

pytestmark = pytest.mark.timeout(60)

Simulator = pytest.importorskip("eslchan.simulator").Simulator

OPTS = LinkOptions(
    backoff_initial=0.02, backoff_max=0.2, backoff_jitter=0.2, watchdog=5.0,
    command_timeout=3.0, connect_timeout=1.0,
)  # fmt: skip


class Rec:
    def __init__(self):
        self.events: list[dict] = []
        self.calls: list[str] = []

    def count(self, kind: str) -> int:
        return self.calls.count(kind)


@pytest.fixture
def sim(simulator):
    """conftest's started simulator, by the short name these tests use."""
    return simulator


@pytest.fixture
def link_to():
    links = []

    def make(sim, options: LinkOptions = OPTS, password: str = "ClueCon"):
        rec = Rec()
        node = NodeConfig(name="sim1", host=sim.host, port=sim.port, password=password)
        link = NodeLink(
            node, options,
            on_event=lambda n, ev: rec.events.append(ev),
            on_up=lambda n: rec.calls.append("up"),
            on_down=lambda n: rec.calls.append("down"),
            on_lost_events=lambda n: rec.calls.append("lost"),
        )  # fmt: skip
        links.append(link)
        link.start()
        assert wait_for(lambda: link.is_up)
        return link, rec

    yield make
    for link in links:
        link.stop()


def test_events_and_commands_of_a_call(sim, link_to):
    link, rec = link_to(sim)
    call = sim.create_call(account_id="a" * 32, caller_id_name="Alice")
    a = call.a_uuid
    assert wait_for(lambda: any(e.get("Event-Name") == "CHANNEL_BRIDGE" for e in rec.events))
    creates = [e for e in rec.events if e["Event-Name"] == "CHANNEL_CREATE"]
    assert {e["Unique-ID"] for e in creates} == {a, call.b_uuid}
    show = c.api("show", c.word("channels"), c.word("as"), c.word("json"))
    # FreeSWITCH's table lags the events: wait for it, as with a real switch
    assert wait_for(lambda: {r["uuid"] for r in json.loads(link.api(show)).get("rows", [])}
                    == {a, call.b_uuid})
    dump = json.loads(link.api(c.api("uuid_dump", c.uuid(a), c.word("json"))))
    assert dump["variable_eslchan_account_id"] == "a" * 32
    assert link.send(c.execute(c.uuid(a), "set", c.assignment(c.var_name("x"), c.var_value("y z")))) == "+OK"
    assert wait_for(lambda: sim.channel(a).variables.get("x") == "y z")
    assert link.api(c.api("uuid_getvar", c.uuid(a), c.var_name("x"))) == "y z"
    with pytest.raises(CommandRejected, match="No such channel"):
        link.api(c.api("uuid_kill", c.uuid("00000000-0000-0000-0000-000000000000")))
    link.api(c.api("uuid_kill", c.uuid(a)))
    assert wait_for(lambda: sum(e["Event-Name"] == "CHANNEL_DESTROY" for e in rec.events) == 2)


@pytest.mark.parametrize("events_flowing", [False, True], ids=["quiet", "busy"])
def test_100_greenlets_get_their_own_answers(sim, link_to, events_flowing):
    link, rec = link_to(sim)
    a = sim.create_call().a_uuid
    for i in range(100):
        sim.api(f"uuid_setvar {a} v{i} value-{i}")
    stop = GEvent()

    def traffic():
        while not stop.is_set():
            call = sim.create_call(bridged=False)
            gevent.sleep(0.01)
            sim.hangup(call.a_uuid)

    busy = gevent.spawn(traffic) if events_flowing else None

    def caller(i: int) -> list[str]:
        got = []
        for j in range(4):
            cmd = c.api("uuid_getvar", c.uuid(a), c.var_name(f"v{i}"))
            if j % 2:
                got.append(link.bgapi(c.bgapi("uuid_getvar", c.uuid(a), c.var_name(f"v{i}"))))
            else:
                got.append(link.api(cmd))
        return got

    workers = [gevent.spawn(caller, i) for i in range(100)]
    gevent.joinall(workers, raise_error=True)
    stop.set()
    if busy is not None:
        busy.join()
        assert rec.events
    for i, w in enumerate(workers):
        assert w.value == [f"value-{i}"] * 4


def test_drop_and_restart_are_survived(sim, link_to):
    link, rec = link_to(sim)
    sim.drop_connections()
    assert wait_for(lambda: rec.count("down") == 1 and rec.count("up") == 2 and link.is_up)
    sim.restart()
    assert wait_for(lambda: rec.count("down") == 2 and rec.count("up") == 3 and link.is_up)
    assert rec.calls == ["up", "down", "up", "down", "up"]
    subs = [cmd for cmd in sim.commands if cmd.startswith("event json CHANNEL_CREATE")]
    assert len(subs) == 3
    assert link.api(c.api("status")).startswith("UP")
    assert link.stats["reconnects"] == 2


def test_stall_times_out_and_link_survives(sim, link_to):
    link, rec = link_to(sim)
    sim.stall(0.5)
    with pytest.raises(CommandTimeout):
        link.api(c.api("status"), timeout=0.1)
    assert link.api(c.api("version"), timeout=3).startswith("FreeSWITCH Version")
    assert link.is_up and rec.count("down") == 0


def test_pending_calls_fail_on_drop(sim, link_to):
    link, _ = link_to(sim)
    sim.stall(3)
    pending = [gevent.spawn(link.api, c.api("status"), 10) for _ in range(5)]
    gevent.sleep(0.05)
    sim.drop_connections()
    for g in pending:
        with pytest.raises(LinkDown):
            g.get(timeout=2)


def test_fail_next_is_rejected(sim, link_to):
    link, _ = link_to(sim)
    sim.fail_next("-ERR simulated failure")
    with pytest.raises(CommandRejected) as info:
        link.api(c.api("status"))
    assert info.value.text == "-ERR simulated failure"
    sim.fail_next("-ERR job failed")
    with pytest.raises(CommandRejected, match="job failed"):
        link.bgapi(c.bgapi("status"))
    assert link.api(c.api("status")).startswith("UP")


def test_split_writes(sim, link_to):
    sim.split_writes(True)
    link, rec = link_to(sim)
    call = sim.create_call()
    assert wait_for(lambda: any(e.get("Unique-ID") == call.a_uuid for e in rec.events))
    assert link.api(c.api("uuid_exists", c.uuid(call.a_uuid))) == "true"


def test_wrong_password_against_simulator(sim):
    node = NodeConfig(name="sim1", host=sim.host, port=sim.port, password="WrongPassword")
    link = NodeLink(node, OPTS)
    link.start()
    try:
        assert wait_for(lambda: link.stats["auth_failures"] >= 2)
        assert link.state == "auth_failed" and "-ERR invalid" in link.stats["last_error"]
    finally:
        link.stop()


def test_heartbeats_keep_the_watchdog_quiet():
    with Simulator(speed=1.0, heartbeat_interval=0.05) as sim:
        opts = LinkOptions(**{**OPTS.__dict__, "watchdog": 0.5})
        node = NodeConfig(name="sim1", host=sim.host, port=sim.port, password="ClueCon")
        beats = []
        link = NodeLink(node, opts, on_event=lambda n, ev: beats.append(ev["Event-Name"]))
        link.start()
        try:
            assert wait_for(lambda: beats.count("HEARTBEAT") >= 20, timeout=10)
            assert link.is_up and link.stats["reconnects"] == 0
        finally:
            link.stop()



def test_heartbeats_arrive_when_custom_subclasses_are_subscribed(link_to):
    # FreeSWITCH reads every name after CUSTOM in an `event` command as a subclass, so a
    # HEARTBEAT appended after them would subscribe to nothing and starve the watchdog
    with Simulator(speed=1.0, heartbeat_interval=0.05) as sim:
        opts = LinkOptions(**{**OPTS.__dict__, "events": ("CHANNEL_CREATE", "CUSTOM", "sofia::register")})
        link, rec = link_to(sim, opts)
        assert wait_for(lambda: any(e["Event-Name"] == "HEARTBEAT" for e in rec.events), timeout=10)
        assert link.is_up

@pytest.mark.parametrize("fmt", ["json", "plain", "xml"])
def test_every_event_format_decodes_exactly(sim, link_to, fmt):
    tricky = "line1\nFake-Header: injected\n\nEvent-Name: FORGED <&> Zoë 東京 a+b=c"
    opts = LinkOptions(**{**OPTS.__dict__, "event_format": fmt})
    link, rec = link_to(sim, opts)
    call = sim.create_call(variables={"eslchan_note": tricky})
    assert wait_for(lambda: any(e.get("Unique-ID") == call.a_uuid for e in rec.events))
    mine = [e for e in rec.events if e.get("Unique-ID") == call.a_uuid and "variable_eslchan_note" in e]
    assert mine and {e["variable_eslchan_note"] for e in mine} == {tricky}
    assert not any("Fake-Header" in e or e.get("Event-Name") == "FORGED" for e in rec.events)
    assert f"event {fmt} " in " ".join(sim.commands)


def test_many_nodes_each_with_its_own_password():
    sims = [Simulator(password=f"pw{i}", hostname=f"fs{i}", speed=20.0) for i in range(3)]
    links = []
    try:
        for i, s in enumerate(sims):
            s.start()
            node = NodeConfig(name=f"node{i}", host=s.host, port=s.port, password=f"pw{i}")
            links.append(NodeLink(node, OPTS))
            links[-1].start()
        assert wait_for(lambda: all(link.is_up for link in links))
        for i, link in enumerate(links):
            assert link.api(c.api("hostname")).strip() == f"fs{i}"
        sims[1].drop_connections()
        assert wait_for(lambda: links[1].stats["reconnects"] == 1 and all(link.is_up for link in links))
        assert [link.stats["reconnects"] for link in links] == [0, 1, 0]
    finally:
        for link in links:
            link.stop()
        for s in sims:
            s.stop()
