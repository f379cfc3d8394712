"""What every webhooks store does, the embedded SQLite one and the cluster's Redis one alike (a
real redis-server): events stored once and gone with their last delivery, ordered queues, the
attempts log bounded per hook. Then what only the shared store does: fencing and the cursor."""

from __future__ import annotations

import sqlite3

import pytest

from eslchan.cluster.store import Store
from eslchan.cluster.webhooks import RedisWebhookStore, StaleDeliverer
from eslchan.config import ClusterConfig
from eslchan.demo import ACME
from eslchan.webhooks import Hook, SQLiteStore
from eslchan.webhooks.store import Attempt

pytestmark = pytest.mark.timeout(60)


class SQLiteCase:
    def __init__(self, tmp_path, _redis_url):
        self.path = tmp_path
        self.store = SQLiteStore(tmp_path)

    def events(self) -> int:
        with sqlite3.connect(self.path / "webhooks.sqlite3") as db:
            return db.execute("SELECT COUNT(*) FROM events").fetchone()[0]


class RedisCase:
    def __init__(self, _tmp_path, redis_url):
        self.cluster = Store(ClusterConfig(redis_url=redis_url, instance="one", lease_seconds=5.0))
        self.store = RedisWebhookStore(self.cluster)
        self.store.fence = take_lease(self.cluster, self.store, "one")

    def events(self) -> int:
        return int(self.cluster.redis.hlen(self.store.k("events")))


def take_lease(cluster: Store, store: RedisWebhookStore, instance: str) -> str:
    token = cluster.acquire_script(keys=[store.k("lease"), store.k("fence")], args=[instance, 5000])
    assert token
    return f"{instance}|{token}"


@pytest.fixture(params=["sqlite", "redis"])
def case(request, tmp_path):
    if request.param == "sqlite":
        c = SQLiteCase(tmp_path, None)
    else:
        c = RedisCase(tmp_path, request.getfixturevalue("redis_url"))
    yield c
    c.store.close()


def hook(c: str) -> Hook:
    return Hook(id=c * 32, account_id=ACME, name="h", uri="http://192.0.2.1/", hook="all",
                custom_data={"crm": "17"}, created=float(ord(c)))


def ok(hook_id: str, seq: int, at: float) -> Attempt:
    return Attempt(hook_id, seq, at, True, 200, 1.0, None, 0, "channel_create", "call-1")


def test_hooks_are_saved_loaded_and_deleted(case):
    store = case.store
    one, two = hook("a"), hook("b")
    store.save_hook(one)
    store.save_hook(two)
    store.save_hook(Hook(**{**one.__dict__, "name": "renamed", "failures": 2, "dropped": 3}))
    loaded = store.load_hooks()
    assert [h.id for h in loaded] == [one.id, two.id]  # by creation
    assert loaded[0].name == "renamed" and loaded[0].failures == 2 and loaded[0].dropped == 3
    assert loaded[1] == two
    store.delete_hook(one.id)
    assert store.load_hooks() == [two]


def test_the_attempts_log_keeps_the_latest_only(case):
    store = case.store
    h = hook("a")
    store.save_hook(h)
    store.enqueue([(1.0, "{}", [h.id])])
    (delivery,) = store.pending(h.id, 0, 10)
    for i in range(12):
        attempt = Attempt(h.id, delivery.seq, float(i), False, 500, 1.0, "HTTP 500", 0)
        store.log_attempt(attempt, h, keep=5)
    kept = store.attempts([h.id], 100)
    assert [a.at for a in kept] == [11.0, 10.0, 9.0, 8.0, 7.0]
    assert kept[0] == Attempt(h.id, delivery.seq, 11.0, False, 500, 1.0, "HTTP 500", 0)
    assert store.pending(h.id, 0, 10)[0].attempts == 12
    store.log_attempt(ok(h.id, delivery.seq, 12.0), h, keep=5)
    assert store.pending(h.id, 0, 10) == []  # delivered: off the queue
    store.delete_hook(h.id)
    assert store.attempts([h.id], 100) == [] and store.pending_counts() == {}


def test_an_event_is_stored_once_and_goes_with_its_last_delivery(case):
    store = case.store
    one, two, gone = hook("a"), hook("b"), hook("c")
    store.save_hook(one)
    store.save_hook(two)
    # two events for both hooks, one for a hook deleted before the write
    store.enqueue([(1.0, '{"n": 1}', [one.id, two.id]), (2.0, '{"n": 2}', [one.id, two.id, gone.id]),
                   (3.0, '{"n": 3}', [gone.id])])  # fmt: skip
    assert case.events() == 2 and store.pending_counts() == {one.id: 2, two.id: 2}
    assert [d.payload for d in store.pending(two.id, 0, 10)] == ['{"n": 1}', '{"n": 2}']
    first, second = store.pending(one.id, 0, 10)
    assert first.seq < second.seq and (first.created, second.created) == (1.0, 2.0)
    assert store.pending(one.id, first.seq, 10) == [second]  # after a cursor
    store.log_attempt(ok(one.id, first.seq, 4.0), one, keep=5)
    assert case.events() == 2  # hook two still waits for event 1
    store.delete_hook(two.id)
    assert case.events() == 1 and store.pending_counts() == {one.id: 1}  # event 2, for hook one
    store.log_attempt(ok(one.id, second.seq, 5.0), one, keep=5)
    assert case.events() == 0 and store.pending_counts() == {}


def test_attempts_of_several_hooks_come_newest_first(case):
    store = case.store
    one, two = hook("a"), hook("b")
    store.save_hook(one)
    store.save_hook(two)
    store.enqueue([(1.0, "{}", [one.id, two.id])])
    (d,) = store.pending(one.id, 0, 1)
    for i, h in enumerate([one, two, one, two, one]):
        store.log_attempt(Attempt(h.id, d.seq, float(i), False, 500, 1.0, "HTTP 500", 1), h, keep=10)
    assert [(a.hook_id, a.at) for a in store.attempts([one.id, two.id], 3)] == [
        (one.id, 4.0), (two.id, 3.0), (one.id, 2.0)]


# --- the shared store only --------------------------------------------------------------------


@pytest.fixture
def shared(redis_url):
    c = RedisCase(None, redis_url)
    yield c
    c.store.close()


def test_a_deliverer_whose_lease_is_gone_cannot_mark_a_delivery_done(shared):
    store, cluster = shared.store, shared.cluster
    h = hook("a")
    store.save_hook(h)
    store.enqueue([(1.0, "{}", [h.id])])
    (delivery,) = store.pending(h.id, 0, 10)
    # the lease lapses (the deliverer stalled) and another instance takes it
    cluster.redis.delete(store.k("lease"))
    other = take_lease(cluster, store, "two")
    with pytest.raises(StaleDeliverer):
        store.log_attempt(ok(h.id, delivery.seq, 2.0), h, keep=5)
    with pytest.raises(StaleDeliverer):
        store.enqueue([(3.0, "{}", [h.id])], cursor=7)
    assert store.pending(h.id, 0, 10) == [delivery] and store.attempts([h.id], 10) == []
    assert store.cursor() is None
    # an instance with no lease value at all does not even ask
    store.fence = None
    with pytest.raises(StaleDeliverer):
        store.log_attempt(ok(h.id, delivery.seq, 2.0), h, keep=5)
    store.fence = other  # the holder can
    store.log_attempt(ok(h.id, delivery.seq, 4.0), h, keep=5)
    assert store.pending(h.id, 0, 10) == []


def test_a_batch_is_accepted_once_with_its_cursor(shared):
    store = shared.store
    h = hook("a")
    store.save_hook(h)
    store.enqueue([(1.0, '{"n": 1}', [h.id])], cursor=10)
    store.enqueue([(1.0, '{"n": 1}', [h.id])], cursor=10)  # a retry after a lost reply
    store.enqueue([], cursor=12)  # records with nothing for any hook move the cursor too
    store.enqueue([(2.0, '{"n": 2}', [h.id])], cursor=11)  # behind the cursor: written before
    assert [d.payload for d in store.pending(h.id, 0, 10)] == ['{"n": 1}']
    assert store.cursor() == 12


def test_a_deleted_hook_is_not_brought_back_by_a_late_save(shared):
    store = shared.store
    h = hook("a")
    store.save_hook(h)
    store.delete_hook(h.id)
    store.save_hook(Hook(**{**h.__dict__, "dropped": 1}))  # a deliverer that had not seen the deletion
    assert store.load_hooks() == []
