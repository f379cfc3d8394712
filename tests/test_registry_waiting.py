"""Waiting for a channel's events, and listening to all of them."""

from __future__ import annotations

import gevent
import pytest

from eslchan.config import VariableMapping
from eslchan.esl.parser import FrameParser, decode_event
from eslchan.registry import ChannelGone, ChannelRegistry

pytestmark = pytest.mark.timeout(30)

NOW = 1795701700.0
A = "2dff7fe3-6508-443f-aa41-0ffda2720427"
A_TMP = "76a60aef-cc37-4726-9729-a72a392269a9"
B = "e0b2d7b5-58fa-408b-b063-e8714171ffe0"


@pytest.fixture
def evs(captures_dir):
    data = (captures_dir / "05_bridge.c1.recv").read_bytes()
    return [decode_event(f) for f in FrameParser().feed(data) if f.is_event]


def until(evs, seq: str) -> list[dict]:
    i = next(i for i, e in enumerate(evs) if e.get("Event-Sequence") == seq)
    return evs[: i + 1]


def after(evs, seq: str) -> list[dict]:
    i = next(i for i, e in enumerate(evs) if e.get("Event-Sequence") == seq)
    return evs[i + 1 :]


@pytest.fixture
def reg():
    return ChannelRegistry(VariableMapping(), clock=lambda: NOW)


def feed_later(reg, events, node="fs1"):
    """Deliver events from another greenlet, as the link's dispatcher does."""

    def run():
        for ev in events:
            reg.apply(node, ev)
            gevent.sleep(0)

    return gevent.spawn(run)


def test_wait_for_returns_the_next_matching_event(reg, evs):
    for ev in until(evs, "940"):
        reg.apply("fs1", ev)
    g = feed_later(reg, after(evs, "940"))
    event = reg.wait_for("fs1", A, {"CHANNEL_BRIDGE"}, timeout=5)
    assert event["Event-Name"] == "CHANNEL_BRIDGE" and event["Other-Leg-Unique-ID"] == B
    # the registry already shows what the event said when the waiter wakes
    assert reg.get("fs1", A).other_leg == B
    g.kill()


def test_expect_catches_an_event_that_arrives_before_wait(reg, evs):
    for ev in until(evs, "938"):
        reg.apply("fs1", ev)
    with reg.expect("fs1", A, {"CHANNEL_EXECUTE"}) as waiter:
        for ev in until(evs, "940")[len(until(evs, "938")) :]:
            reg.apply("fs1", ev)  # arrives while "the command is in flight"
        event = waiter.wait(0.1)
    assert event["Application"] == "bridge"


def test_predicate_and_timeout(reg, evs):
    for ev in until(evs, "938"):
        reg.apply("fs1", ev)
    g = feed_later(reg, until(evs, "976")[len(until(evs, "938")) :])
    event = reg.wait_for(
        "fs1", A, {"CHANNEL_CALLSTATE"}, timeout=5,
        predicate=lambda e: e["Channel-Call-State"] == "ACTIVE",
    )
    assert event["Event-Sequence"] == "968"  # not the RING_WAIT one (940)
    g.join()
    assert reg.wait_for("fs1", A, {"CHANNEL_ANSWER"}, timeout=0.05) is None


def test_destroy_wakes_waiters_with_channel_gone(reg, evs):
    for ev in until(evs, "976"):
        reg.apply("fs1", ev)
    g = feed_later(reg, after(evs, "976"))
    with pytest.raises(ChannelGone) as info:
        reg.wait_for("fs1", B, {"CHANNEL_ANSWER"}, timeout=5)
    assert info.value.uuid == B and info.value.reason == "destroyed"
    g.kill()
    with pytest.raises(ChannelGone):
        reg.wait_for("fs1", B, {"CHANNEL_ANSWER"}, timeout=5)  # gone already: at once
    with pytest.raises(ChannelGone) as info:
        reg.wait_for("fs1", "00000000-0000-0000-0000-000000000000", (), timeout=5)
    assert info.value.reason == "unknown"


def test_waiting_for_destroy_returns_the_event(reg, evs):
    for ev in until(evs, "976"):
        reg.apply("fs1", ev)
    g = feed_later(reg, after(evs, "976"))
    event = reg.wait_for("fs1", A, {"CHANNEL_DESTROY"}, timeout=5)
    assert event["Event-Name"] == "CHANNEL_DESTROY" and event["Hangup-Cause"] == "NORMAL_CLEARING"
    g.join()


def test_waiter_follows_a_rename(reg, evs):
    """A waiter on the temporary uuid gets the events of the final one (CHANNEL_UUID)."""
    for ev in until(evs, "906"):
        reg.apply("fs1", ev)
    assert reg.get("fs1", A_TMP) is not None
    g = feed_later(reg, after(evs, "906"))
    event = reg.wait_for("fs1", A_TMP, {"CHANNEL_CREATE"}, timeout=5)
    assert event["Unique-ID"] == A
    g.kill()


def test_listeners_see_every_channel_event_and_can_leave(reg, evs):
    seen: list[tuple[str, str, str]] = []

    def listener(node, channel, event):
        seen.append((node, channel.uuid, event["Event-Name"]))

    def broken(node, channel, event):
        raise RuntimeError("a subscriber bug")

    unsubscribe = reg.listen(listener)
    reg.listen(broken)  # must not stop the registry
    for ev in until(evs, "969"):
        reg.apply("fs1", ev)
    assert ("fs1", A, "CHANNEL_BRIDGE") in seen
    assert all(name != "API" for _, _, name in seen)  # channel events only
    n = len(seen)
    unsubscribe()
    for ev in after(evs, "969"):
        reg.apply("fs1", ev)
    assert len(seen) == n and len(reg) == 0


def test_listener_gets_the_removed_channel_on_destroy(reg, evs):
    gone: list = []
    reg.listen(lambda node, ch, ev: ev["Event-Name"] == "CHANNEL_DESTROY" and gone.append(ch))
    for ev in evs:
        reg.apply("fs1", ev)
    assert {ch.uuid for ch in gone} >= {A, B}
    assert all(ch.account_id == "acct1" for ch in gone)  # still tells whose it was
