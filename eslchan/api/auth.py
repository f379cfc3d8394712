"""Authentication and tenancy: API key -> signed token -> account, and who may see which account.

Tokens are signed with the configured key and carry their own issue time, so any replica with the
same configuration accepts them and nothing is stored. API keys are only ever compared as sha256
hashes, in constant time, against every account (no early exit that would time which one matched).

Failed ``api_auth`` attempts are counted per client address; past the configured rate the
address's wrong keys get 429 instead of 401. The right key always gets its token (many clients
may share an address behind a NAT, and one broken client must not lock the others out), and a
bad token on an ordinary request is a 401 that counts nothing. What keeps keys from being
guessed is their length (at least 16 characters), not this limit.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from flask import Blueprint, Response, current_app, g, request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from eslchan.api.envelope import MISSING, ApiError, field_error, json_body, respond, typed_field
from eslchan.config import Account, Config, hash_api_key

TOKEN_SALT = "eslchan.api.token.v1"


class TokenService:
    """Issues and checks stateless, expiring tokens bound to an account id."""

    def __init__(self, config: Config):
        self._config = config
        self._serializer = URLSafeTimedSerializer(config.auth.signing_key, salt=TOKEN_SALT)
        self._by_hash = [(acc.api_key_hash.encode(), acc) for acc in config.accounts]

    @property
    def ttl(self) -> float:
        return self._config.auth.token_ttl

    def account_for_key(self, api_key: str) -> Account | None:
        wanted = hash_api_key(api_key).encode()
        found: Account | None = None
        for stored, acc in self._by_hash:
            # compare against every account so the time taken never says which one matched
            if hmac.compare_digest(stored, wanted) and found is None:
                found = acc
        return found

    @staticmethod
    def _key_tag(account: Account) -> str:
        # binds a token to the key it was issued for: replacing an account's key revokes its tokens
        return hashlib.sha256(account.api_key_hash.encode()).hexdigest()[:16]

    def issue(self, account: Account) -> str:
        return self._serializer.dumps({"account_id": account.id, "key": self._key_tag(account)})

    def verify(self, token: str) -> Account | None:
        """The token's account, or None if it is forged, expired or its account is gone."""
        try:
            payload = self._serializer.loads(token, max_age=self.ttl)
        except (SignatureExpired, BadSignature):
            return None
        if not isinstance(payload, dict):
            return None
        account_id = payload.get("account_id")
        account = self._config.account(account_id) if isinstance(account_id, str) else None
        if account is None or not hmac.compare_digest(str(payload.get("key", "")), self._key_tag(account)):
            return None
        return account


class FailureLimiter:
    """Failed authentications per client address within a sliding minute."""

    def __init__(
        self,
        per_minute: int,
        *,
        window: float = 60.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.per_minute = per_minute
        self.window = window
        self.max_clients = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float] | None:
        times = self._failures.get(client)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        return times

    def retry_after(self, client: str) -> int | None:
        """Seconds until ``client`` may try again, or None when it is not limited."""
        if self.per_minute <= 0:
            return None
        with self._lock:
            now = self._clock()
            times = self._recent(client, now)
            if times is None or len(times) < self.per_minute:
                return None
            return max(1, int(times[0] + self.window - now + 0.999))

    def failed(self, client: str) -> None:
        with self._lock:
            now = self._clock()
            times = self._recent(client, now)
            if times is None:
                times = self._failures[client] = deque()
            times.append(now)
            while len(times) > max(1, self.per_minute):  # only the newest matter: bounded per client
                times.popleft()
            self._failures.move_to_end(client)
            while len(self._failures) > self.max_clients:  # bounded memory under address spraying
                self._failures.popitem(last=False)


@dataclass(frozen=True)
class Tenancy:
    """The account hierarchy of the configuration."""

    accounts: dict[str, Account]

    @classmethod
    def from_config(cls, config: Config) -> Tenancy:
        return cls({acc.id: acc for acc in config.accounts})

    def may_access(self, actor: Account, account_id: str) -> bool:
        """An account acts on itself and its descendants; a superduper admin on every account."""
        return actor.superduper_admin or self.within(account_id, actor.id)

    def within(self, account_id: str, root: str) -> bool:
        """True when ``account_id`` is ``root`` or one of its descendants (a parent cycle ends the walk)."""
        seen: set[str] = set()
        current: str | None = account_id
        while current is not None and current not in seen:
            if current == root:
                return True
            seen.add(current)
            acc = self.accounts.get(current)
            current = acc.parent if acc is not None else None
        return False


# --- request helpers -----------------------------------------------------------------------


def _client() -> str:
    return request.remote_addr or "unknown"


def _limited() -> ApiError | None:
    retry = current_app.extensions["eslchan"].limiter.retry_after(_client())
    if retry is None:
        return None
    return ApiError(429, data={"retry_after": retry}, headers={"Retry-After": str(retry)})


def presented_token() -> str | None:
    token = request.headers.get("X-Auth-Token")
    if token:
        return token.strip()
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def authenticate(fallback: str | None = None) -> Account:
    """The account of the request's token; 401 without a valid one (never 429: a bad token is
    no login attempt). ``fallback`` is a token from elsewhere in the request, used when no
    header carries one."""
    account = g.get("account")
    if account is not None:
        return account
    ext = current_app.extensions["eslchan"]
    token = presented_token()
    if token is None:
        token = fallback
    account = ext.tokens.verify(token) if token else None
    if account is None:
        raise ApiError(401, "invalid_credentials")
    g.account = account
    g.auth_token = token
    return account


def authorize(account_id: str) -> Account:
    """The caller, if it may act on ``account_id``; 403 ``forbidden`` otherwise."""
    actor = authenticate()
    if not current_app.extensions["eslchan"].tenancy.may_access(actor, account_id):
        raise ApiError(403, "forbidden", {"account_id": account_id})
    return actor


# --- PUT /v2/api_auth ------------------------------------------------------------------------

bp = Blueprint("auth", __name__)


@bp.route("/v2/api_auth", methods=["PUT"])
def api_auth() -> Response:
    data = typed_field(json_body().get("data"), "data", "object")
    api_key = data.get("api_key")
    if api_key is None:
        raise field_error("data.api_key", "required", MISSING)
    if not isinstance(api_key, str) or not api_key:
        raise field_error("data.api_key", "type", "Value must be a non-empty string")
    ext = current_app.extensions["eslchan"]
    account = ext.tokens.account_for_key(api_key)
    if account is None:
        limited = _limited()  # checked before counting: the answer says when to try again
        ext.limiter.failed(_client())
        if limited is not None:
            raise limited
        raise ApiError(401, "invalid_credentials")
    token = ext.tokens.issue(account)
    g.auth_token = token
    g.account = account
    return respond(
        {
            "account_id": account.id,
            "account_name": account.name,
            "superduper_admin": account.superduper_admin,
            "token_ttl": int(ext.tokens.ttl),
        },
        status=201,
    )
