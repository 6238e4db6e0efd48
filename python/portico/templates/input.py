"""`$input`: the payload and the method request's parameters ("`$input` variables" in AWS's mapping
template reference)."""

from __future__ import annotations

from typing import Any

from portico.templates import jsonpath
from portico.templates.values import OBJECT_METHODS, VtlMap, from_python, java_str, load_json, to_json

# AWS hands a template `{}` for an empty payload, whatever its content type (`$input.body`, and so also what
# `$input.path('$')` and `$input.json('$')` read).
EMPTY_PAYLOAD = "{}"
_UNPARSED = object()
_GROUPS = ("path", "querystring", "header")


class Input:
    """One render's `$input`; the payload is parsed once, on first use."""

    __slots__ = ("_document", "_params", "body", "params_in")

    def __init__(self, body: str, params: dict[str, dict[str, str]]) -> None:
        self.body = body or EMPTY_PAYLOAD
        self.params_in = params
        self._document: Any = _UNPARSED
        self._params: VtlMap | None = None

    def document(self) -> Any:
        if self._document is _UNPARSED:
            try:
                self._document = load_json(self.body)
            except (ValueError, RecursionError) as error:
                raise ValueError(f"the payload is not JSON ({error}), so JSONPath cannot read it") from None
        return self._document

    def path(self, expression: Any) -> Any:
        """`$input.path(x)`: the JSONPath result as template values (maps, lists, `.size()`, `#foreach`)."""
        return from_python(jsonpath.query(self.document(), java_str(expression)))

    def json(self, expression: Any) -> str:
        """`$input.json(x)`: the JSONPath result as JSON text (`null` when the path matches nothing)."""
        return to_json(jsonpath.query(self.document(), java_str(expression)), checked=True)

    def all_params(self) -> VtlMap:
        """`$input.params()`: `{path={..}, querystring={..}, header={..}}`."""
        if self._params is None:
            self._params = VtlMap((group, VtlMap(self.params_in.get(group) or {})) for group in _GROUPS)
        return self._params

    def param(self, name: Any) -> str:
        """`$input.params(x)`: the path parameter, else the query string parameter, else the header named
        `x` (headers compared case-insensitively, as HTTP does); an empty string when there is none."""
        key = java_str(name)
        for group in _GROUPS:
            values = self.params_in.get(group) or {}
            if key in values:
                return values[key]
        folded = key.lower()
        for header, value in (self.params_in.get("header") or {}).items():
            if header.lower() == folded:
                return value
        return ""


def _params(value: Input, *name: Any) -> Any:
    if len(name) > 1:
        raise ValueError("params() takes at most one name")
    return value.param(name[0]) if name else value.all_params()


OBJECT_METHODS[Input] = {
    "getBody": lambda value: value.body,
    "path": Input.path,
    "json": Input.json,
    "params": _params,
}
