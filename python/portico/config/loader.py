"""Reading configuration files: Portico YAML, or an OpenAPI document as AWS imports it: an HTTP
API (OpenAPI 3, `openapi_to_config`), or a REST API (swagger 2.0, or OpenAPI 3 with REST APIs'
extensions; `portico.config.openapi_rest`).

Every failure becomes a `ConfigFileError` naming the file, the path of the bad field and the reason
(for an OpenAPI document, the document's own field path: `paths./pets.get.x-amazon-apigateway-
integration.type`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from portico.config.models import Config
from portico.config.openapi_rest import Origins, is_rest_document, rest_openapi_to_config

_OPENAPI_METHODS = ("get", "post", "put", "patch", "delete", "head", "options")


class ConfigFileError(ValueError):
    """A configuration file that cannot be served; the message says where and why."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"invalid configuration in {source}:\n{lines}")


def load_config(path: str | Path) -> Config:
    """Load and validate a Portico YAML/JSON file or an OpenAPI 3 document."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(source, [f"cannot read the file: {exc.strerror or exc}"]) from None
    return parse_config(text, source)


def parse_config(text: str, source: str = "<config>") -> Config:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigFileError(source, [f"{where}not valid YAML: {problem}"]) from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigFileError(source, [f"the top level must be a mapping, got {type(document).__name__}"])
    origins: Origins | None = None
    if "openapi" in document or "swagger" in document:
        if is_rest_document(document):
            document, origins, problems = rest_openapi_to_config(document)
            if problems:
                raise ConfigFileError(source, problems)
        else:
            document = openapi_to_config(document, source)
    try:
        config = Config.model_validate(document)
    except ValidationError as exc:
        problems = _describe(exc)
        if origins is not None:
            problems = [origins.relocate(problem) for problem in problems]
        raise ConfigFileError(source, problems) from None
    if origins is not None:
        config._origins = origins
    return config


def relocate(config: Config, problem: str) -> str:
    """A compiler's problem (`apis[0].routes[2].integration: ...`) named by the field of the
    OpenAPI document `config` was read from, when it was read from one."""
    origins = config._origins
    return origins.relocate(problem) if isinstance(origins, Origins) else problem


def _describe(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors():
        location = _location(error["loc"])
        message = error["msg"]
        # pydantic prefixes messages of our own validators with "Value error, ".
        message = message.removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        problems.append(f"{location}: {message}" if location else message)
    return problems


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in ("function-after[_per_type(), Integration]",) or "function-" in str(part):
            continue
        else:
            text += f".{part}" if text else str(part)
    return text


def openapi_to_config(document: dict[str, Any], source: str) -> dict[str, Any]:
    """Translate an OpenAPI 3 document with `x-amazon-apigateway-*` extensions into a config dict.

    This follows AWS's HTTP API import: each path+operation with an `x-amazon-apigateway-integration`
    becomes a route, `x-amazon-apigateway-any-method` becomes `ANY`, the path `$default` becomes the
    `$default` route, and `x-amazon-apigateway-cors` the API's CORS configuration. The API is served
    on a `$default` stage.
    """
    problems: list[str] = []
    info = document.get("info") or {}
    name = info.get("title") if isinstance(info, dict) else None
    routes: list[dict[str, Any]] = []
    integrations: dict[str, Any] = {}
    paths = document.get("paths") or {}
    if not isinstance(paths, dict):
        problems.append("paths: must be a mapping")
        paths = {}
    for path, operations in paths.items():
        if not isinstance(operations, dict):
            problems.append(f"paths.{path}: must be a mapping of operations")
            continue
        for key, operation in operations.items():
            if key == "x-amazon-apigateway-any-method":
                method = "ANY"
            elif key in _OPENAPI_METHODS:
                method = key.upper()
            else:
                continue  # parameters, summary, servers, ...
            where = f"paths.{path}.{key}"
            if not isinstance(operation, dict):
                problems.append(f"{where}: must be a mapping")
                continue
            spec = operation.get("x-amazon-apigateway-integration")
            if spec is None:
                problems.append(
                    f"{where}: no x-amazon-apigateway-integration (AWS requires one per operation)"
                )
                continue
            if not isinstance(spec, dict):
                problems.append(f"{where}.x-amazon-apigateway-integration: must be a mapping")
                continue
            route_key = "$default" if path == "$default" else f"{method} {path}"
            integration_name = f"{method.lower()}{path}"
            integrations[integration_name] = _openapi_integration(spec)
            route: dict[str, Any] = {"route": route_key, "integration": integration_name}
            if _openapi_iam(operation, document):
                route["authorizationType"] = "AWS_IAM"
            routes.append(route)
    if problems:
        raise ConfigFileError(source, problems)
    api: dict[str, Any] = {
        "name": name or Path(source).stem or "imported",
        "routes": routes,
        "integrations": integrations,
        "stages": [{"name": "$default"}],
    }
    cors = document.get("x-amazon-apigateway-cors")
    if cors is not None:
        api["cors"] = cors
    config: dict[str, Any] = {"apis": [api]}
    portico_ext = document.get("x-portico")
    if isinstance(portico_ext, dict):
        # Portico-only settings (functions, settings) may ride along in the same document.
        config.update({k: v for k, v in portico_ext.items() if k != "protocolType"})
    return config


def _openapi_iam(operation: dict[str, Any], document: dict[str, Any]) -> bool:
    """Whether an operation is `AWS_IAM`, as AWS's import reads it: `x-amazon-apigateway-auth`
    of type `AWS_IAM`, or a security requirement (the operation's, else the document's) naming a
    scheme whose `x-amazon-apigateway-authtype` is `awsSigv4`."""
    auth = operation.get("x-amazon-apigateway-auth")
    if isinstance(auth, dict) and str(auth.get("type", "")).upper() == "AWS_IAM":
        return True
    components = document.get("components")
    schemes = components.get("securitySchemes") if isinstance(components, dict) else None
    if not isinstance(schemes, dict):
        return False
    sigv4 = {
        name
        for name, scheme in schemes.items()
        if isinstance(scheme, dict)
        and str(scheme.get("x-amazon-apigateway-authtype", "")).lower() == "awssigv4"
    }
    security = operation.get("security", document.get("security"))
    if not isinstance(security, list):
        return False
    return any(isinstance(need, dict) and any(name in sigv4 for name in need) for need in security)


def _openapi_integration(spec: dict[str, Any]) -> dict[str, Any]:
    kind = str(spec.get("type", "")).upper()
    out: dict[str, Any] = {"type": kind}
    uri = spec.get("uri", spec.get("integrationUri"))
    if uri is not None:
        out["uri"] = uri
    if "httpMethod" in spec or "integrationMethod" in spec:
        out["method"] = spec.get("httpMethod", spec.get("integrationMethod"))
    if "payloadFormatVersion" in spec:
        out["payloadFormatVersion"] = str(spec["payloadFormatVersion"])
    if "timeoutInMillis" in spec:
        out["timeoutInMillis"] = spec["timeoutInMillis"]
    return out
