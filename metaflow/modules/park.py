"""park: park the call. A bridged call parks both legs (neither hangs up when the bridge
ends) and remembers the peer, so resume bridges them again."""

from eslchan.esl import commands as esl
from metaflow.base import CONTINUE, Context, Outcome


def run(ctx: Context, data: dict) -> Outcome:
    peer = ctx.peer()
    if not peer:
        ctx.api(esl.api("uuid_park", ctx.arg_uuid()))
        return CONTINUE
    for leg in (ctx.uuid, peer):
        ctx.api(esl.api("uuid_setvar", esl.uuid(leg), esl.var_name("park_after_bridge"), esl.word("true")))
    ctx.state["parked_peer"] = peer
    ctx.api(esl.api("uuid_transfer", ctx.arg_uuid(), esl.word("-both"), esl.dial_target("park"),
                    esl.context("inline")))
    return CONTINUE
