"""Access logs in AWS's `$context` format, and plugins named on the command line."""

from __future__ import annotations

import time

import httpx
import pytest

from conftest import run_portico


def test_access_log_and_cli_plugin(portico, tmp_path):
    log_file = tmp_path / "access.log"
    config = {
        "settings": {
            "accessLog": {
                "format": "$context.requestId $context.httpMethod $context.routeKey $context.status "
                "$context.responseLength $context.stage $context.unknownThing",
                "destination": str(log_file),
            }
        },
        "apis": [
            {
                "name": "logged",
                "routes": [
                    {"route": "GET /ok", "integration": {"type": "MOCK", "statusCode": 200, "body": "fine"}}
                ],
            }
        ],
    }
    server = portico(config, extra_args=["--plugin", "handlers.plugins:PoweredBy"])
    ok = httpx.get(server.url + "/ok")
    assert ok.headers["x-powered-by"] == "portico/GET /ok"
    missing = httpx.get(server.url + "/missing")
    # The log is line-buffered by the server; give it a moment to reach the file.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and missing.headers["apigw-requestid"] not in log_file.read_text():
        time.sleep(0.05)
    lines = log_file.read_text().splitlines()
    assert f"{ok.headers['apigw-requestid']} GET GET /ok 200 4 $default -" in lines
    assert f"{missing.headers['apigw-requestid']} GET - 404 23 $default -" in lines


def test_bad_plugin_is_refused(tmp_path):
    config = tmp_path / "p.yaml"
    config.write_text("apis: []\n")
    result = run_portico("serve", str(config), "--check", "--plugin", "handlers.plugins:Nope")
    assert result.returncode == 2
    assert "handlers.plugins:Nope" in result.stderr


def test_failed_stream_is_not_passed_off_as_complete(portico):
    config = {
        "apis": [
            {
                "name": "streams",
                "routes": [{"route": "GET /{proxy+}", "integration": {"type": "MOCK", "statusCode": 200}}],
            }
        ]
    }
    server = portico(config, extra_args=["--plugin", "handlers.plugins:BrokenStream"])
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(server.url + "/broken")
    # The worker survives and keeps serving.
    assert httpx.get(server.url + "/fine").status_code == 200
