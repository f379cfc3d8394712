"""A tenant's calls go where its policy allows and nowhere else: the contexts and dialplans of
a transfer, the realms and endpoints of intercept and move, the stored callflows, the other
legs a module touches, the recordings it writes and plays. Real HTTP to the daemon on the
simulator; what reached the simulator is checked after each refusal."""

from __future__ import annotations

from dataclasses import replace

import pytest
from conftest import eventually, wait_for
from tenants import (
    Tenant,
    account_policy,
    no_hook_ran,  # noqa: F401 (a fixture)
    refused,
    settle,
    with_accounts,
)

from eslchan.config import MetaflowConfig
from eslchan.demo import ACME, ACME_SALES, GLOBEX, demo_config

pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("no_hook_ran")]

RECORDINGS = "/var/lib/freeswitch/recordings"


@pytest.fixture
def simulator():
    """A switch with a TTS engine and mod_soundtouch, so the modules that need them send their
    commands and the policy judges those too."""
    from eslchan.simulator import Simulator
    from eslchan.simulator.interfaces import DEFAULT_MODULES

    sim = Simulator(speed=20.0, modules=DEFAULT_MODULES | {"mod_flite", "mod_soundtouch"})
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def daemon_config(simulator, keys, tmp_path):
    for name in ("vip", "voicemail"):
        (tmp_path / f"{name}.json").write_text('{"module": "send_dtmf", "data": {"digits": "7"}}')
    (tmp_path / "escape.json").write_text(
        '{"module": "transfer", "data": {"target": "2600", "context": "globex"}}')
    metaflow = MetaflowConfig(
        media={"welcome": "tone_stream://%(400,200,523);loops=2"}, callflows_dir=tmp_path,
        allowed_media_schemes=("tone_stream", "file"),
        media_path_prefixes=("/usr/share/freeswitch/sounds/", RECORDINGS + "/"),
        dial_templates={"device": "user/{id}", "user": "user/{id}", "number": "loopback/{number}/{context}"})
    config = demo_config([("fs1", simulator.host, simulator.port, "ClueCon")], keys, listen="127.0.0.1:0",
                         metaflow=metaflow)
    return with_accounts(
        config,
        ACME={"context": "acme", "realm": "acme.example",
              "policy": account_policy(contexts=("acme", "default"), callflows=("vip", "esc*"))},
        GLOBEX={"context": "globex", "realm": "globex.example"})


@pytest.fixture
def acme(simulator, daemon, http):
    return Tenant(simulator, daemon, http, ACME)


# --- transfer ----------------------------------------------------------------------------------

@pytest.mark.parametrize("data,rule,field", [
    ({"context": "globex"}, "contexts", "data.context"),            # another tenant's context
    ({"context": "public"}, "contexts", "data.context"),            # a context of the switch itself
    ({"dialplan": "inline"}, "allow_inline", "data.dialplan"),
    ({"dialplan": "INLINE", "context": "acme"}, "allow_inline", "data.dialplan"),
    ({"dialplan": "enum"}, "dialplans", "data.dialplan"),
    ({"target": "1001@globex.example"}, "realms", "data.target"),
    ({"target": "1001@acme.example@globex.example"}, "realms", "data.target"),
    ({"target": "2600", "transfer_type": "attended", "moh": "welcome", "leg": "self",
      "context": "acme", "dialplan": "XML"} | {"target": "1001@globex.example"}, "realms", "data.target"),
])
def test_a_transfer_outside_the_policy_sends_nothing(acme, data, rule, field):
    body = refused(acme.post(action="transfer", **{"target": "2600", **data}), 403, rule)
    assert field in body["data"]
    settle()
    assert acme.sent() == []
    assert acme.sim.channel(acme.a).destination != "2600"


def test_a_transfer_inside_the_policy_goes_through(acme, simulator, daemon, http):
    assert acme.post(action="transfer", target="2600").status == 200  # the account's own context
    assert acme.sent() == [f"api uuid_transfer {acme.a} 2600 XML acme"]
    other = Tenant(simulator, daemon, http, ACME)
    assert other.post(action="transfer", target="2601", context="default", leg="peer").status == 200
    assert other.sent() == [f"api uuid_transfer {other.a} -bleg 2601 XML default"]


def test_a_stored_callflow_is_judged_by_the_same_policy(acme):
    refused(acme.post(action="callflow", id="voicemail"), 403, "callflows")
    assert acme.post(action="callflow", id="vip").status == 200
    eventually(lambda: acme.sent() == [f"api uuid_send_dtmf {acme.a} 7"])
    body = refused(acme.post(action="callflow", id="escape"), 403, "contexts")
    assert list(body["data"]) == ["callflow:escape.data.context"]
    settle()
    assert acme.sent() == [f"api uuid_send_dtmf {acme.a} 7"]


# --- intercept and move ------------------------------------------------------------------------

@pytest.mark.parametrize("action", [
    {"action": "intercept", "target_type": "device", "target_id": "1001@globex.example"},
    {"action": "intercept", "target_type": "user", "target_id": "alice@sim.local.evil.example"},
    {"action": "intercept", "target_type": "number", "target_id": "2001@globex.example"},
    {"action": "move", "device_id": "desk@globex.example"},
    {"action": "move", "owner_id": "bob@otherdomain.example"},
])
def test_intercept_and_move_cannot_ring_another_domain(acme, action):
    if action["action"] == "intercept":
        action = {**action, "unbridged_only": False}
    refused(acme.post(**action), 403, "realms")
    settle()
    assert acme.sent() == []


def test_a_number_is_dialled_in_the_accounts_own_context(simulator, daemon, http):
    lone = Tenant(simulator, daemon, http, ACME, bridged=False)
    assert lone.post(action="intercept", target_type="number", target_id="2001").status == 200
    eventually(lambda: lone.sent())
    assert lone.sent()[0].endswith(f"}}loopback/2001/acme &intercept({lone.a})")


def test_intercept_and_move_ring_the_accounts_own_realms(acme, simulator):
    assert acme.post(action="move", device_id="desk@acme.example").status == 200
    eventually(lambda: acme.sent())
    assert acme.sent()[0].endswith(f"}}user/desk@acme.example &intercept({acme.b})")
    lone = Tenant(simulator, acme.daemon, acme.http, ACME, bridged=False)
    # the call's own domain (its presence id's) is the account's too
    assert lone.post(action="intercept", target_type="device", target_id="phone@sim.local").status == 200
    eventually(lambda: lone.sent())
    assert lone.sent()[0].endswith(f"}}user/phone@sim.local &intercept({lone.a})")


# --- other tenants' legs -------------------------------------------------------------------------

@pytest.fixture
def cross(simulator, daemon, http):
    """An Acme call whose far end is a Globex leg (the switch bridged two tenants' calls)."""
    acme = Tenant(simulator, daemon, http, ACME, bridged=False)
    globex = Tenant(simulator, daemon, http, GLOBEX, bridged=False)
    assert simulator.api(f"uuid_bridge {acme.a} {globex.a}").startswith("+OK")
    eventually(lambda: daemon.registry.find(acme.a).other_leg == globex.a)
    acme.mark = len(simulator.commands)
    return acme, globex


@pytest.mark.parametrize("action", [
    {"action": "play", "id": "welcome", "leg": "peer"},
    {"action": "play", "id": "welcome", "leg": "both"},
    {"action": "tts", "text": "hello", "leg": "peer"},
    {"action": "transfer", "target": "2600", "leg": "peer"},
    {"action": "transfer", "target": "2600", "leg": "both"},
    {"action": "transfer", "target": "2600", "transfer_type": "attended"},
    {"action": "park"},
    {"action": "hold", "moh_aleg": "welcome"},
    {"action": "move", "device_id": "desk"},
])
def test_a_module_cannot_touch_the_other_tenants_leg(cross, simulator, action):
    acme, globex = cross
    body = refused(acme.post(**action), 403, "channels")
    settle()
    assert not [c for c in acme.sent() if globex.a in c], acme.sent()
    assert simulator.channel(globex.a) is not None
    assert body["data"]


def test_the_other_tenant_cannot_act_on_the_call_through_its_own_leg(cross, http):
    acme, globex = cross
    body = refused(globex.post(action="transfer", target="2600", leg="peer"), 403, "channels")
    assert body["data"]
    refused(http.request("POST", acme.base, {"data": {"action": "hangup"}}, token=http.token(GLOBEX)), 403)


def test_a_parent_account_reaches_its_sub_accounts_legs(simulator, daemon, http):
    acme = Tenant(simulator, daemon, http, ACME, bridged=False)
    sales = Tenant(simulator, daemon, http, ACME_SALES, bridged=False)
    assert simulator.api(f"uuid_bridge {acme.a} {sales.a}").startswith("+OK")
    eventually(lambda: daemon.registry.find(acme.a).other_leg == sales.a)
    assert acme.post(action="play", id="welcome", leg="peer", wait=False).status == 200
    eventually(lambda: any(c.startswith(f"sendmsg {sales.a}") for c in acme.sent()))


# --- recordings --------------------------------------------------------------------------------

def test_two_tenants_recording_under_the_same_name_write_two_files(simulator, daemon, http):
    acme = Tenant(simulator, daemon, http, ACME)
    globex = Tenant(simulator, daemon, http, GLOBEX)
    one = acme.put({"module": "record_call", "data": {"action": "start", "media_name": "board"}})
    two = globex.put({"module": "record_call", "data": {"action": "start", "media_name": "board"}})
    assert one.status == two.status == 202
    assert one.json["data"]["notes"]["recording"] == f"{RECORDINGS}/{ACME}/board.wav"
    assert two.json["data"]["notes"]["recording"] == f"{RECORDINGS}/{GLOBEX}/board.wav"
    eventually(lambda: simulator.channel(acme.a).recordings and simulator.channel(globex.a).recordings)
    assert list(simulator.channel(acme.a).recordings) == [f"{RECORDINGS}/{ACME}/board.wav"]
    assert list(simulator.channel(globex.a).recordings) == [f"{RECORDINGS}/{GLOBEX}/board.wav"]


@pytest.mark.parametrize("name", ["../globex/board", f"../{GLOBEX}/board", "/etc/passwd", "a/b", ".."])
def test_a_recording_name_cannot_leave_the_accounts_directory(acme, name):
    refused(acme.post(action="record_call", media_name=name), 400)
    settle()
    assert acme.sent() == []


def test_another_tenants_recording_cannot_be_played(simulator, daemon, http, acme):
    theirs = f"{RECORDINGS}/{GLOBEX}/board.wav"
    for attack in ({"action": "play", "id": theirs}, {"action": "hold", "moh_bleg": theirs},
                   {"action": "transfer", "target": "2600", "transfer_type": "attended", "moh": theirs},
                   {"action": "play", "id": f"file://{theirs}"}):
        refused(acme.post(**attack), 403, "recordings")
    settle()
    assert acme.sent() == []
    mine = f"{RECORDINGS}/{ACME}/board.wav"
    assert acme.post(action="play", id=mine, wait=False, leg="self").status == 200
    assert acme.sent() == [f"sendmsg {acme.a}\n{mine}"]


# --- what the switch received: nothing outside the policy ----------------------------------------

def test_every_module_sends_only_what_the_policy_allows(simulator, daemon, http):
    """Run every built-in module for Acme, then read the simulator's command log with an
    oracle of its own (not the guard): every channel is one of the call's legs or one the
    run originated, every variable is under eslchan_ or eslchan's own, every transfer goes to
    an allowed context, every recording to Acme's directory, no command is not about a call."""
    acme = Tenant(simulator, daemon, http, ACME)
    lone = Tenant(simulator, daemon, http, ACME, bridged=False)
    flows = [
        (acme, {"module": "set_variable", "data": {"name": "eslchan_a", "value": "1"}}),
        (acme, {"module": "collect_dtmf", "data": {"timeout": 50, "collection_name": "eslchan_pin"}}),
        (acme, {"module": "play", "data": {"id": "welcome", "wait": False}}),
        (acme, {"module": "tts", "data": {"text": "hello"}}),
        (acme, {"module": "say", "data": {"text": "42"}}),
        (acme, {"module": "audio_level", "data": {"level": 2}}),
        (acme, {"module": "sound_touch", "data": {"pitch": 1.2}}),
        (acme, {"module": "send_dtmf", "data": {"digits": "1"}}),
        (acme, {"module": "record_call", "data": {"action": "start", "media_name": "all", "label": "x y"}}),
        (acme, {"module": "hold_control", "data": {"action": "hold"}}),
        (acme, {"module": "resume"}),
        (acme, {"module": "callflow", "data": {"id": "vip"}}),
        (acme, {"module": "break"}),
        (acme, {"module": "park"}),
        (acme, {"module": "resume"}),
        (lone, {"module": "intercept", "data": {"target_type": "number", "target_id": "2001"}}),
        (acme, {"module": "transfer", "data": {"target": "noanswer", "transfer_type": "attended",
                                               "timeout": 1}}),
    ]
    for tenant, tree in flows:
        resp = tenant.put(tree)
        assert resp.status == 202, (tree, resp.json)
        run = resp.json["data"]["id"]
        done = lambda t=tenant, r=run: all(  # noqa: E731
            x["id"] != r or x["state"] != "running"
            for x in t.http.get(f"{t.base}/metaflows", token=t.token).json["data"])
        assert wait_for(done, 15), tree
    legs = {acme.a, acme.b, lone.a}
    originated = set()
    sent = acme.sent()
    assert len(sent) > 20
    for command in sent:
        words = command.split()
        if "origination_uuid=" in command:
            originated.add(command.split("origination_uuid=")[1][:36])
        tokens = command.replace("(", " ").replace(")", " ").split()
        uuids = {w for w in tokens if len(w) == 36 and w.count("-") == 4}
        assert uuids <= legs | originated, command
        if words[:2] == ["api", "uuid_setvar"]:
            assert words[3].startswith("eslchan_") or words[3] in {"park_after_bridge", "hold_music"}, command
        if words[:2] == ["api", "uuid_transfer"]:
            assert command.endswith((" XML acme", " XML default", " park inline")), command
        if "loopback/" in command:  # a dialled number starts in an allowed context
            assert command.split("loopback/")[1].split()[0].split("/")[1] in ("acme", "default"), command
        if words[:2] == ["api", "uuid_record"] and words[3] == "start":
            assert words[4].startswith(f"{RECORDINGS}/{ACME}/"), command
        assert words[0] in ("api", "bgapi", "sendmsg") and (words[0] == "sendmsg" or words[1].startswith(
            ("uuid_", "originate"))), command
    assert not [h for h in simulator.hooks if h.kind == "code"]


def test_an_account_without_a_policy_of_its_own_keeps_the_defaults(simulator, daemon, http):
    sales = Tenant(simulator, daemon, http, ACME_SALES)  # no context of its own: the default one
    assert sales.post(action="transfer", target="2600").status == 200
    refused(sales.post(action="transfer", target="2600", context="acme"), 403, "contexts")
    assert sales.sent() == [f"api uuid_transfer {sales.a} 2600 XML default"]


def test_inline_is_the_operators_to_give(simulator, keys):
    from tenants import Tenant as T

    from eslchan.daemon import Daemon

    config = demo_config([("fs1", simulator.host, simulator.port, "ClueCon")], keys, listen="127.0.0.1:0")
    config = with_accounts(config, ACME={"policy": account_policy(allow_inline=True)})
    daemon = Daemon(replace(config))
    daemon.start()
    try:
        eventually(lambda: daemon.links["fs1"].is_up)
        from conftest import HttpClient

        http = HttpClient(*daemon.http_address, keys)
        acme = T(simulator, daemon, http, ACME)
        assert acme.post(action="transfer", target="park", dialplan="inline").status == 200
        assert acme.sent() == [f"api uuid_transfer {acme.a} park inline default"]
        globex = T(simulator, daemon, http, GLOBEX)
        refused(globex.post(action="transfer", target="park", dialplan="inline"), 403, "allow_inline")
    finally:
        daemon.stop(drain_seconds=0.5)


# --- every string field of every module ----------------------------------------------------------

THEIRS = f"{RECORDINGS}/{GLOBEX}/board.wav"
FIELDS = [  # (module, data, status, rule for a 403)
    ("transfer", {"target": "1001@globex.example"}, 403, "realms"),
    ("transfer", {"target": "2600\n\napi system id"}, 400, None),
    ("transfer", {"target": "2600", "dialplan": "inline"}, 403, "allow_inline"),
    ("transfer", {"target": "2600", "dialplan": "XML orig"}, 400, None),
    ("transfer", {"target": "2600", "context": "globex"}, 403, "contexts"),
    ("transfer", {"target": "2600", "context": "${system(id)}"}, 400, None),
    ("transfer", {"target": "2600", "moh": THEIRS}, 403, "recordings"),
    ("transfer", {"target": "2600", "ringback": THEIRS}, 403, "recordings"),
    ("transfer", {"target": "2600", "takeback_dtmf": "*1 x"}, 400, None),
    ("play", {"id": THEIRS}, 403, "recordings"),
    ("play", {"id": "/etc/shadow"}, 400, None),
    ("play", {"id": "/usr/share/freeswitch/sounds/a.wav::system"}, 400, None),
    ("tts", {"text": "${system(id)}"}, 400, None),
    ("tts", {"text": "hi", "engine": "tts_commandline|x"}, 400, None),
    ("tts", {"text": "hi", "voice": "slt\nx"}, 400, None),
    ("say", {"text": "42", "language": "en us"}, 400, None),
    ("say", {"text": "4 2"}, 400, None),
    ("hold", {"moh_aleg": THEIRS}, 403, "recordings"),
    ("hold", {"moh_bleg": THEIRS}, 403, "recordings"),
    ("hold", {"unhold_key": "1;2"}, 400, None),
    ("record_call", {"media_name": "../board"}, 400, None),
    ("record_call", {"media_name": "board", "label": "x\nFake-Header: y"}, 400, None),
    ("intercept", {"target_type": "device", "target_id": "1001@globex.example", "unbridged_only": False},
     403, "realms"),
    ("intercept", {"target_type": "device", "target_id": "u1,user/2", "unbridged_only": False}, 400, None),
    ("move", {"device_id": "desk@globex.example"}, 403, "realms"),
    ("move", {"owner_id": "bob{x=y}"}, 400, None),
    ("callflow", {"id": "voicemail"}, 403, "callflows"),
    ("callflow", {"id": "../../etc/passwd"}, 400, None),
    ("collect_dtmf", {"collection_name": "eslchan_owner_id"}, 403, "tenancy"),
    ("collect_dtmf", {"collection_name": "execute_on_answer"}, 403, "variables"),
    ("set_variable", {"name": "exec_after_bridge_app", "value": "x"}, 403, "variables"),
    ("set_variable", {"name": "eslchan_x", "value": "${system(id)}"}, 400, None),
    ("send_dtmf", {"digits": "1\n\napi system id"}, 400, None),
    ("hangup", {"cause": "NORMAL_CLEARING system"}, 400, None),
]


@pytest.mark.parametrize("module,data,status,rule", FIELDS,
                         ids=[f"{m}-{i}" for i, (m, *_) in enumerate(FIELDS)])
def test_every_string_field_of_every_module_refuses_what_it_must(acme, module, data, status, rule):
    for resp in (acme.post(action=module, **data), acme.put({"module": module, "data": data})):
        refused(resp, status, rule)
    settle()
    assert acme.sent() == []

