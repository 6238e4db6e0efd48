"""Lambda proxy responses: the 1.0 table (aws-semantics §2.4) and the 2.0 rules (§2.5)."""

from __future__ import annotations

import base64
from decimal import Decimal

import pytest

import factories  # noqa: F401 - makes `portico` importable without the Rust extension
from portico.dataplane.errors import ErrorType, GatewayError
from portico.integrations.lambda_responses import (
    MAX_PAYLOAD_BYTES,
    accept_is_binary,
    parse_response_v1,
    parse_response_v2,
)

JSON_CT = ("content-type", "application/json")


def v1(result, accept=None, binary=(), **kwargs):
    return parse_response_v1(result, accept, list(binary), **kwargs)


def error_of(call, *args, **kwargs) -> ErrorType:
    with pytest.raises(GatewayError) as info:
        call(*args, **kwargs)
    return info.value.error_type


# -------------------------------------------------------------------------------------------------
# 1.0


def test_v1_status_only_defaults_to_json_content_type():
    response = v1({"statusCode": 200})
    assert response.status == 200
    assert response.body == b""
    assert response.headers == [JSON_CT]


def test_v1_numeric_string_status():
    assert v1({"statusCode": "201"}).status == 201


def test_v1_headers_without_status_is_200():
    response = v1({"headers": {"X-Test": "y"}})
    assert response.status == 200
    assert response.headers == [("x-test", "y"), JSON_CT]


def test_v1_empty_object_is_200_empty():
    response = v1({})
    assert response.status == 200
    assert response.body == b""


@pytest.mark.parametrize(
    "result",
    [
        {"statusCode": "test"},
        {"statusCode": 200, "wrongValue": 1},
        "plain string",
        ["a", "list"],
        42,
        None,
        {"statusCode": True},
        {"statusCode": 99},
        {"statusCode": 200, "multiValueHeaders": {"test-multi": "notalist"}},
        {"statusCode": 200, "multiValueHeaders": ["x"]},
        {"statusCode": 200, "headers": ["x"]},
        {"statusCode": 200, "headers": {"x": {"nested": 1}}},
        {"statusCode": 200, "headers": {"x": ["list"]}},
        {"statusCode": 200, "body": {"an": "object"}},
        {"statusCode": 200, "body": ["list"]},
        {"statusCode": 200, "isBase64Encoded": "maybe"},
    ],
)
def test_v1_malformed(result):
    assert error_of(v1, result) is ErrorType.MALFORMED_RESPONSE


def test_v1_header_values_are_stringified():
    response = v1({"statusCode": 200, "headers": {"test": True, "off": False, "n": 5, "f": 1.5}})
    assert ("test", "true") in response.headers
    assert ("off", "false") in response.headers
    assert ("n", "5") in response.headers
    assert ("f", "1.5") in response.headers


def test_v1_null_headers_ok():
    response = v1({"statusCode": 204, "headers": None, "multiValueHeaders": None, "body": None})
    assert response.status == 204
    assert response.headers == [JSON_CT]
    assert response.body == b""


def test_v1_multi_value_headers_repeat():
    response = v1({"statusCode": 200, "multiValueHeaders": {"test-multi": ["v1", "v2"]}})
    assert [h for h in response.headers if h[0] == "test-multi"] == [
        ("test-multi", "v1"),
        ("test-multi", "v2"),
    ]


def test_v1_headers_and_multi_value_headers_merge():
    response = v1({"multiValueHeaders": {"tesT-Multi": ["a"]}, "headers": {"test-multi": "b"}})
    assert [h for h in response.headers if h[0] == "test-multi"] == [("test-multi", "a"), ("test-multi", "b")]
    # an identical name + value pair appears once
    same = v1({"multiValueHeaders": {"X": ["a", "b"]}, "headers": {"x": "a"}})
    assert [h for h in same.headers if h[0] == "x"] == [("x", "a"), ("x", "b")]


def test_v1_explicit_content_type_and_null_content_type():
    response = v1({"headers": {"Content-Type": "text/html"}, "body": "<p>"})
    assert response.headers == [("content-type", "text/html")]
    assert response.body == b"<p>"
    # "Content-Type": null switches the default off (aws/aws-sam-cli#1218)
    assert v1({"headers": {"Content-Type": None}}).headers == []


def test_v1_body_scalars():
    assert v1({"body": "héllo"}).body == "héllo".encode()
    assert v1({"body": 5}).body == b"5"
    assert v1({"body": True}).body == b"true"


def test_v1_base64_body_needs_binary_accept_on_rest():
    encoded = base64.b64encode(b"\x89PNG").decode()
    result = {
        "statusCode": 200,
        "headers": {"content-type": "image/png"},
        "isBase64Encoded": True,
        "body": encoded,
    }
    # Accept not in binaryMediaTypes: the base64 text is sent
    assert v1(result, "text/html", ["image/png"]).body == encoded.encode()
    assert v1(result, None, ["image/png"]).body == encoded.encode()
    assert v1(result, "image/png", []).body == encoded.encode()
    # first Accept media type matches: decoded
    assert v1(result, "image/png", ["image/png"]).body == b"\x89PNG"
    assert v1(result, "image/webp;q=0.9, text/html", ["image/*"]).body == b"\x89PNG"
    assert v1(result, None, ["*/*"]).body == b"\x89PNG"
    # only the first media type counts
    assert v1(result, "text/html, image/png", ["image/png"]).body == encoded.encode()
    # HTTP APIs have no binaryMediaTypes: always decoded
    assert v1(result, None, [], http_api=True).body == b"\x89PNG"


def test_v1_bad_base64_is_malformed():
    result = {"isBase64Encoded": True, "body": "***"}
    assert error_of(v1, result, "image/png", ["image/png"]) is ErrorType.MALFORMED_RESPONSE


def test_accept_is_binary():
    assert accept_is_binary("image/png", ["image/png"])
    assert accept_is_binary("IMAGE/PNG; q=1", ["image/png"])
    assert not accept_is_binary("*/*", ["image/png"])
    assert accept_is_binary("*/*", ["*/*"])
    assert not accept_is_binary(None, [])


def test_v1_rest_remaps_framing_headers_http_drops_them():
    result = {"headers": {"Content-Length": "3", "Date": "x", "Transfer-Encoding": "chunked"}, "body": "abc"}
    rest = v1(result)
    assert ("x-amzn-remapped-content-length", "3") in rest.headers
    assert ("x-amzn-remapped-date", "x") in rest.headers
    assert all(name != "transfer-encoding" for name, _ in rest.headers)
    http = v1(result, http_api=True)
    assert all(name not in ("content-length", "transfer-encoding") for name, _ in http.headers)


@pytest.mark.parametrize("result", [b"not json", bytearray(b"{oops")])
def test_v1_raw_bytes_must_be_json(result):
    assert error_of(v1, result) is ErrorType.MALFORMED_RESPONSE


def test_v1_raw_bytes_that_are_json_work():
    # awslambdaric sends a handler's bytes as the payload as they are.
    assert v1(b'{"statusCode": 202}').status == 202


@pytest.mark.parametrize("result", [{"statusCode": 200, "body": {1, 2}}, {"statusCode": 200, "x": object()}])
def test_v1_unserialisable_is_function_error(result):
    assert error_of(v1, result) is ErrorType.FUNCTION_ERROR


def test_response_header_names_are_lower_case():
    response = v1({"headers": {"X-UPPER": "1"}, "multiValueHeaders": {"X-Multi": ["2"]}})
    assert all(name == name.lower() for name, _ in response.headers)


# -------------------------------------------------------------------------------------------------
# 2.0


@pytest.mark.parametrize(
    ("result", "body"),
    [
        ("Hello from Lambda!", b"Hello from Lambda!"),
        ({"message": "Hello from Lambda!"}, b'{"message": "Hello from Lambda!"}'),
        ({"a": 1, "b": [1, 2]}, b'{"a": 1, "b": [1, 2]}'),
        ([1, "x"], b'[1, "x"]'),
        (42, b"42"),
        (1.5, b"1.5"),
        (True, b"true"),
        (None, b"null"),
        ({"body": "x", "headers": {}}, b'{"body": "x", "headers": {}}'),
        ({"price": Decimal("2")}, b'{"price": 2}'),
        ({"name": "h\u00e9"}, '{"name": "h\u00e9"}'.encode()),
    ],
)
def test_v2_inferred(result, body):
    response = parse_response_v2(result)
    assert response.status == 200
    assert response.headers == [JSON_CT]
    assert response.body == body


def test_v2_inferred_from_raw_bytes():
    assert parse_response_v2(b'{"k": "v"}').body == b'{"k": "v"}'
    assert parse_response_v2(b'"text"').body == b"text"
    assert error_of(parse_response_v2, b"raw bytes are not JSON") is ErrorType.MALFORMED_RESPONSE


def test_v2_structured():
    response = parse_response_v2(
        {
            "statusCode": 201,
            "headers": {"Content-Type": "text/html", "X-Flag": True},
            "cookies": ["a=1; Path=/", "b=2"],
            "body": "<p>made</p>",
        }
    )
    assert response.status == 201
    assert response.body == b"<p>made</p>"
    assert response.headers == [
        ("content-type", "text/html"),
        ("x-flag", "true"),
        ("set-cookie", "a=1; Path=/"),
        ("set-cookie", "b=2"),
    ]


def test_v2_structured_defaults():
    response = parse_response_v2({"statusCode": 200})
    assert response.status == 200
    assert response.body == b""
    assert response.headers == [("content-type", "text/plain; charset=utf-8")]
    assert parse_response_v2({"statusCode": "404"}).status == 404


def test_v2_base64_always_decoded():
    payload = bytes(range(256))
    response = parse_response_v2(
        {"statusCode": 200, "isBase64Encoded": True, "body": base64.b64encode(payload).decode()}
    )
    assert response.body == payload


def test_v2_ignores_unknown_keys_and_multi_value_headers():
    response = parse_response_v2(
        {"statusCode": 200, "multiValueHeaders": {"x": ["1"]}, "extra": 1, "body": "ok"}
    )
    assert response.body == b"ok"
    assert all(name != "x" for name, _ in response.headers)


@pytest.mark.parametrize(
    "result",
    [
        {"statusCode": "nope"},
        {"statusCode": 1000},
        {"statusCode": 200, "headers": "x"},
        {"statusCode": 200, "headers": {"x": {"a": 1}}},
        {"statusCode": 200, "cookies": "a=1"},
        {"statusCode": 200, "body": {"an": "object"}},
        {"statusCode": 200, "isBase64Encoded": True, "body": "%%%"},
    ],
)
def test_v2_malformed(result):
    assert error_of(parse_response_v2, result) is ErrorType.MALFORMED_RESPONSE


@pytest.mark.parametrize("result", [{1, 2}, object(), {"statusCode": 200, "body": b"bytes"}])
def test_v2_unserialisable_is_function_error(result):
    assert error_of(parse_response_v2, result) is ErrorType.FUNCTION_ERROR


def test_payload_size_limit():
    big = "x" * (MAX_PAYLOAD_BYTES + 1)
    assert error_of(parse_response_v2, big) is ErrorType.FUNCTION_ERROR
    assert error_of(parse_response_v2, {"statusCode": 200, "body": big}) is ErrorType.FUNCTION_ERROR
    assert error_of(v1, {"body": big}) is ErrorType.FUNCTION_ERROR
