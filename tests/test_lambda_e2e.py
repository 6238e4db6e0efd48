"""AWS_PROXY end to end: real handler modules behind a real server, driven over a socket."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import threading

import httpx
import pytest

FUNCTIONS = {
    "echo": "handlers.basic:echo",
    "context": "handlers.basic:echo_context",
    "returns": "handlers.basic:returns",
    "bytes": "handlers.basic:returns_bytes",
    "none": "handlers.basic:returns_none",
    "raises": "handlers.basic:raises",
    "slow": "handlers.basic:slow",
    "async": "handlers.basic:async_hello",
    "binary": "handlers.basic:binary",
}


def lambda_api(payload: str = "2.0", timeout_ms: int = 30000, stage: str = "$default") -> dict:
    def integration(function: str) -> dict:
        return {
            "type": "AWS_PROXY",
            "uri": f"arn:aws:lambda:us-east-1:123456789012:function:{function}",
            "payloadFormatVersion": payload,
            "timeoutInMillis": timeout_ms,
        }

    routes = [
        ("ANY /echo/{id}", "echo"),
        ("ANY /echo", "echo"),
        ("GET /context", "context"),
        ("POST /returns", "returns"),
        ("GET /bytes", "bytes"),
        ("GET /none", "none"),
        ("GET /raises", "raises"),
        ("GET /slow", "slow"),
        ("GET /async", "async"),
        ("GET /binary", "binary"),
    ]
    return {
        "apis": [
            {
                "name": "lambdas",
                "id": "lambdas1",
                "routes": [{"route": key, "integration": integration(fn)} for key, fn in routes],
                "stages": [{"name": stage, "variables": {"color": "blue", "size": "10"}}],
            }
        ]
    }


@pytest.fixture
def v2(portico):
    return portico(lambda_api("2.0", timeout_ms=1000), functions=FUNCTIONS)


@pytest.fixture
def v1(portico):
    return portico(lambda_api("1.0"), functions=FUNCTIONS)


def test_v2_event_shape(v2):
    response = httpx.post(
        v2.url + "/echo/42?a=1&a=2&b=x%2By+z",
        headers=[
            ("x-rep", "one"),
            ("x-rep", "two"),
            ("cookie", "c1=v1; c2=v2"),
            ("content-type", "application/json"),
        ],
        content=b'{"k":"v"}',
    )
    assert response.status_code == 200
    event = response.json()
    assert event["version"] == "2.0"
    assert event["routeKey"] == "ANY /echo/{id}"
    assert event["rawPath"] == "/echo/42"
    assert event["rawQueryString"] == "a=1&a=2&b=x%2By+z"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x+y z"}
    assert event["headers"]["x-rep"] == "one,two"
    assert "cookie" not in event["headers"]
    assert event["cookies"] == ["c1=v1", "c2=v2"]
    assert event["pathParameters"] == {"id": "42"}
    assert event["stageVariables"] == {"color": "blue", "size": "10"}
    assert event["body"] == '{"k":"v"}'
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["apiId"] == "lambdas1"
    assert context["stage"] == "$default"
    assert context["routeKey"] == "ANY /echo/{id}"
    assert context["requestId"] == response.headers["apigw-requestid"]
    assert context["http"]["method"] == "POST"
    assert context["http"]["path"] == "/echo/42"
    assert context["http"]["sourceIp"] == "127.0.0.1"
    assert isinstance(context["timeEpoch"], int)


def test_v2_binary_body_is_base64(v2):
    payload = bytes(range(256))
    event = httpx.post(
        v2.url + "/echo", content=payload, headers={"content-type": "application/octet-stream"}
    ).json()
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == payload
    assert "pathParameters" not in event
    assert "queryStringParameters" not in event


def test_v1_event_shape(v1):
    response = httpx.post(
        v1.url + "/echo/7?a=1&a=2",
        headers=[("x-rep", "one"), ("x-rep", "two"), ("cookie", "c=1")],
        content=b"hi",
    )
    event = response.json()
    assert event["version"] == "1.0"
    assert event["resource"] == "/echo/{id}"
    assert event["httpMethod"] == "POST"
    assert event["headers"]["x-rep"] == "two"
    assert event["multiValueHeaders"]["x-rep"] == ["one", "two"]
    assert event["queryStringParameters"] == {"a": "2"}
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"]}
    assert event["pathParameters"] == {"id": "7"}
    assert event["headers"]["cookie"] == "c=1"
    empty = httpx.get(v1.url + "/echo").json()
    assert empty["queryStringParameters"] is None
    assert empty["pathParameters"] is None
    assert empty["body"] is None


def test_context_object(v2):
    body = httpx.get(v2.url + "/context").json()
    assert body["function_name"] == "context"
    assert body["invoked_function_arn"] == "arn:aws:lambda:us-east-1:123456789012:function:context"
    assert body["function_version"] == "$LATEST"
    assert body["log_group_name"] == "/aws/lambda/context"
    assert 0 < body["remaining"] <= 1000


@pytest.mark.parametrize(
    ("returned", "status", "body"),
    [
        ({"statusCode": 201, "body": "made"}, 201, b"made"),
        ({"hello": "world"}, 200, b'{"hello": "world"}'),  # as the Python runtime serialises it
        ("just text", 200, b"just text"),
        ({"statusCode": 200, "cookies": ["a=1", "b=2"], "body": ""}, 200, b""),
        ({"statusCode": "nope"}, 500, b'{"message":"Internal Server Error"}'),
    ],
)
def test_v2_response_inference(v2, returned, status, body):
    response = httpx.post(v2.url + "/returns", content=json.dumps(returned))
    assert response.status_code == status
    assert response.content == body


def test_v2_cookies_become_set_cookie(v2):
    response = httpx.post(
        v2.url + "/returns", content=json.dumps({"statusCode": 200, "cookies": ["a=1", "b=2"]})
    )
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]


@pytest.mark.parametrize(
    ("returned", "status"),
    [
        ({"statusCode": 200}, 200),
        ({"statusCode": "201"}, 201),
        ({"headers": {"x": "y"}}, 200),
        ({"statusCode": "test"}, 502),
        ({"statusCode": 200, "wrongValue": 1}, 502),
        ({}, 200),
        ("plain string", 502),
        ({"statusCode": 200, "multiValueHeaders": {"x": "notalist"}}, 502),
    ],
)
def test_v1_malformed_response_table(portico, returned, status):
    # REST-style 1.0 rules, as an HTTP API with payload 1.0 applies them (errors worded the HTTP API way).
    server = portico(lambda_api("1.0"), functions=FUNCTIONS)
    response = httpx.post(server.url + "/returns", content=json.dumps(returned))
    expected = 500 if status == 502 else status
    assert response.status_code == expected
    if expected == 500:
        assert response.json() == {"message": "Internal Server Error"}


def test_handler_failures(v2):
    with httpx.Client(base_url=v2.url) as client:
        for path in ("/raises", "/bytes"):
            response = client.get(path)
            assert response.status_code == 500
            assert response.content == b'{"message":"Internal Server Error"}'
        assert client.get("/none").status_code == 200
        assert client.get("/async").json() == {"hello": "async"}
        binary = client.get("/binary")
        assert binary.content == bytes(range(256))


def test_timeout_is_503(v2):
    response = httpx.get(v2.url + "/slow?s=2")
    assert response.status_code == 503
    assert response.content == b'{"message":"Service Unavailable"}'


def test_slow_sync_handler_does_not_stall_others(v2):
    slow_done = threading.Event()

    def slow() -> int:
        status = httpx.get(v2.url + "/slow?s=0.9", timeout=10).status_code
        slow_done.set()
        return status

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow_future = pool.submit(slow)
        # While the slow handler sleeps in its thread, fast requests are answered.
        for _ in range(5):
            assert httpx.get(v2.url + "/echo").status_code == 200
        fast_finished_first = not slow_done.is_set()
        assert slow_future.result() == 200
    assert fast_finished_first
