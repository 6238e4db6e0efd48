"""Lambda authorizers, decided in the core before anything reaches the integration: REST TOKEN and
REQUEST authorizers, HTTP API authorizers with payload 1.0 and 2.0 (IAM policies and simple
responses), their caches, failures and timeouts, with AWS's statuses, bodies and headers.

The authorizers are the handlers of `handlers/authorizers.py`, written as AWS's docs write them
and registered as functions; every one counts its calls, and so does the integration."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers import authorizers as fns
from portico.compile import spec as S
from portico.compile.files import CompiledConfig
from portico.config.models import Config
from portico.dataplane.app import DataPlane
from portico.integrations.functions import FunctionRegistry

REST_ID = "restapi123"
HTTP_ID = "httpapi123"
ACCOUNT = "123456789012"
REGION = "us-east-1"
KEY = "a-valid-api-key-value-0001"

CONFIG_ERROR = {"status": 500, "body": {"message": None}, "type": "AuthorizerConfigurationException"}


@pytest.fixture(autouse=True)
def _fresh_counts():
    fns.CALLS.clear()
    yield


def _registry() -> FunctionRegistry:
    registry = FunctionRegistry()
    for name in (
        "token_authorizer",
        "request_authorizer",
        "simple_authorizer",
        "iam_v2_authorizer",
        "v1_authorizer",
        "keyed_authorizer",
        "event_authorizer",
        "hung_authorizer",
        "returns_authorizer",
        "integration",
    ):
        registry.register(name, getattr(fns, name))
    return registry


def _arn(name: str) -> str:
    return (
        f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/"
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}/invocations"
    )


def _compiled(apis: list[S.ApiSpec], api_keys: list[S.ApiKeySpec] | None = None) -> CompiledConfig:
    return CompiledConfig(Config(), S.spec(apis, account_id=ACCOUNT, region=REGION, api_keys=api_keys), "d1")


def _plane(*apis: S.ApiSpec, api_keys: list[S.ApiKeySpec] | None = None) -> DataPlane:
    return DataPlane(_compiled(list(apis), api_keys), registry=_registry())


def _token_authorizer(ttl_s: int = 300, **kwargs: Any) -> S.LambdaAuthorizerSpec:
    return S.lambda_authorizer(
        "tok123",
        _arn("token_authorizer"),
        "TOKEN",
        ["method.request.header.Authorization"],
        ttl_s=ttl_s,
        name="token",
        **kwargs,
    )


def _rest_api(
    authorizer: S.AuthorizerSpec,
    *,
    variables: dict[str, str] | None = None,
    api_key_required: bool = False,
    key_source: str = "HEADER",
    epoch: int = 0,
) -> S.ApiSpec:
    integration = S.lambda_proxy("integration")
    auth = S.route_auth("CUSTOM", authorizer, api_key_required=api_key_required)
    routes = [
        S.route("GET /pets/{id}", integration, auth),
        S.route("ANY /{proxy+}", integration, auth),
        S.route("GET /open", integration),
    ]
    return S.api(
        REST_ID,
        "guarded",
        "rest",
        [S.stage("prod", deployment_id="d1", variables=variables, authorizer_cache_epoch=epoch)],
        routes=routes,
        api_key_source=key_source,  # type: ignore[arg-type]
    )


def _http_api(authorizer: S.AuthorizerSpec, payload: str = "2.0") -> S.ApiSpec:
    integration = S.lambda_proxy("integration", payload)
    auth = S.route_auth("CUSTOM", authorizer)
    return S.api(
        HTTP_ID,
        "guarded-http",
        "http",
        [S.stage("$default", variables={"realm": "north"})],
        routes=[S.route("GET /pets/{id}", integration, auth), S.route("GET /open", integration)],
    )


async def _get(plane: DataPlane, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=plane, client=("192.0.2.10", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        return await client.get(path, headers=headers)


def _check(response: httpx.Response, status: int, body: Any, error_type: str | None) -> None:
    assert response.status_code == status, response.text
    assert response.json() == body
    assert response.headers.get("x-amzn-errortype") == error_type
    assert response.headers["content-type"] == "application/json"


def _event(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


# ---------------------------------------------------------------------------------- REST TOKEN


async def test_token_authorizer_outcomes_as_aws_answers_them():
    plane = _plane(_rest_api(_token_authorizer(ttl_s=0)))
    try:
        allowed = await _get(plane, "/prod/pets/7", {"Authorization": "allow"})
        authorizer = _event(allowed)["requestContext"]["authorizer"]
        assert isinstance(authorizer.pop("integrationLatency"), int)
        # Context values reach the integration stringified, with the principal.
        assert authorizer == {
            "stringKey": "stringval",
            "numberKey": "123",
            "booleanKey": "true",
            "principalId": "user",
        }
        assert fns.CALLS == {"token_authorizer": 1, "integration": 1}

        denied = await _get(plane, "/prod/pets/7", {"Authorization": "deny"})
        _check(
            denied,
            403,
            {"Message": "User is not authorized to access this resource with an explicit deny"},
            "AccessDeniedException",
        )
        unauthorized = await _get(plane, "/prod/pets/7", {"Authorization": "unauthorized"})
        _check(unauthorized, 401, {"message": "Unauthorized"}, "UnauthorizedException")
        for token in ("fail", "something-else"):
            failed = await _get(plane, "/prod/pets/7", {"Authorization": token})
            _check(failed, CONFIG_ERROR["status"], CONFIG_ERROR["body"], CONFIG_ERROR["type"])
        assert fns.CALLS == {"token_authorizer": 5, "integration": 1}

        # A missing or empty token: 401 without calling the function.
        for headers in ({}, {"Authorization": ""}):
            missing = await _get(plane, "/prod/pets/7", headers)
            _check(missing, 401, {"message": "Unauthorized"}, "UnauthorizedException")
        assert fns.CALLS == {"token_authorizer": 5, "integration": 1}
        # A route without authorization is not guarded.
        assert (await _get(plane, "/prod/open")).status_code == 200
    finally:
        plane.stop()


async def test_a_token_not_matching_the_validation_expression_never_reaches_the_function():
    authorizer = _token_authorizer(ttl_s=0, validation_expression="allow|deny")
    plane = _plane(_rest_api(authorizer))
    try:
        for token in ("nope", "allowed", "xallow"):
            refused = await _get(plane, "/prod/pets/7", {"Authorization": token})
            _check(refused, 401, {"message": "Unauthorized"}, "UnauthorizedException")
        assert fns.CALLS == {}
        assert (await _get(plane, "/prod/pets/7", {"Authorization": "allow"})).status_code == 200
        assert fns.CALLS == {"token_authorizer": 1, "integration": 1}
    finally:
        plane.stop()


async def test_an_invalid_validation_expression_refuses_every_request():
    plane = _plane(_rest_api(_token_authorizer(validation_expression="(unclosed")))
    try:
        broken = await _get(plane, "/prod/pets/7", {"Authorization": "allow"})
        _check(broken, CONFIG_ERROR["status"], CONFIG_ERROR["body"], CONFIG_ERROR["type"])
        assert fns.CALLS == {}
    finally:
        plane.stop()


async def test_results_are_cached_per_token_and_the_policy_is_evaluated_per_arn():
    plane = _plane(_rest_api(_token_authorizer(ttl_s=300)))
    try:
        assert (await _get(plane, "/prod/pets/7", {"Authorization": "allow"})).status_code == 200
        second = await _get(plane, "/prod/pets/7", {"Authorization": "allow"})
        assert second.status_code == 200
        assert second.json()["requestContext"]["authorizer"]["principalId"] == "user"
        assert fns.CALLS == {"token_authorizer": 1, "integration": 2}
        # The cached policy names /prod/GET/pets/7 only: another path is implicitly denied for
        # the TTL, without calling the function again (AWS's {proxy+} case).
        other = await _get(plane, "/prod/pets/8", {"Authorization": "allow"})
        _check(
            other, 403, {"Message": "User is not authorized to access this resource"}, "AccessDeniedException"
        )
        proxied = await _get(plane, "/prod/anything/else", {"Authorization": "allow"})
        assert proxied.status_code == 403
        assert fns.CALLS == {"token_authorizer": 1, "integration": 2}
        # Another token is another cache entry; a deny is cached too.
        for _ in range(2):
            assert (await _get(plane, "/prod/pets/7", {"Authorization": "deny"})).status_code == 403
        assert fns.CALLS == {"token_authorizer": 2, "integration": 2}
        # Failures are not cached: the function is asked again.
        for _ in range(2):
            assert (await _get(plane, "/prod/pets/7", {"Authorization": "unauthorized"})).status_code == 401
        assert fns.CALLS == {"token_authorizer": 4, "integration": 2}
    finally:
        plane.stop()


async def test_a_ttl_of_zero_calls_the_function_every_time():
    plane = _plane(_rest_api(_token_authorizer(ttl_s=0)))
    try:
        for _ in range(3):
            assert (await _get(plane, "/prod/pets/7", {"Authorization": "allow"})).status_code == 200
        assert fns.CALLS == {"token_authorizer": 3, "integration": 3}
    finally:
        plane.stop()


async def test_a_cache_outlives_a_reload_that_keeps_the_authorizer_and_a_new_epoch_empties_it():
    plane = _plane(_rest_api(_token_authorizer()))
    try:
        assert (await _get(plane, "/prod/pets/7", {"Authorization": "allow"})).status_code == 200
        # A reload (another route added) with the same authorizer keeps its results.
        changed = _rest_api(_token_authorizer())
        changed["routes"].append(S.route("GET /more", S.lambda_proxy("integration")))
        plane.reload(_compiled([changed]))
        assert (await _get(plane, "/prod/pets/7", {"Authorization": "allow"})).status_code == 200
        assert fns.CALLS["token_authorizer"] == 1
        # FlushStageAuthorizersCache moves the stage's epoch: the function is asked again.
        plane.reload(_compiled([_rest_api(_token_authorizer(), epoch=1)]))
        assert (await _get(plane, "/prod/pets/7", {"Authorization": "allow"})).status_code == 200
        assert fns.CALLS["token_authorizer"] == 2
        # A changed authorizer (another TTL) starts with an empty cache too.
        plane.reload(_compiled([_rest_api(_token_authorizer(ttl_s=60), epoch=1)]))
        assert (await _get(plane, "/prod/pets/7", {"Authorization": "allow"})).status_code == 200
        assert fns.CALLS["token_authorizer"] == 3
    finally:
        plane.stop()


# -------------------------------------------------------------------------------- REST REQUEST


def _request_authorizer(ttl_s: int = 300) -> S.LambdaAuthorizerSpec:
    return S.lambda_authorizer(
        "req123",
        _arn("request_authorizer"),
        "REQUEST",
        [
            "method.request.header.HeaderAuth1",
            "method.request.querystring.QueryString1",
            "stageVariables.StageVar1",
        ],
        ttl_s=ttl_s,
        name="request",
    )


async def test_request_authorizer_reads_headers_query_and_stage_variables():
    plane = _plane(_rest_api(_request_authorizer(), variables={"StageVar1": "stageValue1"}))
    try:
        headers = {"HeaderAuth1": "headerValue1"}
        allowed = await _get(plane, "/prod/pets/7?QueryString1=queryValue1", headers)
        authorizer = _event(allowed)["requestContext"]["authorizer"]
        assert (authorizer["principalId"], authorizer["tenant"], authorizer["level"]) == (
            "me",
            "headerValue1",
            "3",
        )
        # The policy allows GET on every path of the stage: cached, it serves the next path.
        assert (await _get(plane, "/prod/pets/8?QueryString1=queryValue1", headers)).status_code == 200
        assert fns.CALLS == {"request_authorizer": 1, "integration": 2}
        # Other values are another cache entry, answered Unauthorized by the function.
        wrong = await _get(plane, "/prod/pets/7?QueryString1=other", headers)
        _check(wrong, 401, {"message": "Unauthorized"}, "UnauthorizedException")
        assert fns.CALLS == {"request_authorizer": 2, "integration": 2}
        # Any identity source missing: 401, the function is not called.
        for path, hdrs in (("/prod/pets/7", headers), ("/prod/pets/7?QueryString1=queryValue1", {})):
            missing = await _get(plane, path, hdrs)
            _check(missing, 401, {"message": "Unauthorized"}, "UnauthorizedException")
        assert fns.CALLS == {"request_authorizer": 2, "integration": 2}
    finally:
        plane.stop()


async def test_a_missing_stage_variable_is_a_missing_identity_source():
    plane = _plane(_rest_api(_request_authorizer()))
    try:
        refused = await _get(plane, "/prod/pets/7?QueryString1=queryValue1", {"HeaderAuth1": "headerValue1"})
        _check(refused, 401, {"message": "Unauthorized"}, "UnauthorizedException")
        assert fns.CALLS == {}
    finally:
        plane.stop()


async def test_rest_events_are_the_ones_aws_sends():
    token = S.lambda_authorizer(
        "evt1", _arn("event_authorizer"), "TOKEN", ["method.request.header.Authorization"], ttl_s=0
    )
    plane = _plane(_rest_api(token))
    try:
        response = await _get(plane, "/prod/pets/7", {"Authorization": "tok-1"})
        event = json.loads(_event(response)["requestContext"]["authorizer"]["event"])
        assert event == {
            "type": "TOKEN",
            "authorizationToken": "tok-1",
            "methodArn": f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{REST_ID}/prod/GET/pets/7",
        }
    finally:
        plane.stop()
    request = S.lambda_authorizer(
        "evt2", _arn("event_authorizer"), "REQUEST", ["method.request.header.X-Tenant"], ttl_s=0
    )
    plane = _plane(_rest_api(request, variables={"realm": "north"}))
    try:
        response = await _get(plane, "/prod/pets/7?a=1&a=2", {"X-Tenant": "t1"})
        integration_event = _event(response)
        event = json.loads(integration_event["requestContext"]["authorizer"]["event"])
        assert list(event)[:2] == ["type", "methodArn"]
        assert event["type"] == "REQUEST"
        assert event["methodArn"] == f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{REST_ID}/prod/GET/pets/7"
        assert set(event) == {
            "type",
            "methodArn",
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
        }
        assert (event["resource"], event["path"], event["httpMethod"]) == ("/pets/{id}", "/pets/7", "GET")
        assert event["headers"]["x-tenant"] == "t1"
        assert event["queryStringParameters"] == {"a": "2"}
        assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"]}
        assert event["pathParameters"] == {"id": "7"}
        assert event["stageVariables"] == {"realm": "north"}
        context = event["requestContext"]
        assert (context["stage"], context["resourcePath"], context["apiId"]) == (
            "prod",
            "/pets/{id}",
            REST_ID,
        )
        assert context["identity"]["sourceIp"] == "192.0.2.10"
        assert "authorizer" not in context
        # The integration's event is the same request, seen after authorization.
        assert integration_event["requestContext"]["requestId"] == context["requestId"]
    finally:
        plane.stop()


# ------------------------------------------------------------------------------------ HTTP APIs


def _http_authorizer(function: str, payload: str, *, simple: bool = False, ttl_s: int = 0, sources=None):
    return S.lambda_authorizer(
        "http123",
        _arn(function),
        "HTTP_2_0" if payload == "2.0" else "HTTP_1_0",
        ["$request.header.Authorization"] if sources is None else sources,
        simple_responses=simple,
        ttl_s=ttl_s,
        name=function,
    )


async def test_http_simple_responses():
    plane = _plane(_http_api(_http_authorizer("simple_authorizer", "2.0", simple=True)))
    try:
        allowed = await _get(plane, "/pets/7", {"Authorization": "secretToken"})
        assert _event(allowed)["requestContext"]["authorizer"] == {
            "lambda": {
                "stringKey": "value",
                "numberKey": 1,
                "booleanKey": True,
                "arrayKey": ["value1", "value2"],
                "mapKey": {"value1": "value2"},
            }
        }
        denied = await _get(plane, "/pets/7", {"Authorization": "wrong"})
        _check(denied, 403, {"message": "Forbidden"}, None)
        missing = await _get(plane, "/pets/7")
        _check(missing, 401, {"message": "Unauthorized"}, None)
        assert fns.CALLS == {"simple_authorizer": 2, "integration": 1}
    finally:
        plane.stop()


async def test_http_simple_responses_are_cached_allow_and_deny_alike():
    plane = _plane(_http_api(_http_authorizer("simple_authorizer", "2.0", simple=True, ttl_s=300)))
    try:
        for _ in range(2):
            assert (await _get(plane, "/pets/7", {"Authorization": "secretToken"})).status_code == 200
            assert (await _get(plane, "/pets/7", {"Authorization": "wrong"})).status_code == 403
        # A simple response allows every route of the authorizer for the identity.
        assert (await _get(plane, "/pets/8", {"Authorization": "secretToken"})).status_code == 200
        assert fns.CALLS == {"simple_authorizer": 2, "integration": 3}
    finally:
        plane.stop()


async def test_http_iam_policies_on_the_route_arn():
    plane = _plane(_http_api(_http_authorizer("iam_v2_authorizer", "2.0")))
    try:
        allowed = await _get(plane, "/pets/7", {"Authorization": "secretToken"})
        assert _event(allowed)["requestContext"]["authorizer"] == {
            "lambda": {"stringKey": "value", "numberKey": 1, "mapKey": {"a": "b"}}
        }
        denied = await _get(plane, "/pets/7", {"Authorization": "nope"})
        _check(denied, 403, {"message": "Forbidden"}, None)
        assert fns.CALLS == {"iam_v2_authorizer": 2, "integration": 1}
    finally:
        plane.stop()


async def test_http_payload_1_0_events_and_context():
    plane = _plane(_http_api(_http_authorizer("v1_authorizer", "1.0"), payload="1.0"))
    try:
        allowed = await _get(plane, "/pets/7", {"Authorization": "secretToken"})
        authorizer = _event(allowed)["requestContext"]["authorizer"]
        assert (authorizer["principalId"], authorizer["stringKey"], authorizer["flag"]) == (
            "v1-user",
            "value",
            "false",
        )
        unauthorized = await _get(plane, "/pets/7", {"Authorization": "other"})
        _check(unauthorized, 401, {"message": "Unauthorized"}, None)
    finally:
        plane.stop()


@pytest.mark.parametrize("payload", ["1.0", "2.0"])
async def test_http_events_are_the_ones_aws_sends(payload: str):
    sources = [
        "$request.header.Authorization",
        "$request.querystring.q",
        "$stageVariables.realm",
        "$context.routeKey",
    ]
    plane = _plane(_http_api(_http_authorizer("event_authorizer", payload, sources=sources), payload="2.0"))
    try:
        response = await _get(plane, "/pets/7?q=1&q=2", {"Authorization": "tok", "Cookie": "a=1; b=2"})
        event = json.loads(_event(response)["requestContext"]["authorizer"]["lambda"]["event"])
        arn = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{HTTP_ID}/$default/GET/pets/7"
        if payload == "2.0":
            assert list(event)[:4] == ["version", "type", "routeArn", "identitySource"]
            assert (event["version"], event["type"], event["routeArn"]) == ("2.0", "REQUEST", arn)
            assert event["identitySource"] == ["tok", "1,2", "north", "GET /pets/{id}"]
            assert (event["routeKey"], event["rawPath"], event["rawQueryString"]) == (
                "GET /pets/{id}",
                "/pets/7",
                "q=1&q=2",
            )
            assert event["cookies"] == ["a=1", "b=2"]
            assert event["queryStringParameters"] == {"q": "1,2"}
            assert event["pathParameters"] == {"id": "7"}
            assert event["stageVariables"] == {"realm": "north"}
            assert event["requestContext"]["http"]["method"] == "GET"
            assert "body" not in event and "isBase64Encoded" not in event
        else:
            assert list(event)[:5] == ["version", "type", "methodArn", "identitySource", "authorizationToken"]
            assert (event["version"], event["type"], event["methodArn"]) == ("1.0", "REQUEST", arn)
            assert event["identitySource"] == event["authorizationToken"] == "tok,1,2,north,GET /pets/{id}"
            assert (event["resource"], event["httpMethod"]) == ("/pets/{id}", "GET")
            assert event["queryStringParameters"] == {"q": "2"}
            assert "authorizer" not in event["requestContext"]
            assert "body" not in event
    finally:
        plane.stop()


# ------------------------------------------------------------------------------------ API keys


async def test_the_usage_identifier_key_is_the_api_key_when_the_source_is_authorizer():
    authorizer = S.lambda_authorizer(
        "key123", _arn("keyed_authorizer"), "TOKEN", ["method.request.header.Authorization"], ttl_s=0
    )
    api = _rest_api(authorizer, api_key_required=True, key_source="AUTHORIZER")
    plane = _plane(api, api_keys=[S.api_key("k1", KEY, [f"{REST_ID}/prod"])])
    try:
        passed = await _get(plane, "/prod/pets/7", {"Authorization": KEY})
        identity = _event(passed)["requestContext"]["identity"]
        assert (identity["apiKey"], identity["apiKeyId"]) == (KEY, "k1")
        # The x-api-key header does not count when the key source is AUTHORIZER.
        refused = await _get(
            plane, "/prod/pets/7", {"Authorization": "not-a-key-of-any-plan", "x-api-key": KEY}
        )
        _check(refused, 403, {"message": "Forbidden"}, "ForbiddenException")
        assert fns.CALLS == {"keyed_authorizer": 2, "integration": 1}
    finally:
        plane.stop()


# ---------------------------------------------------------------------------- timeouts, failures


async def test_a_hung_authorizer_times_out_and_does_not_hold_the_others():
    hung = S.lambda_authorizer(
        "hung1",
        _arn("hung_authorizer"),
        "TOKEN",
        ["method.request.header.Authorization"],
        ttl_s=0,
        timeout_ms=300,
    )
    http = _http_api(_http_authorizer("simple_authorizer", "2.0", simple=True))
    plane = _plane(_rest_api(hung), http)
    try:
        finished: list[str] = []

        async def call(name: str, path: str, headers: dict[str, str]) -> httpx.Response:
            response = await _get(plane, path, headers)
            finished.append(name)
            return response

        slow = asyncio.create_task(
            call("hung", "/restapis/restapi123/prod/_user_request_/pets/7", {"Authorization": "x"})
        )
        await asyncio.sleep(0.05)
        quick = await call(
            "simple", "/restapis/httpapi123/$default/_user_request_/pets/7", {"Authorization": "secretToken"}
        )
        assert quick.status_code == 200
        timed_out = await slow
        _check(timed_out, 500, {"message": None}, "AuthorizerFailureException")
        assert finished == ["simple", "hung"]
        assert fns.CALLS["integration"] == 1
    finally:
        plane.stop()


async def test_an_unregistered_authorizer_function_is_a_configuration_error():
    authorizer = S.lambda_authorizer(
        "ghost1", _arn("no_such_function"), "TOKEN", ["method.request.header.Authorization"]
    )
    plane = _plane(_rest_api(authorizer))
    try:
        response = await _get(plane, "/prod/pets/7", {"Authorization": "allow"})
        _check(response, CONFIG_ERROR["status"], CONFIG_ERROR["body"], CONFIG_ERROR["type"])
        assert fns.CALLS == {}
    finally:
        plane.stop()


_MALFORMED_ANSWERS = [
    "unauthorized",
    None,
    [],
    {},
    {"principalId": "u"},
    {"principalId": "u", "policyDocument": None},
    {"principalId": "u", "policyDocument": {"Statement": "Allow"}},
    {
        "principalId": "u",
        "policyDocument": {"Statement": [{"Effect": "allow", "Action": "*", "Resource": "*"}]},
    },
    {
        "principalId": 3,
        "policyDocument": {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]},
    },
    {
        "principalId": "u",
        "policyDocument": {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]},
        "context": {"nested": {"a": 1}},
    },
    {"isAuthorized": True},
]


@pytest.mark.parametrize("answer", _MALFORMED_ANSWERS, ids=[json.dumps(a)[:40] for a in _MALFORMED_ANSWERS])
async def test_malformed_answers_are_a_configuration_error(answer):
    authorizer = S.lambda_authorizer(
        "ret1", _arn("returns_authorizer"), "TOKEN", ["method.request.header.Authorization"], ttl_s=300
    )
    plane = _plane(_rest_api(authorizer))
    try:
        response = await _get(plane, "/prod/pets/7", {"Authorization": json.dumps(answer)})
        _check(response, CONFIG_ERROR["status"], CONFIG_ERROR["body"], CONFIG_ERROR["type"])
        assert fns.CALLS == {"returns_authorizer": 1}
    finally:
        plane.stop()


# ----------------------------------------------------------------------------------- hypothesis

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
_key = st.sampled_from(["principalId", "policyDocument", "context", "usageIdentifierKey", "isAuthorized"])
_statement = st.fixed_dictionaries(
    {},
    optional={
        "Effect": st.sampled_from(["Allow", "Deny", "allow", "", None]) | _json,
        "Action": st.sampled_from(["execute-api:Invoke", "*", "s3:*"]) | _json,
        "Resource": st.sampled_from(["*", "arn:aws:execute-api:*"]) | _json,
        "NotAction": _json,
    },
)
_answers = (
    _json
    | st.dictionaries(_key, _json, max_size=5)
    | st.builds(
        lambda statements, context, principal: {
            "principalId": principal,
            "policyDocument": {"Statement": statements},
            "context": context,
        },
        st.lists(_statement, max_size=3) | _json,
        _json,
        _json,
    )
)


def _may_allow(answer: Any) -> bool:
    """Whether `answer` is a well-formed REST authorizer output with an Allow statement: the only
    answers that may let a request reach the integration."""
    if not isinstance(answer, dict) or not isinstance(answer.get("policyDocument"), dict):
        return False
    if not isinstance(answer.get("principalId"), str | None):
        return False
    context = answer.get("context")
    if context is not None and (
        not isinstance(context, dict)
        or any(v is None or not isinstance(v, str | int | float | bool) for v in context.values())
    ):
        return False
    statements = answer["policyDocument"].get("Statement")
    statements = [statements] if isinstance(statements, dict) else statements
    return isinstance(statements, list) and any(
        isinstance(s, dict) and s.get("Effect") == "Allow" for s in statements
    )


@pytest.fixture(scope="module")
def returns_plane():
    authorizer = S.lambda_authorizer(
        "ret2", _arn("returns_authorizer"), "REQUEST", ["method.request.header.x-answer"], ttl_s=0
    )
    plane = _plane(_rest_api(authorizer))
    yield plane
    plane.stop()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(answer=_answers)
def test_no_malformed_answer_crashes_or_allows(returns_plane, answer):
    fns.CALLS.clear()
    response = asyncio.run(_get(returns_plane, "/prod/pets/7", {"x-answer": json.dumps(answer)}))
    assert response.status_code in (200, 403, 500), response.text
    assert fns.CALLS["returns_authorizer"] == 1
    if response.status_code == 200:
        assert _may_allow(answer), answer
        assert fns.CALLS["integration"] == 1
    else:
        assert fns.CALLS["integration"] == 0
        assert response.json() in (
            {"message": None},
            {"Message": "User is not authorized to access this resource"},
            {"Message": "User is not authorized to access this resource with an explicit deny"},
        )


async def test_tokens_never_reach_the_logs(capfd, caplog):
    """Every refusal is logged (the access log carries why), never with the token."""
    caplog.set_level("DEBUG")
    secret = "sekrit-7f3a9c1e5b2d4680"
    log_format = "$context.status $context.error.responseType $context.integrationErrorMessage"
    checked = _token_authorizer(ttl_s=0, validation_expression="allow|deny|sekrit-[0-9a-f]+")
    unchecked = S.lambda_authorizer(
        "ret3", _arn("returns_authorizer"), "TOKEN", ["method.request.header.Authorization"], ttl_s=0
    )
    apis = [_rest_api(checked)]
    other = _rest_api(unchecked)
    other["id"] = "restapi456"
    apis.append(other)
    compiled = CompiledConfig(
        Config(),
        S.spec(apis, account_id=ACCOUNT, region=REGION, access_log=S.access_log(log_format, "stderr")),
        "d1",
    )
    plane = DataPlane(compiled, registry=_registry())
    try:
        # The function answers a string: 500.
        response = await _get(
            plane, "/restapis/restapi123/prod/_user_request_/pets/7", {"Authorization": secret}
        )
        assert response.status_code == 500
        # Not matching the validation expression: 401.
        response = await _get(
            plane, "/restapis/restapi123/prod/_user_request_/pets/7", {"Authorization": secret + " x"}
        )
        assert response.status_code == 401
        # The function raises with the token in its event: 500.
        response = await _get(
            plane,
            "/restapis/restapi456/prod/_user_request_/pets/7",
            {"Authorization": json.dumps(secret) + "}"},
        )
        assert response.status_code == 500
    finally:
        plane.stop()
    captured = capfd.readouterr()
    logs = captured.out + captured.err + caplog.text
    assert "AUTHORIZER_CONFIGURATION_ERROR" in logs and "UNAUTHORIZED" in logs, logs
    assert "identityValidationExpression" in logs
    assert secret not in logs


async def test_the_access_log_shows_the_principal_and_context(tmp_path):
    """`$context.authorizer.principalId`, `.KEY` (stringified as the event shows them) and
    `.latency` in the access log, from the function's answer and from the cache alike."""
    log = tmp_path / "access.log"
    fmt = (
        "$context.authorizer.principalId $context.authorizer.stringKey $context.authorizer.numberKey "
        "$context.authorizer.booleanKey $context.authorizer.missing $context.status"
    )
    compiled = CompiledConfig(
        Config(),
        S.spec(
            [_rest_api(_token_authorizer(ttl_s=300))],
            account_id=ACCOUNT,
            region=REGION,
            access_log=S.access_log(fmt + " $context.authorizer.latency", str(log)),
        ),
        "d1",
    )
    plane = DataPlane(compiled, registry=_registry())
    try:
        for token in ("allow", "allow", "deny"):
            await _get(plane, "/prod/pets/7", {"Authorization": token})
    finally:
        plane.stop()
    lines = log.read_text().splitlines()
    assert [line.rsplit(" ", 1)[0] for line in lines] == [
        "user stringval 123 true - 200",
        "user stringval 123 true - 200",
        "- - - - - 403",
    ]
    assert all(line.rsplit(" ", 1)[1].isdigit() for line in lines[:2]), lines
    assert fns.CALLS["token_authorizer"] == 2


# ------------------------------------------------------------------------------ configuration


async def test_http_api_authorizers_from_the_config_file():
    from portico.compile.files import compile_config

    config = Config.model_validate(
        {
            "functions": {"simple_authorizer": "handlers.authorizers:simple_authorizer"},
            "apis": [
                {
                    "name": "from-yaml",
                    "id": HTTP_ID,
                    "integrations": {"echo": {"type": "AWS_PROXY", "uri": "integration"}},
                    "authorizers": {
                        "simple": {
                            "authorizerType": "REQUEST",
                            "authorizerUri": _arn("simple_authorizer"),
                            "authorizerPayloadFormatVersion": "2.0",
                            "enableSimpleResponses": True,
                            "identitySource": ["$request.header.Authorization"],
                            "authorizerResultTtlInSeconds": 60,
                        }
                    },
                    "routes": [
                        {
                            "routeKey": "GET /pets/{id}",
                            "integration": "echo",
                            "authorizationType": "CUSTOM",
                            "authorizerId": "simple",
                        },
                        {"routeKey": "GET /open", "integration": "echo"},
                    ],
                }
            ],
        }
    )
    plane = DataPlane(compile_config(config, _registry()), registry=_registry())
    try:
        for _ in range(2):
            assert (await _get(plane, "/pets/7", {"Authorization": "secretToken"})).status_code == 200
        denied = await _get(plane, "/pets/7", {"Authorization": "wrong"})
        _check(denied, 403, {"message": "Forbidden"}, None)
        _check(await _get(plane, "/pets/7"), 401, {"message": "Unauthorized"}, None)
        assert (await _get(plane, "/open")).status_code == 200
        assert fns.CALLS == {"simple_authorizer": 2, "integration": 3}
    finally:
        plane.stop()


async def test_rest_api_authorizers_from_the_config_file():
    from portico.compile.files import compile_config

    config = Config.model_validate(
        {
            "functions": {
                "token_authorizer": "handlers.authorizers:token_authorizer",
                "keyed_authorizer": "handlers.authorizers:keyed_authorizer",
                "integration": "handlers.authorizers:integration",
            },
            "apis": [
                {
                    "name": "rest-from-yaml",
                    "id": "yamlrest1",
                    "protocolType": "REST",
                    "apiKeySource": "AUTHORIZER",
                    "integrations": {"echo": {"type": "AWS_PROXY", "uri": "integration"}},
                    "authorizers": {
                        "token": {
                            "authorizerType": "TOKEN",
                            "authorizerUri": _arn("token_authorizer"),
                            "identitySource": "method.request.header.Authorization",
                            "identityValidationExpression": "allow|deny",
                        },
                        "keyed": {
                            "authorizerType": "TOKEN",
                            "authorizerUri": "keyed_authorizer",
                            "identitySource": "method.request.header.Authorization",
                            "authorizerResultTtlInSeconds": 0,
                        },
                    },
                    "routes": [
                        {
                            "routeKey": "GET /pets/{id}",
                            "integration": "echo",
                            "authorizationType": "CUSTOM",
                            "authorizerId": "token",
                        },
                        {
                            "routeKey": "GET /keyed",
                            "integration": "echo",
                            "authorizationType": "CUSTOM",
                            "authorizerId": "keyed",
                            "apiKeyRequired": True,
                        },
                    ],
                    "stages": [{"stageName": "prod"}],
                }
            ],
            "apiKeys": [{"name": "partner", "value": KEY.replace("-", ""), "enabled": True}],
            "usagePlans": [
                {
                    "name": "gold",
                    "apiStages": [{"apiId": "yamlrest1", "stage": "prod"}],
                    "apiKeys": ["partner"],
                }
            ],
        }
    )
    plane = DataPlane(compile_config(config, _registry()), registry=_registry())
    try:
        # TTL unset: AWS's 300 s for REST authorizers.
        for _ in range(2):
            allowed = await _get(plane, "/prod/pets/7", {"Authorization": "allow"})
            assert _event(allowed)["requestContext"]["authorizer"]["principalId"] == "user"
        denied = await _get(plane, "/prod/pets/7", {"Authorization": "deny"})
        _check(
            denied,
            403,
            {"Message": "User is not authorized to access this resource with an explicit deny"},
            "AccessDeniedException",
        )
        _check(
            await _get(plane, "/prod/pets/7", {"Authorization": "nope"}),
            401,
            {"message": "Unauthorized"},
            "UnauthorizedException",
        )
        assert fns.CALLS == {"token_authorizer": 2, "integration": 2}
        # apiKeySource AUTHORIZER: the key is the authorizer's usageIdentifierKey.
        keyed = await _get(plane, "/prod/keyed", {"Authorization": KEY.replace("-", "")})
        assert _event(keyed)["requestContext"]["identity"]["apiKey"] == KEY.replace("-", "")
        refused = await _get(plane, "/prod/keyed", {"Authorization": "NotAKeyOfAnyPlan0123456789"})
        _check(refused, 403, {"message": "Forbidden"}, "ForbiddenException")
        assert fns.CALLS["integration"] == 3
    finally:
        plane.stop()


_V2 = {"authorizerUri": "f", "authorizerPayloadFormatVersion": "2.0"}
_TOKEN = {
    "authorizerType": "TOKEN",
    "authorizerUri": "f",
    "identitySource": "method.request.header.Authorization",
}


@pytest.mark.parametrize(
    ("protocol", "authorizer", "route", "error"),
    [
        (
            "HTTP",
            {**_V2, "authorizerPayloadFormatVersion": "1.0", "enableSimpleResponses": True},
            {},
            "enableSimpleResponses",
        ),
        ("HTTP", {**_V2, "authorizerResultTtlInSeconds": 5}, {}, "needs at least one identitySource"),
        ("HTTP", {**_V2, "identitySource": ["header.x"]}, {}, "identity source"),
        ("HTTP", {**_V2, "identitySource": ["method.request.header.x"]}, {}, "identity source"),
        ("HTTP", _V2, {"authorizerId": "other"}, "unknown authorizer"),
        ("HTTP", _V2, {"authorizationType": "NONE"}, "not used with"),
        ("HTTP", _V2, {"authorizationType": "AWS_IAM"}, "not used with"),
        ("HTTP", {**_V2, "authorizerPayloadFormatVersion": "3.0"}, {}, "authorizerPayloadFormatVersion"),
        ("HTTP", {"authorizerUri": "f"}, {}, "authorizerPayloadFormatVersion"),
        ("HTTP", {**_TOKEN, "identitySource": "$request.header.a"}, {}, "REQUEST"),
        ("HTTP", {**_V2, "authorizerUri": "not a function"}, {}, "authorizerUri"),
        (
            "REST",
            {**_TOKEN, "identitySource": "method.request.header.a, method.request.header.b"},
            {},
            "one header",
        ),
        ("REST", {**_TOKEN, "identitySource": "method.request.querystring.t"}, {}, "one header"),
        ("REST", {**_TOKEN, "identitySource": "$request.header.a"}, {}, "identity source"),
        ("REST", {**_TOKEN, "authorizerPayloadFormatVersion": "2.0"}, {}, "HTTP APIs'"),
        (
            "REST",
            {"authorizerType": "REQUEST", "authorizerUri": "f"},
            {},
            "needs at least one identitySource",
        ),
        (
            "REST",
            {"authorizerType": "REQUEST", "authorizerUri": "f", "identityValidationExpression": "x"},
            {},
            "TOKEN authorizers only",
        ),
    ],
)
def test_config_authorizers_are_validated(protocol, authorizer, route, error):
    from pydantic import ValidationError

    document = {
        "apis": [
            {
                "name": "bad",
                "protocolType": protocol,
                "authorizers": {"a": authorizer},
                "routes": [
                    {
                        "routeKey": "GET /x",
                        "integration": {"type": "MOCK", "statusCode": 200},
                        "authorizationType": "CUSTOM",
                        "authorizerId": "a",
                        **route,
                    }
                ],
                "stages": [{"stageName": "prod"}],
            }
        ]
    }
    with pytest.raises(ValidationError, match=error):
        Config.model_validate(document)
    # Without the faulty member, the same document is valid.
    if protocol == "REST":
        document["apis"][0]["authorizers"]["a"] = {**_TOKEN}
    else:
        document["apis"][0]["authorizers"]["a"] = {**_V2}
    document["apis"][0]["routes"][0].update(authorizationType="CUSTOM", authorizerId="a")
    Config.model_validate(document)


# ---------------------------------------------------------------------------- the admin API

_FUNCTIONS = {
    name: f"handlers.authorizers:{name}"
    for name in (
        "token_authorizer",
        "request_authorizer",
        "simple_authorizer",
        "keyed_authorizer",
        "integration",
        "calls",
    )
}


def _admin(portico, tmp_path):
    from admin_e2e import start_admin_server

    return start_admin_server(portico, tmp_path, functions=_FUNCTIONS)


def _counts(admin, host: dict[str, str]) -> dict[str, int]:
    response = httpx.get(admin.url + "/prod/calls", headers=host)
    assert response.status_code == 200, response.text
    return response.json()


def _rest_through_boto3(apigw, authorizer_id_of) -> tuple[str, str]:
    """A REST API: GET /pets/{id} (CUSTOM, the authorizer `authorizer_id_of(api_id)` creates) and an
    open GET /calls; deployed to `prod`. Returns (api id, the `{id}` resource id)."""
    from admin_e2e import point_at

    api = apigw.create_rest_api(name="guarded")
    api_id, root_id = api["id"], api["rootResourceId"]
    authorizer_id = authorizer_id_of(api_id)
    pets = apigw.create_resource(restApiId=api_id, parentId=root_id, pathPart="pets")
    pet = apigw.create_resource(restApiId=api_id, parentId=pets["id"], pathPart="{id}")
    apigw.put_method(
        restApiId=api_id,
        resourceId=pet["id"],
        httpMethod="GET",
        authorizationType="CUSTOM",
        authorizerId=authorizer_id,
    )
    point_at(apigw, api_id, pet["id"], "integration", method="GET")
    calls = apigw.create_resource(restApiId=api_id, parentId=root_id, pathPart="calls")
    apigw.put_method(restApiId=api_id, resourceId=calls["id"], httpMethod="GET", authorizationType="NONE")
    point_at(apigw, api_id, calls["id"], "calls", method="GET")
    apigw.create_deployment(restApiId=api_id, stageName="prod")
    return api_id, pet["id"]


def test_rest_token_authorizer_created_with_boto3_and_its_cache_flushed(portico, tmp_path):
    from admin_e2e import invocation_uri, wait_for

    admin = _admin(portico, tmp_path)
    apigw = admin.client("apigateway")

    def create(api_id: str) -> str:
        created = apigw.create_authorizer(
            restApiId=api_id,
            name="token",
            type="TOKEN",
            authorizerUri=invocation_uri("token_authorizer"),
            identitySource="method.request.header.Authorization",
            identityValidationExpression="allow|deny|unauthorized",
        )
        assert created["authorizerResultTtlInSeconds"] == 300
        return created["id"]

    api_id, _ = _rest_through_boto3(apigw, create)
    host = {"host": admin.host(api_id)}
    wait_for(lambda: httpx.get(admin.url + "/prod/calls", headers=host).status_code == 200, timeout=5)

    for _ in range(3):
        allowed = httpx.get(admin.url + "/prod/pets/7", headers={**host, "Authorization": "allow"})
        assert allowed.status_code == 200, allowed.text
    authorizer = allowed.json()["requestContext"]["authorizer"]
    assert (authorizer["principalId"], authorizer["numberKey"], authorizer["booleanKey"]) == (
        "user",
        "123",
        "true",
    )
    assert _counts(admin, host) == {"token_authorizer": 1, "integration": 3}

    denied = httpx.get(admin.url + "/prod/pets/7", headers={**host, "Authorization": "deny"})
    _check(
        denied,
        403,
        {"Message": "User is not authorized to access this resource with an explicit deny"},
        "AccessDeniedException",
    )
    for headers in ({}, {"Authorization": "not-matching"}):
        missing = httpx.get(admin.url + "/prod/pets/7", headers={**host, **headers})
        _check(missing, 401, {"message": "Unauthorized"}, "UnauthorizedException")
    assert _counts(admin, host) == {"token_authorizer": 2, "integration": 3}

    # FlushStageAuthorizersCache: the next request asks the function again, then is cached again.
    apigw.flush_stage_authorizers_cache(restApiId=api_id, stageName="prod")

    def asked_again():
        response = httpx.get(admin.url + "/prod/pets/7", headers={**host, "Authorization": "allow"})
        assert response.status_code == 200
        return _counts(admin, host)["token_authorizer"] == 3

    wait_for(asked_again, timeout=5)
    httpx.get(admin.url + "/prod/pets/7", headers={**host, "Authorization": "allow"})
    assert _counts(admin, host)["token_authorizer"] == 3


def test_rest_request_authorizer_created_with_boto3(portico, tmp_path):
    from admin_e2e import invocation_uri, wait_for

    admin = _admin(portico, tmp_path)
    apigw = admin.client("apigateway")

    def create(api_id: str) -> str:
        return apigw.create_authorizer(
            restApiId=api_id,
            name="request",
            type="REQUEST",
            authorizerUri=invocation_uri("request_authorizer"),
            identitySource="method.request.header.HeaderAuth1, method.request.querystring.QueryString1, "
            "stageVariables.StageVar1",
            authorizerResultTtlInSeconds=0,
        )["id"]

    api_id, _ = _rest_through_boto3(apigw, create)
    apigw.update_stage(
        restApiId=api_id,
        stageName="prod",
        patchOperations=[{"op": "replace", "path": "/variables/StageVar1", "value": "stageValue1"}],
    )
    host = {"host": admin.host(api_id)}
    url = admin.url + "/prod/pets/7?QueryString1=queryValue1"

    def allowed():
        response = httpx.get(url, headers={**host, "HeaderAuth1": "headerValue1"})
        return response if response.status_code == 200 else None

    response, _ = wait_for(allowed, timeout=5)
    assert response.json()["requestContext"]["authorizer"]["tenant"] == "headerValue1"
    missing = httpx.get(url, headers=host)
    _check(missing, 401, {"message": "Unauthorized"}, "UnauthorizedException")
    before = _counts(admin, host)
    httpx.get(url, headers={**host, "HeaderAuth1": "headerValue1"})
    assert _counts(admin, host)["request_authorizer"] == before["request_authorizer"] + 1  # TTL 0


def test_usage_identifier_key_with_boto3_api_keys_and_usage_plans(portico, tmp_path):
    from admin_e2e import invocation_uri, point_at, wait_for

    admin = _admin(portico, tmp_path)
    apigw = admin.client("apigateway")
    api = apigw.create_rest_api(name="keyed", apiKeySource="AUTHORIZER")
    api_id, root_id = api["id"], api["rootResourceId"]
    authorizer = apigw.create_authorizer(
        restApiId=api_id,
        name="keyed",
        type="TOKEN",
        authorizerUri=invocation_uri("keyed_authorizer"),
        identitySource="method.request.header.Authorization",
        authorizerResultTtlInSeconds=0,
    )
    items = apigw.create_resource(restApiId=api_id, parentId=root_id, pathPart="items")["id"]
    apigw.put_method(
        restApiId=api_id,
        resourceId=items,
        httpMethod="GET",
        authorizationType="CUSTOM",
        authorizerId=authorizer["id"],
        apiKeyRequired=True,
    )
    point_at(apigw, api_id, items, "integration", method="GET")
    calls = apigw.create_resource(restApiId=api_id, parentId=root_id, pathPart="calls")["id"]
    apigw.put_method(restApiId=api_id, resourceId=calls, httpMethod="GET", authorizationType="NONE")
    point_at(apigw, api_id, calls, "calls", method="GET")
    apigw.create_deployment(restApiId=api_id, stageName="prod")
    value = "PorticoLambdaKey0123456789abcdef"
    key = apigw.create_api_key(name="partner", value=value, enabled=True)
    plan = apigw.create_usage_plan(name="gold", apiStages=[{"apiId": api_id, "stage": "prod"}])
    apigw.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
    host = {"host": admin.host(api_id)}

    def passed():
        response = httpx.get(admin.url + "/prod/items", headers={**host, "Authorization": value})
        return response if response.status_code == 200 else None

    response, _ = wait_for(passed, timeout=5)
    identity = response.json()["requestContext"]["identity"]
    assert (identity["apiKey"], identity["apiKeyId"]) == (value, key["id"])
    before = _counts(admin, host)
    refused = httpx.get(
        admin.url + "/prod/items",
        headers={**host, "Authorization": "NotAKeyOfAnyPlan0123456789", "x-api-key": value},
    )
    _check(refused, 403, {"message": "Forbidden"}, "ForbiddenException")
    after = _counts(admin, host)
    assert after["integration"] == before["integration"]
    assert after["keyed_authorizer"] == before["keyed_authorizer"] + 1


def test_http_api_authorizer_created_with_boto3_and_reset(portico, tmp_path):
    from admin_e2e import lambda_arn, wait_for

    admin = _admin(portico, tmp_path)
    apigw = admin.client("apigateway")
    # An open REST API only to read the counts.
    rest_id, _ = _rest_through_boto3(
        apigw,
        lambda api_id: apigw.create_authorizer(
            restApiId=api_id,
            name="t",
            type="TOKEN",
            authorizerUri=lambda_arn("token_authorizer"),
            identitySource="method.request.header.Authorization",
        )["id"],
    )
    counts_host = {"host": admin.host(rest_id)}
    v2 = admin.client("apigatewayv2")
    api_id = v2.create_api(Name="pets", ProtocolType="HTTP")["ApiId"]
    integration = v2.create_integration(
        ApiId=api_id,
        IntegrationType="AWS_PROXY",
        IntegrationUri=lambda_arn("integration"),
        PayloadFormatVersion="2.0",
    )
    authorizer = v2.create_authorizer(
        ApiId=api_id,
        Name="simple",
        AuthorizerType="REQUEST",
        AuthorizerUri=lambda_arn("simple_authorizer"),
        AuthorizerPayloadFormatVersion="2.0",
        EnableSimpleResponses=True,
        IdentitySource=["$request.header.Authorization"],
        AuthorizerResultTtlInSeconds=300,
    )
    v2.create_route(
        ApiId=api_id,
        RouteKey="GET /pets/{id}",
        Target=f"integrations/{integration['IntegrationId']}",
        AuthorizationType="CUSTOM",
        AuthorizerId=authorizer["AuthorizerId"],
    )
    v2.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)
    host = {"host": admin.host(api_id)}

    def served():
        response = httpx.get(admin.url + "/pets/7", headers={**host, "Authorization": "secretToken"})
        return response if response.status_code == 200 else None

    response, _ = wait_for(served, timeout=5)
    assert response.json()["requestContext"]["authorizer"]["lambda"]["mapKey"] == {"value1": "value2"}
    _check(
        httpx.get(admin.url + "/pets/7", headers={**host, "Authorization": "no"}),
        403,
        {"message": "Forbidden"},
        None,
    )
    _check(httpx.get(admin.url + "/pets/7", headers=host), 401, {"message": "Unauthorized"}, None)
    assert _counts(admin, counts_host)["simple_authorizer"] == 2
    httpx.get(admin.url + "/pets/7", headers={**host, "Authorization": "secretToken"})
    assert _counts(admin, counts_host)["simple_authorizer"] == 2

    v2.reset_authorizers_cache(ApiId=api_id, StageName="$default")

    def asked_again():
        httpx.get(admin.url + "/pets/7", headers={**host, "Authorization": "secretToken"})
        return _counts(admin, counts_host)["simple_authorizer"] == 3

    wait_for(asked_again, timeout=5)


def test_openapi_imports_lambda_authorizers(portico, tmp_path):
    from admin_e2e import invocation_uri, wait_for

    admin = _admin(portico, tmp_path)
    apigw = admin.client("apigateway")
    proxy = {"type": "aws_proxy", "httpMethod": "POST", "uri": invocation_uri("integration")}
    document = {
        "openapi": "3.0.1",
        "info": {"title": "imported", "version": "1"},
        "paths": {
            "/pets/{id}": {
                "get": {"security": [{"tokenAuth": []}], "x-amazon-apigateway-integration": proxy}
            },
            "/calls": {"get": {"x-amazon-apigateway-integration": {**proxy, "uri": invocation_uri("calls")}}},
        },
        "components": {
            "securitySchemes": {
                "tokenAuth": {
                    "type": "apiKey",
                    "name": "Authorization",
                    "in": "header",
                    "x-amazon-apigateway-authtype": "custom",
                    "x-amazon-apigateway-authorizer": {
                        "type": "token",
                        "authorizerUri": invocation_uri("token_authorizer"),
                        "authorizerResultTtlInSeconds": 0,
                    },
                }
            }
        },
    }
    api_id = apigw.import_rest_api(body=json.dumps(document).encode())["id"]
    apigw.create_deployment(restApiId=api_id, stageName="prod")
    host = {"host": admin.host(api_id)}
    wait_for(lambda: httpx.get(admin.url + "/prod/calls", headers=host).status_code == 200, timeout=5)
    assert (
        httpx.get(admin.url + "/prod/pets/7", headers={**host, "Authorization": "allow"}).status_code == 200
    )
    denied = httpx.get(admin.url + "/prod/pets/7", headers={**host, "Authorization": "deny"})
    assert denied.status_code == 403
    assert _counts(admin, host) == {"token_authorizer": 2, "integration": 1}

    v2 = admin.client("apigatewayv2")
    http_document = {
        "openapi": "3.0.1",
        "info": {"title": "imported-http", "version": "1"},
        "paths": {
            "/pets/{id}": {
                "get": {
                    "security": [{"simple": []}],
                    "x-amazon-apigateway-integration": {
                        "type": "aws_proxy",
                        "httpMethod": "POST",
                        "uri": invocation_uri("integration"),
                        "payloadFormatVersion": "2.0",
                    },
                }
            }
        },
        "components": {
            "securitySchemes": {
                "simple": {
                    "type": "apiKey",
                    "name": "Authorization",
                    "in": "header",
                    "x-amazon-apigateway-authorizer": {
                        "type": "request",
                        "identitySource": "$request.header.Authorization",
                        "authorizerUri": invocation_uri("simple_authorizer"),
                        "authorizerPayloadFormatVersion": "2.0",
                        "enableSimpleResponses": True,
                    },
                }
            }
        },
    }
    http_id = v2.import_api(Body=json.dumps(http_document))["ApiId"]
    v2.create_stage(ApiId=http_id, StageName="$default", AutoDeploy=True)
    http_host = {"host": admin.host(http_id)}

    def served():
        response = httpx.get(admin.url + "/pets/7", headers={**http_host, "Authorization": "secretToken"})
        return response if response.status_code == 200 else None

    wait_for(served, timeout=5)
    _check(
        httpx.get(admin.url + "/pets/7", headers={**http_host, "Authorization": "x"}),
        403,
        {"message": "Forbidden"},
        None,
    )
