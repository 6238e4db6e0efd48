"""What reaching a connection held elsewhere costs (`rust/websocket/relay.rs`, issue 12).

    python benches/websocket_relay.py [--posts N]

Starts (free loopback ports) a redis-server and two `portico serve --redis` nodes of one worker
each (A and B), and one node of `--workers 2` (C) without Redis, all serving the WebSocket API of
benches/websocket.py's broadcast config. One `websockets` client is connected to each node (two
to C, one per worker, told apart by the owner tag their ids start with). One boto3
`apigatewaymanagementapi` client per node (one keep-alive connection: one worker answers it)
then posts N 64-byte messages to each connection, one after another, each awaited by the
connection's client before the next: the round trip from the call to the frame's arrival, p50 and
p99, and posts/s:

  A -> A         the connection is held by the worker that answers
  A -> B         through Redis (pub/sub), the other node's worker
  C -> C (tag)   for each of C's workers: one is the worker that answers, the other is reached
                 through its Unix socket (the slower one)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
from websockets.sync.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

from conftest import RedisServer, Server, start_server
from websocket import PRINCIPAL, portico_config

KEY_ID = PRINCIPAL["accessKeyId"]
SECRET = PRINCIPAL["secretAccessKey"]


def management(server: Server) -> Any:
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=f"http://127.0.0.1:{server.port}/bench",
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )


def connection(clients: contextlib.ExitStack, server: Server) -> tuple[ClientConnection, str]:
    ws = clients.enter_context(connect(f"ws://127.0.0.1:{server.port}/bench", open_timeout=10))
    # The worker's kept ids, oldest first: this one is the last (nothing else connects meanwhile).
    ws.send(json.dumps({"action": "ids", "offset": 0}))
    ids = str(ws.recv(timeout=10)).split("\n")
    return ws, ids[-1]


def measure(client: Any, ws: ClientConnection, connection_id: str, posts: int) -> tuple[float, float, float]:
    data = b"x" * 64
    for _ in range(posts // 10):
        client.post_to_connection(ConnectionId=connection_id, Data=data)
        ws.recv(timeout=10)
    rounds = []
    started = time.perf_counter()
    for _ in range(posts):
        t0 = time.perf_counter()
        client.post_to_connection(ConnectionId=connection_id, Data=data)
        ws.recv(timeout=10)
        rounds.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    q = statistics.quantiles(rounds, n=100)
    return q[49] * 1e3, q[98] * 1e3, posts / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--posts", type=int, default=2000)
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed")
    config = portico_config(with_connections=True)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        redis = RedisServer(work)
        redis.start()
        servers: list[Server] = []
        try:
            with contextlib.ExitStack() as clients:
                for name in ("a", "b", "c"):
                    (work / name).mkdir()
                flags = ["--redis", redis.url, "--redis-timeout-ms", "250"]
                # Each node a data directory of its own (cluster nodes replicate the admin store).
                node_a = start_server(config, work / "a", extra_args=[*flags, "--data-dir", str(work / "a")])
                servers.append(node_a)
                node_b = start_server(config, work / "b", extra_args=[*flags, "--data-dir", str(work / "b")])
                servers.append(node_b)
                node_c = start_server(config, work / "c", workers=2)
                servers.append(node_c)
                ws_a, id_a = connection(clients, node_a)
                ws_b, id_b = connection(clients, node_b)
                by_tag: dict[str, tuple[ClientConnection, str]] = {}
                for _ in range(60):
                    ws, cid = connection(clients, node_c)
                    by_tag.setdefault(cid[:6], (ws, cid))
                    if len(by_tag) == 2:
                        break
                via_a, via_c = management(node_a), management(node_c)
                rows = [("A -> A (same worker)", *measure(via_a, ws_a, id_a, args.posts))]
                rows.append(("A -> B (Redis pub/sub)", *measure(via_a, ws_b, id_b, args.posts)))
                for tag, (ws, cid) in by_tag.items():
                    rows.append((f"C -> C worker {tag}", *measure(via_c, ws, cid, args.posts)))
                print(f"{'PostToConnection, then the frame':<28} {'p50 ms':>8} {'p99 ms':>8} {'posts/s':>9}")
                for name, p50, p99, rate in rows:
                    print(f"{name:<28} {p50:8.2f} {p99:8.2f} {rate:9.0f}")
        finally:
            for server in servers:
                server.stop()
            redis.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
