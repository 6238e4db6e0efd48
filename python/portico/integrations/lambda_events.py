"""The events API Gateway hands a Lambda proxy integration (AWS_PROXY), built from a request context.

Three shapes (aws-semantics §2.1-2.3):

- `build_event_v2`: HTTP API, payloadFormatVersion 2.0.
- `build_event_v1`: REST API (no "version" key, REST requestContext) and HTTP API with
  payloadFormatVersion 1.0 ("version": "1.0", lower-case header names, `authorizer` of nulls).

Both are pure functions of the request context and the whole body. They are on the per-request hot
path: every event is built from fresh dicts (nothing in it is shared with the configuration, so a
handler may mutate its event freely) without any JSON round trip.
"""

from __future__ import annotations

import base64
import hashlib
import random
import time
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

if TYPE_CHECKING:
    from portico.dataplane.context import RequestContext

__all__ = [
    "build_event_v1",
    "build_event_v2",
    "format_request_time",
    "is_binary_media_type",
    "is_text_media_type_http_api",
    "new_extended_request_id",
    "new_trace_id",
    "parse_query",
]

# Hop-by-hop headers: never part of the event (a proxy does not forward them).
_HOP_BY_HOP = frozenset(
    ("connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade")
)
# REST APIs drop more of the request headers before the integration sees them (LocalStack's
# execute-api `DROPPED_FROM_REQUEST_COMMON`, modelled on AWS recordings); HTTP APIs keep
# `content-length` (captured HTTP API events carry it).
_DROPPED_REST = _HOP_BY_HOP | frozenset(
    (
        "content-length",
        "content-md5",
        "expect",
        "max-forwards",
        "proxy-authenticate",
        "server",
        "www-authenticate",
    )
)
_DROPPED_HTTP = _HOP_BY_HOP

# Headers API Gateway sets itself (aws-semantics §2.1 "Headers AWS adds before the event is built").
_XFF = "x-forwarded-for"
_XFP = "x-forwarded-port"
_XFPROTO = "x-forwarded-proto"
_TRACE = "x-amzn-trace-id"
_GATEWAY_SET = frozenset((_XFF, _XFP, _XFPROTO, _TRACE))

# REST APIs show these names in their canonical casing: the ones API Gateway adds itself, and
# `Authorization` / `User-Agent`, which AWS capitalises (seen in AWS recordings; LocalStack's
# AWS_PROXY `_format_headers`). Every other name keeps the casing the data plane gives us, which is
# lower-case (HTTP/2 clients send lower-case names to AWS too).
_REST_NAMES = {
    "host": "Host",
    "authorization": "Authorization",
    "user-agent": "User-Agent",
    _XFF: "X-Forwarded-For",
    _XFP: "X-Forwarded-Port",
    _XFPROTO: "X-Forwarded-Proto",
    _TRACE: "X-Amzn-Trace-Id",
}

# Media types HTTP APIs hand over as text; everything else (including a missing Content-Type and
# application/x-www-form-urlencoded) is base64 (aws-semantics §2.2, verified against AWS in
# ministackorg/ministack#766; `+json` / `+xml` suffixes are not in the verified list).
_HTTP_API_TEXT_TYPES = frozenset(("application/json", "application/xml", "application/javascript"))

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_time_cache: tuple[int, str] = (-1, "")

_getrandbits = random.getrandbits


# --------------------------------------------------------------------------------------------------
# Small pieces, exported for the integration and the tests


def format_request_time(epoch_ms: int) -> str:
    """`12/Mar/2020:19:03:58 +0000` (requestContext.time / requestTime), locale-independent."""
    global _time_cache
    sec = epoch_ms // 1000
    cached = _time_cache
    if cached[0] == sec:
        return cached[1]
    t = time.gmtime(sec)
    text = (
        f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )
    _time_cache = (sec, text)
    return text


def new_trace_id(epoch_ms: int) -> str:
    """An X-Ray trace header like API Gateway's: `Root=1-<8 hex epoch s>-<24 hex>`."""
    return f"Root=1-{epoch_ms // 1000:08x}-{_getrandbits(96):024x}"


def new_extended_request_id() -> str:
    """A REST `extendedRequestId` like AWS's (`TWegAcC4EowCHnA=`: base64 of 11 bytes)."""
    return base64.b64encode(_getrandbits(88).to_bytes(11, "big")).decode("ascii")


def parse_query(raw: str) -> list[tuple[str, str]]:
    """Decoded (name, value) pairs of a raw query string, in order: `+` is a space, %XX decoded.

    Empty pieces (`a=1&&b=2`) are skipped; a piece without `=` has the value "".
    """
    if not raw:
        return []
    pairs: list[tuple[str, str]] = []
    append = pairs.append
    for piece in raw.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        if "+" in name:
            name = name.replace("+", " ")
        if "%" in name:
            name = unquote(name)
        if "+" in value:
            value = value.replace("+", " ")
        if "%" in value:
            value = unquote(value)
        append((name, value))
    return pairs


def _media_type(content_type: str | None) -> str:
    if not content_type:
        return ""
    semi = content_type.find(";")
    if semi >= 0:
        content_type = content_type[:semi]
    return content_type.strip().lower()


def is_text_media_type_http_api(content_type: str | None) -> bool:
    """Whether an HTTP API hands a request body of this Content-Type over as text."""
    media = _media_type(content_type)
    return media.startswith("text/") or media in _HTTP_API_TEXT_TYPES


def is_binary_media_type(content_type: str | None, binary_media_types: list[str] | tuple[str, ...]) -> bool:
    """Whether `content_type` matches one of a REST API's binaryMediaTypes (`type/sub`, `type/*`, `*/*`)."""
    if not binary_media_types:
        return False
    media = _media_type(content_type)
    for pattern in binary_media_types:
        pattern = pattern.strip().lower()
        if pattern == "*/*" or pattern == media:
            return True
        if media and pattern.endswith("/*") and media.startswith(pattern[:-1]):
            return True
    return False


@lru_cache(maxsize=512)
def _host_parts(host: str, scheme: str) -> tuple[str, str]:
    """(domainPrefix, X-Forwarded-Port) of a Host header value."""
    hostname, port = host, ""
    if host.startswith("["):  # [v6]:port
        end = host.find("]")
        if end > 0:
            hostname = host[1:end]
            rest = host[end + 1 :]
            if rest.startswith(":") and rest[1:].isdigit():
                port = rest[1:]
    else:
        name, sep, maybe_port = host.rpartition(":")
        if sep and maybe_port.isdigit():
            hostname, port = name, maybe_port
    if not port:
        port = "80" if scheme == "http" else "443"
    prefix = hostname.split(".", 1)[0] if hostname else ""
    return prefix, port


def _body_text(body: bytes, as_binary: bool) -> tuple[str, bool]:
    """The event's (body, isBase64Encoded): text when allowed and valid UTF-8, else base64."""
    if not as_binary:
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass  # not representable as a JSON string: hand it over losslessly
    return base64.b64encode(body).decode("ascii"), True


def _gateway_headers(ctx: RequestContext, xff: str | None, trace: str | None) -> tuple[str, str, str, str]:
    """Values of X-Forwarded-For / -Port / -Proto and X-Amzn-Trace-Id as API Gateway sets them."""
    client_ip = ctx.client_ip
    xff_value = f"{xff}, {client_ip}" if xff else client_ip
    _, port = _host_parts(ctx.host, ctx.scheme)
    proto = ctx.scheme or "https"
    if not trace:
        trace = new_trace_id(ctx.time_epoch_ms)
    return xff_value, port, proto, trace


# --------------------------------------------------------------------------------------------------
# Payload format 2.0 (HTTP APIs)


def build_event_v2(ctx: RequestContext, body: bytes) -> dict[str, Any]:
    """The payload 2.0 event for an HTTP API route (aws-semantics §2.2)."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    xff: str | None = None
    trace: str | None = None
    content_type: str | None = None
    user_agent = ""
    has_host = False
    dropped = _DROPPED_HTTP
    for name, value in ctx.headers:
        if name in dropped:
            continue
        if name == "cookie":
            for cookie in value.split(";"):
                cookie = cookie.strip()
                if cookie:
                    cookies.append(cookie)
            continue
        if name in _GATEWAY_SET:
            if name == _XFF:
                xff = f"{xff}, {value}" if xff else value
            elif name == _TRACE and trace is None:
                trace = value
            continue
        if name == "content-type":
            if content_type is None:
                content_type = value
        elif name == "user-agent":
            if not user_agent:
                user_agent = value
        elif name == "host":
            has_host = True
        prev = headers.get(name)
        headers[name] = value if prev is None else f"{prev},{value}"
    host = ctx.host
    if not has_host and host:
        headers["host"] = host
    xff_value, port, proto, trace_value = _gateway_headers(ctx, xff, trace)
    headers[_TRACE] = trace_value
    headers[_XFF] = xff_value
    headers[_XFP] = port
    headers[_XFPROTO] = proto

    api = ctx.api
    stage = ctx.stage
    route = ctx.route
    route_key = route.route_key if route is not None else "$default"
    raw_query = ctx.raw_query
    epoch_ms = ctx.time_epoch_ms

    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": ctx.raw_path,
        "rawQueryString": raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if raw_query:
        query: dict[str, str] = {}
        for qname, qvalue in parse_query(raw_query):
            prev = query.get(qname)
            query[qname] = qvalue if prev is None else f"{prev},{qvalue}"
        if query:
            event["queryStringParameters"] = query
    event["requestContext"] = {
        "accountId": ctx.account_id,
        "apiId": api.api_id if api is not None else "",
        "domainName": host,
        "domainPrefix": _host_parts(host, ctx.scheme)[0],
        "http": {
            "method": ctx.method,
            "path": ctx.raw_path,
            "protocol": ctx.protocol,
            "sourceIp": ctx.client_ip,
            "userAgent": user_agent,
        },
        "requestId": ctx.request_id,
        "routeKey": route_key,
        "stage": stage.name if stage is not None else "$default",
        "time": format_request_time(epoch_ms),
        "timeEpoch": epoch_ms,
    }
    is_b64 = False
    if body:
        event["body"], is_b64 = _body_text(body, not is_text_media_type_http_api(content_type))
    path_params = ctx.path_params
    if path_params:
        event["pathParameters"] = dict(path_params)
    event["isBase64Encoded"] = is_b64
    if stage is not None and stage.variables:
        event["stageVariables"] = dict(stage.variables)
    return event


# --------------------------------------------------------------------------------------------------
# Payload format 1.0 (REST APIs, and HTTP APIs with payloadFormatVersion 1.0)


def _identity(source_ip: str, user_agent: str | None) -> dict[str, Any]:
    return {
        "accessKey": None,
        "accountId": None,
        "caller": None,
        "cognitoAuthenticationProvider": None,
        "cognitoAuthenticationType": None,
        "cognitoIdentityId": None,
        "cognitoIdentityPoolId": None,
        "principalOrgId": None,
        "sourceIp": source_ip,
        "user": None,
        "userAgent": user_agent,
        "userArn": None,
    }


@lru_cache(maxsize=4096)
def _rest_resource_id(api_id: str, resource_path: str) -> str:
    """A stable REST resource id (AWS ids are 6-10 lower-case alphanumerics, e.g. `6wpa7g`)."""
    digest = int.from_bytes(hashlib.blake2b(f"{api_id}\0{resource_path}".encode(), digest_size=8).digest())
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    chars = []
    for _ in range(6):
        digest, rem = divmod(digest, 36)
        chars.append(alphabet[rem])
    return "".join(chars)


def build_event_v1(
    ctx: RequestContext, body: bytes, binary_media_types: list[str] | tuple[str, ...] = ()
) -> dict[str, Any]:
    """The payload 1.0 event: REST shape when `ctx.api.kind == "rest"`, else HTTP API 1.0 (§2.1, §2.3).

    `binary_media_types` is the REST API's binaryMediaTypes (a request body whose Content-Type
    matches one is base64); HTTP APIs ignore it and use their fixed text media types.
    """
    api = ctx.api
    rest = api is not None and api.kind == "rest"
    dropped = _DROPPED_REST if rest else _DROPPED_HTTP

    headers: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    xff: str | None = None
    trace: str | None = None
    content_type: str | None = None
    user_agent: str | None = None
    has_host = False
    rest_names = _REST_NAMES
    for name, value in ctx.headers:
        if name in dropped:
            continue
        if name in _GATEWAY_SET:
            if name == _XFF:
                xff = f"{xff}, {value}" if xff else value
            elif name == _TRACE and trace is None:
                trace = value
            continue
        if name == "content-type":
            if content_type is None:
                content_type = value
        elif name == "user-agent":
            if user_agent is None:
                user_agent = value
        elif name == "host":
            has_host = True
        if rest:
            name = rest_names.get(name, name)
        headers[name] = value  # the last value wins
        values = multi.get(name)
        if values is None:
            multi[name] = [value]
        else:
            values.append(value)
    host = ctx.host
    if not has_host and host:
        host_name = "Host" if rest else "host"
        headers[host_name] = host
        multi[host_name] = [host]
    xff_value, port, proto, trace_value = _gateway_headers(ctx, xff, trace)
    for name, value in ((_TRACE, trace_value), (_XFF, xff_value), (_XFP, port), (_XFPROTO, proto)):
        if rest:
            name = rest_names[name]
        headers[name] = value
        multi[name] = [value]

    query: dict[str, str] | None = None
    multi_query: dict[str, list[str]] | None = None
    raw_query = ctx.raw_query
    if raw_query:
        pairs = parse_query(raw_query)
        if pairs:
            query = {}
            multi_query = {}
            for qname, qvalue in pairs:
                query[qname] = qvalue
                qvalues = multi_query.get(qname)
                if qvalues is None:
                    multi_query[qname] = [qvalue]
                else:
                    qvalues.append(qvalue)

    stage = ctx.stage
    route = ctx.route
    resource = route.resource_path if route is not None else "/"
    stage_name = stage.name if stage is not None else "$default"
    api_id = api.api_id if api is not None else ""
    epoch_ms = ctx.time_epoch_ms
    request_id = ctx.request_id

    request_context: dict[str, Any] = {"accountId": ctx.account_id, "apiId": api_id}
    if rest:
        extended = ctx.extra.get("extended_request_id")
        if not extended:
            extended = ctx.extra["extended_request_id"] = new_extended_request_id()
        request_context["deploymentId"] = stage.deployment_id if stage is not None else ""
    else:
        # HTTP APIs' request ids already have the extended form (`JKJaXmPLvHcESHA=`).
        extended = request_id
        request_context["authorizer"] = {"claims": None, "scopes": None}
    request_context["domainName"] = host
    request_context["domainPrefix"] = _host_parts(host, ctx.scheme)[0]
    request_context["extendedRequestId"] = extended
    request_context["httpMethod"] = ctx.method
    request_context["identity"] = _identity(ctx.client_ip, user_agent)
    # REST: requestContext.path carries the stage (`/stage/x`) while `path` does not; HTTP API 1.0
    # events carry the stage segment in both (dougmoscrop/serverless-http#143).
    request_context["path"] = ctx.raw_path
    request_context["protocol"] = ctx.protocol
    request_context["requestId"] = request_id
    request_context["requestTime"] = format_request_time(epoch_ms)
    request_context["requestTimeEpoch"] = epoch_ms
    request_context["resourceId"] = _rest_resource_id(api_id, resource) if rest else None
    request_context["resourcePath"] = resource
    request_context["stage"] = stage_name

    if body:
        if rest:
            as_binary = is_binary_media_type(content_type, binary_media_types)
        else:
            as_binary = not is_text_media_type_http_api(content_type)
        body_text: str | None
        body_text, is_b64 = _body_text(body, as_binary)
    else:
        body_text, is_b64 = None, False

    path_params = ctx.path_params
    variables = stage.variables if stage is not None else None
    if rest:
        return {
            "resource": resource,
            "path": ctx.path,
            "httpMethod": ctx.method,
            "headers": headers,
            "multiValueHeaders": multi,
            "queryStringParameters": query,
            "multiValueQueryStringParameters": multi_query,
            "pathParameters": dict(path_params) if path_params else None,
            "stageVariables": dict(variables) if variables else None,
            "requestContext": request_context,
            "body": body_text,
            "isBase64Encoded": is_b64,
        }
    return {
        "version": "1.0",
        "resource": resource,
        "path": ctx.raw_path,
        "httpMethod": ctx.method,
        "headers": headers,
        "multiValueHeaders": multi,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "requestContext": request_context,
        "pathParameters": dict(path_params) if path_params else None,
        "stageVariables": dict(variables) if variables else None,
        "body": body_text,
        "isBase64Encoded": is_b64,
    }
