"""``[auth]``: token signing and the limit on failed authentications."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eslchan.config.reader import MISSING_SECRET, Reader


@dataclass(frozen=True)
class AuthConfig:
    signing_key: str = "change-me"
    token_ttl: float = 3600.0
    failed_auth_per_minute: int = 10


def parse_auth(r: Reader, data: Any) -> AuthConfig:
    a = r.table(
        data,
        "auth",
        {"signing_key", "signing_key_env", "token_ttl", "failed_auth_per_minute"},
    )
    auth = AuthConfig(
        signing_key=r.secret(a, "auth", "signing_key", None) or "",
        token_ttl=r.positive(a, "auth", "token_ttl", AuthConfig.token_ttl),
        failed_auth_per_minute=r.get(a, "auth", "failed_auth_per_minute", int, 10),
    )
    if auth.signing_key != MISSING_SECRET and len(auth.signing_key) < 16:
        r.problems.append(("auth.signing_key", "must be set, at least 16 characters"))
    return auth
