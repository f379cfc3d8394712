"""Convergence: how soon the registry lists exactly what FreeSWITCH has, during churn and after faults.

One process runs the daemon (eslchan.daemon.Daemon, wired as in production) against the
simulator at real-time speed, with FreeSWITCH's core-database lag (`show channels` lists a
new call 20–180 ms late and a dead one 170–200 ms on) and churn of 12 calls/s (calls of
0.5–6 s, hung up from either end, a fifth of them loopback originates). The truth is the
node's live channels (what ``uuid_exists`` answers).

1. Staleness during churn, no fault. Every 2 ms the registry's channel set is compared with
   the truth. Baseline, same run: the node's own `show channels` table, what a client that
   trusted the snapshot would list. Figures: the share of samples that differ, and how long
   one channel's difference lasts (p50/p99).
2. Faults. For each fault, ``--repeat`` times: churn, the fault, churn stops once the node
   is reachable again, then the time from the fault to the first moment the registry lists
   exactly the node's channels. Baseline, same run: the time from the fault to the first
   `show channels` answered after it, when a resync that trusted the snapshot was done
   (without being exact). Events FreeSWITCH drops without a word (``lose``) have no link
   fault and no resync: their bound is the anti-entropy interval, the baseline there.

    python bench/convergence.py [--quick] [--profile] [--repeat N] [--seconds S] [--speed X]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import Profiler, machine, percentile, summary  # noqa: E402

GRACE = 2.0  # stale grace: the long outage outlasts it
ANTI_ENTROPY = 2.0  # check interval, the bound for silent losses
SNAPSHOT_LAG = 0.5  # the daemon's default lag window
RATE = 12.0  # calls per (simulated) second
SAMPLE_EVERY = 0.002


class Bench:
    def __init__(self, speed: float) -> None:
        from eslchan.config import ChannelsConfig, LinkOptions
        from eslchan.daemon import Daemon
        from eslchan.demo import demo_config, demo_keys
        from eslchan.simulator import Simulator

        self.speed = speed
        self.sim = Simulator(speed=speed, seed=1, heartbeat_interval=3600)
        self.sim.start()
        config = demo_config([("fs1", self.sim.host, self.sim.port, "ClueCon")],
                             demo_keys(), listen="127.0.0.1:0")
        config = replace(
            config,
            channels=ChannelsConfig(stale_grace_seconds=GRACE, snapshot_lag_seconds=SNAPSHOT_LAG,
                                    anti_entropy_seconds=ANTI_ENTROPY),
            link=LinkOptions(backoff_initial=0.1, backoff_max=0.5, command_timeout=2.0),
        )
        self.daemon = Daemon(config)
        self.daemon.start()
        self.link = self.daemon.links["fs1"]
        self.shows: list[float] = []  # when each `show channels` was answered
        self.link.add_command_listener(self._on_command)
        self.wait(lambda: self.daemon.sync.is_synced("fs1"), 10)

    def _on_command(self, node: str, cmd: object, seconds: float, error: str | None) -> None:
        if getattr(cmd, "name", "") == "show" and error is None:
            self.shows.append(time.monotonic())

    def truth(self) -> set[str]:
        return {ch.uuid for ch in self.sim.channels()}

    def listed(self) -> set[str]:
        return {ch.uuid for ch in self.daemon.registry.for_node("fs1")}

    def table(self) -> set[str]:
        return {row["uuid"] for row in self.sim.switch.coredb.channel_rows()}

    def churn(self, seed: int):  # type: ignore[no-untyped-def]
        from eslchan.simulator.churn import Churn

        return Churn(self.sim, rate=RATE, lengths=(0.5, 6.0), seed=seed)

    @staticmethod
    def wait(predicate: Callable[[], bool], timeout: float, every: float = 0.001) -> float | None:
        """Seconds until ``predicate()`` held, or None on timeout."""
        import gevent

        start = time.monotonic()
        while not predicate():
            if time.monotonic() - start > timeout:
                return None
            gevent.sleep(every)
        return time.monotonic() - start

    def converged(self) -> bool:
        return (self.link.is_up and self.daemon.sync.is_synced("fs1")
                and self.listed() == self.truth())

    def hang_up_all(self) -> None:
        self.sim.api("hupall NORMAL_CLEARING")
        self.wait(lambda: not self.truth() and self.converged(), 30)

    def stop(self) -> None:
        self.daemon.stop(drain_seconds=0.1)
        self.sim.stop()


# --- 1. staleness -------------------------------------------------------------------------------


class Differences:
    """How often a listing differs from the truth, and for how long each channel does."""

    def __init__(self) -> None:
        self.samples = 0
        self.differing = 0
        self.open: dict[str, float] = {}
        self.durations: list[float] = []

    def sample(self, listed: set[str], truth: set[str], now: float) -> None:
        self.samples += 1
        wrong = listed ^ truth
        if wrong:
            self.differing += 1
        for uuid in wrong:
            self.open.setdefault(uuid, now)
        for uuid in [u for u in self.open if u not in wrong]:
            self.durations.append(now - self.open.pop(uuid))

    @property
    def share(self) -> float:
        return self.differing / self.samples if self.samples else float("nan")


def staleness(bench: Bench, seconds: float) -> tuple[Differences, Differences, int]:
    import gevent

    churn = bench.churn(seed=7)
    churn.start()
    gevent.sleep(6.0 / bench.speed)  # the longest calls: the population is steady from here
    ours, table = Differences(), Differences()
    end = time.monotonic() + seconds
    placed = churn.started
    while time.monotonic() < end:
        now = time.monotonic()
        truth = bench.truth()
        ours.sample(bench.listed(), truth, now)
        table.sample(bench.table(), truth, now)
        gevent.sleep(SAMPLE_EVERY)
    placed = churn.started - placed
    churn.stop()
    bench.hang_up_all()
    return ours, table, placed


# --- 2. faults ----------------------------------------------------------------------------------


def fault_cut(bench: Bench) -> None:
    bench.sim.drop_connections()


def fault_blip(bench: Bench) -> None:
    bench.sim.restart(keep_channels=True, down_for=0.2)


def fault_crash(bench: Bench) -> None:
    bench.sim.restart(keep_channels=False, down_for=0.2)


def fault_long_outage(bench: Bench) -> None:
    bench.sim.restart(keep_channels=True, down_for=GRACE * 1.5)


def fault_lose(bench: Bench) -> None:
    lost = bench.sim.stats["lost_events"] + 40
    bench.sim.lose_events(40)
    # the churn goes on until they are lost: they were about real calls
    bench.wait(lambda: bench.sim.stats["lost_events"] >= lost, 10)


FAULTS: dict[str, Callable[[Bench], None]] = {
    "link cut": fault_cut,
    "network blip (0.2 s)": fault_blip,
    "restart, calls lost": fault_crash,
    f"outage > grace ({GRACE * 1.5:g} s)": fault_long_outage,
    "events dropped silently": fault_lose,
}


def faults(bench: Bench, repeat: int) -> dict[str, tuple[list[float], list[float]]]:
    import gevent

    out: dict[str, tuple[list[float], list[float]]] = {}
    for n, (name, inject) in enumerate(FAULTS.items()):
        took: list[float] = []
        baseline: list[float] = []
        for i in range(repeat):
            churn = bench.churn(seed=100 * n + i)
            churn.start()
            gevent.sleep(3.0 / bench.speed)
            connects = bench.link.stats["connects"]
            t0 = time.monotonic()
            inject(bench)
            churn.stop()
            if inject is fault_lose:
                done = bench.wait(bench.converged, 60)
                baseline.append(ANTI_ENTROPY)
            else:
                # converged counts once the link noticed the fault and came back
                bench.wait(lambda: not bench.link.is_up, 10)
                down = time.monotonic()
                done = bench.wait(lambda before=connects: bench.link.stats["connects"] > before
                                  and bench.converged(), 60)
                first = next((t for t in bench.shows if t > down), None)
                baseline.append((first or time.monotonic()) - t0)
            if done is None:
                raise SystemExit(f"{name}: the registry never converged")
            took.append(time.monotonic() - t0)
            bench.hang_up_all()
        out[name] = (took, baseline)
    return out


# --- main ---------------------------------------------------------------------------------------


def ms(values: list[float], p: float) -> str:
    return f"{percentile(values, p) * 1000:8.1f} ms"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="1 repetition, 5 s of staleness")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--repeat", type=int, default=None, help="repetitions per fault (default 4)")
    p.add_argument("--seconds", type=float, default=None, help="staleness sampling (default 20)")
    p.add_argument("--speed", type=float, default=1.0, help="simulator time factor (default 1)")
    args = p.parse_args()
    repeat = args.repeat or (1 if args.quick else 4)
    seconds = args.seconds or (5.0 if args.quick else 20.0)

    from gevent import monkey

    monkey.patch_all()
    import logging

    logging.disable(logging.WARNING)  # the faults make the links complain, by design

    print(f"machine: {machine()}")
    print(f"simulator speed {args.speed:g}, churn {RATE:g} calls/s of 0.5-6 s; daemon: snapshot_lag "
          f"{SNAPSHOT_LAG:g} s, anti_entropy {ANTI_ENTROPY:g} s, stale grace {GRACE:g} s")
    bench = Bench(args.speed)
    with Profiler(args.profile) as prof:
        ours, table, placed = staleness(bench, seconds)
        results = faults(bench, repeat)
    bench.stop()

    print(f"\n== staleness during churn ({seconds:g} s sampled every {SAMPLE_EVERY * 1000:g} ms, "
          f"{placed} calls placed, no fault)")
    print(f"  {'listing':<34} {'samples differing':>18} {'difference p50':>15} {'p99':>11} {'n':>6}")
    for label, d in (("eslchan registry", ours), ("show channels (baseline)", table)):
        print(f"  {label:<34} {d.share * 100:17.2f}% {ms(d.durations, 50):>15} "
              f"{ms(d.durations, 99):>11} {len(d.durations):6d}")
    share_ratio = ours.share / table.share if table.share else float("nan")
    print(f"  eslchan / show channels: share {share_ratio:.2f}, difference p99 "
          f"{percentile(ours.durations, 99) / percentile(table.durations, 99):.2f}")

    print(f"\n== time from fault to exact convergence ({repeat} run(s) each, churn until the node "
          "is back)")
    print(f"  {'fault':<32} {'p50':>11} {'p99':>11}   {'baseline p50':>12}  ratio")
    for name, (took, baseline) in results.items():
        base = "anti-entropy" if name == "events dropped silently" else "1st snapshot"
        ratio = percentile(took, 50) / percentile(baseline, 50)
        print(f"  {name:<32} {ms(took, 50):>11} {ms(took, 99):>11}   {ms(baseline, 50):>12}  "
              f"{ratio:5.2f}x vs {base}")
    if args.profile:
        print("\nprofile (tottime):\n" + prof.top(12))
    took, baseline = results["link cut"]
    summary("convergence_after_link_cut_p50", f"{percentile(took, 50) * 1000:.0f} ms",
            percentile(took, 50) / percentile(baseline, 50),
            "first show channels answered after the cut")


if __name__ == "__main__":
    main()
