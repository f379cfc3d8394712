"""Where webhooks live: the hooks, a durable per-hook delivery queue, and the attempts log.

:class:`WebhookStore` is the small interface the service and the workers use, so a shared
store can stand in for the embedded one later. :class:`SQLiteStore` is the embedded one: one
SQLite file (standard library) under the configured data directory, in WAL mode.

SQLite calls block the thread they run in, so every call runs in one dedicated OS thread
(gevent's thread pool of size 1): the event loop keeps serving while a transaction commits, the
connection is only ever used by that thread, and calls run in the order they were made, so the
last state written for a hook is the last one the service decided.

Durability: ``synchronous=NORMAL`` in WAL mode survives a crash of eslchan (kill -9 included);
a power loss may lose the last transactions before the next checkpoint.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from gevent.threadpool import ThreadPool

DB_NAME = "webhooks.sqlite3"
LOCK_NAME = "webhooks.lock"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hooks (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    name TEXT NOT NULL,
    uri TEXT NOT NULL,
    hook TEXT NOT NULL,
    http_verb TEXT NOT NULL,
    retries INTEGER NOT NULL,
    custom_data TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    include_subaccounts INTEGER NOT NULL,
    secret TEXT NOT NULL,
    created REAL NOT NULL,
    modified REAL NOT NULL,
    disable_reason TEXT,
    failures INTEGER NOT NULL DEFAULT 0,
    dropped INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS hooks_account ON hooks (account_id);
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    hook_id TEXT NOT NULL REFERENCES hooks (id) ON DELETE CASCADE,
    created REAL NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS deliveries_hook ON deliveries (hook_id, seq);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hook_id TEXT NOT NULL REFERENCES hooks (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    at REAL NOT NULL,
    ok INTEGER NOT NULL,
    status INTEGER,
    latency_ms REAL NOT NULL,
    error TEXT,
    retries_left INTEGER NOT NULL,
    hook_event TEXT,
    call_id TEXT
);
CREATE INDEX IF NOT EXISTS attempts_hook ON attempts (hook_id, id);
"""

_HOOK_COLUMNS = (
    "id, account_id, name, uri, hook, http_verb, retries, custom_data, enabled, include_subaccounts, "
    "secret, created, modified, disable_reason, failures, dropped"
)


_UPSERT = (
    f"INSERT INTO hooks ({_HOOK_COLUMNS}) VALUES ({', '.join('?' * len(_HOOK_COLUMNS.split(',')))}) "
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c.strip()} = excluded.{c.strip()}" for c in _HOOK_COLUMNS.split(",")[1:])
)


class StoreError(Exception):
    """The store cannot be opened or used; the message says why."""


@dataclass(frozen=True)
class Hook:
    """A webhook as stored: the tenant's fields, its secret and its delivery state."""

    id: str
    account_id: str
    name: str
    uri: str
    hook: str
    http_verb: str = "post"
    retries: int = 2
    custom_data: Mapping[str, str] = field(default_factory=dict)
    enabled: bool = True
    include_subaccounts: bool = False
    secret: str = ""
    created: float = 0.0
    modified: float = 0.0
    #: set when eslchan disabled the hook itself (repeated failures); cleared by re-enabling
    disable_reason: str | None = None
    #: failed deliveries in a row (each after 1 + retries attempts)
    failures: int = 0
    #: events not accepted because the hook's queue was full
    dropped: int = 0

    def wants(self, hook_event: str) -> bool:
        return self.hook == "all" or self.hook == hook_event

    @property
    def accepting(self) -> bool:
        """New events are queued while enabled, and while disabled by eslchan (not by the tenant),
        so re-enabling a hook disabled during an outage delivers what happened meanwhile."""
        return self.enabled or self.disable_reason is not None


@dataclass(frozen=True)
class Delivery:
    """One event waiting for one hook; ``seq`` orders a hook's queue and names the delivery."""

    seq: int
    hook_id: str
    created: float
    payload: str
    attempts: int = 0


@dataclass(frozen=True)
class Attempt:
    """One try at a delivery, as the attempts log keeps it."""

    hook_id: str
    seq: int
    at: float
    ok: bool
    status: int | None
    latency_ms: float
    error: str | None
    retries_left: int
    hook_event: str | None = None
    call_id: str | None = None


class WebhookStore(Protocol):
    """What the service and the workers need from a store."""

    def load_hooks(self) -> list[Hook]: ...

    def save_hook(self, hook: Hook) -> None: ...

    def delete_hook(self, hook_id: str) -> None: ...

    def enqueue(self, rows: Sequence[tuple[str, float, str]]) -> None:
        """Persist (hook_id, created, payload) rows, in order, in one transaction."""

    def pending_counts(self) -> dict[str, int]: ...

    def pending(self, hook_id: str, after: int, limit: int) -> list[Delivery]:
        """The hook's oldest deliveries with seq > ``after``, oldest first."""

    def log_attempt(self, attempt: Attempt, hook: Hook, keep: int) -> None:
        """Record an attempt and the hook's resulting state in one transaction; a successful
        attempt removes its delivery. Keeps the hook's last ``keep`` attempts."""

    def attempts(self, hook_id: str, limit: int) -> list[Attempt]:
        """The hook's latest attempts, newest first."""

    def close(self) -> None: ...


def _hook_row(hook: Hook) -> tuple[Any, ...]:
    return (
        hook.id, hook.account_id, hook.name, hook.uri, hook.hook, hook.http_verb, hook.retries,
        json.dumps(dict(hook.custom_data), sort_keys=True), int(hook.enabled), int(hook.include_subaccounts),
        hook.secret, hook.created, hook.modified, hook.disable_reason, hook.failures, hook.dropped,
    )  # fmt: skip


def _hook_from(row: tuple[Any, ...]) -> Hook:
    (hid, account, name, uri, hook, verb, retries, custom, enabled, subaccounts, secret, created,
     modified, reason, failures, dropped) = row  # fmt: skip
    return Hook(
        id=hid, account_id=account, name=name, uri=uri, hook=hook, http_verb=verb, retries=retries,
        custom_data=json.loads(custom), enabled=bool(enabled), include_subaccounts=bool(subaccounts),
        secret=secret, created=created, modified=modified, disable_reason=reason, failures=failures,
        dropped=dropped,
    )  # fmt: skip


class SQLiteStore:
    """The embedded store: ``<data_dir>/webhooks.sqlite3``, used from one thread of its own.

    One process at a time: a lock file refuses a second eslchan on the same directory, which
    would otherwise deliver every event twice.
    """

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / DB_NAME
        self._pool = ThreadPool(1)
        self._lock_fd: int | None = None
        try:
            self._db: sqlite3.Connection = self._pool.apply(self._open, (Path(data_dir),))
        except BaseException:
            self._release()
            raise

    # -- life ------------------------------------------------------------------------------

    def _open(self, data_dir: Path) -> sqlite3.Connection:
        try:
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot use {data_dir}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StoreError(f"{data_dir} is in use by another eslchan process") from None
        self._lock_fd = fd
        try:
            # the file holds hook secrets: create it private before SQLite opens it
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA busy_timeout=5000")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                db.close()
                raise StoreError(f"{self.path} was written by a newer eslchan (schema {version})")
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from None
        return db

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None
        self._pool.kill()

    def close(self) -> None:
        try:
            self._pool.apply(self._db.close)
        finally:
            self._release()

    def _run(self, fn: Any, *args: Any) -> Any:
        return self._pool.apply(fn, args)

    # -- hooks -----------------------------------------------------------------------------

    def load_hooks(self) -> list[Hook]:
        sql = f"SELECT {_HOOK_COLUMNS} FROM hooks ORDER BY created"
        rows = self._run(lambda: self._db.execute(sql).fetchall())
        return [_hook_from(row) for row in rows]

    def save_hook(self, hook: Hook) -> None:
        # an upsert, not INSERT OR REPLACE: a replace deletes the row first, and the delete
        # would cascade to the hook's queue and log
        self._run(self._db.execute, _UPSERT, _hook_row(hook))

    def delete_hook(self, hook_id: str) -> None:
        self._run(self._db.execute, "DELETE FROM hooks WHERE id = ?", (hook_id,))

    # -- the queue -------------------------------------------------------------------------

    def _executemany(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany(sql, rows)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def enqueue(self, rows: Sequence[tuple[str, float, str]]) -> None:
        # a row whose hook was deleted meanwhile is skipped, not an error for the whole batch
        self._run(
            self._executemany,
            "INSERT INTO deliveries (hook_id, created, payload) "
            "SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM hooks WHERE id = ?1)",
            rows,
        )

    def pending_counts(self) -> dict[str, int]:
        rows = self._run(
            lambda: self._db.execute("SELECT hook_id, COUNT(*) FROM deliveries GROUP BY hook_id").fetchall()
        )
        return dict(rows)

    def pending(self, hook_id: str, after: int, limit: int) -> list[Delivery]:
        rows = self._run(
            lambda: self._db.execute(
                "SELECT seq, hook_id, created, payload, attempts FROM deliveries "
                "WHERE hook_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (hook_id, after, limit),
            ).fetchall()
        )
        return [Delivery(*row) for row in rows]

    # -- attempts --------------------------------------------------------------------------

    def _log_attempt(self, a: Attempt, hook: Hook, keep: int) -> None:
        db = self._db
        db.execute("BEGIN")
        try:
            exists = db.execute("SELECT 1 FROM hooks WHERE id = ?", (a.hook_id,)).fetchone()
            if exists:
                db.execute(
                    "INSERT INTO attempts (hook_id, seq, at, ok, status, latency_ms, error, retries_left, "
                    "hook_event, call_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (a.hook_id, a.seq, a.at, int(a.ok), a.status, a.latency_ms, a.error, a.retries_left,
                     a.hook_event, a.call_id),
                )  # fmt: skip
                if a.ok:
                    db.execute("DELETE FROM deliveries WHERE seq = ?", (a.seq,))
                else:
                    db.execute("UPDATE deliveries SET attempts = attempts + 1 WHERE seq = ?", (a.seq,))
                db.execute(
                    "UPDATE hooks SET enabled = ?, disable_reason = ?, failures = ? WHERE id = ?",
                    (int(hook.enabled), hook.disable_reason, hook.failures, hook.id),
                )
                db.execute(
                    "DELETE FROM attempts WHERE hook_id = ?1 AND id <= "
                    "(SELECT id FROM attempts WHERE hook_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
                    (a.hook_id, keep),
                )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def log_attempt(self, attempt: Attempt, hook: Hook, keep: int) -> None:
        self._run(self._log_attempt, attempt, hook, keep)

    def attempts(self, hook_id: str, limit: int) -> list[Attempt]:
        rows = self._run(
            lambda: self._db.execute(
                "SELECT hook_id, seq, at, ok, status, latency_ms, error, retries_left, hook_event, call_id "
                "FROM attempts WHERE hook_id = ? ORDER BY id DESC LIMIT ?",
                (hook_id, limit),
            ).fetchall()
        )
        return [Attempt(*row[:3], bool(row[3]), *row[4:]) for row in rows]
