"""hold_control: hold, unhold or toggle the hold of the call.

FreeSWITCH's own ``uuid_hold toggle`` decides by the callstate, which a loopback leg never
moves to HELD: it would hold a held call again. So a toggle is decided here from what the
channel's events said (is_onhold), and the run's notes say which way it went
(``hold_action``)."""

from eslchan.esl import commands as esl
from metaflow.base import CONTINUE, Context, Outcome, StateError


def run(ctx: Context, data: dict) -> Outcome:
    action = data.get("action", "toggle")
    held = ctx.channel.is_onhold
    if action == "toggle":
        action = "unhold" if held else "hold"
    elif action == "hold" and held:
        raise StateError("the call is already on hold", "data.action")
    elif action == "unhold" and not held:
        raise StateError("the call is not on hold", "data.action")
    ctx.note(hold_action=action)
    if action == "hold":
        ctx.api_and_wait(esl.api("uuid_hold", ctx.arg_uuid()), {"CHANNEL_HOLD"})
    else:
        ctx.api_and_wait(esl.api("uuid_hold", esl.word("off"), ctx.arg_uuid()), {"CHANNEL_UNHOLD"})
    return CONTINUE
