"""apigateway (v1): resources (the path tree of a REST API). Documents: service "apigateway",
kind "resource", parent = restApiId, keyed by the `Resource` shape's member names (methods are
stored separately, kind "method", and embedded on read)."""

from __future__ import annotations

import re
from typing import Any

from portico.control import ids
from portico.control.apigateway.common import (
    METHOD_KIND,
    RESOURCE_KIND,
    SERVICE,
    apply_request_patch,
    load_rest_api,
    load_rest_api_child,
)
from portico.control.errors import BadRequestException, ConflictException
from portico.control.registry import AdminRequest, operation, paginate

_PATH_PART = re.compile(r"^(\{[A-Za-z0-9._-]+\+?\}|[A-Za-z0-9._:@&=+$,~!*'()-]+)$")
_RESOURCE_PATHS = ("/parentId", "/pathPart")


def load_resource(tx, rest_api_id: str, resource_id: str) -> dict[str, Any]:
    return load_rest_api_child(
        tx, rest_api_id, RESOURCE_KIND, resource_id, "Invalid Resource identifier specified"
    )


def is_variable(path_part: str | None) -> bool:
    return bool(path_part) and path_part.startswith("{") and path_part.endswith("}")


def is_greedy(path_part: str | None) -> bool:
    return is_variable(path_part) and path_part.endswith("+}")


def child_path(parent_path: str, path_part: str) -> str:
    return parent_path.rstrip("/") + "/" + path_part


def methods_by_resource(tx, rest_api_id: str) -> dict[str, dict[str, dict[str, Any]]]:
    """{resourceId: {HTTP_METHOD: method doc}} of a REST API."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for method in tx.list(SERVICE, METHOD_KIND, rest_api_id):
        resource_id = method.get("_resourceId")
        if resource_id:
            out.setdefault(resource_id, {})[method["httpMethod"]] = method
    return out


def with_methods(resource: dict[str, Any], methods: dict[str, dict[str, Any]] | None, embed: bool) -> dict:
    """The resource as AWS answers it: `resourceMethods` holds the full methods when embedded,
    else only the verbs (`{"GET": {}}`)."""
    out = dict(resource)
    if methods:
        out["resourceMethods"] = {verb: (doc if embed else {}) for verb, doc in sorted(methods.items())}
    return out


def check_placement(siblings: list[dict[str, Any]], parent: dict[str, Any], path_part: str) -> None:
    """AWS's rules for a new child `path_part` of `parent` (siblings exclude the resource itself)."""
    if is_greedy(parent.get("pathPart")):
        raise BadRequestException(
            f"Cannot create a child of a resource with a greedy path variable: {parent['pathPart']}"
        )
    for sibling in siblings:
        if sibling.get("pathPart") == path_part:
            raise ConflictException(
                f"Another resource with the same parent already has this name: {path_part}"
            )
    if is_variable(path_part):
        for sibling in siblings:
            if is_variable(sibling.get("pathPart")):
                raise BadRequestException(
                    f"A sibling ({sibling['pathPart']}) of this resource already has a variable path part "
                    "-- only one is allowed"
                )


def check_path_part(path_part: str) -> None:
    if not _PATH_PART.match(path_part or ""):
        raise BadRequestException(
            "Resource's path part only allow a-zA-Z0-9._- and curly braces at the beginning and the end "
            "and an optional plus sign before the closing brace."
        )


def add_resource(tx, rest_api_id: str, parent: dict[str, Any], path_part: str) -> dict[str, Any]:
    """Create a resource in an open transaction (shared with the OpenAPI importer)."""
    check_path_part(path_part)
    siblings = [r for r in tx.list(SERVICE, RESOURCE_KIND, rest_api_id) if r.get("parentId") == parent["id"]]
    check_placement(siblings, parent, path_part)
    resource_id = ids.resource_id()
    resource = {
        "id": resource_id,
        "parentId": parent["id"],
        "pathPart": path_part,
        "path": child_path(parent["path"], path_part),
    }
    tx.put(SERVICE, RESOURCE_KIND, resource_id, resource, parent=rest_api_id)
    return resource


def descendants(resources: list[dict[str, Any]], root_id: str) -> list[dict[str, Any]]:
    """Every resource below `root_id` (not itself), parents before children."""
    children: dict[str, list[dict[str, Any]]] = {}
    for resource in resources:
        if resource.get("parentId"):
            children.setdefault(resource["parentId"], []).append(resource)
    out, stack = [], list(reversed(children.get(root_id, [])))
    while stack:
        resource = stack.pop()
        out.append(resource)
        stack.extend(reversed(children.get(resource["id"], [])))
    return out


def delete_resource_tree(tx, rest_api_id: str, resource: dict[str, Any]) -> None:
    resources = tx.list(SERVICE, RESOURCE_KIND, rest_api_id)
    doomed = [resource, *descendants(resources, resource["id"])]
    methods = methods_by_resource(tx, rest_api_id)
    for item in doomed:
        for verb in methods.get(item["id"], {}):
            tx.delete(SERVICE, METHOD_KIND, f"{item['id']}/{verb}")
        tx.delete(SERVICE, RESOURCE_KIND, item["id"])


@operation(SERVICE, "CreateResource")
def create_resource(request: AdminRequest, params: dict) -> dict:
    rest_api_id, path_part = params["restApiId"], params["pathPart"]
    check_path_part(path_part)
    with request.store.transaction() as tx:
        parent = load_resource(tx, rest_api_id, params["parentId"])
        return add_resource(tx, rest_api_id, parent, path_part)


@operation(SERVICE, "GetResource")
def get_resource(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        resource = load_resource(tx, params["restApiId"], params["resourceId"])
        methods = methods_by_resource(tx, params["restApiId"]).get(resource["id"])
    return with_methods(resource, methods, embed=True)


def _embeds_methods(params: dict) -> bool:
    return any("methods" in item.split(",") for item in params.get("embed") or ())


@operation(SERVICE, "GetResources")
def get_resources(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        load_rest_api(tx, params["restApiId"])
        resources = tx.list(SERVICE, RESOURCE_KIND, params["restApiId"])
        methods = methods_by_resource(tx, params["restApiId"])
    page, position = paginate(resources, params.get("position"), params.get("limit"))
    embed = _embeds_methods(params)
    return {"items": [with_methods(r, methods.get(r["id"]), embed) for r in page], "position": position}


@operation(SERVICE, "UpdateResource")
def update_resource(request: AdminRequest, params: dict) -> dict:
    rest_api_id = params["restApiId"]
    with request.store.transaction() as tx:
        resource = load_resource(tx, rest_api_id, params["resourceId"])
        patched = apply_request_patch(resource, params, "Resource", {"replace": _RESOURCE_PATHS})
        if not resource.get("parentId"):
            if patched != resource:
                raise BadRequestException("Root resource cannot be modified")
            return resource
        if not patched.get("parentId") or not patched.get("pathPart"):
            raise BadRequestException("Invalid patch value: parentId and pathPart cannot be empty")
        check_path_part(patched["pathPart"])
        resources = tx.list(SERVICE, RESOURCE_KIND, rest_api_id)
        below = descendants(resources, resource["id"])
        if patched["parentId"] == resource["id"] or patched["parentId"] in {r["id"] for r in below}:
            raise BadRequestException("Resource cannot be moved under itself or one of its children")
        parent = load_resource(tx, rest_api_id, patched["parentId"])
        siblings = [r for r in resources if r.get("parentId") == parent["id"] and r["id"] != resource["id"]]
        check_placement(siblings, parent, patched["pathPart"])
        if is_greedy(patched["pathPart"]) and any(r.get("parentId") == resource["id"] for r in resources):
            raise BadRequestException(
                f"Cannot create a child of a resource with a greedy path variable: {patched['pathPart']}"
            )
        patched["path"] = child_path(parent["path"], patched["pathPart"])
        tx.put(SERVICE, RESOURCE_KIND, patched["id"], patched, parent=rest_api_id)
        paths = {patched["id"]: patched["path"]}
        for child in below:  # parents come before children
            child["path"] = child_path(paths[child["parentId"]], child["pathPart"])
            paths[child["id"]] = child["path"]
            tx.put(SERVICE, RESOURCE_KIND, child["id"], child, parent=rest_api_id)
        methods = methods_by_resource(tx, rest_api_id).get(patched["id"])
    return with_methods(patched, methods, embed=True)


@operation(SERVICE, "DeleteResource")
def delete_resource(request: AdminRequest, params: dict) -> None:
    rest_api_id = params["restApiId"]
    with request.store.transaction() as tx:
        resource = load_resource(tx, rest_api_id, params["resourceId"])
        if not resource.get("parentId"):
            raise BadRequestException("Cannot delete the root resource")
        delete_resource_tree(tx, rest_api_id, resource)
