"""apigateway (v1): OpenAPI import (ImportRestApi, PutRestApi) and export (GetExport).

OpenAPI 2.0 (swagger) and 3.0, JSON or YAML. Import writes the records of the document's one
reading (`portico.openapi_rest_reader`) as the API's resources, methods, integrations, models,
authorizers, request validators, gateway responses and members; any problem the reader finds
refuses the import. Export renders a stage's deployed snapshot back into the same form."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import yaml

from portico.control import ids
from portico.control.apigateway.authorizers import (
    AUTHORIZER_KIND,
    VALIDATOR_KIND,
    check_authorizer,
    new_validator,
)
from portico.control.apigateway.common import (
    METHOD_KIND,
    MODEL_KIND,
    RESOURCE_KIND,
    SERVICE,
    default_models,
    load_rest_api,
    model_key,
    put_model,
    put_rest_api_child,
)
from portico.control.apigateway.common import REST_API_KIND as API_KIND
from portico.control.apigateway.deployments import load_deployment
from portico.control.apigateway.gateway_responses import (
    KIND as GATEWAY_KIND,
)
from portico.control.apigateway.gateway_responses import (
    gateway_response_key,
    new_gateway_response,
)
from portico.control.apigateway.methods import build_integration, method_key, save_method
from portico.control.apigateway.resources import add_resource
from portico.control.apigateway.stages import load_stage
from portico.control.errors import BadRequestException, NotFoundException
from portico.control.registry import AdminRequest, copy_given, operation
from portico.openapi_rest_reader import (
    ANY_METHOD,
    EXTENSION_AUTHORIZER_MEMBERS,
    EXTENSION_INTEGRATION_MEMBERS,
    X_INTEGRATION,
    Integration,
    Operation,
    RestDocument,
    model_schema,
    read_document,
)

INVALID = "Invalid OpenAPI input."
_INTEGRATION_RESPONSE_MEMBERS = (
    "selectionPattern",
    "responseParameters",
    "responseTemplates",
    "contentHandling",
)
MODEL_URI_PREFIX = "https://apigateway.amazonaws.com/restapis/{}/models/"


# -- parsing ------------------------------------------------------------------------------------


def parse_document(body: bytes | str) -> dict[str, Any]:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        spec = json.loads(text)
    except ValueError:
        try:
            spec = yaml.safe_load(text)
        except yaml.YAMLError:
            raise BadRequestException(INVALID) from None
    if not isinstance(spec, dict):
        raise BadRequestException(INVALID)
    version = str(spec.get("swagger") or spec.get("openapi") or "")
    if not (version == "2.0" or version.startswith("3.")):
        raise BadRequestException(INVALID)
    return spec


def read_spec(tx, rest_api_id: str, spec: dict[str, Any]) -> RestDocument:
    """The document's records; any problem in it refuses the whole import, as AWS's does."""
    stored = {v["name"] for v in tx.list(SERVICE, VALIDATOR_KIND, rest_api_id) if v.get("name")}
    document = read_document(spec, stored)
    if document.problems:
        raise BadRequestException(INVALID)
    return document


def exported_model_schema(schema: Any, rest_api_id: str, ref_root: str) -> Any:
    """A model as a definition: references to the API's models point into the document again."""
    prefix = MODEL_URI_PREFIX.format(rest_api_id)

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                key: ref_root + value[len(prefix) :]
                if key == "$ref" and isinstance(value, str) and value.startswith(prefix)
                else rewrite(value)
                for key, value in node.items()
            }
        return [rewrite(item) for item in node] if isinstance(node, list) else node

    return rewrite(schema)


# -- import -------------------------------------------------------------------------------------


def _import_integration(resource_id: str, read: Integration) -> dict[str, Any]:
    params = {name: value for name, value in read.members.items() if name != "httpMethod"}
    if params.get("type") not in ("HTTP", "AWS", "MOCK", "HTTP_PROXY", "AWS_PROXY"):
        raise BadRequestException(INVALID)
    params["integrationHttpMethod"] = read.members.get("httpMethod")
    integration = build_integration(resource_id, params)
    for status, response in read.responses.items():
        stored = integration.setdefault("integrationResponses", {})[status] = {"statusCode": status}
        copy_given(response, stored, _INTEGRATION_RESPONSE_MEMBERS)
    return integration


def _import_method(
    tx, rest_api_id: str, resource_id: str, op: Operation, ids_by_name: dict[str, dict[str, str]]
) -> None:
    method: dict[str, Any] = {"httpMethod": op.verb, "authorizationType": "NONE", "apiKeyRequired": False}
    method.update(op.method)
    # The document names validators and authorizers; the stored method refers to their ids.
    for member in ("requestValidatorId", "authorizerId"):
        if member in method:
            method[member] = ids_by_name[member][method[member]]
    if "methodResponses" in method:
        method["methodResponses"] = {s: {"statusCode": s, **r} for s, r in method["methodResponses"].items()}
    if op.integration is not None:
        method["methodIntegration"] = _import_integration(resource_id, op.integration)
    method["_resourceId"] = resource_id
    save_method(tx, rest_api_id, method)


def _ensure_resource(tx, rest_api_id: str, by_path: dict[str, dict[str, Any]], path: str) -> dict[str, Any]:
    path = "/" + path.strip("/")
    if path in by_path:
        return by_path[path]
    parent_path = path.rsplit("/", 1)[0] or "/"
    parent = _ensure_resource(tx, rest_api_id, by_path, parent_path)
    resource = add_resource(tx, rest_api_id, parent, path.rsplit("/", 1)[1])
    by_path[path] = resource
    return resource


def build_from_spec(tx, rest_api_id: str, document: RestDocument) -> None:
    """Create everything `document` describes under an existing REST API (merge semantics)."""
    validators = {v["name"]: v["id"] for v in tx.list(SERVICE, VALIDATOR_KIND, rest_api_id) if v.get("name")}
    for name, body in document.validators.items():
        if name not in validators:
            validator = new_validator({"name": name, **body})
            put_rest_api_child(tx, rest_api_id, VALIDATOR_KIND, validator)
            validators[name] = validator["id"]
    existing_authorizers = {a.get("name"): a for a in tx.list(SERVICE, AUTHORIZER_KIND, rest_api_id)}
    authorizers: dict[str, str] = {}
    for name, read in document.authorizers.items():
        authorizer = existing_authorizers.get(name) or {"id": ids.random_id(6), "name": name}
        authorizer.update(read.members)
        authorizer["authorizerResultTtlInSeconds"] = int(
            read.members.get("authorizerResultTtlInSeconds", 300)
        )
        check_authorizer(authorizer)
        put_rest_api_child(tx, rest_api_id, AUTHORIZER_KIND, authorizer)
        authorizers[name] = authorizer["id"]
    # A reference to another definition names that model by its URI, as AWS stores it.
    model_uri = MODEL_URI_PREFIX.format(rest_api_id)
    for name, read_model in document.models.items():
        current = tx.get(SERVICE, MODEL_KIND, model_key(rest_api_id, name))
        model = {
            "id": (current or {}).get("id") or ids.random_id(6),
            "name": name,
            "contentType": "application/json",
            "schema": json.dumps(model_schema(read_model.schema, lambda ref: model_uri + ref)),
        }
        if read_model.description:
            model["description"] = read_model.description
        put_model(tx, rest_api_id, model)
    for response_type, body in document.gateway_responses.items():
        doc = new_gateway_response(
            response_type,
            {
                "statusCode": str(body["statusCode"]) if body.get("statusCode") is not None else None,
                "responseParameters": body.get("responseParameters"),
                "responseTemplates": body.get("responseTemplates"),
            },
        )
        tx.put(
            SERVICE, GATEWAY_KIND, gateway_response_key(rest_api_id, response_type), doc, parent=rest_api_id
        )
    by_path = {r["path"]: r for r in tx.list(SERVICE, RESOURCE_KIND, rest_api_id)}
    for path in sorted(document.paths):
        _ensure_resource(tx, rest_api_id, by_path, path)
    ids_by_name = {"requestValidatorId": validators, "authorizerId": authorizers}
    for op in document.operations:
        _import_method(tx, rest_api_id, by_path["/" + op.path.strip("/")]["id"], op, ids_by_name)


def _api_fields(document: RestDocument) -> dict[str, Any]:
    fields = dict(document.api_members)
    if "binaryMediaTypes" in fields:
        fields["binaryMediaTypes"] = list(fields["binaryMediaTypes"])
    if "minimumCompressionSize" in fields:
        fields["minimumCompressionSize"] = int(fields["minimumCompressionSize"])
    if "policy" in fields and not isinstance(fields["policy"], str):
        fields["policy"] = json.dumps(fields["policy"])  # stored as its JSON text, as AWS's is
    return fields


def _wrap(builder):
    """Malformed documents surface as AWS's BadRequest, not a 500."""
    try:
        return builder()
    except (KeyError, TypeError, AttributeError, ValueError):
        raise BadRequestException(INVALID) from None


@operation(SERVICE, "ImportRestApi")
def import_rest_api(request: AdminRequest, params: dict) -> dict:
    spec = parse_document(params["body"])
    api_id, root_id = ids.rest_api_id(), ids.resource_id()
    types = (params.get("parameters") or {}).get("endpointConfigurationTypes", "EDGE")
    api = {
        "id": api_id,
        "createdDate": int(time.time()),
        "apiKeySource": "HEADER",
        "endpointConfiguration": {"types": [types.upper()], "ipAddressType": "ipv4"},
        "disableExecuteApiEndpoint": False,
        "rootResourceId": root_id,
        "tags": {},
    }
    with request.store.transaction() as tx:
        document = read_spec(tx, api_id, spec)
        api.update(_wrap(lambda: _api_fields(document)))
        tx.put(SERVICE, API_KIND, api_id, api)
        tx.put(SERVICE, RESOURCE_KIND, root_id, {"id": root_id, "path": "/"}, parent=api_id)
        for model in default_models():
            put_model(tx, api_id, model)
        _wrap(lambda: build_from_spec(tx, api_id, document))
    return api


@operation(SERVICE, "PutRestApi")
def put_rest_api(request: AdminRequest, params: dict) -> dict:
    spec = parse_document(params["body"])
    rest_api_id = params["restApiId"]
    mode = params.get("mode") or "merge"
    if mode not in ("merge", "overwrite"):
        raise BadRequestException(f"Invalid mode specified: {mode}")
    with request.store.transaction() as tx:
        api = load_rest_api(tx, rest_api_id)
        if mode == "overwrite":
            for kind in (METHOD_KIND, AUTHORIZER_KIND, VALIDATOR_KIND, GATEWAY_KIND, MODEL_KIND):
                for doc_id in _ids_of(tx, rest_api_id, kind):
                    tx.delete(SERVICE, kind, doc_id)
            for resource in tx.list(SERVICE, RESOURCE_KIND, rest_api_id):
                if resource.get("parentId"):
                    tx.delete(SERVICE, RESOURCE_KIND, resource["id"])
            for model in default_models():
                put_model(tx, rest_api_id, model)
            for name in ("description", "binaryMediaTypes", "minimumCompressionSize", "policy"):
                api.pop(name, None)
        document = read_spec(tx, rest_api_id, spec)
        api.update(_wrap(lambda: _api_fields(document)))
        tx.put(SERVICE, API_KIND, rest_api_id, api)
        _wrap(lambda: build_from_spec(tx, rest_api_id, document))
    return api


def _ids_of(tx, rest_api_id: str, kind: str) -> list[str]:
    docs = tx.list(SERVICE, kind, rest_api_id)
    if kind == METHOD_KIND:
        return [method_key(d["_resourceId"], d["httpMethod"]) for d in docs]
    if kind == MODEL_KIND:
        return [model_key(rest_api_id, d["name"]) for d in docs]
    if kind == GATEWAY_KIND:
        return [gateway_response_key(rest_api_id, d["responseType"]) for d in docs]
    return [d["id"] for d in docs]


# -- export -------------------------------------------------------------------------------------


def _export_integration(integration: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in EXTENSION_INTEGRATION_MEMBERS:
        if integration.get(name) not in (None, [], {}):
            out[name] = integration[name]
    out["type"] = str(out.get("type", "")).lower()
    if "passthroughBehavior" in out:
        out["passthroughBehavior"] = out["passthroughBehavior"].lower()
    responses = {}
    for status, response in (integration.get("integrationResponses") or {}).items():
        body = {
            k: v
            for k, v in response.items()
            if k in ("responseParameters", "responseTemplates", "contentHandling")
        }
        body["statusCode"] = status
        responses[response.get("selectionPattern") or "default"] = body
    if responses:
        out["responses"] = responses
    return out


def render_export(
    frozen: dict[str, Any], stage: dict[str, Any], region: str, oas3: bool, extensions: set[str]
) -> dict[str, Any]:
    api = frozen["restApi"]
    with_integrations = bool(extensions & {"integrations", "apigateway"})
    info: dict[str, Any] = {
        "title": api["name"],
        "version": api.get("version") or _iso(api.get("createdDate")),
    }
    if api.get("description"):
        info["description"] = api["description"]
    host = f"{api['id']}.execute-api.{region}.amazonaws.com"
    ref_root = "#/components/schemas/" if oas3 else "#/definitions/"
    doc: dict[str, Any] = (
        {
            "openapi": "3.0.1",
            "info": info,
            "servers": [
                {
                    "url": f"https://{host}/{{basePath}}",
                    "variables": {"basePath": {"default": stage["stageName"]}},
                }
            ],
        }
        if oas3
        else {
            "swagger": "2.0",
            "info": info,
            "host": host,
            "basePath": f"/{stage['stageName']}",
            "schemes": ["https"],
        }
    )
    schemes: dict[str, Any] = {}
    authorizers = {a["id"]: a for a in frozen.get("authorizers") or ()}
    validators = {v["id"]: v for v in frozen.get("requestValidators") or ()}
    paths: dict[str, Any] = {}
    for resource in sorted(frozen["resources"], key=lambda r: r["path"]):
        if not resource["resourceMethods"]:
            continue
        item: dict[str, Any] = {}
        for verb, method in sorted(resource["resourceMethods"].items()):
            op: dict[str, Any] = {}
            if method.get("operationName"):
                op["operationId"] = method["operationName"]
            parameters = []
            for key, required in sorted((method.get("requestParameters") or {}).items()):
                _, _, where, name = key.split(".", 3)
                location = {"querystring": "query"}.get(where, where)
                parameter = {"name": name, "in": location, "required": bool(required) or location == "path"}
                if oas3:
                    parameter["schema"] = {"type": "string"}
                else:
                    parameter["type"] = "string"
                parameters.append(parameter)
            if parameters:
                op["parameters"] = parameters
            request_models = method.get("requestModels") or {}
            if request_models:
                if oas3:
                    op["requestBody"] = {
                        "content": {
                            ct: {"schema": {"$ref": ref_root + m}} for ct, m in request_models.items()
                        },
                        "required": True,
                    }
                else:
                    op.setdefault("parameters", []).append(
                        {
                            "in": "body",
                            "name": next(iter(request_models.values())),
                            "required": True,
                            "schema": {"$ref": ref_root + next(iter(request_models.values()))},
                        }
                    )
            responses: dict[str, Any] = {}
            for status, response in sorted((method.get("methodResponses") or {}).items()):
                body: dict[str, Any] = {"description": f"{status} response"}
                headers = {
                    key.rsplit(".", 1)[-1]: ({"schema": {"type": "string"}} if oas3 else {"type": "string"})
                    for key in response.get("responseParameters") or {}
                }
                if headers:
                    body["headers"] = headers
                models = response.get("responseModels") or {}
                if models:
                    if oas3:
                        body["content"] = {ct: {"schema": {"$ref": ref_root + m}} for ct, m in models.items()}
                    else:
                        body["schema"] = {"$ref": ref_root + next(iter(models.values()))}
                responses[status] = body
            op["responses"] = responses
            security = []
            if method.get("apiKeyRequired"):
                schemes["api_key"] = {"type": "apiKey", "name": "x-api-key", "in": "header"}
                security.append({"api_key": []})
            authorizer = authorizers.get(method.get("authorizerId") or "")
            if authorizer is not None:
                schemes[authorizer["name"]] = _export_authorizer(authorizer, with_integrations)
                security.append({authorizer["name"]: list(method.get("authorizationScopes") or [])})
            elif method.get("authorizationType") == "AWS_IAM":
                schemes["sigv4"] = {
                    "type": "apiKey",
                    "name": "Authorization",
                    "in": "header",
                    "x-amazon-apigateway-authtype": "awsSigv4",
                }
                security.append({"sigv4": []})
            if security:
                op["security"] = security
            if "apigateway" in extensions and method.get("requestValidatorId") in validators:
                op["x-amazon-apigateway-request-validator"] = validators[method["requestValidatorId"]].get(
                    "name"
                )
            if with_integrations and method.get("methodIntegration"):
                op[X_INTEGRATION] = _export_integration(method["methodIntegration"])
            item[ANY_METHOD if verb == "ANY" else verb.lower()] = op
        paths[resource["path"]] = item
    doc["paths"] = paths
    definitions = {}
    for model in frozen.get("models") or ():
        if model["name"] in ("Empty", "Error") and not _model_used(frozen, model["name"]):
            continue
        try:
            definitions[model["name"]] = exported_model_schema(
                json.loads(model.get("schema") or "{}"), api["id"], ref_root
            )
        except ValueError:
            definitions[model["name"]] = {}
    if oas3:
        components: dict[str, Any] = {}
        if definitions:
            components["schemas"] = definitions
        if schemes:
            components["securitySchemes"] = schemes
        if components:
            doc["components"] = components
    else:
        if schemes:
            doc["securityDefinitions"] = schemes
        if definitions:
            doc["definitions"] = definitions
    if "apigateway" in extensions:
        if api.get("binaryMediaTypes"):
            doc["x-amazon-apigateway-binary-media-types"] = api["binaryMediaTypes"]
        if api.get("apiKeySource"):
            doc["x-amazon-apigateway-api-key-source"] = api["apiKeySource"]
        if api.get("policy"):
            try:
                doc["x-amazon-apigateway-policy"] = json.loads(api["policy"])
            except (TypeError, ValueError):
                doc["x-amazon-apigateway-policy"] = api["policy"]
        if validators:
            doc["x-amazon-apigateway-request-validators"] = {
                v.get("name"): {
                    "validateRequestBody": v.get("validateRequestBody", False),
                    "validateRequestParameters": v.get("validateRequestParameters", False),
                }
                for v in validators.values()
            }
        gateway = {}
        for response in frozen.get("gatewayResponses") or ():
            body = {
                k: response[k]
                for k in ("statusCode", "responseParameters", "responseTemplates")
                if response.get(k)
            }
            gateway[response["responseType"]] = body
        if gateway:
            doc["x-amazon-apigateway-gateway-responses"] = gateway
    return doc


def _model_used(frozen: dict[str, Any], name: str) -> bool:
    for resource in frozen["resources"]:
        for method in resource["resourceMethods"].values():
            if name in (method.get("requestModels") or {}).values():
                return True
            for response in (method.get("methodResponses") or {}).values():
                if name in (response.get("responseModels") or {}).values():
                    return True
    return False


def _export_authorizer(authorizer: dict[str, Any], with_extension: bool) -> dict[str, Any]:
    source = authorizer.get("identitySource") or "method.request.header.Authorization"
    header = source.split(",")[0].strip().rsplit(".", 1)[-1]
    scheme: dict[str, Any] = {"type": "apiKey", "name": header, "in": "header"}
    scheme["x-amazon-apigateway-authtype"] = authorizer.get("authType") or (
        "cognito_user_pools" if authorizer.get("type") == "COGNITO_USER_POOLS" else "custom"
    )
    if with_extension:
        ext = {"type": str(authorizer.get("type", "")).lower()}
        copy_given(authorizer, ext, EXTENSION_AUTHORIZER_MEMBERS)
        scheme["x-amazon-apigateway-authorizer"] = ext
    return scheme


def _iso(seconds: Any) -> str:
    moment = dt.datetime.fromtimestamp(float(seconds or 0), dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@operation(SERVICE, "GetExport")
def get_export(request: AdminRequest, params: dict) -> dict:
    export_type = params["exportType"].lower()
    if export_type not in ("swagger", "oas30"):
        raise BadRequestException(f"Invalid export type specified: {params['exportType']}")
    extensions = {
        item.strip().lower()
        for item in str((params.get("parameters") or {}).get("extensions", "")).split(",")
        if item.strip()
    }
    accept = (params.get("accepts") or "application/json").lower()
    as_yaml = "yaml" in accept
    with request.store.read() as tx:
        stage = load_stage(tx, params["restApiId"], params["stageName"])
        try:
            deployment = load_deployment(tx, params["restApiId"], stage["deploymentId"])
        except NotFoundException:
            raise BadRequestException("The stage's deployment no longer exists") from None
    doc = render_export(deployment["_snapshot"], stage, request.region, export_type == "oas30", extensions)
    if as_yaml:
        body = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode()
        content_type, suffix = "application/yaml", "yaml"
    else:
        body = json.dumps(doc, indent=2).encode()
        content_type, suffix = "application/json", "json"
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    name = "swagger" if export_type == "swagger" else "oas30"
    return {
        "contentType": content_type,
        "contentDisposition": f'attachment; filename="{name}_{stamp}.{suffix}"',
        "body": body,
    }
