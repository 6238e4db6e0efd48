"""apigateway (v1): resources (the path tree of a REST API). Documents: service "apigateway",
kind "resource", parent = restApiId, keyed by the `Resource` shape's member names."""

from __future__ import annotations

import re
from typing import Any

from portico.control import ids
from portico.control.errors import BadRequestException, ConflictException, NotFoundException
from portico.control.registry import AdminRequest, operation, paginate
from portico.control.v1_restapis import RESOURCE_KIND, SERVICE, load_rest_api

_PATH_PART = re.compile(r"^(\{[A-Za-z0-9._-]+\+?\}|[A-Za-z0-9._:@&=+$,~!*'()-]+)$")


def load_resource(tx, rest_api_id: str, resource_id: str) -> dict[str, Any]:
    load_rest_api(tx, rest_api_id)
    resource = tx.get(SERVICE, RESOURCE_KIND, resource_id, parent=rest_api_id)
    if resource is None:
        raise NotFoundException("Invalid Resource identifier specified")
    return resource


@operation(SERVICE, "CreateResource")
def create_resource(request: AdminRequest, params: dict) -> dict:
    rest_api_id, path_part = params["restApiId"], params["pathPart"]
    if not _PATH_PART.match(path_part):
        raise BadRequestException(
            "Resource's path part only allow a-zA-Z0-9._- and curly braces at the beginning and the end "
            "and an optional plus sign before the closing brace."
        )
    with request.store.transaction() as tx:
        parent = load_resource(tx, rest_api_id, params["parentId"])
        siblings = [
            r for r in tx.list(SERVICE, RESOURCE_KIND, rest_api_id) if r.get("parentId") == parent["id"]
        ]
        if any(r.get("pathPart") == path_part for r in siblings):
            raise ConflictException(
                f"Another resource with the same parent already has this name: {path_part}"
            )
        resource_id = ids.resource_id()
        resource = {
            "id": resource_id,
            "parentId": parent["id"],
            "pathPart": path_part,
            "path": parent["path"].rstrip("/") + "/" + path_part,
        }
        tx.put(SERVICE, RESOURCE_KIND, resource_id, resource, parent=rest_api_id)
    return resource


@operation(SERVICE, "GetResource")
def get_resource(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        return load_resource(tx, params["restApiId"], params["resourceId"])


@operation(SERVICE, "GetResources")
def get_resources(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        load_rest_api(tx, params["restApiId"])
        resources = tx.list(SERVICE, RESOURCE_KIND, params["restApiId"])
    page, position = paginate(resources, params.get("position"), params.get("limit"))
    return {"items": page, "position": position}
