"""apigatewayv2: models (JSON schemas, used by WebSocket APIs). Documents: kind "model", id
ModelId, parent ApiId, keyed by GetModelResponse members."""

from __future__ import annotations

import json
import re
from typing import Any

from portico.control import ids
from portico.control.apigatewayv2.common import MODEL, SERVICE, changed, load_api, load_child
from portico.control.errors import BadRequestException, ConflictException
from portico.control.registry import AdminRequest, copy_given, operation, paginate

_MEMBERS = ("ContentType", "Description", "Name", "Schema")
_NAME = re.compile(r"^[A-Za-z0-9]+$")


def load_model(tx, api_id: str, model_id: str) -> dict[str, Any]:
    return load_child(tx, MODEL, api_id, model_id, "Model")


def _check(tx, api_id: str, model: dict[str, Any]) -> None:
    if not _NAME.match(model["Name"]):
        raise BadRequestException("Model name must be alphanumeric")
    try:
        schema = json.loads(model["Schema"])
    except ValueError:
        raise BadRequestException("Invalid model schema specified: the schema must be valid JSON") from None
    if not isinstance(schema, dict):
        raise BadRequestException("Invalid model schema specified: the schema must be a JSON object")
    for other in tx.list(SERVICE, MODEL, api_id):
        if other["Name"] == model["Name"] and other["ModelId"] != model["ModelId"]:
            raise ConflictException(f"Model name already exists for this API: {model['Name']}")


@operation(SERVICE, "CreateModel")
def create_model(request: AdminRequest, params: dict) -> dict:
    with request.store.transaction() as tx:
        api = load_api(request, tx, params["ApiId"])
        model: dict[str, Any] = {"ModelId": ids.short_id()}
        copy_given(params, model, _MEMBERS)
        _check(tx, api["ApiId"], model)
        tx.put(SERVICE, MODEL, model["ModelId"], model, parent=api["ApiId"])
        changed(tx, api["ApiId"])
    return model


@operation(SERVICE, "GetModel")
def get_model(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        load_api(request, tx, params["ApiId"])
        return load_model(tx, params["ApiId"], params["ModelId"])


@operation(SERVICE, "GetModels")
def get_models(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        load_api(request, tx, params["ApiId"])
        items = tx.list(SERVICE, MODEL, params["ApiId"])
    page, token = paginate(items, params.get("NextToken"), params.get("MaxResults"), default=100)
    return {"Items": page, "NextToken": token}


@operation(SERVICE, "UpdateModel")
def update_model(request: AdminRequest, params: dict) -> dict:
    api_id = params["ApiId"]
    with request.store.transaction() as tx:
        load_api(request, tx, api_id)
        model = load_model(tx, api_id, params["ModelId"])
        copy_given(params, model, _MEMBERS)
        _check(tx, api_id, model)
        tx.put(SERVICE, MODEL, model["ModelId"], model, parent=api_id)
        changed(tx, api_id)
    return model


@operation(SERVICE, "DeleteModel")
def delete_model(request: AdminRequest, params: dict) -> None:
    api_id = params["ApiId"]
    with request.store.transaction() as tx:
        load_api(request, tx, api_id)
        load_model(tx, api_id, params["ModelId"])
        tx.delete(SERVICE, MODEL, params["ModelId"])
        changed(tx, api_id)


@operation(SERVICE, "GetModelTemplate")
def get_model_template(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        load_api(request, tx, params["ApiId"])
        model = load_model(tx, params["ApiId"], params["ModelId"])
    return {"Value": model_template(json.loads(model["Schema"]))}


def model_template(schema: dict[str, Any]) -> str:
    """A VTL mapping template that produces the schema's shape from `$input`, like AWS generates."""
    lines = ["#set($inputRoot = $input.path('$'))"]
    lines.extend(_template_value(schema, "$inputRoot", 0))
    return "\n".join(lines)


def _template_value(schema: dict[str, Any], ref: str, depth: int) -> list[str]:
    pad = "  " * depth
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        lines = [pad + "{"]
        names = list(properties)
        for index, name in enumerate(names):
            inner = _template_value(properties[name], f"{ref}.{name}", depth + 1)
            inner[0] = f'{pad}  "{name}" : ' + inner[0].lstrip()
            if index < len(names) - 1:
                inner[-1] += ","
            lines.extend(inner)
        lines.append(pad + "}")
        return lines
    if kind == "array":
        items = schema.get("items") or {}
        lines = [pad + "[", f"{pad}#foreach($elem in {ref})"]
        lines.extend(_template_value(items, "$elem", depth + 1))
        lines.extend([f"{pad}#if($foreach.hasNext),#end", f"{pad}#end", pad + "]"])
        return lines
    if kind in ("number", "integer", "boolean"):
        return [pad + ref]
    return [f'{pad}"{ref}"']
