"""``[[nodes]]``: the FreeSWITCH event sockets to keep a link to."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from eslchan.config.reader import Reader

NODE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class NodeConfig:
    name: str
    host: str
    port: int = 8021
    password: str = "ClueCon"


def parse_nodes(r: Reader, data: Any) -> list[NodeConfig]:
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
