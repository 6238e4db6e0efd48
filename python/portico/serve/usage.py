"""The usage writer: makes the usage plans' request counts durable, in batches.

The workers' cores count every request of a usage-plan key in a shared-memory table
(`rust/usage.rs`, the file `portico serve` names in PORTICO_SHARED_USAGE); this process, the one
writer, reads the table every `settings.usageFlushIntervalMs` (1,000 ms by default) and writes the
counts that changed into the data directory's SQLite (`Store.write_usage`, one transaction, without
moving the generation: no reload follows). The bound: a node killed outright (`kill -9` of every
process) forgets at most the requests counted in the last interval; a graceful stop forgets none
(the writer stops after the workers and writes once more). On start, the workers go on from the
durable counts (the spec carries them, `portico.compile.usage_plans`).

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

from portico import _core
from portico.control.store import Store

__all__ = ["UsageWriter", "run_usage_writer", "start_usage_writer", "stop_usage_writer"]

log = logging.getLogger("portico.usage")


class UsageWriter:
    """Writes what a usage table counted and the store does not have yet."""

    def __init__(self, store: Store, table: _core.UsageTable) -> None:
        self.store = store
        self.table = table
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

    def flush(self) -> int:
        """Write what changed; the number of (plan, key, day) counts written."""
        rows = self.pending()
        self.store.write_usage(rows)
        for plan_id, key_id, day, used in rows:
            self._written[(plan_id, key_id, day)] = used
        # Days long gone from the table's two days are never read again.
        if len(self._written) > 100_000:
            newest = max(day for _, _, day in self._written)
            self._written = {k: v for k, v in self._written.items() if k[2] >= newest - 2}
        return len(rows)


def run_usage_writer(
    data_dir: str,
    usage_path: str,
    interval_ms: int,
    ready: Any = None,
    exit_with_parent: bool = True,
) -> None:
    """Blocking entry point (a `spawn` child): write every `interval_ms` until SIGTERM, or until
    the parent goes away; then write once more. SIGINT is left to the server, which stops this
    process after its workers (a terminal's Ctrl-C reaches the whole group)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="portico-usage: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    writer = UsageWriter(Store(data_dir), _core.UsageTable(usage_path))
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


def start_usage_writer(data_dir: str, usage_path: str, interval_ms: int) -> multiprocessing.Process:
    """Start the usage writer (a spawned process) and wait until it runs."""
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    process = context.Process(
        target=run_usage_writer,
        args=(data_dir, usage_path, interval_ms),
        kwargs={"ready": ready},
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
