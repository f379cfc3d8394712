"""Every metaflow module keeps its word on a switch as inconvenient as the real one: the
failures seen against FreeSWITCH 1.10.12 (loopback calls, no TTS engine, no mod_soundtouch,
no sound files), each reproduced on the simulator, through the daemon over real TCP and, where
a caller would see it, real HTTP. Also: what a stopped run does to the media it started, and
the runs an operator can look back at."""

from __future__ import annotations

import uuid as uuidlib

import gevent
import pytest
from conftest import eventually
from test_metaflow_modules import Call, finished, setvar

from eslchan.demo import ACME, GLOBEX
from eslchan.esl import commands as esl
from eslchan.simulator.interfaces import DEFAULT_MODULES, Interfaces
from metaflow import CONTINUE, Unsupported

pytestmark = pytest.mark.timeout(60)


# --- loopback calls, as the real-switch runs used -------------------------------------------------

def loopback_call(sim, ext: str = "esl_answer", **variables: str) -> str:
    """An answered, parked loopback call of Acme's (the originate's own leg)."""
    uuid = str(uuidlib.uuid4())
    pairs = ",".join(f"{k}={v}" for k, v in {"origination_uuid": uuid, "eslchan_account_id": ACME,
                                               **variables}.items())
    assert sim.api(f"originate {{{pairs}}}loopback/{ext}/default &park") == f"+OK {uuid}\n"
    return uuid


class Pair:
    """Two loopback calls bridged with uuid_bridge: ``a`` (the one acted on) and ``b``."""

    def __init__(self, daemon, sim, **b_variables: str):
        self.daemon, self.sim = daemon, sim
        self.a = loopback_call(sim)
        self.b = loopback_call(sim, "esl_answer_2", **b_variables)
        assert sim.api(f"uuid_bridge {self.a} {self.b}") == f"+OK {self.b}\n"
        eventually(lambda: (ch := daemon.registry.find(self.a)) is not None and ch.other_leg == self.b)
        self.mark = len(sim.commands)

    @property
    def channel(self):
        return self.daemon.registry.find(self.a)

    def flow(self, tree):
        return self.daemon.interpreter.start(self.channel, tree, ACME)

    def action(self, **params):
        return self.daemon.interpreter.run_action(self.channel, params)

    def sent(self) -> list[str]:
        return Call.sent(self)  # type: ignore[arg-type]

    def alive(self) -> bool:
        return self.sim.channel(self.a) is not None and self.sim.channel(self.b) is not None


def events(sim, uuid: str, name: str) -> list:
    seen = []
    sim.switch.listeners.append(lambda ev: ev.unique_id == uuid and ev.name == name and seen.append(ev))
    return seen


def target_of(sent: list[str]) -> str:
    originate = next(c for c in sent if c.startswith("bgapi originate"))
    return originate.split("origination_uuid=", 1)[1][:36]


# --- attended transfer ----------------------------------------------------------------------------

def test_a_queued_ringback_never_lands_inside_the_bridge_and_takeback_works(daemon, simulator):
    """Issue 17.1: on a busy switch the channel's thread picks a queued execute up late; a
    target that answers at once used to be bridged first, the ringback then ran inside the
    bridge and the transferor's digits were never read."""
    simulator.switch.execute_pickup = 0.15
    pair = Pair(daemon, simulator)
    ringback_starts = events(simulator, pair.a, "PLAYBACK_START")
    run = pair.flow({"module": "transfer", "data": {"target": "2600", "takeback_dtmf": "*1"},
                     "children": {"takeback": setvar("eslchan_xfer", "taken_back")}})
    eventually(lambda: any(c.startswith("bgapi originate") for c in pair.sent()))
    target = target_of(pair.sent())
    eventually(lambda: (ch := simulator.channel(pair.a)) is not None and ch.other_leg == target)
    started = len(ringback_starts)
    gevent.sleep(0.3)
    assert len(ringback_starts) == started  # nothing plays inside the consultation
    assert simulator.api(f"uuid_recv_dtmf {pair.a} *1").startswith("+OK")
    assert finished(run) == "finished"
    assert run.notes["transfer_outcome"] == "takeback"
    eventually(lambda: simulator.channel(pair.a).other_leg == pair.b)
    eventually(lambda: simulator.channel(target) is None)
    assert pair.alive()
    assert simulator.channel(pair.a).variables["eslchan_xfer"] == "taken_back"


def test_the_transferor_hanging_up_completes_and_each_party_ends_only_its_own(daemon, simulator):
    """Issue 17.1: the transferor's hangup used to take the transferee down with it."""
    pair = Pair(daemon, simulator)
    run = pair.flow({"module": "transfer", "data": {"target": "2600", "transfer_type": "attended"}})
    eventually(lambda: any(c.startswith("bgapi originate") for c in pair.sent()))
    target = target_of(pair.sent())
    eventually(lambda: (ch := simulator.channel(pair.a)) is not None and ch.other_leg == target)
    simulator.api(f"uuid_kill {pair.a}")
    eventually(lambda: (ch := simulator.channel(pair.b)) is not None and ch.other_leg == target)
    assert finished(run) in ("finished", "channel_gone")
    assert run.notes["transfer_outcome"] == "completed"
    gevent.sleep(0.2)
    assert simulator.channel(pair.b) is not None and simulator.channel(target) is not None
    # park_after_bridge is the transferee's own again: the target's hangup ends the call
    assert "park_after_bridge" not in simulator.channel(pair.b).variables
    simulator.hangup(target)
    eventually(lambda: simulator.channel(pair.b) is None)


def test_an_unanswered_target_is_the_timeout_branch(daemon, simulator):
    """At the simulator's speed the originate gives up first (NO_ANSWER): that is still the
    target not answering in time, not a failure."""
    pair = Pair(daemon, simulator)
    run = pair.flow({"module": "transfer", "data": {"target": "noanswer", "transfer_type": "attended",
                                                   "timeout": 1},
                     "children": {"timeout": setvar("eslchan_xfer", "timeout"),
                                  "failed": setvar("eslchan_xfer", "failed")}})
    assert finished(run) == "finished"
    assert run.notes["transfer_outcome"] == "timeout"
    eventually(lambda: simulator.channel(pair.a).other_leg == pair.b)
    assert simulator.channel(pair.a).variables["eslchan_xfer"] == "timeout"


def test_the_transfers_own_timeout_decides(daemon, simulator):
    """At real speed FreeSWITCH rings the target a little longer than the module's timeout,
    so the module's own timer fires: it hangs the ringing target up itself."""
    simulator.switch.speed = 1.0
    pair = Pair(daemon, simulator)
    hangups: list = []
    simulator.switch.listeners.append(lambda ev: ev.name == "CHANNEL_HANGUP" and hangups.append(ev))
    run = pair.flow({"module": "transfer", "data": {"target": "noanswer", "transfer_type": "attended",
                                                   "timeout": 1},
                     "children": {"timeout": setvar("eslchan_xfer", "timeout")}})
    assert finished(run) == "finished"
    target = target_of(pair.sent())
    assert run.notes["transfer_outcome"] == "timeout"
    assert f"api uuid_kill {target} NORMAL_CLEARING" in pair.sent()
    eventually(lambda: simulator.channel(target) is None)
    causes = [ev.get("Hangup-Cause") for ev in hangups if ev.unique_id == target]
    assert causes == ["NORMAL_CLEARING"]  # eslchan's kill, not FreeSWITCH's NO_ANSWER
    assert simulator.channel(pair.a).variables["eslchan_xfer"] == "timeout"


# --- hold ---------------------------------------------------------------------------------------

def test_the_unhold_key_on_a_loopback_leg_ends_the_run_saying_why(daemon, simulator):
    """Issue 17.2: the held leg's DTMF is never read, and the run used to wait until the call
    ended. A loopback leg cannot be unheld at all: the run says so and the music stops."""
    pair = Pair(daemon, simulator)
    music_stops = events(simulator, pair.b, "PLAYBACK_STOP")
    run = pair.flow({"module": "hold", "data": {"unhold_key": "1"},
                     "children": {"_": setvar("eslchan_x", "y")}})
    eventually(lambda: pair.channel.is_onhold)
    eventually(lambda: simulator.channel(pair.b).broadcasting)  # the peer hears the music
    assert simulator.api(f"uuid_recv_dtmf {pair.a} 1").startswith("+OK")
    assert finished(run) == "failed"
    assert "callstate never became HELD" in run.error
    eventually(lambda: music_stops)
    assert pair.alive()
    assert f"api uuid_hold off {pair.a}" in pair.sent()


def test_stopping_a_hold_takes_the_call_off_hold(daemon, simulator):
    call = Call(daemon, simulator)  # SIP legs: FreeSWITCH can unhold them
    run = call.flow({"module": "hold", "data": {"unhold_key": "9"}})
    eventually(lambda: call.channel.is_onhold)
    daemon.interpreter.stop(run.id)
    assert run.state == "stopped"
    eventually(lambda: not call.channel.is_onhold)
    realm = f"eslchan_hold_{run.id[:12]}"
    assert f"sendmsg {call.a}\n{realm}" in call.sent()  # the binding is gone too


def test_hold_control_toggle_is_decided_from_the_known_state(daemon, simulator, http):
    """Issue 17.3: on a call held by hold_control, toggle held it again (loopback legs stay
    ACTIVE) and answered 202 without saying which way it went."""
    pair = Pair(daemon, simulator)
    holds = events(simulator, pair.a, "CHANNEL_HOLD")
    path = f"/v2/accounts/{ACME}/channels/{pair.a}"
    resp = http.request("POST", path, {"data": {"action": "hold_control"}}, token=http.token(ACME))
    assert resp.status == 200, resp.json
    assert resp.json["data"]["result"] == {"hold_action": "hold"}
    eventually(lambda: pair.channel.is_onhold)
    resp = http.request("POST", path, {"data": {"action": "hold_control"}}, token=http.token(ACME))
    # it went to unhold, which a loopback leg cannot do: FreeSWITCH's own answer, not a 2nd hold
    assert resp.status == 502, resp.json
    assert resp.json["data"]["text"] == "-ERR Operation failed"
    gevent.sleep(0.1)
    assert len(holds) == 1
    assert pair.sent()[-1] == f"api uuid_hold off {pair.a}"


def test_hold_control_reports_the_way_it_went(daemon, simulator):
    call = Call(daemon, simulator)
    assert call.action(action="hold_control")["result"] == {"hold_action": "hold"}
    eventually(lambda: call.channel.is_onhold)
    assert call.action(action="hold_control")["result"] == {"hold_action": "unhold"}
    eventually(lambda: not call.channel.is_onhold)


# --- missing modules ----------------------------------------------------------------------------

def test_tts_without_an_engine_is_a_502_naming_it_and_nothing_is_sent(daemon, simulator, http):
    """Issue 17.4: speak with no engine used to answer 200 and run the children."""
    pair = Pair(daemon, simulator)
    tree = {"module": "set_variable", "data": {"name": "eslchan_x", "value": "y"},
            "children": {"_": {"module": "tts", "data": {"text": "Hello"}}}}
    resp = http.request("PUT", f"/v2/accounts/{ACME}/channels/{pair.a}",
                        {"action": "metaflow", "data": tree}, token=http.token(ACME))
    assert resp.status == 502, resp.json
    assert resp.json["message"] == "freeswitch cannot"
    data = resp.json["data"]
    assert (data["missing"], data["module"], data["path"], data["node"]) == (
        "TTS engine flite (mod_flite)", "tts", "children._", "fs1")
    assert pair.sent() == []  # not even the first node ran


def test_sound_touch_without_its_module_leaves_the_call_alone(daemon, simulator, http):
    """Issue 17.5: the soundtouch application did not exist and FreeSWITCH hung the call up."""
    pair = Pair(daemon, simulator)
    resp = http.request("POST", f"/v2/accounts/{ACME}/channels/{pair.a}",
                        {"data": {"action": "sound_touch", "pitch": 1.5}}, token=http.token(ACME))
    assert resp.status == 502, resp.json
    assert resp.json["data"]["missing"] == "application soundtouch (mod_soundtouch)"
    assert pair.sent() == []
    gevent.sleep(0.2)
    assert pair.alive()


def test_every_execute_is_checked_whichever_module_sends_it(daemon, simulator):
    """Even a module that declares nothing cannot make FreeSWITCH hang the call up."""
    def pitch(ctx, data):
        ctx.send(esl.execute(ctx.arg_uuid(), "soundtouch", esl.free_text("1.5p")))
        return CONTINUE

    daemon.interpreter.modules.register("my_pitch", {"type": "object"}, pitch)
    pair = Pair(daemon, simulator)
    with pytest.raises(Unsupported):
        pair.action(action="my_pitch")
    assert pair.sent() == []
    gevent.sleep(0.2)
    assert pair.alive()


def test_capabilities_are_probed_once_per_connection(daemon, simulator):
    pair = Pair(daemon, simulator)
    for _ in range(3):
        with pytest.raises(Unsupported):
            pair.action(action="sound_touch")
    probes = [c for c in simulator.commands if c.startswith("api show interfaces")]
    assert len(probes) == 1
    # the operator loads mod_soundtouch: known after the next connection, not before
    simulator.switch.interfaces = Interfaces(DEFAULT_MODULES | {"mod_soundtouch"})
    with pytest.raises(Unsupported):
        pair.action(action="sound_touch")
    reconnected(daemon, simulator)
    assert pair.action(action="sound_touch", pitch=1.5)["reply"] == "+OK"
    eventually(lambda: any(c.endswith("0s 0o 1.5p 1r 1t") for c in simulator.commands))
    assert len([c for c in simulator.commands if c.startswith("api show interfaces")]) == 2


def reconnected(daemon, simulator) -> None:
    link = daemon.links["fs1"]
    connects = link.stats["connects"]
    simulator.drop_connections()
    eventually(lambda: link.is_up and link.stats["connects"] > connects, timeout=10)


def test_a_switch_without_its_core_database_is_asked_module_exists(daemon, simulator):
    simulator.switch.core_db = False  # show answers "-ERR SQL disabled"
    reconnected(daemon, simulator)
    pair = Pair(daemon, simulator)
    with pytest.raises(Unsupported):
        pair.action(action="tts", text="hi")
    assert "api module_exists mod_flite" in simulator.commands
    assert pair.action(action="play", id="welcome", leg="self")["reply"] == "+OK"
    assert "api module_exists mod_dptools" in simulator.commands


# --- set a variable, see it -----------------------------------------------------------------------

def test_a_variable_eslchan_set_shows_at_once(daemon, simulator, http):
    """Issue 17.7: the value showed only after the channel's next event."""
    pair = Pair(daemon, simulator)
    path = f"/v2/accounts/{ACME}/channels/{pair.a}"
    resp = http.request("POST", path, {"data": {"action": "set_variable", "name": "eslchan_note",
                                                 "value": "vip caller"}}, token=http.token(ACME))
    assert resp.status == 200, resp.json
    detail = http.get(path, token=http.token(ACME)).json["data"]
    assert detail["custom_channel_vars"]["note"] == "vip caller"
    # an event generated before the set (it still carries no value) does not take it back
    old = {"Event-Name": "CHANNEL_EXECUTE_COMPLETE", "Unique-ID": pair.a, "Core-UUID": "x",
           "Event-Sequence": "999999999", "variable_eslchan_account_id": ACME}
    daemon.registry.apply("fs1", old)
    assert daemon.registry.find(pair.a).custom["note"] == "vip caller"


# --- stopped runs stop their media ----------------------------------------------------------------

LONG = "tone_stream://%(1000,1000,440);loops=100"  # 200 s (10 s at the simulator's speed)


def playing(sim, uuid: str) -> bool:
    ch = sim.channel(uuid)
    return ch is not None and ch.broadcasting > 0


def test_deleting_a_run_stops_its_media_on_every_leg(daemon, simulator, http):
    """Issue 12.4: DELETE left the play (leg both) looping on the other leg."""
    call = Call(daemon, simulator)
    base = f"/v2/accounts/{ACME}/channels/{call.a}"
    resp = http.request("PUT", base, {"action": "metaflow", "data": {"module": "play", "data": {"id": LONG}}},
                        token=http.token(ACME))
    assert resp.status == 202, resp.json
    eventually(lambda: playing(simulator, call.a) and playing(simulator, call.b))
    resp = http.request("DELETE", f"{base}/metaflows/{resp.json['data']['id']}", token=http.token(ACME))
    assert resp.status == 200 and resp.json["data"]["state"] == "stopped"
    eventually(lambda: not playing(simulator, call.a) and not playing(simulator, call.b))
    assert {f"api uuid_break {call.a} all", f"api uuid_break {call.b} all"} <= set(call.sent())
    assert simulator.channel(call.a) is not None and simulator.channel(call.b) is not None


def test_a_run_whose_channel_is_gone_stops_its_media_elsewhere(daemon, simulator):
    elsewhere = loopback_call(simulator)

    def announce(ctx, data):  # media on another call, then wait on this one
        ctx.send(esl.execute(esl.uuid(elsewhere), "playback", esl.media(LONG)))
        ctx.wait_for({"DTMF"}, None)
        return CONTINUE

    daemon.interpreter.modules.register("announce", {"type": "object"}, announce)
    call = Call(daemon, simulator)
    run = call.flow({"module": "announce"})
    eventually(lambda: playing(simulator, elsewhere) and run.waiting)
    simulator.hangup(call.a)
    assert finished(run) == "channel_gone"
    eventually(lambda: not playing(simulator, elsewhere))
    assert simulator.channel(elsewhere) is not None


def test_a_run_that_finished_leaves_its_media_playing(daemon, simulator):
    call = Call(daemon, simulator)
    run = call.flow({"module": "play", "data": {"id": LONG, "wait": False}})
    assert finished(run) == "finished"
    gevent.sleep(0.2)
    assert playing(simulator, call.b)
    assert not any("uuid_break" in c for c in call.sent())


def test_draining_on_shutdown_stops_the_media_runs_started(daemon, simulator):
    call = Call(daemon, simulator)
    call.flow({"module": "play", "data": {"id": LONG}})
    eventually(lambda: playing(simulator, call.a) and playing(simulator, call.b))
    daemon.stop(drain_seconds=0.05)
    eventually(lambda: not playing(simulator, call.a) and not playing(simulator, call.b))


# --- runs an operator can look back at ------------------------------------------------------------

def test_a_finished_run_stays_readable_with_its_trail_after_the_call(daemon, simulator, http):
    """Issue 12.5: which IVR path a caller took, once the call is over."""
    call = Call(daemon, simulator)
    base = f"/v2/accounts/{ACME}/channels/{call.a}"
    menu = {"module": "collect_dtmf", "data": {"max_digits": 1, "timeout": 3000},
            "children": {"1": setvar("eslchan_menu", "sales"), "_": {"module": "hangup"}}}
    resp = http.request("PUT", base, {"action": "metaflow", "data": menu}, token=http.token(ACME))
    run_id = resp.json["data"]["id"]
    run = daemon.interpreter.get(run_id)
    eventually(lambda: run.waiting)
    simulator.press_dtmf(call.a, "1")
    assert finished(run) == "finished"
    listed = http.get(f"{base}/metaflows", token=http.token(ACME)).json["data"]
    assert [(r["id"], r["state"]) for r in listed] == [(run_id, "finished")]
    simulator.hangup(call.a)
    eventually(lambda: daemon.registry.find(call.a) is None)
    resp = http.get(f"/v2/accounts/{ACME}/metaflows/{run_id}", token=http.token(ACME))
    assert resp.status == 200, resp.json
    data = resp.json["data"]
    assert data["state"] == "finished" and data["error"] is None
    assert [(t["path"], t["module"], t["branch"], t["next"]) for t in data["trail"]] == [
        ("", "collect_dtmf", "1", "1"), ("children.1", "set_variable", "_", None)]
    assert data["notes"]["digits"] == "1"
    by_channel = http.get(f"/v2/accounts/{ACME}/metaflows?channel={call.a}", token=http.token(ACME))
    assert [r["id"] for r in by_channel.json["data"]] == [run_id]
    # the channel itself is gone, and another tenant cannot see the run
    assert http.get(f"{base}/metaflows", token=http.token(ACME)).status == 404
    foreign = http.get(f"/v2/accounts/{GLOBEX}/metaflows/{run_id}", token=http.token(GLOBEX))
    assert foreign.status == 404 and foreign.json["data"] == [run_id]
    assert run_id not in str(http.get(f"/v2/accounts/{GLOBEX}/metaflows", token=http.token(GLOBEX)).json)
    bad = http.get(f"/v2/accounts/{ACME}/metaflows?channel=x%0Ay", token=http.token(ACME))
    assert bad.status == 400 and "channel" in bad.json["data"]


def test_a_failed_run_says_where_and_why(daemon, simulator, http):
    call = Call(daemon, simulator)
    resp = http.request("PUT", f"/v2/accounts/{ACME}/channels/{call.a}",
                        {"action": "metaflow", "data": {"module": "sleep", "data": {"duration": 0},
                                                       "children": {"_": {"module": "say",
                                                                          "data": {"text": "42"}}}}},
                        token=http.token(ACME))
    run = daemon.interpreter.get(resp.json["data"]["id"])
    assert finished(run) == "failed"
    data = http.get(f"/v2/accounts/{ACME}/metaflows/{run.id}", token=http.token(ACME)).json["data"]
    assert [(t["module"], t["outcome"]) for t in data["trail"]] == [("sleep", "continue"), ("say", "failed")]
    assert "said nothing" in data["error"]
