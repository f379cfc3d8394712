"""``[webhooks]``: where hooks and their queues are stored, how deliveries are retried, and which
destinations a tenant may target. No ``[webhooks]`` table: webhooks are off."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eslchan.config.reader import Reader

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class WebhooksConfig:
    data_dir: Path
    #: seconds one delivery may take, connecting and reading the answer included
    timeout: float = 10.0
    #: first retry delay; it doubles with each failed attempt of the hook, up to ``backoff_max``
    backoff_initial: float = 1.0
    backoff_max: float = 300.0
    backoff_jitter: float = 0.2
    #: failed deliveries in a row (each after 1 + the hook's retries attempts) before auto-disable
    disable_after: int = 6
    max_hooks_per_account: int = 20
    #: events waiting for one hook, persisted; past it new events for that hook are dropped, counted
    max_pending_per_hook: int = 10_000
    #: events handed from the registry to the writer, not yet persisted (all hooks together)
    handoff_max: int = 10_000
    #: delivery-log entries kept per hook (GET .../attempts)
    attempts_kept: int = 100
    custom_data_max_bytes: int = 4096
    uri_max_length: int = 2048
    allowed_schemes: tuple[str, ...] = ("http", "https")
    #: ranges the default policy forbids (loopback, private, ...) that the operator allows anyway
    allowed_networks: tuple[Network, ...] = ()
    #: ranges forbidden on top of the default policy (e.g. the operator's own public addresses)
    denied_networks: tuple[Network, ...] = ()
    #: extra certificate authorities (PEM) trusted for https hooks, beside the system's
    ca_file: Path | None = None


_KEYS = {
    "data_dir",
    "timeout",
    "backoff_initial",
    "backoff_max",
    "backoff_jitter",
    "disable_after",
    "max_hooks_per_account",
    "max_pending_per_hook",
    "handoff_max",
    "attempts_kept",
    "custom_data_max_bytes",
    "uri_max_length",
    "allowed_schemes",
    "allowed_networks",
    "denied_networks",
    "ca_file",
}


def _networks(r: Reader, t: dict, name: str) -> tuple[Network, ...]:
    values = r.get(t, "webhooks", name, list, [])
    networks: list[Network] = []
    for i, value in enumerate(values):
        try:
            if not isinstance(value, str):
                raise ValueError("not a string")
            networks.append(ipaddress.ip_network(value, strict=True))
        except ValueError as exc:
            r.problems.append((f"webhooks.{name}[{i}]", f"must be a network such as 10.1.0.0/16: {exc}"))
    return tuple(networks)


def parse_webhooks(
    r: Reader, data: Any, source: Path | None, *, shared: bool = False
) -> WebhooksConfig | None:
    """``shared``: the cluster's Redis holds the webhooks, so no database directory is needed."""
    if data is None:
        return None
    t = r.table(data, "webhooks", _KEYS)
    d = WebhooksConfig(data_dir=Path("."))
    raw_dir = r.get(t, "webhooks", "data_dir", str, "")
    if not raw_dir and not shared:
        r.problems.append(("webhooks.data_dir", "required: the directory of the webhooks database"))
    data_dir = Path(raw_dir)
    if not data_dir.is_absolute() and source is not None:
        data_dir = source.parent / data_dir
    jitter = r.get(t, "webhooks", "backoff_jitter", float, d.backoff_jitter)
    if not 0 <= jitter <= 1:
        r.problems.append(("webhooks.backoff_jitter", "must be between 0 and 1"))
        jitter = d.backoff_jitter
    schemes = r.get(t, "webhooks", "allowed_schemes", list, list(d.allowed_schemes))
    if not schemes or not all(s in ("http", "https") for s in schemes):
        r.problems.append(("webhooks.allowed_schemes", "must list http and/or https"))
        schemes = list(d.allowed_schemes)
    ca_file = None
    raw_ca = r.get(t, "webhooks", "ca_file", str, None)
    if raw_ca is not None:
        ca_file = Path(raw_ca)
        if not ca_file.is_absolute() and source is not None:
            ca_file = source.parent / ca_file
        if not ca_file.is_file():
            r.problems.append(("webhooks.ca_file", f"no such file: {ca_file}"))

    def positive(name: str, kind: type = float) -> Any:
        return r.positive(t, "webhooks", name, getattr(d, name), kind)

    config = WebhooksConfig(
        data_dir=data_dir,
        timeout=positive("timeout"),
        backoff_initial=positive("backoff_initial"),
        backoff_max=positive("backoff_max"),
        backoff_jitter=jitter,
        disable_after=positive("disable_after", int),
        max_hooks_per_account=positive("max_hooks_per_account", int),
        max_pending_per_hook=positive("max_pending_per_hook", int),
        handoff_max=positive("handoff_max", int),
        attempts_kept=positive("attempts_kept", int),
        custom_data_max_bytes=positive("custom_data_max_bytes", int),
        uri_max_length=positive("uri_max_length", int),
        allowed_schemes=tuple(dict.fromkeys(schemes)),
        allowed_networks=_networks(r, t, "allowed_networks"),
        denied_networks=_networks(r, t, "denied_networks"),
        ca_file=ca_file,
    )
    if config.backoff_max < config.backoff_initial:
        r.problems.append(("webhooks.backoff_max", "must not be less than backoff_initial"))
    if config.uri_max_length > 8192:
        r.problems.append(("webhooks.uri_max_length", "must be at most 8192"))
    return config
