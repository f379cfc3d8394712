"""Starting calls over real HTTP against the daemon on the simulator: PUT .../channels (ring,
answer, a metaflow on answer, FreeSWITCH's refusals, the node, the limits), the dial progress
on the event stream and in /metrics, and every field a hostile tenant sends refused with
nothing reaching the switch."""

from __future__ import annotations

import json
import re

import pytest
from conftest import eventually, wait_for
from tenants import Tenant, account_policy, no_hook_ran, refused, settle, with_accounts  # noqa: F401
from test_api_events import Sse

from eslchan.config import LinkOptions
from eslchan.demo import ACME, ACME_SALES, GLOBEX, demo_config

pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("no_hook_ran")]

ENDPOINTS = ("user/*@acme.example", "sofia/gateway/carrier1/*", "loopback/*/acme")
ORIGINATE = re.compile(r"^bgapi originate \{([^}]*)\}(\S+) (.+)$")


@pytest.fixture
def daemon_config(simulator, keys):
    config = demo_config(
        [("fs1", simulator.host, simulator.port, "ClueCon")],
        keys,
        listen="127.0.0.1:0",
        link=LinkOptions(backoff_initial=0.1, backoff_max=2.0, command_timeout=1.0),
    )
    return with_accounts(
        config,
        ACME={"context": "acme", "realm": "acme.example", "endpoints": ENDPOINTS},
        GLOBEX={"context": "globex", "realm": "globex.example"},
    )


class Crm:
    """An account's key starting calls, and what reached the switch since it began."""

    def __init__(self, simulator, daemon, http, account: str = ACME):
        self.sim, self.daemon, self.http, self.account = simulator, daemon, http, account
        self.mark = len(simulator.commands)

    @property
    def token(self) -> str:
        return self.http.token(self.account)

    def create(self, **data):
        return self.http.request(
            "PUT", f"/v2/accounts/{self.account}/channels", {"data": data}, token=self.token
        )

    def get(self, path: str):
        return self.http.get(f"/v2/accounts/{self.account}{path}", token=self.token)

    def originates(self) -> list[tuple[dict[str, str], str, str]]:
        """Each originate FreeSWITCH received: (its variables, endpoint, what the leg runs)."""
        out = []
        for line in self.sim.commands[self.mark :]:
            m = ORIGINATE.match(line)
            if m:
                variables = dict(p.split("=", 1) for p in re.split(r"(?<!\\),", m.group(1)))
                out.append((variables, m.group(2), m.group(3)))
        return out

    def run(self, run_id: str, done: bool = True) -> dict:
        def fetch():
            resp = self.get(f"/metaflows/{run_id}")
            return (
                resp.json["data"]
                if resp.status == 200 and (not done or resp.json["data"]["state"] != "running")
                else None
            )

        return eventually(fetch, timeout=10)


@pytest.fixture
def crm(simulator, daemon, http):
    simulator.register("1001")
    return Crm(simulator, daemon, http)


def channel_of(daemon, uuid):
    return daemon.registry.find(uuid)


# --- a call that rings, answers and runs a flow --------------------------------------------------


def test_a_crm_starts_a_call_sees_it_ring_and_answer_and_a_flow_runs_on_it(simulator, daemon, http, crm):
    simulator.switch.ring_seconds = 6.0  # 0.3 s of ringing at the simulator's speed
    host, port = daemon.http_address
    stream = Sse(host, port, f"/v2/accounts/{ACME}/events", token=crm.token)
    assert stream.status == 200
    flow = {"module": "set_variable", "data": {"name": "eslchan_greeted", "value": "yes"}}
    resp = crm.create(
        endpoint="user/1001@acme.example",
        caller_id_name="CRM Click",
        caller_id_number="5550100",
        timeout=20,
        owner_id="u1",
        custom_channel_vars={"eslchan_ticket": "T-1042"},
        metaflow=flow,
    )
    assert resp.status == 201, resp.body
    data = resp.json["data"]
    uuid = data["uuid"]
    assert resp.headers["location"] == f"/v2/accounts/{ACME}/channels/{uuid}"
    assert data["node"] == "fs1" and data["answered"] is False and data["answer_state"] == "ringing"
    assert data["owner_id"] == "u1" and data["custom_channel_vars"]["ticket"] == "T-1042"
    # exactly one originate, with eslchan's variables, the account's own and the tenant's one
    ((variables, endpoint, then),) = crm.originates()
    assert endpoint == "user/1001@acme.example" and then == "&park()"
    assert variables == {
        "origination_uuid": uuid,
        "originate_timeout": "20",
        "origination_caller_id_name": "'CRM Click'",
        "origination_caller_id_number": "5550100",
        "eslchan_account_id": ACME,
        "eslchan_owner_id": "u1",
        "eslchan_ticket": "T-1042",
    }
    # the stream shows it ring, then answer
    ring = stream.until(lambda m: m["json"]["uuid"] == uuid and m["event"] == "channel_progress")
    assert ring["json"]["channel"]["answer_state"] == "ringing"
    answer = stream.until(lambda m: m["json"]["uuid"] == uuid and m["event"] == "channel_answer")
    assert answer["json"]["channel"]["answer_state"] == "answered"
    stream.close()
    # the listing shows it answered; the flow ran on it once answered
    eventually(lambda: any(r["uuid"] == uuid and r["answered"] for r in crm.get("/channels").json["data"]))
    assert eventually(lambda: simulator.channel(uuid).variables.get("eslchan_greeted")) == "yes"
    run = crm.run(data["run_id"])
    assert (run["kind"], run["state"], run["notes"]["call"]) == ("originate", "finished", "answered")
    assert [step["module"] for step in run["trail"]] == ["originate", "set_variable"]
    assert run["tree"]["data"]["endpoint"] == "user/1001@acme.example"
    runs = crm.get(f"/channels/{uuid}/metaflows").json["data"]
    assert [r["id"] for r in runs] == [data["run_id"]]


def test_a_call_to_a_gateway_shows_early_media_then_the_answer(simulator, daemon, crm):
    simulator.add_gateway("carrier1")
    simulator.register("15551234567", "early")
    simulator.switch.ring_seconds = 6.0
    resp = crm.create(endpoint="sofia/gateway/carrier1/15551234567")
    assert resp.status == 201, resp.body
    uuid = resp.json["data"]["uuid"]
    assert eventually(
        lambda: (ch := channel_of(daemon, uuid)) and ch.answer_state == "early" and not ch.answered
    )
    eventually(lambda: channel_of(daemon, uuid).answered)
    assert crm.run(resp.json["data"]["run_id"])["notes"] == {"call": "answered"}


# --- FreeSWITCH's refusals and failures ----------------------------------------------------------


def test_an_unregistered_phone_is_a_502_with_freeswitch_s_text_and_no_channel(simulator, daemon, http, crm):
    resp = crm.create(endpoint="user/7101@acme.example")
    body = refused(resp, 502)
    assert body["data"]["text"] == "-ERR USER_NOT_REGISTERED" and body["data"]["node"] == "fs1"
    assert len(crm.originates()) == 1 and not simulator.channels()
    runs = crm.get("/metaflows").json["data"]
    assert runs[0]["kind"] == "originate" and runs[0]["state"] == "failed"
    assert runs[0]["notes"] == {"call": "failed", "hangup_cause": "USER_NOT_REGISTERED"}
    metrics = http.get("/metrics").body.decode()
    assert 'eslchan_originates_total{cause="USER_NOT_REGISTERED",outcome="failed"} 1.0' in metrics


@pytest.mark.parametrize(
    "behaviour,cause", [("busy", "USER_BUSY"), ("no_answer", "NO_ANSWER"), ("reject", "CALL_REJECTED")]
)
def test_a_call_that_never_answers_says_why_on_its_destroy_and_in_its_run(
    simulator, daemon, http, crm, behaviour, cause
):
    simulator.register("1002", behaviour)
    host, port = daemon.http_address
    stream = Sse(host, port, f"/v2/accounts/{ACME}/events?events=CHANNEL_DESTROY", token=crm.token)
    resp = crm.create(endpoint="user/1002@acme.example", timeout=1)
    assert resp.status == 201, resp.body  # FreeSWITCH created the channel: it rang
    uuid = resp.json["data"]["uuid"]
    gone = stream.until(lambda m: m["json"]["uuid"] == uuid)
    stream.close()
    assert gone["json"]["hangup_cause"] == cause and gone["json"]["channel"]["answered"] is False
    run = crm.run(resp.json["data"]["run_id"])
    assert run["state"] == "failed" and run["notes"] == {"call": "failed", "hangup_cause": cause}
    assert cause in run["error"]
    metrics = http.get("/metrics").body.decode()
    assert f'eslchan_originates_total{{cause="{cause}",outcome="failed"}} 1.0' in metrics


def test_a_switch_that_does_not_answer_within_the_command_timeout_is_a_504(simulator, daemon, crm):
    simulator.stall(2.5)  # longer than the command timeout (1 s here)
    body = refused(crm.create(endpoint="user/1001@acme.example"), 504)
    assert body["data"]["node"] == "fs1"
    runs = eventually(lambda: [r for r in crm.get("/metaflows").json["data"] if r["state"] != "running"])
    assert runs[0]["kind"] == "originate" and runs[0]["notes"]["hangup_cause"] == "TIMEOUT"


# --- node, limits ---------------------------------------------------------------------------------


def test_the_node_and_near_channel(simulator, daemon, crm, http):
    own = Tenant(simulator, daemon, http, ACME)
    foreign = Tenant(simulator, daemon, http, GLOBEX)
    resp = crm.create(endpoint="user/1001@acme.example", near_channel=own.a, node="fs1")
    assert resp.status == 201 and resp.json["data"]["node"] == "fs1"
    for near in (foreign.a, "00000000-0000-4000-8000-000000000000"):  # another tenant's: unknown
        assert refused(crm.create(endpoint="user/1001@acme.example", near_channel=near), 404)["data"] == [
            near
        ]
    body = refused(crm.create(endpoint="user/1001@acme.example", node="fs9"), 400)
    assert body["data"]["data.node"]["enum"]["target"] == ["fs1"]
    body = refused(crm.create(endpoint="user/1001@acme.example", node="fs2", near_channel=own.a), 400)
    assert "near_channel is on node fs1" in body["data"]["data.node"]["not_allowed"]["message"]
    assert len(crm.originates()) == 1


def test_calls_still_ringing_are_bounded_per_account(simulator, daemon, http, keys, crm):
    daemon.app.config["ESLCHAN"] = with_accounts(
        daemon.app.config["ESLCHAN"],
        ACME={
            "context": "acme",
            "realm": "acme.example",
            "endpoints": ENDPOINTS,
            "policy": account_policy(max_originates=1),
        },
    )
    simulator.register("1003", "no_answer")
    first = crm.create(endpoint="user/1003@acme.example", timeout=30)
    assert first.status == 201
    second = crm.create(endpoint="user/1001@acme.example")
    body = refused(second, 429)
    assert body["data"]["rule"] == "max_originates" and second.headers["retry-after"]
    assert len(crm.originates()) == 1
    simulator.hangup(first.json["data"]["uuid"], "ORIGINATOR_CANCEL")
    eventually(lambda: crm.create(endpoint="user/1001@acme.example").status == 201)
    assert (
        'eslchan_originates_total{cause="max_originates",outcome="refused"} 1.0'
        in http.get("/metrics").body.decode()
    )


def test_a_node_that_is_down_is_a_503(simulator, daemon, crm):
    simulator.restart(down_for=1.5)
    eventually(lambda: not daemon.links["fs1"].is_up)
    body = refused(crm.create(endpoint="user/1001@acme.example"), 503)
    assert "fs1" in json.dumps(body["data"]) or "no FreeSWITCH node" in json.dumps(body["data"])


# --- the metaflow given with the call -------------------------------------------------------------


def test_the_metaflow_is_judged_before_anything_is_dialled(crm):
    body = refused(
        crm.create(
            endpoint="user/1001@acme.example",
            metaflow={"module": "play", "data": {}, "children": {"_": {"module": "nosuch"}}},
        ),
        400,
    )
    assert set(body["data"]) == {"data.metaflow.data.id", "data.metaflow.children._.module"}
    body = refused(
        crm.create(
            endpoint="user/1001@acme.example",
            metaflow={"module": "transfer", "data": {"target": "2600", "context": "globex"}},
        ),
        403,
        "contexts",
    )
    assert "data.metaflow.data.context" in body["data"]
    refused(crm.create(endpoint="user/1001@acme.example", metaflow=["play"]), 400)
    assert crm.originates() == []


# --- hostile tenants --------------------------------------------------------------------------------

HOSTILE_CREATES = [
    ({"endpoint": "user/1001@globex.example"}, 403, "endpoints"),
    ({"endpoint": "loopback/2600/globex"}, 403, "endpoints"),
    ({"endpoint": "loopback/2600/default"}, 403, "endpoints"),
    ({"endpoint": "error/user_busy"}, 403, "endpoints"),
    ({"endpoint": "user/1001@acme.example:_:user/1@globex.example"}, 403, "endpoints"),
    ({"endpoint": "user/1001@acme.example &system(id)"}, 400, None),
    ({"endpoint": "{api_on_answer=system id}user/1001@acme.example"}, 400, None),
    ({"endpoint": "[origination_uuid=x]user/1001@acme.example"}, 400, None),
    ({"endpoint": "user/1001@acme.example,user/1@globex.example"}, 400, None),
    ({"endpoint": "user/1001@acme.example\napi system id"}, 400, None),
    ({"endpoint": "user/${system(id)}@acme.example"}, 400, None),
    ({"endpoint": 42}, 400, None),
    ({"caller_id_name": "x\napi system id"}, 400, None),
    ({"caller_id_name": "it's"}, 400, None),
    ({"caller_id_name": "a}user/2,{b"}, 400, None),
    ({"caller_id_name": "${system(id)}"}, 400, None),
    ({"caller_id_name": "x" * 129}, 400, None),
    ({"caller_id_number": "1001,api_on_answer=x"}, 400, None),
    ({"caller_id_number": "1 2"}, 400, None),
    ({"owner_id": "u1,eslchan_account_id=acc00000000000000000000000000003"}, 400, None),
    ({"owner_id": "u}"}, 400, None),
    ({"custom_channel_vars": {"api_hangup_hook": "system touch /tmp/x"}}, 403, "variables"),
    ({"custom_channel_vars": {"Execute_On_Answer": "system id"}}, 403, "variables"),
    ({"custom_channel_vars": {"eslchan_account_id": GLOBEX}}, 403, "tenancy"),
    ({"custom_channel_vars": {"ESLCHAN_OWNER_ID": "u9"}}, 403, "tenancy"),
    ({"custom_channel_vars": {"hold_music": "/etc/passwd"}}, 403, "variables"),
    ({"custom_channel_vars": {"origination_uuid": "11111111-2222-3333-4444-555555555555"}}, 403, "variables"),
    ({"custom_channel_vars": {"a b": "x"}}, 400, None),
    ({"custom_channel_vars": {"eslchan_x": "y,api_on_answer=system id"}}, None, None),  # escaped: harmless
    ({"custom_channel_vars": {"eslchan_x": "it's"}}, 400, None),
    ({"custom_channel_vars": {"eslchan_x": "${system(id)}"}}, 400, None),
    ({"custom_channel_vars": {"eslchan_x": "a}user/2"}}, 400, None),
    ({"custom_channel_vars": {"eslchan_x": 7}}, 400, None),
    ({"custom_channel_vars": {f"eslchan_{i}": "x" for i in range(33)}}, 400, None),
    ({"timeout": 0}, 400, None),
    ({"timeout": 601}, 400, None),
    ({"timeout": "30"}, 400, None),
    ({"timeout": True}, 400, None),
    ({"auto_answer": "yes"}, 400, None),
    ({"node": "fs1\napi system id"}, 400, None),
    ({"near_channel": "not-a-uuid"}, 400, None),
    ({"origination_uuid": "11111111-2222-3333-4444-555555555555"}, 400, None),
    ({"eslchan_account_id": GLOBEX}, 400, None),
]


@pytest.mark.parametrize(
    "fields,status,rule",
    HOSTILE_CREATES,
    ids=[f"{next(iter(f))}-{i}" for i, (f, _, _) in enumerate(HOSTILE_CREATES)],
)
def test_every_field_of_a_start_is_attacked_and_nothing_reaches_the_switch(
    simulator, crm, fields, status, rule
):
    data = {"endpoint": "user/1001@acme.example", **fields}
    resp = crm.create(**data)
    if status is None:  # accepted, and the comma stayed inside the value
        assert resp.status == 201, resp.body
        ((variables, endpoint, _),) = crm.originates()
        assert variables["eslchan_x"] == "'y\\,api_on_answer=system id'" and "api_on_answer" not in variables
        assert endpoint == "user/1001@acme.example"
        eventually(
            lambda: (
                simulator.channel(resp.json["data"]["uuid"]).variables.get("eslchan_x")
                == "y,api_on_answer=system id"
            )
        )
        return
    refused(resp, status, rule)
    settle()
    assert crm.originates() == [] and not simulator.channels()


def test_an_account_without_endpoints_may_not_start_calls(simulator, daemon, http):
    globex = Crm(simulator, daemon, http, GLOBEX)
    body = refused(globex.create(endpoint="user/1001@globex.example"), 403, "endpoints")
    assert "may not start calls" in body["data"]["data.endpoint"]["policy"]["message"]
    assert globex.originates() == []


def test_a_tenant_starts_calls_only_in_its_own_accounts(simulator, daemon, http):
    sales = Crm(simulator, daemon, http, ACME_SALES)
    resp = http.request(
        "PUT",
        f"/v2/accounts/{GLOBEX}/channels",
        {"data": {"endpoint": "user/1001@acme.example"}},
        token=sales.token,
    )
    refused(resp, 403)
    resp = http.request(
        "PUT", f"/v2/accounts/{ACME}/channels", {"data": {"endpoint": "user/1001@acme.example"}}
    )
    refused(resp, 401)
    assert sales.originates() == []


def test_the_new_call_is_the_account_s_like_any_other(simulator, daemon, http, crm):
    """Listed, controlled, and invisible to another tenant."""
    resp = crm.create(endpoint="user/1001@acme.example")
    uuid = resp.json["data"]["uuid"]
    eventually(lambda: channel_of(daemon, uuid).answered)
    globex = http.token(GLOBEX)
    assert http.get(f"/v2/accounts/{GLOBEX}/channels/{uuid}", token=globex).status in (403, 404)
    assert all(
        r["uuid"] != uuid for r in http.get(f"/v2/accounts/{GLOBEX}/channels", token=globex).json["data"]
    )
    hang = http.request(
        "POST", f"/v2/accounts/{ACME}/channels/{uuid}", {"data": {"action": "hangup"}}, token=crm.token
    )
    assert hang.status == 200, hang.body
    assert wait_for(lambda: simulator.channel(uuid) is None)


def test_a_metaflow_on_answer_may_bridge_the_new_call_to_another_of_the_account(simulator, daemon, http, crm):
    """The CRM's click-to-call: ring the agent, and once answered bridge them to the customer's
    call that waits parked."""
    waiting = Tenant(simulator, daemon, http, ACME, bridged=False)
    resp = crm.create(
        endpoint="user/1001@acme.example",
        near_channel=waiting.a,
        metaflow={"module": "bridge", "data": {"other_leg": waiting.a}},
    )
    assert resp.status == 201, resp.body
    uuid = resp.json["data"]["uuid"]
    eventually(lambda: (ch := channel_of(daemon, uuid)) is not None and ch.other_leg == waiting.a)
    run = crm.run(resp.json["data"]["run_id"])
    assert run["state"] == "finished" and run["notes"] == {"call": "answered", "bridged_to": waiting.a}
    assert f"api uuid_bridge {uuid} {waiting.a}" in simulator.commands


def test_a_variable_eslchan_sets_cannot_be_overridden_even_where_the_policy_allows_its_name(
    simulator, daemon, http, crm
):
    daemon.app.config["ESLCHAN"] = with_accounts(daemon.app.config["ESLCHAN"], ACME={
        "context": "acme", "realm": "acme.example", "endpoints": ENDPOINTS,
        "policy": account_policy(variables=("origination_*", "sip_auto_answer"))})
    for name in ("origination_uuid", "ORIGINATION_UUID", "origination_caller_id_number"):
        resp = crm.create(endpoint="user/1001@acme.example", caller_id_number="5550100",
                          custom_channel_vars={name: "11111111-2222-3333-4444-555555555555"})
        refused(resp, 403, "variables")
    assert crm.originates() == []
