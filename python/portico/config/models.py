"""The declarative configuration: what a YAML file (or an imported OpenAPI document) describes.

Field names follow AWS's own member names (`throttlingRateLimit`, `payloadFormatVersion`,
`timeoutInMillis`, ...) so that what users know from API Gateway reads the same here.
Validation happens here, before anything is served; every error carries the path of the field.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator, model_validator

ROUTE_METHODS = ("ANY", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_STAGE_NAME = re.compile(r"^(\$default|[A-Za-z0-9_-]{1,128})$")
_STAGE_VARIABLE_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_STAGE_VARIABLE_VALUE = re.compile(r"^[A-Za-z0-9\-._~:/?#&=,]{1,512}$")
_API_ID = re.compile(r"^[a-z0-9]{1,32}$")
_SEGMENT = re.compile(r"^(\{[A-Za-z0-9_.-]+\+?\}|[A-Za-z0-9_.,:@!$&'()*=~-]+)$")


class _Model(BaseModel):
    # Unknown keys are refused so that a typo (`throttlingRatelimit`) is an error, not a silent no-op.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class RouteSettings(_Model):
    """Per-route settings of a stage (AWS `RouteSettings`)."""

    throttlingRateLimit: Annotated[float, Field(ge=0)] | None = None
    throttlingBurstLimit: Annotated[int, Field(ge=0)] | None = None
    detailedMetricsEnabled: bool = False
    loggingLevel: Literal["ERROR", "INFO", "OFF"] | None = None
    dataTraceEnabled: bool = False

    @model_validator(mode="after")
    def _both_or_neither(self) -> RouteSettings:
        if (self.throttlingRateLimit is None) != (self.throttlingBurstLimit is None):
            raise ValueError("set both throttlingRateLimit and throttlingBurstLimit, or neither")
        return self

    def throttle(self) -> dict[str, float] | None:
        if self.throttlingRateLimit is None or self.throttlingBurstLimit is None:
            return None
        return {"rate": float(self.throttlingRateLimit), "burst": int(self.throttlingBurstLimit)}


_CACHE_KEY_PARAMETER = re.compile(
    r"^method\.request\.(querystring|multivaluequerystring|header|multivalueheader|path)\.([^\s.][^\s]*)$"
)


def parse_cache_key_parameter(value: str) -> tuple[str, str]:
    """One of an integration's `cacheKeyParameters` -> (location, name):
    `method.request.querystring.type` -> ("querystring", "type")."""
    match = _CACHE_KEY_PARAMETER.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(
            f"cache key parameter {value!r}: expected method.request.querystring.NAME, "
            "method.request.multivaluequerystring.NAME, method.request.header.NAME, "
            "method.request.multivalueheader.NAME or method.request.path.NAME"
        )
    return match[1], match[2]


class IntegrationResponse(_Model):
    """One of a REST non-proxy integration's responses (AWS `IntegrationResponse`), under
    `integrationResponses` by the method response's status code."""

    # A Java regular expression matched against the whole backend status (HTTP, MOCK) or the
    # Lambda error's errorMessage (AWS); unset or empty: the default response.
    selectionPattern: str | None = None
    # method.response.header.NAME -> integration.response.header.X, integration.response.body[.JSONPATH],
    # stageVariables.X, context.X or 'static' (the route's methodResponses must declare NAME)
    responseParameters: dict[str, str] = Field(default_factory=dict)
    # content type -> mapping template (chosen by the request's Accept)
    responseTemplates: dict[str, str] = Field(default_factory=dict)
    contentHandling: Literal["CONVERT_TO_TEXT", "CONVERT_TO_BINARY"] | None = None
    # WebSocket APIs: which of `responseTemplates` renders the message sent back
    # (`${integration.response.statuscode}`, `$request.body.action`, `\$default`...).
    templateSelectionExpression: str | None = None
    # WebSocket APIs (apigatewayv2's name): CONVERT_TO_TEXT sends the backend's bytes back as
    # base64 text, CONVERT_TO_BINARY its base64 answer as a binary frame (docs/websocket.md).
    contentHandlingStrategy: Literal["CONVERT_TO_TEXT", "CONVERT_TO_BINARY"] | None = None


class MethodResponse(_Model):
    """A method response (AWS `MethodResponse`), under a route's `methodResponses` by status code:
    the headers it declares (`method.response.header.NAME: true|false`)."""

    responseParameters: dict[str, bool] = Field(default_factory=dict)
    responseModels: dict[str, str] = Field(default_factory=dict)


class Integration(_Model):
    """An integration (AWS `Integration`, HTTP API flavour; REST APIs also have the non-proxy
    `AWS` (Lambda), `HTTP` and `MOCK` with request and response mapping)."""

    type: Literal["AWS_PROXY", "HTTP_PROXY", "MOCK", "AWS", "HTTP"]
    uri: str | None = Field(default=None, alias="integrationUri")
    method: str = Field(default="ANY", alias="integrationMethod")
    payloadFormatVersion: Literal["1.0", "2.0"] | None = None
    # Up to 30 s; up to 15 minutes for a streaming integration (`responseTransferMode: STREAM`).
    timeoutInMillis: Annotated[int, Field(ge=50, le=900_000)] = 30000
    # REST APIs' AWS_PROXY and HTTP_PROXY integrations: STREAM passes the answer on as it comes
    # ("Stream the integration response for your proxy integrations in API Gateway").
    responseTransferMode: Literal["BUFFERED", "STREAM"] = "BUFFERED"
    # MOCK only
    statusCode: Annotated[int, Field(ge=100, le=599)] | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    body: str = ""
    description: str | None = None
    # REST APIs: what the stage cache keys answers by besides the method and resource path
    # (`method.request.querystring.NAME`, `.header.NAME`, `.path.NAME`, ...), and a
    # `cacheNamespace` to share entries with other routes (unset: the route's own).
    cacheKeyParameters: list[str] = Field(default_factory=list)
    cacheNamespace: str | None = None
    # `requestParameters`, read per API kind. REST APIs (docs/pipeline.md, "Non-proxy
    # integrations"): integration.request.{header,querystring,path}.NAME -> method.request.*,
    # stageVariables.X, context.X or 'static' (HTTP_PROXY too). HTTP APIs' parameter mapping
    # (HTTP_PROXY, AWS_PROXY), as AWS's `RequestParameters` (`append:header.x-user` ->
    # `$context.authorizer.user`) and `ResponseParameters` (status code -> its mappings), refused
    # as the admin API refuses them (`Api._rest_only`). REST APIs' request templates by content
    # type, what a request without one gets, the payload's content handling, and the integration
    # responses by status code. A MOCK with request
    # templates or integration responses is AWS's; without, it answers `statusCode`, `headers` and
    # `body` as they are.
    requestParameters: dict[str, str] = Field(default_factory=dict)
    responseParameters: dict[str, dict[str, str]] = Field(default_factory=dict)
    requestTemplates: dict[str, str] = Field(default_factory=dict)
    passthroughBehavior: Literal["WHEN_NO_MATCH", "WHEN_NO_TEMPLATES", "NEVER"] = "WHEN_NO_MATCH"
    contentHandling: Literal["CONVERT_TO_TEXT", "CONVERT_TO_BINARY"] | None = None
    integrationResponses: dict[str, IntegrationResponse] = Field(default_factory=dict)
    # WebSocket APIs: which of `requestTemplates` makes the integration request
    # (`$request.body.action`, `\$default`; unset: the `$default` template).
    templateSelectionExpression: str | None = None
    # WebSocket APIs (apigatewayv2's name): CONVERT_TO_BINARY takes each message as base64 and
    # sends the backend its bytes ("Binary media types for WebSocket APIs").
    contentHandlingStrategy: Literal["CONVERT_TO_TEXT", "CONVERT_TO_BINARY"] | None = None

    @field_validator("integrationResponses")
    @classmethod
    def _statuses(cls, value: dict[str, IntegrationResponse]) -> dict[str, IntegrationResponse]:
        # REST APIs key them by status code; WebSocket APIs by `integrationResponseKey`
        # (`$default`, `/4\d\d/`; `Api._websocket` and `Api._rest_only` refuse the other kind's).
        for status in value:
            if not re.fullmatch(r"[1-5]\d\d|\$default|/.+/", str(status)):
                raise ValueError(
                    f"{status!r}: integration responses are keyed by a status code ([1-5]\\d\\d), or "
                    "on WebSocket APIs by $default or /REGEX/"
                )
        return value

    @field_validator("responseParameters", mode="before")
    @classmethod
    def _status_keys(cls, value: Any) -> Any:
        # YAML reads `200:` as a number; AWS's keys are status codes as text.
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value

    @field_validator("cacheKeyParameters")
    @classmethod
    def _cache_key(cls, value: list[str]) -> list[str]:
        for parameter in value:
            parse_cache_key_parameter(parameter)
        return value

    @field_validator("type", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        value = value.upper()
        if value not in ROUTE_METHODS:
            raise ValueError(f"must be one of {', '.join(ROUTE_METHODS)}")
        return value

    @field_validator("responseTransferMode", mode="before")
    @classmethod
    def _mode_upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @property
    def non_proxy(self) -> bool:
        """Whether the integration maps requests and responses (REST `AWS`, `HTTP`, AWS's MOCK)."""
        if self.type == "MOCK":
            return bool(self.requestTemplates or self.integrationResponses)
        return self.type in ("AWS", "HTTP")

    @model_validator(mode="after")
    def _per_type(self) -> Integration:
        if self.responseTransferMode == "STREAM" and self.type not in ("AWS_PROXY", "HTTP_PROXY"):
            raise ValueError("responseTransferMode STREAM: only AWS_PROXY and HTTP_PROXY integrations stream")
        if self.responseTransferMode != "STREAM" and self.timeoutInMillis > 30000:
            raise ValueError(
                "timeoutInMillis: at most 30000 (900000 for responseTransferMode STREAM), "
                f"got {self.timeoutInMillis}"
            )
        mapped = self.requestTemplates or self.integrationResponses or self.contentHandling
        if self.type in ("AWS_PROXY", "HTTP_PROXY") and mapped:
            raise ValueError(
                f"{self.type} integrations pass requests and responses as they are: requestTemplates, "
                "integrationResponses and contentHandling are non-proxy integrations' (AWS, HTTP, MOCK)"
            )
        if self.type == "MOCK":
            if self.statusCode is None and not self.non_proxy:
                raise ValueError(
                    "a MOCK integration needs statusCode (or AWS's requestTemplates and integrationResponses)"
                )
            if self.non_proxy and (self.statusCode is not None or self.headers or self.body):
                raise ValueError(
                    "a MOCK with requestTemplates or integrationResponses takes its status from the request "
                    "template and its body from the responses: statusCode, headers and body do not apply"
                )
            return self
        if not self.uri:
            raise ValueError(f"an {self.type} integration needs uri (or integrationUri)")
        if self.type == "AWS":
            from portico.integrations.functions import function_name_from_uri

            if ":lambda:path/" not in self.uri:
                raise ValueError(
                    f"AWS integrations call Lambda functions (an invocation URI), not {self.uri!r}"
                )
            try:
                function_name_from_uri(_without_stage_variables(self.uri))
            except ValueError as exc:
                raise ValueError(f"uri is not a Lambda invocation URI: {exc}") from None
        if self.type == "HTTP" and not re.match(r"^https?://", self.uri):
            raise ValueError(f"uri must be an http:// or https:// URL, got {self.uri!r}")
        if self.type == "HTTP_PROXY":
            if not re.match(r"^https?://", self.uri):
                raise ValueError(f"uri must be an http:// or https:// URL, got {self.uri!r}")
            if self.payloadFormatVersion not in (None, "1.0"):
                raise ValueError("HTTP_PROXY integrations use payloadFormatVersion 1.0")
        if self.type == "AWS_PROXY":
            # Imported here: the integration package depends on config, never the reverse at import.
            from portico.integrations.functions import function_name_from_uri

            try:
                function_name_from_uri(_without_stage_variables(self.uri))
            except ValueError as exc:
                raise ValueError(f"uri is not a Lambda function ARN or name: {exc}") from None
        return self

    @property
    def payload_format(self) -> str:
        if self.payloadFormatVersion:
            return self.payloadFormatVersion
        return "1.0" if self.type == "HTTP_PROXY" else "2.0"


# What only WebSocket APIs' integrations and integration responses have, and what REST APIs
# have instead.
_WEBSOCKET_INTEGRATION_MEMBERS = {
    "templateSelectionExpression": "REST APIs choose templates by content type",
    "contentHandlingStrategy": "REST APIs: contentHandling",
}


def _websocket_integration_problem(integration: Integration) -> str | None:
    """What WebSocket APIs do not take of an integration ("Setting up WebSocket API integration
    responses": their responses are keyed `$default` or `/REGEX/`, and map no headers)."""
    if integration.contentHandling or any(
        r.contentHandling for r in integration.integrationResponses.values()
    ):
        return "contentHandling is REST APIs'; WebSocket APIs spell it contentHandlingStrategy"
    if integration.contentHandlingStrategy and integration.type == "AWS_PROXY":
        return (
            "contentHandlingStrategy: an AWS_PROXY event carries the message as text; HTTP_PROXY, HTTP, "
            "AWS and MOCK integrations convert it"
        )
    for key, response in integration.integrationResponses.items():
        if not re.fullmatch(r"\$default|/.+/", key):
            return f"integrationResponses: {key!r}: WebSocket APIs key them by $default or /REGEX/"
        if response.selectionPattern or response.responseParameters or response.contentHandling:
            return (
                f"integrationResponses.{key}: WebSocket APIs' responses are selected by their key and map "
                "only the body (responseTemplates, templateSelectionExpression)"
            )
    return None


def _method_response_problem(integration: Integration, route: Route) -> str | None:
    """What AWS refuses of an integration response (a header the method response does not
    declare), and what it would answer 500 at every call (a status without a method response)."""
    for status, response in integration.integrationResponses.items():
        method = route.methodResponses.get(status)
        if method is None:
            return f"integrationResponses.{status}: the route declares no methodResponses.{status}"
        for key in response.responseParameters:
            if key not in method.responseParameters:
                return (
                    f"integrationResponses.{status}.responseParameters: {key!r} is not declared in "
                    f"methodResponses.{status}.responseParameters"
                )
    return None


def _without_stage_variables(uri: str) -> str:
    """A placeholder-free copy of `uri` for validation (`${stageVariables.fn}` -> `fn`)."""
    return re.sub(r"\$\{stageVariables\.([A-Za-z0-9_]+)\}", r"\1", uri)


_TOKEN_IDENTITY_SOURCES = {
    "JWT": "$request.header.Authorization",
    "COGNITO_USER_POOLS": "method.request.header.Authorization",
}


class JwtConfiguration(_Model):
    """A JWT authorizer's issuer and audiences (AWS `JWTConfiguration`)."""

    issuer: str
    audience: list[str] = Field(default_factory=list)

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        return validate_issuer_url(value)

    @field_validator("audience")
    @classmethod
    def _audience(cls, value: list[str]) -> list[str]:
        if len(value) > 50:
            raise ValueError("at most 50 audiences")
        return value


class Authorizer(_Model):
    """An authorizer (AWS `Authorizer`), named by its key under an API's `authorizers:`.

    - Lambda authorizers. HTTP APIs: `authorizerType: REQUEST` with
      `authorizerPayloadFormatVersion` 1.0 or 2.0 (2.0 may `enableSimpleResponses`); REST APIs:
      `TOKEN` (one header, optionally checked by `identityValidationExpression`) or `REQUEST`.
      The function decides with an IAM policy, or with `isAuthorized` for simple responses.
    - `JWT` (HTTP APIs): tokens of `jwtConfiguration.issuer` for one of its `audience`.
    - `COGNITO_USER_POOLS` (REST APIs): tokens of the user pools of `providerARNs`.
    """

    authorizerType: Literal["TOKEN", "REQUEST", "JWT", "COGNITO_USER_POOLS"] = "REQUEST"
    name: str | None = None
    # Lambda authorizers: a function name, a Lambda function ARN or API Gateway's invocation URI.
    authorizerUri: str | None = None
    authorizerPayloadFormatVersion: Literal["1.0", "2.0"] | None = None
    enableSimpleResponses: bool = False
    # HTTP APIs: `$request.header.NAME`, `$request.querystring.NAME`, `$context.NAME`,
    # `$stageVariables.NAME`; REST APIs: `method.request.header.NAME`,
    # `method.request.querystring.NAME`, `stageVariables.NAME`, `context.NAME` (a list, or AWS's
    # comma-separated text). A request missing one is refused (401) without calling the function.
    # JWT and Cognito authorizers read one, by default the Authorization header.
    identitySource: list[str] = Field(default_factory=list)
    identityValidationExpression: str | None = None
    # 0: every request calls the function. Unset: 300 for REST APIs, 0 for HTTP APIs (AWS's).
    authorizerResultTtlInSeconds: Annotated[int, Field(ge=0, le=3600)] | None = None
    jwtConfiguration: JwtConfiguration | None = None
    # COGNITO_USER_POOLS: `arn:aws:cognito-idp:REGION:ACCOUNT:userpool/POOL_ID`, at least one.
    providerARNs: list[str] = Field(default_factory=list)

    @field_validator("identitySource", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("authorizerType", mode="before")
    @classmethod
    def _type_upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="before")
    @classmethod
    def _default_identity_source(cls, data: Any) -> Any:
        """JWT and Cognito authorizers read the Authorization header unless told otherwise."""
        if isinstance(data, dict) and not data.get("identitySource"):
            kind = str(data.get("authorizerType") or "").upper()
            default = _TOKEN_IDENTITY_SOURCES.get(kind)
            if default:
                data = {**data, "identitySource": [default]}
        return data

    @model_validator(mode="after")
    def _per_type(self) -> Authorizer:
        from portico.integrations.functions import function_name_from_uri

        if not self.is_lambda:
            for name in (
                "authorizerUri",
                "authorizerPayloadFormatVersion",
                "enableSimpleResponses",
                "identityValidationExpression",
            ):
                if getattr(self, name):
                    raise ValueError(f"{name}: Lambda authorizers' (authorizerType TOKEN or REQUEST)")
        if self.authorizerType == "JWT":
            if self.jwtConfiguration is None:
                raise ValueError("a JWT authorizer needs jwtConfiguration (issuer, audience)")
            if len(self.identitySource) != 1 or not self.identitySource[0].startswith(
                ("$request.header.", "$request.querystring.")
            ):
                raise ValueError(
                    "a JWT authorizer reads one identity source: "
                    "$request.header.NAME or $request.querystring.NAME"
                )
        elif self.jwtConfiguration is not None:
            raise ValueError("jwtConfiguration: JWT authorizers' (authorizerType JWT)")
        if self.authorizerType == "COGNITO_USER_POOLS":
            if not self.providerARNs:
                raise ValueError("a COGNITO_USER_POOLS authorizer needs providerARNs (its user pools)")
            for arn in self.providerARNs:
                if not _USER_POOL_ARN.match(arn):
                    raise ValueError(
                        f"providerARNs: {arn!r} is not a user pool ARN "
                        "(arn:aws:cognito-idp:REGION:ACCOUNT:userpool/ID)"
                    )
            if len(self.identitySource) != 1 or not self.identitySource[0].startswith(
                "method.request.header."
            ):
                raise ValueError(
                    "a COGNITO_USER_POOLS authorizer reads one header: method.request.header.NAME"
                )
        elif self.providerARNs:
            raise ValueError("providerARNs: COGNITO_USER_POOLS authorizers'")
        if self.is_lambda:
            if not self.authorizerUri:
                raise ValueError("a Lambda authorizer (TOKEN or REQUEST) needs authorizerUri")
            try:
                function_name_from_uri(_without_stage_variables(self.authorizerUri))
            except ValueError as exc:
                raise ValueError(f"authorizerUri is not a Lambda function ARN or name: {exc}") from None
        return self

    @property
    def is_lambda(self) -> bool:
        return self.authorizerType in ("TOKEN", "REQUEST")

    def ttl(self, rest: bool) -> int:
        if self.authorizerResultTtlInSeconds is not None:
            return self.authorizerResultTtlInSeconds
        return 300 if rest else 0

    def problem(self, rest: bool, websocket: bool = False) -> str | None:
        """Why this authorizer cannot serve an API of this kind, or None."""
        if websocket:
            return self._websocket_problem()
        if self.authorizerType == "JWT":
            return "JWT authorizers are HTTP APIs' (REST APIs: COGNITO_USER_POOLS)" if rest else None
        if self.authorizerType == "COGNITO_USER_POOLS":
            return None if rest else "COGNITO_USER_POOLS authorizers are REST APIs' (HTTP APIs: JWT)"
        prefixes = _REST_IDENTITY_PREFIXES if rest else _HTTP_IDENTITY_PREFIXES
        for source in self.identitySource:
            if not source.startswith(prefixes) or source in prefixes:
                return f"identity source {source!r} must be one of " + ", ".join(p + "NAME" for p in prefixes)
        if rest:
            for name in ("authorizerPayloadFormatVersion", "enableSimpleResponses"):
                if getattr(self, name):
                    return f"{name}: HTTP APIs' (REST authorizers are TOKEN or REQUEST)"
            if self.authorizerType == "TOKEN" and (
                len(self.identitySource) != 1
                or not self.identitySource[0].startswith("method.request.header.")
            ):
                return "a TOKEN authorizer reads one header: identitySource method.request.header.NAME"
            if self.identityValidationExpression and self.authorizerType != "TOKEN":
                return "identityValidationExpression applies to TOKEN authorizers only"
        else:
            if self.authorizerType != "REQUEST":
                return "HTTP APIs' Lambda authorizers are authorizerType REQUEST"
            if self.authorizerPayloadFormatVersion is None:
                return "authorizerPayloadFormatVersion (1.0 or 2.0) is required"
            if self.enableSimpleResponses and self.authorizerPayloadFormatVersion != "2.0":
                return "enableSimpleResponses needs authorizerPayloadFormatVersion 2.0"
            if self.identityValidationExpression:
                return "identityValidationExpression is REST TOKEN authorizers'"
        if self.ttl(rest) and not self.identitySource:
            return "caching (authorizerResultTtlInSeconds) needs at least one identitySource"
        return None

    def _websocket_problem(self) -> str | None:
        """WebSocket APIs' authorizers are Lambda REQUEST authorizers of `$connect`, reading the
        handshake (`route.request.header.NAME`...), without caching ("Control access to
        WebSocket APIs with AWS Lambda REQUEST authorizers"; apigatewayv2 `CreateAuthorizer`)."""
        if self.authorizerType != "REQUEST":
            return "WebSocket APIs' authorizers are Lambda authorizers of authorizerType REQUEST"
        for source in self.identitySource:
            if not source.startswith(_WEBSOCKET_IDENTITY_PREFIXES) or source in _WEBSOCKET_IDENTITY_PREFIXES:
                return f"identity source {source!r} must be one of " + ", ".join(
                    p + "NAME" for p in _WEBSOCKET_IDENTITY_PREFIXES
                )
        unused = ("authorizerPayloadFormatVersion", "enableSimpleResponses", "identityValidationExpression")
        for name in unused:
            if getattr(self, name):
                return f"{name}: not used by WebSocket APIs' authorizers"
        if self.authorizerResultTtlInSeconds:
            return "authorizerResultTtlInSeconds: WebSocket APIs' authorizers do not cache (HTTP APIs' do)"
        return None


_HTTP_IDENTITY_PREFIXES = ("$request.header.", "$request.querystring.", "$context.", "$stageVariables.")
_REST_IDENTITY_PREFIXES = (
    "method.request.header.",
    "method.request.querystring.",
    "stageVariables.",
    "context.",
)


_WEBSOCKET_IDENTITY_PREFIXES = (
    "route.request.header.",
    "route.request.querystring.",
    "stageVariables.",
    "context.",
)


AUTHORIZATION_TYPES = ("NONE", "AWS_IAM", "CUSTOM", "JWT", "COGNITO_USER_POOLS")
# The authorizer types each authorization type names in `authorizerId`.
_AUTHORIZER_TYPES_OF = {
    "CUSTOM": ("TOKEN", "REQUEST"),
    "JWT": ("JWT",),
    "COGNITO_USER_POOLS": ("COGNITO_USER_POOLS",),
}


class Route(_Model):
    route: str = Field(alias="routeKey")
    # The name of one of the API's integrations, or an integration written inline.
    integration: str | Integration
    # REST APIs (`protocolType: REST`): the method requires an API key (AWS `apiKeyRequired`).
    apiKeyRequired: bool = False
    # WebSocket APIs: `$default` gives the route a route response, which makes it two-way (the
    # integration's answer is sent back to the client); unset: one-way (AWS's only value).
    routeResponseSelectionExpression: Literal["$default"] | None = None
    # AWS `AuthorizationType`: `AWS_IAM` routes take only requests signed (SigV4) by one of the
    # `principals` whose policies allow `execute-api:Invoke` on the route; `CUSTOM` (a Lambda
    # authorizer), `JWT` (HTTP APIs) and `COGNITO_USER_POOLS` (REST APIs) routes are decided by
    # the authorizer named by `authorizerId` (a key of the API's `authorizers`).
    authorizationType: str = "NONE"
    authorizerId: str | None = None
    # JWT and COGNITO_USER_POOLS: the token must carry one of these scopes when there are some.
    authorizationScopes: list[str] = Field(default_factory=list)
    # REST APIs (AWS `Method` members): request validation's validator (the name of one of the
    # API's `requestValidators`), the method request's parameters (`method.request.header.X: true`,
    # required) and the models bodies are checked against, by media type (or `$default`); the
    # method's responses by status code (what a non-proxy integration's responses answer with: a
    # status needs one).
    requestValidatorId: str | None = None
    requestParameters: dict[str, bool] = Field(default_factory=dict)
    requestModels: dict[str, str] = Field(default_factory=dict)
    methodResponses: dict[str, MethodResponse] = Field(default_factory=dict)
    # WebSocket APIs ("Request validation for WebSocket APIs"): each message is checked against
    # the one of `requestModels` its value selects (`$request.body.version`, or a literal), else
    # the `$default` one; with neither, or when it does not match, it is refused.
    modelSelectionExpression: str | None = None

    @field_validator("requestParameters")
    @classmethod
    def _method_parameters(cls, value: dict[str, bool]) -> dict[str, bool]:
        for key in value:
            if parse_method_parameter(key) is None:
                raise ValueError(
                    f"{key!r} is not a method request parameter (method.request.header|querystring|path.NAME)"
                )
        return value

    @field_validator("authorizationType")
    @classmethod
    def _authorization_type(cls, value: str) -> str:
        value = value.upper()
        if value not in AUTHORIZATION_TYPES:
            raise ValueError(f"must be one of {', '.join(AUTHORIZATION_TYPES)}")
        return value

    @field_validator("route")
    @classmethod
    def _route_key(cls, value: str) -> str:
        if is_websocket_route_key(value):
            return value  # a WebSocket API's key: other APIs refuse it (`Api._websocket`)
        return validate_route_key(value)

    @model_validator(mode="after")
    def _authorizer(self) -> Route:
        if self.authorizationType in _AUTHORIZER_TYPES_OF and not self.authorizerId:
            raise ValueError(
                f"authorizationType {self.authorizationType} needs authorizerId "
                "(the name of one of the API's authorizers)"
            )
        if self.authorizationType in ("NONE", "AWS_IAM") and self.authorizerId:
            raise ValueError(f"authorizerId is not used with authorizationType {self.authorizationType}")
        if self.authorizationScopes and self.authorizationType not in ("JWT", "COGNITO_USER_POOLS"):
            raise ValueError("authorizationScopes apply to JWT and COGNITO_USER_POOLS authorization only")
        if len(self.authorizationScopes) > 10:
            raise ValueError("at most 10 authorizationScopes")
        return self


class Cors(_Model):
    """HTTP API CORS configuration (AWS `Cors`)."""

    allowOrigins: list[str] = Field(default_factory=list)
    allowMethods: list[str] = Field(default_factory=list)
    allowHeaders: list[str] = Field(default_factory=list)
    exposeHeaders: list[str] = Field(default_factory=list)
    maxAge: Annotated[int, Field(ge=-1, le=86400)] | None = None
    allowCredentials: bool = False

    @model_validator(mode="after")
    def _credentials_need_origins(self) -> Cors:
        if self.allowCredentials and "*" in self.allowOrigins:
            raise ValueError("allow-credentials is not supported if 'allow-origin' is *")
        return self


CACHE_CLUSTER_SIZES = ("0.5", "1.6", "6.1", "13.5", "28.4", "58.2", "118", "237")


class MethodSetting(_Model):
    """A REST stage's method settings (AWS `MethodSetting`), under `methodSettings` by `*/*` (every
    method) or `{resource path without its leading slash}/{METHOD}` (`pets/{id}/GET`). Unset
    members take the `*/*` entry's value, else AWS's default."""

    throttlingRateLimit: Annotated[float, Field(ge=0)] | None = None
    throttlingBurstLimit: Annotated[int, Field(ge=0)] | None = None
    # The stage cache (`cacheClusterEnabled`): `*/*` caches GET requests only; a method's own
    # setting caches every request of that method.
    cachingEnabled: bool | None = None
    # 0 disables caching; AWS's default is 300.
    cacheTtlInSeconds: Annotated[int, Field(ge=0, le=3600)] | None = None
    cacheDataEncrypted: bool | None = None
    # `Cache-Control: max-age=0` needs `execute-api:InvalidateCache` (default true); what a caller
    # without it gets: 403, or the cached answer with (the default) or without a warning header.
    requireAuthorizationForCacheControl: bool | None = None
    unauthorizedCacheControlHeaderStrategy: (
        Literal["FAIL_WITH_403", "SUCCEED_WITH_RESPONSE_HEADER", "SUCCEED_WITHOUT_RESPONSE_HEADER"] | None
    ) = None
    metricsEnabled: bool | None = None
    loggingLevel: Literal["ERROR", "INFO", "OFF"] | None = None
    dataTraceEnabled: bool | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> MethodSetting:
        if (self.throttlingRateLimit is None) != (self.throttlingBurstLimit is None):
            raise ValueError("set both throttlingRateLimit and throttlingBurstLimit, or neither")
        return self


class Stage(_Model):
    name: str = Field(default="$default", alias="stageName")
    variables: dict[str, str] = Field(default_factory=dict, alias="stageVariables")
    defaultRouteSettings: RouteSettings | None = None
    routeSettings: dict[str, RouteSettings] = Field(default_factory=dict)
    description: str | None = None
    # REST APIs (AWS `Stage` members): the stage's response cache, its size in GB (each serving
    # process keeps a cache of its own, bounded by it; `settings.stageCacheBytes` bounds it lower),
    # and per-method settings.
    cacheClusterEnabled: bool = False
    cacheClusterSize: Literal["0.5", "1.6", "6.1", "13.5", "28.4", "58.2", "118", "237"] = "0.5"
    methodSettings: dict[str, MethodSetting] = Field(default_factory=dict)

    @field_validator("cacheClusterSize", mode="before")
    @classmethod
    def _size_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value

    @field_validator("methodSettings")
    @classmethod
    def _method_setting_keys(cls, value: dict[str, MethodSetting]) -> dict[str, MethodSetting]:
        for key in value:
            if key != "*/*" and method_setting_route_key(key) is None:
                raise ValueError(f"{key!r}: expected */* or {{resource path}}/{{METHOD}} (pets/{{id}}/GET)")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _STAGE_NAME.match(value):
            raise ValueError("stage names are `$default` or 1-128 of A-Z a-z 0-9 _ -")
        return value

    @field_validator("variables")
    @classmethod
    def _variables(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 100:
            raise ValueError("at most 100 stage variables")
        for key, item in value.items():
            if not _STAGE_VARIABLE_NAME.match(key):
                raise ValueError(f"stage variable name {key!r}: 1-64 of A-Z a-z 0-9 _")
            if not _STAGE_VARIABLE_VALUE.match(item):
                raise ValueError(
                    f"stage variable {key!r}: value must be 1-512 of A-Z a-z 0-9 - . _ ~ : / ? # & = ,"
                )
        return value


GatewayResponseType = Literal[
    "ACCESS_DENIED",
    "API_CONFIGURATION_ERROR",
    "AUTHORIZER_CONFIGURATION_ERROR",
    "AUTHORIZER_FAILURE",
    "BAD_REQUEST_BODY",
    "BAD_REQUEST_PARAMETERS",
    "DEFAULT_4XX",
    "DEFAULT_5XX",
    "EXPIRED_TOKEN",
    "INTEGRATION_FAILURE",
    "INTEGRATION_TIMEOUT",
    "INVALID_API_KEY",
    "INVALID_SIGNATURE",
    "MISSING_AUTHENTICATION_TOKEN",
    "QUOTA_EXCEEDED",
    "REQUEST_TOO_LARGE",
    "RESOURCE_NOT_FOUND",
    "THROTTLED",
    "UNAUTHORIZED",
    "UNSUPPORTED_MEDIA_TYPE",
    "WAF_FILTERED",
]
_HEADER_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_MAPPING_SOURCE = re.compile(r"^(method\.request\.(header|querystring|path)|stageVariables|context)\.[^\s]+$")


def gateway_response_parameter_problem(key: str, expression: str) -> str | None:
    """Why a gateway response's `responseParameters` entry cannot be served, or None. Keys are
    `gatewayresponse.header.NAME` (`.querystring.`/`.path.` are accepted and do nothing); values
    `'static'` (a header value: visible ASCII, spaces and tabs), `method.request.header.X`,
    `method.request.querystring.X`, `method.request.path.X`, `stageVariables.X` or `context.X`."""
    if not isinstance(key, str) or not isinstance(expression, str):
        return "responseParameters map names to expressions (strings)"
    target, _, name = key.partition("gatewayresponse.")
    kind, _, header = name.partition(".")
    if target or kind not in ("header", "querystring", "path") or not header:
        return f"invalid mapping target {key!r}: expected gatewayresponse.header.NAME"
    if kind == "header" and not _HEADER_TOKEN.match(header):
        return f"invalid header name in {key!r}"
    value = expression.strip()
    if len(value) >= 2 and value[0] == value[-1] == "'":
        if all(c == "\t" or 32 <= ord(c) < 127 for c in value[1:-1]):
            return None
        return f"invalid mapping expression {expression!r}: a static value is visible ASCII"
    source = _MAPPING_SOURCE.match(value)
    if source is None or (source[2] == "header" and not _HEADER_TOKEN.match(value.split(".", 3)[3])):
        return (
            f"invalid mapping expression {expression!r}: expected 'static', method.request.header.X, "
            "method.request.querystring.X, method.request.path.X, stageVariables.X or context.X"
        )
    return None


_METHOD_PARAMETER = re.compile(r"^method\.request\.(header|querystring|path)\.(.+)$")


def parse_method_parameter(key: str) -> tuple[str, str] | None:
    """(location, name) of a method request parameter key (`method.request.querystring.q`)."""
    found = _METHOD_PARAMETER.match(key)
    if found is None or (found[1] == "header" and not _HEADER_TOKEN.match(found[2])):
        return None
    return found[1], found[2]


_MODEL_NAME = re.compile(r"^[A-Za-z0-9]+$")
# Every REST API has these two models ("Empty" and "Error", as CreateRestApi makes them).
DEFAULT_MODELS = {
    "Empty": '{"$schema":"http://json-schema.org/draft-04/schema#","title":"Empty Schema","type":"object"}',
    "Error": (
        '{"$schema":"http://json-schema.org/draft-04/schema#","title":"Error Schema","type":"object",'
        '"properties":{"message":{"type":"string"}}}'
    ),
}


class Model(_Model):
    """A REST API's model (AWS `Model`): a JSON Schema draft 4, written as a mapping or as its JSON
    text. Other models are `$ref`erenced by `https://apigateway.amazonaws.com/restapis/{apiId}/
    models/{name}` (or by their bare name)."""

    contentType: str = "application/json"
    schema_: dict[str, Any] | str = Field(alias="schema")
    description: str | None = None

    @field_validator("schema_")
    @classmethod
    def _json_object(cls, value: dict[str, Any] | str) -> dict[str, Any] | str:
        if isinstance(value, str):
            try:
                parsed = json.loads(value)
            except ValueError as exc:
                raise ValueError(f"schema is not JSON: {exc}") from None
            if not isinstance(parsed, dict):
                raise ValueError("schema must be a JSON object")
        return value

    @property
    def schema_text(self) -> str:
        """The schema as AWS keeps it: JSON text."""
        return self.schema_ if isinstance(self.schema_, str) else json.dumps(self.schema_)


class RequestValidator(_Model):
    """A REST API's request validator (AWS `RequestValidator`)."""

    validateRequestBody: bool = False
    validateRequestParameters: bool = False


class GatewayResponse(_Model):
    """A customised gateway response of a REST API (AWS `GatewayResponse`): `responseParameters`
    map `gatewayresponse.header.NAME` to `'static'`, `method.request.header|querystring|path.X`,
    `stageVariables.X` or `context.X`; `responseTemplates` map a content type to a body with
    `$context.*` / `$stageVariables.*` substitutions."""

    statusCode: Annotated[int, Field(ge=100, le=599)] | None = None
    responseParameters: dict[str, str] = Field(default_factory=dict)
    responseTemplates: dict[str, str] = Field(default_factory=dict)

    @field_validator("statusCode", mode="before")
    @classmethod
    def _status_text(cls, value: Any) -> Any:
        return int(value) if isinstance(value, str) and value.isdigit() else value

    @field_validator("responseTemplates")
    @classmethod
    def _content_types(cls, value: dict[str, str]) -> dict[str, str]:
        for content_type in value:
            if not content_type.strip() or not all(32 <= ord(c) < 127 for c in content_type):
                raise ValueError(f"{content_type!r} is not a content type")
        return value

    @field_validator("responseParameters")
    @classmethod
    def _parameters(cls, value: dict[str, str]) -> dict[str, str]:
        for key, expression in value.items():
            problem = gateway_response_parameter_problem(key, expression)
            if problem:
                raise ValueError(problem)
        return value


def _check_http_mappings(integration: Integration, where: str) -> None:
    """An HTTP API integration's parameter mapping, refused as the admin API refuses it."""
    if not (integration.requestParameters or integration.responseParameters):
        return
    if integration.type == "MOCK":
        raise ValueError(
            f"{where}: requestParameters and responseParameters map HTTP_PROXY and AWS_PROXY integrations"
        )
    from portico.config.parameter_mapping import http_mapping_problems

    for entry, problem in http_mapping_problems(
        integration.requestParameters, integration.responseParameters
    ):
        raise ValueError(f"{where}: {entry}: {problem}")


class Api(_Model):
    name: str
    id: str | None = None
    # HTTP APIs (apigatewayv2) or REST APIs (apigateway): REST APIs have API keys, resource
    # policies and gateway responses, no $default stage or route, and Lambda events of payload 1.0.
    protocol: Literal["HTTP", "REST", "WEBSOCKET"] = Field(default="HTTP", alias="protocolType")
    # WebSocket APIs: how a message's route is chosen (`$request.body.action`; docs/websocket.md),
    # and where `$connect`'s API key is read (AWS's default: the `x-api-key` header; or the key a
    # Lambda authorizer names, `$context.authorizer.usageIdentifierKey`).
    routeSelectionExpression: str | None = None
    apiKeySelectionExpression: (
        Literal["$request.header.x-api-key", "$context.authorizer.usageIdentifierKey"] | None
    ) = None
    description: str | None = None
    routes: list[Route] = Field(default_factory=list)
    integrations: dict[str, Integration] = Field(default_factory=dict)
    # Authorizers by name: routes name them in `authorizerId`.
    authorizers: dict[str, Authorizer] = Field(default_factory=dict)
    stages: list[Stage] = Field(default_factory=lambda: [Stage()])
    cors: Cors | None = Field(default=None, alias="corsConfiguration")
    # REST APIs only (AWS `RestApi` members):
    apiKeySource: Literal["HEADER", "AUTHORIZER"] = "HEADER"
    policy: dict[str, Any] | None = None
    # Media types (`image/png`, `image/*`, `*/*`) whose payloads are binary ("Content type
    # conversions in API Gateway").
    binaryMediaTypes: list[str] = Field(default_factory=list)
    gatewayResponses: dict[GatewayResponseType, GatewayResponse] = Field(default_factory=dict)
    # Models by name (`Empty` and `Error` are there unless declared) and request validators by
    # name: routes name them in `requestModels` and `requestValidatorId`.
    models: dict[str, Model] = Field(default_factory=dict)
    requestValidators: dict[str, RequestValidator] = Field(default_factory=dict)

    @field_validator("models")
    @classmethod
    def _model_names(cls, value: dict[str, Model]) -> dict[str, Model]:
        for name in value:
            if not _MODEL_NAME.match(name):
                raise ValueError(f"model name {name!r}: models are named with letters and digits")
        return value

    def model_texts(self) -> dict[str, str]:
        """Every model of the API by name, as JSON text: AWS's `Empty` and `Error`, then its own."""
        return {**DEFAULT_MODELS, **{name: model.schema_text for name, model in self.models.items()}}

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol_upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _rest_only(self) -> Api:
        rest = self.protocol == "REST"
        # WebSocket APIs map requests and responses their own way (`_websocket`).
        http = self.protocol == "HTTP"
        if not rest:
            for name, unset in (
                ("apiKeySource", self.apiKeySource == "HEADER"),
                ("policy", self.policy is None),
                ("gatewayResponses", not self.gatewayResponses),
                ("binaryMediaTypes", not self.binaryMediaTypes),
                ("models", not self.models or self.protocol == "WEBSOCKET"),
                ("requestValidators", not self.requestValidators),
            ):
                if not unset:
                    raise ValueError(f"{name}: only REST APIs have it (protocolType: REST)")
            for index, route in enumerate(self.routes):
                websocket_connect = self.protocol == "WEBSOCKET" and route.route == "$connect"
                if route.apiKeyRequired and not websocket_connect:
                    raise ValueError(
                        f"routes[{index}].apiKeyRequired: API keys are REST APIs' (protocolType: REST) "
                        "and WebSocket APIs' $connect's"
                    )
                models = route.requestModels and self.protocol != "WEBSOCKET"
                if route.requestValidatorId or route.requestParameters or models:
                    raise ValueError(
                        f"routes[{index}]: request validation is REST APIs' (protocolType: REST) and "
                        "WebSocket APIs' (requestModels chosen by modelSelectionExpression)"
                    )
            for index, stage in enumerate(self.stages):
                if stage.cacheClusterEnabled or stage.methodSettings:
                    raise ValueError(
                        f"stages[{index}]: cacheClusterEnabled and methodSettings are REST APIs' "
                        "(protocolType: REST); HTTP APIs have routeSettings and no cache"
                    )
            for name, integration in self.integrations.items():
                if integration.cacheKeyParameters or integration.cacheNamespace:
                    raise ValueError(f"integrations.{name}: cache keys are REST APIs' (protocolType: REST)")
                if integration.responseTransferMode == "STREAM":
                    raise ValueError(
                        f"integrations.{name}: response streaming is REST APIs' (protocolType: REST)"
                    )
                if http:
                    _check_http_mappings(integration, f"integrations.{name}")
                if http and integration.non_proxy:
                    raise ValueError(
                        f"integrations.{name}: non-proxy integrations are REST APIs' (protocolType: REST)"
                    )
            for index, route in enumerate(self.routes):
                inline = route.integration
                if http and isinstance(inline, Integration):
                    _check_http_mappings(inline, f"routes[{index}].integration")
                if isinstance(inline, Integration) and (inline.cacheKeyParameters or inline.cacheNamespace):
                    raise ValueError(
                        f"routes[{index}].integration: cache keys are REST APIs' (protocolType: REST)"
                    )
                if isinstance(inline, Integration) and inline.responseTransferMode == "STREAM":
                    raise ValueError(
                        f"routes[{index}].integration: response streaming is REST APIs' (protocolType: REST)"
                    )
                if http and isinstance(inline, Integration) and inline.non_proxy:
                    raise ValueError(
                        f"routes[{index}].integration: non-proxy integrations are REST APIs' "
                        "(protocolType: REST)"
                    )
                if route.methodResponses:
                    raise ValueError(f"routes[{index}]: methodResponses are REST APIs' (protocolType: REST)")
            return self
        if self.cors is not None:
            raise ValueError("corsConfiguration: REST APIs have none (it is HTTP APIs')")
        for index, stage in enumerate(self.stages):
            if stage.name == "$default":
                raise ValueError(
                    f"stages[{index}]: REST APIs have no $default stage: name each stage (stageName: prod)"
                )
            for key in stage.methodSettings:
                route_key = method_setting_route_key(key)
                if route_key is not None and route_key not in {r.route for r in self.routes}:
                    raise ValueError(f"stages[{index}].methodSettings: {key!r} names no route of this API")
        for index, route in enumerate(self.routes):
            if route.route == "$default":
                raise ValueError(f"routes[{index}]: REST APIs have no $default route (use ANY /{{proxy+}})")
            integration = (
                route.integration
                if isinstance(route.integration, Integration)
                else self.integrations.get(route.integration)
            )
            if integration is not None and integration.payloadFormatVersion == "2.0":
                raise ValueError(f"routes[{index}]: REST APIs send Lambda events of payloadFormatVersion 1.0")
            if integration is not None and integration.non_proxy:
                problem = _method_response_problem(integration, route)
                if problem:
                    raise ValueError(f"routes[{index}]: {problem}")
            if integration is not None and integration.responseParameters:
                raise ValueError(
                    f"routes[{index}]: responseParameters are HTTP APIs' parameter mapping (protocolType: "
                    "HTTP); REST APIs map responses in integrationResponses"
                )
        if "REQUEST_TOO_LARGE" in self.gatewayResponses:
            raise ValueError("gatewayResponses: REQUEST_TOO_LARGE cannot be customised")
        return self

    @model_validator(mode="after")
    def _websocket(self) -> Api:
        """WebSocket APIs' own members and route keys; what they do not serve yet is refused
        rather than ignored (docs/websocket.md)."""
        if self.protocol != "WEBSOCKET":
            for name in ("routeSelectionExpression", "apiKeySelectionExpression"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}: only WebSocket APIs have it (protocolType: WEBSOCKET)")
            for index, route in enumerate(self.routes):
                for name in ("routeResponseSelectionExpression", "modelSelectionExpression"):
                    if getattr(route, name) is not None:
                        raise ValueError(f"routes[{index}].{name}: WebSocket APIs' only")
                if route.route != "$default" and is_websocket_route_key(route.route):
                    try:
                        validate_route_key(route.route)
                    except ValueError as exc:
                        raise ValueError(f"routes[{index}]: {exc}") from None
            for index, route in enumerate(self.routes):
                inline = route.integration
                integration = inline if isinstance(inline, Integration) else self.integrations.get(inline)
                if integration is None:
                    continue  # `_references` says so
                holders = [integration, *integration.integrationResponses.values()]
                for member, instead in _WEBSOCKET_INTEGRATION_MEMBERS.items():
                    if any(getattr(holder, member) for holder in holders):
                        why = f"{member} is WebSocket APIs' ({instead})"
                        raise ValueError(f"routes[{index}].integration: {why}")
            return self
        if not self.routeSelectionExpression:
            raise ValueError("routeSelectionExpression: WebSocket APIs need one (e.g. $request.body.action)")
        for index, route in enumerate(self.routes):
            if not is_websocket_route_key(route.route):
                raise ValueError(
                    f"routes[{index}]: {route.route!r}: WebSocket route keys are $connect, $disconnect, "
                    "$default or a key of your own (no spaces, no leading $)"
                )
            authorized_connect = route.route == "$connect" and route.authorizationType in (
                "AWS_IAM",
                "CUSTOM",
            )
            if route.authorizationType != "NONE" and not authorized_connect:
                raise ValueError(
                    f"routes[{index}].authorizationType: WebSocket APIs authorize $connect only, "
                    "with AWS_IAM or CUSTOM (a Lambda REQUEST authorizer)"
                )
            problem = _websocket_integration_problem(self.integration_of(route))
            if problem:
                raise ValueError(f"routes[{index}].integration: {problem}")
        return self

    @field_validator("id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        if value is not None and not _API_ID.match(value):
            raise ValueError("API ids are 1-32 lower-case letters and digits")
        return value

    @model_validator(mode="after")
    def _references(self) -> Api:
        seen: set[str] = set()
        for index, route in enumerate(self.routes):
            if route.route in seen:
                raise ValueError(f"routes[{index}]: duplicate route key {route.route!r}")
            seen.add(route.route)
            if isinstance(route.integration, str) and route.integration not in self.integrations:
                known = ", ".join(sorted(self.integrations)) or "none"
                raise ValueError(
                    f"routes[{index}].integration: unknown integration {route.integration!r} "
                    f"(declared: {known})"
                )
            if route.authorizerId is not None and route.authorizerId not in self.authorizers:
                known = ", ".join(sorted(self.authorizers)) or "none"
                raise ValueError(
                    f"routes[{index}].authorizerId: unknown authorizer {route.authorizerId!r} "
                    f"(declared: {known})"
                )
            validator = route.requestValidatorId
            if validator is not None and validator not in self.requestValidators:
                known = ", ".join(sorted(self.requestValidators)) or "none"
                raise ValueError(
                    f"routes[{index}].requestValidatorId: unknown request validator "
                    f"{route.requestValidatorId!r} (declared: {known})"
                )
            models = self.model_texts()
            for content_type, model in route.requestModels.items():
                if model not in models:
                    raise ValueError(
                        f"routes[{index}].requestModels[{content_type!r}]: unknown model {model!r} "
                        f"(declared: {', '.join(sorted(models))})"
                    )
            if route.authorizerId is not None:
                kind = self.authorizers[route.authorizerId].authorizerType
                if kind not in _AUTHORIZER_TYPES_OF.get(route.authorizationType, ()):
                    raise ValueError(
                        f"routes[{index}]: authorizationType {route.authorizationType} cannot use "
                        f"authorizer {route.authorizerId!r} of authorizerType {kind}"
                    )
        for name, authorizer in self.authorizers.items():
            problem = authorizer.problem(rest=self.protocol == "REST", websocket=self.protocol == "WEBSOCKET")
            if problem:
                raise ValueError(f"authorizers.{name}: {problem}")
        names: set[str] = set()
        for index, stage in enumerate(self.stages):
            if stage.name in names:
                raise ValueError(f"stages[{index}]: duplicate stage name {stage.name!r}")
            names.add(stage.name)
            for key in stage.routeSettings:
                if key not in seen:
                    raise ValueError(f"stages[{index}].routeSettings: {key!r} is not a route of this API")
        return self

    @property
    def api_id(self) -> str:
        """The declared id, or a stable one derived from the name (AWS ids are 10 of [a-z0-9])."""
        if self.id:
            return self.id
        digest = hashlib.sha256(self.name.encode()).digest()
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
        return "".join(alphabet[b % 36] for b in digest[:10])

    def integration_of(self, route: Route) -> Integration:
        if isinstance(route.integration, Integration):
            return route.integration
        return self.integrations[route.integration]


class Settings(_Model):
    """Gateway-wide settings."""

    payloadLimitBytes: Annotated[int, Field(ge=1)] = 10 * 1024 * 1024
    # AWS counts the request line and all header names and values (10,240 bytes for HTTP APIs).
    headerLimitBytes: Annotated[int, Field(ge=256)] = 10240
    # Each read of a request body must make progress within this, else 408 and the connection closes.
    bodyTimeoutMillis: Annotated[int, Field(ge=100, le=3_600_000)] = 30_000
    # The account-level bucket every request spends from, before its stage's and its usage plan's:
    # AWS's default, 10,000 requests per second with a burst of 5,000 ("API Gateway quotas");
    # `get_account` shows it as `throttleSettings`. Both members unset: no account limit.
    accountThrottle: RouteSettings = Field(
        default_factory=lambda: RouteSettings(throttlingRateLimit=10_000.0, throttlingBurstLimit=5_000)
    )
    # Usage plans' request counts are counted in shared memory and made durable in the data
    # directory's SQLite in batches, at most this far apart: a node killed outright (kill -9)
    # forgets at most the requests of the last interval.
    usageFlushIntervalMs: Annotated[int, Field(ge=10, le=60_000)] = 1_000
    # `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` and `Retry-After` on throttled and
    # quota answers, and a quota's `RateLimit-*` on the requests it admits (AWS sends none).
    rateLimitHeaders: bool = False
    # WebSocket APIs (docs/websocket.md): a connection that sends and is sent no message for this
    # long is closed (AWS: 10 minutes), and any connection once it is this old (AWS: 2 hours).
    websocketIdleTimeoutSeconds: Annotated[int, Field(ge=1, le=86_400)] = 600
    websocketMaxConnectionSeconds: Annotated[int, Field(ge=1, le=604_800)] = 7_200
    accountId: Annotated[str, Field(pattern=r"^[0-9]{12}$")] = "123456789012"
    region: str = "us-east-1"
    accessLog: AccessLog | None = None
    # A PEM bundle trusted for https:// upstreams instead of the system's roots.
    upstreamCaFile: str | None = None
    # The most calls of one function in flight at once in each serving process, unless the
    # function reserves its own (`functions.NAME.reservedConcurrency`): calls past it are refused
    # as Lambda throttles them (500), so that a hung function cannot take every thread.
    functionConcurrency: Annotated[int, Field(ge=1, le=10_000)] = 64
    # Cognito user pool authorizers (REST APIs) trust the pools of their `providerARNs`, whose
    # issuer is `https://cognito-idp.REGION.amazonaws.com/POOL_ID`; this maps a pool's ARN to
    # another issuer that stands in for it (a local identity provider, in tests and offline).
    cognitoUserPoolIssuers: dict[str, str] = Field(default_factory=dict)
    # Bounds every REST stage's response cache at this many bytes in each serving process, below
    # its `cacheClusterSize` (whose GB are the budget otherwise): for small machines and tests.
    stageCacheBytes: Annotated[int, Field(ge=1)] | None = None

    @field_validator("cognitoUserPoolIssuers")
    @classmethod
    def _pool_issuers(cls, value: dict[str, str]) -> dict[str, str]:
        for arn, issuer in value.items():
            if not _USER_POOL_ARN.match(arn):
                raise ValueError(
                    f"{arn!r} is not a user pool ARN (arn:aws:cognito-idp:REGION:ACCOUNT:userpool/ID)"
                )
            validate_issuer_url(issuer)
        return value

    # TLS on the public port (and mTLS); `portico serve --tls-cert/--tls-key/--tls-truststore`
    # take its place.
    tls: Tls | None = None


class MutualTlsAuthentication(_Model):
    """mTLS (AWS `DomainName.mutualTlsAuthentication`): every client is asked for a certificate;
    one missing, expired or not issued by a CA of the truststore gets 403 Forbidden. AWS reads the
    truststore from S3 (`truststoreUri`); here it is a PEM bundle of CA certificates."""

    truststoreFile: str


class Tls(_Model):
    """TLS on the public port, as an API Gateway custom domain name serves it (TLS 1.2 and 1.3):
    a PEM certificate chain (leaf first) and its unencrypted PEM private key. The files are read
    again when they change (or on SIGHUP), without a restart. Relative paths are relative to the
    config file."""

    certificateFile: str
    privateKeyFile: str
    mutualTlsAuthentication: MutualTlsAuthentication | None = None


class AccessLog(_Model):
    """Access log (AWS `AccessLogSettings`): `format` uses `$context.*` variables."""

    format: str = (
        '$context.identity.sourceIp - - [$context.requestTime] "$context.httpMethod '
        '$context.routeKey $context.protocol" $context.status $context.responseLength $context.requestId'
    )
    # "stdout", "stderr" or a file path (AWS's `destinationArn` has no local meaning).
    destination: str = "stdout"


Settings.model_rebuild()


class Function(_Model):
    """A function (`functions.NAME`): its handler, and its concurrency as Lambda's
    `PutFunctionConcurrency` reserves it (0 refuses every call)."""

    handler: str
    reservedConcurrency: Annotated[int, Field(ge=0, le=10_000)] | None = None

    @field_validator("handler")
    @classmethod
    def _handler(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z0-9_.]+:[A-Za-z0-9_.]+$", value):
            raise ValueError(f"expected `module.path:attribute`, got {value!r}")
        return value


class ApiKey(_Model):
    """An API key (AWS `ApiKey`), for REST APIs' methods with `apiKeyRequired`. As on AWS, a key
    is disabled unless `enabled: true`, and counts only in a usage plan bound to the stage."""

    name: str
    value: Annotated[str, Field(min_length=20, max_length=128, pattern=r"^[A-Za-z0-9]+$")]
    enabled: bool = False
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,32}$")] | None = None
    description: str | None = None
    customerId: str | None = None

    def __repr__(self) -> str:  # never the value: configs get printed
        return f"ApiKey(name={self.name!r}, id={self.key_id!r}, enabled={self.enabled})"

    __str__ = __repr__

    @property
    def key_id(self) -> str:
        """The declared id, or a stable one derived from the name (AWS ids are 10 of [a-z0-9])."""
        if self.id:
            return self.id
        digest = hashlib.sha256(b"apikey:" + self.name.encode()).digest()
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
        return "".join(alphabet[b % 36] for b in digest[:10])


class ThrottleSettings(_Model):
    """A token bucket (AWS `ThrottleSettings`): `burstLimit` requests, refilled at `rateLimit` per
    second."""

    rateLimit: Annotated[float, Field(ge=0)]
    burstLimit: Annotated[int, Field(ge=0)]

    def limit(self) -> dict[str, float]:
        return {"rate": float(self.rateLimit), "burst": int(self.burstLimit)}


class QuotaSettings(_Model):
    """A usage plan's quota (AWS `QuotaSettings`): `limit` requests per UTC `period` for each key,
    `offset` of them taken off in the initial period (the one the plan is first served in)."""

    limit: Annotated[int, Field(ge=0, le=2**31 - 1)]
    period: Literal["DAY", "WEEK", "MONTH"]
    offset: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0


# `/{resourcePath}/{METHOD}`: "/pets/GET", "/pets/{id}/ANY", "//GET" for the root.
_METHOD_THROTTLE_KEY = re.compile(r"^(/\S*)/(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS|ANY)$")


def method_throttle_route(key: str) -> str | None:
    """The route key (`GET /pets`) a usage plan's per-method throttle key names, or None."""
    match = _METHOD_THROTTLE_KEY.match(key)
    if match is None:
        return None
    path = match[1] if match[1] == "/" else match[1].rstrip("/") or "/"
    return f"{match[2]} {path}"


class ApiStage(_Model):
    """A usage plan's stage (AWS `ApiStage`), with per-method throttles for the plan's keys
    (`throttle`, keyed `/{resourcePath}/{METHOD}`) that replace the plan's `throttle` there."""

    apiId: str
    stage: str
    throttle: dict[str, ThrottleSettings] = Field(default_factory=dict)

    @field_validator("throttle")
    @classmethod
    def _method_keys(cls, value: dict[str, ThrottleSettings]) -> dict[str, ThrottleSettings]:
        for key in value:
            if method_throttle_route(key) is None:
                raise ValueError(f"{key!r}: expected /{{resourcePath}}/{{METHOD}}, like /pets/GET or //GET")
        return value


class UsagePlan(_Model):
    """A usage plan (AWS `UsagePlan`): the stages it is bound to, by name the API keys it holds
    (AWS `UsagePlanKey`), and each key's throttle and quota across those stages."""

    name: str
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,32}$")] | None = None
    description: str | None = None
    apiStages: list[ApiStage] = Field(default_factory=list)
    apiKeys: list[str] = Field(default_factory=list)
    throttle: ThrottleSettings | None = None
    quota: QuotaSettings | None = None

    @property
    def plan_id(self) -> str:
        """The declared id, or a stable one derived from the name."""
        if self.id:
            return self.id
        digest = hashlib.sha256(b"usageplan:" + self.name.encode()).digest()
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
        return "".join(alphabet[b % 36] for b in digest[:6])


_ACCESS_KEY_ID = re.compile(r"^[A-Za-z0-9]{16,128}$")
_PRINCIPAL_ARN = re.compile(r"^arn:aws[a-z-]*:(iam|sts)::(?P<account>[0-9]{12}):\S+$")


class Principal(_Model):
    """A caller of `AWS_IAM` routes, known by its SigV4 credentials (IAM's `AccessKey` member
    names) and what its identity policy lets it invoke (`execute-api:Invoke` on
    `arn:aws:execute-api:REGION:ACCOUNT:API/STAGE/METHOD/PATH`). Without `policy` it is its
    account's root, allowed everything. `sessionToken`: temporary credentials, whose requests
    must carry it (`X-Amz-Security-Token`)."""

    accessKeyId: str
    secretAccessKey: SecretStr
    sessionToken: SecretStr | None = None
    # `arn:aws:iam::ACCOUNT:user/NAME`, `...:root`, `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`
    arn: str
    # An IAM policy document (a mapping, or its JSON text).
    policy: dict[str, Any] | str | None = None

    @field_validator("accessKeyId")
    @classmethod
    def _key_id(cls, value: str) -> str:
        if not _ACCESS_KEY_ID.match(value):
            raise ValueError("access key ids are 16-128 letters and digits")
        return value

    @field_validator("secretAccessKey")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("must not be empty")
        return value

    @field_validator("arn")
    @classmethod
    def _arn(cls, value: str) -> str:
        if not _PRINCIPAL_ARN.match(value):
            raise ValueError("expected an IAM or STS ARN, like arn:aws:iam::123456789012:user/NAME")
        return value

    @field_validator("policy")
    @classmethod
    def _policy(cls, value: dict[str, Any] | str | None) -> dict[str, Any] | str | None:
        document = value
        if isinstance(value, str):
            try:
                document = json.loads(value)
            except ValueError:
                raise ValueError("the policy is not JSON") from None
        if document is not None:
            statements = document.get("Statement") if isinstance(document, dict) else None
            if not isinstance(statements, dict | list) or not statements:
                raise ValueError("a policy document has a Statement (an object or a list of them)")
        return value

    @property
    def accountId(self) -> str:
        match = _PRINCIPAL_ARN.match(self.arn)
        assert match is not None  # validated
        return match["account"]


class Config(_Model):
    """A whole Portico configuration file."""

    # `NAME: module:attribute`, or `NAME: {handler: module:attribute, reservedConcurrency: N}`.
    functions: dict[str, Function] = Field(default_factory=dict)
    apis: list[Api] = Field(default_factory=list)
    settings: Settings = Field(default_factory=Settings)
    apiKeys: list[ApiKey] = Field(default_factory=list)
    usagePlans: list[UsagePlan] = Field(default_factory=list)

    # Who may call `AWS_IAM` routes (besides the admin key, when the admin API runs).
    principals: list[Principal] = Field(default_factory=list)
    # Read from an OpenAPI document: where its config locations came from (`loader.relocate`).
    _origins: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _keys_and_plans(self) -> Config:
        names: dict[str, int] = {}
        values: set[str] = set()
        ids: set[str] = set()
        for index, key in enumerate(self.apiKeys):
            if key.name in names:
                raise ValueError(f"apiKeys[{index}]: duplicate API key name {key.name!r}")
            if key.value in values:
                raise ValueError(f"apiKeys[{index}]: the value of another key (values are unique)")
            if key.key_id in ids:
                raise ValueError(f"apiKeys[{index}]: duplicate API key id {key.key_id!r}")
            names[key.name] = index
            values.add(key.value)
            ids.add(key.key_id)
        stages = {(api.api_id, stage.name) for api in self.apis for stage in api.stages}
        kinds = {api.api_id: api.protocol for api in self.apis}
        routes = {api.api_id: {route.route for route in api.routes} for api in self.apis}
        held: dict[tuple[str, str, str], str] = {}
        plan_ids: dict[str, str] = {}
        for index, plan in enumerate(self.usagePlans):
            if plan.plan_id in plan_ids:
                raise ValueError(
                    f"usagePlans[{index}]: usage plan id {plan.plan_id!r} is usage plan "
                    f"{plan_ids[plan.plan_id]!r}'s too"
                )
            plan_ids[plan.plan_id] = plan.name
            for s_index, api_stage in enumerate(plan.apiStages):
                where = f"usagePlans[{index}].apiStages[{s_index}]"
                # An id that is not the file's may be an admin-created API's.
                if api_stage.apiId in kinds:
                    if kinds[api_stage.apiId] == "HTTP":
                        raise ValueError(
                            f"{where}: API {api_stage.apiId!r} is an HTTP API: API keys are REST and "
                            "WebSocket APIs'"
                        )
                    if (api_stage.apiId, api_stage.stage) not in stages:
                        raise ValueError(f"{where}: API {api_stage.apiId!r} has no stage {api_stage.stage!r}")
                    for key in api_stage.throttle:
                        if method_throttle_route(key) not in routes[api_stage.apiId]:
                            raise ValueError(
                                f"{where}.throttle: {key!r} is not a method of API {api_stage.apiId!r}"
                            )
            for name in plan.apiKeys:
                if name not in names:
                    raise ValueError(f"usagePlans[{index}].apiKeys: no API key named {name!r}")
                # As CreateUsagePlanKey: a key is in at most one plan per stage.
                for api_stage in plan.apiStages:
                    slot = (name, api_stage.apiId, api_stage.stage)
                    if slot in held and held[slot] != plan.name:
                        raise ValueError(
                            f"usagePlans[{index}]: API key {name!r} is already in usage plan {held[slot]!r} "
                            f"for stage {api_stage.apiId}:{api_stage.stage}"
                        )
                    held[slot] = plan.name
        return self

    @field_validator("functions", mode="before")
    @classmethod
    def _handler_only(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {name: {"handler": f} if isinstance(f, str) else f for name, f in value.items()}
        return value

    @model_validator(mode="after")
    def _unique_access_keys(self) -> Config:
        seen: dict[str, int] = {}
        for index, principal in enumerate(self.principals):
            if principal.accessKeyId in seen:
                raise ValueError(
                    f"principals[{index}]: access key id {principal.accessKeyId!r} is already "
                    f"principals[{seen[principal.accessKeyId]}]'s"
                )
            seen[principal.accessKeyId] = index
        return self

    @model_validator(mode="after")
    def _unique_ids(self) -> Config:
        ids: dict[str, int] = {}
        for index, api in enumerate(self.apis):
            if api.api_id in ids:
                raise ValueError(
                    f"apis[{index}]: API id {api.api_id!r} is already used by apis[{ids[api.api_id]}]"
                )
            ids[api.api_id] = index
        return self


_USER_POOL_ARN = re.compile(
    r"^arn:aws[a-z-]*:cognito-idp:([a-z0-9-]+):[0-9]{12}:userpool/([\w-]+_[0-9a-zA-Z]+)$"
)


def user_pool_issuer(arn: str, overrides: dict[str, str] | None = None) -> str:
    """The issuer of the Cognito user pool `arn`: `https://cognito-idp.REGION.amazonaws.com/POOL_ID`,
    or the issuer `overrides` (settings.cognitoUserPoolIssuers) maps it to."""
    if overrides and arn in overrides:
        return overrides[arn]
    match = _USER_POOL_ARN.match(arn)
    if not match:
        raise ValueError(f"{arn!r} is not a user pool ARN (arn:aws:cognito-idp:REGION:ACCOUNT:userpool/ID)")
    return f"https://cognito-idp.{match[1]}.amazonaws.com/{match[2]}"


def validate_issuer_url(value: str) -> str:
    """A JWT issuer: an https:// URL, or plain http:// on a loopback host (local identity providers)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
    except ValueError as exc:
        raise ValueError(f"issuer {value!r} is not a URL: {exc}") from None
    if parts.scheme == "https" and host:
        return value
    if parts.scheme == "http" and _is_loopback(host):
        return value
    raise ValueError(f"issuer {value!r} must be an https:// URL (plain http only on loopback)")


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def method_setting_route_key(key: str) -> str | None:
    """The route key a `methodSettings` key names (`pets/{id}/GET` -> `GET /pets/{id}`; `~1` is
    accepted for `/`, as in patch paths), or None for `*/*` and keys naming no method."""
    path, _, method = key.replace("~1", "/").lstrip("/").rpartition("/")
    method = method.upper()
    if key == "*/*" or method not in ROUTE_METHODS or "*" in path:
        return None
    return f"{method} /{path}"


WEBSOCKET_ROUTE_KEYS = ("$connect", "$disconnect", "$default")


def is_websocket_route_key(value: str) -> bool:
    """A WebSocket API's route key: `$connect`, `$disconnect`, `$default` or a key of the API's own
    (what the route selection expression yields: no spaces, no leading `$`)."""
    if value in WEBSOCKET_ROUTE_KEYS:
        return True
    return bool(value) and not value.startswith("$") and " " not in value and len(value) <= 128


def validate_route_key(value: str) -> str:
    """Check an HTTP API route key (`GET /pets/{id}`, `ANY /{proxy+}`, `$default`)."""
    if value == "$default":
        return value
    method, sep, path = value.partition(" ")
    if not sep:
        raise ValueError(f"route key {value!r}: expected `METHOD /path` or `$default`")
    if method not in ROUTE_METHODS:
        raise ValueError(f"route key {value!r}: method must be one of {', '.join(ROUTE_METHODS)}")
    if not path.startswith("/"):
        raise ValueError(f"route key {value!r}: the path must start with /")
    if path == "/":
        return value
    segments = path[1:].split("/")
    for position, segment in enumerate(segments):
        if not _SEGMENT.match(segment):
            raise ValueError(
                f"route key {value!r}: segment {segment!r} is neither a literal nor a whole `{{name}}`"
            )
        if segment.endswith("+}") and position != len(segments) - 1:
            raise ValueError(f"route key {value!r}: a greedy variable {segment} must be the last segment")
    return value
