"""Who may connect to a WebSocket API and what is kept of them, with real clients: a Lambda
REQUEST authorizer on `$connect` (tests/handlers/chat.py's `authorize`), from the config file and
from boto3's apigatewayv2.

What is checked is what AWS does ("Control access to WebSocket APIs with AWS Lambda REQUEST
authorizers" in the API Gateway developer guide): a missing identity source refuses the handshake
with 401 without calling the authorizer, a policy's deny with 403, a failing authorizer with 500;
the authorizer's event describes the handshake (`type: REQUEST`, `methodArn` ending `/$connect`,
headers, query string, `requestContext` with the connection's id), and what it grants
(`principalId`, `context`) is in `requestContext.authorizer` of every later event of the
connection.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from conftest import Server, start_server
from test_websocket import ACCOUNT, CONFIG, PRINCIPAL, REGION, STAGE, open_chat, wait_for, whoami, ws_url

AUTHORIZER = {
    "authorizerType": "REQUEST",
    "authorizerUri": "authorize",
    "identitySource": ["route.request.header.Auth"],
}


def _config(**api: Any) -> dict[str, Any]:
    """The chat app of test_websocket with `$connect` behind `authorize`."""
    config = json.loads(json.dumps(CONFIG))
    config["functions"]["authorize"] = "handlers.chat:authorize"
    chat = config["apis"][0]
    chat["authorizers"] = {"auth": AUTHORIZER}
    connect_route = chat["routes"][0]
    assert connect_route["routeKey"] == "$connect"
    connect_route["authorizationType"] = "CUSTOM"
    connect_route["authorizerId"] = "auth"
    chat.update(api)
    return config


AUTH_LOG_FORMAT = (
    "$context.connectionId $context.eventType $context.routeKey $context.status "
    "$context.authorizer.principalId $context.authorizer.user $context.error.responseType"
)


@pytest.fixture(scope="module", params=["edge", "no-edge"])
def door(request: pytest.FixtureRequest) -> list[str]:
    """The front door: the edge, or the embedded ASGI app behind Granian (`--no-edge`), whose
    handshakes and connections run the same admission code."""
    return [] if request.param == "edge" else ["--no-edge"]


@pytest.fixture(scope="module")
def authorized(tmp_path_factory: pytest.TempPathFactory, door: list[str]) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("ws-auth")
    config = _config()
    config["settings"]["accessLog"] = {"format": AUTH_LOG_FORMAT, "destination": str(workdir / "access.log")}
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", PRINCIPAL["accessKeyId"])
        env.setenv("AWS_SECRET_ACCESS_KEY", PRINCIPAL["secretAccessKey"])
        env.setenv("AWS_DEFAULT_REGION", REGION)
        started = start_server(config, workdir, extra_args=door)
    started.access_log = workdir / "access.log"  # type: ignore[attr-defined]
    yield started
    started.stop()


def log_lines(server: Server) -> list[list[str]]:
    path: Path = server.access_log  # type: ignore[attr-defined]
    return [line.split(" ") for line in path.read_text().splitlines()] if path.exists() else []


def refused_status(server: Server, query: str = "", **headers: str) -> int:
    with pytest.raises(InvalidStatus) as refused:
        open_chat(server, query, additional_headers=headers)
    return refused.value.response.status_code


def recorded(server: Server, token: str = "reader") -> list[dict[str, Any]]:
    """Every event the handlers were sent so far (read through an authorized connection)."""
    with open_chat(server, additional_headers={"Auth": token}) as ws:
        ws.send(json.dumps({"action": "events"}))
        return json.loads(ws.recv(timeout=10))


def authorizer_events(server: Server) -> list[dict[str, Any]]:
    return [e for e in recorded(server) if e.get("type") == "REQUEST"]


def test_a_missing_identity_source_is_401_without_calling_the_authorizer(authorized: Server) -> None:
    before = len(authorizer_events(authorized))
    assert refused_status(authorized) == 401
    assert refused_status(authorized, Auth="") == 401
    # The listing itself called the authorizer once more: nothing else did.
    assert len(authorizer_events(authorized)) == before + 1


@pytest.mark.parametrize(
    ("token", "status", "response_type"),
    [
        ("deny-me", 403, "ACCESS_DENIED"),
        ("unauthorized", 401, "UNAUTHORIZED"),
        ("fail", 500, "AUTHORIZER_CONFIGURATION_ERROR"),
    ],
)
def test_the_authorizer_refuses(authorized: Server, token: str, status: int, response_type: str) -> None:
    before = len(log_lines(authorized))
    assert refused_status(authorized, Auth=token) == status
    # The refused handshake's line (lines are written off the request path, others may come
    # first): a CONNECT of a connection that never opened.
    refused = ["CONNECT", "$connect", str(status)]
    (line,) = wait_for(lambda: [line for line in log_lines(authorized)[before:] if line[1:4] == refused])
    connection_id, event_type, route_key, logged_status, *_, logged_type = line
    assert len(connection_id) == 16
    assert (event_type, route_key, logged_status) == ("CONNECT", "$connect", str(status))
    assert logged_type == response_type


def test_a_hung_authorizer_refuses_with_500_and_holds_up_no_one(authorized: Server) -> None:
    """An authorizer that outlasts API Gateway's 10 s wait refuses its handshake with 500
    (AUTHORIZER_FAILURE); meanwhile other clients connect and talk."""
    outcome: list[Any] = []

    def hung_handshake() -> None:
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url(authorized), open_timeout=30, additional_headers={"Auth": "hang"})
        outcome.append(refused.value.response.status_code)

    before = len(log_lines(authorized))
    waiting = threading.Thread(target=hung_handshake)
    waiting.start()
    try:
        # The hung handshake is pending; another connects, is authorized and answered.
        wait_for(lambda: [e for e in authorizer_events(authorized) if e["headers"].get("auth") == "hang"])
        with open_chat(authorized, additional_headers={"Auth": "bob"}) as ws:
            ws.send("still here")
            assert ws.recv(timeout=10) == "echo: still here"
        assert waiting.is_alive() and not outcome
    finally:
        waiting.join(30)
    assert outcome == [500]
    refused = ["CONNECT", "$connect", "500"]
    (line,) = wait_for(lambda: [line for line in log_lines(authorized)[before:] if line[1:4] == refused])
    assert line[-1] == "AUTHORIZER_FAILURE"


def test_the_authorizer_s_event_and_its_grant_in_every_later_event(authorized: Server) -> None:
    with open_chat(authorized, "?room=lobby", additional_headers={"Auth": "alice"}) as ws:
        connection_id = whoami(ws)
        ws.send("hello")
        assert ws.recv(timeout=10) == "echo: hello"

    def of_connection() -> list[dict[str, Any]]:
        events = [e for e in recorded(authorized) if e["requestContext"]["connectionId"] == connection_id]
        return events if any(e["requestContext"]["eventType"] == "DISCONNECT" for e in events) else []

    events = wait_for(of_connection)
    asked = events[0]
    assert asked["type"] == "REQUEST"
    assert asked["methodArn"] == f"arn:aws:execute-api:{REGION}:{ACCOUNT}:chatapi/{STAGE}/$connect"
    assert asked["headers"]["auth"] == "alice"
    assert asked["multiValueHeaders"]["auth"] == ["alice"]
    assert asked["queryStringParameters"] == {"room": "lobby"}
    assert asked["stageVariables"] == {}
    context = asked["requestContext"]
    assert (context["routeKey"], context["eventType"]) == ("$connect", "CONNECT")
    assert context["apiId"] == "chatapi" and context["stage"] == STAGE
    assert "authorizer" not in context
    granted = {"user": "alice", "level": "3", "admin": "false", "principalId": "user-alice"}
    later = events[1:]
    kinds = [e["requestContext"]["eventType"] for e in later]
    assert kinds == ["CONNECT", "MESSAGE", "MESSAGE", "DISCONNECT"]
    for event in later:
        authorizer = event["requestContext"]["authorizer"]
        assert {k: v for k, v in authorizer.items() if k != "integrationLatency"} == granted
        assert isinstance(authorizer["integrationLatency"], int)
    # The handshake's id is the connection's: the authorizer saw the id its events carry.
    assert later[0]["requestContext"]["requestId"] == context["requestId"]

    # Each access-log line of the connection names what the authorizer granted.
    def connection_lines() -> list[list[str]]:
        lines = [line for line in log_lines(authorized) if line[0] == connection_id]
        return lines if len(lines) >= 4 else []

    lines = wait_for(connection_lines)
    assert [line[1] for line in lines] == ["CONNECT", "MESSAGE", "MESSAGE", "DISCONNECT"]
    assert all(line[4:6] == ["user-alice", "alice"] for line in lines)


def test_other_routes_cannot_be_authorized(tmp_path: Path) -> None:
    config = _config()
    config["apis"][0]["routes"][2]["authorizationType"] = "CUSTOM"
    config["apis"][0]["routes"][2]["authorizerId"] = "auth"
    from portico.config.models import Config

    with pytest.raises(ValueError, match="authorize \\$connect only"):
        Config.model_validate(config)
    cached = _config(authorizers={"auth": {**AUTHORIZER, "authorizerResultTtlInSeconds": 300}})
    with pytest.raises(ValueError, match="do not cache"):
        Config.model_validate(cached)
    rest_dialect = _config(authorizers={"auth": {**AUTHORIZER, "identitySource": ["$request.header.Auth"]}})
    with pytest.raises(ValueError, match=r"route\.request\.header\.NAME"):
        Config.model_validate(rest_dialect)


def test_a_request_authorizer_built_with_boto3(portico: Callable[..., Server], tmp_path: Path) -> None:
    from admin_e2e import invocation_uri, start_admin_server

    functions = {name: f"handlers.chat:{name}" for name in ("connect", "whoami", "authorize")}
    admin = start_admin_server(portico, tmp_path, functions=functions, config={"apis": []})
    v2 = admin.client("apigatewayv2")
    api_id = v2.create_api(
        Name="chat", ProtocolType="WEBSOCKET", RouteSelectionExpression="$request.body.action"
    )["ApiId"]
    authorizer_id = v2.create_authorizer(
        ApiId=api_id,
        Name="token",
        AuthorizerType="REQUEST",
        IdentitySource=["route.request.querystring.token"],
        AuthorizerUri=invocation_uri("authorize"),
    )["AuthorizerId"]

    def route(key: str, function: str, **extra: Any) -> None:
        integration = v2.create_integration(
            ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=invocation_uri(function)
        )
        created = v2.create_route(
            ApiId=api_id, RouteKey=key, Target=f"integrations/{integration['IntegrationId']}", **extra
        )
        if key == "whoami":
            v2.create_route_response(ApiId=api_id, RouteId=created["RouteId"], RouteResponseKey="$default")

    route("$connect", "connect", AuthorizationType="CUSTOM", AuthorizerId=authorizer_id)
    route("whoami", "whoami", RouteResponseSelectionExpression="$default")
    deployment_id = v2.create_deployment(ApiId=api_id)["DeploymentId"]
    v2.create_stage(ApiId=api_id, StageName=STAGE, DeploymentId=deployment_id)
    url = f"ws://127.0.0.1:{admin.server.port}/{STAGE}"

    def served() -> ClientConnection | None:
        try:
            return connect(url + "?token=bob", open_timeout=5)
        except InvalidStatus:
            return None

    with wait_for(served) as ws:
        assert whoami(ws)
    for query, status in (("", 401), ("?token=deny-bob", 403), ("?token=fail", 500)):
        with pytest.raises(InvalidStatus) as refused:
            connect(url + query, open_timeout=5)
        assert refused.value.response.status_code == status, query


# -- API keys on $connect ----------------------------------------------------------------------

KEY = "chatKey0123456789abcdefABCDEF"
OTHER_KEY = "otherKey0123456789abcdefABCDEF"


def _keyed_config(**api: Any) -> dict[str, Any]:
    """The chat app whose `$connect` requires an API key of a usage plan of its stage: 3
    handshakes a day; `other` is a key of no plan of the stage."""
    config = json.loads(json.dumps(CONFIG))
    config["apis"][0]["routes"][0]["apiKeyRequired"] = True
    config["apis"][0].update(api)
    config["apiKeys"] = [
        {"name": "chat", "value": KEY, "enabled": True, "id": "chatkey"},
        {"name": "other", "value": OTHER_KEY, "enabled": True},
    ]
    config["usagePlans"] = [
        {
            "name": "daily",
            "apiStages": [{"apiId": "chatapi", "stage": STAGE}],
            "apiKeys": ["chat"],
            "quota": {"limit": 3, "period": "DAY"},
        }
    ]
    return config


def test_connect_requires_an_api_key_of_the_stage_s_usage_plan(tmp_path: Path, door: list[str]) -> None:
    keyed = start_server(_keyed_config(), tmp_path, extra_args=door)
    try:
        assert refused_status(keyed) == 403
        assert refused_status(keyed, **{"x-api-key": "no" + KEY}) == 403
        assert refused_status(keyed, **{"x-api-key": OTHER_KEY}) == 403
        with open_chat(keyed, additional_headers={"x-api-key": KEY}) as ws:
            ws.send(json.dumps({"action": "events"}))
            events = json.loads(ws.recv(timeout=10))
        identity = events[-1]["requestContext"]["identity"]
        assert (identity["apiKey"], identity["apiKeyId"]) == (KEY, "chatkey")
        # The plan's quota counts handshakes: 3 a day, one used above.
        for _ in range(2):
            with open_chat(keyed, additional_headers={"x-api-key": KEY}):
                pass
        assert refused_status(keyed, **{"x-api-key": KEY}) == 429
    finally:
        keyed.stop()


def test_the_key_a_lambda_authorizer_names(tmp_path: Path, door: list[str]) -> None:
    config = _keyed_config(
        apiKeySelectionExpression="$context.authorizer.usageIdentifierKey",
        authorizers={"auth": AUTHORIZER},
    )
    config["functions"]["authorize"] = "handlers.chat:authorize"
    config["apis"][0]["routes"][0].update(authorizationType="CUSTOM", authorizerId="auth")
    keyed = start_server(config, tmp_path, extra_args=door)
    try:
        # The header is not read: the authorizer's usageIdentifierKey is.
        assert refused_status(keyed, Auth="alice", **{"x-api-key": KEY}) == 403
        assert refused_status(keyed, Auth="alice", **{"Usage-Key": OTHER_KEY}) == 403
        with open_chat(keyed, additional_headers={"Auth": "alice", "Usage-Key": KEY}) as ws:
            assert whoami(ws)
    finally:
        keyed.stop()


def test_api_keys_on_connect_built_with_boto3(portico: Callable[..., Server], tmp_path: Path) -> None:
    from admin_e2e import invocation_uri, start_admin_server

    functions = {name: f"handlers.chat:{name}" for name in ("connect", "whoami")}
    admin = start_admin_server(portico, tmp_path, functions=functions, config={"apis": []})
    v2, v1 = admin.client("apigatewayv2"), admin.client("apigateway")
    api_id = v2.create_api(
        Name="chat", ProtocolType="WEBSOCKET", RouteSelectionExpression="$request.body.action"
    )["ApiId"]
    for key, function in (("$connect", "connect"), ("whoami", "whoami")):
        integration = v2.create_integration(
            ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=invocation_uri(function)
        )
        created = v2.create_route(
            ApiId=api_id,
            RouteKey=key,
            Target=f"integrations/{integration['IntegrationId']}",
            ApiKeyRequired=key == "$connect",
            **({"RouteResponseSelectionExpression": "$default"} if key == "whoami" else {}),
        )
        if key == "whoami":
            v2.create_route_response(ApiId=api_id, RouteId=created["RouteId"], RouteResponseKey="$default")
    deployment_id = v2.create_deployment(ApiId=api_id)["DeploymentId"]
    v2.create_stage(ApiId=api_id, StageName=STAGE, DeploymentId=deployment_id)
    key_id = v1.create_api_key(name="chat", value=KEY, enabled=True)["id"]
    plan_id = v1.create_usage_plan(name="chat", apiStages=[{"apiId": api_id, "stage": STAGE}])["id"]
    v1.create_usage_plan_key(usagePlanId=plan_id, keyId=key_id, keyType="API_KEY")
    url = f"ws://127.0.0.1:{admin.server.port}/{STAGE}"

    def served() -> ClientConnection | None:
        try:
            return connect(url, open_timeout=5, additional_headers={"x-api-key": KEY})
        except InvalidStatus:
            return None

    with wait_for(served) as ws:
        assert whoami(ws)
    with pytest.raises(InvalidStatus) as refused:
        connect(url, open_timeout=5)
    assert refused.value.response.status_code == 403


# -- throttling --------------------------------------------------------------------------------


def test_messages_and_handshakes_are_throttled_per_route_and_stage(tmp_path: Path, door: list[str]) -> None:
    config = json.loads(json.dumps(CONFIG))
    # Every route 3 a stage (refilled one in ~17 minutes), `whoami` 2.
    config["apis"][0]["stages"][0].update(
        defaultRouteSettings={"throttlingBurstLimit": 3, "throttlingRateLimit": 0.001},
        routeSettings={"whoami": {"throttlingBurstLimit": 2, "throttlingRateLimit": 0.001}},
    )
    throttled = start_server(config, tmp_path, extra_args=door)
    try:
        with open_chat(throttled) as ws:
            connection_id = whoami(ws)
            assert whoami(ws) == connection_id
            ws.send(json.dumps({"action": "whoami"}))
            frame = ws.recv(timeout=10)
            assert frame.startswith('{"message": "Too Many Requests", "connectionId":"')
            refused = json.loads(frame)
            assert refused["connectionId"] == connection_id and len(refused["requestId"]) == 16
            # Another route has its own bucket, and the connection stayed open.
            for n in range(3):
                ws.send(f"hello {n}")
                assert ws.recv(timeout=10) == f"echo: hello {n}"
            ws.send("one too many")
            assert json.loads(ws.recv(timeout=10))["message"] == "Too Many Requests"
            # $connect's bucket: this connection spent one, two more may open, then 429.
            for _ in range(2):
                with open_chat(throttled):
                    pass
            with pytest.raises(InvalidStatus) as handshake:
                open_chat(throttled)
            assert handshake.value.response.status_code == 429
            assert json.loads(handshake.value.response.body) == {"message": "Too Many Requests"}
    finally:
        throttled.stop()


# -- access logs -------------------------------------------------------------------------------

LOG_FORMAT = json.dumps(
    {
        name: f"$context.{name}"
        for name in (
            "requestId",
            "connectionId",
            "eventType",
            "routeKey",
            "messageId",
            "status",
            "connectedAt",
            "requestTimeEpoch",
            "apiId",
            "stage",
            "domainName",
            "identity.sourceIp",
            "identity.userAgent",
            "error.message",
            "error.responseType",
            "error.validationErrorString",
            "integrationStatus",
            "integrationErrorMessage",
        )
    }
)


def test_each_event_of_a_connection_is_an_access_log_line(tmp_path: Path, door: list[str]) -> None:
    config = json.loads(json.dumps(CONFIG))
    log_path = tmp_path / "access.log"
    config["settings"]["accessLog"] = {"format": LOG_FORMAT, "destination": str(log_path)}
    # `quiet` is refused every message: its line says so.
    config["apis"][0]["stages"][0]["routeSettings"] = {
        "quiet": {"throttlingBurstLimit": 0, "throttlingRateLimit": 0}
    }
    # `whoami` checks its messages: one without `as` is refused by its model.
    chat = config["apis"][0]
    chat["models"] = {"WhoAmI": {"schema": {"type": "object", "required": ["as"]}}}
    whoami_route = next(r for r in chat["routes"] if r["routeKey"] == "whoami")
    whoami_route.update(modelSelectionExpression="\\$default", requestModels={"$default": "WhoAmI"})
    logged = start_server(config, tmp_path, extra_args=door)
    try:
        with open_chat(logged, user_agent_header="log-test/1.0") as ws:
            ws.send(json.dumps({"action": "whoami", "as": "me"}))
            connection_id = json.loads(ws.recv(timeout=10))["connectionId"]
            ws.send(json.dumps({"action": "whoami"}))
            assert json.loads(ws.recv(timeout=10))["message"] == "Invalid request body"
            ws.send("hello")
            assert ws.recv(timeout=10) == "echo: hello"
            ws.send(json.dumps({"action": "fail"}))
            assert json.loads(ws.recv(timeout=10))["message"] == "Internal server error"
            ws.send(json.dumps({"action": "quiet"}))
            assert json.loads(ws.recv(timeout=10))["message"] == "Too Many Requests"
            ws.send(json.dumps({"action": "events"}))
            events = json.loads(ws.recv(timeout=10))

        def lines() -> list[dict[str, Any]]:
            text = log_path.read_text() if log_path.exists() else ""
            found = [json.loads(line) for line in text.splitlines() if connection_id in line]
            return found if any(line["eventType"] == "DISCONNECT" for line in found) else []

        found = wait_for(lines)
    finally:
        logged.stop()
    # Messages are handled concurrently, but each line is written before its answer is sent.
    by_type = [(line["eventType"], line["routeKey"], line["status"]) for line in found]
    assert sorted(by_type[1:-1]) == sorted(
        [
            ("MESSAGE", "whoami", "200"),
            ("MESSAGE", "whoami", "400"),
            ("MESSAGE", "$default", "200"),
            ("MESSAGE", "fail", "500"),
            ("MESSAGE", "quiet", "429"),
            ("MESSAGE", "events", "200"),
        ]
    )
    assert by_type[0] == ("CONNECT", "$connect", "200")
    assert by_type[-1] == ("DISCONNECT", "$disconnect", "200")
    connect_event = next(e for e in events if e["requestContext"]["connectionId"] == connection_id)
    connected_at = str(connect_event["requestContext"]["connectedAt"])
    for line in found:
        assert line["connectionId"] == connection_id
        assert line["connectedAt"] == connected_at
        assert (line["apiId"], line["stage"]) == ("chatapi", STAGE)
        assert line["domainName"] == f"127.0.0.1:{logged.port}"
        assert (line["identity.sourceIp"], line["identity.userAgent"]) == ("127.0.0.1", "log-test/1.0")
    connect_line, *messages, disconnect_line = found
    assert connect_line["requestId"] == connect_event["requestContext"]["requestId"]
    assert connect_line["messageId"] == disconnect_line["messageId"] == "-"
    # Each message's line names the message as its event did.
    message_ids = [line["messageId"] for line in messages]
    assert len(set(message_ids)) == len(messages) and all(len(m) == 16 for m in message_ids)
    invalid = next(line for line in messages if line["status"] == "400")
    assert (invalid["error.message"], invalid["error.responseType"]) == (
        "Invalid request body",
        "BAD_REQUEST_BODY",
    )
    assert "as" in invalid["error.validationErrorString"]
    line_of = {line["routeKey"]: line for line in messages if line["status"] != "400"}
    whoami_event = next(
        e
        for e in events
        if e["requestContext"]["connectionId"] == connection_id
        and e["requestContext"]["routeKey"] == "whoami"
    )
    assert line_of["whoami"]["messageId"] == whoami_event["requestContext"]["messageId"]
    assert line_of["whoami"]["requestId"] == whoami_event["requestContext"]["requestId"]
    assert line_of["whoami"]["integrationStatus"] == "200"
    failed, refused = line_of["fail"], line_of["quiet"]
    assert failed["error.message"] == "Internal server error"
    assert failed["error.responseType"] == "INTEGRATION_FAILURE"
    assert failed["integrationErrorMessage"] != "-"
    assert (refused["error.message"], refused["error.responseType"]) == ("Too Many Requests", "THROTTLED")


def test_nodes_share_a_routes_message_bucket_through_redis(tmp_path: Path, redis_server: Any) -> None:
    """Cluster mode: the nodes' messages spend one bucket per route, in Redis; with Redis lost,
    a message is decided as `--redis-fail` decides requests (open: on the node's own buckets;
    closed: refused)."""
    config = json.loads(json.dumps(CONFIG))
    config["apis"][0]["stages"][0]["routeSettings"] = {
        "whoami": {"throttlingBurstLimit": 3, "throttlingRateLimit": 0.001},
        # Slow to refill: no tokens are leased to a node, every message asks Redis.
        "$default": {"throttlingBurstLimit": 100, "throttlingRateLimit": 0.001},
    }
    nodes: list[Server] = []
    try:
        for n in range(2):
            workdir = tmp_path / f"node{n}"
            workdir.mkdir()
            args = ["--redis", redis_server.url, "--data-dir", str(workdir / "data")]
            # Node 1 refuses what Redis cannot decide; node 0 decides it on its own buckets.
            args += ["--redis-timeout-ms", "250", "--redis-fail", "closed" if n else "open"]
            nodes.append(start_server(config, workdir, extra_args=args))
        answers = []
        with open_chat(nodes[0]) as first, open_chat(nodes[1]) as second:
            for ws in (first, second, first, second):
                ws.send(json.dumps({"action": "whoami"}))
                answers.append(json.loads(ws.recv(timeout=10)))
            assert ["message" in a for a in answers] == [False, False, False, True]
            assert answers[-1]["message"] == "Too Many Requests"
            for ws in (first, second):
                ws.send("hello")
                assert ws.recv(timeout=10) == "echo: hello"
            # Redis lost: each node does with a message what it does with a request.
            redis_server.kill()
            first.send("hello again")
            assert first.recv(timeout=10) == "echo: hello again"
            second.send("hello again")
            assert json.loads(second.recv(timeout=10))["message"] == "Too Many Requests"
    finally:
        for node in nodes:
            node.stop()
