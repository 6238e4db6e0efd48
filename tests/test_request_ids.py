"""Request ids as AWS issues them, per API kind.

- HTTP APIs: one 16-character base64 id (`apigw-requestid`), which is also `$context.requestId`
  and `$context.extendedRequestId`.
- REST APIs: `$context.requestId` is a UUID, sent back as `x-amzn-RequestId`, and
  `$context.extendedRequestId` the 16-character form, sent back as `x-amz-apigw-id`, on every
  answer, gateway responses included ("Variables for access logging for API Gateway" in the
  developer guide). The Lambda event's `requestContext`, a Lambda authorizer's event, gateway
  response templates and the access log all name the request by the same ids.

Also: ids are unique within and across workers; X-Ray trace ids have AWS's shape."""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path

import httpx

from portico._core import RequestIds

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
SHORT_ID = re.compile(r"[A-Za-z0-9+/]{15}=")
ECHO_ARN = "arn:aws:lambda:us-east-1:123456789012:function:echo"
IDS_TEMPLATE = '{"id":"$context.requestId","ext":"$context.extendedRequestId"}'
LOG_FORMAT = "$context.requestId $context.extendedRequestId $context.status $context.apiId"


def test_ids_are_unique_and_shaped_like_aws():
    first, second = RequestIds(), RequestIds()
    ids = [first.next() for _ in range(50_000)] + [second.next() for _ in range(50_000)]
    assert len(set(ids)) == len(ids)
    for request_id in ids[:100]:
        assert len(request_id) == 16
        assert len(base64.b64decode(request_id)) == 11


def test_trace_ids_are_xray_roots_and_unique():
    ids = RequestIds()
    traces = [ids.trace_id() for _ in range(10_000)]
    assert len(set(traces)) == len(traces)
    for trace in traces[:100]:
        match = re.fullmatch(r"Root=1-([0-9a-f]{8})-[0-9a-f]{24}", trace)
        assert match is not None
        assert abs(int(match.group(1), 16) - time.time()) < 60


def _config(log_file: Path) -> dict:
    authorizer = {
        "authorizerType": "REQUEST",
        "authorizerUri": "event_authorizer",
        "identitySource": ["method.request.header.x-user"],
        "authorizerResultTtlInSeconds": 0,
    }
    return {
        "functions": {
            "echo": "handlers.basic:echo",
            "event_authorizer": "handlers.authorizers:event_authorizer",
        },
        "settings": {"accessLog": {"format": LOG_FORMAT, "destination": str(log_file)}},
        "apis": [
            {
                "name": "rest",
                "id": "restids",
                "protocolType": "REST",
                "routes": [
                    {"routeKey": "GET /echo", "integration": "fn"},
                    {
                        "routeKey": "GET /guarded",
                        "integration": "fn",
                        "authorizationType": "CUSTOM",
                        "authorizerId": "who",
                    },
                    {
                        "routeKey": "GET /mock",
                        "integration": {"type": "MOCK", "statusCode": 200, "body": "m"},
                    },
                ],
                "integrations": {"fn": {"type": "AWS_PROXY", "uri": ECHO_ARN}},
                "authorizers": {"who": authorizer},
                "stages": [{"stageName": "prod"}],
                "gatewayResponses": {
                    "UNAUTHORIZED": {
                        "responseParameters": {"gatewayresponse.header.x-id": "context.requestId"},
                        "responseTemplates": {"application/json": IDS_TEMPLATE},
                    },
                },
            },
            {
                "name": "http",
                "id": "httpids",
                "routes": [{"routeKey": "GET /echo", "integration": {"type": "AWS_PROXY", "uri": ECHO_ARN}}],
            },
        ],
    }


def _log_lines(log_file: Path, request_ids: list[str]) -> dict[str, list[str]]:
    """The access log's lines by request id, once it holds a line for each of `request_ids` (a
    line is written when its response has gone, so the last may come after the client has it)."""
    deadline = time.monotonic() + 5
    lines: dict[str, list[str]] = {}
    while time.monotonic() < deadline:
        text = log_file.read_text() if log_file.exists() else ""
        # Only whole lines: a line being written may be read before its end.
        lines = {
            line.split(" ")[0]: line.split(" ")[1:] for line in text[: text.rfind("\n") + 1].splitlines()
        }
        if all(request_id in lines for request_id in request_ids):
            return lines
        time.sleep(0.02)
    raise AssertionError(f"expected access-log lines of {request_ids}, found {log_file.read_text()!r}")


def _rest_ids(response: httpx.Response) -> tuple[str, str]:
    """A REST answer's (requestId, extendedRequestId), checked for AWS's shapes and headers."""
    assert "apigw-requestid" not in response.headers
    request_id, extended = response.headers["x-amzn-requestid"], response.headers["x-amz-apigw-id"]
    assert UUID.fullmatch(request_id), request_id
    assert SHORT_ID.fullmatch(extended), extended
    return request_id, extended


def test_rest_apis_issue_uuids_and_extended_ids_everywhere_http_apis_one_id(portico, tmp_path):
    log_file = tmp_path / "access.log"
    server = portico(_config(log_file))
    rest = {"host": "restids.execute-api.localhost"}

    # A Lambda proxy integration: the event names the request by the ids the client sees.
    echoed = httpx.get(server.url + "/prod/echo", headers=rest)
    assert echoed.status_code == 200, echoed.text
    request_id, extended = _rest_ids(echoed)
    context = echoed.json()["requestContext"]
    assert (context["requestId"], context["extendedRequestId"]) == (request_id, extended)

    # A MOCK answer and a gateway response (an unknown path: 403 Missing Authentication Token).
    mocked = _rest_ids(httpx.get(server.url + "/prod/mock", headers=rest))
    missing = httpx.get(server.url + "/prod/nowhere", headers=rest)
    assert missing.status_code == 403
    assert missing.headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"
    refused = _rest_ids(missing)

    # A Lambda authorizer's REQUEST event carries the request's ids too.
    guarded = httpx.get(server.url + "/prod/guarded", headers={**rest, "x-user": "ann"})
    assert guarded.status_code == 200, guarded.text
    guarded_ids = _rest_ids(guarded)
    authorizer_event = json.loads(guarded.json()["requestContext"]["authorizer"]["event"])
    seen = authorizer_event["requestContext"]
    assert (seen["requestId"], seen["extendedRequestId"]) == guarded_ids

    # A customised gateway response renders the same ids in its header mapping and template.
    unauthorized = httpx.get(server.url + "/prod/guarded", headers=rest)
    assert unauthorized.status_code == 401
    unauthorized_ids = _rest_ids(unauthorized)
    assert unauthorized.json() == {"id": unauthorized_ids[0], "ext": unauthorized_ids[1]}
    assert unauthorized.headers["x-id"] == unauthorized_ids[0]

    # An HTTP API: one 16-character id, everywhere.
    http_echo = httpx.get(server.url + "/echo", headers={"host": "httpids.execute-api.localhost"})
    assert http_echo.status_code == 200, http_echo.text
    assert "x-amzn-requestid" not in http_echo.headers and "x-amz-apigw-id" not in http_echo.headers
    http_id = http_echo.headers["apigw-requestid"]
    assert SHORT_ID.fullmatch(http_id)
    assert http_echo.json()["requestContext"]["requestId"] == http_id

    rest_ids = [request_id, mocked[0], refused[0], guarded_ids[0], unauthorized_ids[0]]
    lines = _log_lines(log_file, [*rest_ids, http_id])
    assert lines[request_id] == [extended, "200", "restids"]
    assert lines[mocked[0]] == [mocked[1], "200", "restids"]
    assert lines[refused[0]] == [refused[1], "403", "restids"]
    assert lines[guarded_ids[0]] == [guarded_ids[1], "200", "restids"]
    assert lines[unauthorized_ids[0]] == [unauthorized_ids[1], "401", "restids"]
    assert lines[http_id] == [http_id, "200", "httpids"]
    # Every id is the request's own.
    extended_ids = [extended, mocked[1], refused[1], guarded_ids[1], unauthorized_ids[1]]
    assert len(set(rest_ids)) == len(set(extended_ids)) == 5
