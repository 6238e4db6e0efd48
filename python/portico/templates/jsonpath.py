"""JSONPath for `$input.path` and `$input.json`, with the result shapes of Jayway JsonPath (the "JSONPath for
Java" that AWS's mapping template reference points to).

Jayway answers a *definite* path (names and indexes only: `$.a.b`, `$['a']`, `$.a[0]`) with the one value
it points to, or null when there is none, and an *indefinite* path (`[*]`, `..`, filters, slices, unions)
with a list of all matches. python-jsonpath parses both syntaxes and says which kind a path is (RFC 9535's
"singular query"), so the shape follows from the parsed path.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jsonpath


@lru_cache(maxsize=1024)
def _compiled(expression: str) -> tuple[Any, bool]:
    try:
        path = jsonpath.compile(expression)
    except jsonpath.JSONPathError as error:
        raise ValueError(f"invalid JSONPath {expression!r}: {error}") from None
    singular = getattr(path, "singular_query", None)
    return path, bool(singular()) if callable(singular) else False


class _RootString:
    """A payload that is one JSON string: python-jsonpath would read a `str` document as JSON text."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def query(document: Any, expression: str) -> Any:
    """The value a definite path points to (None when absent), or the list of an indefinite path's matches;
    plain Python data, as parsed."""
    path, definite = _compiled(expression)
    try:
        if isinstance(document, str):
            matches = [
                match.text if isinstance(match, _RootString) else match
                for match in path.findall(_RootString(document))
            ]
        else:
            matches = path.findall(document)
    except jsonpath.JSONPathError as error:
        raise ValueError(f"JSONPath {expression!r} failed: {error}") from None
    if definite:
        return matches[0] if matches else None
    return matches
