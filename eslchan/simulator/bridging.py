"""Bridging and transfer, as a mixin of :class:`~eslchan.simulator.switch.Switch`: the
originator side of a bridge fires CHANNEL_BRIDGE/UNBRIDGE, the originatee exchanges media
until it ends; uuid_bridge and transfer unwind what a channel runs and the channel runner
continues with ``_after_bridge_request`` / ``_after_transfer``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import gevent

from eslchan.esl.inline import parse_inline
from eslchan.simulator.channels import (
    BridgeUnwind,
    HangupUnwind,
    SimChannel,
    TransferUnwind,
    new_uuid,
)


class Bridging:
    """Bridges and transfers; ``self`` is the whole
    :class:`~eslchan.simulator.switch.Switch`."""

    # -- bridging ------------------------------------------------------------------------
    def partner(self, ch: SimChannel) -> SimChannel | None:
        """The bridged leg, or the leg being dialled for ``ch`` while it rings."""
        if ch.other_leg and ch.other_leg in self.channels:
            return self.channels[ch.other_leg]
        for other in self.channels.values():
            if other.other_leg == ch.uuid and other.other_type == "originator" and not other.gone:
                return other
        return None

    def _take_over(self, ch: SimChannel, other_uuid: str) -> None:
        """Pull a channel out of whatever it runs so it can be bridged to ``other_uuid``."""
        ch.unwind_pending.append(BridgeUnwind(other_uuid, False))
        self._send(ch, ch.unwind_pending[-1])

    def _after_bridge_request(self, ch: SimChannel, b: BridgeUnwind) -> Callable[[], None]:
        if ch.unwind_pending and b in ch.unwind_pending:
            ch.unwind_pending.remove(b)
        ch.suspended = False  # a bridge loop left for a new bridge clears CF_HOLD/CF_SUSPEND
        # switch_ivr_uuid_bridge: each leg hibernates, resets and runs the bridge as a soft
        # execute, announced as an application with no completion
        for state in ("CS_HIBERNATE", "CS_RESET", "CS_SOFT_EXECUTE"):
            self.set_state(ch, state)
        self.chan_event(ch, "CHANNEL_EXECUTE", extra=[
            ("Application", "uuid_bridge"), ("Application-Data", b.other),
            ("Application-UUID", new_uuid())])
        if b.originator:
            other = self.channels.get(b.other)
            if other is None:
                return lambda: self.park(ch, "")

            def run() -> None:
                self._bridged(ch, other, originator=True, wait_peer=True)
                self._after_bridge_end(ch)
            return run

        def run_b() -> None:
            self._exchange(ch, b.other)
            self._after_bridge_end(ch)
        return run_b

    def _after_bridge_end(self, ch: SimChannel) -> None:
        self.fire_hooks(ch, "after_bridge")
        if ch.variables.get("park_after_bridge") == "true":
            self.park(ch, "")

    def _bridged(self, a: SimChannel, b: SimChannel, *, originator: bool,
                 wait_peer: bool = False) -> None:
        """``a`` fires CHANNEL_BRIDGE/UNBRIDGE and waits until the bridge ends."""
        if wait_peer:
            for _ in range(100):
                if b.other_leg == a.uuid or b.gone:
                    break
                gevent.sleep(0.005)
        now = int(time.time() * 1_000_000)
        a.other_leg, a.other_type, a.bridged_us = b.uuid, "originatee", now
        b.other_leg, b.other_type, b.bridged_us = a.uuid, "originator", now
        a.variables["bridge_uuid"] = b.uuid
        a.variables["signal_bond"] = b.uuid
        b.variables["bridge_uuid"] = a.uuid
        b.variables["signal_bond"] = a.uuid
        a.variables["last_bridge_to"] = b.uuid
        if not a.callee_id_number:
            # the caller now knows whom it talks to (Kazoo's callee_id_* fields)
            a.callee_id_name = b.caller_id_name if b.direction == "inbound" else b.destination
            a.callee_id_number = b.caller_id_number if b.direction == "inbound" \
                else b.destination
        self.set_callstate(a, "ACTIVE")
        self.fire_hooks(a, "bridge")
        self.fire_hooks(b, "bridge")
        ab = [("Bridge-A-Unique-ID", a.uuid), ("Bridge-B-Unique-ID", b.uuid)]
        self.chan_event(a, "CHANNEL_BRIDGE", before=ab)
        outer, a.bridge_depth = a.bridge_depth, a.app_depth
        try:
            while b.uuid not in a.bridge_ends:  # wait() notes the end, whoever reads it
                msg = self.wait(a, None, idle=True, dtmf=lambda: self._bridge_reads(a, b))
                if msg and msg[0] == "dtmf":
                    self._pass_digit(b, msg[1])
        finally:
            a.bridge_depth = outer
            a.bridge_ends.discard(b.uuid)
            self.chan_event(a, "CHANNEL_UNBRIDGE", before=ab)
            if a.other_leg == b.uuid:
                a.other_leg, a.other_type = None, None
            if b.other_leg == a.uuid and not b.gone:
                self._send(b, ("bridge_end", a.uuid))

    def _exchange(self, ch: SimChannel, other_uuid: str) -> None:
        """The originatee side of a bridge: no application, just media until it ends."""
        ch.other_leg, ch.other_type = other_uuid, "originator"
        if ch.state != "CS_EXCHANGE_MEDIA":
            self.set_state(ch, "CS_EXCHANGE_MEDIA")
        outer, ch.bridge_depth = ch.bridge_depth, ch.app_depth
        try:
            while other_uuid not in ch.bridge_ends:  # wait() notes the end, whoever reads it
                msg = self.wait(ch, None, idle=True,
                                dtmf=lambda: self._bridge_reads(ch, self.channels.get(other_uuid)))
                if msg and msg[0] == "dtmf":
                    self._pass_digit(self.channels.get(other_uuid), msg[1])
        finally:
            ch.bridge_depth = outer
            ch.bridge_ends.discard(other_uuid)
            partner = self.channels.get(other_uuid)
            if partner is not None and partner.other_leg == ch.uuid:
                self._send(partner, ("bridge_end", ch.uuid))

    @staticmethod
    def _bridge_reads(ch: SimChannel, other: SimChannel | None) -> bool:
        """The bridge loop reads no DTMF while either leg is suspended (held)."""
        return not ch.suspended and not (other is not None and other.suspended)

    def _pass_digit(self, other: SimChannel | None, digit: str) -> None:
        """A digit the bridge read goes out to the other side: a SIP phone hears it, a
        loopback leg sends it on to its twin, which receives it."""
        if other is None or other.gone or not other.loopback_peer:
            return
        twin = self.channels.get(other.loopback_peer)
        if twin is not None and not twin.gone:
            self.receive_digit(twin, digit, "APP")

    def uuid_bridge(self, a: SimChannel, b: SimChannel) -> None:
        # each leg gets a new caller profile whose transfer source names the other
        for leg, other in ((a, b), (b, a)):
            leg.transfer_source = f"{int(time.time())}:{new_uuid()}:uuid_br:{other.uuid}"
            leg.profile_index += 1
            leg.variables["transfer_source"] = leg.transfer_source
            leg.variables["transfer_history"] = leg.transfer_source
        a.unwind_pending.append(BridgeUnwind(b.uuid, True))
        self._send(a, a.unwind_pending[-1])
        self._take_over(b, a.uuid)

    # -- transfer ------------------------------------------------------------------------
    def transfer(self, ch: SimChannel, dest: str, dialplan: str, context: str) -> None:
        # the new caller profile exists at once; the running application then unwinds
        ch.transfer_us = int(time.time() * 1_000_000)
        ch.transfer_source = f"{int(time.time())}:{new_uuid()}:bl_xfer:{dest}/{context}/{dialplan}"
        ch.rdnis = ch.destination
        ch.profile_index += 1
        if dialplan.lower() != "inline":
            ch.destination, ch.context, ch.dialplan = dest, context, dialplan
        self._send(ch, TransferUnwind(dest, dialplan, context))

    def _after_transfer(self, ch: SimChannel, t: TransferUnwind) -> Callable[[], None]:
        ch.suspended = False  # a transfer clears CF_HOLD/CF_SUSPEND (clean exit of the bridge)
        partner = self.channels.get(ch.other_leg) if ch.other_leg else None
        if partner is not None and partner.other_leg == ch.uuid:
            self._send(partner, ("bridge_end", ch.uuid))
        # the bridged side (originatee) that is transferred away flips its caller id back
        was_originatee = partner is not None and ch.other_type == "originator"
        ch.other_leg, ch.other_type = None, None
        if t.dialplan.lower() == "inline":
            apps = parse_inline(t.dest)
        else:
            found = self.lookup(t.dest, t.context)
            if found is None:
                raise HangupUnwind(self._no_route(ch))
            apps = found
        ch.variables["transfer_history"] = f"{int(time.time())}:{new_uuid()}:uuid_br:{t.dest}"
        flipped_before = ch.cf_dialplan
        self.sort_cid(ch)
        ch.hit_dialplan = True
        self.set_state(ch, "CS_ROUTING")
        if was_originatee and flipped_before:
            # a leg that had become the caller of its own dialplan, then was bridged to as the
            # originatee, flips back when transferred away (esl-captures 18)
            self.flip_cid(ch)
        self.set_state(ch, "CS_EXECUTE")
        return lambda: self.run_apps(ch, apps)

    def _no_route(self, ch: SimChannel) -> str:
        self.hangup(ch.uuid, "NO_ROUTE_DESTINATION")
        return "NO_ROUTE_DESTINATION"
