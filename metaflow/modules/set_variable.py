"""set_variable: set a channel variable (uuid_setvar). FreeSWITCH fires no event for it, so
the registry records the value at once and custom_channel_vars shows it without waiting
for the channel's next event."""

from eslchan.esl import commands as esl
from metaflow.base import CONTINUE, Context, Outcome


def run(ctx: Context, data: dict) -> Outcome:
    ctx.set_variable(ctx.uuid, esl.var_name(data["name"], "data.name"),
                     esl.var_value(data["value"], "data.value"))
    return CONTINUE
