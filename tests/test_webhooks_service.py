"""The webhook service against a real registry and a real SQLite store, without HTTP: what is
accepted is persisted, a stop writes out what is still in memory, bounds hold, payloads match
what FreeSWITCH recorded."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from eslchan.config import WebhooksConfig
from eslchan.demo import ACME, ACME_SALES, demo_accounts
from eslchan.esl.parser import FrameParser, decode_event
from eslchan.registry import GREGORIAN_OFFSET, ChannelRegistry
from eslchan.webhooks import Hook, SQLiteStore, StoreError, WebhookService, channel_payload

pytestmark = pytest.mark.timeout(60)

ACCOUNTS = demo_accounts({a: "k" * 20 for a in ("ad000000000000000000000000000000", ACME, ACME_SALES,
                                                "acc00000000000000000000000000003")})  # fmt: skip


def recorded_call(captures_dir: Path, account: str = ACME) -> list[dict[str, str]]:
    """Every event of the recorded bridged calls (05_bridge), all given to ``account``."""
    events = []
    for frame in FrameParser().feed((captures_dir / "05_bridge.c1.recv").read_bytes()):
        if frame.is_event:
            event = decode_event(frame)
            if "variable_eslchan_account_id" in event:
                event["variable_eslchan_account_id"] = account
            events.append(event)
    return events


def service_for(tmp_path: Path, registry: ChannelRegistry, **overrides) -> WebhookService:
    config = WebhooksConfig(data_dir=tmp_path / "hooks", **overrides)
    service = WebhookService(config, registry, ACCOUNTS)
    return service


def add_hook(service: WebhookService, account: str = ACME, **fields) -> Hook:
    # a receiver that is never reached: these tests look at the queue, not at deliveries
    base = dict(name="h", uri="http://192.0.2.1/", hook="all", enabled=False)
    hook = service.create(account, {**base, **fields})
    # as if disabled by eslchan (not by the tenant): events are queued, nothing is sent
    service.settle(replace(hook, disable_reason="test: held"))
    return service.hook(hook.id)


def test_stop_writes_out_what_was_still_in_memory(tmp_path, captures_dir):
    registry = ChannelRegistry()
    service = service_for(tmp_path, registry)
    service.start()
    hook = add_hook(service)
    events = recorded_call(captures_dir)
    for event in events:  # no yield: the writer greenlet has not run once
        registry.apply("fs1", event)
    wanted = sum(e.get("Event-Name") in ("CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_BRIDGE",
                                         "CHANNEL_DESTROY") for e in events)  # fmt: skip
    assert wanted >= 8 and service.stats["accepted"] == 0
    service.stop()  # what SIGTERM does once the links are down

    store = SQLiteStore(tmp_path / "hooks")
    try:
        queued = store.pending(hook.id, 0, 1000)
    finally:
        store.close()
    assert len(queued) == wanted
    assert [d.seq for d in queued] == sorted(d.seq for d in queued)


def test_the_handoff_queue_is_bounded_and_overflow_is_counted(tmp_path, captures_dir):
    registry = ChannelRegistry()
    service = service_for(tmp_path, registry, handoff_max=3)
    service.start()
    try:
        hook = add_hook(service)
        for event in recorded_call(captures_dir):
            registry.apply("fs1", event)  # no yield: the hand-off fills up
        dropped = service.stats["dropped_handoff"]
        assert dropped > 0
        service._flush()
        assert service.hook(hook.id).dropped == dropped
        assert service.pending(hook.id) == 3
    finally:
        service.stop()


def test_a_second_process_cannot_use_the_same_directory(tmp_path):
    first = SQLiteStore(tmp_path)
    try:
        with pytest.raises(StoreError, match="in use by another eslchan"):
            SQLiteStore(tmp_path)
    finally:
        first.close()
    SQLiteStore(tmp_path).close()  # released on close
    assert oct((tmp_path / "webhooks.sqlite3").stat().st_mode & 0o777) == "0o600"  # it holds secrets


def test_payloads_carry_kazoos_fields_from_recorded_events(captures_dir):
    registry = ChannelRegistry()
    payloads = []

    def take(node, channel, event):
        if event.get("Event-Name") in ("CHANNEL_CREATE", "CHANNEL_BRIDGE", "CHANNEL_DESTROY"):
            payloads.append(channel_payload(node, channel, event, 0.0))

    registry.listen(take)
    for event in recorded_call(captures_dir):
        registry.apply("fs1", event)
    bridge = next(p for p in payloads if p["hook_event"] == "channel_bridge")
    assert bridge["call_id"].startswith("2dff7fe3") and bridge["other_leg_call_id"].startswith("e0b2d7b5")
    assert bridge["other_leg_destination_number"] == "esl_answer_2"
    destroy = next(p for p in payloads if p["hook_event"] == "channel_destroy")
    assert destroy["hangup_cause"] == "NORMAL_CLEARING"
    assert destroy["duration_seconds"] == 1 and destroy["billing_seconds"] == 1
    assert destroy["ringing_seconds"] == 0
    for p in payloads:
        assert p["account_id"] == ACME and p["node"] == "fs1"
        assert p["timestamp"] > GREGORIAN_OFFSET + 1_700_000_000
        assert p["custom_channel_vars"]["account_id"] == ACME


def test_a_channel_removed_by_a_resync_is_a_destroy_with_the_reason(tmp_path, captures_dir):
    registry = ChannelRegistry()
    payloads = []
    registry.listen(lambda n, ch, ev: payloads.append(channel_payload(n, ch, ev, 1e9))
                    if ev.get("Event-Name") == "CHANNEL_DESTROY" else None)  # fmt: skip
    for event in recorded_call(captures_dir):
        if event.get("Event-Name") == "CHANNEL_HANGUP":
            break
        registry.apply("fs1", event)
    registry.remove_node("fs1", "node down")
    assert payloads and all(p["removed"] == "node down" for p in payloads)
    assert all(isinstance(p["duration_seconds"], int) for p in payloads)


def test_a_reload_without_the_account_stops_its_hooks_taking_events(tmp_path, captures_dir):
    registry = ChannelRegistry()
    service = service_for(tmp_path, registry)
    service.start()
    try:
        hook = add_hook(service)
        events = recorded_call(captures_dir)
        for event in events[: len(events) // 2]:
            registry.apply("fs1", event)
        service._flush()
        before = service.pending(hook.id)
        assert before > 0
        service.set_accounts([a for a in ACCOUNTS if a.id != ACME])  # SIGHUP with Acme gone
        for event in events[len(events) // 2 :]:
            registry.apply("fs1", event)
        service._flush()
        assert service.pending(hook.id) == before  # kept, but nothing new
    finally:
        service.stop()
