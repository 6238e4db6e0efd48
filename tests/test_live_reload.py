"""Admin API -> data plane: what the admin API creates is served, and every change reaches every
worker within a second without failing a single request in flight."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter

import httpx

from admin_e2e import FILE_CONFIG, lambda_arn, point_at, rest_proxy_api, start_admin_server, wait_for
from portico.config.models import Config
from portico.control.store import Store
from portico.dataplane.build import build_dataplane
from portico.integrations.functions import FunctionRegistry

# ------------------------------------------------------------------------------------------------
# (a) HTTP API, as AWS documents the flow


def test_http_api_flow(portico, tmp_path):
    admin = start_admin_server(portico, tmp_path)
    v2 = admin.client("apigatewayv2")
    api = v2.create_api(
        Name="pets",
        ProtocolType="HTTP",
        CorsConfiguration={"AllowOrigins": ["https://example.com"], "AllowMethods": ["GET"], "MaxAge": 60},
    )
    api_id = api["ApiId"]
    integration = v2.create_integration(
        ApiId=api_id,
        IntegrationType="AWS_PROXY",
        IntegrationUri=lambda_arn("echo"),
        PayloadFormatVersion="2.0",
    )
    v2.create_route(
        ApiId=api_id, RouteKey="GET /pets/{id}", Target=f"integrations/{integration['IntegrationId']}"
    )
    v2.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)

    host = {"host": admin.host(api_id), "origin": "https://example.com"}

    def served():
        response = httpx.get(admin.url + "/pets/7", headers=host)
        return response if response.status_code == 200 else None

    response, waited = wait_for(served, timeout=3)
    assert waited < 1.0
    event = response.json()
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /pets/{id}"
    assert event["pathParameters"] == {"id": "7"}
    assert event["requestContext"]["apiId"] == api_id
    assert event["requestContext"]["stage"] == "$default"
    assert response.headers["access-control-allow-origin"] == "https://example.com"
    preflight = httpx.options(admin.url + "/pets/7", headers={**host, "access-control-request-method": "GET"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-max-age"] == "60"

    # Unknown routes of the admin API: HTTP API's 404.
    missing = httpx.get(admin.url + "/nope", headers=host)
    assert (missing.status_code, missing.json()) == (404, {"message": "Not Found"})
    # The file API is still served next to it (read-only, not in the store).
    file_api = httpx.get(admin.url + "/file", headers={"host": admin.host("fileapi")})
    assert (file_api.status_code, file_api.text) == (200, "file")
    assert api_id not in {a["name"] for a in FILE_CONFIG["apis"]}
    assert not any(item["ApiId"] == "fileapi" for item in v2.get_apis()["Items"])

    # A route to a function this gateway does not have: 500 at call time, and a log line saying so.
    ghost = v2.create_integration(
        ApiId=api_id,
        IntegrationType="AWS_PROXY",
        IntegrationUri=lambda_arn("ghost"),
        PayloadFormatVersion="2.0",
    )
    v2.create_route(ApiId=api_id, RouteKey="GET /ghost", Target=f"integrations/{ghost['IntegrationId']}")
    response, _ = wait_for(
        lambda: (r := httpx.get(admin.url + "/ghost", headers=host)).status_code != 404 and r
    )
    assert (response.status_code, response.json()) == (500, {"message": "Internal Server Error"})
    wait_for(lambda: "'ghost' is not registered" in admin.server.log, timeout=3)
    # ... while the other routes keep working.
    assert httpx.get(admin.url + "/pets/8", headers=host).status_code == 200

    # Deleting the stage takes the API off the data plane.
    v2.delete_stage(ApiId=api_id, StageName="$default")
    wait_for(lambda: httpx.get(admin.url + "/pets/7", headers=host).status_code == 404, timeout=3)


# ------------------------------------------------------------------------------------------------
# (c) a steady stream of requests across deployments and a rollback


def test_deployments_under_a_steady_stream(portico, tmp_path):
    admin = start_admin_server(portico, tmp_path, workers=2)
    apigw = admin.client("apigateway")
    api_id, proxy_id = rest_proxy_api(apigw, "versions", "v1")
    first = apigw.create_deployment(restApiId=api_id, stageName="prod")["id"]
    url = f"{admin.url}/restapis/{api_id}/prod/_user_request_/item"
    wait_for(lambda: httpx.get(url).text == "v1", timeout=3)

    stop = threading.Event()
    failures: list[str] = []
    bodies: Counter[str] = Counter()
    lock = threading.Lock()

    def stream() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                try:
                    response = client.get(url)
                    outcome = (
                        response.text
                        if response.status_code == 200
                        else f"{response.status_code} {response.text}"
                    )
                except httpx.HTTPError as exc:
                    outcome = f"error {exc!r}"
                with lock:
                    bodies[outcome] += 1
                    if outcome not in ("v1", "v2"):
                        failures.append(outcome)

    threads = [threading.Thread(target=stream) for _ in range(3)]
    for thread in threads:
        thread.start()
    latencies: list[float] = []
    try:
        version = "v1"
        for _ in range(6):
            version = "v2" if version == "v1" else "v1"
            point_at(apigw, api_id, proxy_id, version)
            apigw.create_deployment(restApiId=api_id, stageName="prod")
            latencies.append(_until_every_worker_serves(url, version))
        # Roll back to the first deployment.
        apigw.update_stage(
            restApiId=api_id,
            stageName="prod",
            patchOperations=[{"op": "replace", "path": "/deploymentId", "value": first}],
        )
        latencies.append(_until_every_worker_serves(url, "v1"))
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    print(f"reload latencies (s): {[round(x, 3) for x in latencies]}; responses: {dict(bodies)}")
    assert not failures, failures[:5]
    assert bodies["v1"] > 0 and bodies["v2"] > 0
    assert max(latencies) < 1.0, latencies


def _until_every_worker_serves(url: str, body: str) -> float:
    """Seconds from now until the first of 20 requests in a row that answer `body`, each on a fresh
    connection (so spread over the workers): when the last worker had the change."""
    start = time.perf_counter()
    streak, streak_start = 0, 0.0
    while streak < 20:
        if time.perf_counter() - start > 5:
            raise AssertionError(f"{body!r} not served everywhere within 5 s")
        sent = time.perf_counter()
        response = httpx.get(url, headers={"connection": "close"})
        if response.text == body:
            if streak == 0:
                streak_start = sent
            streak += 1
        else:
            streak = 0
            time.sleep(0.005)
    return streak_start - start


# ------------------------------------------------------------------------------------------------
# Embedded data plane given a store: reload mechanics without a server


def _registry() -> FunctionRegistry:
    from handlers import versions

    registry = FunctionRegistry()
    registry.register("v1", versions.v1)
    registry.register("v2", versions.v2)
    return registry


def _put_rest_api(store: Store, api_id: str, function: str, deployment: str = "d1") -> None:
    method = {
        "httpMethod": "ANY",
        "authorizationType": "NONE",
        "methodIntegration": {"type": "AWS_PROXY", "httpMethod": "POST", "uri": lambda_arn(function)},
    }
    with store.transaction() as tx:
        tx.put("apigateway", "restapi", api_id, {"id": api_id, "name": api_id, "rootResourceId": "r0"})
        snapshot = {
            "restApi": {"id": api_id},
            "resources": [{"id": "r1", "path": "/{proxy+}", "resourceMethods": {"ANY": method}}],
        }
        tx.put(
            "apigateway", "deployment", deployment, {"id": deployment, "_snapshot": snapshot}, parent=api_id
        )
        tx.put(
            "apigateway",
            "stage",
            f"{api_id}/prod",
            {"stageName": "prod", "deploymentId": deployment, "variables": {}},
            parent=api_id,
        )


async def _get(app, path: str, host: str = "x") -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}") as client:
        return await client.get(path)


def test_embedded_reload_keeps_in_flight_requests(tmp_path, caplog):
    store = Store(tmp_path)
    _put_rest_api(store, "embedded1", "v1")
    app = build_dataplane(Config(), registry=_registry(), store=store)

    async def scenario() -> None:
        # The only API: a Host that names no API reaches it.
        assert (await _get(app, "/prod/a")).text == "v1"
        compiled = app.compiled
        _put_rest_api(store, "embedded1", "v2", deployment="d2")
        assert await app.refresh()
        assert app.compiled is not compiled
        assert (await _get(app, "/prod/a")).text == "v2"
        # Nothing changed: no rebuild.
        assert not await app.refresh()
        # A rebuild that fails keeps the previous state, and says why.
        app.source.build = lambda: (_ for _ in ()).throw(RuntimeError("broken store"))  # type: ignore[union-attr]
        with store.transaction() as tx:
            tx.put("apigateway", "account", "account", {})
        with caplog.at_level(logging.ERROR, logger="portico.dataplane"):
            assert not await app.refresh()
        assert "broken store" in caplog.text
        assert (await _get(app, "/prod/a")).text == "v2"

    asyncio.run(scenario())


def test_embedded_watcher_follows_the_store(tmp_path):
    store = Store(tmp_path)
    _put_rest_api(store, "watched1", "v1")
    app = build_dataplane(Config(), registry=_registry(), store=store)

    async def scenario() -> float:
        app.start_watching()
        try:
            assert (await _get(app, "/prod/a")).text == "v1"
            _put_rest_api(store, "watched1", "v2", deployment="d2")
            start = time.perf_counter()
            while (await _get(app, "/prod/a")).text != "v2":
                assert time.perf_counter() - start < 1.0
                await asyncio.sleep(0.01)
            return time.perf_counter() - start
        finally:
            await app.stop_watching()

    assert asyncio.run(scenario()) < 1.0


def test_file_api_wins_an_id_clash(tmp_path, caplog):
    store = Store(tmp_path)
    _put_rest_api(store, "fileapi", "v1")
    _put_rest_api(store, "other1", "v2")
    config = Config.model_validate(FILE_CONFIG)
    with caplog.at_level(logging.WARNING, logger="portico.compile"):
        app = build_dataplane(config, registry=_registry(), store=store)
    assert "admin API fileapi has the id of an API of the config file: skipped" in caplog.text
    assert [api["id"] for api in app.compiled.apis] == ["fileapi", "other1"]
    assert app.compiled.apis[0]["kind"] == "http"

    async def scenario() -> None:
        assert (await _get(app, "/file", "fileapi.execute-api.localhost")).text == "file"
        assert (await _get(app, "/prod/x", "other1.execute-api.localhost")).text == "v2"
        # Two APIs: a Host that names none reaches none.
        assert (await _get(app, "/file")).status_code == 404

    asyncio.run(scenario())


def test_reload_does_not_reset_throttling(tmp_path):
    """A new gateway built on reload spends from the old one's buckets."""
    store = Store(tmp_path)
    _put_rest_api(store, "throttled1", "v1")
    with store.transaction() as tx:
        stage = tx.get("apigateway", "stage", "throttled1/prod")
        stage["methodSettings"] = {"*/*": {"throttlingRateLimit": 0.001, "throttlingBurstLimit": 2}}
        tx.put("apigateway", "stage", "throttled1/prod", stage, parent="throttled1")
    app = build_dataplane(Config(), registry=_registry(), store=store)

    async def scenario() -> None:
        assert [(await _get(app, "/prod/a")).status_code for _ in range(3)] == [200, 200, 429]
        _put_rest_api(store, "throttled1", "v2", deployment="d2")
        with store.transaction() as tx:
            stage = tx.get("apigateway", "stage", "throttled1/prod")
            stage["methodSettings"] = {"*/*": {"throttlingRateLimit": 0.001, "throttlingBurstLimit": 2}}
            tx.put("apigateway", "stage", "throttled1/prod", stage, parent="throttled1")
        assert await app.refresh()
        assert (await _get(app, "/prod/a")).status_code == 429

    asyncio.run(scenario())
