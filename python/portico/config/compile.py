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
    deployment_id = _deployment_id(config)
    apis: list[ApiRuntime] = []
    spec_apis: list[dict[str, Any]] = []
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
            resource_path = "$default" if route.route == "$default" else route.route.partition(" ")[2]
            routes.append(RouteRuntime(route.route, runtime, resource_path))
        stages = [StageRuntime(stage.name, dict(stage.variables), deployment_id) for stage in api.stages]
        cors = CorsPolicy(api.cors) if api.cors is not None else None
        apis.append(ApiRuntime(api.api_id, api.name, "http", routes, stages, cors))
        spec_apis.append(_core_api(api))
    if problems:
        raise CompileError("\n".join(problems))
    spec = {
        "apis": spec_apis,
        # A Host that names no API reaches the only API when there is exactly one.
        "default_api": 0 if len(config.apis) == 1 else None,
        "account_throttle": config.settings.accountThrottle.throttle()
        if config.settings.accountThrottle
        else None,
    }
    return CompiledConfig(config, orjson.dumps(spec).decode(), apis, deployment_id)


def _core_api(api: Api) -> dict[str, Any]:
    return {
        "id": api.api_id,
        "kind": "http",
        "routes": [route.route for route in api.routes],
        "stages": [
            {
                "name": stage.name,
                "default_throttle": stage.defaultRouteSettings.throttle()
                if stage.defaultRouteSettings
                else None,
                "route_throttle": {
                    key: settings.throttle()
                    for key, settings in stage.routeSettings.items()
                    if settings.throttle() is not None
                },
            }
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


def _deployment_id(config: Config) -> str:
    digest = hashlib.sha256(config.model_dump_json().encode()).digest()
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(alphabet[b % 36] for b in digest[:6])
