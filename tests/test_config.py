"""Configuration: validation messages name the file, the field and the reason; OpenAPI import serves."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml

from conftest import run_portico
from portico.config.loader import ConfigFileError, load_config, parse_config

GOOD = {
    "apis": [
        {
            "name": "good",
            "routes": [{"route": "GET /x", "integration": "m"}],
            "integrations": {"m": {"type": "MOCK", "statusCode": 200, "body": "ok"}},
        }
    ]
}


def write(tmp_path: Path, document: dict | str, name: str = "portico.yaml") -> Path:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document))
    return path


@pytest.mark.parametrize(
    ("mutate", "field", "reason"),
    [
        (lambda c: c["apis"][0]["routes"][0].update(route="GETT /x"), "apis[0].routes[0].route", "method"),
        (
            lambda c: c["apis"][0]["routes"][0].update(route="GET x"),
            "apis[0].routes[0].route",
            "start with /",
        ),
        (
            lambda c: c["apis"][0]["routes"][0].update(route="GET /{proxy+}/more"),
            "apis[0].routes[0].route",
            "last segment",
        ),
        (
            lambda c: c["apis"][0]["routes"][0].update(integration="nope"),
            "apis[0]",
            "unknown integration 'nope'",
        ),
        (
            lambda c: c["apis"][0]["integrations"]["m"].pop("statusCode"),
            "apis[0].integrations.m",
            "statusCode",
        ),
        (
            lambda c: c["apis"][0]["integrations"].update(h={"type": "HTTP_PROXY", "uri": "ftp://x"}),
            "apis[0].integrations.h",
            "http://",
        ),
        (
            lambda c: c["apis"][0]["integrations"].update(
                h={"type": "HTTP_PROXY", "uri": "http://x", "timeoutInMillis": 10}
            ),
            "apis[0].integrations.h.timeoutInMillis",
            "greater than or equal to 50",
        ),
        (
            lambda c: c["apis"][0].update(stages=[{"name": "bad name"}]),
            "apis[0].stages[0].name",
            "stage names",
        ),
        (
            lambda c: c["apis"][0].update(
                stages=[{"name": "$default", "defaultRouteSettings": {"throttlingRateLimit": 5}}]
            ),
            "apis[0].stages[0].defaultRouteSettings",
            "both",
        ),
        (
            lambda c: c["apis"][0].update(stages=[{"name": "$default", "variables": {"k": "has space"}}]),
            "apis[0].stages[0].variables",
            "value must be",
        ),
        (lambda c: c["apis"][0].update(colour="blue"), "apis[0].colour", "unknown field"),
        (
            lambda c: c["apis"][0].update(cors={"allowOrigins": ["*"], "allowCredentials": True}),
            "apis[0].cors",
            "allow-credentials",
        ),
        (lambda c: c.update(functions={"f": "no_colon"}), "functions.f.handler", "module.path:attribute"),
        (
            lambda c: c.update(functions={"f": {"handler": "m:f", "reservedConcurrency": -1}}),
            "functions.f.reservedConcurrency",
            "greater than or equal to 0",
        ),
        (
            lambda c: c.setdefault("settings", {}).update(functionConcurrency=0),
            "settings.functionConcurrency",
            "greater than or equal to 1",
        ),
    ],
)
def test_bad_fields_are_named(tmp_path, mutate, field, reason):
    document = yaml.safe_load(yaml.safe_dump(GOOD))
    mutate(document)
    path = write(tmp_path, document)
    with pytest.raises(ConfigFileError) as caught:
        load_config(path)
    message = str(caught.value)
    assert str(path) in message
    assert field in message, message
    assert reason in message, message


def test_yaml_syntax_error_names_line(tmp_path):
    path = write(tmp_path, "apis:\n  - name: x\n    routes: [\n")
    with pytest.raises(ConfigFileError, match=r"line \d+, column \d+: not valid YAML"):
        load_config(path)


def test_cli_refuses_bad_config_and_does_not_start(tmp_path):
    document = yaml.safe_load(yaml.safe_dump(GOOD))
    document["apis"][0]["routes"][0]["route"] = "FETCH /x"
    path = write(tmp_path, document)
    result = run_portico("serve", str(path), "--port", "1")
    assert result.returncode == 2
    assert str(path) in result.stderr
    assert "apis[0].routes[0].route" in result.stderr


def test_cli_names_unregistered_function(tmp_path):
    document = {
        "apis": [
            {
                "name": "f",
                "routes": [{"route": "GET /f", "integration": {"type": "AWS_PROXY", "uri": "missing"}}],
            }
        ]
    }
    result = run_portico("check", str(write(tmp_path, document)))
    assert result.returncode == 2
    assert "apis[0].routes[0].integration" in result.stderr
    assert "'missing' is not registered" in result.stderr


def test_cli_bad_function_spec(tmp_path):
    result = run_portico("check", str(write(tmp_path, GOOD)), "--function", "x=no_such_module:fn")
    assert result.returncode == 2
    assert "no_such_module" in result.stderr


def test_missing_file():
    with pytest.raises(ConfigFileError, match="cannot read the file"):
        load_config("/nonexistent/portico.yaml")


OPENAPI = {
    "openapi": "3.0.1",
    "info": {"title": "imported-api", "version": "1"},
    "x-amazon-apigateway-cors": {
        "allowOrigins": ["https://example.com"],
        "allowMethods": ["GET"],
        "maxAge": 60,
    },
    "paths": {
        "/hello": {
            "get": {
                "x-amazon-apigateway-integration": {
                    "type": "aws_proxy",
                    "httpMethod": "POST",
                    "uri": "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/"
                    "arn:aws:lambda:us-east-1:123456789012:function:hello/invocations",
                    "payloadFormatVersion": "2.0",
                    "timeoutInMillis": 3000,
                }
            }
        },
        "/items/{id}": {
            "x-amazon-apigateway-any-method": {
                "x-amazon-apigateway-integration": {
                    "type": "aws_proxy",
                    "uri": "arn:aws:lambda:us-east-1:123456789012:function:echo",
                    "payloadFormatVersion": "1.0",
                }
            }
        },
    },
}


def test_openapi_document_is_served(tmp_path, portico):
    path = write(tmp_path, OPENAPI, "openapi.yaml")
    server = portico(path, functions={"hello": "handlers.basic:hello", "echo": "handlers.basic:echo"})
    assert httpx.get(server.url + "/hello").json() == {"message": "hello"}
    event = httpx.delete(server.url + "/items/9").json()
    assert event["httpMethod"] == "DELETE"
    assert event["pathParameters"] == {"id": "9"}
    preflight = httpx.options(
        server.url + "/hello",
        headers={"origin": "https://example.com", "access-control-request-method": "GET"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://example.com"
    assert preflight.headers["access-control-max-age"] == "60"
    cors = httpx.get(server.url + "/hello", headers={"origin": "https://example.com"})
    assert cors.headers["access-control-allow-origin"] == "https://example.com"


def test_openapi_operation_without_integration_is_named(tmp_path):
    document = {"openapi": "3.0.1", "info": {"title": "t"}, "paths": {"/x": {"get": {}}}}
    with pytest.raises(ConfigFileError, match=r"paths\./x\.get: no x-amazon-apigateway-integration"):
        parse_config(yaml.safe_dump(document), "doc.yaml")


def test_quickstart_example_is_valid():
    root = Path(__file__).parent.parent
    result = run_portico("check", "examples/quickstart/portico.yaml", cwd=root)
    assert result.returncode == 0, result.stderr
    assert "GET /hello" in result.stdout
