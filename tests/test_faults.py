"""Faults of the serving process model: a worker killed under load is replaced while the others
serve; the server killed outright takes its workers with it, frees its port, and what it left
behind is cleaned at the next start."""

from __future__ import annotations

import glob
import os
import signal
import socket
import time
from pathlib import Path

import httpx

from conftest import start_server

MOCK_API = {
    "apis": [
        {
            "name": "faults",
            "routes": [
                {"route": "GET /mock", "integration": {"type": "MOCK", "statusCode": 200, "body": "ok"}}
            ],
        }
    ]
}


def _children(pid: int) -> list[int]:
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.split("/")[2]))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_kill_9_of_the_server_leaves_no_orphan_and_frees_the_port(tmp_path):
    server = start_server(MOCK_API, tmp_path, workers=2)
    assert httpx.get(server.url + "/mock").status_code == 200
    workers = _children(server.process.pid)
    assert len(workers) >= 2, workers
    leftovers = glob.glob(f"/dev/shm/portico-{server.process.pid}-*.buckets")
    assert leftovers

    server.process.send_signal(signal.SIGKILL)
    server.process.wait(5)
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if _alive(pid)], "workers outlived the server"
    assert _port_free(server.port)

    # The next server on that port starts, serves, and removes the dead one's bucket file.
    again = start_server(MOCK_API, tmp_path, port=server.port)
    try:
        assert httpx.get(again.url + "/mock").status_code == 200
        assert not any(os.path.exists(path) for path in leftovers)
    finally:
        again.stop()


def test_a_killed_worker_is_replaced_while_the_others_serve(tmp_path):
    server = start_server(MOCK_API, tmp_path, workers=2)
    try:
        workers = _children(server.process.pid)
        assert len(workers) == 2, workers
        os.kill(workers[0], signal.SIGKILL)
        statuses: list[int | str] = []
        deadline = time.monotonic() + 5
        replaced = False
        while time.monotonic() < deadline:
            try:
                statuses.append(httpx.get(server.url + "/mock", timeout=5).status_code)
            except httpx.HTTPError as exc:  # only what the dead worker held when it died
                statuses.append(type(exc).__name__)
            now = set(_children(server.process.pid))
            replaced = replaced or (len(now) == 2 and workers[0] not in now)
            if replaced and len(statuses) > 50:
                break
        assert replaced, "no replacement worker within 5 s"
        assert statuses.count(200) >= len(statuses) - 2, statuses
        assert "Respawning worker" in server.log
        # And the replacement serves: every connection is answered, whichever worker accepts it.
        assert all(httpx.get(server.url + "/mock", timeout=5).status_code == 200 for _ in range(50))
    finally:
        server.stop()


def test_a_stalled_body_is_cut_and_others_are_served(tmp_path):
    """A client that stops sending its body gets 408 once the body timeout passes (the connection
    closes), and holds up no one meanwhile."""
    config = {
        "settings": {"bodyTimeoutMillis": 300},
        "apis": [
            {
                "name": "faults",
                "routes": [
                    {"route": "GET /mock", "integration": {"type": "MOCK", "statusCode": 200, "body": "ok"}},
                    {"route": "POST /echo", "integration": {"type": "AWS_PROXY", "uri": "echo"}},
                ],
            }
        ],
    }
    server = start_server(config, tmp_path, {"echo": "handlers.basic:echo"})
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as stalled:
            stalled.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
            # Meanwhile, others are answered.
            assert all(httpx.get(server.url + "/mock").status_code == 200 for _ in range(20))
            started = time.monotonic()
            answer = stalled.recv(65536)
            waited = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"connection: close" in answer.lower()
        assert waited < 5, waited
    finally:
        server.stop()
