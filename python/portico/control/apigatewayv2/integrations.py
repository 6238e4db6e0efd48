"""apigatewayv2: integrations and integration responses.

Integration documents: kind "integration", id IntegrationId, parent ApiId, with AWS's defaults
filled in (ConnectionType INTERNET, TimeoutInMillis 30000 (WebSocket 29000), PayloadFormatVersion
"1.0" for everything but Lambda proxies, which must state "1.0" or "2.0" on HTTP APIs,
IntegrationMethod POST for AWS_PROXY). Integration responses: kind "integrationresponse", id
IntegrationResponseId, parent f"{ApiId}/{IntegrationId}"."""

from __future__ import annotations

from typing import Any

from portico.config.parameter_mapping import (
    MAPPING_ERROR,
    applies_to,
    http_mapping_problems,
    merged_request_parameters,
    merged_response_parameters,
)
from portico.control import ids
from portico.control.apigatewayv2.common import (
    INTEGRATION,
    INTEGRATION_RESPONSE,
    ROUTE,
    SERVICE,
    changed,
    load_api,
    load_integration,
    not_found,
)
from portico.control.errors import BadRequestException, ConflictException
from portico.control.registry import AdminRequest, copy_given, operation, paginate

_MEMBERS = (
    "ConnectionId",
    "ConnectionType",
    "ContentHandlingStrategy",
    "CredentialsArn",
    "Description",
    "IntegrationMethod",
    "IntegrationSubtype",
    "IntegrationType",
    "IntegrationUri",
    "PassthroughBehavior",
    "PayloadFormatVersion",
    "RequestParameters",
    "RequestTemplates",
    "ResponseParameters",
    "TemplateSelectionExpression",
    "TimeoutInMillis",
    "TlsConfig",
)
HTTP_API_TYPES = ("AWS_PROXY", "HTTP_PROXY")
PAYLOAD_FORMATS = ("1.0", "2.0")


def _timeout_range(protocol: str) -> tuple[int, int]:
    return (50, 29000) if protocol == "WEBSOCKET" else (50, 30000)


def normalise(api: dict[str, Any], integration: dict[str, Any], creating: bool) -> dict[str, Any]:
    """Fill in AWS's defaults and validate an integration document (in place)."""
    protocol = api["ProtocolType"]
    kind = integration["IntegrationType"]
    if protocol == "HTTP" and kind not in HTTP_API_TYPES:
        raise BadRequestException(
            f"Integration type {kind} is not supported for HTTP APIs. Supported types: AWS_PROXY, HTTP_PROXY"
        )
    low, high = _timeout_range(protocol)
    integration.setdefault("TimeoutInMillis", high)
    if not low <= integration["TimeoutInMillis"] <= high:
        raise BadRequestException(f"Timeout must be between {low} ms and {high} ms")
    integration.setdefault("ConnectionType", "INTERNET")
    if integration["ConnectionType"] == "VPC_LINK" and not integration.get("ConnectionId"):
        raise BadRequestException("ConnectionId is required for ConnectionType VPC_LINK")
    if integration["ConnectionType"] == "INTERNET":
        integration.pop("ConnectionId", None)
    payload = integration.get("PayloadFormatVersion")
    if payload is not None and payload not in PAYLOAD_FORMATS:
        raise BadRequestException(
            f"Invalid payload format version '{payload}'. Supported values are 1.0 and 2.0"
        )
    if kind == "AWS_PROXY":
        integration.setdefault("IntegrationMethod", "POST")
        if protocol == "HTTP":
            if payload is None:
                raise BadRequestException(
                    "PayloadFormatVersion is required for AWS_PROXY integrations of HTTP APIs (1.0 or 2.0)"
                )
        else:
            integration.setdefault("PayloadFormatVersion", "1.0")
    else:
        if payload is not None and payload != "1.0" and protocol == "HTTP":
            raise BadRequestException(
                f"Payload format version {payload} is only supported for AWS_PROXY integrations"
            )
        integration.setdefault("PayloadFormatVersion", "1.0")
    if kind in ("HTTP_PROXY", "HTTP"):
        uri = integration.get("IntegrationUri")
        if not uri:
            raise BadRequestException(f"IntegrationUri is required for {kind} integrations")
        if integration["ConnectionType"] == "INTERNET" and not uri.startswith(("http://", "https://")):
            raise BadRequestException(f"Invalid HTTP endpoint specified for URI: {uri}")
        integration.setdefault("IntegrationMethod", "ANY" if kind == "HTTP_PROXY" else "POST")
    if (
        kind == "AWS_PROXY"
        and not integration.get("IntegrationUri")
        and not integration.get("IntegrationSubtype")
    ):
        raise BadRequestException("IntegrationUri is required for AWS_PROXY integrations")
    if protocol == "HTTP":
        check_parameter_mapping(integration)
    if protocol == "WEBSOCKET":
        if kind not in HTTP_API_TYPES:
            integration.setdefault("PassthroughBehavior", "WHEN_NO_MATCH")
        integration.setdefault("IntegrationResponseSelectionExpression", "${integration.response.statuscode}")
    if creating:
        integration.setdefault("ApiGatewayManaged", False)
    return integration


def check_parameter_mapping(integration: dict[str, Any]) -> None:
    """An HTTP API integration's `RequestParameters` / `ResponseParameters` as AWS checks them:
    reserved headers, unknown keys and values that are not mapping expressions are refused
    (BadRequestException, AWS's message)."""
    if not applies_to(integration["IntegrationType"], integration.get("IntegrationSubtype")):
        return
    for _, problem in http_mapping_problems(
        integration.get("RequestParameters"), integration.get("ResponseParameters")
    ):
        raise BadRequestException(MAPPING_ERROR.format(problem))


def _given_mappings(params: dict[str, Any], integration: dict[str, Any]) -> None:
    """Merge the mappings a request gives into `integration`: a key given "" (a status given
    {}) removes what was configured, as AWS's UpdateIntegration does."""
    if params.get("RequestParameters") is not None and isinstance(params["RequestParameters"], dict):
        merged = merged_request_parameters(integration.get("RequestParameters"), params["RequestParameters"])
        integration.pop("RequestParameters", None)
        if merged:
            integration["RequestParameters"] = merged
    if params.get("ResponseParameters") is not None and isinstance(params["ResponseParameters"], dict):
        merged_response = merged_response_parameters(
            integration.get("ResponseParameters"), params["ResponseParameters"]
        )
        integration.pop("ResponseParameters", None)
        if merged_response:
            integration["ResponseParameters"] = merged_response


def new_integration(tx, api: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    integration: dict[str, Any] = {"IntegrationId": ids.short_id()}
    copy_given(params, integration, _MEMBERS)
    if api["ProtocolType"] == "HTTP":
        integration.pop("RequestParameters", None)
        integration.pop("ResponseParameters", None)
        _given_mappings(params, integration)
    normalise(api, integration, creating=True)
    tx.put(SERVICE, INTEGRATION, integration["IntegrationId"], integration, parent=api["ApiId"])
    return integration


@operation(SERVICE, "CreateIntegration")
def create_integration(request: AdminRequest, params: dict) -> dict:
    with request.store.transaction() as tx:
        api = load_api(request, tx, params["ApiId"])
        integration = new_integration(tx, api, params)
        changed(tx, api["ApiId"])
    return integration


@operation(SERVICE, "GetIntegration")
def get_integration(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        load_api(request, tx, params["ApiId"])
        return load_integration(tx, params["ApiId"], params["IntegrationId"])


@operation(SERVICE, "GetIntegrations")
def get_integrations(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        load_api(request, tx, params["ApiId"])
        items = tx.list(SERVICE, INTEGRATION, params["ApiId"])
    page, token = paginate(items, params.get("NextToken"), params.get("MaxResults"), default=100)
    return {"Items": page, "NextToken": token}


@operation(SERVICE, "UpdateIntegration")
def update_integration(request: AdminRequest, params: dict) -> dict:
    api_id = params["ApiId"]
    with request.store.transaction() as tx:
        api = load_api(request, tx, api_id)
        integration = load_integration(tx, api_id, params["IntegrationId"])
        if (
            params.get("IntegrationType") is not None
            and params["IntegrationType"] != integration["IntegrationType"]
        ):
            # A new type brings new defaults.
            for name in ("IntegrationMethod", "PayloadFormatVersion", "PassthroughBehavior"):
                integration.pop(name, None)
        stored = {k: integration.get(k) for k in ("RequestParameters", "ResponseParameters")}
        copy_given(params, integration, _MEMBERS)
        if api["ProtocolType"] == "HTTP":
            for name, value in stored.items():
                integration.pop(name, None)
                if value is not None:
                    integration[name] = value
            _given_mappings(params, integration)
        normalise(api, integration, creating=False)
        tx.put(SERVICE, INTEGRATION, integration["IntegrationId"], integration, parent=api_id)
        changed(tx, api_id)
    return integration


@operation(SERVICE, "DeleteIntegration")
def delete_integration(request: AdminRequest, params: dict) -> None:
    api_id, integration_id = params["ApiId"], params["IntegrationId"]
    with request.store.transaction() as tx:
        load_api(request, tx, api_id)
        load_integration(tx, api_id, integration_id)
        target = f"integrations/{integration_id}"
        users = [r["RouteId"] for r in tx.list(SERVICE, ROUTE, api_id) if r.get("Target") == target]
        if users:
            raise ConflictException(
                f"Cannot delete integration {integration_id}: it is the target of route(s) {', '.join(users)}"
            )
        tx.delete(SERVICE, INTEGRATION, integration_id)
        tx.delete_under(SERVICE, f"{api_id}/{integration_id}")
        changed(tx, api_id)


# -- integration responses ------------------------------------------------------------------------

_RESPONSE_MEMBERS = (
    "ContentHandlingStrategy",
    "IntegrationResponseKey",
    "ResponseParameters",
    "ResponseTemplates",
    "TemplateSelectionExpression",
)


def _load_response(tx, api_id: str, integration_id: str, response_id: str) -> dict[str, Any]:
    doc = tx.get(SERVICE, INTEGRATION_RESPONSE, response_id, parent=f"{api_id}/{integration_id}")
    if doc is None:
        raise not_found(
            f"Invalid IntegrationResponse identifier specified {response_id}", "IntegrationResponse"
        )
    return doc


def _check_response_key(key: str) -> None:
    if key != "$default" and not (len(key) >= 2 and key.startswith("/") and key.endswith("/")):
        raise BadRequestException(
            f"Invalid integration response key '{key}': "
            "must be $default or a regular expression between slashes"
        )


@operation(SERVICE, "CreateIntegrationResponse")
def create_integration_response(request: AdminRequest, params: dict) -> dict:
    api_id, integration_id = params["ApiId"], params["IntegrationId"]
    with request.store.transaction() as tx:
        load_api(request, tx, api_id)
        load_integration(tx, api_id, integration_id)
        _check_response_key(params["IntegrationResponseKey"])
        parent = f"{api_id}/{integration_id}"
        key = params["IntegrationResponseKey"]
        if any(r["IntegrationResponseKey"] == key for r in tx.list(SERVICE, INTEGRATION_RESPONSE, parent)):
            raise ConflictException(f"IntegrationResponse with key {key} already exists for this Integration")
        response = {"IntegrationResponseId": ids.short_id()}
        copy_given(params, response, _RESPONSE_MEMBERS)
        tx.put(SERVICE, INTEGRATION_RESPONSE, response["IntegrationResponseId"], response, parent=parent)
        changed(tx, api_id)
    return response


@operation(SERVICE, "GetIntegrationResponse")
def get_integration_response(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        load_api(request, tx, params["ApiId"])
        load_integration(tx, params["ApiId"], params["IntegrationId"])
        return _load_response(tx, params["ApiId"], params["IntegrationId"], params["IntegrationResponseId"])


@operation(SERVICE, "GetIntegrationResponses")
def get_integration_responses(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        load_api(request, tx, params["ApiId"])
        load_integration(tx, params["ApiId"], params["IntegrationId"])
        items = tx.list(SERVICE, INTEGRATION_RESPONSE, f"{params['ApiId']}/{params['IntegrationId']}")
    page, token = paginate(items, params.get("NextToken"), params.get("MaxResults"), default=100)
    return {"Items": page, "NextToken": token}


@operation(SERVICE, "UpdateIntegrationResponse")
def update_integration_response(request: AdminRequest, params: dict) -> dict:
    api_id, integration_id = params["ApiId"], params["IntegrationId"]
    with request.store.transaction() as tx:
        load_api(request, tx, api_id)
        load_integration(tx, api_id, integration_id)
        response = _load_response(tx, api_id, integration_id, params["IntegrationResponseId"])
        if params.get("IntegrationResponseKey") is not None:
            _check_response_key(params["IntegrationResponseKey"])
        copy_given(params, response, _RESPONSE_MEMBERS)
        parent = f"{api_id}/{integration_id}"
        tx.put(SERVICE, INTEGRATION_RESPONSE, response["IntegrationResponseId"], response, parent=parent)
        changed(tx, api_id)
    return response


@operation(SERVICE, "DeleteIntegrationResponse")
def delete_integration_response(request: AdminRequest, params: dict) -> None:
    api_id, integration_id = params["ApiId"], params["IntegrationId"]
    with request.store.transaction() as tx:
        load_api(request, tx, api_id)
        load_integration(tx, api_id, integration_id)
        _load_response(tx, api_id, integration_id, params["IntegrationResponseId"])
        tx.delete(SERVICE, INTEGRATION_RESPONSE, params["IntegrationResponseId"])
        changed(tx, api_id)
