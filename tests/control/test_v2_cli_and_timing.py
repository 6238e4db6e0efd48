"""apigatewayv2 through the AWS CLI, and the 1,000-route timing figure (printed, not asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from control_support import ACCESS_KEY_ID, REGION, SECRET, ThreadAdmin

LAMBDA_ARN = "arn:aws:lambda:us-east-1:123456789012:function:my-function"


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[ThreadAdmin]:
    server = ThreadAdmin(tmp_path / "data")
    yield server
    server.stop()


def aws(admin: ThreadAdmin, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_MAX_ATTEMPTS": "1",
    }
    env.pop("AWS_PROFILE", None)
    command = ["aws", "--endpoint-url", admin.url, "apigatewayv2", *args, "--output", "json"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def ok(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else {}


def test_aws_cli_flow(admin: ThreadAdmin, tmp_path: Path) -> None:
    api = ok(aws(admin, "create-api", "--name", "cli", "--protocol-type", "HTTP"))
    api_id = api["ApiId"]
    integration = ok(
        aws(
            admin,
            "create-integration",
            "--api-id",
            api_id,
            "--integration-type",
            "AWS_PROXY",
            "--integration-uri",
            LAMBDA_ARN,
            "--payload-format-version",
            "2.0",
        )
    )
    target = f"integrations/{integration['IntegrationId']}"
    route = ok(
        aws(admin, "create-route", "--api-id", api_id, "--route-key", "GET /items/{id}", "--target", target)
    )
    assert route["RouteKey"] == "GET /items/{id}" and route["Target"] == target
    stage = ok(aws(admin, "create-stage", "--api-id", api_id, "--stage-name", "$default", "--auto-deploy"))
    assert stage["AutoDeploy"] is True and stage["DeploymentId"]
    routes = ok(aws(admin, "get-routes", "--api-id", api_id))
    assert [r["RouteKey"] for r in routes["Items"]] == ["GET /items/{id}"]
    settings = json.dumps({"GET /items/{id}": {"ThrottlingBurstLimit": 5, "ThrottlingRateLimit": 2.5}})
    ok(
        aws(
            admin,
            "update-stage",
            "--api-id",
            api_id,
            "--stage-name",
            "$default",
            "--route-settings",
            settings,
        )
    )
    ok(
        aws(
            admin,
            "delete-route-settings",
            "--api-id",
            api_id,
            "--stage-name",
            "$default",
            "--route-key",
            "GET /items/{id}",
        )
    )
    duplicate = aws(admin, "create-route", "--api-id", api_id, "--route-key", "GET /items/{id}")
    assert duplicate.returncode != 0 and "ConflictException" in duplicate.stderr
    bad = aws(admin, "create-route", "--api-id", api_id, "--route-key", "GET items")
    assert bad.returncode != 0 and "BadRequestException" in bad.stderr
    missing = aws(admin, "get-route", "--api-id", api_id, "--route-id", "nope123")
    assert missing.returncode != 0 and "NotFoundException" in missing.stderr
    out = tmp_path / "export.yaml"
    result = aws(
        admin, "export-api", "--api-id", api_id, "--output-type", "YAML", "--specification", "OAS30", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert "x-amazon-apigateway-integration" in out.read_text()
    arn = f"arn:aws:apigateway:{REGION}::/apis/{api_id}"
    ok(aws(admin, "tag-resource", "--resource-arn", arn, "--tags", "team=core"))
    assert ok(aws(admin, "get-tags", "--resource-arn", arn))["Tags"] == {"team": "core"}


def test_thousand_routes_timing(admin: ThreadAdmin, capsys: pytest.CaptureFixture[str]) -> None:
    """Reports (prints) how long creating 1,000 routes and one CreateDeployment take."""
    v2 = admin.client("apigatewayv2")
    api_id = v2.create_api(Name="big", ProtocolType="HTTP")["ApiId"]
    integration = v2.create_integration(
        ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=LAMBDA_ARN, PayloadFormatVersion="2.0"
    )
    target = f"integrations/{integration['IntegrationId']}"
    started = time.perf_counter()
    for i in range(1000):
        v2.create_route(ApiId=api_id, RouteKey=f"GET /r{i}/{{id}}", Target=target)
    routes_seconds = time.perf_counter() - started
    started = time.perf_counter()
    deployment = v2.create_deployment(ApiId=api_id)
    deploy_seconds = time.perf_counter() - started
    with admin.store.read() as tx:
        snap = tx.get("apigatewayv2", "deployment", deployment["DeploymentId"])["_snapshot"]
    assert len(snap["Routes"]) == 1000
    with capsys.disabled():
        print(
            f"\n[timing] 1,000 CreateRoute via boto3: {routes_seconds:.2f} s "
            f"({routes_seconds:.3f} ms per route); CreateDeployment of 1,000 routes: "
            f"{deploy_seconds * 1000:.0f} ms"
        )
