"""JWT authorizers (HTTP APIs) and Cognito user pool authorizers (REST APIs) through the embedded
door: tokens minted with PyJWT against the JWKS of a local issuer with discovery; every refusal
with AWS's status, body and `www-authenticate`, and the integration never called."""

from __future__ import annotations

import time
import uuid

import httpx
import jwt
import pytest
from pydantic import ValidationError

from jwt_issuer import LocalIssuer, signing_key
from portico.compile import spec as S
from portico.compile.files import CompiledConfig, compile_config
from portico.config.models import Config
from portico.dataplane.app import DataPlane
from portico.integrations.functions import FunctionRegistry

API_ID = "jwtapi1234"
UNAUTHORIZED = {"message": "Unauthorized"}
FORBIDDEN = {"message": "Forbidden"}


def bearer(description: str, scopes: str = "") -> str:
    return f'Bearer scope="{scopes}" error="invalid_token" error_description="{description}"'


@pytest.fixture
def issuer():
    issuer = LocalIssuer().start()
    yield issuer
    issuer.close()


@pytest.fixture
def calls() -> list[dict]:
    return []


def _registry(calls: list[dict]) -> FunctionRegistry:
    registry = FunctionRegistry()

    def echo(event: dict, context: object) -> dict:
        calls.append(event)
        return {"statusCode": 200, "body": "ok"}

    registry.register("echo", echo)
    return registry


def _http_api(issuer_url: str, audience: tuple[str, ...] = ("app",)) -> S.ApiSpec:
    auth = S.jwt_authorizer("users", issuer_url, list(audience), "$request.header.Authorization")
    by_query = S.jwt_authorizer("byquery", issuer_url, list(audience), "$request.querystring.token")
    echo, echo_v1 = S.lambda_proxy("echo"), S.lambda_proxy("echo", "1.0")
    routes = [
        S.route("GET /me", echo, S.route_auth("JWT", auth)),
        S.route("GET /admin", echo, S.route_auth("JWT", auth, scopes=["admin", "ops"])),
        S.route("GET /v1", echo_v1, S.route_auth("JWT", auth)),
        S.route("GET /query", echo, S.route_auth("JWT", by_query)),
        S.route("GET /open", echo),
    ]
    return S.api(API_ID, "guarded", "http", [S.stage("$default", deployment_id="d1")], routes=routes)


def _plane(api: S.ApiSpec, calls: list[dict], access_log: S.AccessLogSpec | None = None) -> DataPlane:
    compiled = CompiledConfig(Config(), S.spec([api], access_log=access_log), "d1")
    return DataPlane(compiled, registry=_registry(calls))


async def _get(plane: DataPlane, path: str, token: str | None = None, **headers: str) -> httpx.Response:
    if token is not None:
        headers["authorization"] = token
    transport = httpx.ASGITransport(app=plane, client=("192.0.2.10", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        return await client.get(path, headers=headers)


async def test_tokens_of_every_family_reach_the_integration_with_their_claims(issuer, calls):
    keys = [signing_key(f"k-{alg}", alg) for alg in ("RS256", "PS256", "ES256", "EdDSA")]
    issuer.publish(*keys)
    plane = _plane(_http_api(issuer.url), calls)
    try:
        for key in keys:
            claims = issuer.claims(groups=["a", "b"], scope="read admin", n=5)
            token = key.sign(claims)
            for presented in (token, f"Bearer {token}"):
                response = await _get(plane, "/me", presented)
                assert response.status_code == 200, (key.alg, response.text)
            jwt_context = calls[-1]["requestContext"]["authorizer"]["jwt"]
            assert jwt_context["claims"] == {
                "iss": issuer.url,
                "aud": "app",
                "sub": "user-1",
                "iat": str(claims["iat"]),
                "nbf": str(claims["nbf"]),
                "exp": str(claims["exp"]),
                "groups": "[a b]",
                "scope": "read admin",
                "n": "5",
            }
            assert jwt_context["scopes"] is None
            # A route with scopes: the token's scopes reach the integration.
            admin = await _get(plane, "/admin", token)
            assert admin.status_code == 200
            assert calls[-1]["requestContext"]["authorizer"]["jwt"]["scopes"] == ["read", "admin"]
        # Payload 1.0: the claims under requestContext.authorizer.
        v1 = await _get(plane, "/v1", keys[0].sign(issuer.claims()))
        assert v1.status_code == 200
        assert calls[-1]["requestContext"]["authorizer"]["claims"]["sub"] == "user-1"
        # The query-string identity source.
        query = await _get(plane, "/query?token=" + keys[2].sign(issuer.claims()))
        assert query.status_code == 200
        # One fetch of the issuer's keys served every request.
        assert (issuer.discovery_hits, issuer.jwks_hits) == (1, 1)
    finally:
        plane.stop()


def _rejections(issuer: LocalIssuer) -> list[tuple[str, str, str | None, int, dict, str]]:
    """(case, path, Authorization, status, body, www-authenticate)."""
    key = issuer.keys[0]
    impostor = signing_key(key.kid, "RS256", rsa_index=1)  # the issuer's kid, another key
    now = int(time.time())
    claims = issuer.claims()
    none_token = jwt.encode(claims, None, algorithm="none", headers={"kid": key.kid})
    hs_token = jwt.encode(
        claims, "a-shared-secret-of-32-bytes-or-more!", algorithm="HS256", headers={"kid": key.kid}
    )
    return [
        ("no header", "/me", None, 401, UNAUTHORIZED, "Bearer"),
        ("empty header", "/me", "", 401, UNAUTHORIZED, "Bearer"),
        (
            "malformed",
            "/me",
            "not-a-jwt",
            401,
            UNAUTHORIZED,
            bearer("token contains an invalid number of segments"),
        ),
        ("garbage", "/me", "a.b.c", 401, UNAUTHORIZED, bearer("token is malformed")),
        ("bad signature", "/me", impostor.sign(claims), 401, UNAUTHORIZED, bearer("signature is invalid")),
        ("alg none", "/me", none_token, 401, UNAUTHORIZED, bearer("'none' signature type is not allowed")),
        ("HS256", "/me", hs_token, 401, UNAUTHORIZED, bearer("signing method HS256 is invalid")),
        (
            "wrong iss",
            "/me",
            key.sign(issuer.claims(iss="https://someone-else.example")),
            401,
            UNAUTHORIZED,
            bearer("the token does not have a valid issuer"),
        ),
        (
            "wrong aud",
            "/me",
            key.sign(issuer.claims(aud="other-app")),
            401,
            UNAUTHORIZED,
            bearer("the token does not have a valid audience"),
        ),
        (
            "aud wins over client_id",
            "/me",
            key.sign(issuer.claims(aud="other-app", client_id="app")),
            401,
            UNAUTHORIZED,
            bearer("the token does not have a valid audience"),
        ),
        (
            "client_id not an audience",
            "/me",
            key.sign(issuer.claims(aud=None, client_id="other-app")),
            401,
            UNAUTHORIZED,
            bearer("the token does not have a valid audience"),
        ),
        (
            "expired",
            "/me",
            key.sign(issuer.claims(exp=now - 1)),
            401,
            UNAUTHORIZED,
            bearer("the token has expired"),
        ),
        (
            "expired, on a route with scopes",
            "/admin",
            key.sign(issuer.claims(exp=now - 1, scope="admin")),
            401,
            UNAUTHORIZED,
            bearer("the token has expired", "admin ops"),
        ),
        (
            "nbf in the future",
            "/me",
            key.sign(issuer.claims(nbf=now + 300)),
            401,
            UNAUTHORIZED,
            bearer("the token is not valid yet"),
        ),
        (
            "iat in the future",
            "/me",
            key.sign(issuer.claims(iat=now + 300)),
            401,
            UNAUTHORIZED,
            bearer("the token was issued in the future"),
        ),
        (
            "missing scope",
            "/admin",
            key.sign(issuer.claims(scope="read write")),
            403,
            FORBIDDEN,
            'Bearer scope="admin ops" error="insufficient_scope" '
            'error_description="the token does not have the required scope"',
        ),
        (
            "no scope at all",
            "/admin",
            key.sign(issuer.claims()),
            403,
            FORBIDDEN,
            'Bearer scope="admin ops" error="insufficient_scope" '
            'error_description="the token does not have the required scope"',
        ),
        (
            "unknown kid",
            "/me",
            signing_key("not-published", "ES256").sign(claims),
            401,
            UNAUTHORIZED,
            bearer("the token's kid does not match a key of the issuer"),
        ),
    ]


async def test_every_rejection_as_aws_answers_it_and_the_integration_is_not_called(issuer, calls):
    issuer.publish(signing_key("k1", "RS256"))
    plane = _plane(_http_api(issuer.url), calls)
    try:
        for case, path, token, status, body, challenge in _rejections(issuer):
            response = await _get(plane, path, token)
            assert (response.status_code, response.json()) == (status, body), case
            assert response.headers["www-authenticate"] == challenge, case
            assert response.headers["content-type"] == "application/json", case
            if token in (None, ""):
                # No token: refused before any key work.
                assert issuer.discovery_hits == 0, case
        assert calls == []
        # One fetch for the first token, one for the unknown kid.
        assert issuer.jwks_hits == 2
    finally:
        plane.stop()


async def test_client_id_stands_in_for_a_missing_aud(issuer, calls):
    key = signing_key("k1", "RS256")
    issuer.publish(key)
    plane = _plane(_http_api(issuer.url, ("web-client", "app")), calls)
    try:
        response = await _get(plane, "/me", key.sign(issuer.claims(aud=None, client_id="web-client")))
        assert response.status_code == 200
        response = await _get(plane, "/me", key.sign(issuer.claims(aud=["x", "web-client"])))
        assert response.status_code == 200
        assert len(calls) == 2
    finally:
        plane.stop()


async def test_a_remembered_token_is_refused_once_it_expires(issuer, calls):
    key = signing_key("k1", "ES256")
    issuer.publish(key)
    plane = _plane(_http_api(issuer.url), calls)
    try:
        exp = int(time.time()) + 2
        token = key.sign(issuer.claims(exp=exp))
        for _ in range(3):
            assert (await _get(plane, "/me", token)).status_code == 200
        while time.time() < exp + 0.05:
            time.sleep(0.05)
        expired = await _get(plane, "/me", token)
        assert expired.status_code == 401
        assert expired.headers["www-authenticate"] == bearer("the token has expired")
        assert len(calls) == 3
        assert issuer.jwks_hits == 1
    finally:
        plane.stop()


async def test_keys_rotate_when_a_new_kid_appears(issuer, calls):
    old, new = signing_key("old", "RS256"), signing_key("new", "EdDSA")
    issuer.publish(old)
    plane = _plane(_http_api(issuer.url), calls)
    try:
        old_token = old.sign(issuer.claims())
        assert (await _get(plane, "/me", old_token)).status_code == 200
        issuer.publish(new)  # a new kid appears, the old one is removed
        assert (await _get(plane, "/me", new.sign(issuer.claims()))).status_code == 200
        assert issuer.jwks_hits == 2
        # The old key is gone: its token is refused, though it was verified before.
        refused = await _get(plane, "/me", old_token)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == bearer(
            "the token's kid does not match a key of the issuer"
        )
        assert len(calls) == 2
    finally:
        plane.stop()


async def test_an_issuer_down_after_the_first_fetch_keeps_verifying(issuer, calls):
    key = signing_key("k1", "PS256")
    issuer.publish(key)
    plane = _plane(_http_api(issuer.url), calls)
    try:
        assert (await _get(plane, "/me", key.sign(issuer.claims()))).status_code == 200
        issuer.down()
        # New tokens signed by a known key verify with the cached keys.
        for i in range(3):
            assert (await _get(plane, "/me", key.sign(issuer.claims(sub=f"u{i}")))).status_code == 200
        # An unknown kid cannot be fetched while the issuer is down: 401, integration not called.
        unknown = await _get(plane, "/me", signing_key("k2", "ES256").sign(issuer.claims()))
        assert unknown.status_code == 401
        assert unknown.headers["www-authenticate"] == bearer(
            "the token's kid does not match a key of the issuer"
        )
        assert len(calls) == 4
    finally:
        issuer.up()
        plane.stop()


async def test_a_flood_of_made_up_kids_fetches_the_keys_once(issuer, calls):
    key = signing_key("k1", "ES256")
    issuer.publish(key)
    plane = _plane(_http_api(issuer.url), calls)
    try:
        assert (await _get(plane, "/me", key.sign(issuer.claims()))).status_code == 200
        assert issuer.jwks_hits == 1
        for _ in range(40):
            forged = jwt.encode(
                issuer.claims(), key.private, algorithm="ES256", headers={"kid": uuid.uuid4().hex}
            )
            response = await _get(plane, "/me", forged)
            assert response.status_code == 401
        assert issuer.jwks_hits == 2
        assert len(calls) == 1
    finally:
        plane.stop()


async def test_the_access_log_reads_the_claims(issuer, calls, tmp_path):
    key = signing_key("k1", "RS256")
    issuer.publish(key)
    log = tmp_path / "access.log"
    fmt = " ".join(f"$context.authorizer.claims.{c}" for c in ("sub", "groups", "nope")) + " $context.status"
    plane = _plane(_http_api(issuer.url), calls, S.access_log(fmt, str(log)))
    try:
        assert (await _get(plane, "/me", key.sign(issuer.claims(groups=["g1", "g2"])))).status_code == 200
        assert (await _get(plane, "/me")).status_code == 401
    finally:
        plane.stop()
    assert log.read_text().splitlines() == ["user-1 [g1 g2] - 200", "- - - 401"]


# ----------------------------------------------------------------------------------------------
# REST APIs: Cognito user pool authorizers


def _rest_api(pools: list[str]) -> S.ApiSpec:
    cognito = S.cognito_authorizer("cog1", pools, "method.request.header.Authorization")
    echo = S.lambda_proxy("echo", "1.0")
    routes = [
        S.route("GET /profile", echo, S.route_auth("COGNITO_USER_POOLS", cognito)),
        S.route("GET /pets", echo, S.route_auth("COGNITO_USER_POOLS", cognito, scopes=["pets/read"])),
    ]
    return S.api("restcog123", "pets", "rest", [S.stage("prod", deployment_id="d1")], routes=routes)


async def test_cognito_takes_id_tokens_on_methods_without_scopes_and_access_tokens_on_methods_with(
    issuer, calls
):
    key = signing_key("pool-key", "RS256")
    issuer.publish(key)
    plane = _plane(_rest_api([issuer.url]), calls)
    id_token = key.sign(issuer.claims(aud="app-client", token_use="id", **{"cognito:username": "ann"}))
    access_token = key.sign(
        issuer.claims(aud=None, client_id="app-client", token_use="access", scope="pets/read")
    )
    try:
        ok = await _get(plane, "/prod/profile", id_token)
        assert ok.status_code == 200
        claims = calls[-1]["requestContext"]["authorizer"]["claims"]
        assert (claims["cognito:username"], claims["token_use"]) == ("ann", "id")
        assert (await _get(plane, "/prod/pets", f"Bearer {access_token}")).status_code == 200
        assert calls[-1]["requestContext"]["authorizer"]["claims"]["scope"] == "pets/read"
        refused = [
            ("/prod/profile", None),
            ("/prod/profile", access_token),
            ("/prod/pets", id_token),
            ("/prod/pets", key.sign(issuer.claims(token_use="access", scope="pets/write"))),
            ("/prod/profile", key.sign(issuer.claims(token_use="id", exp=int(time.time()) - 1))),
            ("/prod/profile", key.sign(issuer.claims(token_use="id", iss="https://cognito-idp.example/x"))),
            ("/prod/profile", "garbage"),
        ]
        for path, token in refused:
            response = await _get(plane, path, token)
            assert (response.status_code, response.json()) == (401, UNAUTHORIZED), (path, token)
            assert response.headers["x-amzn-errortype"] == "UnauthorizedException"
            assert "www-authenticate" not in response.headers
        assert len(calls) == 2
    finally:
        plane.stop()


# ----------------------------------------------------------------------------------------------
# The config file


def _config(issuer_url: str, **route: object) -> dict:
    return {
        "apis": [
            {
                "name": "guarded",
                "id": "filejwt1",
                "authorizers": {
                    "users": {
                        "authorizerType": "JWT",
                        "identitySource": ["$request.header.Authorization"],
                        "jwtConfiguration": {"issuer": issuer_url, "audience": ["app"]},
                    }
                },
                "routes": [
                    {"routeKey": "GET /me", "integration": "echo", **route},
                    {"routeKey": "GET /open", "integration": "echo"},
                ],
                "integrations": {"echo": {"type": "AWS_PROXY", "uri": "echo"}},
            }
        ]
    }


async def test_a_config_file_declares_jwt_authorizers(issuer, calls):
    key = signing_key("k1", "RS256")
    issuer.publish(key)
    route = {"authorizationType": "JWT", "authorizerId": "users", "authorizationScopes": ["read"]}
    config = Config.model_validate(_config(issuer.url, **route))
    registry = _registry(calls)
    plane = DataPlane(compile_config(config, registry), registry=registry)
    try:
        assert (await _get(plane, "/me", key.sign(issuer.claims(scope="read")))).status_code == 200
        missing = await _get(plane, "/me", key.sign(issuer.claims(scope="write")))
        assert (missing.status_code, missing.json()) == (403, FORBIDDEN)
        assert (await _get(plane, "/me")).status_code == 401
        assert (await _get(plane, "/open")).status_code == 200
    finally:
        plane.stop()


@pytest.mark.parametrize(
    ("issuer_url", "route", "error"),
    [
        ("http://issuer.example/x", {}, "must be an https:// URL"),
        ("https://issuer.example", {"authorizationType": "JWT"}, "needs authorizerId"),
        (
            "https://issuer.example",
            {"authorizationType": "JWT", "authorizerId": "nope"},
            "unknown authorizer 'nope'",
        ),
        (
            "https://issuer.example",
            {"authorizationScopes": ["a"]},
            "apply to JWT and COGNITO_USER_POOLS authorization only",
        ),
        (
            "https://issuer.example",
            {"authorizationType": "CUSTOM", "authorizerId": "users"},
            "authorizationType CUSTOM cannot use authorizer 'users' of authorizerType JWT",
        ),
    ],
)
def test_config_file_authorizer_errors_name_the_field(issuer_url, route, error):
    with pytest.raises(ValidationError, match=error):
        Config.model_validate(_config(issuer_url, **route))


POOL_ARN = "arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_AbCdEf123"


def _rest_config(pool_issuer: str, **authorizer: object) -> dict:
    return {
        "settings": {"cognitoUserPoolIssuers": {POOL_ARN: pool_issuer}},
        "apis": [
            {
                "name": "pets",
                "id": "filecog1",
                "protocolType": "REST",
                "stages": [{"stageName": "prod"}],
                "authorizers": {
                    "pool": {"authorizerType": "COGNITO_USER_POOLS", "providerARNs": [POOL_ARN], **authorizer}
                },
                "routes": [
                    {
                        "routeKey": "GET /pets",
                        "integration": "echo",
                        "authorizationType": "COGNITO_USER_POOLS",
                        "authorizerId": "pool",
                        "authorizationScopes": ["pets/read"],
                    },
                    {
                        "routeKey": "GET /profile",
                        "integration": "echo",
                        "authorizationType": "COGNITO_USER_POOLS",
                        "authorizerId": "pool",
                    },
                ],
                "integrations": {"echo": {"type": "AWS_PROXY", "uri": "echo", "payloadFormatVersion": "1.0"}},
            }
        ],
    }


async def test_a_config_file_declares_cognito_user_pool_authorizers_on_rest_apis(issuer, calls):
    """A REST API of the config file with a COGNITO_USER_POOLS authorizer (the Authorization header
    by default), its pool's issuer mapped to the local one by settings.cognitoUserPoolIssuers."""
    key = signing_key("pool-key", "RS256")
    issuer.publish(key)
    config = Config.model_validate(_rest_config(issuer.url))
    registry = _registry(calls)
    plane = DataPlane(compile_config(config, registry), registry=registry)
    access = key.sign(issuer.claims(aud=None, client_id="app", token_use="access", scope="pets/read"))
    id_token = key.sign(issuer.claims(aud="app", token_use="id"))
    try:
        assert (await _get(plane, "/prod/pets", access)).status_code == 200
        assert (await _get(plane, "/prod/profile", id_token)).status_code == 200
        for path, token in (("/prod/pets", id_token), ("/prod/profile", access), ("/prod/pets", None)):
            response = await _get(plane, path, token)
            assert (response.status_code, response.json()) == (401, UNAUTHORIZED), (path, token)
        assert len(calls) == 2
    finally:
        plane.stop()


@pytest.mark.parametrize(
    ("authorizer", "error"),
    [
        ({"providerARNs": []}, "needs providerARNs"),
        ({"providerARNs": ["arn:aws:iam::123456789012:role/x"]}, "is not a user pool ARN"),
        ({"identitySource": "method.request.querystring.t"}, "reads one header"),
        ({"authorizerUri": "echo"}, "authorizerUri: Lambda authorizers'"),
        ({"authorizerType": "JWT", "jwtConfiguration": {"issuer": "https://x.example"}}, "providerARNs"),
    ],
)
def test_config_file_cognito_authorizer_errors_name_the_field(authorizer, error):
    with pytest.raises(ValidationError, match=error):
        Config.model_validate(_rest_config("https://issuer.example", **authorizer))


def test_jwt_authorizers_are_http_apis_and_cognito_rest_apis():
    http = _config("https://issuer.example", authorizationType="JWT", authorizerId="users")
    http["apis"][0]["protocolType"] = "REST"
    http["apis"][0]["stages"] = [{"stageName": "prod"}]
    with pytest.raises(ValidationError, match="JWT authorizers are HTTP APIs'"):
        Config.model_validate(http)
    rest = _rest_config("https://issuer.example")
    rest["apis"][0]["protocolType"] = "HTTP"
    del rest["apis"][0]["stages"]
    with pytest.raises(ValidationError, match="COGNITO_USER_POOLS authorizers are REST APIs'"):
        Config.model_validate(rest)
