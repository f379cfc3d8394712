"""Three eslchan instances (``eslchan serve`` processes), four simulated FreeSWITCH nodes and a
real Redis: a run started on one instance is listed and stopped on another; an instance cut
off from Redis stops serving what it can no longer know and says so in /health, and the
others take its nodes; killing an owner (kill -9) mid-churn loses no call from any listing,
its nodes are taken over, every listing equals the switches' channels again within a bounded
time, and its run ends as failed, never a ghost."""

from __future__ import annotations

import time

import gevent
import pytest
from cluster_support import Instance, TcpProxy
from conftest import TEST_KEYS, eventually

from eslchan.demo import ACME, ADMIN, PARTIES
from eslchan.simulator import Simulator
from eslchan.simulator.churn import Churn

pytestmark = pytest.mark.timeout(120)

LEASE = 1.5
NODES = 4
ALICE = PARTIES[0]


class Cluster:
    def __init__(self, tmp_path, redis_server, redis_url):
        self.sims = {f"fs{i}": Simulator(speed=20.0, seed=i) for i in range(1, NODES + 1)}
        for sim in self.sims.values():
            sim.start()
        nodes = [(name, sim.host, sim.port, "ClueCon") for name, sim in self.sims.items()]
        self.proxy = TcpProxy(redis_server.port)
        self.redis = redis_server.client()
        common = dict(nodes=nodes, keys=TEST_KEYS, lease=LEASE, signing_key="k" * 64)
        self.instances = {
            "one": Instance(tmp_path, "one", redis_url=redis_url, **common),
            "two": Instance(tmp_path, "two", redis_url=redis_url, **common),
            # three reaches Redis through a proxy the test can cut
            "three": Instance(tmp_path, "three", redis_url=f"redis://127.0.0.1:{self.proxy.port}/0",
                              **common),
        }
        for inst in self.instances.values():
            inst.start()
        for inst in self.instances.values():
            eventually(lambda i=inst: i.request("GET", "/health")[0] == 200, timeout=30, interval=0.1)
        self.tokens = {name: inst.token(TEST_KEYS[ACME]) for name, inst in self.instances.items()}
        self.admin = {name: inst.token(TEST_KEYS[ADMIN]) for name, inst in self.instances.items()}
        eventually(self.spread, timeout=20, interval=0.1)

    def owners(self) -> dict[str, str | None]:
        out = {}
        for node in self.sims:
            value = self.redis.get(f"eslchan:lease:{node}")
            out[node] = value.decode().split("|")[0] if value else None
        return out

    def spread(self) -> bool:
        """Every node owned, by a live instance, each instance owning some."""
        owners = self.owners()
        return None not in owners.values() and set(owners.values()) == set(self.instances)

    def truth(self) -> set[str]:
        return {ch.uuid for sim in self.sims.values() for ch in sim.channels()}

    def listed(self, name: str) -> set[str] | None:
        status, body = self.instances[name].request("GET", "/v2/channels", token=self.admin[name])
        return {row["uuid"] for row in body["data"]} if status == 200 else None

    def stop(self):
        for inst in self.instances.values():
            inst.terminate()
        for sim in self.sims.values():
            sim.stop()
        self.proxy.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, redis_server):
    redis_server.client().flushall()
    c = Cluster(tmp_path_factory.mktemp("cluster"), redis_server, redis_server.url)
    yield c
    c.stop()


def call(cluster: Cluster, node: str):
    return cluster.sims[node].create_call(account_id=ACME, user_id=ALICE.user_id, caller_id_name="Alice")


def test_every_instance_lists_every_node_and_a_run_moves_between_them(cluster):
    calls = [call(cluster, node) for node in cluster.sims]
    for name in cluster.instances:
        eventually(lambda n=name: cluster.listed(n) == cluster.truth(), timeout=10)
    one, two = cluster.instances["one"], cluster.instances["two"]
    uuid = calls[0].a_uuid
    status, body = one.request("PUT", f"/v2/accounts/{ACME}/channels/{uuid}",
                               {"action": "metaflow", "data": {"module": "sleep", "data": {"duration": 600}}},
                               token=cluster.tokens["one"])
    assert status == 202, body
    run_id = body["data"]["id"]
    path = f"/v2/accounts/{ACME}/channels/{uuid}/metaflows"

    def seen_on_two():
        status, body = two.request("GET", path, token=cluster.tokens["two"])
        return status == 200 and [r for r in body["data"] if r["id"] == run_id and r["state"] == "running"]

    assert eventually(seen_on_two)[0]["instance"] == "one"
    status, body = two.request("DELETE", f"{path}/{run_id}", token=cluster.tokens["two"])
    assert status == 200 and body["data"]["state"] == "stopped", body
    status, body = one.request("GET", f"/v2/accounts/{ACME}/metaflows/{run_id}", token=cluster.tokens["one"])
    assert body["data"]["state"] == "stopped"


def test_an_instance_cut_off_from_redis_stops_serving_and_says_so(cluster):
    three = cluster.instances["three"]
    before = cluster.owners()
    uuid = sorted(cluster.truth())[0]
    sleep = {"action": "metaflow", "data": {"module": "sleep", "data": {"duration": 600}}}
    status, body = three.request("PUT", f"/v2/accounts/{ACME}/channels/{uuid}", sleep,
                                 token=cluster.tokens["three"])
    assert status == 202, body
    run_id = body["data"]["id"]
    cluster.proxy.cut()
    try:
        def unavailable():
            status, body = three.request("GET", "/health")
            return status == 503 and body["data"]["cluster"]["redis"] == "unreachable" and body

        health = eventually(unavailable, timeout=LEASE + 5)
        assert health["data"]["status"] == "unavailable"
        assert health["data"]["cluster"]["serving"] is False
        status, body = three.request("GET", f"/v2/accounts/{ACME}/channels", token=cluster.tokens["three"])
        assert status == 503 and body["message"] == "cluster state unavailable"
        assert "Redis" in body["data"]["reason"]
        # its nodes went to the others; their listings stay exact
        eventually(lambda: "three" not in cluster.owners().values() and None not in cluster.owners().values(),
                   timeout=LEASE * 4)
        # its run, which waits on a mirror Redis no longer feeds, ends as failed, never a ghost
        one = cluster.instances["one"]

        def run_failed():
            status, body = one.request("GET", f"/v2/accounts/{ACME}/metaflows/{run_id}",
                                       token=cluster.tokens["one"])
            return status == 200 and body["data"]["state"] == "failed" and body["data"]

        assert "three" in eventually(run_failed, timeout=LEASE * 4)["error"]
        if "three" in before.values():
            new = call(cluster, next(n for n, o in before.items() if o == "three"))
            for name in ("one", "two"):
                eventually(lambda n=name: new.a_uuid in (cluster.listed(n) or ()), timeout=10)
    finally:
        cluster.proxy.restore()
    eventually(lambda: three.request("GET", "/health")[0] == 200, timeout=10)
    # as it ends there too, within a round at most
    eventually(lambda: three.request("GET", f"/v2/accounts/{ACME}/metaflows/{run_id}",
                                     token=cluster.tokens["three"])[1]["data"]["state"] == "failed",
               timeout=LEASE)
    eventually(lambda: cluster.listed("three") == cluster.truth(), timeout=10)
    eventually(cluster.spread, timeout=20, interval=0.1)  # and it gets nodes again


def test_killing_an_owner_mid_churn_loses_no_call_and_leaves_no_ghost_run(cluster):
    owners = cluster.owners()
    victim = max(cluster.instances, key=lambda name: list(owners.values()).count(name))
    survivors = [name for name in cluster.instances if name != victim]
    lasting = {u for node in cluster.sims for c in (call(cluster, node),) for u in c.uuids}
    for name in cluster.instances:
        eventually(lambda n=name: lasting <= (cluster.listed(n) or set()), timeout=10)
    # a run on the victim, on one of its own nodes' calls
    victim_inst = cluster.instances[victim]
    uuid = next(iter(sorted(lasting)))
    status, body = victim_inst.request(
        "PUT", f"/v2/accounts/{ACME}/channels/{uuid}",
        {"action": "metaflow", "data": {"module": "sleep", "data": {"duration": 600}}},
        token=cluster.tokens[victim])
    assert status == 202, body
    run_id = body["data"]["id"]
    churns = [Churn(sim, rate=6.0, lengths=(0.5, 4.0), seed=i, account_id=ACME)
              for i, sim in enumerate(cluster.sims.values())]
    for churn in churns:
        churn.start()
    gevent.sleep(1.0)
    victim_inst.kill()
    killed = time.monotonic()
    missing: list[tuple[float, str, set[str]]] = []
    # no call up all along drops out of a survivor's listing at any moment
    while time.monotonic() - killed < LEASE + 2.5:
        for name in survivors:
            seen = cluster.listed(name)
            if seen is not None and not lasting <= seen:
                missing.append((time.monotonic() - killed, name, lasting - seen))
        gevent.sleep(0.1)
    for churn in churns:
        churn.stop()
    assert not missing, missing
    # its nodes were taken over by the survivors
    assert set(cluster.owners().values()) <= set(survivors) and None not in cluster.owners().values()
    # every survivor lists exactly what the switches have, within a bounded time
    for name in survivors:
        eventually(lambda n=name: cluster.listed(n) == cluster.truth(), timeout=LEASE + 5)
    # the victim's run ended as failed, saying why, as every survivor reads it
    for name in survivors:
        def failed(n=name):
            status, body = cluster.instances[n].request("GET", f"/v2/accounts/{ACME}/metaflows/{run_id}",
                                                       token=cluster.tokens[n])
            return status == 200 and body["data"]["state"] == "failed" and body["data"]
        run = eventually(failed, timeout=LEASE * 4)
        assert run["error"] == f"instance {victim} stopped while the run was running"
