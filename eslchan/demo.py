"""`eslchan demo`: the daemon against the embedded simulator, with tenants and live calls.

The same demo tenancy is what the test-suite runs against, so what a user tries first is
what the tests check.
"""

from __future__ import annotations

import json
import random
import secrets
import urllib.request
from dataclasses import dataclass

import gevent

from eslchan.config import (
    Account,
    AuthConfig,
    ChannelsConfig,
    Config,
    HttpConfig,
    LinkOptions,
    MetaflowConfig,
    NodeConfig,
    hash_api_key,
)

ADMIN = "ad000000000000000000000000000000"  # superduper admin
ACME = "acc00000000000000000000000000001"
ACME_SALES = "acc00000000000000000000000000002"  # a sub-account of Acme
GLOBEX = "acc00000000000000000000000000003"


@dataclass(frozen=True)
class DemoParty:
    account_id: str
    user_id: str
    device_id: str
    name: str
    number: str


#: Users and their devices, per account; each user has one device.
PARTIES = (
    DemoParty(ACME, "5e000000000000000000000000000a01", "de000000000000000000000000000a01", "Alice", "1001"),
    DemoParty(ACME, "5e000000000000000000000000000a02", "de000000000000000000000000000a02", "Bob", "1002"),
    DemoParty(
        ACME_SALES, "5e000000000000000000000000000b01", "de000000000000000000000000000b01", "Carol", "2001"
    ),
    DemoParty(GLOBEX, "5e000000000000000000000000000c01", "de000000000000000000000000000c01", "Dave", "3001"),
)


def demo_accounts(keys: dict[str, str]) -> tuple[Account, ...]:
    """The demo hierarchy: admin ⊃ {Acme ⊃ Acme Sales, Globex}; ``keys`` maps account id → API key."""
    spec = [
        (ADMIN, "Admin", None, True),
        (ACME, "Acme", ADMIN, False),
        (ACME_SALES, "Acme Sales", ACME, False),
        (GLOBEX, "Globex", ADMIN, False),
    ]
    return tuple(
        Account(id=i, name=n, parent=p, superduper_admin=s, api_key_hash=hash_api_key(keys[i]))
        for i, n, p, s in spec
    )


def demo_keys() -> dict[str, str]:
    return {acc: secrets.token_hex(16) for acc in (ADMIN, ACME, ACME_SALES, GLOBEX)}


def demo_config(
    nodes: list[tuple[str, str, int, str]],
    keys: dict[str, str],
    *,
    listen: str = "127.0.0.1:8000",
    system_wide: bool = True,
    link: LinkOptions | None = None,
    metaflow: MetaflowConfig | None = None,
) -> Config:
    """A complete configuration for the demo tenancy against the given (name, host, port, password) nodes."""
    return Config(
        http=HttpConfig(listen=listen, drain_seconds=2.0),
        nodes=tuple(NodeConfig(name=n, host=h, port=p, password=pw) for n, h, p, pw in nodes),
        link=link or LinkOptions(backoff_initial=0.1, backoff_max=2.0),
        channels=ChannelsConfig(system_wide_channels_list=system_wide, stale_grace_seconds=10.0),
        accounts=demo_accounts(keys),
        auth=AuthConfig(signing_key=secrets.token_hex(32)),
        metaflow=metaflow
        or MetaflowConfig(
            media={
                "welcome": "tone_stream://%(400,200,523);loops=2",
                # the Kazoo channels document's POST example asks for moh "media_id"
                "media_id": "tone_stream://%(1000,4000,440);loops=-1",
            }
        ),
    )


class DemoTraffic:
    """Keeps a handful of calls alive on a simulator: they come, last a while, and go."""

    def __init__(self, simulator, *, calls: int = 6, min_s: float = 20.0, max_s: float = 90.0, seed=None):
        self.sim = simulator
        self.calls = calls
        self.min_s, self.max_s = min_s, max_s
        self.rng = random.Random(seed)
        self._greenlets: list[gevent.Greenlet] = []

    def start(self) -> None:
        self._greenlets = [gevent.spawn(self._one_line, i) for i in range(self.calls)]

    def stop(self) -> None:
        gevent.killall(self._greenlets)

    def _one_line(self, index: int) -> None:
        gevent.sleep(self.rng.uniform(0, 2))
        while True:
            caller = PARTIES[index % len(PARTIES)]
            callee = self.rng.choice(PARTIES)
            call = self.sim.create_call(
                account_id=caller.account_id,
                user_id=caller.user_id,
                device_id=caller.device_id,
                caller_id_name=caller.name,
                caller_id_number=caller.number,
                destination=callee.number,
                username=caller.name.lower(),
            )
            gevent.sleep(self.rng.uniform(self.min_s, self.max_s))
            self.sim.hangup(call.a_uuid)
            gevent.sleep(self.rng.uniform(1, 5))


def fetch_token(url: str, api_key: str) -> str:
    """A real token from the running daemon, so the printed curl commands work as printed."""
    body = json.dumps({"data": {"api_key": api_key}}).encode()
    req = urllib.request.Request(
        f"{url}/v2/api_auth", data=body, method="PUT", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)["auth_token"]
