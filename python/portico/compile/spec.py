"""The spec the core serves: the one typed contract across the language line.

Every configuration Portico serves (a config file, an OpenAPI import, the admin API's deployments)
is compiled into one `Spec`, built only through the functions below, serialized once per
deployment and deserialized by the core into serde-derived structs (`rust/spec.rs`, which these
TypedDicts mirror field for field). The core compiles it into its route trie, throttle table,
integrations, CORS policies and access logs; nothing of the spec is interpreted in Python again.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal, NotRequired, TypedDict

import orjson

__all__ = [
    "CACHE_CLUSTER_GB",
    "AccessLogSpec",
    "ApiKeySpec",
    "ApiSpec",
    "AuthorizerSpec",
    "CacheKeyParameterSpec",
    "CanarySpec",
    "CorsSpec",
    "FunctionSpec",
    "GatewayResponseSpec",
    "IntegrationResponseSpec",
    "IntegrationSpec",
    "LimitSpec",
    "MethodResponseSpec",
    "ModelSpec",
    "NonProxySpec",
    "PlanKeySpec",
    "PlanStageSpec",
    "PrincipalSpec",
    "QuotaSpec",
    "RouteAuthSpec",
    "RouteCacheSpec",
    "RouteSpec",
    "RouteValidationSpec",
    "Spec",
    "StageCacheSpec",
    "StageSpec",
    "TransferMode",
    "UsagePlanSpec",
    "WebsocketIntegrationSpec",
    "WebsocketResponseSpec",
    "access_log",
    "api",
    "api_key",
    "api_key_digest",
    "cache_key_parameter",
    "canary",
    "cognito_authorizer",
    "cors",
    "dumps",
    "gateway_response",
    "http_backend",
    "http_proxy",
    "integration_response",
    "jwt_authorizer",
    "lambda_authorizer",
    "lambda_backend",
    "lambda_proxy",
    "limit",
    "method_response",
    "mock",
    "mock_backend",
    "model",
    "non_proxy",
    "plan_key",
    "plan_stage",
    "principal",
    "quota",
    "required_parameter",
    "route",
    "route_auth",
    "route_cache",
    "route_validation",
    "spec",
    "stage",
    "stage_cache",
    "unavailable",
    "usage_plan",
    "websocket_integration",
    "websocket_response",
]

DEFAULT_PAYLOAD_LIMIT = 10 * 1024 * 1024
DEFAULT_HEADER_LIMIT = 10_240


class LimitSpec(TypedDict):
    rate: float
    burst: int


class AccessLogSpec(TypedDict):
    format: str
    destination: str  # "stdout", "stderr" or a file path


class CorsSpec(TypedDict):
    allow_origins: list[str]
    allow_methods: list[str]
    allow_headers: list[str]
    expose_headers: list[str]
    max_age: int | None
    allow_credentials: bool


# A proxy integration's `responseTransferMode` (REST APIs): STREAM passes the answer on as it comes.
TransferMode = Literal["BUFFERED", "STREAM"]


class HttpProxySpec(TypedDict):
    type: Literal["HTTP_PROXY"]
    uri: str
    method: str | None
    timeout_ms: int
    # The integration's `requestParameters`, read per API kind: REST APIs'
    # (integration.request.*.NAME, source expression); HTTP APIs' (append|overwrite|remove:...,
    # value); and HTTP APIs' response parameters: (status code, its pairs).
    request_parameters: NotRequired[list[tuple[str, str]]]
    response_parameters: NotRequired[list[tuple[str, list[tuple[str, str]]]]]
    transfer_mode: NotRequired[TransferMode]


class MockSpec(TypedDict):
    type: Literal["MOCK"]
    status: int
    headers: list[tuple[str, str]]
    body: str


class LambdaProxySpec(TypedDict):
    type: Literal["AWS_PROXY"]
    uri: str
    payload_format_version: Literal["1.0", "2.0"]
    timeout_ms: int
    request_parameters: NotRequired[list[tuple[str, str]]]
    response_parameters: NotRequired[list[tuple[str, list[tuple[str, str]]]]]
    transfer_mode: NotRequired[TransferMode]


class UnavailableSpec(TypedDict):
    type: Literal["UNAVAILABLE"]
    detail: str


class HttpBackendSpec(TypedDict):
    kind: Literal["HTTP"]
    uri: str
    method: str | None
    timeout_ms: int


class LambdaBackendSpec(TypedDict):
    kind: Literal["LAMBDA"]
    uri: str
    timeout_ms: int


class MockBackendSpec(TypedDict):
    kind: Literal["MOCK"]


BackendSpec = HttpBackendSpec | LambdaBackendSpec | MockBackendSpec
PassthroughBehavior = Literal["WHEN_NO_MATCH", "WHEN_NO_TEMPLATES", "NEVER"]
ContentHandling = Literal["CONVERT_TO_TEXT", "CONVERT_TO_BINARY"]


class IntegrationResponseSpec(TypedDict):
    status: int
    selection_pattern: str | None  # a Java regex; None or "": the default response
    parameters: list[tuple[str, str]]  # (method.response.header.NAME, source expression)
    templates: list[tuple[str, str]]  # (content type, template), in the declared order
    content_handling: ContentHandling | None


class MethodResponseSpec(TypedDict):
    status: int
    headers: list[str]  # the header names it declares (method.response.header.NAME)


class NonProxySpec(TypedDict):
    """REST APIs' non-proxy integrations (`HTTP`, `AWS` Lambda, `MOCK`) with their mapping."""

    type: Literal["NON_PROXY"]
    backend: BackendSpec
    request_parameters: list[tuple[str, str]]  # (integration.request.*.NAME, source expression)
    request_templates: list[tuple[str, str]]  # (content type, template)
    passthrough: PassthroughBehavior
    content_handling: ContentHandling | None
    responses: list[IntegrationResponseSpec]
    method_responses: list[MethodResponseSpec]


class WebsocketResponseSpec(TypedDict):
    key: str  # integrationResponseKey: $default, /REGEX/ or an exact value
    templates: list[tuple[str, str]]  # (template key, template)
    template_selection: str | None
    content_handling: ContentHandling | None  # contentHandlingStrategy


class WebsocketIntegrationSpec(TypedDict):
    """WebSocket APIs' `HTTP_PROXY` (`proxy`), `HTTP`, `AWS` and AWS's `MOCK` (docs/websocket.md)."""

    type: Literal["WEBSOCKET"]
    backend: BackendSpec
    proxy: bool
    request_parameters: list[tuple[str, str]]  # (integration.request.*.NAME, source expression)
    request_templates: list[tuple[str, str]]  # (template key, template)
    template_selection: str | None
    passthrough: PassthroughBehavior
    content_handling: ContentHandling | None  # contentHandlingStrategy
    responses: list[WebsocketResponseSpec]


IntegrationSpec = (
    HttpProxySpec | MockSpec | LambdaProxySpec | UnavailableSpec | NonProxySpec | WebsocketIntegrationSpec
)


ParameterLocation = Literal["querystring", "multivaluequerystring", "header", "multivalueheader", "path"]


class CacheKeyParameterSpec(TypedDict):
    """One of an integration's `cacheKeyParameters` (`method.request.LOCATION.NAME`)."""

    location: ParameterLocation
    name: str


class ModelSpec(TypedDict):
    """A REST API's model (AWS `Model`): a JSON Schema draft 4, as its JSON text."""

    name: str
    schema: str


class RequiredParameterSpec(TypedDict):
    """A request parameter a method requires (`method.request.LOCATION.NAME: true`)."""

    location: ParameterLocation
    name: str


class RouteValidationSpec(TypedDict):
    """A method's request validation: its request validator applied to its parameters and models."""

    parameters: list[RequiredParameterSpec]  # validateRequestParameters (empty: not validated)
    body: dict[str, str] | None  # validateRequestBody: requestModels (media type or $default -> model)
    # WebSocket APIs: the route's modelSelectionExpression (`body` is then keyed by its values)
    model_selection: str | None


class RouteSpec(TypedDict):
    key: str  # "GET /pets/{id}" or "$default"
    integration: IntegrationSpec
    auth: NotRequired[RouteAuthSpec]
    cache_key: NotRequired[list[CacheKeyParameterSpec]]
    cache_namespace: NotRequired[str]
    validation: NotRequired[RouteValidationSpec]
    two_way: NotRequired[bool]  # WebSocket APIs: the route has a route response


class RouteCacheSpec(TypedDict):
    """The `caching/*` method settings that apply to one route of a stage."""

    ttl_s: int  # 1..3600
    methods: Literal["GET", "ALL"]  # GET: cached stage-wide (`*/*`); ALL: by the method's own setting
    require_authorization: bool
    unauthorized: Literal["FAIL_WITH_403", "SUCCEED_WITH_RESPONSE_HEADER", "SUCCEED_WITHOUT_RESPONSE_HEADER"]


class StageCacheSpec(TypedDict):
    """A REST stage's response cache (`cacheClusterEnabled`)."""

    capacity_bytes: int
    epoch: int  # moved by FlushStageCache
    routes: dict[str, RouteCacheSpec]  # route key -> its settings; routes not named are not cached


AuthorizationType = Literal["NONE", "AWS_IAM", "JWT", "CUSTOM", "COGNITO_USER_POOLS"]


class JwtAuthorizerSpec(TypedDict):
    type: Literal["JWT"]
    id: str
    name: str
    identity_source: str  # "$request.header.Authorization"
    issuer: str
    audience: list[str]


class CognitoAuthorizerSpec(TypedDict):
    type: Literal["COGNITO_USER_POOLS"]
    id: str
    name: str
    identity_source: str  # "method.request.header.Authorization"
    issuers: list[str]  # https://cognito-idp.REGION.amazonaws.com/POOL_ID
    ttl_s: int


class LambdaAuthorizerSpec(TypedDict):
    type: Literal["LAMBDA"]
    id: str
    name: str
    uri: str
    event: Literal["TOKEN", "REQUEST", "HTTP_1_0", "HTTP_2_0"]
    identity_sources: list[str]
    validation_expression: str | None
    ttl_s: int
    simple_responses: bool
    timeout_ms: int


AuthorizerSpec = JwtAuthorizerSpec | CognitoAuthorizerSpec | LambdaAuthorizerSpec


class RouteAuthSpec(TypedDict):
    authorization: AuthorizationType
    authorizer: AuthorizerSpec | None
    scopes: list[str]
    api_key_required: bool


class GatewayResponseSpec(TypedDict):
    response_type: str  # UNAUTHORIZED, DEFAULT_4XX, ...
    status: int | None
    headers: list[tuple[str, str]]  # name -> AWS value expression ('static', method.request.header.X)
    templates: dict[str, str]  # content type -> body template


class PrincipalSpec(TypedDict):
    access_key_id: str
    secret_access_key: str
    session_token: str | None
    arn: str
    account_id: str
    policy: dict | str | None  # the identity policy; None: allowed everything (the account's root)


class ApiKeySpec(TypedDict):
    id: str
    value_sha256: str
    enabled: bool
    stages: list[str]  # "apiId/stage"


QuotaPeriod = Literal["DAY", "WEEK", "MONTH"]


class QuotaSpec(TypedDict):
    limit: int
    period: QuotaPeriod
    offset: int
    since_ms: int | None  # when the quota was set: its period is the initial one (limit - offset)


class PlanStageSpec(TypedDict):
    api_id: str
    stage: str
    method_throttle: dict[str, LimitSpec]  # "/pets/GET", "//GET" (the root)


class PlanKeySpec(TypedDict):
    id: str
    days: list[tuple[int, int]]  # (UTC day since 1970-01-01, requests made durable)
    credits: list[tuple[int, int]]  # (quota period index, requests UpdateUsage added)


class UsagePlanSpec(TypedDict):
    id: str
    throttle: LimitSpec | None
    quota: QuotaSpec | None
    stages: list[PlanStageSpec]
    keys: list[PlanKeySpec]


class CanarySpec(TypedDict):
    percent: float
    deployment_id: str
    variables: dict[str, str]
    routes: NotRequired[list[RouteSpec]]
    cors: NotRequired[CorsSpec | None]
    models: NotRequired[list[ModelSpec]]
    use_stage_cache: NotRequired[bool]


class StageSpec(TypedDict):
    name: str
    deployment_id: str
    variables: dict[str, str]
    default_throttle: LimitSpec | None
    route_throttle: dict[str, LimitSpec]
    routes: NotRequired[list[RouteSpec]]
    cors: NotRequired[CorsSpec | None]
    models: NotRequired[list[ModelSpec]]
    access_log: NotRequired[AccessLogSpec]
    canary: NotRequired[CanarySpec]
    authorizer_cache_epoch: NotRequired[int]
    cache: NotRequired[StageCacheSpec]


class ApiSpec(TypedDict):
    id: str
    name: str
    kind: Literal["http", "rest", "websocket"]
    routes: list[RouteSpec]
    stages: list[StageSpec]
    cors: CorsSpec | None
    binary_media_types: list[str]
    api_key_source: Literal["HEADER", "AUTHORIZER"]
    policy: dict | str | None
    gateway_responses: list[GatewayResponseSpec]
    models: NotRequired[list[ModelSpec]]
    route_selection_expression: NotRequired[str]  # WebSocket APIs


class PluginHooks(TypedDict):
    on_request: bool
    on_response: bool


class Settings(TypedDict):
    header_limit: int
    payload_limit: int
    body_timeout_ms: int
    access_log: AccessLogSpec | None
    account_id: str
    region: str
    plugins: PluginHooks
    upstream_ca_file: str | None
    function_concurrency: int
    functions: dict[str, FunctionSpec]
    rate_limit_headers: bool
    websocket_idle_timeout_ms: int
    websocket_max_connection_ms: int


class FunctionSpec(TypedDict):
    reserved_concurrency: int | None


class Spec(TypedDict):
    apis: list[ApiSpec]
    default_api: int | None
    account_throttle: LimitSpec | None
    settings: Settings
    principals: list[PrincipalSpec]
    api_keys: list[ApiKeySpec]
    usage_plans: list[UsagePlanSpec]


# ------------------------------------------------------------------------------------- builders


def limit(rate: float, burst: int) -> LimitSpec:
    return {"rate": float(rate), "burst": int(burst)}


def access_log(format: str, destination: str = "stdout") -> AccessLogSpec:
    return {"format": format, "destination": destination}


def cors(
    allow_origins: list[str],
    allow_methods: list[str] = (),  # type: ignore[assignment]
    allow_headers: list[str] = (),  # type: ignore[assignment]
    expose_headers: list[str] = (),  # type: ignore[assignment]
    max_age: int | None = None,
    allow_credentials: bool = False,
) -> CorsSpec:
    return {
        "allow_origins": list(allow_origins),
        "allow_methods": list(allow_methods),
        "allow_headers": list(allow_headers),
        "expose_headers": list(expose_headers),
        "max_age": max_age,
        "allow_credentials": bool(allow_credentials),
    }


def http_proxy(
    uri: str,
    method: str | None = None,
    timeout_ms: int = 30000,
    transfer_mode: TransferMode = "BUFFERED",
    *,
    request_parameters: dict[str, str] | None = None,
    response_parameters: dict[str, dict[str, str]] | None = None,
) -> HttpProxySpec:
    """`HTTP_PROXY`: `uri` may hold `${stageVariables.NAME}` and `{param}` markers. `STREAM`
    (REST APIs): the answer is held to the limits of streamed responses instead.
    `request_parameters`: REST APIs' `integration.request.{header,querystring,path}.NAME` -> its
    source expression, applied over what the proxy passes on; or an HTTP API integration's
    parameter mapping (`append:header.x` -> `$request.header.y`), with `response_parameters`
    (`{"500": {"overwrite:statuscode": "403"}}`)."""
    out: HttpProxySpec = {
        "type": "HTTP_PROXY",
        "uri": uri,
        "method": None if not method or method.upper() == "ANY" else method.upper(),
        "timeout_ms": int(timeout_ms),
    }
    if _transfer_mode(transfer_mode) == "STREAM":
        out["transfer_mode"] = "STREAM"
    _add_mappings(out, request_parameters, response_parameters)
    return out


def _add_mappings(
    out: HttpProxySpec | LambdaProxySpec,
    request_parameters: dict[str, str] | None,
    response_parameters: dict[str, dict[str, str]] | None,
) -> None:
    """The mappings as the core reads them (sorted pairs); absent when there are none."""
    if request_parameters:
        out["request_parameters"] = sorted((str(k), str(v)) for k, v in request_parameters.items())
    if response_parameters:
        out["response_parameters"] = sorted(
            (str(status), sorted((str(k), str(v)) for k, v in mappings.items()))
            for status, mappings in response_parameters.items()
        )


def _transfer_mode(mode: str) -> TransferMode:
    if mode not in ("BUFFERED", "STREAM"):
        raise ValueError(f"responseTransferMode must be BUFFERED or STREAM, not {mode!r}")
    return mode  # type: ignore[return-value]


def http_backend(uri: str, method: str | None = None, timeout_ms: int = 29000) -> HttpBackendSpec:
    """A non-proxy `HTTP` integration's endpoint: `uri` may hold `${stageVariables.NAME}` and
    `{name}` markers (filled from the mapped `integration.request.path.NAME`)."""
    return {
        "kind": "HTTP",
        "uri": uri,
        "method": None if not method or method.upper() == "ANY" else method.upper(),
        "timeout_ms": int(timeout_ms),
    }


def lambda_backend(uri: str, timeout_ms: int = 29000) -> LambdaBackendSpec:
    """A non-proxy `AWS` integration's Lambda function (an invocation URI, an ARN or a name)."""
    return {"kind": "LAMBDA", "uri": uri, "timeout_ms": int(timeout_ms)}


def mock_backend() -> MockBackendSpec:
    return {"kind": "MOCK"}


def integration_response(
    status: int,
    selection_pattern: str | None = None,
    parameters: dict[str, str] | None = None,
    templates: dict[str, str] | None = None,
    content_handling: ContentHandling | None = None,
) -> IntegrationResponseSpec:
    return {
        "status": int(status),
        "selection_pattern": selection_pattern or None,
        "parameters": list((parameters or {}).items()),
        "templates": list((templates or {}).items()),
        "content_handling": content_handling,
    }


def method_response(status: int, headers: list[str] | tuple[str, ...] = ()) -> MethodResponseSpec:
    return {"status": int(status), "headers": list(headers)}


def non_proxy(
    backend: BackendSpec,
    *,
    request_parameters: dict[str, str] | None = None,
    request_templates: dict[str, str] | None = None,
    passthrough: PassthroughBehavior = "WHEN_NO_MATCH",
    content_handling: ContentHandling | None = None,
    responses: list[IntegrationResponseSpec] | None = None,
    method_responses: list[MethodResponseSpec] | None = None,
) -> NonProxySpec:
    """A REST non-proxy integration: the integration request's mapping, `backend`, and the
    integration responses with the method's responses."""
    return {
        "type": "NON_PROXY",
        "backend": backend,
        "request_parameters": list((request_parameters or {}).items()),
        "request_templates": list((request_templates or {}).items()),
        "passthrough": passthrough,
        "content_handling": content_handling,
        "responses": list(responses or ()),
        "method_responses": list(method_responses or ()),
    }


def websocket_response(
    key: str,
    templates: dict[str, str] | None = None,
    template_selection: str | None = None,
    content_handling: ContentHandling | None = None,
) -> WebsocketResponseSpec:
    return {
        "key": key,
        "templates": list((templates or {}).items()),
        "template_selection": template_selection,
        "content_handling": content_handling,
    }


def websocket_integration(
    backend: BackendSpec,
    *,
    proxy: bool = False,
    request_parameters: dict[str, str] | None = None,
    request_templates: dict[str, str] | None = None,
    template_selection: str | None = None,
    passthrough: PassthroughBehavior = "WHEN_NO_MATCH",
    content_handling: ContentHandling | None = None,
    responses: list[WebsocketResponseSpec] | None = None,
) -> WebsocketIntegrationSpec:
    """A WebSocket API's `HTTP_PROXY` (`proxy`, an HTTP backend), `HTTP`, `AWS` or `MOCK`
    integration: request parameters, request templates by selection key, the backend, and the
    integration responses by key."""
    return {
        "type": "WEBSOCKET",
        "backend": backend,
        "proxy": proxy,
        "request_parameters": list((request_parameters or {}).items()),
        "request_templates": list((request_templates or {}).items()),
        "template_selection": template_selection,
        "passthrough": passthrough,
        "content_handling": content_handling,
        "responses": list(responses or ()),
    }


def mock(status: int, headers: dict[str, str] | None = None, body: str = "") -> MockSpec:
    return {"type": "MOCK", "status": int(status), "headers": list((headers or {}).items()), "body": body}


def lambda_proxy(
    uri: str,
    payload_format_version: str = "2.0",
    timeout_ms: int = 30000,
    transfer_mode: TransferMode = "BUFFERED",
    *,
    request_parameters: dict[str, str] | None = None,
    response_parameters: dict[str, dict[str, str]] | None = None,
) -> LambdaProxySpec:
    """`AWS_PROXY`: a function URI (any Lambda ARN form, or a name), run by the Python side.
    `STREAM` (REST APIs): a generator handler streams its answer. HTTP APIs' parameter mapping as
    for `http_proxy`."""
    if payload_format_version not in ("1.0", "2.0"):
        raise ValueError(f"payloadFormatVersion must be 1.0 or 2.0, not {payload_format_version!r}")
    out: LambdaProxySpec = {
        "type": "AWS_PROXY",
        "uri": uri,
        "payload_format_version": payload_format_version,  # type: ignore[typeddict-item]
        "timeout_ms": int(timeout_ms),
    }
    if _transfer_mode(transfer_mode) == "STREAM":
        out["transfer_mode"] = "STREAM"
    _add_mappings(out, request_parameters, response_parameters)
    return out


def unavailable(detail: str) -> UnavailableSpec:
    """A route that cannot be served as configured: AWS's 500, and `detail` in the log."""
    return {"type": "UNAVAILABLE", "detail": detail}


def route(
    key: str,
    integration: IntegrationSpec,
    auth: RouteAuthSpec | None = None,
    cache_key: list[CacheKeyParameterSpec] | None = None,
    cache_namespace: str | None = None,
    validation: RouteValidationSpec | None = None,
    two_way: bool = False,
) -> RouteSpec:
    """A route. `cache_key`: its integration's `cacheKeyParameters` (REST APIs);
    `cache_namespace`: a `cacheNamespace` it shares with other routes (None: its own resource);
    `validation`: how its requests are validated (REST APIs)."""
    out: RouteSpec = {"key": key, "integration": integration}
    if auth is not None:
        out["auth"] = auth
    if cache_key:
        out["cache_key"] = list(cache_key)
    if cache_namespace is not None:
        out["cache_namespace"] = cache_namespace
    if validation is not None:
        out["validation"] = validation
    if two_way:
        out["two_way"] = True
    return out


def model(name: str, schema: str) -> ModelSpec:
    """A REST API's model; `schema` is its JSON text, as AWS keeps it."""
    return {"name": name, "schema": schema}


def required_parameter(
    location: Literal["header", "querystring", "path"], name: str
) -> RequiredParameterSpec:
    return {"location": location, "name": name}


def route_validation(
    parameters: list[RequiredParameterSpec] | None = None,
    body: dict[str, str] | None = None,
    model_selection: str | None = None,
) -> RouteValidationSpec:
    """A method's request validation: the `parameters` it requires (None: not validated) and, when
    bodies are validated, its `requestModels` as `body` (media type or `$default` -> model name).
    A WebSocket route's: its `modelSelectionExpression` and its `requestModels` by its values."""
    return {
        "parameters": list(parameters or []),
        "body": None if body is None else dict(body),
        "model_selection": model_selection,
    }


def cache_key_parameter(location: ParameterLocation, name: str) -> CacheKeyParameterSpec:
    return {"location": location, "name": name}


# AWS's `cacheClusterSize` values, in GB (of the cache's memory: GiB here).
CACHE_CLUSTER_GB = ("0.5", "1.6", "6.1", "13.5", "28.4", "58.2", "118", "237")


def route_cache(
    ttl_s: int,
    methods: Literal["GET", "ALL"],
    *,
    require_authorization: bool = True,
    unauthorized: Literal[
        "FAIL_WITH_403", "SUCCEED_WITH_RESPONSE_HEADER", "SUCCEED_WITHOUT_RESPONSE_HEADER"
    ] = "SUCCEED_WITH_RESPONSE_HEADER",
) -> RouteCacheSpec:
    return {
        "ttl_s": int(ttl_s),
        "methods": methods,
        "require_authorization": bool(require_authorization),
        "unauthorized": unauthorized,
    }


def stage_cache(capacity_bytes: int, routes: dict[str, RouteCacheSpec], epoch: int = 0) -> StageCacheSpec:
    """A stage's response cache: at most `capacity_bytes` of entries (in each serving process);
    `routes` maps the route keys it caches to their settings; `epoch` is moved by FlushStageCache."""
    return {"capacity_bytes": int(capacity_bytes), "epoch": int(epoch), "routes": dict(routes)}


def route_auth(
    authorization: AuthorizationType = "NONE",
    authorizer: AuthorizerSpec | None = None,
    *,
    scopes: list[str] | tuple[str, ...] = (),
    api_key_required: bool = False,
) -> RouteAuthSpec:
    """A route's (REST: a method's) `authorizationType`, authorizer, scopes and API key."""
    return {
        "authorization": authorization,
        "authorizer": authorizer,
        "scopes": list(scopes),
        "api_key_required": bool(api_key_required),
    }


def jwt_authorizer(
    authorizer_id: str, issuer: str, audience: list[str], identity_source: str, name: str = ""
) -> JwtAuthorizerSpec:
    return {
        "type": "JWT",
        "id": authorizer_id,
        "name": name,
        "identity_source": identity_source,
        "issuer": issuer,
        "audience": list(audience),
    }


def cognito_authorizer(
    authorizer_id: str, issuers: list[str], identity_source: str, ttl_s: int = 300, name: str = ""
) -> CognitoAuthorizerSpec:
    return {
        "type": "COGNITO_USER_POOLS",
        "id": authorizer_id,
        "name": name,
        "identity_source": identity_source,
        "issuers": list(issuers),
        "ttl_s": int(ttl_s),
    }


def lambda_authorizer(
    authorizer_id: str,
    uri: str,
    event: Literal["TOKEN", "REQUEST", "HTTP_1_0", "HTTP_2_0"],
    identity_sources: list[str] | tuple[str, ...] = (),
    *,
    validation_expression: str | None = None,
    ttl_s: int = 0,
    simple_responses: bool = False,
    timeout_ms: int = 10_000,
    name: str = "",
) -> LambdaAuthorizerSpec:
    """A Lambda authorizer: `event` is REST's TOKEN/REQUEST, or an HTTP API's payload version."""
    return {
        "type": "LAMBDA",
        "id": authorizer_id,
        "name": name,
        "uri": uri,
        "event": event,
        "identity_sources": list(identity_sources),
        "validation_expression": validation_expression,
        "ttl_s": int(ttl_s),
        "simple_responses": bool(simple_responses),
        "timeout_ms": int(timeout_ms),
    }


def gateway_response(
    response_type: str,
    status: int | None = None,
    headers: dict[str, str] | None = None,
    templates: dict[str, str] | None = None,
) -> GatewayResponseSpec:
    return {
        "response_type": response_type,
        "status": status,
        "headers": list((headers or {}).items()),
        "templates": dict(templates or {}),
    }


def principal(
    access_key_id: str,
    secret_access_key: str,
    arn: str,
    account_id: str,
    policy: dict | None = None,
    session_token: str | None = None,
) -> PrincipalSpec:
    return {
        "access_key_id": access_key_id,
        "secret_access_key": secret_access_key,
        "session_token": session_token,
        "arn": arn,
        "account_id": account_id,
        "policy": _policy_document(policy),
    }


def api_key_digest(value: str) -> str:
    """The hex SHA-256 by which the core knows an API key's value."""
    return hashlib.sha256(value.encode()).hexdigest()


def api_key(key_id: str, value: str, stages: list[str], enabled: bool = True) -> ApiKeySpec:
    """An API key: only its value's SHA-256 crosses to the core."""
    return {
        "id": key_id,
        "value_sha256": api_key_digest(value),
        "enabled": bool(enabled),
        "stages": list(stages),
    }


def quota(limit: int, period: QuotaPeriod, offset: int = 0, since_ms: int | None = None) -> QuotaSpec:
    """A usage plan's quota: `limit` requests per UTC `period`, `offset` fewer in the period holding
    `since_ms` (when the quota was set)."""
    if period not in ("DAY", "WEEK", "MONTH"):
        raise ValueError(f"quota period must be DAY, WEEK or MONTH, not {period!r}")
    return {
        "limit": int(limit),
        "period": period,
        "offset": int(offset),
        "since_ms": None if since_ms is None else int(since_ms),
    }


def plan_stage(api_id: str, stage: str, method_throttle: dict[str, LimitSpec] | None = None) -> PlanStageSpec:
    """A stage of a usage plan; `method_throttle` keys are `/{resourcePath}/{METHOD}`."""
    return {"api_id": api_id, "stage": stage, "method_throttle": dict(method_throttle or {})}


def plan_key(
    key_id: str,
    days: list[tuple[int, int]] | tuple[()] = (),
    credits: list[tuple[int, int]] | tuple[()] = (),
) -> PlanKeySpec:
    """A key of a usage plan, with what is durable of its usage in it."""
    return {
        "id": key_id,
        "days": [(int(d), int(n)) for d, n in days],
        "credits": [(int(i), int(c)) for i, c in credits],
    }


def usage_plan(
    plan_id: str,
    stages: list[PlanStageSpec],
    keys: list[PlanKeySpec],
    throttle: LimitSpec | None = None,
    quota: QuotaSpec | None = None,
) -> UsagePlanSpec:
    """A usage plan: each key's throttle and quota over the plan's stages."""
    return {"id": plan_id, "throttle": throttle, "quota": quota, "stages": stages, "keys": keys}


def canary(
    percent: float,
    deployment_id: str,
    variables: dict[str, str],
    routes: list[RouteSpec] | None = None,
    use_stage_cache: bool = False,
    models: list[ModelSpec] | None = None,
) -> CanarySpec:
    """A stage's canary. `use_stage_cache`: its requests use the stage's cache; `models`: its
    deployment's (with `routes`)."""
    out: CanarySpec = {
        "percent": min(max(float(percent), 0.0), 100.0),
        "deployment_id": deployment_id,
        "variables": dict(variables),
    }
    if routes is not None:
        out["routes"] = routes
        if models:
            out["models"] = list(models)
    if use_stage_cache:
        out["use_stage_cache"] = True
    return out


def stage(
    name: str,
    *,
    deployment_id: str = "",
    variables: dict[str, str] | None = None,
    default_throttle: LimitSpec | None = None,
    route_throttle: dict[str, LimitSpec] | None = None,
    routes: list[RouteSpec] | None = None,
    cors: CorsSpec | None = None,
    access_log: AccessLogSpec | None = None,
    canary: CanarySpec | None = None,
    authorizer_cache_epoch: int = 0,
    cache: StageCacheSpec | None = None,
    models: list[ModelSpec] | None = None,
) -> StageSpec:
    """A stage. `routes` None: it serves the API's routes (and the API's CORS and models).
    `authorizer_cache_epoch`: moved by FlushStageAuthorizersCache (Lambda authorizers' caches of
    the stage start afresh)."""
    out: StageSpec = {
        "name": name,
        "deployment_id": deployment_id,
        "variables": dict(variables or {}),
        "default_throttle": default_throttle,
        "route_throttle": dict(route_throttle or {}),
    }
    if routes is not None:
        out["routes"] = routes
        out["cors"] = cors
        if models:
            out["models"] = list(models)
    if access_log is not None:
        out["access_log"] = access_log
    if canary is not None:
        out["canary"] = canary
    if authorizer_cache_epoch:
        out["authorizer_cache_epoch"] = int(authorizer_cache_epoch)
    if cache is not None:
        out["cache"] = cache
    return out


def api(
    api_id: str,
    name: str,
    kind: Literal["http", "rest", "websocket"],
    stages: list[StageSpec],
    *,
    routes: list[RouteSpec] | None = None,
    cors: CorsSpec | None = None,
    binary_media_types: list[str] | tuple[str, ...] = (),
    api_key_source: Literal["HEADER", "AUTHORIZER"] = "HEADER",
    policy: dict | str | None = None,
    gateway_responses: list[GatewayResponseSpec] | None = None,
    models: list[ModelSpec] | None = None,
    route_selection_expression: str | None = None,
) -> ApiSpec:
    out: ApiSpec = {
        "id": api_id,
        "name": name,
        "kind": kind,
        "routes": routes or [],
        "stages": stages,
        "cors": cors,
        "binary_media_types": list(binary_media_types),
        "api_key_source": api_key_source,
        "policy": _policy_document(policy),
        "gateway_responses": list(gateway_responses or []),
    }
    if models:
        out["models"] = list(models)
    if route_selection_expression is not None:
        out["route_selection_expression"] = route_selection_expression
    return out


def spec(
    apis: list[ApiSpec],
    *,
    account_throttle: LimitSpec | None = None,
    header_limit: int = DEFAULT_HEADER_LIMIT,
    payload_limit: int = DEFAULT_PAYLOAD_LIMIT,
    body_timeout_ms: int = 30_000,
    access_log: AccessLogSpec | None = None,
    account_id: str = "000000000000",
    region: str = "us-east-1",
    on_request: bool = False,
    on_response: bool = False,
    upstream_ca_file: str | None = None,
    function_concurrency: int = 64,
    reserved_concurrency: dict[str, int] | None = None,
    principals: list[PrincipalSpec] | None = None,
    api_keys: list[ApiKeySpec] | None = None,
    usage_plans: list[UsagePlanSpec] | None = None,
    rate_limit_headers: bool = False,
    websocket_idle_timeout_ms: int = 600_000,
    websocket_max_connection_ms: int = 7_200_000,
) -> Spec:
    """The whole spec. A Host that names no API reaches the only API when there is exactly one."""
    return {
        "apis": apis,
        "default_api": 0 if len(apis) == 1 else None,
        "account_throttle": account_throttle,
        "settings": {
            "header_limit": int(header_limit),
            "payload_limit": int(payload_limit),
            "body_timeout_ms": int(body_timeout_ms),
            "access_log": access_log,
            "account_id": account_id,
            "region": region,
            "plugins": {"on_request": on_request, "on_response": on_response},
            "upstream_ca_file": upstream_ca_file,
            "function_concurrency": int(function_concurrency),
            "functions": {
                name: {"reserved_concurrency": int(limit)}
                for name, limit in (reserved_concurrency or {}).items()
            },
            "rate_limit_headers": bool(rate_limit_headers),
            "websocket_idle_timeout_ms": int(websocket_idle_timeout_ms),
            "websocket_max_connection_ms": int(websocket_max_connection_ms),
        },
        "principals": list(principals or []),
        "api_keys": list(api_keys or []),
        "usage_plans": list(usage_plans or []),
    }


def _policy_document(policy: dict | str | None) -> dict | str | None:
    """An IAM policy as the core reads it: the document, or its JSON text when orjson cannot write
    it (integers past 64 bits, which JSON and IAM allow); the core parses either."""
    if isinstance(policy, dict):
        try:
            orjson.dumps(policy)
        except TypeError:
            return json.dumps(policy)
    return policy


def dumps(value: Spec) -> str:
    """The spec as the core reads it."""
    return orjson.dumps(value).decode()
