"""Call churn: calls that come and go at a steady rate, each ending after a random while from
a random end, as on a busy switch. Seeded, so a run's calls (kinds, lengths, who hangs up)
are the same for the same seed; times are simulated (``Simulator.speed``)."""

from __future__ import annotations

import heapq
import random
import time
import uuid as uuidlib
from collections.abc import Sequence

import gevent

from eslchan.simulator.server import Simulator

#: What a churned call is: a phone calling a phone (bridged, sometimes never answered), a
#: phone parked alone, or a loopback call made with the originate api.
KINDS = ("bridged", "ringing", "parked", "loopback")


class Churn:
    """``rate`` calls per simulated second, each lasting ``lengths`` (simulated seconds,
    uniform), in the proportions of ``weights`` (one per :data:`KINDS`)."""

    def __init__(self, sim: Simulator, *, rate: float = 12.0,
                 lengths: tuple[float, float] = (0.5, 6.0), seed: int = 0,
                 account_id: str | None = None,
                 weights: Sequence[float] = (6, 1, 1, 2)) -> None:
        self.sim = sim
        self.rate = rate
        self.lengths = lengths
        self.rng = random.Random(seed)
        self.account_id = account_id
        self.weights = list(weights)
        self.started = 0  # calls placed so far
        self._ends: list[tuple[float, int, list[str]]] = []  # (monotonic due, order, legs)
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._run)

    def wait_placed(self, count: int) -> None:
        """Block until ``count`` calls have been placed (at the churn's own pace)."""
        while self.started < count:
            gevent.sleep(0.5 / self.rate / self.sim.speed)

    def stop(self) -> None:
        """No more calls start or end; the calls up stay up."""
        if self._greenlet is not None:
            self._greenlet.kill()
            self._greenlet = None

    def _run(self) -> None:
        speed = self.sim.speed
        next_call = time.monotonic()
        while True:
            now = time.monotonic()
            while self._ends and self._ends[0][0] <= now:
                _, _, legs = heapq.heappop(self._ends)
                live = [u for u in self._with_twins(legs) if self.sim.channel(u) is not None]
                if live:
                    self.sim.hangup(self.rng.choice(live))
            if now >= next_call:  # behind schedule (a busy machine), it catches up
                self._place()
                next_call += self.rng.uniform(0.5, 1.5) / self.rate / speed
            wake = min(next_call, self._ends[0][0]) if self._ends else next_call
            gevent.sleep(max(0.0, wake - time.monotonic()))

    def _with_twins(self, legs: list[str]) -> list[str]:
        """The legs and their loopback twins (the -b leg of a loopback call)."""
        out = list(legs)
        for uuid in legs:
            ch = self.sim.channel(uuid)
            if ch is not None and ch.loopback_peer and ch.loopback_peer not in out:
                out.append(ch.loopback_peer)
        return out

    def _place(self) -> None:
        rng = self.rng
        kind = rng.choices(KINDS, self.weights)[0]
        number = str(1000 + rng.randrange(9000))
        self.started += 1
        if kind == "loopback":
            uuid = str(uuidlib.UUID(int=rng.getrandbits(128), version=4))
            account = f",eslchan_account_id={self.account_id}" if self.account_id else ""
            gevent.spawn(self.sim.originate, f"{{origination_uuid={uuid},origination_caller_id_number="
                                             f"{number}{account}}}loopback/esl_answer/default &park")
            legs = [uuid]
        else:
            call = self.sim.create_call(account_id=self.account_id, caller_id_number=number,
                                        destination=str(2000 + rng.randrange(8000)),
                                        answered=kind != "ringing", bridged=kind != "parked")
            legs = call.uuids
        length = rng.uniform(*self.lengths) / self.sim.speed
        heapq.heappush(self._ends, (time.monotonic() + length, self.started, legs))
