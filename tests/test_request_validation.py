"""REST APIs' request validation built with boto3 through a real `portico serve --admin-port` and
called over HTTP: models (with `$ref` between them), request validators with one flag or both,
methods' `requestParameters` / `requestModels`, AWS's 400 answers, a customised BAD_REQUEST_BODY
gateway response showing `$context.error.validationErrorString`, and the access log. Every refused
request is checked not to reach the integration: the handler counts its calls."""

from __future__ import annotations

import json

import httpx
import pytest
from botocore.exceptions import ClientError

from admin_e2e import point_at, start_admin_server, wait_for

FUNCTIONS = {"counted": "handlers.counting:counted"}

PET = {
    "$schema": "http://json-schema.org/draft-04/schema#",
    "title": "Pet",
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "type": {"type": "string", "enum": ["dog", "cat", "fish"]},
        "price": {"type": "number", "minimum": 25, "maximum": 500},
    },
    "required": ["type", "name", "price"],
}
LOG_FORMAT = (
    "$context.requestId type=$context.error.responseType validation=$context.error.validationErrorString"
)


class Calls:
    """The counted handler's calls, read from the answers that pass."""

    def __init__(self) -> None:
        self.seen = 0

    def passed(self, response: httpx.Response) -> dict:
        assert response.status_code == 200, (response.status_code, response.text)
        body = response.json()
        # Exactly one call since the last answer that passed: no refused request reached it.
        assert body["calls"] == self.seen + 1, (body["calls"], self.seen)
        self.seen = body["calls"]
        return body["event"]


def _refused(response: httpx.Response, message: str) -> None:
    assert response.status_code == 400, (response.status_code, response.text)
    assert response.json() == {"message": message}
    assert response.headers["x-amzn-errortype"] == "BadRequestException"
    assert response.headers["content-type"] == "application/json"


def _method(apigw, api_id: str, resource: str, verb: str, **method) -> None:
    apigw.put_method(
        restApiId=api_id, resourceId=resource, httpMethod=verb, authorizationType="NONE", **method
    )
    point_at(apigw, api_id, resource, "counted", method=verb)


@pytest.fixture
def validated(portico, tmp_path):
    """A REST API with `/pets/{petId}` (POST: body and parameters validated; GET: parameters
    only; PUT: the body only; PATCH: the Order model, which `$ref`s Pet) and `/open` (POST, not
    validated), all AWS_PROXY -> counted, deployed to `prod` with an access log."""
    admin = start_admin_server(portico, tmp_path, functions=FUNCTIONS)
    apigw = admin.client("apigateway")
    api = apigw.create_rest_api(name="validated")
    api_id, root = api["id"], api["rootResourceId"]
    models = {m["name"]: m for m in apigw.get_models(restApiId=api_id)["items"]}
    assert set(models) == {"Empty", "Error"}
    assert json.loads(models["Empty"]["schema"])["type"] == "object"
    apigw.create_model(restApiId=api_id, name="Pet", contentType="application/json", schema=json.dumps(PET))
    order = {
        "type": "object",
        "properties": {
            "pet": {"$ref": f"https://apigateway.amazonaws.com/restapis/{api_id}/models/Pet"},
            "quantity": {"type": "integer", "minimum": 1},
        },
        "required": ["pet", "quantity"],
    }
    apigw.create_model(
        restApiId=api_id, name="Order", contentType="application/json", schema=json.dumps(order)
    )
    both = apigw.create_request_validator(
        restApiId=api_id, name="both", validateRequestBody=True, validateRequestParameters=True
    )["id"]
    params_only = apigw.create_request_validator(
        restApiId=api_id, name="params", validateRequestBody=False, validateRequestParameters=True
    )["id"]
    body_only = apigw.create_request_validator(restApiId=api_id, name="body", validateRequestBody=True)["id"]

    pets = apigw.create_resource(restApiId=api_id, parentId=root, pathPart="pets")["id"]
    pet = apigw.create_resource(restApiId=api_id, parentId=pets, pathPart="{petId}")["id"]
    required = {
        "method.request.path.petId": True,
        "method.request.querystring.qs1": True,
        "method.request.header.x-header-param": True,
        "method.request.querystring.optional": False,
    }
    _method(
        apigw,
        api_id,
        pet,
        "POST",
        requestValidatorId=both,
        requestParameters=required,
        requestModels={"application/json": "Pet"},
    )
    _method(
        apigw,
        api_id,
        pet,
        "GET",
        requestValidatorId=params_only,
        requestParameters=required,
        requestModels={"application/json": "Pet"},
    )
    _method(
        apigw,
        api_id,
        pet,
        "PUT",
        requestValidatorId=body_only,
        requestParameters=required,
        requestModels={"application/json": "Pet", "$default": "Error"},
    )
    _method(
        apigw, api_id, pet, "PATCH", requestValidatorId=body_only, requestModels={"application/json": "Order"}
    )
    opened = apigw.create_resource(restApiId=api_id, parentId=root, pathPart="open")["id"]
    _method(apigw, api_id, opened, "POST", requestModels={"application/json": "Pet"})
    apigw.create_deployment(restApiId=api_id, stageName="prod")
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
    wait_for(lambda: httpx.post(admin.url + "/prod/open", headers=host, json={}).status_code == 200)
    calls.seen = httpx.post(admin.url + "/prod/open", headers=host, json={}).json()["calls"]
    return admin, apigw, api_id, host, calls, access_log


def test_required_parameters_are_listed_in_aws_order_and_never_reach_the_integration(validated):
    admin, _, _, host, calls, access_log = validated
    url = admin.url + "/prod/pets/7"
    good = {"name": "Molly", "type": "dog", "price": 260}

    _refused(
        httpx.post(url, headers=host, json=good), "Missing required request parameters: [x-header-param, qs1]"
    )
    _refused(
        httpx.post(url, headers={**host, "X-Header-Param": "v"}, json=good),
        "Missing required request parameters: [qs1]",
    )
    # Blank values are missing; the last value of a query-string parameter is its value.
    for query in ("qs1=", "qs1=%20", "qs1=a&qs1="):
        _refused(
            httpx.post(f"{url}?{query}", headers={**host, "x-header-param": "v"}, json=good),
            "Missing required request parameters: [qs1]",
        )
    _refused(
        httpx.post(url + "?qs1=a", headers={**host, "x-header-param": ""}, json=good),
        "Missing required request parameters: [x-header-param]",
    )
    event = calls.passed(httpx.post(url + "?qs1=a", headers={**host, "x-header-param": "v"}, json=good))
    assert event["pathParameters"] == {"petId": "7"}
    assert json.loads(event["body"]) == good

    # Parameters are checked before the body: both wrong, the parameters are named.
    _refused(
        httpx.post(url, headers=host, json={"type": "bird"}),
        "Missing required request parameters: [x-header-param, qs1]",
    )

    # GET validates only parameters: any body passes.
    _refused(httpx.get(url, headers=host), "Missing required request parameters: [x-header-param, qs1]")
    calls.passed(
        httpx.request("GET", url + "?qs1=a", headers={**host, "x-header-param": "v"}, content=b"not json")
    )

    # PUT validates only the body: missing parameters pass.
    calls.passed(httpx.put(url, headers=host, json=good))
    _refused(httpx.put(url, headers=host, json={"type": "bird"}), "Invalid request body")

    # Each worker writes its own lines, off the request path: wait for the one sought.
    missing = (
        "type=BAD_REQUEST_PARAMETERS validation=Missing required request parameters: [x-header-param, qs1]"
    )
    wait_for(lambda: missing in access_log.read_text() if access_log.exists() else False)


def test_bodies_are_checked_against_the_model_of_their_content_type(validated):
    admin, _, _, host, calls, access_log = validated
    url = admin.url + "/prod/pets/7?qs1=a"
    headers = {**host, "x-header-param": "v"}

    def post(body: bytes, content_type: str | None = "application/json") -> httpx.Response:
        sent = dict(headers)
        if content_type is not None:
            sent["content-type"] = content_type
        return httpx.post(url, headers=sent, content=body)

    for bad in (
        {"name": "Molly", "type": "bird", "price": 269},  # not in the enum
        {"name": "Molly", "type": "dog", "price": 501},  # over the maximum
        {"name": "Molly", "type": "dog"},  # a required property missing
        {"name": 7, "type": "dog", "price": 30},  # the wrong type
        ["an", "array"],
    ):
        _refused(post(json.dumps(bad).encode()), "Invalid request body")
    # Not JSON, and an empty body (validated as {}: its required properties are missing).
    _refused(post(b"{not json"), "Invalid request body")
    _refused(post(b""), "Invalid request body")
    # No Content-Type is application/json; parameters of the media type are ignored.
    _refused(post(b'{"type": "bird"}', content_type=None), "Invalid request body")
    _refused(
        post(b'{"type": "bird"}', content_type="Application/JSON; charset=utf-8"), "Invalid request body"
    )
    good = b'{"name": "Molly", "type": "fish", "price": 25}'
    calls.passed(post(good))
    calls.passed(post(good, content_type="application/json; charset=utf-8"))
    # A media type without a model (and no $default) is not validated.
    calls.passed(post(b"<pet>anything</pet>", content_type="application/xml"))

    # PUT has `$default`: Error for any other media type ({"message": string}).
    put = admin.url + "/prod/pets/7"
    calls.passed(httpx.put(put, headers={**host, "content-type": "text/plain"}, content=b'{"message": "x"}'))
    _refused(
        httpx.put(put, headers={**host, "content-type": "text/plain"}, content=b'{"message": 1}'),
        "Invalid request body",
    )
    _refused(
        httpx.put(put, headers={**host, "content-type": "text/plain"}, content=b"plain text"),
        "Invalid request body",
    )

    # A method without a validator is not validated, whatever its models.
    calls.passed(httpx.post(admin.url + "/prod/open", headers=host, content=b"{not json"))

    # Each worker writes its own lines, off the request path: wait for this one's, not the first.
    bird = (
        r"type=BAD_REQUEST_BODY validation=[instance value (\"bird\") not found in enum "
        r"(possible values: [\"dog\",\"cat\",\"fish\"])]"
    )
    wait_for(lambda: bird in access_log.read_text() if access_log.exists() else False)


def test_models_reference_each_other(validated):
    admin, _, _, host, calls, _ = validated
    url = admin.url + "/prod/pets/7"
    pet = {"name": "Rex", "type": "dog", "price": 30}
    calls.passed(httpx.patch(url, headers=host, json={"pet": pet, "quantity": 2}))
    _refused(
        httpx.patch(url, headers=host, json={"pet": {**pet, "type": "cow"}, "quantity": 2}),
        "Invalid request body",
    )
    _refused(httpx.patch(url, headers=host, json={"pet": pet, "quantity": 0}), "Invalid request body")
    _refused(httpx.patch(url, headers=host, json={"quantity": 2}), "Invalid request body")


def test_a_customised_bad_request_body_shows_the_validation_error_string(validated):
    admin, apigw, api_id, host, calls, _ = validated
    apigw.put_gateway_response(
        restApiId=api_id,
        responseType="BAD_REQUEST_BODY",
        statusCode="422",
        responseParameters={"gatewayresponse.header.x-problem": "'body'"},
        responseTemplates={
            "application/json": '{"message": $context.error.messageString, '
            '"details": "$context.error.validationErrorString", "type": "$context.error.responseType"}'
        },
    )
    apigw.put_gateway_response(
        restApiId=api_id,
        responseType="DEFAULT_4XX",
        responseTemplates={"application/json": '{"error": "$context.error.validationErrorString"}'},
    )
    url = admin.url + "/prod/pets/7?qs1=a"
    headers = {**host, "x-header-param": "v"}
    # Customisations apply once deployed.
    _refused(httpx.post(url, headers=headers, json={"type": "bird"}), "Invalid request body")
    apigw.create_deployment(restApiId=api_id, stageName="prod")

    def customised():
        response = httpx.post(url, headers=headers, json={"name": "Molly", "type": "bird", "price": 269})
        return response.status_code == 422 and response

    response, _ = wait_for(customised)
    assert response.headers["x-problem"] == "body"
    assert response.headers["x-amzn-errortype"] == "BadRequestException"
    assert response.json() == {
        "message": "Invalid request body",
        "details": '[instance value ("bird") not found in enum (possible values: ["dog","cat","fish"])]',
        "type": "BAD_REQUEST_BODY",
    }
    # Two violations at once, and a body that is not JSON: still a JSON document.
    two = httpx.post(url, headers=headers, json={"name": 7, "type": "dog", "price": 1}).json()
    assert two["details"] == (
        '[instance type (integer) does not match any allowed primitive type (allowed: ["string"]), '
        "numeric instance is lower than the required minimum (minimum: 25, found: 1)]"
    ), two
    not_json = httpx.post(url, headers={**headers, "content-type": "application/json"}, content=b'{"a": "')
    assert not_json.status_code == 422 and not_json.json()["details"].startswith("[Invalid JSON")
    missing = httpx.post(url, headers=headers, json={"type": "dog"}).json()
    assert missing["details"] == '[object has missing required properties (["name","price"])]'

    # BAD_REQUEST_PARAMETERS falls back on DEFAULT_4XX, with its own validation string.
    parameters = httpx.post(admin.url + "/prod/pets/7", headers=host, json={})
    assert parameters.status_code == 400
    assert parameters.json() == {"error": "Missing required request parameters: [x-header-param, qs1]"}
    calls.passed(httpx.post(url, headers=headers, json={"name": "Al", "type": "cat", "price": 30}))


def test_validation_follows_redeployment_of_methods_and_validators(validated):
    """AWS's own test sequence: a required path parameter the resource does not have is always
    missing; a validator removed from a method stops validating once deployed."""
    admin, apigw, api_id, host, calls, _ = validated
    resources = {r["path"]: r["id"] for r in apigw.get_resources(restApiId=api_id)["items"]}
    pet = resources["/pets/{petId}"]
    apigw.update_method(
        restApiId=api_id,
        resourceId=pet,
        httpMethod="POST",
        patchOperations=[
            {"op": "add", "path": "/requestParameters/method.request.path.issuer", "value": "true"},
            {"op": "remove", "path": "/requestParameters/method.request.path.petId"},
        ],
    )
    apigw.create_deployment(restApiId=api_id, stageName="prod")
    url = admin.url + "/prod/pets/7"

    def issuer_missing():
        response = httpx.post(url, headers=host, json={})
        return response.status_code == 400 and "issuer" in response.text and response

    response, _ = wait_for(issuer_missing)
    _refused(response, "Missing required request parameters: [x-header-param, issuer, qs1]")

    apigw.update_method(
        restApiId=api_id,
        resourceId=pet,
        httpMethod="POST",
        patchOperations=[{"op": "replace", "path": "/requestValidatorId", "value": ""}],
    )
    apigw.create_deployment(restApiId=api_id, stageName="prod")

    def unvalidated():
        response = httpx.post(url, headers=host, content=b"{not json")
        return response.status_code == 200 and response

    response, _ = wait_for(unvalidated)
    calls.passed(response)


def test_models_are_checked_as_aws_checks_them(validated):
    _, apigw, api_id, _, _, _ = validated
    with pytest.raises(ClientError) as refused:
        apigw.create_model(
            restApiId=api_id, name="Bare", contentType="application/json", schema='{"type": "object"}'
        )
    assert (
        refused.value.response["Error"]["Message"]
        == "Model schema must have at least 1 property or array items defined"
    )
    with pytest.raises(ClientError) as refused:
        apigw.delete_model(restApiId=api_id, modelName="Pet")
    assert "is referenced in method" in refused.value.response["Error"]["Message"]
    got = apigw.get_model(restApiId=api_id, modelName="Pet")
    assert isinstance(got["schema"], str) and json.loads(got["schema"]) == PET


def test_an_imported_openapi_document_validates_as_declared(portico, tmp_path):
    """`x-amazon-apigateway-request-validators`, the operation's `x-amazon-apigateway-request-
    validator`, required parameters and `components.schemas` referencing each other, imported
    with boto3, deployed and called."""
    admin = start_admin_server(portico, tmp_path, functions=FUNCTIONS)
    apigw = admin.client("apigateway")
    integration = {
        "type": "aws_proxy",
        "httpMethod": "POST",
        "uri": "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/"
        "arn:aws:lambda:us-east-1:123456789012:function:counted/invocations",
    }
    document = {
        "openapi": "3.0.1",
        "info": {"title": "imported", "version": "1"},
        "x-amazon-apigateway-request-validators": {
            "all": {"validateRequestBody": True, "validateRequestParameters": True},
            "params": {"validateRequestBody": False, "validateRequestParameters": True},
        },
        "x-amazon-apigateway-request-validator": "all",
        "components": {
            "schemas": {
                "Pet": PET,
                "Order": {
                    "type": "object",
                    "properties": {"pet": {"$ref": "#/components/schemas/Pet"}},
                    "required": ["pet"],
                },
            }
        },
        "paths": {
            "/orders": {
                "post": {
                    "parameters": [{"name": "x-tenant", "in": "header", "required": True}],
                    "requestBody": {
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Order"}}}
                    },
                    "x-amazon-apigateway-integration": integration,
                },
                "get": {
                    "parameters": [{"name": "page", "in": "query", "required": True}],
                    "x-amazon-apigateway-request-validator": "params",
                    "x-amazon-apigateway-integration": integration,
                },
            }
        },
    }
    api_id = apigw.import_rest_api(body=json.dumps(document).encode())["id"]
    apigw.create_deployment(restApiId=api_id, stageName="v1")
    host = {"host": admin.host(api_id)}
    url = admin.url + "/v1/orders"
    order = {"pet": {"name": "Rex", "type": "dog", "price": 30}}
    response, _ = wait_for(
        lambda: (r := httpx.post(url, headers={**host, "x-tenant": "a"}, json=order)).is_success and r
    )
    first = response.json()["calls"]
    _refused(httpx.post(url, headers=host, json=order), "Missing required request parameters: [x-tenant]")
    _refused(
        httpx.post(url, headers={**host, "x-tenant": "a"}, json={"pet": {**order["pet"], "price": 1}}),
        "Invalid request body",
    )
    _refused(httpx.get(url, headers=host), "Missing required request parameters: [page]")
    again = httpx.get(url + "?page=2", headers=host)
    assert again.status_code == 200 and again.json()["calls"] == first + 1
