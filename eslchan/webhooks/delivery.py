"""Delivering a hook's queue: one ordered worker per hook, signed requests, retries, auto-disable.

A worker takes its hook's oldest delivery and does not move to the next before that one is
delivered, so a receiver sees the events of a hook in the order they happened. A failed attempt
is retried after a delay that doubles with each failed attempt in a row (from
``backoff_initial`` up to ``backoff_max``, with ``backoff_jitter`` of randomness so hooks of one
dead receiver do not retry in step). ``1 + retries`` failed attempts make one failed delivery;
``disable_after`` failed deliveries in a row disable the hook (``disable_reason`` says why). The
event stays queued through all of this: it is sent once the hook is re-enabled. A delivery is
removed only once the receiver answered 2xx, so an eslchan stopped mid-request sends it again
after its restart: receivers see each event at least once and deduplicate by ``webhook-id``.

Requests follow the Standard Webhooks signature scheme: ``webhook-id`` (stable across retries),
``webhook-timestamp`` (Unix seconds of this attempt) and ``webhook-signature: v1,<base64
HMAC-SHA256(key, "<id>.<timestamp>.<content>")>``, where the key is the hook's ``whsec_`` secret
base64-decoded and the content is the body of a POST or the whole query string of a GET. A receiver
that checks the signature and refuses timestamps more than a few minutes old rejects forgeries
and replays.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import logging
import random
import secrets
import socket
import ssl
import time
from dataclasses import dataclass, replace
from typing import Any, Protocol
from urllib.parse import quote

import gevent
from gevent.event import Event as GEvent

from eslchan import __version__
from eslchan.config import WebhooksConfig
from eslchan.webhooks.destinations import DestinationError, Destinations, Target, parse_uri
from eslchan.webhooks.payload import for_hook
from eslchan.webhooks.store import Attempt, Delivery, Hook, WebhookStore

log = logging.getLogger("eslchan.webhooks")

SECRET_PREFIX = "whsec_"
USER_AGENT = f"eslchan-webhooks/{__version__}"
#: deliveries a worker reads from the store at a time
BATCH = 32
#: bytes of a receiver's answer read (and dropped): enough to see its status, never a flood
_ANSWER_BYTES = 4096


def new_secret() -> str:
    """A fresh hook secret in the Standard Webhooks form: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, msg_id: str, timestamp: int, content: bytes) -> str:
    """The ``webhook-signature`` value of ``content`` sent as ``msg_id`` at ``timestamp``."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def query_string(payload: dict[str, Any]) -> str:
    """A payload as a GET query, as Kazoo sends it: nested objects as ``outer[inner]=value``,
    null fields left out, booleans as true/false."""
    pairs: list[str] = []

    def add(key: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, dict):
            for sub, item in value.items():
                add(f"{key}[{sub}]", item)
            return
        if isinstance(value, bool):
            value = "true" if value else "false"
        pairs.append(f"{quote(key, safe='[]')}={quote(str(value), safe='')}")

    for key, value in payload.items():
        add(key, value)
    return "&".join(pairs)


def delivery_id(delivery: Delivery) -> str:
    return f"{delivery.hook_id}-{delivery.seq}"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None


def build_request(
    hook: Hook, delivery: Delivery, payload: dict[str, Any], target: Target, now: float
) -> Request:
    """The signed HTTP request of one attempt of ``delivery`` (whose decoded payload is given)."""
    payload = for_hook(payload, hook.custom_data)
    msg_id = delivery_id(delivery)
    timestamp = int(now)
    headers = {"User-Agent": USER_AGENT, "webhook-id": msg_id, "webhook-timestamp": str(timestamp)}
    if hook.http_verb == "get":
        path, _, own = target.path.partition("?")
        query = f"{own}&{query_string(payload)}" if own else query_string(payload)
        # the whole query string is signed, the URI's own parameters included: it is what the
        # receiver sees
        headers["webhook-signature"] = sign(hook.secret, msg_id, timestamp, query.encode())
        return Request("GET", f"{path}?{query}", headers, None)
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers["Content-Type"] = "application/json"
    headers["webhook-signature"] = sign(hook.secret, msg_id, timestamp, body)
    return Request("POST", target.path, headers, body)


class _PinnedHTTP(http.client.HTTPConnection):
    """HTTP to ``host`` (Host header), connected to the checked ``address`` and nothing else."""

    def __init__(self, host: str, port: int, address: str, timeout: float, **kw: Any):
        super().__init__(host, port, timeout=timeout, **kw)
        # http.client opens its socket through this attribute: pin it to the checked address so
        # a second DNS answer cannot redirect the connection (TLS still checks ``host``)
        self._create_connection = lambda _addr, timeout, source=None: socket.create_connection(
            (address, port), timeout, source
        )


class _PinnedHTTPS(_PinnedHTTP, http.client.HTTPSConnection):
    """HTTPS as above: SNI and the certificate check use the URI's host name."""


_TLS: dict[str, ssl.SSLContext] = {}


def tls_context(config: WebhooksConfig) -> ssl.SSLContext:
    key = str(config.ca_file or "")
    context = _TLS.get(key)
    if context is None:
        context = ssl.create_default_context()
        if config.ca_file is not None:
            context.load_verify_locations(cafile=str(config.ca_file))
        _TLS[key] = context
    return context


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status: int | None
    error: str | None
    latency_ms: float


def send(target: Target, address: str, request: Request, config: WebhooksConfig) -> Outcome:
    """One HTTP exchange with the receiver, bounded by ``config.timeout`` as a whole; redirects
    are not followed (a 3xx is a failure), as they could lead anywhere."""
    started = time.perf_counter()
    if target.scheme == "https":
        conn: http.client.HTTPConnection = _PinnedHTTPS(
            target.host, target.port, address, config.timeout, context=tls_context(config)
        )
    else:
        conn = _PinnedHTTP(target.host, target.port, address, config.timeout)
    status: int | None = None
    error: str | None = None
    try:
        with gevent.Timeout(config.timeout):
            conn.request(request.method, request.path, body=request.body, headers=request.headers)
            answer = conn.getresponse()
            status = answer.status
            answer.read(_ANSWER_BYTES)
    except gevent.Timeout:
        error = f"no answer within {config.timeout:g} s"
    except ssl.SSLError as exc:
        error = f"TLS: {exc.reason or exc}"
    except (OSError, http.client.HTTPException) as exc:
        error = _describe(exc)
    finally:
        conn.close()
    latency = (time.perf_counter() - started) * 1e3
    if status is not None and not 200 <= status < 300:
        error = f"HTTP {status}"
    return Outcome(error is None, status, error, round(latency, 2))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text = str(exc) or type(exc).__name__
    return text[:200]


class WorkerHost(Protocol):
    """What a worker needs from the service that runs it."""

    config: WebhooksConfig
    store: WebhookStore
    destinations: Destinations

    def hook(self, hook_id: str) -> Hook | None: ...

    def settle(self, hook: Hook) -> None:
        """Make ``hook`` the hook's current state (the caller persists it)."""

    def counted(self, hook_id: str, outcome: Outcome) -> None: ...


def backoff(config: WebhooksConfig, failed_in_a_row: int) -> float:
    """Seconds to wait after the ``failed_in_a_row``-th failed attempt in a row (1, 2, ...)."""
    delay = min(config.backoff_max, config.backoff_initial * 2 ** min(failed_in_a_row - 1, 60))
    return delay * (1 + random.uniform(-config.backoff_jitter, config.backoff_jitter))


class HookWorker:
    """Delivers one hook's queue, oldest first, in a greenlet of its own."""

    def __init__(self, hook_id: str, host: WorkerHost):
        self.hook_id = hook_id
        self.host = host
        #: the hook was edited, re-enabled or deleted: ends any wait, a retry delay included
        self.changed = GEvent()
        #: new events were queued: ends the wait of an idle worker, never a retry delay (a dead
        #: receiver is not hammered at the rate events come in)
        self.arrived = GEvent()
        self.greenlet: gevent.Greenlet | None = None
        #: failed attempts of the current delivery since it last counted a failed delivery
        self._round = 0

    def start(self) -> None:
        if self.greenlet is None or self.greenlet.dead:
            self.greenlet = gevent.spawn(self._run)

    def poke(self) -> None:
        """The hook changed (edited, re-enabled, deleted): look again now."""
        self.changed.set()
        self.arrived.set()

    def queued(self) -> None:
        """New events wait in the hook's queue."""
        self.arrived.set()

    def _idle(self, timeout: float | None = None) -> None:
        gevent.wait([self.changed, self.arrived], timeout=timeout, count=1)

    def stop(self) -> None:
        if self.greenlet is not None:
            self.greenlet.kill(block=True, timeout=5)

    def _run(self) -> None:
        host = self.host
        while True:
            self.changed.clear()  # before looking, so a poke from now on is not missed
            self.arrived.clear()
            hook = host.hook(self.hook_id)
            if hook is None:
                return  # deleted
            try:
                batch = host.store.pending(self.hook_id, 0, BATCH) if hook.enabled else []
                if not batch:
                    self._idle()
                    continue
                for delivery in batch:
                    if not self._deliver(delivery):
                        break
            except Exception:  # a store error must not end the hook's deliveries for good
                log.exception("webhook %s: delivery failed; trying again later", self.hook_id)
                self._idle(host.config.backoff_max)

    def _deliver(self, delivery: Delivery) -> bool:
        """Attempt ``delivery`` until it is delivered (True) or the hook is disabled or deleted."""
        host = self.host
        keep = host.config.attempts_kept
        payload = json.loads(delivery.payload)
        while True:
            self.changed.clear()  # before reading the hook: an edit from now on ends the wait below
            hook = host.hook(self.hook_id)
            if hook is None or not hook.enabled:
                return False
            outcome = self._attempt(hook, delivery, payload)
            host.counted(self.hook_id, outcome)
            hook = host.hook(self.hook_id)  # it may have changed during the request
            if hook is None:
                return False
            if outcome.ok:
                entry = self._entry(delivery, payload, outcome, hook.retries - self._round)
                self._round = 0
                if hook.failures:
                    hook = replace(hook, failures=0)
                    host.settle(hook)
                host.store.log_attempt(entry, hook, keep)
                return True
            self._round += 1
            entry = self._entry(delivery, payload, outcome, hook.retries - self._round)
            if self._round > hook.retries:  # the round is over: one more failed delivery
                self._round = 0
                failures = hook.failures + 1
                if failures >= host.config.disable_after and hook.enabled:
                    reason = f"{failures} failed deliveries in a row; last: {outcome.error}"
                    hook = replace(hook, failures=failures, enabled=False, disable_reason=reason)
                else:
                    hook = replace(hook, failures=failures)
                host.settle(hook)
            host.store.log_attempt(entry, hook, keep)
            if not hook.enabled:
                return False
            failed_in_a_row = max(1, hook.failures * (hook.retries + 1) + self._round)
            self.changed.wait(backoff(host.config, failed_in_a_row))  # cut short by an edit only

    def _attempt(self, hook: Hook, delivery: Delivery, payload: dict[str, Any]) -> Outcome:
        host = self.host
        started = time.perf_counter()
        try:
            target = parse_uri(hook.uri, host.config)
            address = host.destinations.address(target)  # checked again now: DNS may have changed
        except DestinationError as exc:
            latency = round((time.perf_counter() - started) * 1e3, 2)
            return Outcome(False, None, f"forbidden destination: {exc}", latency)
        request = build_request(hook, delivery, payload, target, time.time())
        return send(target, address, request, host.config)

    @staticmethod
    def _entry(delivery: Delivery, payload: dict[str, Any], outcome: Outcome, retries_left: int) -> Attempt:
        return Attempt(
            hook_id=delivery.hook_id,
            seq=delivery.seq,
            at=time.time(),
            ok=outcome.ok,
            status=outcome.status,
            latency_ms=outcome.latency_ms,
            error=outcome.error,
            retries_left=max(0, retries_left),
            hook_event=payload.get("hook_event"),
            call_id=payload.get("call_id"),
        )
