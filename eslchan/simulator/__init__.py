"""A FreeSWITCH event socket simulator: the embedded default and the tests' test double."""

from eslchan.simulator.channels import SimChannel
from eslchan.simulator.server import SimCall, Simulator

__all__ = ["SimCall", "SimChannel", "Simulator"]
