"""Faults of the serving process model: a worker killed under load is replaced while the others
serve; the server killed outright takes its workers with it, frees its port, and what it left
behind is cleaned at the next start."""

from __future__ import annotations

import glob
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

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
    """Whether any thread of `pid` still runs. The leader's own state is not enough: a killed
    multi-threaded process shows "Z" for its leader while its other threads are still exiting, and
    its descriptors (the listening socket among them) close only when the last thread is gone."""
    for stat in glob.glob(f"/proc/{pid}/task/*/stat"):
        try:
            state = Path(stat).read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            return True
    return False


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


_TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}


def _holders(port: int) -> list[str]:
    """The sockets on local `port` (from /proc/net/tcp) and the processes holding them: what a
    failure needs to say who kept the port."""
    owners: dict[str, list[str]] = {}
    for link in glob.glob("/proc/[0-9]*/fd/*"):
        try:
            target = os.readlink(link)
        except OSError:
            continue
        if target.startswith("socket:["):
            owners.setdefault(target[8:-1], []).append(link.split("/")[2])
    found = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
        if int(local.split(":")[1], 16) == port:
            remote_port = int(remote.split(":")[1], 16)
            found.append(f"{_TCP_STATES.get(state, state)} to :{remote_port} held by {owners.get(inode, [])}")
    return found


def _port_freed(port: int, within: float = 5.0) -> bool:
    """Whether `port` can be bound again within `within` seconds: the kernel releases a dead
    process's sockets as it reaps it, a moment after the process stops running."""
    deadline = time.monotonic() + within
    while not _port_free(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
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
    assert _port_freed(server.port), _holders(server.port)

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
        assert "died (signal 9); replaced, restart #1" in server.log, server.log
        # And the replacement serves: every connection is answered, whichever worker accepts it.
        assert all(httpx.get(server.url + "/mock", timeout=5).status_code == 200 for _ in range(50))
    finally:
        server.stop()


def test_stalled_bodies_are_cut_and_others_are_served(tmp_path):
    """Clients that stop sending their bodies, many at once, to a route served by Python: each gets
    408 once the body timeout passes (the connection closes), and meanwhile they hold up no one,
    Python-served routes included (bodies are read by the core before Python sees the call)."""
    config = {
        "settings": {"bodyTimeoutMillis": 3000},
        "apis": [
            {
                "name": "faults",
                "routes": [
                    {"route": "GET /mock", "integration": {"type": "MOCK", "statusCode": 200, "body": "ok"}},
                    {"route": "ANY /echo", "integration": {"type": "AWS_PROXY", "uri": "echo"}},
                ],
            }
        ],
    }
    server = start_server(config, tmp_path, {"echo": "handlers.basic:echo"})
    stalled: list[socket.socket] = []
    try:
        for _ in range(400):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
            stalled.append(sock)
        started = time.monotonic()
        # Meanwhile, others are answered, by the core and by Python alike.
        with httpx.Client(base_url=server.url, timeout=5) as client:
            for _ in range(10):
                assert client.get("/mock").status_code == 200
                assert client.get("/echo").status_code == 200
        # All answered before the stalled bodies were cut: none waited for them.
        assert time.monotonic() - started < 2.5, "the others waited for the stalled bodies"
        for sock in stalled:
            answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 408"), answer
            assert b"connection: close" in answer.lower()
            assert sock.recv(1) == b""  # closed
        assert time.monotonic() - started < 15
    finally:
        for sock in stalled:
            sock.close()
        server.stop()


def test_a_hung_function_is_throttled_and_the_others_keep_their_latency(tmp_path):
    """A handler that outlives its timeout keeps its thread, but one function holds at most its
    concurrency of threads: past it, its calls are refused at once (500, as Lambda throttles),
    and every other function is still answered as quickly as before."""
    config = {
        "functions": {
            "hang": {"handler": "handlers.basic:slow", "reservedConcurrency": 4},
            "echo": "handlers.basic:echo",
        },
        "settings": {"functionConcurrency": 6},
        "apis": [
            {
                "name": "faults",
                "routes": [
                    {
                        "route": "GET /hang",
                        "integration": {"type": "AWS_PROXY", "uri": "hang", "timeoutInMillis": 1000},
                    },
                    {"route": "GET /echo", "integration": {"type": "AWS_PROXY", "uri": "echo"}},
                ],
            }
        ],
    }
    server = start_server(config, tmp_path)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            usual = max(_timed(client, "/echo")[1] for _ in range(5))
            with ThreadPoolExecutor(24) as pool:
                hung = [pool.submit(_timed, httpx, server.url + "/hang?s=4") for _ in range(20)]
                time.sleep(0.3)  # the hung calls have taken their threads
                healthy = [_timed(client, "/echo") for _ in range(20)]
                statuses = sorted(f.result()[0] for f in hung)
            # HTTP APIs answer an integration timeout 503.
            assert statuses == [500] * 16 + [503] * 4, statuses
            assert all(status == 200 for status, _ in healthy), healthy
            # "Its normal latency": bounded by the quiet figure (with room for a noisy machine),
            # not by the hung function's 4 s.
            assert max(t for _, t in healthy) < max(10 * usual, 0.5), (usual, healthy)
            assert "throttled" in server.log
            # Once the hung handlers return, the function has its threads back.
            deadline = time.monotonic() + 10
            while client.get("/hang?s=0").status_code != 200:
                assert time.monotonic() < deadline, "the function never recovered"
                time.sleep(0.2)
    finally:
        server.stop()


def _timed(client: Any, url: str) -> tuple[int, float]:
    started = time.perf_counter()
    status = client.get(url, timeout=30).status_code
    return status, time.perf_counter() - started


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def test_a_worker_gives_back_the_memory_of_large_responses(tmp_path):
    """Responses of 20 MB (refused: over Lambda's 6 MB) and 5 MB (served), several at once: the
    worker's memory returns to about where it was instead of keeping every block it used."""
    config = {
        "apis": [
            {
                "name": "big",
                "routes": [{"route": "GET /big", "integration": {"type": "AWS_PROXY", "uri": "big"}}],
            }
        ]
    }
    server = start_server(config, tmp_path, {"big": "handlers.basic:big"})
    try:
        (worker,) = _children(server.process.pid)
        assert httpx.get(server.url + "/big?mb=0.001").status_code == 200
        before = _rss_kb(worker)
        with ThreadPoolExecutor(6) as pool:
            for megabytes, status in (("20", 500), ("5", 200)):
                url = f"{server.url}/big?mb={megabytes}"
                for _ in range(3):
                    answers = list(pool.map(lambda u: httpx.get(u, timeout=30), [url] * 6))
                    assert {a.status_code for a in answers} == {status}
        grown_mb = (_rss_kb(worker) - before) / 1024
        # Each round held 6 x (20 MB string + its JSON) at its peak, about 250 MB.
        assert grown_mb < 40, f"the worker kept {grown_mb:.0f} MB"
    finally:
        server.stop()
