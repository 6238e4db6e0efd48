"""Lambda authorizers written the way AWS's developer guide writes them ("Use API Gateway Lambda
authorizers", "Control access to HTTP APIs with AWS Lambda authorizers"), plus an integration that
reports what it saw. Every function counts its calls in `CALLS`, so a test can tell whether the
authorizer ran (or was answered from the cache) and whether the integration was reached."""

import json
import time
from collections import Counter

CALLS: Counter = Counter()


def _policy(principal_id, effect, resource, context=None):
    """The authorizer output AWS documents: principalId, an IAM policy on execute-api:Invoke and an
    optional context of strings, numbers and booleans."""
    answer = {
        "principalId": principal_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
    }
    if context is not None:
        answer["context"] = context
    return answer


def token_authorizer(event, context):
    """The TOKEN sample: `allow` and `deny` return a policy on the method ARN, `unauthorized` raises
    the error API Gateway turns into 401, anything else returns what is not an authorizer output."""
    CALLS["token_authorizer"] += 1
    token = event["authorizationToken"]
    if token == "allow":
        return _policy(
            "user",
            "Allow",
            event["methodArn"],
            {"stringKey": "stringval", "numberKey": 123, "booleanKey": True},
        )
    if token == "deny":
        return _policy("user", "Deny", event["methodArn"])
    if token == "unauthorized":
        raise Exception("Unauthorized")  # Return a 401 Unauthorized response
    if token == "fail":
        raise ValueError("the token store is unreachable")
    return "unauthorized"  # not a policy: API Gateway answers 500


def request_authorizer(event, context):
    """The REQUEST sample: allows only when the header, the query string and the stage variable all
    hold the expected values; otherwise raises Unauthorized."""
    CALLS["request_authorizer"] += 1
    headers = {name.lower(): value for name, value in event["headers"].items()}
    query = event["queryStringParameters"] or {}
    stage_variables = event["stageVariables"] or {}
    # methodArn: arn:aws:execute-api:region:account:api/stage/METHOD/path
    arn_parts = event["methodArn"].split(":")
    api_parts = arn_parts[5].split("/")
    resource = (
        f"arn:aws:execute-api:{arn_parts[3]}:{arn_parts[4]}:{api_parts[0]}/{api_parts[1]}/{api_parts[2]}/*"
    )
    if (
        headers.get("headerauth1") == "headerValue1"
        and query.get("QueryString1") == "queryValue1"
        and stage_variables.get("StageVar1") == "stageValue1"
    ):
        return _policy("me", "Allow", resource, {"tenant": headers["headerauth1"], "level": 3})
    raise Exception("Unauthorized")


def simple_authorizer(event, context):
    """HTTP API payload 2.0, simple responses: isAuthorized and a context of any JSON."""
    CALLS["simple_authorizer"] += 1
    response = {
        "isAuthorized": event["headers"].get("authorization") == "secretToken",
        "context": {
            "stringKey": "value",
            "numberKey": 1,
            "booleanKey": True,
            "arrayKey": ["value1", "value2"],
            "mapKey": {"value1": "value2"},
        },
    }
    return response


def iam_v2_authorizer(event, context):
    """HTTP API payload 2.0 returning an IAM policy on the route ARN."""
    CALLS["iam_v2_authorizer"] += 1
    effect = "Allow" if event["headers"].get("authorization") == "secretToken" else "Deny"
    return _policy(
        "abcdef", effect, event["routeArn"], {"stringKey": "value", "numberKey": 1, "mapKey": {"a": "b"}}
    )


def v1_authorizer(event, context):
    """HTTP API payload 1.0: the REST-compatible event and an IAM policy answer."""
    CALLS["v1_authorizer"] += 1
    if event["identitySource"] != "secretToken":
        raise Exception("Unauthorized")
    return _policy("v1-user", "Allow", event["methodArn"], {"stringKey": "value", "flag": False})


def keyed_authorizer(event, context):
    """For APIs whose apiKeySource is AUTHORIZER: names the caller's usage-plan key."""
    CALLS["keyed_authorizer"] += 1
    return {
        **_policy("keyed", "Allow", event["methodArn"]),
        "usageIdentifierKey": event["authorizationToken"],
    }


def event_authorizer(event, context):
    """Allows everything and says what event it was given (in the context, as JSON text)."""
    CALLS["event_authorizer"] += 1
    arn = event.get("methodArn") or event.get("routeArn")
    return _policy("event", "Allow", arn, {"event": json.dumps(event)})


def hung_authorizer(event, context):
    """Answers far too late."""
    CALLS["hung_authorizer"] += 1
    time.sleep(1.5)
    return _policy("late", "Allow", "*")


def returns_authorizer(event, context):
    """Answers whatever its token (JSON) says: drives the malformed-answer tests."""
    CALLS["returns_authorizer"] += 1
    return json.loads(event.get("authorizationToken") or event["headers"]["x-answer"])


def integration(event, context):
    """The route's integration: counts its calls and echoes what API Gateway gave it."""
    CALLS["integration"] += 1
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(event)}


def calls(event, context):
    """An open route reporting the counts (for servers in another process)."""
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(CALLS)}
