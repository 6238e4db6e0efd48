"""API Gateway's mapping templates (Velocity Template Language), for REST APIs' non-proxy integrations.

`MappingTemplate.compile(source)` once per deployment (compiled templates are also cached by their text),
then `render(TemplateInput)` per request. Everything a template can do is bounded (see `limits`), and
anything that goes wrong, at compile or render time, is a `TemplateError` whose text says why.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Literal, TypedDict

import airspeed

from portico.templates import engine, limits
from portico.templates.input import Input
from portico.templates.util import UTIL
from portico.templates.values import NullMap, VtlMap, from_python, java_str

__all__ = ["MappingTemplate", "Rendered", "TemplateError", "TemplateInput"]


class TemplateError(Exception):
    """A template that cannot compile or render; str(exc) says why (the lead logs it with the
    template's name)."""


class TemplateInput(TypedDict):
    kind: Literal["request", "response"]  # which overrides are allowed
    body: str  # $input.body: the request body, or the integration's response body for response templates
    params: dict[str, dict[str, str]]  # {"path": {...}, "querystring": {...}, "header": {...}}
    context: dict[str, Any]  # $context: nested dicts (identity, authorizer, error, ...)
    stage_variables: dict[str, str]  # $stageVariables


class Rendered(TypedDict):
    output: str
    # Only what the template #set: $context.requestOverride.{header,querystring,path}.NAME on a request
    # template, $context.responseOverride.{status,header.NAME} on a response template.
    overrides: dict[str, Any]  # {"status": int, "header": {...}, "querystring": {...}, "path": {...}}


def _position(source: str, offset: int) -> str:
    line = source.count("\n", 0, offset) + 1
    column = offset - (source.rfind("\n", 0, offset) + 1) + 1
    return f"line {line}, column {column}"


def _render_error(error: Exception, source: str) -> TemplateError:
    if isinstance(error, limits.LimitExceeded):
        return TemplateError(str(error))
    if isinstance(error, airspeed.TemplateExecutionError):
        cause = error.__cause__
        reason = f"{type(cause).__name__}: {cause}" if cause is not None else str(error)
        where = _position(source, error.start) if error.filename == "<string>" else "in #evaluate"
        return TemplateError(f"{where}: {reason} (in {error.element.my_text()!r})")
    if isinstance(error, airspeed.TemplateError):
        return TemplateError(str(error))
    return TemplateError(f"{type(error).__name__}: {error}")


class _CompileCache:
    """Compiled trees by source text, least recently used first out, bounded by count and total size;
    a template that does not compile is remembered too, so a deployment pays for each template once."""

    MAX_ENTRIES = 2048
    MAX_SOURCE_CHARS = 32 * 1024 * 1024

    def __init__(self) -> None:
        self.entries: OrderedDict[str, Any] = OrderedDict()
        self.chars = 0
        self.lock = threading.Lock()

    def get(self, source: str) -> Any:
        with self.lock:
            entry = self.entries.get(source)
            if entry is not None:
                self.entries.move_to_end(source)
        if entry is None:
            entry = self._compile(source)
            with self.lock:
                if source not in self.entries:
                    self.entries[source] = entry
                    self.chars += len(source)
                    while len(self.entries) > self.MAX_ENTRIES or self.chars > self.MAX_SOURCE_CHARS:
                        evicted, _ = self.entries.popitem(last=False)
                        self.chars -= len(evicted)
        if isinstance(entry, TemplateError):
            raise entry
        return entry

    @staticmethod
    def _compile(source: str) -> Any:
        size = len(source.encode("utf-8", errors="surrogatepass"))
        if size > limits.MAX_TEMPLATE_BYTES:
            return TemplateError(
                f"the template is {size} bytes; mapping templates are limited to {limits.MAX_TEMPLATE_BYTES}"
            )
        try:
            return engine.compile_tree(source)
        except airspeed.TemplateSyntaxError as error:
            return TemplateError(f"syntax error: {error}")
        except Exception as error:  # airspeed's parser can fail in other ways on odd input
            return TemplateError(f"syntax error: {type(error).__name__}: {error}")


_cache = _CompileCache()


def compiled_tree(source: str) -> Any:
    """The adjusted airspeed tree for `source`, compiled once; raises TemplateError."""
    return _cache.get(source)


_REQUEST_GROUPS = ("header", "querystring", "path")


def _authorizer(value: Any) -> Any:
    """`$context.authorizer`: the Lambda authorizer's context values stringified, as AWS documents;
    `claims` resolves property by property but is null itself."""
    if not isinstance(value, Mapping):
        return from_python(value)
    result = VtlMap()
    for key, item in value.items():
        if key == "claims" and isinstance(item, Mapping):
            result[key] = NullMap(from_python(item))
        elif item is None or isinstance(item, (Mapping, list)):
            result[key] = from_python(item)
        else:
            result[key] = java_str(item)
    return result


def _context(given: Mapping[str, Any], kind: str) -> VtlMap:
    context = VtlMap((key, from_python(value)) for key, value in given.items())
    if "authorizer" in given:
        context["authorizer"] = _authorizer(given["authorizer"])
    if kind == "request":
        context["requestOverride"] = VtlMap((group, VtlMap()) for group in _REQUEST_GROUPS)
        context.setdefault("responseOverride", VtlMap(header=VtlMap()))
    else:
        context["responseOverride"] = VtlMap(header=VtlMap())
        context.setdefault("requestOverride", VtlMap((group, VtlMap()) for group in _REQUEST_GROUPS))
    return context


def _encodable(text: str) -> str:
    """Text the gateway can send as UTF-8: a lone surrogate (JSON's `"\ud800"`) becomes `?`, as Java's
    UTF-8 encoder writes it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", errors="replace").decode("utf-8")
    return text


def _override_value(value: Any) -> Any:
    if isinstance(value, list):
        return [_encodable(java_str(item)) for item in value]
    return _encodable(java_str(value))


def _override_group(overrides: Any, group: str) -> dict[str, Any]:
    values = overrides.get(group) if isinstance(overrides, Mapping) else None
    if not isinstance(values, Mapping):
        return {}
    return {
        _encodable(java_str(name)): _override_value(value)
        for name, value in values.items()
        if value is not None
    }


def _status(value: Any) -> int:
    text = java_str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or not 100 <= int(text) <= 599:
        raise TemplateError(f"$context.responseOverride.status must be an HTTP status code, not {text!r}")
    return int(text)


def _overrides(context: Mapping[str, Any], kind: str) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if kind == "request":
        requested = context.get("requestOverride")
        for group in _REQUEST_GROUPS:
            values = _override_group(requested, group)
            if values:
                overrides[group] = values
        return overrides
    response = context.get("responseOverride")
    if isinstance(response, Mapping) and response.get("status") is not None:
        overrides["status"] = _status(response["status"])
    headers = _override_group(response, "header")
    if headers:
        overrides["header"] = headers
    return overrides


class MappingTemplate:
    """One compiled mapping template; safe to render from several threads at once."""

    __slots__ = ("source", "tree")

    def __init__(self, source: str, tree: Any) -> None:
        self.source = source
        self.tree = tree

    @classmethod
    def compile(cls, source: str) -> MappingTemplate:
        """Raises TemplateError for a syntax error or a template over 300 KB."""
        return cls(source, compiled_tree(source))

    def render(self, request: TemplateInput) -> Rendered:
        """Raises TemplateError, and nothing else, when the template fails or exceeds a limit."""
        try:
            kind = request["kind"]
            context = _context(request.get("context") or {}, kind)
            namespace: dict[str, Any] = {
                "input": Input(request.get("body") or "", request.get("params") or {}),
                "util": UTIL,
                "context": context,
                "stageVariables": VtlMap(request.get("stage_variables") or {}),
            }
            output = _encodable(engine.render_tree(self.tree, namespace))
            return Rendered(output=output, overrides=_overrides(context, kind))
        except TemplateError:
            raise
        except Exception as error:  # a template must never take the worker down
            raise _render_error(error, self.source) from error
