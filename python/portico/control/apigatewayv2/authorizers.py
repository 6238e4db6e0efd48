"""apigatewayv2: authorizers (REQUEST Lambda authorizers and JWT authorizers).

Documents: kind "authorizer", id AuthorizerId, parent ApiId, keyed by GetAuthorizerResponse
members. The data plane enforces them; here they are validated and stored."""

from __future__ import annotations

from typing import Any

from portico.control import ids
from portico.control.apigatewayv2.common import AUTHORIZER, ROUTE, SERVICE, changed, load_api, load_child
from portico.control.errors import BadRequestException, ConflictException
from portico.control.registry import AdminRequest, copy_given, operation, paginate

_MEMBERS = (
    "AuthorizerCredentialsArn",
    "AuthorizerPayloadFormatVersion",
    "AuthorizerResultTtlInSeconds",
    "AuthorizerType",
    "AuthorizerUri",
    "EnableSimpleResponses",
    "IdentitySource",
    "IdentityValidationExpression",
    "JwtConfiguration",
    "Name",
)
_IDENTITY_PREFIXES = ("$request.header.", "$request.querystring.", "$context.", "$stageVariables.")
# WebSocket APIs read the handshake: "route.request.header.Auth" ("CreateAuthorizer" in the
# apigatewayv2 reference).
_WEBSOCKET_IDENTITY_PREFIXES = (
    "route.request.header.",
    "route.request.querystring.",
    "context.",
    "stageVariables.",
)


def load_authorizer(tx, api_id: str, authorizer_id: str) -> dict[str, Any]:
    return load_child(tx, AUTHORIZER, api_id, authorizer_id, "Authorizer")


def normalise(api: dict[str, Any], authorizer: dict[str, Any]) -> dict[str, Any]:
    """Validate an authorizer document the way AWS does and fill in its defaults (in place)."""
    protocol, kind = api["ProtocolType"], authorizer["AuthorizerType"]
    if protocol == "WEBSOCKET" and kind != "REQUEST":
        raise BadRequestException(f"Authorizer type {kind} is not supported for WEBSOCKET APIs")
    sources = authorizer.get("IdentitySource") or []
    for source in sources:
        prefixes = _IDENTITY_PREFIXES if protocol == "HTTP" else _WEBSOCKET_IDENTITY_PREFIXES
        if not source.startswith(prefixes):
            raise BadRequestException(
                f"Invalid identity source '{source}'. Identity sources must start with " + ", ".join(prefixes)
            )
    ttl = authorizer.get("AuthorizerResultTtlInSeconds")
    if ttl is not None and not 0 <= ttl <= 3600:
        raise BadRequestException("AuthorizerResultTtlInSeconds must be between 0 and 3600")
    if kind == "JWT":
        jwt = authorizer.get("JwtConfiguration") or {}
        if not jwt.get("Issuer"):
            raise BadRequestException("JwtConfiguration.Issuer is required for JWT authorizers")
        if len(sources) != 1:
            raise BadRequestException("JWT authorizers require exactly one identity source")
        if len(jwt.get("Audience") or []) > 50:
            raise BadRequestException("A JWT authorizer supports at most 50 audiences")
        for name in ("AuthorizerUri", "AuthorizerPayloadFormatVersion", "EnableSimpleResponses"):
            if authorizer.get(name) is not None:
                raise BadRequestException(f"{name} is not supported for JWT authorizers")
    else:
        if not authorizer.get("AuthorizerUri"):
            raise BadRequestException("AuthorizerUri is required for REQUEST authorizers")
        if authorizer.get("JwtConfiguration"):
            raise BadRequestException("JwtConfiguration is only supported for JWT authorizers")
        if protocol == "HTTP":
            version = authorizer.get("AuthorizerPayloadFormatVersion")
            if version not in ("1.0", "2.0"):
                raise BadRequestException(
                    "AuthorizerPayloadFormatVersion is required for REQUEST authorizers of HTTP APIs "
                    "and must be 1.0 or 2.0"
                )
            if authorizer.get("EnableSimpleResponses") and version != "2.0":
                raise BadRequestException(
                    "EnableSimpleResponses is only supported for payload format version 2.0"
                )
            if ttl and not sources:
                raise BadRequestException("Authorizer caching requires at least one identity source")
        authorizer.setdefault("AuthorizerResultTtlInSeconds", 0)
    return authorizer


def _check_unique_name(tx, api_id: str, name: str, authorizer_id: str | None = None) -> None:
    for other in tx.list(SERVICE, AUTHORIZER, api_id):
        if other["Name"] == name and other["AuthorizerId"] != authorizer_id:
            raise ConflictException(f"Authorizer with name {name} already exists for this API")


def new_authorizer(tx, api: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    authorizer: dict[str, Any] = {"AuthorizerId": ids.short_id()}
    copy_given(params, authorizer, _MEMBERS)
    normalise(api, authorizer)
    _check_unique_name(tx, api["ApiId"], authorizer["Name"])
    tx.put(SERVICE, AUTHORIZER, authorizer["AuthorizerId"], authorizer, parent=api["ApiId"])
    return authorizer


@operation(SERVICE, "CreateAuthorizer")
def create_authorizer(request: AdminRequest, params: dict) -> dict:
    with request.store.transaction() as tx:
        api = load_api(request, tx, params["ApiId"])
        authorizer = new_authorizer(tx, api, params)
        changed(tx, api["ApiId"])
    return authorizer


@operation(SERVICE, "GetAuthorizer")
def get_authorizer(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        load_api(request, tx, params["ApiId"])
        return load_authorizer(tx, params["ApiId"], params["AuthorizerId"])


@operation(SERVICE, "GetAuthorizers")
def get_authorizers(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        load_api(request, tx, params["ApiId"])
        items = tx.list(SERVICE, AUTHORIZER, params["ApiId"])
    page, token = paginate(items, params.get("NextToken"), params.get("MaxResults"), default=100)
    return {"Items": page, "NextToken": token}


@operation(SERVICE, "UpdateAuthorizer")
def update_authorizer(request: AdminRequest, params: dict) -> dict:
    api_id = params["ApiId"]
    with request.store.transaction() as tx:
        api = load_api(request, tx, api_id)
        authorizer = load_authorizer(tx, api_id, params["AuthorizerId"])
        copy_given(params, authorizer, _MEMBERS)
        normalise(api, authorizer)
        _check_unique_name(tx, api_id, authorizer["Name"], authorizer["AuthorizerId"])
        tx.put(SERVICE, AUTHORIZER, authorizer["AuthorizerId"], authorizer, parent=api_id)
        changed(tx, api_id)
    return authorizer


@operation(SERVICE, "DeleteAuthorizer")
def delete_authorizer(request: AdminRequest, params: dict) -> None:
    api_id, authorizer_id = params["ApiId"], params["AuthorizerId"]
    with request.store.transaction() as tx:
        load_api(request, tx, api_id)
        load_authorizer(tx, api_id, authorizer_id)
        users = [
            r["RouteId"] for r in tx.list(SERVICE, ROUTE, api_id) if r.get("AuthorizerId") == authorizer_id
        ]
        if users:
            raise ConflictException(
                f"Cannot delete authorizer {authorizer_id}: it is used by route(s) {', '.join(users)}"
            )
        tx.delete(SERVICE, AUTHORIZER, authorizer_id)
        changed(tx, api_id)
