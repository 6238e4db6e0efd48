"""The authorize phase through the embedded door: REST resource policies and API keys, decided in
the core before anything reaches the integration (the integration counts its calls)."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portico.compile import spec as S
from portico.compile.files import CompiledConfig
from portico.config.models import Config
from portico.dataplane.app import DataPlane
from portico.integrations.functions import FunctionRegistry

API_ID = "restapi123"
KEY = "a-valid-api-key-value-0001"
DISABLED_KEY = "a-disabled-api-key-value-1"
OTHER_STAGE_KEY = "a-key-bound-elsewhere-0001"


def _rest_api(policy: dict | None = None, key_source: str = "HEADER") -> S.ApiSpec:
    echo = S.lambda_proxy("echo")
    routes = [
        S.route("GET /open", echo),
        S.route("GET /keyed", echo, S.route_auth(api_key_required=True)),
    ]
    return S.api(
        API_ID,
        "guarded",
        "rest",
        [S.stage("prod", deployment_id="d1")],
        routes=routes,
        policy=policy,
        api_key_source=key_source,  # type: ignore[arg-type]
    )


def _plane(api: S.ApiSpec, calls: list[dict]) -> DataPlane:
    registry = FunctionRegistry()

    def echo(event: dict, context: object) -> dict:
        calls.append(event)
        return {"statusCode": 200, "body": "ok"}

    registry.register("echo", echo)
    keys = [
        S.api_key("k1", KEY, [f"{API_ID}/prod"]),
        S.api_key("k2", DISABLED_KEY, [f"{API_ID}/prod"], enabled=False),
        S.api_key("k3", OTHER_STAGE_KEY, [f"{API_ID}/dev"]),
    ]
    compiled = CompiledConfig(Config(), S.spec([api], api_keys=keys), "d1")
    return DataPlane(compiled, registry=registry)


@pytest.fixture
def calls() -> list[dict]:
    return []


async def _get(plane: DataPlane, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=plane, client=("192.0.2.10", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        return await client.get(path, headers=headers)


async def test_api_keys_pass_only_enabled_and_bound_to_the_stage(calls):
    plane = _plane(_rest_api(), calls)
    try:
        for presented in (None, "nope", DISABLED_KEY, OTHER_STAGE_KEY):
            headers = {"x-api-key": presented} if presented else {}
            refused = await _get(plane, "/prod/keyed", headers)
            assert refused.status_code == 403
            assert refused.json() == {"message": "Forbidden"}
            assert refused.headers["x-amzn-errortype"] == "ForbiddenException"
        assert calls == []
        passed = await _get(plane, "/prod/keyed", {"X-API-Key": KEY})
        assert passed.status_code == 200
        identity = calls[-1]["requestContext"]["identity"]
        assert (identity["apiKey"], identity["apiKeyId"]) == (KEY, "k1")
        # A method without apiKeyRequired ignores the header.
        assert (await _get(plane, "/prod/open")).status_code == 200
        assert "apiKey" not in calls[-1]["requestContext"]["identity"]
    finally:
        plane.stop()


async def test_a_resource_policy_refuses_by_source_ip_before_the_integration(calls):
    arn = f"arn:aws:execute-api:us-east-1:000000000000:{API_ID}/prod/GET/open"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "execute-api:Invoke", "Resource": "*"},
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "execute-api:Invoke",
                "Resource": "execute-api:/*",
                "Condition": {"NotIpAddress": {"aws:SourceIp": "198.51.100.0/24"}},
            },
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "execute-api:Invoke",
                "Resource": arn,
                "Condition": {"IpAddress": {"aws:SourceIp": "192.0.2.0/24"}},
            },
        ],
    }
    plane = _plane(_rest_api(policy), calls)
    try:
        denied = await _get(plane, "/prod/open")
        assert denied.status_code == 403
        assert denied.json() == {
            "Message": f"User: anonymous is not authorized to perform: execute-api:Invoke on resource: {arn} "
            "with an explicit deny"
        }
        assert denied.headers["x-amzn-errortype"] == "AccessDeniedException"
        assert calls == []
    finally:
        plane.stop()
    # Allowed by the first statement, with nothing denying: served.
    plane = _plane(_rest_api({"Statement": policy["Statement"][:1]}), calls)
    try:
        assert (await _get(plane, "/prod/open")).status_code == 200
        assert len(calls) == 1
    finally:
        plane.stop()
    # A policy that does not parse refuses everything (never skipped).
    plane = _plane(_rest_api({"Statement": {"Effect": "Perhaps"}}), calls)
    try:
        broken = await _get(plane, "/prod/open")
        assert broken.status_code == 500
        assert len(calls) == 1
    finally:
        plane.stop()


# ------------------------------------------------------------------------------------------------
# Hypothesis: resource policies of any shape never crash the phase and never allow without an Allow

_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12))
_json = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
_resource = st.sampled_from(
    [
        "*",
        "execute-api:/*",
        "execute-api:/prod/GET/open",
        f"arn:aws:execute-api:us-east-1:000000000000:{API_ID}/*",
        f"arn:aws:execute-api:*:*:{API_ID}/prod/*/o?en",
        "arn:aws:execute-api:us-east-1:000000000000:other/*",
        "execute-api:/**/**/**",
        "",
    ]
) | st.text(max_size=40)
_condition = st.dictionaries(
    st.sampled_from(["IpAddress", "NotIpAddress", "StringEquals", "Bogus", "ipaddress"])
    | st.text(max_size=8),
    st.dictionaries(
        st.sampled_from(["aws:SourceIp", "aws:sourceip", "aws:PrincipalAccount", "x"]),
        st.sampled_from(["192.0.2.0/24", "192.0.2.10", "0.0.0.0/0", "::/0", "300.1.1.1/8", "x/99"])
        | st.lists(st.sampled_from(["192.0.2.0/24", "10.0.0.0/8", "nope"]), max_size=3)
        | _json,
        max_size=2,
    ),
    max_size=2,
)
_statement = st.fixed_dictionaries(
    {},
    optional={
        "Effect": st.sampled_from(["Allow", "Deny", "allow", "Perhaps"]) | _json,
        "Principal": st.sampled_from(["*", {"AWS": "*"}, {"AWS": ["arn:aws:iam::1:root"]}]) | _json,
        "Action": st.sampled_from(["execute-api:Invoke", "execute-api:*", "*", "s3:Get*"])
        | st.lists(st.sampled_from(["execute-api:Invoke", "execute-api:In*"]), max_size=2)
        | _json,
        "NotAction": st.sampled_from(["execute-api:Invoke", "s3:*"]),
        "Resource": _resource | st.lists(_resource, max_size=3) | _json,
        "NotResource": _resource,
        "Condition": _condition | _json,
    },
)
_policy = st.one_of(
    st.fixed_dictionaries(
        {"Statement": st.lists(_statement, max_size=4) | _statement},
        optional={"Version": st.sampled_from(["2012-10-17", "2008-10-17", "x"])},
    ),
    st.dictionaries(st.text(max_size=10), _json, max_size=3),
)


def _allows_somewhere(policy: dict) -> bool:
    statements = policy.get("Statement")
    statements = statements if isinstance(statements, list) else [statements]
    return any(isinstance(s, dict) and s.get("Effect") == "Allow" for s in statements)


@settings(max_examples=300, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(policy=_policy)
async def test_any_resource_policy_is_evaluated_without_crashing_and_allows_only_by_an_allow(policy):
    plane = _POLICY_PLANE.get()
    plane.reload(CompiledConfig(Config(), S.spec([_rest_api(policy)]), "d1"))
    response = await _get(plane, "/prod/open")
    assert response.status_code in (200, 403, 500), response.text
    if response.status_code == 200:
        assert _allows_somewhere(policy), policy
    elif response.status_code == 500:
        assert response.headers["x-amzn-errortype"] == "InternalServerErrorException"
    else:
        assert response.headers["x-amzn-errortype"] == "AccessDeniedException"
        assert _POLICY_PLANE.calls == []


class _OnePlane:
    """One data plane for every example (reloaded with each policy), stopped at exit."""

    def __init__(self) -> None:
        self.plane: DataPlane | None = None
        self.calls: list[dict] = []

    def get(self) -> DataPlane:
        if self.plane is None:
            self.plane = _plane(_rest_api(), self.calls)
        self.calls.clear()
        return self.plane


_POLICY_PLANE = _OnePlane()


@pytest.fixture(autouse=True, scope="module")
def _stop_policy_plane():
    yield
    if _POLICY_PLANE.plane is not None:
        _POLICY_PLANE.plane.stop()
