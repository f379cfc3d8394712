"""The simulated FreeSWITCH: :class:`Switch`, composed from the core and one mixin per concern.

``core`` (:class:`SwitchCore`: events, channel life, private commands, the dialplan, running
applications), ``callstate`` (answer, ringing, hold, DTMF and its digit parser, recording),
``apps`` (the dialplan applications), ``bridging`` (bridges and transfers) and ``originate``
(dialled legs, the originate api, calls created from Python); ``dialstring`` parses what they
are given.
"""

from __future__ import annotations

from eslchan.simulator.apps import Applications
from eslchan.simulator.bridging import Bridging
from eslchan.simulator.callstate import CallState
from eslchan.simulator.core import SwitchCore
from eslchan.simulator.originate import Originating


class Switch(Applications, Bridging, Originating, CallState, SwitchCore):
    """The FreeSWITCH model behind the event socket."""
