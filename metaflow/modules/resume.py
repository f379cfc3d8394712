"""resume: take the call off hold, and bridge a parked peer back."""

from eslchan.esl import commands as esl
from metaflow.base import CONTINUE, Context, Outcome, StateError


def run(ctx: Context, data: dict) -> Outcome:
    ch = ctx.channel
    done = False
    for uuid in (ctx.uuid, ch.other_leg):
        leg = ctx.registry.get(ctx.node, uuid) if uuid else None
        if leg is not None and leg.is_onhold:
            ctx.api_and_wait(esl.api("uuid_hold", esl.word("off"), esl.uuid(uuid)), {"CHANNEL_UNHOLD"},
                             uuid=uuid)
            done = True
    parked = ctx.state.get("parked_peer")
    if parked and not ch.other_leg and ctx.registry.get(ctx.node, parked) is not None:
        ctx.api_and_wait(esl.api("uuid_bridge", ctx.arg_uuid(), esl.uuid(parked)), {"CHANNEL_BRIDGE"})
        ctx.state.pop("parked_peer", None)
        done = True
    if not done:
        raise StateError("nothing to resume: the call is neither on hold nor parked")
    return CONTINUE
