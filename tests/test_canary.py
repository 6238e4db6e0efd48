"""Canary releases (REST stage canarySettings) and per-stage route sets in the core spec."""

from __future__ import annotations

import asyncio

import httpx
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from admin_e2e import lambda_arn, point_at, rest_proxy_api, start_admin_server, wait_for
from portico import _core
from portico.config.models import Config
from portico.control.store import Store
from portico.dataplane.build import build_dataplane
from portico.integrations.functions import FunctionRegistry


def test_canary_split_promotion_and_removal(portico, tmp_path):
    admin = start_admin_server(portico, tmp_path)
    apigw = admin.client("apigateway")
    api_id, proxy_id = rest_proxy_api(apigw, "canary", "v1")
    apigw.create_deployment(restApiId=api_id, stageName="prod")
    url = f"{admin.url}/restapis/{api_id}/prod/_user_request_/x"
    wait_for(lambda: httpx.get(url).text == "v1", timeout=3)

    point_at(apigw, api_id, proxy_id, "v2")
    canary = apigw.create_deployment(
        restApiId=api_id, stageName="prod", canarySettings={"percentTraffic": 50.0}
    )
    stage = apigw.get_stage(restApiId=api_id, stageName="prod")
    assert stage["canarySettings"]["deploymentId"] == canary["id"]
    assert stage["deploymentId"] != canary["id"]

    with httpx.Client() as client:
        wait_for(lambda: client.get(url).text == "v2", timeout=3)
        bodies = [client.get(url).text for _ in range(200)]
    assert set(bodies) == {"v1", "v2"}
    # 50 %: 100 expected, 60..140 is over six standard deviations wide.
    assert 60 <= bodies.count("v2") <= 140, bodies.count("v2")

    # Promotion: the stage takes the canary's deployment, the canary gets no traffic.
    apigw.update_stage(
        restApiId=api_id,
        stageName="prod",
        patchOperations=[
            {"op": "copy", "from": "/canarySettings/deploymentId", "path": "/deploymentId"},
            {"op": "replace", "path": "/canarySettings/percentTraffic", "value": "0.0"},
        ],
    )
    with httpx.Client() as client:
        wait_for(lambda: all(client.get(url).text == "v2" for _ in range(20)), timeout=3)
        assert {client.get(url).text for _ in range(50)} == {"v2"}

    # Removal of the canary settings.
    apigw.update_stage(
        restApiId=api_id, stageName="prod", patchOperations=[{"op": "remove", "path": "/canarySettings"}]
    )
    assert "canarySettings" not in apigw.get_stage(restApiId=api_id, stageName="prod")
    with httpx.Client() as client:
        assert {client.get(url).text for _ in range(50)} == {"v2"}


def test_canary_stage_is_the_effective_stage(tmp_path):
    """The canary request sees the canary deployment and the stage variables with its overrides."""
    from handlers import versions

    store = Store(tmp_path)
    method = {
        "httpMethod": "GET",
        "methodIntegration": {"type": "AWS_PROXY", "uri": lambda_arn("stage_info")},
    }
    snapshot = {"resources": [{"id": "r", "path": "/info", "resourceMethods": {"GET": method}}]}
    with store.transaction() as tx:
        tx.put("apigateway", "restapi", "canary1", {"id": "canary1", "name": "c"})
        for deployment in ("main", "next"):
            tx.put(
                "apigateway",
                "deployment",
                deployment,
                {"id": deployment, "_snapshot": snapshot},
                parent="canary1",
            )
        stage = {
            "stageName": "prod",
            "deploymentId": "main",
            "variables": {"color": "blue", "size": "l"},
            "canarySettings": {
                "deploymentId": "next",
                "percentTraffic": 100.0,
                "stageVariableOverrides": {"color": "green"},
            },
        }
        tx.put("apigateway", "stage", "canary1/prod", stage, parent="canary1")
    registry = FunctionRegistry()
    registry.register("stage_info", versions.stage_info)
    app = build_dataplane(Config(), registry=registry, store=store)

    async def get() -> dict:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://canary1.execute-api.localhost"
        ) as client:
            return (await client.get("/prod/info")).json()

    assert asyncio.run(get()) == {
        "stage": "prod",
        "deploymentId": "next",
        "stageVariables": {"color": "green", "size": "l"},
    }
    served = app.compiled.apis[0]["stages"][0]
    assert served["deployment_id"] == "main" and served["variables"]["color"] == "blue"
    assert served["canary"]["deployment_id"] == "next" and served["canary"]["variables"]["color"] == "green"


# ------------------------------------------------------------------------------------------------
# The spec compiler: random route sets per stage compile, and every route is reachable.

_SEGMENT = st.sampled_from(["a", "b", "pets", "v1", "x-y", "item.json"])
_PATH = st.lists(_SEGMENT, min_size=0, max_size=4).map(lambda parts: "/" + "/".join(parts))
_METHOD = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
_ROUTES = st.lists(st.tuples(_METHOD, _PATH).map(" ".join), max_size=12, unique=True)


@settings(max_examples=60, deadline=None)
@given(
    api_routes=_ROUTES,
    stage_routes=st.lists(st.one_of(st.none(), _ROUTES), min_size=1, max_size=4),
    canary_routes=st.lists(st.one_of(st.none(), _ROUTES), min_size=4, max_size=4),
    kind=st.sampled_from(["http", "rest"]),
)
def test_every_route_of_every_stage_is_reachable(api_routes, stage_routes, canary_routes, kind):
    stages = []
    for index, routes in enumerate(stage_routes):
        canary = canary_routes[index]
        # Routes given by key only: the core routes and throttles them (no integration needed).
        stage = {"name": f"s{index}", "route_throttle": {}}
        if routes is not None:
            stage["routes"] = routes
        if canary is not None:
            stage["canary"] = {"percent": 100.0, "routes": canary}
        stages.append(stage)
    spec = {"apis": [{"id": "prop", "kind": kind, "routes": api_routes, "stages": stages}], "default_api": 0}
    gateway = _core.Gateway(orjson.dumps(spec).decode())
    for index, routes in enumerate(stage_routes):
        canary = canary_routes[index]
        served = canary if canary is not None else (routes if routes is not None else api_routes)
        for route_index, key in enumerate(served):
            method, _, path = key.partition(" ")
            verdict = gateway.decide("prop.execute-api.localhost", method, f"/s{index}{path}")
            assert verdict.kind == _core.Decided.Route, (key, verdict)
            assert verdict.stage_index == index
            assert verdict.route_index == route_index
            assert verdict.canary is (canary is not None)
