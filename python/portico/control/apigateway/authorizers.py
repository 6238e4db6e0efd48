"""apigateway (v1): authorizers and request validators. Documents: kind "authorizer" and
"requestvalidator", id their ids, parent restApiId, keyed by the `Authorizer` /
`RequestValidator` shapes' member names."""

from __future__ import annotations

from typing import Any

from portico.control import ids
from portico.control.apigateway.common import (
    METHOD_KIND,
    RESOURCE_KIND,
    SERVICE,
    apply_request_patch,
    list_rest_api_children,
    load_rest_api,
    load_rest_api_child,
    put_rest_api_child,
)
from portico.control.errors import BadRequestException, ConflictException
from portico.control.registry import AdminRequest, copy_given, operation

AUTHORIZER_KIND = "authorizer"
VALIDATOR_KIND = "requestvalidator"
AUTHORIZER_PATHS = (
    "/name",
    "/type",
    "/authType",
    "/authorizerUri",
    "/authorizerCredentials",
    "/identitySource",
    "/identityValidationExpression",
    "/authorizerResultTtlInSeconds",
    "/providerARNs",
    "/providerARNs/*",
)
VALIDATOR_PATHS = ("/name", "/validateRequestBody", "/validateRequestParameters")


def check_authorizer(authorizer: dict[str, Any]) -> None:
    """The members each authorizer type needs."""
    kind = authorizer.get("type")
    if kind in ("TOKEN", "REQUEST") and not authorizer.get("authorizerUri"):
        raise BadRequestException(f"Authorizer URI is required for authorizer type {kind}")
    if kind == "TOKEN" and not authorizer.get("identitySource"):
        raise BadRequestException("Identity source is required for authorizer type TOKEN")
    if (
        kind == "REQUEST"
        and authorizer.get("authorizerResultTtlInSeconds", 300) > 0
        and not authorizer.get("identitySource")
    ):
        raise BadRequestException(
            "Identity source is required for authorizer type REQUEST when authorizer caching is enabled"
        )
    if kind == "COGNITO_USER_POOLS":
        if not authorizer.get("providerARNs"):
            raise BadRequestException("Provider ARNs are required for authorizer type COGNITO_USER_POOLS")
        if not authorizer.get("identitySource"):
            raise BadRequestException("Identity source is required for authorizer type COGNITO_USER_POOLS")
    ttl = authorizer.get("authorizerResultTtlInSeconds", 300)
    if not 0 <= ttl <= 3600:
        raise BadRequestException("Authorizer result TTL must be between 0 and 3600 seconds")


def load_authorizer(tx, rest_api_id: str, authorizer_id: str) -> dict[str, Any]:
    return load_rest_api_child(
        tx, rest_api_id, AUTHORIZER_KIND, authorizer_id, "Invalid Authorizer identifier specified"
    )


def _referencing_method(tx, rest_api_id: str, member: str, value: str) -> str | None:
    """`METHOD /path` of a method whose `member` is `value`, or None."""
    paths = {r["id"]: r["path"] for r in tx.list(SERVICE, RESOURCE_KIND, rest_api_id)}
    for method in tx.list(SERVICE, METHOD_KIND, rest_api_id):
        if method.get(member) == value:
            return f"{method['httpMethod']}{paths.get(method.get('_resourceId'), '')}"
    return None


@operation(SERVICE, "CreateAuthorizer")
def create_authorizer(request: AdminRequest, params: dict) -> dict:
    authorizer: dict[str, Any] = {"id": ids.random_id(6)}
    copy_given(
        params,
        authorizer,
        (
            "name",
            "type",
            "providerARNs",
            "authType",
            "authorizerUri",
            "authorizerCredentials",
            "identitySource",
            "identityValidationExpression",
        ),
    )
    authorizer["authorizerResultTtlInSeconds"] = params.get("authorizerResultTtlInSeconds", 300)
    check_authorizer(authorizer)
    with request.store.transaction() as tx:
        load_rest_api(tx, params["restApiId"])
        put_rest_api_child(tx, params["restApiId"], AUTHORIZER_KIND, authorizer)
    return authorizer


@operation(SERVICE, "GetAuthorizer")
def get_authorizer(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        return load_authorizer(tx, params["restApiId"], params["authorizerId"])


@operation(SERVICE, "GetAuthorizers")
def get_authorizers(request: AdminRequest, params: dict) -> dict:
    return list_rest_api_children(request, params, AUTHORIZER_KIND)


@operation(SERVICE, "UpdateAuthorizer")
def update_authorizer(request: AdminRequest, params: dict) -> dict:
    with request.store.transaction() as tx:
        authorizer = load_authorizer(tx, params["restApiId"], params["authorizerId"])
        authorizer = apply_request_patch(authorizer, params, "Authorizer", AUTHORIZER_PATHS)
        check_authorizer(authorizer)
        put_rest_api_child(tx, params["restApiId"], AUTHORIZER_KIND, authorizer)
    return authorizer


@operation(SERVICE, "DeleteAuthorizer")
def delete_authorizer(request: AdminRequest, params: dict) -> None:
    with request.store.transaction() as tx:
        authorizer = load_authorizer(tx, params["restApiId"], params["authorizerId"])
        used = _referencing_method(tx, params["restApiId"], "authorizerId", authorizer["id"])
        if used:
            raise ConflictException(
                f"Cannot delete authorizer '{authorizer.get('name')}', is referenced in method: {used}"
            )
        tx.delete(SERVICE, AUTHORIZER_KIND, authorizer["id"])


# -- request validators -------------------------------------------------------------------------


def load_validator(tx, rest_api_id: str, validator_id: str) -> dict[str, Any]:
    return load_rest_api_child(
        tx, rest_api_id, VALIDATOR_KIND, validator_id, "Invalid Request Validator identifier specified"
    )


def new_validator(params: dict[str, Any]) -> dict[str, Any]:
    validator = {
        "id": ids.random_id(6),
        "validateRequestBody": bool(params.get("validateRequestBody", False)),
        "validateRequestParameters": bool(params.get("validateRequestParameters", False)),
    }
    if params.get("name") is not None:
        validator["name"] = params["name"]
    return validator


@operation(SERVICE, "CreateRequestValidator")
def create_request_validator(request: AdminRequest, params: dict) -> dict:
    validator = new_validator(params)
    with request.store.transaction() as tx:
        load_rest_api(tx, params["restApiId"])
        put_rest_api_child(tx, params["restApiId"], VALIDATOR_KIND, validator)
    return validator


@operation(SERVICE, "GetRequestValidator")
def get_request_validator(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        return load_validator(tx, params["restApiId"], params["requestValidatorId"])


@operation(SERVICE, "GetRequestValidators")
def get_request_validators(request: AdminRequest, params: dict) -> dict:
    return list_rest_api_children(request, params, VALIDATOR_KIND)


@operation(SERVICE, "UpdateRequestValidator")
def update_request_validator(request: AdminRequest, params: dict) -> dict:
    with request.store.transaction() as tx:
        validator = load_validator(tx, params["restApiId"], params["requestValidatorId"])
        validator = apply_request_patch(validator, params, "RequestValidator", VALIDATOR_PATHS)
        put_rest_api_child(tx, params["restApiId"], VALIDATOR_KIND, validator)
    return validator


@operation(SERVICE, "DeleteRequestValidator")
def delete_request_validator(request: AdminRequest, params: dict) -> None:
    with request.store.transaction() as tx:
        validator = load_validator(tx, params["restApiId"], params["requestValidatorId"])
        used = _referencing_method(tx, params["restApiId"], "requestValidatorId", validator["id"])
        if used:
            raise ConflictException(
                f"Cannot delete request validator '{validator.get('name')}', is referenced in method: {used}"
            )
        tx.delete(SERVICE, VALIDATOR_KIND, validator["id"])
