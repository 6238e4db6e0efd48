"""apigatewayv2: ImportApi, ReimportApi and ExportApi (OpenAPI 3.0 with `x-amazon-apigateway-*`).

Import follows AWS's HTTP API importer: every operation of every path becomes a route
(`x-amazon-apigateway-any-method` is `ANY`, the path `$default` or `isDefaultRoute: true` is the
`$default` route); its `x-amazon-apigateway-integration` (inline or a `$ref` into
`components.x-amazon-apigateway-integrations`, shared) becomes an integration; security schemes
with `x-amazon-apigateway-authorizer` become authorizers and the operations' `security` their
routes' authorization; `x-amazon-apigateway-cors` the CORS configuration; `info` the name,
description and version; `tags` with `x-amazon-apigateway-tag-value` the API's tags. What HTTP APIs
do not support is skipped with a warning (an error with `failOnWarnings`).

Export writes the same extensions back, in the shape of AWS's exports (each route's integration
inline, `responses.default`, generated path parameters, `x-amazon-apigateway-importexport-version`).
With `stageName` it exports the stage's deployed snapshot, otherwise the API's current state.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any
from urllib.parse import urlparse

import yaml

from portico.control.apigatewayv2.apis import check_cors, new_api
from portico.control.apigatewayv2.authorizers import normalise as normalise_authorizer
from portico.control.apigatewayv2.common import (
    AUTHORIZER,
    DEPLOYMENT,
    INTEGRATION,
    ROUTE,
    SERVICE,
    changed,
    load_api,
    load_stage,
    public,
)
from portico.control.apigatewayv2.integrations import normalise as normalise_integration
from portico.control.apigatewayv2.routes import check_route_key
from portico.control.errors import BadRequestException
from portico.control.registry import AdminRequest, operation

IMPORT_EXPORT_VERSION = "1.0"
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
_ANY = "x-amazon-apigateway-any-method"
_INTEGRATION = "x-amazon-apigateway-integration"
_AUTHORIZER = "x-amazon-apigateway-authorizer"
_CORS_FIELDS = (
    ("allowOrigins", "AllowOrigins"),
    ("allowCredentials", "AllowCredentials"),
    ("exposeHeaders", "ExposeHeaders"),
    ("maxAge", "MaxAge"),
    ("allowMethods", "AllowMethods"),
    ("allowHeaders", "AllowHeaders"),
)
_INTEGRATION_FIELDS = (  # (OpenAPI extension field, model member)
    ("payloadFormatVersion", "PayloadFormatVersion"),
    ("type", "IntegrationType"),
    ("httpMethod", "IntegrationMethod"),
    ("uri", "IntegrationUri"),
    ("connectionType", "ConnectionType"),
    ("connectionId", "ConnectionId"),
    ("credentials", "CredentialsArn"),
    ("integrationSubtype", "IntegrationSubtype"),
    ("timeoutInMillis", "TimeoutInMillis"),
    ("requestParameters", "RequestParameters"),
    ("responseParameters", "ResponseParameters"),
    ("description", "Description"),
)
_SIGV4 = "sigv4"


def _invalid(detail: str) -> BadRequestException:
    return BadRequestException(f"Invalid OpenAPI input: {detail}")


# -- import -----------------------------------------------------------------------------------------


def parse_document(body: str | bytes) -> dict[str, Any]:
    """An OpenAPI document from JSON or YAML text."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if not text.strip():
        raise _invalid("the body is empty")
    try:
        document = json.loads(text)
    except ValueError:
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise _invalid(f"the body is neither JSON nor YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(document, dict):
        raise _invalid("the document must be a JSON or YAML object")
    return document


class _Plan:
    """What an OpenAPI document describes, as model-member documents (no ids yet)."""

    def __init__(self) -> None:
        self.api: dict[str, Any] = {}
        # (route, integration key, authorizer name)
        self.routes: list[tuple[dict[str, Any], str | None, str | None]] = []
        self.integrations: dict[str, dict[str, Any]] = {}
        self.authorizers: dict[str, dict[str, Any]] = {}
        self.warnings: list[str] = []


def _version_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _integration_params(spec: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise _invalid(f"{where}: {_INTEGRATION} must be an object")
    params: dict[str, Any] = {}
    for field, member in _INTEGRATION_FIELDS:
        if spec.get(field) is not None:
            params[member] = spec[field]
    if "IntegrationType" not in params:
        raise _invalid(f"{where}: {_INTEGRATION} has no type")
    params["IntegrationType"] = str(params["IntegrationType"]).upper()
    if "PayloadFormatVersion" in params:
        params["PayloadFormatVersion"] = _version_text(params["PayloadFormatVersion"])
    if "ConnectionType" in params:
        params["ConnectionType"] = str(params["ConnectionType"]).upper()
    if "IntegrationMethod" in params:
        params["IntegrationMethod"] = str(params["IntegrationMethod"]).upper()
    if "TimeoutInMillis" in params:
        try:
            params["TimeoutInMillis"] = int(params["TimeoutInMillis"])
        except (TypeError, ValueError):
            raise _invalid(f"{where}: timeoutInMillis must be an integer") from None
    tls = spec.get("tlsConfig")
    if isinstance(tls, dict) and tls.get("serverNameToVerify"):
        params["TlsConfig"] = {"ServerNameToVerify": tls["serverNameToVerify"]}
    return params


def _resolve_ref(document: dict[str, Any], ref: str, where: str) -> Any:
    if not ref.startswith("#/"):
        raise _invalid(f"{where}: only local references (#/...) are supported, got {ref}")
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            raise _invalid(f"{where}: unresolvable reference {ref}")
        node = node[part]
    return node


def _authorizer_params(name: str, scheme: dict[str, Any]) -> dict[str, Any] | None:
    spec = scheme.get(_AUTHORIZER)
    if not isinstance(spec, dict):
        return None
    kind = str(spec.get("type", "")).lower()
    sources = spec.get("identitySource", [])
    if isinstance(sources, str):
        sources = [s.strip() for s in sources.split(",") if s.strip()]
    if kind == "jwt":
        jwt = spec.get("jwtConfiguration") or {}
        audience = jwt.get("audience") or []
        return {
            "Name": name,
            "AuthorizerType": "JWT",
            "IdentitySource": list(sources) or ["$request.header.Authorization"],
            "JwtConfiguration": {
                "Issuer": jwt.get("issuer"),
                "Audience": [audience] if isinstance(audience, str) else list(audience),
            },
        }
    if kind == "request":
        params = {"Name": name, "AuthorizerType": "REQUEST", "IdentitySource": list(sources)}
        for field, member in (
            ("authorizerUri", "AuthorizerUri"),
            ("authorizerCredentials", "AuthorizerCredentialsArn"),
            ("authorizerResultTtlInSeconds", "AuthorizerResultTtlInSeconds"),
            ("enableSimpleResponses", "EnableSimpleResponses"),
        ):
            if spec.get(field) is not None:
                params[member] = spec[field]
        if spec.get("authorizerPayloadFormatVersion") is not None:
            params["AuthorizerPayloadFormatVersion"] = _version_text(spec["authorizerPayloadFormatVersion"])
        return params
    raise ValueError(kind)


def _base_path(document: dict[str, Any], mode: str | None) -> str:
    if not mode or mode == "ignore":
        return ""
    if mode not in ("prepend", "split"):
        raise BadRequestException(f"Invalid basepath mode '{mode}': must be ignore, prepend or split")
    servers = document.get("servers") or []
    if not servers or not isinstance(servers[0], dict) or not servers[0].get("url"):
        return ""
    url = str(servers[0]["url"])
    for var, spec in (servers[0].get("variables") or {}).items():
        url = url.replace("{" + var + "}", str((spec or {}).get("default", "")))
    path = urlparse(url).path if "://" in url else url
    segments = [s for s in path.split("/") if s]
    if mode == "split":
        segments = segments[1:]
    return "/" + "/".join(segments) if segments else ""


def plan_import(document: dict[str, Any], basepath: str | None = None) -> _Plan:
    """Translate a document into a `_Plan` (raises BadRequestException for invalid input)."""
    plan = _Plan()
    if "swagger" in document:
        raise _invalid("OpenAPI 2.0 (swagger) definitions cannot be imported as HTTP APIs; use OpenAPI 3.0")
    if not str(document.get("openapi", "")).startswith("3."):
        raise _invalid("the document must declare openapi: 3.x")
    version = document.get("x-amazon-apigateway-importexport-version")
    if version is not None and _version_text(version) != IMPORT_EXPORT_VERSION:
        raise _invalid(
            f"unsupported x-amazon-apigateway-importexport-version {version}; only 1.0 is supported"
        )
    info = document.get("info") or {}
    if not isinstance(info, dict):
        raise _invalid("info must be an object")
    name = info.get("title")
    if not name:
        plan.warnings.append("The API has no info.title; it is named 'imported-api'")
        name = "imported-api"
    plan.api = {"Name": str(name), "ProtocolType": "HTTP"}
    if info.get("description") is not None:
        plan.api["Description"] = str(info["description"])
    if info.get("version") is not None:
        plan.api["Version"] = str(info["version"])
    cors = document.get("x-amazon-apigateway-cors")
    if cors is not None:
        if not isinstance(cors, dict):
            raise _invalid("x-amazon-apigateway-cors must be an object")
        plan.api["CorsConfiguration"] = {m: cors[f] for f, m in _CORS_FIELDS if cors.get(f) is not None}
    endpoint = document.get("x-amazon-apigateway-endpoint-configuration")
    if isinstance(endpoint, dict) and endpoint.get("disableExecuteApiEndpoint") is not None:
        plan.api["DisableExecuteApiEndpoint"] = bool(endpoint["disableExecuteApiEndpoint"])
    tags = {
        str(t["name"]): str(t["x-amazon-apigateway-tag-value"])
        for t in document.get("tags") or []
        if isinstance(t, dict) and t.get("name") and t.get("x-amazon-apigateway-tag-value") is not None
    }
    if tags:
        plan.api["Tags"] = tags

    components = document.get("components") or {}
    schemes = components.get("securitySchemes") or {} if isinstance(components, dict) else {}
    iam_schemes: set[str] = set()
    for scheme_name, scheme in schemes.items():
        if not isinstance(scheme, dict):
            continue
        if str(scheme.get("x-amazon-apigateway-authtype", "")).lower() == "awssigv4":
            iam_schemes.add(scheme_name)
            continue
        try:
            params = _authorizer_params(scheme_name, scheme)
        except ValueError as exc:
            plan.warnings.append(
                f"Security scheme {scheme_name}: authorizer type '{exc}' "
                "is not supported for HTTP APIs; skipped"
            )
            continue
        if params is not None:
            plan.authorizers[scheme_name] = params

    base = _base_path(document, basepath)
    paths = document.get("paths") or {}
    if not isinstance(paths, dict):
        raise _invalid("paths must be an object")
    seen: set[str] = set()
    for path, item in paths.items():
        if not isinstance(item, dict):
            raise _invalid(f"paths.{path} must be an object")
        for key, op in item.items():
            if key == _ANY:
                method = "ANY"
            elif key in _METHODS:
                method = key.upper()
            else:
                if key == "trace":
                    plan.warnings.append(f"paths.{path}.trace: TRACE is not supported by HTTP APIs; skipped")
                continue
            where = f"paths.{path}.{key}"
            if not isinstance(op, dict):
                raise _invalid(f"{where} must be an object")
            if path == "$default" or (method == "ANY" and op.get("isDefaultRoute") is True):
                route_key = "$default"
            else:
                route_key = f"{method} {base}{path}" if base else f"{method} {path}"
            try:
                check_route_key("HTTP", route_key)
            except BadRequestException as exc:
                raise _invalid(f"{where}: {exc.message}") from None
            if route_key in seen:
                raise _invalid(f"{where}: the route {route_key} is defined more than once")
            seen.add(route_key)
            route: dict[str, Any] = {"RouteKey": route_key}
            if op.get("operationId"):
                route["OperationName"] = str(op["operationId"])
            integration_key = None
            spec = op.get(_INTEGRATION)
            if spec is not None:
                if isinstance(spec, dict) and "$ref" in spec:
                    integration_key = str(spec["$ref"])
                    resolved = _resolve_ref(document, integration_key, where)
                    if integration_key not in plan.integrations:
                        plan.integrations[integration_key] = _integration_params(resolved, where)
                else:
                    integration_key = f"{route_key}#inline"
                    plan.integrations[integration_key] = _integration_params(spec, where)
                integration = plan.integrations[integration_key]
                if integration["IntegrationType"] not in ("AWS_PROXY", "HTTP_PROXY"):
                    plan.warnings.append(
                        f"{where}: integration type {integration['IntegrationType']} is not supported for "
                        "HTTP APIs; the route was imported without an integration"
                    )
                    del plan.integrations[integration_key]
                    integration_key = None
                elif (
                    integration["IntegrationType"] == "AWS_PROXY"
                    and "PayloadFormatVersion" not in integration
                ):
                    plan.warnings.append(
                        f"{where}: no payloadFormatVersion for an aws_proxy integration; using 2.0"
                    )
                    integration["PayloadFormatVersion"] = "2.0"
            auth = None
            security = op.get("security")
            auth_ext = op.get("x-amazon-apigateway-auth")
            if isinstance(auth_ext, dict) and str(auth_ext.get("type", "")).upper() == "AWS_IAM":
                route["AuthorizationType"] = "AWS_IAM"
            elif isinstance(security, list):
                for requirement in security:
                    if not isinstance(requirement, dict):
                        continue
                    for scheme_name, scopes in requirement.items():
                        if scheme_name in iam_schemes:
                            route["AuthorizationType"] = "AWS_IAM"
                        elif scheme_name in plan.authorizers:
                            auth = scheme_name
                            kind = plan.authorizers[scheme_name]["AuthorizerType"]
                            route["AuthorizationType"] = "JWT" if kind == "JWT" else "CUSTOM"
                            if kind == "JWT" and scopes:
                                route["AuthorizationScopes"] = [str(s) for s in scopes]
                        else:
                            plan.warnings.append(
                                f"{where}: security scheme {scheme_name} is not an authorizer; ignored"
                            )
                        break
                    if "AuthorizationType" in route:
                        break
            plan.routes.append((route, integration_key, auth))
    return plan


def apply_plan(tx, api: dict[str, Any], plan: _Plan) -> None:
    """Create the plan's integrations, authorizers and routes under `api` (already stored)."""
    from portico.control import ids

    api_id = api["ApiId"]
    integration_ids: dict[str, str] = {}
    for key, params in plan.integrations.items():
        integration = {"IntegrationId": ids.short_id(), **params}
        try:
            normalise_integration(api, integration, creating=True)
        except BadRequestException as exc:
            raise _invalid(f"integration of {key.removesuffix('#inline')}: {exc.message}") from None
        tx.put(SERVICE, INTEGRATION, integration["IntegrationId"], integration, parent=api_id)
        integration_ids[key] = integration["IntegrationId"]
    authorizer_ids: dict[str, str] = {}
    for name, params in plan.authorizers.items():
        authorizer = {"AuthorizerId": ids.short_id(), **params}
        try:
            normalise_authorizer(api, authorizer)
        except BadRequestException as exc:
            raise _invalid(f"security scheme {name}: {exc.message}") from None
        tx.put(SERVICE, AUTHORIZER, authorizer["AuthorizerId"], authorizer, parent=api_id)
        authorizer_ids[name] = authorizer["AuthorizerId"]
    for params, integration_key, auth in plan.routes:
        route = {
            "RouteId": ids.short_id(),
            "ApiGatewayManaged": False,
            "ApiKeyRequired": False,
            "AuthorizationType": "NONE",
            **params,
        }
        if integration_key is not None:
            route["Target"] = f"integrations/{integration_ids[integration_key]}"
        if auth is not None:
            route["AuthorizerId"] = authorizer_ids[auth]
        tx.put(SERVICE, ROUTE, route["RouteId"], route, parent=api_id)


def _check_warnings(plan: _Plan, fail_on_warnings: bool | None) -> None:
    if fail_on_warnings and plan.warnings:
        raise BadRequestException("Warnings found during import:\n\t" + "\n\t".join(plan.warnings))


@operation(SERVICE, "ImportApi")
def import_api(request: AdminRequest, params: dict) -> dict:
    plan = plan_import(parse_document(params["Body"]), params.get("Basepath"))
    _check_warnings(plan, params.get("FailOnWarnings"))
    api = new_api(request, plan.api)
    with request.store.transaction() as tx:
        tx.put(SERVICE, "api", api["ApiId"], api)
        apply_plan(tx, api, plan)
    return {**api, "Warnings": plan.warnings or None}


@operation(SERVICE, "ReimportApi")
def reimport_api(request: AdminRequest, params: dict) -> dict:
    plan = plan_import(parse_document(params["Body"]), params.get("Basepath"))
    _check_warnings(plan, params.get("FailOnWarnings"))
    api_id = params["ApiId"]
    with request.store.transaction() as tx:
        api = load_api(request, tx, api_id)
        if api["ProtocolType"] != "HTTP":
            raise BadRequestException("ReimportApi is only supported for HTTP APIs")
        check_cors("HTTP", plan.api.get("CorsConfiguration"))
        # Overwrite: the document replaces routes, integrations and authorizers (stages,
        # deployments and tags stay).
        for kind, id_member in (
            (ROUTE, "RouteId"),
            (INTEGRATION, "IntegrationId"),
            (AUTHORIZER, "AuthorizerId"),
        ):
            for doc in tx.list(SERVICE, kind, api_id):
                tx.delete(SERVICE, kind, doc[id_member])
                tx.delete_under(SERVICE, f"{api_id}/{doc[id_member]}")
        for member in ("Description", "Version", "CorsConfiguration"):
            api.pop(member, None)
        api.update({k: v for k, v in plan.api.items() if k not in ("ProtocolType", "Tags")})
        if plan.api.get("Tags"):
            api["Tags"] = {**(api.get("Tags") or {}), **plan.api["Tags"]}
        tx.put(SERVICE, "api", api_id, api)
        apply_plan(tx, api, plan)
        changed(tx, api_id)
        api = tx.get(SERVICE, "api", api_id)
    return {**api, "Warnings": plan.warnings or None}


# -- export -----------------------------------------------------------------------------------------


def _export_integration(integration: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, member in _INTEGRATION_FIELDS:
        value = integration.get(member)
        if value is None:
            continue
        out[field] = value.lower() if member == "IntegrationType" else value
    if integration.get("TlsConfig", {}).get("ServerNameToVerify"):
        out["tlsConfig"] = {"serverNameToVerify": integration["TlsConfig"]["ServerNameToVerify"]}
    return out


def _export_authorizer(authorizer: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"identitySource": ", ".join(authorizer.get("IdentitySource") or [])}
    if authorizer["AuthorizerType"] == "JWT":
        jwt = authorizer.get("JwtConfiguration") or {}
        spec["jwtConfiguration"] = {"audience": jwt.get("Audience") or [], "issuer": jwt.get("Issuer")}
        spec["type"] = "jwt"
        return {"type": "oauth2", "flows": {}, _AUTHORIZER: spec}
    for field, member in (
        ("authorizerUri", "AuthorizerUri"),
        ("authorizerCredentials", "AuthorizerCredentialsArn"),
        ("authorizerPayloadFormatVersion", "AuthorizerPayloadFormatVersion"),
        ("authorizerResultTtlInSeconds", "AuthorizerResultTtlInSeconds"),
        ("enableSimpleResponses", "EnableSimpleResponses"),
    ):
        if authorizer.get(member) is not None:
            spec[field] = authorizer[member]
    spec["type"] = "request"
    return {"type": "apiKey", "name": "Authorization", "in": "header", _AUTHORIZER: spec}


def _info_version(api: dict[str, Any]) -> str:
    if api.get("Version"):
        return str(api["Version"])
    created = dt.datetime.fromtimestamp(float(api.get("CreatedDate") or 0), dt.UTC)
    return created.strftime("%Y-%m-%d %H:%M:%SUTC")


def _strip_extensions(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: _strip_extensions(v) for k, v in node.items() if not str(k).startswith("x-amazon-apigateway-")
        }
    if isinstance(node, list):
        return [_strip_extensions(v) for v in node]
    return node


def export_document(
    api: dict[str, Any],
    routes: list[dict[str, Any]],
    integrations: list[dict[str, Any]],
    authorizers: list[dict[str, Any]],
    stage_name: str | None = None,
    include_extensions: bool = True,
) -> dict[str, Any]:
    """An OpenAPI 3.0 document of an HTTP API, shaped like AWS's ExportApi output."""
    by_integration = {i["IntegrationId"]: i for i in integrations}
    by_authorizer = {a["AuthorizerId"]: a for a in authorizers}
    info: dict[str, Any] = {"title": api["Name"]}
    if api.get("Description"):
        info["description"] = api["Description"]
    info["version"] = _info_version(api)
    base = "" if stage_name in (None, "$default") else stage_name
    document: dict[str, Any] = {
        "openapi": "3.0.1",
        "info": info,
        "servers": [
            {
                "url": f"{api.get('ApiEndpoint', '')}/{{basePath}}",
                "variables": {"basePath": {"default": base}},
            }
        ],
    }
    if api.get("Tags"):
        document["tags"] = [{"name": k, "x-amazon-apigateway-tag-value": v} for k, v in api["Tags"].items()]
    paths: dict[str, dict[str, Any]] = {}
    schemes: dict[str, Any] = {}
    ordered = sorted(
        routes, key=lambda r: (r["RouteKey"] == "$default", r["RouteKey"].partition(" ")[2], r["RouteKey"])
    )
    for route in ordered:
        key = route["RouteKey"]
        op: dict[str, Any] = {}
        if key == "$default":
            path, method_key = "$default", _ANY
            op["isDefaultRoute"] = True
        else:
            method, _, path = key.partition(" ")
            method_key = _ANY if method == "ANY" else method.lower()
        if route.get("OperationName"):
            op["operationId"] = route["OperationName"]
        op["responses"] = {"default": {"description": f"Default response for {key}"}}
        auth_type = route.get("AuthorizationType", "NONE")
        if auth_type in ("JWT", "CUSTOM") and route.get("AuthorizerId") in by_authorizer:
            authorizer = by_authorizer[route["AuthorizerId"]]
            op["security"] = [{authorizer["Name"]: list(route.get("AuthorizationScopes") or [])}]
            schemes[authorizer["Name"]] = _export_authorizer(authorizer)
        elif auth_type == "AWS_IAM":
            op["security"] = [{_SIGV4: []}]
            schemes[_SIGV4] = {
                "type": "apiKey",
                "name": "Authorization",
                "in": "header",
                "x-amazon-apigateway-authtype": "awsSigv4",
            }
        target = route.get("Target") or ""
        integration = by_integration.get(target.removeprefix("integrations/")) if target else None
        if integration is not None:
            op[_INTEGRATION] = _export_integration(integration)
        paths.setdefault(path, {})[method_key] = op
    for path, item in paths.items():
        names = re.findall(r"\{([^}+]+)\+?\}", path)
        if names and path != "$default":
            item["parameters"] = [
                {
                    "name": name,
                    "in": "path",
                    "description": f"Generated path parameter for {name}",
                    "required": True,
                    "schema": {"type": "string"},
                }
                for name in names
            ]
    document["paths"] = paths
    if schemes:
        document["components"] = {"securitySchemes": schemes}
    cors = api.get("CorsConfiguration")
    if cors:
        document["x-amazon-apigateway-cors"] = {
            f: cors[m] for f, m in _CORS_FIELDS if cors.get(m) is not None
        }
    document["x-amazon-apigateway-importexport-version"] = IMPORT_EXPORT_VERSION
    return document if include_extensions else _strip_extensions(document)


def render(document: dict[str, Any], output_type: str) -> bytes:
    if output_type == "YAML":
        return yaml.safe_dump(
            document, sort_keys=False, default_flow_style=False, allow_unicode=True
        ).encode()
    return json.dumps(document, indent=2, ensure_ascii=False).encode()


@operation(SERVICE, "ExportApi")
def export_api(request: AdminRequest, params: dict) -> dict:
    if params["Specification"] != "OAS30":
        raise BadRequestException(
            f"Unsupported specification {params['Specification']}: only OAS30 is supported"
        )
    if params["OutputType"] not in ("JSON", "YAML"):
        raise BadRequestException("OutputType must be JSON or YAML")
    if params.get("ExportVersion") not in (None, IMPORT_EXPORT_VERSION):
        raise BadRequestException(
            f"Unsupported export version {params['ExportVersion']}: only 1.0 is supported"
        )
    api_id, stage_name = params["ApiId"], params.get("StageName")
    with request.store.read() as tx:
        api = load_api(request, tx, api_id)
        if api["ProtocolType"] != "HTTP":
            raise BadRequestException("ExportApi is only supported for HTTP APIs")
        if stage_name:
            stage = load_stage(tx, api_id, stage_name)
            deployment = tx.get(SERVICE, DEPLOYMENT, stage.get("DeploymentId") or "", parent=api_id)
            if deployment is None:
                raise BadRequestException(f"Stage {stage_name} has no deployment to export")
            snap = deployment["_snapshot"]
            api = {**api, **snap["Api"]}
            routes, integrations, authorizers = snap["Routes"], snap["Integrations"], snap["Authorizers"]
        else:
            routes = tx.list(SERVICE, ROUTE, api_id)
            integrations = tx.list(SERVICE, INTEGRATION, api_id)
            authorizers = tx.list(SERVICE, AUTHORIZER, api_id)
    include = params.get("IncludeExtensions")
    document = export_document(
        public(api), routes, integrations, authorizers, stage_name, include_extensions=include is not False
    )
    return {"body": render(document, params["OutputType"])}
