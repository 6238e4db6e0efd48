"""SigV4 verification against botocore's own signer."""

from __future__ import annotations

import datetime as dt
from urllib.parse import quote, urlsplit

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portico.control import sigv4
from portico.control.errors import (
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)

KEY, SECRET, REGION = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "eu-west-3"
HOST = "127.0.0.1:4510"
CREDS = botocore.credentials.Credentials(KEY, SECRET)


class Headers(dict):
    """Case-insensitive enough for verify(): lookups by the spellings it uses."""

    def get(self, name, default=None):
        for key, value in self.items():
            if key.lower() == name.lower():
                return value
        return default


def sign(method: str, path: str, query: str = "", body: bytes = b"", headers=None):
    url = f"http://{HOST}{path}" + (f"?{query}" if query else "")
    request = botocore.awsrequest.AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    botocore.auth.SigV4Auth(CREDS, "apigateway", REGION).add_auth(request)
    parts = urlsplit(request.url)
    sent = Headers(request.headers.items())
    sent["Host"] = HOST
    return method, parts.path, parts.query, sent, body


def check(method, path, query, headers, body, **kw):
    return sigv4.verify(method, path, query, headers, body, {KEY: SECRET}.get, **kw)


def test_boto3_style_requests_verify() -> None:
    for path in ("/v2/apis/abc/stages/%24default", "/v2/apis/a/routes/GET%20%2Fx%2F%7Bid%7D", "/restapis"):
        identity = check(*sign("GET", path, "limit=2&position=x%20y"))
        assert identity == sigv4.Identity(KEY, REGION, identity.date)
    assert check(
        *sign("POST", "/v2/apis", body=b'{"name":"x"}', headers={"Content-Type": "application/json"})
    )


def test_failures() -> None:
    method, path, query, headers, body = sign("GET", "/restapis")
    with pytest.raises(MissingAuthenticationTokenException, match="Missing Authentication Token"):
        check(method, path, query, Headers(Host=HOST), body)
    with pytest.raises(UnrecognizedClientException):
        sigv4.verify(method, path, query, headers, body, {}.get)
    with pytest.raises(InvalidSignatureException, match="does not match") as raised:
        sigv4.verify(method, path, query, headers, body, {KEY: "other"}.get)
    assert "other" not in str(raised.value) and SECRET not in str(raised.value)
    with pytest.raises(InvalidSignatureException, match="Signature expired"):
        check(*sign("GET", "/restapis"), now=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=6))
    broken = Headers(headers, Authorization="AWS4-HMAC-SHA256 Credential=x")
    with pytest.raises(IncompleteSignatureException):
        check(method, path, query, broken, body)
    wrong_service = Headers(headers, Authorization=headers["Authorization"].replace("/apigateway/", "/s3/"))
    with pytest.raises(InvalidSignatureException, match="correct service"):
        check(method, path, query, wrong_service, body)


def test_explicit_payload_hash_is_honoured() -> None:
    method, path, query, headers, _ = sign(
        "PUT", "/restapis/x", body=b"abc", headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}
    )
    assert check(method, path, query, headers, b"anything")


# Path segments and query parts: any text, percent-encoded as boto3 would.
segment = st.text(min_size=1, max_size=12).filter(lambda s: s not in (".", ".."))
segments = st.lists(segment, min_size=1, max_size=5)
pairs = st.lists(st.tuples(st.text(min_size=1, max_size=8), st.text(max_size=8)), max_size=4)


def encode(path_segments, query_pairs) -> tuple[str, str]:
    path = "/" + "/".join(quote(s, safe="") for s in path_segments)
    query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in query_pairs)
    return path, query


@settings(max_examples=150, deadline=None)
@given(segments, pairs, st.binary(max_size=64), st.sampled_from(["GET", "POST", "PATCH", "DELETE"]))
def test_any_botocore_signed_request_verifies(path_segments, query_pairs, body, method) -> None:
    path, query = encode(path_segments, query_pairs)
    assert check(*sign(method, path, query, body)).access_key_id == KEY


@settings(max_examples=150, deadline=None)
@given(segments, pairs, st.binary(max_size=64), st.data())
def test_any_single_change_fails(path_segments, query_pairs, body, data) -> None:
    path, query = encode(path_segments, query_pairs)
    method, sent_path, sent_query, headers, sent_body = sign("POST", path, query, body)
    target = data.draw(
        st.sampled_from(["path", "query", "body", "header"] if query_pairs else ["path", "body"])
    )
    if target == "body":
        index = data.draw(st.integers(0, max(len(body), 1) - 1)) if body else 0
        flipped = bytearray(body or b"\0")
        flipped[index] ^= 1 << data.draw(st.integers(0, 7))
        sent_body = bytes(flipped)
    elif target == "header":
        stamp = headers["X-Amz-Date"]  # yyyymmddThhmmssZ: change the seconds
        seconds = "00" if stamp[-3:-1] != "00" else "01"
        headers = Headers(headers, **{"X-Amz-Date": stamp[:-3] + seconds + "Z"})
    else:
        # Change one character of one decoded segment / query key or value, then re-encode.
        items = list(path_segments) if target == "path" else [p for pair in query_pairs for p in pair]
        index = data.draw(st.integers(0, len(items) - 1))
        text = items[index] or "\0"
        position = data.draw(st.integers(0, len(text) - 1))
        replacement = data.draw(st.characters().filter(lambda c, old=text[position]: c != old))
        items[index] = text[:position] + replacement + text[position + 1 :]
        if target == "path":
            if items[index] in (".", ".."):
                return
            sent_path = encode(items, [])[0]
        else:
            changed = list(zip(items[::2], items[1::2], strict=True))
            if sorted(changed) == sorted(query_pairs):
                return  # swapping equal pairs is no change
            sent_query = encode(["x"], changed)[1]
    with pytest.raises(InvalidSignatureException):
        check(method, sent_path, sent_query, headers, sent_body)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="/.ab%", max_size=20))
def test_dot_segment_removal_matches_botocore(path) -> None:
    from botocore.utils import normalize_url_path

    assert sigv4.remove_dot_segments(path) == normalize_url_path(path)
