"""The bridge from the control plane to the data plane: deployed stages in the store -> what serves them.

The admin API writes documents (see the storage contract in `portico.control.store` and the
handler modules); this module reads them and builds, for every stage that points at a deployment,
the same two halves `portico.config.compile` builds for a config file: runtimes (integration
objects per route, stage variables, CORS) and the core spec entry (routes per stage, canary,
throttles). Only deployments are served, never the API's current working copy: a stage serves
the `_snapshot` its deployment captured, exactly as API Gateway serves what was deployed.

- apigatewayv2 HTTP APIs (kind "http"): routes and integrations of the deployment snapshot;
  AWS_PROXY (payload 1.0/2.0) and HTTP_PROXY integrations; stage variables; DefaultRouteSettings /
  RouteSettings throttling; the API's CorsConfiguration as deployed.
- apigateway REST APIs (kind "rest"): every resource path + method of the snapshot is a route
  `METHOD /path` (`ANY` and a greedy `{proxy+}` resource included); AWS_PROXY (REST 1.0 events),
  HTTP_PROXY (`{var}` in the uri from the path parameters its requestParameters map), MOCK (the
  default integration response's status and static `application/json` template); stage
  variables; methodSettings throttling (`*/*` and `path/METHOD`); canarySettings.

Anything that cannot be served (an unsupported integration type, a route without integration)
becomes a route answering 500 with a log line naming it, never a failed reload. A function that is
not registered is looked up at call time: the route answers 500 and logs how to register it.

Deployment snapshots are immutable, so their route runtimes are cached across rebuilds
(`StoreSource`): a reload rebuilds only what changed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from portico.config.compile import (
    CompiledApi,
    CompiledConfig,
    assemble,
    compile_file_apis,
    deployment_id_of,
    resource_path_of,
    stage_spec,
)
from portico.config.models import Config, Cors, validate_route_key
from portico.control.store import Store
from portico.dataplane.context import ApiRuntime, RequestContext, Response, RouteRuntime, StageRuntime
from portico.dataplane.cors import CorsPolicy
from portico.integrations.functions import FunctionRegistry, parse_function_uri

__all__ = ["StoreSource", "load_store_apis"]

log = logging.getLogger("portico.deployed")

V2 = "apigatewayv2"
V1 = "apigateway"
# What an unset rate or burst means next to a set one: AWS's account defaults.
ACCOUNT_RATE = 10000.0
ACCOUNT_BURST = 5000
_DEFAULT_HTTP_TIMEOUT_MS = 30000
_DEFAULT_REST_TIMEOUT_MS = 29000


# ----------------------------------------------------------------------------------------------
# Integrations that stand in for what cannot be served


class ConfigurationError:
    """A route whose integration cannot be served: answers AWS's 500 and logs why."""

    __slots__ = ("detail", "kind")

    def __init__(self, kind: str, detail: str) -> None:
        self.kind = kind
        self.detail = detail

    async def __call__(self, ctx: RequestContext) -> Response:
        log.error("request %s: execution failed due to configuration error: %s", ctx.request_id, self.detail)
        return _internal_error(self.kind)


def _internal_error(kind: str) -> Response:
    if kind == "rest":
        headers = [
            ("content-type", "application/json"),
            ("x-amzn-errortype", "InternalServerErrorException"),
        ]
        return Response(500, headers, b'{"message": "Internal server error"}')
    return Response(500, [("content-type", "application/json")], b'{"message":"Internal Server Error"}')


class RequireFunction:
    """AWS_PROXY to a fixed function: answers 500 (and says how to fix it) while the function is
    not registered, instead of failing the whole deployment."""

    __slots__ = ("_inner", "_kind", "_name", "_registry", "_where")

    def __init__(self, inner: Any, name: str, registry: FunctionRegistry, kind: str, where: str) -> None:
        self._inner = inner
        self._name = name
        self._registry = registry
        self._kind = kind
        self._where = where

    async def __call__(self, ctx: RequestContext) -> Response:
        if self._name not in self._registry:
            log.error(
                "request %s: %s: Lambda function %r is not registered in this gateway "
                "(start it with --function %s=module:attribute); answering 500",
                ctx.request_id,
                self._where,
                self._name,
                self._name,
            )
            return _internal_error(self._kind)
        return await self._inner(ctx)


# ----------------------------------------------------------------------------------------------
# Helpers


def _throttle(rate: Any, burst: Any) -> dict[str, float] | None:
    """A core throttle from AWS's pair; a negative or missing member is unset (AWS shows -1)."""
    has_rate = isinstance(rate, int | float) and rate >= 0
    has_burst = isinstance(burst, int | float) and burst >= 0
    if not has_rate and not has_burst:
        return None
    return {
        "rate": float(rate) if has_rate else ACCOUNT_RATE,
        "burst": int(burst) if has_burst else ACCOUNT_BURST,
    }


def _lambda(
    uri: str, payload: str, timeout_ms: int, registry: FunctionRegistry, kind: str, where: str, binary=()
) -> Any:
    from portico.integrations.lambda_proxy import LambdaProxyIntegration

    integration = LambdaProxyIntegration(uri, payload, timeout_ms, registry, binary)
    if "${stageVariables." in uri:
        return integration  # resolved per request; an unknown function answers there
    name = parse_function_uri(uri).name
    if name not in registry:
        log.warning(
            "%s: Lambda function %r is not registered; the route answers 500 until it is "
            "(--function %s=module:attribute)",
            where,
            name,
            name,
        )
    return RequireFunction(integration, name, registry, kind, where)


def _http_proxy(uri: str, method: str, timeout_ms: int, route_key: str, transport: Any) -> Any:
    from portico.integrations.http_proxy import HttpProxyIntegration

    return HttpProxyIntegration(
        uri,
        method=method or "ANY",
        timeout_ms=timeout_ms,
        route_is_default=route_key == "$default",
        transport=transport,
    )


def _timeout(value: Any, default: int) -> int:
    return int(value) if isinstance(value, int | float) and value > 0 else default


@dataclass(slots=True)
class _Deployed:
    """The routes of one deployment: core route keys and their runtimes, same order."""

    keys: list[str]
    routes: list[RouteRuntime]
    cors: Any = None


class _Builder:
    """One rebuild: reads the store in one read transaction, reuses cached deployments."""

    def __init__(
        self,
        registry: FunctionRegistry,
        transport: Any,
        cache: dict[tuple[str, str, str], _Deployed] | None = None,
    ) -> None:
        self.registry = registry
        self.transport = transport
        self.cache = cache if cache is not None else {}
        self.used: set[tuple[str, str, str]] = set()

    def _cached(self, service: str, api_id: str, deployment: dict[str, Any], build) -> _Deployed:
        key = (service, api_id, deployment.get("DeploymentId") or deployment.get("id") or "")
        self.used.add(key)
        found = self.cache.get(key)
        if found is None:
            found = self.cache[key] = build(deployment.get("_snapshot") or {})
        return found

    # -- apigatewayv2 HTTP APIs -------------------------------------------------------------------

    def http_api(self, tx, api: dict[str, Any]) -> CompiledApi | None:
        api_id = api["ApiId"]
        if api.get("ProtocolType", "HTTP") != "HTTP":
            return None  # WebSocket APIs are not served yet
        if api.get("DisableExecuteApiEndpoint"):
            log.info("API %s: the default endpoint is disabled; not served", api_id)
            return None
        stages: list[StageRuntime] = []
        specs: list[dict[str, Any]] = []
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
            deployed = self._cached(V2, api_id, deployment, lambda snap: self._http_routes(api_id, snap))
            stages.append(
                StageRuntime(
                    name,
                    dict(stage.get("StageVariables") or {}),
                    deployment_id,
                    deployed.routes,
                    cors=deployed.cors,
                )
            )
            default = stage.get("DefaultRouteSettings") or {}
            per_route = {}
            for route_key, settings in (stage.get("RouteSettings") or {}).items():
                throttle = _throttle(
                    settings.get("ThrottlingRateLimit"), settings.get("ThrottlingBurstLimit")
                )
                if throttle is not None and route_key in deployed.keys:
                    per_route[route_key] = throttle
            specs.append(
                stage_spec(
                    name,
                    _throttle(default.get("ThrottlingRateLimit"), default.get("ThrottlingBurstLimit")),
                    per_route,
                    routes=deployed.keys,
                )
            )
        if not stages:
            return None
        runtime = ApiRuntime(
            api_id, api.get("Name", api_id), "http", stages[0].routes, stages, stages[0].cors
        )
        return runtime, {"id": api_id, "kind": "http", "routes": [], "stages": specs}

    def _http_routes(self, api_id: str, snap: dict[str, Any]) -> _Deployed:
        integrations = {i.get("IntegrationId"): i for i in snap.get("Integrations") or []}
        keys: list[str] = []
        routes: list[RouteRuntime] = []
        for route in snap.get("Routes") or []:
            key = route.get("RouteKey") or ""
            where = f"API {api_id} route {key!r}"
            if not _valid_key(key, where) or key in keys:
                continue
            target = route.get("Target") or ""
            integration = (
                integrations.get(target[len("integrations/") :])
                if target.startswith("integrations/")
                else None
            )
            if integration is None:
                runtime: Any = ConfigurationError("http", f"{where} has no integration")
            else:
                runtime = self._http_integration(integration, key, where)
            keys.append(key)
            routes.append(RouteRuntime(key, runtime, resource_path_of(key)))
        return _Deployed(keys, routes, _cors(snap.get("Api") or {}, api_id))

    def _http_integration(self, integration: dict[str, Any], route_key: str, where: str) -> Any:
        kind = integration.get("IntegrationType")
        uri = integration.get("IntegrationUri") or ""
        timeout_ms = _timeout(integration.get("TimeoutInMillis"), _DEFAULT_HTTP_TIMEOUT_MS)
        try:
            if integration.get("ConnectionType") == "VPC_LINK":
                raise ValueError("private integrations (VPC_LINK) are not supported")
            if kind == "AWS_PROXY":
                payload = integration.get("PayloadFormatVersion") or "2.0"
                return _lambda(uri, payload, timeout_ms, self.registry, "http", where)
            if kind == "HTTP_PROXY":
                return _http_proxy(
                    uri, integration.get("IntegrationMethod") or "ANY", timeout_ms, route_key, self.transport
                )
            raise ValueError(f"integration type {kind} is not supported for HTTP APIs")
        except ValueError as exc:
            log.warning("%s: %s; the route answers 500", where, exc)
            return ConfigurationError("http", f"{where}: {exc}")

    # -- apigateway REST APIs ---------------------------------------------------------------------

    def rest_api(self, tx, api: dict[str, Any]) -> CompiledApi | None:
        api_id = api["id"]
        if api.get("disableExecuteApiEndpoint"):
            log.info("REST API %s: the default endpoint is disabled; not served", api_id)
            return None
        binary = tuple(api.get("binaryMediaTypes") or ())
        stages: list[StageRuntime] = []
        specs: list[dict[str, Any]] = []

        def deployed_of(deployment_id: str | None, what: str) -> tuple[str, _Deployed] | None:
            if not deployment_id:
                return None
            deployment = tx.get(V1, "deployment", deployment_id, parent=api_id)
            if deployment is None:
                log.warning("REST API %s %s: deployment %s not found", api_id, what, deployment_id)
                return None
            return deployment_id, self._cached(
                V1, api_id, deployment, lambda snap: self._rest_routes(api_id, snap, binary)
            )

        for stage in tx.list(V1, "stage", api_id):
            name = stage.get("stageName")
            if not name:
                continue
            main = deployed_of(stage.get("deploymentId"), f"stage {name}")
            if main is None:
                continue
            deployment_id, deployed = main
            variables = dict(stage.get("variables") or {})
            default, per_route = _method_settings(stage.get("methodSettings") or {}, deployed.keys)
            canary_runtime = None
            canary_spec = None
            settings = stage.get("canarySettings") or None
            if settings:
                canary = deployed_of(settings.get("deploymentId"), f"stage {name} canary")
                if canary is not None:
                    canary_id, canary_deployed = canary
                    overrides = settings.get("stageVariableOverrides") or {}
                    canary_runtime = StageRuntime(
                        name,
                        {**variables, **overrides},
                        canary_id,
                        canary_deployed.routes,
                        is_canary=True,
                    )
                    percent = settings.get("percentTraffic") or 0.0
                    canary_spec = {
                        "percent": min(max(float(percent), 0.0), 100.0),
                        "routes": canary_deployed.keys,
                    }
            stages.append(StageRuntime(name, variables, deployment_id, deployed.routes, canary_runtime))
            specs.append(stage_spec(name, default, per_route, routes=deployed.keys, canary=canary_spec))
        if not stages:
            return None
        runtime = ApiRuntime(api_id, api.get("name", api_id), "rest", stages[0].routes, stages)
        return runtime, {"id": api_id, "kind": "rest", "routes": [], "stages": specs}

    def _rest_routes(self, api_id: str, snap: dict[str, Any], binary: tuple[str, ...]) -> _Deployed:
        keys: list[str] = []
        routes: list[RouteRuntime] = []
        for resource in snap.get("resources") or []:
            path = resource.get("path") or "/"
            for method, doc in (resource.get("resourceMethods") or {}).items():
                key = f"{method.upper()} {path}"
                where = f"REST API {api_id} {method.upper()} {path}"
                if not _valid_key(key, where) or key in keys:
                    continue
                if (doc.get("authorizationType") or "NONE") != "NONE" or doc.get("apiKeyRequired"):
                    log.info("%s: authorization and API keys are not enforced yet", where)
                integration = doc.get("methodIntegration")
                if not integration:
                    runtime: Any = ConfigurationError("rest", f"{where} has no integration")
                else:
                    runtime = self._rest_integration(integration, key, where, binary)
                keys.append(key)
                routes.append(RouteRuntime(key, runtime, path))
        return _Deployed(keys, routes)

    def _rest_integration(self, integration: dict[str, Any], route_key: str, where: str, binary) -> Any:
        kind = integration.get("type")
        uri = integration.get("uri") or ""
        timeout_ms = _timeout(integration.get("timeoutInMillis"), _DEFAULT_REST_TIMEOUT_MS)
        try:
            if kind == "AWS_PROXY":
                return _lambda(uri, "1.0", timeout_ms, self.registry, "rest", where, binary)
            if kind == "HTTP_PROXY":
                uri = _map_path_parameters(uri, integration.get("requestParameters") or {})
                return _http_proxy(
                    uri, integration.get("httpMethod") or "ANY", timeout_ms, route_key, self.transport
                )
            if kind == "MOCK":
                return _mock(integration)
            raise ValueError(f"integration type {kind} is not supported yet (mapping templates come later)")
        except ValueError as exc:
            log.warning("%s: %s; the route answers 500", where, exc)
            return ConfigurationError("rest", f"{where}: {exc}")


def _valid_key(key: str, where: str) -> bool:
    try:
        validate_route_key(key)
    except ValueError as exc:
        log.warning("%s: not served: %s", where, exc)
        return False
    return True


def _cors(api: dict[str, Any], api_id: str) -> CorsPolicy | None:
    config = api.get("CorsConfiguration")
    if not config:
        return None
    try:
        return CorsPolicy(
            Cors(
                allowOrigins=config.get("AllowOrigins") or [],
                allowMethods=config.get("AllowMethods") or [],
                allowHeaders=config.get("AllowHeaders") or [],
                exposeHeaders=config.get("ExposeHeaders") or [],
                maxAge=config.get("MaxAge"),
                allowCredentials=bool(config.get("AllowCredentials")),
            )
        )
    except ValueError as exc:
        log.warning("API %s: CORS configuration not applied: %s", api_id, exc)
        return None


def _method_settings(
    settings: dict[str, Any], keys: Iterable[str]
) -> tuple[dict[str, float] | None, dict[str, dict[str, float]]]:
    """methodSettings -> (stage default throttle, per route key). Keys are `*/*` or
    `path/METHOD` (the resource path without its leading slash; `~1` accepted for `/`)."""
    known = set(keys)
    default = None
    per_route: dict[str, dict[str, float]] = {}
    for key, setting in settings.items():
        throttle = _throttle(setting.get("throttlingRateLimit"), setting.get("throttlingBurstLimit"))
        if throttle is None:
            continue
        if key == "*/*":
            default = throttle
            continue
        path, _, method = key.replace("~1", "/").lstrip("/").rpartition("/")
        route_key = f"{method.upper()} /{path}"
        if route_key in known:
            per_route[route_key] = throttle
    return default, per_route


_MAPPING = re.compile(r"^integration\.request\.path\.([A-Za-z0-9_.-]+)$")
_SOURCE = re.compile(r"^method\.request\.path\.([A-Za-z0-9_.-]+)$")


def _map_path_parameters(uri: str, parameters: dict[str, str]) -> str:
    """Rewrite `{X}` / `{X+}` in an HTTP_PROXY uri to the method path parameter mapped to it
    (`integration.request.path.X = method.request.path.Y`); unmapped ones keep their name."""
    for target, source in parameters.items():
        to = _MAPPING.match(target)
        frm = _SOURCE.match(source or "")
        if to and frm and to[1] != frm[1]:
            uri = re.sub(r"\{" + re.escape(to[1]) + r"\+?\}", "{" + frm[1] + "}", uri)
    return uri


def _mock(integration: dict[str, Any]) -> Any:
    """MOCK: the default integration response (empty selectionPattern), its static template."""
    from portico.integrations.mock import MockIntegration

    responses = integration.get("integrationResponses") or {}
    chosen = None
    for code, response in responses.items():
        pattern = response.get("selectionPattern")
        if not pattern or pattern == ".*":
            chosen = (code, response)
            break
    if chosen is None:
        raise ValueError("MOCK integration without a default integration response")
    code, response = chosen
    template = (response.get("responseTemplates") or {}).get("application/json") or ""
    body = "" if ("$" in template or "#" in template) else template
    headers = {}
    for name, value in (response.get("responseParameters") or {}).items():
        if name.startswith("method.response.header.") and len(value) >= 2 and value[0] == value[-1] == "'":
            headers[name[len("method.response.header.") :]] = value[1:-1]
    return MockIntegration(int(response.get("statusCode") or code), headers, body)


# ----------------------------------------------------------------------------------------------
# Entry points


def load_store_apis(
    store: Store,
    registry: FunctionRegistry,
    transport: Any = None,
    *,
    skip_ids: Iterable[str] = (),
    cache: dict[tuple[str, str, str], _Deployed] | None = None,
) -> list[CompiledApi]:
    """Every admin-created API with at least one deployed stage. `skip_ids`: ids served from the
    config file (an admin API with one of them is skipped with a warning)."""
    taken = {api_id.lower() for api_id in skip_ids}
    builder = _Builder(registry, transport, cache)
    out: list[CompiledApi] = []
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
        transport: Any = None,
        file_apis: list[CompiledApi] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.registry = registry
        self.transport = transport
        self.file_apis = (
            file_apis if file_apis is not None else compile_file_apis(config, registry, transport)
        )
        self._file_ids = [api.api_id for api, _ in self.file_apis]
        self._deployment_id = deployment_id_of(config)
        self._cache: dict[tuple[str, str, str], _Deployed] = {}

    def generation(self) -> int:
        return self.store.generation()

    def build(self) -> CompiledConfig:
        store_apis = load_store_apis(
            self.store, self.registry, self.transport, skip_ids=self._file_ids, cache=self._cache
        )
        return assemble(self.config, [*self.file_apis, *store_apis], self._deployment_id)
