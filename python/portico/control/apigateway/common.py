"""apigateway (v1): what the handler modules share (the REST API document, its children, the
default models), so that `restapis` and `models` need not import each other.

Documents (service "apigateway"): kind "restapi" keyed by the REST API's id; a REST API's
resources, methods, models, stages, ... are stored with parent = restApiId. Creating a REST API
also creates AWS's default `Empty` and `Error` models, hence `default_models` and `put_model` here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from portico.control import ids
from portico.control.errors import NotFoundException
from portico.control.patch import apply_patch
from portico.control.registry import AdminRequest, paginate
from portico.control.wire import get_service

SERVICE = "apigateway"
REST_API_KIND = "restapi"
RESOURCE_KIND = "resource"
METHOD_KIND = "method"
MODEL_KIND = "model"

EMPTY_SCHEMA = '{"$schema":"http://json-schema.org/draft-04/schema#","title":"Empty Schema","type":"object"}'
ERROR_SCHEMA = (
    '{\n  "$schema" : "http://json-schema.org/draft-04/schema#",\n  "title" : "Error Schema",\n'
    '  "type" : "object",\n  "properties" : {\n    "message" : { "type" : "string" }\n  }\n}'
)


def load_rest_api(tx, rest_api_id: str) -> dict[str, Any]:
    """The REST API document, or AWS's NotFoundException."""
    api = tx.get(SERVICE, REST_API_KIND, rest_api_id)
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


def model_key(rest_api_id: str, name: str) -> str:
    return f"{rest_api_id}/{name}"


def default_models() -> list[dict[str, Any]]:
    return [
        {
            "id": ids.random_id(6),
            "name": "Empty",
            "description": "This is a default empty schema model",
            "schema": EMPTY_SCHEMA,
            "contentType": "application/json",
        },
        {
            "id": ids.random_id(6),
            "name": "Error",
            "description": "This is a default error schema model",
            "schema": ERROR_SCHEMA,
            "contentType": "application/json",
        },
    ]


def put_model(tx, rest_api_id: str, model: dict[str, Any]) -> None:
    tx.put(SERVICE, MODEL_KIND, model_key(rest_api_id, model["name"]), model, parent=rest_api_id)
