"""``[[accounts]]``: the tenants, their API keys and their parent chain."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from eslchan.config.policy import CONTEXT_NAME, ENDPOINT_PATTERN, REALM_NAME, parse_policy
from eslchan.config.quickcall import QuickcallConfig, parse_quickcall
from eslchan.config.reader import MISSING_SECRET, Reader

ACCOUNT_ID = re.compile(r"^[0-9a-f]{32}$")


def hash_api_key(api_key: str) -> str:
    """The stored form of an API key (sha256 hex); keys are never kept in clear."""
    return "sha256:" + hashlib.sha256(api_key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    api_key_hash: str
    parent: str | None = None
    superduper_admin: bool = False
    #: the account's own dialplan context (None: ``metaflow.default_context``)
    context: str | None = None
    #: the account's SIP domain: targets may name it (``1001@realm``)
    realm: str | None = None
    #: globs of the dial-string endpoints the account may originate to (SPEC §10)
    endpoints: tuple[str, ...] = ()
    #: ``[accounts.policy]``: the policy keys this account overrides, as (key, value) pairs
    policy: tuple[tuple[str, Any], ...] = ()
    #: ``[accounts.quickcall]``: the endpoints quickcall rings for its devices and users
    quickcall: QuickcallConfig | None = None


def parse_accounts(r: Reader, data: Any) -> list[Account]:
    if not isinstance(data, list):
        r.problems.append(("accounts", "must be an array of tables ([[accounts]])"))
        return []
    accounts: list[Account] = []
    for i, item in enumerate(data):
        key = f"accounts[{i}]"
        t = r.table(
            item,
            key,
            {"id", "name", "parent", "api_key", "api_key_env", "api_key_hash", "superduper_admin",
             "context", "realm", "endpoints", "policy", "quickcall"},
        )
        acc_id = r.get(t, key, "id", str, "")
        if not ACCOUNT_ID.match(acc_id):
            r.problems.append((f"{key}.id", "required; 32 lowercase hex characters"))
        parent = r.get(t, key, "parent", str, None)
        if parent is not None and not ACCOUNT_ID.match(parent):
            r.problems.append((f"{key}.parent", "must be an account id (32 lowercase hex)"))
        key_hash = r.get(t, key, "api_key_hash", str, None)
        api_key = r.secret(t, key, "api_key", None)
        if (key_hash is None) == (api_key is None):
            r.problems.append((f"{key}.api_key", "give exactly one of api_key, api_key_env, api_key_hash"))
        if api_key is not None and api_key != MISSING_SECRET:
            if len(api_key) < 16:
                r.problems.append((f"{key}.api_key", "must be at least 16 characters"))
            key_hash = hash_api_key(api_key)
        if key_hash is not None and not re.fullmatch(r"sha256:[0-9a-f]{64}", key_hash):
            r.problems.append((f"{key}.api_key_hash", "must be sha256:<64 hex>"))
        context = r.get(t, key, "context", str, None)
        if context is not None and not CONTEXT_NAME.fullmatch(context):
            r.problems.append((f"{key}.context", "must be a dialplan context: letters, digits, _ . - (1-64)"))
        realm = r.get(t, key, "realm", str, None)
        if realm is not None and not REALM_NAME.fullmatch(realm):
            r.problems.append((f"{key}.realm", "must be a domain name such as acme.example.com"))
        endpoints = r.get(t, key, "endpoints", list, [])
        bad = [e for e in endpoints if not isinstance(e, str) or not ENDPOINT_PATTERN.fullmatch(e)
               or ":_:" in e or "/" not in e]
        if bad:
            r.problems.append((f"{key}.endpoints", "each is a glob of a dial endpoint such as "
                               f"'user/*@acme.example' (no spaces, braces, brackets, commas): {bad[:3]!r}"))
        policy = parse_policy(r, t.get("policy"), f"{key}.policy")
        quickcall = parse_quickcall(r, t.get("quickcall"), f"{key}.quickcall")
        accounts.append(
            Account(
                id=acc_id,
                name=r.get(t, key, "name", str, acc_id),
                api_key_hash=key_hash or "",
                parent=parent,
                superduper_admin=r.get(t, key, "superduper_admin", bool, False),
                context=context,
                realm=realm.lower() if realm else None,
                endpoints=tuple(e for e in endpoints if isinstance(e, str)),
                policy=tuple(sorted(policy.items())),
                quickcall=quickcall,
            )
        )
    ids = [a.id for a in accounts]
    for i, acc in enumerate(accounts):
        if ids.count(acc.id) > 1:
            r.problems.append((f"accounts[{i}].id", f"duplicate account id {acc.id}"))
        if acc.parent is not None and acc.parent not in ids:
            r.problems.append((f"accounts[{i}].parent", f"no account has id {acc.parent}"))
    # a parent chain must end: a cycle would make every account its own ancestor
    parents = {a.id: a.parent for a in accounts}
    for i, acc in enumerate(accounts):
        seen, cur = set(), acc.id
        while cur is not None and cur not in seen:
            seen.add(cur)
            cur = parents.get(cur)
        if cur is not None:
            r.problems.append((f"accounts[{i}].parent", "the parent chain loops"))
    return accounts
