"""Webhooks in a cluster (a real Redis, real receivers, the simulator over TCP): every instance
serves the webhooks API from the shared store, one instance delivers each event once, in order,
signed, and when it is killed (kill -9) another takes over and delivers what was pending."""

from __future__ import annotations

import re
import time

import pytest
from cluster_support import Instance
from conftest import TEST_KEYS, eventually
from test_cluster_state import ALICE, Pair, place
from test_webhooks_delivery import hooks_config
from webhook_receiver import Receiver

from eslchan.cluster.status import cluster_status, format_status
from eslchan.demo import ACME, ADMIN, GLOBEX
from eslchan.webhooks.payload import HOOK_EVENTS

pytestmark = pytest.mark.timeout(90)

LIFECYCLE = ["channel_create", "channel_answer", "channel_bridge", "channel_destroy"]


def in_lifecycle_order(received) -> bool:
    """Each channel's events reach the receiver in the order they happen."""
    by_call: dict[str, list[int]] = {}
    for r in received:
        by_call.setdefault(r.payload["call_id"], []).append(LIFECYCLE.index(r.payload["hook_event"]))
    return all(steps == sorted(steps) for steps in by_call.values())


def test_hooks_are_shared_and_one_instance_delivers_each_event_once(simulator, keys, redis_url, tmp_path):
    receiver = Receiver().start()
    pair = Pair(simulator, keys, redis_url,
                webhooks=(("one", "two"), hooks_config(tmp_path / "hooks", disable_after=1000)))
    try:
        daemons = pair.daemons
        eventually(lambda: sum(d.cluster.webhooks.delivering for d in daemons.values()) == 1
                   and {d.cluster.webhooks.holder for d in daemons.values()} != {None}, timeout=10)
        deliverer = next(d for d in daemons.values() if d.cluster.webhooks.delivering)
        other = next(d for d in daemons.values() if d is not deliverer)
        assert {d.cluster.webhooks.holder for d in daemons.values()} == {deliverer.cluster.name}
        c_del, c_other = pair.client(deliverer), pair.client(other)
        base = f"/v2/accounts/{ACME}/webhooks"

        # created where nothing is delivered, read and changed on the other instance
        made = c_other.request("PUT", base, {"data": {"name": "CRM", "uri": receiver.url(), "hook": "all"}},
                               token=c_other.token(ACME))
        assert made.status == 201, made.body
        hook_id, receiver.secret = made.json["data"]["id"], made.json["data"]["secret"]
        listed = c_del.get(base, token=c_del.token(ACME))
        assert [h["id"] for h in listed.json["data"]] == [hook_id]
        patched = c_del.request("PATCH", f"{base}/{hook_id}", {"data": {"name": "CRM 2"}},
                                token=c_del.token(ACME))
        assert patched.status == 200, patched.body
        assert c_other.get(f"{base}/{hook_id}", token=c_other.token(ACME)).json["data"]["name"] == "CRM 2"
        # tenancy stays: another account does not see it on either instance
        for c in (c_del, c_other):
            assert c.get(f"/v2/accounts/{GLOBEX}/webhooks/{hook_id}", token=c.token(GLOBEX)).status == 404
            assert c.get(f"{base}/{hook_id}", token=c.token(GLOBEX)).status == 403

        heard = []
        deliverer.cluster.mirror.listen(lambda node, ch, ev: ev.get("Event-Name") in HOOK_EVENTS
                                        and ch.account_id == ACME
                                        and heard.append((HOOK_EVENTS[ev["Event-Name"]], ch.uuid)))
        call = place(simulator, pair, ALICE)
        simulator.hangup(call.a_uuid)
        eventually(lambda: sum(1 for e, _ in heard if e == "channel_destroy") == len(call.uuids), timeout=10)
        eventually(lambda: len(receiver.got) >= len(heard), timeout=10)
        time.sleep(0.3)  # nothing more comes
        got = [(r.payload["hook_event"], r.payload["call_id"]) for r in receiver.got]
        assert got == heard  # each event once, in the order it happened
        assert [r.verdict for r in receiver.got] == ["ok"] * len(heard)  # signed, no id twice
        seqs = [int(r.headers["webhook-id"].rsplit("-", 1)[1]) for r in receiver.got]
        assert seqs == sorted(seqs)

        # the attempts log and the queue's state show on both instances
        for c in (c_del, c_other):
            attempts = c.get(f"{base}/{hook_id}/attempts", token=c.token(ACME)).json["data"]
            assert len(attempts) == len(heard) and all(a["result"] == "success" for a in attempts)
            assert c.get(f"{base}/{hook_id}", token=c.token(ACME)).json["data"]["pending"] == 0
            health = c.get("/health", token=c.token(ADMIN)).json["data"]
            assert health["cluster"]["webhooks_deliverer"] == deliverer.cluster.name
        # /metrics says which instance delivers
        for daemon, delivering in ((deliverer, 1.0), (other, 0.0)):
            metrics = pair.client(daemon).get("/metrics").body.decode()
            assert f"eslchan_cluster_webhooks_delivering {delivering}" in metrics
            took = re.search(r"^eslchan_cluster_webhooks_takeovers_total (\S+)$", metrics, re.M)
            assert took is not None and (float(took.group(1)) >= 1 or not delivering)
            assert "eslchan_cluster_webhooks_events_lost_total 0.0" in metrics
        # and the cluster's view from Redis alone (eslchan cluster status) names it too
        status = cluster_status(deliverer.config)
        assert status["webhooks_deliverer"] == deliverer.cluster.name
        assert f"webhooks: delivered by {deliverer.cluster.name}" in format_status(status)

        # deleted on one instance: gone on the other, and its worker stops on the deliverer
        assert c_other.request("DELETE", f"{base}/{hook_id}", token=c_other.token(ACME)).status == 200
        assert c_del.get(base, token=c_del.token(ACME)).json["data"] == []
        service = deliverer.webhooks
        eventually(lambda: service.hook(hook_id) is None and hook_id not in service._workers)
    finally:
        pair.stop()
        receiver.stop()


def test_killing_the_deliverer_loses_no_accepted_event(simulator, redis_server, redis_url, tmp_path):
    lease = 1.5
    receiver = Receiver().start()
    receiver.status = 503  # down: the events wait in the shared queue
    settings = {"data_dir": str(tmp_path / "hooks"), "timeout": 2.0, "backoff_initial": 0.05,
                "backoff_max": 0.3, "disable_after": 1000, "allowed_networks": ["127.0.0.0/8"]}
    common = dict(nodes=[("fs1", simulator.host, simulator.port, "ClueCon")], keys=TEST_KEYS, lease=lease,
                  signing_key="k" * 64, redis_url=redis_url, webhooks=settings)
    insts = {name: Instance(tmp_path, name, **common).start() for name in ("one", "two")}
    redis = redis_server.client()

    def holder() -> str | None:
        value = redis.get("eslchan:wh:lease")
        return value.decode().split("|")[0] if value else None

    try:
        for inst in insts.values():
            eventually(lambda i=inst: i.request("GET", "/health")[0] == 200, timeout=30, interval=0.1)
        victim = eventually(holder, timeout=10)
        survivor = insts["two" if victim == "one" else "one"]
        token = survivor.token(TEST_KEYS[ACME])
        base = f"/v2/accounts/{ACME}/webhooks"
        hook = {"data": {"name": "CRM", "uri": receiver.url(), "hook": "all"}}
        status, body = survivor.request("PUT", base, hook, token=token)
        assert status == 201, body
        hook_id, receiver.secret = body["data"]["id"], body["data"]["secret"]

        calls = [simulator.create_call(account_id=ACME, user_id=ALICE.user_id, caller_id_name="Alice")
                 for _ in range(3)]
        uuids = {u for c in calls for u in c.uuids}
        for c in calls:
            simulator.hangup(c.a_uuid)

        def pending() -> int:
            return survivor.request("GET", f"{base}/{hook_id}", token=token)[1]["data"]["pending"]

        # every event accepted (one create and one destroy per leg at least), none delivered
        eventually(lambda: pending() >= 2 * len(uuids) and not simulator.channels(), timeout=10, interval=0.1)
        time.sleep(0.5)
        accepted = pending()
        assert receiver.accepted == [] and receiver.got  # it was trying

        insts[victim].kill()  # kill -9, mid-retry: its lease lapses by itself
        killed = time.monotonic()
        receiver.status = 200
        eventually(lambda: len(receiver.accepted) == accepted, timeout=lease * 4, interval=0.05)
        took = time.monotonic() - killed
        time.sleep(0.3)
        assert len(receiver.accepted) == accepted  # nothing twice (a replay would be refused, not accepted)
        assert holder() == survivor.name and took < lease * 3
        received = receiver.accepted
        seqs = [int(r.headers["webhook-id"].rsplit("-", 1)[1]) for r in received]
        assert seqs == sorted(seqs) and in_lifecycle_order(received)  # in order, per hook
        destroyed = {r.payload["call_id"] for r in received if r.payload["hook_event"] == "channel_destroy"}
        assert destroyed == uuids
        assert pending() == 0
        status, body = survivor.request("GET", f"{base}/{hook_id}/attempts", token=token)
        assert status == 200 and sum(a["result"] == "success" for a in body["data"]) == accepted
        admin = survivor.token(TEST_KEYS[ADMIN])
        health = survivor.request("GET", "/health", token=admin)[1]["data"]
        assert health["cluster"]["webhooks_deliverer"] == survivor.name
    finally:
        for inst in insts.values():
            inst.terminate()
        receiver.stop()
