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


@pytest.fixture
def daemon_config(simulator, keys, tmp_path):
    return demo_config(
        [("fs1", simulator.host, simulator.port, "ClueCon")],
        keys,
        listen="127.0.0.1:0",
        webhooks=hooks_config(tmp_path / "webhooks"),
    )


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


def create_hook(http, account: str, **fields) -> dict:
    resp = http.request("PUT", f"/v2/accounts/{account}/webhooks", {"data": fields}, token=http.token(account))
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
    eventually(lambda: daemon.registry.find(call.a_uuid) is not None and daemon.registry.find(call.a_uuid).other_leg)
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
    create_a = next(p for p in payloads if p["hook_event"] == "channel_create" and p["call_id"] == call.a_uuid)
    assert create_a["caller_id_number"] == "1001" and create_a["call_direction"] == "inbound"
    assert create_a["owner_id"] == "e" * 32 and create_a["authorizing_id"] == "d" * 32
    bridge = next(p for p in payloads if p["hook_event"] == "channel_bridge")
    assert bridge["call_id"] == call.a_uuid and bridge["other_leg_call_id"] == call.b_uuid
    destroy = next(p for p in payloads if p["hook_event"] == "channel_destroy" and p["call_id"] == call.a_uuid)
    assert destroy["hangup_cause"] == "NORMAL_CLEARING"
    assert isinstance(destroy["duration_seconds"], int) and isinstance(destroy["billing_seconds"], int)


def gevent_settle(seconds: float = 0.1) -> None:
    import gevent

    gevent.sleep(seconds)
