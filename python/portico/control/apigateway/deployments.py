"""apigateway (v1): deployments. Documents: kind "deployment", id deploymentId, parent restApiId:
`id, description, createdDate, apiSummary` plus the private `_snapshot` (an immutable copy of
the API taken at CreateDeployment; see `snapshot`)."""

from __future__ import annotations

import time
from typing import Any

from portico.control import ids
from portico.control.apigateway.common import (
    RESOURCE_KIND,
    SERVICE,
    apply_request_patch,
    load_rest_api,
    load_rest_api_child,
    put_rest_api_child,
)
from portico.control.apigateway.resources import methods_by_resource
from portico.control.apigateway.stages import (
    DEPLOYMENT_KIND,
    _cache,
    check_variables,
    new_stage,
    save_stage,
    stage_key,
)
from portico.control.apigateway.stages import (
    KIND as STAGE_KIND,
)
from portico.control.errors import BadRequestException
from portico.control.registry import AdminRequest, copy_given, operation, paginate

KIND = DEPLOYMENT_KIND
_DEPLOYMENT_PATHS = ("/description",)


def snapshot(tx, rest_api_id: str) -> dict[str, Any]:
    """What a deployment freezes: the API, its resources with their methods embedded, and the
    API's authorizers, models, request validators and customised gateway responses."""
    api = load_rest_api(tx, rest_api_id)
    methods = methods_by_resource(tx, rest_api_id)
    resources = []
    for resource in tx.list(SERVICE, RESOURCE_KIND, rest_api_id):
        resource = dict(resource)
        resource["resourceMethods"] = methods.get(resource["id"], {})
        resources.append(resource)
    return {
        "restApi": api,
        "resources": resources,
        "authorizers": tx.list(SERVICE, "authorizer", rest_api_id),
        "models": tx.list(SERVICE, "model", rest_api_id),
        "requestValidators": tx.list(SERVICE, "requestvalidator", rest_api_id),
        "gatewayResponses": tx.list(SERVICE, "gatewayresponse", rest_api_id),
    }


def api_summary(frozen: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    return {
        resource["path"]: {
            verb: {
                "authorizationType": m.get("authorizationType"),
                "apiKeyRequired": m.get("apiKeyRequired", False),
            }
            for verb, m in sorted(resource["resourceMethods"].items())
        }
        for resource in frozen["resources"]
        if resource["resourceMethods"]
    }


def load_deployment(tx, rest_api_id: str, deployment_id: str) -> dict[str, Any]:
    return load_rest_api_child(
        tx, rest_api_id, KIND, deployment_id, "Invalid Deployment identifier specified"
    )


def _public(deployment: dict[str, Any], summary: bool) -> dict[str, Any]:
    out = {k: v for k, v in deployment.items() if not k.startswith("_")}
    if not summary:
        out.pop("apiSummary", None)
    return out


def _wants_summary(params: dict) -> bool:
    return any("apisummary" in item.lower().split(",") for item in params.get("embed") or ())


def deploy(tx, rest_api_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """CreateDeployment inside an open transaction."""
    frozen = snapshot(tx, rest_api_id)
    all_methods = [m for r in frozen["resources"] for m in r["resourceMethods"].values()]
    if not all_methods:
        raise BadRequestException("The REST API doesn't contain any methods")
    if any(not m.get("methodIntegration") for m in all_methods):
        raise BadRequestException("No integration defined for method")
    now = time.time()
    deployment: dict[str, Any] = {"id": ids.random_id(6), "createdDate": int(now)}
    # Private (never answered): orders deployments made within one second, so that the data plane
    # knows which one's API-wide settings (resource policy, apiKeySource, gateway responses) are
    # the latest deployed.
    deployment["_deployedAt"] = now
    if params.get("description") is not None:
        deployment["description"] = params["description"]
    deployment["apiSummary"] = api_summary(frozen)
    deployment["_snapshot"] = frozen
    put_rest_api_child(tx, rest_api_id, KIND, deployment)
    stage_name = params.get("stageName")
    if stage_name:
        stage = tx.get(SERVICE, STAGE_KIND, stage_key(rest_api_id, stage_name), parent=rest_api_id)
        canary = params.get("canarySettings")
        if stage is None:
            if canary:
                raise BadRequestException(
                    f"Stage {stage_name} does not exist: a canary deployment needs an existing stage"
                )
            stage = new_stage(
                tx,
                rest_api_id,
                {
                    "stageName": stage_name,
                    "deploymentId": deployment["id"],
                    "description": params.get("stageDescription"),
                    "cacheClusterEnabled": params.get("cacheClusterEnabled", False),
                    "cacheClusterSize": params.get("cacheClusterSize"),
                    "variables": params.get("variables"),
                    "tracingEnabled": params.get("tracingEnabled", False),
                },
            )
        else:
            if canary:
                check_variables(canary.get("stageVariableOverrides"))
                stage["canarySettings"] = {
                    "deploymentId": deployment["id"],
                    "percentTraffic": canary.get("percentTraffic", 0.0),
                    "stageVariableOverrides": canary.get("stageVariableOverrides") or {},
                    "useStageCache": canary.get("useStageCache", False),
                }
            else:
                stage["deploymentId"] = deployment["id"]
            if params.get("stageDescription") is not None:
                stage["description"] = params["stageDescription"]
            if params.get("variables") is not None:
                check_variables(params["variables"])
                stage["variables"] = params["variables"]
            copy_given(params, stage, ("cacheClusterEnabled", "cacheClusterSize", "tracingEnabled"))
            _cache(stage)
        save_stage(tx, rest_api_id, stage)
    return deployment


@operation(SERVICE, "CreateDeployment")
def create_deployment(request: AdminRequest, params: dict) -> dict:
    with request.store.transaction() as tx:
        deployment = deploy(tx, params["restApiId"], params)
    return _public(deployment, summary=False)


@operation(SERVICE, "GetDeployment")
def get_deployment(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        deployment = load_deployment(tx, params["restApiId"], params["deploymentId"])
    return _public(deployment, summary=_wants_summary(params))


@operation(SERVICE, "GetDeployments")
def get_deployments(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        load_rest_api(tx, params["restApiId"])
        deployments = tx.list(SERVICE, KIND, params["restApiId"])
    page, position = paginate(deployments, params.get("position"), params.get("limit"))
    return {"items": [_public(d, summary=False) for d in page], "position": position}


@operation(SERVICE, "UpdateDeployment")
def update_deployment(request: AdminRequest, params: dict) -> dict:
    with request.store.transaction() as tx:
        deployment = load_deployment(tx, params["restApiId"], params["deploymentId"])
        deployment = apply_request_patch(deployment, params, "Deployment", _DEPLOYMENT_PATHS)
        put_rest_api_child(tx, params["restApiId"], KIND, deployment)
    return _public(deployment, summary=False)


@operation(SERVICE, "DeleteDeployment")
def delete_deployment(request: AdminRequest, params: dict) -> None:
    rest_api_id, deployment_id = params["restApiId"], params["deploymentId"]
    with request.store.transaction() as tx:
        load_deployment(tx, rest_api_id, deployment_id)
        for stage in tx.list(SERVICE, STAGE_KIND, rest_api_id):
            if stage.get("deploymentId") == deployment_id:
                raise BadRequestException(
                    "Active stages pointing to this deployment must be moved or deleted"
                )
            if (stage.get("canarySettings") or {}).get("deploymentId") == deployment_id:
                raise BadRequestException(
                    "Active stages with canary settings pointing to this deployment must be moved or deleted"
                )
        tx.delete(SERVICE, KIND, deployment_id)
