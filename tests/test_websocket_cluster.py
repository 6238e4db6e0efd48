"""WebSocket APIs on several workers and nodes: the `@connections` API reaching a connection
wherever it is held (`rust/websocket/relay.rs`, docs/websocket.md "Several workers and nodes").

Real clients only: `websockets` connecting as browsers do, boto3's `apigatewaymanagementapi`
signed with a principal's keys, `portico serve --workers 2`, two `portico serve --redis` nodes on a
real redis-server (the `redis_server` fixture), killed workers and a killed and restarted Redis.
The chat app (tests/handlers/chat.py) keeps its connection ids in one file every worker and node
reads, as its DynamoDB table would be shared.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from conftest import RedisServer, Server, start_server
from test_websocket import CONFIG, PRINCIPAL, REGION, STAGE, wait_for, whoami

OWNER_TAG_LEN = 6
# One attempt, and a read timeout that turns a hang into a failure.
NO_RETRIES = botocore.config.Config(retries={"total_max_attempts": 1}, read_timeout=5, connect_timeout=5)


@pytest.fixture
def servers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Server]]:
    """Start `portico serve` processes sharing the chat app's connection store (a file); their
    handlers' boto3 clients sign with the principal's keys, as a function's role would."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", PRINCIPAL["accessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", PRINCIPAL["secretAccessKey"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("CHAT_CONNECTIONS_FILE", str(tmp_path / "connections"))
    started: list[Server] = []

    def start(name: str, workers: int = 1, extra_args: list[str] | None = None) -> Server:
        workdir = tmp_path / name
        workdir.mkdir()
        # A data directory of its own (a cluster node replicates the admin API's store into it).
        args = ["--data-dir", str(workdir / "data"), *(extra_args or [])]
        server = start_server(CONFIG, workdir, workers=workers, extra_args=args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def management(server: Server, config: botocore.config.Config | None = None) -> Any:
    """A boto3 client of its own (its own connection pool: a new TCP connection, which either
    worker of the node may accept)."""
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=f"http://127.0.0.1:{server.port}/{STAGE}",
        region_name=REGION,
        aws_access_key_id=PRINCIPAL["accessKeyId"],
        aws_secret_access_key=PRINCIPAL["secretAccessKey"],
        config=config,
    )


@pytest.fixture
def clients() -> Iterator[contextlib.ExitStack]:
    """The test's WebSocket clients, closed at its end."""
    with contextlib.ExitStack() as stack:
        yield stack


def open_chat(clients: contextlib.ExitStack, server: Server) -> tuple[ClientConnection, str]:
    ws = clients.enter_context(connect(f"ws://127.0.0.1:{server.port}/{STAGE}", open_timeout=10))
    return ws, whoami(ws)


def error_code(operation: Callable[..., Any], **params: Any) -> tuple[str, int]:
    """The error code and HTTP status an operation is refused with."""
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        operation(**params)
    error = caught.value.response
    return error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]


def two_per_worker(
    clients: contextlib.ExitStack, server: Server, workers: int
) -> dict[str, list[tuple[ClientConnection, str]]]:
    """Two connections held by each worker, by the owner tag their ids start with (bounded
    attempts: the kernel hands each to either worker, unevenly under load). Only two are returned:
    a test that stops a worker posts to each in turn, and the stop must stay short of the clients'
    own keepalive timeout."""
    held: dict[str, list[tuple[ClientConnection, str]]] = {}
    for _ in range(200):
        ws, connection_id = open_chat(clients, server)
        held.setdefault(connection_id[:OWNER_TAG_LEN], []).append((ws, connection_id))
        if len(held) == workers and all(len(c) >= 2 for c in held.values()):
            return {tag: connections[:2] for tag, connections in held.items()}
    raise AssertionError(f"200 connections, per worker: {sorted(map(len, held.values()))}")


def worker_pids(server: Server) -> list[int]:
    """The server's Granian worker processes (children of its main process)."""
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(server.process.pid)], capture_output=True, text=True
    )
    return [int(pid) for pid in out.stdout.split()]


# The embedded ASGI app (`--no-edge`) holds its connections in Granian's workers; `@connections`
# reaches them the same way.
DOORS = pytest.mark.parametrize("door", [[], ["--no-edge"]], ids=["edge", "no-edge"])


@DOORS
def test_connection_ids_name_their_worker_and_every_worker_reaches_every_connection(
    servers, clients, door: list[str]
) -> None:
    server = servers("node", workers=2, extra_args=door)
    held = two_per_worker(clients, server, workers=2)
    connections = [c for cs in held.values() for c in cs]
    assert all(len(cid) == 16 and cid.endswith("=") for _, cid in connections)
    # Four clients, four TCP connections, each accepted by either worker: posts to every
    # connection, whichever worker holds it (from at least one worker, most likely both, the
    # post travels to the other's socket).
    for attempt in range(4):
        client = management(server, NO_RETRIES)
        for ws, connection_id in connections:
            client.post_to_connection(
                ConnectionId=connection_id, Data=f"{attempt} to {connection_id}".encode()
            )
            assert ws.recv(timeout=10) == f"{attempt} to {connection_id}"
            described = client.get_connection(ConnectionId=connection_id)
            assert described["Identity"]["SourceIp"] == "127.0.0.1"
            assert described["ConnectedAt"] <= described["LastActiveAt"]
    # A binary post stays binary across workers.
    for ws, connection_id in connections:
        management(server).post_to_connection(ConnectionId=connection_id, Data=b"\xff\x00bin")
        assert ws.recv(timeout=10) == b"\xff\x00bin"
    # Delete one connection of each worker, from fresh clients; then they are gone, everywhere.
    deleted = [cs[0] for cs in held.values()]
    for ws, connection_id in deleted:
        management(server, NO_RETRIES).delete_connection(ConnectionId=connection_id)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    # One the client closed itself.
    closed_ws, closed_id = next(cs[1] for cs in held.values())
    closed_ws.close()
    for _, connection_id in [*deleted, (closed_ws, closed_id)]:
        for _ in range(3):
            client = management(server, NO_RETRIES)
            assert error_code(client.get_connection, ConnectionId=connection_id) == ("GoneException", 410)
            assert error_code(client.post_to_connection, ConnectionId=connection_id, Data=b"x") == (
                "GoneException",
                410,
            )
    for ws, _ in connections:
        ws.close()


def test_the_connections_of_a_killed_worker_are_gone_not_waited_for(servers, clients) -> None:
    server = servers("node", workers=2)
    held = two_per_worker(clients, server, workers=2)
    pids = worker_pids(server)
    assert len(pids) == 2, pids
    os.kill(pids[0], signal.SIGKILL)
    # The killed worker's clients see their connections drop; the other's stay open.
    dead: list[str] = []
    alive: list[tuple[ClientConnection, str]] = []
    for connections in held.values():
        for ws, connection_id in connections:
            try:
                ws.send(json.dumps({"action": "whoami"}))
                assert json.loads(ws.recv(timeout=5))["connectionId"] == connection_id
                alive.append((ws, connection_id))
            except ConnectionClosed:
                dead.append(connection_id)
    assert {cid[:OWNER_TAG_LEN] for cid in dead} and len({cid[:OWNER_TAG_LEN] for cid in dead}) == 1
    assert alive
    # Granian replaces the worker (a new tag); the dead one's socket refuses: 410, no wait.
    wait_for(lambda: len(worker_pids(server)) == 2)
    for connection_id in dead:
        for _ in range(3):
            client = management(server, NO_RETRIES)
            assert error_code(client.post_to_connection, ConnectionId=connection_id, Data=b"x") == (
                "GoneException",
                410,
            )
    for ws, connection_id in alive:
        for _ in range(3):
            management(server, NO_RETRIES).post_to_connection(ConnectionId=connection_id, Data=b"still here")
            assert ws.recv(timeout=10) == "still here"
        ws.close()


def _two_nodes(servers, redis_server: RedisServer, door_b: list[str] | None = None) -> tuple[Server, Server]:
    # This machine's two cores run the nodes, Redis and the clients at once (as in test_cluster).
    flags = ["--redis", redis_server.url, "--redis-timeout-ms", "250"]
    return servers("a", extra_args=flags), servers("b", extra_args=[*flags, *(door_b or [])])


@DOORS
def test_a_post_to_node_a_reaches_a_client_on_node_b(
    servers, clients, redis_server: RedisServer, door: list[str]
) -> None:
    """Node B serves through `door`: an edge node's handler and `@connections` reach an embedded
    app's connections across the cluster, and back."""
    node_a, node_b = _two_nodes(servers, redis_server, door)
    ws_b, id_b = open_chat(clients, node_b)
    ws_a, id_a = open_chat(clients, node_a)
    via_a, via_b = management(node_a, NO_RETRIES), management(node_b, NO_RETRIES)
    via_a.post_to_connection(ConnectionId=id_b, Data=b"from node A")
    assert ws_b.recv(timeout=10) == "from node A"
    via_b.post_to_connection(ConnectionId=id_a, Data=b"from node B")
    assert ws_a.recv(timeout=10) == "from node B"
    described = via_a.get_connection(ConnectionId=id_b)
    assert described["Identity"]["SourceIp"] == "127.0.0.1"
    # The chat app's broadcast, run by node A's handler, reaches the clients of both nodes.
    ws_a.send(json.dumps({"action": "sendmessage", "message": "hello, everyone"}))
    assert ws_a.recv(timeout=10) == "hello, everyone"
    assert ws_b.recv(timeout=10) == "hello, everyone"
    # Deleted from node A: closed on node B, and gone for both nodes.
    via_a.delete_connection(ConnectionId=id_b)
    with pytest.raises(ConnectionClosed) as closed:
        ws_b.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    for via in (via_a, via_b):
        assert error_code(via.get_connection, ConnectionId=id_b) == ("GoneException", 410)
    # A tag no process of the cluster holds: 410 at once (PUBLISH reached nobody).
    stranger = "zzzzzz" + id_b[OWNER_TAG_LEN:]
    assert error_code(via_a.post_to_connection, ConnectionId=stranger, Data=b"x") == ("GoneException", 410)
    # The broadcast again: the deleted connection is gone (the handler forgets it), node B's new
    # client gets it.
    ws_b2, id_b2 = open_chat(clients, node_b)
    ws_a.send(json.dumps({"action": "sendmessage", "message": "again"}))
    assert ws_a.recv(timeout=10) == "again"
    assert ws_b2.recv(timeout=10) == "again"
    stored = set((Path(os.environ["CHAT_CONNECTIONS_FILE"])).read_text().split())
    assert id_b not in stored and {id_a, id_b2} <= stored
    for ws in (ws_a, ws_b2):
        ws.close()


def test_without_redis_local_posts_go_on_and_cross_node_ones_are_503_until_it_is_back(
    servers, clients, redis_server: RedisServer
) -> None:
    node_a, node_b = _two_nodes(servers, redis_server)
    ws_a, id_a = open_chat(clients, node_a)
    ws_b, id_b = open_chat(clients, node_b)
    management(node_a, NO_RETRIES).post_to_connection(ConnectionId=id_b, Data=b"before")
    assert ws_b.recv(timeout=10) == "before"
    redis_server.kill()
    # Node A still reaches its own connections; node B's cannot be reached, and are not called
    # gone (they are open): 503 ServiceUnavailableException, at once.
    for _ in range(3):
        via_a = management(node_a, NO_RETRIES)
        via_a.post_to_connection(ConnectionId=id_a, Data=b"local")
        assert ws_a.recv(timeout=10) == "local"
        assert error_code(via_a.post_to_connection, ConnectionId=id_b, Data=b"lost") == (
            "ServiceUnavailableException",
            503,
        )
        assert error_code(via_a.get_connection, ConnectionId=id_b) == ("ServiceUnavailableException", 503)
    redis_server.start()
    # Back: the nodes reconnect and resubscribe; meanwhile a cross-node post is refused (503),
    # never called gone.
    answers: list[str] = []

    def delivered() -> bool:
        try:
            management(node_a, NO_RETRIES).post_to_connection(ConnectionId=id_b, Data=b"after")
            return True
        except botocore.exceptions.ClientError as exc:
            answers.append(exc.response["Error"]["Code"])
            return False

    wait_for(delivered, timeout=15)
    assert set(answers) <= {"ServiceUnavailableException"}, answers
    assert ws_b.recv(timeout=10) == "after"
    management(node_b, NO_RETRIES).post_to_connection(ConnectionId=id_a, Data=b"and back")
    assert ws_a.recv(timeout=10) == "and back"
    for ws in (ws_a, ws_b):
        ws.close()


def test_a_hung_worker_s_connections_are_503_after_the_relay_timeout_then_reached_again(
    servers, clients
) -> None:
    server = servers("node", workers=2)
    held = two_per_worker(clients, server, workers=2)
    pids = worker_pids(server)
    assert len(pids) == 2, pids
    os.kill(pids[0], signal.SIGSTOP)
    try:
        # The other worker accepts every new TCP connection; what it holds is posted to, what the
        # hung one holds cannot be: 503 once the relay gives up waiting, not a hang and not 410.
        answers: dict[str, set[str]] = {}
        for tag, connections in held.items():
            for _, connection_id in connections:
                client = management(server, NO_RETRIES)
                try:
                    client.post_to_connection(ConnectionId=connection_id, Data=b"are you there")
                    answers.setdefault(tag, set()).add("posted")
                except botocore.exceptions.ClientError as exc:
                    answers.setdefault(tag, set()).add(exc.response["Error"]["Code"])
        assert sorted(answers.values(), key=sorted) == [{"ServiceUnavailableException"}, {"posted"}], answers
        # Past the relay's deadline of the last request (2 s after it was sent).
        time.sleep(2.5)
    finally:
        os.kill(pids[0], signal.SIGCONT)
    # Going again, the worker does not carry out what it was told too late (its callers were told
    # 503), and is reached as before.
    for tag, connections in held.items():
        for ws, connection_id in connections:
            if answers[tag] == {"posted"}:
                assert ws.recv(timeout=10) == "are you there"
            management(server, NO_RETRIES).post_to_connection(ConnectionId=connection_id, Data=b"back")
            assert ws.recv(timeout=10) == "back"


def test_a_hung_redis_is_503_then_cross_node_posts_work_again(
    servers, clients, redis_server: RedisServer
) -> None:
    node_a, node_b = _two_nodes(servers, redis_server)
    ws_a, id_a = open_chat(clients, node_a)
    ws_b, id_b = open_chat(clients, node_b)
    redis_server.freeze()
    try:
        via_a = management(node_a, NO_RETRIES)
        assert error_code(via_a.post_to_connection, ConnectionId=id_b, Data=b"x") == (
            "ServiceUnavailableException",
            503,
        )
        via_a.post_to_connection(ConnectionId=id_a, Data=b"local")
        assert ws_a.recv(timeout=10) == "local"
        # Past the deadline of the refused post, which Redis still holds.
        time.sleep(2.5)
    finally:
        redis_server.thaw()

    def delivered() -> bool:
        try:
            management(node_a, NO_RETRIES).post_to_connection(ConnectionId=id_b, Data=b"thawed")
            return True
        except botocore.exceptions.ClientError as exc:
            assert exc.response["Error"]["Code"] == "ServiceUnavailableException"
            return False

    wait_for(delivered, timeout=15)
    # The refused post was not carried out when Redis handed it over late.
    assert ws_b.recv(timeout=10) == "thawed"
