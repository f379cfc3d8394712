"""Cluster mode: ingest with 1, 2 and 4 instances over 8 nodes, listings from a non-owner,
failover time, and what running actions and metaflows from any instance costs.

Every instance is an ``eslchan serve`` process; Redis is Debian's ``redis-server`` on a free
port (no persistence). Four parts, each with its baseline in the same run:

1. **ingest**: 8 blasters (``_blaster.py``, the recorded call with fresh UUIDs, as fast as the
   sockets allow) gated until the cluster has settled who holds which node, then ``--calls``
   calls each. Figures: events/s until the owners applied and published everything, and until
   every instance's mirror had it; CPU seconds per 100k events per instance. Baseline: the
   single process (no ``[cluster]``) on the same 8 blasters.
2. **listing**: 2 instances, one simulated node with 100 live calls of one account; the
   account's listing and a channel's detail from the owner and from the other instance.
3. **events**: time from a call placed on the simulator to its ``channel_create`` on an event
   stream: single process, and a cluster instance that does not own the node (owner → Redis →
   mirror: what a metaflow run's waits on a non-owner see too).
4. **actions**: POST set_variable (``uuid_setvar``) on the owner, on the other instance (its own
   command connection: eslchan's choice) and through a forwarder to the owner (the other
   choice: one more HTTP hop). Then **failover**: kill -9 the owner of 2 of 4 nodes, place a
   call on one of them, and time until the survivor lists exactly what the switches have;
   against ``lease_seconds``.

Run: ``.venv/bin/python bench/cluster.py [--quick] [--calls N] [--lease S]``.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from cluster_support import Instance, RedisServer, free_port, write_config  # noqa: E402

from bench import _blaster  # noqa: E402
from bench._common import machine, median, percentile, summary  # noqa: E402
from eslchan.config import DEFAULT_EVENTS  # noqa: E402
from eslchan.demo import ACME, ADMIN  # noqa: E402
from eslchan.esl.link import _with_heartbeat  # noqa: E402

KEYS = {
    "ad000000000000000000000000000000": "admin-key-0123456789abcdef",
    "acc00000000000000000000000000001": "acme-key-0123456789abcdef",
    "acc00000000000000000000000000002": "sales-key-0123456789abcdef",
    "acc00000000000000000000000000003": "globex-key-0123456789abcdef",
}
SIGNING = "b" * 64


class Client:
    """Keep-alive HTTP to one instance."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def request(self, method: str, path: str, body=None, token=None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["X-Auth-Token"] = token
        data = json.dumps(body).encode() if body is not None else None
        for _attempt in (1, 2):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        return 0, b""  # not listening (yet, or any more)

    def token(self, account: str) -> str:
        status, body = self.request("PUT", "/v2/api_auth", {"data": {"api_key": KEYS[account]}})
        assert status == 201, body
        return json.loads(body)["auth_token"]

    def metrics(self) -> dict[str, float]:
        status, body = self.request("GET", "/metrics")
        out: dict[str, float] = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out


def wait(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        gevent.sleep(interval)
    raise RuntimeError(f"not within {timeout} s: {what}")


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def single_config(path: Path, nodes, port: int, webhooks: dict | None = None) -> Path:
    """The same configuration without [cluster]: the single process."""
    write_config(path, nodes=nodes, keys=KEYS, redis_url="redis://x", instance="x", port=port, lease=1,
                 signing_key=SIGNING, webhooks=webhooks)
    text = path.read_text()
    start = text.index("[cluster]")
    end = text.index("\n\n", start) + 2  # the table ends at its blank line
    path.write_text(text[:start] + text[end:])
    return path


def start_single(workdir: Path, nodes, name: str, webhooks: dict | None = None) -> Instance:
    inst = Instance.__new__(Instance)
    inst.name = name
    inst.port = free_port()
    inst.config_path = single_config(workdir / f"{name}.toml", nodes, inst.port, webhooks)
    inst.log_path = workdir / f"{name}.log"
    inst.proc = None
    inst.url = f"http://127.0.0.1:{inst.port}"
    return inst.start()


# --- 1. ingest --------------------------------------------------------------------------------


def ingest(workdir: Path, redis: RedisServer, instances: int, calls: int, lease: float) -> dict:
    gate = workdir / f"gate-{instances}-{time.monotonic_ns()}"
    blasters = [_blaster.spawn(calls, gate=str(gate)) for _ in range(8)]
    nodes = [(f"fs{i + 1}", "127.0.0.1", port, "ClueCon") for i, (_, port) in enumerate(blasters)]
    per_call = _blaster.load_call("json").select(_with_heartbeat(DEFAULT_EVENTS)).events
    expected = 8 * calls * per_call
    procs: list[Instance] = []
    try:
        if instances == 0:
            procs.append(start_single(workdir, nodes, "single"))
        else:
            redis.client().flushall()
            for i in range(instances):
                procs.append(Instance(workdir, f"i{instances}-{i}", nodes=nodes, keys=KEYS,
                                      redis_url=redis.url, lease=lease, signing_key=SIGNING).start())
        clients = [Client(p.port) for p in procs]
        wait(lambda: all(c.request("GET", "/health")[0] == 200 for c in clients), 30, "healthy")
        if instances:
            r = redis.client()

            def settled() -> bool:  # each node held by the instance it goes to, resynced
                from eslchan.cluster.lease import assignment

                live = [p.name for p in procs]
                want = assignment([n[0] for n in nodes], live)
                for node, owner in want.items():
                    value = r.get(f"eslchan:lease:{node}")
                    mark = r.hget(f"eslchan:snap:{node}", "~node")
                    if not value or value.decode().split("|")[0] != owner or not mark:
                        return False
                    if json.loads(mark)[0] != "u":
                        return False
                return True

            wait(settled, 40, "leases settled")
            gevent.sleep(lease)  # no handover still under way
        cpu0 = [cpu_of(p.proc.pid) for p in procs]
        gate.touch()
        t0 = time.monotonic()

        def received() -> bool:
            total = pending = 0.0
            for c in clients:
                m = c.metrics()
                if instances:
                    total += m.get("eslchan_cluster_events_received_total", 0)
                    pending += m.get("eslchan_cluster_publish_pending", 0)
                else:
                    total += sum(v for k, v in m.items() if k.startswith("eslchan_events_received_total"))
                    pending += sum(v for k, v in m.items() if k.startswith("eslchan_event_queue"))
            return total >= expected and pending == 0

        wait(received, 300, "ingest", interval=0.02)
        t_ingest = time.monotonic() - t0
        t_mirror = t_ingest
        if instances:
            r = redis.client()
            seq = int(r.get("eslchan:seq") or 0)

            def mirrored() -> bool:
                return all(c.metrics().get("eslchan_cluster_mirror_position", -1) >= seq for c in clients)

            wait(mirrored, 300, "mirrors", interval=0.02)
            t_mirror = time.monotonic() - t0
        cpu = [cpu_of(p.proc.pid) - c0 for p, c0 in zip(procs, cpu0, strict=True)]
        return {"instances": instances, "events": expected, "ingest_s": t_ingest, "mirror_s": t_mirror,
                "ingest_eps": expected / t_ingest, "e2e_eps": expected / t_mirror,
                "cpu_per_100k": [c / expected * 1e5 for c in cpu]}
    finally:
        for p in procs:
            p.kill()
        for proc, _ in blasters:
            proc.kill()


# --- 2-4. on the simulator ----------------------------------------------------------------------


class SimCluster:
    """Simulated nodes in this process and eslchan instances as processes."""

    def __init__(self, workdir: Path, redis: RedisServer, names: list[str], nodes: int, lease: float,
                 single: bool = False, webhooks: dict | None = None):
        from eslchan.simulator import Simulator

        self.sims = {f"fs{i + 1}": Simulator(speed=20.0, seed=i) for i in range(nodes)}
        for sim in self.sims.values():
            sim.start()
        self.nodes = [(n, s.host, s.port, "ClueCon") for n, s in self.sims.items()]
        self.redis = redis
        self.workdir = workdir
        self.lease = lease
        self.webhooks = webhooks  # a [webhooks] table for every instance, if given
        if single:
            self.procs = {"single": start_single(workdir, self.nodes, "single", webhooks)}
        else:
            redis.client().flushall()
            self.procs = {n: self.instance(n) for n in names}
        self.clients = {n: Client(p.port) for n, p in self.procs.items()}
        wait(lambda: all(c.request("GET", "/health")[0] == 200 for c in self.clients.values()), 30, "up")
        self.acme = {n: c.token(ACME) for n, c in self.clients.items()}
        self.admin = {n: c.token(ADMIN) for n, c in self.clients.items()}
        if not single:
            wait(self.settled, 30, "settled")

    def instance(self, name: str) -> Instance:
        return Instance(self.workdir, name, nodes=self.nodes, keys=KEYS, redis_url=self.redis.url,
                        lease=self.lease, signing_key=SIGNING, webhooks=self.webhooks).start()

    def owners(self) -> dict[str, str | None]:
        r = self.redis.client()
        values = {n: r.get(f"eslchan:lease:{n}") for n in self.sims}
        return {n: (v.decode().split("|")[0] if v else None) for n, v in values.items()}

    def settled(self) -> bool:
        from eslchan.cluster.lease import assignment

        want = assignment(list(self.sims), [n for n, p in self.procs.items() if p.proc.poll() is None])
        return self.owners() == want

    def truth(self) -> set[str]:
        return {ch.uuid for s in self.sims.values() for ch in s.channels()}

    def listed(self, name: str) -> set[str] | None:
        status, body = self.clients[name].request("GET", "/v2/channels", token=self.admin[name])
        return {r["uuid"] for r in json.loads(body)["data"]} if status == 200 else None

    def stop(self) -> None:
        for p in self.procs.values():
            p.kill()
        for s in self.sims.values():
            s.stop()


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def listing(workdir: Path, redis: RedisServer, lease: float, n: int) -> dict:
    c = SimCluster(workdir, redis, ["a", "b"], 1, lease)
    try:
        sim = c.sims["fs1"]
        calls = [sim.create_call(account_id=ACME, user_id=f"u{i}", bridged=False) for i in range(100)]
        wait(lambda: all(len(c.listed(x) or ()) >= 100 for x in c.clients), 20, "listed")
        owner = c.owners()["fs1"]
        other = next(x for x in c.clients if x != owner)
        out = {}
        uuid = calls[0].uuids[0]
        base = f"/v2/accounts/{ACME}/channels"
        for label, name in (("owner", owner), ("other", other)):
            cl, tok = c.clients[name], c.acme[name]
            timed(lambda cl=cl, tok=tok: cl.request("GET", base, token=tok), 20)
            out[f"listing_{label}"] = timed(lambda cl=cl, tok=tok: cl.request("GET", base, token=tok), n)
            out[f"detail_{label}"] = timed(
                lambda cl=cl, tok=tok: cl.request("GET", f"{base}/{uuid}", token=tok), n)
        return out
    finally:
        c.stop()


def event_delay(workdir: Path, redis: RedisServer, lease: float, n: int, single: bool) -> list[float]:
    """ms from placing a call to its channel_create on the stream of an instance not owning it."""
    c = SimCluster(workdir, redis, ["a", "b"], 1, lease, single=single)
    try:
        sim = c.sims["fs1"]
        name = "single" if single else next(x for x in c.clients if x != c.owners()["fs1"])
        port = c.clients[name].port
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", f"/v2/accounts/{ACME}/events?events=CHANNEL_CREATE",
                     headers={"X-Auth-Token": c.acme[name]})
        resp = conn.getresponse()
        assert resp.status == 200
        pending: dict[str, float] = {}
        delays: list[float] = []

        def reader() -> None:
            while True:
                line = resp.readline()
                if not line:
                    return
                if line.startswith(b"data: "):
                    uuid = json.loads(line[6:])["uuid"]
                    if uuid in pending:
                        delays.append((time.perf_counter() - pending.pop(uuid)) * 1000)

        g = gevent.spawn(reader)
        gevent.sleep(0.5)
        for _ in range(n):
            t = time.perf_counter()
            call = sim.create_call(account_id=ACME, user_id="u", bridged=False, answered=False)
            pending[call.uuids[0]] = t
            wait(lambda u=call.uuids[0]: u not in pending, 10, "event", interval=0.001)
            sim.hangup(call.uuids[0])
            gevent.sleep(0.01)
        g.kill()
        conn.close()
        return delays
    finally:
        c.stop()


def actions_and_failover(workdir: Path, redis: RedisServer, lease: float, n: int, repeat: int) -> dict:
    from eslchan.api.wsgi import HttpServer  # the daemon's own server (TCP_NODELAY)

    c = SimCluster(workdir, redis, ["a", "b"], 4, lease)
    out: dict = {}
    try:
        owners = c.owners()
        owner = owners["fs1"]
        other = next(x for x in c.clients if x != owner)
        sim = c.sims["fs1"]
        call = sim.create_call(account_id=ACME, user_id="u")
        wait(lambda: call.a_uuid in (c.listed(other) or ()) and call.a_uuid in (c.listed(owner) or ()), 10,
             "call listed")
        body = {"data": {"action": "set_variable", "name": "eslchan_bench", "value": "1"}}
        path = f"/v2/accounts/{ACME}/channels/{call.a_uuid}"
        # the other choice: this instance forwards the request to the node's owner
        upstream = Client(c.clients[owner].port)

        def forward(environ, start_response):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            data = environ["wsgi.input"].read(length) if length else None
            upstream.conn.request(environ["REQUEST_METHOD"], environ["PATH_INFO"], body=data,
                                  headers={"Content-Type": "application/json",
                                           "X-Auth-Token": environ.get("HTTP_X_AUTH_TOKEN", "")})
            resp = upstream.conn.getresponse()
            payload = resp.read()
            start_response(f"{resp.status} {resp.reason}", [("Content-Type", "application/json"),
                                                            ("Content-Length", str(len(payload)))])
            return [payload]

        server = HttpServer(("127.0.0.1", 0), forward, log=None)
        server.start()
        via = Client(server.server_port)
        for label, cl, tok in (("owner", c.clients[owner], c.acme[owner]),
                               ("other", c.clients[other], c.acme[other]),
                               ("forwarded", via, c.acme[owner])):
            timed(lambda cl=cl, tok=tok: cl.request("POST", path, body, token=tok), 10)
            out[f"action_{label}"] = timed(
                lambda cl=cl, tok=tok: cl.request("POST", path, body, token=tok), n)
        server.stop()
        # failover: kill -9 an owner, place a call on one of its nodes, time until exact
        times = []
        for _ in range(repeat):
            owners = c.owners()
            victim = owners["fs1"]
            survivor = next(x for x in c.clients if x != victim)
            victim_nodes = [node for node, o in owners.items() if o == victim]
            c.procs[victim].kill()
            killed = time.monotonic()
            new = c.sims[victim_nodes[0]].create_call(account_id=ACME, user_id="u")
            wait(lambda s=survivor, u=new.a_uuid: (c.listed(s) or set()) == c.truth() and u in c.truth(),
                 60, "exact after failover", interval=0.02)
            times.append(time.monotonic() - killed)
            c.procs[victim] = c.instance(victim)  # back, for the next round
            back = c.clients[victim] = Client(c.procs[victim].port)
            wait(lambda back=back: back.request("GET", "/health")[0] == 200, 30, "back")
            c.acme[victim], c.admin[victim] = back.token(ACME), back.token(ADMIN)
            wait(c.settled, 30, "settled again")
            gevent.sleep(lease)
        out["failover_s"] = times
        return out
    finally:
        c.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--calls", type=int, default=0, help="calls per node in the ingest part")
    ap.add_argument("--lease", type=float, default=5.0, help="[cluster] lease_seconds (the default)")
    args = ap.parse_args()
    calls = args.calls or (40 if args.quick else 150)
    n = 100 if args.quick else 400
    repeat = 2 if args.quick else 3
    print(f"machine: {machine()}")
    redis = RedisServer()
    with tempfile.TemporaryDirectory(prefix="eslchan-bench-cluster-") as tmp:
        workdir = Path(tmp)
        try:
            print(f"\n1. ingest: 8 nodes, {calls} calls each, as fast as the sockets allow")
            rows = [ingest(workdir, redis, k, calls, args.lease) for k in (0, 1, 2, 4)]
            base = rows[0]
            print("| instances | events | ingested events/s | in every mirror events/s "
                  "| CPU s / 100k events, per instance | events/s with a core per instance |")
            print("|---|---|---|---|---|---|")
            for row in rows:
                label = "single process" if row["instances"] == 0 else str(row["instances"])
                cpus = ", ".join(f"{c:.2f}" for c in row["cpu_per_100k"])
                # the busiest instance saturates its core first: the cluster's capacity when
                # instances do not share cores (here 2 cores host them all, Redis and 8 blasters)
                row["capacity"] = 1e5 / max(row["cpu_per_100k"])
                print(f"| {label} | {row['events']:,} | {row['ingest_eps']:,.0f} "
                      f"({row['ingest_eps'] / base['ingest_eps']:.2f}x) | {row['e2e_eps']:,.0f} | {cpus} "
                      f"| {row['capacity']:,.0f} ({row['capacity'] / base['capacity']:.2f}x) |")

            print(f"\n2. listing (100 channels) and detail, {n} requests each, keep-alive")
            lst = listing(workdir, redis, args.lease, n)
            for what in ("listing", "detail"):
                o, x = lst[f"{what}_owner"], lst[f"{what}_other"]
                print(f"  {what}: owner p50 {median(o):.2f} ms p99 {percentile(o, 99):.2f} ms; "
                      f"other instance p50 {median(x):.2f} ms p99 {percentile(x, 99):.2f} ms "
                      f"({median(x) / median(o):.2f}x)")

            print("\n3. a call placed -> its channel_create on an event stream")
            single = event_delay(workdir, redis, args.lease, n // 4, single=True)
            cluster = event_delay(workdir, redis, args.lease, n // 4, single=False)
            print(f"  single process: p50 {median(single):.2f} ms p99 {percentile(single, 99):.2f} ms")
            print(f"  cluster, instance not owning the node: p50 {median(cluster):.2f} ms "
                  f"p99 {percentile(cluster, 99):.2f} ms ({median(cluster) / median(single):.2f}x)")

            print(f"\n4. POST set_variable ({n} each), and failover ({repeat} kills, lease {args.lease} s)")
            act = actions_and_failover(workdir, redis, args.lease, n, repeat)
            o = act["action_owner"]
            for label in ("owner", "other", "forwarded"):
                v = act[f"action_{label}"]
                print(f"  {label}: p50 {median(v):.2f} ms p99 {percentile(v, 99):.2f} ms "
                      f"({median(v) / median(o):.2f}x the owner)")
            fo = act["failover_s"]
            print(f"  failover, kill -9 to exact listings: {', '.join(f'{t:.2f}' for t in fo)} s "
                  f"(median {median(fo):.2f} s, {median(fo) / args.lease:.2f}x the lease)")

            print()
            two, four = rows[2], rows[3]
            summary("cluster_ingest_2_instances_events_per_s", f"{two['ingest_eps']:,.0f}",
                    two["ingest_eps"] / rows[1]["ingest_eps"], "1 instance")
            summary("cluster_ingest_4_instances_events_per_s", f"{four['ingest_eps']:,.0f}",
                    four["ingest_eps"] / rows[1]["ingest_eps"], "1 instance")
            summary("cluster_ingest_capacity_4_instances_events_per_s", f"{four['capacity']:,.0f}",
                    four["capacity"] / base["capacity"], "the single process, a core each")
            summary("cluster_listing_other_instance_p50", f"{median(lst['listing_other']):.2f} ms",
                    median(lst["listing_other"]) / median(lst["listing_owner"]), "the owner")
            summary("cluster_failover_s", f"{median(fo):.2f} s", median(fo) / args.lease, "lease_seconds")
        finally:
            redis.stop()


if __name__ == "__main__":
    main()
