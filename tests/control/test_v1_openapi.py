"""apigateway (v1) OpenAPI import / put / export round trips through boto3."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import yaml
from control_support import ThreadAdmin

LAMBDA_URI = (
    "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/"
    "arn:aws:lambda:us-east-1:123456789012:function:my-function/invocations"
)

SWAGGER = {
    "swagger": "2.0",
    "info": {"title": "petstore", "version": "1.0"},
    "x-amazon-apigateway-binary-media-types": ["image/png"],
    "x-amazon-apigateway-request-validators": {
        "all": {"validateRequestBody": True, "validateRequestParameters": True}
    },
    "x-amazon-apigateway-gateway-responses": {
        "DEFAULT_4XX": {"statusCode": "400", "responseParameters": {"gatewayresponse.header.X-Err": "'yes'"}}
    },
    "securityDefinitions": {"api_key": {"type": "apiKey", "name": "x-api-key", "in": "header"}},
    "definitions": {"Pet": {"type": "object", "properties": {"name": {"type": "string"}}}},
    "paths": {
        "/pets": {
            "get": {
                "operationId": "listPets",
                "parameters": [{"name": "type", "in": "query", "required": False, "type": "string"}],
                "responses": {"200": {"description": "ok", "headers": {"X-Count": {"type": "string"}}}},
                "security": [{"api_key": []}],
                "x-amazon-apigateway-request-validator": "all",
                "x-amazon-apigateway-integration": {
                    "type": "http",
                    "httpMethod": "GET",
                    "uri": "http://pets.example.com/pets",
                    "passthroughBehavior": "when_no_match",
                    "requestParameters": {
                        "integration.request.querystring.type": "method.request.querystring.type"
                    },
                    "responses": {"default": {"statusCode": "200"}},
                },
            },
            "post": {
                "parameters": [
                    {"in": "body", "name": "Pet", "required": True, "schema": {"$ref": "#/definitions/Pet"}}
                ],
                "responses": {"201": {"description": "created"}},
                "x-amazon-apigateway-integration": {
                    "type": "mock",
                    "requestTemplates": {"application/json": "{}"},
                },
            },
        },
        "/pets/{id}": {
            "get": {
                "parameters": [{"name": "id", "in": "path", "required": True, "type": "string"}],
                "responses": {"200": {"description": "ok"}},
                "x-amazon-apigateway-integration": {
                    "type": "http_proxy",
                    "httpMethod": "GET",
                    "uri": "http://pets.example.com/pets/{id}",
                    "requestParameters": {"integration.request.path.id": "method.request.path.id"},
                },
            }
        },
        "/{proxy+}": {
            "x-amazon-apigateway-any-method": {
                "responses": {},
                "x-amazon-apigateway-integration": {
                    "type": "aws_proxy",
                    "httpMethod": "POST",
                    "uri": LAMBDA_URI,
                },
            }
        },
    },
}


@pytest.fixture(scope="module")
def v1(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    server = ThreadAdmin(tmp_path_factory.mktemp("openapi") / "data")
    yield server.client("apigateway")
    server.stop()


def _tree(v1, api_id: str) -> dict:
    """{path: {METHOD: (method essentials, integration essentials)}}."""
    out = {}
    for resource in v1.get_resources(restApiId=api_id, embed=["methods"], limit=500)["items"]:
        methods = {}
        for verb, method in (resource.get("resourceMethods") or {}).items():
            integration = method.get("methodIntegration") or {}
            methods[verb] = (
                method["authorizationType"],
                method.get("apiKeyRequired"),
                method.get("requestParameters"),
                integration.get("type"),
                integration.get("httpMethod"),
                integration.get("uri"),
                integration.get("requestParameters"),
                sorted((integration.get("integrationResponses") or {}).keys()),
            )
        out[resource["path"]] = methods
    return out


def test_import_builds_the_api(v1) -> None:
    api = v1.import_rest_api(body=json.dumps(SWAGGER).encode())
    assert api["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert api["name"] == "petstore" and api["binaryMediaTypes"] == ["image/png"]
    tree = _tree(v1, api["id"])
    assert set(tree) == {"/", "/pets", "/pets/{id}", "/{proxy+}"}
    assert tree["/pets"]["GET"][:4] == ("NONE", True, {"method.request.querystring.type": False}, "HTTP")
    assert tree["/{proxy+}"]["ANY"][3:6] == ("AWS_PROXY", "POST", LAMBDA_URI)
    assert tree["/pets"]["POST"][3] == "MOCK"
    method = v1.get_method(
        restApiId=api["id"], resourceId=_resource_id(v1, api["id"], "/pets"), httpMethod="GET"
    )
    assert method["operationName"] == "listPets"
    assert method["methodResponses"]["200"]["responseParameters"] == {"method.response.header.X-Count": False}
    validators = v1.get_request_validators(restApiId=api["id"])["items"]
    assert method["requestValidatorId"] == validators[0]["id"] and validators[0]["name"] == "all"
    assert v1.get_gateway_response(restApiId=api["id"], responseType="DEFAULT_4XX")["statusCode"] == "400"
    assert "Pet" in {m["name"] for m in v1.get_models(restApiId=api["id"])["items"]}


def _resource_id(v1, api_id: str, path: str) -> str:
    return next(r["id"] for r in v1.get_resources(restApiId=api_id, limit=500)["items"] if r["path"] == path)


@pytest.mark.parametrize("export_type", ["swagger", "oas30"])
@pytest.mark.parametrize("accept", ["application/json", "application/yaml"])
def test_export_round_trip(v1, export_type: str, accept: str) -> None:
    api = v1.import_rest_api(body=yaml.safe_dump(SWAGGER).encode())
    v1.create_deployment(restApiId=api["id"], stageName="prod")
    exported = v1.get_export(
        restApiId=api["id"],
        stageName="prod",
        exportType=export_type,
        accepts=accept,
        parameters={"extensions": "apigateway"},
    )
    assert exported["contentType"] == accept
    body = exported["body"].read()
    doc = json.loads(body) if accept == "application/json" else yaml.safe_load(body)
    assert ("openapi" in doc) == (export_type == "oas30")
    assert (
        doc["paths"]["/{proxy+}"]["x-amazon-apigateway-any-method"]["x-amazon-apigateway-integration"]["type"]
        == "aws_proxy"
    )
    again = v1.import_rest_api(body=body)
    assert _tree(v1, again["id"]) == _tree(v1, api["id"])

    plain = v1.get_export(restApiId=api["id"], stageName="prod", exportType=export_type)
    assert X not in plain["body"].read().decode()


X = "x-amazon-apigateway-integration"


def test_put_rest_api_merge_and_overwrite(v1) -> None:
    api = v1.import_rest_api(body=json.dumps(SWAGGER).encode())
    extra = {
        "openapi": "3.0.1",
        "info": {"title": "petstore2", "version": "2"},
        "paths": {
            "/orders": {
                "get": {
                    "responses": {"200": {"description": "ok"}},
                    "x-amazon-apigateway-integration": {"type": "mock"},
                }
            }
        },
    }
    merged = v1.put_rest_api(restApiId=api["id"], mode="merge", body=json.dumps(extra).encode())
    assert merged["name"] == "petstore2"
    assert set(_tree(v1, api["id"])) == {"/", "/pets", "/pets/{id}", "/{proxy+}", "/orders"}
    v1.put_rest_api(restApiId=api["id"], mode="overwrite", body=yaml.safe_dump(extra).encode())
    assert set(_tree(v1, api["id"])) == {"/", "/orders"}


def test_invalid_input(v1) -> None:
    for body in (b"not: [valid", b"{}", b'{"swagger": "2.0", "paths": {}}', b"[1, 2]"):
        with pytest.raises(v1.exceptions.BadRequestException) as raised:
            v1.import_rest_api(body=body)
        assert raised.value.response["Error"]["Message"] == "Invalid OpenAPI input."


def test_definitions_that_reference_each_other_become_models_that_reference_each_other(v1) -> None:
    """AWS stores a definition's `#/definitions/X` (or `#/components/schemas/X`) reference to
    another definition as model X's URI, and exports it back as a reference into the document."""
    doc = {
        **SWAGGER,
        "definitions": {
            **SWAGGER["definitions"],
            "Order": {
                "type": "object",
                "properties": {
                    "pet": {"$ref": "#/definitions/Pet"},
                    "ext": {"$ref": "https://example.com/x"},
                },
            },
        },
    }
    api = v1.import_rest_api(body=json.dumps(doc).encode())
    stored = json.loads(v1.get_model(restApiId=api["id"], modelName="Order")["schema"])
    assert stored["properties"]["pet"] == {
        "$ref": f"https://apigateway.amazonaws.com/restapis/{api['id']}/models/Pet"
    }
    assert stored["properties"]["ext"] == {"$ref": "https://example.com/x"}
    v1.create_deployment(restApiId=api["id"], stageName="prod")
    for export_type, root in (("swagger", "#/definitions/"), ("oas30", "#/components/schemas/")):
        exported = json.loads(
            v1.get_export(restApiId=api["id"], stageName="prod", exportType=export_type)["body"].read()
        )
        models = exported["definitions"] if export_type == "swagger" else exported["components"]["schemas"]
        assert models["Order"]["properties"]["pet"] == {"$ref": root + "Pet"}


def test_import_follows_the_documents_own_refs_and_refuses_what_the_config_loader_refuses(v1) -> None:
    """ImportRestApi and REST config files share one reading of the document: `$ref`s to the
    document's own parameters and responses are followed, scopes are kept for Cognito authorizers
    only (AWS `Method.authorizationScopes`), and a malformed document (an integration
    response without its statusCode, an operation that is not a mapping, a policy that is not JSON)
    is refused as a whole."""
    mock = {
        "type": "mock",
        "requestTemplates": {"application/json": '{"statusCode": 200}'},
        "responses": {"default": {"statusCode": "200"}},
    }
    doc = {
        "swagger": "2.0",
        "info": {"title": "refs"},
        "parameters": {"petId": {"name": "petId", "in": "path", "required": True, "type": "string"}},
        "responses": {"Ok": {"description": "ok", "headers": {"X-Trace": {"type": "string"}}}},
        "securityDefinitions": {
            "token": {
                "type": "apiKey",
                "name": "Authorization",
                "in": "header",
                "x-amazon-apigateway-authorizer": {"type": "token", "authorizerUri": LAMBDA_URI},
            }
        },
        "paths": {
            "/pets/{petId}": {
                "get": {
                    "parameters": [{"$ref": "#/parameters/petId"}],
                    # Scopes are a Cognito authorizer's: a Lambda authorizer's method has none.
                    "security": [{"token": ["pets/read"]}],
                    "responses": {"200": {"$ref": "#/responses/Ok"}},
                    "x-amazon-apigateway-integration": mock,
                }
            }
        },
    }
    api = v1.import_rest_api(body=json.dumps(doc).encode())
    resource = next(r for r in v1.get_resources(restApiId=api["id"])["items"] if r["path"] == "/pets/{petId}")
    method = v1.get_method(restApiId=api["id"], resourceId=resource["id"], httpMethod="GET")
    assert method["requestParameters"] == {"method.request.path.petId": True}
    assert method["methodResponses"]["200"]["responseParameters"] == {"method.response.header.X-Trace": False}
    assert (method["authorizationType"], method.get("authorizationScopes")) == ("CUSTOM", None)

    def refused(broken: dict) -> None:
        with pytest.raises(v1.exceptions.BadRequestException) as raised:
            v1.import_rest_api(body=json.dumps(broken).encode())
        assert raised.value.response["Error"]["Message"] == "Invalid OpenAPI input."

    no_status = json.loads(json.dumps(doc))
    del no_status["paths"]["/pets/{petId}"]["get"]["x-amazon-apigateway-integration"]["responses"]["default"][
        "statusCode"
    ]
    refused(no_status)
    refused({**doc, "paths": {"/pets": {"get": "not an operation"}}})
    refused({**doc, "x-amazon-apigateway-policy": "{not json"})
    assert [a["name"] for a in v1.get_rest_apis()["items"]].count("refs") == 1
