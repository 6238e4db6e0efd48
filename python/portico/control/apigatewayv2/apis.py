"""apigatewayv2: APIs (HTTP and WebSocket). Documents: service "apigatewayv2", kind "api", keyed by
model member names (`ApiId`, `Name`, ...), as `GetApiResponse` defines them.

CreateApi with `Target` is AWS's quick create: an integration (AWS_PROXY with payload 2.0 for a
Lambda ARN, HTTP_PROXY for a URL), a route (`RouteKey`, default `$default`) and a `$default` stage
with AutoDeploy, all `ApiGatewayManaged`."""

from __future__ import annotations

from typing import Any

from portico.control import ids
from portico.control.apigatewayv2.common import (
    API_KIND,
    INTEGRATION,
    ROUTE,
    SERVICE,
    api_not_found,
    auto_deploy,
    changed,
    load_api,
    now,
)
from portico.control.errors import BadRequestException
from portico.control.registry import AdminRequest, copy_given, operation, paginate

KIND = API_KIND
__all__ = ["KIND", "SERVICE", "api_not_found", "load_api"]

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


def check_cors(protocol: str, cors: dict[str, Any] | None) -> None:
    if cors is None:
        return
    if protocol != "HTTP":
        raise BadRequestException("CORS is not supported for WEBSOCKET APIs")
    if cors.get("AllowCredentials") and "*" in (cors.get("AllowOrigins") or []):
        raise BadRequestException("allow-credentials is not supported if 'allow-origin' is *")
    max_age = cors.get("MaxAge")
    if max_age is not None and not -1 <= max_age <= 86400:
        raise BadRequestException("MaxAge must be between -1 and 86400")


def new_api(request: AdminRequest, params: dict) -> dict[str, Any]:
    """An API document from CreateApi-like parameters (not stored)."""
    protocol = params["ProtocolType"]
    if protocol == "WEBSOCKET" and not params.get("RouteSelectionExpression"):
        raise BadRequestException("RouteSelectionExpression is required for a WEBSOCKET API")
    check_cors(protocol, params.get("CorsConfiguration"))
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
        "CreatedDate": int(now()),
        "DisableExecuteApiEndpoint": params.get("DisableExecuteApiEndpoint", False),
        "IpAddressType": params.get("IpAddressType", "ipv4"),
        "Tags": params.get("Tags") or {},
    }
    copy_given(params, api, ("CorsConfiguration", "Description", "DisableSchemaValidation", "Version"))
    return api


def quick_integration(target: str, credentials_arn: str | None) -> dict[str, Any]:
    integration: dict[str, Any] = {"IntegrationId": ids.short_id(), "ApiGatewayManaged": True}
    if target.startswith("arn:"):
        integration.update(
            IntegrationType="AWS_PROXY",
            IntegrationMethod="POST",
            PayloadFormatVersion="2.0",
        )
    elif target.startswith(("http://", "https://")):
        integration.update(IntegrationType="HTTP_PROXY", IntegrationMethod="ANY", PayloadFormatVersion="1.0")
    else:
        raise BadRequestException(
            f"Invalid target '{target}'. The target must be a Lambda function ARN or an HTTP URL."
        )
    integration.update(IntegrationUri=target, ConnectionType="INTERNET", TimeoutInMillis=30000)
    if credentials_arn:
        integration["CredentialsArn"] = credentials_arn
    return integration


@operation(SERVICE, "CreateApi")
def create_api(request: AdminRequest, params: dict) -> dict:
    from portico.control.apigatewayv2.routes import check_route_key

    quick = params.get("Target") is not None
    if (params.get("RouteKey") or params.get("CredentialsArn")) and not quick:
        raise BadRequestException("RouteKey and CredentialsArn are only supported together with Target")
    if quick and params["ProtocolType"] != "HTTP":
        raise BadRequestException("Quick create (Target) is only supported for HTTP APIs")
    api = new_api(request, params)
    api_id = api["ApiId"]
    with request.store.transaction() as tx:
        tx.put(SERVICE, KIND, api_id, api)
        if quick:
            route_key = params.get("RouteKey") or "$default"
            check_route_key("HTTP", route_key)
            integration = quick_integration(params["Target"], params.get("CredentialsArn"))
            tx.put(SERVICE, INTEGRATION, integration["IntegrationId"], integration, parent=api_id)
            route = {
                "RouteId": ids.short_id(),
                "RouteKey": route_key,
                "Target": f"integrations/{integration['IntegrationId']}",
                "AuthorizationType": "NONE",
                "ApiKeyRequired": False,
                "ApiGatewayManaged": True,
            }
            tx.put(SERVICE, ROUTE, route["RouteId"], route, parent=api_id)
            stage = {
                "StageName": "$default",
                "AutoDeploy": True,
                "ApiGatewayManaged": True,
                "DefaultRouteSettings": {"DetailedMetricsEnabled": False},
                "RouteSettings": {},
                "StageVariables": {},
                "Tags": {},
                "CreatedDate": now(),
                "LastUpdatedDate": now(),
            }
            auto_deploy(tx, api_id, [stage])
            api = tx.get(SERVICE, KIND, api_id)
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
    from portico.control.apigatewayv2.routes import check_route_key

    with request.store.transaction() as tx:
        api = load_api(request, tx, params["ApiId"])
        api_id = api["ApiId"]
        check_cors(api["ProtocolType"], params.get("CorsConfiguration"))
        copy_given(params, api, _UPDATABLE)
        tx.put(SERVICE, KIND, api_id, api)
        if any(params.get(n) is not None for n in ("Target", "RouteKey", "CredentialsArn")):
            # Quick-create members update the managed route and integration.
            routes = [r for r in tx.list(SERVICE, ROUTE, api_id) if r.get("ApiGatewayManaged")]
            integrations = [i for i in tx.list(SERVICE, INTEGRATION, api_id) if i.get("ApiGatewayManaged")]
            if not routes or not integrations:
                raise BadRequestException(
                    "Target, RouteKey and CredentialsArn can only be updated on an API "
                    "created by quick create"
                )
            integration, route = integrations[0], routes[0]
            if params.get("Target") is not None:
                fresh = quick_integration(params["Target"], integration.get("CredentialsArn"))
                fresh["IntegrationId"] = integration["IntegrationId"]
                integration = fresh
            if params.get("CredentialsArn") is not None:
                integration["CredentialsArn"] = params["CredentialsArn"]
            tx.put(SERVICE, INTEGRATION, integration["IntegrationId"], integration, parent=api_id)
            if params.get("RouteKey") is not None:
                check_route_key(api["ProtocolType"], params["RouteKey"])
                route["RouteKey"] = params["RouteKey"]
                tx.put(SERVICE, ROUTE, route["RouteId"], route, parent=api_id)
        changed(tx, api_id)
        api = tx.get(SERVICE, KIND, api_id)
    return api


@operation(SERVICE, "DeleteCorsConfiguration")
def delete_cors_configuration(request: AdminRequest, params: dict) -> None:
    with request.store.transaction() as tx:
        api = load_api(request, tx, params["ApiId"])
        api.pop("CorsConfiguration", None)
        tx.put(SERVICE, KIND, api["ApiId"], api)
        changed(tx, api["ApiId"])


@operation(SERVICE, "DeleteApi")
def delete_api(request: AdminRequest, params: dict) -> None:
    api_id = params["ApiId"]
    with request.store.transaction() as tx:
        if not tx.delete(SERVICE, KIND, api_id):
            raise api_not_found(request, api_id)
        tx.delete_under(SERVICE, api_id)
        # API mappings of custom domain names that pointed at this API.
        for mapping in tx.list(SERVICE, "apimapping"):
            if mapping.get("ApiId") == api_id:
                tx.delete(SERVICE, "apimapping", mapping["ApiMappingId"])
