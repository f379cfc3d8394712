"""park: park the call. A bridged call parks both legs (neither hangs up when the bridge
ends) and remembers the peer, so resume bridges them again."""

from eslchan.esl import commands as esl
from metaflow.base import CONTINUE, Context, Outcome


def park_both(ctx: Context, uuid: str, peer: str) -> None:
    """Park a bridged channel and its peer; ``park_after_bridge`` first, so neither leg
    hangs up when the bridge ends (or when it is bridged elsewhere and that ends)."""
    for leg in (uuid, peer):
        ctx.act_on(leg)  # both legs or none: a refused peer leaves this leg as it was
    for leg in (uuid, peer):
        ctx.api(esl.api("uuid_setvar", esl.uuid(leg), esl.system_var("park_after_bridge"), esl.word("true")))
    ctx.api(esl.api("uuid_transfer", esl.uuid(uuid), esl.word("-both"), esl.dial_target("park"),
                    esl.dialplan("inline")))


def run(ctx: Context, data: dict) -> Outcome:
    peer = ctx.peer()
    if not peer:
        ctx.api(esl.api("uuid_park", ctx.arg_uuid()))
        return CONTINUE
    park_both(ctx, ctx.uuid, peer)
    ctx.state["parked_peer"] = peer
    return CONTINUE
