"""The SQLite store, admin keys and ids."""

from __future__ import annotations

import multiprocessing
import os
import stat
import threading
from pathlib import Path

import pytest

from portico.control import ids
from portico.control.keys import ENV_ADMIN_KEY, load_or_create_admin_key
from portico.control.store import ReadOnlyError, Store


def test_put_get_list_delete_and_generation(tmp_path: Path) -> None:
    store = Store(tmp_path / "d")
    assert store.generation() == 0
    with store.transaction() as tx:
        tx.put("apigateway", "restapi", "a", {"id": "a"})
        tx.put("apigateway", "resource", "r1", {"id": "r1"}, parent="a")
        tx.put("apigateway", "resource", "r2", {"id": "r2"}, parent="a/r1")
        tx.put("apigateway", "resource", "r3", {"id": "r3"}, parent="ab")
    assert store.generation() == 1  # one bump per transaction
    with store.read() as tx:
        assert tx.get("apigateway", "restapi", "a") == {"id": "a"}
        assert tx.get("apigateway", "resource", "r1", parent="other") is None
        assert [d["id"] for d in tx.list("apigateway", "resource", parent="a")] == ["r1"]
        assert len(tx.list("apigateway", "resource")) == 3
        with pytest.raises(ReadOnlyError):
            tx.put("apigateway", "restapi", "b", {})
    with store.transaction() as tx:
        tx.put("apigateway", "restapi", "a", {"id": "a", "name": "x"})
        assert tx.delete_under("apigateway", "a") == 2  # r1 and r2, not "ab"'s r3
    assert store.generation() == 2
    with store.transaction() as tx:  # reads only: no bump
        tx.get("apigateway", "restapi", "a")
    assert store.generation() == 2
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.put("apigateway", "restapi", "z", {})
        raise RuntimeError("boom")
    with store.read() as tx:
        assert tx.get("apigateway", "restapi", "z") is None
        assert tx.get("apigateway", "restapi", "a") == {"id": "a", "name": "x"}
    assert store.generation() == 2
    assert store.integrity_check() == "ok"


def _counter_writer(data_dir: str, writer: int, count: int) -> None:
    store = Store(data_dir)
    for i in range(count):
        with store.transaction() as tx:  # read-modify-write: lost updates would show
            doc = tx.get("t", "counter", "c") or {"n": 0}
            doc["n"] += 1
            tx.put("t", "counter", "c", doc)
            tx.put("t", "item", f"{writer}-{i}", {"writer": writer})


def test_concurrent_writers_threads_and_processes(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "d")
    store = Store(data_dir)
    per_writer = 40
    threads = [threading.Thread(target=_counter_writer, args=(data_dir, w, per_writer)) for w in range(4)]
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_counter_writer, args=(data_dir, 10 + w, per_writer)) for w in range(2)
    ]
    for worker in [*threads, *processes]:
        worker.start()
    for thread in threads:
        thread.join(120)
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    total = per_writer * 6
    with store.read() as tx:
        assert tx.get("t", "counter", "c") == {"n": total}
        assert len(tx.list("t", "item")) == total
    assert store.generation() == total
    assert store.integrity_check() == "ok"


def test_admin_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_ADMIN_KEY, raising=False)
    data_dir = tmp_path / "fresh"
    key_id, secret, path = load_or_create_admin_key(data_dir)
    assert path == data_dir / "admin-key"
    assert key_id.startswith("AKIA") and len(key_id) == 20 and key_id[4:].isalnum() and key_id.isupper()
    assert len(secret) == 40
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o700
    assert load_or_create_admin_key(data_dir) == (key_id, secret, path)  # stable across starts
    assert load_or_create_admin_key(data_dir, "ID:SEC:RET") == ("ID", "SEC:RET", None)
    monkeypatch.setenv(ENV_ADMIN_KEY, "ENVID:envsecret")
    assert load_or_create_admin_key(data_dir) == ("ENVID", "envsecret", None)
    assert load_or_create_admin_key(data_dir, "CLI:wins") == ("CLI", "wins", None)


def test_id_formats() -> None:
    for make, length in ((ids.rest_api_id, 10), (ids.api_id, 10), (ids.resource_id, 10), (ids.short_id, 7)):
        value = make()
        assert len(value) == length and value.isalnum() and value == value.lower()
    assert len(ids.api_key_id()) == 10 and len(ids.api_key_value()) == 40
    assert len({ids.api_id() for _ in range(1000)}) == 1000
