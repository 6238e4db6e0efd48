"""`$util`: the six functions of AWS's mapping template reference ("`$util` variables"): escapeJavaScript,
parseJson, urlEncode, urlDecode, base64Encode, base64Decode, UTF-8 throughout. AWS documents no others
for API Gateway (`$util.time`, `toJson` and friends are AppSync's); calling one renders nothing, as an
unknown method does on AWS.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any
from urllib.parse import quote_plus, unquote_plus

from portico.templates.limits import check_produced
from portico.templates.values import OBJECT_METHODS, java_str, parse_json

# Commons Lang's escapeJavaScript: quotes, backslash and slash get a backslash, control characters their
# short escapes or \u00XX, and every character above U+007F a \uXXXX escape (in UTF-16 code units).
_ASCII_ESCAPES = {
    ord("'"): "\\'",
    ord('"'): '\\"',
    ord("\\"): "\\\\",
    ord("/"): "\\/",
    ord("\b"): "\\b",
    ord("\n"): "\\n",
    ord("\t"): "\\t",
    ord("\f"): "\\f",
    ord("\r"): "\\r",
}
_ASCII_ESCAPES.update({code: f"\\u{code:04X}" for code in range(32) if code not in _ASCII_ESCAPES})
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/]")


def _utf16_escapes(match: re.Match[str]) -> str:
    units = match.group().encode("utf-16-be", errors="surrogatepass")
    return "".join(f"\\u{units[index]:02X}{units[index + 1]:02X}" for index in range(0, len(units), 2))


def escape_javascript(value: Any) -> str | None:
    if value is None:
        return None
    escaped = _NON_ASCII.sub(_utf16_escapes, java_str(value).translate(_ASCII_ESCAPES))
    check_produced(len(escaped))
    return escaped


def url_encode(value: Any) -> str:
    """Java's `URLEncoder.encode(s, "UTF-8")`: letters, digits and `.-*_` stay, a space becomes `+`."""
    encoded = quote_plus(java_str(value), safe="*", encoding="utf-8", errors="replace").replace("~", "%7E")
    check_produced(len(encoded))
    return encoded


def url_decode(value: Any) -> str:
    """Java's `URLDecoder.decode(s, "UTF-8")`, which refuses a `%` not followed by two hex digits."""
    text = java_str(value)
    if _BAD_PERCENT.search(text):
        raise ValueError("URLDecoder: illegal hex characters in escape (%) pattern")
    return unquote_plus(text, encoding="utf-8", errors="replace")


def base64_encode(value: Any) -> str:
    encoded = base64.b64encode(java_str(value).encode("utf-8", errors="replace")).decode("ascii")
    check_produced(len(encoded))
    return encoded


def base64_decode(value: Any) -> str:
    """Decodes leniently, as Commons Codec does: either alphabet, padding optional, other characters
    skipped; the bytes are read as UTF-8."""
    text = _NOT_BASE64.sub("", java_str(value).replace("-", "+").replace("_", "/"))
    text = text[: len(text) - len(text) % 4] if len(text) % 4 == 1 else text
    try:
        decoded = base64.b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as error:
        raise ValueError(f"not base64: {error}") from None
    return decoded.decode("utf-8", errors="replace")


class Util:
    """`$util`; stateless, one instance serves every render."""

    __slots__ = ()


OBJECT_METHODS[Util] = {
    "escapeJavaScript": lambda _util, value: escape_javascript(value),
    "parseJson": lambda _util, value: parse_json(java_str(value)),
    "urlEncode": lambda _util, value: url_encode(value),
    "urlDecode": lambda _util, value: url_decode(value),
    "base64Encode": lambda _util, value: base64_encode(value),
    "base64Decode": lambda _util, value: base64_decode(value),
}
UTIL = Util()
