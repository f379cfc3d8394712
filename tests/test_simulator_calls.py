"""The simulator's call model over real TCP: originate, answer, bridge, transfer, media,
hold, record, DTMF, intercept, eavesdrop, and the event order from CREATE to DESTROY."""

from __future__ import annotations

import json

import gevent
import pytest
from simulator_client import EslClient

pytestmark = pytest.mark.timeout(60)

U1 = "11111111-aaaa-4bbb-8ccc-000000000001"
U2 = "11111111-aaaa-4bbb-8ccc-000000000002"


@pytest.fixture
def sim(quiet_simulator):
    return quiet_simulator


@pytest.fixture
def esl(sim):
    c = EslClient(sim.port)
    assert c.cmd("event plain ALL").reply_text == "+OK event listener enabled plain"
    yield c
    c.close()


def life(esl: EslClient, uuid: str) -> list[str]:
    return [n for n in esl.names(uuid) if n not in ("CHANNEL_STATE", "CHANNEL_CALLSTATE", "CODEC")]


def test_create_call_sets_the_mapped_variables_and_fires_channel_events(sim, esl):
    call = sim.create_call(account_id="a" * 32, user_id="u" * 32, device_id="d" * 32,
                           caller_id_name="Zoë", caller_id_number="1001", destination="2000")
    create = esl.wait_event("CHANNEL_CREATE", uuid=call.a_uuid)
    assert create["variable_eslchan_account_id"] == "a" * 32
    assert create["variable_eslchan_owner_id"] == "u" * 32
    assert create["variable_eslchan_authorizing_id"] == "d" * 32
    assert create["variable_eslchan_authorizing_type"] == "device"
    assert create["variable_user_name"] == "1001"
    assert create["variable_presence_id"].startswith("1001@")
    assert create["Caller-Caller-ID-Name"] == "Zoë"
    assert create["Call-Direction"] == "inbound"
    bridge = esl.wait_event("CHANNEL_BRIDGE", uuid=call.a_uuid)
    assert bridge["Other-Leg-Unique-ID"] == call.b_uuid
    assert bridge["Bridge-B-Unique-ID"] == call.b_uuid
    b_event = esl.wait_event("CHANNEL_ANSWER", uuid=call.b_uuid)
    assert b_event["Other-Leg-Unique-ID"] == call.a_uuid and b_event["Other-Type"] == "originator"
    a = sim.channel(call.a_uuid)
    assert a.answered and a.other_leg == call.b_uuid and a.callstate == "ACTIVE"
    assert {c.uuid for c in sim.channels()} == {call.a_uuid, call.b_uuid}


def test_far_end_hangup_runs_the_whole_teardown_in_freeswitch_order(sim, esl):
    call = sim.create_call(account_id="a" * 32)
    esl.wait_event("CHANNEL_BRIDGE", uuid=call.a_uuid)
    sim.hangup(call.b_uuid, "USER_BUSY")
    for uuid in call.uuids:
        esl.wait_event("CHANNEL_DESTROY", uuid=uuid)
        names = life(esl, uuid)
        assert names[0] in ("CHANNEL_OUTGOING", "CHANNEL_CREATE")
        assert names[-1] == "CHANNEL_DESTROY"
        assert names.index("CHANNEL_HANGUP") < names.index("CHANNEL_HANGUP_COMPLETE")
        states = [e["Channel-State"] for e in esl.events
                  if e.get("Unique-ID") == uuid and e["Event-Name"] == "CHANNEL_STATE"]
        assert states[-3:] == ["CS_HANGUP", "CS_REPORTING", "CS_DESTROY"]
    assert "CHANNEL_UNBRIDGE" in esl.names(call.a_uuid)
    hc = esl.wait_event("CHANNEL_HANGUP_COMPLETE", uuid=call.b_uuid)
    assert hc["Hangup-Cause"] == "USER_BUSY"
    assert sim.channels() == []
    assert esl.api(f"uuid_exists {call.a_uuid}") == "false"


def test_unanswered_call_rings_until_answered(sim, esl):
    call = sim.create_call(answered=False)
    esl.wait_event(lambda e: e.get("Channel-Call-State") == "RING_WAIT", uuid=call.a_uuid)
    assert not sim.channel(call.a_uuid).answered
    sim.answer_call(call.b_uuid)
    esl.wait_event("CHANNEL_BRIDGE", uuid=call.a_uuid)
    assert sim.channel(call.b_uuid).answered


def test_originate_with_vars_and_origination_uuid_renames_the_channel(sim, esl):
    out = esl.api(f"originate {{origination_uuid={U1},account_id=acct1,"
                  "origination_caller_id_name=Alice,origination_caller_id_number=1001}"
                  "loopback/esl_answer/default &park")
    assert out == f"+OK {U1}\n"
    rename = esl.wait_event("CHANNEL_UUID", uuid=U1)
    assert rename["Old-Unique-ID"] != U1
    create = esl.wait_event("CHANNEL_CREATE", uuid=U1)
    assert create["variable_account_id"] == "acct1"
    assert create["Caller-Caller-ID-Name"] == "Alice"
    names = life(esl, U1)
    assert names.index("CHANNEL_UUID") < names.index("CHANNEL_OUTGOING") \
        < names.index("CHANNEL_CREATE")
    b_uuid = create["variable_other_loopback_leg_uuid"]
    b_create = esl.wait_event("CHANNEL_CREATE", uuid=b_uuid)
    assert b_create["variable_account_id"] == "acct1"       # the b leg inherits {vars}
    assert b_create["Channel-Name"] == "loopback/esl_answer-b"
    esl.wait_event("CHANNEL_PARK", uuid=U1)
    rows = esl.wait_rows(lambda rows: len(rows) == 2)
    assert {r["uuid"] for r in rows} == {U1, b_uuid}
    assert all(not k.startswith("variable_") for k in rows[0])
    dump = json.loads(esl.api(f"uuid_dump {U1} json"))
    assert dump["variable_account_id"] == "acct1" and dump["Event-Name"] == "CHANNEL_DATA"


def test_originate_failures_answer_like_freeswitch(sim, esl):
    assert esl.api("originate").startswith("-USAGE: <call url>")
    assert esl.api("originate loopback/no_such_extension_xyz/default &park") \
        == "-ERR NORMAL_CLEARING\n"
    assert esl.api("originate error/USER_BUSY &park") == "-ERR USER_BUSY\n"
    sim.switch.endpoint_behaviour["1009"] = "busy"
    assert esl.api("originate user/1009@sim.local &park") == "-ERR USER_BUSY\n"
    assert sim.channels() == []


def test_originate_to_a_user_endpoint_answers_after_ringing(sim, esl):
    sim.register("1001")
    out = esl.api(f"originate {{origination_uuid={U1}}}user/1001@sim.local &park")
    assert out == f"+OK {U1}\n"
    names = life(esl, U1)
    assert names.index("CHANNEL_CREATE") < names.index("CHANNEL_PROGRESS") < names.index("CHANNEL_ANSWER")
    assert sim.channel(U1).name == "sofia/internal/1001@sim.local"
    ringing = esl.wait_event("CHANNEL_PROGRESS", uuid=U1)
    assert ringing["Answer-State"] == "ringing" and ringing["Caller-Channel-Progress-Time"] != "0"


def test_an_unregistered_user_or_a_missing_gateway_creates_no_channel(sim, esl):
    """FreeSWITCH refuses these before any channel exists (esl-captures 14): only -ERR."""
    assert esl.api(f"originate {{origination_uuid={U1}}}user/7101 &park") == "-ERR USER_NOT_REGISTERED\n"
    assert esl.api(f"originate {{origination_uuid={U1}}}error/user_busy &park") == "-ERR USER_BUSY\n"
    assert esl.api(f"originate {{origination_uuid={U1}}}error/no_such_cause &park") \
        == "-ERR DESTINATION_OUT_OF_ORDER\n"
    assert esl.api(f"originate {{origination_uuid={U1}}}sofia/gateway/nowhere/5551234 &park") \
        == "-ERR INVALID_GATEWAY\n"
    sim.add_gateway("carrier1", "down")
    assert esl.api(f"originate {{origination_uuid={U1}}}sofia/gateway/carrier1/5551234 &park") \
        == "-ERR GATEWAY_DOWN\n"
    assert esl.names(U1) == []


@pytest.mark.parametrize("behaviour,answer,events", [
    ("early", "+OK", ["CHANNEL_CREATE", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_ANSWER"]),
    ("busy", "-ERR USER_BUSY", ["CHANNEL_CREATE", "CHANNEL_PROGRESS", "CHANNEL_HANGUP", "CHANNEL_DESTROY"]),
    ("reject", "-ERR CALL_REJECTED", ["CHANNEL_CREATE", "CHANNEL_PROGRESS", "CHANNEL_HANGUP"]),
    ("no_answer", "-ERR NO_ANSWER", ["CHANNEL_CREATE", "CHANNEL_PROGRESS", "CHANNEL_HANGUP"]),
])
def test_a_number_behind_a_gateway_rings_then_answers_or_fails(sim, esl, behaviour, answer, events):
    sim.add_gateway("carrier1")
    sim.register("5551234", behaviour)
    out = esl.api(f"originate {{origination_uuid={U1},originate_timeout=2}}"
                  f"sofia/gateway/carrier1/5551234 &park")
    assert out.startswith(answer)
    if answer != "+OK":
        esl.wait_event("CHANNEL_DESTROY", uuid=U1)
    names = life(esl, U1)
    assert [n for n in names if n in events] == events
    if behaviour == "early":
        early = esl.wait_event("CHANNEL_PROGRESS_MEDIA", uuid=U1)
        assert early["Answer-State"] == "early" and early["Channel-Name"] == "sofia/gateway/carrier1/5551234"


def test_origination_callee_id_is_what_the_leg_shows_once_it_runs_its_extension(sim, esl):
    """The originated leg becomes the caller of its own dialplan (caller and callee ids swap):
    origination_callee_id_* is what the number it then calls sees (Kazoo's quickcall)."""
    sim.register("1001")
    esl.api(f"originate {{origination_uuid={U1},origination_caller_id_name=QuickCall,"
            f"origination_caller_id_number=2600,origination_callee_id_name=Sales,"
            f"origination_callee_id_number=5550100}}user/1001 2600 XML default")
    flipped = esl.wait_event("CALL_UPDATE", uuid=U1)
    assert (flipped["Caller-Caller-ID-Name"], flipped["Caller-Caller-ID-Number"]) == ("Sales", "5550100")
    assert (flipped["Caller-Callee-ID-Name"], flipped["Caller-Callee-ID-Number"]) == ("QuickCall", "2600")


def test_loopback_b_leg_runs_its_dialplan_and_bridge_app_bridges(sim, esl):
    out = esl.api(f"originate {{origination_uuid={U1}}}loopback/esl_answer/default "
                  f"&bridge({{origination_uuid={U2},x=1}}loopback/esl_answer_2/default)")
    assert out == f"+OK {U1}\n"
    bridge = esl.wait_event("CHANNEL_BRIDGE", uuid=U1)
    assert bridge["Bridge-A-Unique-ID"] == U1 and bridge["Bridge-B-Unique-ID"] == U2
    assert bridge["Other-Type"] == "originatee"
    assert esl.api(f"uuid_getvar {U1} bridge_uuid") == U2
    esl.wait_rows(lambda rows: any(r["uuid"] == U1 and r["b_uuid"] == U2 for r in rows),
                  "calls")
    assert esl.api(f"uuid_kill {U1}") == "+OK\n"
    esl.wait_event("CHANNEL_UNBRIDGE", uuid=U1)
    sim.wait_until(lambda: not sim.channels())
    assert sim.channels() == []


def test_playback_events_follow_the_media_duration(sim, esl):
    esl.api(f"originate {{origination_uuid={U1}}}loopback/esl_answer/default &park")
    assert esl.api(f"uuid_broadcast {U1} tone_stream://%(500,500,440);loops=2 aleg") \
        == "+OK Message sent\n"
    stop = esl.wait_event("PLAYBACK_STOP", uuid=U1)
    start = esl.wait_event("PLAYBACK_START", uuid=U1)
    assert start["Playback-File-Type"] == "tone_stream"
    assert stop["Playback-Status"] == "done"
    elapsed_us = int(stop["Event-Date-Timestamp"]) - int(start["Event-Date-Timestamp"])
    assert elapsed_us >= 2_000_000 / sim.speed * 0.9        # a 2 s tone takes 2 s / speed


def test_uuid_break_stops_playback(sim, esl):
    esl.api(f"originate {{origination_uuid={U1}}}loopback/esl_answer/default &park")
    esl.api(f"uuid_broadcast {U1} tone_stream://%(1000,0,440);loops=-1 aleg")
    esl.wait_event("PLAYBACK_START", uuid=U1)
    assert esl.api(f"uuid_break {U1} all") == "+OK\n"
    stop = esl.wait_event("PLAYBACK_STOP", uuid=U1)
    assert stop["Playback-Status"] == "break"
    assert sim.channel(U1).parked


def test_uuid_transfer_xml_inline_and_bleg(sim, esl):
    esl.api(f"originate {{origination_uuid={U1}}}loopback/esl_answer/default &park")
    assert esl.api(f"uuid_transfer {U1} esl_tone XML default") == "+OK\n"
    unpark = esl.wait_event("CHANNEL_UNPARK", uuid=U1)
    assert unpark["Caller-Destination-Number"] == "esl_tone"
    assert unpark["Caller-RDNIS"] == "esl_answer"
    esl.wait_event("PLAYBACK_STOP", uuid=U1)
    assert esl.api(f"uuid_transfer {U1} 'playback:silence_stream://350,park' inline") \
        == "+OK\n"
    esl.wait_event(lambda e: e["Event-Name"] == "PLAYBACK_START"
                   and "350" in e["Playback-File-Path"], uuid=U1)
    esl.wait_event(lambda e: e["Event-Name"] == "CHANNEL_PARK"
                   and e["Caller-Channel-Transfer-Time"] != "0", uuid=U1)
    # -bleg: the bridged partner goes to the new extension, the caller's bridge ends
    call = sim.create_call()
    esl.wait_event("CHANNEL_BRIDGE", uuid=call.a_uuid)
    assert esl.api(f"uuid_transfer {call.a_uuid} -bleg 3000 XML default") == "+OK\n"
    esl.wait_event(lambda e: e["Event-Name"] == "CHANNEL_PARK", uuid=call.b_uuid)
    esl.wait_event("CHANNEL_UNBRIDGE", uuid=call.a_uuid)
    esl.wait_event("CHANNEL_DESTROY", uuid=call.a_uuid)
    assert sim.channel(call.b_uuid).parked
    assert esl.api(f"uuid_transfer {U2} 3000") == "-ERR No such channel!\n"


def test_transfer_to_unknown_extension_hangs_up_no_route(sim, esl):
    esl.api(f"originate {{origination_uuid={U1}}}loopback/esl_answer/default &park")
    esl.api(f"uuid_transfer {U1} nowhere_at_all XML default")
    hup = esl.wait_event("CHANNEL_HANGUP", uuid=U1)
    assert hup["Hangup-Cause"] == "NO_ROUTE_DESTINATION"


def test_uuid_hold_on_sip_legs_changes_callstate_and_toggles(sim, esl):
    call = sim.create_call()
    esl.wait_event("CHANNEL_BRIDGE", uuid=call.a_uuid)
    assert esl.api(f"uuid_hold {call.a_uuid}") == "+OK Success\n"
    esl.wait_event("CHANNEL_HOLD", uuid=call.a_uuid)
    assert sim.channel(call.a_uuid).callstate == "HELD" and sim.channel(call.a_uuid).held
    assert esl.api(f"uuid_hold toggle {call.a_uuid}") == "+OK Success\n"
    esl.wait_event("CHANNEL_UNHOLD", uuid=call.a_uuid)
    assert sim.channel(call.a_uuid).callstate == "ACTIVE"
    assert esl.api(f"uuid_hold off {call.a_uuid}") == "-ERR Operation failed\n"
    assert esl.api(f"uuid_hold toggle {call.a_uuid}") == "+OK Success\n"
    assert esl.api(f"uuid_hold off {call.a_uuid}") == "+OK Success\n"
    names = esl.names(call.a_uuid)
    assert names.count("CHANNEL_HOLD") == 2 and names.count("CHANNEL_UNHOLD") == 2


def test_uuid_hold_on_loopback_keeps_callstate_and_off_fails(sim, esl):
    esl.api(f"originate {{origination_uuid={U1}}}loopback/esl_answer/default &park")
    assert esl.api(f"uuid_hold {U1}") == "+OK Success\n"
    esl.wait_event("CHANNEL_HOLD", uuid=U1)
    assert sim.channel(U1).callstate == "ACTIVE"
    assert esl.api(f"uuid_hold off {U1}") == "-ERR Operation failed\n"


def test_uuid_record_start_stop_mask(sim, esl):
    call = sim.create_call()
    path = "/tmp/rec-test.wav"
    assert esl.api(f"uuid_record {call.a_uuid} start {path}") == "+OK Success\n"
    assert esl.wait_event("RECORD_START", uuid=call.a_uuid)["Record-File-Path"] == path
    assert esl.api(f"uuid_record {call.a_uuid} mask {path}") == "+OK Success\n"
    assert esl.api(f"uuid_record {call.a_uuid} unmask {path}") == "+OK Success\n"
    assert esl.api(f"uuid_record {call.a_uuid} stop {path}") == "+OK Success\n"
    assert esl.wait_event("RECORD_STOP", uuid=call.a_uuid)["Record-File-Path"] == path
    assert esl.api(f"uuid_record {call.a_uuid} stop {path}").startswith("-ERR")
    assert esl.api(f"uuid_record {call.a_uuid}").startswith("-USAGE")


def test_dtmf_from_far_end_and_uuid_send_dtmf(sim, esl):
    call = sim.create_call()
    esl.wait_event("CHANNEL_BRIDGE", uuid=call.a_uuid)
    sim.press_dtmf(call.a_uuid, "12#")
    digits = [e["DTMF-Digit"] for e in [esl.wait_event("DTMF", uuid=call.a_uuid)]]
    esl.wait_event(lambda e: e["Event-Name"] == "DTMF" and e["DTMF-Digit"] == "#",
                   uuid=call.a_uuid)
    digits = [e["DTMF-Digit"] for e in esl.events
              if e["Event-Name"] == "DTMF" and e["Unique-ID"] == call.a_uuid]
    assert digits == ["1", "2", "#"]
    assert esl.api(f"uuid_send_dtmf {call.a_uuid} 9") == "+OK Success\n"
    # the digits leave through the a leg, so the bridged b leg hears them
    assert esl.wait_event("DTMF", uuid=call.b_uuid)["DTMF-Digit"] == "9"


def test_setvar_getvar_multi_and_audio(sim, esl):
    call = sim.create_call()
    u = call.a_uuid
    assert esl.api(f"uuid_getvar {u} nothing_here") == "_undef_"
    assert esl.api(f"uuid_setvar {u} note hello world/a=b&c") == "+OK\n"
    assert esl.api(f"uuid_getvar {u} note") == "hello world/a=b&c"
    assert esl.api(f"uuid_setvar_multi {u} a=1;b=2") == "+OK\n"
    assert esl.api(f"uuid_getvar {u} b") == "2"
    assert esl.api(f"uuid_setvar {u} a") == "+OK\n"
    assert esl.api(f"uuid_getvar {u} a") == "_undef_"
    assert esl.api(f"uuid_audio {u} start read level 2") == "+OK Success\n"
    assert sim.channel(u).audio == {"read_level": 2}
    assert esl.api(f"uuid_audio {u} start sideways mute 1").startswith("-USAGE")
    assert esl.api(f"uuid_audio {u} stop") == "+OK Success\n"
    sim.hangup(u)
    # the new value shows in the channel's later events
    assert esl.wait_event("CHANNEL_HANGUP", uuid=u)["variable_note"] == "hello world/a=b&c"
    for cmd in ("uuid_getvar", "uuid_setvar", "uuid_kill", "uuid_dump",
                "uuid_answer", "uuid_break", "uuid_park"):
        assert esl.api(f"{cmd} {U2} x") == "-ERR No such channel!\n", cmd
    # switch_ivr_hold_uuid succeeds when it finds no session
    assert esl.api(f"uuid_hold {U2}") == "+OK Success\n"


def test_uuid_bridge_and_uuid_park(sim, esl):
    esl.api(f"originate {{origination_uuid={U1}}}loopback/esl_answer/default &park")
    esl.api(f"originate {{origination_uuid={U2}}}loopback/esl_answer/default &park")
    assert esl.api(f"uuid_bridge {U1} {U2}") == f"+OK {U2}\n"
    bridge = esl.wait_event("CHANNEL_BRIDGE", uuid=U1)
    assert bridge["Bridge-B-Unique-ID"] == U2
    assert sim.channel(U2).other_leg == U1
    assert esl.api(f"uuid_park {U2}") == "+OK\n"
    esl.wait_event("CHANNEL_UNBRIDGE", uuid=U1)
    esl.wait_event(lambda e: e["Event-Name"] == "CHANNEL_PARK", uuid=U2)
    assert esl.api(f"uuid_bridge {U1} 00000000-0000-0000-0000-000000000000") == "-ERR Invalid uuid\n"


def test_intercept_takes_a_ringing_call(sim, esl):
    call = sim.create_call(answered=False)
    esl.wait_event(lambda e: e.get("Channel-Call-State") == "RING_WAIT", uuid=call.a_uuid)
    out = esl.api(f"originate {{origination_uuid={U1}}}loopback/1234/default "
                  f"&intercept({call.a_uuid})")
    assert out == f"+OK {U1}\n"
    hup = esl.wait_event("CHANNEL_HANGUP", uuid=call.b_uuid)
    assert hup["Hangup-Cause"] == "PICKED_OFF"
    bridge = esl.wait_event("CHANNEL_BRIDGE", uuid=U1)
    assert bridge["Bridge-B-Unique-ID"] == call.a_uuid
    assert sim.channel(call.a_uuid).answered
    assert sim.channel(call.a_uuid).other_leg == U1


def test_eavesdrop_runs_until_the_target_ends(sim, esl):
    call = sim.create_call()
    esl.api(f"originate {{origination_uuid={U1}}}loopback/1234/default "
            f"&eavesdrop({call.a_uuid})")
    ex = esl.wait_event(lambda e: e["Event-Name"] == "CHANNEL_EXECUTE"
                        and e.get("Application") == "eavesdrop", uuid=U1)
    assert ex["Application-Data"] == call.a_uuid
    bug = esl.wait_event("MEDIA_BUG_START", uuid=call.a_uuid)
    assert (bug["Media-Bug-Function"], bug["Media-Bug-Target"]) == ("eavesdrop", call.a_uuid)
    sim.hangup(call.a_uuid)
    esl.wait_event(lambda e: e["Event-Name"] == "CHANNEL_EXECUTE_COMPLETE"
                   and e.get("Application") == "eavesdrop", uuid=U1)
    # the leg's application list is over: it hangs up
    esl.wait_event("CHANNEL_DESTROY", uuid=U1)


def test_eavesdrop_starts_as_its_variables_say_and_dtmf_switches_the_mode(sim, esl):
    """mod_dptools' eavesdrop: eavesdrop_whisper_bleg (the target's own party hears the
    supervisor), eavesdrop_whisper_aleg (its far end does), both: three-way; with
    eavesdrop_enable_dtmf the supervisor's 1, 2, 3 and 0 switch, * ends it; without, its
    digits do nothing."""
    call = sim.create_call()
    sim.register("1010")
    esl.api(f"originate {{origination_uuid={U1},eavesdrop_enable_dtmf=true,eavesdrop_whisper_bleg=true}}"
            f"user/1010 &eavesdrop({call.a_uuid})")
    esl.wait_event("MEDIA_BUG_START", uuid=call.a_uuid)
    assert sim.channel(U1).eavesdrop.mode == "whisper"
    for digit, mode in (("3", "three_way"), ("1", "whisper_other"), ("0", "listen"), ("2", "whisper")):
        sim.press_dtmf(U1, digit)
        assert sim.wait_until(lambda mode=mode: sim.channel(U1).eavesdrop.mode == mode), digit
    sim.press_dtmf(U1, "*")
    esl.wait_event("MEDIA_BUG_STOP", uuid=call.a_uuid)
    esl.wait_event("CHANNEL_DESTROY", uuid=U1)
    assert sim.channel(call.a_uuid) is not None  # the call listened to goes on

    esl.api(f"originate {{origination_uuid={U2},eavesdrop_enable_dtmf=false,eavesdrop_whisper_aleg=true,"
            f"eavesdrop_whisper_bleg=true}}user/1010 &eavesdrop({call.a_uuid})")
    assert sim.wait_until(lambda: (ch := sim.channel(U2)) is not None and ch.eavesdrop is not None)
    assert sim.channel(U2).eavesdrop.mode == "three_way"
    sim.press_dtmf(U2, "0")
    gevent.sleep(0.2)
    assert sim.channel(U2).eavesdrop.mode == "three_way"


def test_eavesdrop_of_a_channel_that_is_not_there_ends_at_once(sim, esl):
    esl.api(f"originate {{origination_uuid={U1}}}loopback/1234/default &eavesdrop({U2})")
    esl.wait_event("CHANNEL_DESTROY", uuid=U1)
    assert "MEDIA_BUG_START" not in esl.names()


def test_dialplan_apps_sleep_echo_hangup(sim, esl):
    sim.switch.dialplan["default"].insert(0, ("^sleepy$", [
        ("answer", ""), ("sleep", "500"), ("playback", "silence_stream://200"),
        ("hangup", "USER_BUSY")]))
    out = esl.api(f"originate {{origination_uuid={U1}}}loopback/sleepy/default &echo")
    assert out == f"+OK {U1}\n"
    b_uuid = sim.channel(U1).loopback_peer
    hup = esl.wait_event("CHANNEL_HANGUP", uuid=b_uuid)
    assert hup["Hangup-Cause"] == "USER_BUSY"
    apps = [e["Application"] for e in esl.events
            if e["Event-Name"] == "CHANNEL_EXECUTE" and e["Unique-ID"] == b_uuid]
    assert apps == ["set", "answer", "sleep", "playback", "hangup"]
    esl.wait_event("CHANNEL_DESTROY", uuid=U1)


def test_hupall_and_status(sim, esl):
    for _ in range(3):
        sim.create_call()
    assert "6 session(s) - peak" in esl.api("status")
    assert esl.api("hupall NORMAL_CLEARING") == \
        "+OK hangup all channels with cause NORMAL_CLEARING\n"
    assert sim.wait_until(lambda: not sim.channels())
    esl.wait_rows(lambda rows: not rows)  # the destroyed rows go some 200 ms later
    assert esl.api("show channels as json") == '{"row_count": 0}\n'
    assert esl.api("show calls") == "\n0 total.\n"


def test_uuid_transfer_both_moves_both_legs(sim, esl):
    call = sim.create_call(destination="2000")
    bridge = esl.wait_event("CHANNEL_BRIDGE", uuid=call.a_uuid)
    assert bridge["Caller-Callee-ID-Number"] == "2000"
    assert esl.api(f"uuid_transfer {call.a_uuid} -both 3000 XML default") == "+OK\n"
    for uuid in call.uuids:
        esl.wait_event(lambda e: e["Event-Name"] == "CHANNEL_PARK"
                       and e["Caller-Destination-Number"] == "3000", uuid=uuid)
    assert all(sim.channel(u).parked for u in call.uuids)
    assert esl.api(f"uuid_transfer {call.a_uuid} -bleg 3000") == "-ERR Operation Failed\n"


def test_show_channels_plain_lists_rows(sim, esl):
    call = sim.create_call()
    esl.wait_event("CHANNEL_BRIDGE", uuid=call.a_uuid)
    esl.wait_rows(lambda rows: any(r["b_uuid"] == call.b_uuid for r in rows), "calls")
    text = esl.api("show channels")
    header, *rows = text.split("\n\n")[0].split("\n")
    assert header.startswith("uuid,direction,created,created_epoch,name,state")
    assert {r.split(",")[0] for r in rows} == set(call.uuids)
    assert text.endswith("\n\n2 total.\n")
    calls = json.loads(esl.api("show calls as json"))
    assert calls["row_count"] == 1 and calls["rows"][0]["b_uuid"] == call.b_uuid


def test_digit_collection_and_endless_playback(sim, esl):
    esl.api(f"originate {{origination_uuid={U1}}}loopback/esl_answer/default &park")
    esl.cmd(f"sendmsg {U1}", {"call-command": "execute", "execute-app-name": "play_and_get_digits",
                              "execute-app-arg": "1 4 1 3000 # tone_stream://%(10000,0,440) "
                                                 "silence_stream://1 got_digits \\d+"})
    esl.wait_event("PLAYBACK_START", uuid=U1)
    sim.press_dtmf(U1, "42#")
    done = esl.wait_event(lambda e: e["Event-Name"] == "CHANNEL_EXECUTE_COMPLETE"
                          and e.get("Application") == "play_and_get_digits", uuid=U1)
    assert done["Application-Response"] == "42"
    assert esl.api(f"uuid_getvar {U1} got_digits") == "42"
    esl.cmd(f"sendmsg {U1}", {"call-command": "execute", "execute-app-name": "endless_playback",
                              "execute-app-arg": "/media/moh.wav"})
    esl.wait_event(lambda e: e["Event-Name"] == "PLAYBACK_START"
                   and e["Playback-File-Path"] == "/media/moh.wav", uuid=U1)
    esl.api(f"uuid_break {U1}")
    stop = esl.wait_event(lambda e: e["Event-Name"] == "PLAYBACK_STOP"
                          and e["Playback-File-Path"] == "/media/moh.wav", uuid=U1)
    assert stop["Playback-Status"] == "break"
    # uuid_break only starts an endless_playback over; a transfer ends it
    esl.wait_event(lambda e: e["Event-Name"] == "PLAYBACK_START"
                   and e["Event-Sequence"] > stop["Event-Sequence"], uuid=U1)
    esl.api(f"uuid_transfer {U1} park inline")
    esl.wait_event(lambda e: e["Event-Name"] == "CHANNEL_EXECUTE_COMPLETE"
                   and e["Application"] == "endless_playback", uuid=U1)
    esl.cmd(f"sendmsg {U1}", {"call-command": "execute", "execute-app-name": "record_session",
                              "execute-app-arg": "/tmp/x.wav"})
    esl.wait_event("RECORD_START", uuid=U1)
    assert sim.channel(U1).recordings
    sim.hangup(U1)
    esl.wait_event("RECORD_STOP", uuid=U1)      # recordings end with the call


ENDLESS_TONE = "tone_stream://%(1000,4000,440);loops=-1"


def _play_forever(esl: EslClient, uuid: str) -> None:
    esl.cmd(f"sendmsg {uuid}", {"call-command": "execute", "execute-app-name": "playback",
                                "execute-app-arg": ENDLESS_TONE})
    esl.wait_event("PLAYBACK_START", uuid=uuid)


@pytest.mark.parametrize("who_hangs_up", ["a", "b"])
def test_a_demo_call_ends_when_one_side_hangs_up_even_while_media_plays(sim, esl, who_hangs_up):
    """A demo-style call (the caller's leg has hangup_after_bridge, as Kazoo sets it) with
    endless media on both legs inside the bridge: when either side hangs up, the other leg
    goes too instead of playing on forever."""
    call = sim.create_call(variables={"hangup_after_bridge": "true"})
    esl.wait_event("CHANNEL_BRIDGE", uuid=call.a_uuid)
    for uuid in call.uuids:
        _play_forever(esl, uuid)
    gone, other = (call.a_uuid, call.b_uuid) if who_hangs_up == "a" else (call.b_uuid, call.a_uuid)
    sim.hangup(gone)
    esl.wait_event("CHANNEL_DESTROY", uuid=other)
    names = esl.names(other)
    assert names.index("PLAYBACK_STOP") < names.index("CHANNEL_DESTROY")  # the media ended
    assert sim.channels() == []


def test_without_hangup_after_bridge_the_caller_plays_its_media_to_the_end(sim, esl):
    """The flow says otherwise: a caller's leg without hangup_after_bridge keeps playing its
    media after the callee hung up, then leaves the bridge (and, its extension done, hangs
    up); the callee's leg never outlives the bridge."""
    call = sim.create_call()
    esl.wait_event("CHANNEL_BRIDGE", uuid=call.a_uuid)
    sim.switch.media_durations["tone_stream://short"] = 10.0  # 0.5 s of real time
    esl.cmd(f"sendmsg {call.a_uuid}", {"call-command": "execute", "execute-app-name": "playback",
                                       "execute-app-arg": "tone_stream://short"})
    esl.wait_event("PLAYBACK_START", uuid=call.a_uuid)
    _play_forever(esl, call.b_uuid)
    sim.hangup(call.b_uuid)
    esl.wait_event("CHANNEL_DESTROY", uuid=call.b_uuid)
    assert sim.channel(call.a_uuid) is not None  # still playing
    stop = esl.wait_event("PLAYBACK_STOP", uuid=call.a_uuid)
    assert stop["Playback-Status"] == "done"
    esl.wait_event("CHANNEL_UNBRIDGE", uuid=call.a_uuid)
    esl.wait_event("CHANNEL_DESTROY", uuid=call.a_uuid)
