"""The webhooks of one eslchan: which hooks exist, the registry listener that feeds them, the
writer that persists their events and one delivery worker per hook.

The listener runs inside the registry's ``apply()``, so it never blocks and never touches the
store: it looks the channel's account up in an in-memory index of the hooks that accept events
(with ``include_subaccounts`` hooks of its ancestors), takes the payload once, and appends it to
a bounded hand-off queue. A writer greenlet persists what the queue holds in one transaction per
batch, then wakes the workers concerned. An event is *accepted* once that transaction
committed: from then on neither a receiver outage nor a restart of eslchan loses it. On stop the
hand-off queue is written out first; a kill -9 loses only what the writer had not yet committed
(the events of the last few milliseconds). Overflow of the hand-off queue or of a hook's queue
(``max_pending_per_hook``) drops the event for that hook and counts it in the hook's
``dropped`` and in /metrics.

With a shared store (cluster mode) there is no registry listener: the instance that delivers
reads the cluster's stream and hands the events to :meth:`WebhookService.accept`, and the
workers run only while :meth:`WebhookService.deliver` says this instance delivers. Every instance
serves the API from the shared store, looking at its version before answering
(:meth:`WebhookService.refresh`).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import gevent
import gevent.lock
from gevent.event import Event as GEvent

from eslchan import jsoncodec
from eslchan.config import Account, WebhooksConfig
from eslchan.webhooks.delivery import HookWorker, Outcome, new_secret
from eslchan.webhooks.destinations import Destinations, Resolver
from eslchan.webhooks.payload import HOOK_EVENTS, channel_payload
from eslchan.webhooks.store import Attempt, Hook, SQLiteStore, WebhookStore

log = logging.getLogger("eslchan.webhooks")

#: deliveries the writer persists in one transaction at most
WRITE_BATCH = 2000


class TooManyHooks(Exception):
    """The account already has its maximum of hooks."""


def _payload_text(payload: dict[str, Any]) -> str:
    text = jsoncodec.dumps_canonical(payload)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a value with a lone surrogate: escape it rather than lose the event
            text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return text


class WebhookService:
    """Hooks, their queues and their workers; the API's only way to change a hook."""

    def __init__(
        self,
        config: WebhooksConfig,
        registry: Any | None,
        accounts: Iterable[Account],
        *,
        store: WebhookStore | None = None,
        resolver: Resolver | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.config = config
        self.registry = registry
        self.clock = clock
        self.destinations = Destinations(config, resolver)
        self.store: WebhookStore = store if store is not None else SQLiteStore(config.data_dir)
        self._hooks: dict[str, Hook] = {}
        self._parents: dict[str, str | None] = {}
        # hooks that accept events, by account; and those with include_subaccounts, by account
        self._by_account: dict[str, list[Hook]] = {}
        self._subaccount_hooks: dict[str, list[Hook]] = {}
        self._pending: dict[str, int] = {}
        self._handoff: deque[tuple[float, dict[str, Any], list[str]]] = deque()
        self._handoff_dropped: dict[str, int] = {}
        self._writer_wake = GEvent()
        self._writer: gevent.Greenlet | None = None
        self._workers: dict[str, HookWorker] = {}
        self._unlisten: Callable[[], None] | None = None
        self._changes = gevent.lock.Semaphore()
        self._closed = False
        #: the workers run (always with the embedded store; while ours to, with a shared one)
        self._delivering = registry is not None
        self._version: int | None = None
        self.stats = {
            "accepted": 0,
            "dropped_handoff": 0,
            "dropped_queue": 0,
            "dropped_store": 0,
            "delivered": 0,
            "failed_attempts": 0,
        }
        self.set_accounts(accounts)

    # -- life ------------------------------------------------------------------------------

    def start(self) -> None:
        """Load the hooks, resume their queues, and start listening to the registry."""
        if self.registry is None:
            try:
                self.refresh()
            except Exception as exc:  # the shared store's Redis: the next refresh loads them
                log.warning("webhooks: hooks not loaded yet: %s", exc)
            return
        self._load(counts=True)
        self._writer = gevent.spawn(self._write_loop)
        self._unlisten = self.registry.listen(self._on_event)
        pending = sum(self._pending.values())
        log.info("webhooks: %d hook(s), %d delivery(ies) pending, in %s", len(self._hooks), pending,
                 self.config.data_dir)  # fmt: skip

    def _load(self, *, counts: bool) -> None:
        """Take the hooks (with ``counts``, the queue lengths too) from the store; start, poke or
        stop the workers of the hooks that appeared, changed or went. ``counts`` only while no
        worker runs: a worker counts a delivery a moment before the store shows it."""
        version = self.store.version()
        fresh = {hook.id: hook for hook in self.store.load_hooks()}
        if counts:
            self._pending = self.store.pending_counts()
        before, self._hooks = self._hooks, fresh
        self._version = version
        self._reindex()
        for hook_id in [h for h in before if h not in fresh]:
            worker = self._workers.pop(hook_id, None)
            if worker is not None and worker.greenlet is not None:
                worker.greenlet.kill(block=False)
        for hook_id, hook in fresh.items():
            if before.get(hook_id) != hook:
                self._worker(hook_id)

    def refresh(self) -> None:
        """With a shared store: take the hooks again if another instance changed them, and
        the queue lengths unless this instance delivers (then it keeps them itself)."""
        version = self.store.version()
        if version is None:
            return
        if version != self._version:
            self._load(counts=False)
        if not self._delivering:
            pending = self.store.pending_counts()
            if not self._delivering:  # delivering began meanwhile, with counts of its own
                self._pending = pending

    def deliver(self, on: bool) -> None:
        """Start (with the hooks and queues as the store has them now) or stop the workers."""
        self._delivering = on
        if on:
            self._load(counts=True)
            for hook_id in self._hooks:
                self._worker(hook_id)
            return
        workers, self._workers = list(self._workers.values()), {}
        for worker in workers:
            if worker.greenlet is not None:
                worker.greenlet.kill(block=False)  # a request under way is sent again by the next

    def stop(self) -> None:
        """Stop listening, persist what the hand-off queue holds, stop the workers, close."""
        if self._closed:
            return
        self._closed = True
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        if self._writer is not None:
            self._writer.kill(block=True, timeout=5)
            self._writer = None
        try:
            self._flush()
        finally:
            for worker in list(self._workers.values()):
                worker.stop()
            self._workers.clear()
            self.store.close()

    def set_accounts(self, accounts: Iterable[Account]) -> None:
        """The configured accounts and their parents (a reload may change them)."""
        self._parents = {acc.id: acc.parent for acc in accounts}
        self._reindex()

    # -- the registry listener and the writer ----------------------------------------------

    def _targets(self, account: str, hook_event: str) -> list[str]:
        own = self._by_account.get(account)
        targets = [h.id for h in own if h.wants(hook_event)] if own else []
        seen = {account}
        parent = self._parents.get(account)
        while parent is not None and parent not in seen:
            above = self._subaccount_hooks.get(parent)
            if above:
                targets.extend(h.id for h in above if h.wants(hook_event))
            seen.add(parent)
            parent = self._parents.get(parent)
        return targets

    def _match(self, channel: Any, event: Mapping[str, str]) -> list[str]:
        """The hooks that take this event."""
        if not self._by_account:
            return []
        hook_event = HOOK_EVENTS.get(event.get("Event-Name", ""))
        if hook_event is None or channel is None or channel.account_id is None:
            return []
        return self._targets(channel.account_id, hook_event)

    def _on_event(self, node: str, channel: Any, event: Mapping[str, str]) -> None:
        """Registry listener: O(matching hooks), no I/O, never blocks."""
        targets = self._match(channel, event)
        if not targets:
            return
        if len(self._handoff) >= self.config.handoff_max:
            self.stats["dropped_handoff"] += len(targets)
            for hook_id in targets:
                self._handoff_dropped[hook_id] = self._handoff_dropped.get(hook_id, 0) + 1
            self._writer_wake.set()
            return
        now = self.clock()
        self._handoff.append((now, channel_payload(node, channel, event, now), targets))
        self._writer_wake.set()

    def _write_loop(self) -> None:
        while True:
            self._writer_wake.wait()
            self._writer_wake.clear()
            try:
                self._flush()
            except Exception:  # the writer must outlive a bad batch
                log.exception("webhooks: writing events failed")

    def _flush(self) -> None:
        while self._handoff or self._handoff_dropped:
            batch: list[tuple[float, dict[str, Any], list[str]]] = []
            rows = 0
            # bounded by deliveries, not events: one event for 100 hooks is 100 of them, and
            # the batch is prepared on the event loop
            while self._handoff and rows < WRITE_BATCH:
                item = self._handoff.popleft()
                batch.append(item)
                rows += len(item[2])
            self._persist(batch)

    def _select(self, batch: Sequence[tuple[float, dict[str, Any], list[str]]],
                dropped: dict[str, int]) -> tuple[list[tuple[float, str, list[str]]], list[str]]:
        """The events to write and the hooks they go to (one entry per delivery); what a full
        queue refuses is counted in ``dropped``. Changes nothing else."""
        events: list[tuple[float, str, list[str]]] = []
        counts: dict[str, int] = {}
        taken: list[str] = []
        for created, payload, targets in batch:
            hook_ids = []
            for hook_id in targets:
                if hook_id not in self._hooks:
                    continue  # deleted since
                queued = counts.get(hook_id, self._pending.get(hook_id, 0))
                if queued >= self.config.max_pending_per_hook:
                    dropped[hook_id] = dropped.get(hook_id, 0) + 1
                    continue
                hook_ids.append(hook_id)
                counts[hook_id] = queued + 1
            if hook_ids:
                events.append((created, _payload_text(payload), hook_ids))
                taken.extend(hook_ids)
        return events, taken

    def _persist(self, batch: list[tuple[float, dict[str, Any], list[str]]]) -> None:
        dropped, self._handoff_dropped = self._handoff_dropped, {}
        before = sum(dropped.values())
        events, taken = self._select(batch, dropped)
        self.stats["dropped_queue"] += sum(dropped.values()) - before
        if events:
            try:
                self.store.enqueue(events)
            except Exception:
                log.exception("webhooks: %d event(s) could not be stored and are dropped", len(taken))
                self.stats["dropped_store"] += len(taken)
                for hook_id in taken:
                    dropped[hook_id] = dropped.get(hook_id, 0) + 1
                taken = []
        self._accepted(taken, dropped)

    def accept(self, events: Sequence[tuple[float, str, Any, Mapping[str, str]]], cursor: int) -> None:
        """(created, node, channel, event) events read from a shared source up to ``cursor``,
        written with the cursor in one step. Raises when the store refused them: nothing is
        accepted, and whoever reads next starts again at the same place."""
        batch = []
        for created, node, channel, event in events:
            targets = self._match(channel, event)
            if targets:
                batch.append((created, channel_payload(node, channel, event, created), targets))
        dropped: dict[str, int] = {}
        written, taken = self._select(batch, dropped)
        self.store.enqueue(written, cursor)
        self.stats["dropped_queue"] += sum(dropped.values())
        self._accepted(taken, dropped)

    def _accepted(self, taken: list[str], dropped: dict[str, int]) -> None:
        """Count what was written (one entry per delivery) and what was dropped; wake the
        workers concerned."""
        self.stats["accepted"] += len(taken)
        for hook_id in taken:
            self._pending[hook_id] = self._pending.get(hook_id, 0) + 1
        for hook_id, count in dropped.items():
            hook = self._hooks.get(hook_id)
            if hook is not None:
                hook = replace(hook, dropped=hook.dropped + count)
                self._hooks[hook_id] = hook
                self.store.save_hook(hook)
        for hook_id in dict.fromkeys(taken):
            worker = self._workers.get(hook_id)
            if worker is not None:
                worker.queued()

    # -- what the workers need (delivery.WorkerHost) ---------------------------------------

    def hook(self, hook_id: str) -> Hook | None:
        return self._hooks.get(hook_id)

    def settle(self, hook: Hook) -> None:
        before = self._hooks.get(hook.id)
        if before is None:
            return
        self._hooks[hook.id] = hook
        if before.accepting != hook.accepting or before.enabled != hook.enabled:
            self._reindex()
        if hook.disable_reason and not before.disable_reason:
            log.warning(
                "webhook %s of account %s disabled: %s", hook.id, hook.account_id, hook.disable_reason,
                extra={"account_id": hook.account_id},
            )  # fmt: skip

    def counted(self, hook_id: str, outcome: Outcome) -> None:
        if outcome.ok:
            self.stats["delivered"] += 1
            if self._pending.get(hook_id):
                self._pending[hook_id] -= 1
        else:
            self.stats["failed_attempts"] += 1

    def _worker(self, hook_id: str) -> None:
        """Start the hook's worker if this instance delivers, and have it look at its hook again."""
        if not self._delivering:
            return
        worker = self._workers.get(hook_id)
        if worker is None:
            worker = self._workers[hook_id] = HookWorker(hook_id, self)
        worker.start()
        worker.poke()

    def _reindex(self) -> None:
        by_account: dict[str, list[Hook]] = {}
        subaccounts: dict[str, list[Hook]] = {}
        for hook in sorted(self._hooks.values(), key=lambda h: h.created):
            if not hook.accepting or hook.account_id not in self._parents:
                continue  # disabled by its tenant, or its account is no longer configured
            by_account.setdefault(hook.account_id, []).append(hook)
            if hook.include_subaccounts:
                subaccounts.setdefault(hook.account_id, []).append(hook)
        self._by_account, self._subaccount_hooks = by_account, subaccounts

    # -- what the API does -----------------------------------------------------------------

    def hooks_of(self, account_id: str) -> list[Hook]:
        own = (h for h in self._hooks.values() if h.account_id == account_id)
        return sorted(own, key=lambda h: h.created)

    def get(self, account_id: str, hook_id: str) -> Hook | None:
        """The account's hook; None for an unknown id and for another account's hook alike."""
        hook = self._hooks.get(hook_id)
        return hook if hook is not None and hook.account_id == account_id else None

    def pending(self, hook_id: str) -> int:
        return self._pending.get(hook_id, 0)

    def pending_total(self) -> int:
        return sum(self._pending.values())

    def auto_disabled(self) -> int:
        return sum(1 for h in self._hooks.values() if h.auto_disabled)

    def create(self, account_id: str, fields: Mapping[str, Any]) -> Hook:
        """A new hook from validated ``fields``; raises TooManyHooks past the account's bound."""
        with self._changes:  # the count and the insert together, or two requests pass the bound
            if len(self.hooks_of(account_id)) >= self.config.max_hooks_per_account:
                raise TooManyHooks(self.config.max_hooks_per_account)
            now = self.clock()
            hook = Hook(
                id=uuid.uuid4().hex,
                account_id=account_id,
                secret=new_secret(),
                created=now,
                modified=now,
                **fields,
            )
            self.store.save_hook(hook)
            self._hooks[hook.id] = hook
        self._reindex()
        self._worker(hook.id)
        return hook

    def update(self, hook: Hook, fields: Mapping[str, Any], *, rotate_secret: bool = False) -> Hook:
        """``hook`` with validated ``fields`` changed. Enabling a disabled hook clears its failures
        and resumes its queue; the tenant disabling it stops new events from being queued."""
        current = self._hooks.get(hook.id)
        if current is None:
            raise KeyError(hook.id)
        changed = replace(current, **fields, modified=self.clock())
        if "enabled" in fields:
            if fields["enabled"] and not current.enabled:
                changed = replace(changed, failures=0, disable_reason=None)
            elif not fields["enabled"]:
                changed = replace(changed, disable_reason=None)
        if rotate_secret:
            changed = replace(changed, secret=new_secret())
        self._hooks[hook.id] = changed
        self._reindex()
        self.store.save_hook(changed)
        self._worker(hook.id)  # a new uri or a re-enable: try again now
        return changed

    def delete(self, hook: Hook) -> None:
        self._hooks.pop(hook.id, None)
        self._reindex()
        worker = self._workers.pop(hook.id, None)
        if worker is not None and worker.greenlet is not None:
            worker.greenlet.kill(block=False)  # a request under way is abandoned with the hook
        self.store.delete_hook(hook.id)
        self._pending.pop(hook.id, None)

    def re_enable(self, account_ids: Iterable[str]) -> list[Hook]:
        """Enable again the accounts' hooks that eslchan disabled, as enabling each one does; a
        hook its tenant disabled stays disabled."""
        stopped = [h.id for account in account_ids for h in self.hooks_of(account) if h.auto_disabled]
        enabled = []
        for hook_id in stopped:
            hook = self._hooks.get(hook_id)  # each update yields to the store: look again
            if hook is not None and hook.auto_disabled:
                enabled.append(self.update(hook, {"enabled": True}))
        return enabled

    def attempts(self, hook: Hook, limit: int | None = None) -> list[Attempt]:
        return self.store.attempts([hook.id], limit or self.config.attempts_kept)

    def account_attempts(self, account_id: str, limit: int | None = None) -> list[Attempt]:
        """The latest attempts of all the account's hooks, newest first: as many as one hook's."""
        hook_ids = [h.id for h in self.hooks_of(account_id)]
        return self.store.attempts(hook_ids, limit or self.config.attempts_kept)
