"""The function registry, invocation semantics and the AWS_PROXY integration end to end in-process."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import sys
import textwrap
import threading
import time

import httpx
import pytest

from portico.compile import spec as S
from portico.compile.files import CompiledConfig
from portico.config.models import Config
from portico.dataplane.app import DataPlane
from portico.dataplane.errors import ErrorType, GatewayError
from portico.integrations.functions import (
    FunctionRegistry,
    LambdaContext,
    function_name_from_uri,
    parse_function_uri,
)

# -------------------------------------------------------------------------------------------------
# URIs


@pytest.mark.parametrize(
    ("uri", "name", "qualifier", "region", "account"),
    [
        ("hello", "hello", None, None, None),
        ("my-func_2", "my-func_2", None, None, None),
        ("hello:prod", "hello", "prod", None, None),
        ("arn:aws:lambda:us-east-1:123456789012:function:hello", "hello", None, "us-east-1", "123456789012"),
        (
            "arn:aws:lambda:eu-west-1:123456789012:function:hello:prod",
            "hello",
            "prod",
            "eu-west-1",
            "123456789012",
        ),
        ("arn:aws:lambda:us-east-1:123456789012:function:hello:7", "hello", "7", "us-east-1", "123456789012"),
        (
            "arn:aws:lambda:us-east-1:123456789012:function:hello:$LATEST",
            "hello",
            "$LATEST",
            "us-east-1",
            "123456789012",
        ),
        (
            "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/"
            "arn:aws:lambda:us-east-1:123456789012:function:hello/invocations",
            "hello",
            None,
            "us-east-1",
            "123456789012",
        ),
        (
            "arn:aws:apigateway:us-west-2:lambda:path/2015-03-31/functions/"
            "arn:aws:lambda:us-west-2:123456789012:function:hello:live/invocations",
            "hello",
            "live",
            "us-west-2",
            "123456789012",
        ),
        (
            "arn:aws-cn:lambda:cn-north-1:123456789012:function:hello",
            "hello",
            None,
            "cn-north-1",
            "123456789012",
        ),
    ],
)
def test_function_uris(uri, name, qualifier, region, account):
    ref = parse_function_uri(uri)
    assert (ref.name, ref.qualifier, ref.region, ref.account_id) == (name, qualifier, region, account)
    assert function_name_from_uri(uri) == name


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "has space",
        "a/b",
        "arn:aws:lambda:us-east-1:123456789012:function:",
        "arn:aws:lambda:us-east-1:12345:function:hello",
        "arn:aws:s3:::bucket",
        "arn:aws:lambda:us-east-1:123456789012:layer:x",
        "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/nope/invocations",
        "http://example.com",
        "hello:a:b",
        "x" * 65,
    ],
)
def test_bad_function_uris(uri):
    with pytest.raises(ValueError):
        function_name_from_uri(uri)


def test_invoked_arn():
    ref = parse_function_uri("arn:aws:lambda:eu-west-1:123456789012:function:hello:prod")
    assert ref.arn() == "arn:aws:lambda:eu-west-1:123456789012:function:hello:prod"
    assert parse_function_uri("hello").arn("us-east-2", "111111111111") == (
        "arn:aws:lambda:us-east-2:111111111111:function:hello"
    )


# -------------------------------------------------------------------------------------------------
# Registry and loading


@pytest.fixture
def handler_module(tmp_path, monkeypatch):
    (tmp_path / "myhandlers.py").write_text(
        textwrap.dedent(
            """
            def handler(event, context):
                return {"ok": True}

            class Holder:
                @staticmethod
                def inner(event, context):
                    return "inner"

            NOT_CALLABLE = 3
            """
        )
    )
    (tmp_path / "broken.py").write_text("import does_not_exist_anywhere\n")
    monkeypatch.chdir(tmp_path)
    yield
    for name in ("myhandlers", "broken"):
        sys.modules.pop(name, None)


def test_register_spec_imports_from_cwd(handler_module, tmp_path):
    registry = FunctionRegistry()
    assert registry.register_spec("fn=myhandlers:handler") == "fn"
    assert "fn" in registry
    assert registry.get("fn").handler({}, None) == {"ok": True}
    registry.load("inner", "myhandlers:Holder.inner")
    assert registry.get("inner").handler({}, None) == "inner"
    registry.load("dotted", "myhandlers.handler")  # Lambda's own `file.function` form
    assert registry.names() == ["fn", "inner", "dotted"]
    assert str(tmp_path) in sys.path


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no-equals-sign", "NAME=module.path:attr"),
        ("=myhandlers:handler", "NAME=module.path:attr"),
        ("fn=", "NAME=module.path:attr"),
        ("bad name=myhandlers:handler", "not a valid function name"),
        ("fn=nosuchmodule_xyz:handler", "module 'nosuchmodule_xyz' not found"),
        ("fn=myhandlers:missing", "has no attribute 'missing'"),
        ("fn=myhandlers:NOT_CALLABLE", "is not callable"),
        ("fn=broken:handler", "importing 'broken' failed"),
        ("fn=myhandlers:", "module.path:attr"),
    ],
)
def test_bad_specs_name_the_spec(handler_module, spec, message):
    registry = FunctionRegistry()
    with pytest.raises(ValueError) as info:
        registry.register_spec(spec)
    assert message in str(info.value)
    assert spec in str(info.value)


def test_register_rejects_non_callables():
    with pytest.raises(ValueError):
        FunctionRegistry().register("fn", 3)  # type: ignore[arg-type]


# -------------------------------------------------------------------------------------------------
# Invocation


async def test_context_object_attributes():
    seen: dict = {}

    def handler(event, context):
        seen["context"] = context
        seen["remaining"] = context.get_remaining_time_in_millis()
        seen["thread"] = threading.current_thread().name
        return "ok"

    registry = FunctionRegistry()
    registry.register("hello", handler)
    ref = parse_function_uri("arn:aws:lambda:eu-west-1:123456789012:function:hello:prod")
    assert await registry.invoke(ref, {}, timeout_ms=2000) == "ok"
    context: LambdaContext = seen["context"]
    assert len(context.aws_request_id) == 36
    assert context.function_name == "hello"
    assert context.function_version == "$LATEST"
    assert context.invoked_function_arn == "arn:aws:lambda:eu-west-1:123456789012:function:hello:prod"
    assert context.memory_limit_in_mb == "128"
    assert context.log_group_name == "/aws/lambda/hello"
    assert "[$LATEST]" in context.log_stream_name
    assert context.identity.cognito_identity_id is None
    assert context.identity.cognito_identity_pool_id is None
    assert context.client_context is None
    assert context.tenant_id is None
    assert 1900 < seen["remaining"] <= 2000
    assert seen["thread"].startswith("portico-lambda")
    # after the deadline the remaining time floors at 0
    context._deadline_ms = time.time() * 1000 - 50
    assert context.get_remaining_time_in_millis() == 0
    context.log("a log line")


async def test_remaining_time_decreases():
    values = []

    def handler(event, context):
        values.append(context.get_remaining_time_in_millis())
        time.sleep(0.05)
        values.append(context.get_remaining_time_in_millis())

    registry = FunctionRegistry()
    registry.register("f", handler)
    await registry.invoke("f", {}, timeout_ms=1000)
    assert values[0] - values[1] >= 40


async def test_timeout_maps_to_integration_timeout():
    registry = FunctionRegistry()
    registry.register("slow", lambda event, context: time.sleep(0.5))

    async def slow_async(event, context):
        await asyncio.sleep(5)

    registry.register("slow_async", slow_async)
    for name in ("slow", "slow_async"):
        started = time.monotonic()
        with pytest.raises(GatewayError) as info:
            await registry.invoke(name, {}, timeout_ms=100)
        assert info.value.error_type is ErrorType.INTEGRATION_TIMEOUT
        assert time.monotonic() - started < 0.4


async def test_exception_maps_to_function_error_and_is_logged(caplog):
    def boom(event, context):
        raise RuntimeError("handler failed on purpose")

    async def aboom(event, context):
        raise KeyError("k")

    registry = FunctionRegistry()
    registry.register("boom", boom)
    registry.register("aboom", aboom)
    with caplog.at_level(logging.ERROR, logger="portico.lambda"):
        for name in ("boom", "aboom"):
            with pytest.raises(GatewayError) as info:
                await registry.invoke(name, {}, timeout_ms=1000)
            assert info.value.error_type is ErrorType.FUNCTION_ERROR
    records = [r for r in caplog.records if r.name == "portico.lambda"]
    assert any("handler failed on purpose" in r.getMessage() and r.exc_info for r in records)
    assert any("KeyError" in r.getMessage() for r in records)


async def test_unregistered_function():
    with pytest.raises(GatewayError) as info:
        await FunctionRegistry().invoke("ghost", {}, timeout_ms=1000)
    assert info.value.error_type is ErrorType.FUNCTION_ERROR
    assert "ghost is not registered" in info.value.detail


async def test_qualified_registration_wins():
    registry = FunctionRegistry()
    registry.register("fn", lambda e, c: "plain")
    registry.register("fn:prod", lambda e, c: "prod")
    assert await registry.invoke("fn:prod", {}, timeout_ms=1000) == "prod"
    assert await registry.invoke("fn:dev", {}, timeout_ms=1000) == "plain"


async def test_async_handler_runs_on_the_loop():
    loop_thread = threading.current_thread()
    seen = {}

    async def handler(event, context):
        seen["thread"] = threading.current_thread()
        await asyncio.sleep(0)
        return {"hello": "async"}

    class AsyncCallable:
        async def __call__(self, event, context):
            return "callable"

    registry = FunctionRegistry()
    registry.register("a", handler)
    registry.register("c", AsyncCallable())
    assert await registry.invoke("a", {}, timeout_ms=1000) == {"hello": "async"}
    assert seen["thread"] is loop_thread
    assert await registry.invoke("c", {}, timeout_ms=1000) == "callable"


async def test_slow_sync_handlers_run_concurrently_without_blocking_the_loop():
    registry = FunctionRegistry()
    registry.register("sleep", lambda event, context: time.sleep(0.3) or "done")
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    tick_task = asyncio.create_task(ticker())
    started = time.monotonic()
    results = await asyncio.gather(
        registry.invoke("sleep", {}, timeout_ms=5000), registry.invoke("sleep", {}, timeout_ms=5000)
    )
    elapsed = time.monotonic() - started
    tick_task.cancel()
    assert results == ["done", "done"]
    assert elapsed < 0.5  # ~1x the sleep, not 2x
    assert ticks >= 10  # the loop kept running meanwhile


# -------------------------------------------------------------------------------------------------
# The integration, through the core's pipeline (the embedded app's door)


def echo(event, context):
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(event)}


def serve(registry, integration, *, kind="http", stage="$default", variables=None, binary=()):
    """A data plane serving `integration` on every path of one API."""
    api = S.api(
        "testapi",
        "test",
        kind,
        [S.stage(stage, variables=variables or {})],
        routes=[S.route("ANY /{proxy+}", integration)],
        binary_media_types=binary,
    )
    return DataPlane(CompiledConfig(Config(), S.spec([api]), "dep"), registry=registry)


async def call(app, path="/x", method="GET", headers=None, content=None):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testapi.execute-api.localhost") as c:
        return await c.request(method, path, headers=headers, content=content)


async def test_integration_v2_round_trip():
    registry = FunctionRegistry()
    registry.register("echo", echo)
    app = serve(registry, S.lambda_proxy("arn:aws:lambda:us-east-1:123456789012:function:echo", "2.0", 1000))
    response = await call(
        app, method="POST", headers={"content-type": "application/json"}, content=b'{"k": 1}'
    )
    assert response.status_code == 200
    event = response.json()
    assert event["version"] == "2.0"
    assert event["body"] == '{"k": 1}'


async def test_integration_v1_http_api_and_rest():
    registry = FunctionRegistry()
    registry.register("echo", echo)
    event = (await call(serve(registry, S.lambda_proxy("echo", "1.0", 1000)))).json()
    assert event["version"] == "1.0"
    # REST APIs always get 1.0, whatever the payload version says
    rest = serve(registry, S.lambda_proxy("echo", "2.0", 1000), kind="rest", stage="prod")
    event = (await call(rest, "/prod/x")).json()
    assert "version" not in event
    assert event["requestContext"]["stage"] == "prod"


async def test_integration_rest_binary_media_types():
    def image(event, context):
        return {
            "isBase64Encoded": True,
            "body": base64.b64encode(b"\x89PNG").decode(),
            "headers": {"content-type": "image/png"},
        }

    registry = FunctionRegistry()
    registry.register("image", image)
    rest = serve(
        registry, S.lambda_proxy("image", "1.0", 1000), kind="rest", stage="v1", binary=["image/png"]
    )
    assert (await call(rest, "/v1/x", headers={"accept": "image/png"})).content == b"\x89PNG"
    text = await call(rest, "/v1/x", headers={"accept": "text/html"})
    assert text.content == base64.b64encode(b"\x89PNG")
    # HTTP API 1.0: always decoded
    http = serve(registry, S.lambda_proxy("image", "1.0", 1000))
    assert (await call(http, headers={"accept": "text/html"})).content == b"\x89PNG"


async def test_integration_stage_variable_function():
    registry = FunctionRegistry()
    registry.register("blue", lambda e, c: "blue")
    registry.register("green", lambda e, c: "green")
    uri = "arn:aws:lambda:us-east-1:123456789012:function:${stageVariables.fn}"
    assert (await call(serve(registry, S.lambda_proxy(uri), variables={"fn": "blue"}))).text == "blue"
    assert (await call(serve(registry, S.lambda_proxy(uri), variables={"fn": "green"}))).text == "green"
    # An unset stage variable fails the function; a function nobody registered is a configuration error.
    rest = serve(registry, S.lambda_proxy(uri), kind="rest", stage="p")
    assert (await call(rest, "/p/x")).status_code == 502
    rest = serve(registry, S.lambda_proxy(uri), kind="rest", stage="p", variables={"fn": "ghost"})
    response = await call(rest, "/p/x")
    assert (response.status_code, response.json()) == (500, {"message": "Internal server error"})


async def test_integration_errors():
    registry = FunctionRegistry()
    registry.register("bad", lambda e, c: {"statusCode": "nope"})
    registry.register("slow", lambda e, c: time.sleep(0.3))
    registry.register("raises", lambda e, c: 1 / 0)
    registry.register("unmarshalable", lambda e, c: {"statusCode": 200, "body": object()})
    rest = {"kind": "rest", "stage": "p"}
    assert (await call(serve(registry, S.lambda_proxy("bad")))).status_code == 500
    assert (await call(serve(registry, S.lambda_proxy("bad"), **rest), "/p/x")).status_code == 502
    assert (await call(serve(registry, S.lambda_proxy("slow", timeout_ms=50)))).status_code == 503
    assert (
        await call(serve(registry, S.lambda_proxy("slow", timeout_ms=50), **rest), "/p/x")
    ).status_code == 504
    assert (await call(serve(registry, S.lambda_proxy("raises"), **rest), "/p/x")).status_code == 502
    assert (await call(serve(registry, S.lambda_proxy("unmarshalable"), **rest), "/p/x")).status_code == 502


def test_integration_validates_configuration():
    with pytest.raises(ValueError):
        S.lambda_proxy("echo", "3.0", 1000)
