"""The simulated FreeSWITCH: :class:`Switch`, composed from the core and one mixin per concern.

``core`` (:class:`SwitchCore`: events, channel life, answer/hold/DTMF, recording, the
dialplan, running applications), ``apps`` (the dialplan applications), ``bridging``
(bridges and transfers) and ``originate`` (dialled legs, the originate api, calls created
from Python); ``dialstring`` parses what they are given.
"""

from __future__ import annotations

from eslchan.simulator.apps import Applications
from eslchan.simulator.bridging import Bridging
from eslchan.simulator.core import SwitchCore
from eslchan.simulator.originate import Originating


class Switch(Applications, Bridging, Originating, SwitchCore):
    """The FreeSWITCH model behind the event socket."""
