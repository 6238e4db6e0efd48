"""JWT and Cognito user pool authorizers end to end: created with boto3 through `portico serve
--admin-port` (and imported from OpenAPI), or declared in the config file, and called over HTTP
with tokens minted by PyJWT against a local issuer."""

from __future__ import annotations

import base64
import json
import string

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from admin_e2e import FILE_CONFIG, lambda_arn, point_at, start_admin_server, wait_for
from jwt_issuer import LocalIssuer, signing_key

ECHO = {"echo": "handlers.basic:echo"}
POOL_ARN = "arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_LocalPool"


@pytest.fixture
def issuer():
    issuer = LocalIssuer().start()
    yield issuer
    issuer.close()


def _auth(token: str | None, host: dict[str, str]) -> dict[str, str]:
    return {**host, "authorization": token} if token is not None else host


def test_an_http_api_jwt_authorizer_created_with_boto3(portico, tmp_path, issuer):
    key = signing_key("k1", "RS256")
    issuer.publish(key)
    admin = start_admin_server(portico, tmp_path, functions=ECHO)
    v2 = admin.client("apigatewayv2")
    api_id = v2.create_api(Name="guarded", ProtocolType="HTTP")["ApiId"]
    integration = v2.create_integration(
        ApiId=api_id,
        IntegrationType="AWS_PROXY",
        IntegrationUri=lambda_arn("echo"),
        PayloadFormatVersion="2.0",
    )
    target = f"integrations/{integration['IntegrationId']}"
    authorizer_id = v2.create_authorizer(
        ApiId=api_id,
        Name="users",
        AuthorizerType="JWT",
        IdentitySource=["$request.header.Authorization"],
        JwtConfiguration={"Issuer": issuer.url, "Audience": ["app"]},
    )["AuthorizerId"]
    v2.create_route(
        ApiId=api_id, RouteKey="GET /me", Target=target, AuthorizationType="JWT", AuthorizerId=authorizer_id
    )
    admin_route = v2.create_route(ApiId=api_id, RouteKey="GET /admin", Target=target)
    v2.update_route(
        ApiId=api_id,
        RouteId=admin_route["RouteId"],
        AuthorizationType="JWT",
        AuthorizerId=authorizer_id,
        AuthorizationScopes=["admin"],
    )
    v2.create_route(ApiId=api_id, RouteKey="GET /open", Target=target)
    v2.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)
    host = {"host": admin.host(api_id)}
    wait_for(lambda: httpx.get(admin.url + "/open", headers=host).status_code == 200, timeout=5)

    token = key.sign(issuer.claims(scope="read", groups=["a", "b"]))
    ok = httpx.get(admin.url + "/me", headers=_auth(f"Bearer {token}", host))
    assert ok.status_code == 200, ok.text
    jwt_context = ok.json()["requestContext"]["authorizer"]["jwt"]
    assert (jwt_context["claims"]["sub"], jwt_context["claims"]["groups"]) == ("user-1", "[a b]")

    missing = httpx.get(admin.url + "/me", headers=host)
    assert (missing.status_code, missing.json()) == (401, {"message": "Unauthorized"})
    assert missing.headers["www-authenticate"] == "Bearer"
    no_scope = httpx.get(admin.url + "/admin", headers=_auth(token, host))
    assert (no_scope.status_code, no_scope.json()) == (403, {"message": "Forbidden"})
    assert 'error="insufficient_scope"' in no_scope.headers["www-authenticate"]
    admin_token = key.sign(issuer.claims(scope="admin"))
    assert httpx.get(admin.url + "/admin", headers=_auth(admin_token, host)).status_code == 200

    # The authorizer changes (auto-deployed): the token's audience no longer passes.
    v2.update_authorizer(
        ApiId=api_id, AuthorizerId=authorizer_id, JwtConfiguration={"Issuer": issuer.url, "Audience": ["web"]}
    )
    refused, _ = wait_for(
        lambda: (r := httpx.get(admin.url + "/me", headers=_auth(token, host))).status_code == 401 and r,
        timeout=5,
    )
    assert refused.headers["www-authenticate"] == (
        'Bearer scope="" error="invalid_token" error_description="the token does not have a valid audience"'
    )
    # The redeployments reused the issuer's keys: fetched once.
    assert issuer.jwks_hits == 1


def test_an_http_api_imported_from_openapi_enforces_its_jwt_security(portico, tmp_path, issuer):
    key = signing_key("k1", "ES256")
    issuer.publish(key)
    admin = start_admin_server(portico, tmp_path, functions=ECHO)
    v2 = admin.client("apigatewayv2")
    integration = {
        "type": "aws_proxy",
        "httpMethod": "POST",
        "uri": lambda_arn("echo"),
        "payloadFormatVersion": "2.0",
    }
    document = {
        "openapi": "3.0.1",
        "info": {"title": "imported", "version": "1"},
        "paths": {
            "/pets": {
                "get": {
                    "security": [{"users": ["pets/read"]}],
                    "x-amazon-apigateway-integration": integration,
                },
                "post": {"security": [{"users": []}], "x-amazon-apigateway-integration": integration},
            }
        },
        "components": {
            "securitySchemes": {
                "users": {
                    "type": "oauth2",
                    "flows": {},
                    "x-amazon-apigateway-authorizer": {
                        "type": "jwt",
                        "identitySource": "$request.header.Authorization",
                        "jwtConfiguration": {"issuer": issuer.url, "audience": ["app"]},
                    },
                }
            }
        },
    }
    api_id = v2.import_api(Body=json.dumps(document))["ApiId"]
    v2.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)
    host = {"host": admin.host(api_id)}
    wait_for(lambda: httpx.get(admin.url + "/pets", headers=host).status_code == 401, timeout=5)
    reader = key.sign(issuer.claims(scope="pets/read"))
    assert httpx.get(admin.url + "/pets", headers=_auth(reader, host)).status_code == 200
    assert httpx.post(admin.url + "/pets", headers=_auth(reader, host)).status_code == 200
    writer = key.sign(issuer.claims(scope="pets/write"))
    assert httpx.get(admin.url + "/pets", headers=_auth(writer, host)).status_code == 403
    assert httpx.post(admin.url + "/pets", headers=host).status_code == 401


def _pool_config(issuer: LocalIssuer) -> dict:
    return {**FILE_CONFIG, "settings": {"cognitoUserPoolIssuers": {POOL_ARN: issuer.url}}}


def test_a_rest_cognito_user_pool_authorizer_created_with_boto3(portico, tmp_path, issuer):
    key = signing_key("pool-key", "RS256")
    issuer.publish(key)
    admin = start_admin_server(portico, tmp_path, functions=ECHO, config=_pool_config(issuer))
    apigw = admin.client("apigateway")
    api = apigw.create_rest_api(name="pets")
    api_id, root_id = api["id"], api["rootResourceId"]
    authorizer = apigw.create_authorizer(
        restApiId=api_id,
        name="pool",
        type="COGNITO_USER_POOLS",
        providerARNs=[POOL_ARN],
        identitySource="method.request.header.Authorization",
    )
    for path, scopes in (("profile", []), ("pets", ["pets/read"])):
        resource = apigw.create_resource(restApiId=api_id, parentId=root_id, pathPart=path)
        apigw.put_method(
            restApiId=api_id,
            resourceId=resource["id"],
            httpMethod="GET",
            authorizationType="COGNITO_USER_POOLS",
            authorizerId=authorizer["id"],
            authorizationScopes=scopes,
        )
        point_at(apigw, api_id, resource["id"], "echo", "GET")
    apigw.create_deployment(restApiId=api_id, stageName="prod")
    base = f"{admin.url}/restapis/{api_id}/prod/_user_request_"
    wait_for(lambda: httpx.get(base + "/profile").status_code == 401, timeout=5)

    id_token = key.sign(issuer.claims(aud="client-1", token_use="id", email="ann@example.com"))
    profile = httpx.get(base + "/profile", headers={"authorization": id_token})
    assert profile.status_code == 200, profile.text
    assert profile.json()["requestContext"]["authorizer"]["claims"]["email"] == "ann@example.com"
    access = key.sign(issuer.claims(aud=None, client_id="client-1", token_use="access", scope="pets/read"))
    assert httpx.get(base + "/pets", headers={"authorization": access}).status_code == 200
    for path, token in (("/pets", id_token), ("/profile", access), ("/profile", None)):
        refused = httpx.get(base + path, headers={"authorization": token} if token else {})
        assert (refused.status_code, refused.json()) == (401, {"message": "Unauthorized"}), path
        assert refused.headers["x-amzn-errortype"] == "UnauthorizedException"


def test_a_rest_api_imported_with_a_cognito_security_scheme(portico, tmp_path, issuer):
    key = signing_key("pool-key", "PS256")
    issuer.publish(key)
    admin = start_admin_server(portico, tmp_path, functions=ECHO, config=_pool_config(issuer))
    apigw = admin.client("apigateway")
    integration = {"type": "aws_proxy", "httpMethod": "POST", "uri": lambda_arn("echo")}
    document = {
        "swagger": "2.0",
        "info": {"title": "pool", "version": "1"},
        "paths": {
            "/me": {"get": {"security": [{"pool": []}], "x-amazon-apigateway-integration": integration}}
        },
        "securityDefinitions": {
            "pool": {
                "type": "apiKey",
                "name": "Authorization",
                "in": "header",
                "x-amazon-apigateway-authtype": "cognito_user_pools",
                "x-amazon-apigateway-authorizer": {"type": "cognito_user_pools", "providerARNs": [POOL_ARN]},
            }
        },
    }
    api_id = apigw.import_rest_api(body=json.dumps(document))["id"]
    apigw.create_deployment(restApiId=api_id, stageName="prod")
    base = f"{admin.url}/restapis/{api_id}/prod/_user_request_"
    wait_for(lambda: httpx.get(base + "/me").status_code == 401, timeout=5)
    token = key.sign(issuer.claims(token_use="id"))
    assert httpx.get(base + "/me", headers={"authorization": token}).status_code == 200


# ----------------------------------------------------------------------------------------------
# Whatever comes as a token through the edge: refused, never a crash, within a bounded time


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_TEXT = st.text(alphabet=string.ascii_letters + string.digits + "-_.=+/ ", max_size=300)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


@st.composite
def _tokens(draw) -> str:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(_TEXT)
    if kind == 1:
        return ".".join(_b64(draw(st.binary(max_size=80))) for _ in range(draw(st.integers(1, 5))))
    header = draw(
        st.fixed_dictionaries(
            {"alg": st.sampled_from(["RS256", "ES256", "EdDSA", "none", "HS256", "PS512", "xx"])},
            optional={"kid": st.sampled_from(["k1", "made-up", ""]), "typ": st.just("JWT")},
        )
    )
    claims = draw(st.dictionaries(st.sampled_from(["iss", "aud", "exp", "nbf", "scope", "sub"]), _JSON))
    parts = [_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode())]
    signature = _b64(draw(st.binary(max_size=300))) if kind == 2 else draw(_TEXT).replace(".", "")
    return ".".join([*parts, signature])


def test_random_and_malformed_tokens_are_never_accepted(portico, issuer):
    key = signing_key("k1", "RS256")
    issuer.publish(key)
    config = {
        "apis": [
            {
                "name": "guarded",
                "id": "fuzzjwt1",
                "authorizers": {
                    "users": {
                        "authorizerType": "JWT",
                        "jwtConfiguration": {"issuer": issuer.url, "audience": ["app"]},
                    }
                },
                "routes": [
                    {
                        "routeKey": "GET /me",
                        "integration": "echo",
                        "authorizationType": "JWT",
                        "authorizerId": "users",
                    }
                ],
                "integrations": {"echo": {"type": "AWS_PROXY", "uri": "echo"}},
            }
        ]
    }
    server = portico(config, functions=ECHO)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        good = key.sign(issuer.claims())
        assert client.get("/me", headers={"authorization": good}).status_code == 200

        @settings(
            max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
        )
        @given(token=_tokens(), bearer=st.booleans())
        def refused(token: str, bearer: bool) -> None:
            value = (f"Bearer {token}" if bearer else token).strip()  # as HTTP carries it
            response = client.get("/me", headers={"authorization": value})
            assert response.status_code == 401, (token, response.text)
            assert response.json() == {"message": "Unauthorized"}

        refused()
        # The good token still passes, the server still serves.
        assert client.get("/me", headers={"authorization": good}).status_code == 200
