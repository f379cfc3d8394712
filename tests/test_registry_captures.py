"""The registry fed with real FreeSWITCH event streams (the recorded captures): at each step
it holds the channels, and the field values, that FreeSWITCH itself showed."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from eslchan.config import VariableMapping
from eslchan.esl.parser import FrameParser, decode_event
from eslchan.registry import GREGORIAN_OFFSET, ChannelRegistry

pytestmark = pytest.mark.timeout(60)

NOW = 1795701700.0  # a clock in the captures' November 2026


def frames(captures_dir: Path, name: str):
    return FrameParser().feed((captures_dir / f"{name}.recv").read_bytes())


def events(captures_dir: Path, name: str) -> list[dict]:
    return [decode_event(f) for f in frames(captures_dir, name) if f.is_event]


def registry(mapping: VariableMapping | None = None) -> ChannelRegistry:
    return ChannelRegistry(mapping or VariableMapping(), clock=lambda: NOW)


def feed(reg: ChannelRegistry, evs, until_seq: str | None = None, node: str = "fs1") -> None:
    """Apply events in arrival order, up to and including the one with that Event-Sequence."""
    for ev in evs:
        reg.apply(node, ev)
        if until_seq is not None and ev.get("Event-Sequence") == until_seq:
            return
    assert until_seq is None, f"no event with sequence {until_seq}"


def uuids(reg: ChannelRegistry) -> set[str]:
    return {ch.uuid for ch in reg.all()}


# --- 03: a loopback call, step by step ------------------------------------------------------

A03 = "02a03728-204e-4eaa-b3e4-064f8bedf139"  # origination_uuid of the A leg
TMP03 = "c4fcda8a-0992-4b90-8915-39a311e2770c"  # its temporary uuid before CHANNEL_UUID
B03 = "a8fa18d1-b4cd-4f21-b2dd-deee4929a688"


def test_plain_call_step_by_step(captures_dir):
    evs = iter(events(captures_dir, "03_events_plain.c1"))  # each feed() goes on from there
    reg = registry()

    feed(reg, evs, "654")  # CODEC under the temporary uuid: the channel exists already
    assert uuids(reg) == {TMP03}

    feed(reg, evs, "656")  # CHANNEL_UUID renames it
    assert uuids(reg) == {A03}
    a = reg.get("fs1", A03)
    assert a.name == "loopback/esl_park-a" and a.direction == "outbound"

    feed(reg, evs, "661")  # CHANNEL_CREATE of A
    d = a.detail(NOW)
    assert d["uuid"] == d["call_id"] == A03
    assert d["state"] == "CS_INIT" and d["callstate"] == "DOWN" and d["answered"] is False
    assert d["destination"] == "esl_park" and d["node"] == "fs1"
    assert d["timestamp"] == int(a.created) + GREGORIAN_OFFSET == 63962920858
    assert d["elapsed_s"] == int(NOW - a.created)

    feed(reg, evs, "674")  # B parks unanswered
    b = reg.get("fs1", B03)
    assert uuids(reg) == {A03, B03}
    assert (b.direction, b.callstate, b.answered, b.application) == (
        "inbound",
        "RINGING",
        False,
        "park",
    )
    assert (b.caller_id_name, b.caller_id_number) == ("Alice", "1001")

    feed(reg, evs, "678")  # uuid_answer B: both legs answered
    assert a.answered and b.answered

    feed(reg, evs, "684")  # A runs the originate's &park
    assert a.application == "park" and a.destination == "esl_park"

    feed(reg, evs, "699")  # uuid_transfer A to esl_tone: answer, playback, then park again
    assert a.application == "park" and a.destination == "esl_tone"

    feed(reg, evs, "716")  # uuid_hold: CHANNEL_HOLD, callstate stays ACTIVE on loopback
    assert a.is_onhold is True and a.callstate == "ACTIVE"
    assert b.is_onhold is False

    feed(reg, evs, "719")  # uuid_kill: cause recorded, still listed and controllable
    assert a.hangup_cause == "NORMAL_CLEARING" and uuids(reg) == {A03, B03}

    feed(reg, evs, "732")  # both hung up completely, still there until destroyed
    assert uuids(reg) == {A03, B03}
    assert b.state == "CS_REPORTING" and b.callstate == "HANGUP"

    feed(reg, evs, "733")  # CHANNEL_DESTROY B
    assert uuids(reg) == {A03}
    feed(reg, evs, "734")  # B's CHANNEL_STATE CS_DESTROY comes after: no resurrection
    assert uuids(reg) == {A03}

    feed(reg, evs)
    assert len(reg) == 0 and reg.all() == []


def test_first_event_seen_mid_call_creates_the_channel(captures_dir):
    """myevents (06) sees the call only from a playback on: nothing before is lost."""
    evs = events(captures_dir, "06_sendmsg_myevents_filter.c2-myevents")
    reg = registry()
    feed(reg, evs, "1046")
    ch = reg.get("fs1", "83f9e4b6-7b6b-44be-be2f-392b0f3db911")
    assert ch is not None
    assert (ch.name, ch.state, ch.callstate, ch.answered, ch.application) == (
        "loopback/esl_answer-a",
        "CS_EXECUTE",
        "ACTIVE",
        True,
        "playback",
    )
    feed(reg, evs)
    # hung up; this subscription never gets CHANNEL_DESTROY, so it is still listed
    assert ch.hangup_cause == "NORMAL_CLEARING" and len(reg) == 1


def test_shutdown_leaves_no_channel(captures_dir):
    evs = events(captures_dir, "07_shutdown.c1-observer")
    reg = registry()
    seen = set()
    for ev in evs:
        reg.apply("fs1", ev)
        seen |= uuids(reg)
        if ev.get("Event-Name") == "SHUTDOWN":
            assert uuids(reg) == {
                "6212e6ae-0584-45c4-b33b-e74c0031156c",
                "477225b4-dce7-4075-9f59-18969afd76dc",
            }
    assert len(reg) == 0
    assert "ad4225fd-f459-4f81-9c67-3a35e3190836" in seen  # the temporary uuid, renamed away


# --- 05: bridged loopback pairs with tenancy variables ----------------------------------------

U1 = "2dff7fe3-6508-443f-aa41-0ffda2720427"  # A, bridged to U2
U1B = "0bfa4df5-5376-4418-baf7-ef57642d9454"  # loopback -b leg of U1
U2 = "e0b2d7b5-58fa-408b-b063-e8714171ffe0"  # the bridged leg
U2B = "012a8b01-5784-4958-b8d9-d85a1ee9750b"  # loopback -b leg of U2
# U1's custom channel vars, the same whichever mapping names its tenancy fields
U1_CUSTOM_VARS = {
    "account_id": "acct1",
    "owner_id": "user1",
    "authorizing_id": "dev1",
    "authorizing_type": "device",
    "user_name": "Alice1001",
    "presence_id": "1001@127.0.0.1",
}


def test_bridge_with_owner_and_authorizing_ids(captures_dir):
    evs = events(captures_dir, "05_bridge.c1")
    reg = registry()
    feed(reg, evs, "968")  # all four legs up, bridge not yet announced
    assert uuids(reg) == {U1, U1B, U2, U2B}
    assert reg.get("fs1", U1).other_leg is None and reg.get("fs1", U2).other_leg is None

    feed(reg, evs, "969")  # CHANNEL_BRIDGE reaches only A; both legs know each other
    a, b = reg.get("fs1", U1), reg.get("fs1", U2)
    assert a.other_leg == U2 and b.other_leg == U1
    la, lb = a.listing(NOW), b.listing(NOW)
    assert la == {
        "uuid": U1,
        "answered": True,
        "direction": "outbound",
        "destination": "esl_answer",
        "username": "alice1001",  # user_name Alice1001, lowercased
        "presence_id": "1001@127.0.0.1",
        "other_leg": U2,
        "owner_id": "user1",
        "authorizing_id": "dev1",
        "authorizing_type": "device",
        "timestamp": 1795701694 + GREGORIAN_OFFSET,
        "caller_id_name": "Outbound Call",
        "caller_id_number": "default",
        "callee_id_name": "Outbound Call",
        "callee_id_number": "default",
        "is_onhold": False,
        "answer_state": "answered",
        "node": "fs1",
        "elapsed_s": 5,
    }
    assert "account_id" not in la  # used for access control, never listed
    assert (lb["owner_id"], lb["authorizing_id"], lb["other_leg"]) == ("user2", "dev2", U1)
    assert a.account_id == b.account_id == "acct1"
    detail = a.detail(NOW)
    assert detail["other_leg_call_id"] == U2 and detail["application"] == "bridge"
    assert detail["custom_channel_vars"] == U1_CUSTOM_VARS
    assert detail["stale"] is False

    # indexes: per account, per owner (user), per device (authorizing id)
    assert {c.uuid for c in reg.for_account("acct1")} == {U1, U1B, U2, U2B}
    assert {c.uuid for c in reg.for_owner("acct1", "user1")} == {U1, U1B}  # -b inherits {} vars
    assert {c.uuid for c in reg.for_device("acct1", "dev2")} == {U2, U2B}
    assert reg.for_owner("acct2", "user1") == [] and reg.for_account("acct2") == []
    assert {c.uuid for c in reg.for_node("fs1")} == {U1, U1B, U2, U2B}
    assert reg.for_node("fs2") == []

    feed(reg, evs, "977")  # uuid_kill A: hung up, still bridged, still listed
    assert a.hangup_cause == "NORMAL_CLEARING" and a.other_leg == U2 and len(reg) == 4

    feed(reg, evs, "1000")  # CHANNEL_UNBRIDGE (after U2B was destroyed): both cleared
    assert a.other_leg is None and b.other_leg is None
    assert uuids(reg) == {U1, U1B, U2}

    feed(reg, evs)
    assert len(reg) == 0 and reg.for_account("acct1") == []


def test_registry_matches_freeswitch_show_channels(captures_dir):
    """Whenever FreeSWITCH answered `show channels as json`, the registry (fed the events
    that arrived before the answer) listed exactly the same channels."""
    checked = 0
    for name in ("02_api_bgapi.c1", "05_bridge.c1"):
        reg = registry()
        for frame in frames(captures_dir, name):
            if frame.is_event:
                reg.apply("fs1", decode_event(frame))
            elif frame.content_type == "api/response" and frame.body.startswith("{\"row_count\""):
                rows = json.loads(frame.body).get("rows", [])
                if rows and "b_uuid" in rows[0]:
                    continue  # `show calls`, not channels
                if name.startswith("02") and not uuids(reg) and rows:
                    continue  # 02 subscribes to events only at its end
                assert {r["uuid"] for r in rows} == uuids(reg)
                checked += 1
    assert checked >= 2


def test_kazoo_preset_and_custom_mapping(captures_dir):
    """The mapping decides which variables are tenancy fields: here the plain account_id…
    that 05 also sets, and in 03 the account_id set later with uuid_setvar."""
    evs = events(captures_dir, "05_bridge.c1")
    mapping = VariableMapping(
        account="account_id",
        owner="owner_id",
        authorizing_id="authorizing_id",
        authorizing_type="authorizing_type",
        custom_prefix="",
    )
    reg = registry(mapping)
    feed(reg, evs, "970")
    a = reg.get("fs1", U1)
    assert (a.account_id, a.owner_id, a.authorizing_id) == ("acct1", "user1", "dev1")
    assert a.detail(NOW)["custom_channel_vars"] == U1_CUSTOM_VARS

    kazoo = registry(VariableMapping.preset("kazoo"))
    feed(kazoo, evs, "970")
    a = kazoo.get("fs1", U1)
    assert a.account_id is None and a.owner_id is None  # no ecallmgr_* variables in 05
    assert kazoo.for_account("acct1") == []
    fake = dict(evs[0])
    fake.update(
        {
            "Event-Name": "CHANNEL_CREATE",
            "Unique-ID": "11111111-2222-3333-4444-555555555555",
            "Channel-State": "CS_INIT",
            "Event-Sequence": "5000",
            "variable_ecallmgr_Account-ID": "4a2b0000000000000000000000000000",
            "variable_ecallmgr_Owner-ID": "owner1",
            "variable_ecallmgr_Authorizing-ID": "device1",
            "variable_ecallmgr_Authorizing-Type": "device",
            "variable_ecallmgr_Realm": "example.com",
        }
    )
    kazoo.apply("fs1", fake)
    ch = kazoo.get("fs1", "11111111-2222-3333-4444-555555555555")
    assert (ch.account_id, ch.owner_id, ch.authorizing_id, ch.authorizing_type) == (
        "4a2b0000000000000000000000000000",
        "owner1",
        "device1",
        "device",
    )
    assert ch.detail(NOW)["custom_channel_vars"] == {
        "Account-ID": "4a2b0000000000000000000000000000",
        "Owner-ID": "owner1",
        "Authorizing-ID": "device1",
        "Authorizing-Type": "device",
        "Realm": "example.com",
    }
    assert [c.uuid for c in kazoo.for_device("4a2b0000000000000000000000000000", "device1")] == [
        ch.uuid
    ]


def test_account_set_later_moves_the_channel_into_the_account(captures_dir):
    """03 runs `uuid_setvar <A> account_id acct1`: no event, but the next events carry it."""
    evs = events(captures_dir, "03_events_plain.c1")
    reg = registry(VariableMapping(account="account_id"))
    feed(reg, evs, "712")
    assert reg.get("fs1", A03).account_id is None and reg.for_account("acct1") == []
    feed(reg, evs, "716")  # CHANNEL_HOLD carries the variables, account_id among them
    assert [c.uuid for c in reg.for_account("acct1")] == [A03]


# --- plain, json and xml agree -----------------------------------------------------------------


def _before_first_hangup(captures_dir, name: str) -> dict:
    """Every channel's detail right before the first CHANNEL_HANGUP, keyed by channel name
    (uuids differ between the recordings), without the uuids and times."""
    reg = registry(VariableMapping(custom_prefix="esl_"))
    for ev in events(captures_dir, name):
        if ev.get("Event-Name") == "CHANNEL_HANGUP":
            break
        reg.apply("fs1", ev)
    out = {}
    for ch in reg.all():
        d = ch.detail(NOW)
        for key in ("uuid", "call_id", "other_leg", "other_leg_call_id", "timestamp", "elapsed_s"):
            d.pop(key)
        out[d["name"]] = d
    return out


def test_plain_json_and_xml_events_give_the_same_channels(captures_dir):
    plain = _before_first_hangup(captures_dir, "03_events_plain.c1")
    as_json = _before_first_hangup(captures_dir, "04a_events_json.c1")
    as_xml = _before_first_hangup(captures_dir, "04b_events_xml.c1")
    assert set(plain) == {"loopback/esl_park-a", "loopback/esl_park-b"}
    assert plain == as_json
    a = plain["loopback/esl_park-a"]
    assert a["custom_channel_vars"] == {
        "note": "hello world/a=b&c",
        "unicode": "Zoë 東京",
        "multiline": "line1\nFake-Header: injected\n\nEvent-Name: FORGED",
    }
    assert a["is_onhold"] is True
    # 04b has no uuid_hold; otherwise the same
    assert as_xml["loopback/esl_park-a"]["is_onhold"] is False
    as_xml["loopback/esl_park-a"]["is_onhold"] = True
    assert plain == as_xml


def test_json_keeps_percent_sequences_exactly(captures_dir):
    reg = registry(VariableMapping(custom_prefix="esl_"))
    feed(reg, events(captures_dir, "12_urlencoding.c2-json"), "584")
    ch = reg.get("fs1", "f0ddabd6-c96b-4b94-9c87-fc0898c206c2")
    assert ch.custom["pct"] == (
        "100% off %41%42 %zz a+b=c?d#e \"q\" 'x' <t> [y] {z} |p| ~t^` back\\slash tab\tend café"
    )


# --- arrival order ------------------------------------------------------------------------------


def _state(reg: ChannelRegistry) -> dict:
    return {ch.uuid: ch.detail(NOW) for ch in reg.all()}


@pytest.mark.parametrize("name", ["03_events_plain.c1", "04a_events_json.c1", "05_bridge.c1"])
def test_any_arrival_order_gives_the_same_registry(captures_dir, name):
    """Events shuffled at random (FreeSWITCH reorders them, a little) end in the state the
    Event-Sequence order gives: an older event never overwrites newer state; and the whole
    stream in any order leaves nothing behind (a destroy always wins)."""
    evs = [e for e in events(captures_dir, name) if "Unique-ID" in e]
    first_destroy = min(
        i for i, e in enumerate(evs) if e["Event-Name"] == "CHANNEL_DESTROY"
    )
    # up to the first hangup nothing is destroyed: compare full details
    prefix = evs[: min(i for i, e in enumerate(evs) if e["Event-Name"] == "CHANNEL_HANGUP")]
    ordered = registry()
    feed(ordered, sorted(prefix, key=lambda e: int(e["Event-Sequence"])))
    expected = _state(ordered)
    assert expected
    rng = random.Random(4)
    for _ in range(25):
        shuffled = prefix[:]
        rng.shuffle(shuffled)
        reg = registry()
        feed(reg, shuffled)
        assert _state(reg) == expected
    for _ in range(25):
        shuffled = evs[:]
        rng.shuffle(shuffled)
        reg = registry()
        feed(reg, shuffled)
        assert len(reg) == 0, _state(reg)
    assert first_destroy > 0


def test_late_events_after_destroy_do_not_resurrect(captures_dir):
    evs = events(captures_dir, "05_bridge.c1")
    reg = registry()
    feed(reg, evs)
    assert len(reg) == 0
    # replay every event of U2 again, late: all ignored
    for ev in evs:
        if ev.get("Unique-ID") == U2:
            reg.apply("fs1", ev)
    assert len(reg) == 0
    assert reg.is_destroyed("fs1", U2)
    assert reg.stats["ignored_destroyed"] > 0


def test_memory_per_channel_is_small(captures_dir):
    """1,000 channels whose events carry ~100 variables keep < 2 KB each."""
    import gc
    import tracemalloc

    template = next(
        e
        for e in events(captures_dir, "05_bridge.c1")
        if e["Event-Name"] == "CHANNEL_HANGUP_COMPLETE" and e["Unique-ID"] == U1
    )
    assert sum(k.startswith("variable_") for k in template) >= 60
    reg = registry()
    n = 1000

    def one(i: int) -> dict:  # fresh strings, as the parser decodes them for every event
        ev = {k: "".join(v) for k, v in template.items()}
        ev["Unique-ID"] = f"{i:08x}-0000-4000-8000-000000000000"
        ev["Event-Name"] = "CHANNEL_CREATE"
        ev["variable_eslchan_owner_id"] = f"user{i % 50}"
        return ev

    reg.apply("fs1", one(n))  # first-time allocations (interned names, index dicts)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for i in range(n):
        reg.apply("fs1", one(i))  # each event is freed once applied
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    used = sum(s.size_diff for s in after.compare_to(before, "filename"))
    n += 1
    assert len(reg) == n
    assert used / n < 2048, f"{used / n:.0f} bytes per channel"


def test_bridge_announced_before_the_other_leg_is_seen(captures_dir):
    """CHANNEL_BRIDGE can arrive before any event of the B leg: B still gets its other_leg
    when it shows up, and an UNBRIDGE seen first is not undone by an older BRIDGE."""
    evs = events(captures_dir, "05_bridge.c1")
    bridge = next(e for e in evs if e["Event-Name"] == "CHANNEL_BRIDGE")
    unbridge = next(e for e in evs if e["Event-Name"] == "CHANNEL_UNBRIDGE")
    b_first = next(e for e in evs if e.get("Unique-ID") == U2 and e["Event-Name"] == "CHANNEL_CREATE")

    reg = registry()
    reg.apply("fs1", bridge)
    assert reg.get("fs1", U1).other_leg == U2 and reg.get("fs1", U2) is None
    reg.apply("fs1", b_first)
    assert reg.get("fs1", U2).other_leg == U1

    reg = registry()
    reg.apply("fs1", unbridge)
    reg.apply("fs1", bridge)  # older: ignored
    reg.apply("fs1", b_first)
    assert reg.get("fs1", U1).other_leg is None and reg.get("fs1", U2).other_leg is None


def test_create_under_the_final_uuid_before_the_rename(captures_dir):
    """CHANNEL_UUID arriving after events of the final uuid merges the temporary channel."""
    evs = events(captures_dir, "03_events_plain.c1")
    codec = [e for e in evs if e.get("Unique-ID") == TMP03]
    rename = next(e for e in evs if e["Event-Name"] == "CHANNEL_UUID")
    create = next(e for e in evs if e["Event-Name"] == "CHANNEL_CREATE" and e["Unique-ID"] == A03)
    reg = registry()
    for ev in [*codec, create, rename]:
        reg.apply("fs1", ev)
    assert uuids(reg) == {A03} and len(reg) == 1
    assert reg.get("fs1", A03).state == "CS_INIT"  # the rename (older) did not roll it back
    reg.apply("fs1", codec[0])  # a straggler under the temporary uuid
    assert uuids(reg) == {A03}


# --- 14: dial progress of a created call ------------------------------------------------------

A14 = "4ec13054-dcb5-4af2-bf31-1b2d1348a20e"  # the originate's own leg (loopback/no_such_extension_xyz-a)
B14 = "35add3e6-c39b-43b7-acde-51684eb556d3"


def test_dial_progress_ringing_then_early_media_then_hangup(captures_dir):
    """CHANNEL_PROGRESS (180) and CHANNEL_PROGRESS_MEDIA (183) move the answer state the
    listing shows, on the originated leg and its twin, before the call ends unanswered."""
    evs = iter(events(captures_dir, "14_originate_outcomes.c1-events"))
    reg = registry()
    feed(reg, evs, "78084")  # both legs created
    a = reg.get("fs1", A14)
    assert a.listing(NOW)["answer_state"] == "ringing" and a.callstate == "DOWN"
    feed(reg, evs, "78094")  # ring_ready: PROGRESS, then RINGING
    assert (a.answer_state, a.callstate) == ("ringing", "RINGING")
    feed(reg, evs, "78098")  # early media: PROGRESS_MEDIA, then EARLY
    assert (a.answer_state, a.callstate, a.answered) == ("early", "EARLY", False)
    assert reg.get("fs1", B14).listing(NOW)["answer_state"] == "ringing"
    feed(reg, evs, "78100")
    assert reg.get("fs1", B14).answer_state == "early"
    feed(reg, evs, "78106")  # A hangs up
    assert (a.answer_state, a.hangup_cause, a.answered) == ("hangup", "NORMAL_CLEARING", False)
    feed(reg, evs, "78116")
    assert reg.get("fs1", A14) is None
