"""The admin API end to end with real boto3 clients and the AWS CLI."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from control_support import ACCESS_KEY_ID, REGION, SECRET, ThreadAdmin, make_client


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[ThreadAdmin]:
    server = ThreadAdmin(tmp_path / "data")
    yield server
    server.stop()


@pytest.fixture
def v2(admin: ThreadAdmin):
    return admin.client("apigatewayv2")


@pytest.fixture
def v1(admin: ThreadAdmin):
    return admin.client("apigateway")


@pytest.fixture
def admin_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


# -- apigatewayv2 -------------------------------------------------------------------------------


def test_v2_create_get_update_delete(v2) -> None:
    created = v2.create_api(Name="orders", ProtocolType="HTTP", Description="d", Tags={"team": "a"})
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    api_id = created["ApiId"]
    assert len(api_id) == 10 and api_id.isalnum() and api_id == api_id.lower()
    assert created["ApiEndpoint"] == f"https://{api_id}.execute-api.{REGION}.amazonaws.com"
    assert created["ApiKeySelectionExpression"] == "$request.header.x-api-key"
    assert created["RouteSelectionExpression"] == "$request.method $request.path"
    assert created["DisableExecuteApiEndpoint"] is False
    assert created["Tags"] == {"team": "a"}
    assert isinstance(created["CreatedDate"], dt.datetime)

    got = v2.get_api(ApiId=api_id)
    assert got["Name"] == "orders" and got["Description"] == "d"
    assert got["CreatedDate"] == created["CreatedDate"]

    updated = v2.update_api(ApiId=api_id, Name="orders2", CorsConfiguration={"AllowOrigins": ["*"]})
    assert updated["Name"] == "orders2" and updated["Description"] == "d"
    assert updated["CorsConfiguration"] == {"AllowOrigins": ["*"]}
    assert v2.get_api(ApiId=api_id)["CorsConfiguration"] == {"AllowOrigins": ["*"]}

    deleted = v2.delete_api(ApiId=api_id)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(v2.exceptions.NotFoundException) as raised:
        v2.get_api(ApiId=api_id)
    assert (
        raised.value.response["Error"]["Message"] == f"Invalid API identifier specified 000000000000:{api_id}"
    )
    with pytest.raises(v2.exceptions.NotFoundException):
        v2.delete_api(ApiId=api_id)


def test_v2_websocket_defaults(v2) -> None:
    api = v2.create_api(Name="ws", ProtocolType="WEBSOCKET", RouteSelectionExpression="$request.body.action")
    assert api["ApiEndpoint"].startswith("wss://")
    with pytest.raises(v2.exceptions.BadRequestException):
        v2.create_api(Name="ws", ProtocolType="WEBSOCKET")


def test_v2_pagination(v2) -> None:
    made = [v2.create_api(Name=f"api{i}", ProtocolType="HTTP")["ApiId"] for i in range(5)]
    seen, token, pages = [], None, 0
    while True:
        page = v2.get_apis(MaxResults="2", **({"NextToken": token} if token else {}))
        assert len(page["Items"]) <= 2
        seen += [item["ApiId"] for item in page["Items"]]
        pages += 1
        token = page.get("NextToken")
        if not token:
            break
    assert seen == made and pages == 3
    assert [a["ApiId"] for a in v2.get_paginator("get_apis").paginate().build_full_result()["Items"]] == made
    with pytest.raises(v2.exceptions.BadRequestException):
        v2.get_apis(NextToken="not-a-token")


def test_v2_unimplemented_operation(v2) -> None:
    with pytest.raises(v2.exceptions.BadRequestException) as raised:
        v2.get_vpc_link(VpcLinkId="abc")
    assert raised.value.response["Error"]["Message"] == "Portico does not implement GetVpcLink yet"


# -- apigateway (v1) ----------------------------------------------------------------------------


def test_v1_create_get_update_delete(v1) -> None:
    created = v1.create_rest_api(name="shop", description="x")
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    api_id = created["id"]
    assert created["apiKeySource"] == "HEADER"
    assert created["endpointConfiguration"]["types"] == ["EDGE"]
    assert created["disableExecuteApiEndpoint"] is False
    resources = v1.get_resources(restApiId=api_id)["items"]
    assert resources == [{"id": created["rootResourceId"], "path": "/"}]

    got = v1.get_rest_api(restApiId=api_id)
    assert got["name"] == "shop" and got["createdDate"] == created["createdDate"]

    patched = v1.update_rest_api(
        restApiId=api_id,
        patchOperations=[
            {"op": "replace", "path": "/name", "value": "shop2"},
            {"op": "replace", "path": "/minimumCompressionSize", "value": "1024"},
            {"op": "replace", "path": "/disableExecuteApiEndpoint", "value": "true"},
            {"op": "add", "path": "/binaryMediaTypes/image~1png"},
            {"op": "replace", "path": "/endpointConfiguration/types/EDGE", "value": "REGIONAL"},
            {"op": "remove", "path": "/description"},
        ],
    )
    assert patched["name"] == "shop2"
    assert patched["minimumCompressionSize"] == 1024
    assert patched["disableExecuteApiEndpoint"] is True
    assert patched["binaryMediaTypes"] == ["image/png"]
    assert patched["endpointConfiguration"]["types"] == ["REGIONAL"]
    assert "description" not in patched
    assert v1.get_rest_api(restApiId=api_id)["binaryMediaTypes"] == ["image/png"]

    with pytest.raises(v1.exceptions.BadRequestException) as raised:
        v1.update_rest_api(restApiId=api_id, patchOperations=[{"op": "replace", "path": "/id", "value": "x"}])
    message = raised.value.response["Error"]["Message"]
    assert message.startswith("Invalid patch path  '/id' specified for op 'replace'. Must be one of: [/name,")

    deleted = v1.delete_rest_api(restApiId=api_id)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 202
    with pytest.raises(v1.exceptions.NotFoundException) as raised:
        v1.get_rest_api(restApiId=api_id)
    assert raised.value.response["Error"]["Message"] == "Invalid REST API identifier specified"
    with pytest.raises(v1.exceptions.NotFoundException):
        v1.get_resources(restApiId=api_id)


def test_v1_pagination_uses_item_and_position(v1, admin: ThreadAdmin) -> None:
    made = [v1.create_rest_api(name=f"r{i}")["id"] for i in range(5)]
    first = v1.get_rest_apis(limit=3)
    assert [a["id"] for a in first["items"]] == made[:3] and first["position"]
    second = v1.get_rest_apis(limit=3, position=first["position"])
    assert [a["id"] for a in second["items"]] == made[3:] and "position" not in second
    raw = signed_raw(admin, "GET", "/restapis?limit=2")
    assert set(raw.json()) == {"item", "position"}
    assert isinstance(raw.json()["item"][0]["createdDate"], int)


def test_v1_conflict_and_validation(v1, admin: ThreadAdmin) -> None:
    api = v1.create_rest_api(name="tree")
    child = v1.create_resource(restApiId=api["id"], parentId=api["rootResourceId"], pathPart="users")
    assert child["path"] == "/users"
    with pytest.raises(v1.exceptions.ConflictException) as raised:
        v1.create_resource(restApiId=api["id"], parentId=api["rootResourceId"], pathPart="users")
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    with pytest.raises(v1.exceptions.NotFoundException):
        v1.create_resource(restApiId=api["id"], parentId="nosuchres0", pathPart="x")
    unchecked = admin.client(
        "apigateway", config=Config(parameter_validation=False, retries={"max_attempts": 1})
    )
    with pytest.raises(v1.exceptions.BadRequestException) as raised:  # enums are checked server side too
        unchecked.create_rest_api(name="x", apiKeySource="NOPE")
    assert raised.value.response["Error"]["Message"] == (
        "1 validation error detected: Value 'NOPE' at 'createRestApiInput.apiKeySource' failed to satisfy "
        "constraint: Member must satisfy enum value set: [HEADER, AUTHORIZER]"
    )


# -- protocol edge cases --------------------------------------------------------------------------


def signed_raw(admin: ThreadAdmin, method: str, path: str, body: bytes = b"", headers=None, **sign):
    """Send a hand-built request signed by botocore's SigV4Auth."""
    request = botocore.awsrequest.AWSRequest(
        method=method, url=admin.url + path, data=body, headers=dict(headers or {})
    )
    creds = botocore.credentials.Credentials(
        sign.pop("key", ACCESS_KEY_ID), sign.pop("secret", SECRET), sign.pop("token", None)
    )
    botocore.auth.SigV4Auth(creds, "apigateway", REGION).add_auth(request)
    prepared = request.prepare()
    return httpx.request(method, prepared.url, headers=dict(prepared.headers), content=body)


def test_unknown_route_malformed_json_and_missing_members(admin: ThreadAdmin) -> None:
    unknown = signed_raw(admin, "GET", "/nothing/here")
    assert unknown.status_code == 404
    assert unknown.headers["x-amzn-ErrorType"] == "UnknownOperationException"
    assert unknown.json() == {"message": "Unknown operation: GET /nothing/here"}
    assert unknown.headers["x-amzn-RequestId"]

    bad = signed_raw(admin, "POST", "/v2/apis", b"{not json", {"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.headers["x-amzn-ErrorType"] == "BadRequestException"
    assert bad.json()["message"].startswith("Could not parse request body into json")

    missing = signed_raw(admin, "POST", "/v2/apis", b'{"name": "x"}', {"Content-Type": "application/json"})
    assert missing.status_code == 400
    assert missing.json()["message"] == (
        "1 validation error detected: Value null at 'createApiInput.protocolType' "
        "failed to satisfy constraint: Member must not be null"
    )


def test_percent_encoded_path_parameters_are_decoded(admin: ThreadAdmin, v2) -> None:
    seen = []

    from portico.control.registry import HANDLERS

    def spy(request, params):
        seen.append(params)
        return None

    key = ("apigatewayv2", "DeleteRouteSettings")
    previous = HANDLERS.get(key)
    HANDLERS[key] = spy
    try:
        v2.delete_route_settings(ApiId="abc", StageName="$default", RouteKey="GET /x/{id}")
    finally:
        if previous is None:
            del HANDLERS[key]
        else:
            HANDLERS[key] = previous
    assert seen == [{"ApiId": "abc", "StageName": "$default", "RouteKey": "GET /x/{id}"}]


# -- authentication -------------------------------------------------------------------------------


def test_unsigned_request_is_missing_authentication_token(admin: ThreadAdmin) -> None:
    response = httpx.get(admin.url + "/v2/apis")
    assert response.status_code == 403
    assert response.json() == {"message": "Missing Authentication Token"}
    assert response.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"


def test_wrong_secret_unknown_key_and_session_token(admin: ThreadAdmin, admin_log) -> None:
    wrong = admin.client("apigatewayv2", secret="not-the-secret")
    with pytest.raises(ClientError) as raised:
        wrong.get_apis()
    error = raised.value.response["Error"]
    assert error["Code"] == "InvalidSignatureException"
    assert error["Message"].startswith("The request signature we calculated does not match")
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    unknown = admin.client("apigateway", key="AKIAUNKNOWNUNKNOWN00")
    with pytest.raises(ClientError) as raised:
        unknown.get_rest_apis()
    assert raised.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert (
        raised.value.response["Error"]["Message"] == "The security token included in the request is invalid."
    )

    # Session credentials: the token is accepted and ignored.
    session = make_client("apigatewayv2", admin.url, aws_session_token="token-value")
    assert session.get_apis()["Items"] == []
    assert SECRET not in admin_log.text


def test_stale_and_future_dates_are_rejected(v2, monkeypatch: pytest.MonkeyPatch) -> None:
    for offset, text in (
        (-dt.timedelta(minutes=6), "Signature expired"),
        (dt.timedelta(minutes=6), "not yet"),
    ):
        frozen = (dt.datetime.now(dt.UTC) + offset).replace(tzinfo=None)
        monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda frozen=frozen: frozen)
        with pytest.raises(ClientError) as raised:
            v2.get_apis()
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert raised.value.response["Error"]["Code"] == "InvalidSignatureException"
        assert text in raised.value.response["Error"]["Message"]
    monkeypatch.setattr(
        botocore.auth, "get_current_datetime", lambda: dt.datetime.now(dt.UTC).replace(tzinfo=None)
    )
    assert v2.get_apis()["Items"] == []


def test_presigned_url(admin: ThreadAdmin, v2) -> None:
    v2.create_api(Name="p", ProtocolType="HTTP")
    request = botocore.awsrequest.AWSRequest(method="GET", url=admin.url + "/v2/apis?maxResults=5")
    botocore.auth.SigV4QueryAuth(
        botocore.credentials.Credentials(ACCESS_KEY_ID, SECRET), "apigateway", REGION, expires=60
    ).add_auth(request)
    response = httpx.get(request.url)
    assert response.status_code == 200, response.text
    assert [item["name"] for item in response.json()["items"]] == ["p"]
    tampered = httpx.get(request.url.replace("maxResults=5", "maxResults=6"))
    assert tampered.status_code == 403


# -- the AWS CLI --------------------------------------------------------------------------------


def aws(admin: ThreadAdmin, *args: str, secret: str = SECRET) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_MAX_ATTEMPTS": "1",
    }
    env.pop("AWS_PROFILE", None)
    command = ["aws", "--endpoint-url", admin.url, *args, "--output", "json"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def test_aws_cli(admin: ThreadAdmin) -> None:
    created = aws(admin, "apigatewayv2", "create-api", "--name", "cli", "--protocol-type", "HTTP")
    assert created.returncode == 0, created.stderr
    api_id = json.loads(created.stdout)["ApiId"]
    listed = aws(admin, "apigatewayv2", "get-apis")
    assert [a["ApiId"] for a in json.loads(listed.stdout)["Items"]] == [api_id]

    rest = aws(admin, "apigateway", "create-rest-api", "--name", "cli-rest")
    assert rest.returncode == 0, rest.stderr
    rest_id = json.loads(rest.stdout)["id"]
    patched = aws(
        admin,
        "apigateway",
        "update-rest-api",
        "--rest-api-id",
        rest_id,
        "--patch-operations",
        "op=replace,path=/description,value=via-cli",
    )
    assert json.loads(patched.stdout)["description"] == "via-cli"
    deleted = aws(admin, "apigateway", "delete-rest-api", "--rest-api-id", rest_id)
    assert deleted.returncode == 0, deleted.stderr

    missing = aws(admin, "apigatewayv2", "get-api", "--api-id", "nosuchapi0")
    assert missing.returncode != 0 and "NotFoundException" in missing.stderr
    denied = aws(admin, "apigatewayv2", "get-apis", secret="wrong")
    assert denied.returncode != 0 and "InvalidSignatureException" in denied.stderr
