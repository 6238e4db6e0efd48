"""REST API OpenAPI documents as config files: what AWS's `ImportRestApi` builds, as one
`protocolType: REST` API.

Swagger 2.0 documents are always REST APIs (HTTP APIs import OpenAPI 3 only). An OpenAPI 3
document is one when `x-portico: {protocolType: REST}` says so, or when it uses what only REST APIs
have and nothing only HTTP APIs have (`is_rest_document`): request validators, gateway responses,
binary media types, an API key source or a resource policy; `aws` or `http` integrations, or ones
with `requestTemplates`, `responses`, `contentHandling` or cache keys; `token` or Cognito
authorizers; operations requiring an API key. (HTTP APIs' own: `x-amazon-apigateway-cors`,
`x-amazon-apigateway-integrations`, `payloadFormatVersion`.)

The document is read as AWS's REST import reads it (`portico.openapi_rest_reader`, shared with the
control plane's `ImportRestApi`); this module writes the records as the config's API: each
operation with an integration a route `METHOD /path` with an integration of the same name, the
security schemes' authorizers, models (their references to each other bare model names), request
validators, gateway responses and the API's members. A method without an integration, a VPC link
or a member the extension does not have is refused here (a file says what is served), where the
control plane imports them as AWS does.

The API is served on one stage, named by the document's base path as `GetExport` writes it
(swagger `basePath`, OpenAPI 3 `servers[0].variables.basePath.default` or the path of
`servers[0].url`), else `prod`.
`x-portico` may carry Portico's own: `protocolType`, the API's `id` and `stages`, and top-level
config members (`functions`, `settings`, `apiKeys`, `usagePlans`, `principals`).

Problems are reported at the document's own field paths (`paths./pets.get.x-amazon-apigateway-
integration.type`): `Origins` maps the config locations the translation produced back to them.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

from portico.openapi_rest_reader import (
    X_INTEGRATION,
    Integration,
    RestDocument,
    is_api_key,
    model_schema,
    operations,
    read_document,
    schemes,
)

_API = "apis[0]"
_STAGE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
# What only REST APIs have, at the document's top level.
_REST_EXTENSIONS = (
    "x-amazon-apigateway-request-validators",
    "x-amazon-apigateway-request-validator",
    "x-amazon-apigateway-gateway-responses",
    "x-amazon-apigateway-binary-media-types",
    "x-amazon-apigateway-api-key-source",
    "x-amazon-apigateway-policy",
)
# Integration members only REST APIs' integrations have (AWS's HTTP API examples write
# `passthroughBehavior` too, which HTTP APIs ignore).
_REST_INTEGRATION_MEMBERS = (
    "requestTemplates",
    "contentHandling",
    "cacheKeyParameters",
    "cacheNamespace",
    "responses",
    "responseTransferMode",
)
# Copied from `x-amazon-apigateway-integration` to the config's integration; the others
# (`credentials`, an IAM role; `tlsConfig`, `connectionId`: AWS's own network) have no local meaning.
_COPIED_MEMBERS = (
    "uri",
    "passthroughBehavior",
    "responseTransferMode",
    "requestTemplates",
    "requestParameters",
    "contentHandling",
    "timeoutInMillis",
    "cacheKeyParameters",
    "cacheNamespace",
)
# The API's members served from a file, and the document's fields they come from.
_API_FIELDS = {
    "name": "info.title",
    "description": "info.description",
    "binaryMediaTypes": "x-amazon-apigateway-binary-media-types",
    "apiKeySource": "x-amazon-apigateway-api-key-source",
    "policy": "x-amazon-apigateway-policy",
}
# Authorizer members with no local meaning: an IAM role to invoke the function, and the scheme's
# x-amazon-apigateway-authtype (the authorizer's type says it all).
_UNUSED_AUTHORIZER_MEMBERS = ("authorizerCredentials", "authType")
# x-portico members that configure the API itself rather than the whole file.
_API_MEMBERS = ("protocolType", "id", "stages")


# The API's own checks word a location inside their reason (`apis[0]: routes[2]: ...`).
_INNER_LOCATION = re.compile(
    r"^(routes\[|integrations\.|integrationResponses\.|stages\[|authorizers\.|gatewayResponses|"
    r"requestValidators|models|binaryMediaTypes|apiKeySource|policy)"
)


class Origins(dict[str, str]):
    """Config location (`apis[0].integrations.GET /pets.type`) -> document field path."""

    def relocate(self, problem: str) -> str:
        """`problem` (`LOCATION: reason`, as the loader and the compiler word them) with its
        location as the document's field path."""
        location, reason = _split(problem)
        if location is None:
            return problem
        # Api-level checks word their own location inside the reason (`routes[2]: ...`).
        while True:
            inner, rest = _split(reason)
            if inner is None or not _INNER_LOCATION.match(inner):
                break
            location, reason = f"{location}.{inner}", rest
        best = max(
            (key for key in self if location == key or location.startswith((key + ".", key + "["))),
            key=len,
            default=None,
        )
        if best is None:
            return problem
        mapped = (self[best] + location[len(best) :]).lstrip(".")
        # A route's method responses are the operation's `responses`.
        reason = reason.replace(
            "the route declares no methodResponses.", "the operation declares no responses."
        )
        reason = reason.replace("declared in methodResponses.", "declared in the operation's responses.")
        return f"{mapped}: {reason}" if mapped else reason


def _split(text: str) -> tuple[str | None, str]:
    location, sep, reason = text.partition(": ")
    return (location, reason) if sep else (None, text)


def is_rest_document(document: dict[str, Any]) -> bool:
    """Whether an OpenAPI document describes a REST API rather than an HTTP API."""
    if "swagger" in document:
        return True
    portico = document.get("x-portico")
    if isinstance(portico, dict) and isinstance(portico.get("protocolType"), str):
        return portico["protocolType"].upper() == "REST"
    # What only HTTP APIs have: CORS configuration, reusable integrations, payload versions.
    components = document.get("components")
    if "x-amazon-apigateway-cors" in document or (
        isinstance(components, dict) and "x-amazon-apigateway-integrations" in components
    ):
        return False
    integrations = [op.get(X_INTEGRATION) for _, _, op in operations(document)]
    if any(isinstance(spec, dict) and "payloadFormatVersion" in spec for spec in integrations):
        return False
    if any(name in document for name in _REST_EXTENSIONS):
        return True
    used = {
        name
        for _, _, operation in operations(document)
        if isinstance(operation.get("security"), list)
        for need in operation["security"]
        if isinstance(need, dict)
        for name in need
    }
    for name, scheme in schemes(document).items():
        if not isinstance(scheme, dict):
            continue
        authorizer = scheme.get("x-amazon-apigateway-authorizer")
        if isinstance(authorizer, dict) and str(authorizer.get("type", "")).lower() in (
            "token",
            "cognito_user_pools",
        ):
            return True
        if is_api_key(scheme) and name in used:
            return True
    for _, _, operation in operations(document):
        if "x-amazon-apigateway-request-validator" in operation:
            return True
        integration = operation.get(X_INTEGRATION)
        if not isinstance(integration, dict):
            continue
        kind = str(integration.get("type", "")).lower()
        if kind in ("aws", "http") or any(member in integration for member in _REST_INTEGRATION_MEMBERS):
            return True
    return False


def rest_openapi_to_config(document: dict[str, Any]) -> tuple[dict[str, Any], Origins, list[str]]:
    """(config dict, its origins, problems found while translating)."""
    read = read_document(document)
    writer = _Writer(document, read)
    config = writer.config()
    return config, writer.origins, [*read.problems, *writer.problems]


class _Writer:
    """The reader's records as one REST API of the config model, with the origins of each."""

    def __init__(self, document: dict[str, Any], read: RestDocument) -> None:
        self.document = document
        self.read = read
        self.problems: list[str] = []
        self.origins = Origins({_API: ""})

    def problem(self, where: str, reason: str) -> None:
        self.problems.append(f"{where}: {reason}")

    def config(self) -> dict[str, Any]:
        read, origins = self.read, self.origins
        api: dict[str, Any] = {"name": "imported", "protocolType": "REST"}  # a problem when no title
        for member, field in _API_FIELDS.items():
            origins[f"{_API}.{member}"] = field
            if member in read.api_members:
                api[member] = read.api_members[member]
        api["requestValidators"] = read.validators
        origins[f"{_API}.requestValidators"] = "x-amazon-apigateway-request-validators"
        api["gatewayResponses"] = {}
        origins[f"{_API}.gatewayResponses"] = "x-amazon-apigateway-gateway-responses"
        for name, body in read.gateway_responses.items():
            origins[f"{_API}.gatewayResponses.{name}"] = f"x-amazon-apigateway-gateway-responses.{name}"
            status = body.get("statusCode")
            numeric = isinstance(status, str) and status.isdigit()
            api["gatewayResponses"][name] = {**body, "statusCode": int(status)} if numeric else body
        if isinstance(api.get("policy"), str):
            api["policy"] = json.loads(api["policy"])  # the reader made sure it is JSON
        api["models"] = {}
        origins[f"{_API}.models"] = read.models_path
        for name, model in read.models.items():
            origins[f"{_API}.models.{name}"] = model.where
            # `#/definitions/Pet` becomes `Pet`, which a model's `$ref` resolves against its own URI
            # (`.../restapis/{apiId}/models/`) to the model named Pet.
            api["models"][name] = {"schema": model_schema(model.schema, lambda ref: ref)}
            if model.description is not None:
                api["models"][name]["description"] = model.description
        api["authorizers"] = {}
        for name, authorizer in read.authorizers.items():
            origins[f"{_API}.authorizers.{name}"] = authorizer.where
            members = {k: v for k, v in authorizer.members.items() if k not in _UNUSED_AUTHORIZER_MEMBERS}
            api["authorizers"][name] = {"authorizerType": members.pop("type"), **members}
        api["routes"], api["integrations"] = self._routes()
        api["stages"] = [{"stageName": self._stage_name()}]
        origins[f"{_API}.stages"] = "basePath" if read.swagger else "servers[0].variables.basePath.default"
        config: dict[str, Any] = {"apis": [api]}
        portico = self.document.get("x-portico")
        if portico is not None and not isinstance(portico, dict):
            self.problem("x-portico", "must be a mapping")
        elif isinstance(portico, dict):
            kind = portico.get("protocolType", "REST")
            if read.swagger and not (isinstance(kind, str) and kind.upper() == "REST"):
                self.problem(
                    "x-portico.protocolType",
                    "swagger 2.0 documents are REST APIs (HTTP APIs import OpenAPI 3)",
                )
            for name, value in portico.items():
                if name in _API_MEMBERS:
                    api[name] = value
                    origins[f"{_API}.{name}"] = f"x-portico.{name}"
                else:
                    config[name] = value
                    origins[name] = f"x-portico.{name}"
        return config

    def _stage_name(self) -> str:
        if self.read.swagger:
            base = self.document.get("basePath")
        else:
            servers = self.document.get("servers")
            server = servers[0] if isinstance(servers, list) and servers else None
            variables = server.get("variables") if isinstance(server, dict) else None
            variable = variables.get("basePath") if isinstance(variables, dict) else None
            base = variable.get("default") if isinstance(variable, dict) else None
            url = server.get("url") if isinstance(server, dict) else None
            if base is None and isinstance(url, str) and "{" not in url:
                base = urlsplit(url).path  # `https://api.example.com/prod`
        name = base.strip("/") if isinstance(base, str) else ""
        # A base path that is no stage name (`/v1/pets`) is AWS's `basepath=ignore` default.
        return name if _STAGE_NAME.match(name) else "prod"

    def _routes(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        routes: list[dict[str, Any]] = []
        integrations: dict[str, Any] = {}
        for op in self.read.operations:
            if op.integration is None:
                if not any(p.startswith(f"{op.where}.{X_INTEGRATION}") for p in self.read.problems):
                    # AWS imports the method, then refuses to deploy it ("No integration defined
                    # for method").
                    self.problem(
                        op.where, f"no {X_INTEGRATION}: a method without an integration cannot be deployed"
                    )
                continue
            name = f"{op.verb} {op.path}"
            route_at = f"{_API}.routes[{len(routes)}]"
            self.origins[route_at] = op.where
            for member, field in (
                ("requestParameters", "parameters"),
                ("requestModels", "requestBody" if not self.read.swagger else "parameters"),
                ("methodResponses", "responses"),
                ("requestValidatorId", "x-amazon-apigateway-request-validator"),
                ("apiKeyRequired", "security"),
                ("authorizerId", "security"),
                ("authorizationType", "security"),
                ("authorizationScopes", "security"),
                ("integration", X_INTEGRATION),
            ):
                self.origins[f"{route_at}.{member}"] = f"{op.where}.{field}"
            integrations[name] = self._integration(op.integration, name)
            # The route's own checks name its integration's responses from the route.
            for status, at_response in op.integration.response_where.items():
                self.origins[f"{route_at}.integrationResponses.{status}"] = at_response
            route = {"routeKey": name, "integration": name}
            route.update((k, v) for k, v in op.method.items() if k != "operationName")
            routes.append(route)
        return routes, integrations

    def _integration(self, integration: Integration, name: str) -> dict[str, Any]:
        at, where, members = f"{_API}.integrations.{name}", integration.where, integration.members
        self.origins[at] = where
        for member, field in (("method", "httpMethod"), ("integrationResponses", "responses")):
            self.origins[f"{at}.{member}"] = f"{where}.{field}"
        out: dict[str, Any] = {"type": members.get("type")}
        for member in _COPIED_MEMBERS:
            if member in members:
                out[member] = members[member]
        if "httpMethod" in members:
            out["method"] = members["httpMethod"]
        if members.get("connectionType", "INTERNET") != "INTERNET":
            self.problem(f"{where}.connectionType", "VPC links have no local meaning: INTERNET only")
        for member in integration.unknown:
            self.problem(f"{where}.{member}", "not a member of x-amazon-apigateway-integration")
        if integration.responses:
            out["integrationResponses"] = integration.responses
        for status, at_response in integration.response_where.items():
            self.origins[f"{at}.integrationResponses.{status}"] = at_response
        return out
