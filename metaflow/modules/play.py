"""play: play media to the channel, its peer, or both; wait for it to finish. One of the
``terminators`` pressed meanwhile cuts it short (barge-in); digits pressed during the prompt
count for the next collect_dtmf."""

from eslchan.esl import commands as esl
from metaflow.base import CONTINUE, Context, Outcome, StateError
from metaflow.capabilities import Need, application


def requires(data: dict) -> list[Need]:
    return [application("playback")]


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


def play_to(ctx: Context, data: dict, app: str, arg: esl.Arg, default_leg: str, wait: bool = True) -> None:
    """Run a media app (playback, speak) on the legs ``data["leg"]`` means; with ``wait``,
    until the first leg's media finished (cut short by ``data["terminators"]``). The other
    legs' media runs alongside it."""
    targets = legs(ctx, data.get("leg", default_leg))
    for uuid in targets[1:]:
        ctx.send(esl.execute(esl.uuid(uuid), app, arg))
    if wait:
        ctx.execute_and_wait(esl.uuid(targets[0]), app, arg, terminators="".join(data.get("terminators", [])))
    else:
        ctx.send(esl.execute(esl.uuid(targets[0]), app, arg))


def run(ctx: Context, data: dict) -> Outcome:
    play_to(ctx, data, "playback", ctx.media(data["id"], "data.id"), "both", wait=data.get("wait", True))
    return CONTINUE
