"""WebSocket APIs on one node, from a config file: a chat app written as AWS's tutorial writes it
(tests/handlers/chat.py) behind `portico serve`, with `websockets` connecting as browsers do and
boto3's `apigatewaymanagementapi` calling the `@connections` API, signed with a principal's keys.

What is checked is what a client and a handler see on AWS ("Working with WebSocket APIs" in the
API Gateway developer guide): `$connect` deciding the handshake, routes chosen by
`routeSelectionExpression`, two-way and one-way routes, AWS's error frames, `$disconnect` once per
connection however it ends, the `@connections` operations and `GoneException`, and the 128 KB
message limit (close 1009) and binary frames (close 1003).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
import botocore.exceptions
import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from conftest import Server, start_server

ACCOUNT = "123456789012"
REGION = "us-east-1"
STAGE = "prod"
PRINCIPAL = {
    "accessKeyId": "AKIACHATEXAMPLE00001",
    "secretAccessKey": "chat/Secret+Key0123456789abcdefGHIJKL",
    "arn": f"arn:aws:iam::{ACCOUNT}:user/chat",
}


def _route(key: str, function: str, two_way: bool = False) -> dict[str, Any]:
    route: dict[str, Any] = {
        "routeKey": key,
        "integration": {"type": "AWS_PROXY", "integrationUri": function},
    }
    if two_way:
        route["routeResponseSelectionExpression"] = "$default"
    return route


CONFIG: dict[str, Any] = {
    "settings": {"accountId": ACCOUNT, "region": REGION},
    "functions": {
        name: f"handlers.chat:{name}"
        for name in ("connect", "disconnect", "send_message", "echo", "whoami", "quiet", "fail", "events")
    },
    "principals": [PRINCIPAL],
    "apis": [
        {
            "name": "chat",
            "id": "chatapi",
            "protocolType": "WEBSOCKET",
            "routeSelectionExpression": "$request.body.action",
            "routes": [
                _route("$connect", "connect"),
                _route("$disconnect", "disconnect"),
                _route("$default", "echo", two_way=True),
                _route("sendmessage", "send_message"),
                _route("whoami", "whoami", two_way=True),
                _route("quiet", "quiet"),
                _route("fail", "fail", two_way=True),
                _route("events", "events", two_way=True),
            ],
            "stages": [{"stageName": STAGE}],
        }
    ],
}


@pytest.fixture(scope="module", params=["edge", "no-edge"])
def door(request: pytest.FixtureRequest) -> list[str]:
    """The front door under test: the edge, or the embedded ASGI app behind Granian
    (`--no-edge`), where the ASGI server speaks the protocol and the core holds the connection.
    The same expectations hold for both."""
    return [] if request.param == "edge" else ["--no-edge"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, door: list[str]) -> Iterator[Server]:
    # The handlers' boto3 clients sign with the principal's keys, as a function's role would.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", PRINCIPAL["accessKeyId"])
        env.setenv("AWS_SECRET_ACCESS_KEY", PRINCIPAL["secretAccessKey"])
        env.setenv("AWS_DEFAULT_REGION", REGION)
        env.delenv("AWS_SESSION_TOKEN", raising=False)
        env.delenv("AWS_PROFILE", raising=False)
        started = start_server(CONFIG, tmp_path_factory.mktemp("ws"), extra_args=door)
    yield started
    started.stop()


def ws_url(server: Server, path: str = f"/{STAGE}") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def open_chat(server: Server, query: str = "", **kwargs: Any) -> ClientConnection:
    return connect(ws_url(server) + query, open_timeout=10, **kwargs)


def management(server: Server, **credentials: str) -> Any:
    keys = {
        "aws_access_key_id": PRINCIPAL["accessKeyId"],
        "aws_secret_access_key": PRINCIPAL["secretAccessKey"],
        **credentials,
    }
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=f"http://127.0.0.1:{server.port}/{STAGE}",
        region_name=REGION,
        **keys,
    )


def whoami(ws: ClientConnection) -> str:
    ws.send(json.dumps({"action": "whoami"}))
    return json.loads(ws.recv(timeout=10))["connectionId"]


def handler_events(server: Server) -> list[dict[str, Any]]:
    with open_chat(server) as ws:
        ws.send(json.dumps({"action": "events"}))
        return json.loads(ws.recv(timeout=10))


def wait_for(condition: Callable[[], Any], timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("the condition did not hold in time")


def disconnects_of(server: Server, connection_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in handler_events(server)
        if e["requestContext"]["eventType"] == "DISCONNECT"
        and e["requestContext"]["connectionId"] == connection_id
    ]


def test_connect_accepts_and_its_event_is_aws_s(server: Server) -> None:
    with open_chat(server, "?room=lobby&room=kitchen&token=t1", user_agent_header="chat-test/1.0") as ws:
        connection_id = whoami(ws)
    assert len(connection_id) == 16 and connection_id.endswith("=")
    (event,) = [e for e in handler_events(server) if e["requestContext"]["connectionId"] == connection_id][:1]
    context = event["requestContext"]
    assert context["routeKey"] == "$connect"
    assert context["eventType"] == "CONNECT"
    assert context["messageDirection"] == "IN"
    assert context["stage"] == STAGE
    assert context["apiId"] == "chatapi"
    assert context["domainName"] == f"127.0.0.1:{server.port}"
    assert context["identity"] == {"sourceIp": "127.0.0.1", "userAgent": "chat-test/1.0"}
    assert context["connectedAt"] <= context["requestTimeEpoch"]
    assert "messageId" not in context
    assert context["requestId"] and context["extendedRequestId"]
    assert event["queryStringParameters"] == {"room": "kitchen", "token": "t1"}
    assert event["multiValueQueryStringParameters"]["room"] == ["lobby", "kitchen"]
    assert event["headers"]["upgrade"] == "websocket"
    assert event["multiValueHeaders"]["sec-websocket-version"] == ["13"]
    assert event["isBase64Encoded"] is False


@pytest.mark.parametrize("status", [401, 403, 500])
def test_connect_refuses_with_the_integration_s_status(server: Server, status: int) -> None:
    with pytest.raises(InvalidStatus) as refused:
        open_chat(server, f"?refuse={status}")
    assert refused.value.response.status_code == status


def test_the_subprotocol_chosen_by_connect_is_echoed(server: Server) -> None:
    with open_chat(server, subprotocols=["chat.v2", "chat.v1"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "chat.v2"
    with open_chat(server) as ws:
        assert ws.subprotocol is None


def test_a_request_that_is_no_handshake_is_not_found(server: Server) -> None:
    assert httpx.get(f"{server.url}/{STAGE}").status_code == 404
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(server, "/nostage"), open_timeout=10)
    assert refused.value.response.status_code in (403, 404)


def test_custom_route_default_route_and_message_events(server: Server) -> None:
    with open_chat(server) as ws:
        connection_id = whoami(ws)
        ws.send("plain text, not JSON")
        assert ws.recv(timeout=10) == "echo: plain text, not JSON"
        ws.send(json.dumps({"action": "nosuchroute", "n": 1}))
        assert ws.recv(timeout=10) == 'echo: {"action": "nosuchroute", "n": 1}'
        ws.send(json.dumps({"other": "member"}))
        assert ws.recv(timeout=10) == 'echo: {"other": "member"}'
        # A selection naming $connect never runs $connect again.
        ws.send(json.dumps({"action": "$connect"}))
        assert ws.recv(timeout=10) == 'echo: {"action": "$connect"}'
    messages = [
        e
        for e in handler_events(server)
        if e["requestContext"]["connectionId"] == connection_id
        and e["requestContext"]["eventType"] == "MESSAGE"
    ]
    assert [m["requestContext"]["routeKey"] for m in messages] == ["whoami"] + ["$default"] * 4
    first = messages[0]
    assert first["body"] == '{"action": "whoami"}'
    assert first["isBase64Encoded"] is False
    assert len(first["requestContext"]["messageId"]) == 16
    assert len({m["requestContext"]["messageId"] for m in messages}) == len(messages)
    assert len({m["requestContext"]["requestId"] for m in messages}) == len(messages)
    assert "headers" not in first


def test_one_way_routes_send_nothing_back(server: Server) -> None:
    with open_chat(server) as ws:
        ws.send(json.dumps({"action": "quiet"}))
        with pytest.raises(TimeoutError):
            ws.recv(timeout=1)
        # The connection is still open, and answers on a two-way route.
        assert whoami(ws)


def test_internal_server_error_frame_and_the_connection_stays_open(server: Server) -> None:
    with open_chat(server) as ws:
        connection_id = whoami(ws)
        ws.send(json.dumps({"action": "fail"}))
        frame = ws.recv(timeout=10)
        assert frame.startswith('{"message": "Internal server error", "connectionId":')
        parsed = json.loads(frame)
        assert parsed["connectionId"] == connection_id
        assert len(parsed["requestId"]) == 16
        assert whoami(ws) == connection_id


def test_forbidden_frame_without_a_route_or_default(tmp_path: Path, door: list[str]) -> None:
    config = {
        "apis": [
            {
                "name": "strict",
                "protocolType": "WEBSOCKET",
                "routeSelectionExpression": "${request.body.kind}-${request.body.version}",
                "routes": [
                    {
                        "routeKey": "ping-v1",
                        "integration": {"type": "MOCK", "statusCode": 200, "body": "pong"},
                        "routeResponseSelectionExpression": "$default",
                    }
                ],
                "stages": [{"stageName": "dev"}],
            }
        ]
    }
    strict = start_server(config, tmp_path, extra_args=door)
    try:
        with connect(f"ws://127.0.0.1:{strict.port}/dev", open_timeout=10) as ws:
            ws.send(json.dumps({"kind": "ping", "version": "v1"}))
            assert ws.recv(timeout=10) == "pong"
            for unrouted in (json.dumps({"kind": "ping", "version": "v2"}), "not json"):
                ws.send(unrouted)
                frame = ws.recv(timeout=10)
                assert frame.startswith('{"message": "Forbidden", "connectionId":"')
                assert set(json.loads(frame)) == {"message", "connectionId", "requestId"}
            ws.send(json.dumps({"kind": "ping", "version": "v1"}))
            assert ws.recv(timeout=10) == "pong"
    finally:
        strict.stop()


def test_disconnect_runs_once_after_a_close(server: Server, door: list[str]) -> None:
    with open_chat(server) as ws:
        connection_id = whoami(ws)
        ws.close(code=4001, reason="bye now")
    (event,) = wait_for(lambda: disconnects_of(server, connection_id))
    time.sleep(0.5)
    assert len(disconnects_of(server, connection_id)) == 1
    context = event["requestContext"]
    assert context["routeKey"] == "$disconnect"
    assert context["disconnectStatusCode"] == 4001
    # Granian's `websocket.disconnect` carries the code, not the reason (docs/websocket.md).
    reason = "" if door else "bye now"
    assert context["disconnectReason"] == (
        f"Client-side close frame status code '4001' (UNKNOWN) - custom reason: {reason}"
    )
    assert event["headers"]["Host"] == f"127.0.0.1:{server.port}"


def _raw_connection(server: Server) -> tuple[socket.socket, str]:
    """An opening handshake and a `whoami` frame written by hand, so that the TCP connection can
    then be dropped without a close frame; the socket and the connection's id."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /{STAGE} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(4096)
    head, _, received = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    # A client's text frame: FIN and opcode 1, masked (RFC 6455 section 5.2).
    payload = json.dumps({"action": "whoami"}).encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    while len(received) < 2 or len(received) < 2 + received[1]:
        received += sock.recv(4096)
    assert received[0] == 0x81 and received[1] < 126, received
    answer = json.loads(received[2 : 2 + received[1]])
    return sock, answer["connectionId"]


def test_disconnect_runs_once_when_the_client_vanishes(server: Server, door: list[str]) -> None:
    sock, connection_id = _raw_connection(server)
    sock.close()  # no close frame: the TCP connection just ends
    (event,) = wait_for(lambda: disconnects_of(server, connection_id))
    time.sleep(0.5)
    assert len(disconnects_of(server, connection_id)) == 1
    # Granian reports a lost connection as 1005, as it does a close frame without a code, where
    # ASGI says 1006 (docs/websocket.md).
    assert event["requestContext"]["disconnectStatusCode"] == (1005 if door else 1006)


def test_chat_broadcast_through_the_connections_api(server: Server) -> None:
    with open_chat(server) as alice, open_chat(server) as bob:
        bob_id = whoami(bob)
        alice.send(json.dumps({"action": "sendmessage", "message": "hello everyone"}))
        assert alice.recv(timeout=10) == "hello everyone"
        assert bob.recv(timeout=10) == "hello everyone"
        # The test posts too, with the same client the handler uses.
        client = management(server)
        client.post_to_connection(ConnectionId=bob_id, Data=b"just for bob")
        assert bob.recv(timeout=10) == "just for bob"
        with pytest.raises(TimeoutError):
            alice.recv(timeout=0.5)


def test_get_connection(server: Server) -> None:
    with open_chat(server, user_agent_header="chat-test/2.0") as ws:
        connection_id = whoami(ws)
        described = management(server).get_connection(ConnectionId=connection_id)
    assert described["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "chat-test/2.0"}
    assert described["ConnectedAt"] <= described["LastActiveAt"]
    # On the wire: ISO 8601 times, as AWS answers.
    raw = httpx.get(f"{server.url}/{STAGE}/@connections/{quote(connection_id, safe='')}")
    assert raw.status_code == 403  # unsigned


def test_delete_connection_closes_it_and_gone_after(server: Server) -> None:
    client = management(server)
    with open_chat(server) as ws:
        connection_id = whoami(ws)
        client.delete_connection(ConnectionId=connection_id)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    (event,) = wait_for(lambda: disconnects_of(server, connection_id))
    assert event["requestContext"]["disconnectStatusCode"] == 1000
    assert event["requestContext"]["disconnectReason"] == "Connection Closed Normally"
    for call in (
        lambda: client.post_to_connection(ConnectionId=connection_id, Data=b"late"),
        lambda: client.get_connection(ConnectionId=connection_id),
        lambda: client.delete_connection(ConnectionId=connection_id),
    ):
        with pytest.raises(client.exceptions.GoneException) as gone:
            call()
        assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410


def test_connections_api_needs_a_known_signer(server: Server) -> None:
    stranger = management(
        server, aws_access_key_id="AKIASTRANGER00000001", aws_secret_access_key="not/the/right/secret"
    )
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        stranger.get_connection(ConnectionId="AAAAAAAAAAAAAAA=")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    wrong_secret = management(server, aws_secret_access_key="wrong/Secret+Key0123456789abcdefGHIJKL")
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        wrong_secret.get_connection(ConnectionId="AAAAAAAAAAAAAAA=")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    # A signed request for an unknown connection: gone.
    with pytest.raises(management(server).exceptions.GoneException):
        management(server).get_connection(ConnectionId="AAAAAAAAAAAAAAA=")


def test_oversized_message_closes_with_1009(server: Server) -> None:
    with open_chat(server) as ws:
        connection_id = whoami(ws)
        ws.send("x" * (130 * 1024))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    (event,) = wait_for(lambda: disconnects_of(server, connection_id))
    assert event["requestContext"]["disconnectStatusCode"] == 1009


def test_binary_frames_close_with_1003(server: Server) -> None:
    with open_chat(server) as ws:
        ws.send(b"\x00\x01binary")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003


def test_a_websocket_api_built_with_boto3(portico: Callable[..., Server], tmp_path: Path) -> None:
    from admin_e2e import ACCESS_KEY_ID, SECRET, invocation_uri, start_admin_server

    functions = {name: f"handlers.chat:{name}" for name in ("connect", "disconnect", "whoami", "echo")}
    admin = start_admin_server(portico, tmp_path, functions=functions, config={"apis": []})
    v2 = admin.client("apigatewayv2")
    api_id = v2.create_api(
        Name="chat", ProtocolType="WEBSOCKET", RouteSelectionExpression="$request.body.action"
    )["ApiId"]

    def route(key: str, function: str, two_way: bool = False) -> None:
        integration = v2.create_integration(
            ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=invocation_uri(function)
        )
        extra = {"RouteResponseSelectionExpression": "$default"} if two_way else {}
        created = v2.create_route(
            ApiId=api_id, RouteKey=key, Target=f"integrations/{integration['IntegrationId']}", **extra
        )
        if two_way:
            v2.create_route_response(ApiId=api_id, RouteId=created["RouteId"], RouteResponseKey="$default")

    route("$connect", "connect")
    route("$disconnect", "disconnect")
    route("whoami", "whoami", two_way=True)
    route("$default", "echo", two_way=True)
    route("quiet", "echo")
    deployment_id = v2.create_deployment(ApiId=api_id)["DeploymentId"]
    v2.create_stage(ApiId=api_id, StageName=STAGE, DeploymentId=deployment_id)

    def served() -> ClientConnection | None:
        try:
            return connect(ws_url(admin.server), open_timeout=5)
        except InvalidStatus:
            return None

    ws = wait_for(served)
    with ws:
        connection_id = whoami(ws)
        ws.send("hello")
        assert ws.recv(timeout=10) == "echo: hello"
        ws.send(json.dumps({"action": "quiet"}))
        with pytest.raises(TimeoutError):
            ws.recv(timeout=1)
        connections = management(admin.server, aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET)
        assert connections.get_connection(ConnectionId=connection_id)["Identity"]["SourceIp"] == "127.0.0.1"
        connections.post_to_connection(ConnectionId=connection_id, Data=b"from the admin key")
        assert ws.recv(timeout=10) == "from the admin key"

    def gone() -> bool:
        try:
            connections.get_connection(ConnectionId=connection_id)
        except connections.exceptions.GoneException:
            return True
        return False

    assert wait_for(gone)


def test_idle_and_old_connections_are_closed_going_away(tmp_path: Path, door: list[str]) -> None:
    config = {
        **CONFIG,
        "settings": {
            **CONFIG["settings"],
            "websocketIdleTimeoutSeconds": 1,
            "websocketMaxConnectionSeconds": 3,
        },
    }
    limited = start_server(config, tmp_path, extra_args=door)
    try:
        with open_chat(limited) as idle:
            connection_id = whoami(idle)
            with pytest.raises(ConnectionClosed) as closed:
                idle.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        (event,) = wait_for(lambda: disconnects_of(limited, connection_id))
        assert event["requestContext"]["disconnectStatusCode"] == 1001
        # Messages keep a connection open past the idle timeout, until the connection limit.
        with open_chat(limited) as busy:
            opened = time.monotonic()
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    busy.send("still here")
                    assert busy.recv(timeout=10) == "echo: still here"
                    time.sleep(0.3)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
            assert time.monotonic() - opened > 1.5  # well past the idle timeout
    finally:
        limited.stop()


def _signed_headers(port: int, access_key_id: str, secret: str) -> dict[str, str]:
    """SigV4 headers of the opening handshake's GET, signed by botocore as a client SDK signs."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(
        method="GET", url=f"http://127.0.0.1:{port}/{STAGE}", headers={"Host": f"127.0.0.1:{port}"}
    )
    SigV4Auth(Credentials(access_key_id, secret), "execute-api", REGION).add_auth(request)
    return {name: request.headers[name] for name in ("Authorization", "X-Amz-Date")}


def test_connect_with_aws_iam_takes_only_signed_handshakes(tmp_path: Path, door: list[str]) -> None:
    config = json.loads(json.dumps(CONFIG))
    config["apis"][0]["routes"][0]["authorizationType"] = "AWS_IAM"
    signed = start_server(config, tmp_path, extra_args=door)
    try:
        for headers in ({}, _signed_headers(signed.port, PRINCIPAL["accessKeyId"], "not/the/secret")):
            with pytest.raises(InvalidStatus) as refused:
                open_chat(signed, additional_headers=headers)
            assert refused.value.response.status_code == 403
        good = _signed_headers(signed.port, PRINCIPAL["accessKeyId"], PRINCIPAL["secretAccessKey"])
        with open_chat(signed, additional_headers=good) as ws:
            connection_id = whoami(ws)
            ws.send(json.dumps({"action": "events"}))
            events = json.loads(ws.recv(timeout=10))
        identity = next(e for e in events if e["requestContext"]["connectionId"] == connection_id)[
            "requestContext"
        ]["identity"]
        assert identity["userArn"] == PRINCIPAL["arn"]
        assert identity["accessKey"] == PRINCIPAL["accessKeyId"]
        assert identity["accountId"] == ACCOUNT
        # Only $connect is signed; the connection's messages (unsigned frames) carry its signer.
        messages = [
            e
            for e in events
            if e["requestContext"]["connectionId"] == connection_id
            and e["requestContext"]["eventType"] == "MESSAGE"
        ]
        assert messages and all(
            m["requestContext"]["identity"]["userArn"] == PRINCIPAL["arn"] for m in messages
        )
    finally:
        signed.stop()
