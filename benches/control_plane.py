"""Control-plane timings: how long 1,000 routes take to create and deploy, and to be served.

    python benches/control_plane.py [--routes N]

Starts `portico serve --admin-port` on free loopback ports with a temporary data directory, then
with boto3 (the admin API is SigV4-signed like AWS's):
  1. creates an HTTP API, a MOCK-free AWS_PROXY integration and N routes `GET /r{i}` one call each;
  2. creates a stage and one deployment holding all N routes;
  3. measures, from the deployment's 2xx, how long until the data plane answers the last route;
  4. adds one more route, redeploys, and measures the time to serve that change (the steady-state
     reload latency with N routes deployed).
Prints each figure; asserts nothing (figures go in README's Performance section).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import httpx
import yaml
from botocore.config import Config

REPO = Path(__file__).resolve().parent.parent
KEY_ID = "AKIABENCHCONTROLPLANE"
SECRET = "bench-control-plane-secret-0123456789abcd"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float = 60.0, interval: float = 0.01) -> float:
    """Seconds until `predicate()` is true (raises after `timeout`)."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if predicate():
            return time.perf_counter() - start
        time.sleep(interval)
    raise TimeoutError("condition not met")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--routes", type=int, default=1000)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="portico-cp-bench-"))
    data_port, admin_port = free_port(), free_port()
    config = tmp / "portico.yaml"
    config.write_text(yaml.safe_dump({"apis": []}))
    env = dict(os.environ, PYTHONPATH=str(REPO / "benches"))
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "portico",
            "serve",
            str(config),
            "--port",
            str(data_port),
            "--admin-port",
            str(admin_port),
            "--data-dir",
            str(tmp / "data"),
            "--admin-key",
            f"{KEY_ID}:{SECRET}",
            "--function",
            "hello=handlers:hello",
        ],
        cwd=REPO / "benches",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        client = boto3.client(
            "apigatewayv2",
            endpoint_url=f"http://127.0.0.1:{admin_port}",
            region_name="us-east-1",
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
            config=Config(retries={"max_attempts": 10, "mode": "standard"}),
        )
        wait_until(lambda: _answers(f"http://127.0.0.1:{admin_port}/v2/apis"), timeout=30)
        api = client.create_api(Name="bench", ProtocolType="HTTP")
        api_id = api["ApiId"]
        integration = client.create_integration(
            ApiId=api_id,
            IntegrationType="AWS_PROXY",
            PayloadFormatVersion="2.0",
            IntegrationUri="arn:aws:lambda:us-east-1:123456789012:function:hello",
        )["IntegrationId"]
        start = time.perf_counter()
        for i in range(args.routes):
            client.create_route(ApiId=api_id, RouteKey=f"GET /r{i}", Target=f"integrations/{integration}")
        create_seconds = time.perf_counter() - start
        client.create_stage(ApiId=api_id, StageName="$default")
        start = time.perf_counter()
        client.create_deployment(ApiId=api_id, StageName="$default")
        deploy_seconds = time.perf_counter() - start
        base = f"http://127.0.0.1:{data_port}"
        host = {"host": f"{api_id}.execute-api.localhost"}
        last = f"{base}/r{args.routes - 1}"
        serve_seconds = wait_until(lambda: httpx.get(last, headers=host).status_code == 200)

        client.create_route(ApiId=api_id, RouteKey="GET /extra", Target=f"integrations/{integration}")
        client.create_deployment(ApiId=api_id, StageName="$default")
        change_seconds = wait_until(lambda: httpx.get(f"{base}/extra", headers=host).status_code == 200)

        print(f"routes: {args.routes}")
        print(
            f"create {args.routes} routes (one boto3 call each): {create_seconds:.2f} s "
            f"({create_seconds / args.routes * 1000:.2f} ms per route)"
        )
        print(f"CreateDeployment of {args.routes} routes: {deploy_seconds * 1000:.0f} ms")
        print(f"deployment answered -> data plane serves it: {serve_seconds * 1000:.0f} ms")
        print(f"one more route + redeploy -> served: {change_seconds * 1000:.0f} ms")
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGINT)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
        return True
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    sys.exit(main())
