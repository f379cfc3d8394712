"""``[channels]``: which channel variables carry tenancy, and how channels are listed."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from eslchan.config.reader import Reader


@dataclass(frozen=True)
class VariableMapping:
    """Which channel variables carry the tenancy fields of a channel (SPEC §4)."""

    account: str = "eslchan_account_id"
    owner: str = "eslchan_owner_id"
    authorizing_id: str = "eslchan_authorizing_id"
    authorizing_type: str = "eslchan_authorizing_type"
    username: str = "user_name"
    presence_id: str = "presence_id"
    custom_prefix: str = "eslchan_"

    @classmethod
    def preset(cls, name: str) -> VariableMapping:
        if name == "eslchan":
            return cls()
        if name == "kazoo":
            return cls(
                account="ecallmgr_Account-ID",
                owner="ecallmgr_Owner-ID",
                authorizing_id="ecallmgr_Authorizing-ID",
                authorizing_type="ecallmgr_Authorizing-Type",
                custom_prefix="ecallmgr_",
            )
        raise ValueError(f"unknown preset {name!r} (known: eslchan, kazoo)")


@dataclass(frozen=True)
class ChannelsConfig:
    mapping: VariableMapping = field(default_factory=VariableMapping)
    preset: str = "eslchan"
    system_wide_channels_list: bool = False
    stale_grace_seconds: float = 30.0
    # how far FreeSWITCH's `show channels` may lag its events (real switch: up to ~0.2 s)
    snapshot_lag_seconds: float = 0.5
    # a snapshot comparison repairs any drift this often, per node; 0 = never
    anti_entropy_seconds: float = 30.0


def parse_channels(r: Reader, data: Any) -> ChannelsConfig:
    t = r.table(
        data,
        "channels",
        {
            "preset",
            "variables",
            "system_wide_channels_list",
            "stale_grace_seconds",
            "snapshot_lag_seconds",
            "anti_entropy_seconds",
        },
    )
    preset = r.get(t, "channels", "preset", str, "eslchan")
    try:
        mapping = VariableMapping.preset(preset)
    except ValueError as exc:
        r.problems.append(("channels.preset", str(exc)))
        mapping = VariableMapping()
    fields = set(VariableMapping.__dataclass_fields__)
    v = r.table(t.get("variables"), "channels.variables", fields)
    overrides = {}
    for name in fields:
        value = r.get(v, "channels.variables", name, str, None)
        if value is None:
            continue
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value) and not (
            name == "custom_prefix" and value == ""
        ):
            r.problems.append((f"channels.variables.{name}", "must be a channel variable name"))
        overrides[name] = value
    if overrides:
        mapping = VariableMapping(**{**mapping.__dict__, **overrides})
    return ChannelsConfig(
        mapping=mapping,
        preset=preset,
        system_wide_channels_list=r.get(t, "channels", "system_wide_channels_list", bool, False),
        stale_grace_seconds=r.positive(t, "channels", "stale_grace_seconds", 30.0),
        snapshot_lag_seconds=r.positive(t, "channels", "snapshot_lag_seconds", 0.5),
        anti_entropy_seconds=_not_negative(r, t, "anti_entropy_seconds", 30.0),
    )


def _not_negative(r: Reader, t: dict, name: str, default: float) -> float:
    value = r.get(t, "channels", name, float, default)
    if value < 0:
        r.problems.append((f"channels.{name}", "must be 0 (off) or more"))
        return default
    return value
