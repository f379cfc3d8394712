"""NodeLink over real TCP: answers reach their callers, faults are survived and reported."""

from __future__ import annotations

import logging
import random

import gevent
import pytest
from conftest import wait_for
from gevent.event import Event as GEvent
from test_esl_fakeserver import FakeEsl

from eslchan.config import LinkOptions, NodeConfig
from eslchan.esl import commands as c
from eslchan.esl.errors import CommandRejected, CommandTimeout, LinkDown
from eslchan.esl.link import NodeLink

pytestmark = pytest.mark.timeout(30)

U = "d807444d-9b3e-405f-a412-dcdedef69da1"
FAST = LinkOptions(
    backoff_initial=0.02,
    backoff_max=0.1,
    backoff_jitter=0.2,
    watchdog=5.0,
    command_timeout=2.0,
    connect_timeout=1.0,
    event_queue_max=10_000,
    events=("CHANNEL_CREATE", "CHANNEL_DESTROY", "BACKGROUND_JOB"),
)


class Recorder:
    def __init__(self):
        self.events: list = []
        self.calls: list[tuple[str, str]] = []

    def kw(self):
        return {
            "on_event": lambda node, ev: self.events.append(ev),
            "on_up": lambda node: self.calls.append(("up", node)),
            "on_down": lambda node: self.calls.append(("down", node)),
            "on_lost_events": lambda node: self.calls.append(("lost", node)),
        }

    def count(self, kind: str) -> int:
        return sum(1 for k, _ in self.calls if k == kind)


@pytest.fixture
def fake():
    server = FakeEsl().start()
    server.api_handler = echo_handler
    yield server
    server.stop()


def echo_handler(line: str) -> str:
    name, _, rest = line.partition(" ")
    if name == "uuid_getvar":  # echoes its arguments so every caller can check its own answer
        return rest
    if name == "uuid_kill" and rest.startswith("0000"):
        return "-ERR No such channel!\n"
    if name == "originate" and not rest:
        return "-USAGE: <call url> <exten>|&<application_name>(<app_args>)\n"
    return "+OK\n"


@pytest.fixture
def make_link():
    links = []

    def make(server: FakeEsl, options: LinkOptions = FAST, password: str = "ClueCon", rec=None):
        rec = rec or Recorder()
        node = NodeConfig(name="fs1", host="127.0.0.1", port=server.port, password=password)
        link = NodeLink(node, options, **rec.kw())
        links.append(link)
        link.start()
        return link, rec

    yield make
    for link in links:
        link.stop()


def getvar(i: int) -> c.Command:
    return c.api("uuid_getvar", c.uuid(U), c.var_name(f"v{i}"))


def test_connects_subscribes_and_answers(fake, make_link):
    link, rec = make_link(fake)
    assert wait_for(lambda: link.is_up)
    assert wait_for(lambda: rec.count("up") == 1)
    subs = [cmd for cmd in fake.commands if cmd.startswith("event ")]
    assert "event json BACKGROUND_JOB HEARTBEAT" in subs
    assert "event json CHANNEL_CREATE CHANNEL_DESTROY BACKGROUND_JOB HEARTBEAT" in subs
    assert link.api(getvar(1)) == f"{U} v1"
    assert link.api(c.api("status")) == "+OK\n"
    assert link.send(c.execute(c.uuid(U), "answer")) == "+OK"
    assert link.stats["commands"] == 3


def test_failures_become_command_rejected(fake, make_link):
    link, _ = make_link(fake)
    assert wait_for(lambda: link.is_up)
    with pytest.raises(CommandRejected) as info:
        link.api(c.api("uuid_kill", c.uuid("00000000-0000-0000-0000-000000000000")))
    assert info.value.text == "-ERR No such channel!"
    with pytest.raises(CommandRejected, match="-USAGE"):
        link.api(c.api("originate"))
    with pytest.raises(CommandRejected, match="invalid session id"):
        link.send(c.hangup(c.uuid("00000000-0000-0000-0000-000000000000"), c.hangup_cause("NORMAL_CLEARING")))
    with pytest.raises(CommandRejected, match="-ERR No such channel"):
        link.bgapi(c.bgapi("uuid_kill", c.uuid("00000000-0000-0000-0000-000000000000")))


def test_bgapi_result_goes_to_its_caller(fake, make_link):
    link, rec = make_link(fake)
    assert wait_for(lambda: link.is_up)
    job = "11111111-2222-3333-4444-555555555555"
    cmd = c.bgapi("uuid_getvar", c.uuid(U), c.var_name("x"), job_uuid=job)
    assert link.bgapi(cmd) == f"{U} x"
    assert f"bgapi uuid_getvar {U} x" in fake.commands


def test_events_are_delivered_in_order(fake, make_link):
    link, rec = make_link(fake)
    assert wait_for(lambda: len(fake.subscribed()) == 2 and link.is_up)
    for i in range(200):
        fake.broadcast({"Event-Name": "CHANNEL_CREATE", "Unique-ID": U, "Event-Sequence": str(i)})
    fake.broadcast({"Event-Name": "CHANNEL_ANSWER", "Unique-ID": U})  # not subscribed
    assert wait_for(lambda: len(rec.events) == 200)
    assert [e["Event-Sequence"] for e in rec.events] == [str(i) for i in range(200)]
    assert rec.calls[0] == ("up", "fs1")


@pytest.mark.parametrize("events_flowing", [False, True])
def test_100_concurrent_callers_get_their_own_answers(fake, make_link, events_flowing):
    link, rec = make_link(fake)
    assert wait_for(lambda: len(fake.subscribed()) == 2 and link.is_up)
    stop = GEvent()

    def flood():
        n = 0
        while not stop.is_set():
            fake.broadcast({"Event-Name": "CHANNEL_CREATE", "Unique-ID": U, "N": str(n)})
            n += 1
            if n % 50 == 0:
                gevent.sleep(0)

    flooder = gevent.spawn(flood) if events_flowing else None

    def caller(i: int) -> bool:
        for j in range(5):
            gevent.sleep(random.random() * 0.002)
            if j % 2:
                got = link.bgapi(c.bgapi("uuid_getvar", c.uuid(U), c.var_name(f"b{i}_{j}")))
                if got != f"{U} b{i}_{j}":
                    return False
            elif link.api(getvar(i * 10 + j)) != f"{U} v{i * 10 + j}":
                return False
        return True

    workers = [gevent.spawn(caller, i) for i in range(100)]
    gevent.joinall(workers, raise_error=True)
    stop.set()
    if flooder:
        flooder.join()
    assert all(w.value for w in workers)
    if events_flowing:
        assert len(rec.events) > 0


def test_timeout_then_late_reply_never_reaches_the_next_caller(fake, make_link):
    link, _ = make_link(fake)
    assert wait_for(lambda: link.is_up)
    fake.stall = 0.3
    with pytest.raises(CommandTimeout):
        link.api(getvar(1), timeout=0.05)
    fake.stall = 0
    assert link.api(getvar(2)) == f"{U} v2"
    assert link.api(getvar(3)) == f"{U} v3"
    assert link.is_up


def test_drop_fails_pending_calls_and_reconnects(fake, make_link):
    link, rec = make_link(fake)
    assert wait_for(lambda: link.is_up and rec.count("up") == 1)
    fake.stall = 10  # the pending call would hang without the link failing it
    pending = gevent.spawn(link.api, getvar(1), timeout=20)
    assert wait_for(lambda: any("v1" in cmd for cmd in fake.commands))
    fake.stall = 0
    fake.drop()
    with pytest.raises(LinkDown):
        pending.get(timeout=5)
    assert wait_for(lambda: rec.count("down") == 1)
    assert wait_for(lambda: rec.count("up") == 2 and link.is_up)
    assert rec.calls[:3] == [("up", "fs1"), ("down", "fs1"), ("up", "fs1")]
    subs = [cmd for cmd in fake.commands if cmd.startswith("event json CHANNEL_CREATE")]
    assert len(subs) == 2  # subscribed again on reconnect
    assert link.api(getvar(2)) == f"{U} v2"
    assert link.stats["reconnects"] == 1


def test_calls_while_down_fail_at_once(make_link):
    server = FakeEsl().start()
    port = server.port
    server.stop()
    node = NodeConfig(name="gone", host="127.0.0.1", port=port, password="x")
    link = NodeLink(node, FAST)
    link.start()
    try:
        assert wait_for(lambda: link.stats["connect_failures"] >= 2)
        with pytest.raises(LinkDown, match="gone"):
            link.api(getvar(1))
        assert not link.is_up
    finally:
        link.stop()


def test_server_restart_is_survived(fake, make_link):
    link, rec = make_link(fake)
    assert wait_for(lambda: link.is_up)
    fake.stop()
    assert wait_for(lambda: rec.count("down") == 1)
    assert not link.is_up
    with pytest.raises(LinkDown):
        link.api(getvar(1))
    again = FakeEsl()
    again.api_handler = echo_handler
    again.server = type(fake.server)(("127.0.0.1", fake.port), again._handle)
    again.start()
    try:
        assert wait_for(lambda: rec.count("up") == 2 and link.is_up)
        assert link.api(getvar(5)) == f"{U} v5"
    finally:
        again.stop()


def test_wrong_password_is_logged_and_retried_with_backoff(fake, make_link, caplog):
    caplog.set_level(logging.ERROR, logger="eslchan.esl")
    link, rec = make_link(fake, password="WrongPassword")
    assert wait_for(lambda: link.stats["auth_failures"] >= 3)
    assert link.state == "auth_failed"
    failures = link.stats["auth_failures"]
    refusals = [r for r in caplog.records if "authentication refused" in r.getMessage()]
    assert all("fs1" in r.getMessage() and "-ERR invalid" in r.getMessage() for r in refusals)
    assert len(refusals) == failures  # logged once per attempt
    assert failures <= fake.auth_attempts <= failures + 1  # retried, never in a hot loop
    assert rec.count("up") == 0
    with pytest.raises(LinkDown):
        link.api(getvar(1))
    fake.password = "WrongPassword"  # operator fixes FreeSWITCH's side: the link comes up
    assert wait_for(lambda: link.is_up)


def test_rude_rejection_is_an_auth_failure(fake, make_link, caplog):
    caplog.set_level(logging.ERROR, logger="eslchan.esl")
    fake.rude = True
    link, rec = make_link(fake)
    assert wait_for(lambda: link.stats["auth_failures"] >= 2)
    assert link.state == "auth_failed"
    assert "Access Denied" in link.stats["last_error"]
    assert any("rude rejection" in r.getMessage() for r in caplog.records)
    fake.rude = False
    assert wait_for(lambda: link.is_up)


def test_silent_server_times_out_the_handshake(fake, make_link):
    fake.silent = True
    link, _ = make_link(fake)
    assert wait_for(lambda: link.stats["connect_failures"] >= 1, timeout=5)
    assert "timed out" in link.stats["last_error"]


def test_watchdog_reconnects_a_silent_link(fake, make_link):
    opts = LinkOptions(**{**FAST.__dict__, "watchdog": 0.3})
    link, rec = make_link(fake, opts)
    assert wait_for(lambda: rec.count("up") == 1)
    # no HEARTBEAT is ever sent: the watchdog declares the link dead and rebuilds it
    assert wait_for(lambda: rec.count("down") >= 1 and rec.count("up") >= 2)
    assert "watchdog" in (link.last_error or "")


def test_frames_split_at_every_byte(fake, make_link):
    fake.split = True
    link, rec = make_link(fake)
    assert wait_for(lambda: len(fake.subscribed()) == 2 and link.is_up)
    fake.broadcast({"Event-Name": "CHANNEL_CREATE", "Unique-ID": U, "v": "Zoë 東京\n:x"})
    assert link.api(getvar(7)) == f"{U} v7"
    assert wait_for(lambda: len(rec.events) == 1)
    assert rec.events[0]["v"] == "Zoë 東京\n:x"


def test_slow_consumer_overflow_is_counted_and_reported(fake, make_link):
    opts = LinkOptions(**{**FAST.__dict__, "event_queue_max": 50})
    rec = Recorder()
    release = GEvent()
    seen = []

    def slow(node, ev):
        seen.append(ev)
        release.wait()

    link, _ = make_link(fake, opts, rec=rec)
    link.on_event = slow
    assert wait_for(lambda: len(fake.subscribed()) == 2 and link.is_up)
    for i in range(300):
        fake.broadcast({"Event-Name": "CHANNEL_CREATE", "Unique-ID": U, "N": str(i)})
    assert wait_for(lambda: link.stats["events_received"] == 300)
    assert link.stats["events_dropped"] >= 300 - 51 - 1
    assert link.api(getvar(1)) == f"{U} v1"  # commands are unaffected
    release.set()
    assert wait_for(lambda: rec.count("lost") == 1)
    assert link.stats["events_dropped"] + len(seen) == 300
    assert link.stats["event_queue"] == 0


def test_stop_fails_pending_and_stops_reconnecting(fake, make_link):
    link, rec = make_link(fake)
    assert wait_for(lambda: link.is_up)
    fake.stall = 5
    pending = gevent.spawn(link.api, getvar(1), timeout=10)
    gevent.sleep(0.05)
    link.stop()
    with pytest.raises(LinkDown):
        pending.get(timeout=3)
    assert link.state == "down"


def test_command_listener_sees_every_command(fake, make_link):
    link, _ = make_link(fake)
    seen = []
    link.add_command_listener(lambda node, cmd, secs, err: seen.append((node, cmd.name, err)))
    assert wait_for(lambda: link.is_up)
    link.api(getvar(1))
    with pytest.raises(CommandRejected):
        link.api(c.api("uuid_kill", c.uuid("00000000-0000-0000-0000-000000000000")))
    assert seen == [("fs1", "uuid_getvar", None), ("fs1", "uuid_kill", "CommandRejected")]


def test_wrong_command_kind_is_a_programming_error(fake, make_link):
    link, _ = make_link(fake)
    with pytest.raises(ValueError):
        link.api(c.bgapi("status"))
    with pytest.raises(ValueError):
        link.send(c.api("status"))


def test_a_flapping_server_is_retried_with_growing_delays(fake, make_link, caplog):
    caplog.set_level(logging.WARNING, logger="eslchan.esl")
    fake.flap = True
    opts = LinkOptions(
        **{**FAST.__dict__, "backoff_initial": 0.01, "backoff_max": 0.16, "backoff_jitter": 0.0}
    )
    link, rec = make_link(fake, opts)
    assert wait_for(lambda: link.stats["connect_failures"] + link.stats["reconnects"] >= 6)
    delays = [
        float(r.getMessage().rsplit(" in ", 1)[1].split()[0])
        for r in caplog.records
        if "retrying in" in r.getMessage() or "reconnecting in" in r.getMessage()
    ]
    assert delays[:6] == [0.01, 0.02, 0.04, 0.08, 0.16, 0.16]  # doubling, capped


@pytest.mark.parametrize(
    "change", [{"event_format": "yaml"}, {"events": ("CHANNEL_CREATE\nauth x",)}, {"events": ("A;B",)}]
)
def test_bad_subscription_options_fail_at_construction(change):
    with pytest.raises(ValueError):
        NodeLink(NodeConfig(name="n", host="127.0.0.1"), LinkOptions(**{**FAST.__dict__, **change}))


def test_a_password_with_a_line_break_is_never_sent(fake, make_link):
    link, _ = make_link(fake, password="ClueCon\n\napi system id")
    assert wait_for(lambda: link.stats["auth_failures"] >= 1)
    assert link.state == "auth_failed" and "one line" in link.stats["last_error"]
    assert fake.auth_attempts == 0 and fake.commands == []


def _undecodable_events_are_skipped(fake, link, rec, content_type: bytes, bodies: list[bytes]) -> None:
    """Each body is sent as one event frame; none may stop the events that follow."""
    assert wait_for(lambda: len(fake.subscribed()) == 2 and link.is_up)
    for body in bodies:
        head = b"Content-Length: %d\nContent-Type: %s\n\n" % (len(body), content_type)
        fake.send_raw("CHANNEL_CREATE", head + body)
    fake.broadcast({"Event-Name": "CHANNEL_CREATE", "Unique-ID": U})
    assert wait_for(lambda: len(rec.events) == 1)
    assert rec.events[0]["Unique-ID"] == U
    assert link.stats["events_undecodable"] == len(bodies)


def test_a_plain_event_with_a_bad_body_length_is_skipped_and_later_events_still_arrive(fake, make_link):
    link, rec = make_link(fake, LinkOptions(**{**FAST.__dict__, "event_format": "plain"}))
    bodies = [b"Event-Name: CHANNEL_CREATE\nContent-Length: " + n + b"\n\nhello" for n in (b"x", b"-3")]
    _undecodable_events_are_skipped(fake, link, rec, b"text/event-plain", bodies)


def test_a_json_event_nested_too_deep_is_skipped_and_later_events_still_arrive(fake, make_link):
    link, rec = make_link(fake)
    deep = b'{"Event-Name":"CHANNEL_CREATE","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    _undecodable_events_are_skipped(fake, link, rec, b"text/event-json", [deep])
