"""Every metaflow module against the simulator, through the real NodeLink and registry:
the ESL commands FreeSWITCH received and the state the channel ends up in."""

import gc

import gevent
import pytest
from conftest import eventually
from greenlet import greenlet

from eslchan.esl.errors import CommandRejected
from metaflow import StateError, Unsupported, ValidationFailed

pytestmark = pytest.mark.timeout(60)

ACME = "acc00000000000000000000000000001"
DEVICE = "dev00000000000000000000000000001"
USER = "usr00000000000000000000000000001"


class Call:
    def __init__(self, daemon, simulator, **kw):
        self.daemon, self.sim = daemon, simulator
        c = simulator.create_call(account_id=ACME, device_id=DEVICE, user_id=USER, **kw)
        self.a, self.b = c.a_uuid, c.b_uuid
        bridged = kw.get("bridged", True)
        eventually(lambda: (ch := self.channel) is not None and (ch.other_leg or not bridged)
                   and (ch.answered or not kw.get("answered", True)))
        self.mark = len(simulator.commands)

    @property
    def channel(self):
        return self.daemon.registry.find(self.a)

    def sent(self) -> list[str]:
        """Commands FreeSWITCH received since the call was set up (no connection chatter, and
        not the node's capability probe, which the first module needing it sends)."""
        return [c for c in self.sim.commands[self.mark:] if c.startswith(("api ", "bgapi ", "sendmsg "))
                and not c.startswith(("api show interfaces", "api module_exists"))]

    def action(self, **params):
        return self.daemon.interpreter.run_action(self.channel, params)

    def flow(self, tree):
        return self.daemon.interpreter.start(self.channel, tree, ACME)


@pytest.fixture
def call(daemon, simulator):
    return Call(daemon, simulator)


def finished(run, timeout=10):
    eventually(lambda: run.state != "running", timeout=timeout)
    return run.state


def setvar(name, value):
    return {"module": "set_variable", "data": {"name": name, "value": value}}


def live_greenlets() -> int:
    return sum(1 for o in gc.get_objects() if isinstance(o, greenlet) and not o.dead)


# --- one-command modules ---------------------------------------------------------------------

def test_hangup(call, simulator):
    result = call.action(action="hangup")
    assert result["reply"].startswith("+OK")
    assert call.sent() == [f"api uuid_kill {call.a} NORMAL_CLEARING"]
    eventually(lambda: simulator.channel(call.a) is None)
    eventually(lambda: call.channel is None)


def test_hangup_with_a_cause_and_an_unknown_cause(call):
    with pytest.raises(ValidationFailed) as info:
        call.action(action="hangup", cause="NOT_A_CAUSE")
    assert "enum" in info.value.errors["data.cause"]
    assert call.sent() == []
    call.action(action="hangup", cause="USER_BUSY")
    assert call.sent() == [f"api uuid_kill {call.a} USER_BUSY"]


def test_break_is_a_declared_module(call):
    assert call.daemon.interpreter.modules.get("break").source == "builtin"
    call.action(action="break")
    assert call.sent() == [f"api uuid_break {call.a} all"]


def test_send_dtmf_reaches_the_far_end(call, daemon):
    seen = []
    unsubscribe = daemon.registry.listen(lambda n, ch, ev: ev.get("Event-Name") == "DTMF"
                                         and seen.append((ev["Unique-ID"], ev["DTMF-Digit"])))
    try:
        call.action(action="send_dtmf", digits="12#")
        assert call.sent() == [f"api uuid_send_dtmf {call.a} 12#"]
        eventually(lambda: [d for _, d in seen] == ["1", "2", "#"])
        assert {u for u, _ in seen} == {call.b}
    finally:
        unsubscribe()


def test_set_variable(call, simulator):
    call.action(action="set_variable", name="eslchan_note", value="vip caller")
    assert call.sent() == [f"api uuid_setvar {call.a} eslchan_note vip caller"]
    assert simulator.channel(call.a).variables["eslchan_note"] == "vip caller"


def test_hold_control_hold_unhold_toggle(call, simulator):
    run = call.flow({"module": "hold_control", "data": {"action": "hold"}})
    finished(run)
    eventually(lambda: call.channel.is_onhold)
    assert simulator.channel(call.a).held
    finished(call.flow({"module": "hold_control", "data": {"action": "toggle"}}))
    eventually(lambda: not call.channel.is_onhold)
    finished(call.flow({"module": "hold_control"}))  # default: toggle
    eventually(lambda: call.channel.is_onhold)
    finished(call.flow({"module": "hold_control", "data": {"action": "unhold"}}))
    eventually(lambda: not call.channel.is_onhold)
    # toggles are decided from the known state, never left to FreeSWITCH's callstate
    assert call.sent() == [f"api uuid_hold {call.a}", f"api uuid_hold off {call.a}",
                           f"api uuid_hold {call.a}", f"api uuid_hold off {call.a}"]


def test_audio_level(call, simulator):
    call.flow({"module": "audio_level", "data": {"mode": "write", "level": -2},
               "children": {"_": {"module": "audio_level", "data": {"action": "stop"}}}})
    eventually(lambda: len(call.sent()) == 2)
    assert call.sent() == [f"api uuid_audio {call.a} start write level -2", f"api uuid_audio {call.a} stop"]


def test_sound_touch_is_refused_without_mod_soundtouch(call, simulator):
    # FreeSWITCH would hang the call up: nothing is sent, the call is untouched
    with pytest.raises(Unsupported) as info:
        call.flow({"module": "sound_touch", "data": {"adjust_in_semitones": -3}})
    assert info.value.details["missing"] == "application soundtouch (mod_soundtouch)"
    assert call.sent() == []
    gevent.sleep(0.05)
    assert simulator.channel(call.a) is not None and simulator.channel(call.b) is not None


# --- media -----------------------------------------------------------------------------------

def test_play_waits_for_the_playback_to_finish(call, daemon):
    events = []
    unsubscribe = daemon.registry.listen(lambda n, ch, ev: ev.get("Unique-ID") == call.a
                                         and events.append(ev["Event-Name"]))
    try:
        run = call.flow({"module": "play", "data": {"id": "welcome", "leg": "self"},
                         "children": {"_": {"module": "set_variable",
                                            "data": {"name": "eslchan_played", "value": "yes"}}}})
        assert finished(run) == "finished"
    finally:
        unsubscribe()
    sent = call.sent()
    assert sent[0].startswith(f"sendmsg {call.a}\n") and sent[0].endswith("tone_stream://%(400,200,523);loops=2")
    assert sent[1] == f"api uuid_setvar {call.a} eslchan_played yes"
    # the variable was set only after the playback stopped
    assert events.index("PLAYBACK_STOP") < len(events)


def test_play_to_both_legs_and_refusals(call):
    run = call.flow({"module": "play", "data": {"id": "tone_stream://%(100,100,440)"}})
    assert finished(run) == "finished"
    targets = sorted(c.split("\n")[0] for c in call.sent())
    assert targets == sorted([f"sendmsg {call.a}", f"sendmsg {call.b}"])
    with pytest.raises(ValidationFailed) as info:
        call.action(action="play", id="/etc/passwd")
    assert "data.id" in info.value.errors


def test_tts_is_refused_without_its_engine(call):
    # FreeSWITCH would say nothing and report the speak as done
    with pytest.raises(Unsupported) as info:
        call.action(action="tts", text="Hello, world")
    assert info.value.details["missing"] == "TTS engine flite (mod_flite)"
    with pytest.raises(Unsupported):  # a later node needing it refuses the whole flow up front
        call.flow({"module": "sleep", "data": {"duration": 0},
                   "children": {"_": {"module": "tts", "data": {"text": "hi", "engine": "polly"}}}})
    assert call.sent() == []


def test_say_without_sound_files_fails_saying_so(call):
    run = call.flow({"module": "say", "data": {"text": "1234"},
                     "children": {"_": setvar("eslchan_said", "yes")}})
    assert finished(run) == "failed"
    assert "said nothing" in run.error
    assert run.notes["said"] is False
    assert call.sent() == [f"sendmsg {call.a}\nen number pronounced 1234"]  # the child never ran
    with pytest.raises(Unsupported) as info:  # no say module for the language at all
        call.action(action="say", text="1234", language="de")
    assert info.value.details["missing"] == "say language de (mod_say_de)"


# --- flows -----------------------------------------------------------------------------------

def test_collect_dtmf_branches_on_the_digits(call, simulator):
    run = call.flow({"module": "collect_dtmf", "data": {"max_digits": 2, "timeout": 5000},
                     "children": {"42": setvar("eslchan_got", "42"), "_": setvar("eslchan_got", "other")}})
    eventually(lambda: run.current_module == "collect_dtmf" and run.waiting)
    simulator.press_dtmf(call.a, "42")
    assert finished(run) == "finished"
    assert simulator.channel(call.a).variables["eslchan_got"] == "42"


def test_collect_dtmf_timeout_and_terminator_take_the_underscore_branch(call, simulator):
    run = call.flow({"module": "collect_dtmf", "data": {"timeout": 100},
                     "children": {"_": setvar("eslchan_got", "none")}})
    assert finished(run) == "finished"
    assert simulator.channel(call.a).variables["eslchan_got"] == "none"
    run = call.flow({"module": "collect_dtmf", "data": {"max_digits": 4, "collection_name": "eslchan_pin"},
                     "children": {"7": setvar("eslchan_got", "7")}})
    eventually(lambda: run.waiting)
    simulator.press_dtmf(call.a, "7#")
    assert finished(run) == "finished"
    assert simulator.channel(call.a).variables["eslchan_got"] == "7"
    assert simulator.channel(call.a).variables["eslchan_pin"] == "7"


def test_three_level_flow(daemon, simulator):
    tree = {"module": "play", "data": {"id": "welcome", "leg": "self"}, "children": {"_": {
        "module": "collect_dtmf", "data": {"timeout": 3000},
        "children": {
            "1": {"module": "transfer", "data": {"target": "2600"}},
            "2": {"module": "hangup"},
            "_": {"module": "play", "data": {"id": "welcome", "leg": "self"}}}}}}

    def press(digit: str) -> Call:
        """A new call runs the flow to the menu, presses ``digit`` and the run finishes."""
        call = Call(daemon, simulator)
        run = call.flow(tree)
        eventually(lambda: run.current_module == "collect_dtmf" and run.waiting)
        simulator.press_dtmf(call.a, digit)
        assert finished(run) == "finished"
        return call

    # `1`: blind transfer
    one = press("1")
    assert one.sent()[-1] == f"api uuid_transfer {one.a} 2600 XML default"
    # `2`: hangup
    two = press("2")
    assert two.sent()[-1] == f"api uuid_kill {two.a} NORMAL_CLEARING"
    eventually(lambda: simulator.channel(two.a) is None)
    # `_`: a digit with no branch plays the prompt again
    three = press("9")
    plays = [c for c in three.sent() if "execute-app-name: playback" in c or c.endswith(";loops=2")]
    assert len(plays) == 2


def test_barge_in_a_digit_during_the_prompt_answers_the_menu(call, simulator):
    long_prompt = "tone_stream://%(1000,1000,440);loops=100"  # 200 s (10 s at the simulator's speed)
    run = call.flow({"module": "play", "data": {"id": long_prompt, "leg": "self"}, "children": {"_": {
        "module": "collect_dtmf", "data": {"timeout": 3000},
        "children": {"1": setvar("eslchan_menu", "one"), "_": setvar("eslchan_menu", "none")}}}})
    eventually(lambda: run.waiting and simulator.channel(call.a).app == "playback")
    simulator.press_dtmf(call.a, "1")
    assert finished(run) == "finished"
    assert simulator.channel(call.a).variables["eslchan_menu"] == "one"
    assert call.sent()[1] == f"api uuid_break {call.a}"  # the prompt was cut short


def test_no_barge_in_without_terminators(call, simulator):
    prompt = "tone_stream://%(1000,1000,440);loops=3"  # 6 s (0.3 s at the simulator's speed)
    run = call.flow({"module": "play", "data": {"id": prompt, "leg": "self", "terminators": []},
                     "children": {"_": {"module": "collect_dtmf", "data": {"timeout": 100},
                                        "children": {"5": setvar("eslchan_menu", "five")}}}})
    eventually(lambda: run.waiting)
    simulator.press_dtmf(call.a, "5")  # typed ahead: kept for the menu, the prompt plays on
    assert finished(run) == "finished"
    assert simulator.channel(call.a).variables["eslchan_menu"] == "five"
    assert not any("uuid_break" in c for c in call.sent())


def test_a_hangup_mid_run_ends_it_cleanly_without_leaking_greenlets(call, simulator, daemon):
    for _ in range(2):  # warm up lazily created greenlets
        finished(Call(daemon, simulator).flow({"module": "sleep", "data": {"duration": 0}}))
    before = live_greenlets()
    run = call.flow({"module": "collect_dtmf", "data": {"timeout": 60000},
                     "children": {"_": {"module": "hangup"}}})
    eventually(lambda: run.current_module == "collect_dtmf" and run.waiting)
    assert daemon.interpreter.runs(call.a) == [run]
    simulator.hangup(call.a)
    assert finished(run) == "channel_gone"
    assert run.error is None
    assert [r.state for r in daemon.interpreter.runs(call.a)] == ["channel_gone"]  # remembered
    eventually(lambda: simulator.channel(call.b) is None)
    gevent.sleep(0.2)
    gc.collect()
    assert live_greenlets() <= before
    assert not daemon.interpreter._streams  # no subscription left behind either


def test_runs_are_listed_and_stopped(call, daemon):
    run = call.flow({"module": "sleep", "data": {"duration": 30}})
    eventually(lambda: run.waiting)
    listed = daemon.interpreter.runs(call.a)
    assert [r.id for r in listed] == [run.id]
    info = run.as_dict()
    assert info["state"] == "running" and info["current"]["module"] == "sleep"
    assert daemon.interpreter.stop(run.id) is True
    assert run.state == "stopped"
    assert [(r.id, r.state) for r in daemon.interpreter.runs(call.a)] == [(run.id, "stopped")]
    assert daemon.interpreter.stop(run.id) is False  # over: nothing to stop


def test_freeswitch_errors_reach_the_caller(call, simulator):
    simulator.fail_next("-ERR simulated failure")
    with pytest.raises(CommandRejected):
        call.action(action="break")


def test_peer_actions_on_an_unbridged_channel_are_state_errors(daemon, simulator):
    lone = Call(daemon, simulator, bridged=False)
    with pytest.raises(StateError):
        lone.action(action="transfer", target="2600", leg="peer")
    with pytest.raises(StateError):
        lone.action(action="transfer", target="2600", takeback_dtmf="*1")
    with pytest.raises(StateError):
        lone.action(action="move", device_id="dev2")
    assert lone.sent() == []


def test_unhold_is_kazoos_post_action_declared_in_its_schema(call, simulator):
    call.action(action="hold", unhold_key="")
    assert call.channel.is_onhold or eventually(lambda: call.channel.is_onhold)
    assert call.daemon.interpreter.modules.get("unhold").source == "builtin"
    call.action(action="unhold")
    assert call.sent()[-1] == f"api uuid_hold off {call.a}"
    eventually(lambda: not call.channel.is_onhold)
