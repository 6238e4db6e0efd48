"""The embedded app's WebSocket hand-off (`DataPlane.hold`) driven as an ASGI server drives it,
for what Granian (which tests/test_websocket.py runs it behind) does not do: a server without
ASGI's "Websocket Denial Response" extension, a scope without the handshake's headers, and a
connection lost with ASGI's 1006. The connection itself is the core's, as at the edge."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

from portico.config.loader import parse_config
from portico.dataplane.app import DataPlane
from portico.dataplane.build import build_dataplane
from portico.integrations.functions import FunctionRegistry

CONFIG = {
    "apis": [
        {
            "name": "chat",
            "protocolType": "WEBSOCKET",
            "routeSelectionExpression": "$request.body.action",
            "routes": [
                {"routeKey": "$connect", "integration": {"type": "AWS_PROXY", "integrationUri": "connect"}},
                {"routeKey": "$disconnect", "integration": {"type": "AWS_PROXY", "integrationUri": "gone"}},
                {
                    "routeKey": "$default",
                    "integration": {"type": "AWS_PROXY", "integrationUri": "echo"},
                    "routeResponseSelectionExpression": "$default",
                },
            ],
            "stages": [{"stageName": "prod"}],
        }
    ]
}


class Handlers:
    def __init__(self) -> None:
        self.disconnects: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def registry(self) -> FunctionRegistry:
        registry = FunctionRegistry()
        registry.register("connect", self.connect)
        registry.register(
            "echo", lambda event, context: {"statusCode": 200, "body": "echo: " + event["body"]}
        )
        registry.register("gone", self.gone)
        return registry

    def connect(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        if (event.get("queryStringParameters") or {}).get("refuse"):
            return {"statusCode": 403}
        return {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": "chat.v1"}}

    def gone(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        with self.lock:
            self.disconnects.append(event["requestContext"])
        return {"statusCode": 200}


class AsgiClient:
    """One `websocket` scope, with the messages a server would hand the app and those it sent."""

    def __init__(self, app: DataPlane, query: bytes = b"", extensions: dict[str, Any] | None = None) -> None:
        self.to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        scope = {
            "type": "websocket",
            "path": "/prod",
            "raw_path": b"/prod",
            "query_string": query,
            # No Upgrade, Connection or Sec-WebSocket-* headers: servers need not pass them on.
            "headers": [(b"host", b"chat.test")],
            "subprotocols": ["chat.v1", "chat.v0"],
            "client": ("192.0.2.7", 50000),
            "scheme": "ws",
            "http_version": "1.1",
            "extensions": extensions or {},
        }
        self.to_app.put_nowait({"type": "websocket.connect"})
        self.task = asyncio.get_running_loop().create_task(app(scope, self.to_app.get, self.from_app.put))

    async def sent(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.from_app.get(), timeout=10)


@pytest.fixture
async def embedded() -> Any:
    handlers = Handlers()
    app = build_dataplane(parse_config(json.dumps(CONFIG)), registry=handlers.registry())
    yield app, handlers
    await asyncio.to_thread(app.stop)


async def test_a_refusal_without_the_denial_extension_is_a_close_before_accepting(embedded: Any) -> None:
    app, _ = embedded
    client = AsgiClient(app, query=b"refuse=1")
    assert await client.sent() == {"type": "websocket.close", "code": 1000}
    await asyncio.wait_for(client.task, timeout=10)
    # With the extension: the integration's status.
    client = AsgiClient(app, query=b"refuse=1", extensions={"websocket.http.response": {}})
    start = await client.sent()
    assert start["type"] == "websocket.http.response.start" and start["status"] == 403
    assert (await client.sent())["type"] == "websocket.http.response.body"


async def test_messages_both_ways_and_a_lost_connection_disconnects_once(embedded: Any) -> None:
    app, handlers = embedded
    client = AsgiClient(app)
    assert await client.sent() == {"type": "websocket.accept", "subprotocol": "chat.v1"}
    client.to_app.put_nowait({"type": "websocket.receive", "text": "hello"})
    assert await client.sent() == {"type": "websocket.send", "text": "echo: hello"}
    # Over 128 KB: the core closes with 1009 (the server joined the frames).
    client.to_app.put_nowait({"type": "websocket.receive", "text": "x" * (128 * 1024 + 1)})
    assert await client.sent() == {"type": "websocket.close", "code": 1009, "reason": "Message too big"}
    # The app returns once the core lets the connection go, without waiting for the server.
    await asyncio.wait_for(client.task, timeout=10)
    for _ in range(100):
        if handlers.disconnects:
            break
        await asyncio.sleep(0.05)
    assert [d["disconnectStatusCode"] for d in handlers.disconnects] == [1009]

    lost = AsgiClient(app)
    assert (await lost.sent())["type"] == "websocket.accept"
    lost.to_app.put_nowait({"type": "websocket.disconnect", "code": 1006})
    await asyncio.wait_for(lost.task, timeout=10)
    for _ in range(100):
        if len(handlers.disconnects) == 2:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    assert [d["disconnectStatusCode"] for d in handlers.disconnects] == [1009, 1006]
    assert handlers.disconnects[1]["identity"]["sourceIp"] == "192.0.2.7"
