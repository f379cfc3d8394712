"""hold_control: hold, unhold or toggle the hold of the call."""

from eslchan.esl import commands as esl
from metaflow.base import CONTINUE, Context, Outcome

FLAGS = {"hold": None, "unhold": "off", "toggle": "toggle"}


def run(ctx: Context, data: dict) -> Outcome:
    action = data.get("action", "toggle")
    flag = FLAGS[action]
    args = ([esl.word(flag)] if flag else []) + [ctx.arg_uuid()]
    ctx.api_and_wait(esl.api("uuid_hold", *args), {"CHANNEL_HOLD", "CHANNEL_UNHOLD"})
    return CONTINUE
