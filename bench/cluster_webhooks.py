"""Webhooks in cluster mode: deliveries/s and event-to-delivery delay through the cluster's Redis
store and its deliverer, against the single process's SQLite store; and failover of delivery.

Every eslchan is an ``eslchan serve`` process with a ``[webhooks]`` table, on two simulated
FreeSWITCH nodes (in this process); Redis is Debian's ``redis-server`` on a free port (no
persistence); the receiver is a process of its own on loopback (``bench/webhooks.py``'s, in its
``log`` mode) that answers 200 at once and notes when each webhook arrived. Calls are placed on
the simulator and hung up at once (a ``channel_create`` and a ``channel_destroy`` each), all of
one account, whose hooks take every hook event (``hook: all``). Two set-ups, same run:

- **single process** (the baseline): no ``[cluster]``, the hooks in SQLite;
- **cluster**: two instances; the calls go to the node the delivering instance does not own, so
  every event goes owner → Redis stream → deliverer → receiver.

1. **Deliveries/s**: ``--deliveries`` per hook placed as fast as the simulator goes, for one
   hook and for ten, clocked from the first call placed to the last webhook received.
2. **Delay**: from a call placed on the simulator to its ``channel_create`` webhook at the
   receiver (calls 30 ms apart), p50 / p99.
3. **Failover** (cluster): ten hooks, deliveries pending; kill -9 the deliverer once the receiver
   has 15% of them, time until every delivery has arrived (each ``webhook-id`` once at least);
   against ``lease_seconds``.

Run: ``.venv/bin/python bench/cluster_webhooks.py [--quick] [--deliveries N] [--lease S]``.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from cluster_support import RedisServer  # noqa: E402

from bench._common import machine, median, percentile, summary  # noqa: E402
from bench.cluster import Client, SimCluster, cpu_of, wait  # noqa: E402
from bench.webhooks import start_receiver  # noqa: E402
from eslchan.demo import ACME  # noqa: E402

HOOKS = f"/v2/accounts/{ACME}/webhooks"
SPACING = 0.03  # s between the calls of the delay part


def settings(data_dir: Path) -> dict:
    """The [webhooks] table: loopback allowed, nothing dropped or disabled during a run."""
    return {"data_dir": str(data_dir), "allowed_networks": ["127.0.0.0/8"], "disable_after": 1000,
            "max_pending_per_hook": 1_000_000, "handoff_max": 1_000_000}


class Receiver:
    """The receiver process and what arrived there: (monotonic time, call, hook event, webhook-id)."""

    def __init__(self) -> None:
        self.proc, port = start_receiver("log")
        self.client = Client(port)
        self.url = f"http://127.0.0.1:{port}/in"

    def count(self) -> int:
        return int(self.client.request("GET", "/count")[1])

    def since(self, n: int) -> list[list]:
        return json.loads(self.client.request("GET", f"/log?{n}")[1])

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def place(sim, calls: int, spacing: float = 0.0) -> dict[str, float]:
    """Place ``calls`` calls of the account and hang each up at once; when each was placed."""
    placed: dict[str, float] = {}
    for i in range(calls):
        t = time.monotonic()
        call = sim.create_call(account_id=ACME, user_id="u", bridged=False, answered=False)
        placed[call.uuids[0]] = t
        sim.hangup(call.uuids[0])
        if spacing:
            gevent.sleep(spacing)
        elif i % 50 == 49:
            gevent.sleep(0)  # the simulator's sessions send what is queued
    return placed


class Setup:
    """One eslchan set-up (single process or a two-instance cluster), its receiver and hooks."""

    def __init__(self, workdir: Path, redis: RedisServer, lease: float, single: bool) -> None:
        label = "single" if single else "cluster"
        self.label = label
        self.redis = redis
        self.receiver = Receiver()
        self.c = SimCluster(workdir, redis, ["a", "b"], 2, lease, single=single,
                            webhooks=settings(workdir / f"hooks-{label}"))
        if single:
            self.deliverer, node = "single", "fs1"
        else:
            self.deliverer = wait(self.holder, 30, "a deliverer")
            node = next(n for n, o in self.c.owners().items() if o != self.deliverer)
        self.sim = self.c.sims[node]
        self.api = next(n for n in self.c.clients if n != self.deliverer) if not single else "single"
        self.hooks = 0
        self.per_call = 0

    def holder(self) -> str | None:
        value = self.redis.client().get("eslchan:wh:lease")
        return value.decode().split("|")[0] if value else None

    def add_hooks(self, n: int) -> None:
        """Hooks made on an instance that does not deliver (any instance serves the API)."""
        client, token = self.c.clients[self.api], self.c.acme[self.api]
        for _ in range(n):
            hook = {"data": {"name": f"h{self.hooks}", "uri": self.receiver.url, "hook": "all"}}
            status, body = client.request("PUT", HOOKS, hook, token=token)
            assert status == 201, body
            self.hooks += 1

    def warm_up(self) -> None:
        """A few calls through everything; how many webhooks a call gives one hook."""
        start = self.receiver.count()
        place(self.sim, 5)
        gevent.sleep(1.5)
        got = self.receiver.count() - start
        assert got and got % (5 * self.hooks) == 0, got
        self.per_call = got // (5 * self.hooks)

    def throughput(self, deliveries: int) -> dict:
        calls = max(1, deliveries // self.per_call)
        total = calls * self.per_call * self.hooks
        start = self.receiver.count()
        pids = [p.proc.pid for p in self.c.procs.values()] + [self.redis.proc.pid]
        cpu0 = [cpu_of(pid) for pid in pids]
        t0 = time.monotonic()
        place(self.sim, calls)
        wait(lambda: self.receiver.count() - start >= total, 600, "deliveries", interval=0.1)
        elapsed = max(a[0] for a in self.receiver.since(start)) - t0
        cpu = {name: cpu_of(pid) - c0
               for name, pid, c0 in zip([*self.c.procs, "redis"], pids, cpu0, strict=True)}
        return {"deliveries": total, "rate": total / elapsed,
                "cpu_us": {name: s / total * 1e6 for name, s in cpu.items()}}

    def delay(self, n: int) -> list[float]:
        start = self.receiver.count()
        placed = place(self.sim, n, spacing=SPACING)
        wait(lambda: self.receiver.count() - start >= n * self.per_call * self.hooks, 60, "delay deliveries")
        return [(t - placed[call]) * 1000 for t, call, event, _ in self.receiver.since(start)
                if event == "channel_create" and call in placed]

    def failover(self, deliveries: int) -> dict:
        """kill -9 the deliverer with deliveries pending; seconds until all have arrived."""
        calls = max(1, deliveries // self.per_call)
        total = calls * self.per_call * self.hooks
        start = self.receiver.count()
        place(self.sim, calls)
        wait(lambda: self.receiver.count() - start >= total * 0.15, 60, "first deliveries", interval=0.005)
        self.c.procs[self.deliverer].kill()
        killed = time.monotonic()
        before = self.receiver.count() - start

        def done() -> bool:
            return len({a[3] for a in self.receiver.since(start)}) >= total

        wait(done, 120, "every delivery after the kill", interval=0.1)
        got = self.receiver.since(start)
        return {"seconds": max(a[0] for a in got) - killed, "deliveries": total, "before_kill": before,
                "again": len(got) - total, "survivor": self.holder()}

    def stop(self) -> None:
        self.c.stop()
        self.receiver.stop()


def run(workdir: Path, redis: RedisServer, lease: float, single: bool, deliveries: int, n_delay: int,
        failover: int) -> dict:
    s = Setup(workdir, redis, lease, single)
    out: dict = {"deliverer": s.deliverer}
    try:
        s.add_hooks(1)
        s.warm_up()
        out["per_call"] = s.per_call
        out["delay"] = s.delay(n_delay)
        out["one"] = s.throughput(deliveries)
        s.add_hooks(9)
        gevent.sleep(0.5)
        out["ten"] = s.throughput(deliveries)
        if failover:
            out["failover"] = s.failover(failover)
        return out
    finally:
        s.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="about a minute: fewer deliveries and calls")
    ap.add_argument("--deliveries", type=int, help="deliveries per hook (default 2000, quick 300)")
    ap.add_argument("--lease", type=float, default=5.0, help="[cluster] lease_seconds (the default)")
    args = ap.parse_args()
    deliveries = args.deliveries or (300 if args.quick else 2000)
    n_delay = 60 if args.quick else 300
    failover = 200 if args.quick else 500  # deliveries per hook of the failover part
    print(f"machine: {machine()}")
    redis = RedisServer()
    with tempfile.TemporaryDirectory(prefix="eslchan-bench-cwh-") as tmp:
        workdir = Path(tmp)
        try:
            single = run(workdir, redis, args.lease, True, deliveries, n_delay, 0)
            redis.client().flushall()
            cluster = run(workdir, redis, args.lease, False, deliveries, n_delay, failover)
        finally:
            redis.stop()

    print(f"\n1. deliveries/s, {deliveries} per hook ({single['per_call']} webhooks per call and hook), "
          "first call placed to last webhook received")
    print("| hooks | single process (SQLite) | cluster (Redis, deliverer not the owner) | cluster / single "
          "| CPU per delivery, µs: single | deliverer | owner | redis |")
    print("|---|---|---|---|---|---|---|---|")
    owner = next(n for n in ("a", "b") if n != cluster["deliverer"])
    for key, hooks in (("one", 1), ("ten", 10)):
        a, b = single[key], cluster[key]
        print(f"| {hooks} | {a['rate']:,.0f} | {b['rate']:,.0f} | {b['rate'] / a['rate']:.2f}x "
              f"| {a['cpu_us']['single']:,.0f} | {b['cpu_us'][cluster['deliverer']]:,.0f} "
              f"| {b['cpu_us'][owner]:,.0f} | {b['cpu_us']['redis']:,.0f} |")

    a, b = single["delay"], cluster["delay"]
    print(f"\n2. call placed -> its channel_create at the receiver, {n_delay} calls "
          f"{SPACING * 1000:.0f} ms apart")
    print(f"  single process: p50 {median(a):.2f} ms p99 {percentile(a, 99):.2f} ms (n={len(a)})")
    print(f"  cluster, owner -> Redis -> deliverer: p50 {median(b):.2f} ms p99 {percentile(b, 99):.2f} ms "
          f"(n={len(b)}; {median(b) / median(a):.2f}x p50, {percentile(b, 99) / percentile(a, 99):.2f}x p99)")

    fo = cluster["failover"]
    print(f"\n3. failover: 10 hooks, {fo['deliveries']:,} deliveries, kill -9 the deliverer after "
          f"{fo['before_kill']:,} arrived: all arrived {fo['seconds']:.2f} s after the kill "
          f"({fo['seconds'] / args.lease:.2f}x the {args.lease:g} s lease), delivered by {fo['survivor']}; "
          f"{fo['again']} sent again (at least once)")

    print()
    summary("cluster_webhooks_deliveries_per_s_one_hook", f"{cluster['one']['rate']:,.0f}",
            cluster["one"]["rate"] / single["one"]["rate"], "the single process's SQLite store")
    summary("cluster_webhooks_deliveries_per_s_ten_hooks", f"{cluster['ten']['rate']:,.0f}",
            cluster["ten"]["rate"] / single["ten"]["rate"], "the single process's SQLite store")
    summary("cluster_webhooks_delay_p50", f"{median(b):.2f} ms", median(b) / median(a), "the single process")
    summary("cluster_webhooks_failover_s", f"{fo['seconds']:.2f} s", fo["seconds"] / args.lease,
            "lease_seconds")


if __name__ == "__main__":
    main()
