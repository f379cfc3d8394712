"""hangup: hang up the channel (uuid_kill with a cause)."""

from eslchan.esl import commands as esl
from metaflow.base import STOP, Context, Outcome


def run(ctx: Context, data: dict) -> Outcome:
    cause = esl.hangup_cause(data.get("cause", "NORMAL_CLEARING"), "data.cause")
    ctx.api(esl.api("uuid_kill", ctx.arg_uuid(), cause))
    return STOP
