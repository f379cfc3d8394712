"""Configuration: one TOML file, validated up front, every problem named by its key.

Secrets may be given inline or through environment variables named in the file
(``password_env``, ``api_key_env``, ``signing_key_env``). Unknown keys and wrong types are
start-up errors, never silently ignored.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCOUNT_ID = re.compile(r"^[0-9a-f]{32}$")
NODE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MEDIA_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
DEFAULT_EVENTS = (
    "CHANNEL_CREATE CHANNEL_UUID CHANNEL_ANSWER CHANNEL_BRIDGE CHANNEL_UNBRIDGE CHANNEL_HOLD "
    "CHANNEL_UNHOLD CHANNEL_CALLSTATE CHANNEL_STATE CALL_UPDATE CHANNEL_EXECUTE "
    "CHANNEL_EXECUTE_COMPLETE CHANNEL_HANGUP CHANNEL_HANGUP_COMPLETE CHANNEL_DESTROY "
    "CHANNEL_PARK CHANNEL_UNPARK PLAYBACK_START PLAYBACK_STOP RECORD_START RECORD_STOP DTMF "
    "BACKGROUND_JOB HEARTBEAT SHUTDOWN"
).split()


class ConfigError(Exception):
    """A configuration that cannot be used; ``problems`` lists (key, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{k}: {m}" for k, m in problems))


def hash_api_key(api_key: str) -> str:
    """The stored form of an API key (sha256 hex); keys are never kept in clear."""
    return "sha256:" + hashlib.sha256(api_key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class NodeConfig:
    name: str
    host: str
    port: int = 8021
    password: str = "ClueCon"


@dataclass(frozen=True)
class LinkOptions:
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    backoff_jitter: float = 0.2
    watchdog: float = 60.0
    command_timeout: float = 5.0
    connect_timeout: float = 5.0
    event_queue_max: int = 100_000
    event_format: str = "json"
    events: tuple[str, ...] = tuple(DEFAULT_EVENTS)


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
    system_wide_channels_list: bool = False
    stale_grace_seconds: float = 30.0


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    api_key_hash: str
    parent: str | None = None
    superduper_admin: bool = False


@dataclass(frozen=True)
class AuthConfig:
    signing_key: str = "change-me"
    token_ttl: float = 3600.0
    failed_auth_per_minute: int = 10


@dataclass(frozen=True)
class MetaflowConfig:
    media: dict[str, str] = field(default_factory=dict)
    allowed_media_schemes: tuple[str, ...] = ("tone_stream", "file", "http", "https")
    media_path_prefixes: tuple[str, ...] = ("/usr/share/freeswitch/sounds/",)
    dial_templates: dict[str, str] = field(
        default_factory=lambda: {
            "device": "user/{id}",
            "user": "user/{id}",
            "number": "loopback/{number}/default",
        }
    )
    callflows_dir: Path | None = None
    recordings_dir: str = "/var/lib/freeswitch/recordings"  # on the FreeSWITCH host
    max_depth: int = 32
    max_nodes: int = 256
    default_context: str = "default"
    default_dialplan: str = "XML"
    moh: str = "local_stream://moh"


@dataclass(frozen=True)
class HttpConfig:
    listen: str = "127.0.0.1:8000"
    max_body_bytes: int = 64 * 1024
    drain_seconds: float = 10.0

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "INFO"
    json: bool = False


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
    source: Path | None = None

    def account(self, account_id: str) -> Account | None:
        for acc in self.accounts:
            if acc.id == account_id:
                return acc
        return None


# --- loading -------------------------------------------------------------------------------


#: What a secret reads as when its environment variable is unset (already reported).
MISSING_SECRET = "\0missing"


class _Reader:
    """Walks a TOML table, collecting every problem instead of stopping at the first."""

    def __init__(self, problems: list[tuple[str, str]], env: dict[str, str]):
        self.problems = problems
        self.env = env

    def table(self, data: Any, key: str, allowed: set[str]) -> dict[str, Any]:
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.problems.append((key, "must be a table"))
            return {}
        for name in data:
            if name not in allowed:
                full = f"{key}.{name}" if key else name
                self.problems.append((full, f"unknown key (known: {', '.join(sorted(allowed))})"))
        return data

    def get(self, data: dict, key: str, name: str, kind: type | tuple, default: Any) -> Any:
        if name not in data:
            return default
        value = data[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if kind is float:
            kinds = (int, float)
        # bool is an int in Python; a boolean where a number is expected is still wrong
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join(k.__name__ for k in kinds)
            self.problems.append((f"{key}.{name}", f"must be {names}, not {type(value).__name__}"))
            return default
        return float(value) if kind is float else value

    def secret(self, data: dict, key: str, name: str, default: str | None) -> str | None:
        direct = self.get(data, key, name, str, None)
        env_name = self.get(data, key, f"{name}_env", str, None)
        if direct is not None and env_name is not None:
            self.problems.append((f"{key}.{name}", f"give {name} or {name}_env, not both"))
        if env_name is not None:
            if env_name not in self.env:
                self.problems.append((f"{key}.{name}_env", f"environment variable {env_name} is not set"))
                return MISSING_SECRET
            return self.env[env_name]
        return direct if direct is not None else default

    def positive(self, data: dict, key: str, name: str, default: Any, kind: type = float) -> Any:
        value = self.get(data, key, name, kind, default)
        if value <= 0:
            self.problems.append((f"{key}.{name}", "must be greater than 0"))
            return default
        return value


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
    r = _Reader(problems, dict(os.environ) if env is None else env)
    top = r.table(
        raw, "", {"http", "nodes", "link", "channels", "accounts", "auth", "metaflow", "logging"}
    )

    h = r.table(top.get("http"), "http", {"listen", "max_body_bytes", "drain_seconds"})
    http = HttpConfig(
        listen=r.get(h, "http", "listen", str, HttpConfig.listen),
        max_body_bytes=r.positive(h, "http", "max_body_bytes", HttpConfig.max_body_bytes, int),
        drain_seconds=r.positive(h, "http", "drain_seconds", HttpConfig.drain_seconds),
    )
    if not re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):\d{1,5}", http.listen):
        problems.append(("http.listen", f"must be HOST:PORT, not {http.listen!r}"))

    nodes = _nodes(r, top.get("nodes", []))
    link = _link(r, top.get("link"))
    channels = _channels(r, top.get("channels"))
    accounts = _accounts(r, top.get("accounts", []))

    a = r.table(
        top.get("auth"),
        "auth",
        {"signing_key", "signing_key_env", "token_ttl", "failed_auth_per_minute"},
    )
    auth = AuthConfig(
        signing_key=r.secret(a, "auth", "signing_key", None) or "",
        token_ttl=r.positive(a, "auth", "token_ttl", AuthConfig.token_ttl),
        failed_auth_per_minute=r.get(a, "auth", "failed_auth_per_minute", int, 10),
    )
    if auth.signing_key != MISSING_SECRET and len(auth.signing_key) < 16:
        problems.append(("auth.signing_key", "must be set, at least 16 characters"))

    metaflow = _metaflow(r, top.get("metaflow"), source)
    lg = r.table(top.get("logging"), "logging", {"level", "json"})
    logging_cfg = LoggingConfig(
        level=r.get(lg, "logging", "level", str, "INFO").upper(),
        json=r.get(lg, "logging", "json", bool, False),
    )
    if logging_cfg.level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        problems.append(("logging.level", "must be DEBUG, INFO, WARNING or ERROR"))

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
        source=source,
    )


def _nodes(r: _Reader, data: Any) -> list[NodeConfig]:
    if not isinstance(data, list):
        r.problems.append(("nodes", "must be an array of tables ([[nodes]])"))
        return []
    nodes: list[NodeConfig] = []
    seen: set[str] = set()
    for i, item in enumerate(data):
        key = f"nodes[{i}]"
        n = r.table(item, key, {"name", "host", "port", "password", "password_env"})
        name = r.get(n, key, "name", str, "")
        if not NODE_NAME.match(name):
            r.problems.append((f"{key}.name", "required; letters, digits, _ . - (1-64)"))
        elif name in seen:
            r.problems.append((f"{key}.name", f"duplicate node name {name!r}"))
        seen.add(name)
        host = r.get(n, key, "host", str, "")
        if not host:
            r.problems.append((f"{key}.host", "required"))
        port = r.get(n, key, "port", int, 8021)
        if not 0 < port < 65536:
            r.problems.append((f"{key}.port", "must be 1-65535"))
        password = r.secret(n, key, "password", None)
        if password is None:
            r.problems.append((f"{key}.password", "required (or password_env)"))
        nodes.append(NodeConfig(name=name, host=host, port=port, password=password or ""))
    return nodes


def _link(r: _Reader, data: Any) -> LinkOptions:
    d = LinkOptions()
    names = {
        "backoff_initial",
        "backoff_max",
        "backoff_jitter",
        "watchdog",
        "command_timeout",
        "connect_timeout",
        "event_queue_max",
        "event_format",
        "events",
    }
    t = r.table(data, "link", names)
    events = r.get(t, "link", "events", list, list(d.events))
    if not all(isinstance(e, str) and re.fullmatch(r"[A-Z_]+|[a-z_:]+", e) for e in events):
        r.problems.append(("link.events", "must be a list of event names"))
        events = list(d.events)
    fmt = r.get(t, "link", "event_format", str, d.event_format)
    if fmt not in {"json", "plain", "xml"}:
        r.problems.append(("link.event_format", "must be json, plain or xml"))
        fmt = d.event_format
    jitter = r.get(t, "link", "backoff_jitter", float, d.backoff_jitter)
    if not 0 <= jitter <= 1:
        r.problems.append(("link.backoff_jitter", "must be between 0 and 1"))
    return LinkOptions(
        backoff_initial=r.positive(t, "link", "backoff_initial", d.backoff_initial),
        backoff_max=r.positive(t, "link", "backoff_max", d.backoff_max),
        backoff_jitter=jitter,
        watchdog=r.positive(t, "link", "watchdog", d.watchdog),
        command_timeout=r.positive(t, "link", "command_timeout", d.command_timeout),
        connect_timeout=r.positive(t, "link", "connect_timeout", d.connect_timeout),
        event_queue_max=r.positive(t, "link", "event_queue_max", d.event_queue_max, int),
        event_format=fmt,
        events=tuple(events),
    )


def _channels(r: _Reader, data: Any) -> ChannelsConfig:
    t = r.table(
        data,
        "channels",
        {"preset", "variables", "system_wide_channels_list", "stale_grace_seconds"},
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
        system_wide_channels_list=r.get(t, "channels", "system_wide_channels_list", bool, False),
        stale_grace_seconds=r.positive(t, "channels", "stale_grace_seconds", 30.0),
    )


def _accounts(r: _Reader, data: Any) -> list[Account]:
    if not isinstance(data, list):
        r.problems.append(("accounts", "must be an array of tables ([[accounts]])"))
        return []
    accounts: list[Account] = []
    for i, item in enumerate(data):
        key = f"accounts[{i}]"
        t = r.table(
            item,
            key,
            {"id", "name", "parent", "api_key", "api_key_env", "api_key_hash", "superduper_admin"},
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
        accounts.append(
            Account(
                id=acc_id,
                name=r.get(t, key, "name", str, acc_id),
                api_key_hash=key_hash or "",
                parent=parent,
                superduper_admin=r.get(t, key, "superduper_admin", bool, False),
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


def _metaflow(r: _Reader, data: Any, source: Path | None) -> MetaflowConfig:
    d = MetaflowConfig()
    t = r.table(
        data,
        "metaflow",
        {
            "media",
            "allowed_media_schemes",
            "media_path_prefixes",
            "dial_templates",
            "callflows_dir",
            "recordings_dir",
            "max_depth",
            "max_nodes",
            "default_context",
            "default_dialplan",
            "moh",
        },
    )
    media = r.get(t, "metaflow", "media", dict, {})
    for mid, target in media.items():
        if not MEDIA_ID.match(mid) or not isinstance(target, str):
            r.problems.append((f"metaflow.media.{mid}", "media ids map to a file path or URL string"))
    templates = {**d.dial_templates, **r.get(t, "metaflow", "dial_templates", dict, {})}
    for kind, tpl in templates.items():
        if kind not in d.dial_templates:
            r.problems.append((f"metaflow.dial_templates.{kind}", "known kinds: device, user, number"))
        elif not isinstance(tpl, str):
            r.problems.append((f"metaflow.dial_templates.{kind}", "must be a string"))
    callflows = r.get(t, "metaflow", "callflows_dir", str, None)
    callflows_dir = None
    if callflows is not None:
        callflows_dir = Path(callflows)
        if not callflows_dir.is_absolute() and source is not None:
            callflows_dir = source.parent / callflows_dir
    recordings_dir = r.get(t, "metaflow", "recordings_dir", str, d.recordings_dir)
    if not re.fullmatch(r"/[A-Za-z0-9_./-]*", recordings_dir) or ".." in recordings_dir.split("/"):
        r.problems.append(("metaflow.recordings_dir", "must be an absolute path of letters, digits, _ . - /"))
    schemes = r.get(t, "metaflow", "allowed_media_schemes", list, list(d.allowed_media_schemes))
    prefixes = r.get(t, "metaflow", "media_path_prefixes", list, list(d.media_path_prefixes))
    for name, values in (("allowed_media_schemes", schemes), ("media_path_prefixes", prefixes)):
        if not all(isinstance(x, str) for x in values):
            r.problems.append((f"metaflow.{name}", "must be a list of strings"))
    return MetaflowConfig(
        media=dict(media),
        allowed_media_schemes=tuple(schemes),
        media_path_prefixes=tuple(prefixes),
        dial_templates=templates,
        callflows_dir=callflows_dir,
        recordings_dir=recordings_dir,
        max_depth=r.positive(t, "metaflow", "max_depth", d.max_depth, int),
        max_nodes=r.positive(t, "metaflow", "max_nodes", d.max_nodes, int),
        default_context=r.get(t, "metaflow", "default_context", str, d.default_context),
        default_dialplan=r.get(t, "metaflow", "default_dialplan", str, d.default_dialplan),
        moh=r.get(t, "metaflow", "moh", str, d.moh),
    )
