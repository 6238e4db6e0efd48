"""The values a mapping template sees, with the Java behaviour API Gateway's Velocity gives them.

API Gateway runs Apache Velocity on the JVM, so a template's values are Java objects: a JSON object is a
`Map` (printed `{a=1, b=x}`), a JSON array a JSON-smart `JSONArray` (printed as compact JSON), a string a
`java.lang.String` with Java's methods. Python's own methods are never reachable from a template: every
`$value.name(...)` goes through the method tables below (see `resolve`), which is also what keeps a template
from reaching Python internals (`$x.__class__`) or building unbounded values (`$s.center(10**9)`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import regex

from portico.templates.limits import LimitExceeded, check_produced, regex_timeout


class VtlMap(dict[Any, Any]):
    """A Java `Map`: `$map.key` reads a key, `toString()` is `{k=v, k2=v2}`."""

    def __str__(self) -> str:
        return "{" + ", ".join(f"{_text(k)}={_text(v)}" for k, v in self.items()) + "}"


class NullMap(VtlMap):
    """`$context.authorizer.claims`: its properties resolve, but the map itself is null, as AWS documents
    ("Calling `$context.authorizer.claims` returns null")."""

    def __str__(self) -> str:
        return ""

    def __bool__(self) -> bool:
        return False


class VtlList(list[Any]):
    """A Java `ArrayList` built by the template (`[1, 2]`, `keySet()`): `toString()` is `[a, b]`."""

    def __str__(self) -> str:
        return "[" + ", ".join(_text(item) for item in self) + "]"


class JsonList(VtlList):
    """A JSON array from the payload: JSON-smart's `JSONArray` prints itself as compact JSON."""

    def __str__(self) -> str:
        return to_json(self, checked=True)


class VtlRange(Sequence[int]):
    """`[a..b]`: a lazy list of integers, counting down when `b < a`, as Velocity's range does."""

    def __init__(self, first: int, last: int) -> None:
        self.range = range(first, last + 1) if first <= last else range(first, last - 1, -1)

    def __len__(self) -> int:
        return len(self.range)

    def __getitem__(self, index: Any) -> Any:
        return self.range[index]

    def __iter__(self) -> Iterator[int]:
        return iter(self.range)

    def __str__(self) -> str:
        check_produced(len(self.range) * 3)
        return "[" + ", ".join(str(item) for item in self.range) + "]"


class Entry:
    """A `Map.Entry` from `entrySet()`: `$entry.key`, `$entry.value`."""

    __slots__ = ("key", "value")

    def __init__(self, key: Any, value: Any) -> None:
        self.key = key
        self.value = value

    def __str__(self) -> str:
        return f"{_text(self.key)}={_text(self.value)}"


def java_double(value: float) -> str:
    """`Double.toString`: `1.0`, `249.99`, `1.0E20`, `1.5E-5`."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    if 1e-3 <= abs(value) < 1e7:
        text = repr(value)
        if "e" in text:  # repr picks exponent form for some values in range, e.g. 1e-03
            text = f"{value:.17f}".rstrip("0")
        return text if "." in text else text + ".0"
    mantissa, exponent = f"{value:e}".split("e")
    digits = repr(value).split("e")[0] if "e" in repr(value) else mantissa.rstrip("0")
    if "." not in digits:
        digits += ".0"
    elif digits.endswith("."):
        digits += "0"
    return f"{digits}E{int(exponent)}"


# A template can build a value whose printed form is exponential in its size (`#set($a = [$a, $a])` in a
# loop); such a value is refused before it is printed.
MAX_PRINTED_ELEMENTS = 1_000_000


def _check_printable(value: Any) -> None:
    pending = [value]
    elements = 0
    while pending:
        item = pending.pop()
        elements += 1
        if elements > MAX_PRINTED_ELEMENTS:
            raise LimitExceeded(f"a value with more than {MAX_PRINTED_ELEMENTS} elements cannot be printed")
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, Entry):
            pending.append(item.value)


def java_str(value: Any) -> str:
    """How Java prints a value (`null`, `true`, `1.0`, `{a=1}`, `[a, b]`)."""
    if isinstance(value, (dict, list, Entry)):
        _check_printable(value)
    return _text(value)


def _text(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return java_double(value)
    return str(value)


def render_str(value: Any) -> str:
    """How a `$reference` renders: like `java_str`, except that null renders nothing (AWS renders an
    unresolved or null reference as an empty string)."""
    if value is None:
        return ""
    return value if isinstance(value, str) else java_str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, VtlRange):
        return list(value)
    return java_str(value)


def to_json(value: Any, checked: bool = False) -> str:
    """Compact JSON, non-ASCII kept as is, as JSON-smart writes it (`checked`: the value is known to be
    printable, e.g. parsed from a payload)."""
    if not checked:
        _check_printable(value)
    text = json.dumps(
        value, separators=(",", ":"), ensure_ascii=False, default=_json_default, allow_nan=False
    )
    check_produced(len(text))
    return text


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _as_vtl(value: Any) -> Any:
    if isinstance(value, dict):
        return VtlMap((key, _as_vtl(item)) for key, item in value.items())
    if isinstance(value, list):
        return JsonList(_as_vtl(item) for item in value)
    return value


def load_json(text: str) -> Any:
    """JSON text as plain Python data (NaN and Infinity are not JSON)."""
    return json.loads(text, parse_constant=_refuse_constant)


def parse_json(text: str) -> Any:
    """JSON text as template values (maps, JSON arrays, strings, numbers, booleans, null)."""
    return _as_vtl(load_json(text))


def from_python(value: Any) -> Any:
    """Plain Python data handed in by the gateway (context, parameters) as template values."""
    return _as_vtl(value)


# --- Java methods -----------------------------------------------------------------------------------


def _index(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer index, got {java_str(value)}")
    return value


def _check_range(start: int, end: int, length: int) -> None:
    if start < 0 or end > length or start > end:
        raise ValueError(f"index out of range: begin {start}, end {end}, length {length}")


def _substring(text: str, start: Any, end: Any = None) -> str:
    begin = _index(start)
    finish = len(text) if end is None else _index(end)
    _check_range(begin, finish, len(text))
    return text[begin:finish]


def _char_at(text: str, index: Any) -> str:
    position = _index(index)
    _check_range(position, position + 1, len(text))
    return text[position]


def _index_of(text: str, needle: Any, start: Any = 0) -> int:
    return text.find(java_str(needle), max(_index(start), 0))


def _starts_with(text: str, prefix: Any, offset: Any = 0) -> bool:
    return text.startswith(java_str(prefix), _index(offset))


def _compiled(pattern: Any) -> Any:
    return regex.compile(java_str(pattern))


def _java_replacement(replacement: str) -> Callable[[Any], str]:
    """Java's `Matcher.replaceAll` replacement syntax: `$1`, `${name}`, `\\$` for a literal `$`."""
    parts: list[str | int] = []
    literal: list[str] = []
    position = 0
    while position < len(replacement):
        char = replacement[position]
        if char == "\\":
            if position + 1 >= len(replacement):
                raise ValueError("character to be escaped is missing")
            literal.append(replacement[position + 1])
            position += 2
        elif char == "$":
            if position + 1 < len(replacement) and replacement[position + 1] == "{":
                close = replacement.find("}", position + 2)
                if close < 0:
                    raise ValueError("named capturing group is missing trailing '}'")
                parts.extend(["".join(literal), replacement[position + 2 : close]])
                literal = []
                position = close + 1
                continue
            digits_end = position + 1
            while digits_end < len(replacement) and replacement[digits_end].isdigit():
                digits_end += 1
            if digits_end == position + 1:
                raise ValueError("illegal group reference")
            parts.extend(["".join(literal), int(replacement[position + 1 : digits_end])])
            literal = []
            position = digits_end
        else:
            literal.append(char)
            position += 1
    parts.append("".join(literal))

    def expand(match: Any) -> str:
        # Even places hold literal text, odd places a group's number or name.
        return "".join(
            str(part) if index % 2 == 0 else (match.group(part) or "") for index, part in enumerate(parts)
        )

    return expand


def _replace_all(text: str, pattern: Any, replacement: Any, count: int = 0) -> str:
    result = _compiled(pattern).sub(
        _java_replacement(java_str(replacement)), text, count=count, timeout=regex_timeout()
    )
    check_produced(len(result))
    return result


def _replace(text: str, target: Any, replacement: Any) -> str:
    result = text.replace(java_str(target), java_str(replacement))
    check_produced(len(result))
    return result


def _matches(text: str, pattern: Any) -> bool:
    return _compiled(pattern).fullmatch(text, timeout=regex_timeout()) is not None


def _split(text: str, pattern: Any, limit: Any = 0) -> VtlList:
    """`String.split`: trailing empty strings dropped (limit 0), no leading empty string for a zero-width
    match at the start, at most `limit` parts when limit > 0."""
    most = _index(limit)
    parts: list[str] = []
    start = 0
    for match in _compiled(pattern).finditer(text, timeout=regex_timeout()):
        if most > 0 and len(parts) == most - 1:
            break
        if match.end() == 0:
            continue
        parts.append(text[start : match.start()])
        start = match.end()
    parts.append(text[start:])
    if most == 0:
        while parts and parts[-1] == "" and len(parts) > 1:
            parts.pop()
        if parts == [""] and text:
            parts = []
    return VtlList(parts)


def _concat(text: str, other: Any) -> str:
    check_produced(len(text) + len(java_str(other)))
    return text + java_str(other)


def _equals(value: Any, other: Any) -> bool:
    return vtl_equals(value, other)


STRING_METHODS: dict[str, Callable[..., Any]] = {
    "length": len,
    "isEmpty": lambda text: not text,
    "charAt": _char_at,
    "contains": lambda text, part: java_str(part) in text,
    "startsWith": _starts_with,
    "endsWith": lambda text, suffix: text.endswith(java_str(suffix)),
    "indexOf": _index_of,
    "lastIndexOf": lambda text, needle: text.rfind(java_str(needle)),
    "substring": _substring,
    "toLowerCase": str.lower,
    "toUpperCase": str.upper,
    "trim": lambda text: text.strip("".join(chr(code) for code in range(33))),
    "replace": _replace,
    "replaceAll": _replace_all,
    "replaceFirst": lambda text, pattern, replacement: _replace_all(text, pattern, replacement, count=1),
    "matches": _matches,
    "split": _split,
    "concat": _concat,
    "equals": _equals,
    "equalsIgnoreCase": lambda text, other: isinstance(other, str) and text.casefold() == other.casefold(),
    "toString": lambda text: text,
}


def _list_get(items: Sequence[Any], index: Any) -> Any:
    position = _index(index)
    _check_range(position, position + 1, len(items))
    return items[position]


def _list_set(items: list[Any], index: Any, value: Any) -> Any:
    previous = _list_get(items, index)
    items[index] = value
    return previous


def _list_add(items: list[Any], value: Any) -> bool:
    items.append(value)
    return True


def _list_add_all(items: list[Any], values: Any) -> bool:
    if not isinstance(values, (list, VtlRange)):
        raise ValueError("addAll expects a list")
    items.extend(values)
    return bool(values)


def _list_remove(items: list[Any], what: Any) -> Any:
    if isinstance(what, int) and not isinstance(what, bool):
        previous = _list_get(items, what)
        del items[what]
        return previous
    for position, item in enumerate(items):
        if vtl_equals(item, what):
            del items[position]
            return True
    return False


def _index_in(items: Sequence[Any], value: Any) -> int:
    return next((position for position, item in enumerate(items) if vtl_equals(item, value)), -1)


LIST_METHODS: dict[str, Callable[..., Any]] = {
    "size": len,
    "isEmpty": lambda items: not items,
    "get": _list_get,
    "contains": lambda items, value: _index_in(items, value) >= 0,
    "indexOf": _index_in,
    "add": _list_add,
    "addAll": _list_add_all,
    "set": _list_set,
    "remove": _list_remove,
    "subList": lambda items, start, end: (
        _check_range(_index(start), _index(end), len(items)),
        VtlList(items[start:end]),
    )[1],
    "toString": java_str,
}
RANGE_METHODS = {
    name: LIST_METHODS[name] for name in ("size", "isEmpty", "get", "contains", "indexOf", "toString")
}


def _map_put(mapping: dict[Any, Any], key: Any, value: Any) -> Any:
    previous = mapping.get(key)
    mapping[key] = value
    return previous


def _map_put_all(mapping: dict[Any, Any], other: Any) -> None:
    if not isinstance(other, Mapping):
        raise ValueError("putAll expects a map")
    mapping.update(other)


MAP_METHODS: dict[str, Callable[..., Any]] = {
    "size": len,
    "isEmpty": lambda mapping: not mapping,
    "get": lambda mapping, key: mapping.get(key),
    "containsKey": lambda mapping, key: key in mapping,
    "containsValue": lambda mapping, value: any(vtl_equals(item, value) for item in mapping.values()),
    "keySet": lambda mapping: VtlList(mapping.keys()),
    "values": lambda mapping: VtlList(mapping.values()),
    "entrySet": lambda mapping: VtlList(Entry(key, value) for key, value in mapping.items()),
    "put": _map_put,
    "putAll": _map_put_all,
    "remove": lambda mapping, key: mapping.pop(key, None),
    "toString": java_str,
}
ENTRY_METHODS: dict[str, Callable[..., Any]] = {
    "getKey": lambda entry: entry.key,
    "getValue": lambda entry: entry.value,
    "toString": java_str,
}
NUMBER_METHODS: dict[str, Callable[..., Any]] = {
    "toString": java_str,
    "intValue": lambda number: int(number),
    "doubleValue": lambda number: float(number),
}
BOOLEAN_METHODS: dict[str, Callable[..., Any]] = {"toString": java_str, "booleanValue": lambda flag: flag}

# Objects of the gateway's own ($input, $util) register their methods here, keyed by class.
OBJECT_METHODS: dict[type, dict[str, Callable[..., Any]]] = {}


def methods_of(value: Any) -> dict[str, Callable[..., Any]] | None:
    if isinstance(value, str):
        return STRING_METHODS
    if isinstance(value, bool):
        return BOOLEAN_METHODS
    if isinstance(value, (int, float)):
        return NUMBER_METHODS
    if isinstance(value, list):
        return LIST_METHODS
    if isinstance(value, dict):
        return MAP_METHODS
    if isinstance(value, VtlRange):
        return RANGE_METHODS
    if isinstance(value, Entry):
        return ENTRY_METHODS
    return OBJECT_METHODS.get(type(value))


def call_method(value: Any, name: str, arguments: list[Any]) -> Any:
    """`$value.name(arguments)`; an unknown method is null, as AWS renders it (nothing)."""
    methods = methods_of(value)
    method = methods.get(name) if methods is not None else None
    if method is None:
        return None
    try:
        return method(value, *arguments)
    except TypeError as error:
        raise ValueError(f"{name}() cannot take these arguments: {error}") from error


def get_property(value: Any, name: str) -> Any:
    """`$value.name` without parentheses: a map's key, else Velocity's getter lookup (`getName()`,
    `isName()`), e.g. `$input.body`, `$entry.key`, `$list.empty`."""
    if isinstance(value, Mapping):
        return value.get(name)
    methods = methods_of(value)
    if methods is None or not name:
        return None
    capitalised = name[0].upper() + name[1:]
    for getter in ("get" + capitalised, "is" + capitalised):
        method = methods.get(getter)
        if method is not None:
            return method(value)
    return None


def get_index(value: Any, index: Any) -> Any:
    """`$value[index]`: a list's item or a map's key; null when absent."""
    if isinstance(value, Mapping):
        return value.get(index)
    if isinstance(value, (list, VtlRange)) and isinstance(index, int) and not isinstance(index, bool):
        return value[index] if 0 <= index < len(value) else None
    return None


# --- Velocity's operators -------------------------------------------------------------------------

_NUMBER = (int, float)
_LARGEST_INTEGER_BITS = 1024


def _is_number(value: Any) -> bool:
    return isinstance(value, _NUMBER) and not isinstance(value, bool)


def _bounded(number: Any) -> Any:
    if isinstance(number, int) and number.bit_length() > _LARGEST_INTEGER_BITS:
        raise ValueError("integer result too large")
    return number


def vtl_equals(left: Any, right: Any) -> bool:
    """Velocity's `==`: numbers compare by value; values of different classes compare by their strings."""
    if left is None or right is None:
        return left is right
    if _is_number(left) and _is_number(right):
        return bool(left == right)
    if type(left) is type(right) or (isinstance(left, str) and isinstance(right, str)):
        return bool(left == right)
    return java_str(left) == java_str(right)


def _compare(compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def apply(left: Any, right: Any) -> bool:
        if (_is_number(left) and _is_number(right)) or (isinstance(left, str) and isinstance(right, str)):
            return compare(left, right)
        return False  # Velocity logs and answers false for values it cannot compare

    return apply


def _add(left: Any, right: Any) -> Any:
    if _is_number(left) and _is_number(right):
        return _bounded(left + right)
    if isinstance(left, str) or isinstance(right, str):
        text = java_str(left) + java_str(right)
        check_produced(len(text))
        return text
    return None


def _arithmetic(operation: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def apply(left: Any, right: Any) -> Any:
        if not (_is_number(left) and _is_number(right)):
            return None
        try:
            return _bounded(operation(left, right))
        except ZeroDivisionError:
            return None  # Velocity answers null for a division by zero

    return apply


def _divide(left: Any, right: Any) -> Any:
    if isinstance(left, int) and isinstance(right, int):
        quotient = abs(left) // abs(right)  # Java's integer division truncates towards zero
        return quotient if (left >= 0) == (right >= 0) else -quotient
    return left / right


def _modulo(left: Any, right: Any) -> Any:
    if isinstance(left, int) and isinstance(right, int):
        return left - right * _divide(left, right)  # Java's remainder takes the dividend's sign
    return math.fmod(left, right)


def truthy(value: Any) -> bool:
    """Velocity 1.7's condition: only null and false are false (an empty string is true, which is why AWS
    templates test `$s.length() != 0`)."""
    return not (value is None or value is False or isinstance(value, NullMap))


OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "+": _add,
    "-": _arithmetic(lambda left, right: left - right),
    "*": _arithmetic(lambda left, right: left * right),
    "/": _arithmetic(_divide),
    "%": _arithmetic(_modulo),
    "==": vtl_equals,
    "eq": vtl_equals,
    "!=": lambda left, right: not vtl_equals(left, right),
    "ne": lambda left, right: not vtl_equals(left, right),
    ">": _compare(lambda left, right: left > right),
    "gt": _compare(lambda left, right: left > right),
    ">=": _compare(lambda left, right: left >= right),
    "ge": _compare(lambda left, right: left >= right),
    "<": _compare(lambda left, right: left < right),
    "lt": _compare(lambda left, right: left < right),
    "<=": _compare(lambda left, right: left <= right),
    "le": _compare(lambda left, right: left <= right),
    "&&": lambda left, right: truthy(left) and truthy(right),
    "and": lambda left, right: truthy(left) and truthy(right),
    "||": lambda left, right: truthy(left) or truthy(right),
    "or": lambda left, right: truthy(left) or truthy(right),
}
