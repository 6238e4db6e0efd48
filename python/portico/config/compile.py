"""Compilation: a validated `Config` becomes what serves it.

Two outputs, built once per deployment: the JSON spec the Rust core compiles into its route trie
and throttle table, and the Python runtimes (integration objects per route) that the data plane
indexes with the core's verdict. Both list APIs, stages and routes in the same order, so a verdict's
indices address them directly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from portico.config.models import Api, Config, Integration
from portico.dataplane.context import ApiRuntime, RouteRuntime, StageRuntime
from portico.dataplane.cors import CorsPolicy
from portico.integrations.functions import FunctionRegistry, function_name_from_uri


@dataclass(slots=True)
class CompiledConfig:
    config: Config
    core_spec: str
    apis: list[ApiRuntime]
    deployment_id: str


class CompileError(ValueError):
    """The configuration is well-formed but cannot be served (e.g. a function is not registered)."""


def compile_config(config: Config, registry: FunctionRegistry, transport: Any = None) -> CompiledConfig:
    """Build the core spec and the runtimes. `transport` is the HTTP client used by HTTP_PROXY."""
    deployment_id = deployment_id_of(config)
    return assemble(config, compile_file_apis(config, registry, transport, deployment_id), deployment_id)


# An API as both halves of the data plane need it: its runtime and its core spec entry.
CompiledApi = tuple[ApiRuntime, dict[str, Any]]


def compile_file_apis(
    config: Config, registry: FunctionRegistry, transport: Any = None, deployment_id: str | None = None
) -> list[CompiledApi]:
    """The APIs declared in `config` (raises CompileError listing every problem)."""
    deployment_id = deployment_id or deployment_id_of(config)
    out: list[CompiledApi] = []
    problems: list[str] = []
    for api_index, api in enumerate(config.apis):
        routes: list[RouteRuntime] = []
        for route_index, route in enumerate(api.routes):
            integration = api.integration_of(route)
            where = f"apis[{api_index}].routes[{route_index}].integration"
            try:
                runtime = _build_integration(integration, route.route, registry, transport)
            except (CompileError, ValueError) as exc:
                problems.append(f"{where}: {exc}")
                continue
            routes.append(RouteRuntime(route.route, runtime, resource_path_of(route.route)))
        cors = CorsPolicy(api.cors) if api.cors is not None else None
        # Every stage of a file API serves the same routes: the list is shared, not copied.
        stages = [
            StageRuntime(stage.name, dict(stage.variables), deployment_id, routes, cors=cors)
            for stage in api.stages
        ]
        out.append((ApiRuntime(api.api_id, api.name, "http", routes, stages, cors), _core_api(api)))
    if problems:
        raise CompileError("\n".join(problems))
    return out


def assemble(config: Config, apis: list[CompiledApi], deployment_id: str) -> CompiledConfig:
    """One CompiledConfig serving `apis` (in this order) under `config`'s gateway settings."""
    spec = {
        "apis": [spec for _, spec in apis],
        # A Host that names no API reaches the only API when there is exactly one.
        "default_api": 0 if len(apis) == 1 else None,
        "account_throttle": config.settings.accountThrottle.throttle()
        if config.settings.accountThrottle
        else None,
    }
    return CompiledConfig(config, orjson.dumps(spec).decode(), [api for api, _ in apis], deployment_id)


def resource_path_of(route_key: str) -> str:
    """`GET /pets/{id}` -> `/pets/{id}`; `$default` stays `$default`."""
    return "$default" if route_key == "$default" else route_key.partition(" ")[2]


def stage_spec(
    name: str,
    default_throttle: dict[str, float] | None = None,
    route_throttle: dict[str, dict[str, float]] | None = None,
    routes: list[str] | None = None,
    canary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A stage of the core spec. `routes` None: the stage serves the API's routes."""
    spec: dict[str, Any] = {
        "name": name,
        "default_throttle": default_throttle,
        "route_throttle": route_throttle or {},
    }
    if routes is not None:
        spec["routes"] = routes
    if canary is not None:
        spec["canary"] = canary
    return spec


def _core_api(api: Api) -> dict[str, Any]:
    return {
        "id": api.api_id,
        "kind": "http",
        "routes": [route.route for route in api.routes],
        "stages": [
            stage_spec(
                stage.name,
                stage.defaultRouteSettings.throttle() if stage.defaultRouteSettings else None,
                {
                    key: throttle
                    for key, settings in stage.routeSettings.items()
                    if (throttle := settings.throttle()) is not None
                },
            )
            for stage in api.stages
        ],
    }


def _build_integration(integration: Integration, route_key: str, registry: FunctionRegistry, transport: Any):
    if integration.type == "MOCK":
        from portico.integrations.mock import MockIntegration

        return MockIntegration(integration.statusCode or 200, integration.headers, integration.body)
    if integration.type == "AWS_PROXY":
        from portico.integrations.lambda_proxy import LambdaProxyIntegration

        uri = integration.uri or ""
        if "${stageVariables." not in uri:
            name = function_name_from_uri(uri)
            if name not in registry:
                raise CompileError(
                    f"function {name!r} is not registered: declare it under `functions:` in the config "
                    f"or pass --function {name}=module.path:attribute"
                )
        return LambdaProxyIntegration(uri, integration.payload_format, integration.timeoutInMillis, registry)
    from portico.integrations.http_proxy import HttpProxyIntegration

    return HttpProxyIntegration(
        integration.uri or "",
        method=integration.method,
        timeout_ms=integration.timeoutInMillis,
        route_is_default=route_key == "$default",
        transport=transport,
    )


def deployment_id_of(config: Config) -> str:
    """The deployment id of a config file's APIs: a digest of the whole configuration."""
    digest = hashlib.sha256(config.model_dump_json().encode()).digest()
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(alphabet[b % 36] for b in digest[:6])
