"""The send-time guard, command by command: what a run of Acme may send and what it may not,
whatever validator minted an argument. A real registry holds the channels it judges."""

from __future__ import annotations

import pytest

from eslchan.config import VariableMapping
from eslchan.demo import ACME, ACME_SALES, GLOBEX, demo_config
from eslchan.esl import commands as esl
from eslchan.policy import Guard, PolicyBook, PolicyError
from eslchan.registry import ChannelRegistry

OWN = "11111111-1111-4111-8111-111111111111"
PEER = "22222222-2222-4222-8222-222222222222"  # Acme's own far end
SALES = "33333333-3333-4333-8333-333333333333"  # a sub-account's call
FOREIGN = "44444444-4444-4444-8444-444444444444"  # Globex's call
UNOWNED = "55555555-5555-4555-8555-555555555555"  # no account, bridged to nobody of Acme
REC = "/var/lib/freeswitch/recordings"


def channel(registry, uuid, account=None, seq=1, **headers):
    event = {"Event-Name": "CHANNEL_CREATE", "Unique-ID": uuid, "Event-Sequence": str(seq),
             "Caller-Context": "default", **headers}
    if account:
        event["variable_eslchan_account_id"] = account
    registry.apply("fs1", event)


@pytest.fixture
def guard():
    registry = ChannelRegistry(VariableMapping())
    channel(registry, OWN, ACME)
    channel(registry, PEER, ACME, 2)
    channel(registry, SALES, ACME_SALES, 3)
    channel(registry, FOREIGN, GLOBEX, 4)
    channel(registry, UNOWNED, None, 5)
    registry.apply("fs1", {"Event-Name": "CHANNEL_BRIDGE", "Unique-ID": OWN, "Event-Sequence": "6",
                           "Other-Leg-Unique-ID": PEER})
    book = PolicyBook.from_config(demo_config([], {a: "k" * 16 for a in (ACME, ACME_SALES, GLOBEX,
                                                                        "ad" + "0" * 30)}))
    return Guard(book.for_account(ACME).bind("acme.example"), registry, "fs1", OWN)


def rule_of(guard, cmd) -> str | None:
    try:
        guard.check(cmd)
    except PolicyError as exc:
        return exc.violations[0].rule
    return None


U = esl.uuid
W = esl.word
V = esl.var_value
T = esl.tenancy_var


@pytest.mark.parametrize("cmd,rule", [
    (esl.api("uuid_kill", U(OWN)), None),
    (esl.api("uuid_kill", U(PEER)), None),
    (esl.api("uuid_kill", U(SALES)), None),  # a sub-account's call
    (esl.api("uuid_kill", U(FOREIGN)), "channels"),
    (esl.api("uuid_kill", U(UNOWNED)), "channels"),  # no account, not the run's far end
    (esl.api("uuid_kill", esl.dial_target(FOREIGN)), "channels"),  # a uuid minted as something else
    (esl.api("uuid_kill", U("66666666-6666-4666-8666-666666666666")), "channels"),  # unknown
    (esl.api("uuid_bridge", U(OWN), U(FOREIGN)), "channels"),
    (esl.api("uuid_hold", W("off"), U(FOREIGN)), "channels"),
    (esl.api("uuid_broadcast", U(OWN), esl.media("/usr/share/a.wav"), W("bleg")), None),
    (esl.api("uuid_broadcast", U(OWN), V("/tmp/a.wav::system"), W("aleg")), "commands"),
    (esl.api("uuid_broadcast", U(OWN), esl.media(f"{REC}/{GLOBEX}/x.wav")), "recordings"),
    (esl.api("uuid_setvar", U(OWN), esl.var_name("eslchan_x"), V("1")), None),
    (esl.api("uuid_setvar", U(OWN), W("api_hangup_hook"), V("system x")), "variables"),
    (esl.api("uuid_setvar", U(OWN), esl.system_var("park_after_bridge"), W("true")), None),
    (esl.api("uuid_setvar", U(OWN), esl.system_var("hold_music"), esl.media(f"{REC}/{GLOBEX}/a.wav")),
     "recordings"),
    (esl.api("uuid_setvar", U(OWN), T("eslchan_account_id"), esl.dial_target(ACME)), None),
    (esl.api("uuid_setvar", U(OWN), T("eslchan_account_id"), esl.dial_target(GLOBEX)), "tenancy"),
    (esl.api("uuid_setvar", U(OWN), esl.tenancy_var("api_on_answer"), V("x")), "variables"),
    (esl.api("uuid_setvar_multi", U(OWN), V("eslchan_a=1;execute_on_answer=x")), "variables"),
    (esl.api("uuid_transfer", U(OWN), esl.dial_target("2600"), esl.dialplan("XML"), esl.context("default")),
     None),
    (esl.api("uuid_transfer", U(OWN), esl.dial_target("2600"), esl.dialplan("XML"), esl.context("public")),
     "contexts"),
    (esl.api("uuid_transfer", U(OWN), esl.dial_target("2600")), None),  # the channel's own context
    (esl.api("uuid_transfer", U(OWN), W("-both"), esl.dial_target("park"), esl.dialplan("inline")), None),
    (esl.api("uuid_transfer", U(OWN), esl.dial_target("echo"), esl.dialplan("inline")), "allow_inline"),
    (esl.api("uuid_transfer", U(OWN), V("set:api_hangup_hook=x,park"), esl.context("INLINE")),
     "allow_inline"),
    (esl.api("uuid_transfer", U(OWN), esl.dial_target("2600"), esl.dialplan("enum")), "dialplans"),
    (esl.api("uuid_dual_transfer", U(OWN), V("2600/XML/default"), V("2601/XML/public")), "contexts"),
    (esl.api("uuid_record", U(OWN), W("start"), esl.media(f"{REC}/{ACME}/a.wav")), None),
    (esl.api("uuid_record", U(OWN), W("start"), esl.media(f"{REC}/a.wav")), "recordings"),
    (esl.api("uuid_record", U(OWN), W("start"), esl.media(f"{REC}/{GLOBEX}/a.wav")), "recordings"),
    (esl.api("uuid_record", U(OWN), W("stop"), W("all")), None),
    (esl.api("show", W("channels")), "commands"),
    (esl.api("status"), "commands"),
    (esl.api("global_getvar"), "commands"),
    (esl.api("uuid_deflect", U(OWN), V("sip:x@evil.example")), "commands"),
    (esl.api("uuid_redirect", U(OWN), V("sip:x@evil.example")), "commands"),
    (esl.bgapi("uuid_kill", U(FOREIGN)), "channels"),
    (esl.execute(U(OWN), "playback", esl.media("/usr/share/a.wav")), None),
    (esl.execute(U(FOREIGN), "playback", esl.media("/usr/share/a.wav")), "channels"),
    (esl.execute(U(OWN), "set", esl.assignment(esl.var_name("eslchan_a"), V("1"))), None),
    (esl.execute(U(OWN), "set", esl.assignment(W("execute_on_media"), V("x"))), "variables"),
    (esl.execute(U(OWN), "export", V("nolocal:api_on_answer=x")), "variables"),
    (esl.execute(U(OWN), "multiset", V("^^;eslchan_a=1;api_reporting_hook=x")), "variables"),
    (esl.execute(U(OWN), "unset", W("eslchan_account_id")), "tenancy"),
    (esl.execute(U(OWN), "transfer", V("2600 XML public")), "contexts"),
    (esl.execute(U(OWN), "sched_transfer", V("+5 2600 XML public")), "contexts"),
    (esl.execute(U(OWN), "intercept", U(FOREIGN)), "channels"),
    (esl.execute(U(OWN), "intercept", V(f"-bleg {PEER}")), None),
    (esl.execute(U(OWN), "eavesdrop", W("all")), "channels"),
    (esl.execute(U(OWN), "record_session", esl.media(f"{REC}/{GLOBEX}/x.wav")), "recordings"),
    (esl.execute(U(OWN), "bridge", esl.endpoint("sofia/gateway/carrier/0800")), "endpoints"),
    (esl.execute(U(OWN), "bridge", esl.endpoint("user/1001")), None),  # the operator's user/{id}
    (esl.execute(U(OWN), "bridge", esl.endpoint("user/1001@evil.example")), "realms"),
    (esl.execute(U(OWN), "bridge", esl.endpoint("user/1001@acme.example")), None),  # the call's own
    (esl.execute(U(OWN), "bridge", esl.endpoint("loopback/1/public")), "contexts"),
    (esl.execute(U(OWN), "bridge", V("{api_on_answer=x}user/1")), "endpoints"),
    (esl.execute(U(OWN), "redirect", V("sip:x@evil.example")), "commands"),
    (esl.execute(U(OWN), "respond", V("302 sip:x@evil.example")), "commands"),
    (esl.execute(U(OWN), "event", V("Event-Name=CUSTOM")), "commands"),
    (esl.execute(U(OWN), "log", V("CRIT x")), "commands"),
    (esl.execute(U(OWN), "bind_digit_action", V("x,1,exec:system,touch")), "commands"),
    (esl.execute(U(OWN), "deflect", V("sip:x@evil.example")), "commands"),
    (esl.execute(U(OWN), "info"), "commands"),
    (esl.execute(U(OWN), "tone_detect", V("x 500 r +5 system y")), "commands"),
    (esl.hangup(U(FOREIGN), esl.hangup_cause("NORMAL_CLEARING")), "channels"),
])
def test_each_command_is_judged_by_position_and_policy(guard, cmd, rule):
    assert rule_of(guard, cmd) == rule, cmd.text


def test_an_originate_is_judged_by_its_endpoint_its_variables_and_what_the_leg_runs(guard):
    leg = "77777777-7777-4777-8777-777777777777"
    own = {esl.system_var("origination_uuid"): U(leg),
           esl.tenancy_var("eslchan_account_id"): esl.dial_target(ACME)}
    desk = esl.endpoint("user/desk")
    ok = esl.bgapi("originate", esl.dial_string(desk, own), esl.app_ref("intercept", U(OWN)))
    assert rule_of(guard, ok) is None
    assert rule_of(guard, esl.api("uuid_kill", U(leg))) is None  # the run's own new leg
    for bad, rule in [
        (esl.bgapi("originate", esl.dial_string(esl.endpoint("user/desk"), {
            esl.var_name("execute_on_answer"): V("system_x")}), esl.app_ref("park")), "variables"),
        (esl.bgapi("originate", esl.dial_string(esl.endpoint("user/desk"), {
            T("eslchan_account_id"): esl.dial_target(GLOBEX)}), esl.app_ref("park")), "tenancy"),
        (esl.bgapi("originate", esl.dial_string(desk), esl.app_ref("intercept", U(FOREIGN))), "channels"),
        (esl.bgapi("originate", esl.dial_string(desk), esl.app_ref("deflect")), "commands"),
        (esl.bgapi("originate", esl.dial_string(esl.endpoint("user/desk")), esl.dial_target("2600"),
                   esl.dialplan("XML"), esl.context("public")), "contexts"),
        (esl.bgapi("originate", esl.dial_string(esl.endpoint("sofia/gateway/x/1")), esl.app_ref("park")),
         "endpoints"),
        (esl.bgapi("originate", esl.endpoint("user/a:_:user/b"), esl.app_ref("park")), "endpoints"),
    ]:
        assert rule_of(guard, bad) == rule, bad.text


def test_a_started_call_and_a_supervisor_leg_are_judged_the_same_way(guard):
    """What starting calls and eavesdrop send: eslchan's own variables (the eavesdrop flags, the
    callee id a quickcall shows) pass, a tenant cannot name them, and an eavesdrop of another
    tenant's call is refused."""
    leg = "88888888-8888-4888-8888-888888888888"
    own = {esl.system_var("origination_uuid"): U(leg), esl.system_var("eavesdrop_enable_dtmf"): W("true"),
           esl.system_var("eavesdrop_whisper_bleg"): W("true"),
           esl.system_var("origination_callee_id_name"): V("Sales"),
           T("eslchan_account_id"): esl.dial_target(ACME), T("eslchan_owner_id"): esl.dial_target("u1")}
    desk = esl.endpoint("user/desk")
    for target, rule in ((OWN, None), (SALES, None), (FOREIGN, "channels")):  # SALES: a sub-account's
        cmd = esl.bgapi("originate", esl.dial_string(desk, own), esl.app_ref("eavesdrop", U(target)))
        assert rule_of(guard, cmd) == rule, target
    named = {esl.var_name("eavesdrop_whisper_aleg"): V("true")}  # the same name, from a tenant
    cmd = esl.bgapi("originate", esl.dial_string(desk, named), esl.app_ref("park"))
    assert rule_of(guard, cmd) == "variables"
    with pytest.raises(esl.CommandError):
        esl.system_var("eavesdrop_require_group")  # not one eslchan sets


def test_an_account_starts_calls_only_to_its_endpoint_globs_and_quickcall_to_the_operator_s():
    from dataclasses import replace

    from eslchan.config import QuickcallConfig

    config = demo_config([], {a: "k" * 16 for a in (ACME, ACME_SALES, GLOBEX, "ad" + "0" * 30)})
    quick = QuickcallConfig(device="user/{id}@pbx.acme.example",
                            devices=(("desk", "sofia/gateway/pbx/1009"),))
    accounts = tuple(replace(a, endpoints=("user/*@acme.example",), quickcall=quick) if a.id == ACME else a
                     for a in config.accounts)
    book = PolicyBook.from_config(replace(config, accounts=accounts))
    acme, globex = book.for_account(ACME), book.for_account(GLOBEX)
    assert acme.originate_endpoint("user/1001@acme.example", "e") is None
    for outside in ("user/1001@globex.example", "user/1001", "user/1001@acme.example:_:user/2@acme.example"):
        assert acme.originate_endpoint(outside, "e").rule == "endpoints"
    assert "may not start calls" in globex.originate_endpoint("user/1001@globex.example", "e").message
    # at send time the operator's quickcall endpoints pass like its dial templates, Acme's only;
    # the dial template user/{id} fits too, but with a realm Acme does not have: another fits
    assert acme.endpoint("user/d1@pbx.acme.example", "e") is None
    assert acme.endpoint("sofia/gateway/pbx/1009", "e") is None
    assert acme.endpoint("sofia/gateway/pbx/1010", "e").rule == "endpoints"
    assert globex.endpoint("sofia/gateway/pbx/1009", "e").rule == "endpoints"
    assert globex.endpoint("user/d1@pbx.acme.example", "e").rule == "realms"
