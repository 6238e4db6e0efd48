"""Compiling a config file: a validated `Config` becomes the spec the core serves.

Stages of a file-declared API serve the API's routes (and its CORS), each with its own variables
and throttles. The gateway settings (limits, access log, account throttle) come from the file
whether or not the admin API adds APIs of its own (see `assemble`); usage plans are compiled by
`portico.compile.usage_plans`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from portico import _core
from portico.compile import method_settings
from portico.compile import spec as S
from portico.compile.usage_plans import file_usage_plans
from portico.config.models import (
    Api,
    Authorizer,
    Config,
    Cors,
    Integration,
    Route,
    parse_cache_key_parameter,
    parse_method_parameter,
    user_pool_issuer,
    validate_issuer_url,
)
from portico.integrations.functions import FunctionRegistry, function_name_from_uri


@dataclass(slots=True)
class CompiledConfig:
    """What a data plane serves: the spec (its `settings.plugins` is the data plane's to set)."""

    config: Config
    spec: S.Spec
    deployment_id: str

    @property
    def apis(self) -> list[S.ApiSpec]:
        return self.spec["apis"]


class CompileError(ValueError):
    """The configuration is well-formed but cannot be served (e.g. a function is not registered)."""


def compile_config(config: Config, registry: FunctionRegistry) -> CompiledConfig:
    deployment_id = deployment_id_of(config)
    return assemble(config, compile_file_apis(config, registry, deployment_id), deployment_id)


def compile_file_apis(
    config: Config, registry: FunctionRegistry, deployment_id: str | None = None
) -> list[S.ApiSpec]:
    """The APIs declared in `config` (raises CompileError listing every problem)."""
    deployment_id = deployment_id or deployment_id_of(config)
    out: list[S.ApiSpec] = []
    problems: list[str] = []
    for api_index, api in enumerate(config.apis):
        routes: list[S.RouteSpec] = []
        for route_index, route in enumerate(api.routes):
            where = f"apis[{api_index}].routes[{route_index}].integration"
            try:
                rest = api.protocol == "REST"
                if api.protocol == "WEBSOCKET":
                    integration = _websocket_integration(api.integration_of(route), registry, route.route)
                else:
                    integration = _integration(api.integration_of(route), registry, rest=rest, route=route)
                authorizer = None
                if route.authorizerId is not None:
                    where = f"apis[{api_index}].authorizers.{route.authorizerId}"
                    declared = api.authorizers[route.authorizerId]
                    if declared.is_lambda:
                        websocket = api.protocol == "WEBSOCKET"
                        authorizer = _lambda_authorizer(
                            route.authorizerId, declared, registry, rest=rest, websocket=websocket
                        )
                    else:
                        authorizer = _jwt_authorizer(
                            route.authorizerId, declared, config.settings.cognitoUserPoolIssuers
                        )
            except (CompileError, ValueError) as exc:
                problems.append(f"{where}: {exc}")
                continue
            declared = api.integration_of(route)
            cache_key = [
                S.cache_key_parameter(*parse_cache_key_parameter(p))  # type: ignore[arg-type]
                for p in declared.cacheKeyParameters
            ]
            routes.append(
                S.route(
                    route.route,
                    integration,
                    _route_auth(route, authorizer),
                    cache_key=cache_key,
                    cache_namespace=declared.cacheNamespace,
                    validation=_validation(api, route),
                    two_way=route.routeResponseSelectionExpression is not None,
                )
            )
        out.append(_api(api, routes, deployment_id, config.settings.stageCacheBytes))
    if problems:
        raise CompileError("\n".join(problems))
    return out


def compile_file_api_keys(config: Config) -> list[S.ApiKeySpec]:
    """The config file's API keys (`apiKeys`), each with the stages of the usage plans
    (`usagePlans`) that hold it. Only the values' SHA-256 reach the spec."""
    stages: dict[str, set[str]] = {key.name: set() for key in config.apiKeys}
    for plan in config.usagePlans:
        bound = {f"{s.apiId}/{s.stage}" for s in plan.apiStages}
        for name in plan.apiKeys:
            stages[name] |= bound
    return [S.api_key(key.key_id, key.value, sorted(stages[key.name]), key.enabled) for key in config.apiKeys]


def assemble(
    config: Config,
    apis: list[S.ApiSpec],
    deployment_id: str,
    api_keys: list[S.ApiKeySpec] | None = None,
    admin_key: tuple[str, str] | None = None,
    usage_plans: list[S.UsagePlanSpec] | None = None,
) -> CompiledConfig:
    """One CompiledConfig serving `apis` (in this order) under `config`'s gateway settings, with
    `api_keys` and `usage_plans` (None: the config file's own, counting from zero) and the config's
    principals; `admin_key` (access key id, secret), when the admin API runs, signs requests to
    `AWS_IAM` routes as the account's root."""

    settings = config.settings
    throttle = settings.accountThrottle.throttle()
    log = settings.accessLog
    spec = S.spec(
        apis,
        account_throttle=S.limit(throttle["rate"], int(throttle["burst"])) if throttle else None,
        header_limit=settings.headerLimitBytes,
        payload_limit=settings.payloadLimitBytes,
        body_timeout_ms=settings.bodyTimeoutMillis,
        access_log=S.access_log(log.format, log.destination) if log else None,
        account_id=settings.accountId,
        region=settings.region,
        upstream_ca_file=settings.upstreamCaFile,
        function_concurrency=settings.functionConcurrency,
        reserved_concurrency={
            name: f.reservedConcurrency
            for name, f in config.functions.items()
            if f.reservedConcurrency is not None
        },
        api_keys=compile_file_api_keys(config) if api_keys is None else api_keys,
        principals=principals_of(config, admin_key),
        usage_plans=file_usage_plans(config) if usage_plans is None else usage_plans,
        rate_limit_headers=settings.rateLimitHeaders,
        websocket_idle_timeout_ms=settings.websocketIdleTimeoutSeconds * 1000,
        websocket_max_connection_ms=settings.websocketMaxConnectionSeconds * 1000,
    )
    return CompiledConfig(config, spec, deployment_id)


def principals_of(config: Config, admin_key: tuple[str, str] | None = None) -> list[S.PrincipalSpec]:
    """The config's principals, and the admin key as the root of the gateway's account."""
    out = [
        S.principal(
            p.accessKeyId,
            p.secretAccessKey.get_secret_value(),
            p.arn,
            p.accountId,
            policy=p.policy,  # type: ignore[arg-type] # its JSON text is read by the core too
            session_token=p.sessionToken.get_secret_value() if p.sessionToken else None,
        )
        for p in config.principals
    ]
    if admin_key is not None:
        access_key_id, secret = admin_key
        if any(p["access_key_id"] == access_key_id for p in out):
            raise CompileError(f"principals: access key id {access_key_id!r} is the admin key's")
        account = config.settings.accountId
        out.append(S.principal(access_key_id, secret, f"arn:aws:iam::{account}:root", account))
    return out


def _route_auth(route: Route, authorizer: S.AuthorizerSpec | None = None) -> S.RouteAuthSpec | None:
    """A route's authorization, its authorizer (Lambda, JWT or Cognito), scopes and API key:
    `AWS_IAM` routes take signed requests only. A type that needs an authorizer the route does not
    name is kept, so that the core refuses the route's requests (AUTHORIZER_CONFIGURATION_ERROR)
    rather than serve them open."""
    if route.authorizationType == "NONE" and not route.apiKeyRequired:
        return None
    return S.route_auth(
        route.authorizationType,  # type: ignore[arg-type]
        authorizer,
        scopes=route.authorizationScopes,
        api_key_required=route.apiKeyRequired,
    )


def _validation(api: Api, route: Route) -> S.RouteValidationSpec | None:
    """A REST route's request validation: its validator's flags applied to its required
    parameters and its models; a WebSocket route's: its models by `modelSelectionExpression`."""
    if route.modelSelectionExpression is not None:
        models = dict(route.requestModels)
        return S.route_validation(body=models, model_selection=route.modelSelectionExpression)
    if route.requestValidatorId is None:
        return None
    validator = api.requestValidators[route.requestValidatorId]
    parameters = []
    if validator.validateRequestParameters:
        for key, required in route.requestParameters.items():
            found = parse_method_parameter(key)
            if required and found is not None:
                parameters.append(S.required_parameter(*found))  # type: ignore[arg-type]
    body = dict(route.requestModels) if validator.validateRequestBody else None
    if not parameters and body is None:
        return None
    return S.route_validation(parameters, body)


def cors_spec(cors: Cors) -> S.CorsSpec:
    return S.cors(
        cors.allowOrigins,
        cors.allowMethods,
        cors.allowHeaders,
        cors.exposeHeaders,
        cors.maxAge,
        cors.allowCredentials,
    )


def _api(api: Api, routes: list[S.RouteSpec], deployment_id: str, stage_cache_bytes: int | None) -> S.ApiSpec:
    keys = [r["key"] for r in routes]
    stages = []
    for stage in api.stages:
        # REST stages' methodSettings (AWS's member names, unset ones left out), under the
        # HTTP-API-style defaultRouteSettings / routeSettings.
        settings = {key: s.model_dump(exclude_none=True) for key, s in stage.methodSettings.items()}
        default, per_route = method_settings.throttles(settings, keys)
        if stage.defaultRouteSettings and (t := stage.defaultRouteSettings.throttle()) is not None:
            default = S.limit(t["rate"], int(t["burst"]))
        for key, route_settings in stage.routeSettings.items():
            if (t := route_settings.throttle()) is not None:
                per_route[key] = S.limit(t["rate"], int(t["burst"]))
        cache = None
        if stage.cacheClusterEnabled:
            capacity = method_settings.cache_capacity_bytes(stage.cacheClusterSize, stage_cache_bytes)
            cache = method_settings.stage_cache(settings, keys, capacity)
        stages.append(
            S.stage(
                stage.name,
                deployment_id=deployment_id,
                variables=dict(stage.variables),
                default_throttle=default,
                route_throttle=per_route,
                cache=cache,
            )
        )
    kind = {"REST": "rest", "WEBSOCKET": "websocket"}.get(api.protocol, "http")
    validates_bodies = any(r.get("validation", {}).get("body") is not None for r in routes)
    models = [S.model(name, text) for name, text in api.model_texts().items()] if validates_bodies else None
    return S.api(
        api.api_id,
        api.name,
        kind,  # type: ignore[arg-type]
        stages,
        routes=routes,
        cors=cors_spec(api.cors) if api.cors is not None else None,
        api_key_source=_api_key_source(api),
        policy=api.policy,
        binary_media_types=api.binaryMediaTypes,
        gateway_responses=[
            S.gateway_response(
                response_type,
                response.statusCode,
                response.responseParameters,
                response.responseTemplates,
            )
            for response_type, response in api.gatewayResponses.items()
        ],
        models=models,
        route_selection_expression=api.routeSelectionExpression,
    )


def _api_key_source(api: Api) -> Literal["HEADER", "AUTHORIZER"]:
    """Where a method's (REST) or `$connect`'s (WebSocket) API key is read: the header, or the
    Lambda authorizer's `usageIdentifierKey`."""
    if api.apiKeySelectionExpression == "$context.authorizer.usageIdentifierKey":
        return "AUTHORIZER"
    return api.apiKeySource


def _jwt_authorizer(
    authorizer_id: str, authorizer: Authorizer, pool_issuers: dict[str, str]
) -> S.AuthorizerSpec:
    """A JWT authorizer (HTTP APIs), or a Cognito user pool authorizer (REST APIs) whose pools'
    issuers are Cognito's, or those `settings.cognitoUserPoolIssuers` maps them to."""
    name = authorizer.name or authorizer_id
    if authorizer.authorizerType == "COGNITO_USER_POOLS":
        issuers = [
            validate_issuer_url(user_pool_issuer(arn, pool_issuers)) for arn in authorizer.providerARNs
        ]
        return S.cognito_authorizer(
            authorizer_id, issuers, authorizer.identitySource[0], authorizer.ttl(rest=True), name=name
        )
    jwt = authorizer.jwtConfiguration
    assert jwt is not None  # the model requires it of JWT authorizers
    return S.jwt_authorizer(authorizer_id, jwt.issuer, jwt.audience, authorizer.identitySource[0], name=name)


def _registered(uri: str, registry: FunctionRegistry) -> None:
    if "${stageVariables." not in uri:
        name = function_name_from_uri(uri)
        if name not in registry:
            raise CompileError(
                f"function {name!r} is not registered: declare it under `functions:` in the config "
                f"or pass --function {name}=module.path:attribute"
            )


def _integration(
    integration: Integration, registry: FunctionRegistry, rest: bool = False, route: Route | None = None
) -> S.IntegrationSpec:
    if integration.non_proxy:
        spec = _non_proxy(integration, route, registry)
    elif integration.type == "MOCK":
        return S.mock(integration.statusCode or 200, integration.headers, integration.body)
    elif integration.type == "AWS_PROXY":
        uri = integration.uri or ""
        _registered(uri, registry)
        # REST APIs' Lambda proxy events are payload 1.0; parameter mapping is HTTP APIs'.
        mode = integration.responseTransferMode
        if rest:
            return S.lambda_proxy(uri, "1.0", integration.timeoutInMillis, mode)
        return S.lambda_proxy(
            uri, integration.payload_format, integration.timeoutInMillis, mode, **_mappings(integration)
        )
    else:
        # REST APIs' requestParameters (`integration.request.*`), applied over what the proxy
        # passes; HTTP APIs' parameter mapping (the core reads the one field per API kind).
        spec = S.http_proxy(
            integration.uri or "",
            integration.method,
            integration.timeoutInMillis,
            integration.responseTransferMode,
            **_mappings(integration),
        )
    # What the core would refuse of a REST API's integration (a mapping expression, a
    # selectionPattern it cannot translate); HTTP APIs' mappings were refused as the config loaded.
    problem = rest and _core.integration_problem(S.dumps(spec), route.route if route else "GET /", "api")  # type: ignore[arg-type]
    if problem:
        raise CompileError(problem)
    return spec


def _backend(integration: Integration, registry: FunctionRegistry) -> S.BackendSpec:
    """What a non-proxy integration (or a WebSocket `HTTP_PROXY`) calls: a Lambda function
    (`AWS`), an HTTP endpoint, or nothing (`MOCK`)."""
    uri = integration.uri or ""
    if integration.type == "AWS":
        _registered(uri, registry)
        return S.lambda_backend(uri, integration.timeoutInMillis)
    if integration.type in ("HTTP", "HTTP_PROXY"):
        return S.http_backend(uri, integration.method, integration.timeoutInMillis)
    return S.mock_backend()


def _websocket_integration(
    integration: Integration, registry: FunctionRegistry, key: str
) -> S.IntegrationSpec:
    """A WebSocket route's integration (docs/websocket.md): `AWS_PROXY` and a plain `MOCK` as
    for HTTP APIs; `HTTP_PROXY`, `HTTP`, `AWS` and AWS's `MOCK` with request templates chosen by
    `templateSelectionExpression` and integration responses keyed `$default` or `/REGEX/`."""
    if integration.type == "AWS_PROXY" or (integration.type == "MOCK" and not integration.non_proxy):
        return _integration(integration, registry)
    backend = _backend(integration, registry)
    spec = S.websocket_integration(
        backend,
        proxy=integration.type == "HTTP_PROXY",
        request_parameters=integration.requestParameters,
        request_templates=integration.requestTemplates,
        template_selection=integration.templateSelectionExpression,
        passthrough=integration.passthroughBehavior,
        content_handling=integration.contentHandlingStrategy,
        responses=[
            S.websocket_response(
                response_key,
                response.responseTemplates,
                response.templateSelectionExpression,
                response.contentHandlingStrategy,
            )
            for response_key, response in integration.integrationResponses.items()
        ],
    )
    problem = _core.integration_problem(S.dumps(spec), key, "api")
    if problem:
        raise CompileError(problem)
    return spec


def _non_proxy(integration: Integration, route: Route | None, registry: FunctionRegistry) -> S.NonProxySpec:
    """A REST `AWS` (Lambda), `HTTP` or AWS-style `MOCK` integration with its route's method responses."""
    backend = _backend(integration, registry)
    prefix = "method.response.header."
    method_responses = [
        S.method_response(
            int(status), [k[len(prefix) :] for k in response.responseParameters if k.startswith(prefix)]
        )
        for status, response in (route.methodResponses.items() if route else ())
    ]
    return S.non_proxy(
        backend,
        request_parameters=integration.requestParameters,
        request_templates=integration.requestTemplates,
        passthrough=integration.passthroughBehavior,
        content_handling=integration.contentHandling,
        responses=[
            S.integration_response(
                int(status),
                response.selectionPattern,
                response.responseParameters,
                response.responseTemplates,
                response.contentHandling,
            )
            for status, response in integration.integrationResponses.items()
        ],
        method_responses=method_responses,
    )


def _mappings(integration: Integration) -> dict[str, Any]:
    """An HTTP API integration's parameter mapping for the spec builders."""
    return {
        "request_parameters": integration.requestParameters,
        "response_parameters": integration.responseParameters,
    }


def _lambda_authorizer(
    name: str, authorizer: Authorizer, registry: FunctionRegistry, *, rest: bool, websocket: bool = False
) -> S.LambdaAuthorizerSpec:
    """A Lambda authorizer of the file (REST TOKEN/REQUEST, HTTP payload 1.0/2.0, a WebSocket
    API's REQUEST); its function must be registered."""
    uri = authorizer.authorizerUri
    if "${stageVariables." not in uri:
        function = function_name_from_uri(uri)
        if function not in registry:
            raise CompileError(
                f"authorizer function {function!r} is not registered: declare it under `functions:` in "
                f"the config or pass --function {function}=module.path:attribute"
            )
    http_event = "HTTP_1_0" if authorizer.authorizerPayloadFormatVersion == "1.0" else "HTTP_2_0"
    # A WebSocket API's REQUEST authorizer: the core builds its event from the handshake.
    event = authorizer.authorizerType if rest or websocket else http_event
    return S.lambda_authorizer(
        name,
        uri,
        event,  # type: ignore[arg-type]
        authorizer.identitySource,
        validation_expression=authorizer.identityValidationExpression if rest else None,
        ttl_s=authorizer.ttl(rest),
        simple_responses=authorizer.enableSimpleResponses and not rest,
        name=name,
    )


def deployment_id_of(config: Config) -> str:
    """The deployment id of a config file's APIs: a digest of the whole configuration."""
    digest = hashlib.sha256(config.model_dump_json().encode()).digest()
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(alphabet[b % 36] for b in digest[:6])
