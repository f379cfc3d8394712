"""move: move the call to another device (or the user's devices): the new leg picks up the
peer, and this leg is released."""

import uuid as _uuid

from eslchan.esl import commands as esl
from metaflow.base import CONTINUE, Context, Outcome, StateError
from metaflow.dial import endpoint, originate_vars


def run(ctx: Context, data: dict) -> Outcome:
    ch = ctx.channel
    peer = ctx.require_peer("there is no call to move")
    if data.get("device_id"):
        kind, target, field = "device", data["device_id"], "data.device_id"
        if not data.get("can_call_self", True) and target == ch.authorizing_id:
            raise StateError("the target is the channel's own device and can_call_self is false", field)
    else:
        kind, target, field = "user", data["owner_id"], "data.owner_id"
    timeout = int(data.get("timeout", 20))
    new_leg = str(_uuid.uuid4())
    ctx.note(new_leg=new_leg)
    dial = esl.dial_string(endpoint(ctx, kind, target, field),
                           originate_vars(ctx, new_leg, timeout, bool(data.get("auto_answer"))))
    ctx.bgapi(esl.bgapi("originate", dial, esl.app_ref("intercept", esl.uuid(peer))), timeout=timeout + 10)
    return CONTINUE
