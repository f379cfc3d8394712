"""intercept: ring a device, user or number; whoever answers takes over this channel
(FreeSWITCH's intercept app on the new leg). Returns once the new leg answered."""

from metaflow.base import CONTINUE, Context, Outcome, StateError
from metaflow.dial import originate_intercept, refuse_own_device


def run(ctx: Context, data: dict) -> Outcome:
    kind, target = data["target_type"], data["target_id"]
    if data.get("unbridged_only", True) and ctx.channel.other_leg:
        raise StateError("the channel is bridged and unbridged_only is set", "data.unbridged_only")
    if kind == "device":
        refuse_own_device(ctx, data, target, "data.target_id")
    originate_intercept(ctx, kind, target, "data.target_id", data, ctx.uuid)
    return CONTINUE
