"""REST API OpenAPI documents as config files: what AWS's `ImportRestApi` builds, as one
`protocolType: REST` API.

Swagger 2.0 documents are always REST APIs (HTTP APIs import OpenAPI 3 only). An OpenAPI 3
document is one when `x-portico: {protocolType: REST}` says so, or when it uses what only REST APIs
have and nothing only HTTP APIs have (`is_rest_document`): request validators, gateway responses,
binary media types, an API key source or a resource policy; `aws` or `http` integrations, or ones
with `requestTemplates`, `responses`, `contentHandling` or cache keys; `token` or Cognito
authorizers; operations requiring an API key. (HTTP APIs' own: `x-amazon-apigateway-cors`,
`x-amazon-apigateway-integrations`, `payloadFormatVersion`.) The mapping follows AWS's REST import
("Working with API Gateway extensions to OpenAPI"):

- each operation (`x-amazon-apigateway-any-method` is `ANY`) becomes a route; its
  `x-amazon-apigateway-integration` its integration (`type` in either case, `httpMethod`, `uri`,
  `requestTemplates`, `requestParameters`, `passthroughBehavior`, `contentHandling`,
  `timeoutInMillis`, `cacheKeyParameters`, `cacheNamespace`, `responseTransferMode`, and
  `responses`: integration responses by `statusCode`, the key being the selection pattern unless it
  is `default`);
- the operation's `responses` its method responses (`headers` declare `method.response.header.X`),
  its `parameters` (header, query, path) its request parameters, a body's `$ref` its request model,
  `x-amazon-apigateway-request-validator` (else the document's) its validator, and its `security`
  (per operation, as AWS's import reads it) its API key requirement (an `apiKey` scheme in a
  header), authorizer (a scheme with `x-amazon-apigateway-authorizer`) or IAM authorization
  (`x-amazon-apigateway-authtype: awsSigv4`);
- `definitions` (`components.schemas`) become models, their `#/definitions/X` references bare
  model names; `x-amazon-apigateway-request-validators`, `-gateway-responses`,
  `-binary-media-types`, `-api-key-source` and `-policy` the API's own members.

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

VERBS = ("get", "put", "post", "delete", "options", "head", "patch")
ANY_METHOD = "x-amazon-apigateway-any-method"
X_INTEGRATION = "x-amazon-apigateway-integration"
_API = "apis[0]"
_STAGE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_LOCAL_MODEL_REF = re.compile(r"^#/(?:definitions|components/schemas)/([^/]+)$")
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
# Copied as they are from `x-amazon-apigateway-integration` to the config's integration.
_COPIED_MEMBERS = (
    "uri",
    "requestTemplates",
    "requestParameters",
    "contentHandling",
    "timeoutInMillis",
    "cacheKeyParameters",
    "cacheNamespace",
)
# Members with no local meaning (an IAM role, a TLS option of AWS's own network): accepted, unused.
_IGNORED_MEMBERS = (
    "credentials",
    "tlsConfig",
    "connectionType",
    "connectionId",
    "integrationSubtype",
    "payloadFormatVersion",
)
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
    integrations = [op.get(X_INTEGRATION) for _, _, op in _operations(document)]
    if any(isinstance(spec, dict) and "payloadFormatVersion" in spec for spec in integrations):
        return False
    if any(name in document for name in _REST_EXTENSIONS):
        return True
    for scheme in _schemes(document).values():
        if not isinstance(scheme, dict):
            continue
        authorizer = scheme.get("x-amazon-apigateway-authorizer")
        if isinstance(authorizer, dict) and str(authorizer.get("type", "")).lower() in (
            "token",
            "cognito_user_pools",
        ):
            return True
        if _is_api_key(scheme) and _scheme_used(document, scheme):
            return True
    for _, _, operation in _operations(document):
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
    translation = _Translation(document)
    config = translation.config()
    return config, translation.origins, translation.problems


class _Translation:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.swagger = "swagger" in document
        self.problems: list[str] = []
        self.origins = Origins({_API: ""})
        self.schemes_path = "securityDefinitions" if self.swagger else "components.securitySchemes"
        self.models_path = "definitions" if self.swagger else "components.schemas"

    def problem(self, where: str, reason: str) -> None:
        self.problems.append(f"{where}: {reason}")

    # -- the document as a whole ------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        document = self.document
        api: dict[str, Any] = {"name": self._title(), "protocolType": "REST"}
        self.origins[f"{_API}.name"] = "info.title"
        info = document.get("info")
        if isinstance(info, dict) and isinstance(info.get("description"), str):
            api["description"] = info["description"]
        validators = self._mapping("x-amazon-apigateway-request-validators")
        api["requestValidators"] = validators
        self.origins[f"{_API}.requestValidators"] = "x-amazon-apigateway-request-validators"
        api["gatewayResponses"] = {
            name: self._gateway_response(name, body)
            for name, body in self._mapping("x-amazon-apigateway-gateway-responses").items()
        }
        self.origins[f"{_API}.gatewayResponses"] = "x-amazon-apigateway-gateway-responses"
        for member, extension in (
            ("binaryMediaTypes", "x-amazon-apigateway-binary-media-types"),
            ("apiKeySource", "x-amazon-apigateway-api-key-source"),
            ("policy", "x-amazon-apigateway-policy"),
        ):
            self.origins[f"{_API}.{member}"] = extension
            if document.get(extension) is not None:
                api[member] = document[extension]
        if isinstance(api.get("apiKeySource"), str):
            api["apiKeySource"] = api["apiKeySource"].upper()
        if isinstance(api.get("policy"), str):
            try:
                api["policy"] = json.loads(api["policy"])
            except ValueError:
                self.problem("x-amazon-apigateway-policy", "not a JSON policy document")
                api.pop("policy")
        api["models"] = self._models()
        api["authorizers"] = self._authorizers()
        routes, integrations = self._routes(set(validators))
        api["routes"], api["integrations"] = routes, integrations
        api["stages"] = [{"stageName": self._stage_name()}]
        self.origins[f"{_API}.stages"] = (
            "basePath" if self.swagger else "servers[0].variables.basePath.default"
        )
        config: dict[str, Any] = {"apis": [api]}
        portico = document.get("x-portico")
        if portico is not None and not isinstance(portico, dict):
            self.problem("x-portico", "must be a mapping")
        elif isinstance(portico, dict):
            kind = portico.get("protocolType", "REST")
            if self.swagger and not (isinstance(kind, str) and kind.upper() == "REST"):
                self.problem(
                    "x-portico.protocolType",
                    "swagger 2.0 documents are REST APIs (HTTP APIs import OpenAPI 3)",
                )
            for name, value in portico.items():
                if name in _API_MEMBERS:
                    api[name] = value
                    self.origins[f"{_API}.{name}"] = f"x-portico.{name}"
                else:
                    config[name] = value
                    self.origins[name] = f"x-portico.{name}"
        return config

    def _title(self) -> str:
        info = self.document.get("info")
        title = info.get("title") if isinstance(info, dict) else None
        if not isinstance(title, str) or not title:
            self.problem("info.title", "required: the API's name (AWS refuses a document without one)")
            return "imported"
        return title

    def _mapping(self, path: str, within: dict[str, Any] | None = None, where: str | None = None) -> dict:
        value = (self.document if within is None else within).get(path)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(where or path, "must be a mapping")
            return {}
        return value

    def _stage_name(self) -> str:
        if self.swagger:
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

    def _gateway_response(self, name: str, body: Any) -> Any:
        self.origins[f"{_API}.gatewayResponses.{name}"] = f"x-amazon-apigateway-gateway-responses.{name}"
        if not isinstance(body, dict):
            return body
        out = dict(body)
        if isinstance(out.get("statusCode"), str) and out["statusCode"].isdigit():
            out["statusCode"] = int(out["statusCode"])
        return out

    def _models(self) -> dict[str, Any]:
        definitions = (
            self._mapping("definitions")
            if self.swagger
            else self._mapping("schemas", self._mapping("components"), "components.schemas")
        )
        models: dict[str, Any] = {}
        for name, schema in definitions.items():
            where = f"{self.models_path}.{name}"
            self.origins[f"{_API}.models.{name}"] = where
            if not isinstance(schema, dict):
                self.problem(where, "a schema is a mapping")
                continue
            model: dict[str, Any] = {"schema": _bare_model_refs(schema)}
            if isinstance(schema.get("description"), str):
                model["description"] = schema["description"]
            models[str(name)] = model
        self.origins[f"{_API}.models"] = self.models_path
        return models

    # -- security --------------------------------------------------------------------------

    def _authorizers(self) -> dict[str, Any]:
        authorizers: dict[str, Any] = {}
        for name, scheme in _schemes(self.document).items():
            extension = scheme.get("x-amazon-apigateway-authorizer") if isinstance(scheme, dict) else None
            if extension is None:
                continue
            where = f"{self.schemes_path}.{name}.x-amazon-apigateway-authorizer"
            self.origins[f"{_API}.authorizers.{name}"] = where
            if not isinstance(extension, dict):
                self.problem(where, "must be a mapping")
                continue
            authorizer: dict[str, Any] = {"authorizerType": str(extension.get("type") or "TOKEN").upper()}
            for member in (
                "authorizerUri",
                "identityValidationExpression",
                "authorizerResultTtlInSeconds",
                "providerARNs",
                "identitySource",
            ):
                if extension.get(member) is not None:
                    authorizer[member] = extension[member]
            # A token's header is the scheme's own (`name`, `in: header`) unless identitySource says.
            if (
                "identitySource" not in authorizer
                and authorizer["authorizerType"] in ("TOKEN", "COGNITO_USER_POOLS")
                and scheme.get("in") == "header"
            ):
                authorizer["identitySource"] = f"method.request.header.{scheme.get('name', 'Authorization')}"
            authorizers[str(name)] = authorizer
        return authorizers

    def _security(self, route: dict[str, Any], operation: dict[str, Any], where: str) -> None:
        # Per operation, as AWS's import reads it ("For each method, create a security requirement
        # object", "Configure a method to use API keys with an OpenAPI definition").
        requirements = operation.get("security")
        if requirements is None:
            requirements = []
        if not isinstance(requirements, list):
            self.problem(f"{where}.security", "must be a list of security requirements")
            return
        schemes = _schemes(self.document)
        for index, requirement in enumerate(requirements):
            if not isinstance(requirement, dict):
                self.problem(f"{where}.security[{index}]", "must be a mapping of scheme names to scopes")
                continue
            for name, scopes in requirement.items():
                scheme = schemes.get(name)
                if not isinstance(scheme, dict):
                    self.problem(
                        f"{where}.security[{index}].{name}",
                        f"no security scheme {name!r} in {self.schemes_path}",
                    )
                    continue
                authorizer = scheme.get("x-amazon-apigateway-authorizer")
                if isinstance(authorizer, dict):
                    kind = str(authorizer.get("type") or "TOKEN").upper()
                    route["authorizationType"] = (
                        "COGNITO_USER_POOLS" if kind == "COGNITO_USER_POOLS" else "CUSTOM"
                    )
                    route["authorizerId"] = name
                    if scopes and route["authorizationType"] == "COGNITO_USER_POOLS":
                        route["authorizationScopes"] = list(scopes)
                elif str(scheme.get("x-amazon-apigateway-authtype", "")).lower().startswith("aws"):
                    route["authorizationType"] = "AWS_IAM"
                elif _is_api_key(scheme):
                    route["apiKeyRequired"] = True
        auth = operation.get("x-amazon-apigateway-auth")
        if isinstance(auth, dict) and auth.get("type"):
            route["authorizationType"] = str(auth["type"]).upper()

    # -- operations ------------------------------------------------------------------------

    def _routes(self, validators: set[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        routes: list[dict[str, Any]] = []
        integrations: dict[str, Any] = {}
        paths = self.document.get("paths")
        if paths is None:
            paths = {}
        if not isinstance(paths, dict):
            self.problem("paths", "must be a mapping")
            return routes, integrations
        default_validator = self.document.get("x-amazon-apigateway-request-validator")
        if default_validator is not None and default_validator not in validators:
            self.problem(
                "x-amazon-apigateway-request-validator",
                f"no request validator {default_validator!r} in x-amazon-apigateway-request-validators",
            )
            default_validator = None
        for path, item in paths.items():
            if not isinstance(path, str) or not path.startswith("/"):
                self.problem(f"paths.{path}", "a path starts with /")
                continue
            if not isinstance(item, dict):
                self.problem(f"paths.{path}", "must be a mapping of operations")
                continue
            shared = item.get("parameters") or []
            for key, operation in item.items():
                method = "ANY" if key == ANY_METHOD else key.upper() if key in VERBS else None
                if method is None:
                    continue  # parameters, summary, servers, ...
                where = f"paths.{path}.{key}"
                if not isinstance(operation, dict):
                    self.problem(where, "must be a mapping")
                    continue
                spec = operation.get(X_INTEGRATION)
                if spec is None:
                    # AWS imports the method, then refuses to deploy it ("No integration defined
                    # for method").
                    self.problem(
                        where, f"no {X_INTEGRATION}: a method without an integration cannot be deployed"
                    )
                    continue
                if not isinstance(spec, dict):
                    self.problem(f"{where}.{X_INTEGRATION}", "must be a mapping")
                    continue
                name = f"{method} {path}"
                index = len(routes)
                route_at = f"{_API}.routes[{index}]"
                self.origins[route_at] = where
                for member, field in (
                    ("requestParameters", "parameters"),
                    ("requestModels", "requestBody" if not self.swagger else "parameters"),
                    ("methodResponses", "responses"),
                    ("requestValidatorId", "x-amazon-apigateway-request-validator"),
                    ("apiKeyRequired", "security"),
                    ("authorizerId", "security"),
                    ("authorizationType", "security"),
                    ("authorizationScopes", "security"),
                    ("integration", X_INTEGRATION),
                ):
                    self.origins[f"{route_at}.{member}"] = f"{where}.{field}"
                route: dict[str, Any] = {"routeKey": name, "integration": name}
                integrations[name] = self._integration(spec, f"{where}.{X_INTEGRATION}", name)
                # The route's own checks name its integration's responses from the route.
                responses_at = f"{_API}.integrations.{name}.integrationResponses"
                for key, value in list(self.origins.items()):
                    if key.startswith(responses_at):
                        self.origins[
                            f"{route_at}{key[len(responses_at) - len('.integrationResponses') :]}"
                        ] = value
                self._parameters(route, [*shared, *(operation.get("parameters") or [])], operation, where)
                self._method_responses(route, operation, where)
                validator = operation.get("x-amazon-apigateway-request-validator", default_validator)
                if validator is not None:
                    if validator in validators:
                        route["requestValidatorId"] = validator
                    else:
                        self.problem(
                            f"{where}.x-amazon-apigateway-request-validator",
                            f"no request validator {validator!r} in x-amazon-apigateway-request-validators",
                        )
                self._security(route, operation, where)
                routes.append(route)
        return routes, integrations

    def _integration(self, spec: dict[str, Any], where: str, name: str) -> dict[str, Any]:
        at = f"{_API}.integrations.{name}"
        self.origins[at] = where
        for member, field in (("method", "httpMethod"), ("integrationResponses", "responses")):
            self.origins[f"{at}.{member}"] = f"{where}.{field}"
        kind = spec.get("type")
        out: dict[str, Any] = {"type": kind.upper() if isinstance(kind, str) else kind}
        for member in _COPIED_MEMBERS:
            if spec.get(member) is not None:
                out[member] = spec[member]
        if spec.get("httpMethod") is not None:
            out["method"] = spec["httpMethod"]
        for member in ("passthroughBehavior", "responseTransferMode"):
            if isinstance(spec.get(member), str):
                out[member] = spec[member].upper()  # AWS writes `when_no_match`
            elif spec.get(member) is not None:
                out[member] = spec[member]
        if str(spec.get("connectionType", "INTERNET")).upper() != "INTERNET":
            self.problem(f"{where}.connectionType", "VPC links have no local meaning: INTERNET only")
        known = {"type", "httpMethod", "responses", "passthroughBehavior", "responseTransferMode"}
        for member in spec:
            if member not in known and member not in _COPIED_MEMBERS and member not in _IGNORED_MEMBERS:
                self.problem(f"{where}.{member}", "not a member of x-amazon-apigateway-integration")
        responses = spec.get("responses")
        if responses is None:
            return out
        if not isinstance(responses, dict):
            self.problem(f"{where}.responses", "must be a mapping of selection patterns to responses")
            return out
        integration_responses: dict[str, Any] = {}
        for pattern, response in responses.items():
            at_response = f"{where}.responses.{pattern}"
            if not isinstance(response, dict):
                self.problem(at_response, "must be a mapping")
                continue
            status = response.get("statusCode")
            if status is None:
                self.problem(f"{at_response}.statusCode", "required: the method response it answers with")
                continue
            status = str(status)
            body = {k: v for k, v in response.items() if k != "statusCode"}
            if pattern != "default":
                body["selectionPattern"] = str(pattern)
            # Integration responses are keyed by status code: a later one of the same status
            # replaces an earlier one, as PutIntegrationResponse would.
            integration_responses[status] = body
            self.origins[f"{at}.integrationResponses.{status}"] = at_response
        out["integrationResponses"] = integration_responses
        return out

    def _parameters(
        self, route: dict[str, Any], parameters: Any, operation: dict[str, Any], where: str
    ) -> None:
        if not isinstance(parameters, list):
            self.problem(f"{where}.parameters", "must be a list")
            return
        request: dict[str, bool] = {}
        models: dict[str, str] = {}
        for index, parameter in enumerate(parameters):
            parameter = self._resolve(parameter)
            at = f"{where}.parameters[{index}]"
            if not isinstance(parameter, dict):
                self.problem(at, "must be a mapping")
                continue
            location = parameter.get("in")
            if location in ("path", "query", "header"):
                if not isinstance(parameter.get("name"), str):
                    self.problem(f"{at}.name", "required")
                    continue
                kind = "querystring" if location == "query" else location
                request[f"method.request.{kind}.{parameter['name']}"] = bool(parameter.get("required", False))
            elif location == "body":
                model = _ref_name(parameter.get("schema"))
                if model:
                    models["application/json"] = model
        body = self._resolve(operation.get("requestBody"))
        content = body.get("content") if isinstance(body, dict) else None
        if isinstance(content, dict):
            for content_type, media in content.items():
                model = _ref_name(media.get("schema") if isinstance(media, dict) else None)
                if model:
                    models[content_type] = model
        if request:
            route["requestParameters"] = request
        if models:
            route["requestModels"] = models

    def _method_responses(self, route: dict[str, Any], operation: dict[str, Any], where: str) -> None:
        responses = operation.get("responses")
        if responses is None:
            return
        if not isinstance(responses, dict):
            self.problem(f"{where}.responses", "must be a mapping of status codes to responses")
            return
        method_responses: dict[str, Any] = {}
        for status, response in responses.items():
            status = str(status)
            if not status.isdigit():
                continue  # `default`: no method response of its own
            response = self._resolve(response) or {}
            if not isinstance(response, dict):
                self.problem(f"{where}.responses.{status}", "must be a mapping")
                continue
            out: dict[str, Any] = {}
            headers = response.get("headers")
            if isinstance(headers, dict) and headers:
                out["responseParameters"] = {f"method.response.header.{h}": False for h in headers}
            models = {}
            if _ref_name(response.get("schema")):
                models["application/json"] = _ref_name(response["schema"])
            content = response.get("content")
            if isinstance(content, dict):
                for content_type, media in content.items():
                    model = _ref_name(media.get("schema") if isinstance(media, dict) else None)
                    if model:
                        models[content_type] = model
            if models:
                out["responseModels"] = models
            method_responses[status] = out
        if method_responses:
            route["methodResponses"] = method_responses

    def _resolve(self, node: Any) -> Any:
        """A `$ref` to the document's own parameters, request bodies or responses, followed."""
        seen = 0
        while isinstance(node, dict) and isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/"):
            target: Any = self.document
            for part in node["$ref"][2:].split("/"):
                target = (
                    target.get(part.replace("~1", "/").replace("~0", "~"))
                    if isinstance(target, dict)
                    else None
                )
            if target is None or seen > 16:
                return node
            node, seen = target, seen + 1
        return node


def _schemes(document: dict[str, Any]) -> dict[str, Any]:
    if "swagger" in document:
        schemes = document.get("securityDefinitions")
    else:
        components = document.get("components")
        schemes = components.get("securitySchemes") if isinstance(components, dict) else None
    return schemes if isinstance(schemes, dict) else {}


def _is_api_key(scheme: dict[str, Any]) -> bool:
    return (
        scheme.get("type") == "apiKey"
        and scheme.get("in") == "header"
        and "x-amazon-apigateway-authorizer" not in scheme
        and not scheme.get("x-amazon-apigateway-authtype")
    )


def _scheme_used(document: dict[str, Any], scheme: dict[str, Any]) -> bool:
    names = {name for name, s in _schemes(document).items() if s is scheme}
    requirements = [operation.get("security") for _, _, operation in _operations(document)]
    return any(
        isinstance(need, dict) and names & set(need)
        for group in requirements
        if isinstance(group, list)
        for need in group
    )


def _operations(document: dict[str, Any]):
    paths = document.get("paths")
    if not isinstance(paths, dict):
        return
    for path, item in paths.items():
        if not isinstance(item, dict):
            continue
        for key, operation in item.items():
            if (key in VERBS or key == ANY_METHOD) and isinstance(operation, dict):
                yield path, key, operation


def _ref_name(schema: Any) -> str | None:
    if isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
        return schema["$ref"].rsplit("/", 1)[-1]
    return None


def _bare_model_refs(schema: Any) -> Any:
    """A definition as a model: `#/definitions/Pet` becomes `Pet`, which a model's `$ref` resolves
    against its own URI (`.../restapis/{apiId}/models/`) to the model named Pet."""
    if isinstance(schema, dict):
        out = {}
        for key, value in schema.items():
            found = _LOCAL_MODEL_REF.match(value) if key == "$ref" and isinstance(value, str) else None
            out[key] = found[1] if found else _bare_model_refs(value)
        return out
    if isinstance(schema, list):
        return [_bare_model_refs(item) for item in schema]
    return schema
