"""A tenant sets only the variables its policy allows: never a hook FreeSWITCH runs, never
one it routes by, never the tenancy variables, in any case, through any path (POST action,
PUT metaflow, collect_dtmf, a module declared by its schema alone, a Python module). Each
attack goes over real HTTP to the daemon on the simulator; the test then checks what reached
the simulator (its command log: nothing), that the call's variables are untouched, and that
after the hangup no hook ran (its hook log)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from conftest import eventually
from tenants import (
    HOOK_VARIABLES,
    SHELL,
    TENANCY_VARIABLES,
    Tenant,
    account_policy,
    no_hook_ran,  # noqa: F401 (a fixture)
    refused,
    settle,
    with_accounts,
)

from eslchan.config import ConfigError, PolicyConfig, parse_config
from eslchan.demo import ACME, GLOBEX, demo_config
from eslchan.esl import commands as esl
from metaflow import CONTINUE

pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("no_hook_ran")]


@pytest.fixture
def tenant(simulator, daemon, http):
    return Tenant(simulator, daemon, http)


def test_the_hook_log_sees_a_hook_that_is_set(simulator, daemon, http, tenant):
    """The oracle of every test below: a hook set on the switch directly is logged when it runs."""
    simulator.api(f"uuid_setvar {tenant.a} API_Hangup_Hook {SHELL}")
    tenant.hang_up()
    assert [(h.variable, h.value, h.moment) for h in tenant.hooks("code")] == [
        ("API_Hangup_Hook", SHELL, "hangup")]
    simulator.hooks.clear()  # set by the test itself, not through eslchan


@pytest.mark.parametrize("name", HOOK_VARIABLES + TENANCY_VARIABLES)
def test_set_variable_action_cannot_set_hook_or_tenancy_variables(tenant, name):
    resp = tenant.post(action="set_variable", name=name, value=SHELL)
    body = refused(resp, 403)
    rule = body["data"]["data.name"]["policy"]["rule"]
    assert rule == ("tenancy" if name.lower() in {n.lower() for n in TENANCY_VARIABLES[:5]} else "variables")
    settle()
    assert tenant.sent() == []
    assert not any(k.lower() == name.lower() and v == SHELL for k, v in tenant.variables().items())
    tenant.hang_up()
    assert tenant.hooks("code") == []


@pytest.mark.parametrize("name", HOOK_VARIABLES + TENANCY_VARIABLES)
def test_a_metaflow_cannot_set_them_anywhere_in_its_tree(tenant, name):
    tree = {"module": "set_variable", "data": {"name": "eslchan_note", "value": "fine"},
            "children": {"_": {"module": "play", "data": {"id": "welcome"}, "children": {
                "_": {"module": "set_variable", "data": {"name": name, "value": SHELL}}}}}}
    body = refused(tenant.put(tree), 403)
    assert list(body["data"]) == ["children._.children._.data.name"]
    settle()
    assert tenant.sent() == []  # not even the allowed first node ran
    assert tenant.http.get(f"{tenant.base}/metaflows", token=tenant.token).json["data"] == []
    tenant.hang_up()
    assert tenant.hooks("code") == []


def test_collect_dtmf_cannot_store_the_digits_in_a_tenancy_variable(tenant, simulator):
    tree = {"module": "collect_dtmf", "data": {"collection_name": "eslchan_account_id", "timeout": 1000}}
    refused(tenant.put(tree), 403, "tenancy")
    refused(tenant.put({**tree, "data": {"collection_name": "hangup_after_bridge"}}), 403, "variables")
    settle()
    assert tenant.sent() == []
    assert tenant.variables()["eslchan_account_id"] == ACME


def test_a_moved_call_would_leave_the_tenants_listing_and_it_does_not(simulator, daemon, http, tenant):
    """The attack of the issue: writing another tenant's id into the account variable."""
    refused(tenant.post(action="set_variable", name="eslchan_account_id", value=GLOBEX), 403, "tenancy")
    settle(0.2)
    mine = http.get(f"/v2/accounts/{ACME}/channels", token=http.token(ACME)).json["data"]
    theirs = http.get(f"/v2/accounts/{GLOBEX}/channels", token=http.token(GLOBEX)).json["data"]
    assert tenant.a in {r["uuid"] for r in mine}
    assert tenant.a not in {r["uuid"] for r in theirs}
    assert http.request("POST", f"/v2/accounts/{GLOBEX}/channels/{tenant.a}", {"data": {"action": "hangup"}},
                        token=http.token(GLOBEX)).status == 404
    assert simulator.channel(tenant.a) is not None


def test_the_allowed_variables_still_work(tenant):
    assert tenant.post(action="set_variable", name="eslchan_note", value="vip caller").status == 200
    eventually(lambda: tenant.variables().get("eslchan_note") == "vip caller")
    assert tenant.sent() == [f"api uuid_setvar {tenant.a} eslchan_note vip caller"]


# --- the operator's own names ------------------------------------------------------------------

@pytest.fixture
def daemon_config(simulator, keys):
    config = demo_config([("fs1", simulator.host, simulator.port, "ClueCon")], keys, listen="127.0.0.1:0")
    # Acme may also set crm_* and the exact name "vip"; Globex sets its variables under "gx_"
    return with_accounts(config, ACME={"policy": account_policy(variables=("crm_*", "vip"))},
                         GLOBEX={"policy": account_policy(variable_prefix="gx_")})


def test_an_account_may_be_given_more_names_and_only_those(simulator, daemon, http, tenant):
    assert tenant.post(action="set_variable", name="crm_ticket", value="4711").status == 200
    assert tenant.post(action="set_variable", name="VIP", value="gold").status == 200
    refused(tenant.post(action="set_variable", name="gx_ticket", value="1"), 403, "variables")
    globex = Tenant(simulator, daemon, http, GLOBEX, variables={"gx_seen": "yes"})
    assert globex.post(action="set_variable", name="gx_ticket", value="1").status == 200
    refused(globex.post(action="set_variable", name="crm_ticket", value="1"), 403, "variables")
    refused(globex.post(action="set_variable", name="eslchan_note", value="1"), 403, "variables")
    # what an account may set shows in the detail view, under its full name
    custom = globex.http.get(globex.base, token=globex.token).json["data"]["custom_channel_vars"]
    assert custom["gx_seen"] == "yes"


@pytest.mark.parametrize("table,problem", [
    ({"policy": {"variables": ["*"]}}, "policy.variables"),
    ({"policy": {"variables": ["api_*"]}}, "policy.variables"),
    ({"policy": {"variables": ["execute_on_answer"]}}, "policy.variables"),
    ({"policy": {"variables": ["eslchan_account_?d"]}}, "policy.variables"),
    ({"policy": {"variable_prefix": "api"}}, "policy.variable_prefix"),
    ({"policy": {"variable_prefix": "e"}}, "policy.variable_prefix"),
    ({"policy": {"variable_prefix": ""}}, "policy.variable_prefix"),
    ({"channels": {"preset": "kazoo"}, "policy": {"variable_prefix": "ecallmgr_"}}, "policy.variable_prefix"),
    ({"channels": {"preset": "kazoo"}, "policy": {"variables": ["ecallmgr_Channel-Authorized"]}},
     "policy.variables"),
    ({"policy": {"dialplans": ["XML", "in line"]}}, "policy.dialplans"),
    ({"policy": {"max_runs": 0}}, "policy.max_runs"),
    ({"policy": {"colour": "red"}}, "policy.colour"),
])
def test_check_config_names_a_policy_that_would_expose_a_variable(table, problem):
    with pytest.raises(ConfigError) as info:
        parse_config(table)
    assert problem in {key for key, _ in info.value.problems}, info.value.problems


def test_check_config_names_an_accounts_bad_policy():
    account = {"id": ACME, "api_key": "k" * 16, "policy": {"variables": ["hold_music"]},
               "context": "bad context", "endpoints": ["user/1001,user/1002"]}
    with pytest.raises(ConfigError) as info:
        parse_config({"auth": {"signing_key": "s" * 16}, "accounts": [account]})
    keys = {key for key, _ in info.value.problems}
    assert {"accounts[0].policy.variables", "accounts[0].context", "accounts[0].endpoints"} <= keys
    fixed = {**account, "policy": {"variables": ["crm_*"]}, "context": "acme",
             "endpoints": ["user/*@acme.example"]}
    ok = parse_config({"auth": {"signing_key": "s" * 16}, "accounts": [fixed]})
    assert dict(ok.accounts[0].policy) == {"variables": ("crm_*",)}


# --- modules that are not built in -------------------------------------------------------------

def test_a_module_declared_by_its_schema_alone_cannot_set_a_hook(simulator, daemon, http, tenant):
    modules = daemon.interpreter.modules
    # a name typed as a plain word: validation has no variable rule for it, the guard still has one
    modules.register("tag_word", {
        "type": "object", "required": ["n", "v"],
        "properties": {"n": {"type": "string", "x-esl": "word"},
                       "v": {"type": "string", "x-esl": "var_value"}},
        "x-eslchan-command": {"kind": "api", "name": "uuid_setvar", "args": ["{uuid}", "{n}", "{v}"]}})
    # the same through an execute of "set" with the whole assignment as one value
    modules.register("tag_set", {
        "type": "object", "required": ["kv"], "properties": {"kv": {"type": "string", "x-esl": "var_value"}},
        "x-eslchan-command": {"kind": "execute", "app": "set", "arg": "{kv}"}})
    # and typed as a variable name, which validation judges before anything runs
    modules.register("tag_name", {
        "type": "object", "required": ["n"], "properties": {"n": {"type": "string", "x-esl": "var_name"}},
        "x-eslchan-command": {"kind": "api", "name": "uuid_setvar", "args": ["{uuid}", "{n}", "x"]}})
    refused(tenant.post(action="tag_word", n="api_hangup_hook", v=SHELL), 403, "variables")
    refused(tenant.post(action="tag_set", kv=f"execute_on_answer={SHELL}"), 403, "variables")
    refused(tenant.post(action="tag_name", n="session_in_hangup_hook"), 403, "variables")
    tree = {"module": "tag_word", "data": {"n": "eslchan_account_id", "v": GLOBEX}}
    refused(tenant.put(tree), 403, "tenancy")
    settle()
    assert tenant.sent() == []
    assert tenant.post(action="tag_word", n="eslchan_tag", v="ok").status == 200
    assert tenant.sent() == [f"api uuid_setvar {tenant.a} eslchan_tag ok"]
    tenant.hang_up()
    assert tenant.hooks("code") == []


def test_a_python_module_cannot_send_what_the_policy_refuses(simulator, daemon, http, tenant):
    """An entry-point module's commands go through the same guard as the built-ins'."""
    def run(ctx, data):
        ctx.api(esl.api("uuid_setvar", ctx.arg_uuid(), esl.var_name("api_hangup_hook"), esl.var_value(SHELL)))
        return CONTINUE

    def kill_other(ctx, data):  # a channel of another account, named by the module itself
        ctx.api(esl.api("uuid_kill", esl.uuid(data["uuid"]), esl.hangup_cause("NORMAL_CLEARING")))
        return CONTINUE

    daemon.interpreter.modules.register("sneaky", {"type": "object"}, run)
    daemon.interpreter.modules.register("reaper", {"type": "object"}, kill_other)
    other = Tenant(simulator, daemon, http, GLOBEX)
    refused(tenant.post(action="sneaky"), 403, "variables")
    refused(tenant.post(action="reaper", uuid=other.a), 403, "channels")
    settle()
    assert tenant.sent() == [] and simulator.channel(other.a) is not None
    tenant.hang_up()
    assert tenant.hooks("code") == []


def test_eslchan_own_variables_pass_whatever_the_prefix(simulator, daemon, http, tenant):
    """park sets park_after_bridge itself, which no tenant may: the guard tells them apart."""
    refused(tenant.post(action="set_variable", name="park_after_bridge", value="true"), 403, "variables")
    assert tenant.post(action="park").status == 200
    eventually(lambda: len(tenant.sent()) >= 3)
    assert tenant.sent()[:2] == [f"api uuid_setvar {tenant.a} park_after_bridge true",
                                 f"api uuid_setvar {tenant.b} park_after_bridge true"]


def test_with_the_kazoo_preset_ecallmgr_variables_are_kazoos(simulator, keys):
    from eslchan.config import ChannelsConfig, VariableMapping
    from eslchan.policy import PolicyBook

    config = demo_config([("fs1", simulator.host, simulator.port, "ClueCon")], keys)
    config = replace(config, channels=ChannelsConfig(mapping=VariableMapping.preset("kazoo"), preset="kazoo"),
                     policy=PolicyConfig())
    policy = PolicyBook.from_config(config).for_account(ACME)
    for name in ("ecallmgr_Account-ID", "ecallmgr_Channel-Authorized", "ECALLMGR_Reseller-ID"):
        assert policy.variable(name, "data.name") is not None, name
    assert policy.variable("eslchan_note", "data.name") is None


def test_beside_kazoo_the_tenants_prefix_shows_in_custom_channel_vars():
    from eslchan.config import VariableMapping
    from eslchan.registry import ChannelRegistry

    registry = ChannelRegistry(VariableMapping.preset("kazoo"), extra_prefixes=("eslchan_",))
    uuid = "3f0a1f3e-1a3d-4e2f-8c1b-0a9e8d7c6b5a"
    registry.apply("fs1", {"Event-Name": "CHANNEL_CREATE", "Unique-ID": uuid, "Event-Sequence": "1",
                           "variable_ecallmgr_Account-ID": ACME, "variable_ecallmgr_Owner-ID": "o1",
                           "variable_eslchan_note": "vip", "variable_other": "x"})
    custom = registry.get("fs1", uuid).detail(0)["custom_channel_vars"]
    assert custom == {"Account-ID": ACME, "Owner-ID": "o1", "eslchan_note": "vip"}


def test_a_reload_applies_new_policies_at_once(simulator, tmp_path, keys):
    from conftest import HttpClient

    from eslchan.config import load_config
    from eslchan.daemon import Daemon

    def write(policy: str) -> None:
        path.write_text(f"""
[http]
listen = "127.0.0.1:0"
[auth]
signing_key = "{'s' * 32}"
[[nodes]]
name = "fs1"
host = "{simulator.host}"
port = {simulator.port}
password = "ClueCon"
[[accounts]]
id = "{ACME}"
api_key = "{keys[ACME]}"
{policy}
""")

    path = tmp_path / "eslchan.toml"
    write("")
    daemon = Daemon(load_config(path))
    daemon.start()
    try:
        eventually(lambda: daemon.links["fs1"].is_up)
        http = HttpClient(*daemon.http_address, keys)
        tenant = Tenant(simulator, daemon, http, ACME)
        refused(tenant.post(action="set_variable", name="crm_ticket", value="1"), 403, "variables")
        write('[accounts.policy]\nvariables = ["crm_*"]')
        daemon.reload()  # what SIGHUP does
        assert tenant.post(action="set_variable", name="crm_ticket", value="1").status == 200
        write('[accounts.policy]\nvariables = ["hold_music"]')  # refused as a whole: the old stays
        daemon.reload()
        assert tenant.post(action="set_variable", name="crm_ticket", value="2").status == 200
        refused(tenant.post(action="set_variable", name="hold_music", value="/x.wav"), 403, "variables")
        # a new prefix of the account's: allowed, and what is set under it shows at once
        refused(tenant.post(action="set_variable", name="deal_stage", value="won"), 403, "variables")
        write('[accounts.policy]\nvariable_prefix = "deal_"')
        daemon.reload()
        assert tenant.post(action="set_variable", name="deal_stage", value="won").status == 200
        custom = http.get(tenant.base, token=tenant.token).json["data"]["custom_channel_vars"]
        assert custom["deal_stage"] == "won"
    finally:
        daemon.stop(drain_seconds=0.5)
