"""Sample payloads of the hooks eslchan offers, as GET /v2/webhooks/samples serves them.

Each sample is built by :func:`~eslchan.webhooks.payload.channel_payload`, the function every
delivery uses, from a made-up call: a sample shows exactly the fields a receiver gets and
cannot drift from them, and it holds nothing of any tenant (the ids, numbers and node below are
invented, the time fixed, so a sample is the same on every eslchan and at every request).
"""

from __future__ import annotations

from typing import Any

from eslchan.registry.channel import Channel
from eslchan.webhooks.payload import HOOKS, channel_payload

#: Kazoo's names for samples: ``webhooks_<hook>``
PREFIX = "webhooks_"

_ACCOUNT = "0123456789abcdef0123456789abcdef"
_A_LEG = "8a2f6c1e-3b4d-4e5f-9a0b-1c2d3e4f5a6b"
_B_LEG = "d220c187-e18e-4c42-bab2-459d10260091"
_NODE = "freeswitch@sample.invalid"
_CREATED = 1736157600.0  # 2025-01-06T10:00:00Z
_ANSWERED = _CREATED + 3
_HUNG_UP = _CREATED + 61


def _micros(unix: float) -> str:
    return str(int(unix * 1_000_000))


#: what each event adds to the call: (when, whether the legs are bridged yet, extra headers)
_STEPS: dict[str, tuple[float, bool, dict[str, str]]] = {
    "CHANNEL_CREATE": (_CREATED, False, {}),
    "CHANNEL_ANSWER": (_ANSWERED, False, {}),
    "CHANNEL_BRIDGE": (
        _ANSWERED,
        True,
        {"Other-Leg-Unique-ID": _B_LEG, "Other-Leg-Destination-Number": "+15555550199"},
    ),
    "CHANNEL_DESTROY": (
        _HUNG_UP,
        True,
        {
            "Hangup-Cause": "NORMAL_CLEARING",
            "variable_proto_specific_hangup_cause": "sip:200",
            "Caller-Channel-Created-Time": _micros(_CREATED),
            "Caller-Channel-Answered-Time": _micros(_ANSWERED),
            "Caller-Channel-Hangup-Time": _micros(_HUNG_UP),
        },
    ),
}


def _channel(bridged: bool) -> Channel:
    channel = Channel(_NODE, _A_LEG, _CREATED)
    channel.direction = "inbound"
    channel.account_id = _ACCOUNT
    channel.owner_id = "fedcba9876543210fedcba9876543210"
    channel.authorizing_id = "00112233445566778899aabbccddeeff"
    channel.authorizing_type = "device"
    channel.caller_id_name = "Sample Caller"
    channel.caller_id_number = "+15555550100"
    channel.callee_id_name = "Sample Callee"
    channel.callee_id_number = "+15555550199"
    channel.custom = {"account_id": _ACCOUNT}
    channel.other_leg = _B_LEG if bridged else None
    return channel


def sample_ids() -> list[str]:
    """A sample for each hook event eslchan sends (``all`` is no event of its own)."""
    return [PREFIX + name for name in HOOKS]


def sample(sample_id: str) -> dict[str, Any] | None:
    """The payload a receiver gets for ``sample_id`` (without a hook's custom_data); None for an
    unknown id."""
    hook = HOOKS.get(sample_id.removeprefix(PREFIX)) if sample_id.startswith(PREFIX) else None
    if hook is None:
        return None
    event_name = hook[0]
    when, bridged, headers = _STEPS[event_name]
    event = {"Event-Name": event_name, "Event-Date-Timestamp": _micros(when), **headers}
    return channel_payload(_NODE, _channel(bridged), event, when)
