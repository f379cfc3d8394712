"""eavesdrop: ring a supervisor (a device or user through the dial templates, or one of the
account's endpoints) and, once answered, put them on this channel with FreeSWITCH's
eavesdrop: listening, whispering to this channel's party (``eavesdrop_whisper_bleg``: the
party of the eavesdropped channel hears, its far end does not) or barging in (both
whisper flags: a three-way call). With ``eavesdrop_enable_dtmf`` the supervisor switches on
the phone: 2 speaks with this channel's party, 1 with the other side, 3 with both, 0 listens
again, * leaves. The supervisor's leg belongs to the account, like any of its calls.
Returns once the supervisor answered (``notes.new_leg``)."""

import uuid as _uuid

from eslchan.esl import commands as esl
from eslchan.policy import AccountPolicy, PolicyViolation
from metaflow.base import CONTINUE, Context, Outcome, StateError
from metaflow.capabilities import Need, application
from metaflow.dial import endpoint as dial_endpoint
from metaflow.dial import originate_vars

#: The whisper flags of each mode (mod_dptools reads them from the eavesdropper's channel).
MODES = {"listen": (), "whisper": ("eavesdrop_whisper_bleg",),
         "barge": ("eavesdrop_whisper_aleg", "eavesdrop_whisper_bleg")}


def policy(data: dict, account: AccountPolicy) -> list[PolicyViolation]:
    """An explicit endpoint is one the account may start calls to; an id naming a domain
    names one of the account's realms."""
    if data.get("endpoint"):
        found = account.originate_endpoint(data["endpoint"], "endpoint")
    else:
        found = account.realm_rule(data["supervisor_id"], "supervisor_id")
    return [found] if found else []


def requires(data: dict) -> list[Need]:
    return [application("eavesdrop")]


def run(ctx: Context, data: dict) -> Outcome:
    channel = ctx.channel
    if channel.hangup_cause:
        raise StateError("the channel is hanging up: there is nothing to listen to")
    if data.get("endpoint"):
        supervisor = esl.endpoint(data["endpoint"], "data.endpoint")
    else:
        supervisor = dial_endpoint(ctx, data.get("supervisor_type", "device"), data["supervisor_id"],
                                   "data.supervisor_id")
    timeout = int(data.get("timeout", 20))
    mode = data.get("mode", "listen")
    new_leg = str(_uuid.uuid4())
    variables = originate_vars(ctx, new_leg, timeout, bool(data.get("auto_answer")))
    variables[esl.system_var("eavesdrop_enable_dtmf")] = esl.word("true")
    for flag in MODES[mode]:
        variables[esl.system_var(flag)] = esl.word("true")
    ctx.note(new_leg=new_leg, mode=mode)
    dial = esl.dial_string(supervisor, variables)
    listen = esl.app_ref("eavesdrop", esl.uuid(ctx.uuid))
    ctx.bgapi(esl.bgapi("originate", dial, listen), timeout=timeout + 10)
    return CONTINUE
