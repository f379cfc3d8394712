"""Metaflow runs across the cluster: recorded in Redis, counted against cluster-wide limits,
stopped from any instance, and never left as ghosts.

A run executes on the instance that started it (its commands go through that instance's
command link to the node, its waits are fed by that instance's mirror). What others need of it
is in Redis:

- ``run:<id>``: the run as the API shows it, written when it starts, as it moves through its
  tree (at most every ``FLUSH_SECONDS``) and when it ends; a run that is over expires after
  ``[metaflow] finished_runs_seconds``;
- ``runs:account:<A>`` and ``runs:channel:<uuid>``: the runs of an account and of a channel
  (sorted by start), trimmed to ``finished_runs_per_account`` (plus the running ones);
- ``runs:live:<instance>``: the runs still running on an instance, and ``runs:instances``
  the instances that have had some.

Limits: a run takes a slot in its channel's and its account's slot sets
(``max_runs_per_channel``, ``max_runs``) in one script; the executing instance keeps its
slots alive every round, so the slots of a dead instance's runs lapse by themselves.

A stop asked on another instance is published to the executing instance's control channel;
the asker then waits for the run's record to show it over. An instance that finds another
one's presence expired marks its running runs ``failed`` ("instance X stopped"), once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import gevent
from gevent.event import Event as GEvent

from eslchan.cluster.store import Store
from eslchan.policy import LimitExceeded

log = logging.getLogger("eslchan.cluster")

#: how often a run's progress is written at most
FLUSH_SECONDS = 0.1
#: how long a stop asked of another instance may take to show in the run's record
STOP_WAIT_SECONDS = 5.0


class RemoteRun:
    """A run another instance executes (or executed), as its record in Redis shows it."""

    def __init__(self, data: dict[str, Any]):
        self.data = data
        self.id: str = data["id"]
        self.channel_uuid: str = data.get("channel", "")
        self.node: str = data.get("node", "")
        self.account_id: str | None = data.get("account_id")
        self.state: str = data.get("state", "")
        self.started: float = float(data.get("started") or 0)
        self.instance: str | None = data.get("instance")

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.data.items() if k != "account_id"}


class ChannelMemory(MutableMapping):
    """What the runs on one channel share (a recording's path, a parked peer), in a Redis hash
    so runs on other instances see it. Read whole when a run asks for it; each change is
    written through at once (values are JSON)."""

    def __init__(self, store: Store, node: str, uuid: str, ttl: int):
        self._store = store
        self._key = store.keys.channel_memory(node, uuid)
        self._ttl = ttl
        raw = store.redis.hgetall(self._key)
        self._data = {k.decode(): json.loads(v) for k, v in raw.items()}

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = value
        pipe = self._store.redis.pipeline(transaction=False)
        pipe.hset(self._key, key, json.dumps(value))
        pipe.expire(self._key, self._ttl)
        pipe.execute()

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self._store.redis.hdel(self._key, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


class ClusterRuns:
    """The interpreter's book of runs in cluster mode (see the module's docstring)."""

    def __init__(self, store: Store, *, is_live: Callable[[str], bool], live_known: Callable[[], bool],
                 keep_seconds: Callable[[], float], per_account: Callable[[], int]) -> None:
        self.store = store
        self.keys = store.keys
        self.instance = store.instance
        self.is_live = is_live
        self.live_known = live_known  # the last membership round worked: is_live can be trusted
        self.keep_seconds = keep_seconds
        self.per_account = per_account
        self.slot_ttl_ms = int(store.config.lease_seconds * 3 * 1000)
        self._local: dict[str, Any] = {}  # running here: id -> Run
        self._dirty: set[str] = set()
        self._ended: dict[str, Any] = {}  # over, record not yet written
        self._flusher: gevent.Greenlet | None = None
        self._wake = GEvent()
        self.stop_local: Callable[[str, str | None], bool] | None = None  # set by the interpreter's owner
        self.reaped = 0

    def start(self) -> None:
        self.reap(self.instance)  # what a former process of this name left running
        if self._flusher is None:
            self._flusher = gevent.spawn(self._flush_loop)

    def close(self) -> None:
        """Write what is left to write and stop writing."""
        self.flush()
        if self._flusher is not None:
            self._flusher.kill(block=True, timeout=2)
            self._flusher = None

    # -- the interpreter's side ------------------------------------------------------------

    def admit(self, run: Any) -> None:
        """Take the run's slots in its channel and its account; LimitExceeded when full."""
        policy = run.policy
        keys = [self.keys.slots("runs-channel", f"{run.node}:{run.channel_uuid}")]
        limits = [policy.max_runs_per_channel]
        if run.account_id is not None:
            keys.append(self.keys.slots("runs-account", run.account_id))
            limits.append(policy.max_runs)
        full = int(self.store.take_slots_script(keys=keys, args=[run.id, self.slot_ttl_ms, *limits]))
        if full == 1:
            raise LimitExceeded("max_runs_per_channel", policy.max_runs_per_channel,
                                "the channel already has its most metaflow runs in the cluster")
        if full == 2:
            raise LimitExceeded("max_runs", policy.max_runs,
                                "the account already has its most metaflow runs in the cluster")
        run.instance = self.instance
        self._write(run, first=True)  # Redis failing here refuses the run: it would be nowhere
        self._local[run.id] = run

    def changed(self, run: Any) -> None:
        if run.id in self._local:
            self._dirty.add(run.id)
            self._wake.set()

    def ended(self, run: Any) -> None:
        if self._local.pop(run.id, None) is None:
            return
        self._dirty.discard(run.id)
        self._ended[run.id] = run
        self._wake.set()

    def runs_of_channel(self, uuid: str) -> list[RemoteRun]:
        return self._runs_in(self.keys.channel_runs(uuid))

    def runs_of_account(self, account_id: str) -> list[RemoteRun]:
        return self._runs_in(self.keys.account_runs(account_id))

    def get(self, run_id: str) -> RemoteRun | None:
        raw = self.store.redis.get(self.keys.run(run_id))
        return RemoteRun(json.loads(raw)) if raw else None

    def stop_run(self, run_id: str) -> RemoteRun | None:
        """Ask the run's instance to stop it; the run as it is once over (or after waiting)."""
        run = self.get(run_id)
        if run is None or run.state != "running":
            return run
        if run.instance and not self.is_live(run.instance) and self.live_known():
            self.reap(run.instance)
            return self.get(run_id)
        self.store.redis.publish(self.keys.control(run.instance or ""),
                                 json.dumps({"kind": "stop", "run": run_id}))
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        while time.monotonic() < deadline:
            gevent.sleep(0.05)
            now = self.get(run_id)
            if now is None or now.state != "running":
                return now
        return self.get(run_id)

    def channel_memory(self, node: str, uuid: str) -> ChannelMemory:
        return ChannelMemory(self.store, node, uuid, ttl=86400)

    def forget_channels(self, channels: list[tuple[str, str]]) -> None:
        """The channels are gone: what their runs shared goes too (UNLINK: freed in the
        background by Redis)."""
        for at in range(0, len(channels), 1000):
            self.store.redis.unlink(*(self.keys.channel_memory(n, u) for n, u in channels[at:at + 1000]))

    def recording_stopped(self, node: str, uuid: str, path: str | None) -> None:
        """FreeSWITCH stopped a recording by itself: it is no longer 'on' for any run."""
        memory = self.channel_memory(node, uuid)
        if path and memory.get("recording") == path:
            memory.pop("recording", None)
            memory.pop("masked", None)

    # -- writing ---------------------------------------------------------------------------

    def _record(self, run: Any) -> dict[str, Any]:
        data = run.as_dict()
        data["account_id"] = run.account_id
        data["instance"] = self.instance
        return data

    def _write(self, run: Any, *, first: bool = False) -> None:
        data = self._record(run)
        k = self.keys
        pipe = self.store.redis.pipeline(transaction=False)
        over = run.state != "running"
        keep = max(1, int(self.keep_seconds()))
        pipe.set(k.run(run.id), json.dumps(data, default=str), ex=keep if over else None)
        if first:
            pipe.sadd(k.run_instances, self.instance)
            pipe.sadd(k.live_runs(self.instance), run.id)
            for index in self._indexes(run):
                pipe.zadd(index, {run.id: run.started})
        if over:
            pipe.srem(k.live_runs(self.instance), run.id)
            pipe.zrem(k.slots("runs-channel", f"{run.node}:{run.channel_uuid}"), run.id)
            if run.account_id is not None:
                pipe.zrem(k.slots("runs-account", run.account_id), run.id)
            for index in self._indexes(run):
                pipe.zremrangebyrank(index, 0, -(self.per_account() + 1))  # newest kept
                pipe.expire(index, keep)
        pipe.execute()

    def _indexes(self, run: Any) -> list[str]:
        out = [self.keys.channel_runs(run.channel_uuid)]
        if run.account_id is not None:
            out.append(self.keys.account_runs(run.account_id))
        return out

    def flush(self) -> None:
        for run_id in list(self._dirty):
            self._dirty.discard(run_id)
            run = self._local.get(run_id)
            if run is not None:
                self._write(run)
        for run_id, run in list(self._ended.items()):
            self._write(run)
            self._ended.pop(run_id, None)

    def _flush_loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            try:
                self.flush()
            except self.store.errors as exc:
                log.warning("cluster: writing runs failed: %s", exc)
                gevent.sleep(0.5)
                self._wake.set()
            except Exception:
                log.exception("cluster: writing runs failed")
            gevent.sleep(FLUSH_SECONDS)

    def keep_slots(self) -> None:
        """Keep the slots of the runs running here from lapsing (every round)."""
        if not self._local:
            return
        keys: list[str] = []
        args: list[Any] = [self.slot_ttl_ms]
        for run in self._local.values():
            for key in (self.keys.slots("runs-channel", f"{run.node}:{run.channel_uuid}"),
                        *([self.keys.slots("runs-account", run.account_id)] if run.account_id else [])):
                keys.append(key)
                args += (len(keys), run.id)
        self.store.keep_slots_script(keys=keys, args=args)

    # -- reading ---------------------------------------------------------------------------

    def _runs_in(self, index: str) -> list[RemoteRun]:
        ids = self.store.redis.zrevrange(index, 0, -1)
        if not ids:
            return []
        raws = self.store.redis.mget([self.keys.run(i.decode()) for i in ids])
        gone = [i for i, raw in zip(ids, raws, strict=False) if raw is None]
        if gone:
            self.store.redis.zrem(index, *gone)
        return [RemoteRun(json.loads(raw)) for raw in raws if raw is not None]

    # -- ghosts ----------------------------------------------------------------------------

    def reap_dead(self) -> None:
        """Mark the running runs of every instance whose presence expired as failed."""
        if not self.live_known():
            return
        for raw in self.store.redis.smembers(self.keys.run_instances):
            name = raw.decode()
            if name != self.instance and not self.is_live(name):
                self.reap(name)

    def reap(self, instance: str) -> None:
        """``instance`` is gone: its runs still marked running end as failed, saying so."""
        k = self.keys
        ids = [i.decode() for i in self.store.redis.smembers(k.live_runs(instance))]
        for run_id in ids:
            if run_id in self._local:
                continue  # this process's own
            raw = self.store.redis.get(k.run(run_id))
            if raw:
                data = json.loads(raw)
                if data.get("state") == "running":
                    now = time.time()
                    data.update(state="failed", ended=now, waiting=False,
                                error=f"instance {instance} stopped while the run was running")
                    for step in data.get("trail") or []:
                        if step.get("outcome") is None:
                            step.update(outcome="failed", ended=now)
                    self.store.redis.set(k.run(run_id), json.dumps(data), ex=max(1, int(self.keep_seconds())))
                    self.reaped += 1
                    log.warning("cluster: run %s failed: instance %s stopped", run_id, instance)
            self.store.redis.srem(k.live_runs(instance), run_id)
        if instance != self.instance:
            self.store.redis.srem(k.run_instances, instance)

    def local_runs(self) -> list[Any]:
        return list(self._local.values())

    def taken_for_dead(self) -> list[str]:
        """Runs running here that another instance marked failed: it took this instance for
        dead (Redis did not hear from it for longer than the lease). They must end here too."""
        ids = list(self._local)
        if not ids:
            return []
        present = self.store.redis.smismember(self.keys.live_runs(self.instance), ids)
        return [run_id for run_id, there in zip(ids, present, strict=False) if not there]

    def wake_stop(self, run_id: str, reason: str | None = None) -> None:
        """A stop asked by another instance for a run of ours."""
        if self.stop_local is not None and run_id in self._local:
            gevent.spawn(self.stop_local, run_id, reason)
