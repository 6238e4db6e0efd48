"""Golden tests of REST APIs' gateway responses, as "Gateway response types for API Gateway" and
"Set up gateway responses to customize error responses" (API Gateway developer guide) describe
them: REST APIs built with boto3 through a real `portico serve --admin-port`, each failure
provoked by a real HTTP request.

* the defaults: every type Portico can provoke, with AWS's status, `{"message": ...}` body and
  `x-amzn-ErrorType`, in one table;
* the customisations: `statusCode`, `responseParameters` from every source, `responseTemplates`
  chosen by `Accept` with `$context.error.*` and `$stageVariables.*`;
* the fallback: a type without a customisation of its own takes DEFAULT_4XX / DEFAULT_5XX (by its
  class) and keeps its own status unless the class default sets one; REQUEST_TOO_LARGE is never
  customised; deleting reverts once redeployed."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from admin_e2e import ACCESS_KEY_ID, REGION, SECRET, AdminServer, invocation_uri, start_admin_server, wait_for
from conftest import free_port, start_server

FUNCTIONS = {
    "echo": "handlers.basic:echo",
    "slow": "handlers.basic:slow",
    "raises": "handlers.basic:raises",
    "token_authorizer": "handlers.authorizers:token_authorizer",
}
KEY = "GoldenGatewayKeyValue0123456789ab"
PET = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS "
    "Secret Access Key and signing method. Consult the service documentation for details."
)
# API Gateway's payload limit ("Amazon API Gateway quotas": 10 MB).
PAYLOAD_LIMIT = 10 * 1024 * 1024


@dataclass
class Api:
    """A deployed REST API (stage `prod`) on the shared server."""

    admin: AdminServer
    apigw: object
    id: str

    def call(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"host": self.admin.host(self.id), **kwargs.pop("headers", {})}
        return httpx.request(method, self.admin.url + "/prod" + path, headers=headers, timeout=20, **kwargs)

    def deploy(self, **kwargs) -> None:
        self.apigw.create_deployment(restApiId=self.id, stageName="prod", **kwargs)


@pytest.fixture(scope="module")
def admin(tmp_path_factory) -> Iterator[AdminServer]:
    """One admin server for the module: each test builds APIs of its own on it."""
    workdir: Path = tmp_path_factory.mktemp("gateway-responses")
    servers = []

    def start(config, functions=None, workers=1, extra_args=None):
        server = start_server(config, workdir, functions, workers, extra_args)
        servers.append(server)
        return server

    yield start_admin_server(start, workdir, functions=FUNCTIONS)
    for server in servers:
        server.stop()


def _method(apigw, api_id: str, parent: str, part: str, verb: str = "GET", integration=None, **method) -> str:
    """`/part` (under `parent`) with `verb`, integrated AWS_PROXY to echo unless `integration`
    says otherwise. Returns the resource id."""
    resource = apigw.create_resource(restApiId=api_id, parentId=parent, pathPart=part)["id"]
    apigw.put_method(
        restApiId=api_id,
        resourceId=resource,
        httpMethod=verb,
        authorizationType=method.pop("authorizationType", "NONE"),
        **method,
    )
    apigw.put_integration(
        restApiId=api_id,
        resourceId=resource,
        httpMethod=verb,
        **(
            integration
            or {"type": "AWS_PROXY", "integrationHttpMethod": "POST", "uri": invocation_uri("echo")}
        ),
    )
    return resource


def build(admin: AdminServer, name: str) -> Api:
    """A REST API with a route for each failure the table provokes, deployed to `prod` (stage
    variable `color=blue`): `/keyed` needs an API key, whose usage plan allows one request a day;
    `/throttled` is throttled to nothing; `/signed` is AWS_IAM; `/guarded` has a TOKEN authorizer."""
    apigw = admin.client("apigateway")
    created = apigw.create_rest_api(name=name)
    api_id, root = created["id"], created["rootResourceId"]
    _method(apigw, api_id, root, "open", "ANY")
    _method(apigw, api_id, root, "keyed", apiKeyRequired=True)
    _method(apigw, api_id, root, "throttled")
    _method(apigw, api_id, root, "signed", authorizationType="AWS_IAM")
    authorizer = apigw.create_authorizer(
        restApiId=api_id,
        name="token",
        type="TOKEN",
        authorizerUri=invocation_uri("token_authorizer"),
        identitySource="method.request.header.Authorization",
        authorizerResultTtlInSeconds=0,
    )["id"]
    _method(apigw, api_id, root, "guarded", authorizationType="CUSTOM", authorizerId=authorizer)
    # Request validation: `/pets/{petId}` POST needs `?owner=` and a Pet body.
    apigw.create_model(restApiId=api_id, name="Pet", contentType="application/json", schema=json.dumps(PET))
    validator = apigw.create_request_validator(
        restApiId=api_id, name="all", validateRequestBody=True, validateRequestParameters=True
    )["id"]
    pets = apigw.create_resource(restApiId=api_id, parentId=root, pathPart="pets")["id"]
    _method(
        apigw,
        api_id,
        pets,
        "{petId}",
        "POST",
        requestValidatorId=validator,
        requestParameters={"method.request.path.petId": True, "method.request.querystring.owner": True},
        requestModels={"application/json": "Pet"},
    )
    # A MOCK integration refusing what its templates do not cover (passthroughBehavior NEVER).
    never = {
        "type": "MOCK",
        "passthroughBehavior": "NEVER",
        "requestTemplates": {"application/json": '{"statusCode": 200}'},
    }
    mock_id = _method(apigw, api_id, root, "never", "POST", integration=never)
    apigw.put_method_response(restApiId=api_id, resourceId=mock_id, httpMethod="POST", statusCode="200")
    apigw.put_integration_response(
        restApiId=api_id, resourceId=mock_id, httpMethod="POST", statusCode="200", selectionPattern=""
    )
    # A MOCK integration whose only integration response does not match what it answers and that
    # has no default: "integration response mapping can't match any template".
    unmatched = {"type": "MOCK", "requestTemplates": {"application/json": '{"statusCode": 200}'}}
    unmatched_id = _method(apigw, api_id, root, "unmatched", integration=unmatched)
    apigw.put_method_response(restApiId=api_id, resourceId=unmatched_id, httpMethod="GET", statusCode="404")
    apigw.put_integration_response(
        restApiId=api_id, resourceId=unmatched_id, httpMethod="GET", statusCode="404", selectionPattern="404"
    )
    # An upstream that refuses connections; a function slower than its integration's timeout.
    closed = {"type": "HTTP_PROXY", "integrationHttpMethod": "GET", "uri": f"http://127.0.0.1:{free_port()}/"}
    _method(apigw, api_id, root, "unreachable", integration=closed)
    slow = {
        "type": "AWS_PROXY",
        "integrationHttpMethod": "POST",
        "uri": invocation_uri("slow"),
        "timeoutInMillis": 100,
    }
    _method(apigw, api_id, root, "slow", integration=slow)
    raising = {"type": "AWS_PROXY", "integrationHttpMethod": "POST", "uri": invocation_uri("raises")}
    _method(apigw, api_id, root, "raising", integration=raising)

    apigw.create_deployment(restApiId=api_id, stageName="prod", variables={"color": "blue"})
    plan = apigw.create_usage_plan(
        name=f"{name}-plan",
        apiStages=[{"apiId": api_id, "stage": "prod"}],
        quota={"limit": 1, "period": "DAY"},
    )
    key = apigw.create_api_key(name=f"{name}-key", value=f"{name}{KEY}"[:40], enabled=True)
    apigw.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
    apigw.update_stage(
        restApiId=api_id,
        stageName="prod",
        patchOperations=[
            {"op": "replace", "path": "/~1throttled/GET/throttling/rateLimit", "value": "0"},
            {"op": "replace", "path": "/~1throttled/GET/throttling/burstLimit", "value": "0"},
        ],
    )
    api = Api(admin, apigw, api_id)
    wait_for(lambda: api.call("GET", "/throttled").status_code == 429)
    return api


def api_key(api: Api) -> str:
    name = api.apigw.get_rest_api(restApiId=api.id)["name"]
    return f"{name}{KEY}"[:40]


def _signed(api: Api, secret: str, at: dt.datetime | None = None) -> httpx.Response:
    """`GET /signed`, SigV4-signed by botocore with the admin key's id and `secret` at `at`."""
    host = api.admin.host(api.id)
    request = AWSRequest(method="GET", url=f"{api.admin.url}/prod/signed", headers={"Host": host})
    when = (at or dt.datetime.now(dt.UTC)).replace(tzinfo=None)
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        SigV4Auth(Credentials(ACCESS_KEY_ID, secret), "execute-api", REGION).add_auth(request)
    return httpx.get(request.url, headers=dict(request.headers.items()), timeout=10)


# Each row: how to provoke the failure, and AWS's status, body (exact, or a pattern for the
# message) and x-amzn-ErrorType.
def _provoke_quota(api: Api) -> httpx.Response:
    key = {"x-api-key": api_key(api)}
    response, _ = wait_for(lambda: (r := api.call("GET", "/keyed", headers=key)).status_code == 429 and r)
    return response


DEFAULTS: list = [
    pytest.param(
        lambda api: api.call("GET", "/nowhere"),
        403,
        {"message": "Missing Authentication Token"},
        "MissingAuthenticationTokenException",
        id="MISSING_AUTHENTICATION_TOKEN-unknown-path",
    ),
    pytest.param(
        lambda api: api.call("DELETE", "/keyed"),
        403,
        {"message": "Missing Authentication Token"},
        "MissingAuthenticationTokenException",
        id="MISSING_AUTHENTICATION_TOKEN-unknown-method",
    ),
    pytest.param(
        lambda api: api.call("GET", "/signed"),
        403,
        {"message": "Missing Authentication Token"},
        "MissingAuthenticationTokenException",
        id="MISSING_AUTHENTICATION_TOKEN-unsigned",
    ),
    pytest.param(
        lambda api: _signed(api, "not/the+secret"),
        403,
        re.compile(
            re.escape(MISMATCH) + r"\n\nThe Canonical String for this request should have been\n.*", re.S
        ),
        "InvalidSignatureException",
        id="INVALID_SIGNATURE",
    ),
    pytest.param(
        lambda api: _signed(api, SECRET, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=6)),
        403,
        re.compile(
            r"Signature expired: \d{8}T\d{6}Z is now earlier than \d{8}T\d{6}Z \(\d{8}T\d{6}Z - 5 min\.\)"
        ),
        "InvalidSignatureException",
        id="INVALID_SIGNATURE-expired",
    ),
    pytest.param(
        lambda api: api.call("GET", "/keyed"),
        403,
        {"message": "Forbidden"},
        "ForbiddenException",
        id="INVALID_API_KEY",
    ),
    pytest.param(
        _provoke_quota,
        429,
        {"message": "Limit Exceeded"},
        "LimitExceededException",
        id="QUOTA_EXCEEDED",
    ),
    pytest.param(
        lambda api: api.call("GET", "/throttled"),
        429,
        {"message": "Too Many Requests"},
        "TooManyRequestsException",
        id="THROTTLED",
    ),
    pytest.param(
        lambda api: api.call("POST", "/pets/7", json={"name": "Rex"}),
        400,
        {"message": "Missing required request parameters: [owner]"},
        "BadRequestException",
        id="BAD_REQUEST_PARAMETERS",
    ),
    pytest.param(
        lambda api: api.call("POST", "/pets/7?owner=me", json={"type": "dog"}),
        400,
        {"message": "Invalid request body"},
        "BadRequestException",
        id="BAD_REQUEST_BODY",
    ),
    pytest.param(
        lambda api: api.call("POST", "/never", content=b"hi", headers={"content-type": "text/plain"}),
        415,
        {"message": "Unsupported Media Type"},
        "BadRequestException",
        id="UNSUPPORTED_MEDIA_TYPE",
    ),
    pytest.param(
        lambda api: api.call("GET", "/guarded"),
        401,
        {"message": "Unauthorized"},
        "UnauthorizedException",
        id="UNAUTHORIZED-no-token",
    ),
    pytest.param(
        lambda api: api.call("GET", "/guarded", headers={"authorization": "unauthorized"}),
        401,
        {"message": "Unauthorized"},
        "UnauthorizedException",
        id="UNAUTHORIZED-authorizer",
    ),
    pytest.param(
        lambda api: api.call("GET", "/guarded", headers={"authorization": "deny"}),
        403,
        {"Message": "User is not authorized to access this resource with an explicit deny"},
        "AccessDeniedException",
        id="ACCESS_DENIED",
    ),
    pytest.param(
        lambda api: api.call("GET", "/guarded", headers={"authorization": "fail"}),
        500,
        {"message": None},
        "AuthorizerConfigurationException",
        id="AUTHORIZER_CONFIGURATION_ERROR-raising",
    ),
    pytest.param(
        lambda api: api.call("GET", "/guarded", headers={"authorization": "no-policy"}),
        500,
        {"message": None},
        "AuthorizerConfigurationException",
        id="AUTHORIZER_CONFIGURATION_ERROR-not-a-policy",
    ),
    pytest.param(
        lambda api: api.call("GET", "/unmatched"),
        500,
        {"message": "Internal server error"},
        "InternalServerErrorException",
        id="API_CONFIGURATION_ERROR",
    ),
    pytest.param(
        lambda api: api.call("GET", "/slow", params={"s": "1"}),
        504,
        {"message": "Endpoint request timed out"},
        "InternalServerErrorException",
        id="INTEGRATION_TIMEOUT",
    ),
    pytest.param(
        lambda api: api.call("GET", "/unreachable"),
        504,
        # AWS documents the status, not the words: Portico's are those of a timeout.
        {"message": "Endpoint request timed out"},
        "InternalServerErrorException",
        id="INTEGRATION_FAILURE",
    ),
    pytest.param(
        lambda api: api.call("GET", "/raising"),
        502,
        {"message": "Internal server error"},
        "InternalServerErrorException",
        id="DEFAULT_5XX-lambda-proxy-error",
    ),
    pytest.param(
        lambda api: api.call("POST", "/open", content=b"x" * (PAYLOAD_LIMIT + 1)),
        413,
        {"message": "Request Too Long"},
        "RequestTooLargeException",
        id="REQUEST_TOO_LARGE",
    ),
]


@pytest.fixture(scope="module")
def defaults_api(admin) -> Api:
    return build(admin, "defaults")


@pytest.mark.parametrize(("provoke", "status", "body", "error_type"), DEFAULTS)
def test_default_gateway_responses(defaults_api, provoke: Callable, status: int, body, error_type: str):
    response = provoke(defaults_api)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-amzn-errortype"] == error_type
    # Every gateway response carries the request's ids.
    assert response.headers["x-amzn-requestid"]
    if isinstance(body, re.Pattern):
        assert set(response.json()) == {"message"}
        assert body.fullmatch(response.json()["message"]), response.json()
    else:
        assert response.json() == body


def test_a_customisation_takes_every_source_and_follows_accept(admin):
    api = build(admin, "custom")
    api.apigw.put_gateway_response(
        restApiId=api.id,
        responseType="BAD_REQUEST_PARAMETERS",
        statusCode="422",
        responseParameters={
            "gatewayresponse.header.x-static": "'fixed value'",
            "gatewayresponse.header.x-trace": "method.request.header.x-trace",
            "gatewayresponse.header.x-tag": "method.request.querystring.tag",
            "gatewayresponse.header.x-pet": "method.request.path.petId",
            "gatewayresponse.header.x-color": "stageVariables.color",
            "gatewayresponse.header.x-request": "context.requestId",
            "gatewayresponse.header.x-type": "context.error.responseType",
        },
        responseTemplates={
            "application/json": '{"m":$context.error.messageString,"raw":"$context.error.message",'
            '"type":"$context.error.responseType","why":"$context.error.validationErrorString",'
            '"color":"$stageVariables.color","stage":"$context.stage","path":"$context.resourcePath"}',
            "text/plain": "$context.error.responseType: $context.error.message ($stageVariables.color)",
        },
    )
    refuse = {"headers": {"x-trace": "t-1"}, "params": {"tag": "a b"}, "json": {"name": "Rex"}}
    # Applied only once deployed, as AWS applies gateway responses.
    assert api.call("POST", "/pets/7", **refuse).status_code == 400
    api.deploy()
    response, _ = wait_for(lambda: (r := api.call("POST", "/pets/7", **refuse)).status_code == 422 and r)
    message = "Missing required request parameters: [owner]"
    assert response.json() == {
        "m": message,
        "raw": message,
        "type": "BAD_REQUEST_PARAMETERS",
        "why": message,
        "color": "blue",
        "stage": "prod",
        "path": "/pets/{petId}",
    }
    headers = response.headers
    assert (headers["x-static"], headers["x-trace"], headers["x-tag"], headers["x-pet"]) == (
        "fixed value",
        "t-1",
        "a b",
        "7",
    )
    assert (headers["x-color"], headers["x-type"]) == ("blue", "BAD_REQUEST_PARAMETERS")
    assert headers["x-request"] == headers["x-amzn-requestid"]
    assert headers["content-type"] == "application/json"
    # The type's x-amzn-ErrorType stays.
    assert headers["x-amzn-errortype"] == "BadRequestException"

    # The template is the one Accept names; without one of its own, application/json's.
    text = api.call("POST", "/pets/7", headers={"accept": "text/plain"}, json={"name": "Rex"})
    assert (text.status_code, text.headers["content-type"]) == (422, "text/plain")
    assert text.text == f"BAD_REQUEST_PARAMETERS: {message} (blue)"
    other = api.call("POST", "/pets/7", headers={"accept": "image/png"}, json={"name": "Rex"})
    assert (other.headers["content-type"], other.json()["type"]) == (
        "application/json",
        "BAD_REQUEST_PARAMETERS",
    )
    # A source the request lacks adds no header.
    assert "x-trace" not in other.headers and "x-tag" not in other.headers

    # Another type keeps AWS's default.
    body = api.call("POST", "/pets/7?owner=me", json={"type": "dog"})
    assert (body.status_code, body.json()) == (400, {"message": "Invalid request body"})


# (provoke, type, status, x-amzn-ErrorType, $context.error.messageString) by class.
FOUR_XX = [
    (lambda api: api.call("GET", "/keyed"), "INVALID_API_KEY", 403, "ForbiddenException", '"Forbidden"'),
    (
        lambda api: api.call("GET", "/nowhere"),
        "MISSING_AUTHENTICATION_TOKEN",
        403,
        "MissingAuthenticationTokenException",
        '"Missing Authentication Token"',
    ),
    (
        lambda api: api.call("POST", "/pets/7?owner=me", json={"type": "dog"}),
        "BAD_REQUEST_BODY",
        400,
        "BadRequestException",
        '"Invalid request body"',
    ),
    (
        lambda api: api.call("POST", "/never", content=b"hi", headers={"content-type": "text/plain"}),
        "UNSUPPORTED_MEDIA_TYPE",
        415,
        "BadRequestException",
        '"Unsupported Media Type"',
    ),
    (
        lambda api: api.call("GET", "/guarded", headers={"authorization": "deny"}),
        "ACCESS_DENIED",
        403,
        "AccessDeniedException",
        '"User is not authorized to access this resource with an explicit deny"',
    ),
    (lambda api: api.call("GET", "/guarded"), "UNAUTHORIZED", 401, "UnauthorizedException", '"Unauthorized"'),
]
FIVE_XX = [
    (
        lambda api: api.call("GET", "/slow", params={"s": "1"}),
        "INTEGRATION_TIMEOUT",
        504,
        "InternalServerErrorException",
        '"Endpoint request timed out"',
    ),
    (
        lambda api: api.call("GET", "/unreachable"),
        "INTEGRATION_FAILURE",
        504,
        "InternalServerErrorException",
        '"Endpoint request timed out"',
    ),
    (
        lambda api: api.call("GET", "/guarded", headers={"authorization": "fail"}),
        "AUTHORIZER_CONFIGURATION_ERROR",
        500,
        "AuthorizerConfigurationException",
        "null",
    ),
    (
        lambda api: api.call("GET", "/unmatched"),
        "API_CONFIGURATION_ERROR",
        500,
        "InternalServerErrorException",
        '"Internal server error"',
    ),
]
CLASS_TEMPLATE = '{"class":"%s","type":"$context.error.responseType","m":$context.error.messageString}'


def _check_class(api: Api, rows: list, class_name: str, status: int | None = None) -> None:
    """Each row answers with the class default's header and template, its own type and message,
    and `status` (None: its own)."""
    for provoke, type_name, own_status, error_type, message in rows:
        response = provoke(api)
        assert response.status_code == (status or own_status), (type_name, response.text)
        assert response.headers["x-class"] == class_name, type_name
        assert response.headers["x-amzn-errortype"] == error_type, type_name
        assert response.json() == {"class": class_name, "type": type_name, "m": json.loads(message)}


def test_types_without_their_own_customisation_take_their_class_default(admin):
    api = build(admin, "fallback")
    for class_name in ("4XX", "5XX"):
        api.apigw.put_gateway_response(
            restApiId=api.id,
            responseType=f"DEFAULT_{class_name}",
            responseParameters={"gatewayresponse.header.x-class": f"'{class_name}'"},
            responseTemplates={"application/json": CLASS_TEMPLATE % class_name},
        )
    # THROTTLED's own customisation (a header, no template) wins over DEFAULT_4XX's whole.
    api.apigw.put_gateway_response(
        restApiId=api.id,
        responseType="THROTTLED",
        responseParameters={"gatewayresponse.header.x-own": "'throttled'"},
    )
    api.deploy()
    wait_for(lambda: "x-class" in api.call("GET", "/keyed").headers)
    # DEFAULT_4XX and DEFAULT_5XX set no status: each type keeps its own.
    _check_class(api, FOUR_XX, "4XX")
    _check_class(api, FIVE_XX, "5XX")
    # A Lambda proxy integration's error (502) is a 5xx too.
    raised = api.call("GET", "/raising")
    assert (raised.status_code, raised.headers["x-class"]) == (502, "5XX")
    throttled = api.call("GET", "/throttled")
    assert (throttled.status_code, throttled.json()) == (429, {"message": "Too Many Requests"})
    assert throttled.headers["x-own"] == "throttled" and "x-class" not in throttled.headers
    # REQUEST_TOO_LARGE cannot be customised ("Gateway response types for API Gateway").
    large = api.call("POST", "/open", content=b"x" * (PAYLOAD_LIMIT + 1))
    assert (large.status_code, large.json()) == (413, {"message": "Request Too Long"})
    assert "x-class" not in large.headers

    # "Changing the status code of this fallback gateway response changes the status codes of all
    # other 4XX responses to the new value": a type with a status of its own keeps it.
    api.apigw.put_gateway_response(
        restApiId=api.id,
        responseType="DEFAULT_4XX",
        statusCode="418",
        responseParameters={"gatewayresponse.header.x-class": "'4XX'"},
        responseTemplates={"application/json": CLASS_TEMPLATE % "4XX"},
    )
    api.apigw.put_gateway_response(restApiId=api.id, responseType="UNAUTHORIZED", statusCode="401")
    api.deploy()
    wait_for(lambda: api.call("GET", "/keyed").status_code == 418)
    _check_class(api, FOUR_XX[:-1], "4XX", status=418)
    unauthorized = api.call("GET", "/guarded")
    assert (unauthorized.status_code, unauthorized.json()) == (401, {"message": "Unauthorized"})
    # THROTTLED, customised without a statusCode, was given its type's own (as GetGatewayResponse
    # shows it): not one "without a status of its own".
    assert api.apigw.get_gateway_response(restApiId=api.id, responseType="THROTTLED")["statusCode"] == "429"
    assert api.call("GET", "/throttled").status_code == 429
    assert api.call("POST", "/open", content=b"x" * (PAYLOAD_LIMIT + 1)).status_code == 413
    _check_class(api, FIVE_XX, "5XX")

    # Deleted: applied once redeployed; AWS's defaults again.
    api.apigw.delete_gateway_response(restApiId=api.id, responseType="DEFAULT_4XX")
    api.apigw.delete_gateway_response(restApiId=api.id, responseType="DEFAULT_5XX")
    assert api.call("GET", "/keyed").status_code == 418
    api.deploy()
    restored, _ = wait_for(lambda: (r := api.call("GET", "/keyed")).status_code == 403 and r)
    assert restored.json() == {"message": "Forbidden"} and "x-class" not in restored.headers
    for provoke, _, status, error_type, message in FOUR_XX[:-1] + FIVE_XX:
        response = provoke(api)
        assert response.status_code == status, response.text
        assert response.headers["x-amzn-errortype"] == error_type
        assert "x-class" not in response.headers
        assert list(response.json().values()) == [json.loads(message)]
    listed = {r["responseType"]: r for r in api.apigw.get_gateway_responses(restApiId=api.id)["items"]}
    assert listed["DEFAULT_4XX"]["defaultResponse"] is True
    assert listed["UNAUTHORIZED"]["defaultResponse"] is False
