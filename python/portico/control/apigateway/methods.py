"""apigateway (v1): methods, method responses, integrations and integration responses.

One document per method: kind "method", id f"{resourceId}/{httpMethod}", parent restApiId, the
`Method` shape's members with `methodResponses` {statusCode: MethodResponse} and
`methodIntegration` (an `Integration`, with `integrationResponses` {statusCode: ...}) embedded,
plus the private `_resourceId`."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from portico.config.parameter_mapping import MAPPING_ERROR
from portico.control.apigateway.common import METHOD_KIND, SERVICE, apply_request_patch
from portico.control.apigateway.resources import load_resource
from portico.control.errors import BadRequestException, ConflictException, NotFoundException
from portico.control.registry import AdminRequest, copy_given, operation

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY")
_STATUS = re.compile(r"^[1-5]\d\d$")
_NEEDS_HTTP_METHOD = ("HTTP", "AWS", "HTTP_PROXY", "AWS_PROXY")

METHOD_PATHS = (
    "/authorizationType",
    "/authorizerId",
    "/apiKeyRequired",
    "/requestValidatorId",
    "/operationName",
    "/requestParameters/*",
    "/requestModels/*",
    "/authorizationScopes",
    "/authorizationScopes/*",
)
METHOD_RESPONSE_PATHS = ("/responseParameters/*", "/responseModels/*")
INTEGRATION_PATHS = (
    "/type",
    "/httpMethod",
    "/uri",
    "/connectionType",
    "/connectionId",
    "/credentials",
    "/requestParameters/*",
    "/requestTemplates/*",
    "/passthroughBehavior",
    "/contentHandling",
    "/timeoutInMillis",
    "/cacheNamespace",
    "/cacheKeyParameters",
    "/cacheKeyParameters/*",
    "/tlsConfig/insecureSkipVerification",
    "/responseTransferMode",
    "/integrationTarget",
)
INTEGRATION_RESPONSE_PATHS = (
    "/selectionPattern",
    "/contentHandling",
    "/responseParameters/*",
    "/responseTemplates/*",
)
# Integration members taken as given, both from PutIntegration and from OpenAPI's
# x-amazon-apigateway-integration.
INTEGRATION_MEMBERS = (
    "uri",
    "connectionId",
    "credentials",
    "requestParameters",
    "requestTemplates",
    "contentHandling",
    "tlsConfig",
)


# REST APIs' parameter mapping ("Parameter mapping source reference for REST APIs in API
# Gateway"): integration request parameters from method request parameters (which the method must
# declare), the method request body (JSONPath), stage variables, context variables or 'static'
# text; method response headers from integration response headers and bodies, and the same.
_STATIC = re.compile(r"^'[^']*'$")
_COMMON_SOURCE = re.compile(r"^(stageVariables|context)\.\S+$")
_METHOD_PARAMETER = re.compile(
    r"^method\.request\.(path|querystring|multivaluequerystring|header|multivalueheader)\.(\S+)$"
)
_METHOD_BODY = re.compile(r"^method\.request\.body(\.\S+)?$")
_INTEGRATION_REQUEST_KEY = re.compile(r"^integration\.request\.(path|querystring|header)\.\S+$")
_INTEGRATION_RESPONSE_SOURCE = re.compile(
    r"^integration\.response\.((header|multivalueheader)\.\S+|body(\.\S+)?)$"
)
_METHOD_RESPONSE_KEY = re.compile(r"^method\.response\.header\.\S+$")
# A multi-value source reads the parameter the method declares once.
_DECLARED_AS = {"multivaluequerystring": "querystring", "multivalueheader": "header"}


def _mapping_refused(detail: str) -> BadRequestException:
    return BadRequestException(MAPPING_ERROR.format(detail))


def check_request_parameters(method: dict[str, Any], integration: dict[str, Any]) -> None:
    """An integration's `requestParameters` as AWS checks them on PutIntegration: keys
    `integration.request.{path|querystring|header}.NAME`, values mapping expressions, and a method
    request parameter only when the method declares it."""
    declared = method.get("requestParameters") or {}
    for key, source in sorted((integration.get("requestParameters") or {}).items()):
        if not _INTEGRATION_REQUEST_KEY.match(key):
            raise _mapping_refused(f"Invalid mapping expression specified: {key}")
        parameter = _METHOD_PARAMETER.match(source) if isinstance(source, str) else None
        if parameter is not None:
            location = _DECLARED_AS.get(parameter[1], parameter[1])
            if f"method.request.{location}.{parameter[2]}" not in declared:
                raise _mapping_refused(f"Invalid mapping expression parameter specified: {source}")
        elif not isinstance(source, str) or not (
            _STATIC.match(source) or _METHOD_BODY.match(source) or _COMMON_SOURCE.match(source)
        ):
            raise _mapping_refused(f"Invalid mapping expression specified: {source}")


def check_method_response(method: dict[str, Any], response: dict[str, Any]) -> None:
    """A method response's `responseParameters`: keys `method.response.header.NAME`."""
    for key in sorted(response.get("responseParameters") or {}):
        if not _METHOD_RESPONSE_KEY.match(key):
            raise _mapping_refused(f"Invalid mapping expression specified: {key}")


def check_integration_response(method: dict[str, Any], response: dict[str, Any]) -> None:
    """An integration response's `responseParameters` as AWS checks them: the method response of
    its status must exist and declare each header mapped to; values are `'static'`,
    `integration.response.header|multivalueheader.NAME`, `integration.response.body[.JSONPath]`,
    `stageVariables.NAME` or `context.NAME`."""
    parameters = response.get("responseParameters") or {}
    if not parameters:
        return
    method_response = (method.get("methodResponses") or {}).get(response.get("statusCode"))
    if method_response is None:
        raise _mapping_refused("No method response exists for method.")
    declared = method_response.get("responseParameters") or {}
    for key, source in sorted(parameters.items()):
        if key not in declared:
            raise _mapping_refused(f"Invalid mapping expression parameter specified: {key}")
        if not isinstance(source, str) or not (
            _STATIC.match(source)
            or _INTEGRATION_RESPONSE_SOURCE.match(source)
            or _COMMON_SOURCE.match(source)
        ):
            raise _mapping_refused(f"Invalid mapping expression specified: {source}")


def method_key(resource_id: str, http_method: str) -> str:
    return f"{resource_id}/{http_method}"


def check_http_method(http_method: str) -> str:
    verb = http_method.upper()
    if verb not in HTTP_METHODS:
        raise BadRequestException(
            "Invalid HttpMethod specified. Valid options are ANY,DELETE,GET,HEAD,OPTIONS,PATCH,POST,PUT"
        )
    return verb


def check_status(status: str) -> None:
    if not _STATUS.match(status or ""):
        raise BadRequestException(
            f"1 validation error detected: Value '{status}' at 'statusCode' failed to satisfy constraint: "
            "Member must satisfy regular expression pattern: [1-5]\\d\\d"
        )


def load_method(tx, params: dict) -> dict[str, Any]:
    load_resource(tx, params["restApiId"], params["resourceId"])
    method = tx.get(
        SERVICE,
        METHOD_KIND,
        method_key(params["resourceId"], params["httpMethod"]),
        parent=params["restApiId"],
    )
    if method is None:
        raise NotFoundException("Invalid Method identifier specified")
    return method


def save_method(tx, rest_api_id: str, method: dict[str, Any]) -> None:
    tx.put(
        SERVICE,
        METHOD_KIND,
        method_key(method["_resourceId"], method["httpMethod"]),
        method,
        parent=rest_api_id,
    )


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if not k.startswith("_")}


def check_method_refs(tx, rest_api_id: str, method: dict[str, Any]) -> None:
    """Authorizer and validator ids must exist; CUSTOM / COGNITO need an authorizer."""
    auth = method.get("authorizationType")
    if auth in ("CUSTOM", "COGNITO_USER_POOLS") and not method.get("authorizerId"):
        raise BadRequestException(
            "Invalid authorizer ID specified. Setting the authorization type to "
            f"{auth} requires a valid authorizer."
        )
    if (
        method.get("authorizerId")
        and tx.get(SERVICE, "authorizer", method["authorizerId"], parent=rest_api_id) is None
    ):
        raise BadRequestException(
            "Invalid authorizer ID specified. Setting the authorization type to "
            f"{auth} requires a valid authorizer."
        )
    validator = method.get("requestValidatorId")
    if validator and tx.get(SERVICE, "requestvalidator", validator, parent=rest_api_id) is None:
        raise BadRequestException("Invalid Request Validator identifier specified")
    for model in (method.get("requestModels") or {}).values():
        if tx.get(SERVICE, "model", f"{rest_api_id}/{model}", parent=rest_api_id) is None:
            raise BadRequestException(f"Invalid model identifier specified: {model}")


def build_integration(resource_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """An Integration document from PutIntegration-like input (also used by the importer)."""
    kind = params["type"]
    http_method = params.get("integrationHttpMethod")
    if kind in _NEEDS_HTTP_METHOD:
        if not http_method:
            raise BadRequestException("Enumeration value for HttpMethod must be non-empty")
        if not params.get("uri"):
            raise BadRequestException("Invalid HTTP endpoint specified for URI")
    if params.get("connectionType") == "VPC_LINK" and not params.get("connectionId"):
        raise BadRequestException("ConnectionId is required for VPC_LINK connection type")
    integration: dict[str, Any] = {"type": kind}
    if http_method and kind != "MOCK":
        integration["httpMethod"] = http_method.upper()
    copy_given(params, integration, (*INTEGRATION_MEMBERS, "responseTransferMode", "integrationTarget"))
    integration["connectionType"] = params.get("connectionType") or "INTERNET"
    integration["passthroughBehavior"] = params.get("passthroughBehavior") or "WHEN_NO_MATCH"
    integration["timeoutInMillis"] = params.get("timeoutInMillis") or 29000
    if not 50 <= integration["timeoutInMillis"] <= 300000:
        raise BadRequestException("Timeout should be between 50 ms and 29000 ms")
    integration["cacheNamespace"] = params.get("cacheNamespace") or resource_id
    integration["cacheKeyParameters"] = list(params.get("cacheKeyParameters") or [])
    return integration


# -- methods ------------------------------------------------------------------------------------


@operation(SERVICE, "PutMethod")
def put_method(request: AdminRequest, params: dict) -> dict:
    rest_api_id, resource_id = params["restApiId"], params["resourceId"]
    verb = check_http_method(params["httpMethod"])
    with request.store.transaction() as tx:
        load_resource(tx, rest_api_id, resource_id)
        if tx.get(SERVICE, METHOD_KIND, method_key(resource_id, verb), parent=rest_api_id) is not None:
            raise ConflictException("Method already exists for this resource")
        method: dict[str, Any] = {
            "httpMethod": verb,
            "authorizationType": params["authorizationType"],
            "apiKeyRequired": bool(params.get("apiKeyRequired", False)),
        }
        copy_given(
            params,
            method,
            (
                "authorizerId",
                "operationName",
                "requestParameters",
                "requestModels",
                "requestValidatorId",
                "authorizationScopes",
            ),
        )
        check_method_refs(tx, rest_api_id, method)
        method["_resourceId"] = resource_id
        save_method(tx, rest_api_id, method)
    return _public(method)


@operation(SERVICE, "GetMethod")
def get_method(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        return _public(load_method(tx, params))


@operation(SERVICE, "UpdateMethod")
def update_method(request: AdminRequest, params: dict) -> dict:
    with request.store.transaction() as tx:
        method = load_method(tx, params)
        method = apply_request_patch(method, params, "Method", METHOD_PATHS)
        if not method.get("authorizationType"):
            raise BadRequestException("Invalid authorization type specified")
        if method.get("authorizationType") in ("NONE", "AWS_IAM"):
            method.pop("authorizerId", None)
        check_method_refs(tx, params["restApiId"], method)
        save_method(tx, params["restApiId"], method)
    return _public(method)


@operation(SERVICE, "DeleteMethod")
def delete_method(request: AdminRequest, params: dict) -> None:
    with request.store.transaction() as tx:
        method = load_method(tx, params)
        tx.delete(SERVICE, METHOD_KIND, method_key(method["_resourceId"], method["httpMethod"]))


# -- method responses ---------------------------------------------------------------------------
#
# Method and integration responses are both {statusCode: response} maps inside the method document,
# so the `_*_response` helpers serve both: `responses_of` picks the map (`_method_responses` or
# `_integration_responses`, which raises NotFound when the method has no integration).

ResponsesOf = Callable[[dict[str, Any]], dict[str, Any]]
# Checks a response against its method before it is stored (raises BadRequestException).
CheckResponse = Callable[[dict[str, Any], dict[str, Any]], None]


def _method_responses(method: dict[str, Any]) -> dict[str, Any]:
    return method.setdefault("methodResponses", {})


def _response(responses: dict[str, Any], status: str) -> dict[str, Any]:
    response = responses.get(status)
    if response is None:
        raise NotFoundException("Invalid Response status code specified")
    return response


def _put_response(
    request: AdminRequest,
    params: dict,
    responses_of: ResponsesOf,
    members: tuple[str, ...],
    check: CheckResponse,
) -> dict:
    check_status(params["statusCode"])
    with request.store.transaction() as tx:
        method = load_method(tx, params)
        responses = responses_of(method)
        response: dict[str, Any] = {"statusCode": params["statusCode"]}
        copy_given(params, response, members)
        check(method, response)
        responses[params["statusCode"]] = response
        save_method(tx, params["restApiId"], method)
    return response


def _get_response(request: AdminRequest, params: dict, responses_of: ResponsesOf) -> dict:
    with request.store.read() as tx:
        return _response(responses_of(load_method(tx, params)), params["statusCode"])


def _update_response(
    request: AdminRequest,
    params: dict,
    responses_of: ResponsesOf,
    shape_name: str,
    allowed: tuple[str, ...],
    check: CheckResponse,
) -> dict:
    with request.store.transaction() as tx:
        method = load_method(tx, params)
        responses = responses_of(method)
        status = params["statusCode"]
        response = apply_request_patch(_response(responses, status), params, shape_name, allowed)
        check(method, response)
        responses[status] = response
        save_method(tx, params["restApiId"], method)
    return response


def _delete_response(request: AdminRequest, params: dict, responses_of: ResponsesOf) -> None:
    with request.store.transaction() as tx:
        method = load_method(tx, params)
        responses = responses_of(method)
        _response(responses, params["statusCode"])
        del responses[params["statusCode"]]
        save_method(tx, params["restApiId"], method)


@operation(SERVICE, "PutMethodResponse")
def put_method_response(request: AdminRequest, params: dict) -> dict:
    return _put_response(
        request, params, _method_responses, ("responseParameters", "responseModels"), check_method_response
    )


@operation(SERVICE, "GetMethodResponse")
def get_method_response(request: AdminRequest, params: dict) -> dict:
    return _get_response(request, params, _method_responses)


@operation(SERVICE, "UpdateMethodResponse")
def update_method_response(request: AdminRequest, params: dict) -> dict:
    return _update_response(
        request, params, _method_responses, "MethodResponse", METHOD_RESPONSE_PATHS, check_method_response
    )


@operation(SERVICE, "DeleteMethodResponse")
def delete_method_response(request: AdminRequest, params: dict) -> None:
    _delete_response(request, params, _method_responses)


# -- integrations -------------------------------------------------------------------------------


def _integration(method: dict[str, Any]) -> dict[str, Any]:
    integration = method.get("methodIntegration")
    if integration is None:
        raise NotFoundException("Invalid Integration identifier specified")
    return integration


@operation(SERVICE, "PutIntegration")
def put_integration(request: AdminRequest, params: dict) -> dict:
    with request.store.transaction() as tx:
        method = load_method(tx, params)
        integration = build_integration(params["resourceId"], params)
        check_request_parameters(method, integration)
        method["methodIntegration"] = integration
        save_method(tx, params["restApiId"], method)
    return integration


@operation(SERVICE, "GetIntegration")
def get_integration(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        return _integration(load_method(tx, params))


@operation(SERVICE, "UpdateIntegration")
def update_integration(request: AdminRequest, params: dict) -> dict:
    with request.store.transaction() as tx:
        method = load_method(tx, params)
        integration = apply_request_patch(_integration(method), params, "Integration", INTEGRATION_PATHS)
        if integration.get("type") in _NEEDS_HTTP_METHOD and not integration.get("httpMethod"):
            raise BadRequestException("Enumeration value for HttpMethod must be non-empty")
        check_request_parameters(method, integration)
        method["methodIntegration"] = integration
        save_method(tx, params["restApiId"], method)
    return integration


@operation(SERVICE, "DeleteIntegration")
def delete_integration(request: AdminRequest, params: dict) -> None:
    with request.store.transaction() as tx:
        method = load_method(tx, params)
        _integration(method)
        del method["methodIntegration"]
        save_method(tx, params["restApiId"], method)


# -- integration responses ----------------------------------------------------------------------


def _integration_responses(method: dict[str, Any]) -> dict[str, Any]:
    return _integration(method).setdefault("integrationResponses", {})


@operation(SERVICE, "PutIntegrationResponse")
def put_integration_response(request: AdminRequest, params: dict) -> dict:
    members = ("selectionPattern", "responseParameters", "responseTemplates", "contentHandling")
    return _put_response(request, params, _integration_responses, members, check_integration_response)


@operation(SERVICE, "GetIntegrationResponse")
def get_integration_response(request: AdminRequest, params: dict) -> dict:
    return _get_response(request, params, _integration_responses)


@operation(SERVICE, "UpdateIntegrationResponse")
def update_integration_response(request: AdminRequest, params: dict) -> dict:
    return _update_response(
        request,
        params,
        _integration_responses,
        "IntegrationResponse",
        INTEGRATION_RESPONSE_PATHS,
        check_integration_response,
    )


@operation(SERVICE, "DeleteIntegrationResponse")
def delete_integration_response(request: AdminRequest, params: dict) -> None:
    _delete_response(request, params, _integration_responses)
