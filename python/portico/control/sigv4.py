"""AWS Signature Version 4 verification for the admin API.

`verify(...)` rebuilds the canonical request exactly as botocore's signer builds it and compares
signatures in constant time. Both forms are accepted: the `Authorization` header and a presigned
query string (`X-Amz-Algorithm`, `X-Amz-Credential`, ..., `X-Amz-Signature`). The credential
scope's region is free (any region is accepted and handed on); its service must be `apigateway`.

Canonical request (what botocore signs):
- method;
- canonical URI: the path *as sent* (still percent-encoded), dot segments and repeated slashes
  removed, then percent-encoded once more (everything but unreserved characters, `/` and `~`).
  So `/v2/apis/x/stages/%24default` is signed as `/v2/apis/x/stages/%2524default`;
- canonical query: pairs decoded and re-encoded (unreserved characters only), sorted by key then
  value; the presigned form leaves `X-Amz-Signature` out;
- canonical headers: the signed headers, lower-cased, values trimmed with inner whitespace runs
  collapsed, repeated headers joined by `,`; then the signed header list;
- payload hash: `X-Amz-Content-Sha256` when sent, else hex SHA-256 of the body.

Errors are AWS's (all 403): no credentials -> MissingAuthenticationTokenException; unknown access
key -> UnrecognizedClientException; wrong signature -> InvalidSignatureException whose message,
as AWS's, also shows the canonical request and string to sign the server computed (neither holds
the secret); a date more than 5 minutes off -> InvalidSignatureException `Signature expired`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote

from portico.control.errors import (
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "apigateway"
MAX_SKEW = dt.timedelta(minutes=5)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_TIME_FORMAT = "%Y%m%dT%H%M%SZ"

SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS "
    "Secret Access Key and signing method. Consult the service documentation for details."
)


@dataclass(frozen=True)
class Identity:
    """Who signed a request."""

    access_key_id: str
    region: str
    date: str  # the X-Amz-Date, yyyymmddThhmmssZ


def remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4, plus AWS's removal of empty segments (as botocore does)."""
    if not path:
        return "/"
    kept: list[str] = []
    for segment in path.split("/"):
        if segment and segment != ".":
            if segment == "..":
                if kept:
                    kept.pop()
            else:
                kept.append(segment)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and kept else ""
    return first + "/".join(kept) + last


def canonical_uri(raw_path: str) -> str:
    return quote(remove_dot_segments(raw_path or "/"), safe="/~")


def canonical_query(raw_query: str, exclude: Iterable[str] = ()) -> str:
    excluded = set(exclude)
    pairs = []
    for pair in raw_query.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        key, value = unquote(key), unquote(value)
        if key in excluded:
            continue
        pairs.append((quote(key, safe="-_.~"), quote(value, safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _header_values(headers: Mapping[str, str] | Iterable[tuple[str, str]], name: str) -> list[str]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    getall = getattr(headers, "getall", None)
    if getall is not None:  # a multidict: every value of a repeated header
        return list(getall(name, []))
    return [value for key, value in items if key.lower() == name]


def canonical_request(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    signed_headers: list[str],
    payload_hash: str,
    exclude_query: Iterable[str] = (),
) -> str:
    lines = []
    for name in signed_headers:
        values = _header_values(headers, name)
        lines.append(f"{name}:" + ",".join(" ".join(v.split()) for v in values))
    return "\n".join(
        [
            method.upper(),
            canonical_uri(raw_path),
            canonical_query(raw_query, exclude_query),
            "\n".join(lines) + "\n",
            ";".join(signed_headers),
            payload_hash,
        ]
    )


def signing_key(secret: str, date: str, region: str, service: str = SERVICE) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    return "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])


def _parse_authorization(value: str) -> dict[str, str]:
    algorithm, _, rest = value.strip().partition(" ")
    fields: dict[str, str] = {}
    for part in rest.split(",") if algorithm == ALGORITHM else ():
        key, sep, item = part.strip().partition("=")
        if sep:
            fields[key.strip()] = item.strip()
    missing = [name for name in ("Credential", "SignedHeaders", "Signature") if name not in fields]
    if missing:
        raise IncompleteSignatureException(
            " ".join(f"Authorization header requires '{name}' parameter." for name in missing)
            + f" Authorization={algorithm}"
        )
    return fields


def _parse_date(text: str) -> dt.datetime:
    try:
        return dt.datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        pass
    try:  # the Date header: an HTTP-date
        from email.utils import parsedate_to_datetime

        return parsedate_to_datetime(text).astimezone(dt.UTC)
    except (TypeError, ValueError):
        raise IncompleteSignatureException(
            f"Date must be in ISO-8601 'basic format'. Got '{text}'."
        ) from None


def verify(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    body: bytes,
    secret_for: Callable[[str], str | None],
    now: dt.datetime | None = None,
) -> Identity:
    """Check a request's SigV4 signature; return who signed it or raise a 403 ServiceError.

    `raw_path` is the path exactly as sent (percent-encoded), `raw_query` the query string after
    `?`, `headers` a case-insensitive mapping (a multidict keeps repeated headers apart),
    `secret_for(access_key_id)` returns the secret or None for an unknown key.
    """
    query_params = {}
    for pair in raw_query.split("&"):
        key, _, value = pair.partition("=")
        if key.startswith("X-Amz-"):
            query_params[unquote(key)] = unquote(value)
    authorization = headers.get("Authorization") or headers.get("authorization")
    presigned = "X-Amz-Signature" in query_params and not authorization
    if authorization:
        fields = _parse_authorization(authorization)
        credential, signed, signature = fields["Credential"], fields["SignedHeaders"], fields["Signature"]
        amz_date = headers.get("X-Amz-Date") or headers.get("x-amz-date")
        if not amz_date:
            amz_date = headers.get("Date") or headers.get("date")
            if not amz_date:
                raise IncompleteSignatureException(
                    "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
                )
        exclude: tuple[str, ...] = ()
        expires = MAX_SKEW
    elif presigned:
        if query_params.get("X-Amz-Algorithm") != ALGORITHM:
            raise IncompleteSignatureException("X-Amz-Algorithm must be AWS4-HMAC-SHA256.")
        try:
            credential = query_params["X-Amz-Credential"]
            signed = query_params["X-Amz-SignedHeaders"]
            signature = query_params["X-Amz-Signature"]
            amz_date = query_params["X-Amz-Date"]
        except KeyError as missing:
            raise IncompleteSignatureException(f"Query-string authentication requires {missing}.") from None
        exclude = ("X-Amz-Signature",)
        try:
            expires = dt.timedelta(seconds=int(query_params.get("X-Amz-Expires", "900")))
        except ValueError:
            raise IncompleteSignatureException("X-Amz-Expires must be an integer.") from None
    else:
        raise MissingAuthenticationTokenException("Missing Authentication Token")

    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise IncompleteSignatureException(
            f"Credential should be scoped to a valid region, not '{credential}'. "
            "Credential must have exactly 5 slash-delimited elements, e.g. "
            "keyid/date/region/service/aws4_request."
        )
    access_key_id, scope_date, region, service, _ = parts
    if service != SERVICE:
        raise InvalidSignatureException(f"Credential should be scoped to correct service: '{SERVICE}'. ")
    secret = secret_for(access_key_id)
    if secret is None:
        raise UnrecognizedClientException("The security token included in the request is invalid.")

    signed_time = _parse_date(amz_date)
    now = now or dt.datetime.now(dt.UTC)
    stamp = signed_time.strftime(_TIME_FORMAT)
    if presigned:
        if now > signed_time + expires:
            raise InvalidSignatureException(
                f"Signature expired: {stamp} is now earlier than "
                f"{(now - expires).strftime(_TIME_FORMAT)} ({now.strftime(_TIME_FORMAT)} - {expires})"
            )
    elif signed_time < now - MAX_SKEW:
        raise InvalidSignatureException(
            f"Signature expired: {stamp} is now earlier than "
            f"{(now - MAX_SKEW).strftime(_TIME_FORMAT)} ({now.strftime(_TIME_FORMAT)} - 5 min.)"
        )
    if signed_time > now + MAX_SKEW:
        raise InvalidSignatureException(
            f"Signature not yet current: {stamp} is still later than "
            f"{(now + MAX_SKEW).strftime(_TIME_FORMAT)} ({now.strftime(_TIME_FORMAT)} + 5 min.)"
        )
    if scope_date != stamp[:8]:
        raise InvalidSignatureException(
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
            f"'{scope_date}' != '{stamp[:8]}', from '{amz_date}'."
        )

    signed_headers = [name.strip().lower() for name in signed.split(";") if name.strip()]
    if "host" not in signed_headers:
        raise InvalidSignatureException("'Host' must be a 'SignedHeader' in the AWS Authorization.")
    payload_hash = headers.get("X-Amz-Content-Sha256") or headers.get("x-amz-content-sha256")
    if not payload_hash:
        payload_hash = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
    canonical = canonical_request(method, raw_path, raw_query, headers, signed_headers, payload_hash, exclude)
    scope = f"{scope_date}/{region}/{service}/aws4_request"
    to_sign = string_to_sign(stamp, scope, canonical)
    expected = hmac.new(signing_key(secret, scope_date, region, service), to_sign.encode(), hashlib.sha256)
    if not hmac.compare_digest(expected.hexdigest(), signature.strip().lower()):
        raise InvalidSignatureException(
            f"{SIGNATURE_MISMATCH}\n\nThe Canonical String for this request should have been\n"
            f"'{canonical}'\n\nThe String-to-Sign should have been\n'{to_sign}'\n"
        )
    return Identity(access_key_id, region, amz_date)
