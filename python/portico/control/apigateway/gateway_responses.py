"""apigateway (v1): gateway responses. Only customised responses are stored: kind
"gatewayresponse", id f"{restApiId}/{responseType}", parent restApiId, the `GatewayResponse`
shape's members (`defaultResponse: false`). The others read as AWS's defaults."""

from __future__ import annotations

import re
from typing import Any

from portico.config.models import gateway_response_parameter_problem
from portico.control.apigateway.common import SERVICE, load_rest_api
from portico.control.errors import BadRequestException, NotFoundException
from portico.control.patch import apply_patch
from portico.control.registry import AdminRequest, operation, paginate
from portico.control.wire import get_service

KIND = "gatewayresponse"
DEFAULT_TEMPLATE = '{"message":$context.error.messageString}'
# responseType -> default statusCode (None for the DEFAULT_4XX / DEFAULT_5XX classes).
DEFAULT_STATUS: dict[str, str | None] = {
    "ACCESS_DENIED": "403",
    "API_CONFIGURATION_ERROR": "500",
    "AUTHORIZER_CONFIGURATION_ERROR": "500",
    "AUTHORIZER_FAILURE": "500",
    "BAD_REQUEST_BODY": "400",
    "BAD_REQUEST_PARAMETERS": "400",
    "DEFAULT_4XX": None,
    "DEFAULT_5XX": None,
    "EXPIRED_TOKEN": "403",
    "INTEGRATION_FAILURE": "504",
    "INTEGRATION_TIMEOUT": "504",
    "INVALID_API_KEY": "403",
    "INVALID_SIGNATURE": "403",
    "MISSING_AUTHENTICATION_TOKEN": "403",
    "QUOTA_EXCEEDED": "429",
    "REQUEST_TOO_LARGE": "413",
    "RESOURCE_NOT_FOUND": "404",
    "THROTTLED": "429",
    "UNAUTHORIZED": "401",
    "UNSUPPORTED_MEDIA_TYPE": "415",
    "WAF_FILTERED": "403",
}
_STATUS = re.compile(r"^[1-5]\d\d$")
GATEWAY_RESPONSE_PATHS = ("/statusCode", "/responseParameters/*", "/responseTemplates/*")


def gateway_response_key(rest_api_id: str, response_type: str) -> str:
    return f"{rest_api_id}/{response_type}"


def default_response(response_type: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "responseType": response_type,
        "responseParameters": {},
        "responseTemplates": {"application/json": DEFAULT_TEMPLATE},
        "defaultResponse": True,
    }
    if DEFAULT_STATUS.get(response_type):
        doc["statusCode"] = DEFAULT_STATUS[response_type]
    return doc


def check_status(status: str | None) -> None:
    if status is not None and not _STATUS.match(status):
        raise BadRequestException(
            f"1 validation error detected: Value '{status}' at 'statusCode' failed to satisfy constraint: "
            "Member must satisfy regular expression pattern: [1-5]\\d\\d"
        )


def check_type(response_type: str) -> None:
    if response_type not in DEFAULT_STATUS:
        raise BadRequestException(
            f"1 validation error detected: Value '{response_type}' at 'responseType' failed to satisfy "
            "constraint: Member must satisfy enum value set: [" + ", ".join(DEFAULT_STATUS) + "]"
        )


def check_parameters(parameters: Any) -> None:
    """`responseParameters` the data plane can serve (AWS refuses other mapping expressions at
    PutGatewayResponse / UpdateGatewayResponse)."""
    for key, expression in (parameters or {}).items():
        problem = gateway_response_parameter_problem(key, expression)
        if problem:
            raise BadRequestException(
                "Invalid mapping expression specified: Validation Result: warnings : [], "
                f"errors : [{problem}]"
            )


def new_gateway_response(response_type: str, params: dict[str, Any]) -> dict[str, Any]:
    check_type(response_type)
    check_status(params.get("statusCode"))
    check_parameters(params.get("responseParameters"))
    doc: dict[str, Any] = {
        "responseType": response_type,
        "responseParameters": params.get("responseParameters") or {},
        "responseTemplates": params.get("responseTemplates") or {},
        "defaultResponse": False,
    }
    status = params.get("statusCode") or DEFAULT_STATUS[response_type]
    if status:
        doc["statusCode"] = status
    return doc


def read_response(tx, rest_api_id: str, response_type: str) -> dict[str, Any]:
    check_type(response_type)
    stored = tx.get(SERVICE, KIND, gateway_response_key(rest_api_id, response_type), parent=rest_api_id)
    return stored if stored is not None else default_response(response_type)


@operation(SERVICE, "PutGatewayResponse")
def put_gateway_response(request: AdminRequest, params: dict) -> dict:
    rest_api_id, response_type = params["restApiId"], params["responseType"]
    doc = new_gateway_response(response_type, params)
    with request.store.transaction() as tx:
        load_rest_api(tx, rest_api_id)
        tx.put(SERVICE, KIND, gateway_response_key(rest_api_id, response_type), doc, parent=rest_api_id)
    return doc


@operation(SERVICE, "GetGatewayResponse")
def get_gateway_response(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        load_rest_api(tx, params["restApiId"])
        return read_response(tx, params["restApiId"], params["responseType"])


@operation(SERVICE, "GetGatewayResponses")
def get_gateway_responses(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        load_rest_api(tx, params["restApiId"])
        stored = {r["responseType"]: r for r in tx.list(SERVICE, KIND, params["restApiId"])}
    items = [stored.get(t) or default_response(t) for t in DEFAULT_STATUS]
    page, position = paginate(items, params.get("position"), params.get("limit"))
    return {"items": page, "position": position}


@operation(SERVICE, "UpdateGatewayResponse")
def update_gateway_response(request: AdminRequest, params: dict) -> dict:
    rest_api_id, response_type = params["restApiId"], params["responseType"]
    shape = get_service(SERVICE).shape("GatewayResponse")
    with request.store.transaction() as tx:
        load_rest_api(tx, rest_api_id)
        doc = read_response(tx, rest_api_id, response_type)
        doc = apply_patch(doc, params.get("patchOperations"), shape, GATEWAY_RESPONSE_PATHS)
        check_status(doc.get("statusCode"))
        check_parameters(doc.get("responseParameters"))
        doc["defaultResponse"] = False
        tx.put(SERVICE, KIND, gateway_response_key(rest_api_id, response_type), doc, parent=rest_api_id)
    return doc


@operation(SERVICE, "DeleteGatewayResponse")
def delete_gateway_response(request: AdminRequest, params: dict) -> None:
    rest_api_id, response_type = params["restApiId"], params["responseType"]
    with request.store.transaction() as tx:
        load_rest_api(tx, rest_api_id)
        check_type(response_type)
        if not tx.delete(SERVICE, KIND, gateway_response_key(rest_api_id, response_type)):
            raise NotFoundException("Invalid Gateway Response identifier specified")
