"""bridge: connect this channel to another call of the same account with uuid_bridge, and go
on once FreeSWITCH says they are bridged (CHANNEL_BRIDGE). FreeSWITCH bridges two calls of
one switch only, and refuses (``-ERR Invalid uuid``) a leg that is hanging up or a pair of
which neither is answered: those are refused here first, with the reason."""

import time

from eslchan.esl import commands as esl
from metaflow.base import CONTINUE, Context, NotFound, Outcome, StateError

FIELD = "data.other_leg"


def _media_up(channel: object) -> bool:
    return bool(getattr(channel, "answered", False)) or getattr(channel, "answer_state", None) == "early"


def run(ctx: Context, data: dict) -> Outcome:
    other = str(esl.uuid(data["other_leg"], FIELD))
    if other == ctx.uuid:
        raise StateError("a channel cannot be bridged to itself", FIELD)
    peer = ctx.registry.find(other)
    if peer is None or peer.account_id not in ctx.policy.accounts:
        raise NotFound(other)  # another tenant's call is one that does not exist
    own = ctx.channel
    if peer.node != ctx.node:
        raise StateError(f"the other call is on node {peer.node}, this one on {ctx.node}: "
                         "FreeSWITCH bridges calls of one switch only", FIELD)
    for channel, who in ((own, "this channel"), (peer, "the other call")):
        if channel.hangup_cause or channel.answer_state == "hangup":
            raise StateError(f"{who} is hanging up", FIELD)
    if not (_media_up(own) or _media_up(peer)):
        raise StateError("neither call is answered: FreeSWITCH bridges only a call with media", FIELD)
    if own.other_leg == other:
        raise StateError("the two calls are already bridged to each other", FIELD)
    ctx.act_on(other)
    timeout = int(data.get("timeout", 5))
    deadline = time.monotonic() + timeout
    with ctx.events({ctx.uuid, other}) as stream:
        ctx.api(esl.api("uuid_bridge", esl.uuid(ctx.uuid), esl.uuid(other)))
        while True:
            event = stream.get(deadline - time.monotonic())
            if event is None:
                raise StateError(f"FreeSWITCH did not bridge the calls within {timeout} s", FIELD)
            name, who = event.get("Event-Name"), event.get("Unique-ID")
            if name == "CHANNEL_BRIDGE" and {who, event.get("Other-Leg-Unique-ID")} == {ctx.uuid, other}:
                ctx.note(bridged_to=other)
                return CONTINUE
            if name == "CHANNEL_DESTROY" and who == other:
                raise StateError("the other call hung up before the bridge", FIELD)
