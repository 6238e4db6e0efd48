"""apigatewayv2: APIs (HTTP and WebSocket). Documents: service "apigatewayv2", kind "api", keyed by
model member names (`ApiId`, `Name`, ...), as `GetApiResponse` defines them."""

from __future__ import annotations

import time
from typing import Any

from portico.control import ids
from portico.control.errors import BadRequestException, NotFoundException
from portico.control.registry import AdminRequest, not_implemented, operation, paginate

SERVICE = "apigatewayv2"
KIND = "api"

# Members of UpdateApiRequest that UpdateApi copies onto the API.
_UPDATABLE = (
    "ApiKeySelectionExpression",
    "CorsConfiguration",
    "Description",
    "DisableSchemaValidation",
    "DisableExecuteApiEndpoint",
    "IpAddressType",
    "Name",
    "RouteSelectionExpression",
    "Version",
)


def api_not_found(request: AdminRequest, api_id: str) -> NotFoundException:
    return NotFoundException(f"Invalid API identifier specified {request.account_id}:{api_id}")


def load_api(request: AdminRequest, tx, api_id: str) -> dict[str, Any]:
    """The API document, or AWS's NotFoundException."""
    api = tx.get(SERVICE, KIND, api_id)
    if api is None:
        raise api_not_found(request, api_id)
    return api


@operation(SERVICE, "CreateApi")
def create_api(request: AdminRequest, params: dict) -> dict:
    if params.get("Target") or params.get("RouteKey") or params.get("CredentialsArn"):
        raise not_implemented("CreateApi quick create (target, routeKey, credentialsArn)")
    protocol = params["ProtocolType"]
    if protocol == "WEBSOCKET" and not params.get("RouteSelectionExpression"):
        raise BadRequestException("RouteSelectionExpression is required for a WEBSOCKET API")
    api_id = ids.api_id()
    scheme = "wss" if protocol == "WEBSOCKET" else "https"
    api = {
        "ApiId": api_id,
        "Name": params["Name"],
        "ProtocolType": protocol,
        "ApiEndpoint": f"{scheme}://{api_id}.execute-api.{request.region}.amazonaws.com",
        "ApiKeySelectionExpression": params.get("ApiKeySelectionExpression", "$request.header.x-api-key"),
        "RouteSelectionExpression": params.get(
            "RouteSelectionExpression", "$request.method $request.path" if protocol == "HTTP" else None
        ),
        "CreatedDate": int(time.time()),
        "DisableExecuteApiEndpoint": params.get("DisableExecuteApiEndpoint", False),
        "IpAddressType": params.get("IpAddressType", "ipv4"),
        "Tags": params.get("Tags") or {},
    }
    for name in ("CorsConfiguration", "Description", "DisableSchemaValidation", "Version"):
        if params.get(name) is not None:
            api[name] = params[name]
    with request.store.transaction() as tx:
        tx.put(SERVICE, KIND, api_id, api)
    return api


@operation(SERVICE, "GetApi")
def get_api(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        return load_api(request, tx, params["ApiId"])


@operation(SERVICE, "GetApis")
def get_apis(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        apis = tx.list(SERVICE, KIND)
    page, token = paginate(apis, params.get("NextToken"), params.get("MaxResults"), default=100)
    return {"Items": page, "NextToken": token}


@operation(SERVICE, "UpdateApi")
def update_api(request: AdminRequest, params: dict) -> dict:
    if any(params.get(name) for name in ("Target", "RouteKey", "CredentialsArn")):
        raise not_implemented("UpdateApi of quick create members (target, routeKey, credentialsArn)")
    with request.store.transaction() as tx:
        api = load_api(request, tx, params["ApiId"])
        for name in _UPDATABLE:
            if params.get(name) is not None:
                api[name] = params[name]
        tx.put(SERVICE, KIND, api["ApiId"], api)
    return api


@operation(SERVICE, "DeleteApi")
def delete_api(request: AdminRequest, params: dict) -> None:
    with request.store.transaction() as tx:
        if not tx.delete(SERVICE, KIND, params["ApiId"]):
            raise api_not_found(request, params["ApiId"])
        tx.delete_under(SERVICE, params["ApiId"])
