"""Limits counted across the cluster: failed logins per client address, event streams per
account. Each is one Redis script that checks and counts at once, on Redis's clock.

Failed logins lapse after the limiter's window; a stream's slot lapses unless its instance
keeps it (every lease round), so a dead instance's streams stop counting within
``3 * lease_seconds``. When Redis cannot be reached the instance falls back to counting alone
(failed logins) or lets the stream open on its own cap (streams): a Redis outage must not lock
tenants out.
"""

from __future__ import annotations

import logging
from typing import Any

from eslchan.cluster.store import Store

log = logging.getLogger("eslchan.cluster")


class ClusterFailureLimiter:
    """The API's failed-login limiter, with counts shared by every instance."""

    def __init__(self, store: Store, per_minute: int, local: Any, *, window: float = 60.0):
        self.store = store
        self.per_minute = per_minute
        self.window = window
        self.local = local  # the process's own limiter: used when Redis does not answer

    def _ask(self, client: str, fail: bool) -> tuple[int, int] | None:
        try:
            count, left_ms = self.store.failures_script(
                keys=[self.store.keys.failures(client)],
                args=[int(self.window * 1000), max(1, self.per_minute), "fail" if fail else "check"])
        except self.store.errors as exc:
            log.warning("cluster: failed-login count unavailable (counting locally): %s", exc)
            return None
        return int(count), int(left_ms)

    def retry_after(self, client: str) -> int | None:
        if self.per_minute <= 0:
            return None
        answer = self._ask(client, fail=False)
        if answer is None:
            self.local.per_minute = self.per_minute
            return self.local.retry_after(client)
        count, left_ms = answer
        if count < self.per_minute:
            return None
        return max(1, int(left_ms / 1000 + 0.999))

    def failed(self, client: str) -> None:
        if self._ask(client, fail=True) is None:
            self.local.failed(client)


class StreamSlots:
    """Event streams held per account, across the instances."""

    def __init__(self, store: Store):
        self.store = store
        self.ttl_ms = int(store.config.lease_seconds * 3 * 1000)
        self.held: dict[str, str] = {}  # member -> account

    def take(self, account_id: str, member: str, limit: int) -> bool | None:
        """True when the account had a free slot (now taken), False when full, None when
        Redis cannot tell."""
        key = self.store.keys.slots("streams", account_id)
        try:
            full = int(self.store.take_slots_script(keys=[key], args=[member, self.ttl_ms, limit]))
        except self.store.errors as exc:
            log.warning("cluster: stream count unavailable: %s", exc)
            return None
        if full:
            return False
        self.held[member] = account_id
        return True

    def release(self, member: str) -> None:
        account_id = self.held.pop(member, None)
        if account_id is None:
            return
        try:
            self.store.redis.zrem(self.store.keys.slots("streams", account_id), member)
        except self.store.errors:
            pass  # it lapses by itself

    def keep(self) -> None:
        if not self.held:
            return
        keys: list[str] = []
        args: list[Any] = [self.ttl_ms]
        for member, account_id in self.held.items():
            keys.append(self.store.keys.slots("streams", account_id))
            args += (len(keys), member)
        self.store.keep_slots_script(keys=keys, args=args)
