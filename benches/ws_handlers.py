"""Lambda handlers of the WebSocket benchmark (benches/websocket.py), written as AWS users write
them: `$connect` keeps the connection id (in the process instead of DynamoDB, as
tests/handlers/chat.py does), `$default` answers the message (two-way), `broadcast` posts one
message to every kept connection through the `@connections` API with boto3, one call per
connection ("Use @connections commands in your backend service" in the API Gateway developer
guide); `broadcast_pooled` does the same the way a handler written for speed does on AWS: one
boto3 client kept between invocations (Lambda's best practices: initialize SDK clients outside
the handler) with a connection pool as large as its thread pool, the posts made concurrently."""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config

_lock = threading.Lock()
_connections: list[str] = []


def connect(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with _lock:
        _connections.append(event["requestContext"]["connectionId"])
    return {"statusCode": 200}


def disconnect(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with _lock:
        # A list, not a set: the broadcast posts in the order connections came (a removal is rare).
        if event["requestContext"]["connectionId"] in _connections:
            _connections.remove(event["requestContext"]["connectionId"])
    return {"statusCode": 200}


def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """`$default` (two-way): the message back, unchanged."""
    return {"statusCode": 200, "body": event["body"]}


def connection_ids(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Two-way: the kept ids from `offset` on, at most 4,000 (a frame stays under 128 KB), one a
    line; the benchmark's client-side broadcast posts to them itself."""
    offset = int(json.loads(event["body"])["offset"])
    with _lock:
        page = _connections[offset : offset + 4000]
    return {"statusCode": 200, "body": "\n".join(page)}


def broadcast(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """One-way: the message to every kept connection, one `PostToConnection` after another, with
    the event's `domainName` and `stage` as the endpoint (as on AWS)."""
    context_ = event["requestContext"]
    client = boto3.client(
        "apigatewaymanagementapi", endpoint_url=f"http://{context_['domainName']}/{context_['stage']}"
    )
    with _lock:
        targets = list(_connections)
    data = b"broadcast"
    for connection_id in targets:
        try:
            client.post_to_connection(ConnectionId=connection_id, Data=data)
        except client.exceptions.GoneException:  # gone meanwhile: forget it, as AWS's tutorial does
            with _lock:
                if connection_id in _connections:
                    _connections.remove(connection_id)
    return {"statusCode": 200}


# Threads posting at once (WSBENCH_POSTING_THREADS to try others).
POSTING_THREADS = int(os.environ.get("WSBENCH_POSTING_THREADS", "32"))
_posting = ThreadPoolExecutor(POSTING_THREADS, thread_name_prefix="post")
_clients: dict[str, Any] = {}  # endpoint -> its management API client, kept between invocations


def _management_client(endpoint: str) -> Any:
    with _lock:
        client = _clients.get(endpoint)
        if client is None:
            # boto3 clients are thread-safe; botocore keeps 10 connections alive unless told more.
            config = Config(max_pool_connections=POSTING_THREADS)
            client = _clients[endpoint] = boto3.client(
                "apigatewaymanagementapi", endpoint_url=endpoint, config=config
            )
        return client


def broadcast_pooled(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """One-way: `broadcast`'s work, the posts from POSTING_THREADS threads sharing one client."""
    context_ = event["requestContext"]
    client = _management_client(f"http://{context_['domainName']}/{context_['stage']}")
    with _lock:
        targets = list(_connections)
    data = b"broadcast"

    def post(connection_id: str) -> None:
        try:
            client.post_to_connection(ConnectionId=connection_id, Data=data)
        except client.exceptions.GoneException:
            with _lock:
                if connection_id in _connections:
                    _connections.remove(connection_id)

    list(_posting.map(post, targets))
    return {"statusCode": 200}
