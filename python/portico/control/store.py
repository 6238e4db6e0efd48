"""Durable control-plane state: one SQLite file, `<data-dir>/portico.db`.

A generic document model: every resource of both services is one row of `resources`, keyed by
(service, kind, id), its body a JSON document keyed by MODEL member names (as `wire.parse` hands
them to handlers and `wire.serialise` takes them back). `parent` is the id of the API a resource
belongs to (`restApiId` / `ApiId`); resources nested deeper use a path like `apiId/routeId`, so
`delete_under(service, apiId)` removes everything of an API in one statement.

`meta.generation` grows by one in the same transaction as any write; data-plane workers poll
`Store.generation()` to know when to reload.

Usage plans' usage lives beside the documents, in tables the data plane's counts are written to
in batches (`Store.write_usage`, by the usage writer, `portico.serve.usage`) without moving the
generation: `usage` holds each (plan, key, UTC day)'s requests (days since 1970-01-01), and
`quota_since` when each plan's quota was set (its initial period takes `offset` off the limit).

Cluster mode (`portico serve --redis`): a journaling store (`Store(..., journal=True)`, the admin
API's) also records every committed write transaction's changes, as a list of operations, in the
`outbox` table, in the same transaction; the node's replicator (`portico.control.replica`) publishes
them to Redis and applies every node's to this store. `replica` holds its bookkeeping (the stream
position applied, this node's id).

Durability: a rollback journal (`journal_mode=TRUNCATE`) with `synchronous=FULL`: a commit is
fsynced before the admin request is answered, so an acknowledged write survives `kill -9` of the
process and also an OS crash or power loss (admin writes are rare, the fsyncs are cheap).
Not WAL, and no memory-mapped I/O (`mmap_size=0`): WAL keeps its index in a `-shm` file that every
process mmaps, and when the file system fills up or that file is truncated, touching the mapping is
SIGBUS: every worker and the admin process died of it. Without any mapping, a failing disk is a
`sqlite3.Error` on the admin API (answered 500) and nothing at all to the workers, which open the
database read-only and keep serving what they last built (https://www.sqlite.org/wal.html,
"Disadvantages"; https://www.sqlite.org/mmap.html).
Concurrency: one connection per thread (and per process); writes take the database lock up front
(`BEGIN IMMEDIATE`) and wait up to `busy_timeout` for it, so concurrent writers from threads and
processes serialise instead of failing; readers wait the same way while a commit is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DB_NAME = "portico.db"
# Files of the data directory: the state and the admin secret, for their owner only.
PRIVATE_FILE_MODE = 0o600
BUSY_TIMEOUT_MS = 30_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    service TEXT NOT NULL,
    kind    TEXT NOT NULL,
    id      TEXT NOT NULL,
    parent  TEXT,
    doc     TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (service, kind, id)
);
CREATE INDEX IF NOT EXISTS resources_by_parent ON resources (service, kind, parent);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('generation', 0);
CREATE TABLE IF NOT EXISTS usage (
    plan_id TEXT NOT NULL,
    key_id  TEXT NOT NULL,
    day     INTEGER NOT NULL,
    used    INTEGER NOT NULL,
    PRIMARY KEY (plan_id, key_id, day)
);
CREATE INDEX IF NOT EXISTS usage_by_day ON usage (day);
CREATE TABLE IF NOT EXISTS quota_since (plan_id TEXT PRIMARY KEY, since_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, ops TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS replica (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class ReadOnlyError(RuntimeError):
    """A write inside `Store.read()`."""


class Transaction:
    """Reads and writes inside one SQLite transaction. Documents are JSON-able dicts."""

    def __init__(self, conn: sqlite3.Connection, writable: bool, journal: bool = False) -> None:
        self._conn = conn
        self._writable = writable
        self.dirty = False
        # Cluster mode: the changes made, as `portico.control.replica` applies them elsewhere.
        self.ops: list[list[Any]] | None = [] if journal else None

    def _record(self, *op: Any) -> None:
        if self.ops is not None:
            self.ops.append(list(op))

    def _write(self) -> None:
        if not self._writable:
            raise ReadOnlyError("write inside a read-only transaction")
        self.dirty = True

    def get(self, service: str, kind: str, id: str, parent: str | None = None) -> dict[str, Any] | None:
        """The document, or None (also when `parent` is given and is not the document's parent)."""
        row = self._conn.execute(
            "SELECT doc, parent FROM resources WHERE service = ? AND kind = ? AND id = ?", (service, kind, id)
        ).fetchone()
        if row is None or (parent is not None and row[1] != parent):
            return None
        return json.loads(row[0])

    def exists(self, service: str, kind: str, id: str) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM resources WHERE service = ? AND kind = ? AND id = ?", (service, kind, id)
        ).fetchone()
        return row is not None

    def put(
        self,
        service: str,
        kind: str,
        id: str,
        doc: dict[str, Any],
        parent: str | None = None,
        created: float | None = None,
    ) -> None:
        """Insert or replace a document (its `created` time is kept on replace; `created`: the
        time to give a new one, a replica's)."""
        self._write()
        now = time.time()
        self._conn.execute(
            "INSERT INTO resources (service, kind, id, parent, doc, created, updated) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (service, kind, id) DO UPDATE SET "
            "parent = excluded.parent, doc = excluded.doc, updated = excluded.updated",
            (service, kind, id, parent, json.dumps(doc, separators=(",", ":")), created or now, now),
        )
        if self.ops is not None:
            row = self._conn.execute(
                "SELECT created FROM resources WHERE service = ? AND kind = ? AND id = ?", (service, kind, id)
            ).fetchone()
            self._record("put", service, kind, id, doc, parent, row[0])

    def delete(self, service: str, kind: str, id: str) -> bool:
        """Delete one document; True if it existed."""
        self._write()
        cursor = self._conn.execute(
            "DELETE FROM resources WHERE service = ? AND kind = ? AND id = ?", (service, kind, id)
        )
        self._record("delete", service, kind, id)
        return cursor.rowcount > 0

    def delete_under(self, service: str, parent: str) -> int:
        """Delete every document whose parent is `parent` or starts with `parent/`."""
        self._write()
        cursor = self._conn.execute(
            "DELETE FROM resources WHERE service = ? AND (parent = ? OR substr(parent, 1, ?) = ?)",
            (service, parent, len(parent) + 1, parent + "/"),
        )
        self._record("delete_under", service, parent)
        return cursor.rowcount

    def list(self, service: str, kind: str, parent: str | None = None) -> list[dict[str, Any]]:
        """Documents of a kind (under `parent` when given), oldest first."""
        if parent is None:
            rows = self._conn.execute(
                "SELECT doc FROM resources WHERE service = ? AND kind = ? ORDER BY created, id",
                (service, kind),
            )
        else:
            rows = self._conn.execute(
                "SELECT doc FROM resources WHERE service = ? AND kind = ? AND parent = ? "
                "ORDER BY created, id",
                (service, kind, parent),
            )
        return [json.loads(row[0]) for row in rows]

    def generation(self) -> int:
        return self._conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0]

    # -- usage plans' usage (no generation move: the data plane counts, this only keeps it)

    def usage(self, first_day: int, plan_id: str | None = None) -> list[tuple[str, str, int, int]]:
        """(plan, key, day, requests) of the days from `first_day` on (of one plan, when given)."""
        if plan_id is None:
            rows = self._conn.execute(
                "SELECT plan_id, key_id, day, used FROM usage WHERE day >= ?", (first_day,)
            )
        else:
            rows = self._conn.execute(
                "SELECT plan_id, key_id, day, used FROM usage WHERE day >= ? AND plan_id = ?",
                (first_day, plan_id),
            )
        return [(r[0], r[1], int(r[2]), int(r[3])) for r in rows]

    def delete_usage(self, plan_id: str) -> None:
        """Forget a plan's usage and when its quota was set (the plan is deleted)."""
        self._write()
        self._conn.execute("DELETE FROM usage WHERE plan_id = ?", (plan_id,))
        self._conn.execute("DELETE FROM quota_since WHERE plan_id = ?", (plan_id,))
        self._record("delete_usage", plan_id)

    def quota_since(self) -> dict[str, int]:
        """When each plan's quota was set (epoch ms), by plan id."""
        return {r[0]: int(r[1]) for r in self._conn.execute("SELECT plan_id, since_ms FROM quota_since")}

    def set_quota_since(self, plan_id: str, since_ms: int | None) -> None:
        """Record when a plan's quota was set (kept if already recorded); None: it has none."""
        self._write()
        if since_ms is None:
            self._conn.execute("DELETE FROM quota_since WHERE plan_id = ?", (plan_id,))
        else:
            self._conn.execute(
                "INSERT OR IGNORE INTO quota_since (plan_id, since_ms) VALUES (?, ?)", (plan_id, since_ms)
            )
        self._record("set_quota_since", plan_id, since_ms)

    # -- cluster mode's bookkeeping (no generation move)

    def replica_value(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM replica WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_replica_value(self, key: str, value: str) -> None:
        if not self._writable:
            raise ReadOnlyError("write inside a read-only transaction")
        self._conn.execute(
            "INSERT INTO replica (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def outbox(self, after: int = 0) -> list[tuple[int, list[list[Any]]]]:
        """Journaled changes not yet published, oldest first: (seq, ops)."""
        rows = self._conn.execute("SELECT seq, ops FROM outbox WHERE seq > ? ORDER BY seq", (after,))
        return [(int(seq), json.loads(ops)) for seq, ops in rows]

    def drop_outbox(self, upto: int) -> None:
        if not self._writable:
            raise ReadOnlyError("write inside a read-only transaction")
        self._conn.execute("DELETE FROM outbox WHERE seq <= ?", (upto,))

    def enqueue(self, ops: list[list[Any]]) -> int:
        """Journal `ops` (a snapshot's) for publishing, without applying them here."""
        if not self._writable:
            raise ReadOnlyError("write inside a read-only transaction")
        cursor = self._conn.execute(
            "INSERT INTO outbox (ops) VALUES (?)", (json.dumps(ops, separators=(",", ":")),)
        )
        return int(cursor.lastrowid or 0)

    def documents(self) -> list[tuple[str, str, str, str | None, dict[str, Any], float]]:
        """Every document: (service, kind, id, parent, doc, created)."""
        rows = self._conn.execute(
            "SELECT service, kind, id, parent, doc, created FROM resources ORDER BY created"
        )
        return [(r[0], r[1], r[2], r[3], json.loads(r[4]), float(r[5])) for r in rows]

    def raw_document(self, service: str, kind: str, id: str) -> tuple[str | None, str] | None:
        """(parent, doc as stored) of a document, or None."""
        row = self._conn.execute(
            "SELECT parent, doc FROM resources WHERE service = ? AND kind = ? AND id = ?", (service, kind, id)
        ).fetchone()
        return None if row is None else (row[0], row[1])


class Store:
    """The state database. Safe to share between threads; each thread gets its own connection.

    `read_only`: for the data plane's workers, which only read: nothing in the data directory is
    ever written, and the database (the admin process creates it) is opened at the first read, so
    that a store that cannot be read fails that read, never the worker's start."""

    def __init__(
        self, data_dir: str | os.PathLike[str], *, read_only: bool = False, journal: bool = False
    ) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / DB_NAME
        self.read_only = read_only
        # Cluster mode: committed changes are also journaled in `outbox` (see the module's doc).
        self.journal = journal
        self._local = threading.local()
        if read_only:
            return
        ensure_data_dir(self.data_dir)
        # SQLite would create the database 0644 (less the umask), and its journal with the
        # database's mode: created 0600 here, every file of the store is private to its owner,
        # whatever the mode of a data directory that already existed.
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE_MODE))
        for suffix in ("", "-journal", "-wal", "-shm"):  # and those an older Portico left open
            make_private(self.path.with_name(DB_NAME + suffix))
        conn = self._connection()
        conn.executescript(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            if self.read_only:
                target, uri = f"{self.path.resolve().as_uri()}?mode=ro", True
            else:
                target, uri = str(self.path), False
            conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, uri=uri)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA mmap_size = 0")
            if not self.read_only:
                # Persistent: also turns the WAL of a database written by an older Portico off.
                conn.execute("PRAGMA journal_mode = TRUNCATE")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _end(self, conn: sqlite3.Connection) -> None:
        """Roll back what is still open. SQLite has already rolled back a transaction whose COMMIT
        failed (a full disk, an I/O error), and a connection that cannot roll back is dropped: the
        next use opens a new one instead of failing again."""
        if not conn.in_transaction:
            return
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            self.close()

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """A write transaction (BEGIN IMMEDIATE); commits on success, rolls back on exception.
        Any write bumps `generation` once, in the same transaction."""
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        tx = Transaction(conn, writable=True, journal=self.journal)
        try:
            yield tx
            if tx.dirty:
                conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")
                if tx.ops:
                    tx.enqueue(tx.ops)
            conn.execute("COMMIT")
        except BaseException:
            self._end(conn)
            raise

    @contextmanager
    def read(self) -> Iterator[Transaction]:
        """A consistent read-only snapshot (a writer's commit waits for it to end). Reads nested
        in one (on the same thread) share its snapshot: a build that reads several times sees one
        state of the store, never a change made between its reads."""
        conn = self._connection()
        if getattr(self._local, "reading", False):
            yield Transaction(conn, writable=False)
            return
        conn.execute("BEGIN")
        self._local.reading = True
        try:
            yield Transaction(conn, writable=False)
        finally:
            self._local.reading = False
            self._end(conn)

    def write_usage(self, rows: list[tuple[str, str, int, int]]) -> None:
        """Make (plan, key, day, requests) counts durable, in one transaction that leaves the
        generation alone (no reload follows). Counts only grow: a lower one never replaces a higher."""
        if not rows:
            return
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT INTO usage (plan_id, key_id, day, used) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (plan_id, key_id, day) DO UPDATE SET used = MAX(used, excluded.used)",
                rows,
            )
            conn.execute("COMMIT")
        except BaseException:
            self._end(conn)
            raise

    def record_quota_since(self, since: dict[str, int | None]) -> None:
        """`Transaction.set_quota_since` for several plans (the config file's), without moving the
        generation."""
        if not since:
            return
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            tx = Transaction(conn, writable=True)
            for plan_id, since_ms in since.items():
                tx.set_quota_since(plan_id, since_ms)
            conn.execute("COMMIT")
        except BaseException:
            self._end(conn)
            raise

    def generation(self) -> int:
        """Grows by one with every committed write transaction."""
        return self._connection().execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0]

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def integrity_check(self) -> str:
        return self._connection().execute("PRAGMA integrity_check").fetchone()[0]


def make_private(path: Path) -> None:
    """chmod 0600 a file that exists with more permissions than that."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_IMODE(path.stat().st_mode) & ~PRIVATE_FILE_MODE:
            path.chmod(PRIVATE_FILE_MODE)


def ensure_data_dir(path: str | os.PathLike[str]) -> Path:
    """Create the data directory (mode 0700) if needed."""
    data_dir = Path(path)
    if not data_dir.exists():
        data_dir.mkdir(parents=True, mode=0o700)
    return data_dir
