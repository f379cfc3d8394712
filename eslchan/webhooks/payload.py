"""Kazoo's channel-hook payload, built from a registry event and its channel.

Pure functions: the registry listener calls :func:`channel_payload` once per event that some
hook wants (the channel is a live object that later events change, so the payload is taken at
once); a delivery adds the hook's ``custom_data`` with :func:`for_hook` when it sends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eslchan.registry.channel import GREGORIAN_OFFSET

#: The hooks eslchan offers: Kazoo's hook_event -> the FreeSWITCH event that fires it, and what
#: GET /v2/webhooks says of it (Kazoo's words where Kazoo has the hook).
HOOKS = {
    "channel_create": ("CHANNEL_CREATE", "Events when new calls start"),
    "channel_answer": ("CHANNEL_ANSWER", "Events for when the channel is answered by the endpoint"),
    "channel_bridge": ("CHANNEL_BRIDGE", "Events for when the channel is bridged to another"),
    "channel_destroy": ("CHANNEL_DESTROY", "Events when calls end"),
}
ALL = "all"
#: FreeSWITCH event -> Kazoo's hook_event, for the events a channel hook can fire on.
HOOK_EVENTS = {event: name for name, (event, _) in HOOKS.items()}
#: what a hook's ``hook`` field may name
HOOK_NAMES = (*HOOKS, ALL)
#: each of HOOK_NAMES as GET /v2/webhooks describes it
HOOK_DESCRIPTIONS = {**{name: text for name, (_, text) in HOOKS.items()}, ALL: "All of the events above"}


def _micros(event: Mapping[str, str], header: str) -> int:
    value = event.get(header) or ""
    return int(value) if value.isdigit() else 0


def _seconds(event: Mapping[str, str], variable: str) -> int | None:
    value = event.get(variable) or ""
    return int(value) if value.isdigit() else None


def _durations(event: Mapping[str, str], created_at: float, now: float) -> dict[str, int | None]:
    """Kazoo's duration/billing/ringing seconds: FreeSWITCH's own variables when the event has
    them (CHANNEL_DESTROY normally does), else from the channel's timestamps."""
    created = _micros(event, "Caller-Channel-Created-Time") or int(created_at * 1e6)
    answered = _micros(event, "Caller-Channel-Answered-Time")
    ended = _micros(event, "Caller-Channel-Hangup-Time") or _micros(event, "Event-Date-Timestamp")
    ended = ended or int(now * 1e6)
    duration = _seconds(event, "variable_duration")
    if duration is None and created:
        duration = max(0, (ended - created) // 1_000_000)
    billing = _seconds(event, "variable_billsec")
    if billing is None and created:
        billing = max(0, (ended - answered) // 1_000_000) if answered else 0
    ringing = _seconds(event, "variable_progresssec")
    if ringing is None and created:
        ringing = max(0, ((answered or ended) - created) // 1_000_000)
    return {"duration_seconds": duration, "billing_seconds": billing, "ringing_seconds": ringing}


def channel_payload(node: str, channel: Any, event: Mapping[str, str], now: float) -> dict[str, Any]:
    """The payload of one channel event, without any hook's custom_data."""
    name = event.get("Event-Name", "")
    hook_event = HOOK_EVENTS[name]
    when = _micros(event, "Event-Date-Timestamp")
    payload: dict[str, Any] = {
        "hook_event": hook_event,
        "call_id": channel.uuid,
        "other_leg_call_id": channel.other_leg,
        "call_direction": channel.direction,
        "caller_id_name": channel.caller_id_name,
        "caller_id_number": channel.caller_id_number,
        "callee_id_name": channel.callee_id_name,
        "callee_id_number": channel.callee_id_number,
        "account_id": channel.account_id,
        "owner_id": channel.owner_id,
        "authorizing_id": channel.authorizing_id,
        "authorizing_type": channel.authorizing_type,
        "timestamp": int(when / 1e6 if when else now) + GREGORIAN_OFFSET,
        "custom_channel_vars": dict(channel.custom) if channel.custom else {},
        "node": node,
    }
    if name == "CHANNEL_BRIDGE":
        other = event.get("Other-Leg-Unique-ID") or event.get("Bridge-B-Unique-ID")
        if other and other != channel.uuid:
            payload["other_leg_call_id"] = other
        payload["other_leg_destination_number"] = event.get("Other-Leg-Destination-Number")
    elif name == "CHANNEL_DESTROY":
        payload["hangup_cause"] = event.get("Hangup-Cause") or channel.hangup_cause
        payload["hangup_code"] = event.get("variable_proto_specific_hangup_cause") or event.get(
            "variable_last_bridge_proto_specific_hangup_cause"
        )
        payload.update(_durations(event, channel.created, now))
        removed = event.get("Eslchan-Removed")
        if removed:  # eslchan dropped the channel (resync, node gone) without a FreeSWITCH event
            payload["removed"] = removed
    return payload


def for_hook(payload: dict[str, Any], custom_data: Mapping[str, str]) -> dict[str, Any]:
    """The payload one hook receives: its custom_data added, overwriting fields of the same
    name, as Kazoo does."""
    if not custom_data:
        return payload
    return {**payload, **custom_data}
