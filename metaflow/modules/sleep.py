"""sleep: wait a while; ends early (the run ends) if the channel is destroyed meanwhile."""

from eslchan.registry.waiting import ChannelGone
from metaflow.base import CONTINUE, Context, Outcome


def run(ctx: Context, data: dict) -> Outcome:
    if ctx.wait_for({"CHANNEL_DESTROY"}, float(data.get("duration", 1))) is not None:
        raise ChannelGone(ctx.node, ctx.uuid, "destroyed")
    return CONTINUE
