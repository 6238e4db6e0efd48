"""apigateway (v1): models. Documents: kind "model", id f"{restApiId}/{name}", parent restApiId,
the `Model` shape's members (`schema` is a JSON string). Every REST API starts with AWS's
`Empty` and `Error` models."""

from __future__ import annotations

import json
import re
from typing import Any

from portico.control import ids
from portico.control.apigateway.common import (
    METHOD_KIND,
    MODEL_KIND,
    RESOURCE_KIND,
    SERVICE,
    apply_request_patch,
    list_rest_api_children,
    load_rest_api,
    load_rest_api_child,
    model_key,
    put_model,
)
from portico.control.errors import BadRequestException, ConflictException
from portico.control.registry import AdminRequest, copy_given, operation

KIND = MODEL_KIND
_NAME = re.compile(r"^[A-Za-z0-9]+$")
MODEL_PATHS = ("/schema", "/description")


def check_schema(schema: str | None, strict: bool = True) -> None:
    if schema is None:
        return
    try:
        parsed = json.loads(schema)
    except ValueError:
        raise BadRequestException(
            "Invalid model specified: Validation Result: warnings : [], "
            "errors : [Invalid model schema specified]"
        ) from None
    if not isinstance(parsed, dict):
        raise BadRequestException("Invalid model schema specified")
    structural = ("properties", "items", "$ref", "allOf", "anyOf", "oneOf", "enum")
    if strict and parsed.get("type") in ("object", "array") and not any(k in parsed for k in structural):
        raise BadRequestException("Model schema must have at least 1 property or array items defined")


def load_model(tx, rest_api_id: str, name: str) -> dict[str, Any]:
    return load_rest_api_child(
        tx, rest_api_id, KIND, model_key(rest_api_id, name), f"Invalid model name specified: {name}"
    )


@operation(SERVICE, "CreateModel")
def create_model(request: AdminRequest, params: dict) -> dict:
    name = params["name"]
    if not _NAME.match(name):
        raise BadRequestException("Model name must be alphanumeric")
    check_schema(params.get("schema"))
    model = {"id": ids.random_id(6), "name": name, "contentType": params["contentType"]}
    copy_given(params, model, ("schema", "description"))
    with request.store.transaction() as tx:
        load_rest_api(tx, params["restApiId"])
        if tx.get(SERVICE, KIND, model_key(params["restApiId"], name)) is not None:
            raise ConflictException("Model name already exists for this REST API")
        put_model(tx, params["restApiId"], model)
    return model


@operation(SERVICE, "GetModel")
def get_model(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        return load_model(tx, params["restApiId"], params["modelName"])


@operation(SERVICE, "GetModels")
def get_models(request: AdminRequest, params: dict) -> dict:
    return list_rest_api_children(request, params, KIND)


@operation(SERVICE, "UpdateModel")
def update_model(request: AdminRequest, params: dict) -> dict:
    with request.store.transaction() as tx:
        model = load_model(tx, params["restApiId"], params["modelName"])
        model = apply_request_patch(model, params, "Model", {"replace": MODEL_PATHS})
        check_schema(model.get("schema"))
        put_model(tx, params["restApiId"], model)
    return model


@operation(SERVICE, "DeleteModel")
def delete_model(request: AdminRequest, params: dict) -> None:
    rest_api_id = params["restApiId"]
    with request.store.transaction() as tx:
        model = load_model(tx, rest_api_id, params["modelName"])
        paths = {r["id"]: r["path"] for r in tx.list(SERVICE, RESOURCE_KIND, rest_api_id)}
        for method in tx.list(SERVICE, METHOD_KIND, rest_api_id):
            used = model["name"] in (method.get("requestModels") or {}).values() or any(
                model["name"] in (r.get("responseModels") or {}).values()
                for r in (method.get("methodResponses") or {}).values()
            )
            if used:
                where = f"{paths.get(method.get('_resourceId'), '')}/{method['httpMethod']}"
                raise BadRequestException(
                    f"Cannot delete model '{model['name']}', is referenced in method: {where}"
                )
        tx.delete(SERVICE, KIND, model_key(rest_api_id, model["name"]))
