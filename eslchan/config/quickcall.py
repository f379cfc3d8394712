"""``[accounts.quickcall]``: the endpoint Kazoo's quickcall rings for a device or a user.

eslchan has no device or user documents: the operator says how a device or user id becomes a
dial endpoint, with a template (``device = "user/{id}@acme.example.com"``) or a table of
single ids (``[accounts.quickcall.devices]``), the table winning. These endpoints are the
operator's, like the dial templates: a quickcall may dial them whatever the account's own
``endpoints`` globs say.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Any

from eslchan.config.reader import Reader

#: A quickcall endpoint, literal or template: a dial endpoint such as user/1001@acme.example
#: (no spaces, braces other than the {id} placeholder, brackets, commas or quotes).
ENDPOINT = re.compile(r"^[A-Za-z0-9+#._@/:=-]{1,200}$")
#: A device or user id a table names (Kazoo's ids are 32 hex characters).
ENTITY_ID = re.compile(r"^[A-Za-z0-9_.+-]{1,64}$")


@dataclass(frozen=True)
class QuickcallConfig:
    device: str | None = None  # template; {id} is the device id
    user: str | None = None  # template; {id} is the user id
    devices: tuple[tuple[str, str], ...] = ()  # device id -> endpoint
    users: tuple[tuple[str, str], ...] = ()  # user id -> endpoint

    def endpoint(self, kind: str, entity_id: str) -> str | None:
        """The endpoint of device or user ``entity_id`` (an id of ENTITY_ID's grammar), or
        None when the configuration names none."""
        table = dict(self.devices if kind == "device" else self.users)
        if entity_id in table:
            return table[entity_id]
        template = self.device if kind == "device" else self.user
        return template.format(id=entity_id) if template else None

    def templates(self) -> tuple[str, ...]:
        return tuple(t for t in (self.device, self.user) if t)

    def literals(self) -> tuple[str, ...]:
        return tuple(e for _, e in self.devices + self.users)


def _template(r: Reader, key: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        r.problems.append((key, "must be a string"))
        return None
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
    except ValueError:
        names = {"?"}
    literal = value.replace("{id}", "x")
    if names - {"id"} or not ENDPOINT.fullmatch(literal) or "/" not in literal:
        r.problems.append((key, "must be a dial endpoint with at most an {id} placeholder, "
                           "such as 'user/{id}@acme.example.com'"))
        return None
    return value


def _table(r: Reader, key: str, data: Any) -> tuple[tuple[str, str], ...]:
    if data is None:
        return ()
    if not isinstance(data, dict):
        r.problems.append((key, "must be a table of id = endpoint"))
        return ()
    out = []
    for entity_id, endpoint in data.items():
        if not ENTITY_ID.fullmatch(entity_id):
            r.problems.append((f"{key}.{entity_id}", "ids are 1-64 letters, digits or _ . + -"))
        elif not isinstance(endpoint, str) or not ENDPOINT.fullmatch(endpoint) or "/" not in endpoint:
            r.problems.append((f"{key}.{entity_id}",
                               "must be a dial endpoint such as 'user/1001@acme.example.com'"))
        else:
            out.append((entity_id, endpoint))
    return tuple(sorted(out))


def parse_quickcall(r: Reader, data: Any, key: str) -> QuickcallConfig | None:
    """The account's quickcall table, or None without one (quickcall then finds nothing)."""
    if data is None:
        return None
    t = r.table(data, key, {"device", "user", "devices", "users"})
    return QuickcallConfig(
        device=_template(r, f"{key}.device", t.get("device")),
        user=_template(r, f"{key}.user", t.get("user")),
        devices=_table(r, f"{key}.devices", t.get("devices")),
        users=_table(r, f"{key}.users", t.get("users")),
    )
