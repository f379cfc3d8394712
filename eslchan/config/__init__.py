"""Configuration: one TOML file, validated up front, every problem named by its key.

Secrets may be given inline or through environment variables named in the file
(``password_env``, ``api_key_env``, ``signing_key_env``). Unknown keys and wrong types are
start-up errors, never silently ignored.

Each top-level table has its own module here (its dataclasses and its parsing function);
``parse_config`` is the one place that lists the tables and builds ``Config``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eslchan.config.accounts import ACCOUNT_ID, Account, hash_api_key, parse_accounts
from eslchan.config.auth import AuthConfig, parse_auth
from eslchan.config.channels import ChannelsConfig, VariableMapping, parse_channels
from eslchan.config.cluster import ClusterConfig, parse_cluster
from eslchan.config.http import HttpConfig, parse_http
from eslchan.config.link import DEFAULT_EVENTS, LinkOptions, parse_link
from eslchan.config.logging import LoggingConfig, parse_logging
from eslchan.config.metaflow import MEDIA_ID, MetaflowConfig, parse_metaflow
from eslchan.config.nodes import NODE_NAME, NodeConfig, parse_nodes
from eslchan.config.policy import PolicyConfig, check_policy, parse_policy
from eslchan.config.quickcall import QuickcallConfig
from eslchan.config.reader import MISSING_SECRET, ConfigError, Reader
from eslchan.config.webhooks import WebhooksConfig, parse_webhooks

__all__ = [
    "ACCOUNT_ID",
    "DEFAULT_EVENTS",
    "MEDIA_ID",
    "MISSING_SECRET",
    "NODE_NAME",
    "Account",
    "AuthConfig",
    "ChannelsConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "HttpConfig",
    "LinkOptions",
    "LoggingConfig",
    "MetaflowConfig",
    "NodeConfig",
    "PolicyConfig",
    "QuickcallConfig",
    "VariableMapping",
    "WebhooksConfig",
    "hash_api_key",
    "load_config",
    "parse_config",
]


@dataclass(frozen=True)
class Config:
    http: HttpConfig = field(default_factory=HttpConfig)
    nodes: tuple[NodeConfig, ...] = ()
    link: LinkOptions = field(default_factory=LinkOptions)
    channels: ChannelsConfig = field(default_factory=ChannelsConfig)
    accounts: tuple[Account, ...] = ()
    auth: AuthConfig = field(default_factory=AuthConfig)
    metaflow: MetaflowConfig = field(default_factory=MetaflowConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    #: None: webhooks are off (no ``[webhooks]`` table)
    webhooks: WebhooksConfig | None = None
    #: None: the embedded single process (no ``[cluster]`` table)
    cluster: ClusterConfig | None = None
    source: Path | None = None

    def account(self, account_id: str) -> Account | None:
        for acc in self.accounts:
            if acc.id == account_id:
                return acc
        return None


# --- loading -------------------------------------------------------------------------------


def load_config(path: str | os.PathLike, env: dict[str, str] | None = None) -> Config:
    """Read and validate a TOML configuration file; raise ConfigError naming every bad key."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError([("--config", f"no such file: {path}")]) from None
    except OSError as exc:  # a directory, no permission…: named like a missing file, not a traceback
        raise ConfigError([("--config", f"cannot read {path}: {exc.strerror}")]) from None
    except UnicodeDecodeError:
        raise ConfigError([("--config", f"not UTF-8 text: {path}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([("(file)", f"not valid TOML: {exc}")]) from None
    return parse_config(raw, env=env, source=path)


def parse_config(
    raw: dict[str, Any], *, env: dict[str, str] | None = None, source: Path | None = None
) -> Config:
    problems: list[tuple[str, str]] = []
    r = Reader(problems, dict(os.environ) if env is None else env)
    top = r.table(
        raw,
        "",
        {"http", "nodes", "link", "channels", "accounts", "auth", "metaflow", "logging", "webhooks",
         "policy", "cluster"},
    )
    # tables are read in this order so that problems are reported in it
    http = parse_http(r, top.get("http"))
    nodes = parse_nodes(r, top.get("nodes", []))
    link = parse_link(r, top.get("link"))
    channels = parse_channels(r, top.get("channels"))
    accounts = parse_accounts(r, top.get("accounts", []))
    auth = parse_auth(r, top.get("auth"))
    metaflow = parse_metaflow(r, top.get("metaflow"), source)
    logging_cfg = parse_logging(r, top.get("logging"))
    policy = parse_policy(r, top.get("policy"), "policy")
    # a policy is judged against the variables that carry tenancy (the [channels] mapping)
    check_policy(r, "policy", policy, channels.mapping, channels.preset)
    for i, acc in enumerate(accounts):
        check_policy(r, f"accounts[{i}].policy", dict(acc.policy), channels.mapping, channels.preset)
    webhooks = parse_webhooks(r, top.get("webhooks"), source, shared=top.get("cluster") is not None)
    cluster = parse_cluster(r, top.get("cluster"))

    if problems:
        raise ConfigError(problems)
    return Config(
        http=http,
        nodes=tuple(nodes),
        link=link,
        channels=channels,
        accounts=tuple(accounts),
        auth=auth,
        metaflow=metaflow,
        logging=logging_cfg,
        webhooks=webhooks,
        cluster=cluster,
        policy=PolicyConfig(**policy),
        source=source,
    )
