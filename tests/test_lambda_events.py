"""Lambda proxy events (aws-semantics §2.1-2.3), built from hand-made request contexts."""

from __future__ import annotations

import base64
import re
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from factories import EPOCH_MS, make_ctx
from portico.integrations.lambda_events import (
    build_event_v1,
    build_event_v2,
    format_request_time,
    is_binary_media_type,
    is_text_media_type_http_api,
    new_extended_request_id,
    parse_query,
)

TRACE = re.compile(r"Root=1-[0-9a-f]{8}-[0-9a-f]{24}")

# -------------------------------------------------------------------------------------------------
# 2.0


def test_v2_documented_shape():
    ctx = make_ctx(
        method="POST",
        raw_query="parameter1=value1&parameter1=value2&parameter2=value",
        headers=[
            ("host", "abc123.execute-api.us-east-1.amazonaws.com"),
            ("user-agent", "agent"),
            ("header2", "value1"),
            ("header2", "value2"),
            ("content-type", "text/plain"),
            ("cookie", "cookie1=a; cookie2=b"),
        ],
        path_params={"parameter1": "value1"},
        stage_variables={"stageVariable1": "value1"},
    )
    event = build_event_v2(ctx, b"Hello from Lambda")
    assert list(event) == [
        "version",
        "routeKey",
        "rawPath",
        "rawQueryString",
        "cookies",
        "headers",
        "queryStringParameters",
        "requestContext",
        "body",
        "pathParameters",
        "isBase64Encoded",
        "stageVariables",
    ]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "$default"
    assert event["rawPath"] == "/my/path"
    assert event["rawQueryString"] == "parameter1=value1&parameter1=value2&parameter2=value"
    assert event["cookies"] == ["cookie1=a", "cookie2=b"]
    assert event["queryStringParameters"] == {"parameter1": "value1,value2", "parameter2": "value"}
    assert event["body"] == "Hello from Lambda"
    assert event["isBase64Encoded"] is False
    assert event["pathParameters"] == {"parameter1": "value1"}
    assert event["stageVariables"] == {"stageVariable1": "value1"}
    headers = event["headers"]
    assert headers["header2"] == "value1,value2"
    assert "cookie" not in headers
    assert headers["x-forwarded-for"] == "192.0.2.1"
    assert headers["x-forwarded-port"] == "443"
    assert headers["x-forwarded-proto"] == "https"
    assert TRACE.fullmatch(headers["x-amzn-trace-id"])
    assert event["requestContext"] == {
        "accountId": "123456789012",
        "apiId": "abc123",
        "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
        "domainPrefix": "abc123",
        "http": {
            "method": "POST",
            "path": "/my/path",
            "protocol": "HTTP/1.1",
            "sourceIp": "192.0.2.1",
            "userAgent": "agent",
        },
        "requestId": "JKJaXmPLvHcESHA=",
        "routeKey": "$default",
        "stage": "$default",
        "time": "12/Mar/2020:19:03:58 +0000",
        "timeEpoch": EPOCH_MS,
    }


def test_v2_omits_empty_members():
    event = build_event_v2(make_ctx(), b"")
    for key in ("cookies", "queryStringParameters", "pathParameters", "stageVariables", "body"):
        assert key not in event
    assert event["rawQueryString"] == ""
    assert event["isBase64Encoded"] is False


def test_v2_named_stage_raw_path():
    ctx = make_ctx(stage="dev", path="/testApi", route_key="GET /testApi")
    event = build_event_v2(ctx, b"")
    assert event["rawPath"] == "/dev/testApi"
    assert event["requestContext"]["http"]["path"] == "/dev/testApi"
    assert event["requestContext"]["stage"] == "dev"
    assert event["routeKey"] == "GET /testApi"


def test_v2_repeated_cookie_headers_and_no_space():
    ctx = make_ctx(headers=[("cookie", "a=1; b=2"), ("x", "1"), ("cookie", "c=3;d=4")])
    event = build_event_v2(ctx, b"")
    assert event["cookies"] == ["a=1", "b=2", "c=3", "d=4"]
    assert "cookie" not in event["headers"]


@pytest.mark.parametrize(
    ("content_type", "binary"),
    [
        ("text/plain", False),
        ("text/html; charset=utf-8", False),
        ("application/json", False),
        ("Application/JSON; charset=UTF-8", False),
        ("application/xml", False),
        ("application/javascript", False),
        (None, True),
        ("application/octet-stream", True),
        ("application/x-www-form-urlencoded", True),
        ("image/png", True),
        ("multipart/form-data; boundary=x", True),
        ("application/problem+json", True),
    ],
)
def test_v2_base64_rule(content_type, binary):
    headers = [("host", "h.example.com")]
    if content_type:
        headers.append(("content-type", content_type))
    event = build_event_v2(make_ctx(method="POST", headers=headers), b"hello")
    assert event["isBase64Encoded"] is binary
    assert event["body"] == (base64.b64encode(b"hello").decode() if binary else "hello")
    assert is_text_media_type_http_api(content_type) is not binary


def test_v2_binary_body_round_trips():
    payload = bytes(range(256))
    ctx = make_ctx(method="POST", headers=[("content-type", "application/octet-stream")])
    event = build_event_v2(ctx, payload)
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == payload


def test_v2_invalid_utf8_text_body_is_base64():
    ctx = make_ctx(method="POST", headers=[("content-type", "text/plain")])
    event = build_event_v2(ctx, b"\xff\xfe")
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\xff\xfe"


def test_forwarded_headers_append_and_port_from_host():
    ctx = make_ctx(
        host="localhost:8080",
        scheme="http",
        headers=[
            ("host", "localhost:8080"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "spoofed"),
            ("x-amzn-trace-id", "Root=1-5e7fe714-fee6909429159440eb352c40"),
        ],
    )
    headers = build_event_v2(ctx, b"")["headers"]
    assert headers["x-forwarded-for"] == "203.0.113.9, 192.0.2.1"
    assert headers["x-forwarded-port"] == "8080"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-amzn-trace-id"] == "Root=1-5e7fe714-fee6909429159440eb352c40"
    context = build_event_v2(ctx, b"")["requestContext"]
    assert context["domainName"] == "localhost:8080"
    assert context["domainPrefix"] == "localhost"


def test_host_added_and_hop_by_hop_dropped():
    ctx = make_ctx(host="api.example.com", headers=[("connection", "keep-alive"), ("content-length", "3")])
    headers = build_event_v2(ctx, b"abc")["headers"]
    assert headers["host"] == "api.example.com"
    assert "connection" not in headers
    assert headers["content-length"] == "3"  # HTTP APIs keep it
    rest = build_event_v1(make_ctx(kind="rest", headers=[("content-length", "3")]), b"abc")
    assert "content-length" not in rest["headers"]


# -------------------------------------------------------------------------------------------------
# 1.0 for HTTP APIs


def test_http_v1_shape_and_nulls():
    event = build_event_v1(make_ctx(), b"")
    assert list(event) == [
        "version",
        "resource",
        "path",
        "httpMethod",
        "headers",
        "multiValueHeaders",
        "queryStringParameters",
        "multiValueQueryStringParameters",
        "requestContext",
        "pathParameters",
        "stageVariables",
        "body",
        "isBase64Encoded",
    ]
    assert event["version"] == "1.0"
    assert event["resource"] == "$default"
    for key in (
        "queryStringParameters",
        "multiValueQueryStringParameters",
        "pathParameters",
        "stageVariables",
        "body",
    ):
        assert key in event
        assert event[key] is None
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["authorizer"] == {"claims": None, "scopes": None}
    assert context["resourceId"] is None
    assert context["resourcePath"] == "$default"
    assert context["stage"] == "$default"
    assert context["extendedRequestId"] == context["requestId"] == "JKJaXmPLvHcESHA="
    assert context["requestTime"] == "12/Mar/2020:19:03:58 +0000"
    assert context["requestTimeEpoch"] == EPOCH_MS
    assert "deploymentId" not in context
    assert context["identity"]["sourceIp"] == "192.0.2.1"
    assert context["identity"]["userAgent"] == "curl/8.5.0"
    assert context["identity"]["accessKey"] is None


def test_http_v1_repeats_last_value_wins():
    ctx = make_ctx(
        raw_query="a=1&a=2&b=x%20y",
        headers=[("x-rep", "one"), ("x-rep", "two"), ("cookie", "c=1")],
        route_key="GET /items/{id}",
        path_params={"id": "7"},
        stage="dev",
        path="/items/7",
        stage_variables={"color": "blue"},
    )
    event = build_event_v1(ctx, b"")
    assert event["headers"]["x-rep"] == "two"
    assert event["multiValueHeaders"]["x-rep"] == ["one", "two"]
    assert event["headers"]["cookie"] == "c=1"
    assert event["queryStringParameters"] == {"a": "2", "b": "x y"}
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"], "b": ["x y"]}
    assert event["pathParameters"] == {"id": "7"}
    assert event["stageVariables"] == {"color": "blue"}
    assert event["resource"] == "/items/{id}"
    assert event["path"] == "/dev/items/7"
    assert event["requestContext"]["path"] == "/dev/items/7"
    assert event["requestContext"]["resourcePath"] == "/items/{id}"
    # every header name is lower-case for HTTP APIs
    assert all(name == name.lower() for name in event["headers"])


def test_http_v1_base64_uses_http_api_rule():
    ctx = make_ctx(method="POST", headers=[("content-type", "application/octet-stream")])
    event = build_event_v1(ctx, b"\x00\x01", ["application/json"])  # binaryMediaTypes ignored
    assert event["isBase64Encoded"] is True
    assert event["body"] == "AAE="
    text = build_event_v1(make_ctx(method="POST", headers=[("content-type", "application/json")]), b"{}")
    assert text["body"] == "{}"
    assert text["isBase64Encoded"] is False


# -------------------------------------------------------------------------------------------------
# 1.0 for REST APIs


def rest_ctx(**kwargs):
    kwargs.setdefault("kind", "rest")
    kwargs.setdefault("stage", "prod")
    kwargs.setdefault("route_key", "ANY /{proxy+}")
    kwargs.setdefault("resource_path", "/{proxy+}")
    kwargs.setdefault("path", "/proxy-value")
    kwargs.setdefault("path_params", {"proxy": "proxy-value"})
    kwargs.setdefault("request_id", "c6af9ac6-7b61-11e6-9a41-93e8deadbeef")
    return make_ctx(**kwargs)


def test_rest_shape():
    event = build_event_v1(rest_ctx(), b"")
    assert "version" not in event
    assert list(event) == [
        "resource",
        "path",
        "httpMethod",
        "headers",
        "multiValueHeaders",
        "queryStringParameters",
        "multiValueQueryStringParameters",
        "pathParameters",
        "stageVariables",
        "requestContext",
        "body",
        "isBase64Encoded",
    ]
    assert event["resource"] == "/{proxy+}"
    assert event["path"] == "/proxy-value"
    assert event["pathParameters"] == {"proxy": "proxy-value"}
    assert event["queryStringParameters"] is None
    assert event["stageVariables"] is None
    assert event["body"] is None
    context = event["requestContext"]
    assert list(context) == [
        "accountId",
        "apiId",
        "deploymentId",
        "domainName",
        "domainPrefix",
        "extendedRequestId",
        "httpMethod",
        "identity",
        "path",
        "protocol",
        "requestId",
        "requestTime",
        "requestTimeEpoch",
        "resourceId",
        "resourcePath",
        "stage",
    ]
    assert context["path"] == "/prod/proxy-value"
    assert context["stage"] == "prod"
    assert context["deploymentId"] == "dep123"
    assert context["requestId"] == "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    assert re.fullmatch(r"[A-Za-z0-9+/]{15}=", context["extendedRequestId"])
    assert re.fullmatch(r"[a-z0-9]{6}", context["resourceId"])
    assert context["resourcePath"] == "/{proxy+}"
    assert "authorizer" not in context
    identity = context["identity"]
    assert list(identity) == [
        "accessKey",
        "accountId",
        "caller",
        "cognitoAuthenticationProvider",
        "cognitoAuthenticationType",
        "cognitoIdentityId",
        "cognitoIdentityPoolId",
        "principalOrgId",
        "sourceIp",
        "user",
        "userAgent",
        "userArn",
    ]


def test_rest_header_names_and_added_headers():
    ctx = rest_ctx(
        headers=[("host", "h.example.com"), ("user-agent", "ua"), ("authorization", "t"), ("x-a", "1")]
    )
    headers = build_event_v1(ctx, b"")["headers"]
    assert headers["Host"] == "h.example.com"
    assert headers["User-Agent"] == "ua"
    assert headers["Authorization"] == "t"
    assert headers["x-a"] == "1"
    assert headers["X-Forwarded-For"] == "192.0.2.1"
    assert headers["X-Forwarded-Port"] == "443"
    assert headers["X-Forwarded-Proto"] == "https"
    assert TRACE.fullmatch(headers["X-Amzn-Trace-Id"])


def test_rest_extended_request_id_shared_through_extra():
    ctx = rest_ctx()
    first = build_event_v1(ctx, b"")["requestContext"]["extendedRequestId"]
    assert ctx.extra["extended_request_id"] == first
    assert build_event_v1(ctx, b"")["requestContext"]["extendedRequestId"] == first
    assert new_extended_request_id() != new_extended_request_id()


def test_rest_base64_follows_binary_media_types():
    ctx = rest_ctx(method="POST", headers=[("content-type", "image/png")])
    text = build_event_v1(ctx, b"png")
    assert text["isBase64Encoded"] is False
    assert text["body"] == "png"
    binary = build_event_v1(ctx, b"png", ["image/*"])
    assert binary["isBase64Encoded"] is True
    assert binary["body"] == base64.b64encode(b"png").decode()
    # No Content-Type: text unless */* is a binary media type.
    bare = rest_ctx(method="POST", headers=[])
    assert build_event_v1(bare, b"x")["isBase64Encoded"] is False
    assert build_event_v1(bare, b"x", ["*/*"])["isBase64Encoded"] is True


def test_is_binary_media_type():
    assert is_binary_media_type("image/png", ["image/png"])
    assert is_binary_media_type("image/png; q=1", ["image/*"])
    assert is_binary_media_type("text/plain", ["*/*"])
    assert not is_binary_media_type("image/png", [])
    assert not is_binary_media_type("text/plain", ["image/*"])
    assert not is_binary_media_type(None, ["image/*"])


def test_events_share_nothing_with_the_configuration():
    ctx = make_ctx(stage_variables={"a": "1"}, path_params={"id": "1"})
    build_event_v2(ctx, b"")["stageVariables"]["a"] = "mutated"
    build_event_v1(ctx, b"")["stageVariables"]["a"] = "mutated"
    build_event_v2(ctx, b"")["pathParameters"]["id"] = "mutated"
    assert ctx.stage.variables == {"a": "1"}
    assert ctx.path_params == {"id": "1"}


def test_format_request_time():
    assert format_request_time(1583349317135) == "04/Mar/2020:19:15:17 +0000"
    assert format_request_time(1583348638390) == "04/Mar/2020:19:03:58 +0000"
    assert format_request_time(0) == "01/Jan/1970:00:00:00 +0000"


# -------------------------------------------------------------------------------------------------
# Query strings


def test_parse_query_edges():
    assert parse_query("") == []
    assert parse_query("a") == [("a", "")]
    assert parse_query("a=&b=1&&c") == [("a", ""), ("b", "1"), ("c", "")]
    assert parse_query("k%20ey=v+a%2Bl=ue") == [("k ey", "v a+l=ue")]
    assert parse_query("x=%E2%82%AC") == [("x", "\u20ac")]


_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)),
    max_size=12,
)
_pairs = st.lists(st.tuples(_text.filter(bool), _text), max_size=8)


@given(_pairs)
def test_query_round_trips_v1_multi_value(pairs):
    raw = urlencode(pairs)
    ctx = make_ctx(raw_query=raw)
    event = build_event_v1(ctx, b"")
    expected_multi: dict[str, list[str]] = {}
    for key, value in pairs:
        expected_multi.setdefault(key, []).append(value)
    assert parse_query(raw) == pairs
    assert event["multiValueQueryStringParameters"] == (expected_multi or None)
    assert event["queryStringParameters"] == ({k: v[-1] for k, v in expected_multi.items()} or None)


@given(_pairs)
def test_query_round_trips_v2_comma_joined(pairs):
    raw = urlencode(pairs)
    event = build_event_v2(make_ctx(raw_query=raw), b"")
    expected: dict[str, list[str]] = {}
    for key, value in pairs:
        expected.setdefault(key, []).append(value)
    joined = {k: ",".join(v) for k, v in expected.items()}
    assert event.get("queryStringParameters", {}) == joined
    assert event["rawQueryString"] == raw
