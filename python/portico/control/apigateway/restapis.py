"""apigateway (v1): REST APIs. Documents: service "apigateway", kind "restapi", keyed by the
`RestApi` shape's member names. Creating an API also creates its root resource `/`."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from portico.control import ids
from portico.control.errors import NotFoundException
from portico.control.patch import apply_patch
from portico.control.registry import AdminRequest, copy_given, not_implemented, operation, paginate
from portico.control.wire import get_service

SERVICE = "apigateway"
KIND = "restapi"
RESOURCE_KIND = "resource"

# What UpdateRestApi may patch.
REST_API_PATHS = (
    "/name",
    "/description",
    "/version",
    "/policy",
    "/apiKeySource",
    "/minimumCompressionSize",
    "/disableExecuteApiEndpoint",
    "/binaryMediaTypes/*",
    "/endpointConfiguration/types/*",
    "/endpointConfiguration/ipAddressType",
    "/endpointConfiguration/vpcEndpointIds/*",
)


def load_rest_api(tx, rest_api_id: str) -> dict[str, Any]:
    """The REST API document, or AWS's NotFoundException."""
    api = tx.get(SERVICE, KIND, rest_api_id)
    if api is None:
        raise NotFoundException("Invalid REST API identifier specified")
    return api


def load_rest_api_child(tx, rest_api_id: str, kind: str, child_id: str, not_found: str) -> dict[str, Any]:
    """A REST API's document of `kind`: AWS's NotFoundException for the API first, then
    `not_found` for the document."""
    load_rest_api(tx, rest_api_id)
    doc = tx.get(SERVICE, kind, child_id, parent=rest_api_id)
    if doc is None:
        raise NotFoundException(not_found)
    return doc


def put_rest_api_child(tx, rest_api_id: str, kind: str, doc: dict[str, Any]) -> None:
    """Store a REST API's document of `kind` under its own `id`."""
    tx.put(SERVICE, kind, doc["id"], doc, parent=rest_api_id)


def apply_request_patch(
    doc: dict[str, Any], params: dict, shape_name: str, allowed: Sequence[str] | Mapping[str, Sequence[str]]
) -> dict[str, Any]:
    """A copy of `doc` with the request's `patchOperations` applied (paths checked against
    `allowed`, values typed by the `shape_name` shape): the core of every v1 Update* operation."""
    return apply_patch(doc, params.get("patchOperations"), get_service(SERVICE).shape(shape_name), allowed)


def list_rest_api_children(request: AdminRequest, params: dict, kind: str) -> dict:
    """One page (`limit`/`position`) of a REST API's documents of `kind`: the shape of every v1
    list operation scoped to a REST API."""
    with request.store.read() as tx:
        load_rest_api(tx, params["restApiId"])
        items = tx.list(SERVICE, kind, params["restApiId"])
    page, position = paginate(items, params.get("position"), params.get("limit"))
    return {"items": page, "position": position}


@operation(SERVICE, "CreateRestApi")
def create_rest_api(request: AdminRequest, params: dict) -> dict:
    if params.get("cloneFrom"):
        raise not_implemented("CreateRestApi with cloneFrom")
    api_id, root_id = ids.rest_api_id(), ids.resource_id()
    endpoint = dict(params.get("endpointConfiguration") or {})
    endpoint.setdefault("types", ["EDGE"])
    endpoint.setdefault("ipAddressType", "ipv4")
    api = {
        "id": api_id,
        "name": params["name"],
        "createdDate": int(time.time()),
        "apiKeySource": params.get("apiKeySource", "HEADER"),
        "endpointConfiguration": endpoint,
        "disableExecuteApiEndpoint": params.get("disableExecuteApiEndpoint", False),
        "rootResourceId": root_id,
        "tags": params.get("tags") or {},
    }
    copy_given(
        params, api, ("description", "version", "binaryMediaTypes", "minimumCompressionSize", "policy")
    )
    with request.store.transaction() as tx:
        tx.put(SERVICE, KIND, api_id, api)
        tx.put(SERVICE, RESOURCE_KIND, root_id, {"id": root_id, "path": "/"}, parent=api_id)
        from portico.control.apigateway.models import default_models, put_model

        for model in default_models():
            put_model(tx, api_id, model)
    return api


@operation(SERVICE, "GetRestApi")
def get_rest_api(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        return load_rest_api(tx, params["restApiId"])


@operation(SERVICE, "GetRestApis")
def get_rest_apis(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        apis = tx.list(SERVICE, KIND)
    page, position = paginate(apis, params.get("position"), params.get("limit"))
    return {"items": page, "position": position}


@operation(SERVICE, "UpdateRestApi")
def update_rest_api(request: AdminRequest, params: dict) -> dict:
    with request.store.transaction() as tx:
        api = load_rest_api(tx, params["restApiId"])
        api = apply_request_patch(api, params, "RestApi", REST_API_PATHS)
        tx.put(SERVICE, KIND, api["id"], api)
    return api


@operation(SERVICE, "DeleteRestApi")
def delete_rest_api(request: AdminRequest, params: dict) -> None:
    with request.store.transaction() as tx:
        if not tx.delete(SERVICE, KIND, params["restApiId"]):
            raise NotFoundException("Invalid REST API identifier specified")
        tx.delete_under(SERVICE, params["restApiId"])
