"""Lambda handlers used by the benchmark (benches/run.py): as small as a real handler gets."""

from __future__ import annotations

import json
from typing import Any


def hello(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """AWS_PROXY (payload 2.0): a small JSON object; API Gateway turns it into a 200 JSON response."""
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": '{"message":"hello from lambda"}',
    }


def ok(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """AWS_PROXY (payload 2.0), the production-shaped benchmark's handler: the smallest answer."""
    return {"statusCode": 200, "body": '{"ok":true}'}


def stage_version(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """AWS_PROXY (payload 2.0), the soak's admin-created route: the stage variable `version`, which
    every redeploy bumps (benches/soak.py counts answers older than the last deployment)."""
    version = (event.get("stageVariables") or {}).get("version", "")
    return {"statusCode": 200, "headers": {"content-type": "text/plain"}, "body": version}


def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """AWS_PROXY, the edge fuzzer's handler (benches/fuzz_edge.py): the event it got, as JSON."""
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(event)}
