"""Compiling the admin API's deployments: deployed stages in the store -> the spec that serves them.

The admin API writes documents (see the storage contract in `portico.control.store` and the
handler modules); this module reads them and builds, for every stage that points at a deployment,
the same spec entries `portico.compile.files` builds for a config file. Only deployments are
served, never the API's current working copy: a stage serves the `_snapshot` its deployment
captured, exactly as API Gateway serves what was deployed.

- apigatewayv2 HTTP APIs (kind "http"): routes and integrations of the deployment snapshot;
  AWS_PROXY (payload 1.0/2.0) and HTTP_PROXY integrations; stage variables; DefaultRouteSettings /
  RouteSettings throttling; the API's CorsConfiguration as deployed.
- apigateway REST APIs (kind "rest"): every resource path + method of the snapshot is a route
  `METHOD /path` (`ANY` and a greedy `{proxy+}` resource included); AWS_PROXY (REST 1.0 events),
  HTTP_PROXY (with its requestParameters), and the non-proxy `HTTP`, `AWS` (Lambda) and `MOCK`
  integrations with their request parameters and templates, integration responses and the
  method's responses (served by the core's mapping, docs/pipeline.md); stage
  variables; methodSettings throttling (`*/*` and `path/METHOD`); canarySettings; the stage
  cache (`cacheClusterEnabled`, `cacheClusterSize`, methodSettings `caching/*`, integrations'
  `cacheKeyParameters` and `cacheNamespace`; FlushStageCache moves the stage's cache epoch).

Anything that cannot be served (an unsupported integration type, a route without integration)
becomes a route answering 500 with a log line naming it, never a failed reload. A function that is
not registered is looked up at call time: the route answers 500 and logs how to register it.

Deployment snapshots are immutable, so their compiled routes are cached across rebuilds
(`StoreSource`): a reload recompiles only what changed.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from portico import _core
from portico.compile import method_settings
from portico.compile import spec as S
from portico.compile.files import (
    CompiledConfig,
    assemble,
    compile_file_api_keys,
    compile_file_apis,
    deployment_id_of,
)
from portico.compile.lambda_authorizers import (
    http_lambda_authorizer,
    rest_lambda_authorizer,
    warn_unregistered,
    websocket_lambda_authorizer,
)
from portico.compile.usage_plans import file_usage_plans, load_durable_usage, store_usage_plans
from portico.config.models import (
    Config,
    gateway_response_parameter_problem,
    is_websocket_route_key,
    parse_cache_key_parameter,
    parse_method_parameter,
    user_pool_issuer,
    validate_issuer_url,
    validate_route_key,
)
from portico.config.parameter_mapping import applies_to, http_mapping_problems
from portico.control.store import Store
from portico.dataplane.app import SourceUnavailable
from portico.integrations.functions import FunctionRegistry, parse_function_uri

__all__ = ["StoreSource", "load_store_api_keys", "load_store_apis"]

log = logging.getLogger("portico.compile")

V2 = "apigatewayv2"
V1 = "apigateway"
_DEFAULT_HTTP_TIMEOUT_MS = 30000
_DEFAULT_REST_TIMEOUT_MS = 29000


@dataclass(slots=True)
class _Deployed:
    """The routes of one deployment, compiled; and its CORS (HTTP APIs deploy it with the API).
    REST APIs' deployments also freeze the API-wide settings AWS applies only once deployed
    ("Updates to REST APIs that require redeployment": the RestApi, its resource policy
    included, and its gateway responses)."""

    routes: list[S.RouteSpec]
    cors: S.CorsSpec | None = None
    api_key_source: str = "HEADER"
    policy: dict | str | None = None
    gateway_responses: list[S.GatewayResponseSpec] | None = None
    # The models its validated methods may use (none when no method validates its body).
    models: list[S.ModelSpec] | None = None

    @property
    def keys(self) -> list[str]:
        return [r["key"] for r in self.routes]


# ----------------------------------------------------------------------------------------------
# Helpers


_throttle = method_settings.throttle


def _lambda(
    uri: str,
    payload: str,
    timeout_ms: int,
    registry: FunctionRegistry,
    where: str,
    transfer_mode: S.TransferMode = "BUFFERED",
    mappings: dict[str, Any] | None = None,
) -> S.IntegrationSpec:
    if "${stageVariables." not in uri:
        name = parse_function_uri(uri).name
        if name not in registry:
            log.warning(
                "%s: Lambda function %r is not registered; the route answers 500 until it is "
                "(--function %s=module:attribute)",
                where,
                name,
                name,
            )
    return S.lambda_proxy(uri, payload, timeout_ms, transfer_mode, **(mappings or {}))


def _target(route: dict[str, Any], integrations: dict[str, Any]) -> dict[str, Any] | None:
    """An apigatewayv2 route's integration: its `Target` is `integrations/{IntegrationId}`."""
    target = route.get("Target") or ""
    prefix = "integrations/"
    return integrations.get(target[len(prefix) :]) if target.startswith(prefix) else None


def _timeout(value: Any, default: int) -> int:
    return int(value) if isinstance(value, int | float) and value > 0 else default


def _iam_auth(authorization_type: Any) -> S.RouteAuthSpec | None:
    """The authorization of an HTTP API's `AWS_IAM` route (None for any other type)."""
    return S.route_auth("AWS_IAM") if authorization_type == "AWS_IAM" else None


def _valid_key(key: str, where: str) -> bool:
    try:
        validate_route_key(key)
    except ValueError as exc:
        log.warning("%s: not served: %s", where, exc)
        return False
    return True


def _cors(api: dict[str, Any]) -> S.CorsSpec | None:
    config = api.get("CorsConfiguration")
    if not config:
        return None
    return S.cors(
        config.get("AllowOrigins") or [],
        config.get("AllowMethods") or [],
        config.get("AllowHeaders") or [],
        config.get("ExposeHeaders") or [],
        config.get("MaxAge"),
        bool(config.get("AllowCredentials")),
    )


def _cache_key(integration: dict[str, Any], where: str) -> list[S.CacheKeyParameterSpec]:
    """An integration's `cacheKeyParameters` (one the core cannot read is left out, with a warning)."""
    out: list[S.CacheKeyParameterSpec] = []
    for parameter in integration.get("cacheKeyParameters") or ():
        try:
            location, name = parse_cache_key_parameter(parameter)
        except ValueError as exc:
            log.warning("%s: %s; left out of the cache key", where, exc)
            continue
        out.append(S.cache_key_parameter(location, name))  # type: ignore[arg-type]
    return out


_LAMBDA_PATH = ":lambda:path/"


def _content_handling(value: Any) -> S.ContentHandling | None:
    """REST APIs' `contentHandling`, WebSocket APIs' `ContentHandlingStrategy` (anything else: none)."""
    if value == "CONVERT_TO_TEXT" or value == "CONVERT_TO_BINARY":
        return value
    return None


def _strings(value: Any) -> dict[str, str]:
    """A stored string map (`requestParameters`, `responseTemplates`...): its string entries."""
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def _status(value: Any) -> int | None:
    text = str(value or "")
    return int(text) if text.isdigit() else None


def _rest_non_proxy(
    integration: dict[str, Any], method: dict[str, Any], backend: S.BackendSpec
) -> S.NonProxySpec:
    """A REST `HTTP`, `AWS` or `MOCK` integration with its integration responses and the method's
    responses (each response's declared headers: its `method.response.header.NAME` keys)."""
    responses = []
    for code, response in (integration.get("integrationResponses") or {}).items():
        status = _status(response.get("statusCode") or code)
        if status is None:
            continue
        responses.append(
            S.integration_response(
                status,
                response.get("selectionPattern") or None,
                _strings(response.get("responseParameters")),
                _strings(response.get("responseTemplates")),
                _content_handling(response.get("contentHandling")),
            )
        )
    method_responses = []
    for code, response in (method.get("methodResponses") or {}).items():
        status = _status(response.get("statusCode") or code)
        if status is None:
            continue
        prefix = "method.response.header."
        declared = [
            k[len(prefix) :] for k in (response.get("responseParameters") or {}) if k.startswith(prefix)
        ]
        method_responses.append(S.method_response(status, declared))
    passthrough = integration.get("passthroughBehavior")
    return S.non_proxy(
        backend,
        request_parameters=_strings(integration.get("requestParameters")),
        request_templates=_strings(integration.get("requestTemplates")),
        passthrough=passthrough if passthrough in ("WHEN_NO_TEMPLATES", "NEVER") else "WHEN_NO_MATCH",
        content_handling=_content_handling(integration.get("contentHandling")),
        responses=responses,
        method_responses=method_responses,
    )


def _http_mappings(integration: dict[str, Any]) -> dict[str, Any]:
    """An HTTP API integration's parameter mapping for the spec builders. One the admin API would
    refuse (stored before it checked them) makes the route answer 500 rather than being served
    without it: a mapping left out could forward what it was meant to remove."""
    if not applies_to(integration.get("IntegrationType"), integration.get("IntegrationSubtype")):
        return {}
    request = integration.get("RequestParameters") or None
    response = integration.get("ResponseParameters") or None
    for where, problem in http_mapping_problems(request, response):
        raise ValueError(f"{where}: {problem}")
    return {"request_parameters": request, "response_parameters": response}


# ----------------------------------------------------------------------------------------------
# The compiler


class _Builder:
    """One rebuild: reads the store in one read transaction, reuses cached deployments."""

    def __init__(
        self,
        registry: FunctionRegistry,
        cache: dict[tuple[str, str, str], _Deployed] | None = None,
        pool_issuers: dict[str, str] | None = None,
        stage_cache_bytes: int | None = None,
    ):
        self.registry = registry
        self.cache = cache if cache is not None else {}
        self.used: set[tuple[str, str, str]] = set()
        # settings.cognitoUserPoolIssuers: user pool ARN -> the issuer standing in for it.
        self.pool_issuers = pool_issuers or {}
        # settings.stageCacheBytes: what bounds every stage cache below its cacheClusterSize.
        self.stage_cache_bytes = stage_cache_bytes

    def _cached(
        self,
        service: str,
        api_id: str,
        deployment: dict[str, Any],
        build: Callable[[dict[str, Any]], _Deployed],
    ) -> _Deployed:
        key = (service, api_id, deployment.get("DeploymentId") or deployment.get("id") or "")
        self.used.add(key)
        found = self.cache.get(key)
        if found is None:
            found = self.cache[key] = build(deployment.get("_snapshot") or {})
        return found

    # -- apigatewayv2 HTTP APIs -------------------------------------------------------------------

    def http_api(self, tx: Any, api: dict[str, Any]) -> S.ApiSpec | None:
        api_id = api["ApiId"]
        protocol = api.get("ProtocolType", "HTTP")
        if protocol not in ("HTTP", "WEBSOCKET"):
            return None
        websocket = protocol == "WEBSOCKET"
        build_routes = self._websocket_routes if websocket else self._http_routes
        if api.get("DisableExecuteApiEndpoint"):
            log.info("API %s: the default endpoint is disabled; not served", api_id)
            return None
        stages: list[S.StageSpec] = []
        first_cors = None
        for stage in tx.list(V2, "stage", api_id):
            name = stage.get("StageName")
            deployment_id = stage.get("DeploymentId")
            if not name or not deployment_id:
                continue
            deployment = tx.get(V2, "deployment", deployment_id, parent=api_id)
            if deployment is None:
                log.warning(
                    "API %s stage %s: deployment %s not found; stage not served", api_id, name, deployment_id
                )
                continue
            deployed = self._cached(V2, api_id, deployment, lambda snap: build_routes(api_id, snap))
            default = stage.get("DefaultRouteSettings") or {}
            keys = set(deployed.keys)
            per_route = {}
            for route_key, settings in (stage.get("RouteSettings") or {}).items():
                throttle = _throttle(
                    settings.get("ThrottlingRateLimit"), settings.get("ThrottlingBurstLimit")
                )
                if throttle is not None and route_key in keys:
                    per_route[route_key] = throttle
            log_settings = stage.get("AccessLogSettings") or {}
            access_log = None
            if log_settings.get("Format") and _local_destination(log_settings.get("DestinationArn")):
                access_log = S.access_log(log_settings["Format"], log_settings["DestinationArn"])
            if not stages:
                first_cors = deployed.cors
            stages.append(
                S.stage(
                    name,
                    deployment_id=deployment_id,
                    variables=dict(stage.get("StageVariables") or {}),
                    default_throttle=_throttle(
                        default.get("ThrottlingRateLimit"), default.get("ThrottlingBurstLimit")
                    ),
                    route_throttle=per_route,
                    routes=deployed.routes,
                    models=deployed.models,
                    cors=deployed.cors,
                    access_log=access_log,
                    authorizer_cache_epoch=int(stage.get("_authorizersCacheEpoch") or 0),
                )
            )
        if not stages:
            return None
        if websocket:
            return S.api(
                api_id,
                api.get("Name", api_id),
                "websocket",
                stages,
                route_selection_expression=api.get("RouteSelectionExpression") or "$request.body.action",
                api_key_source=(
                    "AUTHORIZER"
                    if api.get("ApiKeySelectionExpression") == "$context.authorizer.usageIdentifierKey"
                    else "HEADER"
                ),
            )
        return S.api(api_id, api.get("Name", api_id), "http", stages, cors=first_cors)

    def _http_routes(self, api_id: str, snap: dict[str, Any]) -> _Deployed:
        integrations = {i.get("IntegrationId"): i for i in snap.get("Integrations") or []}
        authorizers = {a.get("AuthorizerId"): a for a in snap.get("Authorizers") or []}
        routes: list[S.RouteSpec] = []
        seen: set[str] = set()
        for route in snap.get("Routes") or []:
            key = route.get("RouteKey") or ""
            where = f"API {api_id} route {key!r}"
            if not _valid_key(key, where) or key in seen:
                continue
            seen.add(key)
            integration = _target(route, integrations)
            if integration is None:
                spec = S.unavailable(f"{where} has no integration")
            else:
                spec = self._http_integration(integration, where)
            auth = (
                _http_jwt_auth(route, authorizers, where)
                or self._http_lambda_auth(route, authorizers, where)
                or _iam_auth(route.get("AuthorizationType"))
            )
            routes.append(S.route(key, spec, auth))
        return _Deployed(routes, _cors(snap.get("Api") or {}))

    def _websocket_routes(self, api_id: str, snap: dict[str, Any]) -> _Deployed:
        """A WebSocket API's deployed routes (docs/websocket.md): a route with a `$default` route
        response is two-way; `$connect` may be authorized (AWS_IAM, or CUSTOM: a Lambda REQUEST
        authorizer). What is not served (authorization of another route, an integration the core
        cannot compile) makes its route fail closed: `$connect` refuses the handshake, a message
        gets AWS's error frame."""
        integrations = {i.get("IntegrationId"): i for i in snap.get("Integrations") or []}
        authorizers = {a.get("AuthorizerId"): a for a in snap.get("Authorizers") or []}
        responses = snap.get("RouteResponses") or []
        two_way = {r.get("RouteId") for r in responses if r.get("RouteResponseKey") == "$default"}
        routes: list[S.RouteSpec] = []
        seen: set[str] = set()
        for route in snap.get("Routes") or []:
            key = route.get("RouteKey") or ""
            where = f"API {api_id} route {key!r}"
            if not is_websocket_route_key(key) or key in seen:
                log.warning("%s: not served: not a WebSocket route key, or a duplicate", where)
                continue
            seen.add(key)
            integration = _target(route, integrations)
            spec: S.IntegrationSpec
            authorization = route.get("AuthorizationType") or "NONE"
            authorized_connect = key == "$connect" and authorization in ("AWS_IAM", "CUSTOM")
            if authorization != "NONE" and not authorized_connect:
                log.warning("%s: WebSocket APIs authorize $connect only; %s refused", where, authorization)
                spec = S.unavailable(f"{where}: WebSocket APIs authorize $connect only")
            elif integration is None:
                spec = S.unavailable(f"{where} has no integration")
            else:
                spec = self._websocket_integration(api_id, key, integration, snap, where)
            auth = self._websocket_connect_auth(route, authorizers, where) if authorized_connect else None
            if route.get("ApiKeyRequired"):
                if key == "$connect":
                    auth = auth or S.route_auth("NONE")
                    auth["api_key_required"] = True
                else:
                    # Messages carry no key: only the handshake can present one.
                    log.warning("%s: only $connect can require an API key; refused", where)
                    spec = S.unavailable(f"{where}: only $connect can require an API key")
            validation = None
            if route.get("ModelSelectionExpression"):
                # "Request validation for WebSocket APIs": every message is checked.
                validation = S.route_validation(
                    body=_strings(route.get("RequestModels")),
                    model_selection=route["ModelSelectionExpression"],
                )
            routes.append(
                S.route(key, spec, auth, validation=validation, two_way=route.get("RouteId") in two_way)
            )
        validated = any(_validates_body(r) for r in routes)
        models = _models(snap.get("Models") or (), "Name", "Schema") if validated else None
        return _Deployed(routes, models=models)

    def _websocket_connect_auth(
        self, route: dict[str, Any], authorizers: dict[str, dict[str, Any]], where: str
    ) -> S.RouteAuthSpec:
        """`$connect`'s AWS_IAM or CUSTOM authorization (a Lambda REQUEST authorizer; an unknown
        one refuses every handshake with 500, never lets it in)."""
        if route.get("AuthorizationType") == "AWS_IAM":
            return S.route_auth("AWS_IAM")
        doc = authorizers.get(route.get("AuthorizerId"))
        authorizer = websocket_lambda_authorizer(doc) if doc else None
        return self._custom_auth(authorizer, where, "no Lambda REQUEST authorizer; handshakes answer 500")

    def _websocket_integration(
        self, api_id: str, key: str, integration: dict[str, Any], snap: dict[str, Any], where: str
    ) -> S.IntegrationSpec:
        """A WebSocket route's integration (docs/websocket.md): `AWS_PROXY`, or `HTTP_PROXY`,
        `HTTP`, `AWS` (Lambda) and `MOCK` with their integration responses. One the core cannot
        compile makes its route fail closed, and the log says why."""
        kind = integration.get("IntegrationType")
        timeout_ms = _timeout(integration.get("TimeoutInMillis"), _DEFAULT_HTTP_TIMEOUT_MS)
        uri = integration.get("IntegrationUri") or ""
        if kind == "AWS_PROXY":
            if integration.get("ContentHandlingStrategy"):
                log.warning(
                    "%s: ContentHandlingStrategy is not applied to AWS_PROXY (its event carries the "
                    "message as text)",
                    where,
                )
            return _lambda(uri, "1.0", timeout_ms, self.registry, where)
        integration_id = integration.get("IntegrationId")
        responses = [
            S.websocket_response(
                str(response.get("IntegrationResponseKey") or ""),
                _strings(response.get("ResponseTemplates")),
                response.get("TemplateSelectionExpression") or None,
                _content_handling(response.get("ContentHandlingStrategy")),
            )
            for response in snap.get("IntegrationResponses") or []
            if response.get("IntegrationId") == integration_id
        ]
        try:
            backend: S.BackendSpec
            if kind in ("HTTP", "HTTP_PROXY"):
                if not re.match(r"^https?://", uri, re.IGNORECASE):
                    raise ValueError(f"{kind} uri must be an absolute http(s) URL: {uri!r}")
                backend = S.http_backend(uri, integration.get("IntegrationMethod"), timeout_ms)
            elif kind == "AWS":
                if _LAMBDA_PATH not in uri:
                    raise ValueError(f"AWS integrations other than Lambda's are not supported: {uri!r}")
                _lambda(uri, "1.0", timeout_ms, self.registry, where)  # warns of an unregistered one
                backend = S.lambda_backend(uri, timeout_ms)
            elif kind == "MOCK":
                backend = S.mock_backend()
            else:
                raise ValueError(f"integration type {kind} is not supported")
            passthrough = integration.get("PassthroughBehavior")
            spec = S.websocket_integration(
                backend,
                proxy=kind == "HTTP_PROXY",
                request_parameters=_strings(integration.get("RequestParameters")),
                request_templates=_strings(integration.get("RequestTemplates")),
                template_selection=integration.get("TemplateSelectionExpression") or None,
                passthrough=passthrough if passthrough in ("WHEN_NO_TEMPLATES", "NEVER") else "WHEN_NO_MATCH",
                content_handling=_content_handling(integration.get("ContentHandlingStrategy")),
                responses=responses,
            )
            problem = _core.integration_problem(S.dumps(spec), key, api_id)  # type: ignore[arg-type]
            if problem:
                raise ValueError(problem)
            return spec
        except ValueError as exc:
            log.warning("%s: %s; the route fails closed", where, exc)
            return S.unavailable(f"{where}: {exc}")

    def _http_lambda_auth(
        self, route: dict[str, Any], authorizers: dict[str, dict[str, Any]], where: str
    ) -> S.RouteAuthSpec | None:
        """A CUSTOM route's Lambda authorizer (an unknown one: the route answers 500, never open)."""
        if route.get("AuthorizationType") != "CUSTOM":
            return None
        doc = authorizers.get(route.get("AuthorizerId"))
        authorizer = http_lambda_authorizer(doc) if doc else None
        return self._custom_auth(authorizer, where, "no Lambda authorizer; the route answers 500")

    def _custom_auth(
        self, authorizer: S.LambdaAuthorizerSpec | None, where: str, missing: str
    ) -> S.RouteAuthSpec:
        """A CUSTOM route's authorization: its Lambda authorizer, or none, which fails closed (the
        core answers 500 rather than let the request in)."""
        if authorizer is None:
            log.warning("%s: CUSTOM authorization names %s", where, missing)
        else:
            warn_unregistered(authorizer["uri"], self.registry, where)
        return S.route_auth("CUSTOM", authorizer)

    def _http_integration(self, integration: dict[str, Any], where: str) -> S.IntegrationSpec:
        kind = integration.get("IntegrationType")
        uri = integration.get("IntegrationUri") or ""
        timeout_ms = _timeout(integration.get("TimeoutInMillis"), _DEFAULT_HTTP_TIMEOUT_MS)
        try:
            if integration.get("ConnectionType") == "VPC_LINK":
                raise ValueError("private integrations (VPC_LINK) are not supported")
            mappings = _http_mappings(integration)
            if kind == "AWS_PROXY":
                payload = integration.get("PayloadFormatVersion") or "2.0"
                return _lambda(uri, payload, timeout_ms, self.registry, where, mappings=mappings)
            if kind == "HTTP_PROXY":
                if not re.match(r"^https?://", uri, re.IGNORECASE):
                    raise ValueError(f"HTTP_PROXY uri must be an absolute http(s) URL: {uri!r}")
                return S.http_proxy(
                    uri, integration.get("IntegrationMethod") or "ANY", timeout_ms, **mappings
                )
            raise ValueError(f"integration type {kind} is not supported for HTTP APIs")
        except ValueError as exc:
            log.warning("%s: %s; the route answers 500", where, exc)
            return S.unavailable(f"{where}: {exc}")

    # -- apigateway REST APIs ---------------------------------------------------------------------

    def rest_api(self, tx: Any, api: dict[str, Any]) -> S.ApiSpec | None:
        api_id = api["id"]
        if api.get("disableExecuteApiEndpoint"):
            log.info("REST API %s: the default endpoint is disabled; not served", api_id)
            return None
        stages: list[S.StageSpec] = []

        # The latest deployment any stage serves: its API-wide settings are the API's.
        latest: list[tuple[float, _Deployed]] = []

        def deployed_of(deployment_id: str | None, what: str) -> tuple[str, _Deployed] | None:
            if not deployment_id:
                return None
            deployment = tx.get(V1, "deployment", deployment_id, parent=api_id)
            if deployment is None:
                log.warning("REST API %s %s: deployment %s not found", api_id, what, deployment_id)
                return None
            deployed = self._cached(V1, api_id, deployment, lambda snap: self._rest_routes(api_id, snap))
            when = float(deployment.get("_deployedAt") or deployment.get("createdDate") or 0)
            if not latest or when >= latest[0][0]:
                latest[:] = [(when, deployed)]
            return deployment_id, deployed

        for stage in tx.list(V1, "stage", api_id):
            name = stage.get("stageName")
            if not name:
                continue
            main = deployed_of(stage.get("deploymentId"), f"stage {name}")
            if main is None:
                continue
            deployment_id, deployed = main
            variables = dict(stage.get("variables") or {})
            method_setting_docs = stage.get("methodSettings") or {}
            default, per_route = method_settings.throttles(method_setting_docs, deployed.keys)
            canary_spec = None
            cached_keys = list(deployed.keys)
            settings = stage.get("canarySettings") or None
            if settings:
                canary = deployed_of(settings.get("deploymentId"), f"stage {name} canary")
                if canary is not None:
                    canary_id, canary_deployed = canary
                    overrides = settings.get("stageVariableOverrides") or {}
                    canary_spec = S.canary(
                        settings.get("percentTraffic") or 0.0,
                        canary_id,
                        {**variables, **overrides},
                        routes=canary_deployed.routes,
                        use_stage_cache=bool(settings.get("useStageCache")),
                        models=canary_deployed.models,
                    )
                    cached_keys += [k for k in canary_deployed.keys if k not in deployed.keys]
            stage_cache = None
            if stage.get("cacheClusterEnabled"):
                stage_cache = method_settings.stage_cache(
                    method_setting_docs,
                    cached_keys,
                    method_settings.cache_capacity_bytes(
                        stage.get("cacheClusterSize"), self.stage_cache_bytes
                    ),
                    int(stage.get("_cacheEpoch") or 0),
                )
            log_settings = stage.get("accessLogSettings") or {}
            access_log = None
            if log_settings.get("format") and _local_destination(log_settings.get("destinationArn")):
                access_log = S.access_log(log_settings["format"], log_settings["destinationArn"])
            stages.append(
                S.stage(
                    name,
                    deployment_id=deployment_id,
                    variables=variables,
                    default_throttle=default,
                    route_throttle=per_route,
                    routes=deployed.routes,
                    access_log=access_log,
                    canary=canary_spec,
                    authorizer_cache_epoch=int(stage.get("_authorizersCacheEpoch") or 0),
                    cache=stage_cache,
                    models=deployed.models,
                )
            )
        if not stages:
            return None
        deployed_api = latest[0][1]
        return S.api(
            api_id,
            api.get("name", api_id),
            "rest",
            stages,
            binary_media_types=api.get("binaryMediaTypes") or (),
            api_key_source=deployed_api.api_key_source,  # type: ignore[arg-type]
            policy=deployed_api.policy,  # type: ignore[arg-type]
            gateway_responses=deployed_api.gateway_responses,
        )

    def _rest_routes(self, api_id: str, snap: dict[str, Any]) -> _Deployed:
        routes: list[S.RouteSpec] = []
        seen: set[str] = set()
        authorizers = {a.get("id"): a for a in snap.get("authorizers") or []}
        validators = {v.get("id"): v for v in snap.get("requestValidators") or []}
        for resource in snap.get("resources") or []:
            path = resource.get("path") or "/"
            for method, doc in (resource.get("resourceMethods") or {}).items():
                key = f"{method.upper()} {path}"
                where = f"REST API {api_id} {method.upper()} {path}"
                if not _valid_key(key, where) or key in seen:
                    continue
                seen.add(key)
                integration = doc.get("methodIntegration")
                cache_key: list[S.CacheKeyParameterSpec] = []
                namespace = None
                if not integration:
                    spec = S.unavailable(f"{where} has no integration")
                else:
                    spec = self._rest_integration(integration, where, doc, key, api_id)
                    cache_key = _cache_key(integration, where)
                    # AWS's default namespace is the resource's id: a route's entries are its own.
                    given = integration.get("cacheNamespace")
                    namespace = given if given and given != resource.get("id") else None
                auth = self._rest_auth(doc, authorizers, where)
                validation = _validation(doc, validators, where)
                routes.append(
                    S.route(
                        key,
                        spec,
                        auth,
                        cache_key=cache_key,
                        cache_namespace=namespace,
                        validation=validation,
                    )
                )
        rest_api = snap.get("restApi") or {}
        source = rest_api.get("apiKeySource")
        return _Deployed(
            routes,
            api_key_source=source if source in ("HEADER", "AUTHORIZER") else "HEADER",
            policy=_policy(rest_api.get("policy"), api_id),
            gateway_responses=_gateway_responses(snap.get("gatewayResponses") or (), api_id),
            models=_models(snap.get("models") or ()) if any(_validates_body(r) for r in routes) else None,
        )

    def _rest_auth(
        self, method: dict[str, Any], authorizers: dict[str, dict[str, Any]], where: str
    ) -> S.RouteAuthSpec | None:
        """A method's authorization: `AWS_IAM` (SigV4 in the core), `COGNITO_USER_POOLS` (JWTs of
        its user pools, verified in the core), or `CUSTOM` with its Lambda authorizer (an unknown
        one: the method answers 500, never open); and `apiKeyRequired` (the key is checked in the
        core against the account's keys)."""
        api_key_required = bool(method.get("apiKeyRequired"))
        if method.get("authorizationType") == "AWS_IAM":
            return S.route_auth("AWS_IAM", api_key_required=api_key_required)
        if method.get("authorizationType") == "COGNITO_USER_POOLS":
            return self._cognito_auth(method, authorizers, where)
        if method.get("authorizationType") != "CUSTOM":
            return S.route_auth(api_key_required=True) if api_key_required else None
        doc = authorizers.get(method.get("authorizerId"))
        authorizer = rest_lambda_authorizer(doc) if doc else None
        if authorizer is None:
            log.warning("%s: CUSTOM authorization names no Lambda authorizer; the method answers 500", where)
        else:
            warn_unregistered(authorizer["uri"], self.registry, where)
        return S.route_auth("CUSTOM", authorizer, api_key_required=api_key_required)

    def _cognito_auth(
        self, method: dict[str, Any], authorizers: dict[str, dict[str, Any]], where: str
    ) -> S.RouteAuthSpec:
        """A COGNITO_USER_POOLS method: its authorizer's user pools as issuers, the method's
        scopes. A method whose authorizer cannot work keeps it, so that it answers 500 (never
        open)."""
        authorizer = authorizers.get(method.get("authorizerId") or "")
        spec = None
        if authorizer is None or authorizer.get("type") != "COGNITO_USER_POOLS":
            log.warning(
                "%s: no COGNITO_USER_POOLS authorizer %r; the method answers 500",
                where,
                method.get("authorizerId"),
            )
        else:
            issuers = []
            for arn in authorizer.get("providerARNs") or []:
                try:
                    issuers.append(validate_issuer_url(user_pool_issuer(arn, self.pool_issuers)))
                except ValueError as exc:
                    log.warning(
                        "%s: authorizer %s: %s; the method answers 500", where, authorizer.get("id"), exc
                    )
            if issuers:
                spec = S.cognito_authorizer(
                    authorizer["id"],
                    issuers,
                    authorizer.get("identitySource") or "method.request.header.Authorization",
                    int(authorizer.get("authorizerResultTtlInSeconds", 300) or 0),
                    name=authorizer.get("name") or "",
                )
        return S.route_auth(
            "COGNITO_USER_POOLS",
            spec,
            scopes=method.get("authorizationScopes") or [],
            api_key_required=bool(method.get("apiKeyRequired")),
        )

    def _rest_integration(
        self,
        integration: dict[str, Any],
        where: str,
        method: dict[str, Any] | None = None,
        key: str = "",
        api_id: str = "",
    ) -> S.IntegrationSpec:
        kind = integration.get("type")
        uri = integration.get("uri") or ""
        timeout_ms = _timeout(integration.get("timeoutInMillis"), _DEFAULT_REST_TIMEOUT_MS)
        # Only proxy integrations stream (the admin API refuses STREAM on any other).
        mode: S.TransferMode = "STREAM" if integration.get("responseTransferMode") == "STREAM" else "BUFFERED"
        spec: S.IntegrationSpec
        try:
            if kind == "AWS_PROXY":
                return _lambda(uri, "1.0", timeout_ms, self.registry, where, mode)
            if kind == "HTTP_PROXY":
                if not re.match(r"^https?://", uri, re.IGNORECASE):
                    raise ValueError(f"HTTP_PROXY uri must be an absolute http(s) URL: {uri!r}")
                parameters = _strings(integration.get("requestParameters"))
                method_name = integration.get("httpMethod") or "ANY"
                spec = S.http_proxy(uri, method_name, timeout_ms, mode, request_parameters=parameters)
            elif kind == "HTTP":
                if not re.match(r"^https?://", uri, re.IGNORECASE):
                    raise ValueError(f"HTTP uri must be an absolute http(s) URL: {uri!r}")
                backend: S.BackendSpec = S.http_backend(uri, integration.get("httpMethod"), timeout_ms)
                spec = _rest_non_proxy(integration, method or {}, backend)
            elif kind == "AWS":
                if _LAMBDA_PATH not in uri:
                    raise ValueError(f"AWS integrations other than Lambda's are not supported: {uri!r}")
                _lambda(uri, "1.0", timeout_ms, self.registry, where)  # warns of an unregistered one
                spec = _rest_non_proxy(integration, method or {}, S.lambda_backend(uri, timeout_ms))
            elif kind == "MOCK":
                spec = _rest_non_proxy(integration, method or {}, S.mock_backend())
            else:
                raise ValueError(f"integration type {kind} is not supported")
            # What the core would refuse (a mapping expression, a selectionPattern it cannot
            # translate): this route answers 500, the rest of the deployment is served.
            problem = _core.integration_problem(S.dumps(spec), key or "GET /", api_id or "api")  # type: ignore[arg-type]
            if problem:
                raise ValueError(problem)
            return spec
        except ValueError as exc:
            log.warning("%s: %s; the route answers 500", where, exc)
            return S.unavailable(f"{where}: {exc}")


def _http_jwt_auth(
    route: dict[str, Any], authorizers: dict[str, dict[str, Any]], where: str
) -> S.RouteAuthSpec | None:
    """A JWT route of an HTTP API: its authorizer (issuer, audiences, identity source) and scopes.
    A route whose authorizer cannot work keeps it, so that it answers 500 (never open)."""
    if route.get("AuthorizationType") != "JWT":
        return None
    authorizer = authorizers.get(route.get("AuthorizerId") or "")
    spec = None
    jwt = (authorizer or {}).get("JwtConfiguration") or {}
    sources = (authorizer or {}).get("IdentitySource") or []
    if authorizer is None or authorizer.get("AuthorizerType") != "JWT":
        log.warning("%s: no JWT authorizer %r; the route answers 500", where, route.get("AuthorizerId"))
    else:
        try:
            issuer = validate_issuer_url(jwt.get("Issuer") or "")
        except ValueError as exc:
            log.warning(
                "%s: authorizer %s: %s; the route answers 500", where, authorizer["AuthorizerId"], exc
            )
        else:
            spec = S.jwt_authorizer(
                authorizer["AuthorizerId"],
                issuer,
                jwt.get("Audience") or [],
                sources[0] if sources else "$request.header.Authorization",
                name=authorizer.get("Name") or "",
            )
    return S.route_auth("JWT", spec, scopes=route.get("AuthorizationScopes") or [])


def _validation(
    method: dict[str, Any], validators: dict[str, dict[str, Any]], where: str
) -> S.RouteValidationSpec | None:
    """A method's request validation: its `requestValidatorId`'s flags applied to its
    `requestParameters` (those set to true are required) and `requestModels`. A validator the
    deployment lacks validates nothing (AWS refuses to store such a method)."""
    validator_id = method.get("requestValidatorId")
    if not validator_id:
        return None
    validator = validators.get(validator_id)
    if validator is None:
        log.warning(
            "%s: request validator %s not in the deployment; requests are not validated", where, validator_id
        )
        return None
    parameters: list[S.RequiredParameterSpec] = []
    if validator.get("validateRequestParameters"):
        for key, required in (method.get("requestParameters") or {}).items():
            found = parse_method_parameter(key)
            if found is None:
                log.warning("%s: %r is not a method request parameter; not validated", where, key)
            elif required is True:
                parameters.append(S.required_parameter(*found))  # type: ignore[arg-type]
    body = dict(method.get("requestModels") or {}) if validator.get("validateRequestBody") else None
    if not parameters and body is None:
        return None
    return S.route_validation(parameters, body)


def _validates_body(route: S.RouteSpec) -> bool:
    validation = route.get("validation")
    return validation is not None and validation["body"] is not None


def _models(docs: Iterable[dict[str, Any]], name: str = "name", schema: str = "schema") -> list[S.ModelSpec]:
    """A deployment's models (their schemas' JSON text, as stored): `name` and `schema` are
    apigateway's members, `Name` and `Schema` apigatewayv2's."""
    return [
        S.model(doc[name], doc[schema])
        for doc in docs
        if isinstance(doc.get(name), str) and isinstance(doc.get(schema), str)
    ]


def _policy(policy: Any, api_id: str) -> dict | str | None:
    """A REST API's resource policy (stored as JSON text, as AWS returns it). Text that is not
    JSON is handed on as it is: the core then refuses every request of the API (a policy that
    cannot be read is never skipped)."""
    if policy in (None, ""):
        return None
    if isinstance(policy, dict):
        return policy
    try:
        parsed = json.loads(policy)
    except (TypeError, ValueError):
        log.warning("REST API %s: its resource policy is not JSON; every request is refused", api_id)
        return str(policy)
    return parsed if isinstance(parsed, dict) else str(policy)


def _gateway_responses(docs: Iterable[dict[str, Any]], api_id: str) -> list[S.GatewayResponseSpec]:
    """A deployment's customised gateway responses, as the core applies them. A mapping the core
    cannot serve (stored before the admin API checked them) is left out with a warning rather
    than failing the whole reload."""
    out = []
    for doc in docs:
        response_type = doc.get("responseType") or ""
        status = doc.get("statusCode")
        headers = {}
        for key, value in (doc.get("responseParameters") or {}).items():
            problem = gateway_response_parameter_problem(key, value)
            if problem:
                log.warning("REST API %s gateway response %s: %s; left out", api_id, response_type, problem)
                continue
            headers[key] = value
        out.append(
            S.gateway_response(
                response_type,
                int(status) if isinstance(status, str | int) and str(status).isdigit() else None,
                headers,
                {
                    content_type: template
                    for content_type, template in (doc.get("responseTemplates") or {}).items()
                    if isinstance(template, str) and _visible_ascii(content_type)
                },
            )
        )
    return out


def _visible_ascii(text: Any) -> bool:
    return isinstance(text, str) and bool(text.strip()) and all(32 <= ord(c) < 127 for c in text)


def load_store_api_keys(store: Store, taken_values: Iterable[str] = ()) -> list[S.ApiKeySpec]:
    """The account's API keys for the core: each key's SHA-256 (never its value), whether it is
    enabled, and the `apiId/stage` of every usage plan holding it. Read at every reload, so that
    a key created, disabled, added to or removed from a plan, or deleted, applies at once, as on
    AWS, without a redeployment. A key whose value is one of `taken_values` (the config file's
    own) is left out: values are unique."""
    taken = {S.api_key_digest(value) for value in taken_values}
    out: list[S.ApiKeySpec] = []
    with store.read() as tx:
        plans = {plan["id"]: plan for plan in tx.list(V1, "usageplan")}
        stages_of: dict[str, set[str]] = {}
        for plan_id, plan in plans.items():
            bound = {f"{s.get('apiId')}/{s.get('stage')}" for s in plan.get("apiStages") or ()}
            for plan_key in tx.list(V1, "usageplankey", plan_id):
                stages_of.setdefault(plan_key.get("id") or "", set()).update(bound)
        for key in tx.list(V1, "apikey"):
            value = key.get("value")
            if not key.get("id") or not isinstance(value, str) or not value:
                continue
            spec = S.api_key(key["id"], value, sorted(stages_of.get(key["id"], ())), bool(key.get("enabled")))
            if spec["value_sha256"] in taken:
                log.warning("API key %s has the value of a key of the config file: not served", key["id"])
                continue
            taken.add(spec["value_sha256"])
            out.append(spec)
    return out


def _local_destination(destination: Any) -> bool:
    """Access logs Portico can write: a file path, `stdout` or `stderr` (a CloudWatch Logs ARN
    names a destination outside this machine; such settings are kept but not written)."""
    return isinstance(destination, str) and bool(destination) and not destination.startswith("arn:")


# ----------------------------------------------------------------------------------------------
# Entry points


def load_store_apis(
    store: Store,
    registry: FunctionRegistry,
    *,
    skip_ids: Iterable[str] = (),
    cache: dict[tuple[str, str, str], _Deployed] | None = None,
    pool_issuers: dict[str, str] | None = None,
    stage_cache_bytes: int | None = None,
) -> list[S.ApiSpec]:
    """Every admin-created API with at least one deployed stage. `skip_ids`: ids served from the
    config file (an admin API with one of them is skipped with a warning)."""
    taken = {api_id.lower() for api_id in skip_ids}
    builder = _Builder(registry, cache, pool_issuers, stage_cache_bytes)
    out: list[S.ApiSpec] = []
    with store.read() as tx:
        candidates: list[tuple[str, dict[str, Any]]] = [(V2, api) for api in tx.list(V2, "api")]
        candidates += [(V1, api) for api in tx.list(V1, "restapi")]
        for service, api in candidates:
            api_id = api.get("ApiId") if service == V2 else api.get("id")
            if not api_id:
                continue
            if api_id.lower() in taken:
                log.warning("admin API %s has the id of an API of the config file: skipped", api_id)
                continue
            try:
                built = builder.http_api(tx, api) if service == V2 else builder.rest_api(tx, api)
            except sqlite3.Error:
                raise  # the store failed, not this API: never serve the others without it
            except Exception:  # one broken API must not stop the others from being served
                log.exception("API %s could not be built; not served", api_id)
                continue
            if built is not None:
                taken.add(api_id.lower())
                out.append(built)
    if cache is not None:
        for key in list(cache):
            if key not in builder.used:
                del cache[key]
    return out


class StoreSource:
    """A live data plane's `ReloadSource`: the config file's APIs (compiled once) plus the store's."""

    def __init__(
        self,
        store: Store,
        config: Config,
        registry: FunctionRegistry,
        file_apis: list[S.ApiSpec] | None = None,
        admin_key: tuple[str, str] | None = None,
    ) -> None:
        self.store = store
        self.admin_key = admin_key
        self.config = config
        self.registry = registry
        self.file_apis = file_apis if file_apis is not None else compile_file_apis(config, registry)
        self.file_api_keys = compile_file_api_keys(config)
        self._file_ids = [api["id"] for api in self.file_apis]
        self._deployment_id = deployment_id_of(config)
        self._cache: dict[tuple[str, str, str], _Deployed] = {}

    def generation(self) -> int:
        return self.store.generation()

    def build(self) -> CompiledConfig:
        try:
            # One snapshot for every read: a key bound to a stage by a plan the same build does not
            # see would be served without being counted (a change landing between two reads).
            with self.store.read():
                return self._build()
        except sqlite3.Error as exc:
            raise SourceUnavailable(f"the store cannot be read: {exc}") from exc

    def _build(self) -> CompiledConfig:
        try:
            store_apis = load_store_apis(
                self.store,
                self.registry,
                skip_ids=self._file_ids,
                cache=self._cache,
                pool_issuers=self.config.settings.cognitoUserPoolIssuers,
                stage_cache_bytes=self.config.settings.stageCacheBytes,
            )
            store_keys = load_store_api_keys(self.store, [k.value for k in self.config.apiKeys])
            durable = load_durable_usage(self.store)
            plans = [
                *file_usage_plans(self.config, durable),
                *store_usage_plans(self.store, durable, {k["id"] for k in store_keys}),
            ]
        except sqlite3.Error as exc:
            raise SourceUnavailable(f"the store cannot be read: {exc}") from exc
        return assemble(
            self.config,
            [*self.file_apis, *store_apis],
            self._deployment_id,
            api_keys=[*self.file_api_keys, *store_keys],
            admin_key=self.admin_key,
            usage_plans=plans,
        )
