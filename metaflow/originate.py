"""Starting calls: the originate of a leg that does not exist yet, followed from its first
event to the answer (where the metaflow given with the request takes over) or its failure.

A started call is a run of kind ``originate`` on the uuid its leg will have
(origination_uuid). Its first step is the originate itself, so the run history tells how the
call went: ``notes.call`` is ``ringing``, ``early`` (early media), ``answered`` or
``failed``, ``notes.hangup_cause`` why it ended unanswered. FreeSWITCH refuses some
originates before any channel exists (an unregistered user, a missing gateway: only the
job's ``-ERR``, esl-captures 14) and creates, rings and destroys the legs of others (no
answer within the timeout), so the caller is told as soon as one of the two happens:
:class:`Started` has ``created`` (the registry has the leg, with its account) and
``accepted`` (FreeSWITCH took the job).

The request is prepared here as well, by pure functions of the validated request and the
account's policy: :func:`prepare_call` (``PUT …/channels``) and :func:`prepare_quickcall`
(Kazoo's quickcall). Whatever they put in the dial string is a system variable eslchan sets
(the leg's uuid, timeout, caller ids, auto-answer), a tenancy variable with the account's
own ids, or a variable the account may set; the send-time guard judges the command again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gevent.event import AsyncResult

from eslchan.config import VariableMapping
from eslchan.esl import commands as esl
from eslchan.esl.errors import CommandRejected, CommandTimeout, LinkDown
from eslchan.policy import AccountPolicy, PolicyError, PolicyViolation
from metaflow.base import CONTINUE, Context, EventStream, Outcome

#: Seconds a job's result may take beyond the ringing timeout (FreeSWITCH answers -ERR
#: NO_ANSWER itself once the timeout is over).
JOB_MARGIN = 10
#: What a refusal's -ERR text names, when it is a hangup cause (else ``OTHER``).
_CAUSE = re.compile(r"^-ERR\s+([A-Z_]+)\s*$")

#: (outcome, cause): ``answered`` (cause ""), ``failed`` with FreeSWITCH's cause
OutcomeListener = Callable[[str, str], None]


@dataclass(frozen=True)
class NewLeg:
    """The channel a started call will be: its node and the uuid FreeSWITCH will give it."""

    node: str
    uuid: str
    presence_id: str | None = None


@dataclass(frozen=True)
class Call:
    """A prepared originate: the dial string, what the answered leg runs (``&park`` or a
    number through the account's dialplan), the ringing timeout, the metaflow to run once
    answered, and the request as the run shows it."""

    leg: NewLeg
    dial: esl.DialString
    then: tuple[esl.Arg, ...]
    timeout: int
    shown: dict[str, Any]
    flow: dict[str, Any] | None = None


@dataclass
class Started:
    """A call under way: its run, and what the caller waits for."""

    run: Any
    created: AsyncResult = field(default_factory=AsyncResult)  # set once the registry has the leg
    accepted: AsyncResult = field(default_factory=AsyncResult)  # set once FreeSWITCH took the job


# --- preparing -------------------------------------------------------------------------------


def leg_variables(policy: AccountPolicy, mapping: VariableMapping, uuid: str, timeout: int, *,
                  caller: tuple[Any, Any, str] | None = None,
                  callee: tuple[Any, Any, str] | None = None,
                  tenancy: Mapping[str, str | None] | None = None, auto_answer: bool = False,
                  custom: Mapping[str, Any] | None = None, custom_field: str = "custom_channel_vars",
                  ) -> dict[esl.Arg, esl.Arg]:
    """The variables of a new leg's dial string, each through the command builder's grammar
    (CommandError naming the field) and, for the ones a tenant names, the account's variable
    rule (PolicyError). ``caller``/``callee`` are (name, number, field prefix); ``tenancy``
    maps the mapping's account/owner/authorizing_id/authorizing_type keys to values."""
    out: dict[esl.Arg, esl.Arg] = {
        esl.system_var("origination_uuid"): esl.uuid(uuid),
        esl.system_var("originate_timeout"): esl.integer(timeout, "timeout", 1, 3600),
    }
    for which, given in (("caller", caller), ("callee", callee)):
        if given is None:
            continue
        name, number, prefix = given
        if name:
            out[esl.system_var(f"origination_{which}_id_name")] = esl.var_value(name, f"{prefix}name", 128)
        if number:
            out[esl.system_var(f"origination_{which}_id_number")] = esl.dial_target(number, f"{prefix}number")
    if auto_answer:
        out[esl.system_var("sip_auto_answer")] = esl.word("true")
    names = {"account": mapping.account, "owner": mapping.owner,
             "authorizing_id": mapping.authorizing_id, "authorizing_type": mapping.authorizing_type}
    for key, value in (tenancy or {}).items():
        if value:
            where = "account_id" if key == "account" else key
            out[esl.tenancy_var(names[key])] = esl.dial_target(value, where)
    refused: list[PolicyViolation] = []
    taken = {str(k).lower() for k in out}
    for name, value in (custom or {}).items():
        where = f"{custom_field}.{name}"
        arg = esl.var_name(name, where)
        found = policy.variable(name, where)
        if found is None and name.lower() in taken:  # even where the policy would allow the name
            found = PolicyViolation("variables", where, f"'{name}' is set by eslchan for this call")
        if found is not None:
            refused.append(found)
            continue
        if not isinstance(value, str):
            raise esl.CommandError(where, "must be a string")
        out[arg] = esl.var_value(value, where)
    if refused:
        raise PolicyError(refused)
    return out


def prepare_call(body: Mapping[str, Any], policy: AccountPolicy, mapping: VariableMapping, leg: NewLeg,
                 flow: dict[str, Any] | None = None) -> Call:
    """``PUT …/channels``: dial ``endpoint`` (one of the account's endpoint globs), park the
    answered leg and run ``flow`` on it. ``body`` passed the request schema."""
    endpoint = esl.endpoint(body["endpoint"], "data.endpoint")
    refused = [v for v in (policy.originate_endpoint(endpoint, "data.endpoint"),) if v is not None]
    try:
        variables = leg_variables(
            policy, mapping, leg.uuid, int(body.get("timeout", 30)),
            caller=(body.get("caller_id_name"), body.get("caller_id_number"), "data.caller_id_"),
            tenancy={"account": policy.account_id, "owner": body.get("owner_id")},
            auto_answer=bool(body.get("auto_answer")), custom=body.get("custom_channel_vars"),
            custom_field="data.custom_channel_vars")
    except PolicyError as exc:
        refused += exc.violations
    if refused:
        raise PolicyError(refused)
    dial = esl.dial_string(endpoint, variables)
    shown = {k: v for k, v in body.items() if k != "metaflow"}
    return Call(leg, dial, (esl.app_ref("park"),), int(body.get("timeout", 30)), shown, flow)


def prepare_quickcall(kind: str, entity_id: str, number: str, options: Mapping[str, Any], endpoint: str,
                      policy: AccountPolicy, mapping: VariableMapping, leg: NewLeg,
                      dialplan: str = "XML") -> Call:
    """Kazoo's quickcall: ring the device's or user's ``endpoint`` (the operator's) showing
    ``Device QuickCall``/NUMBER; once answered it calls NUMBER through the account's own
    context, showing ``cid-name``/``cid-number`` there (the leg's callee id, which becomes
    its caller id when it enters the dialplan). ``options`` are the validated options."""
    target = esl.dial_target(number, "number")
    refused = [v for v in (policy.realm_rule(number, "number"),
                           *policy.route(dialplan, policy.context, "number", "number")) if v]
    tenancy: dict[str, str | None] = {"account": policy.account_id, "authorizing_id": entity_id,
                                      "authorizing_type": kind}
    if kind == "user":
        tenancy["owner"] = entity_id
    timeout = int(options.get("timeout", 30))
    try:
        variables = leg_variables(
            policy, mapping, leg.uuid, timeout,
            caller=("Device QuickCall", number, "caller_id_"),
            callee=(options.get("cid-name"), options.get("cid-number"), "cid-"),
            tenancy=tenancy, auto_answer=bool(options.get("auto_answer", True)),
            custom=options.get("custom_application_vars"), custom_field="custom_application_vars")
    except PolicyError as exc:
        refused += exc.violations
    if refused:
        raise PolicyError(refused)
    dial = esl.dial_string(esl.endpoint(endpoint, "endpoint"), variables)
    then = (target, esl.dialplan(dialplan), esl.context(policy.context, "context"))
    shown = {"endpoint": endpoint, f"{kind}_id": entity_id, "number": number,
             **{k: v for k, v in options.items()}}
    return Call(leg, dial, then, timeout, shown)


# --- following ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _JobDone:
    """The originate job's end: FreeSWITCH's answer, or what went wrong."""

    body: str | None
    error: BaseException | None


#: Answer-State each event of the leg tells the run
_STATES = {"CHANNEL_PROGRESS": "ringing", "CHANNEL_PROGRESS_MEDIA": "early", "CHANNEL_ANSWER": "answered"}


def follow(ctx: Context, call: Call, started: Started, report: OutcomeListener) -> Outcome:
    """The originate step of a started call's run: send the job, follow the leg's events
    until the job answers. Returns once the leg is answered (the run goes on with its
    metaflow, if any); raises what the originate failed with, and the run is ``failed``."""
    uuid = call.leg.uuid
    stream = EventStream(ctx, {uuid}, gone_on_destroy=False)
    unsubscribe = ctx.interpreter.subscribe(stream)  # before sending: the first event may beat the reply
    try:
        cmd = esl.bgapi("originate", call.dial, *call.then)
        ctx.spawn(_job, ctx, cmd, call.timeout + JOB_MARGIN, stream, started.accepted)
        state = cause = None
        while True:
            item = stream.get(None)  # the job always ends, within its own timeout
            if isinstance(item, _JobDone):
                # a result lost after the answer was seen is still an answered call
                lost = isinstance(item.error, CommandTimeout) and state == "answered"
                if item.error is None or lost:
                    ctx.note(call="answered")
                    if not started.created.ready():
                        started.created.set(True)
                    report("answered", "")
                    return CONTINUE
                cause = _cause(item.error, cause)
                ctx.note(call="failed", hangup_cause=cause)
                if not started.created.ready():
                    started.created.set_exception(item.error)
                report("failed", cause)
                raise item.error
            name = item.get("Event-Name")
            if name in _STATES and state != "answered":
                state = _STATES[name]
                ctx.note(call=state)
            elif name == "CHANNEL_HANGUP":
                cause = item.get("Hangup-Cause") or cause
                ctx.note(hangup_cause=cause)
            elif state is None and name != "CHANNEL_DESTROY":
                state = "ringing"  # FreeSWITCH has the leg: it is being dialled
                ctx.note(call=state)
            if not started.created.ready():
                channel = ctx.registry.get(call.leg.node, uuid)
                if channel is not None and channel.account_id is not None:
                    started.created.set(True)
    finally:
        unsubscribe()


def _job(ctx: Context, cmd: esl.Command, timeout: float, stream: EventStream, accepted: AsyncResult) -> None:
    def took(reply: str) -> None:
        accepted.set(reply)

    try:
        body = ctx.bgapi(cmd, timeout=timeout, on_accepted=took)
    except Exception as exc:  # noqa: BLE001 - every failure is the call's outcome
        if not accepted.ready():
            accepted.set_exception(exc)
        stream.put(_JobDone(None, exc))
    else:
        stream.put(_JobDone(body, None))


def _cause(error: BaseException | None, seen: str | None) -> str:
    """The cause a failed originate is counted under: FreeSWITCH's (its -ERR, else the leg's
    hangup), TIMEOUT, LINK_DOWN, REFUSED (the policy) or OTHER; always one of few names."""
    if isinstance(error, CommandRejected):
        m = _CAUSE.match(error.text)
        if m and m.group(1) in esl.HANGUP_CAUSES:
            return m.group(1)
    if seen and seen in esl.HANGUP_CAUSES:
        return seen
    if isinstance(error, CommandTimeout):
        return "TIMEOUT"
    if isinstance(error, LinkDown):
        return "LINK_DOWN"
    if isinstance(error, PolicyError):
        return "REFUSED"
    return "OTHER"
