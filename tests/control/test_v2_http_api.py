"""apigatewayv2 HTTP APIs end to end with boto3: routes, integrations, stages, deployments,
autoDeploy, quick create, authorizers, models, tags, domain names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from control_support import REGION, ThreadAdmin

LAMBDA_ARN = "arn:aws:lambda:us-east-1:123456789012:function:my-function"
CORS = {"AllowOrigins": ["https://example.com"], "AllowMethods": ["GET", "POST"], "MaxAge": 300}


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[ThreadAdmin]:
    server = ThreadAdmin(tmp_path / "data")
    yield server
    server.stop()


@pytest.fixture
def v2(admin: ThreadAdmin):
    return admin.client("apigatewayv2")


def stored(admin: ThreadAdmin, kind: str, doc_id: str) -> dict:
    with admin.store.read() as tx:
        doc = tx.get("apigatewayv2", kind, doc_id)
    assert doc is not None, (kind, doc_id)
    return doc


def snapshot_route_keys(admin: ThreadAdmin, deployment_id: str) -> set[str]:
    return {r["RouteKey"] for r in stored(admin, "deployment", deployment_id)["_snapshot"]["Routes"]}


def make_lambda_api(v2):
    api = v2.create_api(Name="items", ProtocolType="HTTP", CorsConfiguration=CORS)
    integration = v2.create_integration(
        ApiId=api["ApiId"],
        IntegrationType="AWS_PROXY",
        IntegrationUri=LAMBDA_ARN,
        PayloadFormatVersion="2.0",
    )
    return api, integration


def test_documented_flow_with_auto_deploy(admin: ThreadAdmin, v2) -> None:
    api, integration = make_lambda_api(v2)
    api_id, integration_id = api["ApiId"], integration["IntegrationId"]
    assert integration["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert integration["IntegrationMethod"] == "POST"
    assert integration["ConnectionType"] == "INTERNET"
    assert integration["TimeoutInMillis"] == 30000
    assert integration["PayloadFormatVersion"] == "2.0"
    assert integration["ApiGatewayManaged"] is False
    target = f"integrations/{integration_id}"
    get_items = v2.create_route(ApiId=api_id, RouteKey="GET /items", Target=target)
    any_item = v2.create_route(ApiId=api_id, RouteKey="ANY /items/{id}", Target=target)
    assert get_items["RouteKey"] == "GET /items" and get_items["Target"] == target
    assert get_items["AuthorizationType"] == "NONE" and get_items["ApiKeyRequired"] is False
    assert len(get_items["RouteId"]) == 7

    stage = v2.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)
    assert stage["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert stage["AutoDeploy"] is True and stage["StageName"] == "$default"
    first = stage["DeploymentId"]
    assert first and "CreatedDate" in stage and "LastUpdatedDate" in stage
    assert snapshot_route_keys(admin, first) == {"GET /items", "ANY /items/{id}"}
    snap = stored(admin, "deployment", first)["_snapshot"]
    assert snap["Api"]["CorsConfiguration"] == CORS
    assert [i["IntegrationUri"] for i in snap["Integrations"]] == [LAMBDA_ARN]
    assert set(snap) >= {"Api", "Routes", "Integrations", "Authorizers", "Models"}
    deployment = v2.get_deployment(ApiId=api_id, DeploymentId=first)
    assert deployment["AutoDeployed"] is True and deployment["DeploymentStatus"] == "DEPLOYED"

    # Every further change deploys again.
    post = v2.create_route(ApiId=api_id, RouteKey="POST /items", Target=target)
    second = v2.get_stage(ApiId=api_id, StageName="$default")["DeploymentId"]
    assert second != first
    assert snapshot_route_keys(admin, second) == {"GET /items", "ANY /items/{id}", "POST /items"}
    assert snapshot_route_keys(admin, first) == {"GET /items", "ANY /items/{id}"}  # immutable

    v2.update_route(ApiId=api_id, RouteId=post["RouteId"], RouteKey="PUT /items")
    third = v2.get_stage(ApiId=api_id, StageName="$default")["DeploymentId"]
    assert third not in (first, second)
    assert "PUT /items" in snapshot_route_keys(admin, third)

    v2.delete_route(ApiId=api_id, RouteId=any_item["RouteId"])
    fourth = v2.get_stage(ApiId=api_id, StageName="$default")["DeploymentId"]
    assert snapshot_route_keys(admin, fourth) == {"GET /items", "PUT /items"}

    v2.update_api(ApiId=api_id, CorsConfiguration={"AllowOrigins": ["*"]})
    fifth = v2.get_stage(ApiId=api_id, StageName="$default")["DeploymentId"]
    assert stored(admin, "deployment", fifth)["_snapshot"]["Api"]["CorsConfiguration"] == {
        "AllowOrigins": ["*"]
    }
    v2.delete_cors_configuration(ApiId=api_id)
    sixth = v2.get_stage(ApiId=api_id, StageName="$default")["DeploymentId"]
    assert "CorsConfiguration" not in stored(admin, "deployment", sixth)["_snapshot"]["Api"]
    assert "CorsConfiguration" not in v2.get_api(ApiId=api_id)
    deployments = v2.get_deployments(ApiId=api_id)["Items"]
    assert [d["DeploymentId"] for d in deployments] == [first, second, third, fourth, fifth, sixth]
    assert all(d["AutoDeployed"] for d in deployments)


def test_explicit_deployment_and_stage_switch(admin: ThreadAdmin, v2) -> None:
    api, integration = make_lambda_api(v2)
    api_id = api["ApiId"]
    target = f"integrations/{integration['IntegrationId']}"
    v2.create_route(ApiId=api_id, RouteKey="GET /a", Target=target)
    stage = v2.create_stage(ApiId=api_id, StageName="prod", StageVariables={"fn": "my-function"})
    assert stage["AutoDeploy"] is False and "DeploymentId" not in stage
    one = v2.create_deployment(ApiId=api_id, Description="first", StageName="prod")
    assert one["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert one["AutoDeployed"] is False and one["DeploymentStatus"] == "DEPLOYED"
    assert v2.get_stage(ApiId=api_id, StageName="prod")["DeploymentId"] == one["DeploymentId"]

    v2.create_route(ApiId=api_id, RouteKey="GET /b", Target=target)  # not auto-deployed
    assert v2.get_stage(ApiId=api_id, StageName="prod")["DeploymentId"] == one["DeploymentId"]
    two = v2.create_deployment(ApiId=api_id)
    assert snapshot_route_keys(admin, two["DeploymentId"]) == {"GET /a", "GET /b"}
    assert snapshot_route_keys(admin, one["DeploymentId"]) == {"GET /a"}
    updated = v2.update_stage(ApiId=api_id, StageName="prod", DeploymentId=two["DeploymentId"])
    assert updated["DeploymentId"] == two["DeploymentId"]
    assert updated["StageVariables"] == {"fn": "my-function"}

    # A deployment a stage uses cannot be deleted; an unused one can.
    with pytest.raises(v2.exceptions.BadRequestException):
        v2.delete_deployment(ApiId=api_id, DeploymentId=two["DeploymentId"])
    v2.delete_deployment(ApiId=api_id, DeploymentId=one["DeploymentId"])
    with pytest.raises(v2.exceptions.NotFoundException):
        v2.get_deployment(ApiId=api_id, DeploymentId=one["DeploymentId"])
    assert (
        v2.update_deployment(ApiId=api_id, DeploymentId=two["DeploymentId"], Description="d")["Description"]
        == "d"
    )

    # Switching AutoDeploy on deploys at once.
    auto = v2.update_stage(ApiId=api_id, StageName="prod", AutoDeploy=True)
    assert auto["DeploymentId"] != two["DeploymentId"]
    with pytest.raises(v2.exceptions.BadRequestException):
        v2.create_deployment(ApiId=api_id, StageName="prod")


def test_stage_settings(v2) -> None:
    api, integration = make_lambda_api(v2)
    api_id = api["ApiId"]
    v2.create_route(
        ApiId=api_id, RouteKey="GET /x/{id}", Target=f"integrations/{integration['IntegrationId']}"
    )
    stage = v2.create_stage(
        ApiId=api_id,
        StageName="dev",
        Description="development",
        DefaultRouteSettings={"ThrottlingBurstLimit": 10, "ThrottlingRateLimit": 5.0},
        RouteSettings={"GET /x/{id}": {"ThrottlingBurstLimit": 1, "DetailedMetricsEnabled": True}},
        AccessLogSettings={
            "DestinationArn": "arn:aws:logs:us-east-1:1:log-group:g",
            "Format": "$context.requestId",
        },
        StageVariables={"host": "example.com", "path": "/a/b"},
        Tags={"env": "dev"},
    )
    assert stage["DefaultRouteSettings"]["ThrottlingBurstLimit"] == 10
    assert stage["RouteSettings"]["GET /x/{id}"]["DetailedMetricsEnabled"] is True
    assert stage["Tags"] == {"env": "dev"}
    updated = v2.update_stage(
        ApiId=api_id, StageName="dev", StageVariables={"host": "other.example.com", "extra": "1"}
    )
    assert updated["StageVariables"] == {"host": "other.example.com", "path": "/a/b", "extra": "1"}
    assert updated["Description"] == "development"
    v2.delete_route_settings(ApiId=api_id, StageName="dev", RouteKey="GET /x/{id}")
    assert v2.get_stage(ApiId=api_id, StageName="dev")["RouteSettings"] == {}
    with pytest.raises(v2.exceptions.NotFoundException):
        v2.delete_route_settings(ApiId=api_id, StageName="dev", RouteKey="GET /x/{id}")
    v2.delete_access_log_settings(ApiId=api_id, StageName="dev")
    assert "AccessLogSettings" not in v2.get_stage(ApiId=api_id, StageName="dev")
    v2.reset_authorizers_cache(ApiId=api_id, StageName="dev")
    with pytest.raises(v2.exceptions.NotFoundException) as raised:
        v2.create_stage(
            ApiId=api_id, StageName="bad", RouteSettings={"GET /nope": {"ThrottlingBurstLimit": 1}}
        )
    assert "Unable to find Route by key GET /nope" in raised.value.response["Error"]["Message"]
    with pytest.raises(v2.exceptions.BadRequestException):
        v2.create_stage(ApiId=api_id, StageName="vars", StageVariables={"bad name": "x"})
    with pytest.raises(v2.exceptions.BadRequestException):
        v2.create_stage(ApiId=api_id, StageName="vars", StageVariables={"ok": "no spaces"})
    with pytest.raises(v2.exceptions.BadRequestException):
        v2.create_stage(ApiId=api_id, StageName="bad name")
    with pytest.raises(v2.exceptions.ConflictException):
        v2.create_stage(ApiId=api_id, StageName="dev")
    assert [s["StageName"] for s in v2.get_stages(ApiId=api_id)["Items"]] == ["dev"]
    assert v2.delete_stage(ApiId=api_id, StageName="dev")["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(v2.exceptions.NotFoundException):
        v2.get_stage(ApiId=api_id, StageName="dev")


def test_route_and_integration_crud(v2) -> None:
    api, integration = make_lambda_api(v2)
    api_id, integration_id = api["ApiId"], integration["IntegrationId"]
    http = v2.create_integration(
        ApiId=api_id,
        IntegrationType="HTTP_PROXY",
        IntegrationUri="https://example.com/{proxy}",
        IntegrationMethod="GET",
    )
    assert http["PayloadFormatVersion"] == "1.0" and http["IntegrationMethod"] == "GET"
    assert http["TimeoutInMillis"] == 30000
    route = v2.create_route(
        ApiId=api_id, RouteKey="GET /pets/{proxy+}", Target=f"integrations/{http['IntegrationId']}"
    )
    assert v2.get_route(ApiId=api_id, RouteId=route["RouteId"])["RouteKey"] == "GET /pets/{proxy+}"
    updated = v2.update_route(ApiId=api_id, RouteId=route["RouteId"], Target=f"integrations/{integration_id}")
    assert (
        updated["Target"] == f"integrations/{integration_id}" and updated["RouteKey"] == "GET /pets/{proxy+}"
    )
    changed = v2.update_integration(ApiId=api_id, IntegrationId=http["IntegrationId"], TimeoutInMillis=5000)
    assert changed["TimeoutInMillis"] == 5000 and changed["IntegrationUri"] == "https://example.com/{proxy}"
    assert len(v2.get_integrations(ApiId=api_id)["Items"]) == 2
    # The HTTP integration is no longer a target: it can go; the Lambda one cannot.
    v2.delete_integration(ApiId=api_id, IntegrationId=http["IntegrationId"])
    with pytest.raises(v2.exceptions.ConflictException):
        v2.delete_integration(ApiId=api_id, IntegrationId=integration_id)
    v2.update_route(ApiId=api_id, RouteId=route["RouteId"], Target="")
    assert "Target" not in v2.get_route(ApiId=api_id, RouteId=route["RouteId"])
    v2.delete_integration(ApiId=api_id, IntegrationId=integration_id)
    assert (
        v2.delete_route(ApiId=api_id, RouteId=route["RouteId"])["ResponseMetadata"]["HTTPStatusCode"] == 204
    )
    assert v2.get_routes(ApiId=api_id)["Items"] == []


def test_route_pagination(v2) -> None:
    api_id = v2.create_api(Name="p", ProtocolType="HTTP")["ApiId"]
    made = [v2.create_route(ApiId=api_id, RouteKey=f"GET /r{i}")["RouteId"] for i in range(7)]
    page = v2.get_routes(ApiId=api_id, MaxResults="3")
    assert [r["RouteId"] for r in page["Items"]] == made[:3] and page["NextToken"]
    everything = v2.get_paginator("get_routes").paginate(ApiId=api_id, PaginationConfig={"PageSize": 2})
    assert [r["RouteId"] for r in everything.build_full_result()["Items"]] == made


@pytest.mark.parametrize(
    "route_key",
    [
        "GET",
        "GET items",
        "FETCH /items",
        "get /items",
        "GET /items/",
        "GET /a//b",
        "GET /{proxy+}/x",
        "GET /{id}/{id}",
        "GET /a{b}",
        "$connect",
        "",
    ],
)
def test_bad_route_keys(v2, route_key: str) -> None:
    api_id = v2.create_api(Name="k", ProtocolType="HTTP")["ApiId"]
    with pytest.raises(v2.exceptions.BadRequestException):
        v2.create_route(ApiId=api_id, RouteKey=route_key)


@pytest.mark.parametrize(
    "route_key", ["$default", "GET /", "ANY /{proxy+}", "OPTIONS /a/{b}/c", "HEAD /a.b-c_d~e"]
)
def test_good_route_keys(v2, route_key: str) -> None:
    api_id = v2.create_api(Name="k", ProtocolType="HTTP")["ApiId"]
    assert v2.create_route(ApiId=api_id, RouteKey=route_key)["RouteKey"] == route_key


def test_error_cases(v2) -> None:
    api, integration = make_lambda_api(v2)
    api_id = api["ApiId"]
    nf = v2.exceptions.NotFoundException
    with pytest.raises(nf) as raised:
        v2.create_route(ApiId="nosuchapi0", RouteKey="GET /x")
    assert (
        raised.value.response["Error"]["Message"]
        == "Invalid API identifier specified 000000000000:nosuchapi0"
    )
    for call in (
        lambda: v2.get_route(ApiId=api_id, RouteId="nope123"),
        lambda: v2.update_route(ApiId=api_id, RouteId="nope123", RouteKey="GET /y"),
        lambda: v2.delete_route(ApiId=api_id, RouteId="nope123"),
        lambda: v2.get_integration(ApiId=api_id, IntegrationId="nope123"),
        lambda: v2.delete_integration(ApiId=api_id, IntegrationId="nope123"),
        lambda: v2.get_stage(ApiId=api_id, StageName="nope"),
        lambda: v2.update_stage(ApiId=api_id, StageName="nope", Description="x"),
        lambda: v2.delete_stage(ApiId=api_id, StageName="nope"),
        lambda: v2.get_deployment(ApiId=api_id, DeploymentId="nope123"),
        lambda: v2.get_routes(ApiId="nosuchapi0"),
        lambda: v2.create_route(ApiId=api_id, RouteKey="GET /t", Target="integrations/nope123"),
        lambda: v2.create_stage(ApiId=api_id, StageName="s", DeploymentId="nope123"),
        lambda: v2.create_deployment(ApiId=api_id, StageName="nope"),
        lambda: v2.get_authorizer(ApiId=api_id, AuthorizerId="nope123"),
        lambda: v2.get_model(ApiId=api_id, ModelId="nope123"),
    ):
        with pytest.raises(nf):
            call()
    target = f"integrations/{integration['IntegrationId']}"
    v2.create_route(ApiId=api_id, RouteKey="GET /items", Target=target)
    with pytest.raises(v2.exceptions.ConflictException) as raised:
        v2.create_route(ApiId=api_id, RouteKey="GET /items")
    assert (
        raised.value.response["Error"]["Message"] == "Route with key GET /items already exists for this API"
    )
    other = v2.create_route(ApiId=api_id, RouteKey="GET /other")
    with pytest.raises(v2.exceptions.ConflictException):
        v2.update_route(ApiId=api_id, RouteId=other["RouteId"], RouteKey="GET /items")
    bad = v2.exceptions.BadRequestException
    with pytest.raises(bad):
        v2.create_route(ApiId=api_id, RouteKey="GET /t", Target="lambda/xyz")
    with pytest.raises(bad):  # HTTP API Lambda proxies must state their payload format
        v2.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=LAMBDA_ARN)
    with pytest.raises(bad):
        v2.create_integration(
            ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=LAMBDA_ARN, PayloadFormatVersion="3.0"
        )
    with pytest.raises(bad):
        v2.create_integration(
            ApiId=api_id,
            IntegrationType="HTTP_PROXY",
            IntegrationUri="https://x.test",
            PayloadFormatVersion="2.0",
        )
    with pytest.raises(bad):
        v2.create_integration(ApiId=api_id, IntegrationType="MOCK")
    with pytest.raises(bad):
        v2.create_integration(
            ApiId=api_id, IntegrationType="HTTP_PROXY", IntegrationUri="https://x.test", TimeoutInMillis=30001
        )
    with pytest.raises(bad):
        v2.create_integration(ApiId=api_id, IntegrationType="HTTP_PROXY")
    with pytest.raises(bad):
        v2.update_api(ApiId=api_id, CorsConfiguration={"AllowOrigins": ["*"], "AllowCredentials": True})
    with pytest.raises(bad):
        v2.create_route(ApiId=api_id, RouteKey="GET /jwt", AuthorizationType="JWT")


def test_quick_create(admin: ThreadAdmin, v2) -> None:
    api = v2.create_api(Name="quick", ProtocolType="HTTP", Target=LAMBDA_ARN)
    api_id = api["ApiId"]
    [integration] = v2.get_integrations(ApiId=api_id)["Items"]
    assert integration["IntegrationType"] == "AWS_PROXY" and integration["IntegrationUri"] == LAMBDA_ARN
    assert integration["PayloadFormatVersion"] == "2.0" and integration["ApiGatewayManaged"] is True
    [route] = v2.get_routes(ApiId=api_id)["Items"]
    assert route["RouteKey"] == "$default" and route["ApiGatewayManaged"] is True
    assert route["Target"] == f"integrations/{integration['IntegrationId']}"
    [stage] = v2.get_stages(ApiId=api_id)["Items"]
    assert (
        stage["StageName"] == "$default"
        and stage["AutoDeploy"] is True
        and stage["ApiGatewayManaged"] is True
    )
    assert snapshot_route_keys(admin, stage["DeploymentId"]) == {"$default"}

    http = v2.create_api(Name="q2", ProtocolType="HTTP", Target="https://example.com", RouteKey="GET /hello")
    [integration] = v2.get_integrations(ApiId=http["ApiId"])["Items"]
    assert integration["IntegrationType"] == "HTTP_PROXY" and integration["PayloadFormatVersion"] == "1.0"
    assert [r["RouteKey"] for r in v2.get_routes(ApiId=http["ApiId"])["Items"]] == ["GET /hello"]
    v2.update_api(ApiId=http["ApiId"], RouteKey="GET /bye")
    assert [r["RouteKey"] for r in v2.get_routes(ApiId=http["ApiId"])["Items"]] == ["GET /bye"]

    # DeleteApi cascades to everything under the API.
    v2.delete_api(ApiId=api_id)
    with admin.store.read() as tx:
        for kind in ("route", "integration", "stage", "deployment"):
            assert tx.list("apigatewayv2", kind, api_id) == []
    with pytest.raises(v2.exceptions.BadRequestException):
        v2.create_api(
            Name="ws", ProtocolType="WEBSOCKET", RouteSelectionExpression="$request.body.a", Target=LAMBDA_ARN
        )


def test_authorizers(v2) -> None:
    api_id = v2.create_api(Name="auth", ProtocolType="HTTP")["ApiId"]
    jwt = v2.create_authorizer(
        ApiId=api_id,
        AuthorizerType="JWT",
        Name="jwt",
        IdentitySource=["$request.header.Authorization"],
        JwtConfiguration={"Issuer": "https://issuer.example.com", "Audience": ["aud"]},
    )
    assert jwt["AuthorizerType"] == "JWT" and jwt["JwtConfiguration"]["Audience"] == ["aud"]
    lam = v2.create_authorizer(
        ApiId=api_id,
        AuthorizerType="REQUEST",
        Name="lambda",
        IdentitySource=["$request.header.X-Token"],
        AuthorizerUri=f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{LAMBDA_ARN}/invocations",
        AuthorizerPayloadFormatVersion="2.0",
        EnableSimpleResponses=True,
        AuthorizerResultTtlInSeconds=300,
    )
    route = v2.create_route(
        ApiId=api_id,
        RouteKey="GET /me",
        AuthorizationType="JWT",
        AuthorizerId=jwt["AuthorizerId"],
        AuthorizationScopes=["read"],
    )
    assert route["AuthorizerId"] == jwt["AuthorizerId"] and route["AuthorizationScopes"] == ["read"]
    with pytest.raises(v2.exceptions.BadRequestException):  # JWT route with a REQUEST authorizer
        v2.create_route(
            ApiId=api_id, RouteKey="GET /x", AuthorizationType="JWT", AuthorizerId=lam["AuthorizerId"]
        )
    v2.create_route(
        ApiId=api_id, RouteKey="GET /x", AuthorizationType="CUSTOM", AuthorizerId=lam["AuthorizerId"]
    )
    with pytest.raises(v2.exceptions.ConflictException):
        v2.delete_authorizer(ApiId=api_id, AuthorizerId=jwt["AuthorizerId"])
    bad = v2.exceptions.BadRequestException
    with pytest.raises(bad):  # JWT without issuer
        v2.create_authorizer(
            ApiId=api_id,
            AuthorizerType="JWT",
            Name="j2",
            IdentitySource=["$request.header.Authorization"],
            JwtConfiguration={"Audience": ["a"]},
        )
    with pytest.raises(bad):  # REQUEST without a payload format version (HTTP API)
        v2.create_authorizer(
            ApiId=api_id,
            AuthorizerType="REQUEST",
            Name="r2",
            IdentitySource=["$request.header.A"],
            AuthorizerUri="arn:aws:lambda:us-east-1:1:function:f",
        )
    with pytest.raises(bad):  # REQUEST without a URI
        v2.create_authorizer(
            ApiId=api_id,
            AuthorizerType="REQUEST",
            Name="r3",
            IdentitySource=["$request.header.A"],
            AuthorizerPayloadFormatVersion="2.0",
        )
    updated = v2.update_authorizer(
        ApiId=api_id, AuthorizerId=lam["AuthorizerId"], AuthorizerResultTtlInSeconds=0
    )
    assert updated["AuthorizerResultTtlInSeconds"] == 0
    assert len(v2.get_authorizers(ApiId=api_id)["Items"]) == 2


def test_models_responses_tags_domains(v2) -> None:
    ws = v2.create_api(Name="ws", ProtocolType="WEBSOCKET", RouteSelectionExpression="$request.body.action")
    api_id = ws["ApiId"]
    schema = '{"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}'
    model = v2.create_model(ApiId=api_id, Name="Person", Schema=schema, ContentType="application/json")
    template = v2.get_model_template(ApiId=api_id, ModelId=model["ModelId"])["Value"]
    assert '"name" : "$inputRoot.name"' in template and '"age" : $inputRoot.age' in template
    with pytest.raises(v2.exceptions.ConflictException):
        v2.create_model(ApiId=api_id, Name="Person", Schema=schema)
    with pytest.raises(v2.exceptions.BadRequestException):
        v2.create_model(ApiId=api_id, Name="Bad", Schema="not json")
    integration = v2.create_integration(ApiId=api_id, IntegrationType="MOCK")
    assert integration["TimeoutInMillis"] == 29000
    assert integration["IntegrationResponseSelectionExpression"] == "${integration.response.statuscode}"
    route = v2.create_route(
        ApiId=api_id, RouteKey="$connect", Target=f"integrations/{integration['IntegrationId']}"
    )
    response = v2.create_route_response(ApiId=api_id, RouteId=route["RouteId"], RouteResponseKey="$default")
    assert (
        v2.get_route_responses(ApiId=api_id, RouteId=route["RouteId"])["Items"][0]["RouteResponseKey"]
        == "$default"
    )
    ir = v2.create_integration_response(
        ApiId=api_id, IntegrationId=integration["IntegrationId"], IntegrationResponseKey="/200/"
    )
    assert (
        v2.get_integration_response(
            ApiId=api_id,
            IntegrationId=integration["IntegrationId"],
            IntegrationResponseId=ir["IntegrationResponseId"],
        )["IntegrationResponseKey"]
        == "/200/"
    )
    v2.delete_route_response(
        ApiId=api_id, RouteId=route["RouteId"], RouteResponseId=response["RouteResponseId"]
    )
    v2.create_route(ApiId=api_id, RouteKey="sendMessage")

    arn = f"arn:aws:apigateway:{REGION}::/apis/{api_id}"
    assert (
        v2.tag_resource(ResourceArn=arn, Tags={"a": "1", "b": "2"})["ResponseMetadata"]["HTTPStatusCode"]
        == 201
    )
    assert v2.get_tags(ResourceArn=arn)["Tags"] == {"a": "1", "b": "2"}
    v2.untag_resource(ResourceArn=arn, TagKeys=["a"])
    assert v2.get_tags(ResourceArn=arn)["Tags"] == {"b": "2"}
    assert v2.get_api(ApiId=api_id)["Tags"] == {"b": "2"}
    with pytest.raises(v2.exceptions.NotFoundException):
        v2.get_tags(ResourceArn=f"arn:aws:apigateway:{REGION}::/apis/nosuchapi0")

    http = v2.create_api(Name="h", ProtocolType="HTTP", Target=LAMBDA_ARN, Tags={"t": "v"})
    stage_arn = f"arn:aws:apigateway:{REGION}::/apis/{http['ApiId']}/stages/$default"
    v2.tag_resource(ResourceArn=stage_arn, Tags={"s": "1"})
    assert v2.get_stage(ApiId=http["ApiId"], StageName="$default")["Tags"] == {"s": "1"}
    domain = v2.create_domain_name(DomainName="api.example.com")
    assert domain["DomainNameConfigurations"][0]["DomainNameStatus"] == "AVAILABLE"
    with pytest.raises(v2.exceptions.ConflictException):
        v2.create_domain_name(DomainName="api.example.com")
    mapping = v2.create_api_mapping(
        DomainName="api.example.com", ApiId=http["ApiId"], Stage="$default", ApiMappingKey="v1"
    )
    assert v2.get_api_mappings(DomainName="api.example.com")["Items"] == [
        {
            "ApiId": http["ApiId"],
            "ApiMappingId": mapping["ApiMappingId"],
            "ApiMappingKey": "v1",
            "Stage": "$default",
        }
    ]
    with pytest.raises(v2.exceptions.NotFoundException):
        v2.create_api_mapping(DomainName="api.example.com", ApiId=http["ApiId"], Stage="nope")
    v2.delete_api(ApiId=http["ApiId"])
    assert v2.get_api_mappings(DomainName="api.example.com")["Items"] == []
    v2.delete_domain_name(DomainName="api.example.com")
    with pytest.raises(v2.exceptions.NotFoundException):
        v2.get_domain_name(DomainName="api.example.com")
