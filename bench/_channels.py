"""Synthesized live channels, modelled on the recorded FreeSWITCH events.

A CHANNEL_CREATE from capture 04a (json) keeps its headers; its variables are replaced by
about 60 real ones taken from the same call's CHANNEL_HANGUP_COMPLETE (the richest event),
plus the tenancy variables eslchan maps (account, owner, device, user name, presence).
"""

from __future__ import annotations

import json
import uuid as uuidlib
from collections.abc import Iterator

from bench._common import captures_dir
from eslchan.esl.parser import FrameParser, decode_event

TENANCY_VARS = 6


def _capture_events() -> list[dict]:
    data = (captures_dir() / "04a_events_json.c1.recv").read_bytes()
    return [decode_event(f) for f in FrameParser().feed(data) if f.is_event]


def template(variables: int = 60) -> dict[str, str]:
    events = _capture_events()
    create = next(e for e in events if e.get("Event-Name") == "CHANNEL_CREATE")
    richest = max(events, key=lambda e: sum(k.startswith("variable_") for k in e))
    out = {k: v for k, v in create.items() if not k.startswith("variable_")}
    extra = [(k, v) for k, v in richest.items() if k.startswith("variable_") and "eslchan" not in k]
    for k, v in extra[: variables - TENANCY_VARS]:
        out[k] = v
    return out


def account_id(i: int) -> str:
    return f"{i:032x}"


def layout(total: int = 10_000, big: int = 5_000, mid: int = 100, accounts: int = 100) -> list[int]:
    """Channels per account: one with ``big``, as many as fit with ``mid``, the rest small."""
    counts = [big]
    left = total - big
    n_small = accounts - 1 - left // mid
    while n_small < 0 or (left - (accounts - 1 - n_small) * mid) < n_small:
        n_small += 1
    n_mid = accounts - 1 - n_small
    counts += [mid] * n_mid
    rest = left - n_mid * mid
    counts += [rest // n_small + (1 if i < rest % n_small else 0) for i in range(n_small)] if n_small else []
    return counts


def owner_id(acc: int, j: int) -> str:
    return f"5e{acc:06x}{j % 10:024x}"


def device_id(acc: int, j: int) -> str:
    return f"de{acc:06x}{j % 20:024x}"


def events(counts: list[int], variables: int = 60, seq0: int = 1000) -> Iterator[dict[str, str]]:
    """One CHANNEL_CREATE per channel; every string is fresh, as if just decoded off the wire."""
    base = template(variables)
    seq = seq0
    for acc, n in enumerate(counts):
        aid = account_id(acc)
        for j in range(n):
            u = str(uuidlib.uuid4())
            ev = dict(base)
            seq += 1
            name = f"user{acc}x{j % 10}"
            ev.update(
                {
                    "Unique-ID": u,
                    "Channel-Call-UUID": u,
                    "Event-Sequence": str(seq),
                    "Caller-Unique-ID": u,
                    "Caller-Caller-ID-Number": str(1000 + j),
                    "variable_uuid": u,
                    "variable_call_uuid": u,
                    "variable_eslchan_account_id": aid,
                    "variable_eslchan_owner_id": owner_id(acc, j),
                    "variable_eslchan_authorizing_id": device_id(acc, j),
                    "variable_eslchan_authorizing_type": "device",
                    "variable_user_name": name,
                    "variable_presence_id": f"{name}@example.com",
                }
            )
            yield json.loads(json.dumps(ev))
