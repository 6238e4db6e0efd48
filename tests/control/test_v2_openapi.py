"""apigatewayv2 ImportApi / ReimportApi / ExportApi (OpenAPI 3 with x-amazon-apigateway-*)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from control_support import ThreadAdmin

LAMBDA_ARN = "arn:aws:lambda:us-east-1:123456789012:function:my-function"

DOCUMENT = {
    "openapi": "3.0.1",
    "info": {"title": "pets", "version": "2024-01-01", "description": "Pet store"},
    "paths": {
        "/pets": {
            "get": {
                "operationId": "listPets",
                "x-amazon-apigateway-integration": {
                    "type": "aws_proxy",
                    "httpMethod": "POST",
                    "uri": LAMBDA_ARN,
                    "payloadFormatVersion": "2.0",
                    "timeoutInMillis": 10000,
                },
            },
            "post": {
                "security": [{"jwt": ["pets:write"]}],
                "x-amazon-apigateway-integration": {
                    "$ref": "#/components/x-amazon-apigateway-integrations/backend"
                },
            },
        },
        "/pets/{petId}": {
            "x-amazon-apigateway-any-method": {
                "x-amazon-apigateway-integration": {
                    "$ref": "#/components/x-amazon-apigateway-integrations/backend"
                }
            }
        },
        "$default": {
            "x-amazon-apigateway-any-method": {
                "isDefaultRoute": True,
                "x-amazon-apigateway-integration": {
                    "type": "http_proxy",
                    "httpMethod": "ANY",
                    "uri": "https://fallback.example.com",
                    "payloadFormatVersion": "1.0",
                    "connectionType": "INTERNET",
                },
            }
        },
    },
    "components": {
        "securitySchemes": {
            "jwt": {
                "type": "oauth2",
                "flows": {},
                "x-amazon-apigateway-authorizer": {
                    "type": "jwt",
                    "identitySource": "$request.header.Authorization",
                    "jwtConfiguration": {"issuer": "https://issuer.example.com", "audience": ["pets"]},
                },
            }
        },
        "x-amazon-apigateway-integrations": {
            "backend": {
                "type": "http_proxy",
                "httpMethod": "ANY",
                "uri": "https://backend.example.com/pets",
                "payloadFormatVersion": "1.0",
            }
        },
    },
    "x-amazon-apigateway-cors": {
        "allowOrigins": ["https://example.com"],
        "allowMethods": ["GET"],
        "maxAge": 60,
    },
    "x-amazon-apigateway-importexport-version": "1.0",
}


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[ThreadAdmin]:
    server = ThreadAdmin(tmp_path / "data")
    yield server
    server.stop()


@pytest.fixture
def v2(admin: ThreadAdmin):
    return admin.client("apigatewayv2")


def describe(v2, api_id: str) -> dict:
    """Routes (by key) with their integration and authorizer, independent of ids."""
    integrations = {i["IntegrationId"]: i for i in v2.get_integrations(ApiId=api_id)["Items"]}
    authorizers = {a["AuthorizerId"]: a for a in v2.get_authorizers(ApiId=api_id)["Items"]}
    out = {}
    for route in v2.get_routes(ApiId=api_id)["Items"]:
        integration = integrations[route["Target"].removeprefix("integrations/")]
        out[route["RouteKey"]] = {
            "type": integration["IntegrationType"],
            "uri": integration["IntegrationUri"],
            "method": integration["IntegrationMethod"],
            "payload": integration["PayloadFormatVersion"],
            "timeout": integration["TimeoutInMillis"],
            "auth": route["AuthorizationType"],
            "authorizer": authorizers[route["AuthorizerId"]]["Name"] if route.get("AuthorizerId") else None,
            "scopes": route.get("AuthorizationScopes"),
        }
    return out


EXPECTED = {
    "GET /pets": {
        "type": "AWS_PROXY",
        "uri": LAMBDA_ARN,
        "method": "POST",
        "payload": "2.0",
        "timeout": 10000,
        "auth": "NONE",
        "authorizer": None,
        "scopes": None,
    },
    "POST /pets": {
        "type": "HTTP_PROXY",
        "uri": "https://backend.example.com/pets",
        "method": "ANY",
        "payload": "1.0",
        "timeout": 30000,
        "auth": "JWT",
        "authorizer": "jwt",
        "scopes": ["pets:write"],
    },
    "ANY /pets/{petId}": {
        "type": "HTTP_PROXY",
        "uri": "https://backend.example.com/pets",
        "method": "ANY",
        "payload": "1.0",
        "timeout": 30000,
        "auth": "NONE",
        "authorizer": None,
        "scopes": None,
    },
    "$default": {
        "type": "HTTP_PROXY",
        "uri": "https://fallback.example.com",
        "method": "ANY",
        "payload": "1.0",
        "timeout": 30000,
        "auth": "NONE",
        "authorizer": None,
        "scopes": None,
    },
}


def test_import_export_round_trip(v2) -> None:
    imported = v2.import_api(Body=json.dumps(DOCUMENT))
    assert imported["ResponseMetadata"]["HTTPStatusCode"] == 201
    api_id = imported["ApiId"]
    assert imported["Name"] == "pets" and imported["Version"] == "2024-01-01"
    assert imported["Description"] == "Pet store" and imported["ProtocolType"] == "HTTP"
    assert imported["CorsConfiguration"] == {
        "AllowOrigins": ["https://example.com"],
        "AllowMethods": ["GET"],
        "MaxAge": 60,
    }
    assert describe(v2, api_id) == EXPECTED
    # The shared $ref integration is one integration.
    assert len(v2.get_integrations(ApiId=api_id)["Items"]) == 3
    assert v2.get_routes(ApiId=api_id)["Items"][0]["OperationName"] == "listPets"

    exported = json.loads(
        v2.export_api(ApiId=api_id, Specification="OAS30", OutputType="JSON")["body"].read()
    )
    assert exported["openapi"] == "3.0.1"
    assert exported["x-amazon-apigateway-importexport-version"] == "1.0"
    assert exported["info"] == {"title": "pets", "description": "Pet store", "version": "2024-01-01"}
    assert exported["x-amazon-apigateway-cors"] == DOCUMENT["x-amazon-apigateway-cors"]
    get_pets = exported["paths"]["/pets"]["get"]
    assert get_pets["x-amazon-apigateway-integration"] == {
        "payloadFormatVersion": "2.0",
        "type": "aws_proxy",
        "httpMethod": "POST",
        "uri": LAMBDA_ARN,
        "connectionType": "INTERNET",
        "timeoutInMillis": 10000,
    }
    assert get_pets["responses"] == {"default": {"description": "Default response for GET /pets"}}
    assert exported["paths"]["/pets"]["post"]["security"] == [{"jwt": ["pets:write"]}]
    default = exported["paths"]["$default"]["x-amazon-apigateway-any-method"]
    assert default["isDefaultRoute"] is True
    assert default["x-amazon-apigateway-integration"]["type"] == "http_proxy"
    pet = exported["paths"]["/pets/{petId}"]
    assert "x-amazon-apigateway-any-method" in pet
    assert pet["parameters"][0] == {
        "name": "petId",
        "in": "path",
        "description": "Generated path parameter for petId",
        "required": True,
        "schema": {"type": "string"},
    }
    scheme = exported["components"]["securitySchemes"]["jwt"]["x-amazon-apigateway-authorizer"]
    assert scheme == {
        "identitySource": "$request.header.Authorization",
        "jwtConfiguration": {"audience": ["pets"], "issuer": "https://issuer.example.com"},
        "type": "jwt",
    }

    # YAML export is the same document.
    as_yaml = v2.export_api(ApiId=api_id, Specification="OAS30", OutputType="YAML")["body"].read()
    assert yaml.safe_load(as_yaml) == exported

    # The export imports back to the same API (JSON and YAML).
    for body in (json.dumps(exported), as_yaml.decode()):
        again = v2.import_api(Body=body)
        assert describe(v2, again["ApiId"]) == EXPECTED
        assert again["CorsConfiguration"] == imported["CorsConfiguration"]

    bare = json.loads(
        v2.export_api(ApiId=api_id, Specification="OAS30", OutputType="JSON", IncludeExtensions=False)[
            "body"
        ].read()
    )
    assert "x-amazon-apigateway-integration" not in json.dumps(bare)
    assert "/pets" in bare["paths"]


def test_export_of_a_stage_uses_its_deployment(v2) -> None:
    api_id = v2.import_api(Body=json.dumps(DOCUMENT))["ApiId"]
    v2.create_stage(ApiId=api_id, StageName="prod")
    v2.create_deployment(ApiId=api_id, StageName="prod")
    route = next(r for r in v2.get_routes(ApiId=api_id)["Items"] if r["RouteKey"] == "GET /pets")
    v2.delete_route(ApiId=api_id, RouteId=route["RouteId"])
    staged = json.loads(
        v2.export_api(ApiId=api_id, Specification="OAS30", OutputType="JSON", StageName="prod")["body"].read()
    )
    assert "get" in staged["paths"]["/pets"]
    assert staged["servers"][0]["variables"]["basePath"]["default"] == "prod"
    latest = json.loads(v2.export_api(ApiId=api_id, Specification="OAS30", OutputType="JSON")["body"].read())
    assert "get" not in latest["paths"]["/pets"]
    with pytest.raises(v2.exceptions.NotFoundException):
        v2.export_api(ApiId=api_id, Specification="OAS30", OutputType="JSON", StageName="nope")
    with pytest.raises(v2.exceptions.NotFoundException):
        v2.export_api(ApiId="nosuchapi0", Specification="OAS30", OutputType="JSON")


def test_reimport_replaces_routes(admin: ThreadAdmin, v2) -> None:
    api_id = v2.import_api(Body=json.dumps(DOCUMENT))["ApiId"]
    stage = v2.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)
    smaller = {
        "openapi": "3.0.1",
        "info": {"title": "pets2", "version": "2"},
        "paths": {
            "/things": {
                "get": {
                    "x-amazon-apigateway-integration": {
                        "type": "AWS_PROXY",
                        "uri": LAMBDA_ARN,
                        "payloadFormatVersion": 1.0,
                    }
                }
            }
        },
    }
    result = v2.reimport_api(ApiId=api_id, Body=yaml.safe_dump(smaller))
    assert result["ApiId"] == api_id and result["Name"] == "pets2"
    assert "CorsConfiguration" not in result
    assert list(describe(v2, api_id)) == ["GET /things"]
    assert describe(v2, api_id)["GET /things"]["payload"] == "1.0"
    assert len(v2.get_integrations(ApiId=api_id)["Items"]) == 1
    assert v2.get_authorizers(ApiId=api_id)["Items"] == []
    deployed = v2.get_stage(ApiId=api_id, StageName="$default")["DeploymentId"]
    assert deployed != stage["DeploymentId"]
    with admin.store.read() as tx:
        snap = tx.get("apigatewayv2", "deployment", deployed)["_snapshot"]
    assert [r["RouteKey"] for r in snap["Routes"]] == ["GET /things"]
    with pytest.raises(v2.exceptions.NotFoundException):
        v2.reimport_api(ApiId="nosuchapi0", Body=yaml.safe_dump(smaller))


def test_import_errors_and_warnings(v2) -> None:
    bad = v2.exceptions.BadRequestException
    for body in (
        "",
        "[1, 2]",
        "{not: valid: yaml: at all",
        json.dumps({"swagger": "2.0", "info": {"title": "x"}, "paths": {}}),
        json.dumps(
            {"openapi": "3.0.1", "info": {"title": "x"}, "x-amazon-apigateway-importexport-version": "2.0"}
        ),
        json.dumps({"openapi": "3.0.1", "info": {"title": "x"}, "paths": {"nope": {"get": {}}}}),
        json.dumps(
            {
                "openapi": "3.0.1",
                "info": {"title": "x"},
                "paths": {
                    "/a": {"get": {"x-amazon-apigateway-integration": {"$ref": "#/components/missing"}}}
                },
            }
        ),
        json.dumps(
            {
                "openapi": "3.0.1",
                "info": {"title": "x"},
                "paths": {"/a": {"get": {"x-amazon-apigateway-integration": {"type": "http_proxy"}}}},
            }
        ),
    ):
        with pytest.raises(bad) as raised:
            v2.import_api(Body=body)
        assert raised.value.response["Error"]["Message"].startswith("Invalid OpenAPI input"), body
    with_mock = {
        "openapi": "3.0.1",
        "info": {"title": "m"},
        "paths": {"/m": {"get": {"x-amazon-apigateway-integration": {"type": "mock"}}}},
    }
    result = v2.import_api(Body=json.dumps(with_mock))
    assert result["Warnings"] and "MOCK" in result["Warnings"][0]
    [route] = v2.get_routes(ApiId=result["ApiId"])["Items"]
    assert route["RouteKey"] == "GET /m" and "Target" not in route
    with pytest.raises(bad) as raised:
        v2.import_api(Body=json.dumps(with_mock), FailOnWarnings=True)
    assert "Warnings found during import" in raised.value.response["Error"]["Message"]


def test_import_basepath(v2) -> None:
    document = {
        "openapi": "3.0.1",
        "info": {"title": "b"},
        "servers": [
            {"url": "https://example.com/{basePath}", "variables": {"basePath": {"default": "v1/api"}}}
        ],
        "paths": {"/x": {"get": {}}},
    }
    keys = {
        mode: [
            r["RouteKey"]
            for r in v2.get_routes(ApiId=v2.import_api(Body=json.dumps(document), **kw)["ApiId"])["Items"]
        ]
        for mode, kw in (
            ("ignore", {}),
            ("prepend", {"Basepath": "prepend"}),
            ("split", {"Basepath": "split"}),
        )
    }
    assert keys == {"ignore": ["GET /x"], "prepend": ["GET /v1/api/x"], "split": ["GET /api/x"]}
