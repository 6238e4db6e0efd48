"""A chat app as AWS's WebSocket tutorial writes it ("Tutorial: Create a WebSocket chat app with a
WebSocket API, Lambda and DynamoDB"): `$connect` keeps the connection id, `sendmessage` posts the
message to every connection through the `@connections` API, `$disconnect` forgets the id. The
ids live in the process instead of DynamoDB, or, when `CHAT_CONNECTIONS_FILE` names a file, in that
file (one id a line, under a lock), which every worker of every node shares as they would share a
table; every event is kept so that tests can read back what the handlers were sent (the two-way
`events` route answers with them)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3

_lock = threading.Lock()
_connections: set[str] = set()
_events: list[dict[str, Any]] = []


def _record(event: dict[str, Any]) -> None:
    with _lock:
        _events.append(event)


@contextlib.contextmanager
def _stored() -> Iterator[set[str]]:
    """The connection ids, changed in place under the lock (the file's, when shared)."""
    path = os.environ.get("CHAT_CONNECTIONS_FILE")
    if not path:
        with _lock:
            yield _connections
        return
    with _lock, open(path, "a+") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        file.seek(0)
        ids = {line.strip() for line in file if line.strip()}
        before = set(ids)
        yield ids
        if ids != before:
            file.seek(0)
            file.truncate()
            file.write("".join(f"{i}\n" for i in sorted(ids)))


def connect(event: dict[str, Any], context: Any) -> dict[str, Any]:
    _record(event)
    query = event.get("queryStringParameters") or {}
    if "refuse" in query:
        return {"statusCode": int(query["refuse"]), "body": "not you"}
    response: dict[str, Any] = {"statusCode": 200}
    # A client offering subprotocols is answered with the first one it offered.
    offered = (event.get("headers") or {}).get("sec-websocket-protocol")
    if offered:
        response["headers"] = {"Sec-WebSocket-Protocol": offered.split(",")[0].strip()}
    with _stored() as connections:
        connections.add(event["requestContext"]["connectionId"])
    return response


def disconnect(event: dict[str, Any], context: Any) -> dict[str, Any]:
    _record(event)
    with _stored() as connections:
        connections.discard(event["requestContext"]["connectionId"])
    return {"statusCode": 200}


def send_message(event: dict[str, Any], context: Any) -> dict[str, Any]:
    _record(event)
    domain = event["requestContext"]["domainName"]
    stage = event["requestContext"]["stage"]
    client = boto3.client("apigatewaymanagementapi", endpoint_url=f"http://{domain}/{stage}")
    message = json.loads(event["body"])["message"]
    with _stored() as stored:
        connections = sorted(stored)
    for connection_id in connections:
        try:
            client.post_to_connection(ConnectionId=connection_id, Data=message.encode())
        except client.exceptions.GoneException:
            with _stored() as stored:
                stored.discard(connection_id)
    return {"statusCode": 200}


def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """`$default` (two-way): the message back."""
    _record(event)
    return {"statusCode": 200, "body": f"echo: {event['body']}"}


def whoami(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A two-way route: the connection's own id."""
    _record(event)
    return {"statusCode": 200, "body": json.dumps({"connectionId": event["requestContext"]["connectionId"]})}


def quiet(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A one-way route: its answer is never sent."""
    _record(event)
    return {"statusCode": 200, "body": "you should not see this"}


def fail(event: dict[str, Any], context: Any) -> dict[str, Any]:
    raise RuntimeError("the handler failed")


def events(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A two-way route: every event the handlers were sent so far."""
    with _lock:
        return {"statusCode": 200, "body": json.dumps(_events)}


def authorize(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """`$connect`'s Lambda REQUEST authorizer ("Control access to WebSocket APIs with AWS Lambda
    REQUEST authorizers"): the token (the `Auth` header, or the `token` query parameter) names the
    user; `deny...` is denied by the policy, `unauthorized` is AWS's 401, `fail` raises, `hang`
    outlasts the gateway's wait. A `Usage-Key` header is answered as the `usageIdentifierKey`."""
    _record(event)
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    token = headers.get("auth") or (event.get("queryStringParameters") or {}).get("token") or ""
    if token == "fail":
        raise RuntimeError("the authorizer failed")
    if token == "hang":  # past the 10 s API Gateway waits for an authorizer
        time.sleep(11)
    if token == "unauthorized":
        raise Exception("Unauthorized")
    effect = "Deny" if token.startswith("deny") else "Allow"
    answer: dict[str, Any] = {
        "principalId": f"user-{token}",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": event["methodArn"]}],
        },
        "context": {"user": token, "level": 3, "admin": False},
    }
    # The API key the connection is held to, for APIs whose apiKeySelectionExpression is
    # `$context.authorizer.usageIdentifierKey`.
    if "usage-key" in headers:
        answer["usageIdentifierKey"] = headers["usage-key"]
    return answer
