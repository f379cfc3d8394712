"""Every metaflow module through the REST API (PUT metaflow / POST action) against the daemon
on the simulator: the ESL commands FreeSWITCH received and the channel's resulting state."""

import json

import pytest
from conftest import eventually

from eslchan.config import MetaflowConfig
from eslchan.demo import ACME, demo_config
from eslchan.simulator import Simulator
from eslchan.simulator.interfaces import DEFAULT_MODULES

pytestmark = pytest.mark.timeout(90)

MEDIA = {"welcome": "tone_stream://%(400,200,523);loops=2", "media_id": "tone_stream://%(1000,4000,440)"}


@pytest.fixture
def simulator():
    """A switch with every module these tests use: a TTS engine, mod_soundtouch, sound files
    (the refusals without them are in test_metaflow_word.py)."""
    sim = Simulator(speed=20.0, modules=DEFAULT_MODULES | {"mod_flite", "mod_soundtouch"},
                    sound_files=True)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def daemon_config(simulator, keys, tmp_path):
    (tmp_path / "vip.json").write_text(json.dumps({"module": "send_dtmf", "data": {"digits": "7"}}))
    return demo_config([("fs1", simulator.host, simulator.port, "ClueCon")], keys, listen="127.0.0.1:0",
                       metaflow=MetaflowConfig(media=MEDIA, callflows_dir=tmp_path))


class Phone:
    """A call of the Acme account and the REST calls made about it."""

    def __init__(self, simulator, daemon, http, bridged=True):
        self.sim, self.daemon, self.http = simulator, daemon, http
        c = simulator.create_call(account_id=ACME, device_id="d" * 32, user_id="e" * 32, bridged=bridged)
        self.a, self.b = c.a_uuid, c.b_uuid
        eventually(lambda: (ch := daemon.registry.find(self.a)) is not None and ch.answered
                   and (ch.other_leg or not bridged))
        self.base = f"/v2/accounts/{ACME}/channels/{self.a}"
        self.mark = len(simulator.commands)

    def put(self, tree):
        return self.http.request("PUT", self.base, {"action": "metaflow", "data": tree},
                                 token=self.http.token(ACME))

    def post(self, **action):
        return self.http.request("POST", self.base, {"data": action}, token=self.http.token(ACME))

    def sent(self):
        """What FreeSWITCH received about the call (not the node's capability probe)."""
        return [c for c in self.sim.commands[self.mark:] if c.startswith(("api ", "bgapi ", "sendmsg "))
                and not c.startswith(("api show interfaces", "api module_exists"))]

    def detail(self):
        return self.http.get(self.base, token=self.http.token(ACME)).json["data"]

    def runs(self):
        return self.http.get(f"{self.base}/metaflows", token=self.http.token(ACME)).json["data"]


def sim_var(p, name):
    return lambda: (ch := p.sim.channel(p.a)) is not None and ch.variables.get(name)


# (module, how, body, bridged, expected commands ({a}/{b}: the legs), resulting state)
CASES = [
    ("hangup", "post", {"action": "hangup"}, True, ["api uuid_kill {a} NORMAL_CLEARING"],
     lambda p: p.sim.channel(p.a) is None),
    ("break", "put", {"module": "break"}, True, ["api uuid_break {a} all"], None),
    ("transfer", "post", {"action": "transfer", "target": "2600"}, True,
     ["api uuid_transfer {a} 2600 XML default"], lambda p: p.sim.channel(p.a).destination == "2600"),
    ("play", "put", {"module": "play", "data": {"id": "welcome", "leg": "self"}}, True,
     ["sendmsg {a}\ntone_stream://%(400,200,523);loops=2"], None),
    ("tts", "put", {"module": "tts", "data": {"text": "Your call matters", "terminators": ["#"]}}, True,
     ["sendmsg {a}\nflite|slt|Your call matters"], None),
    ("say", "put", {"module": "say", "data": {"text": "42", "method": "iterated"}}, True,
     ["sendmsg {a}\nen number iterated 42"], None),
    ("hold", "put", {"module": "hold", "data": {"unhold_key": ""}}, True, ["api uuid_hold {a}"],
     lambda p: p.detail()["is_onhold"]),
    ("hold_control", "put", {"module": "hold_control", "data": {"action": "hold"}}, True,
     ["api uuid_hold {a}"], lambda p: p.sim.channel(p.a).held),
    ("resume", "put", {"module": "hold_control", "data": {"action": "hold"},
                       "children": {"_": {"module": "resume"}}}, True,
     ["api uuid_hold {a}", "api uuid_hold off {a}"], lambda p: not p.sim.channel(p.a).held),
    ("park", "put", {"module": "park"}, True,
     ["api uuid_setvar {a} park_after_bridge true", "api uuid_setvar {b} park_after_bridge true",
      "api uuid_transfer {a} -both park inline"], lambda p: p.sim.channel(p.a).app == "park"),
    ("record_call", "put", {"module": "record_call", "data": {"media_name": "r1"}}, True,
     [f"api uuid_record {{a}} start /var/lib/freeswitch/recordings/{ACME}/r1.wav 3600"],
     lambda p: p.sim.channel(p.a).recordings),
    ("audio_level", "put", {"module": "audio_level", "data": {"level": 3}}, True,
     ["api uuid_audio {a} start read level 3"], lambda p: p.sim.channel(p.a).audio == {"read_level": 3}),
    ("intercept", "post", {"action": "intercept", "target_type": "number", "target_id": "2001"}, False,
     [r"bgapi originate {{origination_uuid=*}}loopback/2001/default &intercept({a})"],
     lambda p: p.detail()["other_leg"]),
    ("callflow", "post", {"action": "callflow", "id": "vip"}, True, ["api uuid_send_dtmf {a} 7"], None),
    ("move", "post", {"action": "move", "device_id": "desk"}, True,
     [r"bgapi originate {{origination_uuid=*}}user/desk &intercept({b})"],
     lambda p: p.sim.channel(p.a) is None),
    ("sound_touch", "put", {"module": "sound_touch", "data": {"pitch": 1.5}}, True,
     ["sendmsg {a}\n0s 0o 1.5p 1r 1t"], None),
    ("collect_dtmf", "put", {"module": "collect_dtmf",
                             "data": {"timeout": 50, "collection_name": "eslchan_x"},
                             "children": {"_": {"module": "send_dtmf", "data": {"digits": "0"}}}}, True,
     ["api uuid_send_dtmf {a} 0"], None),
    ("set_variable", "post", {"action": "set_variable", "name": "eslchan_vip", "value": "gold level"}, True,
     ["api uuid_setvar {a} eslchan_vip gold level"], lambda p: sim_var(p, "eslchan_vip")() == "gold level"),
    ("send_dtmf", "post", {"action": "send_dtmf", "digits": "1#"}, True, ["api uuid_send_dtmf {a} 1#"], None),
    ("sleep", "put", {"module": "sleep", "data": {"duration": 0.05},
                      "children": {"_": {"module": "break"}}}, True, ["api uuid_break {a} all"], None),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_module_over_http(simulator, daemon, http, case):
    module, how, body, is_bridged, expected, state = case
    simulator.register("desk")  # the phone move rings is registered
    p = Phone(simulator, daemon, http, bridged=is_bridged)
    if how == "post":
        resp = p.post(**body)
        assert resp.status == 200, resp.json
        assert resp.json["data"]["action"] == body["action"]
    else:
        resp = p.put(body)
        assert resp.status == 202, resp.json
    want = [e.format(a=p.a, b=p.b) for e in expected]
    eventually(lambda: len(p.sent()) >= len(want))
    got = p.sent()[:len(want)]
    for w, g in zip(want, got, strict=True):
        if "*" in w:
            head, tail = w.split("*", 1)
            assert g.startswith(head) and g.endswith(tail.split("}", 1)[1]), (w, g)
        else:
            assert g == w
    if state is not None:
        eventually(lambda: state(p))


def test_three_level_flow_over_http(simulator, daemon, http):
    tree = {"module": "play", "data": {"id": "welcome", "leg": "self"}, "children": {"_": {
        "module": "collect_dtmf", "data": {"timeout": 4000},
        "children": {"1": {"module": "transfer", "data": {"target": "2600"}},
                     "2": {"module": "hangup"},
                     "_": {"module": "play", "data": {"id": "welcome", "leg": "self"}}}}}}
    p = Phone(simulator, daemon, http)
    resp = p.put(tree)
    assert resp.status == 202
    eventually(lambda: any(r["current"]["module"] == "collect_dtmf" and r["waiting"] for r in p.runs()))
    simulator.press_dtmf(p.a, "2")
    eventually(lambda: simulator.channel(p.a) is None)
    assert p.sent()[-1] == f"api uuid_kill {p.a} NORMAL_CLEARING"


def test_validation_errors_and_hostile_values_over_http(simulator, daemon, http):
    p = Phone(simulator, daemon, http)
    resp = p.put({"module": "play", "data": {"id": "welcome"},
                  "children": {"_": {"module": "transfer", "data": {}}}})
    assert resp.status == 400
    assert resp.json["data"] == {"children._.data.target": {"required": {
        "message": "Field is required but missing"}}}
    resp = p.post(action="transfer")
    assert resp.status == 400 and resp.json["data"] == {"data.target": {"required": {
        "message": "Field is required but missing"}}}
    for bad in ("2600\napi system id", "${system(id)}", "{a=b}2600", "a b", "it's"):
        assert p.post(action="transfer", target=bad).status == 400
        assert p.put({"module": "set_variable", "data": {"name": bad, "value": "x"}}).status == 400
        assert p.put({"module": "tts", "data": {"text": "hi", "voice": bad}}).status == 400
    assert p.put({"module": "nosuch"}).status == 400
    assert p.sent() == []


def test_kazoo_nested_metaflow_body(simulator, daemon, http):
    p = Phone(simulator, daemon, http)
    resp = http.request("PUT", p.base, {"action": "metaflow", "data": {"data": {"module": "hangup"}}},
                        token=http.token(ACME))
    assert resp.status == 202, resp.json
    eventually(lambda: simulator.channel(p.a) is None)


def test_attended_transfer_kazoo_example_over_http(simulator, daemon, http):
    p = Phone(simulator, daemon, http)
    resp = p.post(action="transfer", target="2600", takeback_dtmf="*1", moh="media_id")
    assert resp.status == 200, resp.json
    eventually(lambda: any(c.startswith("bgapi originate") for c in p.sent()))
    assert f"sendmsg {p.b}\ntone_stream://%(1000,4000,440)" in p.sent()
    eventually(lambda: p.detail()["other_leg"] not in (None, p.b))
    simulator.press_dtmf(p.a, "*1")
    eventually(lambda: p.detail()["other_leg"] == p.b)


def test_state_error_is_a_400_naming_why(simulator, daemon, http):
    p = Phone(simulator, daemon, http, bridged=False)
    resp = p.post(action="transfer", target="2600", leg="peer")
    assert resp.status == 400
    assert "bridged" in json.dumps(resp.json["data"])
    assert p.sent() == []


def test_put_metaflow_answers_the_first_nodes_state_error_as_a_400(simulator, daemon, http):
    p = Phone(simulator, daemon, http, bridged=False)
    resp = p.put({"module": "transfer", "data": {"target": "2600", "leg": "peer"},
                  "children": {"_": {"module": "hangup", "data": {}}}})
    assert resp.status == 400
    assert resp.json["message"] == "validation error"
    assert "bridged" in json.dumps(resp.json["data"])
    assert p.sent() == []
    assert simulator.channel(p.a) is not None  # the hangup child never ran


def test_put_metaflow_answers_freeswitch_errors_as_a_502(simulator, daemon, http):
    p = Phone(simulator, daemon, http)
    simulator.fail_next("-ERR simulated failure")
    resp = p.put({"module": "hangup", "data": {}})
    assert resp.status == 502
    assert resp.json["data"]["text"].startswith("-ERR simulated failure")
