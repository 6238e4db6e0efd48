"""Cluster mode's control plane: every node's store is a replica of one Redis stream.

Each node keeps its own SQLite store (`portico.control.store`), which its workers poll and reload
from as they do on one node. In cluster mode (`portico serve --redis`) the admin API's store
journals every committed write transaction's changes (`Store(..., journal=True)`: the documents
put, deleted or deleted under a parent, and the usage-plan bookkeeping) in its `outbox` table, in
the same transaction. This module's replicator, one process per node, then:

1. publishes the outbox, oldest first, to the stream `portico:control` (`XADD`: Redis gives each
   entry its place in one global order), and drops what was published;
2. reads the stream from the last entry it applied (`XREAD BLOCK`) and applies every node's
   entries, its own included, in the stream's order, each batch in one store transaction that
   also records the position (so an entry is applied once, across restarts); the generation moves
   and the workers reload, well within a second of the change on the node that made it.

Every node applying the same entries in the same order converges on the same documents, even
when two nodes change one resource at once (the later entry wins everywhere). An entry of this
node's own is skipped for documents a later change of its own, not yet published, will write
again, so that a node never shows an older state of what it changed itself.

Joining: a node that has never replicated reads the stream from its start (it is not trimmed:
admin changes are small and rare), after publishing a snapshot of the documents it already has.
A Redis restarted without its data (the stream shorter than the position applied) is re-seeded
the same way: each node publishes a snapshot, and all of them read the stream again from the
start. While Redis is unreachable, the admin API keeps working on its node: changes wait in the
outbox and are published when Redis is back; one log line says so, and one when it is over.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import secrets
import signal
import threading
from typing import Any

import redis

from portico.control.store import Store, Transaction

__all__ = ["STREAM", "Replicator", "run_replicator", "start_replicator", "stop_replicator"]

log = logging.getLogger("portico.replica")

STREAM = "portico:control"
# How long one read waits for entries: also how often the outbox is published.
BLOCK_MS = 100
READ_COUNT = 1000
START = "0-0"


def _position(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _touches(op: list[Any]) -> tuple[str, ...]:
    """What an operation writes: a document, or everything under a parent."""
    kind = op[0]
    if kind in ("put", "delete"):
        return ("doc", op[1], op[2], op[3])
    if kind == "delete_under":
        return ("under", op[1], op[2])
    return (kind, str(op[1]))


class Replicator:
    """One node's replica of the stream (see the module's doc)."""

    def __init__(self, store: Store, client: redis.Redis) -> None:
        self.store = store
        self.client = client
        self.node = ""
        self.position = START

    def bootstrap(self) -> None:
        """This node's id and position; a node that has never replicated journals a snapshot of
        the documents it has first."""
        with self.store.transaction() as tx:
            node = tx.replica_value("node")
            if node is None:
                node = secrets.token_hex(8)
                tx.set_replica_value("node", node)
            position = tx.replica_value("position")
            if position is None:
                self._enqueue_snapshot(tx)
                position = START
                tx.set_replica_value("position", position)
        self.node, self.position = node, position

    def _enqueue_snapshot(self, tx: Transaction) -> None:
        ops: list[list[Any]] = [
            ["put", service, kind, id, doc, parent, created]
            for service, kind, id, parent, doc, created in tx.documents()
        ]
        ops += [["set_quota_since", plan, since] for plan, since in tx.quota_since().items()]
        if ops:
            tx.enqueue(ops)

    def step(self, block_ms: int = BLOCK_MS) -> int:
        """Publish, check the stream is still there, read and apply: entries applied."""
        self.publish()
        self._check_stream()
        return self.pull(block_ms)

    def publish(self) -> int:
        """Publish the outbox, oldest first; entries published."""
        with self.store.read() as tx:
            pending = tx.outbox()
        for seq, ops in pending:
            fields = {"origin": self.node, "seq": str(seq), "ops": json.dumps(ops, separators=(",", ":"))}
            self.client.xadd(STREAM, fields)  # type: ignore[arg-type]
            with self.store.transaction() as tx:
                tx.drop_outbox(seq)
        return len(pending)

    def _check_stream(self) -> None:
        """A Redis that lost the stream (restarted without its data) is seeded again."""
        if self.position == START:
            return
        last = self.client.xrevrange(STREAM, count=1)
        if last and _position(_text(last[0][0])) >= _position(self.position):
            return
        log.warning(
            "the Redis stream %s lost entries this node applied: publishing this node's documents again",
            STREAM,
        )
        with self.store.transaction() as tx:
            self._enqueue_snapshot(tx)
            tx.set_replica_value("position", START)
        self.position = START
        self.publish()

    def pull(self, block_ms: int = BLOCK_MS) -> int:
        """Read what follows the position (waiting up to `block_ms`) and apply it."""
        answer = self.client.xread({STREAM: self.position}, count=READ_COUNT, block=block_ms)
        entries = [(_text(id), fields) for _, batch in answer for id, fields in batch]
        if not entries:
            return 0
        self.apply(entries)
        return len(entries)

    def apply(self, entries: list[tuple[str, dict[Any, Any]]]) -> None:
        """Apply `entries` (id, fields) in order, in one transaction that records the position."""
        with self.store.transaction() as tx:
            later = self._unpublished(tx)
            for _, fields in entries:
                fields = {_text(k): _text(v) for k, v in fields.items()}
                ops = json.loads(fields["ops"])
                own = fields.get("origin") == self.node
                skip: set[tuple[str, ...]] = set()
                if own:
                    seq = int(fields.get("seq", "0"))
                    skip = {touched for s, touched in later if s > seq}
                for op in ops:
                    if own and (_touches(op) in skip or (op[0] == "delete_under" and skip)):
                        continue
                    _apply(tx, op)
            tx.set_replica_value("position", entries[-1][0])
        self.position = entries[-1][0]

    def _unpublished(self, tx: Transaction) -> list[tuple[int, tuple[str, ...]]]:
        """What this node's changes not yet published will write: (seq, what)."""
        return [(seq, _touches(op)) for seq, ops in tx.outbox() for op in ops]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _apply(tx: Transaction, op: list[Any]) -> None:
    """One journaled operation; a write that changes nothing is not made (no reload follows)."""
    kind = op[0]
    if kind == "put":
        _, service, kind_, id, doc, parent, created = op
        stored = tx.raw_document(service, kind_, id)
        if stored is not None and stored == (parent, json.dumps(doc, separators=(",", ":"))):
            return
        tx.put(service, kind_, id, doc, parent, created=created)
    elif kind == "delete":
        _, service, kind_, id = op
        if tx.exists(service, kind_, id):
            tx.delete(service, kind_, id)
    elif kind == "delete_under":
        tx.delete_under(op[1], op[2])
    elif kind == "delete_usage":
        tx.delete_usage(op[1])
    elif kind == "set_quota_since":
        if tx.quota_since().get(op[1]) != op[2]:
            tx.set_quota_since(op[1], op[2])
    else:
        log.error("unknown journaled operation %r: skipped (a newer Portico wrote it?)", kind)


def run_replicator(data_dir: str, url: str, ready: Any = None, exit_with_parent: bool = True) -> None:
    """Blocking entry point (a `spawn` child): replicate until SIGTERM or the parent goes away."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="portico-replica: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=1)
    replicator = Replicator(Store(data_dir), client)
    replicator.bootstrap()
    parent = os.getppid()
    if ready is not None:
        ready.set()
    failing = False
    while not stop.is_set() and not (exit_with_parent and os.getppid() != parent):
        try:
            replicator.step()
            if failing:
                log.info("admin changes reach Redis again: this node's are published, the others' applied")
            failing = False
        except redis.RedisError as exc:
            if not failing:
                log.error(
                    "admin changes cannot reach Redis (%s): this node's wait to be published, "
                    "the other nodes' arrive when it is back",
                    exc,
                )
            failing = True
            stop.wait(0.25)


def start_replicator(data_dir: str, url: str) -> multiprocessing.Process:
    """Start the replicator (a spawned process) and wait until it has bootstrapped."""
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    process = context.Process(
        target=run_replicator,
        args=(data_dir, url),
        kwargs={"ready": ready},
        name="portico-replica",
        daemon=True,
    )
    process.start()
    if not ready.wait(30):
        stop_replicator(process)
        raise SystemExit("portico: the control-plane replicator could not start")
    return process


def stop_replicator(process: multiprocessing.Process) -> None:
    if process.is_alive():
        process.terminate()
        process.join(5)
    if process.is_alive():
        with contextlib.suppress(Exception):
            process.kill()
            process.join(5)
