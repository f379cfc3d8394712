"""intercept: ring a device, user or number; whoever answers takes over this channel
(FreeSWITCH's intercept app on the new leg). Returns once the new leg answered."""

import uuid as _uuid

from eslchan.esl import commands as esl
from metaflow.base import CONTINUE, Context, Outcome, StateError
from metaflow.dial import endpoint, originate_vars


def run(ctx: Context, data: dict) -> Outcome:
    ch = ctx.channel
    kind, target = data["target_type"], data["target_id"]
    if data.get("unbridged_only", True) and ch.other_leg:
        raise StateError("the channel is bridged and unbridged_only is set", "data.unbridged_only")
    if kind == "device" and not data.get("can_call_self", True) and target == ch.authorizing_id:
        raise StateError("the target is the channel's own device and can_call_self is false",
                         "data.target_id")
    timeout = int(data.get("timeout", 20))
    new_leg = str(_uuid.uuid4())
    ctx.note(new_leg=new_leg)
    dial = esl.dial_string(endpoint(ctx, kind, target, "data.target_id"),
                           originate_vars(ctx, new_leg, timeout, bool(data.get("auto_answer"))))
    ctx.bgapi(esl.bgapi("originate", dial, esl.app_ref("intercept", ctx.arg_uuid())), timeout=timeout + 10)
    return CONTINUE
