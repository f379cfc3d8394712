"""Resync and node life: rebuilding a node's channels from FreeSWITCH's own answers, events
during a resync, stale channels while a link is down, and FreeSWITCH restarts.

The FreeSWITCH answers here are the recorded ones of capture 05 (`show channels as json`,
`uuid_dump … json`), served by a small stand-in that speaks for FreeSWITCH; end-to-end
resyncs over real TCP are in test_registry_scenario.py.
"""

from __future__ import annotations

import json

import gevent
import pytest

from eslchan.config import VariableMapping
from eslchan.esl.errors import CommandRejected, CommandTimeout, LinkDown
from eslchan.esl.parser import FrameParser, decode_event
from eslchan.registry import ChannelGone, ChannelRegistry, NodeSync, Resyncer
from eslchan.registry.resync import parse_dump, parse_show_channels

pytestmark = pytest.mark.timeout(30)

U1 = "2dff7fe3-6508-443f-aa41-0ffda2720427"
U1B = "0bfa4df5-5376-4418-baf7-ef57642d9454"
U2 = "e0b2d7b5-58fa-408b-b063-e8714171ffe0"
U2B = "012a8b01-5784-4958-b8d9-d85a1ee9750b"


class Clock:
    def __init__(self, now: float = 1795701700.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class RecordedFreeSwitch:
    """Answers `api show channels as json` and `api uuid_dump <u> json` as FreeSWITCH did in
    capture 05 (and `api uuid_exists <u>`: true for the channels it can dump); `during`
    runs inside a command, as events arriving meanwhile would."""

    def __init__(self, show: str, dumps: dict[str, str], name: str = "fs1"):
        self.name = name
        self.is_up = True
        self.show = show
        self.shows: list[str] = []  # answers for the next `show channels`, before `show`
        self.dumps = dict(dumps)
        self.sent: list[str] = []
        self.during: dict[str, object] = {}  # command text -> callable run before answering
        self.fail: dict[str, Exception] = {}

    def api(self, cmd, timeout=None) -> str:
        self.sent.append(cmd.text)
        hook = self.during.pop(cmd.text, None)
        if hook is not None:
            hook()
        gevent.sleep(0)  # other greenlets (the event dispatcher) run while we wait
        if cmd.text in self.fail:
            raise self.fail.pop(cmd.text)
        if not self.is_up:
            raise LinkDown("down")
        if cmd.text == "api show channels as json":
            return self.shows.pop(0) if self.shows else self.show
        if cmd.text.startswith("api uuid_dump "):
            uuid = cmd.text.split()[2]
            if uuid in self.dumps:
                return self.dumps[uuid]
            raise CommandRejected("-ERR No such channel!", "uuid_dump")
        if cmd.text.startswith("api uuid_exists "):  # the live sessions are the dumpable ones
            return "true" if cmd.text.split()[2] in self.dumps else "false"
        raise AssertionError(f"unexpected command {cmd.text}")


@pytest.fixture(scope="module")
def capture05(captures_dir):
    """(events before FreeSWITCH answered `show channels`, that answer, dumps of each listed
    channel, events after)."""
    before: list[dict] = []
    later: list[dict] = []
    show = None
    dumps: dict[str, str] = {}
    for frame in FrameParser().feed((captures_dir / "05_bridge.c1.recv").read_bytes()):
        if frame.is_event:
            (later if show else before).append(decode_event(frame))
        elif frame.content_type == "api/response":
            body = frame.body
            if body.startswith('{"row_count"') and '"application"' in body:
                show = body
            elif body.startswith('{"Event-Name":"CHANNEL_DATA"'):
                dumps[json.loads(body)["Unique-ID"]] = body
    assert show is not None and U1 in dumps
    # FreeSWITCH's dump of the other legs: their latest state, as a CHANNEL_DATA event
    for row in parse_show_channels(show):
        uuid = row["uuid"]
        if uuid not in dumps:
            state: dict = {}
            for ev in sorted((e for e in before if e.get("Unique-ID") == uuid),
                             key=lambda e: int(e["Event-Sequence"])):
                if "variable_uuid" in ev:  # this one carries all the variables
                    state = {k: v for k, v in state.items() if not k.startswith("variable_")}
                state.update(ev)
            dumps[uuid] = json.dumps(dict(state, **{"Event-Name": "CHANNEL_DATA"}))
    return before, show, dumps, later


def fed(events: list[dict], *, clock: Clock | None = None, **options) -> ChannelRegistry:
    """A registry that has applied ``events`` from node fs1."""
    reg = ChannelRegistry(VariableMapping(), clock=clock or Clock(), **options)
    for ev in events:
        reg.apply("fs1", ev)
    return reg


def fields(ch) -> dict:
    d = ch.detail(0)
    d.pop("elapsed_s")
    return d


def test_resync_of_an_empty_registry_rebuilds_every_channel(capture05):
    before, show, dumps, _ = capture05
    fs = RecordedFreeSwitch(show, dumps)
    reg = ChannelRegistry(VariableMapping(), clock=Clock())
    result = Resyncer(reg, fs).run()
    assert {c.uuid for c in reg.all()} == {U1, U1B, U2, U2B}
    assert result.channels == 4 and result.dumped == 4 and result.removed == []
    assert fs.sent[0] == "api show channels as json"
    assert sorted(fs.sent[1:]) == sorted(f"api uuid_dump {u} json" for u in (U1, U1B, U2, U2B))
    # the same tenancy, caller ids, states as the registry fed with the events
    by_events = fed(before)
    for uuid in (U1, U1B, U2, U2B):
        got, want = fields(reg.get("fs1", uuid)), fields(by_events.get("fs1", uuid))
        for key in ("account_id", "owner_id", "authorizing_id", "authorizing_type", "username",
                    "presence_id", "direction", "destination", "caller_id_name",
                    "caller_id_number", "answered", "state", "timestamp", "custom_channel_vars"):
            assert got.get(key) == want.get(key), (uuid, key)
    assert [c.uuid for c in reg.for_owner("acct1", "user2")] == sorted(
        [U2, U2B], key=lambda u: (reg.get("fs1", u).created, u)
    )
    assert reg.get("fs1", U1).other_leg == U2  # from the dump's bridge_uuid


def test_resync_dumps_only_channels_it_does_not_know(capture05):
    before, show, dumps, _ = capture05
    reg = fed(before)
    fs = RecordedFreeSwitch(show, dumps)
    result = Resyncer(reg, fs).run()
    assert fs.sent == ["api show channels as json"] and result.dumped == 0
    assert len(reg) == 4


def test_channels_freeswitch_no_longer_has_are_removed(capture05):
    before, show, dumps, _ = capture05
    clock = Clock()
    reg = fed(before, clock=clock)
    removed: list[str] = []
    reg.listen(lambda node, ch, ev: ev.get("Eslchan-Removed") and removed.append(ch.uuid))
    waiter = reg.expect("fs1", U2, {"CHANNEL_ANSWER"})
    clock.now += 1  # older than the snapshot's lag window
    fs = RecordedFreeSwitch('{"row_count": 0}\n', {})  # FreeSWITCH restarted meanwhile
    result = Resyncer(reg, fs).run()
    assert len(reg) == 0 and sorted(result.removed) == sorted([U1, U1B, U2, U2B])
    assert sorted(removed) == sorted(result.removed)
    # each confirmed gone by the live session, not taken from the snapshot's word
    assert sorted(fs.sent[1:]) == sorted(f"api uuid_exists {u}" for u in (U1, U1B, U2, U2B))
    with pytest.raises(ChannelGone) as info:
        waiter.wait(1)
    assert info.value.reason == "gone"


def test_no_event_during_a_resync_is_lost(capture05):
    """While the snapshot is taken, events keep coming: a channel destroyed meanwhile stays
    gone, a channel created meanwhile stays, and state from events is not overwritten by
    the (older) snapshot."""
    before, show, dumps, later = capture05
    reg = ChannelRegistry(VariableMapping(), clock=Clock())
    for ev in before:
        if ev.get("Unique-ID") != U2B:  # never saw U2B: it will need a dump
            reg.apply("fs1", ev)
    fs = RecordedFreeSwitch(show, dumps)
    hangup_u1 = [e for e in later if e.get("Unique-ID") == U1 and e["Event-Name"] == "CHANNEL_HANGUP"]
    destroy_u2b = [e for e in later if e.get("Unique-ID") == U2B and e["Event-Name"] in (
        "CHANNEL_HANGUP", "CHANNEL_DESTROY")]
    new_uuid = "99999999-8888-4777-a666-555555555555"
    created = dict(before[-1], **{"Event-Name": "CHANNEL_CREATE", "Unique-ID": new_uuid,
                                  "Channel-State": "CS_INIT", "Event-Sequence": "2000"})

    def meanwhile_show():  # after FreeSWITCH took its snapshot, before we read it
        for ev in hangup_u1 + [created]:
            reg.apply("fs1", ev)

    def meanwhile_dump():  # U2B is destroyed while we ask for its variables
        for ev in destroy_u2b:
            reg.apply("fs1", ev)

    fs.during["api show channels as json"] = meanwhile_show
    fs.during[f"api uuid_dump {U2B} json"] = meanwhile_dump
    Resyncer(reg, fs).run()
    assert {c.uuid for c in reg.all()} == {U1, U1B, U2, new_uuid}
    assert reg.get("fs1", U1).hangup_cause == "NORMAL_CLEARING"  # kept from the event
    assert reg.get("fs1", U2B) is None and reg.is_destroyed("fs1", U2B)


def test_a_dump_refused_or_timed_out(capture05):
    _, show, dumps, _ = capture05
    fs = RecordedFreeSwitch(show, {u: d for u, d in dumps.items() if u != U1B})  # U1B: -ERR
    fs.fail[f"api uuid_dump {U2B} json"] = CommandTimeout("no answer")
    reg = ChannelRegistry(VariableMapping(), clock=Clock())
    result = Resyncer(reg, fs).run()
    assert reg.get("fs1", U1B) is None and result.vanished == 1  # gone by the time we asked
    row_only = reg.get("fs1", U2B)  # listed, without variables: from its row for now
    assert row_only is not None and row_only.account_id is None
    assert (row_only.state, row_only.callstate, row_only.answered) == ("CS_EXECUTE", "ACTIVE", True)
    assert reg.needs_dump("fs1", U2B)  # the next resync asks again


def test_a_leg_known_only_from_its_row_keeps_the_bridge_announced_for_it(capture05):
    """The A leg's CHANNEL_BRIDGE named U2 before U2 was seen; U2's dump then failed, so its
    row creates it: it is still bridged to the A leg."""
    before, show, dumps, _ = capture05
    reg = ChannelRegistry(VariableMapping(), clock=Clock())
    for ev in before:
        if ev.get("Unique-ID") == U1:
            reg.apply("fs1", ev)
    assert reg.get("fs1", U1).other_leg == U2 and reg.get("fs1", U2) is None
    fs = RecordedFreeSwitch(show, dumps)
    fs.fail[f"api uuid_dump {U2} json"] = CommandTimeout("no answer")
    Resyncer(reg, fs).run()
    row_only = reg.get("fs1", U2)
    assert row_only is not None and not row_only.has_variables
    assert row_only.other_leg == U1


def test_a_resync_that_gives_up_sends_no_more_dumps(capture05):
    _, show, dumps, _ = capture05
    fs = RecordedFreeSwitch(show, dumps)
    fs.fail[f"api uuid_dump {U1} json"] = LinkDown("connection lost")
    reg = ChannelRegistry(VariableMapping(), clock=Clock())
    with pytest.raises(LinkDown):
        Resyncer(reg, fs, concurrency=1).run()
    sent = len(fs.sent)
    assert sent < 1 + len(parse_show_channels(show))  # it stopped before dumping every row
    gevent.sleep(0.05)
    assert len(fs.sent) == sent


def test_show_channels_failure_leaves_the_registry_as_it_was(capture05):
    before, show, dumps, _ = capture05
    reg = fed(before)
    fs = RecordedFreeSwitch(show, dumps)
    fs.fail["api show channels as json"] = CommandTimeout("no answer")
    with pytest.raises(CommandTimeout):
        Resyncer(reg, fs).run()
    assert len(reg) == 4


def test_show_channels_rows():
    assert parse_show_channels('{"row_count": 0}\n') == []
    rows = parse_show_channels('{"row_count":1,"rows":[{"uuid":"a","state":"CS_EXECUTE"}]}\n')
    assert rows == [{"uuid": "a", "state": "CS_EXECUTE"}]
    with pytest.raises(ValueError):
        parse_show_channels("-ERR oops\n")


# --- node life --------------------------------------------------------------------------------


def test_down_node_channels_stay_stale_for_the_grace_then_go(capture05):
    before, show, dumps, _ = capture05
    clock = Clock()
    reg = ChannelRegistry(VariableMapping(), clock=clock, stale_grace=30)
    for ev in before:
        reg.apply("fs1", ev)
        reg.apply("fs2", ev)  # another node with (here) the same uuids: no collision
    assert len(reg) == 8
    waiter = reg.expect("fs1", U1, {"CHANNEL_ANSWER"})
    reg.node_down("fs1")
    assert all(c.detail(clock.now)["stale"] for c in reg.for_node("fs1"))
    assert not any(c.stale for c in reg.for_node("fs2"))
    clock.now += 29
    assert reg.expire_stale() == [] and len(reg) == 8
    clock.now += 2
    assert len(reg.expire_stale()) == 4 and len(reg) == 4
    assert {c.node for c in reg.all()} == {"fs2"}
    with pytest.raises(ChannelGone) as info:
        waiter.wait(1)
    assert info.value.reason == "node down"


def test_a_channel_learned_after_the_link_went_down_is_stale_too(capture05):
    """The link drops while a resync's uuid_dump is answered: the channel that dump creates
    is on a down node like the others, so it is marked stale like them."""
    before, show, dumps, _ = capture05
    reg = fed([ev for ev in before if ev.get("Unique-ID") != U2B])
    fs = RecordedFreeSwitch(show, dumps)
    fs.during[f"api uuid_dump {U2B} json"] = lambda: reg.node_down("fs1")
    Resyncer(reg, fs).run()
    assert reg.get("fs1", U2B) is not None
    assert all(c.detail(0)["stale"] for c in reg.for_node("fs1"))


def test_reconnect_within_the_grace_settles_the_stale_channels(capture05):
    before, show, dumps, later = capture05
    clock = Clock()
    reg = fed(before, clock=clock, stale_grace=30)
    reg.node_down("fs1")
    clock.now += 10
    # meanwhile (events lost) U2B went away; FreeSWITCH lists the other three
    rows = [r for r in json.loads(show)["rows"] if r["uuid"] != U2B]
    alive = {u: d for u, d in dumps.items() if u != U2B}
    fs = RecordedFreeSwitch(json.dumps({"row_count": len(rows), "rows": rows}), alive)
    reg.node_up("fs1")
    assert all(c.stale for c in reg.all())  # until the resync has settled them
    Resyncer(reg, fs, confirm_after=reg.confirm_point("fs1")).run()
    assert {c.uuid for c in reg.all()} == {U1, U1B, U2}
    assert not any(c.stale for c in reg.all())
    clock.now += 60
    assert reg.expire_stale() == []


def test_freeswitch_restart_restarts_event_sequence(capture05):
    """A restarted FreeSWITCH has a new Core-UUID and counts Event-Sequence from 1 again:
    its events are newer than any of the old process, whatever their numbers."""
    before, *_ = capture05
    reg = fed(before)
    ch = reg.get("fs1", U1)
    assert ch.state == "CS_EXECUTE"
    new_core = "f83c6190-0000-4000-8000-000000000000"
    restarted = dict(before[-1], **{"Core-UUID": new_core, "Event-Sequence": "3",
                                    "Event-Name": "CHANNEL_STATE", "Unique-ID": U1,
                                    "Channel-State": "CS_HANGUP"})
    reg.apply("fs1", restarted)
    assert ch.state == "CS_HANGUP"
    old = dict(before[-1], **{"Event-Sequence": "99999", "Event-Name": "CHANNEL_STATE",
                              "Unique-ID": U1, "Channel-State": "CS_ROUTING"})
    reg.apply("fs1", old)  # a straggler of the dead process
    assert ch.state == "CS_HANGUP"
    fresh = dict(restarted, **{"Unique-ID": "12345678-1234-4234-8234-123456789012",
                               "Event-Name": "CHANNEL_CREATE", "Event-Sequence": "4"})
    reg.apply("fs1", fresh)
    assert reg.get("fs1", fresh["Unique-ID"]) is not None
    assert reg.stats["restarts"] == 1


def test_tombstones_expire():
    clock = Clock()
    reg = ChannelRegistry(VariableMapping(), clock=clock, tombstone_ttl=60)
    ev = {"Event-Name": "CHANNEL_DESTROY", "Unique-ID": "u1", "Channel-State": "CS_REPORTING",
          "Core-UUID": "c", "Event-Sequence": "10"}
    reg.apply("fs1", ev)
    assert reg.is_destroyed("fs1", "u1")
    late = dict(ev, **{"Event-Name": "CHANNEL_STATE", "Event-Sequence": "9"})
    reg.apply("fs1", late)
    assert len(reg) == 0
    clock.now += 61
    assert not reg.is_destroyed("fs1", "u1")


# --- NodeSync: the glue the daemon uses ------------------------------------------------------


def test_node_sync_resyncs_on_up_marks_stale_on_down_and_retries(capture05):
    before, show, dumps, _ = capture05
    reg = ChannelRegistry(VariableMapping())
    fs = RecordedFreeSwitch(show, dumps)
    sync = NodeSync(reg, grace_seconds=30, links={"fs1": fs}, retry_initial=0.01)
    for ev in before[:10]:
        sync.on_event("fs1", ev)
    fs.fail["api show channels as json"] = CommandTimeout("busy")  # first try fails
    sync.on_up("fs1")
    assert sync.wait_synced("fs1", timeout=5)
    assert len(reg) == 4 and sync.results["fs1"].dumped >= 1
    assert fs.sent.count("api show channels as json") == 2

    fs.is_up = False
    sync.on_down("fs1")
    assert not sync.is_synced("fs1")
    assert all(c.stale for c in reg.all()) and len(reg) == 4
    sync.resync(fs)  # link says up again, but the node drops at once: LinkDown ends it
    gevent.sleep(0.05)
    assert not sync.is_synced("fs1") and all(c.stale for c in reg.all())

    fs.is_up = True
    sync.on_up("fs1")
    assert sync.wait_synced("fs1", timeout=5)
    assert not any(c.stale for c in reg.all())
    sync.stop()


def test_node_sync_expires_a_dead_node_after_the_grace(capture05):
    before, show, dumps, _ = capture05
    reg = ChannelRegistry(VariableMapping())
    sync = NodeSync(reg, grace_seconds=0.05)
    for ev in before:
        sync.on_event("fs1", ev)
    sync.on_down("fs1")
    assert len(reg) == 4
    gevent.sleep(0.2)  # the grace timer fires by itself
    assert len(reg) == 0
    sync.stop()


# --- snapshots lag the events (SPEC §8): no snapshot is trusted on its own -------------------

EMPTY = '{"row_count": 0}\n'


def listing(show: str, *, without: tuple[str, ...] = ()) -> str:
    rows = [r for r in json.loads(show)["rows"] if r["uuid"] not in without]
    return json.dumps({"row_count": len(rows), "rows": rows}) if rows else EMPTY


def only(dumps: dict[str, str], *, without: tuple[str, ...]) -> dict[str, str]:
    return {u: d for u, d in dumps.items() if u not in without}


def test_a_lagging_row_of_a_channel_whose_destroy_was_lost_is_not_trusted(capture05):
    """The link was cut while U2B ended: its CHANNEL_DESTROY never came, and FreeSWITCH's
    lagging snapshot still lists it. The resync asks the live session, which no longer has
    it: it goes. The others are confirmed (dumped) and stay."""
    before, show, dumps, _ = capture05
    clock = Clock()
    reg = fed(before, clock=clock)
    clock.now += 5
    fs = RecordedFreeSwitch(show, only(dumps, without=(U2B,)))
    result = Resyncer(reg, fs, confirm_after=reg.confirm_point("fs1")).run()
    assert {c.uuid for c in reg.all()} == {U1, U1B, U2}
    assert result.removed == [U2B] and result.vanished == 1
    assert sorted(fs.sent[1:]) == sorted(f"api uuid_dump {u} json" for u in (U1, U1B, U2, U2B))
    assert reg.repairs["fs1"] == {"added": 0, "removed": 1}
    assert not reg.is_destroyed("fs1", U2B)  # no tombstone: no CHANNEL_DESTROY was seen


def test_without_a_link_fault_a_check_trusts_events_for_listed_channels(capture05):
    before, show, dumps, _ = capture05
    reg = fed(before)
    fs = RecordedFreeSwitch(show, only(dumps, without=(U2B,)))
    Resyncer(reg, fs).run()
    assert fs.sent == ["api show channels as json"] and len(reg) == 4


def test_a_row_whose_dump_answers_no_such_channel_is_not_added(capture05):
    _, show, dumps, _ = capture05
    reg = ChannelRegistry(VariableMapping(), clock=Clock())
    result = Resyncer(reg, RecordedFreeSwitch(show, only(dumps, without=(U2B,)))).run()
    assert {c.uuid for c in reg.all()} == {U1, U1B, U2}
    assert result.vanished == 1 and sorted(result.added) == sorted([U1, U1B, U2])


def test_a_destroyed_channels_lagging_row_is_neither_dumped_nor_added(capture05):
    before, show, dumps, later = capture05
    reg = fed(before)
    for ev in later:
        if ev.get("Unique-ID") == U2B:
            reg.apply("fs1", ev)
    assert reg.get("fs1", U2B) is None and reg.is_destroyed("fs1", U2B)
    fs = RecordedFreeSwitch(show, dumps)  # the table still lists it some 200 ms on
    Resyncer(reg, fs, confirm_after=reg.confirm_point("fs1")).run()
    assert reg.get("fs1", U2B) is None
    assert f"api uuid_dump {U2B} json" not in fs.sent


def test_a_channel_too_new_for_the_snapshot_stays_until_freeswitch_says_it_is_gone(capture05):
    before, show, dumps, _ = capture05
    clock = Clock()
    reg = fed([e for e in before if e.get("Unique-ID") in (U1, U1B)], clock=clock)
    fs = RecordedFreeSwitch(EMPTY, dumps)  # the table has not caught up with the new call
    result = Resyncer(reg, fs).run()
    assert {c.uuid for c in reg.all()} == {U1, U1B} and result.deferred == 2
    assert fs.sent == ["api show channels as json"]  # too new to judge: nothing asked
    clock.now += 1  # past the lag window, still unlisted: asked, and alive
    result = Resyncer(reg, fs).run()
    assert {c.uuid for c in reg.all()} == {U1, U1B} and result.removed == []
    assert sorted(fs.sent[2:]) == [f"api uuid_exists {u}" for u in sorted((U1, U1B))]
    fs.dumps = {}  # now really gone (their CHANNEL_DESTROY lost)
    result = Resyncer(reg, fs).run()
    assert len(reg) == 0 and sorted(result.removed) == sorted([U1, U1B])


def test_an_unlisted_channel_an_event_shows_meanwhile_is_kept(capture05):
    before, show, dumps, _ = capture05
    clock = Clock()
    reg = fed(before, clock=clock)
    clock.now += 1
    fs = RecordedFreeSwitch(EMPTY, {})
    last = max((e for e in before if e.get("Unique-ID") == U1), key=lambda e: int(e["Event-Sequence"]))
    fs.during["api show channels as json"] = lambda: reg.apply(
        "fs1", dict(last, **{"Event-Sequence": "5000", "Event-Name": "CHANNEL_STATE"}))
    result = Resyncer(reg, fs).run()
    assert {c.uuid for c in reg.all()} == {U1} and U1 not in result.removed
    assert f"api uuid_exists {U1}" not in fs.sent


def test_a_channel_removed_as_gone_keeps_its_stray_events_out_but_not_its_dump(capture05):
    before, show, dumps, _ = capture05
    clock = Clock()
    reg = fed(before, clock=clock)
    clock.now += 1
    Resyncer(reg, RecordedFreeSwitch(listing(show, without=(U1,)), only(dumps, without=(U1,)))).run()
    assert reg.get("fs1", U1) is None
    stray = max((e for e in before if e.get("Unique-ID") == U1), key=lambda e: int(e["Event-Sequence"]))
    reg.apply("fs1", stray)
    assert reg.get("fs1", U1) is None and reg.stats["ignored_removed"] == 1
    reg.apply_dump("fs1", parse_dump(dumps[U1]))  # FreeSWITCH says it is there after all
    assert reg.get("fs1", U1) is not None
    reg.apply("fs1", stray)  # and from then on its events count again
    assert reg.stats["ignored_removed"] == 1


def test_a_call_expired_during_a_long_outage_comes_back_with_the_link(capture05):
    """FreeSWITCH keeps its calls through an outage longer than the grace: the registry
    drops them at the grace, and the resync after the outage lists them again, with
    their events applying as before (no tombstone from the expiry)."""
    before, show, dumps, _ = capture05
    clock = Clock()
    reg = fed(before, clock=clock, stale_grace=30)
    waiter = reg.expect("fs1", U1, {"CHANNEL_ANSWER"})
    reg.node_down("fs1")
    clock.now += 31
    assert len(reg.expire_stale()) == 4 and len(reg) == 0
    with pytest.raises(ChannelGone) as info:
        waiter.wait(1)
    assert info.value.reason == "node down"
    assert not any(reg.is_destroyed("fs1", u) for u in (U1, U1B, U2, U2B))
    reg.node_up("fs1")
    fs = RecordedFreeSwitch(show, dumps)
    result = Resyncer(reg, fs, confirm_after=reg.confirm_point("fs1")).run()
    assert {c.uuid for c in reg.all()} == {U1, U1B, U2, U2B} and sorted(result.added) == sorted(
        [U1, U1B, U2, U2B])
    assert reg.get("fs1", U1).account_id == "acct1" and not reg.get("fs1", U1).stale
    assert reg.expect("fs1", U1, {"CHANNEL_HANGUP"})  # actions can wait on it again


def test_node_sync_confirms_what_it_knew_before_the_link_came_back(capture05):
    """Channels an event shows after the link came back need no dump; the others do."""
    before, show, dumps, _ = capture05
    reg = fed(before)
    fs = RecordedFreeSwitch(show, dumps)
    sync = NodeSync(reg, links={"fs1": fs}, snapshot_lag=0.05)
    try:
        sync.on_up("fs1")  # in event order: before any event of the new connection
        last = max((e for e in before if e.get("Unique-ID") == U1), key=lambda e: int(e["Event-Sequence"]))
        reg.apply("fs1", dict(last, **{"Event-Sequence": "5000", "Event-Name": "CHANNEL_STATE"}))
        assert sync.wait_synced("fs1", timeout=5)
        dumped = {t.split()[2] for t in fs.sent if t.startswith("api uuid_dump")}
        assert dumped == {U1B, U2, U2B}
    finally:
        sync.stop()


def test_node_sync_follows_a_resync_with_a_check_once_the_lag_has_passed(capture05):
    """Calls created while the link was cut that the resync's snapshot was too early to
    list appear with the check that follows it, and count as repairs."""
    _, show, dumps, _ = capture05
    reg = ChannelRegistry(VariableMapping())
    fs = RecordedFreeSwitch(show, dumps)
    fs.shows = [listing(show, without=(U2, U2B))]  # U2's call is newer than the table
    sync = NodeSync(reg, links={"fs1": fs}, snapshot_lag=0.05)
    try:
        sync.on_up("fs1")
        assert sync.wait_synced("fs1", timeout=5)
        assert {c.uuid for c in reg.all()} == {U1, U1B}
        assert reg.repairs["fs1"] == {"added": 0, "removed": 0}  # first sync: learning
        deadline = gevent.get_hub().loop.now() + 5
        while len(reg) < 4 and gevent.get_hub().loop.now() < deadline:
            gevent.sleep(0.01)
        assert {c.uuid for c in reg.all()} == {U1, U1B, U2, U2B}
        assert reg.repairs["fs1"] == {"added": 2, "removed": 0} and reg.checks["fs1"] == 2
    finally:
        sync.stop()


def test_node_sync_checks_periodically_and_repairs_drift_without_a_link_fault(capture05):
    """Events lost without the link noticing (FreeSWITCH dropping them for a slow
    listener): the periodic check finds and repairs the difference both ways."""
    before, show, dumps, _ = capture05
    clock = Clock()
    reg = fed([e for e in before if e.get("Unique-ID") in (U1, U1B)], clock=clock)
    fs = RecordedFreeSwitch(listing(show, without=(U2, U2B)), only(dumps, without=(U2, U2B)))
    sync = NodeSync(reg, links={"fs1": fs}, check_interval=0.05)
    try:
        sync.on_up("fs1")
        assert sync.wait_synced("fs1", timeout=5) and {c.uuid for c in reg.all()} == {U1, U1B}
        deadline = gevent.get_hub().loop.now() + 5
        while reg.checks.get("fs1", 0) < 2 and gevent.get_hub().loop.now() < deadline:
            gevent.sleep(0.01)  # the check that follows the resync is done: no other comes
        assert reg.checks["fs1"] == 2
        clock.now += 1
        # then, with the link up all along, FreeSWITCH has U2's call (its events were
        # lost) and no longer U1's (so was its hangup)
        fs.show, fs.dumps = listing(show, without=(U1, U1B)), only(dumps, without=(U1, U1B))
        sync.start()
        deadline = gevent.get_hub().loop.now() + 5
        while {c.uuid for c in reg.all()} != {U2, U2B} and gevent.get_hub().loop.now() < deadline:
            gevent.sleep(0.01)
        assert {c.uuid for c in reg.all()} == {U2, U2B}
        assert reg.repairs["fs1"] == {"added": 2, "removed": 2}
    finally:
        sync.stop()


def test_new_channels_of_a_restarted_freeswitch_are_not_waited_for(capture05):
    """A snapshot may predate a new channel, so one learned within the lag window is not
    judged by it: unless FreeSWITCH has restarted since it was last heard of (a restart ends
    every call). It is still asked about before it goes."""
    before, show, dumps, _ = capture05
    reg = fed(before)  # learned just now
    restarted = dict(before[-1], **{"Core-UUID": "f83c6190-0000-4000-8000-000000000000",
                                    "Event-Sequence": "3", "Event-Name": "CHANNEL_CREATE",
                                    "Unique-ID": "12345678-1234-4234-8234-123456789012"})
    reg.apply("fs1", restarted)  # the new process's first call
    fs = RecordedFreeSwitch(EMPTY, {})
    result = Resyncer(reg, fs).run()
    assert sorted(result.removed) == sorted([U1, U1B, U2, U2B])
    assert result.deferred == 1  # the new process's call, too new for the snapshot
    assert {c.uuid for c in reg.all()} == {restarted["Unique-ID"]}
