"""The channel registry: every live channel of every node, in memory (SPEC §4)."""

from eslchan.registry.channel import GREGORIAN_OFFSET, Channel
from eslchan.registry.registry import ChannelRegistry, ResyncMark
from eslchan.registry.resync import NodeSync, Resyncer, ResyncResult
from eslchan.registry.waiting import ChannelGone, Waiter

__all__ = [
    "GREGORIAN_OFFSET",
    "Channel",
    "ChannelGone",
    "ChannelRegistry",
    "NodeSync",
    "ResyncMark",
    "ResyncResult",
    "Resyncer",
    "Waiter",
]
