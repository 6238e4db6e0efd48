"""Lambda handlers that say which version answered: deployments point stages at one or the other."""

import json


def v1(event, context):
    return {"statusCode": 200, "headers": {"content-type": "text/plain"}, "body": "v1"}


def v2(event, context):
    return {"statusCode": 200, "headers": {"content-type": "text/plain"}, "body": "v2"}


def stage_info(event, context):
    """The stage, its variables and the deployment that served the request (REST 1.0 or HTTP 2.0)."""
    request = event.get("requestContext") or {}
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(
            {
                "stage": request.get("stage"),
                "deploymentId": request.get("deploymentId"),
                "stageVariables": event.get("stageVariables"),
            }
        ),
    }
