"""The rest-json protocol, server side, driven by botocore's service models.

Nothing here knows an operation by name: `Service(name)` loads `service-2.json` for
`apigateway` or `apigatewayv2` and derives everything from it.

- `match(method, raw_path, query)`: which operation a request is. The path is matched segment by
  segment on the percent-DECODED segments against each operation's `requestUri` template
  (`{param}` takes one segment, `{param+}` the rest; literals after `?` in the template, like
  `?mode=import`, must be present in the query). Templates with query literals win, then those
  with more literal segments.
- `parse(match, query, headers, body)`: the input shape as a dict keyed by MODEL member names
  (`ApiId` for v2, `restApiId` for v1), from the uri/querystring/header/headers locations (by
  `locationName`), a `payload` member (blob = the raw bytes, string = the text, structure = JSON),
  or the JSON body (by `locationName`). Strings from the URL and headers are converted to the
  member's type; timestamps become float epoch seconds. Missing required members and values
  outside an enum are 400 BadRequestException with AWS's validation wording.
- `serialise(operation, result)`: the output shape from a dict keyed by model member names (wire
  names are accepted too) to (status, headers, body): None is omitted, timestamps follow the
  member's `timestampFormat` (else epoch seconds in JSON, HTTP-date in headers), header-located
  members become headers, a blob/string payload member is the raw body. The status is the
  operation's `http.responseCode` (default 200).
- `serialise_error(err)`: `{"message": ...}` + extra members, `x-amzn-ErrorType`, and the status
  from the model's error shape when the code is one of the service's errors.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import functools
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import botocore.loaders
import botocore.model

from portico.control.errors import (
    BadRequestException,
    ServiceError,
    UnknownOperationException,
)

SERVICES = ("apigateway", "apigatewayv2")
JSON_CONTENT_TYPE = "application/json"
NESTED_TOO_DEEPLY = "Could not parse request body into json: the document is nested too deeply"


@dataclass(frozen=True)
class Match:
    """A request matched to an operation."""

    operation: botocore.model.OperationModel
    path_params: dict[str, str]  # by locationName, decoded
    query_literals: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        return self.operation.name


@dataclass(frozen=True)
class _Template:
    operation: botocore.model.OperationModel
    method: str
    segments: tuple[tuple[str, str], ...]  # ("lit", text) | ("param", name) | ("greedy", name)
    query_literals: tuple[tuple[str, str], ...]
    rank: tuple = field(compare=False, default=())

    @classmethod
    def build(cls, operation: botocore.model.OperationModel) -> _Template:
        uri = operation.http["requestUri"]
        path, _, query = uri.partition("?")
        segments = []
        for text in path.strip("/").split("/") if path.strip("/") else []:
            if text.startswith("{") and text.endswith("}"):
                name = text[1:-1]
                segments.append(("greedy", name[:-1]) if name.endswith("+") else ("param", name))
            elif "{" in text:
                raise ValueError(f"{operation.name}: unsupported uri template segment {text!r}")
            else:
                segments.append(("lit", text))
        literals = []
        for pair in filter(None, query.split("&")):
            key, _, value = pair.partition("=")
            literals.append((key, value))
        # Query literals first, then literal segments before parameters, position by position.
        kinds = {"lit": 0, "param": 1, "greedy": 2}
        rank = (-len(literals), tuple(kinds[kind] for kind, _ in segments))
        return cls(operation, operation.http["method"].upper(), tuple(segments), tuple(literals), rank)

    def match(self, segments: list[str], query: Mapping[str, list[str]]) -> dict[str, str] | None:
        params: dict[str, str] = {}
        for index, (kind, text) in enumerate(self.segments):
            if kind == "greedy":
                rest = segments[index:]
                if not rest or not "".join(rest):
                    return None
                params[text] = "/".join(rest)
                break
            if index >= len(segments):
                return None
            segment = segments[index]
            if kind == "lit":
                if segment != text:
                    return None
            elif not segment:
                return None
            else:
                params[text] = segment
        else:
            if len(segments) != len(self.segments):
                return None
        for key, value in self.query_literals:
            if value not in query.get(key, ()) and not (value == "" and key in query):
                return None
        return params


def parse_query(raw_query: str) -> list[tuple[str, str]]:
    """Decode a raw query string into (key, value) pairs, in order (`+` stays a plus, as AWS does)."""
    pairs = []
    for pair in raw_query.split("&"):
        if pair:
            key, _, value = pair.partition("=")
            pairs.append((unquote(key), unquote(value)))
    return pairs


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]


class _Validation:
    """Collects constraint violations and reports them the way AWS's front end does."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def add(self, value: Any, where: str, constraint: str) -> None:
        shown = "null" if value is None else f"'{value}'"
        self.errors.append(f"Value {shown} at '{where}' failed to satisfy constraint: {constraint}")

    def raise_if_any(self) -> None:
        if self.errors:
            count = len(self.errors)
            noun = "error" if count == 1 else "errors"
            raise BadRequestException(f"{count} validation {noun} detected: " + "; ".join(self.errors))


class Service:
    """One service model: request matching, input parsing, output and error serialisation."""

    def __init__(self, name: str, loader: botocore.loaders.Loader | None = None) -> None:
        loader = loader or botocore.loaders.Loader()
        self.name = name
        self.model = botocore.model.ServiceModel(loader.load_service_model(name, "service-2"), name)
        by_method: dict[str, list[_Template]] = {}
        for op_name in self.model.operation_names:
            template = _Template.build(self.model.operation_model(op_name))
            by_method.setdefault(template.method, []).append(template)
        for templates in by_method.values():
            templates.sort(key=lambda t: t.rank)
        self._templates = by_method
        self._literals = {t.operation.name: t.query_literals for ts in by_method.values() for t in ts}
        self._error_shapes = {
            name: self.model.shape_for(name)
            for name in self.model.shape_names
            if self.model.shape_for(name).metadata.get("exception")
        }

    def operation(self, name: str) -> botocore.model.OperationModel:
        return self.model.operation_model(name)

    def shape(self, name: str) -> botocore.model.Shape:
        return self.model.shape_for(name)

    # -- requests -----------------------------------------------------------------------------

    def match(self, method: str, raw_path: str, query: Iterable[tuple[str, str]] = ()) -> Match:
        """The operation for a request, or UnknownOperationException (404)."""
        path = raw_path.partition("?")[0]
        segments = [unquote(s) for s in path.strip("/").split("/")] if path.strip("/") else []
        grouped: dict[str, list[str]] = {}
        for key, value in query:
            grouped.setdefault(key, []).append(value)
        for template in self._templates.get(method.upper(), ()):
            params = template.match(segments, grouped)
            if params is not None:
                return Match(template.operation, params, template.query_literals)
        raise UnknownOperationException(f"Unknown operation: {method.upper()} {path}")

    def parse(
        self,
        match: Match,
        query: Iterable[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> dict[str, Any]:
        """The operation's input as a dict keyed by model member names."""
        shape = match.operation.input_shape
        if shape is None:
            return {}
        headers = headers or {}
        query = list(query)
        check = _Validation()
        context = _lower_first(match.operation.name) + "Input"
        out: dict[str, Any] = {}
        payload = shape.serialization.get("payload")
        literal_keys = {key for key, _ in match.query_literals}
        claimed = literal_keys | {
            m.serialization.get("name", n)
            for n, m in shape.members.items()
            if m.serialization.get("location") == "querystring" and m.type_name != "map"
        }
        body_members: dict[str, tuple[str, botocore.model.Shape]] = {}
        for name, member in shape.members.items():
            location = member.serialization.get("location")
            wire = member.serialization.get("name", name)
            where = f"{context}.{wire}"
            if location == "uri":
                if wire in match.path_params:
                    out[name] = self._from_text(member, match.path_params[wire], where, check)
            elif location == "querystring":
                if member.type_name == "map":
                    values: dict[str, Any] = {}
                    for key, value in query:
                        if key in claimed:
                            continue
                        if member.value.type_name == "list":
                            values.setdefault(key, []).append(value)
                        else:
                            values[key] = value
                    if values:
                        out[name] = values
                    continue
                found = [value for key, value in query if key == wire]
                if not found:
                    continue
                if member.type_name == "list":
                    out[name] = [self._from_text(member.member, v, where, check) for v in found]
                else:
                    out[name] = self._from_text(member, found[-1], where, check)
            elif location == "header":
                value = _header(headers, wire)
                if value is not None:
                    out[name] = self._from_text(member, value, where, check)
            elif location == "headers":
                prefix = wire.lower()
                values = {k[len(prefix) :]: v for k, v in headers.items() if k.lower().startswith(prefix)}
                if values:
                    out[name] = values
            elif name == payload:
                if member.type_name == "blob":
                    out[name] = bytes(body)
                elif member.type_name == "string":
                    out[name] = bytes(body).decode("utf-8", "replace")
                elif body.strip():
                    out[name] = self._from_json(member, _load_json(body), where, check)
            else:
                body_members[wire] = (name, member)
        if body_members and not payload and body.strip():
            document = _load_json(body)
            if not isinstance(document, dict):
                raise BadRequestException("Could not parse request body into json: expected a JSON object")
            for wire, (name, member) in body_members.items():
                if document.get(wire) is not None:
                    out[name] = self._from_json(member, document[wire], f"{context}.{wire}", check)
        for name in shape.required_members:
            if out.get(name) is None:
                wire = shape.members[name].serialization.get("name", name)
                check.add(None, f"{context}.{wire}", "Member must not be null")
        check.raise_if_any()
        return out

    def _from_text(self, shape: botocore.model.Shape, text: str, where: str, check: _Validation) -> Any:
        kind = shape.type_name
        try:
            if kind in ("integer", "long"):
                return int(text)
            if kind in ("double", "float"):
                return float(text)
            if kind == "boolean":
                lowered = text.strip().lower()
                if lowered not in ("true", "false"):
                    raise ValueError(text)
                return lowered == "true"
            if kind == "timestamp":
                return _parse_timestamp(text)
            if kind == "blob":
                return base64.b64decode(text, validate=True)
        except (ValueError, binascii.Error):
            check.add(text, where, f"Member must be of type {kind}")
            return None
        self._check_enum(shape, text, where, check)
        return text

    def _from_json(self, shape: botocore.model.Shape, value: Any, where: str, check: _Validation) -> Any:
        kind = shape.type_name
        if value is None:
            return None
        if kind == "structure":
            if not isinstance(value, dict):
                return _type_error(where, "an object")
            out = {}
            for name, member in shape.members.items():
                wire = member.serialization.get("name", name)
                if value.get(wire) is not None:
                    out[name] = self._from_json(member, value[wire], f"{where}.{wire}", check)
            for name in shape.required_members:
                if out.get(name) is None:
                    wire = shape.members[name].serialization.get("name", name)
                    check.add(None, f"{where}.{wire}", "Member must not be null")
            return out
        if kind == "list":
            if not isinstance(value, list):
                return _type_error(where, "an array")
            return [
                self._from_json(shape.member, item, f"{where}.{index}.member", check)
                for index, item in enumerate(value, start=1)
            ]
        if kind == "map":
            if not isinstance(value, dict):
                return _type_error(where, "an object")
            return {str(k): self._from_json(shape.value, v, f"{where}.{k}", check) for k, v in value.items()}
        if kind == "string":
            if not isinstance(value, str):
                return _type_error(where, "a string")
            self._check_enum(shape, value, where, check)
            return value
        if kind == "boolean":
            if not isinstance(value, bool):
                return _type_error(where, "a boolean")
            return value
        if kind in ("integer", "long"):
            if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
                return _type_error(where, "an integer")
            return int(value)
        if kind in ("double", "float"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return _type_error(where, "a number")
            return float(value)
        if kind == "timestamp":
            try:
                return _parse_timestamp(value)
            except (TypeError, ValueError):
                return _type_error(where, "a timestamp")
        if kind == "blob":
            try:
                return base64.b64decode(value, validate=True)
            except (TypeError, ValueError, binascii.Error):
                return _type_error(where, "base64 data")
        return value

    @staticmethod
    def _check_enum(shape: botocore.model.Shape, value: str, where: str, check: _Validation) -> None:
        enum = getattr(shape, "enum", None)
        if enum and value not in enum:
            check.add(value, where, "Member must satisfy enum value set: [" + ", ".join(enum) + "]")

    # -- responses ----------------------------------------------------------------------------

    def serialise(
        self, operation: botocore.model.OperationModel, result: Mapping[str, Any] | None
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) for a handler's result."""
        status = int(operation.http.get("responseCode", 200))
        shape = operation.output_shape
        headers: dict[str, str] = {}
        if shape is None or not result:
            return status, headers, b""
        payload = shape.serialization.get("payload")
        document: dict[str, Any] = {}
        raw: bytes | None = None
        for name, member in shape.members.items():
            wire = member.serialization.get("name", name)
            value = _get(result, name, wire)
            if value is None:
                continue
            location = member.serialization.get("location")
            if location == "header":
                headers[wire] = self._to_text(member, value)
            elif location == "headers":
                for key, item in value.items():
                    headers[wire + key] = str(item)
            elif location == "statusCode":
                status = int(value)
            elif name == payload:
                if member.type_name in ("blob", "string"):
                    raw = value if isinstance(value, bytes) else str(value).encode()
                else:
                    raw = _dump_json(self._to_json(member, value))
                    headers.setdefault("Content-Type", JSON_CONTENT_TYPE)
            else:
                document[wire] = self._to_json(member, value)
        if payload:
            return status, headers, raw or b""
        headers["Content-Type"] = JSON_CONTENT_TYPE
        return status, headers, _dump_json(document)

    def _to_json(self, shape: botocore.model.Shape, value: Any) -> Any:
        kind = shape.type_name
        if kind == "structure":
            out = {}
            for name, member in shape.members.items():
                wire = member.serialization.get("name", name)
                item = _get(value, name, wire)
                if item is not None:
                    out[wire] = self._to_json(member, item)
            return out
        if kind == "list":
            return [self._to_json(shape.member, item) for item in value]
        if kind == "map":
            return {str(k): self._to_json(shape.value, v) for k, v in value.items()}
        if kind == "timestamp":
            return _format_timestamp(value, shape.serialization.get("timestampFormat", "unixTimestamp"))
        if kind == "blob":
            data = value if isinstance(value, bytes) else str(value).encode()
            return base64.b64encode(data).decode()
        return value

    @staticmethod
    def _to_text(shape: botocore.model.Shape, value: Any) -> str:
        if shape.type_name == "timestamp":
            return str(_format_timestamp(value, shape.serialization.get("timestampFormat", "rfc822")))
        if shape.type_name == "boolean":
            return "true" if value else "false"
        return str(value)

    def serialise_error(self, error: ServiceError) -> tuple[int, dict[str, str], bytes]:
        shape = self._error_shapes.get(error.code)
        status = error.status or (
            shape.metadata.get("error", {}).get("httpStatusCode") if shape is not None else None
        )
        status = int(status or error.default_status)
        headers = {"Content-Type": JSON_CONTENT_TYPE, "x-amzn-ErrorType": error.code, **error.headers}
        document: dict[str, Any] = {"message": error.message}
        members = {}
        if shape is not None:
            for name, member in shape.members.items():
                members[name] = members[member.serialization.get("name", name)] = member
        for key, value in error.extra.items():
            if value is None:
                continue
            member = members.get(key)
            if member is None:
                document[key] = value
                continue
            wire = member.serialization.get("name", key)
            if member.serialization.get("location") == "header":
                headers[wire] = self._to_text(member, value)
            else:
                document[wire] = self._to_json(member, value)
        return status, headers, _dump_json(document)


@functools.cache
def get_service(name: str) -> Service:
    """The (cached) `Service` for `apigateway` or `apigatewayv2`."""
    if name not in SERVICES:
        raise ValueError(f"unknown service {name!r}")
    return Service(name)


def service_for_path(raw_path: str) -> str:
    """Both services share one port: `/v2/...` is apigatewayv2, everything else apigateway."""
    return "apigatewayv2" if raw_path == "/v2" or raw_path.startswith("/v2/") else "apigateway"


# -- helpers ----------------------------------------------------------------------------------


def _get(container: Any, name: str, wire: str) -> Any:
    if isinstance(container, Mapping):
        value = container.get(name)
        return container.get(wire) if value is None and wire != name else value
    return getattr(container, name, None)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        for key, item in headers.items():
            if key.lower() == lowered:
                return item
    return value


def _type_error(where: str, expected: str) -> Any:
    raise BadRequestException(f"Could not parse request body into json: '{where}' must be {expected}")


def _load_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequestException(f"Could not parse request body into json: {exc}") from None
    except RecursionError:
        # Python's parser stops at its recursion limit (about 1,000 levels): a body nested deeper
        # is refused like any body that is not JSON, with AWS's 400.
        raise BadRequestException(NESTED_TOO_DEEPLY) from None


def _dump_json(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def _parse_timestamp(value: Any) -> float:
    """Epoch seconds from a number, a numeric string or an ISO-8601 string."""
    if isinstance(value, bool):
        raise TypeError("boolean is not a timestamp")
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def _format_timestamp(value: Any, style: str) -> Any:
    if isinstance(value, dt.datetime):
        seconds = (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()
    else:
        seconds = _parse_timestamp(value)
    if style == "iso8601":
        moment = dt.datetime.fromtimestamp(seconds, dt.UTC)
        if moment.microsecond:
            return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if style == "rfc822":
        return email.utils.formatdate(seconds, usegmt=True)
    # unixTimestamp: a JSON number; whole seconds print as integers.
    return int(seconds) if math.isclose(seconds, round(seconds)) else round(seconds, 3)
