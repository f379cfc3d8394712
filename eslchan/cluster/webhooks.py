"""Webhooks in cluster mode: hooks, queues and the attempts log in the cluster's Redis, and one
instance at a time delivering them.

Every instance with a ``[webhooks]`` table serves the webhooks API from the shared store:
a hook created on one is read, changed and deleted on any other. Hook changes bump a version
counter that each instance compares before answering a webhooks request, and the delivering
instance before each batch it feeds (a counter, not pub/sub, so a missed message cannot leave an
instance behind).

**Who delivers**: the instance holding the webhooks lease (``wh:lease``, taken and renewed
like a node's lease, with a fencing token per acquisition). Only it runs the delivery workers,
and every write it makes to the queues (accepting events, marking one delivered, logging an
attempt) is a script that first checks the lease still holds its value: a deliverer whose lease
lapsed (stalled, cut off) has its writes refused and steps down on its own clock before Redis
can give the lease to another.

**Who enqueues**: the deliverer too, from the cluster's stream rather than from a node's owner.
The stream already holds every node's channel events, numbered one after the other, whichever
instance owns the node; the deliverer reads it after a cursor (``wh:cursor``) and writes the
deliveries of a batch and the cursor past it in one fenced script. So an event is accepted
exactly once cluster-wide: a node changing owner changes nothing here, and a new deliverer
resumes at the cursor, so the events published while none was delivering (or while the last
one was dying) are accepted then, as long as the stream still holds them (``stream_max_len``).
Deliveries are at least once: a request under way when the deliverer dies is sent again by the
next one, with the same ``webhook-id``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, astuple, fields
from typing import Any

import gevent
from gevent.event import Event as GEvent

from eslchan.cluster.mirror import READ_COUNT, channel_event, decode, seq_of
from eslchan.cluster.store import RECORD_FIELD, Store
from eslchan.webhooks.service import WebhookService
from eslchan.webhooks.store import Attempt, Delivery, Hook, StoreError

log = logging.getLogger("eslchan.webhooks")

#: a hook's fields kept apart from the rest: the delivery state the deliverer writes with each
#: attempt, so that it never overwrites a tenant's concurrent edit of the others
_STATE = ("enabled", "disable_reason", "failures", "dropped")
_FIELDS = tuple(f.name for f in fields(Hook))
#: how long a deleted hook's id is refused by save_hook (a deliverer that has not seen the
#: deletion yet must not bring it back with a counter update)
_TOMBSTONE_SECONDS = 86_400

# One delivery fewer of event ``seq``; an event no hook waits for any more goes.
# KEYS (of the caller): events, times, refs at indexes E, E + 1, E + 2.
_RELEASE = """
local function release(e, seq)
  if redis.call('HINCRBY', KEYS[e + 2], seq, -1) <= 0 then
    redis.call('HDEL', KEYS[e + 2], seq)
    redis.call('HDEL', KEYS[e], seq)
    redis.call('HDEL', KEYS[e + 1], seq)
  end
end
"""

# KEYS: lease, cursor, event seq, events, times, refs, hooks, then each hook's queue.
# ARGV: fence, cursor ('' for none), hook count, the hook ids, then per event: created,
# payload, target count, target indexes (1-based, into the hook ids). -1: not the lease
# holder's; -2: the cursor was passed already (a retry of a batch written); else events stored.
_ENQUEUE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if ARGV[2] ~= '' and tonumber(ARGV[2]) <= tonumber(redis.call('GET', KEYS[2]) or '-1') then
  return -2
end
local n = tonumber(ARGV[3])
local live = {}
for h = 1, n do live[h] = redis.call('HEXISTS', KEYS[7], ARGV[3 + h]) == 1 end
local i, stored = 4 + n, 0
while i <= #ARGV do
  local count = tonumber(ARGV[i + 2])
  local targets = {}
  for j = 1, count do
    local h = tonumber(ARGV[i + 2 + j])
    if live[h] then targets[#targets + 1] = h end
  end
  if #targets > 0 then
    local id = redis.call('INCR', KEYS[3])
    redis.call('HSET', KEYS[4], id, ARGV[i + 1])
    redis.call('HSET', KEYS[5], id, ARGV[i])
    redis.call('HSET', KEYS[6], id, #targets)
    for _, h in ipairs(targets) do redis.call('ZADD', KEYS[7 + h], id, id) end
    stored = stored + 1
  end
  i = i + 3 + count
end
if ARGV[2] ~= '' then redis.call('SET', KEYS[2], ARGV[2]) end
return stored
"""

# KEYS: queue, events, times, tries. ARGV: after, limit. Flat (seq, created, payload, tries).
_PENDING = """
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'LIMIT', 0, ARGV[2])) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[3], id) or '0'
  out[#out + 1] = redis.call('HGET', KEYS[2], id) or ''
  out[#out + 1] = redis.call('HGET', KEYS[4], id) or '0'
end
return out
"""

# KEYS: lease, hooks, states, queue, tries, log, events, times, refs, attempt seq, version.
# ARGV: fence, hook id, seq, ok (1/0), attempt, keep, the hook's state. -1: not the lease
# holder's (nothing written); 0: the hook is gone; 1: written.
_LOG = _RELEASE + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then return 0 end
local seq = ARGV[3]
if ARGV[4] == '1' then
  if redis.call('ZREM', KEYS[4], seq) == 1 then
    redis.call('HDEL', KEYS[5], seq)
    release(7, seq)
  end
elseif redis.call('ZSCORE', KEYS[4], seq) then
  redis.call('HINCRBY', KEYS[5], seq, 1)
end
if redis.call('HGET', KEYS[3], ARGV[2]) ~= ARGV[7] then
  redis.call('HSET', KEYS[3], ARGV[2], ARGV[7])
  redis.call('INCR', KEYS[11])
end
redis.call('LPUSH', KEYS[6], redis.call('INCR', KEYS[10]) .. ' ' .. ARGV[5])
redis.call('LTRIM', KEYS[6], 0, tonumber(ARGV[6]) - 1)
return 1
"""

# KEYS: hooks, states, queue, tries, log, events, times, refs, version, tombstone. ARGV: id, ttl s.
_DELETE = _RELEASE + """
for _, seq in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do release(6, seq) end
redis.call('DEL', KEYS[3], KEYS[4], KEYS[5])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('SET', KEYS[10], 1, 'EX', ARGV[2])
return redis.call('INCR', KEYS[9])
"""

# KEYS: hooks, states, version, tombstone. ARGV: id, fields, state. 0: the hook was deleted.
_SAVE = """
if redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return redis.call('INCR', KEYS[3])
"""


class StaleDeliverer(StoreError):
    """A write to the queues from an instance that no longer holds the webhooks lease."""


def _state(hook: Hook) -> str:
    return json.dumps([getattr(hook, name) for name in _STATE])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisWebhookStore:
    """:class:`~eslchan.webhooks.store.WebhookStore` in the cluster's Redis.

    Events are one hash entry each (payload, time, and how many hooks still wait for them); a
    hook's queue is a sorted set of event numbers, so it is ordered and a delivery is removed
    in one step. ``fence`` is the webhooks lease value while this instance holds it: the queue
    writes (``enqueue``, ``log_attempt``) carry it and are refused without it."""

    shared = True

    def __init__(self, store: Store) -> None:
        self.redis = store.redis
        self.errors = store.errors
        self.k = store.keys.webhooks
        self.fence: str | None = None
        register = self.redis.register_script
        self._enqueue, self._pending = register(_ENQUEUE), register(_PENDING)
        self._log, self._delete, self._save = register(_LOG), register(_DELETE), register(_SAVE)

    def _hook_keys(self, hook_id: str) -> list[str]:
        k = self.k
        return [k(f"q:{hook_id}"), k(f"tries:{hook_id}"), k(f"log:{hook_id}")]

    def _event_keys(self) -> list[str]:
        return [self.k("events"), self.k("times"), self.k("refs")]

    def _fence(self) -> str:
        if self.fence is None:
            raise StaleDeliverer("this instance does not hold the webhooks lease")
        return self.fence

    # -- hooks -----------------------------------------------------------------------------

    def version(self) -> int | None:
        try:
            return int(self.redis.get(self.k("version")) or 0)
        except self.errors as exc:  # the API answers 503 rather than serve hooks it cannot check
            raise StoreError(f"the cluster's Redis does not answer: {exc}") from None

    def load_hooks(self) -> list[Hook]:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hgetall(self.k("hooks"))
        pipe.hgetall(self.k("states"))
        docs, states = pipe.execute()
        hooks = []
        for raw_id, doc in docs.items():
            values = json.loads(doc)
            state = states.get(raw_id)
            if state is not None:
                values.update(zip(_STATE, json.loads(state), strict=True))
            hooks.append(Hook(**{name: values[name] for name in _FIELDS if name in values}))
        return sorted(hooks, key=lambda h: h.created)

    def save_hook(self, hook: Hook) -> None:
        doc = {name: value for name, value in asdict(hook).items() if name not in _STATE}
        k = self.k
        self._save(keys=[k("hooks"), k("states"), k("version"), k(f"gone:{hook.id}")],
                   args=[hook.id, json.dumps(doc), _state(hook)])

    def delete_hook(self, hook_id: str) -> None:
        k = self.k
        self._delete(keys=[k("hooks"), k("states"), *self._hook_keys(hook_id), *self._event_keys(),
                           k("version"), k(f"gone:{hook_id}")],
                     args=[hook_id, _TOMBSTONE_SECONDS])

    # -- the queue -------------------------------------------------------------------------

    def enqueue(self, events: Sequence[tuple[float, str, Sequence[str]]], cursor: int | None = None) -> None:
        fence = self._fence()
        index: dict[str, int] = {}
        args: list[Any] = []
        for created, payload, hook_ids in events:
            targets = [index.setdefault(h, len(index) + 1) for h in hook_ids]
            args += (repr(created), payload, len(targets), *targets)
        if not args and cursor is None:
            return
        k = self.k
        done = self._enqueue(
            keys=[k("lease"), k("cursor"), k("seq"), *self._event_keys(), k("hooks"),
                  *(k(f"q:{h}") for h in index)],
            args=[fence, "" if cursor is None else cursor, len(index), *index, *args])
        if done == -1:
            raise StaleDeliverer("the webhooks lease is no longer this instance's: events not accepted")

    def pending_counts(self) -> dict[str, int]:
        ids = [_text(h) for h in self.redis.hkeys(self.k("hooks"))]
        pipe = self.redis.pipeline(transaction=False)
        for hook_id in ids:
            pipe.zcard(self.k(f"q:{hook_id}"))
        return {h: n for h, n in zip(ids, pipe.execute(), strict=True) if n}

    def pending(self, hook_id: str, after: int, limit: int) -> list[Delivery]:
        events, times, _ = self._event_keys()
        flat = self._pending(keys=[self.k(f"q:{hook_id}"), events, times, self.k(f"tries:{hook_id}")],
                             args=[after, limit])
        return [Delivery(int(flat[i]), hook_id, float(flat[i + 1]), _text(flat[i + 2]), int(flat[i + 3]))
                for i in range(0, len(flat), 4)]

    def cursor(self) -> int | None:
        """How far the cluster's stream has been accepted (None: never read)."""
        raw = self.redis.get(self.k("cursor"))
        return None if raw is None else int(raw)

    # -- attempts --------------------------------------------------------------------------

    def log_attempt(self, attempt: Attempt, hook: Hook, keep: int) -> None:
        fence = self._fence()
        k = self.k
        queue, tries, log_key = self._hook_keys(attempt.hook_id)
        done = self._log(
            keys=[k("lease"), k("hooks"), k("states"), queue, tries, log_key, *self._event_keys(),
                  k("attempt_seq"), k("version")],
            args=[fence, attempt.hook_id, attempt.seq, int(attempt.ok), json.dumps(astuple(attempt)), keep,
                  _state(hook)])
        if done == -1:
            raise StaleDeliverer("the webhooks lease is no longer this instance's: attempt not recorded")

    def attempts(self, hook_ids: Sequence[str], limit: int) -> list[Attempt]:
        pipe = self.redis.pipeline(transaction=False)
        for hook_id in hook_ids:
            pipe.lrange(self.k(f"log:{hook_id}"), 0, limit - 1)
        numbered = []
        for entries in pipe.execute():
            for raw in entries:
                number, _, doc = _text(raw).partition(" ")
                numbered.append((int(number), doc))
        numbered.sort(reverse=True)
        return [Attempt(*json.loads(doc)) for _, doc in numbered[:limit]]

    def close(self) -> None:
        """The connection is the cluster's: nothing of its own to close."""


class WebhookDeliverer:
    """This instance's side of who delivers: the webhooks lease, and while it is ours the
    workers (``service.deliver``) and the feed from the cluster's stream into the queues."""

    def __init__(self, cluster_store: Store, service: WebhookService, store: RedisWebhookStore,
                 wake_on: Any) -> None:
        self.cluster_store = cluster_store
        self.service = service
        self.store = store
        self.instance = cluster_store.instance
        self.lease_seconds = cluster_store.config.lease_seconds
        self.interval = self.lease_seconds / 4
        self.margin = self.lease_seconds / 10
        self.value: str | None = None  # our lease value while we deliver
        self.valid_until = 0.0  # monotonic
        #: the instance delivering, as the last round saw it
        self.holder: str | None = None
        self.stats = {"takeovers": 0, "fed": 0, "lost_in_stream": 0}
        self._wake = GEvent()
        wake_on.listen(lambda *_: self._wake.set())  # the mirror heard records: read the stream
        self._loops: list[gevent.Greenlet] = []
        self._feeder: gevent.Greenlet | None = None

    def start(self) -> None:
        if not self._loops:
            self._loops = [gevent.spawn(self._lease_loop), gevent.spawn(self._expiry_loop)]

    def stop(self) -> None:
        """Stop delivering and give the lease up at once, for the others."""
        gevent.killall(self._loops, block=True, timeout=2)
        self._loops = []
        value = self.value
        self._step_down("instance stopping")
        if value is not None:
            try:
                self.cluster_store.release_script(keys=[self.store.k("lease")], args=[value])
            except self.cluster_store.errors as exc:
                log.warning("webhooks: releasing the lease failed (it expires by itself): %s", exc)

    @property
    def delivering(self) -> bool:
        return self.value is not None

    # -- the lease -------------------------------------------------------------------------

    def _lease_loop(self) -> None:
        while True:
            try:
                self.round()
            except self.cluster_store.errors as exc:
                log.debug("webhooks: lease round failed: %s", exc)
            except Exception:
                log.exception("webhooks: lease round failed")
            gevent.sleep(self.interval)

    def _expiry_loop(self) -> None:
        while True:
            gevent.sleep(self.margin / 4)  # well within the margin: never past Redis's expiry
            if self.value is not None and time.monotonic() >= self.valid_until:
                log.warning("webhooks: the lease was not renewed in time; no longer delivering")
                self._step_down("lease not renewed in time")

    def round(self) -> None:
        """Renew the lease if ours, else take it if free; note who holds it."""
        s, key, ms = self.cluster_store, self.store.k("lease"), int(self.lease_seconds * 1000)
        sent = time.monotonic()
        if self.value is not None:
            if s.renew_script(keys=[key], args=[self.value, ms]):
                self.valid_until = sent + self.lease_seconds - self.margin
                self.holder = self.instance
                return
            log.warning("webhooks: the lease is no longer ours; no longer delivering")
            self._step_down("lease lost")
        token = int(s.acquire_script(keys=[key, self.store.k("fence")], args=[self.instance, ms]))
        if not token:
            self.holder = _text(s.redis.get(key) or b"").partition("|")[0] or None
            return
        self.valid_until = sent + self.lease_seconds - self.margin
        self._take_over(f"{self.instance}|{token}")

    def _take_over(self, value: str) -> None:
        s = self.cluster_store
        # the stream's numbers went back (Redis lost data): accept from where it is now
        last = int(s.redis.get(s.keys.seq) or 0)
        cursor = self.store.cursor()
        if cursor is not None and cursor > last:
            log.warning("webhooks: the stream restarted at %d (was %d); reading from there", last, cursor)
            s.redis.set(self.store.k("cursor"), last)
        self.value = self.store.fence = value
        self.holder = self.instance
        self.stats["takeovers"] += 1
        log.info("webhooks: delivering from this instance (lease %s)", value)
        try:
            self.service.deliver(True)  # the queue lengths read before anything is fed
        except Exception:
            self._step_down("the hooks could not be loaded")  # the lease lapses for the next one
            raise
        self._feeder = gevent.spawn(self._feed_loop, value)

    def _step_down(self, reason: str) -> None:
        if self.value is None:
            return
        self.value = self.store.fence = None  # from now on our queue writes are not even sent
        if self.holder == self.instance:
            self.holder = None
        if self._feeder is not None:
            self._feeder.kill(block=False)
            self._feeder = None
        self.service.deliver(False)
        log.info("webhooks: no longer delivering: %s", reason)

    # -- feeding the queues from the stream ------------------------------------------------

    def _feed_loop(self, value: str) -> None:
        backoff = 0.1
        while self.value == value:
            try:
                if not self.feed():
                    # records arrive, or every quarter second hook changes are looked at (a
                    # re-enable or a new uri made on another instance is acted on promptly)
                    self._wake.wait(min(self.interval, 0.25))
                    self._wake.clear()
                backoff = 0.1
            except StaleDeliverer:
                return  # the expiry or the next round steps down
            except Exception as exc:
                log.warning("webhooks: reading the stream failed: %s; retrying", exc)
                gevent.sleep(backoff)
                backoff = min(1.0, backoff * 2)

    def feed(self) -> bool:
        """Accept the channel events of the next stream records after the cursor; False when
        there were none."""
        s = self.cluster_store
        self.service.refresh()  # a hook created just before these events takes them
        cursor = self.store.cursor()
        if cursor is None:  # the first deliverer ever: from now on, not the stream's history
            cursor = int(s.redis.get(s.keys.seq) or 0)
            self.service.accept([], cursor)
            return False
        entries = s.redis.xrange(s.keys.stream, min=f"{cursor + 1}-0", max="+", count=READ_COUNT // 4)
        if not entries:
            return False
        first = seq_of(entries[0][0])
        if first != cursor + 1:
            lost = first - cursor - 1
            self.stats["lost_in_stream"] += lost
            log.error("webhooks: %d stream record(s) were trimmed before they were read (no deliverer "
                      "for longer than stream_max_len covers); their events are not delivered", lost)
        events = []
        for entry_id, record_fields in entries:
            record = decode(record_fields[RECORD_FIELD])
            event = channel_event(seq_of(entry_id), record)
            if event is not None:
                events.append((float(record[4]), *event))
        self.service.accept(events, seq_of(entries[-1][0]))
        self.stats["fed"] += len(events)
        return True
