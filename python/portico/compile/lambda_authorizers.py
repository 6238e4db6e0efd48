"""Lambda authorizers, from what declares them to the spec the core serves.

- REST APIs (`apigateway` `Authorizer`, type TOKEN or REQUEST): `identitySource` is a comma-separated
  list of `method.request.header.X`, `method.request.querystring.X`, `stageVariables.X`,
  `context.X`; `authorizerResultTtlInSeconds` defaults to 300 when absent ("Use API Gateway Lambda
  authorizers" in the developer guide); TOKEN authorizers may check `identityValidationExpression`.
- HTTP APIs (`apigatewayv2` `Authorizer`, type REQUEST; and the config file's `authorizers`):
  `authorizerPayloadFormatVersion` 1.0 or 2.0, `enableSimpleResponses` (2.0), `identitySource` a
  list of `$request.header.X`, `$request.querystring.X`, `$context.X`, `$stageVariables.X`;
  `authorizerResultTtlInSeconds` 0 (no caching) when absent.
- WebSocket APIs (`apigatewayv2` `Authorizer` of a WEBSOCKET API, type REQUEST, on `$connect`):
  `identitySource` a list of `route.request.header.X`, `route.request.querystring.X`,
  `stageVariables.X`, `context.X`; no caching (`AuthorizerResultTtlInSeconds` is HTTP APIs'
  only), the event the handshake's ("Control access to WebSocket APIs with AWS Lambda REQUEST
  authorizers").

The core calls the function through the registry; one that is not registered is reported here
(warning) and answers AWS's 500 at request time, as a route's integration does.
"""

from __future__ import annotations

import logging
from typing import Any

from portico.compile import spec as S
from portico.integrations.functions import FunctionRegistry, parse_function_uri

__all__ = [
    "REST_DEFAULT_TTL",
    "http_lambda_authorizer",
    "rest_lambda_authorizer",
    "warn_unregistered",
    "websocket_lambda_authorizer",
]

log = logging.getLogger("portico.compile")

REST_DEFAULT_TTL = 300
MAX_TTL = 3600


def _ttl(value: Any, default: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return min(max(int(value), 0), MAX_TTL)


def warn_unregistered(uri: str, registry: FunctionRegistry, where: str) -> None:
    """Log when the authorizer's function is not registered (it answers 500 until it is)."""
    if "${stageVariables." in uri:
        return
    try:
        name = parse_function_uri(uri).name
    except ValueError:
        log.warning("%s: authorizer URI %r names no Lambda function; its routes answer 500", where, uri)
        return
    if name not in registry:
        log.warning(
            "%s: authorizer function %r is not registered; its routes answer 500 until it is "
            "(--function %s=module:attribute)",
            where,
            name,
            name,
        )


def rest_lambda_authorizer(doc: dict[str, Any]) -> S.LambdaAuthorizerSpec | None:
    """A REST API's stored TOKEN or REQUEST authorizer; None for other types."""
    kind = doc.get("type")
    if kind not in ("TOKEN", "REQUEST"):
        return None
    sources = [s.strip() for s in (doc.get("identitySource") or "").split(",") if s.strip()]
    return S.lambda_authorizer(
        doc.get("id") or "",
        doc.get("authorizerUri") or "",
        kind,
        sources,
        validation_expression=doc.get("identityValidationExpression") if kind == "TOKEN" else None,
        ttl_s=_ttl(doc.get("authorizerResultTtlInSeconds"), REST_DEFAULT_TTL),
        name=doc.get("name") or "",
    )


def http_lambda_authorizer(doc: dict[str, Any]) -> S.LambdaAuthorizerSpec | None:
    """An HTTP API's stored REQUEST authorizer (GetAuthorizer members); None for other types."""
    if doc.get("AuthorizerType") != "REQUEST":
        return None
    version = doc.get("AuthorizerPayloadFormatVersion") or "2.0"
    return S.lambda_authorizer(
        doc.get("AuthorizerId") or "",
        doc.get("AuthorizerUri") or "",
        "HTTP_1_0" if version == "1.0" else "HTTP_2_0",
        list(doc.get("IdentitySource") or []),
        ttl_s=_ttl(doc.get("AuthorizerResultTtlInSeconds"), 0),
        simple_responses=bool(doc.get("EnableSimpleResponses")) and version == "2.0",
        name=doc.get("Name") or "",
    )


def websocket_lambda_authorizer(doc: dict[str, Any]) -> S.LambdaAuthorizerSpec | None:
    """A WebSocket API's stored REQUEST authorizer (GetAuthorizer members); None for other types."""
    if doc.get("AuthorizerType") != "REQUEST":
        return None
    return S.lambda_authorizer(
        doc.get("AuthorizerId") or "",
        doc.get("AuthorizerUri") or "",
        "REQUEST",
        list(doc.get("IdentitySource") or []),
        name=doc.get("Name") or "",
    )
