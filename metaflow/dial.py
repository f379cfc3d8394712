"""Endpoints from the configured dial-string templates (device, user, number)."""

from __future__ import annotations

import string
import uuid as _uuid
from typing import Any

from eslchan.esl import commands as esl
from metaflow.base import Context, StateError


def endpoint(ctx: Context, kind: str, value: str, field: str) -> esl.Arg:
    """``dial_templates[kind]`` filled with the validated id/number, the channel's domain and
    the account's own dialplan context (so a loopback leg starts where the account may go)."""
    templates = getattr(ctx.config, "dial_templates", {}) or {}
    template = templates.get(kind)
    if not template:
        raise StateError(f"no dial template for {kind} is configured", field)
    token = str(esl.dial_target(value, field))
    domain = None
    presence = getattr(ctx.channel, "presence_id", None) or ""
    if "@" in presence:
        domain = str(esl.dial_target(presence.rsplit("@", 1)[1], "domain"))
    values: dict[str, Any] = {"id": token, "number": token, "target": token,
                              "context": str(esl.context(ctx.policy.context, "context"))}
    if domain:
        values["domain"] = domain
    needed = {f for _, f, _, _ in string.Formatter().parse(template) if f}
    missing = needed - set(values)
    if missing:
        raise StateError(f"the {kind} dial template needs {', '.join(sorted(missing))}, "
                         "which this channel does not have", field)
    return esl.endpoint(template.format(**values), field)


def originate_vars(ctx: Context, new_uuid: str, timeout: int, auto_answer: bool = False
                   ) -> dict[esl.Arg, esl.Arg]:
    """Channel variables of a leg eslchan originates on behalf of this channel."""
    ch = ctx.channel
    out = {esl.system_var("origination_uuid"): esl.uuid(new_uuid),
           esl.system_var("originate_timeout"): esl.integer(timeout, "timeout", 1, 3600)}
    for var, value in (("origination_caller_id_number", ch.caller_id_number),
                       ("origination_caller_id_name", ch.caller_id_name)):
        if value:
            try:
                out[esl.system_var(var)] = esl.dial_target(value, var) if "number" in var \
                    else esl.var_value(value, var)
            except esl.CommandError:
                pass  # an odd caller id is left out rather than failing the action
    if auto_answer:
        out[esl.system_var("sip_auto_answer")] = esl.word("true")
    account_var = getattr(getattr(ctx.registry, "mapping", None), "account", None)
    if ch.account_id and account_var:  # the new leg belongs to the same account
        out[esl.tenancy_var(account_var)] = esl.dial_target(ch.account_id, "account_id")
    return out


def refuse_own_device(ctx: Context, data: dict, device_id: str, field: str) -> None:
    """``can_call_self: false`` forbids ringing the channel's own device."""
    if not data.get("can_call_self", True) and device_id == ctx.channel.authorizing_id:
        raise StateError("the target is the channel's own device and can_call_self is false", field)


def originate_intercept(ctx: Context, kind: str, target: str, field: str, data: dict, picked_up: str) -> None:
    """Ring ``target`` (``dial_templates[kind]``); the leg that answers takes ``picked_up``
    over with FreeSWITCH's intercept app. Returns once the new leg answered (its uuid is
    noted as ``new_leg``); raises what the originate failed with."""
    timeout = int(data.get("timeout", 20))
    new_leg = str(_uuid.uuid4())
    ctx.note(new_leg=new_leg)
    dial = esl.dial_string(endpoint(ctx, kind, target, field),
                           originate_vars(ctx, new_leg, timeout, bool(data.get("auto_answer"))))
    ctx.bgapi(esl.bgapi("originate", dial, esl.app_ref("intercept", esl.uuid(picked_up))),
              timeout=timeout + 10)
