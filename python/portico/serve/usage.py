"""The usage writer: makes the usage plans' request counts durable, in batches.

The workers' cores count every request of a usage-plan key in a shared-memory table
(`rust/usage.rs`, the file `portico serve` names in PORTICO_SHARED_USAGE); this process, the one
writer, reads the table every `settings.usageFlushIntervalMs` (1,000 ms by default) and writes the
counts that changed into the data directory's SQLite (`Store.write_usage`, one transaction, without
moving the generation: no reload follows). The bound: a node killed outright (`kill -9` of every
process) forgets at most the requests counted in the last interval; a graceful stop forgets none
(the writer stops after the workers and writes once more). On start, the workers go on from the
durable counts (the spec carries them, `portico.compile.usage_plans`).

In cluster mode (`portico serve --redis`) the counts are shared through Redis (`rust/cluster.rs`)
and each node's table mirrors those of the keys it serves; the writer also reads, every interval,
the shared day counts of every key (the labels Redis keeps beside them, `portico:usage-labels`), so
that each node's store, and GetUsage on any node, hold the cluster's counts within the interval.

The writer runs in a process of its own (spawned, never forked: SQLite must not be shared across
a fork), started by `portico serve` when usage can be kept: with the admin API, or a config file
with usage plans and `--data-dir`.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import sqlite3
import threading
from typing import Any

import redis

from portico import _core
from portico.control.store import Store

__all__ = ["UsageWriter", "run_usage_writer", "start_usage_writer", "stop_usage_writer"]

log = logging.getLogger("portico.usage")

# Cluster mode: where the cores record which usage count each hash labels (`rust/cluster.rs`).
USAGE_LABELS = "portico:usage-labels"
DAY_MS = 86_400_000


class UsageWriter:
    """Writes what a usage table counted and the store does not have yet."""

    def __init__(self, store: Store, table: _core.UsageTable, shared: redis.Redis | None = None) -> None:
        self.store = store
        self.table = table
        # Cluster mode: the Redis whose day counts are every node's.
        self.shared = shared
        self._shared_failing = False
        # (plan, key, day) -> requests last written: only changes are written again.
        self._written: dict[tuple[str, str, int], int] = {}

    def pending(self) -> list[tuple[str, str, int, int]]:
        """(plan, key, day, requests) counted and not yet written."""
        rows = []
        for entry in self.table.entries():
            if entry[0] != "usage":
                continue
            _, plan_id, key_id, _, days = entry
            for day, used in days:
                if self._written.get((plan_id, key_id, day)) != used:
                    rows.append((plan_id, key_id, day, used))
        return rows

    def shared_pending(self) -> list[tuple[str, str, int, int]]:
        """Cluster mode: (plan, key, day, requests) of the shared day counts of yesterday and today
        not yet written. Raises redis.RedisError when Redis cannot be read."""
        if self.shared is None:
            return []
        labels = self.shared.hgetall(USAGE_LABELS)
        today = _core.wall_clock_ms() // DAY_MS
        slots = []
        for hash_hex, label in labels.items():
            parts = _text(label).split("\t")
            if len(parts) == 3 and parts[0] == "usage":
                slots += [
                    (parts[1], parts[2], day, f"portico:d:{_text(hash_hex)}:{day}")
                    for day in (today - 1, today)
                ]
        if not slots:
            return []
        values = self.shared.mget([slot[3] for slot in slots])
        rows = []
        for (plan_id, key_id, day, _), value in zip(slots, values, strict=True):
            if value is not None and self._written.get((plan_id, key_id, day)) != int(value):
                rows.append((plan_id, key_id, day, int(value)))
        return rows

    def flush(self) -> int:
        """Write what changed; the number of (plan, key, day) counts written."""
        rows = self.pending()
        try:
            rows += self.shared_pending()
        except redis.RedisError as exc:  # the node's own counts are written regardless
            if not self._shared_failing:
                log.warning(
                    "the shared usage counts cannot be read from Redis (%s): writing this node's", exc
                )
            self._shared_failing = True
        else:
            if self._shared_failing:
                log.info("the shared usage counts are read from Redis again")
            self._shared_failing = False
        # One row per (plan, key, day): the highest count (the node's and the shared one).
        highest: dict[tuple[str, str, int], int] = {}
        for plan_id, key_id, day, used in rows:
            slot = (plan_id, key_id, day)
            highest[slot] = max(used, highest.get(slot, 0))
        rows = [(*slot, used) for slot, used in highest.items()]
        self.store.write_usage(rows)
        for plan_id, key_id, day, used in rows:
            self._written[(plan_id, key_id, day)] = used
        # Days long gone from the table's two days are never read again.
        if len(self._written) > 100_000:
            newest = max(day for _, _, day in self._written)
            self._written = {k: v for k, v in self._written.items() if k[2] >= newest - 2}
        return len(rows)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def run_usage_writer(
    data_dir: str,
    usage_path: str,
    interval_ms: int,
    ready: Any = None,
    exit_with_parent: bool = True,
    redis_url: str | None = None,
) -> None:
    """Blocking entry point (a `spawn` child): write every `interval_ms` until SIGTERM, or until
    the parent goes away; then write once more. SIGINT is left to the server, which stops this
    process after its workers (a terminal's Ctrl-C reaches the whole group)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="portico-usage: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    shared = None
    if redis_url is not None:
        shared = redis.Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)
    writer = UsageWriter(Store(data_dir), _core.UsageTable(usage_path), shared)
    parent = os.getppid()
    if ready is not None:
        ready.set()
    failing = False
    interval = interval_ms / 1000
    while True:
        stopping = stop.wait(interval) or (exit_with_parent and os.getppid() != parent)
        try:
            writer.flush()
            if failing:
                log.info("usage counts are written again")
            failing = False
        except sqlite3.Error as exc:
            if not failing:  # once per outage; the counts stay in memory and are written later
                log.error("usage counts cannot be written (kept in memory meanwhile): %s", exc)
            failing = True
        if stopping:
            break


def start_usage_writer(
    data_dir: str, usage_path: str, interval_ms: int, redis_url: str | None = None
) -> multiprocessing.Process:
    """Start the usage writer (a spawned process) and wait until it runs (`redis_url`: cluster
    mode's Redis, whose shared counts it also writes)."""
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    process = context.Process(
        target=run_usage_writer,
        args=(data_dir, usage_path, interval_ms),
        kwargs={"ready": ready, "redis_url": redis_url},
        name="portico-usage",
        daemon=True,
    )
    process.start()
    if not ready.wait(30):
        stop_usage_writer(process)
        raise SystemExit("portico: the usage writer could not start")
    return process


def stop_usage_writer(process: multiprocessing.Process) -> None:
    """SIGTERM: it writes once more, then exits."""
    if process.is_alive():
        process.terminate()
        process.join(10)
    if process.is_alive():
        with contextlib.suppress(Exception):
            process.kill()
            process.join(5)
