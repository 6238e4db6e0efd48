"""State survives restarts and kill -9 of the admin process; secrets stay out of its log."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from botocore.exceptions import ClientError
from control_support import SECRET, ProcessAdmin

from portico.control.store import Store


def test_state_survives_a_restart(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "admin.log"
    server = ProcessAdmin(data_dir, log)
    try:
        api_id = server.client("apigatewayv2").create_api(Name="kept", ProtocolType="HTTP")["ApiId"]
        rest_id = server.client("apigateway").create_rest_api(name="kept-rest")["id"]
        wrong = server.client("apigatewayv2", secret="definitely-wrong")
        with contextlib.suppress(ClientError):
            wrong.get_apis()
    finally:
        server.stop()
    server = ProcessAdmin(data_dir, log)
    try:
        assert server.client("apigatewayv2").get_api(ApiId=api_id)["Name"] == "kept"
        assert server.client("apigateway").get_rest_api(restApiId=rest_id)["name"] == "kept-rest"
    finally:
        server.stop()
    text = server.log
    assert "admin API on" in text and " 201 " in text  # the access log is there ...
    assert SECRET not in text and "definitely-wrong" not in text  # ... and no secret


def test_generated_key_is_used_when_none_is_configured(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = ProcessAdmin(data_dir, tmp_path / "admin.log", admin_key="")
    try:
        key_id, secret = (data_dir / "admin-key").read_text().strip().split(":", 1)
        assert server.client("apigatewayv2", key=key_id, secret=secret).get_apis()["Items"] == []
    finally:
        server.stop()
    assert secret not in server.log


def test_kill_9_during_a_burst_of_creates(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = ProcessAdmin(data_dir, tmp_path / "admin.log")
    acknowledged: list[tuple[str, str, str | None]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def burst(worker: int) -> None:
        v1, v2 = server.client("apigateway"), server.client("apigatewayv2")
        i = 0
        while not stop.is_set():
            i += 1
            try:
                if worker % 2:
                    made = v1.create_rest_api(name=f"w{worker}-{i}")
                    entry = ("restapi", made["id"], made["rootResourceId"])
                else:
                    entry = ("api", v2.create_api(Name=f"w{worker}-{i}", ProtocolType="HTTP")["ApiId"], None)
            except Exception:  # the server died under us: that call was never acknowledged
                return
            with lock:
                acknowledged.append(entry)

    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(burst, w) for w in range(6)]
        deadline = time.monotonic() + 20
        while len(acknowledged) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(10)
        stop.set()
        for future in futures:
            future.result()

    assert len(acknowledged) >= 40
    store = Store(data_dir)
    assert store.integrity_check() == "ok"
    with store.read() as tx:
        rest_apis = {d["id"]: d for d in tx.list("apigateway", "restapi")}
        apis = {d["ApiId"] for d in tx.list("apigatewayv2", "api")}
        for kind, api_id, root_id in acknowledged:
            if kind == "api":
                assert api_id in apis
            else:
                assert api_id in rest_apis
                assert tx.get("apigateway", "resource", root_id, parent=api_id) == {
                    "id": root_id,
                    "path": "/",
                }
        # Every REST API that made it (acknowledged or not) has its root resource: one transaction.
        for api_id, doc in rest_apis.items():
            assert tx.get("apigateway", "resource", doc["rootResourceId"], parent=api_id) is not None
    assert store.generation() == len(rest_apis) + len(apis)

    # And the server starts again on that database.
    server = ProcessAdmin(data_dir, tmp_path / "admin2.log")
    try:
        listed = server.client("apigatewayv2").get_apis(MaxResults="500")["Items"]
        assert {a["ApiId"] for a in listed} == apis
    finally:
        server.stop()
