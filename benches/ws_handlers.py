"""Lambda handlers of the WebSocket benchmark (benches/websocket.py), written as AWS users write
them: `$connect` keeps the connection id (in the process instead of DynamoDB, as
tests/handlers/chat.py does), `$default` answers the message (two-way), `broadcast` posts one
message to every kept connection through the `@connections` API with boto3, one call per
connection ("Use @connections commands in your backend service" in the API Gateway developer
guide)."""

from __future__ import annotations

import json
import threading
from typing import Any

import boto3

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
