"""API keys, usage plans, resource policies and gateway responses declared in the YAML config
(`protocolType: REST` APIs), served by `portico serve`; the config's checks; and gateway-response
templates of any text rendered without failing."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portico.compile import spec as S
from portico.compile.files import CompiledConfig, compile_config
from portico.config.loader import ConfigFileError, parse_config
from portico.config.models import Config
from portico.dataplane.app import DataPlane
from portico.integrations.functions import FunctionRegistry

KEY = "YamlDeclaredKeyValue0123456789"
DISABLED = "YamlDisabledKeyValue0123456789"

CONFIG = {
    "functions": {"counted": "handlers.counting:counted"},
    "apis": [
        {
            "name": "shop",
            "id": "shop",
            "protocolType": "REST",
            "routes": [
                {"routeKey": "GET /items", "integration": "fn", "apiKeyRequired": True},
                {"routeKey": "GET /open", "integration": "fn"},
            ],
            "integrations": {"fn": {"type": "AWS_PROXY", "uri": "counted"}},
            "stages": [{"stageName": "prod", "stageVariables": {"tier": "gold"}}, {"stageName": "dev"}],
            "gatewayResponses": {
                "INVALID_API_KEY": {
                    "statusCode": 401,
                    "responseParameters": {"gatewayresponse.header.x-tier": "stageVariables.tier"},
                    "responseTemplates": {"application/json": '{"error":$context.error.messageString}'},
                },
            },
            "policy": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": "*",
                        "Action": "execute-api:Invoke",
                        "Resource": "execute-api:/*",
                    },
                    {
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "execute-api:Invoke",
                        "Resource": "execute-api:/dev/*",
                        "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}},
                    },
                ],
            },
        }
    ],
    "apiKeys": [
        {"name": "partner", "value": KEY, "enabled": True},
        {"name": "off", "value": DISABLED},
    ],
    "usagePlans": [
        {"name": "gold", "apiStages": [{"apiId": "shop", "stage": "prod"}], "apiKeys": ["partner", "off"]}
    ],
}


def test_a_rest_api_with_keys_from_the_yaml_config(portico):
    server = portico(CONFIG)
    items = server.url + "/prod/items"
    first = httpx.get(items, headers={"x-api-key": KEY})
    assert first.status_code == 200, first.text
    body = first.json()
    assert "version" not in body["event"]  # REST: Lambda events of payload 1.0
    identity = body["event"]["requestContext"]["identity"]
    assert identity["apiKey"] == KEY
    assert identity["apiKeyId"] == Config.model_validate(CONFIG).apiKeys[0].key_id
    for headers in ({}, {"x-api-key": DISABLED}, {"x-api-key": "nope"}):
        refused = httpx.get(items, headers=headers)
        assert (refused.status_code, refused.json()) == (401, {"error": "Forbidden"})
        assert refused.headers["x-tier"] == "gold"
        assert refused.headers["x-amzn-errortype"] == "ForbiddenException"
    # The key is bound to prod only; and dev is refused to loopback callers by the policy.
    denied = httpx.get(server.url + "/dev/open")
    assert denied.status_code == 403
    assert denied.json()["Message"].endswith(":shop/dev/GET/open with an explicit deny")
    again = httpx.get(server.url + "/prod/items", headers={"X-API-KEY": KEY})
    assert again.json()["calls"] == body["calls"] + 1  # nothing refused reached the function
    assert KEY not in server.log and DISABLED not in server.log


def _problems(document: dict) -> str:
    with pytest.raises(ConfigFileError) as caught:
        parse_config(json.dumps(document))
    return str(caught.value)


def test_the_config_refuses_what_aws_refuses():
    def rest(**extra) -> dict:
        api = {
            "name": "r",
            "protocolType": "REST",
            "routes": [{"routeKey": "GET /x", "integration": {"type": "MOCK", "statusCode": 200}}],
            "stages": [{"stageName": "prod"}],
        }
        return {"apis": [{**api, **extra}]}

    http_with_key = {
        "apis": [
            {
                "name": "h",
                "routes": [
                    {
                        "routeKey": "GET /x",
                        "integration": {"type": "MOCK", "statusCode": 200},
                        "apiKeyRequired": True,
                    }
                ],
            }
        ]
    }
    assert "API keys are REST APIs'" in _problems(http_with_key)
    assert "only REST APIs have it" in _problems({"apis": [{"name": "h", "policy": {"Statement": []}}]})
    assert "no $default stage" in _problems(rest(stages=[{}]))
    assert "REQUEST_TOO_LARGE cannot be customised" in _problems(
        rest(gatewayResponses={"REQUEST_TOO_LARGE": {}})
    )
    bad_mapping = {
        "DEFAULT_4XX": {"responseParameters": {"gatewayresponse.header.x": "method.request.body.x"}}
    }
    assert "invalid mapping expression" in _problems(rest(gatewayResponses=bad_mapping))
    assert "gatewayResponses.NOT_A_TYPE.[key]: Input should be 'ACCESS_DENIED'" in _problems(
        rest(gatewayResponses={"NOT_A_TYPE": {}})
    )
    short = {**rest(), "apiKeys": [{"name": "k", "value": "short"}]}
    assert "apiKeys[0].value: String should have at least 20 characters" in _problems(short)
    twice = {**rest(), "apiKeys": [{"name": "a", "value": KEY}, {"name": "b", "value": KEY}]}
    assert "values are unique" in _problems(twice)
    unknown_key = {**rest(), "usagePlans": [{"name": "p", "apiKeys": ["ghost"]}]}
    assert "no API key named 'ghost'" in _problems(unknown_key)
    no_stage = {
        **rest(id="rid"),
        "usagePlans": [{"name": "p", "apiStages": [{"apiId": "rid", "stage": "beta"}]}],
    }
    assert "has no stage 'beta'" in _problems(no_stage)
    one_plan_per_stage = {
        **rest(id="rid"),
        "apiKeys": [{"name": "a", "value": KEY}],
        "usagePlans": [
            {"name": "p1", "apiStages": [{"apiId": "rid", "stage": "prod"}], "apiKeys": ["a"]},
            {"name": "p2", "apiStages": [{"apiId": "rid", "stage": "prod"}], "apiKeys": ["a"]},
        ],
    }
    assert "already in usage plan 'p1'" in _problems(one_plan_per_stage)
    # A key never shows its value when the config is printed.
    config = Config.model_validate({"apiKeys": [{"name": "a", "value": KEY}]})
    assert KEY not in repr(config.apiKeys) and KEY not in str(config.apiKeys[0])


def test_the_spec_carries_only_the_keys_digest():
    config = Config.model_validate({**CONFIG, "functions": {}})
    registry = FunctionRegistry()
    registry.register("counted", lambda event, context: {"statusCode": 200})
    spec = compile_config(config, registry).spec
    text = S.dumps(spec)
    assert KEY not in text and DISABLED not in text
    keys = {k["value_sha256"]: k for k in spec["api_keys"]}
    assert keys[S.api_key_digest(KEY)]["stages"] == ["shop/prod"]
    assert keys[S.api_key_digest(DISABLED)]["enabled"] is False


# --------------------------------------------------------------------------------- templates


def _compiled(template: str, parameters: dict[str, str] | None = None) -> CompiledConfig:
    api = S.api(
        "tpl",
        "tpl",
        "rest",
        [S.stage("prod", deployment_id="d1", variables={"v": "1"})],
        routes=[S.route("GET /x", S.mock(200))],
        gateway_responses=[
            S.gateway_response("DEFAULT_4XX", None, parameters, {"application/json": template})
        ],
    )
    return CompiledConfig(Config(), S.spec([api]), "d1")


def _plane(template: str, parameters: dict[str, str] | None = None) -> DataPlane:
    return DataPlane(_compiled(template, parameters))


async def _missing(plane: DataPlane, headers: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=plane, client=("192.0.2.10", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        return await client.get("/prod/nowhere?q=1", headers=headers)


_PIECES = [
    *"$.{}\"'\\ #()ab",
    "$context.",
    "$stageVariables.",
    "error.message",
    "messageString",
    "\n",
    "é",
    "\x00",
]


@pytest.fixture(scope="module")
def template_plane():
    plane = _plane("")
    yield plane
    plane.stop()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(template=st.lists(st.sampled_from(_PIECES), max_size=30).map("".join) | st.text(max_size=40))
async def test_any_template_renders(template_plane, template):
    template_plane.reload(_compiled(template))
    response = await _missing(template_plane)
    assert response.status_code == 403
    assert response.headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"
    # Text without variables comes back as it is.
    if "$" not in template:
        assert response.content == template.encode()


async def test_template_variables_render_for_the_request():
    template = (
        '{"m":$context.error.messageString,"t":"$context.error.responseType","v":"$stageVariables.v",'
        '"path":"$context.path","ip":"$context.identity.sourceIp","unknown":"$context.nothing"}'
    )
    plane = _plane(template, {"gatewayresponse.header.x-q": "method.request.querystring.q"})
    try:
        response = await _missing(plane)
        assert response.json() == {
            "m": "Missing Authentication Token",
            "t": "MISSING_AUTHENTICATION_TOKEN",
            "v": "1",
            "path": "/prod/nowhere",
            "ip": "192.0.2.10",
            "unknown": "-",
        }
        assert response.headers["x-q"] == "1"
    finally:
        plane.stop()


def test_http_apis_have_no_gateway_responses():
    api = S.api(
        "h",
        "h",
        "http",
        [S.stage("$default")],
        routes=[S.route("GET /x", S.mock(200))],
        gateway_responses=[S.gateway_response("DEFAULT_4XX", 400)],
    )
    with pytest.raises(Exception, match="HTTP APIs have no gateway responses"):
        DataPlane(CompiledConfig(Config(), S.spec([api]), "d1"))
