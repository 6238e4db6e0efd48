"""AWS_IAM authorization: requests signed with botocore's own SigV4 signers (`SigV4Auth`, and
`SigV4QueryAuth` for presigned URLs) are verified in the core against the principals Portico knows,
then the signer's identity policy and the REST API's resource policy decide. Every refusal is
AWS's status, body and `x-amzn-ErrorType`, and the integration never sees it (it counts its calls).

In process through the embedded door (a DataPlane over a raw spec), then end to end: a config
file's principals and AWS_IAM routes behind `portico serve`'s edge, and methods and routes made
AWS_IAM through the admin API with boto3, called signed with the admin key.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import httpx
import pytest
from aiohttp import web
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portico.compile import spec as S
from portico.compile.files import CompiledConfig, CompileError, compile_config
from portico.config.loader import ConfigFileError, load_config
from portico.config.models import Config
from portico.dataplane.app import DataPlane
from portico.integrations.functions import FunctionRegistry
from portico.serve import admin_principal

REGION = "us-east-1"
ACCOUNT = "123456789012"
REST_ID, HTTP_ID = "iamrest", "iamhttp"
MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS "
    "Secret Access Key and signing method. Consult the service documentation for details."
)
STAMP = r"(\d{8}T\d{6}Z)"


@dataclass(frozen=True)
class Key:
    access_key_id: str
    secret: str
    arn: str
    policy: dict | None = None
    token: str | None = None

    @property
    def account(self) -> str:
        return self.arn.split(":")[4]


def _invoke(effect: str, resource: str) -> dict:
    return {"Effect": effect, "Action": "execute-api:Invoke", "Resource": resource}


ROOT = Key("AKIAROOTEXAMPLE00001", "root/Secret+Key0123456789abcdefGHIJKLMN", f"arn:aws:iam::{ACCOUNT}:root")
ALICE = Key(
    "AKIAALICEEXAMPLE0001",
    "alice/Secret+Key0123456789abcdefGHIJKL",
    f"arn:aws:iam::{ACCOUNT}:user/alice",
    {
        "Version": "2012-10-17",
        "Statement": [
            _invoke("Allow", f"arn:aws:execute-api:{REGION}:{ACCOUNT}:*/*"),
            _invoke("Deny", "arn:aws:execute-api:*:*:*/*/DELETE/*"),
        ],
    },
)
# Allowed nothing of execute-api by its own policy.
BOB = Key(
    "AKIABOBEXAMPLE000001",
    "bob/Secret+Key0123456789abcdefGHIJKLMNO",
    f"arn:aws:iam::{ACCOUNT}:user/bob",
    {"Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}},
)
# Temporary credentials of a role session.
TEMP = Key(
    "ASIATEMPEXAMPLE00001",
    "temp/Secret+Key0123456789abcdefGHIJKLMN",
    f"arn:aws:sts::{ACCOUNT}:assumed-role/reader/session-1",
    {"Statement": [_invoke("Allow", "*")]},
    token="IQoJb3JpZ2luX2VjEXAMPLE//Session+Token=",
)
# Another account's user, allowed by its own policy.
CAROL = Key(
    "AKIACAROLEXAMPLE0001",
    "carol/Secret+Key0123456789abcdefGHIJKL",
    "arn:aws:iam::999999999999:user/carol",
    {"Statement": [_invoke("Allow", "*")]},
)
# A key no principal has.
NOBODY = Key(
    "AKIANOBODYEXAMPLE001", "nobody/Secret+Key0123456789abcdefGHIJ", f"arn:aws:iam::{ACCOUNT}:user/x"
)
KEYS = [ROOT, ALICE, BOB, TEMP, CAROL]
SECRETS = [k.secret for k in KEYS] + [TEMP.token]


def principals() -> list[S.PrincipalSpec]:
    return [S.principal(k.access_key_id, k.secret, k.arn, k.account, k.policy, k.token) for k in KEYS]


def sign(
    method: str,
    url: str,
    key: Key,
    *,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    region: str = REGION,
    service: str = "execute-api",
    at: dt.datetime | None = None,
    presign: bool = False,
    expires: int = 300,
    token: str | None = None,
) -> tuple[str, dict[str, str]]:
    """(url, headers) of `method url` signed by botocore as `key` (at `at`, UTC; default now)."""
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    credentials = Credentials(key.access_key_id, key.secret, token or key.token)
    signer = (
        SigV4QueryAuth(credentials, service, region, expires=expires)
        if presign
        else SigV4Auth(credentials, service, region)
    )
    when = (at or dt.datetime.now(dt.UTC)).replace(tzinfo=None)
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        signer.add_auth(request)
    return request.url, dict(request.headers.items())


# ------------------------------------------------------------------------------------ in process


class Plane:
    """A data plane serving one API (REST `iamrest`, stage `prod`; or HTTP `iamhttp`, `$default`):
    `ANY /{proxy+}` is AWS_IAM, `GET /open` is not; both go to a Lambda that records its events."""

    def __init__(self, kind: str, policy: dict | None = None, access_log: Path | None = None) -> None:
        self.kind = kind
        self.calls: list[dict] = []
        registry = FunctionRegistry()

        def echo(event: dict, context: object) -> dict:
            self.calls.append(event)
            return {"statusCode": 200, "body": "ok"}

        registry.register("echo", echo)
        version = "1.0" if kind == "rest" else "2.0"
        routes = [
            S.route("ANY /{proxy+}", S.lambda_proxy("echo", version), S.route_auth("AWS_IAM")),
            S.route("GET /open", S.lambda_proxy("echo", version)),
        ]
        stage = "prod" if kind == "rest" else "$default"
        api = S.api(
            REST_ID if kind == "rest" else HTTP_ID,
            "signed",
            kind,  # type: ignore[arg-type]
            [S.stage(stage, deployment_id="d1")],
            routes=routes,
            policy=policy,
        )
        log = S.access_log(_LOG_FORMAT, str(access_log)) if access_log else None
        spec = S.spec([api], principals=principals(), account_id=ACCOUNT, region=REGION, access_log=log)
        self.app = DataPlane(CompiledConfig(Config(), spec, "d1"), registry=registry)
        self.base = "http://gw/prod" if kind == "rest" else "http://gw"

    async def send(
        self, method: str, url: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> httpx.Response:
        transport = httpx.ASGITransport(app=self.app, client=("192.0.2.10", 5000))
        async with httpx.AsyncClient(transport=transport) as client:
            return await client.request(method, url, headers=headers, content=body)

    async def signed(self, method: str, path: str, key: Key, **kwargs) -> httpx.Response:
        body = kwargs.get("body", b"")
        url, headers = sign(method, self.base + path, key, **kwargs)
        return await self.send(method, url, headers, body)

    def stop(self) -> None:
        self.app.stop()


_LOG_FORMAT = json.dumps(
    {
        "status": "$context.status",
        "accessKey": "$context.identity.accessKey",
        "caller": "$context.identity.caller",
        "user": "$context.identity.user",
        "userArn": "$context.identity.userArn",
        "accountId": "$context.identity.accountId",
        "error": "$context.error.message",
        "type": "$context.error.responseType",
        "integrationError": "$context.integrationErrorMessage",
    }
)


@pytest.fixture
def rest() -> Iterator[Plane]:
    plane = Plane("rest")
    yield plane
    plane.stop()


@pytest.fixture
def http() -> Iterator[Plane]:
    plane = Plane("http")
    yield plane
    plane.stop()


async def test_signed_requests_reach_the_integration_as_their_signer(rest: Plane) -> None:
    for key in (ROOT, ALICE, TEMP):
        response = await rest.signed("GET", "/pets?limit=2", key)
        assert response.status_code == 200, response.text
        identity = rest.calls[-1]["requestContext"]["identity"]
        assert identity["accessKey"] == key.access_key_id
        assert identity["accountId"] == ACCOUNT
        assert identity["userArn"] == key.arn
        assert identity["user"] == identity["caller"]
    assert len(rest.calls) == 3
    # The root's id is its account; a user's is AIDA + 17; a role session's is the role's AROA id
    # and the session name.
    callers = [event["requestContext"]["identity"]["caller"] for event in rest.calls]
    assert callers[0] == ACCOUNT
    assert re.fullmatch(r"AIDA[A-Z2-7]{17}", callers[1])
    assert re.fullmatch(r"AROA[A-Z2-7]{17}:session-1", callers[2])
    # The same principal keeps its id.
    await rest.signed("GET", "/pets", ALICE)
    assert rest.calls[-1]["requestContext"]["identity"]["caller"] == callers[1]
    # A route without AWS_IAM shows no signer.
    assert (await rest.send("GET", f"{rest.base}/open")).status_code == 200
    assert rest.calls[-1]["requestContext"]["identity"]["userArn"] is None


async def test_http_api_events_carry_the_signer_as_authorizer_iam(http: Plane) -> None:
    response = await http.signed(
        "POST", "/pets", ALICE, body=b'{"name": "rex"}', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    event = http.calls[-1]
    iam = event["requestContext"]["authorizer"]["iam"]
    assert iam == {
        "accessKey": ALICE.access_key_id,
        "accountId": ACCOUNT,
        "callerId": iam["callerId"],
        "cognitoIdentity": None,
        "principalOrgId": None,
        "userArn": ALICE.arn,
        "userId": iam["callerId"],
    }
    assert re.fullmatch(r"AIDA[A-Z2-7]{17}", iam["callerId"])
    assert event["body"] == '{"name": "rex"}'


PATHS = ["/pets", "/a%20b", "/%C3%A9t%C3%A9/caf%C3%A9", "/a%2Fb/c", "/deep/er/path/", "/x~y-z_.1"]
QUERIES = ["", "b=2&a=1&a=0", "a=2&a=1&b=&c=3", "flag&empty=", "q=%E2%9C%93&sp=a%20b&pl=1%2B1"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("query", QUERIES)
async def test_paths_and_queries_as_botocore_signs_them(rest: Plane, path: str, query: str) -> None:
    target = path + (f"?{query}" if query else "")
    assert (await rest.signed("GET", target, ALICE)).status_code == 200
    # The presigned form: the signature in the query string, a session token with it.
    presigned = await rest.signed("GET", target, TEMP, presign=True)
    assert presigned.status_code == 200, presigned.text
    assert len(rest.calls) == 2
    assert rest.calls[-1]["requestContext"]["identity"]["userArn"] == TEMP.arn


@pytest.mark.parametrize(
    "method, body, headers",
    [
        ("POST", b'{"n": 1}', {"Content-Type": "application/json"}),
        ("PUT", bytes(range(256)) * 1024, {"Content-Type": "application/octet-stream"}),
        ("PATCH", b"", {}),
        # The payload hash sent in X-Amz-Content-Sha256 (signed) stands for the body.
        (
            "POST",
            b"hashed by the client",
            {"X-Amz-Content-Sha256": hashlib.sha256(b"hashed by the client").hexdigest()},
        ),
    ],
)
async def test_bodies_are_hashed_and_handed_on(rest: Plane, method: str, body: bytes, headers: dict) -> None:
    response = await rest.signed(method, "/items", ALICE, body=body, headers=headers)
    assert response.status_code == 200, response.text
    event = rest.calls[-1]
    received = event["body"] or ""
    if event["isBase64Encoded"]:
        import base64

        assert base64.b64decode(received) == body
    else:
        assert received.encode() == body


# Each case: how the request is made (from a plane), and AWS's answer: x-amzn-ErrorType and the
# message, exact or as a pattern.
def _case_missing(plane):
    return "GET", plane.base + "/pets", {}, b""


def _case_bearer(plane):
    return "GET", plane.base + "/pets", {"Authorization": "Bearer abc.def"}, b""


def _case_no_signature(plane):
    url, headers = sign("GET", plane.base + "/pets", ALICE)
    headers["Authorization"] = headers["Authorization"].split(", Signature=")[0]
    return "GET", url, headers, b""


def _case_wrong_secret(plane):
    impostor = Key(ALICE.access_key_id, "not/alices+secret", ALICE.arn)
    return ("GET", *sign("GET", plane.base + "/pets", impostor), b"")


def _case_unknown_key(plane):
    return ("GET", *sign("GET", plane.base + "/pets", NOBODY), b"")


def _case_region(plane):
    return ("GET", *sign("GET", plane.base + "/pets", ALICE, region="eu-west-1"), b"")


def _case_service(plane):
    return ("GET", *sign("GET", plane.base + "/pets", ALICE, service="apigateway"), b"")


def _case_expired(plane):
    at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=6)
    return ("GET", *sign("GET", plane.base + "/pets", ALICE, at=at), b"")


def _case_future(plane):
    at = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=6)
    return ("GET", *sign("GET", plane.base + "/pets", ALICE, at=at), b"")


def _case_presigned_expired(plane):
    at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=120)
    return ("GET", *sign("GET", plane.base + "/pets", ALICE, at=at, presign=True, expires=60), b"")


def _case_tampered_body(plane):
    url, headers = sign("POST", plane.base + "/pets", ALICE, body=b'{"amount": 1}')
    return "POST", url, headers, b'{"amount": 1000}'


def _case_tampered_path(plane):
    url, headers = sign("GET", plane.base + "/pets", ALICE)
    return "GET", url.replace("/pets", "/pets2"), headers, b""


def _case_tampered_query(plane):
    url, headers = sign("GET", plane.base + "/pets?owner=alice", ALICE)
    return "GET", url.replace("owner=alice", "owner=bob"), headers, b""


def _case_tampered_header(plane):
    url, headers = sign("GET", plane.base + "/pets", ALICE, headers={"X-Tenant": "a"})
    headers["X-Tenant"] = "b"
    return "GET", url, headers, b""


def _case_tampered_presigned(plane):
    url, headers = sign("GET", plane.base + "/pets?owner=alice", ALICE, presign=True)
    return "GET", url.replace("owner=alice", "owner=bob"), headers, b""


def _case_wrong_token(plane):
    return ("GET", *sign("GET", plane.base + "/pets", TEMP, token="IQoJb3JpZ2luX2VjANOTHER"), b"")


def _case_token_of_no_key(plane):
    return ("GET", *sign("GET", plane.base + "/pets", ALICE, token="IQoJb3JpZ2luX2VjEXAMPLE"), b"")


def _case_identity_deny(plane):
    return ("DELETE", *sign("DELETE", plane.base + "/pets", ALICE), b"")


def _case_identity_implicit(plane):
    return ("GET", *sign("GET", plane.base + "/pets", BOB), b"")


def _case_other_account(plane):
    return ("GET", *sign("GET", plane.base + "/pets", CAROL), b"")


METHOD_ARN = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{REST_ID}/prod"
REJECTIONS = [
    pytest.param(
        _case_missing, "MissingAuthenticationTokenException", "Missing Authentication Token", id="missing"
    ),
    pytest.param(
        _case_bearer,
        "IncompleteSignatureException",
        "'abc.def' not a valid key=value pair (missing equal-sign) in Authorization header: "
        "'Bearer abc.def'.",
        id="malformed-bearer",
    ),
    pytest.param(
        _case_no_signature,
        "IncompleteSignatureException",
        re.compile(
            r"Authorization header requires 'Signature' parameter\. "
            r"Authorization=AWS4-HMAC-SHA256 Credential=.*"
        ),
        id="malformed-no-signature",
    ),
    pytest.param(
        _case_wrong_secret,
        "InvalidSignatureException",
        re.compile(
            re.escape(MISMATCH)
            + r"\n\nThe Canonical String for this request should have been\n'GET\n/prod/pets\n\nhost:gw\n"
            + r"x-amz-date:\d{8}T\d{6}Z\n\nhost;x-amz-date\n"
            + r"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'"
            + r"\n\nThe String-to-Sign should have been\n'AWS4-HMAC-SHA256\n\d{8}T\d{6}Z\n"
            + r"\d{8}/us-east-1/execute-api/"
            + r"aws4_request\n[0-9a-f]{64}'\n"
        ),
        id="wrong-secret",
    ),
    pytest.param(
        _case_unknown_key,
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
        id="unknown-key",
    ),
    pytest.param(
        _case_region,
        "InvalidSignatureException",
        "Credential should be scoped to a valid region, not 'eu-west-1'. ",
        id="wrong-region",
    ),
    pytest.param(
        _case_service,
        "InvalidSignatureException",
        "Credential should be scoped to correct service: 'execute-api'. ",
        id="wrong-service",
    ),
    pytest.param(
        _case_expired,
        "InvalidSignatureException",
        re.compile(rf"Signature expired: {STAMP} is now earlier than {STAMP} \({STAMP} - 5 min\.\)"),
        id="expired",
    ),
    pytest.param(
        _case_future,
        "InvalidSignatureException",
        re.compile(rf"Signature not yet current: {STAMP} is still later than {STAMP} \({STAMP} \+ 5 min\.\)"),
        id="future",
    ),
    pytest.param(
        _case_presigned_expired,
        "InvalidSignatureException",
        re.compile(rf"Signature expired: {STAMP} is now earlier than {STAMP} \({STAMP} - 60 sec\.\)"),
        id="presigned-expired",
    ),
    pytest.param(
        _case_tampered_body,
        "InvalidSignatureException",
        re.compile(
            re.escape(MISMATCH) + ".*\n" + hashlib.sha256(b'{"amount": 1000}').hexdigest() + "'\n" + ".*",
            re.S,
        ),
        id="tampered-body",
    ),
    pytest.param(
        _case_tampered_path,
        "InvalidSignatureException",
        re.compile(re.escape(MISMATCH) + r".*should have been\n'GET\n/prod/pets2\n" + ".*", re.S),
        id="tampered-path",
    ),
    pytest.param(
        _case_tampered_query,
        "InvalidSignatureException",
        re.compile(re.escape(MISMATCH) + r".*should have been\n'GET\n/prod/pets\nowner=bob\n" + ".*", re.S),
        id="tampered-query",
    ),
    pytest.param(
        _case_tampered_header,
        "InvalidSignatureException",
        re.compile(re.escape(MISMATCH) + r".*\nx-tenant:b\n" + ".*", re.S),
        id="tampered-header",
    ),
    pytest.param(
        _case_tampered_presigned,
        "InvalidSignatureException",
        re.compile(re.escape(MISMATCH) + r".*owner=bob\n" + ".*", re.S),
        id="tampered-presigned",
    ),
    pytest.param(
        _case_wrong_token,
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
        id="wrong-session-token",
    ),
    pytest.param(
        _case_token_of_no_key,
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
        id="session-token-of-a-long-term-key",
    ),
    pytest.param(
        _case_identity_deny,
        "AccessDeniedException",
        f"User: {ALICE.arn} is not authorized to perform: execute-api:Invoke on resource: "
        f"{METHOD_ARN}/DELETE/pets with an explicit deny",
        id="identity-policy-deny",
    ),
    pytest.param(
        _case_identity_implicit,
        "AccessDeniedException",
        f"User: {BOB.arn} is not authorized to perform: execute-api:Invoke on resource: "
        f"{METHOD_ARN}/GET/pets",
        id="identity-policy-allows-nothing",
    ),
    pytest.param(
        _case_other_account,
        "AccessDeniedException",
        f"User: {CAROL.arn} is not authorized to perform: execute-api:Invoke on resource: "
        f"{METHOD_ARN}/GET/pets",
        id="another-account-without-resource-policy",
    ),
]


def _message_of(response: httpx.Response) -> str:
    body = response.json()
    # REST APIs key an ACCESS_DENIED message `Message`, as AWS does.
    return body.get("message", body.get("Message"))


@pytest.mark.parametrize("make, error_type, message", REJECTIONS)
async def test_rest_refusals_are_awss_and_never_reach_the_integration(
    rest: Plane, make, error_type, message
) -> None:
    method, url, headers, body = make(rest)
    response = await rest.send(method, url, headers, body)
    assert response.status_code == 403
    assert response.headers["x-amzn-errortype"] == error_type
    assert response.headers["content-type"] == "application/json"
    text = _message_of(response)
    if isinstance(message, str):
        assert text == message
    else:
        assert message.fullmatch(text), text
    assert rest.calls == []


async def test_the_expired_message_names_the_signed_time_and_the_window(rest: Plane) -> None:
    at = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=7)
    response = await rest.signed("GET", "/pets", ALICE, at=at)
    signed, earliest, now = re.fullmatch(
        rf"Signature expired: {STAMP} is now earlier than {STAMP} \({STAMP} - 5 min\.\)",
        response.json()["message"],
    ).groups()
    fmt = "%Y%m%dT%H%M%SZ"
    assert signed == at.strftime(fmt)
    parsed = {name: dt.datetime.strptime(v, fmt) for name, v in (("earliest", earliest), ("now", now))}
    assert parsed["now"] - parsed["earliest"] == dt.timedelta(minutes=5)
    assert abs(parsed["now"] - dt.datetime.now(dt.UTC).replace(tzinfo=None)) < dt.timedelta(minutes=1)


async def test_http_api_refusals(http: Plane) -> None:
    unsigned = await http.send("GET", f"{http.base}/pets")
    assert (unsigned.status_code, unsigned.json()) == (403, {"message": "Forbidden"})
    assert "x-amzn-errortype" not in unsigned.headers
    denied = await http.signed("DELETE", "/pets", ALICE)
    assert (denied.status_code, denied.json()) == (403, {"message": "Forbidden"})
    impostor = Key(ALICE.access_key_id, "not/alices+secret", ALICE.arn)
    mismatch = await http.signed("GET", "/pets", impostor)
    assert mismatch.status_code == 403
    assert mismatch.json()["message"].startswith(
        MISMATCH + "\n\nThe Canonical String for this request should have been\n'GET\n/pets\n"
    )
    unknown = await http.signed("GET", "/pets", NOBODY)
    assert unknown.json() == {"message": "The security token included in the request is invalid."}
    assert http.calls == []


async def test_resource_policies_judge_the_signer() -> None:
    """A REST API's resource policy is evaluated with the signer (same account: an allow in either
    policy is enough, an explicit deny in either refuses; another account: both must allow)."""
    api = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{REST_ID}"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": {"AWS": ALICE.arn},
                "Action": "execute-api:Invoke",
                "Resource": f"{api}/*",
            },
            {
                "Effect": "Allow",
                "Principal": {"AWS": BOB.arn},
                "Action": "execute-api:Invoke",
                "Resource": f"{api}/prod/GET/*",
            },
            {
                "Effect": "Allow",
                "Principal": {"AWS": "999999999999"},
                "Action": "execute-api:Invoke",
                "Resource": f"{api}/prod/GET/pets",
            },
        ],
    }
    plane = Plane("rest", policy)
    try:
        denied = await plane.signed("GET", "/pets", ALICE)
        assert denied.status_code == 403
        assert denied.json() == {
            "Message": f"User: {ALICE.arn} is not authorized to perform: execute-api:Invoke on resource: "
            f"{api}/prod/GET/pets with an explicit deny"
        }
        assert plane.calls == []
        # Bob's own policy allows nothing, the resource policy allows him GETs.
        assert (await plane.signed("GET", "/pets", BOB)).status_code == 200
        post = await plane.signed("POST", "/pets", BOB)
        assert (post.status_code, post.headers["x-amzn-errortype"]) == (403, "AccessDeniedException")
        # Another account's user: its policy and the resource policy allow GET /pets only.
        assert (await plane.signed("GET", "/pets", CAROL)).status_code == 200
        assert (await plane.signed("GET", "/toys", CAROL)).status_code == 403
        # The account's root, by its own (absent) policy.
        assert (await plane.signed("DELETE", "/pets", ROOT)).status_code == 200
        assert [e["requestContext"]["identity"]["userArn"] for e in plane.calls] == [
            BOB.arn,
            CAROL.arn,
            ROOT.arn,
        ]
        # Routes without AWS_IAM still see the policy for an anonymous caller: nothing allows it.
        anonymous = await plane.send("GET", f"{plane.base}/open")
        assert anonymous.json() == {
            "Message": "User: anonymous is not authorized to perform: execute-api:Invoke on resource: "
            f"{api}/prod/GET/open"
        }
        assert len(plane.calls) == 3
    finally:
        plane.stop()


async def test_no_secret_reaches_the_access_log_or_the_event(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    plane = Plane("rest", access_log=log)
    try:
        for key in KEYS:
            await plane.signed("GET", "/pets", key)
            await plane.signed("GET", "/pets", key, presign=True)
            await plane.signed("POST", "/pets", key, body=b"{}")
        for make in (
            _case_wrong_secret,
            _case_tampered_body,
            _case_wrong_token,
            _case_tampered_presigned,
            _case_bearer,
        ):
            await plane.send(*make(plane))
        signatures = []
        for key in KEYS:
            url, headers = sign("GET", plane.base + "/pets", key)
            signatures.append(headers["Authorization"].rsplit("Signature=", 1)[1])
            await plane.send("GET", url, headers)
    finally:
        plane.stop()
    lines = log.read_text().splitlines()
    assert len(lines) == 4 * len(KEYS) + 5
    records = [json.loads(line) for line in lines]
    # The signer is logged by its ids; the secrets, tokens and signatures never.
    assert {r["userArn"] for r in records if r["status"] == "200"} == {
        k.arn for k in KEYS if k not in (BOB, CAROL)
    }
    assert {r["accessKey"] for r in records if r["status"] == "200"} >= {
        ROOT.access_key_id,
        ALICE.access_key_id,
    }
    assert {r["type"] for r in records if r["status"] == "403"} >= {"INVALID_SIGNATURE", "ACCESS_DENIED"}
    text = log.read_text()
    for secret in [*SECRETS, *signatures]:
        assert secret not in text
    events = json.dumps(plane.calls)
    for key in KEYS:
        assert key.secret not in events


# ------------------------------------------------------------------------------------ hypothesis

_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300)
_HEX = st.text("0123456789abcdef", min_size=0, max_size=70)
_CREDENTIAL = st.builds(
    lambda key, date, region, service, term: f"{key}/{date}/{region}/{service}/{term}",
    st.sampled_from([ALICE.access_key_id, ROOT.access_key_id, "AKIA", ""]),
    st.sampled_from(["20240101", dt.datetime.now(dt.UTC).strftime("%Y%m%d"), "", "2024-01-01"]),
    st.sampled_from([REGION, "eu-west-1", ""]),
    st.sampled_from(["execute-api", "s3", ""]),
    st.sampled_from(["aws4_request", "aws4", ""]),
)
_SIGNED = st.lists(st.sampled_from(["host", "x-amz-date", "content-type", "Host", "", "x"]), max_size=4).map(
    ";".join
)
_STRUCTURED = st.builds(
    lambda algorithm, credential, signed, signature, sep: (
        f"{algorithm} Credential={credential}{sep}SignedHeaders={signed}{sep}Signature={signature}"
    ),
    st.sampled_from(["AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512", "Bearer", ""]),
    _CREDENTIAL,
    _SIGNED,
    _HEX,
    st.sampled_from([", ", ",", " ", ",,"]),
)
_DATE = st.one_of(
    st.just(dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")),
    st.just(dt.datetime.now(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")),
    _TEXT,
)
_QUERY_PARAM = st.sampled_from(
    [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
        "X-Amz-Security-Token",
        "a",
    ]
)
_QUERY = st.lists(st.tuples(_QUERY_PARAM, st.one_of(_TEXT, _HEX, _CREDENTIAL)), max_size=8).map(
    lambda pairs: "&".join(f"{httpx.QueryParams({k: v})}" for k, v in pairs)
)


@pytest.fixture(scope="module")
def module_rest() -> Iterator[Plane]:
    plane = Plane("rest")
    yield plane
    plane.stop()


@settings(
    max_examples=300,
    # A generous bound: a parser that went quadratic or hung would pass it by far.
    deadline=dt.timedelta(seconds=5),
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    authorization=st.one_of(st.none(), _TEXT, _STRUCTURED),
    date=st.one_of(st.none(), _DATE),
    token=st.one_of(st.none(), _TEXT),
    query=_QUERY,
)
def test_arbitrary_signatures_never_crash_and_never_pass(
    module_rest: Plane, authorization, date, token, query
) -> None:
    headers = {}
    if authorization is not None:
        headers["Authorization"] = authorization
    if date is not None:
        headers["X-Amz-Date"] = date
    if token is not None:
        headers["X-Amz-Security-Token"] = token
    url = f"{module_rest.base}/pets" + (f"?{query}" if query else "")
    before = len(module_rest.calls)
    response = asyncio.run(module_rest.send("GET", url, headers))
    assert response.status_code == 403, response.text
    assert response.headers["x-amzn-errortype"] in {
        "MissingAuthenticationTokenException",
        "IncompleteSignatureException",
        "InvalidSignatureException",
        "UnrecognizedClientException",
    }
    assert isinstance(response.json()["message"], str)
    assert len(module_rest.calls) == before


# ------------------------------------------------------------------------------------ config


def _config_file(tmp_path: Path, principals: list[dict], routes: list[dict] | None = None) -> Path:
    import yaml

    path = tmp_path / "portico.yaml"
    document = {
        "apis": [
            {
                "name": "signed",
                "id": "signedapi",
                "routes": routes
                or [
                    {
                        "routeKey": "GET /x",
                        "authorizationType": "AWS_IAM",
                        "integration": {"type": "MOCK", "statusCode": 200},
                    }
                ],
            }
        ],
        "principals": principals,
    }
    path.write_text(yaml.safe_dump(document))
    return path


def test_config_principals_are_validated(tmp_path: Path) -> None:
    good = {
        "accessKeyId": "AKIAGOODEXAMPLE00001",
        "secretAccessKey": "s/e+cret",
        "arn": f"arn:aws:iam::{ACCOUNT}:user/g",
    }
    for bad, problem in [
        ({**good, "arn": "alice"}, "principals[0].arn: expected an IAM or STS ARN"),
        (
            {**good, "accessKeyId": "short"},
            "principals[0].accessKeyId: access key ids are 16-128 letters and digits",
        ),
        (
            {**good, "policy": {"Version": "2012-10-17"}},
            "principals[0].policy: a policy document has a Statement",
        ),
        ({**good, "policy": "{not json"}, "principals[0].policy: the policy is not JSON"),
        ({**good, "secretKey": "x"}, "principals[0].secretKey: unknown field"),
    ]:
        with pytest.raises(ConfigFileError) as caught:
            load_config(_config_file(tmp_path, [bad]))
        assert any(problem in p for p in caught.value.problems), caught.value.problems
    with pytest.raises(ConfigFileError, match=r"principals\[1\]: access key id 'AKIAGOODEXAMPLE00001'"):
        load_config(_config_file(tmp_path, [good, good]))
    with pytest.raises(ConfigFileError, match=r"routes\[0\]\.authorizationType: must be one of"):
        load_config(
            _config_file(
                tmp_path,
                [good],
                [
                    {
                        "routeKey": "GET /x",
                        "authorizationType": "IAM",
                        "integration": {"type": "MOCK", "statusCode": 200},
                    }
                ],
            )
        )
    config = load_config(
        _config_file(tmp_path, [{**good, "policy": json.dumps({"Statement": [_invoke("Allow", "*")]})}])
    )
    # The secret is never shown.
    assert "s/e+cret" not in repr(config) and "s/e+cret" not in config.model_dump_json()
    compiled = compile_config(config, FunctionRegistry())
    assert compiled.spec["principals"][0]["account_id"] == ACCOUNT
    assert compiled.apis[0]["routes"][0]["auth"]["authorization"] == "AWS_IAM"
    # The admin key cannot be a config principal's too.
    from portico.compile.files import assemble

    with pytest.raises(CompileError, match="is the admin key's"):
        assemble(config, compiled.apis, "d1", admin_key=("AKIAGOODEXAMPLE00001", "other"))
    spec = assemble(config, compiled.apis, "d1", admin_key=("AKIAADMINEXAMPLE0001", "admin/secret")).spec
    assert spec["principals"][-1]["arn"] == f"arn:aws:iam::{ACCOUNT}:root"


def test_openapi_config_files_mark_sigv4_operations_aws_iam(tmp_path: Path) -> None:
    """A config file written as OpenAPI: `x-amazon-apigateway-auth: {type: AWS_IAM}`, or a security
    requirement naming an `awsSigv4` scheme (the operation's, else the document's), is AWS_IAM."""
    mock_integration = {
        "type": "http_proxy",
        "uri": "http://127.0.0.1:9/x",
        "httpMethod": "GET",
        "payloadFormatVersion": "1.0",
    }
    document = {
        "openapi": "3.0.1",
        "info": {"title": "signed", "version": "1"},
        "components": {
            "securitySchemes": {
                "sigv4": {
                    "type": "apiKey",
                    "name": "Authorization",
                    "in": "header",
                    "x-amazon-apigateway-authtype": "awsSigv4",
                }
            }
        },
        "security": [{"sigv4": []}],
        "paths": {
            "/inherited": {"get": {"x-amazon-apigateway-integration": mock_integration}},
            "/open": {"get": {"security": [], "x-amazon-apigateway-integration": mock_integration}},
            "/extension": {
                "get": {
                    "security": [],
                    "x-amazon-apigateway-auth": {"type": "aws_iam"},
                    "x-amazon-apigateway-integration": mock_integration,
                }
            },
        },
    }
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(document))
    routes = {r.route: r.authorizationType for r in load_config(path).apis[0].routes}
    assert routes == {"GET /inherited": "AWS_IAM", "GET /open": "NONE", "GET /extension": "AWS_IAM"}


def test_the_admin_key_reaches_workers_by_descriptor_not_environment() -> None:
    before = dict(os.environ)
    fd = admin_principal.share("AKIAADMINEXAMPLE0001", "admin/Secret+Key")
    try:
        assert all("admin/Secret+Key" not in value for value in os.environ.values())
        assert not os.get_inheritable(fd), "an exec'd program must not inherit it"
        assert admin_principal.take() == ("AKIAADMINEXAMPLE0001", "admin/Secret+Key")
        assert admin_principal.ENV_ADMIN_KEY_FD not in os.environ
        with pytest.raises(OSError):
            os.fstat(fd)  # the worker closed its descriptor
        assert admin_principal.take() is None
    finally:
        os.environ.clear()
        os.environ.update(before)


# ------------------------------------------------------------------------------------ end to end


class Upstream:
    """An HTTP server (aiohttp, in a thread) that counts the requests it gets and echoes them."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            self.received.append({"path": request.raw_path, "body": body, "headers": dict(request.headers)})
            return web.json_response({"size": len(body), "sha256": hashlib.sha256(body).hexdigest()})

        async def start() -> None:
            app = web.Application(client_max_size=16 * 1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", handle)
            self.runner = web.AppRunner(app, access_log=None)
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.stop()


@pytest.mark.parametrize("door", ["edge", "embedded"])
def test_config_file_principals_and_routes_behind_portico_serve(
    portico, upstream: Upstream, tmp_path: Path, door: str
) -> None:
    log = tmp_path / "access.log"
    config = {
        "apis": [
            {
                "name": "signed",
                "id": "signedapi",
                "routes": [
                    {
                        "routeKey": "ANY /items/{id}",
                        "authorizationType": "AWS_IAM",
                        "integration": {
                            "type": "HTTP_PROXY",
                            "uri": f"http://127.0.0.1:{upstream.port}/items/{{id}}",
                        },
                    },
                    {
                        "routeKey": "GET /open",
                        "integration": {"type": "MOCK", "statusCode": 200, "body": "open"},
                    },
                ],
            }
        ],
        "principals": [
            {"accessKeyId": k.access_key_id, "secretAccessKey": k.secret, "arn": k.arn}
            | ({"policy": k.policy} if k.policy else {})
            | ({"sessionToken": k.token} if k.token else {})
            for k in (ALICE, TEMP)
        ],
        "settings": {
            "accountId": ACCOUNT,
            "accessLog": {"destination": str(log), "format": _LOG_FORMAT},
        },
    }
    server = portico(config, extra_args=[] if door == "edge" else ["--no-edge"])
    body = os.urandom(300_000)
    with httpx.Client(timeout=10) as client:

        def call(method: str, path: str, key: Key, content: bytes = b"", **kwargs) -> httpx.Response:
            url, headers = sign(method, f"{server.url}{path}", key, body=content, **kwargs)
            return client.request(method, url, headers=headers, content=content)

        response = call("PUT", "/items/7?v=1&v=0", ALICE, body)
        assert response.status_code == 200, response.text
        assert response.json() == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        assert upstream.received[-1]["path"] == "/items/7?v=1&v=0"
        assert call("GET", "/items/a%20b", TEMP, presign=True).status_code == 200
        # Refusals: the upstream is not called.
        seen = len(upstream.received)
        unsigned = client.put(f"{server.url}/items/7", content=b"x")
        assert (unsigned.status_code, unsigned.json()) == (403, {"message": "Forbidden"})
        url, headers = sign("PUT", f"{server.url}/items/7", ALICE, body=b"small")
        tampered = client.put(url, headers=headers, content=b"other")
        assert tampered.status_code == 403 and tampered.json()["message"].startswith(MISMATCH)
        assert call("DELETE", "/items/7", ALICE).json() == {"message": "Forbidden"}
        assert call("GET", "/items/7", NOBODY).json() == {
            "message": "The security token included in the request is invalid."
        }
        assert len(upstream.received) == seen
        assert client.get(f"{server.url}/open").text == "open"
    server.stop()
    text = log.read_text()
    assert ALICE.arn in text and TEMP.access_key_id in text
    for secret in SECRETS:
        assert secret not in text
        assert secret not in server.log


# The admin API: boto3 makes methods and routes AWS_IAM; the admin key signs as the root.


def _admin(portico, tmp_path: Path):
    from admin_e2e import start_admin_server

    return start_admin_server(portico, tmp_path, functions={"echo": "handlers.basic:echo"})


def _admin_key() -> Key:
    from admin_e2e import ACCESS_KEY_ID, SECRET

    return Key(ACCESS_KEY_ID, SECRET, f"arn:aws:iam::{ACCOUNT}:root")


def _data_plane_call(admin, api_id: str, method: str, path: str, key: Key | None, **kwargs) -> httpx.Response:
    host = admin.host(api_id)
    headers: dict[str, str] = {"Host": host}
    url = f"{admin.url}{path}"
    if key is not None:
        url, headers = sign(method, url, key, headers={"Host": host}, **kwargs)
    return httpx.request(method, url, headers=headers, content=kwargs.get("body", b""), timeout=10)


def _wait_status(
    admin, api_id: str, path: str, key: Key | None, status: int, method: str = "GET"
) -> httpx.Response:
    from admin_e2e import wait_for

    response, _ = wait_for(
        lambda: (r := _data_plane_call(admin, api_id, method, path, key)).status_code == status and r,
        timeout=10,
    )
    return response


def test_admin_api_rest_methods_and_resource_policy(portico, tmp_path: Path) -> None:
    from admin_e2e import invocation_uri

    admin = _admin(portico, tmp_path)
    apigw = admin.client("apigateway")
    api = apigw.create_rest_api(name="signed")
    api_id, root_id = api["id"], api["rootResourceId"]
    pets = apigw.create_resource(restApiId=api_id, parentId=root_id, pathPart="pets")
    apigw.put_method(restApiId=api_id, resourceId=pets["id"], httpMethod="ANY", authorizationType="AWS_IAM")
    apigw.put_integration(
        restApiId=api_id,
        resourceId=pets["id"],
        httpMethod="ANY",
        type="AWS_PROXY",
        integrationHttpMethod="POST",
        uri=invocation_uri("echo"),
    )
    assert (
        apigw.get_method(restApiId=api_id, resourceId=pets["id"], httpMethod="ANY")["authorizationType"]
        == "AWS_IAM"
    )
    apigw.create_deployment(restApiId=api_id, stageName="prod")

    admin_key = _admin_key()
    response = _wait_status(admin, api_id, "/prod/pets", admin_key, 200)
    identity = response.json()["requestContext"]["identity"]
    assert (identity["userArn"], identity["accessKey"], identity["caller"]) == (
        admin_key.arn,
        admin_key.access_key_id,
        ACCOUNT,
    )
    missing = _data_plane_call(admin, api_id, "GET", "/prod/pets", None)
    assert (missing.status_code, missing.json()) == (403, {"message": "Missing Authentication Token"})
    assert missing.headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"
    stranger = _data_plane_call(admin, api_id, "GET", "/prod/pets", NOBODY)
    assert stranger.headers["x-amzn-errortype"] == "UnrecognizedClientException"

    # A resource policy denying the root on DELETE: served once deployed, as on AWS.
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "execute-api:Invoke",
                "Resource": "execute-api:/*",
            },
            {
                "Effect": "Deny",
                "Principal": {"AWS": ACCOUNT},
                "Action": "execute-api:Invoke",
                "Resource": "execute-api:/prod/DELETE/*",
            },
        ],
    }
    apigw.update_rest_api(
        restApiId=api_id, patchOperations=[{"op": "replace", "path": "/policy", "value": json.dumps(policy)}]
    )
    assert _data_plane_call(admin, api_id, "DELETE", "/prod/pets", admin_key).status_code == 200
    apigw.create_deployment(restApiId=api_id, stageName="prod")
    denied = _wait_status(admin, api_id, "/prod/pets", admin_key, 403, method="DELETE")
    assert denied.json() == {
        "Message": f"User: {admin_key.arn} is not authorized to perform: execute-api:Invoke on resource: "
        f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{api_id}/prod/DELETE/pets with an explicit deny"
    }
    assert _data_plane_call(admin, api_id, "GET", "/prod/pets", admin_key).status_code == 200
    assert admin.server.log.count(_admin_key().secret) == 0


def test_admin_api_http_routes_and_openapi_import(portico, tmp_path: Path) -> None:
    from admin_e2e import invocation_uri, lambda_arn

    admin = _admin(portico, tmp_path)
    v2 = admin.client("apigatewayv2")
    api = v2.create_api(Name="signed-http", ProtocolType="HTTP")
    integration = v2.create_integration(
        ApiId=api["ApiId"],
        IntegrationType="AWS_PROXY",
        IntegrationUri=lambda_arn("echo"),
        PayloadFormatVersion="2.0",
    )
    target = f"integrations/{integration['IntegrationId']}"
    v2.create_route(ApiId=api["ApiId"], RouteKey="GET /signed", AuthorizationType="AWS_IAM", Target=target)
    v2.create_route(ApiId=api["ApiId"], RouteKey="GET /open", Target=target)
    v2.create_stage(ApiId=api["ApiId"], StageName="$default", AutoDeploy=True)

    admin_key = _admin_key()
    signed = _wait_status(admin, api["ApiId"], "/signed", admin_key, 200)
    assert signed.json()["requestContext"]["authorizer"]["iam"]["userArn"] == admin_key.arn
    unsigned = _data_plane_call(admin, api["ApiId"], "GET", "/signed", None)
    assert (unsigned.status_code, unsigned.json()) == (403, {"message": "Forbidden"})
    assert _data_plane_call(admin, api["ApiId"], "GET", "/open", None).status_code == 200

    # An OpenAPI definition whose operation says x-amazon-apigateway-auth: aws_iam.
    apigw = admin.client("apigateway")
    document = {
        "openapi": "3.0.1",
        "info": {"title": "imported", "version": "1"},
        "paths": {
            "/things": {
                "get": {
                    "x-amazon-apigateway-auth": {"type": "aws_iam"},
                    "x-amazon-apigateway-integration": {
                        "type": "aws_proxy",
                        "httpMethod": "POST",
                        "uri": invocation_uri("echo"),
                    },
                }
            }
        },
    }
    imported = apigw.import_rest_api(body=json.dumps(document).encode())
    apigw.create_deployment(restApiId=imported["id"], stageName="v1")
    _wait_status(admin, imported["id"], "/v1/things", admin_key, 200)
    assert _data_plane_call(admin, imported["id"], "GET", "/v1/things", None).status_code == 403
