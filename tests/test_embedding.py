"""Portico as a library: the data plane is an ASGI app that embeds in-process, with plugins."""

from __future__ import annotations

import httpx
import pytest

from portico.config.loader import parse_config
from portico.dataplane.build import build_dataplane
from portico.dataplane.context import RequestContext, Response
from portico.dataplane.errors import ErrorType, GatewayError
from portico.dataplane.plugins import Plugin
from portico.integrations.functions import FunctionRegistry

CONFIG = """
settings: {payloadLimitBytes: 1000}
apis:
  - name: embedded
    routes:
      - {route: "GET /hello", integration: hello}
      - {route: "POST /echo", integration: echo}
      - {route: "GET /mock", integration: {type: MOCK, statusCode: 202, body: accepted}}
    integrations:
      hello: {type: AWS_PROXY, uri: "arn:aws:lambda:eu-west-1:123456789012:function:hello"}
      echo: {type: AWS_PROXY, uri: echo}
"""


class TenantHeader(Plugin):
    """Refuses requests without `x-tenant`, and stamps responses with it."""

    async def on_request(self, ctx: RequestContext) -> Response | None:
        if ctx.header("x-tenant") is None:
            raise GatewayError(ErrorType.BAD_REQUEST, "missing x-tenant")
        if ctx.header("x-tenant") == "teapot":
            return Response(418, [("content-type", "text/plain")], b"short and stout")
        return None

    async def on_response(self, ctx: RequestContext, response: Response) -> Response:
        response.headers.append(("x-served-tenant", ctx.header("x-tenant") or ""))
        return response


@pytest.fixture
def registry() -> FunctionRegistry:
    registry = FunctionRegistry()
    registry.register("hello", lambda event, context: {"hi": event["requestContext"]["http"]["path"]})
    registry.register("echo", lambda event, context: {"statusCode": 200, "body": event.get("body") or ""})
    return registry


async def test_embedded_app_with_plugin(registry):
    app = build_dataplane(parse_config(CONFIG), registry=registry, plugins=[TenantHeader()])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/hello", headers={"x-tenant": "acme"})
        assert response.json() == {"hi": "/hello"}
        assert response.headers["x-served-tenant"] == "acme"
        assert (await client.get("/mock", headers={"x-tenant": "acme"})).status_code == 202
        refused = await client.get("/hello")
        assert refused.status_code == 400
        assert refused.json() == {"message": "Bad Request"}
        teapot = await client.get("/hello", headers={"x-tenant": "teapot"})
        assert teapot.status_code == 418


async def test_payload_limit_declared_and_streamed(registry):
    app = build_dataplane(parse_config(CONFIG), registry=registry)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        ok = await client.post("/echo", content=b"x" * 1000, headers={"content-type": "text/plain"})
        assert ok.status_code == 200
        assert ok.text == "x" * 1000
        declared = await client.post("/echo", content=b"x" * 1001)
        assert declared.status_code == 413
        assert declared.json() == {"message": "Request Entity Too Large"}

        async def chunks():
            for _ in range(20):
                yield b"y" * 100

        streamed = await client.post("/echo", content=chunks())
        assert streamed.status_code == 413


def test_one_app_serves_two_running_loops(registry):
    """Two ASGI servers' loops in two threads share one embedded app: each gets its answers."""
    import asyncio
    import threading

    app = build_dataplane(parse_config(CONFIG), registry=registry)

    async def get_many(count: int) -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [(await client.get("/mock")).status_code for _ in range(count)]

    first_running = threading.Event()
    results: dict[str, list[int]] = {}

    async def first() -> None:
        first_running.set()
        # Fewer: this loop ends (and stops watching) while the other still waits on answers.
        results["first"] = await get_many(20)

    thread = threading.Thread(target=lambda: asyncio.run(first()))
    thread.start()
    first_running.wait(5)
    results["second"] = asyncio.run(get_many(200))
    thread.join(30)
    assert results == {"first": [202] * 20, "second": [202] * 200}
