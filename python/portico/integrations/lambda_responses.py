"""Turning what a Lambda proxy handler returned into the client's response (aws-semantics §2.4, §2.5).

`result` is the handler's return value as a Python object. A real Lambda runtime JSON-serialises it
(awslambdaric's marshaller: Decimal as a number, `bytes` passed through as the raw payload) and
API Gateway parses that JSON; so a value that cannot be serialised is a *function error*, and a
payload API Gateway cannot use is a *malformed response*.
"""

from __future__ import annotations

import binascii
import json
from base64 import b64decode
from decimal import Decimal
from typing import Any

import orjson

from portico.dataplane.context import Response
from portico.dataplane.errors import ErrorType, GatewayError

__all__ = ["MAX_PAYLOAD_BYTES", "accept_is_binary", "parse_response_v1", "parse_response_v2"]

# Lambda's limit for a synchronous invocation's response payload (6 MB).
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024

_V1_KEYS = frozenset(("statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"))

# Response headers a REST API renames to `x-amzn-Remapped-<name>` for proxy integrations, and the
# ones it drops (LocalStack execute-api header_utils, modelled on AWS recordings).
_REST_REMAPPED = frozenset(("connection", "content-length", "date", "server"))
# Headers the server owns (framing); dropped from HTTP API responses.
_HTTP_DROPPED = frozenset(("connection", "content-length", "transfer-encoding", "keep-alive"))

_JSON_CT = ("content-type", "application/json")
# HTTP APIs answer a structured 2.0 response without a content-type with text/plain
# (aws-powertools/powertools-lambda-python#2464, awslabs/aws-lambda-go-api-proxy#116).
_TEXT_CT = ("content-type", "text/plain; charset=utf-8")


def _malformed(reason: str) -> GatewayError:
    return GatewayError(ErrorType.MALFORMED_RESPONSE, f"Malformed Lambda proxy response: {reason}")


def _orjson_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _check_marshal(result: Any) -> None:
    """Raise FUNCTION_ERROR where a Lambda runtime could not serialise `result` (or it is too big)."""
    try:
        size = len(orjson.dumps(result, default=_orjson_default, option=orjson.OPT_NON_STR_KEYS))
    except TypeError as exc:
        raise GatewayError(ErrorType.FUNCTION_ERROR, f"Runtime.MarshalError: {exc}") from None
    if size > MAX_PAYLOAD_BYTES:
        raise GatewayError(ErrorType.FUNCTION_ERROR, f"response payload of {size} bytes exceeds 6 MB")


def _load_raw(payload: bytes) -> Any:
    """A handler that returned bytes: awslambdaric sends them as the payload; API Gateway parses it."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise GatewayError(ErrorType.FUNCTION_ERROR, f"response payload of {len(payload)} bytes exceeds 6 MB")
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise _malformed("the function's output is not JSON") from None


def _status(value: Any) -> int:
    if value is None:
        return 200
    if isinstance(value, bool):
        raise _malformed("statusCode is not a number")
    if isinstance(value, int):
        status = value
    elif isinstance(value, str):
        text = value.strip()
        if not text.isdigit():
            raise _malformed(f"statusCode {value!r} is not a number")
        status = int(text)
    elif isinstance(value, (float, Decimal)) and value == int(value):
        status = int(value)
    else:
        raise _malformed(f"statusCode {value!r} is not an integer")
    if not 100 <= status <= 599:
        raise _malformed(f"statusCode {status} is not an HTTP status")
    return status


def _header_text(name: str, value: Any) -> str:
    """A header value as API Gateway's deserialiser reads it: scalars become text, structures fail."""
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float, Decimal)):
        return str(value)
    raise _malformed(f"header {name!r} has a non-scalar value")


def _body_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, Decimal)):
        return str(value)
    raise _malformed("body is not a string")


def _is_b64(value: Any) -> bool:
    if value is None or value is False:
        return False
    if value is True:
        return True
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _malformed("isBase64Encoded is not a boolean")


def _b64decode(body: str) -> bytes:
    if "\n" in body or "\r" in body:  # MIME-style line breaks (base64.encodebytes)
        body = body.replace("\r", "").replace("\n", "")
    try:
        return b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed("body is not valid base64") from None


def accept_is_binary(accept_header: str | None, binary_media_types: list[str] | tuple[str, ...]) -> bool:
    """Whether the first media type of Accept matches the API's binaryMediaTypes (REST rule, §2.4).

    A missing Accept matches only a `*/*` entry, and `Accept: */*` (curl's default) matches only
    that too: AWS's binary-media tutorial has the client send the exact type.
    """
    if not binary_media_types:
        return False
    media = ""
    if accept_header:
        first = accept_header.split(",", 1)[0]
        media = first.split(";", 1)[0].strip().lower()
    for pattern in binary_media_types:
        pattern = pattern.strip().lower()
        if pattern == "*/*":
            return True
        if media and (pattern == media or (pattern.endswith("/*") and media.startswith(pattern[:-1]))):
            return True
    return False


# --------------------------------------------------------------------------------------------------
# Format 1.0 (REST APIs and HTTP APIs with payloadFormatVersion 1.0)


def parse_response_v1(
    result: Any,
    accept_header: str | None,
    binary_media_types: list[str] | tuple[str, ...],
    *,
    http_api: bool = False,
) -> Response:
    """The response for a payload 1.0 Lambda result (§2.4).

    REST (`http_api=False`): a base64 body is decoded only when the request's first Accept media type
    matches `binary_media_types`, else it is returned as the base64 text. HTTP APIs have no
    binaryMediaTypes and always decode.
    """
    if isinstance(result, (bytes, bytearray, memoryview)):
        result = _load_raw(bytes(result))
    else:
        _check_marshal(result)
    if not isinstance(result, dict):
        raise _malformed("the function's output is not a JSON object")
    for key in result:
        if key not in _V1_KEYS:
            raise _malformed(f"unexpected key {key!r}")

    status = _status(result.get("statusCode"))

    # name (lower-case) -> values, in first-seen order; multiValueHeaders first, then headers
    # (AWS: one header with both values; an identical name+value pair appears once).
    merged: dict[str, list[str]] = {}
    suppress_ct = False
    multi = result.get("multiValueHeaders")
    if multi is not None:
        if not isinstance(multi, dict):
            raise _malformed("multiValueHeaders is not an object")
        for name, values in multi.items():
            if values is None:
                continue
            if not isinstance(values, list):
                raise _malformed(f"multiValueHeaders {name!r} is not a list")
            lname = name.lower()
            bucket = merged.setdefault(lname, [])
            for value in values:
                if value is None:
                    continue
                bucket.append(_header_text(name, value))
    single = result.get("headers")
    if single is not None:
        if not isinstance(single, dict):
            raise _malformed("headers is not an object")
        for name, value in single.items():
            lname = name.lower()
            if value is None:
                # `"Content-Type": null` switches the default content type off (aws/aws-sam-cli#1218).
                if lname == "content-type":
                    suppress_ct = True
                continue
            text = _header_text(name, value)
            bucket = merged.get(lname)
            if bucket is None:
                merged[lname] = [text]
            elif text not in bucket:
                bucket.append(text)

    body_text = _body_text(result.get("body"))
    if _is_b64(result.get("isBase64Encoded")) and (
        http_api or accept_is_binary(accept_header, binary_media_types)
    ):
        body = _b64decode(body_text)
    else:
        body = body_text.encode("utf-8")

    headers: list[tuple[str, str]] = []
    if http_api:
        for lname, values in merged.items():
            if lname in _HTTP_DROPPED or not values:
                continue
            for value in values:
                headers.append((lname, value))
    else:
        for lname, values in merged.items():
            if not values or lname == "transfer-encoding":
                continue
            out_name = f"x-amzn-remapped-{lname}" if lname in _REST_REMAPPED else lname
            for value in values:
                headers.append((out_name, value))
    if not suppress_ct and not merged.get("content-type"):
        headers.append(_JSON_CT)
    return Response(status=status, headers=headers, body=body)


# --------------------------------------------------------------------------------------------------
# Format 2.0 (HTTP APIs)


def _inferred(body: bytes) -> Response:
    return Response(status=200, headers=[_JSON_CT], body=body)


def parse_response_v2(result: Any) -> Response:
    """The response for a payload 2.0 Lambda result (§2.5).

    A JSON object with `statusCode` is the structured form; any other valid JSON is inferred as a
    200 `application/json` response whose body is the JSON text (a string: the string itself).
    """
    if isinstance(result, (bytes, bytearray, memoryview)):
        raw = bytes(result)
        result = _load_raw(raw)
        if not (isinstance(result, dict) and "statusCode" in result):
            if isinstance(result, str):
                return _inferred(result.encode("utf-8"))
            return _inferred(raw.strip())
    elif not (isinstance(result, dict) and "statusCode" in result):
        if isinstance(result, str):
            body = result.encode("utf-8")
            if len(body) > MAX_PAYLOAD_BYTES:
                raise GatewayError(
                    ErrorType.FUNCTION_ERROR, f"response payload of {len(body)} bytes exceeds 6 MB"
                )
            return _inferred(body)
        # The body is the payload exactly as the Python runtime wrote it: json.dumps's default
        # separators (`{"a": 1}`), non-ASCII unescaped (python3.12+ runtimes).
        try:
            text = json.dumps(result, ensure_ascii=False, default=_json_default)
        except (TypeError, ValueError) as exc:
            raise GatewayError(ErrorType.FUNCTION_ERROR, f"Runtime.MarshalError: {exc}") from None
        body = text.encode("utf-8")
        if len(body) > MAX_PAYLOAD_BYTES:
            raise GatewayError(
                ErrorType.FUNCTION_ERROR, f"response payload of {len(body)} bytes exceeds 6 MB"
            )
        return _inferred(body)
    else:
        _check_marshal(result)

    # Structured form. Unknown keys (multiValueHeaders included) are ignored by HTTP APIs.
    status = _status(result.get("statusCode"))
    headers: list[tuple[str, str]] = []
    has_ct = False
    single = result.get("headers")
    if single is not None:
        if not isinstance(single, dict):
            raise _malformed("headers is not an object")
        for name, value in single.items():
            lname = name.lower()
            if lname == "content-type":
                has_ct = True
            if value is None or lname in _HTTP_DROPPED:
                continue
            headers.append((lname, _header_text(name, value)))
    cookies = result.get("cookies")
    if cookies is not None:
        if not isinstance(cookies, list):
            raise _malformed("cookies is not a list")
        for cookie in cookies:
            if cookie is None:
                continue
            headers.append(("set-cookie", _header_text("set-cookie", cookie)))
    if not has_ct:
        headers.append(_TEXT_CT)
    body_text = _body_text(result.get("body"))
    body = _b64decode(body_text) if _is_b64(result.get("isBase64Encoded")) else body_text.encode("utf-8")
    return Response(status=status, headers=headers, body=body)
