"""HTTP APIs' parameter mapping end to end ("Transform API requests and responses for HTTP APIs in
API Gateway"): boto3 `apigatewayv2` against `portico serve --admin-port` builds HTTP APIs whose
integrations map requests and responses, in front of a real upstream (an aiohttp server that
echoes what it received) or a real Lambda handler; real HTTP requests check each operation and
each value source. Every configuration-time refusal is checked through boto3 (code and message),
for HTTP APIs and for REST APIs' requestParameters / responseParameters.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import parse_qsl, quote, urlsplit

import httpx
import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from admin_e2e import AdminServer, start_admin_server, wait_for
from conftest import run_portico
from test_http_proxy import Upstream

MAPPING_ERROR = "Invalid mapping expression specified: Validation Result: warnings : [], errors : [{}]"
FUNCTIONS = {"echo": "handlers.basic:echo"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.stop()


@pytest.fixture
def admin(portico, tmp_path) -> AdminServer:
    return start_admin_server(portico, tmp_path, functions=FUNCTIONS)


def http_api(
    admin: AdminServer,
    integration: dict,
    route_key: str = "ANY /m/{proxy+}",
    variables: dict[str, str] | None = None,
) -> str:
    """An HTTP API with one route to `integration`, auto-deployed to `$default`; served once the
    data plane answers it."""
    v2 = admin.client("apigatewayv2")
    api_id = v2.create_api(Name="mapped", ProtocolType="HTTP")["ApiId"]
    created = v2.create_integration(ApiId=api_id, **integration)
    v2.create_route(ApiId=api_id, RouteKey=route_key, Target=f"integrations/{created['IntegrationId']}")
    v2.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True, StageVariables=variables or {})
    wait_for(
        lambda: httpx.get(admin.url + "/m/ready", headers={"Host": admin.host(api_id)}).status_code != 404
    )
    return api_id


def proxy_to(upstream: Upstream, path: str = "/echo/{proxy}", **mappings) -> dict:
    return {
        "IntegrationType": "HTTP_PROXY",
        "IntegrationUri": upstream.url + path,
        "IntegrationMethod": "ANY",
        "PayloadFormatVersion": "1.0",
        **mappings,
    }


def echoed_headers(echo: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in echo["headers"]:
        out.setdefault(name, []).append(value)
    return out


def refused(call, **kwargs) -> str:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    error = info.value.response["Error"]
    assert error["Code"] == "BadRequestException", error
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return error["Message"]


# ------------------------------------------------------------------------------------- requests


def test_each_request_operation_and_value_source(admin: AdminServer, upstream: Upstream) -> None:
    api_id = http_api(
        admin,
        proxy_to(
            upstream,
            RequestParameters={
                "append:header.x-appended": "$request.header.x-source",
                "overwrite:header.x-over": "over-${request.querystring.q}",
                "remove:header.x-secret": "''",
                "append:querystring.added": "$request.path.proxy",
                "overwrite:querystring.q": "replaced",
                "remove:querystring.drop": "''",
                "overwrite:header.x-context": "$context.requestId|$context.routeKey|$context.stage",
                "overwrite:header.x-stage": "$stageVariables.env",
                "overwrite:header.x-body": "${request.body.user.name}/${request.body.tags[1]}",
                "overwrite:header.x-path": "${request.path} \\$1",
                "overwrite:header.x-missing": "$request.header.not-sent",
                "overwrite:header.host": "mapped.example",
            },
        ),
        variables={"env": "prod"},
    )
    response = httpx.post(
        admin.url + "/m/pets/7?q=1&q=2&drop=x&keep=k",
        headers={
            "Host": admin.host(api_id),
            "x-source": "s1",
            "x-appended": "a0",
            "x-over": "old",
            "x-secret": "hidden",
        },
        json={"user": {"name": "ann"}, "tags": ["a", "b"]},
    )
    assert response.status_code == 200, response.text
    echo = response.json()
    headers = echoed_headers(echo)
    assert headers["x-appended"] == ["a0,s1"]
    assert headers["x-over"] == ["over-1,2"]
    assert "x-secret" not in headers
    assert "x-missing" not in headers
    request_id = response.headers["apigw-requestid"]
    assert headers["x-context"] == [f"{request_id}|ANY /m/{{proxy+}}|$default"]
    assert headers["x-stage"] == ["prod"]
    assert headers["x-body"] == ["ann/b"]
    assert headers["x-path"] == ["/m/pets/7 $1"]
    assert headers["host"] == ["mapped.example"]
    # The body passes on whole, although the mapping read it.
    assert json.loads(echo["body"]) == {"user": {"name": "ann"}, "tags": ["a", "b"]}
    path, _, query = echo["path_qs"].partition("?")
    assert path == "/echo/pets/7"
    assert sorted(parse_qsl(query)) == sorted([("keep", "k"), ("q", "replaced"), ("added", "pets/7")])


def test_overwrite_path(admin: AdminServer, upstream: Upstream) -> None:
    api_id = http_api(
        admin,
        proxy_to(upstream, RequestParameters={"overwrite:path": "/echo/rewritten/${request.path.proxy}"}),
    )
    response = httpx.get(admin.url + "/m/a/b?x=1", headers={"Host": admin.host(api_id)})
    assert response.status_code == 200, response.text
    assert response.json()["path_qs"] == "/echo/rewritten/a/b?x=1"


# ------------------------------------------------------------------------------------ responses


def test_response_mapping_per_status(admin: AdminServer, upstream: Upstream) -> None:
    api_id = http_api(
        admin,
        proxy_to(
            upstream,
            ResponseParameters={
                "200": {
                    "append:header.x-method": "$response.body.method",
                    "overwrite:header.x-env": "$stageVariables.env",
                    "overwrite:header.content-type": "text/plain; from=${response.header.content-type}",
                    "remove:header.server": "''",
                },
                "404": {
                    "overwrite:statuscode": "403",
                    "append:header.x-request": "$context.requestId",
                    "append:header.x-integration": "$context.integrationStatus",
                },
                "409": {"overwrite:statuscode": "204"},
            },
        ),
        variables={"env": "test"},
    )
    host = {"Host": admin.host(api_id)}
    ok = httpx.put(admin.url + "/m/x", headers=host)
    assert ok.status_code == 200
    assert ok.headers["x-method"] == "PUT"
    assert ok.headers["x-env"] == "test"
    assert ok.headers["content-type"] == "text/plain; from=application/json; charset=utf-8"
    assert "server" not in ok.headers
    assert ok.json()["method"] == "PUT"

    not_found = httpx.get(admin.url + "/m/x?status=404", headers=host)
    assert not_found.status_code == 403
    assert not_found.headers["x-request"] == not_found.headers["apigw-requestid"]
    assert not_found.headers["x-integration"] == "404"
    assert not_found.json()["path_qs"] == "/echo/x?status=404"

    conflict = httpx.get(admin.url + "/m/x?status=409", headers=host)
    assert conflict.status_code == 204
    # A status without mappings is passed on as it came.
    created = httpx.get(admin.url + "/m/x?status=201", headers=host)
    assert created.status_code == 201 and "x-method" not in created.headers and "server" in created.headers


def test_lambda_proxy_request_and_response_mapping(admin: AdminServer) -> None:
    api_id = http_api(
        admin,
        {
            "IntegrationType": "AWS_PROXY",
            "IntegrationUri": "echo",
            "PayloadFormatVersion": "2.0",
            "RequestParameters": {
                "append:header.x-added": "$request.querystring.q",
                "remove:header.x-secret": "''",
                "overwrite:querystring.q": "mapped",
            },
            "ResponseParameters": {
                "200": {"overwrite:statuscode": "202", "append:header.x-route": "$context.routeKey"}
            },
        },
    )
    response = httpx.get(admin.url + "/m/p?q=orig", headers={"Host": admin.host(api_id), "x-secret": "s"})
    assert response.status_code == 202, response.text
    assert response.headers["x-route"] == "ANY /m/{proxy+}"
    event = response.json()
    assert event["headers"]["x-added"] == "orig"
    assert "x-secret" not in event["headers"]
    assert event["rawQueryString"] == "q=mapped"
    assert event["queryStringParameters"] == {"q": "mapped"}


# -------------------------------------------------------------------------------- configuration


def test_update_merges_and_removes_mappings(admin: AdminServer, upstream: Upstream) -> None:
    v2 = admin.client("apigatewayv2")
    api_id = v2.create_api(Name="merge", ProtocolType="HTTP")["ApiId"]
    integration = v2.create_integration(
        ApiId=api_id,
        **proxy_to(
            upstream,
            RequestParameters={"append:header.h1": "a", "append:header.h2": "b"},
            ResponseParameters={"200": {"append:header.r": "x"}, "404": {"overwrite:statuscode": "403"}},
        ),
    )
    updated = v2.update_integration(
        ApiId=api_id,
        IntegrationId=integration["IntegrationId"],
        RequestParameters={"append:header.h1": "", "overwrite:header.h3": "c"},
        ResponseParameters={"200": {}},
    )
    assert updated["RequestParameters"] == {"append:header.h2": "b", "overwrite:header.h3": "c"}
    assert updated["ResponseParameters"] == {"404": {"overwrite:statuscode": "403"}}
    got = v2.get_integration(ApiId=api_id, IntegrationId=integration["IntegrationId"])
    assert got["RequestParameters"] == updated["RequestParameters"]


@pytest.mark.parametrize(
    ("mappings", "detail"),
    [
        (
            {"RequestParameters": {"append:header.Authorization": "x"}},
            "Invalid Request Actioned Parameter destination specified: append:header.Authorization",
        ),
        (
            {"RequestParameters": {"overwrite:header.x-amzn-trace-id": "x"}},
            "Invalid Request Actioned Parameter destination specified: overwrite:header.x-amzn-trace-id",
        ),
        (
            {"RequestParameters": {"remove:header.Access-Control-Max-Age": "''"}},
            "Invalid Request Actioned Parameter destination specified: remove:header.Access-Control-Max-Age",
        ),
        (
            {"RequestParameters": {"append:path": "/x"}},
            "Invalid Request Actioned Parameter destination specified: append:path",
        ),
        (
            {"RequestParameters": {"append:header.x": "$context.authorizer.claims['custom:api_key']"}},
            "Invalid mapping expression specified: $context.authorizer.claims['custom:api_key']",
        ),
        (
            {"RequestParameters": {"append:header.x": "$request.body..name"}},
            "Invalid mapping expression specified: $request.body..name",
        ),
        (
            {"RequestParameters": {"append:header.x": "$response.header.y"}},
            "Invalid mapping expression specified: $response.header.y",
        ),
        (
            {"ResponseParameters": {"200": {"overwrite:header.Content-Length": "1"}}},
            "Invalid Response Actioned Parameter destination specified: overwrite:header.Content-Length",
        ),
        (
            {"ResponseParameters": {"200": {"append:querystring.q": "1"}}},
            "Invalid Response Actioned Parameter destination specified: append:querystring.q",
        ),
        (
            {"ResponseParameters": {"500": {"overwrite:statuscode": "forbidden"}}},
            "Invalid mapping expression specified: forbidden",
        ),
        (
            {"ResponseParameters": {"600": {"overwrite:statuscode": "200"}}},
            "Invalid status code specified: 600. It must be between 200 and 599",
        ),
    ],
)
def test_http_api_refusals(admin: AdminServer, upstream: Upstream, mappings: dict, detail: str) -> None:
    v2 = admin.client("apigatewayv2")
    api_id = v2.create_api(Name="refusals", ProtocolType="HTTP")["ApiId"]
    message = refused(v2.create_integration, ApiId=api_id, **proxy_to(upstream, **mappings))
    assert message == MAPPING_ERROR.format(detail)
    # UpdateIntegration refuses the same, and leaves the integration as it was.
    integration = v2.create_integration(ApiId=api_id, **proxy_to(upstream))
    message = refused(
        v2.update_integration, ApiId=api_id, IntegrationId=integration["IntegrationId"], **mappings
    )
    assert message == MAPPING_ERROR.format(detail)
    got = v2.get_integration(ApiId=api_id, IntegrationId=integration["IntegrationId"])
    assert "RequestParameters" not in got and "ResponseParameters" not in got


def test_rest_api_refusals(admin: AdminServer, upstream: Upstream) -> None:
    apigw = admin.client("apigateway")
    api = apigw.create_rest_api(name="rest-refusals")
    api_id, root = api["id"], api["rootResourceId"]
    apigw.put_method(
        restApiId=api_id,
        resourceId=root,
        httpMethod="GET",
        authorizationType="NONE",
        requestParameters={"method.request.header.x-declared": False, "method.request.querystring.q": True},
    )
    base = {
        "restApiId": api_id,
        "resourceId": root,
        "httpMethod": "GET",
        "type": "HTTP",
        "integrationHttpMethod": "GET",
        "uri": upstream.url + "/echo/x",
    }
    cases = {
        "method.request.header.x-undeclared": "Invalid mapping expression parameter specified: "
        "method.request.header.x-undeclared",
        "'unterminated": "Invalid mapping expression specified: 'unterminated",
        "request.header.x": "Invalid mapping expression specified: request.header.x",
    }
    for source, detail in cases.items():
        message = refused(
            apigw.put_integration, **base, requestParameters={"integration.request.header.x-to": source}
        )
        assert message == MAPPING_ERROR.format(detail), source
    message = refused(
        apigw.put_integration, **base, requestParameters={"integration.response.header.x": "'a'"}
    )
    assert message == MAPPING_ERROR.format(
        "Invalid mapping expression specified: integration.response.header.x"
    )
    accepted = {
        "integration.request.header.x-a": "method.request.header.x-declared",
        "integration.request.querystring.q": "method.request.querystring.q",
        "integration.request.header.x-b": "'static'",
        "integration.request.header.x-c": "context.requestId",
        "integration.request.header.x-d": "stageVariables.env",
        "integration.request.header.x-e": "method.request.body.user.name",
    }
    assert apigw.put_integration(**base, requestParameters=accepted)["requestParameters"] == accepted
    where = {"restApiId": api_id, "resourceId": root, "httpMethod": "GET"}
    message = refused(
        apigw.update_integration,
        **where,
        patchOperations=[
            {
                "op": "add",
                "path": "/requestParameters/integration.request.header.x-f",
                "value": "method.request.path.id",
            }
        ],
    )
    assert message == MAPPING_ERROR.format(
        "Invalid mapping expression parameter specified: method.request.path.id"
    )

    # Integration responses: a method response must exist, and declare each header mapped to.
    response = {**where, "statusCode": "200", "selectionPattern": ""}
    message = refused(
        apigw.put_integration_response, **response, responseParameters={"method.response.header.x-a": "'1'"}
    )
    assert message == MAPPING_ERROR.format("No method response exists for method.")
    message = refused(
        apigw.put_method_response,
        **where,
        statusCode="200",
        responseParameters={"method.response.body.x": False},
    )
    assert message == MAPPING_ERROR.format("Invalid mapping expression specified: method.response.body.x")
    apigw.put_method_response(
        **where, statusCode="200", responseParameters={"method.response.header.x-a": False}
    )
    message = refused(
        apigw.put_integration_response, **response, responseParameters={"method.response.header.x-b": "'1'"}
    )
    assert message == MAPPING_ERROR.format(
        "Invalid mapping expression parameter specified: method.response.header.x-b"
    )
    message = refused(
        apigw.put_integration_response, **response, responseParameters={"method.response.header.x-a": '"*"'}
    )
    assert message == MAPPING_ERROR.format('Invalid mapping expression specified: "*"')
    for source in (
        "'1'",
        "integration.response.header.x",
        "integration.response.body.a.b",
        "context.requestId",
    ):
        put = apigw.put_integration_response(
            **response, responseParameters={"method.response.header.x-a": source}
        )
        assert put["responseParameters"] == {"method.response.header.x-a": source}


def test_config_file_mappings_are_served_and_refused(portico, upstream: Upstream, tmp_path) -> None:
    integration = {
        "type": "HTTP_PROXY",
        "uri": upstream.url + "/echo/{proxy}",
        "requestParameters": {"append:header.x-from-file": "$request.querystring.q"},
        "responseParameters": {"200": {"overwrite:header.x-served": "yes"}},
    }
    config = {
        "apis": [{"name": "file", "routes": [{"routeKey": "GET /f/{proxy+}", "integration": integration}]}]
    }
    server = portico(config)
    response = httpx.get(server.url + "/f/a?q=v")
    assert response.status_code == 200, response.text
    assert echoed_headers(response.json())["x-from-file"] == ["v"]
    assert response.headers["x-served"] == "yes"

    bad = dict(integration, requestParameters={"append:header.Authorization": "$request.header.x"})
    bad_config = {"apis": [{"name": "file", "routes": [{"routeKey": "GET /f", "integration": bad}]}]}
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(bad_config))
    result = run_portico("check", str(path))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert str(path) in output
    assert "requestParameters" in output
    assert "Invalid Request Actioned Parameter destination specified: append:header.Authorization" in output


# ---------------------------------------------------------------------------------- properties

_header_text = (
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=40)
    .map(str.strip)
    .filter(bool)
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=_header_text, query=st.text(max_size=40))
def test_arbitrary_values_pass_through_mappings(admin_for_properties, header: str, query: str) -> None:
    """Whatever the client sends, the mapped copies reach the upstream as AWS passes them (a
    header's value as sent, a query value decoded and encoded again) and nothing fails; a value
    no header can carry (a control character) maps nothing."""
    admin, api_id = admin_for_properties
    url = f"{admin.url}/m/p?v={quote(query, safe='')}"
    response = httpx.get(url, headers={"Host": admin.host(api_id), "x-in": header})
    assert response.status_code == 200, response.text
    echo = response.json()
    headers = echoed_headers(echo)
    assert headers["x-copy"] == [header]
    pairs = parse_qsl(urlsplit(echo["path_qs"]).query, keep_blank_values=True)
    assert ("copied", header) in pairs
    assert ("v", query) in pairs
    carried = query.strip(" \t")
    if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in query):
        assert "x-query" not in headers
    elif carried:
        assert headers["x-query"] == [carried]


@pytest.fixture
def admin_for_properties(admin: AdminServer, upstream: Upstream) -> tuple[AdminServer, str]:
    api_id = http_api(
        admin,
        proxy_to(
            upstream,
            RequestParameters={
                "overwrite:header.x-copy": "$request.header.x-in",
                "append:querystring.copied": "$request.header.x-in",
                "overwrite:header.x-query": "$request.querystring.v",
            },
        ),
    )
    return admin, api_id
