"""Two cluster instances in one process, a real Redis and the simulator: every instance
serves every channel from its mirror, actions and runs work from either, runs are listed and
stopped from the other, limits count across both, a client moves between them with
Last-Event-ID, and a mirror left behind the stream's retention starts again from the
snapshots."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest
from cluster_support import cluster_config, free_port, write_config
from conftest import HttpClient, eventually
from tenants import with_accounts
from test_api_events import Sse, is_event

from eslchan.config import PolicyConfig
from eslchan.daemon import Daemon
from eslchan.demo import ACME, ADMIN, GLOBEX, PARTIES

pytestmark = pytest.mark.timeout(90)

ALICE, BOB, _, DAVE = PARTIES


class Pair:
    def __init__(self, simulator, keys, redis_url, **cluster):
        nodes = [("fs1", simulator.host, simulator.port, "ClueCon")]
        policy = cluster.pop("policy", None)
        # (instance or instances, WebhooksConfig): the instances with a [webhooks] table
        webhooks = cluster.pop("webhooks", None)
        with_webhooks = () if webhooks is None else (
            {webhooks[0]} if isinstance(webhooks[0], str) else set(webhooks[0]))
        accounts = cluster.pop("accounts", None)  # per-account settings, as with_accounts takes them
        self.daemons = {}
        for name in ("one", "two"):
            config = cluster_config(nodes, keys, redis_url, name, **cluster)
            if policy is not None:
                config = replace(config, policy=policy)
            if accounts is not None:
                config = with_accounts(config, **accounts)
            if name in with_webhooks:
                config = replace(config, webhooks=webhooks[1])
            self.daemons[name] = Daemon(config)
            self.daemons[name].start()
        # stable: the node's preferred instance holds it, the other does not
        eventually(lambda: sorted(len(d.cluster.leases.owned) for d in self.daemons.values()) == [0, 1]
                   and all(len(d.cluster.leases.live) == 2 for d in self.daemons.values()), timeout=10)
        eventually(lambda: self.owner.sync.is_synced("fs1"), timeout=10)
        self.http = {name: HttpClient(*d.http_address, keys) for name, d in self.daemons.items()}

    @property
    def owner(self) -> Daemon:
        return next(d for d in self.daemons.values() if d.cluster.leases.owned)

    @property
    def other(self) -> Daemon:
        return next(d for d in self.daemons.values() if not d.cluster.leases.owned)

    def client(self, daemon: Daemon) -> HttpClient:
        return self.http[daemon.cluster.name]

    def stop(self):
        for d in self.daemons.values():
            d.stop(1)


@pytest.fixture
def pair(simulator, keys, redis_url):
    p = Pair(simulator, keys, redis_url)
    yield p
    p.stop()


def place(simulator, pair, party, **kw):
    call = simulator.create_call(account_id=party.account_id, user_id=party.user_id,
                                 device_id=party.device_id, caller_id_name=party.name,
                                 caller_id_number=party.number, **kw)
    eventually(lambda: all(d.cluster.mirror.find(u) is not None and d.cluster.mirror.find(u).account_id
                           for d in pair.daemons.values() for u in call.uuids))
    return call


def listed(client: HttpClient, account: str) -> set[str]:
    resp = client.get(f"/v2/accounts/{account}/channels", token=client.token(account))
    assert resp.status == 200, resp.body
    return {row["uuid"] for row in resp.json["data"]}


def test_every_instance_serves_every_channel_from_memory(simulator, pair):
    calls = [place(simulator, pair, party) for party in (ALICE, BOB, DAVE)]
    acme = {u for call in calls[:2] for u in call.uuids}
    for daemon in pair.daemons.values():
        eventually(lambda d=daemon: listed(pair.client(d), ACME) == acme)
        assert listed(pair.client(daemon), GLOBEX) == set(calls[2].uuids)
    # the non-owner holds no event link and its registry ingests nothing
    assert not pair.other.cluster.event_links and len(pair.other.registry) == 0
    uuid = calls[0].a_uuid
    details = []
    for daemon in (pair.owner, pair.other):
        client = pair.client(daemon)
        resp = client.get(f"/v2/accounts/{ACME}/channels/{uuid}", token=client.token(ACME))
        assert resp.status == 200
        details.append({k: v for k, v in resp.json["data"].items() if k != "elapsed_s"})
    assert details[0] == details[1]
    assert details[1]["owner_id"] == ALICE.user_id and details[1]["other_leg"] == calls[0].b_uuid
    # another tenant's channel does not exist on either
    client = pair.client(pair.other)
    resp = client.get(f"/v2/accounts/{GLOBEX}/channels/{uuid}", token=client.token(GLOBEX))
    assert resp.status == 404


def test_an_action_on_the_non_owner_goes_straight_to_the_switch(simulator, pair):
    call = place(simulator, pair, ALICE)
    client = pair.client(pair.other)
    resp = client.request("POST", f"/v2/accounts/{ACME}/channels/{call.a_uuid}",
                          {"data": {"action": "hangup"}}, token=client.token(ACME))
    assert resp.status == 200, resp.body
    eventually(lambda: simulator.channel(call.a_uuid) is None)
    for daemon in pair.daemons.values():
        eventually(lambda d=daemon: call.a_uuid not in listed(pair.client(d), ACME))


def test_a_variable_a_run_sets_shows_on_every_instance(simulator, pair):
    call = place(simulator, pair, ALICE)
    client = pair.client(pair.other)
    resp = client.request("POST", f"/v2/accounts/{ACME}/channels/{call.a_uuid}",
                          {"data": {"action": "set_variable", "name": "eslchan_crm", "value": "vip"}},
                          token=client.token(ACME))
    assert resp.status == 200, resp.body
    for daemon in (pair.other, pair.owner):
        c = pair.client(daemon)

        def shown(c=c):
            detail = c.get(f"/v2/accounts/{ACME}/channels/{call.a_uuid}", token=c.token(ACME)).json["data"]
            return detail["custom_channel_vars"].get("crm") == "vip"

        eventually(shown)


def test_a_run_started_on_one_instance_is_listed_and_stopped_on_the_other(simulator, pair):
    call = place(simulator, pair, ALICE)
    one, two = pair.client(pair.owner), pair.client(pair.other)
    resp = one.request("PUT", f"/v2/accounts/{ACME}/channels/{call.a_uuid}",
                       {"action": "metaflow", "data": {"module": "sleep", "data": {"duration": 600}}},
                       token=one.token(ACME))
    assert resp.status == 202, resp.body
    run_id = resp.json["data"]["id"]
    base = f"/v2/accounts/{ACME}/channels/{call.a_uuid}/metaflows"

    def listed_running():
        runs = two.get(base, token=two.token(ACME)).json["data"]
        return [r for r in runs if r["id"] == run_id and r["state"] == "running"]

    run = eventually(listed_running)[0]
    assert run["instance"] == pair.owner.cluster.name
    one_run = two.get(f"/v2/accounts/{ACME}/metaflows/{run_id}", token=two.token(ACME))
    assert one_run.json["data"]["id"] == run_id
    # another tenant cannot see it
    assert two.get(f"/v2/accounts/{GLOBEX}/metaflows/{run_id}", token=two.token(GLOBEX)).status == 404
    stopped = two.request("DELETE", f"{base}/{run_id}", token=two.token(ACME))
    assert stopped.status == 200, stopped.body
    assert stopped.json["data"]["state"] == "stopped"
    got = one.get(f"/v2/accounts/{ACME}/metaflows/{run_id}", token=one.token(ACME)).json["data"]
    assert got["state"] == "stopped"
    assert simulator.channel(call.a_uuid) is not None  # the call itself goes on


def test_a_call_started_on_the_non_owner_is_the_account_s_on_every_instance(simulator, keys, redis_url):
    simulator.register("1001")
    pair = Pair(simulator, keys, redis_url,
                accounts={"ACME": {"context": "acme", "realm": "acme.example",
                                   "endpoints": ("user/*@acme.example",)}})
    try:
        two = pair.client(pair.other)
        resp = two.request("PUT", f"/v2/accounts/{ACME}/channels",
                           {"data": {"endpoint": "user/1001@acme.example", "caller_id_number": "2000",
                                     "metaflow": {"module": "sleep", "data": {"duration": 600}}}},
                           token=two.token(ACME))
        assert resp.status == 201, resp.body
        uuid = resp.json["data"]["uuid"]
        assert simulator.channel(uuid) is not None
        for daemon in pair.daemons.values():
            eventually(lambda d=daemon: uuid in listed(pair.client(d), ACME))
            c = pair.client(daemon)
            assert c.get(f"/v2/accounts/{GLOBEX}/channels/{uuid}", token=c.token(GLOBEX)).status == 404
        # its run is listed on the owner, and stopping it there leaves the call up
        one = pair.client(pair.owner)
        base = f"/v2/accounts/{ACME}/channels/{uuid}/metaflows"
        runs = eventually(lambda: [r for r in one.get(base, token=one.token(ACME)).json["data"]
                                   if r["state"] == "running"])
        assert runs[0]["instance"] == pair.other.cluster.name
        stopped = one.request("DELETE", f"{base}/{runs[0]['id']}", token=one.token(ACME))
        assert stopped.status == 200 and stopped.json["data"]["state"] == "stopped", stopped.body
        assert simulator.channel(uuid) is not None
    finally:
        pair.stop()


def test_run_limits_count_across_instances(simulator, keys, redis_url):
    pair = Pair(simulator, keys, redis_url, policy=PolicyConfig(max_runs_per_channel=2))
    try:
        call = place(simulator, pair, ALICE)
        sleep = {"action": "metaflow", "data": {"module": "sleep", "data": {"duration": 600}}}
        path = f"/v2/accounts/{ACME}/channels/{call.a_uuid}"
        for daemon in (pair.owner, pair.other):
            c = pair.client(daemon)
            assert c.request("PUT", path, sleep, token=c.token(ACME)).status == 202
        for daemon in (pair.owner, pair.other):  # two in the cluster: a third is refused anywhere
            c = pair.client(daemon)
            refused = c.request("PUT", path, sleep, token=c.token(ACME))
            assert refused.status == 429, refused.body
            assert refused.json["data"]["rule"] == "max_runs_per_channel"
    finally:
        pair.stop()


def test_failed_logins_count_across_instances(pair):
    one, two = pair.http["one"], pair.http["two"]
    limit = pair.owner.config.auth.failed_auth_per_minute
    for _ in range(limit):
        assert one.request("PUT", "/v2/api_auth", {"data": {"api_key": "wrong-key-0123456789"}}).status == 401
    limited = two.request("PUT", "/v2/api_auth", {"data": {"api_key": "wrong-key-0123456789"}})
    assert limited.status == 429 and int(limited.headers["retry-after"]) >= 1
    # the right key still gets its token, on either instance
    assert two.request("PUT", "/v2/api_auth", {"data": {"api_key": two.keys[ACME]}}).status == 201


def test_stream_caps_count_across_instances(simulator, keys, redis_url):
    pair = Pair(simulator, keys, redis_url, policy=PolicyConfig(max_streams=1))
    streams = []
    try:
        one, two = pair.http["one"], pair.http["two"]
        streams.append(Sse(one.host, one.port, f"/v2/accounts/{ACME}/events", token=one.token(ACME)))
        assert streams[0].status == 200
        second = Sse(two.host, two.port, f"/v2/accounts/{ACME}/events", token=two.token(ACME))
        streams.append(second)
        assert second.status == 429 and second.json()["data"]["rule"] == "max_streams"
        streams[0].close()  # its slot is given back: the other instance may open one now
        eventually(lambda: Sse(two.host, two.port, f"/v2/accounts/{ACME}/events",
                               token=two.token(ACME)).status == 200)
    finally:
        for s in streams:
            s.close()
        pair.stop()


def test_a_client_moves_to_the_other_instance_with_last_event_id(simulator, pair):
    one, two = pair.client(pair.owner), pair.client(pair.other)
    first = Sse(one.host, one.port, f"/v2/accounts/{ACME}/events", token=one.token(ACME))
    call = place(simulator, pair, ALICE)
    last = first.until(is_event("channel_create", call.a_uuid))
    first.close()
    simulator.hangup(call.a_uuid)
    eventually(lambda: pair.other.cluster.mirror.find(call.a_uuid) is None)
    again = Sse(two.host, two.port, f"/v2/accounts/{ACME}/events", token=two.token(ACME),
                headers={"Last-Event-ID": last["id"]})
    try:
        destroyed = again.until(is_event("channel_destroy", call.a_uuid))
        assert not [m for m in again.seen if m.get("event") == "reset"]
        numbers = [int(m["id"].split(".")[1]) for m in again.seen]
        assert numbers == sorted(set(numbers)) and numbers[0] > int(last["id"].split(".")[1])
        assert destroyed["json"]["account_id"] == ACME
    finally:
        again.close()


def test_a_mirror_behind_the_retention_starts_again_from_the_snapshots(simulator, keys, redis_url):
    pair = Pair(simulator, keys, redis_url, stream_max_len=10)
    try:
        behind = pair.other
        client = pair.client(behind)
        stream = Sse(client.host, client.port, f"/v2/accounts/{ACME}/events", token=client.token(ACME))
        early = place(simulator, pair, ALICE)
        behind.cluster.mirror.stop()  # it hears nothing while the stream moves on
        calls = [simulator.create_call(account_id=ACME, user_id=BOB.user_id) for _ in range(20)]
        simulator.hangup(early.a_uuid)
        eventually(lambda: len(pair.owner.cluster.mirror.for_account(ACME)) == 2 * len(calls))
        store = behind.cluster.store
        eventually(lambda: int(store.redis.xinfo_stream(store.keys.stream)["first-entry"][0].split(b"-")[0])
                   > behind.cluster.mirror.seq + 1)  # trimmed past what it has
        rebuilds = behind.cluster.mirror.rebuilds
        behind.cluster.mirror.start()
        eventually(lambda: behind.cluster.mirror.rebuilds > rebuilds)
        truth = {u for ch in simulator.channels() for u in [ch.uuid]}
        eventually(lambda: listed(client, ACME) == truth)
        reset = stream.until(lambda m: m.get("event") == "reset")
        assert "re-list" in json.loads(reset["data"])["reason"]
        stream.close()
    finally:
        pair.stop()


def test_a_recording_started_on_one_instance_is_stopped_from_the_other(simulator, pair):
    call = place(simulator, pair, ALICE)
    path = f"/v2/accounts/{ACME}/channels/{call.a_uuid}"
    one, two = pair.client(pair.owner), pair.client(pair.other)
    started = one.request("POST", path, {"data": {"action": "record_call"}}, token=one.token(ACME))
    assert started.status == 200, started.body
    eventually(lambda: len(simulator.channel(call.a_uuid).recordings) == 1)
    # what the runs on the channel share is the cluster's: the other instance toggles it off
    stopped = two.request("POST", path, {"data": {"action": "record_call"}}, token=two.token(ACME))
    assert stopped.status == 200, stopped.body
    assert stopped.json["data"]["reply"].startswith("+OK")
    eventually(lambda: simulator.channel(call.a_uuid).recordings == {})
    # and a stop now, from either, is refused: nothing is being recorded
    again = one.request("PUT", path, {"action": "metaflow",
                                      "data": {"module": "record_call", "data": {"action": "stop"}}},
                        token=one.token(ACME))
    assert again.status == 400, again.body


def test_health_metrics_and_cluster_status_show_each_instances_role(pair, tmp_path, keys, redis_url):
    owner, other = pair.owner, pair.other
    for daemon, owned in ((owner, ["fs1"]), (other, [])):
        c = pair.client(daemon)
        public = c.get("/health").json["data"]
        assert public["cluster"]["owned_nodes"] == owned and public["cluster"]["redis"] == "reachable"
        assert "owners" not in public["cluster"]  # who owns what: with details only
        details = c.get("/health", token=c.token(ADMIN)).json["data"]
        assert details["cluster"]["owners"] == {"fs1": owner.cluster.name}
        assert details["nodes"]["fs1"]["owner"] == owner.cluster.name
        assert sorted(details["cluster"]["instances"]) == ["one", "two"]
        metrics = c.get("/metrics").body.decode()
        assert f'eslchan_cluster_lease_owned{{node="fs1"}} {1.0 if owned else 0.0}' in metrics
        assert "eslchan_cluster_mirror_lag_seconds" in metrics and "eslchan_cluster_stream_length" in metrics
    nodes = [("fs1", "127.0.0.1", 8021, "ClueCon")]
    config = write_config(tmp_path / "status.toml", nodes=nodes, keys=keys, redis_url=redis_url,
                          instance="cli", port=free_port(), lease=1.0, signing_key="s" * 64)
    out = subprocess.run([sys.executable, "-m", "eslchan", "cluster", "status", "--config", str(config),
                          "--json"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert sorted(i["instance"] for i in status["instances"]) == ["one", "two"]
    assert status["nodes"] == [{**status["nodes"][0], "node": "fs1", "owner": owner.cluster.name}]
    text = subprocess.run([sys.executable, "-m", "eslchan", "cluster", "status", "--config", str(config)],
                          capture_output=True, text=True, timeout=30).stdout
    assert "fs1" in text and owner.cluster.name in text and "record(s) behind" in text


def test_webhooks_on_an_instance_deliver_the_events_of_a_node_another_owns(simulator, keys, redis_url,
                                                                            tmp_path):
    from webhook_receiver import Receiver

    from eslchan.cluster.lease import assignment
    from eslchan.demo import demo_webhooks

    not_owner = "two" if assignment(["fs1"], ["one", "two"])["fs1"] == "one" else "one"
    receiver = Receiver().start()
    pair = Pair(simulator, keys, redis_url, webhooks=(not_owner, demo_webhooks(tmp_path / "hooks")))
    try:
        assert pair.other.cluster.name == not_owner and pair.other.webhooks is not None
        c = pair.client(pair.other)
        hook = {"data": {"name": "CRM", "uri": receiver.url(), "hook": "all"}}
        created = c.request("PUT", f"/v2/accounts/{ACME}/webhooks", hook, token=c.token(ACME))
        assert created.status == 201, created.body
        call = place(simulator, pair, ALICE)
        simulator.hangup(call.a_uuid)
        eventually(lambda: {(r.payload["hook_event"], r.payload["call_id"]) for r in receiver.got}
                   >= {("channel_create", call.a_uuid), ("channel_destroy", call.a_uuid)}, timeout=10)
        destroy = next(r.payload for r in receiver.got if r.payload["hook_event"] == "channel_destroy"
                       and r.payload["call_id"] == call.a_uuid)
        assert destroy["account_id"] == ACME and destroy["hangup_cause"] == "NORMAL_CLEARING"
        assert destroy["duration_seconds"] is not None and destroy["node"] == "fs1"
        # the owner has no webhooks: one delivery per event, not two
        creates = [r for r in receiver.got if r.payload["hook_event"] == "channel_create"
                   and r.payload["call_id"] == call.a_uuid]
        assert len(creates) == 1
    finally:
        pair.stop()
        receiver.stop()
