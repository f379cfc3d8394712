"""play: play media to the channel, its peer, or both; wait for it to finish. One of the
``terminators`` pressed meanwhile cuts it short (barge-in); digits pressed during the prompt
count for the next collect_dtmf."""

from eslchan.esl import commands as esl
from metaflow.base import CONTINUE, Context, Outcome, StateError


def legs(ctx: Context, leg: str) -> list[str]:
    """The uuids a ``leg`` of self/peer/both means now (both = self alone when unbridged)."""
    peer = ctx.peer()
    if leg == "self":
        return [ctx.uuid]
    if leg == "peer":
        if not peer:
            raise StateError("the channel is not bridged, there is no peer to play to", "data.leg")
        return [peer]
    return [ctx.uuid, peer] if peer else [ctx.uuid]


def run(ctx: Context, data: dict) -> Outcome:
    media = ctx.media(data["id"], "data.id")
    targets = legs(ctx, data.get("leg", "both"))
    # the first leg's playback is the one waited on; the others run alongside it
    for uuid in targets[1:]:
        ctx.send(esl.execute(esl.uuid(uuid), "playback", media))
    if data.get("wait", True):
        ctx.execute_and_wait(esl.uuid(targets[0]), "playback", media,
                             terminators="".join(data.get("terminators", [])))
    else:
        ctx.send(esl.execute(esl.uuid(targets[0]), "playback", media))
    return CONTINUE
