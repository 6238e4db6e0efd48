"""apigateway (v1): stages. Documents: kind "stage", id f"{restApiId}/{stageName}", parent
restApiId, the `Stage` shape's members. `methodSettings` keys are `*/*` or
`{resource path without its leading slash}/{METHOD}` (AWS's form, e.g. `pets/{id}/GET`)."""

from __future__ import annotations

import re
import time
from typing import Any

from portico.control.apigateway.common import SERVICE, load_rest_api, load_rest_api_child
from portico.control.errors import BadRequestException, ConflictException, NotFoundException
from portico.control.patch import apply_patch, split_pointer
from portico.control.registry import AdminRequest, copy_given, operation
from portico.control.wire import get_service

KIND = "stage"
DEPLOYMENT_KIND = "deployment"
_STAGE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_VARIABLE_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_VARIABLE_VALUE = re.compile(r"^[A-Za-z0-9-._~:/?#&=,]{1,512}$")

# The patch paths UpdateStage accepts besides method settings.
STAGE_PATHS = {
    "replace": (
        "/description",
        "/deploymentId",
        "/cacheClusterEnabled",
        "/cacheClusterSize",
        "/tracingEnabled",
        "/clientCertificateId",
        "/documentationVersion",
        "/webAclArn",
        "/variables/*",
        "/accessLogSettings/destinationArn",
        "/accessLogSettings/format",
        "/canarySettings/percentTraffic",
        "/canarySettings/deploymentId",
        "/canarySettings/stageVariableOverrides/*",
        "/canarySettings/useStageCache",
        "/{resourcePath}/{httpMethod}/{setting}",
    ),
    "add": ("/variables/*", "/canarySettings/stageVariableOverrides/*"),
    "remove": (
        "/variables/*",
        "/canarySettings",
        "/canarySettings/stageVariableOverrides/*",
        "/accessLogSettings",
        "/clientCertificateId",
        "/webAclArn",
        "/description",
        "/{resourcePath}/{httpMethod}",
    ),
    "copy": ("/deploymentId", "/variables"),
}

# Method-setting patch suffixes -> MethodSetting members.
METHOD_SETTINGS = {
    ("metrics", "enabled"): "metricsEnabled",
    ("logging", "loglevel"): "loggingLevel",
    ("logging", "dataTrace"): "dataTraceEnabled",
    ("throttling", "burstLimit"): "throttlingBurstLimit",
    ("throttling", "rateLimit"): "throttlingRateLimit",
    ("caching", "enabled"): "cachingEnabled",
    ("caching", "ttlInSeconds"): "cacheTtlInSeconds",
    ("caching", "dataEncrypted"): "cacheDataEncrypted",
    ("caching", "requireAuthorizationForCacheControl"): "requireAuthorizationForCacheControl",
    ("caching", "unauthorizedCacheControlHeaderStrategy"): "unauthorizedCacheControlHeaderStrategy",
}
METHOD_SETTING_DEFAULTS = {
    "metricsEnabled": False,
    "loggingLevel": "OFF",
    "dataTraceEnabled": False,
    "throttlingBurstLimit": 5000,
    "throttlingRateLimit": 10000.0,
    "cachingEnabled": False,
    "cacheTtlInSeconds": 300,
    "cacheDataEncrypted": False,
    "requireAuthorizationForCacheControl": True,
    "unauthorizedCacheControlHeaderStrategy": "SUCCEED_WITH_RESPONSE_HEADER",
}
_HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY")


def stage_key(rest_api_id: str, stage_name: str) -> str:
    return f"{rest_api_id}/{stage_name}"


def stage_arn(region: str, rest_api_id: str, stage_name: str) -> str:
    return f"arn:aws:apigateway:{region}::/restapis/{rest_api_id}/stages/{stage_name}"


def load_stage(tx, rest_api_id: str, stage_name: str) -> dict[str, Any]:
    return load_rest_api_child(
        tx, rest_api_id, KIND, stage_key(rest_api_id, stage_name), "Invalid Stage identifier specified"
    )


def save_stage(tx, rest_api_id: str, stage: dict[str, Any]) -> None:
    stage["lastUpdatedDate"] = int(time.time())
    tx.put(SERVICE, KIND, stage_key(rest_api_id, stage["stageName"]), stage, parent=rest_api_id)


def check_deployment(tx, rest_api_id: str, deployment_id: str | None) -> None:
    if not deployment_id or tx.get(SERVICE, DEPLOYMENT_KIND, deployment_id, parent=rest_api_id) is None:
        raise NotFoundException("Invalid Deployment identifier specified")


def check_variables(variables: dict[str, str] | None, what: str = "Stage variable") -> None:
    for name, value in (variables or {}).items():
        if not _VARIABLE_NAME.match(name):
            raise BadRequestException(f"{what} name must be alphanumeric or underscore: {name}")
        if not _VARIABLE_VALUE.match(value or ""):
            raise BadRequestException(
                f"{what} value {value} must match regular expression: [A-Za-z0-9-._~:/?#&=,]+"
            )


_CACHE_CLUSTER_SIZES = ("0.5", "1.6", "6.1", "13.5", "28.4", "58.2", "118", "237")


def _cache(stage: dict[str, Any]) -> None:
    size = stage.get("cacheClusterSize")
    if size is not None and size not in _CACHE_CLUSTER_SIZES:
        raise BadRequestException(
            f"Invalid cache cluster size {size}. Must be one of: [{', '.join(_CACHE_CLUSTER_SIZES)}]"
        )
    if stage.get("cacheClusterEnabled"):
        stage["cacheClusterStatus"] = "AVAILABLE"
        stage.setdefault("cacheClusterSize", "0.5")
    else:
        stage["cacheClusterStatus"] = "NOT_AVAILABLE"


def _check_canary(tx, rest_api_id: str, canary: dict[str, Any] | None) -> None:
    if not canary:
        return
    percent = canary.get("percentTraffic")
    if percent is not None and not 0.0 <= percent <= 100.0:
        raise BadRequestException("Canary traffic percentage must be between 0.0 and 100.0")
    if canary.get("deploymentId"):
        check_deployment(tx, rest_api_id, canary["deploymentId"])
    check_variables(canary.get("stageVariableOverrides"))


def new_stage(tx, rest_api_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """A new stage document from CreateStage-like input (checked; not saved)."""
    name = params["stageName"]
    if not _STAGE_NAME.match(name):
        raise BadRequestException("Stage name only allows a-zA-Z0-9_")
    if tx.get(SERVICE, KIND, stage_key(rest_api_id, name), parent=rest_api_id) is not None:
        raise ConflictException("Stage already exists")
    check_deployment(tx, rest_api_id, params.get("deploymentId"))
    check_variables(params.get("variables"))
    now = int(time.time())
    stage: dict[str, Any] = {
        "stageName": name,
        "deploymentId": params["deploymentId"],
        "cacheClusterEnabled": bool(params.get("cacheClusterEnabled", False)),
        "methodSettings": {},
        "tracingEnabled": bool(params.get("tracingEnabled", False)),
        "createdDate": now,
        "lastUpdatedDate": now,
    }
    copy_given(
        params, stage, ("description", "cacheClusterSize", "variables", "documentationVersion", "tags")
    )
    if params.get("canarySettings"):
        canary = dict(params["canarySettings"])
        canary.setdefault("percentTraffic", 0.0)
        canary.setdefault("deploymentId", stage["deploymentId"])
        canary.setdefault("useStageCache", False)
        _check_canary(tx, rest_api_id, canary)
        stage["canarySettings"] = canary
    _cache(stage)
    return stage


@operation(SERVICE, "CreateStage")
def create_stage(request: AdminRequest, params: dict) -> dict:
    rest_api_id = params["restApiId"]
    with request.store.transaction() as tx:
        load_rest_api(tx, rest_api_id)
        stage = new_stage(tx, rest_api_id, params)
        save_stage(tx, rest_api_id, stage)
        if stage.get("tags"):
            arn = stage_arn(request.region, rest_api_id, stage["stageName"])
            tx.put(SERVICE, "tags", arn, {"tags": stage["tags"]})
    return stage


@operation(SERVICE, "GetStage")
def get_stage(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        return load_stage(tx, params["restApiId"], params["stageName"])


@operation(SERVICE, "GetStages")
def get_stages(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        load_rest_api(tx, params["restApiId"])
        stages = tx.list(SERVICE, KIND, params["restApiId"])
    if params.get("deploymentId"):
        stages = [s for s in stages if s.get("deploymentId") == params["deploymentId"]]
    return {"item": stages}


@operation(SERVICE, "DeleteStage")
def delete_stage(request: AdminRequest, params: dict) -> None:
    with request.store.transaction() as tx:
        stage = load_stage(tx, params["restApiId"], params["stageName"])
        tx.delete(SERVICE, KIND, stage_key(params["restApiId"], stage["stageName"]))
        tx.delete(SERVICE, "tags", stage_arn(request.region, params["restApiId"], stage["stageName"]))


@operation(SERVICE, "FlushStageCache")
def flush_stage_cache(request: AdminRequest, params: dict) -> None:
    # The stage's cache epoch moves (a new store generation): every worker reloads and serves the
    # stage from an empty cache.
    rest_api_id = params["restApiId"]
    with request.store.transaction() as tx:
        stage = load_stage(tx, rest_api_id, params["stageName"])
        stage["_cacheEpoch"] = int(stage.get("_cacheEpoch") or 0) + 1
        tx.put(SERVICE, KIND, stage_key(rest_api_id, stage["stageName"]), stage, parent=rest_api_id)


@operation(SERVICE, "FlushStageAuthorizersCache")
def flush_stage_authorizers_cache(request: AdminRequest, params: dict) -> None:
    # The stage's authorizer-cache epoch moves (a new store generation): the data plane's workers
    # reload and start the stage's Lambda authorizers with empty caches.
    rest_api_id = params["restApiId"]
    with request.store.transaction() as tx:
        stage = load_stage(tx, rest_api_id, params["stageName"])
        stage["_authorizersCacheEpoch"] = int(stage.get("_authorizersCacheEpoch") or 0) + 1
        tx.put(SERVICE, KIND, stage_key(rest_api_id, stage["stageName"]), stage, parent=rest_api_id)


# -- UpdateStage --------------------------------------------------------------------------------


def _invalid(path: str, op: str) -> BadRequestException:
    patterns = STAGE_PATHS.get(op, ())
    return BadRequestException(
        f"Invalid patch path  '{path}' specified for op '{op}'. Must be one of: [{', '.join(patterns)}]"
    )


def _coerce_setting(member: str, value: Any, path: str) -> Any:
    shape = get_service(SERVICE).shape("MethodSetting").members[member]
    text = "" if value is None else str(value)
    try:
        if shape.type_name == "boolean":
            if text.lower() not in ("true", "false"):
                raise ValueError(text)
            return text.lower() == "true"
        if shape.type_name == "integer":
            return int(text)
        if shape.type_name == "double":
            return float(text)
    except ValueError:
        raise BadRequestException(
            f"Invalid value '{text}' for path '{path}': expected {shape.type_name}"
        ) from None
    enum = getattr(shape, "enum", None)
    if member == "loggingLevel":
        enum = ["OFF", "ERROR", "INFO"]
    if enum and text not in enum:
        raise BadRequestException(
            f"Invalid value '{text}' for path '{path}'. Must be one of: [{', '.join(enum)}]"
        )
    return text


def _method_setting_key(segments: list[str]) -> str | None:
    resource, verb = segments[0], segments[1]
    if verb != "*" and verb not in _HTTP_METHODS:
        return None
    if resource == "*" and verb == "*":
        return "*/*"
    if resource.startswith("/") and verb != "*":
        return resource[1:] + "/" + verb
    return None


def _apply_method_setting(stage: dict[str, Any], op: str, path: str, value: Any) -> bool:
    """Apply a method-settings op; False if `path` is no method-settings path."""
    try:
        segments = split_pointer(path)
    except ValueError:
        return False
    if len(segments) not in (2, 4):
        return False
    key = _method_setting_key(segments)
    if key is None:
        return False
    settings = stage.setdefault("methodSettings", {})
    if len(segments) == 2:
        if op != "remove":
            raise _invalid(path, op)
        settings.pop(key, None)
        return True
    member = METHOD_SETTINGS.get((segments[2], segments[3]))
    if member is None:
        return False
    if op not in ("replace", "add", "remove"):
        raise _invalid(path, op)
    if key not in settings:
        settings[key] = dict(settings.get("*/*", METHOD_SETTING_DEFAULTS))
        # Only GET methods are cached when caching is enabled stage-wide: another method's own
        # settings start with caching off.
        if segments[1] != "GET":
            settings[key]["cachingEnabled"] = False
    if op == "remove":
        settings[key][member] = settings.get("*/*", METHOD_SETTING_DEFAULTS).get(member)
    else:
        settings[key][member] = _coerce_setting(member, value, path)
    if member == "cacheTtlInSeconds" and not 0 <= settings[key][member] <= 3600:
        raise BadRequestException("Cache ttl must be between 0 and 3600 seconds")
    return True


def apply_stage_patch(tx, rest_api_id: str, stage: dict[str, Any], operations) -> dict[str, Any]:
    shape = get_service(SERVICE).shape("Stage")
    for operation_ in operations or ():
        op, path = operation_.get("op"), operation_.get("path")
        if op == "copy":
            source = operation_.get("from")
            canary = stage.get("canarySettings")
            if path == "/deploymentId" and source == "/canarySettings/deploymentId":
                if not canary or not canary.get("deploymentId"):
                    raise BadRequestException("Promotion not available. Canary does not exist.")
                stage["deploymentId"] = canary["deploymentId"]
            elif path == "/variables" and source == "/canarySettings/stageVariableOverrides":
                if not canary:
                    raise BadRequestException("Promotion not available. Canary does not exist.")
                stage["variables"] = {
                    **(stage.get("variables") or {}),
                    **(canary.get("stageVariableOverrides") or {}),
                }
            else:
                raise _invalid(str(path), "copy")
            continue
        is_setting = isinstance(path, str) and op in ("replace", "add", "remove")
        if is_setting and _apply_method_setting(stage, op, path, operation_.get("value")):
            continue
        before_canary = stage.get("canarySettings")
        stage = apply_patch(stage, [operation_], shape, STAGE_PATHS)
        if path in ("/cacheClusterEnabled", "/cacheClusterSize"):
            _cache(stage)
        if path == "/deploymentId":
            check_deployment(tx, rest_api_id, stage.get("deploymentId"))
        if isinstance(path, str) and path.startswith("/canarySettings/") and op != "remove":
            canary = stage["canarySettings"]
            if before_canary is None:  # a canary made by patch starts from the stage's deployment
                canary.setdefault("deploymentId", stage["deploymentId"])
                canary.setdefault("percentTraffic", 0.0)
                canary.setdefault("useStageCache", False)
            _check_canary(tx, rest_api_id, canary)
        if isinstance(path, str) and path.startswith("/variables/"):
            check_variables(stage.get("variables"))
    return stage


@operation(SERVICE, "UpdateStage")
def update_stage(request: AdminRequest, params: dict) -> dict:
    rest_api_id = params["restApiId"]
    with request.store.transaction() as tx:
        stage = load_stage(tx, rest_api_id, params["stageName"])
        stage = apply_stage_patch(tx, rest_api_id, stage, params.get("patchOperations"))
        save_stage(tx, rest_api_id, stage)
    return stage
