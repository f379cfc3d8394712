"""Hostile tenants for the security tests: a call of an account on the simulator, the REST
requests its key makes, and what of them reached FreeSWITCH (the simulator's command log)
and armed a hook (the simulator's hook log)."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import gevent
import pytest
from conftest import eventually

from eslchan.config import PolicyConfig
from eslchan.demo import ACME, GLOBEX

#: the resync's own commands: not something a tenant's request sent
_DAEMON_OWN = ("api show channels", "api uuid_dump")

#: the variables of SPEC §8 and the issue that FreeSWITCH runs or routes by, with case variants
HOOK_VARIABLES = [
    "api_hangup_hook", "api_on_answer", "execute_on_answer", "execute_on_media",
    "session_in_hangup_hook", "api_after_bridge", "exec_after_bridge_app",
    "bridge_pre_execute_bleg_app", "api_reporting_hook", "transfer_after_bridge",
    "hangup_after_bridge", "park_after_bridge", "API_HANGUP_HOOK", "Execute_On_Answer",
    "record_post_process_exec_api", "hold_music",
]
TENANCY_VARIABLES = ["eslchan_account_id", "eslchan_owner_id", "eslchan_authorizing_id",
                     "eslchan_authorizing_type", "ESLCHAN_ACCOUNT_ID", "presence_id", "user_name"]
SHELL = "system touch /tmp/eslchan-pwned"


def with_accounts(config: Any, policy: PolicyConfig | None = None, **per_account: dict[str, Any]) -> Any:
    """``config`` with a [policy] table and per-account changes (``ACME={"context": "acme"}``)."""
    ids = {"ACME": ACME, "GLOBEX": GLOBEX}
    changes = {ids.get(k, k): v for k, v in per_account.items()}
    accounts = tuple(replace(a, **changes[a.id]) if a.id in changes else a for a in config.accounts)
    return replace(config, accounts=accounts, policy=policy or config.policy)


def account_policy(**overrides: Any) -> tuple[tuple[str, Any], ...]:
    """An [accounts.policy] table as Account.policy holds it."""
    return tuple(sorted(overrides.items()))


class Tenant:
    """One account's live call (two bridged legs) and its key's requests about it."""

    def __init__(self, simulator: Any, daemon: Any, http: Any, account: str = ACME, *,
                 bridged: bool = True, **call: Any):
        self.sim, self.daemon, self.http, self.account = simulator, daemon, http, account
        c = simulator.create_call(account_id=account, user_id="u" * 32, device_id="d" * 32,
                                  bridged=bridged, **call)
        self.a, self.b = c.a_uuid, c.b_uuid
        eventually(lambda: (ch := daemon.registry.find(self.a)) is not None and ch.answered
                   and (ch.other_leg or not bridged))
        self.base = f"/v2/accounts/{account}/channels/{self.a}"
        self.mark = len(simulator.commands)
        self.hooks_mark = len(simulator.hooks)

    @property
    def token(self) -> str:
        return self.http.token(self.account)

    def post(self, **action: Any):
        return self.http.request("POST", self.base, {"data": action}, token=self.token)

    def put(self, tree: dict):
        return self.http.request("PUT", self.base, {"action": "metaflow", "data": tree}, token=self.token)

    def sent(self) -> list[str]:
        """Commands FreeSWITCH received since the call was set up (not the daemon's resyncs)."""
        return [c for c in self.sim.commands[self.mark:]
                if c.startswith(("api ", "bgapi ", "sendmsg ")) and not c.startswith(_DAEMON_OWN)]

    def hooks(self, kind: str | None = None) -> list:
        return [h for h in self.sim.hooks[self.hooks_mark:] if kind is None or h.kind == kind]

    def variables(self, leg: str | None = None) -> dict[str, str]:
        ch = self.sim.channel(leg or self.a)
        return dict(ch.variables) if ch is not None else {}

    def hang_up(self) -> None:
        """The far end hangs up: every hangup, reporting and after-bridge hook would run now."""
        self.sim.hangup(self.a)
        eventually(lambda: self.daemon.registry.find(self.a) is None)


def refused(resp: Any, status: int, rule: str | None = None) -> dict:
    """The answer is ``status`` in the error envelope, naming ``rule`` (403) somewhere."""
    assert resp.status == status, (resp.status, resp.body[:500])
    body = resp.json
    assert body["status"] == "error" and body["error"] == str(status), body
    if rule is not None:
        rules = {d["policy"]["rule"] for d in body["data"].values() if isinstance(d, dict) and "policy" in d}
        assert rule in rules, body["data"]
    return body


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def settle(seconds: float = 0.05) -> None:
    """Let the daemon's greenlets run (a refused request must have had its chance to send)."""
    gevent.sleep(seconds)


@pytest.fixture
def no_hook_ran(simulator):
    """After the test, every call still up hangs up (arming the hangup and reporting hooks),
    then no hook that runs code may have run on the switch."""
    yield
    for ch in simulator.channels():
        simulator.hangup(ch.uuid)
    eventually(lambda: not simulator.channels())
    ran = [h for h in simulator.hooks if h.kind == "code"]
    assert not ran, ran
