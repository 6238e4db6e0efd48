"""WebSocket APIs' HTTP_PROXY, HTTP, AWS (Lambda) and MOCK integrations (issue 12, item 2), as
"Setting up WebSocket API integrations", "Integration responses" and "Data transformations for
WebSocket APIs" in the API Gateway developer guide describe them: request parameters from the
route request and `$context`, request templates chosen by `templateSelectionExpression`,
integration responses chosen by `integrationResponseKey` with their own templates, and route
responses making a route two-way.

The backends are real: an HTTP server this module starts on a free port, a Lambda handler
(tests/handlers/ws_integrations.py); the client is `websockets`, the builder boto3.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from conftest import Server, free_port, start_server

ACCOUNT = "123456789012"
REGION = "us-east-1"
STAGE = "prod"


# Bytes that are not UTF-8 (a PNG's signature and more), for contentHandlingStrategy.
BLOB = b"\x89PNG\r\n\x1a\n\x00\xff\xfe" + bytes(range(256))

ORDER_MODEL = {
    "$schema": "http://json-schema.org/draft-04/schema#",
    "type": "object",
    "required": ["action", "item"],
    "properties": {"item": {"type": "string"}, "quantity": {"type": "integer", "minimum": 1}},
}
# Version 2 of the message: the quantity is required.
ORDER_V2_MODEL = {**ORDER_MODEL, "required": ["action", "item", "quantity"]}

SHOUT_TEMPLATE = '{"text": $input.json(\'$.text\'), "cid": "$context.connectionId"}'


def invocation_uri(function: str) -> str:
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}"
    return f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{arn}/invocations"


class Upstream:
    """An HTTP backend: records each request; `/connect` admits the token `let-me-in`,
    `/status/N` answers N, `/blob` answers `BLOB`'s bytes and `/b64` their base64, `/bytes` the
    size and SHA-256 of the bytes it got, anything else echoes the request as JSON."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = raw.decode(errors="replace")
                seen = {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body,
                    "raw": raw,
                }
                upstream.requests.append(seen)
                status = 200
                if self.path.startswith("/slow"):
                    time.sleep(6)  # a hung backend, past the integration's timeout
                if self.path.startswith("/connect"):
                    status = 200 if seen["headers"].get("x-token") == "let-me-in" else 403
                elif self.path.startswith("/status/"):
                    status = int(self.path.rsplit("/", 1)[1])
                out = json.dumps({"got": body, "headers": seen["headers"], "path": self.path}).encode()
                content_type = "application/json"
                if self.path.startswith("/blob"):
                    out, content_type = BLOB, "application/octet-stream"
                elif self.path.startswith("/b64"):
                    out, content_type = base64.b64encode(BLOB), "text/plain"
                elif self.path.startswith("/bytes"):
                    out = json.dumps({"size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("X-Kind", "echo")
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the gateway gave up on a slow answer (its timeout)

            do_GET = do_POST = do_PUT = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True  # a hung request does not hold the teardown
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def last(self, path_prefix: str) -> dict[str, Any]:
        return next(r for r in reversed(self.requests) if r["path"].startswith(path_prefix))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    started = Upstream()
    yield started
    started.stop()


def _config(upstream: Upstream) -> dict[str, Any]:
    closed_port = free_port()  # nothing listens there: a failing integration
    two_way = {"routeResponseSelectionExpression": "$default"}
    return {
        "settings": {"accountId": ACCOUNT, "region": REGION},
        "functions": {"shout": "handlers.ws_integrations:shout"},
        "apis": [
            {
                "name": "integrations",
                "id": "wsinteg",
                "protocolType": "WEBSOCKET",
                "routeSelectionExpression": "$request.body.action",
                "routes": [
                    {
                        "routeKey": "$connect",
                        "integration": {
                            "type": "HTTP_PROXY",
                            "integrationUri": f"{upstream.url}/connect",
                            "integrationMethod": "GET",
                            "requestParameters": {
                                "integration.request.header.x-token": "route.request.header.x-token",
                                "integration.request.querystring.room": "route.request.querystring.room",
                                "integration.request.header.x-connection-id": "context.connectionId",
                            },
                        },
                    },
                    {
                        "routeKey": "$disconnect",
                        "integration": {
                            "type": "HTTP",
                            "integrationUri": f"{upstream.url}/disconnect",
                            "integrationMethod": "POST",
                            "requestParameters": {
                                "integration.request.header.x-connection-id": "context.connectionId"
                            },
                            "requestTemplates": {
                                "$default": '{"code": $context.disconnectStatusCode, '
                                '"reason": "$context.disconnectReason", "type": "$context.eventType"}'
                            },
                            "integrationResponses": {"$default": {}},
                        },
                    },
                    {
                        "routeKey": "proxy",
                        **two_way,
                        "integration": {
                            "type": "HTTP_PROXY",
                            "integrationUri": f"{upstream.url}/echo",
                            "integrationMethod": "POST",
                            "requestParameters": {
                                "integration.request.header.x-connection-id": "context.connectionId",
                                "integration.request.header.x-route": "context.routeKey",
                                "integration.request.header.x-said": "route.request.body.text",
                                "integration.request.header.x-fixed": "'static'",
                                "integration.request.header.x-color": "stageVariables.color",
                            },
                        },
                    },
                    {
                        "routeKey": "http",
                        **two_way,
                        "integration": {
                            "type": "HTTP",
                            "integrationUri": f"{upstream.url}/echo",
                            "integrationMethod": "POST",
                            "templateSelectionExpression": "\\$default",
                            "requestTemplates": {
                                "$default": '{"text": $input.json(\'$.text\'), "route": "$context.routeKey", '
                                '"eventType": "$context.eventType", "connectionId": "$context.connectionId", '
                                '"messageId": "$context.messageId", "stage": "$context.stage", '
                                '"apiId": "$context.apiId", "requestId": "$context.requestId", '
                                '"color": "$stageVariables.color"}'
                            },
                            "integrationResponses": {
                                "/2\\d\\d/": {
                                    "responseTemplates": {
                                        "$default": "#set($sent = $util.parseJson($input.path('$.got')))"
                                        "ok: $sent.text via $sent.route"
                                    }
                                },
                                "$default": {"responseTemplates": {"$default": "unexpected"}},
                            },
                        },
                    },
                    {
                        "routeKey": "missing",
                        **two_way,
                        "integration": {
                            "type": "HTTP",
                            "integrationUri": f"{upstream.url}/status/404",
                            "integrationResponses": {
                                "/2\\d\\d/": {"responseTemplates": {"$default": "found"}},
                                "/4\\d\\d/": {
                                    "templateSelectionExpression": "${integration.response.statuscode}",
                                    "responseTemplates": {
                                        "404": "not found: $input.path('$.path') ($context.connectionId)",
                                        "$default": "some other 4xx",
                                    },
                                },
                            },
                        },
                    },
                    {
                        "routeKey": "mock",
                        **two_way,
                        "integration": {
                            "type": "MOCK",
                            "templateSelectionExpression": "$request.body.kind",
                            "requestTemplates": {
                                "good": '{"statusCode": 200}',
                                "bad": '{"statusCode": 404}',
                            },
                            "passthroughBehavior": "NEVER",
                            "integrationResponses": {
                                "/2\\d\\d/": {
                                    "responseTemplates": {
                                        "$default": '{"kind": "$input.params().header.size()", '
                                        '"message": "$context.messageId", "route": "$context.routeKey"}'
                                    }
                                },
                                "$default": {"responseTemplates": {"$default": "mock said no"}},
                            },
                        },
                    },
                    {
                        "routeKey": "shout",
                        **two_way,
                        "integration": {
                            "type": "AWS",
                            "integrationUri": invocation_uri("shout"),
                            "requestTemplates": {"$default": SHOUT_TEMPLATE},
                            "integrationResponses": {
                                "$default": {
                                    "responseTemplates": {
                                        "$default": "$input.path('$.upper') for $input.path('$.cid')"
                                    }
                                },
                                "/bad input.*/": {
                                    "responseTemplates": {
                                        "$default": "refused: $input.path('$.errorMessage')"
                                    }
                                },
                            },
                        },
                    },
                    {
                        "routeKey": "down",
                        **two_way,
                        "integration": {
                            "type": "HTTP_PROXY",
                            "integrationUri": f"http://127.0.0.1:{closed_port}/",
                            "integrationMethod": "POST",
                        },
                    },
                    {
                        "routeKey": "slow",
                        **two_way,
                        "integration": {
                            "type": "HTTP_PROXY",
                            "integrationUri": f"{upstream.url}/slow",
                            "integrationMethod": "POST",
                            "timeoutInMillis": 300,
                        },
                    },
                    # contentHandlingStrategy ("Binary media types for WebSocket APIs"): a
                    # message that is base64 (not JSON: it falls to $default) reaches the backend
                    # as its bytes; a backend's bytes come back as base64 text, or base64 from a
                    # backend comes back as a binary frame.
                    {
                        "routeKey": "$default",
                        **two_way,
                        "integration": {
                            "type": "HTTP_PROXY",
                            "integrationUri": f"{upstream.url}/bytes",
                            "integrationMethod": "POST",
                            "contentHandlingStrategy": "CONVERT_TO_BINARY",
                        },
                    },
                    {
                        "routeKey": "download",
                        **two_way,
                        "integration": {
                            "type": "HTTP",
                            "integrationUri": f"{upstream.url}/blob",
                            "integrationMethod": "GET",
                            "integrationResponses": {
                                "$default": {
                                    "contentHandlingStrategy": "CONVERT_TO_TEXT",
                                    "responseTemplates": {"$default": '{"png": "$input.body"}'},
                                }
                            },
                        },
                    },
                    {
                        "routeKey": "binary",
                        **two_way,
                        "integration": {
                            "type": "HTTP",
                            "integrationUri": f"{upstream.url}/b64",
                            "integrationMethod": "GET",
                            "integrationResponses": {
                                "$default": {
                                    "contentHandlingStrategy": "CONVERT_TO_BINARY",
                                    "responseTemplates": {"$default": "never applied to bytes"},
                                }
                            },
                        },
                    },
                    # "Request validation for WebSocket APIs": the model is chosen per message.
                    {
                        "routeKey": "order",
                        **two_way,
                        "modelSelectionExpression": "$request.body.version",
                        "requestModels": {"v2": "OrderV2", "$default": "Order"},
                        "integration": {
                            "type": "MOCK",
                            "requestTemplates": {"$default": '{"statusCode": 200}'},
                            "integrationResponses": {
                                "$default": {
                                    "responseTemplates": {"$default": "accepted by $context.routeKey"}
                                }
                            },
                        },
                    },
                    {
                        "routeKey": "oneway",
                        "integration": {
                            "type": "HTTP",
                            "integrationUri": f"{upstream.url}/oneway",
                            "integrationMethod": "PUT",
                            "integrationResponses": {
                                "$default": {"responseTemplates": {"$default": "never seen"}}
                            },
                        },
                    },
                ],
                "models": {"Order": {"schema": ORDER_MODEL}, "OrderV2": {"schema": ORDER_V2_MODEL}},
                "stages": [{"stageName": STAGE, "variables": {"color": "blue"}}],
            }
        ],
    }


@pytest.fixture(scope="module", params=["edge", "no-edge"])
def door(request: pytest.FixtureRequest) -> list[str]:
    """The front door: the edge, or the embedded ASGI app behind Granian (`--no-edge`)."""
    return [] if request.param == "edge" else ["--no-edge"]


@pytest.fixture(scope="module")
def server(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory, door: list[str]) -> Iterator[Server]:
    started = start_server(_config(upstream), tmp_path_factory.mktemp("wsinteg"), extra_args=door)
    yield started
    started.stop()


def open_ws(server: Server, query: str = "", token: str | None = "let-me-in") -> ClientConnection:
    headers = {"X-Token": token} if token else {}
    return connect(
        f"ws://127.0.0.1:{server.port}/{STAGE}{query}", open_timeout=10, additional_headers=headers
    )


def ask(ws: ClientConnection, message: dict[str, Any]) -> str:
    ws.send(json.dumps(message))
    answer = ws.recv(timeout=10)
    assert isinstance(answer, str)
    return answer


def test_connect_through_http_proxy_accepts_on_2xx_and_maps_parameters(
    server: Server, upstream: Upstream
) -> None:
    with open_ws(server, "?room=blue&x=1") as ws:
        asked = upstream.last("/connect")
        assert asked["method"] == "GET"
        assert asked["path"] == "/connect?room=blue"
        assert asked["headers"]["x-token"] == "let-me-in"
        connection_id = asked["headers"]["x-connection-id"]
        assert len(connection_id) == 16 and connection_id.endswith("=")
        answer = json.loads(ask(ws, {"action": "proxy", "text": "hi"}))
        assert answer["headers"]["x-connection-id"] == connection_id


@pytest.mark.parametrize("token", [None, "wrong"])
def test_connect_through_http_refuses_with_the_upstream_status(server: Server, token: str | None) -> None:
    with pytest.raises(InvalidStatus) as refused:
        open_ws(server, token=token)
    assert refused.value.response.status_code == 403


def test_http_proxy_sends_the_message_and_answers_with_the_upstream_body(
    server: Server, upstream: Upstream
) -> None:
    message = {"action": "proxy", "text": "hello there"}
    with open_ws(server) as ws:
        answer = json.loads(ask(ws, message))
    asked = upstream.last("/echo")
    assert asked["method"] == "POST"
    assert json.loads(asked["body"]) == message
    assert answer["got"] == json.dumps(message)
    headers = asked["headers"]
    assert headers["x-route"] == "proxy"
    assert headers["x-said"] == "hello there"
    assert headers["x-fixed"] == "static"
    assert headers["x-color"] == "blue"
    assert headers["x-amzn-apigateway-api-id"] == "wsinteg"


def test_http_request_template_sees_the_websocket_context(server: Server, upstream: Upstream) -> None:
    with open_ws(server) as ws:
        answer = ask(ws, {"action": "http", "text": "templated"})
        connection_id = upstream.last("/connect")["headers"]["x-connection-id"]
    assert answer == "ok: templated via http"
    sent = json.loads(upstream.last("/echo")["body"])
    assert sent["text"] == "templated"
    assert sent["route"] == "http"
    assert sent["eventType"] == "MESSAGE"
    assert sent["connectionId"] == connection_id
    assert sent["stage"] == STAGE and sent["apiId"] == "wsinteg"
    assert sent["color"] == "blue"
    assert sent["messageId"] and sent["requestId"] and sent["messageId"] != sent["requestId"]


def test_integration_response_by_status_pattern_and_template_selection(server: Server) -> None:
    with open_ws(server) as ws:
        answer = ask(ws, {"action": "missing"})
    assert answer.startswith("not found: /status/404 (") and answer.endswith("=)")


def test_mock_chooses_its_request_template_by_the_body(server: Server) -> None:
    with open_ws(server) as ws:
        good = json.loads(ask(ws, {"action": "mock", "kind": "good"}))
        assert good["route"] == "mock" and good["message"]
        # A handshake header is not a message's parameter.
        assert good["kind"] == "0"
        assert ask(ws, {"action": "mock", "kind": "bad"}) == "mock said no"
        # passthroughBehavior NEVER and no template for "other": AWS's error frame, and the
        # connection stays open.
        refused = json.loads(ask(ws, {"action": "mock", "kind": "other"}))
        assert refused["message"] == "Internal server error"
        assert refused["connectionId"] and refused["requestId"]
        assert json.loads(ask(ws, {"action": "mock", "kind": "good"}))["route"] == "mock"


def test_lambda_non_proxy_maps_the_result_and_the_error(server: Server, upstream: Upstream) -> None:
    with open_ws(server) as ws:
        connection_id = upstream.last("/connect")["headers"]["x-connection-id"]
        assert ask(ws, {"action": "shout", "text": "quiet"}) == f"QUIET for {connection_id}"
        assert ask(ws, {"action": "shout", "text": ""}) == "refused: bad input: no text"


def test_a_failing_http_integration_gets_the_error_frame_and_the_connection_stays_open(
    server: Server,
) -> None:
    with open_ws(server) as ws:
        frame = json.loads(ask(ws, {"action": "down"}))
        assert frame["message"] == "Internal server error"
        assert set(frame) == {"message", "connectionId", "requestId"}
        assert ask(ws, {"action": "http", "text": "still here"}) == "ok: still here via http"


def test_a_backend_past_its_timeout_gets_the_error_frame(server: Server) -> None:
    with open_ws(server) as ws:
        ws.send(json.dumps({"action": "slow"}))
        frame = json.loads(ws.recv(timeout=5))  # before the backend answers (6 s)
        assert frame["message"] == "Internal server error"
        assert ask(ws, {"action": "http", "text": "after"}) == "ok: after via http"


def test_disconnect_through_http_tells_the_backend_how_it_ended(
    server: Server, upstream: Upstream, door: list[str]
) -> None:
    with open_ws(server) as ws:
        ask(ws, {"action": "proxy"})
        connection_id = upstream.last("/connect")["headers"]["x-connection-id"]
        ws.close(code=1000, reason="bye")

    def told() -> dict[str, Any] | None:
        for request in upstream.requests:
            if (
                request["path"] == "/disconnect"
                and request["headers"].get("x-connection-id") == connection_id
            ):
                return request
        return None

    deadline = time.monotonic() + 10
    while (request := told()) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert request is not None
    # Granian's `websocket.disconnect` carries no reason (docs/websocket.md).
    reason = "" if door else "bye"
    assert json.loads(request["body"]) == {
        "code": 1000,
        "reason": f"Client-side close frame status code '1000' (NORMAL_CLOSURE) - custom reason: {reason}",
        "type": "DISCONNECT",
    }


def test_a_one_way_http_route_calls_the_backend_and_sends_nothing(server: Server, upstream: Upstream) -> None:
    with open_ws(server) as ws:
        ws.send(json.dumps({"action": "oneway", "n": 1}))
        with pytest.raises(TimeoutError):
            ws.recv(timeout=1)
    asked = upstream.last("/oneway")
    assert asked["method"] == "PUT" and json.loads(asked["body"]) == {"action": "oneway", "n": 1}


def test_content_handling_converts_messages_and_answers(server: Server, upstream: Upstream) -> None:
    with open_ws(server) as ws:
        # CONVERT_TO_BINARY on the integration: the backend gets the bytes the message encodes.
        ws.send(base64.b64encode(BLOB).decode())
        answer = ws.recv(timeout=10)
        assert json.loads(answer) == {"size": len(BLOB), "sha256": hashlib.sha256(BLOB).hexdigest()}
        assert upstream.last("/bytes")["raw"] == BLOB
        # CONVERT_TO_TEXT on the integration response: the backend's bytes, as base64, mapped.
        answer = ask(ws, {"action": "download"})
        assert base64.b64decode(json.loads(answer)["png"]) == BLOB
        # CONVERT_TO_BINARY on the integration response: a binary frame of the decoded answer.
        ws.send(json.dumps({"action": "binary"}))
        assert ws.recv(timeout=10) == BLOB
        # A message that is not base64 cannot be converted: AWS's error frame, and the connection
        # stays open.
        ws.send("not base64 at all!")
        frame = json.loads(ws.recv(timeout=10))
        assert frame["message"] == "Internal server error"
        assert ask(ws, {"action": "http", "text": "on"}) == "ok: on via http"


def test_messages_are_validated_against_the_model_they_select(server: Server) -> None:
    with open_ws(server) as ws:
        assert ask(ws, {"action": "order", "item": "tea"}) == "accepted by order"
        for invalid in (
            {"action": "order", "quantity": 2},  # no item ($default's model: Order)
            {"action": "order", "item": "tea", "quantity": "two"},
            {"action": "order", "version": "v2", "item": "tea"},  # OrderV2 needs a quantity
        ):
            frame = json.loads(ask(ws, invalid))
            assert frame["message"] == "Invalid request body", invalid
            assert set(frame) == {"message", "connectionId", "requestId"}
        # The connection stays open, and version 2 with its quantity passes.
        assert (
            ask(ws, {"action": "order", "version": "v2", "item": "milk", "quantity": 2})
            == "accepted by order"
        )


def _route_of(config: dict[str, Any], key: str) -> dict[str, Any]:
    return next(r for r in config["apis"][0]["routes"] if r["routeKey"] == key)


def test_the_config_refuses_what_websocket_apis_do_not_take(tmp_path: Path, upstream: Upstream) -> None:
    from portico.config.models import Config

    config = _config(upstream)
    route = _route_of(config, "missing")
    route["integration"]["integrationResponses"]["404"] = {"responseTemplates": {"$default": "x"}}
    with pytest.raises(ValueError, match=r"\$default or /REGEX/"):
        Config.model_validate(config)
    config = _config(upstream)
    _route_of(config, "missing")["integration"]["integrationResponses"]["/4\\d\\d/"]["selectionPattern"] = (
        "4.."
    )
    with pytest.raises(ValueError, match="selected by their key"):
        Config.model_validate(config)
    rest = {
        "name": "rest",
        "protocolType": "REST",
        "routes": [
            {
                "routeKey": "GET /x",
                "integration": {
                    "type": "MOCK",
                    "requestTemplates": {"application/json": '{"statusCode": 200}'},
                    "templateSelectionExpression": "\\$default",
                },
            }
        ],
        "stages": [{"stageName": "prod"}],
    }
    with pytest.raises(ValueError, match="templateSelectionExpression is WebSocket APIs'"):
        Config.model_validate({"apis": [rest]})
    del rest["routes"][0]["integration"]["templateSelectionExpression"]
    rest["routes"][0]["integration"]["contentHandlingStrategy"] = "CONVERT_TO_TEXT"
    with pytest.raises(
        ValueError, match=r"contentHandlingStrategy is WebSocket APIs' \(REST APIs: contentHandling\)"
    ):
        Config.model_validate({"apis": [rest]})
    config = _config(upstream)
    _route_of(config, "order")["requestModels"]["v3"] = "OrderV3"
    with pytest.raises(ValueError, match="unknown model 'OrderV3'"):
        Config.model_validate(config)
    rest["routes"][0]["integration"].pop("contentHandlingStrategy")
    rest["routes"][0]["modelSelectionExpression"] = "$request.body.version"
    with pytest.raises(ValueError, match="modelSelectionExpression: WebSocket APIs' only"):
        Config.model_validate({"apis": [rest]})
    config = _config(upstream)
    _route_of(config, "download")["integration"]["contentHandling"] = "CONVERT_TO_TEXT"
    with pytest.raises(ValueError, match="WebSocket APIs spell it contentHandlingStrategy"):
        Config.model_validate(config)
    config = _config(upstream)
    _route_of(config, "shout")["integration"] = {
        "type": "AWS_PROXY",
        "integrationUri": "shout",
        "contentHandlingStrategy": "CONVERT_TO_BINARY",
    }
    with pytest.raises(ValueError, match="an AWS_PROXY event carries the message as text"):
        Config.model_validate(config)


def test_integrations_built_with_boto3(
    portico: Callable[..., Server], tmp_path: Path, upstream: Upstream
) -> None:
    from admin_e2e import start_admin_server

    admin = start_admin_server(
        portico, tmp_path, functions={"shout": "handlers.ws_integrations:shout"}, config={"apis": []}
    )
    v2 = admin.client("apigatewayv2")
    api_id = v2.create_api(
        Name="integrations", ProtocolType="WEBSOCKET", RouteSelectionExpression="$request.body.action"
    )["ApiId"]

    def route(key: str, two_way: bool, **integration: Any) -> str:
        integration_id = v2.create_integration(ApiId=api_id, **integration)["IntegrationId"]
        extra = {"RouteResponseSelectionExpression": "$default"} if two_way else {}
        created = v2.create_route(
            ApiId=api_id, RouteKey=key, Target=f"integrations/{integration_id}", **extra
        )
        if two_way:
            v2.create_route_response(ApiId=api_id, RouteId=created["RouteId"], RouteResponseKey="$default")
        return integration_id

    # AWS's MOCK `$connect`: the request template gives the status.
    route(
        "$connect",
        False,
        IntegrationType="MOCK",
        TemplateSelectionExpression="\\$default",
        RequestTemplates={"$default": '{"statusCode": 200}'},
    )
    http = route(
        "echo",
        True,
        IntegrationType="HTTP",
        IntegrationMethod="POST",
        IntegrationUri=f"{upstream.url}/echo",
        TemplateSelectionExpression="$request.body.format",
        RequestTemplates={"short": "{\"said\": $input.json('$.text')}"},
        RequestParameters={"integration.request.header.x-connection-id": "context.connectionId"},
    )
    v2.create_integration_response(
        ApiId=api_id,
        IntegrationId=http,
        IntegrationResponseKey="/2\\d\\d/",
        TemplateSelectionExpression="$request.body.format",
        ResponseTemplates={"short": "echoed $input.path('$.got')"},
    )
    route(
        "shout",
        True,
        IntegrationType="AWS",
        IntegrationUri=invocation_uri("shout"),
        RequestTemplates={"$default": '{"text": $input.json(\'$.text\'), "cid": "$context.connectionId"}'},
    )
    shout_integration = v2.get_integrations(ApiId=api_id)["Items"][-1]["IntegrationId"]
    v2.create_integration_response(
        ApiId=api_id,
        IntegrationId=shout_integration,
        IntegrationResponseKey="$default",
        ResponseTemplates={"$default": "$input.path('$.upper')"},
    )
    route(
        "proxy",
        True,
        IntegrationType="HTTP_PROXY",
        IntegrationMethod="POST",
        IntegrationUri=f"{upstream.url}/echo",
    )
    # ContentHandlingStrategy: a base64 message reaches the backend as bytes, bytes come back
    # as base64.
    route(
        "$default",
        True,
        IntegrationType="HTTP_PROXY",
        IntegrationMethod="POST",
        IntegrationUri=f"{upstream.url}/bytes",
        ContentHandlingStrategy="CONVERT_TO_BINARY",
    )
    blob = route(
        "blob", True, IntegrationType="HTTP", IntegrationMethod="GET", IntegrationUri=f"{upstream.url}/blob"
    )
    v2.create_integration_response(
        ApiId=api_id,
        IntegrationId=blob,
        IntegrationResponseKey="$default",
        ContentHandlingStrategy="CONVERT_TO_TEXT",
    )
    # A validated route: every message checked against its model.
    v2.create_model(
        ApiId=api_id, Name="Order", ContentType="application/json", Schema=json.dumps(ORDER_MODEL)
    )
    ordered = v2.create_integration(
        ApiId=api_id,
        IntegrationType="MOCK",
        RequestTemplates={"$default": '{"statusCode": 200}'},
    )["IntegrationId"]
    v2.create_integration_response(
        ApiId=api_id,
        IntegrationId=ordered,
        IntegrationResponseKey="$default",
        ResponseTemplates={"$default": "ordered by $context.routeKey"},
    )
    order_route = v2.create_route(
        ApiId=api_id,
        RouteKey="order",
        Target=f"integrations/{ordered}",
        RouteResponseSelectionExpression="$default",
        ModelSelectionExpression="$request.body.version",
        RequestModels={"$default": "Order"},
    )["RouteId"]
    v2.create_route_response(ApiId=api_id, RouteId=order_route, RouteResponseKey="$default")
    deployment_id = v2.create_deployment(ApiId=api_id)["DeploymentId"]
    v2.create_stage(ApiId=api_id, StageName=STAGE, DeploymentId=deployment_id)

    def served() -> ClientConnection | None:
        try:
            return connect(f"ws://127.0.0.1:{admin.server.port}/{STAGE}", open_timeout=5)
        except InvalidStatus:
            return None

    from test_websocket import wait_for

    ws = wait_for(served)
    with ws:
        assert ask(ws, {"action": "echo", "format": "short", "text": "boto"}) == 'echoed {"said": "boto"}'
        assert upstream.last("/echo")["headers"]["x-connection-id"].endswith("=")
        # No template for "long": WHEN_NO_MATCH passes the message as it is, and the answer too.
        long = {"action": "echo", "format": "long", "text": "as is"}
        assert json.loads(ask(ws, long))["got"] == json.dumps(long)
        assert ask(ws, {"action": "shout", "text": "boto"}) == "BOTO"
        assert json.loads(ask(ws, {"action": "proxy", "x": 1}))["got"] == json.dumps(
            {"action": "proxy", "x": 1}
        )
        assert base64.b64decode(ask(ws, {"action": "blob"})) == BLOB
        ws.send(base64.b64encode(BLOB).decode())
        assert json.loads(ws.recv(timeout=10))["sha256"] == hashlib.sha256(BLOB).hexdigest()
        assert ask(ws, {"action": "order", "item": "tea"}) == "ordered by order"
        assert json.loads(ask(ws, {"action": "order", "quantity": 0}))["message"] == "Invalid request body"
