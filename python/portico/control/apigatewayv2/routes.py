"""apigatewayv2: routes and route responses.

Route documents: kind "route", id RouteId, parent ApiId; `Target` is "integrations/{IntegrationId}".
Route responses: kind "routeresponse", id RouteResponseId, parent f"{ApiId}/{RouteId}"."""

from __future__ import annotations

import re
from typing import Any

from portico.control import ids
from portico.control.apigatewayv2.common import (
    AUTHORIZER,
    INTEGRATION,
    ROUTE,
    ROUTE_RESPONSE,
    SERVICE,
    changed,
    load_api,
    load_child,
    load_route,
    not_found,
)
from portico.control.errors import BadRequestException, ConflictException
from portico.control.registry import AdminRequest, copy_given, operation, paginate

HTTP_METHODS = ("ANY", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
WEBSOCKET_SPECIAL_KEYS = ("$connect", "$disconnect", "$default")
_LITERAL = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=:@%-]+$")
_VARIABLE = re.compile(r"^\{([A-Za-z0-9._-]+)(\+?)\}$")
_TARGET = re.compile(r"^integrations/([A-Za-z0-9]+)$")

# Members of CreateRoute / UpdateRoute stored as given.
_MEMBERS = (
    "ApiKeyRequired",
    "AuthorizationScopes",
    "AuthorizationType",
    "AuthorizerId",
    "ModelSelectionExpression",
    "OperationName",
    "RequestModels",
    "RequestParameters",
    "RouteKey",
    "RouteResponseSelectionExpression",
    "Target",
)


def _bad_route_key(key: str, why: str) -> BadRequestException:
    return BadRequestException(f"Invalid route key '{key}': {why}")


def check_route_key(protocol: str, key: str) -> None:
    """AWS's route key rules: `$default` or `METHOD /path` ({var}, trailing {var+}) for HTTP APIs;
    `$connect`, `$disconnect`, `$default` or a custom key (no leading `$`) for WebSocket APIs."""
    if protocol == "WEBSOCKET":
        if not key or (key.startswith("$") and key not in WEBSOCKET_SPECIAL_KEYS):
            raise _bad_route_key(key, "must be $connect, $disconnect, $default or a custom key")
        return
    if key == "$default":
        return
    method, sep, path = key.partition(" ")
    if not sep or method not in HTTP_METHODS:
        raise _bad_route_key(
            key,
            "a route key must be '$default' or an HTTP method (" + ", ".join(HTTP_METHODS) + ") and a path",
        )
    if not path.startswith("/"):
        raise _bad_route_key(key, "the path must start with '/'")
    if path == "/":
        return
    segments = path[1:].split("/")
    names: set[str] = set()
    for index, segment in enumerate(segments):
        if not segment:
            raise _bad_route_key(key, "the path must not contain empty segments or end with '/'")
        variable = _VARIABLE.match(segment)
        if variable:
            name, greedy = variable.groups()
            if greedy and index != len(segments) - 1:
                raise _bad_route_key(key, "a greedy path variable {name+} must be the last path segment")
            if name in names:
                raise _bad_route_key(key, f"the path variable {{{name}}} appears more than once")
            names.add(name)
        elif "{" in segment or "}" in segment or not _LITERAL.match(segment):
            raise _bad_route_key(key, f"invalid path segment '{segment}'")


def check_target(tx, api_id: str, target: str | None) -> None:
    if not target:
        return
    match = _TARGET.match(target)
    if match is None:
        raise BadRequestException(
            f"Invalid target '{target}'. A target must have the form integrations/{{id}}"
        )
    if tx.get(SERVICE, INTEGRATION, match.group(1), parent=api_id) is None:
        raise not_found(f"Invalid Integration identifier specified {match.group(1)}", "Integration")


def _check_authorization(tx, api: dict[str, Any], route: dict[str, Any]) -> None:
    kind = route.get("AuthorizationType", "NONE")
    authorizer_id = route.get("AuthorizerId")
    if kind in ("JWT", "CUSTOM"):
        if not authorizer_id:
            raise BadRequestException(f"AuthorizerId is required for AuthorizationType {kind}")
        authorizer = load_child(tx, AUTHORIZER, api["ApiId"], authorizer_id, "Authorizer")
        expected = "JWT" if kind == "JWT" else "REQUEST"
        if authorizer.get("AuthorizerType") != expected:
            raise BadRequestException(
                f"AuthorizationType {kind} requires an authorizer of type {expected}, "
                f"authorizer {authorizer_id} is of type {authorizer.get('AuthorizerType')}"
            )
    elif authorizer_id:
        load_child(tx, AUTHORIZER, api["ApiId"], authorizer_id, "Authorizer")
        raise BadRequestException(f"AuthorizerId is not supported for AuthorizationType {kind}")
    if route.get("AuthorizationScopes") and kind != "JWT":
        raise BadRequestException("AuthorizationScopes are only supported for AuthorizationType JWT")


def _check_unique_key(tx, api_id: str, key: str, route_id: str | None = None) -> None:
    for other in tx.list(SERVICE, ROUTE, api_id):
        if other["RouteKey"] == key and other["RouteId"] != route_id:
            raise ConflictException(f"Route with key {key} already exists for this API")


def new_route(tx, api: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Validate and store a new route (no autoDeploy)."""
    api_id = api["ApiId"]
    check_route_key(api["ProtocolType"], params["RouteKey"])
    check_target(tx, api_id, params.get("Target"))
    route: dict[str, Any] = {
        "RouteId": ids.short_id(),
        "ApiGatewayManaged": False,
        "ApiKeyRequired": False,
        "AuthorizationType": "NONE",
    }
    copy_given(params, route, _MEMBERS)
    _check_authorization(tx, api, route)
    _check_unique_key(tx, api_id, route["RouteKey"])
    tx.put(SERVICE, ROUTE, route["RouteId"], route, parent=api_id)
    return route


@operation(SERVICE, "CreateRoute")
def create_route(request: AdminRequest, params: dict) -> dict:
    with request.store.transaction() as tx:
        api = load_api(request, tx, params["ApiId"])
        route = new_route(tx, api, params)
        changed(tx, api["ApiId"])
    return route


@operation(SERVICE, "GetRoute")
def get_route(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        load_api(request, tx, params["ApiId"])
        return load_route(tx, params["ApiId"], params["RouteId"])


@operation(SERVICE, "GetRoutes")
def get_routes(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        load_api(request, tx, params["ApiId"])
        routes = tx.list(SERVICE, ROUTE, params["ApiId"])
    page, token = paginate(routes, params.get("NextToken"), params.get("MaxResults"), default=100)
    return {"Items": page, "NextToken": token}


@operation(SERVICE, "UpdateRoute")
def update_route(request: AdminRequest, params: dict) -> dict:
    api_id = params["ApiId"]
    with request.store.transaction() as tx:
        api = load_api(request, tx, api_id)
        route = load_route(tx, api_id, params["RouteId"])
        if params.get("RouteKey") is not None and params["RouteKey"] != route["RouteKey"]:
            check_route_key(api["ProtocolType"], params["RouteKey"])
            _check_unique_key(tx, api_id, params["RouteKey"], route["RouteId"])
        if params.get("Target") is not None:
            check_target(tx, api_id, params["Target"])
        copy_given(params, route, _MEMBERS)
        if route.get("Target") == "":
            del route["Target"]  # an empty target detaches the integration
        if route.get("AuthorizationType") in ("NONE", "AWS_IAM") and params.get("AuthorizerId") is None:
            route.pop("AuthorizerId", None)
        _check_authorization(tx, api, route)
        tx.put(SERVICE, ROUTE, route["RouteId"], route, parent=api_id)
        changed(tx, api_id)
    return route


@operation(SERVICE, "DeleteRoute")
def delete_route(request: AdminRequest, params: dict) -> None:
    api_id, route_id = params["ApiId"], params["RouteId"]
    with request.store.transaction() as tx:
        load_api(request, tx, api_id)
        load_route(tx, api_id, route_id)
        tx.delete(SERVICE, ROUTE, route_id)
        tx.delete_under(SERVICE, f"{api_id}/{route_id}")
        changed(tx, api_id)


@operation(SERVICE, "DeleteRouteRequestParameter")
def delete_route_request_parameter(request: AdminRequest, params: dict) -> None:
    api_id = params["ApiId"]
    with request.store.transaction() as tx:
        load_api(request, tx, api_id)
        route = load_route(tx, api_id, params["RouteId"])
        parameters = route.get("RequestParameters") or {}
        if params["RequestParameterKey"] not in parameters:
            raise not_found(f"Invalid request parameter key specified {params['RequestParameterKey']}")
        del parameters[params["RequestParameterKey"]]
        route["RequestParameters"] = parameters
        tx.put(SERVICE, ROUTE, route["RouteId"], route, parent=api_id)
        changed(tx, api_id)


# -- route responses ------------------------------------------------------------------------------

_RESPONSE_MEMBERS = ("ModelSelectionExpression", "ResponseModels", "ResponseParameters", "RouteResponseKey")


def _load_route_response(tx, api_id: str, route_id: str, response_id: str) -> dict[str, Any]:
    doc = tx.get(SERVICE, ROUTE_RESPONSE, response_id, parent=f"{api_id}/{route_id}")
    if doc is None:
        raise not_found(f"Invalid RouteResponse identifier specified {response_id}", "RouteResponse")
    return doc


@operation(SERVICE, "CreateRouteResponse")
def create_route_response(request: AdminRequest, params: dict) -> dict:
    api_id, route_id = params["ApiId"], params["RouteId"]
    with request.store.transaction() as tx:
        load_api(request, tx, api_id)
        load_route(tx, api_id, route_id)
        parent = f"{api_id}/{route_id}"
        if any(
            r["RouteResponseKey"] == params["RouteResponseKey"]
            for r in tx.list(SERVICE, ROUTE_RESPONSE, parent)
        ):
            raise ConflictException(
                f"RouteResponse with key {params['RouteResponseKey']} already exists for this Route"
            )
        response = {"RouteResponseId": ids.short_id()}
        copy_given(params, response, _RESPONSE_MEMBERS)
        tx.put(SERVICE, ROUTE_RESPONSE, response["RouteResponseId"], response, parent=parent)
        changed(tx, api_id)
    return response


@operation(SERVICE, "GetRouteResponse")
def get_route_response(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        load_api(request, tx, params["ApiId"])
        load_route(tx, params["ApiId"], params["RouteId"])
        return _load_route_response(tx, params["ApiId"], params["RouteId"], params["RouteResponseId"])


@operation(SERVICE, "GetRouteResponses")
def get_route_responses(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        load_api(request, tx, params["ApiId"])
        load_route(tx, params["ApiId"], params["RouteId"])
        items = tx.list(SERVICE, ROUTE_RESPONSE, f"{params['ApiId']}/{params['RouteId']}")
    page, token = paginate(items, params.get("NextToken"), params.get("MaxResults"), default=100)
    return {"Items": page, "NextToken": token}


@operation(SERVICE, "UpdateRouteResponse")
def update_route_response(request: AdminRequest, params: dict) -> dict:
    api_id, route_id = params["ApiId"], params["RouteId"]
    with request.store.transaction() as tx:
        load_api(request, tx, api_id)
        load_route(tx, api_id, route_id)
        response = _load_route_response(tx, api_id, route_id, params["RouteResponseId"])
        copy_given(params, response, _RESPONSE_MEMBERS)
        tx.put(SERVICE, ROUTE_RESPONSE, response["RouteResponseId"], response, parent=f"{api_id}/{route_id}")
        changed(tx, api_id)
    return response


@operation(SERVICE, "DeleteRouteResponse")
def delete_route_response(request: AdminRequest, params: dict) -> None:
    api_id, route_id = params["ApiId"], params["RouteId"]
    with request.store.transaction() as tx:
        load_api(request, tx, api_id)
        load_route(tx, api_id, route_id)
        _load_route_response(tx, api_id, route_id, params["RouteResponseId"])
        tx.delete(SERVICE, ROUTE_RESPONSE, params["RouteResponseId"])
        changed(tx, api_id)
