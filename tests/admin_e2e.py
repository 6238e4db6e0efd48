"""Helpers for the tests that drive a real `portico serve --admin-port` with boto3 and call its data
plane (test_live_reload, test_rest_dataplane, test_canary)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.config import Config as BotoConfig

from conftest import Server, free_port

ACCESS_KEY_ID = "AKIDTESTDATAPLANE"
SECRET = "secret/DataPlaneBridgeTestKey+0123456789"
REGION = "us-east-1"
ACCOUNT = "123456789012"

# One file-declared API: served next to the admin-created ones, read-only.
FILE_CONFIG = {
    "apis": [
        {
            "name": "from-file",
            "id": "fileapi",
            "routes": [
                {"routeKey": "GET /file", "integration": {"type": "MOCK", "statusCode": 200, "body": "file"}}
            ],
        }
    ]
}

VERSIONS = {
    "v1": "handlers.versions:v1",
    "v2": "handlers.versions:v2",
    "stage_info": "handlers.versions:stage_info",
    "echo": "handlers.basic:echo",
}


@dataclass
class AdminServer:
    server: Server
    admin_url: str
    data_dir: Path

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.port

    def client(self, service: str):
        return boto3.client(
            service,
            endpoint_url=self.admin_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET,
            config=BotoConfig(retries={"max_attempts": 1, "mode": "standard"}),
        )

    def host(self, api_id: str) -> str:
        return f"{api_id}.execute-api.localhost:{self.port}"

    def metrics(self) -> dict[str, float]:
        """The admin port's `/metrics` (Prometheus text), by series (name and labels)."""
        text = httpx.get(self.admin_url + "/metrics", timeout=5).text
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out


def start_admin_server(
    portico,
    tmp_path: Path,
    functions: dict[str, str] | None = None,
    workers: int = 1,
    config: dict[str, Any] | None = None,
):
    """`config`: the config file served next to the admin API (FILE_CONFIG by default)."""
    port = free_port()
    data_dir = tmp_path / "state"
    server = portico(
        config if config is not None else FILE_CONFIG,
        functions=functions if functions is not None else VERSIONS,
        workers=workers,
        extra_args=[
            "--admin-port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--admin-key",
            f"{ACCESS_KEY_ID}:{SECRET}",
        ],
    )
    return AdminServer(server, f"http://127.0.0.1:{port}", data_dir)


def lambda_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


def invocation_uri(name: str) -> str:
    return f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{lambda_arn(name)}/invocations"


def wait_for(check: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> tuple[Any, float]:
    """Call `check` until it returns something truthy; (that value, seconds waited). Raises
    AssertionError with the last value on timeout."""
    start = time.perf_counter()
    last = None
    while True:
        last = check()
        if last:
            return last, time.perf_counter() - start
        if time.perf_counter() - start > timeout:
            raise AssertionError(f"not true within {timeout} s; last: {last!r}")
        time.sleep(interval)


def rest_proxy_api(apigw, name: str, function: str) -> tuple[str, str]:
    """A REST API built resource by resource: root `/` and `/{proxy+}`, both ANY -> AWS_PROXY to
    `function`. Returns (restApiId, proxy resource id)."""
    api = apigw.create_rest_api(name=name)
    api_id, root_id = api["id"], api["rootResourceId"]
    proxy = apigw.create_resource(restApiId=api_id, parentId=root_id, pathPart="{proxy+}")
    for resource_id in (root_id, proxy["id"]):
        apigw.put_method(restApiId=api_id, resourceId=resource_id, httpMethod="ANY", authorizationType="NONE")
        point_at(apigw, api_id, resource_id, function)
    return api_id, proxy["id"]


def point_at(apigw, api_id: str, resource_id: str, function: str, method: str = "ANY") -> None:
    apigw.put_integration(
        restApiId=api_id,
        resourceId=resource_id,
        httpMethod=method,
        type="AWS_PROXY",
        integrationHttpMethod="POST",
        uri=invocation_uri(function),
    )


def rest_echo_api(apigw, name: str, **create) -> str:
    """A REST API, not deployed: `{proxy+}` ANY -> the echo Lambda, `/health` GET -> MOCK (the
    default integration response's static template). Returns its id."""
    api = apigw.create_rest_api(name=name, **create)
    api_id, root_id = api["id"], api["rootResourceId"]
    proxy = apigw.create_resource(restApiId=api_id, parentId=root_id, pathPart="{proxy+}")
    apigw.put_method(restApiId=api_id, resourceId=proxy["id"], httpMethod="ANY", authorizationType="NONE")
    apigw.put_integration(
        restApiId=api_id,
        resourceId=proxy["id"],
        httpMethod="ANY",
        type="AWS_PROXY",
        integrationHttpMethod="POST",
        uri=invocation_uri("echo"),
    )
    health = apigw.create_resource(restApiId=api_id, parentId=root_id, pathPart="health")
    apigw.put_method(restApiId=api_id, resourceId=health["id"], httpMethod="GET", authorizationType="NONE")
    apigw.put_integration(
        restApiId=api_id,
        resourceId=health["id"],
        httpMethod="GET",
        type="MOCK",
        requestTemplates={"application/json": '{"statusCode": 200}'},
    )
    apigw.put_method_response(restApiId=api_id, resourceId=health["id"], httpMethod="GET", statusCode="200")
    apigw.put_integration_response(
        restApiId=api_id,
        resourceId=health["id"],
        httpMethod="GET",
        statusCode="200",
        responseTemplates={"application/json": '{"status": "ok"}'},
    )
    return api_id
