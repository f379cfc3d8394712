"""The cluster's Redis: the connections, every key name (under one prefix) and the Lua scripts
(those of the shared webhooks are in webhooks.py, beside the store they serve).

eslchan leans on Redis's own guarantees rather than on any consensus of its own: one primary
serialises every command, and a Lua script runs whole, with nothing in between. So every write
that must not be made by a stale owner (a node's channel changes) is a script that first
checks the node's lease still names the writer, and every count shared by the instances (run
and stream slots, failed logins) is a script that checks and counts in one step, with Redis's
clock (``TIME``) so the instances' clocks never have to agree.

Retries: redis-py retries a command on a lost connection (twice, with a short backoff); a
script that publishes is idempotent (it carries the batch's number and a repeat is a no-op),
so a reply lost on the way back never duplicates a change.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from typing import Any

from eslchan.config import ClusterConfig

log = logging.getLogger("eslchan.cluster")

#: the stream entry's one field: the record (see publish.py)
RECORD_FIELD = b"r"
#: the snapshot hash field that holds the node's own state (link down or synced)
NODE_FIELD = "~node"

# KEYS: lease, seq, stream, snapshot, batch marker. ARGV: owner value, maxlen, batch id,
# then (op, field, record) triples: op "s" sets the snapshot field, "d" deletes it, "m" sets
# it and deletes another ("new|old": a renamed channel), "n" none. Returns the last sequence
# number written, -1 when the lease is not the writer's, -2 when the batch was written before.
_PUBLISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if redis.call('GET', KEYS[5]) == ARGV[3] then return -2 end
local count = (#ARGV - 3) / 3
local last = redis.call('INCRBY', KEYS[2], count)
local first = last - count + 1
for i = 0, count - 1 do
  local op, field, record = ARGV[4 + 3 * i], ARGV[5 + 3 * i], ARGV[6 + 3 * i]
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], (first + i) .. '-0', 'r', record)
  if op == 's' then redis.call('HSET', KEYS[4], field, record)
  elseif op == 'd' then redis.call('HDEL', KEYS[4], field)
  elseif op == 'm' then
    local bar = string.find(field, '|', 1, true)
    redis.call('HDEL', KEYS[4], string.sub(field, bar + 1))
    redis.call('HSET', KEYS[4], string.sub(field, 1, bar - 1), record)
  end
end
redis.call('SET', KEYS[5], ARGV[3])
return last
"""

# The same, replacing the node's whole snapshot first (an owner that had to drop changes
# publishes its node again whole). KEYS as above; ARGV: owner value, maxlen, batch number,
# the reload record, then (field, record) pairs of the snapshot.
_RELOAD = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
redis.call('DEL', KEYS[4])
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1]) end
local last = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], last .. '-0', 'r', ARGV[4])
redis.call('SET', KEYS[5], ARGV[3])
return last
"""

# KEYS: seq, epoch, then each node's snapshot; ARGV: an epoch to set if there is none yet.
# Returns {seq, epoch, snapshot1, ...}: all at the same point of the stream.
_SNAPSHOT = """
redis.call('SET', KEYS[2], ARGV[1], 'NX')
local out = {tonumber(redis.call('GET', KEYS[1]) or '0'), redis.call('GET', KEYS[2]) or ''}
for i = 3, #KEYS do out[#out + 1] = redis.call('HGETALL', KEYS[i]) end
return out
"""

# KEYS: lease, fence. ARGV: instance, ms. Returns the new fencing token, 0 when taken.
_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. token, 'PX', ARGV[2])
return token
"""

# KEYS: lease. ARGV: value, ms. 1 when renewed, 0 when it is no longer the caller's.
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS: lease. ARGV: value. 1 when released, 0 when it was no longer the caller's.
_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""

# KEYS: members, this member's info, then the nodes' leases, then their wants.
# ARGV: instance, ttl ms, info, node count, then (node index, lease value) of the leases the
# caller holds, renewed here when they still hold its value. Returns {now ms, live members
# (flat name, expiry pairs), leases..., wants..., lease ms left..., renewed (1/0 per pair)...}:
# one round trip per round, so an instance busy with a burst of events still renews in time.
_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('SET', KEYS[2], ARGV[3], 'PX', ttl)
local n = tonumber(ARGV[4])
local renewed = {}
for i = 5, #ARGV, 2 do
  local key = KEYS[2 + tonumber(ARGV[i])]
  if redis.call('GET', key) == ARGV[i + 1] then
    redis.call('PEXPIRE', key, ttl)
    renewed[#renewed + 1] = 1
  else
    renewed[#renewed + 1] = 0
  end
end
local out = {now, redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf', 'WITHSCORES')}
for i = 3, 2 + 2 * n do out[#out + 1] = redis.call('GET', KEYS[i]) or false end
for i = 3, 2 + n do out[#out + 1] = redis.call('PTTL', KEYS[i]) end
for _, r in ipairs(renewed) do out[#out + 1] = r end
return out
"""

# KEYS: the slot sets. ARGV: member, ttl ms, then one limit per key. Returns 0 when the
# member took a slot in every set, else the 1-based index of the first full set.
_TAKE_SLOTS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZSCORE', key, ARGV[1]) == false and redis.call('ZCARD', key) >= tonumber(ARGV[2 + i]) then
    return i
  end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', key, ARGV[2])
end
return 0
"""

# KEYS: slot sets; ARGV: ttl ms, then (key index, member) pairs whose slots are kept.
_KEEP_SLOTS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  local key = KEYS[tonumber(ARGV[i])]
  redis.call('ZADD', key, 'XX', now + ttl, ARGV[i + 1])
  redis.call('PEXPIRE', key, ttl)
end
return 1
"""

# KEYS: the client's failures. ARGV: window ms, limit, "fail" to count one. Returns
# {failures in the window, ms until the oldest leaves it}.
_FAILURES = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if ARGV[3] == 'fail' then
  redis.call('ZADD', KEYS[1], now, now .. '.' .. t[2] .. '.' .. redis.call('ZCARD', KEYS[1]))
  local extra = redis.call('ZCARD', KEYS[1]) - math.max(1, limit)
  if extra > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, extra - 1) end
  redis.call('PEXPIRE', KEYS[1], window)
end
local count = redis.call('ZCARD', KEYS[1])
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local left = 0
if oldest[2] then left = tonumber(oldest[2]) + window - now end
return {count, left}
"""


class Keys:
    """Every key eslchan writes, under the configured prefix."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.epoch = f"{prefix}epoch"
        self.seq = f"{prefix}seq"
        self.stream = f"{prefix}changes"
        self.members = f"{prefix}members"
        self.run_instances = f"{prefix}runs:instances"

    def snapshot(self, node: str) -> str:
        return f"{self.prefix}snap:{node}"

    def batch(self, node: str) -> str:
        return f"{self.prefix}batch:{node}"

    def lease(self, node: str) -> str:
        return f"{self.prefix}lease:{node}"

    def fence(self, node: str) -> str:
        return f"{self.prefix}fence:{node}"

    def want(self, node: str) -> str:
        return f"{self.prefix}want:{node}"

    def member(self, instance: str) -> str:
        return f"{self.prefix}member:{instance}"

    def control(self, instance: str) -> str:
        """The pub/sub channel an instance hears requests on (stop a run, a variable set)."""
        return f"{self.prefix}ctl:{instance}"

    def run(self, run_id: str) -> str:
        return f"{self.prefix}run:{run_id}"

    def account_runs(self, account_id: str) -> str:
        return f"{self.prefix}runs:account:{account_id}"

    def channel_runs(self, uuid: str) -> str:
        return f"{self.prefix}runs:channel:{uuid}"

    def live_runs(self, instance: str) -> str:
        return f"{self.prefix}runs:live:{instance}"

    def slots(self, kind: str, key: str) -> str:
        return f"{self.prefix}slots:{kind}:{key}"

    def failures(self, client: str) -> str:
        return f"{self.prefix}fails:{client}"

    def channel_memory(self, node: str, uuid: str) -> str:
        return f"{self.prefix}chmem:{node}:{uuid}"

    def webhooks(self, name: str) -> str:
        """The shared webhooks' keys (see webhooks.py): ``hooks``, ``events``, ``lease``, ...,
        and per hook ``q:<id>`` (its queue), ``tries:<id>``, ``log:<id>``."""
        return f"{self.prefix}wh:{name}"


class Store:
    """The Redis connections of one instance and its scripts.

    ``redis`` serves every short command; ``blocking`` is a connection of its own for the
    mirror's ``XREAD BLOCK`` (a blocked read must not hold a connection others wait for)."""

    def __init__(self, config: ClusterConfig, *, client: Any = None):
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        self.config = config
        self.keys = Keys(config.key_prefix)
        self.errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self.instance = config.instance
        timeout = config.redis_timeout

        def connect(socket_timeout: float) -> Any:
            return redis.Redis.from_url(
                config.redis_url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=timeout,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
                retry_on_error=[redis.ConnectionError, redis.TimeoutError],
                health_check_interval=30,
                client_name=f"eslchan-{config.instance}",
            )

        self.redis = client if client is not None else connect(timeout)
        self.blocking = connect(timeout + self.block_seconds)
        self.publish_script = self.redis.register_script(_PUBLISH)
        self.reload_script = self.redis.register_script(_RELOAD)
        self.snapshot_script = self.redis.register_script(_SNAPSHOT)
        self.acquire_script = self.redis.register_script(_ACQUIRE)
        self.renew_script = self.redis.register_script(_RENEW)
        self.release_script = self.redis.register_script(_RELEASE)
        self.heartbeat_script = self.redis.register_script(_HEARTBEAT)
        self.take_slots_script = self.redis.register_script(_TAKE_SLOTS)
        self.keep_slots_script = self.redis.register_script(_KEEP_SLOTS)
        self.failures_script = self.redis.register_script(_FAILURES)

    #: how long one XREAD blocks when nothing comes (also how often a mirror hears Redis)
    @property
    def block_seconds(self) -> float:
        return min(1.0, self.config.lease_seconds / 4)

    # -- publishing ------------------------------------------------------------------------

    def publish(self, node: str, owner: str, batch: str, items: Sequence[tuple[str, str, bytes]]) -> int:
        """Append ``items`` (op, snapshot field, record) to the stream and the node's snapshot
        if ``owner`` (``instance|token``) still holds the node's lease. Returns the last
        sequence number, -1 when the lease is lost, -2 when this batch was already written
        (``batch`` is unique: the owner value and a count)."""
        args: list[Any] = [owner, self.config.stream_max_len, batch]
        for op, field, record in items:
            args += (op, field, record)
        k = self.keys
        return int(self.publish_script(
            keys=[k.lease(node), k.seq, k.stream, k.snapshot(node), k.batch(node)], args=args))

    def reload(self, node: str, owner: str, batch: str, record: bytes,
               snapshot: Sequence[tuple[str, bytes]]) -> int:
        """Replace the node's snapshot whole and append ``record`` (fenced as publish)."""
        args: list[Any] = [owner, self.config.stream_max_len, batch, record]
        for field, value in snapshot:
            args += (field, value)
        k = self.keys
        return int(self.reload_script(
            keys=[k.lease(node), k.seq, k.stream, k.snapshot(node), k.batch(node)], args=args))

    def snapshots(self, nodes: Sequence[str]) -> tuple[int, str, dict[str, dict[bytes, bytes]]]:
        """Every node's snapshot and the stream position they all match, read at once."""
        k = self.keys
        out = self.snapshot_script(keys=[k.seq, k.epoch, *(k.snapshot(n) for n in nodes)],
                                   args=[secrets.token_hex(4)])
        seq, epoch = int(out[0]), out[1].decode() if isinstance(out[1], bytes) else str(out[1])
        snaps: dict[str, dict[bytes, bytes]] = {}
        for node, flat in zip(nodes, out[2:], strict=False):
            snaps[node] = dict(zip(flat[::2], flat[1::2], strict=False))
        return seq, epoch, snaps
