"""One reading of a REST API OpenAPI document (swagger 2.0, or OpenAPI 3 with
`x-amazon-apigateway-*` extensions), as AWS's `ImportRestApi` reads it ("Working with API Gateway
extensions to OpenAPI").

`read_document` turns the document into neutral records in AWS's own member names, each with the
document field path it came from (`where`). Two writers use them: the control plane's importer
(`portico.control.apigateway.openapi`: control-plane records) and the config loader
(`portico.config.openapi_rest`: one `protocolType: REST` API of the config model). The reader
refuses what AWS's import refuses because of the document's shape (a member that is not a mapping,
an undefined security scheme or request validator, an integration response without its
`statusCode`), as `problems` worded `field.path: reason`; values (an integration type, a status
code) are the writers' to check, each with its own model's checks.

- each operation (`x-amazon-apigateway-any-method` is `ANY`) is an `Operation`: its path-level and
  own `parameters` its request parameters, a body's `$ref` (swagger `in: body`, OpenAPI 3
  `requestBody`) its request models, its `responses` its method responses (`headers` declare
  `method.response.header.X`), `x-amazon-apigateway-request-validator` (else the document's) its
  validator, its `security` (per operation, as AWS's import reads it) an API key requirement (an
  `apiKey` scheme in a header), an authorizer (a scheme with `x-amazon-apigateway-authorizer`) or
  IAM authorization (`x-amazon-apigateway-authtype: awsSigv4`), `x-amazon-apigateway-auth` its
  authorization type; `x-amazon-apigateway-integration` its `Integration`, whose `responses` are
  integration responses by `statusCode` (the key the selection pattern unless it is `default`);
- `$ref`s to the document's own parameters, request bodies and responses are followed;
- `definitions` (`components.schemas`) are `Model`s (`model_schema` rewrites their references to
  each other), security schemes with `x-amazon-apigateway-authorizer` `Authorizer`s, and
  `-request-validators`, `-gateway-responses`, `-binary-media-types`, `-api-key-source`,
  `-minimum-compression-size` and `-policy` the API's own members.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

VERBS = ("get", "put", "post", "delete", "options", "head", "patch")
ANY_METHOD = "x-amazon-apigateway-any-method"
X_INTEGRATION = "x-amazon-apigateway-integration"
X_AUTHORIZER = "x-amazon-apigateway-authorizer"
X_VALIDATOR = "x-amazon-apigateway-request-validator"
_LOCAL_MODEL_REF = re.compile(r"^#/(?:definitions|components/schemas)/([^/]+)$")
# x-amazon-apigateway-integration members AWS stores upper-case (its examples write `aws_proxy`,
# `when_no_match`).
_UPPER_MEMBERS = ("type", "httpMethod", "connectionType", "passthroughBehavior", "responseTransferMode")
# The members of x-amazon-apigateway-integration (but `responses`) and of
# x-amazon-apigateway-authorizer (but `type`), for import and export alike.
EXTENSION_INTEGRATION_MEMBERS = (
    *_UPPER_MEMBERS,
    "uri",
    "connectionId",
    "credentials",
    "requestParameters",
    "requestTemplates",
    "contentHandling",
    "tlsConfig",
    "timeoutInMillis",
    "cacheNamespace",
    "cacheKeyParameters",
    # HTTP APIs' members, which AWS's examples of REST integrations write too.
    "integrationSubtype",
    "payloadFormatVersion",
)
EXTENSION_AUTHORIZER_MEMBERS = (
    "authorizerUri",
    "authorizerCredentials",
    "identitySource",
    "identityValidationExpression",
    "authorizerResultTtlInSeconds",
    "providerARNs",
)


@dataclass
class Integration:
    where: str
    # AWS `Integration` members given (not None) under the extension's names (`httpMethod`),
    # `_UPPER_MEMBERS` upper-cased.
    members: dict[str, Any]
    unknown: list[str]  # members the extension does not have
    # By statusCode (a later one replaces an earlier one, as PutIntegrationResponse would): AWS
    # `IntegrationResponse` members as written, `selectionPattern` the key unless it is `default`.
    responses: dict[str, dict[str, Any]] = field(default_factory=dict)
    response_where: dict[str, str] = field(default_factory=dict)


@dataclass
class Operation:
    path: str
    verb: str  # GET, ..., ANY
    where: str  # paths./pets.get
    # AWS `Method` members the operation gives: operationName, requestParameters, requestModels,
    # methodResponses (by status), requestValidatorId and authorizerId (by name),
    # authorizationType, authorizationScopes, apiKeyRequired.
    method: dict[str, Any] = field(default_factory=dict)
    integration: Integration | None = None


@dataclass
class Authorizer:
    where: str
    # AWS `Authorizer` members: type, authType (the scheme's x-amazon-apigateway-authtype),
    # authorizerUri, identitySource, ... as given (not None).
    members: dict[str, Any]


@dataclass
class Model:
    where: str
    schema: dict[str, Any]
    description: str | None


@dataclass
class RestDocument:
    swagger: bool
    schemes_path: str
    models_path: str
    paths: list[str] = field(default_factory=list)  # every valid path, operations or not
    operations: list[Operation] = field(default_factory=list)
    authorizers: dict[str, Authorizer] = field(default_factory=dict)
    models: dict[str, Model] = field(default_factory=dict)
    validators: dict[str, dict[str, Any]] = field(default_factory=dict)
    gateway_responses: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The API's own members by their AWS names, when the document gives them: name (info.title),
    # description, version, binaryMediaTypes, apiKeySource (upper-cased), minimumCompressionSize,
    # policy (a mapping or its JSON text).
    api_members: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def schemes(document: dict[str, Any]) -> dict[str, Any]:
    """The document's security schemes (swagger `securityDefinitions`), {} when malformed."""
    if "swagger" in document:
        found = document.get("securityDefinitions")
    else:
        components = document.get("components")
        found = components.get("securitySchemes") if isinstance(components, dict) else None
    return found if isinstance(found, dict) else {}


def is_api_key(scheme: dict[str, Any]) -> bool:
    """An API key requirement: AWS's `api_key` scheme, a header that is no authorizer's."""
    return (
        scheme.get("type") == "apiKey"
        and scheme.get("in") == "header"
        and X_AUTHORIZER not in scheme
        and not scheme.get("x-amazon-apigateway-authtype")
    )


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(path, key, operation) of every well-formed operation, for a look before reading."""
    paths = document.get("paths")
    for path, item in paths.items() if isinstance(paths, dict) else ():
        for key, operation in item.items() if isinstance(item, dict) else ():
            if (key in VERBS or key == ANY_METHOD) and isinstance(operation, dict):
                yield path, key, operation


def model_schema(schema: Any, rewrite: Callable[[str], str]) -> Any:
    """`schema` with each reference to another definition (`#/definitions/Pet`,
    `#/components/schemas/Pet`) replaced by `rewrite("Pet")`."""
    if isinstance(schema, dict):
        out = {}
        for key, value in schema.items():
            found = _LOCAL_MODEL_REF.match(value) if key == "$ref" and isinstance(value, str) else None
            out[key] = rewrite(found[1]) if found else model_schema(value, rewrite)
        return out
    if isinstance(schema, list):
        return [model_schema(item, rewrite) for item in schema]
    return schema


def read_document(document: dict[str, Any], known_validators: set[str] = frozenset()) -> RestDocument:
    """The document's records; `known_validators` are the API's request validators already stored
    (PutRestApi's merge), which operations may name too."""
    return _Reader(document, known_validators).read()


def _ref_name(schema: Any) -> str | None:
    if isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
        return schema["$ref"].rsplit("/", 1)[-1]
    return None


def _content_models(content: Any, into: dict[str, str]) -> None:
    """OpenAPI 3 `content`: each media type whose schema is a `$ref` names its model."""
    for content_type, media in content.items() if isinstance(content, dict) else ():
        model = _ref_name(media.get("schema") if isinstance(media, dict) else None)
        if model:
            into[content_type] = model


class _Reader:
    def __init__(self, document: dict[str, Any], known_validators: set[str]) -> None:
        self.document = document
        swagger = "swagger" in document
        self.out = RestDocument(
            swagger=swagger,
            schemes_path="securityDefinitions" if swagger else "components.securitySchemes",
            models_path="definitions" if swagger else "components.schemas",
        )
        self.known_validators = known_validators

    def problem(self, where: str, reason: str) -> None:
        if f"{where}: {reason}" not in self.out.problems:  # `components` is read twice
            self.out.problems.append(f"{where}: {reason}")

    def mapping(self, value: Any, where: str) -> dict:
        """`value` when it is a mapping, {} when absent; a problem otherwise."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(where, "must be a mapping")
            return {}
        return value

    def section(self, path: str) -> dict:
        """The mapping at the document's dotted field `path` (`components.schemas`)."""
        found: Any = self.document
        for depth, part in enumerate(path.split(".")):
            found = self.mapping(found.get(part), ".".join(path.split(".")[: depth + 1]))
        return found

    def read(self) -> RestDocument:
        out = self.out
        self.api_members()
        for extension, records in (
            ("x-amazon-apigateway-request-validators", out.validators),
            ("x-amazon-apigateway-gateway-responses", out.gateway_responses),
        ):
            for name, body in self.section(extension).items():
                records[str(name)] = self.mapping(body, f"{extension}.{name}")
        self.models()
        self.authorizers()
        self.paths()
        return out

    def api_members(self) -> None:
        document, members = self.document, self.out.api_members
        info = document.get("info") if isinstance(document.get("info"), dict) else {}
        if isinstance(info.get("title"), str) and info["title"]:
            members["name"] = info["title"]
        else:
            self.problem("info.title", "required: the API's name (AWS refuses a document without one)")
        if isinstance(info.get("description"), str):
            members["description"] = info["description"]
        if info.get("version") is not None:
            members["version"] = str(info["version"])
        for member, extension in (
            ("binaryMediaTypes", "x-amazon-apigateway-binary-media-types"),
            ("apiKeySource", "x-amazon-apigateway-api-key-source"),
            ("minimumCompressionSize", "x-amazon-apigateway-minimum-compression-size"),
            ("policy", "x-amazon-apigateway-policy"),
        ):
            if document.get(extension) is not None:
                members[member] = document[extension]
        if isinstance(members.get("apiKeySource"), str):
            members["apiKeySource"] = members["apiKeySource"].upper()
        if isinstance(members.get("policy"), str):
            try:
                json.loads(members["policy"])
            except ValueError:
                self.problem("x-amazon-apigateway-policy", "not a JSON policy document")
                del members["policy"]

    def models(self) -> None:
        path = self.out.models_path
        for name, schema in self.section(path).items():
            where = f"{path}.{name}"
            if not isinstance(schema, dict):
                self.problem(where, "a schema is a mapping")
                continue
            description = schema.get("description")
            self.out.models[str(name)] = Model(
                where, schema, description if isinstance(description, str) else None
            )

    def authorizers(self) -> None:
        path = self.out.schemes_path
        for name, scheme in self.section(path).items():
            if not isinstance(scheme, dict):
                self.problem(f"{path}.{name}", "must be a mapping")
                continue
            if scheme.get(X_AUTHORIZER) is None:
                continue
            where = f"{path}.{name}.{X_AUTHORIZER}"
            extension = scheme[X_AUTHORIZER]
            if not isinstance(extension, dict):
                self.problem(where, "must be a mapping")
                continue
            members = {"type": str(extension.get("type") or "TOKEN").upper()}
            if scheme.get("x-amazon-apigateway-authtype"):
                members["authType"] = scheme["x-amazon-apigateway-authtype"]
            members.update(
                (k, extension[k]) for k in EXTENSION_AUTHORIZER_MEMBERS if extension.get(k) is not None
            )
            # A token's header is the scheme's own (`name`, `in: header`) unless identitySource says.
            if (
                "identitySource" not in members
                and members["type"] in ("TOKEN", "COGNITO_USER_POOLS")
                and scheme.get("in") == "header"
            ):
                members["identitySource"] = f"method.request.header.{scheme.get('name', 'Authorization')}"
            self.out.authorizers[str(name)] = Authorizer(where, members)

    # -- operations ------------------------------------------------------------------------

    def paths(self) -> None:
        default_validator = self.document.get(X_VALIDATOR)
        if default_validator is not None and not self.validator_known(default_validator, X_VALIDATOR):
            default_validator = None
        for path, item in self.section("paths").items():
            if not isinstance(path, str) or not path.startswith("/"):
                self.problem(f"paths.{path}", "a path starts with /")
                continue
            if not isinstance(item, dict):
                self.problem(f"paths.{path}", "must be a mapping of operations")
                continue
            self.out.paths.append(path)
            for key, operation in item.items():
                verb = "ANY" if key == ANY_METHOD else key.upper() if key in VERBS else None
                if verb is None:
                    continue  # parameters, summary, servers, ...
                where = f"paths.{path}.{key}"
                if not isinstance(operation, dict):
                    self.problem(where, "must be a mapping")
                    continue
                op = Operation(path, verb, where)
                method = op.method
                if operation.get("operationId"):
                    method["operationName"] = str(operation["operationId"])
                self.request(method, item.get("parameters") or [], operation, where)
                self.method_responses(method, operation.get("responses"), where)
                validator = operation.get(X_VALIDATOR, default_validator)
                if validator is not None and self.validator_known(validator, f"{where}.{X_VALIDATOR}"):
                    method["requestValidatorId"] = validator
                self.security(method, operation, where)
                if operation.get(X_INTEGRATION) is not None:
                    op.integration = self.integration(operation[X_INTEGRATION], f"{where}.{X_INTEGRATION}")
                self.out.operations.append(op)

    def validator_known(self, name: Any, where: str) -> bool:
        if isinstance(name, str) and (name in self.out.validators or name in self.known_validators):
            return True
        self.problem(where, f"no request validator {name!r} in x-amazon-apigateway-request-validators")
        return False

    def request(self, method: dict[str, Any], shared: Any, operation: dict[str, Any], where: str) -> None:
        """Request parameters (the path's and the operation's own) and request models."""
        own = operation.get("parameters") or []
        if not (isinstance(shared, list) and isinstance(own, list)):
            self.problem(f"{where}.parameters", "must be a list")
            shared = own = []
        parameters: dict[str, bool] = {}
        models: dict[str, str] = {}
        for index, parameter in enumerate([*shared, *own]):
            parameter = self.resolve(parameter)
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
                parameters[f"method.request.{kind}.{parameter['name']}"] = bool(
                    parameter.get("required", False)
                )
            elif location == "body" and _ref_name(parameter.get("schema")):
                models["application/json"] = _ref_name(parameter["schema"])
        body = self.resolve(operation.get("requestBody"))
        _content_models(body.get("content") if isinstance(body, dict) else None, models)
        if parameters:
            method["requestParameters"] = parameters
        if models:
            method["requestModels"] = models

    def method_responses(self, method: dict[str, Any], responses: Any, where: str) -> None:
        if responses is not None and not isinstance(responses, dict):
            self.problem(f"{where}.responses", "must be a mapping of status codes to responses")
            return
        for status, response in (responses or {}).items():
            status = str(status)
            if not status.isdigit():
                continue  # `default`: no method response of its own
            response = self.resolve(response) or {}
            if not isinstance(response, dict):
                self.problem(f"{where}.responses.{status}", "must be a mapping")
                continue
            out: dict[str, Any] = {}
            headers = response.get("headers")
            if isinstance(headers, dict) and headers:
                out["responseParameters"] = {f"method.response.header.{h}": False for h in headers}
            models: dict[str, str] = {}
            if _ref_name(response.get("schema")):
                models["application/json"] = _ref_name(response["schema"])
            _content_models(response.get("content"), models)
            if models:
                out["responseModels"] = models
            method.setdefault("methodResponses", {})[status] = out

    def security(self, method: dict[str, Any], operation: dict[str, Any], where: str) -> None:
        # Per operation, as AWS's import reads it ("For each method, create a security requirement
        # object", "Configure a method to use API keys with an OpenAPI definition").
        requirements = operation.get("security") or []
        if not isinstance(requirements, list):
            self.problem(f"{where}.security", "must be a list of security requirements")
            return
        known = schemes(self.document)
        for index, requirement in enumerate(requirements):
            if not isinstance(requirement, dict):
                self.problem(f"{where}.security[{index}]", "must be a mapping of scheme names to scopes")
                continue
            for name, scopes in requirement.items():
                scheme = known.get(name)
                if not isinstance(scheme, dict):
                    self.problem(
                        f"{where}.security[{index}].{name}",
                        f"no security scheme {name!r} in {self.out.schemes_path}",
                    )
                    continue
                authorizer = self.out.authorizers.get(name)
                if authorizer is not None:
                    cognito = authorizer.members["type"] == "COGNITO_USER_POOLS"
                    method["authorizationType"] = "COGNITO_USER_POOLS" if cognito else "CUSTOM"
                    method["authorizerId"] = name
                    # Scopes are a Cognito authorizer's (AWS `Method.authorizationScopes`).
                    if scopes and cognito:
                        method["authorizationScopes"] = list(scopes)
                elif str(scheme.get("x-amazon-apigateway-authtype", "")).lower().startswith("aws"):
                    method["authorizationType"] = "AWS_IAM"
                elif is_api_key(scheme):
                    method["apiKeyRequired"] = True
        auth = operation.get("x-amazon-apigateway-auth")
        if isinstance(auth, dict) and auth.get("type"):
            method["authorizationType"] = str(auth["type"]).upper()

    def integration(self, spec: Any, where: str) -> Integration | None:
        if not isinstance(spec, dict):
            self.problem(where, "must be a mapping")
            return None
        members = {name: spec[name] for name in EXTENSION_INTEGRATION_MEMBERS if spec.get(name) is not None}
        for name in _UPPER_MEMBERS:
            if isinstance(members.get(name), str):
                members[name] = members[name].upper()
        unknown = [name for name in spec if name not in EXTENSION_INTEGRATION_MEMBERS and name != "responses"]
        integration = Integration(where, members, unknown)
        responses = spec.get("responses")
        if responses is not None and not isinstance(responses, dict):
            self.problem(f"{where}.responses", "must be a mapping of selection patterns to responses")
            return integration
        for pattern, response in (responses or {}).items():
            at = f"{where}.responses.{pattern}"
            if not isinstance(response, dict):
                self.problem(at, "must be a mapping")
            elif response.get("statusCode") is None:
                self.problem(f"{at}.statusCode", "required: the method response it answers with")
            else:
                status = str(response["statusCode"])
                out = {k: v for k, v in response.items() if k != "statusCode"}
                if pattern != "default":
                    out["selectionPattern"] = str(pattern)
                integration.responses[status], integration.response_where[status] = out, at
        return integration

    def resolve(self, node: Any) -> Any:
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
