"""A FreeSWITCH event socket simulator: the embedded default and the tests' test double.

A real TCP ESL server on loopback that models FreeSWITCH 1.10 closely enough for eslchan to
run its real code against it (checked against the recorded conversations in
``shared/esl-captures`` by ``tests/test_simulator_fidelity.py``)::

    sim = Simulator(speed=20)            # all call timings 20x faster
    sim.start()                          # sim.host, sim.port; password ClueCon
    call = sim.create_call(account_id=..., user_id=..., device_id=...)
    sim.press_dtmf(call.a_uuid, "1#"); sim.hangup(call.b_uuid)
    sim.commands                         # every command received: "api uuid_kill <u>"
    sim.hooks                            # every hook variable FreeSWITCH would have run
    sim.fail_next("-ERR boom"); sim.stall(2); sim.split_writes(); sim.restart()
    sim.lose_events(20)                  # events no listener gets, and nothing says so

As inconvenient as FreeSWITCH: ``show channels`` and ``show calls`` read a core database
that lags the events like the real one (``coredb``; ``Simulator(db_lag=DbLag.off())`` for
none), and the originate's own leg flips its caller id once answered.

Modules: ``wire`` (frames and plain/json/xml events with FreeSWITCH's URL encoding),
``channels`` (the channel and its header blocks), ``dialstring`` (dial strings, inline and
default dialplans), ``switch`` (the switch, composed from ``core`` — events, channel life,
event order, running applications — and the mixins ``apps`` (dialplan applications),
``bridging`` (bridge and transfer) and ``originate``), ``coredb`` (the lagging table
``show`` reads), ``commands`` (api commands and their reply texts), ``session`` (one
connection: commands, subscriptions, myevents/linger), ``server`` (:class:`Simulator`: the
listener, faults, calls from Python), ``media`` (how long media plays), ``hooks`` (the
variables FreeSWITCH runs or routes by, and the log of when it would have), ``churn`` (calls
coming and going at a rate) and ``cli`` (``eslchan simulate``). Outbound socket mode is not
simulated.
"""

from eslchan.simulator.channels import SimChannel
from eslchan.simulator.server import SimCall, Simulator

__all__ = ["SimCall", "SimChannel", "Simulator"]
