"""Kazoo's quickcall, the bridge module and the supervisor's eavesdrop, over real HTTP against
the daemon on the simulator: what each sends FreeSWITCH, what the call then does, and every
field a hostile tenant sends refused with nothing reaching the switch."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from conftest import eventually, wait_for
from tenants import Tenant, account_policy, no_hook_ran, refused, settle, with_accounts  # noqa: F401
from test_calls_http import ORIGINATE, Crm

from eslchan.config import QuickcallConfig
from eslchan.demo import ACME, GLOBEX, demo_config

pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("no_hook_ran")]

DEVICE = "de000000000000000000000000000a01"
USER = "5e000000000000000000000000000a01"
DESK = "de000000000000000000000000000a09"
QUICKCALL = QuickcallConfig(
    device="user/{id}@acme.example",
    user="user/{id}@acme.example",
    devices=((DESK, "sofia/gateway/pbx2/1009"),),
)


@pytest.fixture
def daemon_config(simulator, keys):
    config = demo_config([("fs1", simulator.host, simulator.port, "ClueCon")], keys, listen="127.0.0.1:0")
    return with_accounts(
        config,
        ACME={
            "context": "acme",
            "realm": "acme.example",
            "endpoints": ("user/*@acme.example",),
            "quickcall": QUICKCALL,
        },
        GLOBEX={"context": "globex", "realm": "globex.example", "quickcall": QUICKCALL},
    )


@pytest.fixture
def crm(simulator, daemon, http):
    for phone in (DEVICE, USER, "1001", "sup1"):
        simulator.register(phone)
    simulator.add_gateway("pbx2")
    return Crm(simulator, daemon, http)


def quickcall(crm, kind, entity, number, method="GET", query="", body=None, account=ACME):
    path = f"/v2/accounts/{account}/{kind}s/{entity}/quickcall/{quote(number, safe='')}"
    if query:
        path += "?" + query
    return crm.http.request(method, path, body, token=crm.token)


# --- quickcall ------------------------------------------------------------------------------------


def test_device_quickcall_rings_the_device_then_calls_the_number_through_the_account_s_context(
    simulator, daemon, crm
):
    resp = quickcall(crm, "device", DEVICE, "(555) 010-0200", query="cid-name=Sales&cid-number=5550100")
    assert resp.status == 202, resp.body
    data = resp.json["data"]
    uuid = data["uuid"]
    assert resp.headers["location"] == f"/v2/accounts/{ACME}/channels/{uuid}"
    ((variables, endpoint, then),) = crm.originates()
    assert endpoint == f"user/{DEVICE}@acme.example"
    assert then == "5550100200 XML acme"  # number_filter took the punctuation out; the account's context
    assert variables == {
        "origination_uuid": uuid,
        "originate_timeout": "30",
        "origination_caller_id_name": "'Device QuickCall'",
        "origination_caller_id_number": "5550100200",
        "origination_callee_id_name": "Sales",
        "origination_callee_id_number": "5550100",
        "sip_auto_answer": "true",
        "eslchan_account_id": ACME,
        "eslchan_authorizing_id": DEVICE,
        "eslchan_authorizing_type": "device",
    }
    ch = eventually(lambda: (c := daemon.registry.find(uuid)) is not None and c.answered and c)
    assert (ch.authorizing_id, ch.authorizing_type) == (DEVICE, "device")
    # once answered the device's leg runs NUMBER in the account's context, showing cid-name/number
    eventually(
        lambda: (
            (s := simulator.channel(uuid)) is not None
            and s.context == "acme"
            and s.caller_id_name == "Sales"
            and s.caller_id_number == "5550100"
        )
    )
    listed = crm.get(f"/devices/{DEVICE}/channels").json["data"]
    assert [r["uuid"] for r in listed] == [uuid]


def test_user_quickcall_post_waits_for_the_channel_and_takes_options_from_the_body(simulator, daemon, crm):
    body = {
        "data": {
            "cid-name": "Support",
            "timeout": 20,
            "auto_answer": False,
            "custom_application_vars": {"eslchan_campaign": "spring"},
        }
    }
    resp = quickcall(crm, "user", USER, "2600", method="POST", body=body, query="eslchan_source=crm")
    assert resp.status == 202, resp.body
    data = resp.json["data"]
    assert data["owner_id"] == USER and data["authorizing_type"] == "user" and data["answer_state"]
    ((variables, endpoint, then),) = crm.originates()
    assert endpoint == f"user/{USER}@acme.example" and then == "2600 XML acme"
    assert variables["originate_timeout"] == "20" and "sip_auto_answer" not in variables
    assert variables["eslchan_owner_id"] == USER and variables["eslchan_campaign"] == "spring"
    assert variables["eslchan_source"] == "crm" and variables["origination_callee_id_name"] == "Support"


def test_a_device_of_the_table_rings_its_own_endpoint(simulator, crm):
    resp = quickcall(crm, "device", DESK, "2600", method="POST")
    assert resp.status == 202, resp.body
    ((_, endpoint, _),) = crm.originates()
    assert endpoint == "sofia/gateway/pbx2/1009"


def test_quickcall_of_an_unregistered_phone_post_is_a_502_get_a_202(simulator, crm):
    simulator.register(DEVICE, "unregistered")
    body = refused(quickcall(crm, "device", DEVICE, "2600", method="POST"), 502)
    assert body["data"]["text"] == "-ERR USER_NOT_REGISTERED"
    resp = quickcall(crm, "device", DEVICE, "2600")  # Kazoo's non-blocking GET: the job was taken
    assert resp.status == 202 and resp.json["data"]["answer_state"] is None
    runs = eventually(lambda: [r for r in crm.get("/metaflows").json["data"] if r["state"] == "failed"][1:])
    assert all(r["notes"]["hangup_cause"] == "USER_NOT_REGISTERED" for r in runs)


def test_quickcall_knows_only_the_devices_the_configuration_names(simulator, daemon, http, crm):
    daemon.app.config["ESLCHAN"] = with_accounts(
        daemon.app.config["ESLCHAN"],
        ACME={"context": "acme", "quickcall": QuickcallConfig(devices=((DESK, "sofia/gateway/pbx2/1009"),))},
    )
    assert refused(quickcall(crm, "device", DEVICE, "2600"), 404)["data"] == [DEVICE]
    assert refused(quickcall(crm, "user", USER, "2600"), 404)["data"] == [USER]
    assert crm.originates() == []


HOSTILE_QUICKCALLS = [
    ("number", "2600@globex.example", "", 403, "realms"),
    ("number", "${system(id)}", "", 400, None),
    ("number", "2600\napi system id", "", 400, None),
    ("number", "2600 XML default", "number_filter=false", 400, None),
    ("number", "{api_on_answer=x}2600", "", 400, None),
    ("number", "&bridge(x)", "", 400, None),
    ("cid-name", "x", "cid-name=it%27s", 400, None),
    ("cid-name", "x", "cid-name=a%7Dsofia/gateway/evil/1%2C%7Bb", 400, None),
    ("cid-number", "x", "cid-number=1%2Capi_on_answer%3Dx", 400, None),
    ("timeout", "x", "timeout=2", 400, None),
    ("timeout", "x", "timeout=1e9", 400, None),
    ("auto_answer", "x", "auto_answer=maybe", 400, None),
    ("cav", "x", "api_hangup_hook=system%20id", 403, "variables"),
    ("cav", "x", "Execute_On_Answer=system%20id", 403, "variables"),
    ("cav", "x", "eslchan_account_id=acc00000000000000000000000000003", 403, "tenancy"),
    ("cav", "x", "eslchan_x=%24%7Bsystem(id)%7D", 400, None),
    ("cav", "x", "bad%20name=x", 400, None),
    ("media", "x", "media=bypass", 400, None),
    ("target", "x", "target_call_id=00000000-0000-4000-8000-000000000000", 404, None),
    ("target", "x", "target_call_id=nope", 400, None),
]


@pytest.mark.parametrize(
    "field,number,query,status,rule",
    HOSTILE_QUICKCALLS,
    ids=[f"{f}-{i}" for i, (f, *_) in enumerate(HOSTILE_QUICKCALLS)],
)
def test_every_quickcall_option_is_attacked_and_nothing_reaches_the_switch(
    simulator, crm, field, number, query, status, rule
):
    refused(
        quickcall(crm, "device", DEVICE, number if field == "number" else "2600", query=query), status, rule
    )
    settle()
    assert crm.originates() == [] and not simulator.channels()


@pytest.mark.parametrize("entity", ["a,b", "x}", "a b", "../x", "x" * 65])
def test_a_hostile_device_id_is_refused(simulator, crm, entity):
    resp = quickcall(crm, "device", quote(entity, safe=""), "2600")
    assert resp.status in (400, 404), resp.body
    settle()
    assert crm.originates() == []


def test_quickcall_through_a_context_the_policy_does_not_allow_is_refused(simulator, daemon, crm):
    daemon.app.config["ESLCHAN"] = with_accounts(
        daemon.app.config["ESLCHAN"],
        ACME={"context": "acme", "quickcall": QUICKCALL, "policy": account_policy(contexts=("default",))},
    )
    refused(quickcall(crm, "device", DEVICE, "2600"), 403, "contexts")
    assert crm.originates() == []


def test_a_tenant_quickcalls_only_in_its_own_accounts(simulator, crm):
    refused(quickcall(crm, "device", DEVICE, "2600", account=GLOBEX), 403)
    assert crm.originates() == []


def test_a_quickcall_link_may_carry_its_token(simulator, crm):
    path = f"/v2/accounts/{ACME}/devices/{DEVICE}/quickcall/2600?auth_token={crm.token}"
    assert crm.http.get(path).status == 202
    refused(crm.http.request("POST", path), 401)  # a POST carries its token in a header


# --- bridge ---------------------------------------------------------------------------------------


def action(crm, uuid, **data):
    return crm.http.request(
        "POST", f"/v2/accounts/{crm.account}/channels/{uuid}", {"data": data}, token=crm.token
    )


def test_bridge_two_calls_of_the_account(simulator, daemon, http, crm):
    one = Tenant(simulator, daemon, http, ACME, bridged=False)
    two = Tenant(simulator, daemon, http, ACME, bridged=False)
    resp = action(crm, one.a, action="bridge", other_leg=two.a)
    assert resp.status == 200, resp.body
    assert resp.json["data"]["reply"] == f"+OK {two.a}"
    eventually(
        lambda: (
            daemon.registry.find(one.a).other_leg == two.a and daemon.registry.find(two.a).other_leg == one.a
        )
    )
    run = eventually(
        lambda: (r := daemon.interpreter.get(resp.json["data"]["id"])) and r.state != "running" and r
    )
    assert run.state == "finished" and run.notes == {"bridged_to": two.a}
    # once bridged to each other, another bridge of the two is refused
    assert refused(action(crm, one.a, action="bridge", other_leg=two.a), 400)  # already bridged


def test_bridge_refusals_say_why_and_send_nothing(simulator, daemon, http, crm):
    one = Tenant(simulator, daemon, http, ACME, bridged=False)
    foreign = Tenant(simulator, daemon, http, GLOBEX, bridged=False)
    ringing = simulator.create_call(account_id=ACME, answered=False, bridged=False)
    also_ringing = simulator.create_call(account_id=ACME, answered=False, bridged=False)
    eventually(lambda: daemon.registry.find(ringing.a_uuid) and daemon.registry.find(also_ringing.a_uuid))
    mark = len(simulator.commands)
    cases = [
        (one.a, 400, "itself"),
        (foreign.a, 404, None),  # another tenant's call is one that does not exist
        ("00000000-0000-4000-8000-000000000000", 404, None),
        ("not-a-uuid", 400, None),
        (f"{one.a} {foreign.a}", 400, None),
    ]
    for other, status, words in cases:
        body = refused(action(crm, one.a, action="bridge", other_leg=other), status)
        if words:
            assert words in str(body["data"])
        if status == 404:
            assert body["data"] == [other]
    body = refused(action(crm, ringing.a_uuid, action="bridge", other_leg=also_ringing.a_uuid), 400)
    assert "neither call is answered" in str(body["data"])
    settle()
    assert [c for c in simulator.commands[mark:] if "uuid_bridge" in c] == []
    # another tenant may not bridge the account's call to its own
    globex = Crm(simulator, daemon, http, GLOBEX)
    body = refused(action(globex, foreign.a, action="bridge", other_leg=one.a), 404)
    assert body["data"] == [one.a]


# --- eavesdrop ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode,flags", [("listen", "listen"), ("whisper", "whisper"), ("barge", "three_way")])
def test_a_supervisor_listens_whispers_or_barges(simulator, daemon, http, crm, mode, flags):
    call = Tenant(simulator, daemon, http, ACME)
    resp = action(crm, call.a, action="eavesdrop", supervisor_id="sup1", mode=mode)
    assert resp.status == 200, resp.body
    new_leg = resp.json["data"]["result"]["new_leg"]
    ((variables, endpoint, then),) = crm.originates()
    assert endpoint == "user/sup1" and then == f"&eavesdrop({call.a})"
    assert variables["eavesdrop_enable_dtmf"] == "true" and variables["eslchan_account_id"] == ACME
    whisper = {k: v for k, v in variables.items() if k.startswith("eavesdrop_whisper")}
    assert (
        whisper
        == {
            "listen": {},
            "whisper": {"eavesdrop_whisper_bleg": "true"},
            "barge": {"eavesdrop_whisper_aleg": "true", "eavesdrop_whisper_bleg": "true"},
        }[mode]
    )
    eventually(lambda: (s := simulator.channel(new_leg)) is not None and s.eavesdrop is not None)
    assert simulator.channel(new_leg).eavesdrop.mode == flags
    # the supervisor's leg is the account's: listed, and its runs the account's
    assert eventually(lambda: any(r["uuid"] == new_leg for r in crm.get("/channels").json["data"]))
    # the supervisor switches with the phone's keys, as FreeSWITCH's eavesdrop allows
    simulator.press_dtmf(new_leg, "3")
    assert wait_for(lambda: simulator.channel(new_leg).eavesdrop.mode == "three_way")
    simulator.press_dtmf(new_leg, "0")
    assert wait_for(lambda: simulator.channel(new_leg).eavesdrop.mode == "listen")
    simulator.press_dtmf(new_leg, "*")
    assert wait_for(lambda: simulator.channel(new_leg) is None)
    assert simulator.channel(call.a) is not None  # the call listened to goes on


def test_eavesdrop_from_an_endpoint_of_the_account_in_a_metaflow(simulator, daemon, http, crm):
    call = Tenant(simulator, daemon, http, ACME)
    resp = call.put(
        {"module": "eavesdrop", "data": {"endpoint": "user/1001@acme.example", "mode": "whisper"}}
    )
    assert resp.status == 202, resp.body
    ((variables, endpoint, _),) = eventually(crm.originates)
    assert endpoint == "user/1001@acme.example" and variables["eavesdrop_whisper_bleg"] == "true"


HOSTILE_EAVESDROPS = [
    ({"endpoint": "user/1001@globex.example"}, 403, "endpoints"),
    ({"endpoint": "sofia/gateway/evil/1"}, 403, "endpoints"),
    ({"endpoint": "user/1001@acme.example,user/1@globex.example"}, 400, None),
    ({"endpoint": "{api_on_answer=x}user/1001@acme.example"}, 400, None),
    ({"supervisor_id": "sup1@globex.example"}, 403, "realms"),
    ({"supervisor_id": "sup1}"}, 400, None),
    ({"supervisor_id": "sup1 &system(id)"}, 400, None),
    ({"supervisor_id": "sup1", "mode": "three_way"}, 400, None),
    ({"supervisor_id": "sup1", "mode": "listen\napi system id"}, 400, None),
    ({"supervisor_id": "sup1", "supervisor_type": "number"}, 400, None),
    ({"supervisor_id": "sup1", "endpoint": "user/1001@acme.example"}, 400, None),  # one or the other
    ({"supervisor_id": "sup1", "timeout": 0}, 400, None),
    ({}, 400, None),
]


@pytest.mark.parametrize(
    "data,status,rule",
    HOSTILE_EAVESDROPS,
    ids=[f"{next(iter(d), 'none')}-{i}" for i, (d, _, _) in enumerate(HOSTILE_EAVESDROPS)],
)
def test_every_eavesdrop_field_is_attacked_and_nothing_reaches_the_switch(
    simulator, daemon, http, crm, data, status, rule
):
    call = Tenant(simulator, daemon, http, ACME)
    refused(action(crm, call.a, action="eavesdrop", **data), status, rule)
    settle()
    assert call.sent() == [] and crm.originates() == []


def test_a_tenant_cannot_listen_to_another_s_call(simulator, daemon, http, crm):
    foreign = Tenant(simulator, daemon, http, GLOBEX)
    assert refused(action(crm, foreign.a, action="eavesdrop", supervisor_id="sup1"), 404)["data"] == [
        foreign.a
    ]
    assert crm.originates() == []


def test_originate_commands_parse(simulator, crm):
    """The test's own reading of an originate line: a comma inside a quoted value stays."""
    m = ORIGINATE.match("bgapi originate {a=1,b='x\\,y z'}user/1 &park()")
    assert m.group(2) == "user/1" and m.group(3) == "&park()"
