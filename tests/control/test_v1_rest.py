"""apigateway (v1) management API end to end with real boto3 clients (and the AWS CLI)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from control_support import ACCESS_KEY_ID, REGION, SECRET, ThreadAdmin

LAMBDA_URI = (
    "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/"
    "arn:aws:lambda:us-east-1:123456789012:function:my-function/invocations"
)


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadAdmin]:
    server = ThreadAdmin(tmp_path_factory.mktemp("v1") / "data")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def v1(admin: ThreadAdmin):
    return admin.client("apigateway")


def tutorial_api(v1, name: str = "tutorial") -> dict:
    """AWS's Lambda-proxy tutorial, step by step: root, {proxy+}, ANY, AWS_PROXY, deploy to prod."""
    api = v1.create_rest_api(name=name)
    root = v1.get_resources(restApiId=api["id"])["items"][0]
    proxy = v1.create_resource(restApiId=api["id"], parentId=root["id"], pathPart="{proxy+}")
    v1.put_method(restApiId=api["id"], resourceId=proxy["id"], httpMethod="ANY", authorizationType="NONE")
    v1.put_integration(
        restApiId=api["id"],
        resourceId=proxy["id"],
        httpMethod="ANY",
        type="AWS_PROXY",
        integrationHttpMethod="POST",
        uri=LAMBDA_URI,
    )
    deployment = v1.create_deployment(restApiId=api["id"], stageName="prod")
    return {"api": api, "root": root, "proxy": proxy, "deployment": deployment}


def test_tutorial_flow_snapshot_and_stage(v1, admin: ThreadAdmin) -> None:
    built = tutorial_api(v1)
    api_id, proxy = built["api"]["id"], built["proxy"]
    assert built["root"]["path"] == "/" and "parentId" not in built["root"]
    assert proxy["path"] == "/{proxy+}" and proxy["parentId"] == built["root"]["id"]
    assert built["deployment"]["ResponseMetadata"]["HTTPStatusCode"] == 201

    integration = v1.get_integration(restApiId=api_id, resourceId=proxy["id"], httpMethod="ANY")
    assert integration["type"] == "AWS_PROXY" and integration["httpMethod"] == "POST"
    assert integration["uri"] == LAMBDA_URI
    assert integration["timeoutInMillis"] == 29000
    assert integration["passthroughBehavior"] == "WHEN_NO_MATCH"
    assert integration["cacheNamespace"] == proxy["id"]
    assert integration["cacheKeyParameters"] == []
    assert integration["connectionType"] == "INTERNET"
    method = v1.get_method(restApiId=api_id, resourceId=proxy["id"], httpMethod="ANY")
    assert method["authorizationType"] == "NONE" and method["apiKeyRequired"] is False
    assert method["methodIntegration"]["uri"] == LAMBDA_URI

    stage = v1.get_stage(restApiId=api_id, stageName="prod")
    assert stage["deploymentId"] == built["deployment"]["id"]
    assert stage["cacheClusterEnabled"] is False and stage["cacheClusterStatus"] == "NOT_AVAILABLE"
    assert stage["tracingEnabled"] is False and stage["methodSettings"] == {}
    assert [s["stageName"] for s in v1.get_stages(restApiId=api_id)["item"]] == ["prod"]

    with admin.store.read() as tx:
        stored = tx.get("apigateway", "deployment", built["deployment"]["id"])
        stored_stage = tx.get("apigateway", "stage", f"{api_id}/prod")
    snapshot = stored["_snapshot"]
    assert snapshot["restApi"]["id"] == api_id
    by_path = {r["path"]: r for r in snapshot["resources"]}
    assert set(by_path) == {"/", "/{proxy+}"}
    assert by_path["/{proxy+}"]["resourceMethods"]["ANY"]["methodIntegration"]["uri"] == LAMBDA_URI
    assert {m["name"] for m in snapshot["models"]} == {"Empty", "Error"}
    assert stored_stage["deploymentId"] == stored["id"]

    summary = v1.get_deployment(restApiId=api_id, deploymentId=stored["id"], embed=["apisummary"])
    assert summary["apiSummary"] == {
        "/{proxy+}": {"ANY": {"authorizationType": "NONE", "apiKeyRequired": False}}
    }
    assert "apiSummary" not in v1.get_deployment(restApiId=api_id, deploymentId=stored["id"])

    # The snapshot is immutable: later edits do not change it.
    v1.update_integration(
        restApiId=api_id,
        resourceId=proxy["id"],
        httpMethod="ANY",
        patchOperations=[{"op": "replace", "path": "/timeoutInMillis", "value": "5000"}],
    )
    with admin.store.read() as tx:
        again = tx.get("apigateway", "deployment", stored["id"])["_snapshot"]
    assert again == snapshot

    embedded = v1.get_resources(restApiId=api_id, embed=["methods"])["items"]
    proxy_item = next(r for r in embedded if r["id"] == proxy["id"])
    assert proxy_item["resourceMethods"]["ANY"]["methodIntegration"]["timeoutInMillis"] == 5000
    plain = v1.get_resources(restApiId=api_id)["items"]
    assert next(r for r in plain if r["id"] == proxy["id"])["resourceMethods"] == {"ANY": {}}


def test_errors(v1) -> None:
    built = tutorial_api(v1, "errors")
    api_id, root, proxy = built["api"]["id"], built["root"], built["proxy"]
    with pytest.raises(v1.exceptions.NotFoundException) as raised:
        v1.get_method(restApiId=api_id, resourceId=root["id"], httpMethod="GET")
    assert raised.value.response["Error"]["Message"] == "Invalid Method identifier specified"
    with pytest.raises(v1.exceptions.NotFoundException):
        v1.get_resource(restApiId=api_id, resourceId="nosuchres0")
    with pytest.raises(v1.exceptions.NotFoundException):
        v1.get_stage(restApiId=api_id, stageName="nope")
    with pytest.raises(v1.exceptions.NotFoundException):
        v1.get_deployment(restApiId=api_id, deploymentId="nope00")
    with pytest.raises(v1.exceptions.NotFoundException):
        v1.get_rest_api(restApiId="nosuchapi0")
    v1.put_method(restApiId=api_id, resourceId=root["id"], httpMethod="GET", authorizationType="NONE")
    with pytest.raises(v1.exceptions.NotFoundException) as raised:
        v1.get_integration(restApiId=api_id, resourceId=root["id"], httpMethod="GET")
    assert raised.value.response["Error"]["Message"] == "Invalid Integration identifier specified"
    with pytest.raises(v1.exceptions.NotFoundException) as raised:
        v1.get_method_response(restApiId=api_id, resourceId=root["id"], httpMethod="GET", statusCode="200")
    assert raised.value.response["Error"]["Message"] == "Invalid Response status code specified"
    with pytest.raises(v1.exceptions.BadRequestException) as raised:
        v1.create_deployment(restApiId=api_id)
    assert raised.value.response["Error"]["Message"] == "No integration defined for method"
    with pytest.raises(v1.exceptions.ConflictException):
        v1.put_method(restApiId=api_id, resourceId=root["id"], httpMethod="GET", authorizationType="NONE")
    with pytest.raises(v1.exceptions.BadRequestException) as raised:
        v1.put_integration(
            restApiId=api_id, resourceId=root["id"], httpMethod="GET", type="HTTP", uri="http://x"
        )
    with pytest.raises(v1.exceptions.ConflictException):
        v1.create_resource(restApiId=api_id, parentId=root["id"], pathPart="{proxy+}")
    with pytest.raises(v1.exceptions.BadRequestException) as raised:
        v1.create_resource(restApiId=api_id, parentId=root["id"], pathPart="{id}")
    assert raised.value.response["Error"]["Message"] == (
        "A sibling ({proxy+}) of this resource already has a variable path part -- only one is allowed"
    )
    with pytest.raises(v1.exceptions.BadRequestException) as raised:
        v1.create_resource(restApiId=api_id, parentId=proxy["id"], pathPart="child")
    assert raised.value.response["Error"]["Message"] == (
        "Cannot create a child of a resource with a greedy path variable: {proxy+}"
    )
    with pytest.raises(v1.exceptions.BadRequestException) as raised:
        v1.update_stage(
            restApiId=api_id,
            stageName="prod",
            patchOperations=[{"op": "replace", "path": "/nope", "value": "x"}],
        )
    assert raised.value.response["Error"]["Message"].startswith(
        "Invalid patch path  '/nope' specified for op 'replace'"
    )
    with pytest.raises(v1.exceptions.BadRequestException) as raised:
        v1.delete_deployment(restApiId=api_id, deploymentId=built["deployment"]["id"])
    assert raised.value.response["Error"]["Message"] == (
        "Active stages pointing to this deployment must be moved or deleted"
    )
    empty = v1.create_rest_api(name="empty")
    with pytest.raises(v1.exceptions.BadRequestException) as raised:
        v1.create_deployment(restApiId=empty["id"], stageName="prod")
    assert raised.value.response["Error"]["Message"] == "The REST API doesn't contain any methods"


def test_resource_move_delete_and_method_responses(v1) -> None:
    api = v1.create_rest_api(name="tree")
    api_id, root_id = api["id"], api["rootResourceId"]
    pets = v1.create_resource(restApiId=api_id, parentId=root_id, pathPart="pets")
    pet = v1.create_resource(restApiId=api_id, parentId=pets["id"], pathPart="{id}")
    toys = v1.create_resource(restApiId=api_id, parentId=pet["id"], pathPart="toys")
    animals = v1.create_resource(restApiId=api_id, parentId=root_id, pathPart="animals")
    moved = v1.update_resource(
        restApiId=api_id,
        resourceId=pets["id"],
        patchOperations=[
            {"op": "replace", "path": "/parentId", "value": animals["id"]},
            {"op": "replace", "path": "/pathPart", "value": "cats"},
        ],
    )
    assert moved["path"] == "/animals/cats"
    assert v1.get_resource(restApiId=api_id, resourceId=toys["id"])["path"] == "/animals/cats/{id}/toys"

    v1.put_method(restApiId=api_id, resourceId=toys["id"], httpMethod="POST", authorizationType="NONE")
    created = v1.put_method_response(
        restApiId=api_id,
        resourceId=toys["id"],
        httpMethod="POST",
        statusCode="200",
        responseModels={"application/json": "Empty"},
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    updated = v1.update_method_response(
        restApiId=api_id,
        resourceId=toys["id"],
        httpMethod="POST",
        statusCode="200",
        patchOperations=[
            {"op": "add", "path": "/responseParameters/method.response.header.X-A", "value": "true"}
        ],
    )
    assert updated["responseParameters"] == {"method.response.header.X-A": True}
    v1.put_integration(restApiId=api_id, resourceId=toys["id"], httpMethod="POST", type="MOCK")
    v1.put_integration_response(
        restApiId=api_id, resourceId=toys["id"], httpMethod="POST", statusCode="200", selectionPattern=""
    )
    got = v1.get_method(restApiId=api_id, resourceId=toys["id"], httpMethod="POST")
    assert got["methodResponses"]["200"]["responseModels"] == {"application/json": "Empty"}
    assert "200" in got["methodIntegration"]["integrationResponses"]
    assert (
        v1.delete_integration_response(
            restApiId=api_id, resourceId=toys["id"], httpMethod="POST", statusCode="200"
        )["ResponseMetadata"]["HTTPStatusCode"]
        == 204
    )

    deleted = v1.delete_resource(restApiId=api_id, resourceId=moved["id"])
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 202
    paths = sorted(r["path"] for r in v1.get_resources(restApiId=api_id)["items"])
    assert paths == ["/", "/animals"]
    with pytest.raises(v1.exceptions.NotFoundException):
        v1.get_method(restApiId=api_id, resourceId=toys["id"], httpMethod="POST")
    with pytest.raises(v1.exceptions.BadRequestException):
        v1.update_resource(
            restApiId=api_id,
            resourceId=animals["id"],
            patchOperations=[{"op": "replace", "path": "/parentId", "value": animals["id"]}],
        )


def test_canary_promote_remove_and_rollback(v1) -> None:
    built = tutorial_api(v1, "canary")
    api_id, proxy, first = built["api"]["id"], built["proxy"], built["deployment"]["id"]
    v1.update_integration(
        restApiId=api_id,
        resourceId=proxy["id"],
        httpMethod="ANY",
        patchOperations=[{"op": "replace", "path": "/uri", "value": LAMBDA_URI.replace("my-function", "v2")}],
    )
    second = v1.create_deployment(
        restApiId=api_id,
        stageName="prod",
        canarySettings={"percentTraffic": 10.0, "stageVariableOverrides": {"color": "blue"}},
    )["id"]
    stage = v1.get_stage(restApiId=api_id, stageName="prod")
    assert stage["deploymentId"] == first
    assert stage["canarySettings"] == {
        "deploymentId": second,
        "percentTraffic": 10.0,
        "stageVariableOverrides": {"color": "blue"},
        "useStageCache": False,
    }
    stage = v1.update_stage(
        restApiId=api_id,
        stageName="prod",
        patchOperations=[
            {"op": "replace", "path": "/canarySettings/percentTraffic", "value": "25.5"},
            {"op": "replace", "path": "/canarySettings/stageVariableOverrides/size", "value": "xl"},
        ],
    )
    assert stage["canarySettings"]["percentTraffic"] == 25.5
    assert stage["canarySettings"]["stageVariableOverrides"] == {"color": "blue", "size": "xl"}
    promoted = v1.update_stage(
        restApiId=api_id,
        stageName="prod",
        patchOperations=[
            {"op": "replace", "path": "/canarySettings/percentTraffic", "value": "0.0"},
            {"op": "copy", "from": "/canarySettings/stageVariableOverrides", "path": "/variables"},
            {"op": "copy", "from": "/canarySettings/deploymentId", "path": "/deploymentId"},
        ],
    )
    assert promoted["deploymentId"] == second
    assert promoted["variables"] == {"color": "blue", "size": "xl"}
    assert promoted["canarySettings"]["percentTraffic"] == 0.0
    removed = v1.update_stage(
        restApiId=api_id, stageName="prod", patchOperations=[{"op": "remove", "path": "/canarySettings"}]
    )
    assert "canarySettings" not in removed
    rolled = v1.update_stage(
        restApiId=api_id,
        stageName="prod",
        patchOperations=[{"op": "replace", "path": "/deploymentId", "value": first}],
    )
    assert rolled["deploymentId"] == first
    assert (
        v1.delete_deployment(restApiId=api_id, deploymentId=second)["ResponseMetadata"]["HTTPStatusCode"]
        == 202
    )
    with pytest.raises(v1.exceptions.NotFoundException):
        v1.update_stage(
            restApiId=api_id,
            stageName="prod",
            patchOperations=[{"op": "replace", "path": "/deploymentId", "value": "nope00"}],
        )


def test_stage_settings(v1) -> None:
    built = tutorial_api(v1, "settings")
    api_id, deployment_id = built["api"]["id"], built["deployment"]["id"]
    created = v1.create_stage(
        restApiId=api_id, stageName="dev", deploymentId=deployment_id, variables={"a": "1"}
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    with pytest.raises(v1.exceptions.ConflictException):
        v1.create_stage(restApiId=api_id, stageName="dev", deploymentId=deployment_id)
    with pytest.raises(v1.exceptions.NotFoundException):
        v1.create_stage(restApiId=api_id, stageName="qa", deploymentId="nope00")
    stage = v1.update_stage(
        restApiId=api_id,
        stageName="dev",
        patchOperations=[
            {"op": "replace", "path": "/*/*/throttling/rateLimit", "value": "100"},
            {"op": "replace", "path": "/*/*/throttling/burstLimit", "value": "50"},
            {"op": "replace", "path": "/~1{proxy+}/ANY/caching/enabled", "value": "true"},
            {"op": "replace", "path": "/*/*/logging/loglevel", "value": "INFO"},
            {"op": "replace", "path": "/*/*/metrics/enabled", "value": "true"},
            {"op": "replace", "path": "/variables/b", "value": "2"},
            {"op": "remove", "path": "/variables/a"},
            {"op": "replace", "path": "/description", "value": "development"},
            {"op": "replace", "path": "/tracingEnabled", "value": "true"},
            {"op": "replace", "path": "/cacheClusterEnabled", "value": "true"},
        ],
    )
    star = stage["methodSettings"]["*/*"]
    assert star["throttlingRateLimit"] == 100.0 and star["throttlingBurstLimit"] == 50
    assert star["loggingLevel"] == "INFO" and star["metricsEnabled"] is True
    proxy_settings = stage["methodSettings"]["{proxy+}/ANY"]
    assert proxy_settings["cachingEnabled"] is True and proxy_settings["throttlingRateLimit"] == 100.0
    assert stage["variables"] == {"b": "2"} and stage["description"] == "development"
    assert stage["tracingEnabled"] is True and stage["cacheClusterStatus"] == "AVAILABLE"
    assert v1.delete_stage(restApiId=api_id, stageName="dev")["ResponseMetadata"]["HTTPStatusCode"] == 202


def test_authorizers_validators_models(v1) -> None:
    api_id = v1.create_rest_api(name="auth")["id"]
    authorizer = v1.create_authorizer(
        restApiId=api_id,
        name="tok",
        type="TOKEN",
        authorizerUri=LAMBDA_URI,
        identitySource="method.request.header.Authorization",
    )
    assert authorizer["authorizerResultTtlInSeconds"] == 300
    with pytest.raises(v1.exceptions.BadRequestException):
        v1.create_authorizer(restApiId=api_id, name="bad", type="TOKEN", authorizerUri=LAMBDA_URI)
    with pytest.raises(v1.exceptions.BadRequestException):
        v1.create_authorizer(
            restApiId=api_id, name="pool", type="COGNITO_USER_POOLS", identitySource="method.request.header.A"
        )
    updated = v1.update_authorizer(
        restApiId=api_id,
        authorizerId=authorizer["id"],
        patchOperations=[{"op": "replace", "path": "/authorizerResultTtlInSeconds", "value": "0"}],
    )
    assert updated["authorizerResultTtlInSeconds"] == 0
    assert [a["id"] for a in v1.get_authorizers(restApiId=api_id)["items"]] == [authorizer["id"]]
    validator = v1.create_request_validator(restApiId=api_id, name="body", validateRequestBody=True)
    assert validator["validateRequestParameters"] is False
    root = v1.get_resources(restApiId=api_id)["items"][0]["id"]
    v1.put_method(
        restApiId=api_id,
        resourceId=root,
        httpMethod="POST",
        authorizationType="CUSTOM",
        authorizerId=authorizer["id"],
        requestValidatorId=validator["id"],
    )
    with pytest.raises(v1.exceptions.ConflictException):
        v1.delete_authorizer(restApiId=api_id, authorizerId=authorizer["id"])

    names = {m["name"] for m in v1.get_models(restApiId=api_id)["items"]}
    assert names == {"Empty", "Error"}
    schema = json.dumps({"type": "object", "properties": {"name": {"type": "string"}}})
    model = v1.create_model(restApiId=api_id, name="Pet", contentType="application/json", schema=schema)
    assert v1.get_model(restApiId=api_id, modelName="Pet")["schema"] == schema
    with pytest.raises(v1.exceptions.ConflictException):
        v1.create_model(restApiId=api_id, name="Pet", contentType="application/json", schema=schema)
    with pytest.raises(v1.exceptions.NotFoundException):
        v1.get_model(restApiId=api_id, modelName="Nope")
    assert (
        v1.delete_model(restApiId=api_id, modelName=model["name"])["ResponseMetadata"]["HTTPStatusCode"]
        == 202
    )


def test_gateway_responses(v1) -> None:
    api_id = v1.create_rest_api(name="gw")["id"]
    items = v1.get_gateway_responses(restApiId=api_id, limit=500)["items"]
    assert len(items) == 21 and all(item["defaultResponse"] for item in items)
    by_type = {item["responseType"]: item for item in items}
    assert by_type["MISSING_AUTHENTICATION_TOKEN"]["statusCode"] == "403"
    assert by_type["THROTTLED"]["statusCode"] == "429"
    assert "statusCode" not in by_type["DEFAULT_4XX"]
    assert by_type["UNAUTHORIZED"]["responseTemplates"] == {
        "application/json": '{"message":$context.error.messageString}'
    }
    put = v1.put_gateway_response(
        restApiId=api_id,
        responseType="DEFAULT_4XX",
        statusCode="418",
        responseParameters={"gatewayresponse.header.Access-Control-Allow-Origin": "'*'"},
    )
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 201 and put["defaultResponse"] is False
    got = v1.get_gateway_response(restApiId=api_id, responseType="DEFAULT_4XX")
    assert got["statusCode"] == "418"
    updated = v1.update_gateway_response(
        restApiId=api_id,
        responseType="THROTTLED",
        patchOperations=[{"op": "replace", "path": "/statusCode", "value": "503"}],
    )
    assert updated["statusCode"] == "503" and updated["defaultResponse"] is False
    v1.delete_gateway_response(restApiId=api_id, responseType="DEFAULT_4XX")
    assert v1.get_gateway_response(restApiId=api_id, responseType="DEFAULT_4XX")["defaultResponse"] is True


def test_api_keys_usage_plans_and_usage(v1, admin: ThreadAdmin) -> None:
    built = tutorial_api(v1, "keys")
    api_id = built["api"]["id"]
    key = v1.create_api_key(
        name="alice", enabled=True, stageKeys=[{"restApiId": api_id, "stageName": "prod"}]
    )
    assert len(key["value"]) == 40 and key["enabled"] is True and key["stageKeys"] == [f"{api_id}/prod"]
    assert "value" not in v1.get_api_key(apiKey=key["id"])
    assert v1.get_api_key(apiKey=key["id"], includeValue=True)["value"] == key["value"]
    given = v1.create_api_key(name="bob", value="b" * 30, customerId="cust")
    assert given["value"] == "b" * 30 and given["enabled"] is False
    with pytest.raises(v1.exceptions.ConflictException):
        v1.create_api_key(name="dup", value="b" * 30)
    listed = v1.get_api_keys(nameQuery="al", includeValues=True)["items"]
    assert [(k["id"], k["value"]) for k in listed] == [(key["id"], key["value"])]
    assert [k["id"] for k in v1.get_api_keys(customerId="cust")["items"]] == [given["id"]]
    patched = v1.update_api_key(
        apiKey=given["id"], patchOperations=[{"op": "replace", "path": "/enabled", "value": "true"}]
    )
    assert patched["enabled"] is True

    plan = v1.create_usage_plan(
        name="basic",
        apiStages=[{"apiId": api_id, "stage": "prod"}],
        throttle={"rateLimit": 10.0, "burstLimit": 20},
        quota={"limit": 1000, "period": "DAY"},
    )
    assert plan["ResponseMetadata"]["HTTPStatusCode"] == 201
    plan = v1.update_usage_plan(
        usagePlanId=plan["id"],
        patchOperations=[
            {"op": "replace", "path": "/throttle/rateLimit", "value": "50"},
            {"op": "replace", "path": "/quota/limit", "value": "500"},
            {
                "op": "replace",
                "path": "/apiStages/" + api_id + ":prod/throttle/~1{proxy+}/ANY/rateLimit",
                "value": "5",
            },
        ],
    )
    assert plan["throttle"]["rateLimit"] == 50.0 and plan["quota"]["limit"] == 500
    assert plan["apiStages"][0]["throttle"] == {"/{proxy+}/ANY": {"rateLimit": 5.0}}
    removed = v1.update_usage_plan(
        usagePlanId=plan["id"],
        patchOperations=[{"op": "remove", "path": "/apiStages", "value": f"{api_id}:prod"}],
    )
    assert removed["apiStages"] == []
    added = v1.update_usage_plan(
        usagePlanId=plan["id"],
        patchOperations=[{"op": "add", "path": "/apiStages", "value": f"{api_id}:prod"}],
    )
    assert added["apiStages"] == [{"apiId": api_id, "stage": "prod"}]
    with pytest.raises(v1.exceptions.BadRequestException):
        v1.update_usage_plan(
            usagePlanId=plan["id"],
            patchOperations=[{"op": "add", "path": "/apiStages", "value": f"{api_id}:nope"}],
        )

    plan_key = v1.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
    assert plan_key["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert {k: plan_key[k] for k in ("id", "type", "value", "name")} == {
        "id": key["id"],
        "type": "API_KEY",
        "value": key["value"],
        "name": "alice",
    }
    assert [k["id"] for k in v1.get_usage_plan_keys(usagePlanId=plan["id"])["items"]] == [key["id"]]
    assert [p["id"] for p in v1.get_usage_plans(keyId=key["id"])["items"]] == [plan["id"]]
    assert v1.get_usage_plans(keyId=given["id"])["items"] == []

    today = dt.datetime.now(dt.UTC).date()
    # As the usage writer makes the data plane's counts durable: requests per UTC day.
    admin.store.write_usage([(plan["id"], key["id"], (today - dt.date(1970, 1, 1)).days, 7)])
    start = (today - dt.timedelta(days=1)).isoformat()
    usage = v1.get_usage(usagePlanId=plan["id"], startDate=start, endDate=today.isoformat())
    assert usage["usagePlanId"] == plan["id"] and usage["startDate"] == start
    assert usage["items"] == {key["id"]: [[0, 500], [7, 493]]}
    updated = v1.update_usage(
        usagePlanId=plan["id"],
        keyId=key["id"],
        patchOperations=[{"op": "replace", "path": "/remaining", "value": "42"}],
    )
    assert updated["items"] == {key["id"]: [[7, 42]]}

    assert (
        v1.delete_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"])["ResponseMetadata"][
            "HTTPStatusCode"
        ]
        == 202
    )
    with pytest.raises(v1.exceptions.NotFoundException):
        v1.get_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"])
    assert v1.delete_usage_plan(usagePlanId=plan["id"])["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert v1.delete_api_key(apiKey=key["id"])["ResponseMetadata"]["HTTPStatusCode"] == 202
    with pytest.raises(v1.exceptions.NotFoundException):
        v1.get_api_key(apiKey=key["id"])


def test_account_and_tags(v1) -> None:
    account = v1.get_account()
    assert account["throttleSettings"] == {"burstLimit": 5000, "rateLimit": 10000.0}
    assert account["apiKeyVersion"] == "4" and account["features"] == ["UsagePlans"]
    role = "arn:aws:iam::123456789012:role/logs"
    assert (
        v1.update_account(patchOperations=[{"op": "replace", "path": "/cloudwatchRoleArn", "value": role}])[
            "cloudwatchRoleArn"
        ]
        == role
    )

    built = tutorial_api(v1, "tags")
    api_arn = f"arn:aws:apigateway:{REGION}::/restapis/{built['api']['id']}"
    stage_arn = f"{api_arn}/stages/prod"
    assert (
        v1.tag_resource(resourceArn=api_arn, tags={"team": "a", "env": "x"})["ResponseMetadata"][
            "HTTPStatusCode"
        ]
        == 204
    )
    v1.tag_resource(resourceArn=stage_arn, tags={"tier": "gold"})
    assert v1.get_tags(resourceArn=api_arn)["tags"] == {"team": "a", "env": "x"}
    assert v1.get_rest_api(restApiId=built["api"]["id"])["tags"] == {"team": "a", "env": "x"}
    assert v1.get_stage(restApiId=built["api"]["id"], stageName="prod")["tags"] == {"tier": "gold"}
    v1.untag_resource(resourceArn=api_arn, tagKeys=["env"])
    assert v1.get_tags(resourceArn=api_arn)["tags"] == {"team": "a"}
    with pytest.raises(v1.exceptions.NotFoundException):
        v1.get_tags(resourceArn=f"arn:aws:apigateway:{REGION}::/restapis/nosuchapi0")


def test_aws_cli_flow(admin: ThreadAdmin) -> None:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_MAX_ATTEMPTS": "1",
    }
    env.pop("AWS_PROFILE", None)

    def aws(*args: str) -> dict:
        command = ["aws", "--endpoint-url", admin.url, "apigateway", *args, "--output", "json"]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout) if result.stdout.strip() else {}

    api = aws("create-rest-api", "--name", "cli-v1")
    resource = aws(
        "create-resource",
        "--rest-api-id",
        api["id"],
        "--parent-id",
        api["rootResourceId"],
        "--path-part",
        "hello",
    )
    common = ["--rest-api-id", api["id"], "--resource-id", resource["id"], "--http-method", "GET"]
    aws("put-method", *common, "--authorization-type", "NONE")
    aws(
        "put-integration",
        *common,
        "--type",
        "MOCK",
        "--request-templates",
        '{"application/json":"{\\"statusCode\\":200}"}',
    )
    aws("put-method-response", *common, "--status-code", "200")
    aws("put-integration-response", *common, "--status-code", "200", "--selection-pattern", "")
    deployment = aws("create-deployment", "--rest-api-id", api["id"], "--stage-name", "dev")
    stage = aws("get-stage", "--rest-api-id", api["id"], "--stage-name", "dev")
    assert stage["deploymentId"] == deployment["id"]
    stages = aws(
        "update-stage",
        "--rest-api-id",
        api["id"],
        "--stage-name",
        "dev",
        "--patch-operations",
        "op=replace,path=/*/*/throttling/rateLimit,value=7",
    )
    assert stages["methodSettings"]["*/*"]["throttlingRateLimit"] == 7.0
    resources = aws("get-resources", "--rest-api-id", api["id"], "--embed", "methods")
    hello = next(r for r in resources["items"] if r["path"] == "/hello")
    assert hello["resourceMethods"]["GET"]["methodIntegration"]["type"] == "MOCK"


def test_store_survives_unknown_path(tmp_path: Path) -> None:
    """The stored docs are plain JSON (nothing the bridge cannot read without these modules)."""
    server = ThreadAdmin(tmp_path / "data")
    try:
        v1 = server.client("apigateway")
        built = tutorial_api(v1, "plain")
        with server.store.read() as tx:
            methods = tx.list("apigateway", "method", built["api"]["id"])
        assert [m["httpMethod"] for m in methods] == ["ANY"] and methods[0]["_resourceId"] == built["proxy"][
            "id"
        ]
    finally:
        server.stop()
