"""`eslchan demo`: the daemon against the embedded simulator, with tenants and live calls.

The same demo tenancy is what the test-suite runs against, so what a user tries first is
what the tests check.
"""

from __future__ import annotations

import json
import secrets
import urllib.request
from ipaddress import ip_network
from pathlib import Path

from eslchan.config import (
    Account,
    AuthConfig,
    ChannelsConfig,
    Config,
    HttpConfig,
    LinkOptions,
    MetaflowConfig,
    NodeConfig,
    QuickcallConfig,
    WebhooksConfig,
    hash_api_key,
)
from eslchan.simulator.cli import DemoCalls, Party

ADMIN = "ad000000000000000000000000000000"  # superduper admin
ACME = "acc00000000000000000000000000001"
ACME_SALES = "acc00000000000000000000000000002"  # a sub-account of Acme
GLOBEX = "acc00000000000000000000000000003"

#: The sample stored callflows of a clone (absent from an installed wheel: then none).
DEMO_CALLFLOWS = Path(__file__).resolve().parents[1] / "conf" / "callflows"


#: Users and their devices, per account; each user has one device.
PARTIES = (
    Party(ACME, "5e000000000000000000000000000a01", "de000000000000000000000000000a01", "Alice", "1001"),
    Party(ACME, "5e000000000000000000000000000a02", "de000000000000000000000000000a02", "Bob", "1002"),
    Party(
        ACME_SALES, "5e000000000000000000000000000b01", "de000000000000000000000000000b01", "Carol", "2001"
    ),
    Party(GLOBEX, "5e000000000000000000000000000c01", "de000000000000000000000000000c01", "Dave", "3001"),
)


#: The simulator's SIP domain: its phones are user/<number>@DOMAIN.
DOMAIN = "sim.local"


def demo_quickcall(account: str) -> QuickcallConfig:
    """Quickcall rings each of the account's demo devices and users on its own phone."""
    parties = [p for p in PARTIES if p.account_id == account]
    return QuickcallConfig(
        devices=tuple((p.device_id, f"user/{p.number}@{DOMAIN}") for p in parties),
        users=tuple((p.user_id, f"user/{p.number}@{DOMAIN}") for p in parties),
    )


def demo_accounts(keys: dict[str, str]) -> tuple[Account, ...]:
    """The demo hierarchy: admin ⊃ {Acme ⊃ Acme Sales, Globex}; ``keys`` maps account id → API key.
    Acme may start calls to the simulator's phones, and quickcall its devices and users."""
    spec = [
        (ADMIN, "Admin", None, True),
        (ACME, "Acme", ADMIN, False),
        (ACME_SALES, "Acme Sales", ACME, False),
        (GLOBEX, "Globex", ADMIN, False),
    ]
    return tuple(
        Account(id=i, name=n, parent=p, superduper_admin=s, api_key_hash=hash_api_key(keys[i]),
                endpoints=(f"user/*@{DOMAIN}",) if i == ACME else (),
                quickcall=demo_quickcall(i) if i == ACME else None)
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
    webhooks: WebhooksConfig | None = None,
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
                "beep": "tone_stream://%(250,0,800)",  # conf/callflows/voicemail_prompt.json plays it
            },
            callflows_dir=DEMO_CALLFLOWS if DEMO_CALLFLOWS.is_dir() else None,
        ),
        webhooks=webhooks,
    )


def demo_webhooks(data_dir: Path) -> WebhooksConfig:
    """The demo's webhooks: stored in ``data_dir``; receivers on this machine (loopback) are
    allowed, since a demo's first receiver is usually a local one."""
    return WebhooksConfig(
        data_dir=data_dir, allowed_networks=(ip_network("127.0.0.0/8"), ip_network("::1/128"))
    )


def demo_traffic(simulator, calls: int = 6) -> DemoCalls:
    """The demo's live calls: each party in turn calls another, for about a minute."""
    return DemoCalls(simulator, calls, 55.0, PARTIES)


def fetch_token(url: str, api_key: str) -> str:
    """A real token from the running daemon, so the printed curl commands work as printed."""
    body = json.dumps({"data": {"api_key": api_key}}).encode()
    req = urllib.request.Request(
        f"{url}/v2/api_auth", data=body, method="PUT", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)["auth_token"]
