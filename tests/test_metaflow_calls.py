"""Metaflow modules that change the call itself (transfer, hold, park, record, intercept,
move, callflow) against the simulator, through the real NodeLink and registry."""

import json

import gevent
import pytest
from conftest import eventually
from test_metaflow_modules import ACME, DEVICE, Call, finished

from eslchan.esl.commands import CommandError
from metaflow import StateError, ValidationFailed

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def call(daemon, simulator):
    return Call(daemon, simulator)


def bridged(call, a, b):
    eventually(lambda: (ch := call.daemon.registry.find(a)) is not None and ch.other_leg == b)


# --- transfer --------------------------------------------------------------------------------

@pytest.mark.parametrize("leg,flag", [("self", ""), ("peer", "-bleg "), ("bleg", "-bleg "),
                                      ("both", "-both ")])
def test_blind_transfer_legs(call, simulator, leg, flag):
    result = call.action(action="transfer", target="2600", leg=leg, context="default")
    assert result["reply"] == "+OK"
    assert call.sent() == [f"api uuid_transfer {call.a} {flag}2600 XML default"]
    moved = {"self": [call.a], "peer": [call.b], "bleg": [call.b], "both": [call.a, call.b]}[leg]
    for uuid in moved:
        eventually(lambda u=uuid: simulator.channel(u).destination == "2600")


def test_attended_transfer_takeback(call, simulator, daemon):
    result = call.action(action="transfer", target="2600", takeback_dtmf="*1", moh="welcome")
    run = daemon.interpreter.get(result["id"])
    assert result["reply"] == "+OK"  # returned once FreeSWITCH accepted the first command
    eventually(lambda: any(c.startswith("bgapi originate {origination_uuid=") for c in call.sent()))
    sent = call.sent()
    # park_after_bridge as the call had it, to put back afterwards
    assert sent[:5] == [f"api uuid_getvar {call.a} park_after_bridge",
                        f"api uuid_getvar {call.b} park_after_bridge",
                        f"api uuid_setvar {call.a} park_after_bridge true",
                        f"api uuid_setvar {call.b} park_after_bridge true",
                        f"api uuid_transfer {call.a} -both park inline"]
    # the transferee hears the moh, the transferor the ringback: playback loops (they read
    # DTMF and uuid_break stops them), the target dialled only once the ringback plays
    assert sent[5] == f"sendmsg {call.b}\ntone_stream://%(400,200,523);loops=2"
    assert sent[6] == f"sendmsg {call.a}\ntone_stream://%(2000,4000,440,480)"
    loops = [h.get("loops") for first, h, _ in simulator.received if first.startswith("sendmsg")][-2:]
    assert loops == ["1000", "1000"]
    originate = sent[7]
    target = originate.split("origination_uuid=", 1)[1].split(",", 1)[0]
    assert "loopback/2600/default &park()" in originate
    assert "originate_timeout=22" in originate  # eslchan's own timeout decides, not the ringing
    bridged(call, call.a, target)  # the target answered: transferor and target talk
    # the ringback was stopped, and seen stopped, before the bridge
    assert call.sent()[8:10] == [f"api uuid_break {call.a} all", f"api uuid_bridge {call.a} {target}"]
    assert simulator.channel(call.b).app == "park"
    simulator.press_dtmf(call.a, "*1")
    eventually(lambda: run.state != "running")
    assert run.state == "finished"
    bridged(call, call.a, call.b)
    eventually(lambda: simulator.channel(target) is None)
    # the legs that talk again get their park_after_bridge back (unset, as they had it)
    assert call.sent()[10:15] == [f"api uuid_break {call.b} all", f"api uuid_bridge {call.a} {call.b}",
                                  f"api uuid_setvar {call.a} park_after_bridge",
                                  f"api uuid_setvar {call.b} park_after_bridge",
                                  f"api uuid_kill {target} NORMAL_CLEARING"]
    assert "park_after_bridge" not in simulator.channel(call.a).variables


def test_attended_transfer_completes_when_the_transferor_hangs_up(call, simulator, daemon):
    result = call.action(action="transfer", target="2600", transfer_type="attended")
    run = daemon.interpreter.get(result["id"])
    eventually(lambda: any(c.startswith("bgapi originate") for c in call.sent()))
    target = next(c for c in call.sent() if c.startswith("bgapi")).split("origination_uuid=")[1][:36]
    bridged(call, call.a, target)
    simulator.hangup(call.a)
    bridged(call, call.b, target)  # transferee and target now talk
    eventually(lambda: run.state != "running")
    assert run.state in ("finished", "channel_gone")
    assert call.sent()[-3:] == [f"api uuid_bridge {call.b} {target}",
                                f"api uuid_setvar {call.b} park_after_bridge",
                                f"api uuid_setvar {target} park_after_bridge"]


def test_attended_transfer_to_a_target_that_does_not_answer(call, simulator, daemon):
    result = call.action(action="transfer", target="noanswer", takeback_dtmf="*1", timeout=1)
    run = daemon.interpreter.get(result["id"])
    eventually(lambda: run.state != "running", timeout=10)
    assert run.state == "finished"
    bridged(call, call.a, call.b)  # the transferor has the transferee back


def test_attended_transfer_to_a_failing_target(call, daemon):
    run = call.flow({"module": "transfer", "data": {"target": "hangup", "transfer_type": "attended"},
                     "children": {"failed": {"module": "set_variable",
                                             "data": {"name": "eslchan_xfer", "value": "failed"}}}})
    assert finished(run) == "finished"
    bridged(call, call.a, call.b)
    assert call.sim.channel(call.a).variables.get("eslchan_xfer") == "failed"


def test_transfer_refusals_send_nothing(daemon, simulator, call):
    lone = Call(daemon, simulator, bridged=False)
    for params in ({"target": "2600", "leg": "peer"}, {"target": "2600", "takeback_dtmf": "*1"}):
        with pytest.raises(StateError) as info:
            lone.action(action="transfer", **params)
        assert "bridged" in str(info.value)
    for bad in ("2600\napi system id", "{x=y}2600", "26 00", "${x}"):
        with pytest.raises(ValidationFailed) as info:
            call.action(action="transfer", target=bad)
        assert "data.target" in info.value.errors
    with pytest.raises(ValidationFailed):
        call.action(action="transfer", target="2600", moh="/etc/passwd")
    assert lone.sent() == [] and call.sent() == []


# --- hold, park, resume ------------------------------------------------------------------------

def test_hold_until_the_unhold_key(call, simulator):
    run = call.flow({"module": "hold", "data": {"moh_bleg": "welcome", "unhold_key": "5"}})
    eventually(lambda: call.channel.is_onhold)
    realm = f"eslchan_hold_{run.id[:12]}"
    # the held leg reads no DTMF: the key is a binding the switch itself runs
    assert call.sent() == [f"api uuid_setvar {call.a} hold_music tone_stream://%(400,200,523);loops=2",
                           f"sendmsg {call.a}\n{realm},5,exec[H]:unhold",
                           f"api uuid_hold {call.a}"]
    simulator.press_dtmf(call.a, "45")
    assert finished(run) == "finished"
    eventually(lambda: not call.channel.is_onhold)
    assert run.notes["unheld_by"] == "unhold_key"
    assert call.sent()[-1] == f"sendmsg {call.a}\n{realm}"  # the binding is cleared


def test_hold_ends_when_something_else_unholds(call):
    run = call.flow({"module": "hold"})
    eventually(lambda: call.channel.is_onhold)
    call.action(action="resume")
    assert finished(run) == "finished"
    assert not call.channel.is_onhold


def test_park_and_resume(call, simulator):
    call.action(action="park")
    eventually(lambda: len(call.sent()) == 3)
    assert call.sent() == [f"api uuid_setvar {call.a} park_after_bridge true",
                           f"api uuid_setvar {call.b} park_after_bridge true",
                           f"api uuid_transfer {call.a} -both park inline"]
    eventually(lambda: call.channel.other_leg is None)
    eventually(lambda: simulator.channel(call.a).app == "park" and simulator.channel(call.b).app == "park")
    call.action(action="resume")
    assert call.sent()[-1] == f"api uuid_bridge {call.a} {call.b}"
    bridged(call, call.a, call.b)
    with pytest.raises(StateError):
        call.action(action="resume")  # nothing left to resume


# --- recording ---------------------------------------------------------------------------------

def test_record_call_start_mask_unmask_stop(call, simulator):
    run = call.flow({"module": "record_call", "data": {"action": "start", "media_name": "board-call"},
                     "children": {"_": {"module": "record_call", "data": {"action": "mask"},
                                        "children": {"_": {"module": "record_call",
                                                           "data": {"action": "unmask"}}}}}})
    assert finished(run) == "finished"
    path = f"/var/lib/freeswitch/recordings/{ACME}/board-call.wav"  # the account's own directory
    assert call.sent() == [f"api uuid_record {call.a} start {path} 3600",
                           f"api uuid_record {call.a} mask {path}",
                           f"api uuid_record {call.a} unmask {path}"]
    assert path in simulator.channel(call.a).recordings
    finished(call.flow({"module": "record_call", "data": {"action": "stop"}}))
    assert simulator.channel(call.a).recordings == {}
    with pytest.raises(StateError):
        call.daemon.interpreter.start(call.channel, {"module": "record_call", "data": {"action": "stop"}})\
            .first.get()


def test_record_call_toggle_really_toggles(call, simulator):
    for expected in ("start", "stop", "start"):
        run = call.flow({"module": "record_call", "data": {"format": "mp3"}})
        assert finished(run) == "finished"
        assert call.sent()[-1].startswith(f"api uuid_record {call.a} {expected} ")
    assert len(simulator.channel(call.a).recordings) == 1
    assert next(iter(simulator.channel(call.a).recordings)).endswith(".mp3")


# --- intercept, move ---------------------------------------------------------------------------

def test_intercept_of_a_phone_that_is_not_registered_fails_with_freeswitch_s_cause(daemon, simulator):
    lone = Call(daemon, simulator, bridged=False)
    result = lone.action(action="intercept", target_type="device", target_id="phone43")
    assert result["reply"].startswith("+OK")  # FreeSWITCH took the job, then refused the call
    run = eventually(lambda: (r := daemon.interpreter.get(result["id"])) and r.state != "running" and r)
    assert run.state == "failed" and "USER_NOT_REGISTERED" in run.error
    assert not simulator.channels() or all(c.uuid in (lone.a,) for c in simulator.channels())


def test_intercept_a_ringing_call_from_a_device(daemon, simulator):
    simulator.register("phone42")  # its phone answers
    lone = Call(daemon, simulator, bridged=False)
    result = lone.action(action="intercept", target_type="device", target_id="phone42")
    assert result["reply"].startswith("+OK")
    originate = lone.sent()[0]
    assert originate.startswith("bgapi originate {origination_uuid=")
    assert originate.endswith(f"}}user/phone42 &intercept({lone.a})")
    new = originate.split("origination_uuid=")[1][:36]
    bridged(lone, lone.a, new)


def test_intercept_refusals(call):
    with pytest.raises(StateError):  # unbridged_only by default
        call.action(action="intercept", target_type="user", target_id="u1")
    with pytest.raises(StateError):
        call.action(action="intercept", target_type="device", target_id=DEVICE,
                    can_call_self=False, unbridged_only=False)
    with pytest.raises(ValidationFailed) as info:
        call.action(action="intercept", target_type="phone", target_id="u1,user/2")
    assert {"data.target_type", "data.target_id"} <= set(info.value.errors)
    assert call.sent() == []


def test_move_the_call_to_another_device(call, simulator):
    simulator.register("deskphone")
    result = call.action(action="move", device_id="deskphone", auto_answer=True)
    assert result["reply"].startswith("+OK")
    originate = call.sent()[0]
    assert "sip_auto_answer=true" in originate
    assert originate.endswith(f"}}user/deskphone &intercept({call.b})")
    new = originate.split("origination_uuid=")[1][:36]
    bridged(call, call.b, new)  # the other party now talks to the new device
    eventually(lambda: simulator.channel(call.a) is None)  # the old leg was released


# --- callflow, sleep ---------------------------------------------------------------------------

@pytest.fixture
def flows(tmp_path, daemon):
    daemon.interpreter.config = type(daemon.interpreter.config)(
        **{**daemon.interpreter.config.__dict__, "callflows_dir": tmp_path})
    return tmp_path


def test_callflow_continues_in_a_stored_flow(call, flows, simulator):
    (flows / "vip.json").write_text(json.dumps({"flow": {
        "module": "set_variable", "data": {"name": "eslchan_flow", "value": "vip"},
        "children": {"_": {"module": "send_dtmf", "data": {"digits": "9"}}}}}))
    run = call.flow({"module": "callflow", "data": {"id": "vip"}})
    assert finished(run) == "finished"
    assert call.sent() == [f"api uuid_setvar {call.a} eslchan_flow vip", f"api uuid_send_dtmf {call.a} 9"]


def test_callflow_errors(call, flows):
    with pytest.raises(ValidationFailed) as info:
        call.action(action="callflow", id="missing")
    assert "data.id" in info.value.errors
    (flows / "bad.json").write_text(json.dumps({"module": "transfer", "data": {}}))
    with pytest.raises(ValidationFailed) as info:
        call.action(action="callflow", id="bad")
    assert info.value.errors == {"callflow:bad.data.target": {"required": {
        "message": "Field is required but missing"}}}
    (flows / "loop.json").write_text(json.dumps({"module": "callflow", "data": {"id": "loop"}}))
    with pytest.raises(StateError):
        call.action(action="callflow", id="loop")
    with pytest.raises(ValidationFailed):
        call.action(action="callflow", id="../etc/passwd")


def test_sleep_then_continue(call):
    run = call.flow({"module": "sleep", "data": {"duration": 0.1},
                     "children": {"_": {"module": "send_dtmf", "data": {"digits": "1"}}}})
    assert finished(run) == "finished"
    assert call.sent() == [f"api uuid_send_dtmf {call.a} 1"]


# --- POST actions ------------------------------------------------------------------------------

def test_an_action_is_a_one_node_metaflow(call, daemon):
    result = call.action(action="hold_control", **{})
    assert result["action"] == "hold_control" and result["reply"].startswith("+OK")
    assert result["data"] == {"action": "toggle"}  # defaults filled by the same schema
    with pytest.raises(ValidationFailed) as info:
        call.action(action="teleport")
    assert "data.action" in info.value.errors
    with pytest.raises(ValidationFailed) as info:
        call.action(action="transfer")
    assert info.value.errors == {"data.target": {"required": {"message": "Field is required but missing"}}}


def test_hostile_values_never_reach_freeswitch(call):
    hostile = ["x\napi system id", "${system(id)}", "{origination_uuid=x}user/1", "a'b", "a b"]
    attempts = [("transfer", "target", {}), ("play", "id", {}), ("tts", "voice", {"text": "hi"}),
                ("set_variable", "name", {"value": "v"}), ("send_dtmf", "digits", {}),
                ("intercept", "target_id", {"target_type": "number"}), ("move", "owner_id", {}),
                ("record_call", "media_name", {}), ("hangup", "cause", {}), ("callflow", "id", {})]
    for module, field, rest in attempts:
        for bad in hostile:
            with pytest.raises((ValidationFailed, CommandError)):
                call.action(action=module, **{**rest, field: bad})
    gevent.sleep(0.05)
    assert call.sent() == []
    assert ACME  # the account the test calls belong to


def test_attended_transfer_takeback_while_the_target_rings(call, simulator):
    run = call.flow({"module": "transfer", "data": {"target": "noanswer", "takeback_dtmf": "#9",
                                                   "timeout": 600},
                     "children": {"takeback": {"module": "set_variable",
                                               "data": {"name": "eslchan_xfer", "value": "taken_back"}}}})
    eventually(lambda: any(c.startswith("bgapi originate") for c in call.sent()))
    target = next(c for c in call.sent() if c.startswith("bgapi")).split("origination_uuid=")[1][:36]
    eventually(lambda: simulator.channel(target) is not None)
    simulator.press_dtmf(call.a, "#9")
    assert finished(run) == "finished"
    bridged(call, call.a, call.b)
    assert simulator.channel(call.a).variables.get("eslchan_xfer") == "taken_back"
    eventually(lambda: simulator.channel(target) is None)


def test_attended_transfer_when_the_transferee_hangs_up(call, simulator):
    run = call.flow({"module": "transfer", "data": {"target": "2600", "transfer_type": "attended"}})
    eventually(lambda: any(c.startswith("bgapi originate") for c in call.sent()))
    target = next(c for c in call.sent() if c.startswith("bgapi")).split("origination_uuid=")[1][:36]
    bridged(call, call.a, target)
    simulator.hangup(call.b)
    assert finished(run) == "finished"
    gevent.sleep(0.1)
    assert call.channel.other_leg == target  # transferor and target are on their own


def test_action_results_carry_the_run_notes(call, daemon):
    result = call.action(action="record_call")
    assert result["result"]["recording"].startswith("/var/lib/freeswitch/recordings/")
    assert result["result"]["recording_action"] == "start"
    result = call.action(action="transfer", target="2600", takeback_dtmf="*1")
    assert result["result"]["transfer_type"] == "attended"
    assert result["result"]["transferee"] == call.b
    run = daemon.interpreter.get(result["id"])
    assert run.as_dict()["notes"]["target_leg"] == result["result"]["target_leg"]


def test_stopping_an_attended_transfer_gives_the_call_back(call, simulator, daemon):
    result = call.action(action="transfer", target="noanswer", takeback_dtmf="*1", timeout=600)
    eventually(lambda: any(c.startswith("bgapi originate") for c in call.sent()))
    target = next(c for c in call.sent() if c.startswith("bgapi")).split("origination_uuid=")[1][:36]
    eventually(lambda: simulator.channel(target) is not None)
    assert daemon.interpreter.stop(result["id"])
    bridged(call, call.a, call.b)
    eventually(lambda: simulator.channel(target) is None)


def test_a_lower_case_takeback_sequence_matches_the_digits_freeswitch_reports(call, simulator):
    # the schema accepts a-d; FreeSWITCH reports the DTMF letters A-D in upper case
    run = call.flow({"module": "transfer", "data": {"target": "noanswer", "takeback_dtmf": "*a",
                                                   "timeout": 600}})
    eventually(lambda: any(c.startswith("bgapi originate") for c in call.sent()))
    target = next(c for c in call.sent() if c.startswith("bgapi")).split("origination_uuid=")[1][:36]
    eventually(lambda: simulator.channel(target) is not None)
    simulator.press_dtmf(call.a, "*A")
    assert finished(run) == "finished"
    assert run.notes["transfer_outcome"] == "takeback"
    bridged(call, call.a, call.b)


def test_a_refused_bridge_to_the_answering_target_gives_the_call_back(call, simulator):
    # FreeSWITCH refusing uuid_bridge when the target answers must not leave both legs parked
    run = call.flow({"module": "transfer", "data": {"target": "ring", "transfer_type": "attended"},
                     "children": {"failed": {"module": "set_variable",
                                             "data": {"name": "eslchan_xfer", "value": "failed"}}}})
    eventually(lambda: any(c.startswith("bgapi originate") for c in call.sent()))
    target = next(c for c in call.sent() if c.startswith("bgapi")).split("origination_uuid=")[1][:36]
    eventually(lambda: simulator.channel(target) is not None)
    simulator.fail_next("-ERR no such channel")  # the ringback's break before the bridge...
    simulator.fail_next("-ERR no such channel")  # ...and the bridge itself
    simulator.answer_call(target)
    assert finished(run) == "finished"
    assert run.notes["transfer_outcome"] == "failed"
    bridged(call, call.a, call.b)
    assert simulator.channel(call.a).variables.get("eslchan_xfer") == "failed"
    eventually(lambda: simulator.channel(target) is None)
