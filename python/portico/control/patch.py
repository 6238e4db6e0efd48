"""API Gateway v1 `patchOperations`, applied generically against a botocore shape.

    doc = apply_patch(doc, params.get("patchOperations"), service.shape("RestApi"), REST_API_PATHS)

- ops: add, remove, replace, move, copy, test; paths are JSON pointers (`~1` is `/`, `~0` is `~`);
- `allowed` lists the patchable paths (`*` matches one segment), for all ops or per op
  (`{"replace": [...], "add": [...]}`); anything else is AWS's 400
  `Invalid patch path  '/x' specified for op 'replace'. Must be one of: [...]`;
- values arrive as strings and are converted to the target member's model type (boolean,
  integer, double; structures/lists from JSON text); an empty value removes a scalar;
- walking the shape: structure -> member (model name or wire name), map -> key, list of
  structures -> index, list of scalars -> the element itself, as AWS addresses string sets
  (`add /binaryMediaTypes/image~1png`, `replace /endpointConfiguration/types/EDGE` value `REGIONAL`).

The document is copied first, so a failing patch leaves it untouched.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

import botocore.model

from portico.control.errors import BadRequestException

OPS = ("add", "remove", "replace", "move", "copy", "test")
_SCALARS = ("string", "boolean", "integer", "long", "double", "float", "timestamp")


def escape(segment: str) -> str:
    return segment.replace("~", "~0").replace("/", "~1")


def unescape(segment: str) -> str:
    return segment.replace("~1", "/").replace("~0", "~")


def split_pointer(path: str) -> list[str]:
    """`/a/b~1c` -> ["a", "b/c"]."""
    if not path.startswith("/"):
        raise ValueError(path)
    return [unescape(part) for part in path[1:].split("/")]


def join_pointer(segments: Sequence[str]) -> str:
    return "".join("/" + escape(segment) for segment in segments)


def _allowed_for(allowed: Sequence[str] | Mapping[str, Sequence[str]], op: str) -> Sequence[str]:
    return allowed.get(op, ()) if isinstance(allowed, Mapping) else allowed


def _path_allowed(path: str, patterns: Sequence[str]) -> bool:
    raw = path.split("/")
    for pattern in patterns:
        parts = pattern.split("/")
        if len(parts) == len(raw) and all(p == "*" or p == r for p, r in zip(parts, raw, strict=True)):
            return True
    return False


def _invalid_path(path: str, op: str, patterns: Sequence[str]) -> BadRequestException:
    return BadRequestException(
        f"Invalid patch path  '{path}' specified for op '{op}'. Must be one of: [{', '.join(patterns)}]"
    )


def apply_patch(
    doc: dict[str, Any],
    operations: Sequence[Mapping[str, Any]] | None,
    shape: botocore.model.Shape,
    allowed: Sequence[str] | Mapping[str, Sequence[str]],
) -> dict[str, Any]:
    """A patched copy of `doc` (keyed by `shape`'s member names)."""
    result = copy.deepcopy(doc)
    for operation in operations or ():
        op = operation.get("op")
        path = operation.get("path")
        if op not in OPS:
            raise BadRequestException(
                f"Invalid patch operation specified. Must be one of: [{', '.join(OPS)}]"
            )
        if not isinstance(path, str):
            raise BadRequestException(f"Invalid patch path  'null' specified for op '{op}'.")
        patterns = _allowed_for(allowed, op)
        if not _path_allowed(path, patterns) or not path.startswith("/"):
            raise _invalid_path(path, op, patterns)
        segments = split_pointer(path)
        value = operation.get("value")
        if op in ("move", "copy"):
            source = operation.get("from")
            if not isinstance(source, str) or not source.startswith("/"):
                raise BadRequestException(f"Invalid patch operation specified: 'from' is required for '{op}'")
            if not _path_allowed(source, _allowed_for(allowed, "remove" if op == "move" else op) or patterns):
                raise _invalid_path(source, op, patterns)
            found, moved = _get(result, shape, split_pointer(source), source)
            if not found:
                raise BadRequestException(f"Invalid patch operation specified: nothing at '{source}'")
            if op == "move":
                _remove(result, shape, split_pointer(source), source)
            _set(result, shape, segments, path, copy.deepcopy(moved), op, raw=True)
        elif op == "remove":
            _remove(result, shape, segments, path)
        elif op == "test":
            found, current = _get(result, shape, segments, path)
            target = _target_shape(shape, segments, path)
            expected = _coerce(value, target, path) if value is not None else None
            if not found or current != expected:
                raise BadRequestException(f"Test operation failed for path '{path}'")
        else:  # add, replace
            _set(result, shape, segments, path, value, op, raw=False)
    return result


def _step(shape: botocore.model.Shape, segment: str, path: str) -> tuple[str, botocore.model.Shape]:
    kind = shape.type_name
    if kind == "structure":
        if segment in shape.members:
            return segment, shape.members[segment]
        for name, member in shape.members.items():
            if member.serialization.get("name") == segment:
                return name, member
        raise BadRequestException(f"Invalid patch path '{path}'")
    if kind == "map":
        return segment, shape.value
    if kind == "list":
        return segment, shape.member
    raise BadRequestException(f"Invalid patch path '{path}'")


def _is_set(shape: botocore.model.Shape) -> bool:
    return shape.type_name == "list" and shape.member.type_name in _SCALARS


def _target_shape(shape: botocore.model.Shape, segments: Sequence[str], path: str) -> botocore.model.Shape:
    for segment in segments:
        _, shape = _step(shape, segment, path)
    return shape


def _index(segment: str, items: list, path: str, allow_end: bool = False) -> int:
    if segment == "-" and allow_end:
        return len(items)
    if not segment.isdigit() or int(segment) > len(items) or (int(segment) == len(items) and not allow_end):
        raise BadRequestException(f"Invalid patch path '{path}'")
    return int(segment)


def _walk(doc: dict, shape: botocore.model.Shape, segments: Sequence[str], path: str, create: bool):
    """(container, container shape, last segment) for a pointer; None if a parent is missing."""
    node: Any = doc
    for segment in segments[:-1]:
        key, child_shape = _step(shape, segment, path)
        if shape.type_name == "list":
            node = node[_index(segment, node, path)]
        else:
            child = node.get(key)
            if child is None:
                if not create:
                    return None
                child = [] if child_shape.type_name == "list" else {}
                node[key] = child
            node = child
        shape = child_shape
    return node, shape, segments[-1]


def _get(doc: dict, shape: botocore.model.Shape, segments: Sequence[str], path: str) -> tuple[bool, Any]:
    walked = _walk(doc, shape, segments, path, create=False)
    if walked is None:
        return False, None
    node, node_shape, last = walked
    key, target = _step(node_shape, last, path)
    if _is_set(node_shape):
        element = _coerce(last, target, path)
        return (element in node, element)
    if node_shape.type_name == "list":
        index = _index(last, node, path)
        return True, node[index]
    return (key in node and node[key] is not None), node.get(key)


def _remove(doc: dict, shape: botocore.model.Shape, segments: Sequence[str], path: str) -> None:
    walked = _walk(doc, shape, segments, path, create=False)
    if walked is None:
        return
    node, node_shape, last = walked
    key, target = _step(node_shape, last, path)
    if _is_set(node_shape):
        element = _coerce(last, target, path)
        if element in node:
            node.remove(element)
    elif node_shape.type_name == "list":
        del node[_index(last, node, path)]
    else:
        node.pop(key, None)


def _set(doc: dict, shape, segments: Sequence[str], path: str, value: Any, op: str, raw: bool) -> None:
    node, node_shape, last = _walk(doc, shape, segments, path, create=True)
    key, target = _step(node_shape, last, path)
    if _is_set(node_shape):
        element = _coerce(last, target, path)
        # `add /binaryMediaTypes/image~1png`: the element is the path's last segment;
        # `replace /endpointConfiguration/types/EDGE` value `REGIONAL`: the value replaces it.
        new = _coerce(value, target, path) if op == "replace" and value is not None else element
        if element in node:
            node[node.index(element)] = new
        elif new not in node:
            node.append(new)
        return
    new = value if raw else _coerce(value, target, path)
    if node_shape.type_name == "list":
        index = _index(last, node, path, allow_end=True)
        if index == len(node):
            node.append(new)
        else:
            node[index] = new
    elif new is None:
        node.pop(key, None)
    else:
        node[key] = new


def _coerce(value: Any, shape: botocore.model.Shape, path: str) -> Any:
    """A patch value (a string) as the member's model type; None/"" for scalars means unset."""
    kind = shape.type_name
    if value is None:
        if kind in ("string", "boolean", "integer", "long", "double", "float"):
            return None
        raise BadRequestException(f"Invalid patch value 'null' for path '{path}'")
    text = value if isinstance(value, str) else json.dumps(value)
    try:
        if kind == "string":
            enum = getattr(shape, "enum", None)
            if enum and text not in enum:
                raise BadRequestException(
                    f"Invalid value '{text}' for path '{path}'. Must be one of: [{', '.join(enum)}]"
                )
            return text
        if text == "" and kind in ("boolean", "integer", "long", "double", "float"):
            return None
        if kind == "boolean":
            if text.lower() not in ("true", "false"):
                raise ValueError(text)
            return text.lower() == "true"
        if kind in ("integer", "long"):
            return int(text)
        if kind in ("double", "float"):
            return float(text)
        if kind == "list" and not text.lstrip().startswith("["):
            return [part.strip() for part in text.split(",") if part.strip()]
        if kind in ("structure", "map", "list"):
            parsed = json.loads(text)
            if not isinstance(parsed, list if kind == "list" else dict):
                raise ValueError(text)
            return parsed
    except ValueError:
        raise BadRequestException(f"Invalid value '{text}' for path '{path}': expected {kind}") from None
    return text
