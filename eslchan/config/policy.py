"""``[policy]`` and ``[accounts.policy]``: what a tenant's key may do (SPEC §9), as plain data.

``[policy]`` holds the defaults of every account; an ``[[accounts]]`` entry's ``policy``
sub-table overrides single keys for that account. ``eslchan.policy`` resolves them per
account and enforces them; this module only reads them and refuses a policy that would hand
a tenant what it must never have (a hook variable, a tenancy variable, Kazoo's namespace).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from functools import cache
from typing import Any

from eslchan.config.channels import VariableMapping
from eslchan.config.reader import Reader

#: Grammar of the names and patterns in the policy: a variable name, or a glob of one (``*``
#: any run of characters, ``?`` one). No ``[…]`` classes: dial strings give brackets a meaning.
VARIABLE_PATTERN = re.compile(r"^[A-Za-z0-9_.*?-]{1,64}$")
CONTEXT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
REALM_NAME = re.compile(r"^[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63}){0,15}$")
CALLFLOW_PATTERN = re.compile(r"^[A-Za-z0-9_.*?-]{1,64}$")
#: An endpoint glob: what a dial string's endpoint may look like (``user/*@acme.example``).
ENDPOINT_PATTERN = re.compile(r"^[A-Za-z0-9+#._@/:=*?-]{1,256}$")

#: Channel variables FreeSWITCH runs as code, that decide routing or play files (SPEC §8),
#: as globs, case-insensitive. No policy may let a tenant set one of them.
PROTECTED_VARIABLES = (
    # code: api_hangup_hook, api_on_answer, api_reporting_hook, api_after_bridge, …
    "api_*",
    "execute_on_*",
    "exec_after_*",
    "bridge_pre_execute_*",
    "session_in_hangup_hook",
    "record_post_process_*",
    # routing
    "transfer_after_*",
    "hangup_after_*",
    "park_after_*",
    "force_transfer_*",
    "transfer_fallback_extension",
    "continue_on_fail",
    "sip_redirect_*",
    # files played to the call
    "hold_music",
    "temp_hold_music",
    "ringback",
    "transfer_ringback",
    "instant_ringback",
)
#: Kazoo's own namespace beside the kazoo preset: its authorization, billing and routing.
KAZOO_NAMESPACE = "ecallmgr_*"


@dataclass(frozen=True)
class PolicyConfig:
    """The policy keys with their defaults (SPEC §9). Empty lists mean "the account's own"
    where the key says so."""

    variable_prefix: str = "eslchan_"
    variables: tuple[str, ...] = ()
    contexts: tuple[str, ...] = ()  # () = the account's own context
    dialplans: tuple[str, ...] = ("XML",)
    allow_inline: bool = False
    realms: tuple[str, ...] = ()  # () = the account's realm, if it has one
    callflows: tuple[str, ...] = ("*",)
    max_runs_per_channel: int = 4
    max_runs: int = 100
    max_streams: int = 10
    max_originates: int = 10  # calls the account started that are not answered (or failed) yet


POLICY_KEYS = frozenset(f.name for f in fields(PolicyConfig))
_LISTS = {
    "variables": VARIABLE_PATTERN,
    "contexts": CONTEXT_NAME,
    "dialplans": CONTEXT_NAME,
    "realms": REALM_NAME,
    "callflows": CALLFLOW_PATTERN,
}
_LIMITS = ("max_runs_per_channel", "max_runs", "max_streams", "max_originates")


def parse_policy(r: Reader, data: Any, key: str) -> dict[str, Any]:
    """The keys of one policy table that are present and well-formed (name → value)."""
    t = r.table(data, key, set(POLICY_KEYS))
    out: dict[str, Any] = {}
    if "variable_prefix" in t:
        prefix = r.get(t, key, "variable_prefix", str, PolicyConfig.variable_prefix)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}", prefix):
            r.problems.append((f"{key}.variable_prefix", "must be a non-empty start of a variable name"))
        else:
            out["variable_prefix"] = prefix
    for name, grammar in _LISTS.items():
        if name not in t:
            continue
        values = r.get(t, key, name, list, [])
        bad = [v for v in values if not isinstance(v, str) or not grammar.fullmatch(v)]
        if bad:
            r.problems.append((f"{key}.{name}", f"not allowed here: {', '.join(map(repr, bad[:5]))}"))
        else:
            out[name] = tuple(values)
    if "allow_inline" in t:
        out["allow_inline"] = r.get(t, key, "allow_inline", bool, False)
    for name in _LIMITS:
        if name in t:
            out[name] = r.positive(t, key, name, getattr(PolicyConfig, name), int)
    return out


def check_policy(r: Reader, key: str, policy: dict[str, Any], mapping: VariableMapping,
                 preset: str) -> None:
    """Refuse a policy that would let a tenant set a tenancy variable, a variable FreeSWITCH
    runs or routes by, or (beside Kazoo) one of Kazoo's own variables."""
    forbidden = forbidden_variables(mapping, preset)
    prefix = policy.get("variable_prefix")
    if prefix is not None:
        # the tenancy variables are excluded by name whatever the prefix (eslchan_account_id)
        tenancy = set(tenancy_names(mapping))
        hit = next((f for f in forbidden if f not in tenancy and globs_overlap(prefix + "*", f)), None)
        if hit is not None:
            r.problems.append((f"{key}.variable_prefix", f"{prefix!r} would let tenants set {hit!r} "
                               "(a variable FreeSWITCH runs or routes by"
                               + (", or Kazoo's namespace)" if hit == KAZOO_NAMESPACE else ")")))
    for pattern in policy.get("variables", ()):
        hit = next((f for f in forbidden if globs_overlap(pattern, f)), None)
        if hit is not None:
            r.problems.append((f"{key}.variables", f"{pattern!r} matches {hit!r}, which no tenant may set "
                               "(tenancy, code, routing or media variables are never tenant-settable)"))


def tenancy_names(mapping: VariableMapping) -> tuple[str, ...]:
    """The variables that say whose a channel is (SPEC §4) and what identifies it."""
    return (mapping.account, mapping.owner, mapping.authorizing_id, mapping.authorizing_type,
            mapping.username, mapping.presence_id)


def forbidden_variables(mapping: VariableMapping, preset: str) -> tuple[str, ...]:
    """Globs of the variables no tenant may set under this mapping (tenancy first)."""
    extra = (KAZOO_NAMESPACE,) if preset == "kazoo" else ()
    return tenancy_names(mapping) + PROTECTED_VARIABLES + extra


def globs_overlap(a: str, b: str) -> bool:
    """Whether some name matches both globs (``*`` and ``?`` only), ignoring case."""
    return _overlap(a.lower(), b.lower())


@cache
def _overlap(a: str, b: str) -> bool:
    if not a or not b:
        rest = a or b
        return all(c == "*" for c in rest)
    if a[0] == "*":
        return _overlap(a[1:], b) or _overlap(a, b[1:])
    if b[0] == "*":
        return _overlap(a, b[1:]) or _overlap(a[1:], b)
    return (a[0] == b[0] or "?" in (a[0], b[0])) and _overlap(a[1:], b[1:])
