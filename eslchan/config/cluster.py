"""``[cluster]``: several eslchan instances sharing their nodes and state through Redis.

No ``[cluster]`` table: the embedded single process (nothing is shared, nothing is imported
from the cluster package). With one, ``redis_url`` and ``instance`` are required.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from eslchan.config.reader import Reader

INSTANCE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
KEY_PREFIX = re.compile(r"^[A-Za-z0-9_.:{}-]{1,64}$")
#: what an event header name may be to be carried in the shared stream
HEADER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,127}$")


@dataclass(frozen=True)
class ClusterConfig:
    #: redis://[:password@]host:port/db (or rediss:// for TLS); a Valkey server speaks the same
    redis_url: str
    #: this instance's name, unique in the cluster (it owns node leases under it)
    instance: str
    #: every key eslchan writes starts with it: several clusters can share one Redis
    key_prefix: str = "eslchan:"
    #: a node's lease lasts this long unless renewed (every lease_seconds / 4): a dead
    #: instance's nodes are taken over about this long after it died
    lease_seconds: float = 5.0
    #: channel changes kept in the shared stream (approximately: Redis trims in whole
    #: blocks); a mirror or an event-stream client further behind starts again from the
    #: snapshots (event: reset)
    stream_max_len: int = 100_000
    #: channel changes an owner may hold while Redis is slow or unreachable; past it the
    #: node's state is published again whole once Redis answers
    publish_buffer_max: int = 100_000
    #: seconds a Redis command may take before it counts as failed
    redis_timeout: float = 2.0
    #: event headers carried in the shared stream besides those eslchan's modules and
    #: webhooks read (for metaflow modules of your own that wait on other headers)
    event_headers: tuple[str, ...] = ()


def parse_cluster(r: Reader, data: Any) -> ClusterConfig | None:
    if data is None:
        return None
    t = r.table(
        data,
        "cluster",
        {"redis_url", "redis_url_env", "instance", "key_prefix", "lease_seconds", "stream_max_len",
         "publish_buffer_max", "redis_timeout", "event_headers"},
    )
    url = r.secret(t, "cluster", "redis_url", None)  # it may hold Redis's password
    if url is None:
        r.problems.append(("cluster.redis_url", "required (or redis_url_env)"))
        url = ""
    elif not url.startswith(("redis://", "rediss://", "unix://", "\0")):
        r.problems.append(("cluster.redis_url", "must be a redis://, rediss:// or unix:// URL"))
    instance = r.get(t, "cluster", "instance", str, "")
    if not INSTANCE_NAME.fullmatch(instance):
        r.problems.append(("cluster.instance", "required: letters, digits, _ . - (1-64)"))
    prefix = r.get(t, "cluster", "key_prefix", str, ClusterConfig.key_prefix)
    if not KEY_PREFIX.fullmatch(prefix):
        r.problems.append(("cluster.key_prefix", "1-64 letters, digits or _ . : { } -"))
    lease = r.positive(t, "cluster", "lease_seconds", ClusterConfig.lease_seconds)
    if lease < 0.5:
        r.problems.append(("cluster.lease_seconds", "must be at least 0.5"))
        lease = ClusterConfig.lease_seconds
    headers = r.get(t, "cluster", "event_headers", list, [])
    if not all(isinstance(h, str) and HEADER_NAME.fullmatch(h) for h in headers):
        r.problems.append(("cluster.event_headers", "must be a list of event header names"))
        headers = []
    timeout = r.positive(t, "cluster", "redis_timeout", ClusterConfig.redis_timeout)
    return ClusterConfig(
        redis_url=url,
        instance=instance,
        key_prefix=prefix,
        lease_seconds=lease,
        stream_max_len=r.positive(t, "cluster", "stream_max_len", ClusterConfig.stream_max_len, int),
        publish_buffer_max=r.positive(t, "cluster", "publish_buffer_max",
                                      ClusterConfig.publish_buffer_max, int),
        redis_timeout=timeout,
        event_headers=tuple(headers),
    )
