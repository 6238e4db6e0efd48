"""apigatewayv2: stages. Documents: kind "stage", id f"{ApiId}/{StageName}", parent ApiId, keyed by
GetStageResponse members. A stage with AutoDeploy true is deployed on creation (and when AutoDeploy
is switched on) and after every change of its API (see `common.auto_deploy`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from portico.control.apigatewayv2.common import (
    DEPLOYMENT,
    ROUTE,
    SERVICE,
    STAGE,
    auto_deploy,
    load_api,
    load_stage,
    not_found,
    now,
    stage_id,
)
from portico.control.errors import BadRequestException, ConflictException
from portico.control.registry import AdminRequest, copy_given, operation, paginate

_STAGE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_VARIABLE_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_VARIABLE_VALUE = re.compile(r"^[A-Za-z0-9\-._~:/?#&=,]{1,512}$")
MAX_STAGE_VARIABLES = 100


def check_stage_name(name: str) -> None:
    if name != "$default" and not _STAGE_NAME.match(name):
        raise BadRequestException(
            f"Stage name '{name}' is invalid: only alphanumerics, '-' and '_' are allowed "
            "(1-128 characters), or $default"
        )


def _check_variables(variables: dict[str, str]) -> None:
    if len(variables) > MAX_STAGE_VARIABLES:
        raise BadRequestException(f"A stage supports at most {MAX_STAGE_VARIABLES} stage variables")
    for name, value in variables.items():
        if not _VARIABLE_NAME.match(name):
            raise BadRequestException(
                f"Stage variable name '{name}' is invalid: "
                "it must be alphanumeric or '_' (at most 64 characters)"
            )
        if not _VARIABLE_VALUE.match(value):
            raise BadRequestException(
                f"Stage variable value '{value}' for '{name}' is invalid: "
                "it must match [A-Za-z0-9-._~:/?#&=,]+ (at most 512 characters)"
            )


def _check_route_settings(tx, api_id: str, settings: dict[str, Any]) -> None:
    keys = {r["RouteKey"] for r in tx.list(SERVICE, ROUTE, api_id)}
    for key in settings:
        if key not in keys:
            raise not_found(f"Unable to find Route by key {key} within the provided RouteSettings", "Route")


def _check_deployment(tx, api_id: str, deployment_id: str) -> None:
    if tx.get(SERVICE, DEPLOYMENT, deployment_id, parent=api_id) is None:
        raise not_found(f"Invalid Deployment identifier specified {deployment_id}", "Deployment")


def _save_stage(tx, api_id: str, name: str, stage: dict[str, Any], deploy: bool = False) -> None:
    """Store the stage; with `deploy`, first point it at a new deployment of the API (for a stage
    whose AutoDeploy has just been switched on: `auto_deploy` stores the stage itself)."""
    if deploy:
        auto_deploy(tx, api_id, [stage])
    else:
        tx.put(SERVICE, STAGE, stage_id(api_id, name), stage, parent=api_id)


def _check_throttling(settings: dict[str, Any] | None) -> None:
    if not settings:
        return
    if (settings.get("ThrottlingBurstLimit") or 0) < 0 or (settings.get("ThrottlingRateLimit") or 0) < 0:
        raise BadRequestException("Throttling limits must not be negative")


@operation(SERVICE, "CreateStage")
def create_stage(request: AdminRequest, params: dict) -> dict:
    api_id, name = params["ApiId"], params["StageName"]
    check_stage_name(name)
    _check_variables(params.get("StageVariables") or {})
    _check_throttling(params.get("DefaultRouteSettings"))
    for settings in (params.get("RouteSettings") or {}).values():
        _check_throttling(settings)
    with request.store.transaction() as tx:
        load_api(request, tx, api_id)
        if tx.exists(SERVICE, STAGE, stage_id(api_id, name)):
            raise ConflictException(f"Stage {name} already exists")
        _check_route_settings(tx, api_id, params.get("RouteSettings") or {})
        if params.get("DeploymentId"):
            _check_deployment(tx, api_id, params["DeploymentId"])
        stage: dict[str, Any] = {
            "StageName": name,
            "AutoDeploy": bool(params.get("AutoDeploy", False)),
            "ApiGatewayManaged": False,
            "CreatedDate": now(),
            "LastUpdatedDate": now(),
            "DefaultRouteSettings": {
                "DetailedMetricsEnabled": False,
                **(params.get("DefaultRouteSettings") or {}),
            },
            "RouteSettings": params.get("RouteSettings") or {},
            "StageVariables": params.get("StageVariables") or {},
            "Tags": params.get("Tags") or {},
        }
        copy_given(params, stage, ("AccessLogSettings", "ClientCertificateId", "DeploymentId", "Description"))
        _save_stage(tx, api_id, name, stage, deploy=stage["AutoDeploy"])
    return stage


@operation(SERVICE, "GetStage")
def get_stage(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        load_api(request, tx, params["ApiId"])
        return load_stage(tx, params["ApiId"], params["StageName"])


@operation(SERVICE, "GetStages")
def get_stages(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        load_api(request, tx, params["ApiId"])
        items = tx.list(SERVICE, STAGE, params["ApiId"])
    page, token = paginate(items, params.get("NextToken"), params.get("MaxResults"), default=100)
    return {"Items": page, "NextToken": token}


@operation(SERVICE, "UpdateStage")
def update_stage(request: AdminRequest, params: dict) -> dict:
    api_id, name = params["ApiId"], params["StageName"]
    with request.store.transaction() as tx:
        load_api(request, tx, api_id)
        stage = load_stage(tx, api_id, name)
        was_auto = stage.get("AutoDeploy", False)
        if params.get("DeploymentId") is not None:
            _check_deployment(tx, api_id, params["DeploymentId"])
            stage["DeploymentId"] = params["DeploymentId"]
        copy_given(params, stage, ("AccessLogSettings", "AutoDeploy", "ClientCertificateId", "Description"))
        if params.get("DefaultRouteSettings") is not None:
            _check_throttling(params["DefaultRouteSettings"])
            stage["DefaultRouteSettings"] = {
                **stage.get("DefaultRouteSettings", {}),
                **params["DefaultRouteSettings"],
            }
        if params.get("RouteSettings") is not None:
            _check_route_settings(tx, api_id, params["RouteSettings"])
            merged = dict(stage.get("RouteSettings") or {})
            for key, settings in params["RouteSettings"].items():
                _check_throttling(settings)
                merged[key] = {**merged.get(key, {}), **settings}
            stage["RouteSettings"] = merged
        if params.get("StageVariables") is not None:
            variables = dict(stage.get("StageVariables") or {})
            for key, value in params["StageVariables"].items():
                if value == "":
                    variables.pop(key, None)  # an empty value removes the variable
                else:
                    variables[key] = value
            _check_variables(variables)
            stage["StageVariables"] = variables
        stage["LastUpdatedDate"] = now()
        _save_stage(tx, api_id, name, stage, deploy=bool(stage.get("AutoDeploy")) and not was_auto)
    return stage


@operation(SERVICE, "DeleteStage")
def delete_stage(request: AdminRequest, params: dict) -> None:
    api_id, name = params["ApiId"], params["StageName"]
    with request.store.transaction() as tx:
        load_api(request, tx, api_id)
        load_stage(tx, api_id, name)
        tx.delete(SERVICE, STAGE, stage_id(api_id, name))


@operation(SERVICE, "DeleteRouteSettings")
def delete_route_settings(request: AdminRequest, params: dict) -> None:
    key, name = params["RouteKey"], params["StageName"]

    def drop(stage: dict) -> None:
        settings = stage.get("RouteSettings") or {}
        if key not in settings:
            raise not_found(
                f"Unable to find route settings for route key {key} in stage {name}", "RouteSettings"
            )
        del settings[key]
        stage["RouteSettings"] = settings
        stage["LastUpdatedDate"] = now()

    _change_stage(request, params, drop)


@operation(SERVICE, "DeleteAccessLogSettings")
def delete_access_log_settings(request: AdminRequest, params: dict) -> None:
    def drop(stage: dict) -> None:
        stage.pop("AccessLogSettings", None)
        stage["LastUpdatedDate"] = now()

    _change_stage(request, params, drop)


@operation(SERVICE, "ResetAuthorizersCache")
def reset_authorizers_cache(request: AdminRequest, params: dict) -> None:
    # The stage's authorizer-cache epoch moves (a new store generation): the data plane's workers
    # reload and start the stage's Lambda authorizers with empty caches.
    def reset(stage: dict) -> None:
        stage["_authorizersCacheEpoch"] = int(stage.get("_authorizersCacheEpoch") or 0) + 1

    _change_stage(request, params, reset)


def _change_stage(request: AdminRequest, params: dict, change: Callable[[dict], None]) -> None:
    """Load the stage named by `params`, apply `change` to it and store it, in one transaction."""
    api_id, name = params["ApiId"], params["StageName"]
    with request.store.transaction() as tx:
        load_api(request, tx, api_id)
        stage = load_stage(tx, api_id, name)
        change(stage)
        _save_stage(tx, api_id, name, stage)
