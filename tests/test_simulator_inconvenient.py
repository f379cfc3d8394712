"""Where FreeSWITCH 1.10.12 is inconvenient and the simulator must be too (esl-captures 16-18,
FreeSWITCH's sources): missing modules, queued applications racing a bridge, held legs that
read no DTMF, digit bindings, hold toggled by callstate, media that uuid_break cannot stop.
Raw ESL over TCP, no eslchan code besides the frame parser."""

from __future__ import annotations

import json

import gevent
import pytest
from simulator_client import EslClient

from eslchan.simulator import Simulator

pytestmark = pytest.mark.timeout(60)

A = "22222222-aaaa-4bbb-8ccc-00000000000a"
B = "22222222-aaaa-4bbb-8ccc-00000000000b"
T = "22222222-aaaa-4bbb-8ccc-00000000000c"
RINGBACK = "tone_stream://%(1000,1000,440);loops=-1"


def _client(sim: Simulator) -> EslClient:
    c = EslClient(sim.port)
    assert c.cmd("event plain ALL").reply_text == "+OK event listener enabled plain"
    return c


@pytest.fixture
def sim(quiet_simulator):
    return quiet_simulator


@pytest.fixture
def esl(sim):
    c = _client(sim)
    yield c
    c.close()


def execute(esl: EslClient, uuid: str, app: str, arg: str = "", **headers: str) -> str:
    h = {"call-command": "execute", "execute-app-name": app, **headers}
    if arg:
        h["execute-app-arg"] = arg
    return esl.cmd(f"sendmsg {uuid}", h).reply_text


def answered_call(esl: EslClient, uuid: str, ext: str = "esl_answer") -> None:
    assert esl.api(f"originate {{origination_uuid={uuid}}}loopback/{ext}/default &park") == f"+OK {uuid}\n"
    esl.wait_event("CHANNEL_PARK", uuid=uuid)


def of(esl: EslClient, uuid: str, name: str, **match: str) -> list[dict]:
    return [e for e in esl.events if e.get("Unique-ID") == uuid and e["Event-Name"] == name
            and all(e.get(k) == v for k, v in match.items())]


# --- modules ------------------------------------------------------------------------------------

def test_the_recorded_servers_modules_by_default(esl):
    assert esl.api("module_exists mod_dptools") == "true"
    assert esl.api("module_exists mod_say_en") == "true"
    for missing in ("mod_flite", "mod_soundtouch", "mod_say_de", "no_such_module"):
        assert esl.api(f"module_exists {missing}") == "false"
    assert esl.api("show application soundtouch") == "\n0 total.\n"
    assert esl.api("show application soundtouch as json") == '{"row_count": 0}\n'
    playback = json.loads(esl.api("show application playback as json"))
    assert playback["row_count"] == 1
    assert list(playback["rows"][0]) == ["name", "description", "syntax", "ikey"]
    assert playback["rows"][0]["ikey"] == "mod_dptools"
    apis = {r["name"] for r in json.loads(esl.api("show api as json"))["rows"]}
    assert {"uuid_break", "uuid_hold", "module_exists", "originate"} <= apis
    assert "soundtouch" not in apis
    kinds = {(r["type"], r["name"]) for r in json.loads(esl.api("show interfaces as json"))["rows"]}
    assert ("say", "en") in kinds and ("application", "speak") in kinds
    assert not any(kind == "speech" for kind, _ in kinds)  # no TTS engine at all
    assert esl.api("soundtouch 1 2") == "-ERR soundtouch Command not found!\n"


def test_loaded_modules_are_configurable():
    with Simulator(speed=50, heartbeat_interval=3600,
                   modules={"mod_commands", "mod_dptools", "mod_loopback", "mod_soundtouch",
                            "mod_flite"}) as sim:
        c = _client(sim)
        try:
            assert c.api("module_exists mod_soundtouch") == "true"
            rows = json.loads(c.api("show interfaces as json"))["rows"]
            assert {"type": "speech", "name": "flite", "ikey": "mod_flite"} in rows
        finally:
            c.close()
    with pytest.raises(ValueError):
        Simulator(modules={"mod_nonsense"})


def test_an_application_no_module_provides_hangs_the_call_up(sim, esl):
    """esl-captures 16: sendmsg soundtouch without mod_soundtouch."""
    answered_call(esl, A)
    twin = esl.wait_event("CHANNEL_CREATE", uuid=None)  # the -b leg came first
    assert execute(esl, A, "soundtouch", "0s 0o 1.5p 1r 1t") == "+OK"
    hangup = esl.wait_event("CHANNEL_HANGUP", uuid=A)
    assert hangup["Hangup-Cause"] == "DESTINATION_OUT_OF_ORDER"
    other = esl.wait_event("CHANNEL_HANGUP", uuid=twin["Unique-ID"])
    assert other["Hangup-Cause"] == "DESTINATION_OUT_OF_ORDER"
    esl.wait_event("CHANNEL_DESTROY", uuid=A)
    assert not of(esl, A, "CHANNEL_EXECUTE", Application="soundtouch")
    assert esl.api(f"uuid_exists {A}") == "false"


def test_an_invalid_application_in_a_dialplan_hangs_up_too(sim, esl):
    assert esl.api(f"originate {{origination_uuid={A}}}loopback/esl_answer/default &soundtouch(1p)") \
        == f"+OK {A}\n"
    assert esl.wait_event("CHANNEL_HANGUP", uuid=A)["Hangup-Cause"] == "DESTINATION_OUT_OF_ORDER"


def test_speak_without_a_tts_engine_says_nothing_and_completes_as_none(sim, esl):
    answered_call(esl, A)
    execute(esl, A, "speak", "flite|slt|hello")
    done = esl.wait_event("CHANNEL_EXECUTE_COMPLETE", uuid=A)
    assert (done["Application"], done["Application-Response"]) == ("speak", "_none_")
    gevent.sleep(0.1)
    assert not of(esl, A, "PLAYBACK_START")


def test_speak_with_the_engine_loaded_plays():
    with Simulator(speed=50, heartbeat_interval=3600,
                   modules={"mod_commands", "mod_dptools", "mod_loopback", "mod_flite"}) as sim:
        c = _client(sim)
        try:
            answered_call(c, A)
            execute(c, A, "speak", "flite|kal|Hello there")
            start = c.wait_event("PLAYBACK_START", uuid=A)
            assert start["Playback-File-Path"].startswith("speak:")
            done = c.wait_event("CHANNEL_EXECUTE_COMPLETE", uuid=A)
            assert done["Application-Response"] == "_none_"
        finally:
            c.close()


def test_say_without_sound_files_plays_nothing(sim, esl):
    answered_call(esl, A)
    execute(esl, A, "say", "en number pronounced 42")
    done = esl.wait_event(lambda e: e["Event-Name"] == "CHANNEL_EXECUTE_COMPLETE"
                          and e["Application"] == "say", uuid=A)
    assert done["Application-Response"] == "_none_"
    assert not of(esl, A, "PLAYBACK_START")


def test_say_with_sound_files_plays():
    with Simulator(speed=50, heartbeat_interval=3600, sound_files=True) as sim:
        c = _client(sim)
        try:
            answered_call(c, A)
            execute(c, A, "say", "en number pronounced 42")
            c.wait_event("PLAYBACK_START", uuid=A)
            # a language with no say module plays nothing, even with sound files
            execute(c, A, "say", "de number pronounced 42")
            c.wait_event(lambda e: e["Event-Name"] == "CHANNEL_EXECUTE_COMPLETE"
                         and e.get("Application-Data", "").startswith("de"), uuid=A)
            assert len(of(c, A, "PLAYBACK_START")) == 1
        finally:
            c.close()


# --- queued applications and the bridge ----------------------------------------------------------

def test_a_queued_execute_waits_for_the_channels_thread():
    with Simulator(speed=50, heartbeat_interval=3600, execute_pickup=0.2) as sim:
        c = _client(sim)
        try:
            answered_call(c, A)
            execute(c, A, "set", "queued=1")
            assert c.api(f"uuid_getvar {A} queued") == "_undef_"  # not picked up yet
            c.wait_event(lambda e: e["Event-Name"] == "CHANNEL_EXECUTE_COMPLETE"
                         and e["Application"] == "set", uuid=A)
            assert c.api(f"uuid_getvar {A} queued") == "1"
            # its PRIVATE_COMMAND comes once it ran, as FreeSWITCH's parse_next_event fires it
            names = c.names(A)
            assert names.index("PRIVATE_COMMAND") > names.index("CHANNEL_EXECUTE_COMPLETE")
        finally:
            c.close()


def test_a_bridge_within_the_pickup_window_runs_first_and_the_app_lands_inside_it():
    """esl-captures 18, the losing case: the ringback queued on A starts after CHANNEL_BRIDGE
    and, being an endless_playback, keeps A's digits unread inside the bridge."""
    with Simulator(speed=50, heartbeat_interval=3600, execute_pickup=0.05) as sim:
        c = _client(sim)
        try:
            answered_call(c, A)
            answered_call(c, T, "esl_answer_att")
            execute(c, A, "endless_playback", RINGBACK)
            assert c.api(f"uuid_bridge {A} {T}") == f"+OK {T}\n"
            bridge = c.wait_event("CHANNEL_BRIDGE", uuid=A)
            start = c.wait_event("PLAYBACK_START", uuid=A)
            assert int(start["Event-Sequence"]) > int(bridge["Event-Sequence"])
            assert c.api(f"uuid_recv_dtmf {A} *1") == f"+OK {A} received DTMF *1.\n"
            gevent.sleep(0.3)
            assert not of(c, A, "DTMF")
            # only a call-control event ends it: uuid_break starts the file over
            c.api(f"uuid_break {A} all")
            c.wait_event(lambda e: e["Event-Name"] == "PLAYBACK_START"
                         and int(e["Event-Sequence"]) > int(start["Event-Sequence"]), uuid=A)
        finally:
            c.close()


def test_breaking_the_queue_before_the_bridge_keeps_the_bridge_clean():
    with Simulator(speed=50, heartbeat_interval=3600, execute_pickup=0.05) as sim:
        c = _client(sim)
        try:
            answered_call(c, A)
            answered_call(c, T, "esl_answer_att")
            execute(c, A, "endless_playback", RINGBACK)
            c.api(f"uuid_break {A} all")  # flushes what the thread has not picked up yet
            c.api(f"uuid_bridge {A} {T}")
            c.wait_event("CHANNEL_BRIDGE", uuid=A)
            c.api(f"uuid_recv_dtmf {A} *1")
            assert [e["DTMF-Digit"] for e in [c.wait_event("DTMF", uuid=A)]] == ["*"]
            gevent.sleep(0.2)
            assert not of(c, A, "PLAYBACK_START")
            assert [e["DTMF-Digit"] for e in of(c, A, "DTMF")] == ["*", "1"]
        finally:
            c.close()


def test_a_playback_with_loops_reads_digits_and_uuid_break_ends_its_loops(sim, esl):
    answered_call(esl, A)
    execute(esl, A, "playback", "tone_stream://%(1000,0,440)", loops="1000")
    esl.wait_event("PLAYBACK_START", uuid=A)
    esl.api(f"uuid_recv_dtmf {A} 5")
    assert esl.wait_event("DTMF", uuid=A)["DTMF-Digit"] == "5"
    esl.api(f"uuid_break {A}")
    done = esl.wait_event(lambda e: e["Event-Name"] == "CHANNEL_EXECUTE_COMPLETE"
                          and e["Application"] == "playback", uuid=A)
    assert done["Application-Response"] == "FILE PLAYED"
    gevent.sleep(0.1)
    assert len(of(esl, A, "PLAYBACK_START")) == 1


# --- hold and DTMF -------------------------------------------------------------------------------

def bridged_pair(esl: EslClient) -> None:
    answered_call(esl, A)
    answered_call(esl, B, "esl_answer_2")
    assert esl.api(f"uuid_bridge {A} {B}") == f"+OK {B}\n"
    esl.wait_event("CHANNEL_BRIDGE", uuid=A)


def test_a_held_leg_reads_no_dtmf_and_the_peer_hears_the_hold_music(sim, esl):
    """esl-captures 17."""
    bridged_pair(esl)
    esl.api(f"uuid_setvar {A} hold_music tone_stream://%(300,300,350);loops=-1")
    assert esl.api(f"uuid_hold {A}") == "+OK Success\n"
    esl.wait_event("CHANNEL_HOLD", uuid=A)
    music = esl.wait_event("PLAYBACK_START", uuid=B)
    assert music["Playback-File-Path"] == "tone_stream://%(300,300,350);loops=-1"
    assert esl.api(f"uuid_recv_dtmf {A} 1") == f"+OK {A} received DTMF 1.\n"
    gevent.sleep(0.3)
    assert not of(esl, A, "DTMF")
    # a loopback leg never reaches callstate HELD: toggle holds again, off fails
    assert esl.api(f"uuid_hold toggle {A}") == "+OK Success\n"
    gevent.sleep(0.05)
    assert len(of(esl, A, "CHANNEL_HOLD")) == 2
    assert esl.api(f"uuid_hold off {A}") == "-ERR Operation failed\n"
    assert sim.channel(A).callstate == "ACTIVE"
    assert not of(esl, A, "DTMF")


def test_a_digit_binding_fires_on_a_held_leg(sim, esl):
    bridged_pair(esl)
    execute(esl, A, "bind_digit_action", "test,5,exec[H]:set,held_key=pressed")
    esl.wait_event(lambda e: e["Event-Name"] == "CHANNEL_EXECUTE_COMPLETE"
                   and e["Application"] == "bind_digit_action", uuid=A)
    esl.api(f"uuid_hold {A}")
    esl.wait_event("CHANNEL_HOLD", uuid=A)
    esl.api(f"uuid_recv_dtmf {A} 5")
    ran = esl.wait_event(lambda e: e["Event-Name"] == "CHANNEL_EXECUTE"
                         and e["Application"] == "set", uuid=A)
    assert ran["Application-Data"] == "held_key=pressed"
    assert esl.api(f"uuid_getvar {A} held_key") == "pressed"
    assert not of(esl, A, "DTMF")  # the binding took the digit


def test_digits_a_binding_does_not_match_go_round_again(sim, esl):
    answered_call(esl, A)
    execute(esl, A, "bind_digit_action", "test,*1,api:uuid_setvar," + f"{A} took_back yes")
    esl.wait_event(lambda e: e["Event-Name"] == "CHANNEL_EXECUTE_COMPLETE"
                   and e["Application"] == "bind_digit_action", uuid=A)
    esl.api(f"uuid_recv_dtmf {A} 7")
    assert esl.wait_event("DTMF", uuid=A)["DTMF-Digit"] == "7"
    esl.api(f"uuid_recv_dtmf {A} *1")
    assert sim.wait_until(lambda: sim.channel(A).variables.get("took_back") == "yes")
    assert [e["DTMF-Digit"] for e in of(esl, A, "DTMF")] == ["7"]
    execute(esl, A, "clear_digit_action", "test")
    esl.wait_event(lambda e: e["Event-Name"] == "CHANNEL_EXECUTE_COMPLETE"
                   and e["Application"] == "clear_digit_action", uuid=A)
    esl.api(f"uuid_recv_dtmf {A} *")
    esl.wait_event(lambda e: e["Event-Name"] == "DTMF" and e["DTMF-Digit"] == "*", uuid=A)


def test_sip_legs_unhold_and_the_waiting_digits_are_read_then(sim, esl):
    call = sim.create_call()
    esl.wait_event("CHANNEL_BRIDGE", uuid=call.a_uuid)
    esl.api(f"uuid_hold {call.a_uuid}")
    esl.wait_event(lambda e: e["Event-Name"] == "PLAYBACK_START"
                   and e["Playback-File-Path"] == "local_stream://moh", uuid=call.b_uuid)
    esl.api(f"uuid_recv_dtmf {call.a_uuid} 9")
    gevent.sleep(0.2)
    assert not of(esl, call.a_uuid, "DTMF")
    assert esl.api(f"uuid_hold off {call.a_uuid}") == "+OK Success\n"
    esl.wait_event("CHANNEL_UNHOLD", uuid=call.a_uuid)
    assert esl.wait_event("DTMF", uuid=call.a_uuid)["DTMF-Digit"] == "9"
    esl.wait_event("PLAYBACK_STOP", uuid=call.b_uuid)  # the music stops


def test_a_switch_without_its_core_database_lists_nothing():
    with Simulator(speed=50, heartbeat_interval=3600, core_db=False) as sim:
        c = _client(sim)
        try:
            assert c.api("show interfaces as json") == "-ERR SQL disabled, no data available!\n"
            assert c.api("module_exists mod_dptools") == "true"
        finally:
            c.close()


def test_a_star_stops_a_playback_unless_the_terminators_say_otherwise(sim, esl):
    """mod_dptools' on_dtmf: playback_terminators defaults to *."""
    answered_call(esl, A)
    execute(esl, A, "playback", "tone_stream://%(1000,0,440);loops=100")
    esl.wait_event("PLAYBACK_START", uuid=A)
    esl.api(f"uuid_recv_dtmf {A} 5")
    esl.wait_event("DTMF", uuid=A)
    gevent.sleep(0.05)
    assert not of(esl, A, "PLAYBACK_STOP")
    esl.api(f"uuid_recv_dtmf {A} *")
    assert esl.wait_event("PLAYBACK_STOP", uuid=A)["Playback-Status"] == "break"
    assert esl.api(f"uuid_getvar {A} playback_terminator_used") == "*"
    esl.api(f"uuid_setvar {A} playback_terminators none")
    execute(esl, A, "playback", "tone_stream://%(1000,0,440);loops=100")
    esl.wait_event(lambda e: e["Event-Name"] == "PLAYBACK_START" and len(of(esl, A, "PLAYBACK_START")) == 2,
                   uuid=A)
    esl.api(f"uuid_recv_dtmf {A} *")
    esl.wait_event(lambda e: e["Event-Name"] == "DTMF" and len(of(esl, A, "DTMF")) == 3, uuid=A)
    gevent.sleep(0.05)
    assert len(of(esl, A, "PLAYBACK_STOP")) == 1  # the second plays on
