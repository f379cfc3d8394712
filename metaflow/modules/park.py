"""park: park the channel (or its peer); both legs stay up, and resume bridges them again."""

from eslchan.esl import commands as esl
from metaflow.base import CONTINUE, Context, Outcome


def run(ctx: Context, data: dict) -> Outcome:
    peer = ctx.peer()
    if data.get("leg", "self") == "peer":
        victim = ctx.require_peer("there is no peer to park")
        other = ctx.uuid
    else:
        victim, other = ctx.uuid, peer
    if other:
        # the leg left behind would hang up when the bridge ends; it parks too
        ctx.api(esl.api("uuid_setvar", esl.uuid(other), esl.var_name("park_after_bridge"), esl.word("true")))
        ctx.state["parked_peer"] = peer
    ctx.api(esl.api("uuid_park", esl.uuid(victim)))
    return CONTINUE
