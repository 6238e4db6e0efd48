"""apigateway (v1): REST APIs. Documents: service "apigateway", kind "restapi", keyed by the
`RestApi` shape's member names. Creating an API also creates its root resource `/`."""

from __future__ import annotations

import time

from portico.control import ids
from portico.control.apigateway.common import (
    RESOURCE_KIND,
    REST_API_KIND,
    SERVICE,
    apply_request_patch,
    default_models,
    load_rest_api,
    put_model,
)
from portico.control.errors import NotFoundException
from portico.control.registry import AdminRequest, copy_given, not_implemented, operation, paginate

KIND = REST_API_KIND

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
