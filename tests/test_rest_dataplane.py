"""REST APIs (apigateway v1) created through the admin API, served by the data plane."""

from __future__ import annotations

import httpx

from admin_e2e import invocation_uri, rest_echo_api, start_admin_server, wait_for
from portico.compile.method_settings import throttles


def test_rest_api_resource_by_resource(portico, tmp_path):
    admin = start_admin_server(portico, tmp_path)
    apigw = admin.client("apigateway")
    api_id = rest_echo_api(apigw, "shop", binaryMediaTypes=["image/png"])
    apigw.create_deployment(restApiId=api_id, stageName="prod", variables={"color": "blue"})

    path_style = f"{admin.url}/restapis/{api_id}/prod/_user_request_/anything"
    response, waited = wait_for(
        lambda: (r := httpx.get(path_style + "?q=1")).status_code == 200 and r, timeout=3
    )
    assert waited < 1.0
    event = response.json()
    assert "version" not in event  # REST: payload 1.0
    assert event["resource"] == "/{proxy+}"
    assert event["path"] == "/anything"
    assert event["httpMethod"] == "GET"
    assert event["pathParameters"] == {"proxy": "anything"}
    assert event["queryStringParameters"] == {"q": "1"}
    assert event["stageVariables"] == {"color": "blue"}
    assert event["requestContext"]["stage"] == "prod"
    assert event["requestContext"]["apiId"] == api_id
    assert event["requestContext"]["resourcePath"] == "/{proxy+}"

    host = {"host": admin.host(api_id)}
    response = httpx.post(admin.url + "/prod/anything/deeper", headers=host, content=b"{}")
    assert response.status_code == 200
    event = response.json()
    assert (event["httpMethod"], event["path"]) == ("POST", "/anything/deeper")
    assert event["pathParameters"] == {"proxy": "anything/deeper"}

    mock = httpx.get(admin.url + "/prod/health", headers=host)
    assert (mock.status_code, mock.text) == (200, '{"status": "ok"}')
    # `/health` has GET only; other verbs fall back to the greedy resource.
    assert httpx.delete(admin.url + "/prod/health", headers=host).json()["resource"] == "/{proxy+}"

    # No method on `/` (the greedy resource never matches its parent), unknown stage: 403.
    for response in (
        httpx.get(admin.url + "/prod/", headers=host),
        httpx.get(admin.url + "/prod", headers=host),
        httpx.get(admin.url + "/staging/anything", headers=host),
        httpx.get(f"{admin.url}/restapis/{api_id}/nope/_user_request_/anything"),
    ):
        assert response.status_code == 403, response.request.url
        assert response.json() == {"message": "Missing Authentication Token"}
        assert response.headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"

    # Resources changed after the deployment are not served until deployed again.
    root_id = apigw.get_rest_api(restApiId=api_id)["rootResourceId"]
    items = apigw.create_resource(restApiId=api_id, parentId=root_id, pathPart="items")
    apigw.put_method(restApiId=api_id, resourceId=items["id"], httpMethod="GET", authorizationType="NONE")
    apigw.put_integration(
        restApiId=api_id,
        resourceId=items["id"],
        httpMethod="GET",
        type="MOCK",
        requestTemplates={"application/json": '{"statusCode": 200}'},
    )
    # AWS answers an integration response's status only when the method declares it.
    apigw.put_method_response(restApiId=api_id, resourceId=items["id"], httpMethod="GET", statusCode="201")
    apigw.put_integration_response(
        restApiId=api_id,
        resourceId=items["id"],
        httpMethod="GET",
        statusCode="201",
        selectionPattern="",
        responseTemplates={"application/json": "[]"},
    )
    assert httpx.get(admin.url + "/prod/items", headers=host).json()["resource"] == "/{proxy+}"
    apigw.create_deployment(restApiId=api_id, stageName="prod")
    response, _ = wait_for(
        lambda: (r := httpx.get(admin.url + "/prod/items", headers=host)).status_code == 201 and r
    )
    assert response.text == "[]"

    # Deleting the API takes it off the data plane: its id names no API any more (404).
    apigw.delete_rest_api(restApiId=api_id)
    wait_for(lambda: httpx.get(path_style).status_code == 404, timeout=3)


def test_rest_method_settings_throttle(portico, tmp_path):
    admin = start_admin_server(portico, tmp_path)
    apigw = admin.client("apigateway")
    api = apigw.create_rest_api(name="limited")
    api_id, root_id = api["id"], api["rootResourceId"]
    for part in ("slow", "fast"):
        resource = apigw.create_resource(restApiId=api_id, parentId=root_id, pathPart=part)
        apigw.put_method(
            restApiId=api_id, resourceId=resource["id"], httpMethod="GET", authorizationType="NONE"
        )
        apigw.put_integration(
            restApiId=api_id, resourceId=resource["id"], httpMethod="GET", type="AWS_PROXY",
            integrationHttpMethod="POST", uri=invocation_uri("v1"),
        )  # fmt: skip
    apigw.create_deployment(restApiId=api_id, stageName="prod")
    apigw.update_stage(
        restApiId=api_id,
        stageName="prod",
        patchOperations=[
            {"op": "replace", "path": "/~1slow/GET/throttling/rateLimit", "value": "0.01"},
            {"op": "replace", "path": "/~1slow/GET/throttling/burstLimit", "value": "2"},
        ],
    )
    url = f"{admin.url}/restapis/{api_id}/prod/_user_request_"

    def throttled():
        return httpx.get(url + "/slow").status_code == 429

    wait_for(throttled, timeout=3)
    assert httpx.get(url + "/slow").json() == {"message": "Too Many Requests"}
    assert all(httpx.get(url + "/fast").status_code == 200 for _ in range(5))


def test_method_settings_keys():
    keys = ["GET /", "GET /pets/{id}", "POST /pets"]
    default, per_route = throttles(
        {
            "*/*": {"throttlingRateLimit": 10.0, "throttlingBurstLimit": 5},
            "pets/{id}/GET": {"throttlingRateLimit": 1.0, "throttlingBurstLimit": 1},
            "~1pets/POST": {"throttlingRateLimit": 2.0, "throttlingBurstLimit": -1},
            "/GET": {"throttlingRateLimit": 3.0, "throttlingBurstLimit": 3},
            "gone/GET": {"throttlingRateLimit": 3.0, "throttlingBurstLimit": 3},
            "pets/PUT": {"metricsEnabled": True},
        },
        keys,
    )
    assert default == {"rate": 10.0, "burst": 5}
    assert per_route == {
        "GET /pets/{id}": {"rate": 1.0, "burst": 1},
        "POST /pets": {"rate": 2.0, "burst": 5000},
        "GET /": {"rate": 3.0, "burst": 3},
    }
