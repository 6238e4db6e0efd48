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


AUTHORIZER_CALLS = 0


def authorizer(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A Lambda authorizer (HTTP API payload 2.0, IAM policy) for benches/lambda_authorizer.py:
    allows the bearer of the benchmark's token on every route of the API and stage."""
    global AUTHORIZER_CALLS
    AUTHORIZER_CALLS += 1
    return _allow_stage(event["headers"].get("authorization"), event["routeArn"])


def authorizer_calls(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """How many times `authorizer` ran in this process."""
    return {"statusCode": 200, "body": f'{{"authorizer":{AUTHORIZER_CALLS}}}'}


def token_authorizer(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A REST TOKEN Lambda authorizer for benches/run.py --shape auth: allows the benchmark's token
    on every method of the stage (the policy is evaluated again for each request's methodArn)."""
    return _allow_stage(event["authorizationToken"], event["methodArn"])


def _allow_stage(token: str | None, arn: str) -> dict[str, Any]:
    """The benchmark's token gets a policy allowing every route of the ARN's API and stage."""
    if token != "Bearer bench-token-0123456789":
        raise Exception("Unauthorized")
    region, account, rest = arn.split(":")[3:6]
    api_id, stage = rest.split("/")[:2]
    return {
        "principalId": "bench-user",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": "execute-api:Invoke",
                    "Effect": "Allow",
                    "Resource": f"arn:aws:execute-api:{region}:{account}:{api_id}/{stage}/*",
                }
            ],
        },
        "context": {"tenant": "bench", "tier": 2},
    }
