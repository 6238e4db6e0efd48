"""API keys, usage plans, gateway responses and resource policies created with boto3 through a real
`portico serve --admin-port`, enforced by its data plane: what AWS applies at once (keys, usage
plans) within a second, what it applies only once deployed (methods, the RestApi's policy and
apiKeySource, gateway responses) only after `create_deployment`. Every refused request is
checked not to reach the integration: the handler counts its calls."""

from __future__ import annotations

import json
import time

import httpx

from admin_e2e import point_at, start_admin_server, wait_for

FUNCTIONS = {"counted": "handlers.counting:counted"}
KEY = "PorticoTestKeyValue0123456789abcd"
OTHER_KEY = "AnotherKeyBoundToDev0123456789xyz"
LOG_FORMAT = (
    "$context.requestId key=$context.identity.apiKey id=$context.identity.apiKeyId "
    "status=$context.status type=$context.error.responseType"
)


def _keyed_api(apigw, name: str, **create) -> tuple[str, str]:
    """`GET /items` (apiKeyRequired) and `GET /open`, both AWS_PROXY -> counted. (api id, items id)."""
    api = apigw.create_rest_api(name=name, **create)
    api_id, root_id = api["id"], api["rootResourceId"]
    items = apigw.create_resource(restApiId=api_id, parentId=root_id, pathPart="items")["id"]
    apigw.put_method(
        restApiId=api_id, resourceId=items, httpMethod="GET", authorizationType="NONE", apiKeyRequired=True
    )
    point_at(apigw, api_id, items, "counted", method="GET")
    opened = apigw.create_resource(restApiId=api_id, parentId=root_id, pathPart="open")["id"]
    apigw.put_method(restApiId=api_id, resourceId=opened, httpMethod="GET", authorizationType="NONE")
    point_at(apigw, api_id, opened, "counted", method="GET")
    return api_id, items


class Calls:
    """Reads the handler's call count from the answers that pass."""

    def __init__(self) -> None:
        self.seen = 0

    def passed(self, response: httpx.Response) -> dict:
        assert response.status_code == 200, (response.status_code, response.text)
        body = response.json()
        # Exactly one call since the last answer that passed: no refused request reached it.
        assert body["calls"] == self.seen + 1, (body["calls"], self.seen)
        self.seen = body["calls"]
        return body["event"]

    def until(self, status: int, request) -> tuple[httpx.Response, float]:
        """Send `request()` until it answers `status`; (that answer, seconds waited). Answers that
        passed on the way (the change not applied yet) are counted as calls."""

        def check():
            response = request()
            if response.status_code == 200 and status != 200:
                self.passed(response)
            return response.status_code == status and response

        response, waited = wait_for(check, timeout=3)
        if status == 200:
            self.passed(response)
        return response, waited


def _forbidden(response: httpx.Response) -> None:
    assert response.status_code == 403, (response.status_code, response.text)
    assert response.json() == {"message": "Forbidden"}
    assert response.headers["x-amzn-errortype"] == "ForbiddenException"


def test_api_keys_from_boto3_end_to_end(portico, tmp_path):
    admin = start_admin_server(portico, tmp_path, functions=FUNCTIONS)
    apigw = admin.client("apigateway")
    api_id, items = _keyed_api(apigw, "keyed")
    apigw.create_deployment(restApiId=api_id, stageName="prod")
    apigw.create_deployment(restApiId=api_id, stageName="dev")
    access_log = tmp_path / "access.log"
    apigw.update_stage(
        restApiId=api_id,
        stageName="prod",
        patchOperations=[
            {"op": "replace", "path": "/accessLogSettings/destinationArn", "value": str(access_log)},
            {"op": "replace", "path": "/accessLogSettings/format", "value": LOG_FORMAT},
        ],
    )
    host = {"host": admin.host(api_id)}
    calls = Calls()

    def get(key: str | None = None, header: str = "x-api-key", path: str = "/prod/items") -> httpx.Response:
        headers = dict(host)
        if key is not None:
            headers[header] = key
        return httpx.get(admin.url + path, headers=headers)

    # Deployed, but no key exists yet: refused, and the open method is served.
    calls.until(200, lambda: get(path="/prod/open"))
    _forbidden(get())
    _forbidden(get(KEY))

    key = apigw.create_api_key(name="partner", value=KEY, enabled=True)
    other = apigw.create_api_key(name="dev-only", value=OTHER_KEY, enabled=True)
    plan = apigw.create_usage_plan(name="gold", apiStages=[{"apiId": api_id, "stage": "prod"}])
    dev_plan = apigw.create_usage_plan(name="dev", apiStages=[{"apiId": api_id, "stage": "dev"}])
    apigw.create_usage_plan_key(usagePlanId=dev_plan["id"], keyId=other["id"], keyType="API_KEY")
    # A key in no plan bound to the stage does not count.
    _forbidden(get(KEY))
    apigw.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
    response, waited = calls.until(200, lambda: get(KEY))
    assert waited < 1.0, waited
    event = response.json()["event"]
    identity = event["requestContext"]["identity"]
    assert (identity["apiKey"], identity["apiKeyId"]) == (KEY, key["id"])

    # The header's name in any case; a key bound to another stage, an unknown key, none: refused.
    for header in ("X-API-Key", "X-API-KEY", "x-Api-kEY"):
        calls.passed(get(KEY, header))
    for presented in (OTHER_KEY, KEY.lower(), KEY + "x", "", None):
        _forbidden(get(presented))
    calls.passed(get(OTHER_KEY, path="/dev/items"))
    # A method without apiKeyRequired ignores the key.
    assert "apiKey" not in calls.passed(get(path="/prod/open"))["requestContext"]["identity"]

    # Disabling the key applies without a redeployment, within a second.
    apigw.update_api_key(
        apiKey=key["id"], patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}]
    )
    _, waited = calls.until(403, lambda: get(KEY))
    assert waited < 1.0, waited
    _forbidden(get(KEY))
    apigw.update_api_key(
        apiKey=key["id"], patchOperations=[{"op": "replace", "path": "/enabled", "value": "true"}]
    )
    calls.until(200, lambda: get(KEY))
    # Out of the plan, then the plan no longer bound to the stage: refused; back in: served.
    apigw.delete_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"])
    _, waited = calls.until(403, lambda: get(KEY))
    assert waited < 1.0, waited
    apigw.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
    calls.until(200, lambda: get(KEY))
    apigw.update_usage_plan(
        usagePlanId=plan["id"],
        patchOperations=[{"op": "remove", "path": "/apiStages", "value": f"{api_id}:prod"}],
    )
    _, waited = calls.until(403, lambda: get(KEY))
    assert waited < 1.0, waited
    apigw.update_usage_plan(
        usagePlanId=plan["id"],
        patchOperations=[{"op": "add", "path": "/apiStages", "value": f"{api_id}:prod"}],
    )
    calls.until(200, lambda: get(KEY))

    # The method's apiKeyRequired and the API's apiKeySource apply once deployed, as on AWS.
    apigw.update_method(
        restApiId=api_id,
        resourceId=items,
        httpMethod="GET",
        patchOperations=[{"op": "replace", "path": "/apiKeyRequired", "value": "false"}],
    )
    time.sleep(0.5)
    _forbidden(get())
    apigw.create_deployment(restApiId=api_id, stageName="prod")
    calls.until(200, lambda: get())
    apigw.update_method(
        restApiId=api_id,
        resourceId=items,
        httpMethod="GET",
        patchOperations=[{"op": "replace", "path": "/apiKeyRequired", "value": "true"}],
    )
    apigw.update_rest_api(
        restApiId=api_id, patchOperations=[{"op": "replace", "path": "/apiKeySource", "value": "AUTHORIZER"}]
    )
    time.sleep(0.5)
    calls.passed(get())  # still the deployed method: no key needed
    apigw.create_deployment(restApiId=api_id, stageName="prod")
    # AUTHORIZER: only a Lambda authorizer's usageIdentifierKey counts; the header does not.
    calls.until(403, lambda: get(KEY))
    _forbidden(get(KEY))
    apigw.update_rest_api(
        restApiId=api_id, patchOperations=[{"op": "replace", "path": "/apiKeySource", "value": "HEADER"}]
    )
    apigw.create_deployment(restApiId=api_id, stageName="prod")
    calls.until(200, lambda: get(KEY))

    # Deleting the key applies at once.
    apigw.delete_api_key(apiKey=key["id"])
    _, waited = calls.until(403, lambda: get(KEY))
    assert waited < 1.0, waited
    calls.passed(get(path="/prod/open"))

    # No key value in any log line: the access log shows it masked, and its id.
    admin.server.stop()
    logged = access_log.read_text()
    assert f"key=****{KEY[-4:]} id={key['id']} status=200" in logged
    assert "status=403 type=INVALID_API_KEY" in logged
    for text in (logged, admin.server.log):
        for secret in (KEY, OTHER_KEY, KEY[:12]):
            assert secret not in text


def test_gateway_responses_customised_with_boto3(portico, tmp_path):
    admin = start_admin_server(portico, tmp_path, functions=FUNCTIONS)
    apigw = admin.client("apigateway")
    api_id, _ = _keyed_api(apigw, "custom")
    apigw.create_deployment(restApiId=api_id, stageName="prod", variables={"color": "blue"})
    host = {"host": admin.host(api_id)}

    def get(path: str, **headers: str) -> httpx.Response:
        return httpx.get(admin.url + path, headers={**host, **headers})

    wait_for(lambda: get("/prod/open").status_code == 200)
    default = get("/prod/items")
    assert (default.status_code, default.json()) == (403, {"message": "Forbidden"})

    apigw.put_gateway_response(
        restApiId=api_id,
        responseType="INVALID_API_KEY",
        statusCode="429",
        responseParameters={
            "gatewayresponse.header.x-custom": "'yes'",
            "gatewayresponse.header.x-trace": "method.request.header.x-trace",
            "gatewayresponse.header.x-color": "stageVariables.color",
            "gatewayresponse.header.x-request": "context.requestId",
        },
        responseTemplates={
            "application/json": '{"error":$context.error.messageString,"type":"$context.error.responseType",'
            '"id":"$context.requestId","color":"$stageVariables.color"}',
            "text/plain": "no key: $context.error.message",
        },
    )
    apigw.put_gateway_response(
        restApiId=api_id,
        responseType="MISSING_AUTHENTICATION_TOKEN",
        statusCode="404",
        responseTemplates={"application/json": '{"missing":"$context.path"}'},
    )
    apigw.put_gateway_response(
        restApiId=api_id,
        responseType="DEFAULT_4XX",
        responseParameters={"gatewayresponse.header.Access-Control-Allow-Origin": "'*'"},
    )
    apigw.put_gateway_response(
        restApiId=api_id,
        responseType="UNAUTHORIZED",
        statusCode="401",
        responseParameters={"gatewayresponse.header.WWW-Authenticate": "'Bearer'"},
        responseTemplates={"application/json": '{"who":"nobody"}'},
    )
    # Applied only once deployed, as AWS applies gateway responses.
    time.sleep(0.5)
    assert get("/prod/items").status_code == 403
    apigw.create_deployment(restApiId=api_id, stageName="prod")
    refused, waited = wait_for(
        lambda: (r := get("/prod/items", **{"x-trace": "t-1"})).status_code == 429 and r
    )
    assert waited < 1.0, waited
    assert refused.json() == {
        "error": "Forbidden",
        "type": "INVALID_API_KEY",
        "id": refused.headers["x-amzn-requestid"],
        "color": "blue",
    }
    assert refused.headers["x-custom"] == "yes"
    assert refused.headers["x-trace"] == "t-1"
    assert refused.headers["x-color"] == "blue"
    assert refused.headers["x-request"] == refused.headers["x-amzn-requestid"]
    assert refused.headers["x-amzn-errortype"] == "ForbiddenException"
    assert refused.headers["content-type"] == "application/json"
    # The type's own customisation wins over DEFAULT_4XX's.
    assert "access-control-allow-origin" not in refused.headers
    text = get("/prod/items", accept="text/plain")
    assert (text.status_code, text.text, text.headers["content-type"]) == (
        429,
        "no key: Forbidden",
        "text/plain",
    )

    # An unknown path: MISSING_AUTHENTICATION_TOKEN, customised.
    missing = get("/prod/nowhere")
    assert (missing.status_code, missing.json()) == (404, {"missing": "/prod/nowhere"})
    assert missing.headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"
    # A type without its own customisation takes DEFAULT_4XX's: throttled, everything else kept.
    apigw.update_stage(
        restApiId=api_id,
        stageName="prod",
        patchOperations=[
            {"op": "replace", "path": "/*/*/throttling/rateLimit", "value": "0"},
            {"op": "replace", "path": "/*/*/throttling/burstLimit", "value": "0"},
        ],
    )
    throttled, _ = wait_for(lambda: (r := get("/prod/open")).status_code == 429 and r)
    assert throttled.json() == {"message": "Too Many Requests"}
    assert throttled.headers["access-control-allow-origin"] == "*"
    assert throttled.headers["x-amzn-errortype"] == "TooManyRequestsException"
    listed = {r["responseType"]: r for r in apigw.get_gateway_responses(restApiId=api_id)["items"]}
    assert listed["UNAUTHORIZED"]["defaultResponse"] is False
    assert listed["ACCESS_DENIED"]["defaultResponse"] is True

    apigw.update_stage(
        restApiId=api_id,
        stageName="prod",
        patchOperations=[
            {"op": "replace", "path": "/*/*/throttling/rateLimit", "value": "1000"},
            {"op": "replace", "path": "/*/*/throttling/burstLimit", "value": "1000"},
        ],
    )
    # Deleted and redeployed: AWS's default again.
    apigw.delete_gateway_response(restApiId=api_id, responseType="INVALID_API_KEY")
    apigw.create_deployment(restApiId=api_id, stageName="prod")
    back, _ = wait_for(lambda: (r := get("/prod/items")).status_code == 403 and r)
    assert back.json() == {"message": "Forbidden"}
    assert back.headers["access-control-allow-origin"] == "*"  # DEFAULT_4XX still customised


def test_gateway_response_mappings_are_checked_as_aws_checks_them(portico, tmp_path):
    admin = start_admin_server(portico, tmp_path, functions=FUNCTIONS)
    apigw = admin.client("apigateway")
    api_id, _ = _keyed_api(apigw, "checked")
    for bad in (
        {"gatewayresponse.header.x": "method.request.body.x"},
        {"gatewayresponse.header.bad name": "'v'"},
        {"header.x": "'v'"},
    ):
        try:
            apigw.put_gateway_response(restApiId=api_id, responseType="DEFAULT_4XX", responseParameters=bad)
        except apigw.exceptions.BadRequestException as exc:
            assert "Invalid mapping expression specified" in str(exc)
        else:
            raise AssertionError(f"accepted {bad}")


def _policy(effect: str, condition: dict | None = None) -> str:
    statement: dict = {
        "Effect": effect,
        "Principal": "*",
        "Action": "execute-api:Invoke",
        "Resource": "execute-api:/*",
    }
    if condition:
        statement["Condition"] = condition
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def test_resource_policies_from_boto3(portico, tmp_path):
    admin = start_admin_server(portico, tmp_path, functions=FUNCTIONS)
    apigw = admin.client("apigateway")
    allow = json.loads(_policy("Allow"))
    deny_local = json.loads(_policy("Deny", {"IpAddress": {"aws:SourceIp": ["127.0.0.0/8"]}}))
    policy = json.dumps({"Version": "2012-10-17", "Statement": allow["Statement"] + deny_local["Statement"]})
    api_id, _ = _keyed_api(apigw, "guarded", policy=policy)
    apigw.create_deployment(restApiId=api_id, stageName="prod")
    host = {"host": admin.host(api_id)}
    calls = Calls()
    arn = f"arn:aws:execute-api:us-east-1:123456789012:{api_id}/prod/GET/open"

    denied, _ = wait_for(
        lambda: (r := httpx.get(admin.url + "/prod/open", headers=host)).status_code == 403 and r
    )
    assert denied.json() == {
        "Message": f"User: anonymous is not authorized to perform: execute-api:Invoke on resource: {arn} "
        "with an explicit deny"
    }
    assert denied.headers["x-amzn-errortype"] == "AccessDeniedException"

    # A new policy applies once deployed.
    apigw.update_rest_api(
        restApiId=api_id, patchOperations=[{"op": "replace", "path": "/policy", "value": _policy("Allow")}]
    )
    time.sleep(0.5)
    assert httpx.get(admin.url + "/prod/open", headers=host).status_code == 403
    apigw.create_deployment(restApiId=api_id, stageName="prod")
    served, _ = wait_for(
        lambda: (r := httpx.get(admin.url + "/prod/open", headers=host)).status_code == 200 and r
    )
    calls.passed(served)  # the first call: none of the refused requests reached the handler
    # A policy that allows only another network refuses this one (no explicit deny).
    elsewhere = _policy("Allow", {"IpAddress": {"aws:SourceIp": "198.51.100.0/24"}})
    apigw.update_rest_api(
        restApiId=api_id, patchOperations=[{"op": "replace", "path": "/policy", "value": elsewhere}]
    )
    apigw.create_deployment(restApiId=api_id, stageName="prod")
    refused, _ = wait_for(
        lambda: (r := httpx.get(admin.url + "/prod/open", headers=host)).status_code == 403 and r
    )
    assert refused.json() == {
        "Message": f"User: anonymous is not authorized to perform: execute-api:Invoke on resource: {arn}"
    }
    # Customised ACCESS_DENIED applies to the policy's refusal.
    apigw.put_gateway_response(
        restApiId=api_id,
        responseType="ACCESS_DENIED",
        statusCode="451",
        responseTemplates={"application/json": '{"denied":$context.error.messageString}'},
    )
    apigw.create_deployment(restApiId=api_id, stageName="prod")
    custom, _ = wait_for(
        lambda: (r := httpx.get(admin.url + "/prod/open", headers=host)).status_code == 451 and r
    )
    assert custom.json() == {
        "denied": f"User: anonymous is not authorized to perform: execute-api:Invoke on resource: {arn}"
    }
    assert custom.headers["x-amzn-errortype"] == "AccessDeniedException"


OPENAPI = {
    "openapi": "3.0.1",
    "info": {"title": "imported-keys", "version": "1"},
    "x-amazon-apigateway-api-key-source": "HEADER",
    "x-amazon-apigateway-gateway-responses": {
        "INVALID_API_KEY": {
            "statusCode": 401,
            "responseParameters": {"gatewayresponse.header.x-why": "'no key'"},
            "responseTemplates": {"application/json": '{"why":$context.error.messageString}'},
        }
    },
    "components": {"securitySchemes": {"api_key": {"type": "apiKey", "name": "x-api-key", "in": "header"}}},
    "paths": {
        "/items": {
            "get": {
                "security": [{"api_key": []}],
                "responses": {"200": {"description": "ok"}},
                "x-amazon-apigateway-integration": {
                    "type": "aws_proxy",
                    "httpMethod": "POST",
                    "uri": "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/"
                    "arn:aws:lambda:us-east-1:123456789012:function:counted/invocations",
                },
            }
        }
    },
}


def test_api_keys_from_an_openapi_import(portico, tmp_path):
    admin = start_admin_server(portico, tmp_path, functions=FUNCTIONS)
    apigw = admin.client("apigateway")
    api_id = apigw.import_rest_api(body=json.dumps(OPENAPI).encode())["id"]
    apigw.create_deployment(restApiId=api_id, stageName="prod")
    key = apigw.create_api_key(name="imported", value=KEY, enabled=True)
    plan = apigw.create_usage_plan(name="imported", apiStages=[{"apiId": api_id, "stage": "prod"}])
    apigw.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
    host = {"host": admin.host(api_id)}
    calls = Calls()
    calls.until(200, lambda: httpx.get(admin.url + "/prod/items", headers={**host, "x-api-key": KEY}))
    refused = httpx.get(admin.url + "/prod/items", headers=host)
    assert (refused.status_code, refused.json()) == (401, {"why": "Forbidden"})
    assert refused.headers["x-why"] == "no key"
    assert refused.headers["x-amzn-errortype"] == "ForbiddenException"
    calls.passed(httpx.get(admin.url + "/prod/items", headers={**host, "X-Api-Key": KEY}))

    exported = json.loads(
        apigw.get_export(
            restApiId=api_id, stageName="prod", exportType="oas30", parameters={"extensions": "apigateway"}
        )["body"].read()
    )
    assert exported["x-amazon-apigateway-api-key-source"] == "HEADER"
    assert exported["paths"]["/items"]["get"]["security"] == [{"api_key": []}]
    assert exported["components"]["securitySchemes"]["api_key"] == {
        "type": "apiKey",
        "name": "x-api-key",
        "in": "header",
    }
    assert exported["x-amazon-apigateway-gateway-responses"]["INVALID_API_KEY"]["statusCode"] == "401"
