"""Webhooks end to end: hooks created through the API, calls on the simulator, deliveries to real
HTTP receivers on loopback that check the signature themselves."""

from __future__ import annotations

import time
from ipaddress import ip_network

import pytest
from conftest import eventually, wait_for
from webhook_receiver import Receiver

from eslchan.config import WebhooksConfig
from eslchan.daemon import Daemon
from eslchan.demo import ACME, ACME_SALES, GLOBEX, demo_config
from eslchan.registry.channel import GREGORIAN_OFFSET

pytestmark = pytest.mark.timeout(90)

HOOK_EVENTS = {"CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_BRIDGE", "CHANNEL_DESTROY"}


def hooks_config(data_dir, **overrides) -> WebhooksConfig:
    """Fast retries, and loopback allowed: the receivers of these tests run on 127.0.0.1."""
    settings = dict(
        data_dir=data_dir,
        timeout=2.0,
        backoff_initial=0.05,
        backoff_max=0.2,
        backoff_jitter=0.1,
        allowed_networks=(ip_network("127.0.0.0/8"),),
    )
    settings.update(overrides)
    return WebhooksConfig(**settings)


def hooks_daemon_config(simulator, keys, data_dir, **overrides):
    """The demo configuration on the simulator, with webhooks as :func:`hooks_config` sets them."""
    return demo_config(
        [("fs1", simulator.host, simulator.port, "ClueCon")],
        keys,
        listen="127.0.0.1:0",
        webhooks=hooks_config(data_dir, **overrides),
    )


@pytest.fixture
def daemon_config(simulator, keys, tmp_path):
    return hooks_daemon_config(simulator, keys, tmp_path / "webhooks")


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


def create_hook(http, account: str, **fields) -> dict:
    resp = http.request(
        "PUT", f"/v2/accounts/{account}/webhooks", {"data": fields}, token=http.token(account)
    )
    assert resp.status == 201, resp.json
    return resp.json["data"]


def record_events(daemon, account: str = ACME) -> list[tuple[str, str]]:
    """(hook_event, call_id) of the account's hook events, in the order the registry applied them."""
    seen: list[tuple[str, str]] = []

    def listener(node, channel, event):
        name = event.get("Event-Name")
        if name in HOOK_EVENTS and channel is not None and channel.account_id == account:
            seen.append((name.lower(), channel.uuid))

    daemon.registry.listen(listener)
    return seen


def delivered(receiver: Receiver) -> list[tuple[str, str]]:
    return [(r.payload["hook_event"], r.payload["call_id"]) for r in receiver.accepted]


def test_a_hook_receives_signed_channel_events_in_order(daemon, http, simulator, receiver):
    hook = create_hook(http, ACME, name="CRM", uri=receiver.url(), hook="all", custom_data={"crm": "acme-1"})
    receiver.secret = hook["secret"]
    assert hook["secret"].startswith("whsec_")
    applied = record_events(daemon)
    call = simulator.create_call(account_id=ACME, user_id="e" * 32, device_id="d" * 32)
    eventually(
        lambda: daemon.registry.find(call.a_uuid) is not None and daemon.registry.find(call.a_uuid).other_leg
    )
    simulator.hangup(call.a_uuid)
    eventually(lambda: sum(1 for e, _ in applied if e == "channel_destroy") == 2)
    eventually(lambda: len(receiver.got) >= len(applied))
    gevent_settle()
    assert [r.verdict for r in receiver.got] == ["ok"] * len(applied)
    assert delivered(receiver) == applied  # every event, once, in the order it happened
    names = [e for e, u in applied if u == call.a_uuid]
    assert names == ["channel_create", "channel_answer", "channel_bridge", "channel_destroy"]

    first = receiver.got[0]
    assert first.method == "POST" and first.path == "/hook"
    assert first.headers["content-type"] == "application/json"
    payloads = [r.payload for r in receiver.got]
    for p in payloads:
        assert p["account_id"] == ACME and p["crm"] == "acme-1"
        assert p["timestamp"] > GREGORIAN_OFFSET + time.time() - 120
    create_a = next(
        p for p in payloads if p["hook_event"] == "channel_create" and p["call_id"] == call.a_uuid
    )
    assert create_a["caller_id_number"] == "1001" and create_a["call_direction"] == "inbound"
    assert create_a["owner_id"] == "e" * 32 and create_a["authorizing_id"] == "d" * 32
    bridge = next(p for p in payloads if p["hook_event"] == "channel_bridge")
    assert bridge["call_id"] == call.a_uuid and bridge["other_leg_call_id"] == call.b_uuid
    destroy = next(
        p for p in payloads if p["hook_event"] == "channel_destroy" and p["call_id"] == call.a_uuid
    )
    assert destroy["hangup_cause"] == "NORMAL_CLEARING"
    assert isinstance(destroy["duration_seconds"], int) and isinstance(destroy["billing_seconds"], int)


def gevent_settle(seconds: float = 0.1) -> None:
    import gevent

    gevent.sleep(seconds)


def hook_state(http, account: str, hook_id: str) -> dict:
    resp = http.get(f"/v2/accounts/{account}/webhooks/{hook_id}", token=http.token(account))
    assert resp.status == 200, resp.json
    return resp.json["data"]


def attempts(http, account: str, hook_id: str) -> list[dict]:
    resp = http.get(f"/v2/accounts/{account}/webhooks/{hook_id}/attempts", token=http.token(account))
    assert resp.status == 200, resp.json
    return resp.json["data"]


def calls(simulator, daemon, count: int, account: str = ACME) -> list[str]:
    """``count`` lone calls of the account, hung up once the registry has them: 3 hook events each."""
    uuids = []
    for i in range(count):
        call = simulator.create_call(account_id=account, caller_id_number=f"10{i:02d}", bridged=False)
        eventually(lambda c=call: (ch := daemon.registry.find(c.a_uuid)) is not None and ch.answered)
        simulator.hangup(call.a_uuid)
        uuids.append(call.a_uuid)
    return uuids


def test_a_receiver_outage_loses_nothing_and_keeps_the_order(daemon, http, simulator, receiver):
    hook = create_hook(http, ACME, name="CRM", uri=receiver.url(), hook="all", retries=1)
    applied = record_events(daemon)
    receiver.status = 503  # the receiver is down: every attempt fails
    calls(simulator, daemon, 3)
    eventually(lambda: len(applied) == 9)
    eventually(lambda: hook_state(http, ACME, hook["id"])["failures"] >= 2)
    assert receiver.accepted == []
    log = attempts(http, ACME, hook["id"])
    assert log[0]["result"] == "failure" and log[0]["response_code"] == 503 and log[0]["reason"] == "HTTP 503"
    assert {a["delivery_id"] for a in log} == {log[-1]["delivery_id"]}  # stuck on the first event
    receiver.status = 200  # back up
    eventually(lambda: len(receiver.accepted) == 9, timeout=10)
    assert delivered(receiver) == applied
    state = hook_state(http, ACME, hook["id"])
    assert state["failures"] == 0 and state["pending"] == 0 and state["enabled"] is True
    assert attempts(http, ACME, hook["id"])[0]["result"] == "success"


def test_retries_back_off_exponentially(daemon, http, simulator, receiver):
    daemon.webhooks.config = cfg = hooks_config(
        daemon.config.webhooks.data_dir, backoff_initial=0.1, backoff_max=10.0, backoff_jitter=0.0
    )
    hook = create_hook(http, ACME, name="CRM", uri=receiver.url(), hook="channel_create", retries=4)
    receiver.status = 500
    calls(simulator, daemon, 3)  # events that keep coming must not cut the delays short
    eventually(lambda: len(receiver.got) >= 5, timeout=10)
    gaps = [b.at - a.at for a, b in zip(receiver.got, receiver.got[1:5], strict=False)]
    for n, gap in enumerate(gaps, 1):  # each wait is at least the doubling delay (never shorter)
        assert gap >= cfg.backoff_initial * 2 ** (n - 1) * 0.95, gaps
    assert len({r.headers["webhook-id"] for r in receiver.got}) == 1  # one delivery, retried
    stamps = [int(r.headers["webhook-timestamp"]) for r in receiver.got]
    assert stamps == sorted(stamps)  # each attempt signed at its own time
    assert hook_state(http, ACME, hook["id"])["failures"] == 1  # 1 + 4 retries = one failed delivery


def test_repeated_failures_disable_the_hook_and_reenabling_delivers_the_queue(
    simulator, keys, tmp_path, receiver
):
    config = hooks_daemon_config(simulator, keys, tmp_path / "webhooks", disable_after=2)
    daemon = Daemon(config)
    daemon.start()
    try:
        from conftest import HttpClient

        http = HttpClient(*daemon.http_address, keys)
        eventually(lambda: all(link.is_up for link in daemon.links.values()), timeout=10)
        hook = create_hook(http, ACME, name="CRM", uri=receiver.url(), hook="channel_create", retries=0)
        applied = record_events(daemon)
        receiver.status = 502
        calls(simulator, daemon, 2)
        eventually(lambda: not hook_state(http, ACME, hook["id"])["enabled"])
        state = hook_state(http, ACME, hook["id"])
        assert state["failures"] == 2 and "2 failed deliveries in a row" in state["disable_reason"]
        assert "HTTP 502" in state["disable_reason"]
        tried = len(receiver.got)
        calls(simulator, daemon, 2)  # events while disabled by eslchan are still queued ...
        eventually(lambda: hook_state(http, ACME, hook["id"])["pending"] == 4)
        assert len(receiver.got) == tried  # ... but nothing is sent
        metrics = http.get("/metrics").body.decode()
        assert "eslchan_webhooks_auto_disabled 1.0" in metrics

        receiver.status = 200
        resp = http.request(
            "PATCH",
            f"/v2/accounts/{ACME}/webhooks/{hook['id']}",
            {"data": {"enabled": True}},
            token=http.token(ACME),
        )
        assert resp.status == 200 and resp.json["data"]["enabled"] is True
        assert resp.json["data"]["disable_reason"] is None and "secret" not in resp.json["data"]
        creates = [item for item in applied if item[0] == "channel_create"]
        eventually(lambda: len(receiver.accepted) == 4)
        assert delivered(receiver) == creates
    finally:
        daemon.stop(drain_seconds=0.5)


def test_a_restart_delivers_what_was_pending(simulator, keys, tmp_path, receiver):
    config = hooks_daemon_config(simulator, keys, tmp_path / "webhooks")
    from conftest import HttpClient

    first = Daemon(config)
    first.start()
    http = HttpClient(*first.http_address, keys)
    eventually(lambda: all(link.is_up for link in first.links.values()), timeout=10)
    hook = create_hook(http, ACME, name="CRM", uri=receiver.url(), hook="all")
    applied = record_events(first)
    receiver.status = 500
    calls(simulator, first, 3)
    eventually(lambda: len(applied) == 9 and first.webhooks.pending(hook["id"]) == 9)
    first.stop(drain_seconds=0.5)
    assert receiver.accepted == []

    receiver.status = 200
    second = Daemon(config)  # same data directory
    second.start()
    try:
        eventually(lambda: len(receiver.accepted) == 9, timeout=10)
        assert delivered(receiver) == applied  # each event once, in order, across the restart
        http = HttpClient(*second.http_address, keys)
        assert hook_state(http, ACME, hook["id"])["pending"] == 0
    finally:
        second.stop(drain_seconds=0.5)


def test_a_slow_receiver_does_not_hold_up_another_hook(daemon, http, simulator, receiver):
    slow = Receiver().start()
    try:
        slow.delay = 30.0  # a receiver that never answers in time
        stuck = create_hook(http, ACME, name="slow", uri=slow.url(), hook="channel_create")
        create_hook(http, ACME, name="fast", uri=receiver.url(), hook="channel_create")
        calls(simulator, daemon, 5)
        eventually(lambda: len(receiver.accepted) == 5)
        assert slow.got and slow.accepted == []  # still waiting on its first event
        assert daemon.webhooks.pending(stuck["id"]) == 5
    finally:
        slow.stop()


def test_a_full_queue_drops_new_events_and_says_so(simulator, keys, tmp_path, receiver):
    config = hooks_daemon_config(simulator, keys, tmp_path / "webhooks", max_pending_per_hook=3)
    from conftest import HttpClient

    daemon = Daemon(config)
    daemon.start()
    try:
        http = HttpClient(*daemon.http_address, keys)
        eventually(lambda: all(link.is_up for link in daemon.links.values()), timeout=10)
        hook = create_hook(http, ACME, name="CRM", uri=receiver.url(), hook="channel_create")
        receiver.status = 500
        calls(simulator, daemon, 5)
        eventually(lambda: hook_state(http, ACME, hook["id"])["dropped"] == 2)
        assert hook_state(http, ACME, hook["id"])["pending"] == 3
        assert (
            'eslchan_webhook_events_dropped_total{reason="queue"} 2.0' in http.get("/metrics").body.decode()
        )
    finally:
        daemon.stop(drain_seconds=0.5)


def test_get_hooks_carry_the_payload_in_a_signed_query(daemon, http, simulator, receiver):
    hook = create_hook(
        http, ACME, name="CRM", uri=receiver.url("/in?src=eslchan"), hook="channel_create", http_verb="get",
        custom_data={"k": "a b&c"},
    )  # fmt: skip
    receiver.secret = hook["secret"]
    (uuid,) = calls(simulator, daemon, 1)
    eventually(lambda: receiver.got)
    got = receiver.got[0]
    assert got.method == "GET" and got.body == b"" and got.verdict == "ok"
    assert got.payload["src"] == "eslchan" and got.payload["call_id"] == uuid
    assert got.payload["k"] == "a b&c" and got.payload["hook_event"] == "channel_create"
    assert got.payload["custom_channel_vars[account_id]"] == ACME


def test_subaccount_events_reach_only_hooks_that_ask_for_them(daemon, http, simulator):
    with_sub, without, sales, globex = (Receiver().start() for _ in range(4))
    try:
        create_hook(http, ACME, name="a", uri=with_sub.url(), hook="channel_create", include_subaccounts=True)
        create_hook(http, ACME, name="b", uri=without.url(), hook="channel_create")
        create_hook(
            http, ACME_SALES, name="c", uri=sales.url(), hook="channel_create", include_subaccounts=True
        )
        create_hook(http, GLOBEX, name="d", uri=globex.url(), hook="channel_create", include_subaccounts=True)
        (acme_call,) = calls(simulator, daemon, 1, ACME)
        (sales_call,) = calls(simulator, daemon, 1, ACME_SALES)
        eventually(lambda: len(with_sub.got) == 2 and without.got and sales.got)
        wait_for(lambda: False, timeout=0.3)  # nothing else arrives
        assert sorted(r.payload["call_id"] for r in with_sub.got) == sorted([acme_call, sales_call])
        assert [r.payload["call_id"] for r in without.got] == [acme_call]
        assert [r.payload["call_id"] for r in sales.got] == [sales_call]  # never the parent's
        assert globex.got == []  # never another tenant's
    finally:
        for r in (with_sub, without, sales, globex):
            r.stop()


def test_a_tenant_disabled_hook_queues_nothing_and_a_deleted_one_stops(daemon, http, simulator, receiver):
    hook = create_hook(http, ACME, name="CRM", uri=receiver.url(), hook="channel_create", enabled=False)
    calls(simulator, daemon, 1)
    wait_for(lambda: False, timeout=0.3)
    assert hook_state(http, ACME, hook["id"])["pending"] == 0 and receiver.got == []
    path = f"/v2/accounts/{ACME}/webhooks/{hook['id']}"
    assert http.request("PATCH", path, {"data": {"enabled": True}}, token=http.token(ACME)).status == 200
    (later,) = calls(simulator, daemon, 1)
    eventually(lambda: receiver.got)
    assert [r.payload["call_id"] for r in receiver.got] == [later]
    receiver.status = 500
    calls(simulator, daemon, 1)
    eventually(lambda: len(receiver.got) >= 2)
    assert http.request("DELETE", path, token=http.token(ACME)).status == 200
    assert http.get(path, token=http.token(ACME)).status == 404
    tried = len(receiver.got)
    wait_for(lambda: False, timeout=0.5)
    assert len(receiver.got) <= tried + 1  # at most the request under way when it was deleted
