"""A REST API defined by one OpenAPI document, written as AWS's docs write them: imported with boto3
(`import_rest_api`) into a real `portico serve --admin-port`, served as a config file by
`portico serve FILE`, and exported (`get_export`, OpenAPI 3 and swagger) to be served and imported
again. Every route is called over HTTP and its answers compared with what AWS documents, then the
four deployments' answers with each other (the same, request ids and dates aside).

The document has a Lambda proxy route, a Lambda non-proxy route (request template, response
template, an error selected by its message), an HTTP non-proxy route to a backend of the test's
own, a MOCK CORS preflight, a POST validated against a model, customised gateway responses and a
binary media type."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from admin_e2e import AdminServer, invocation_uri, start_admin_server, wait_for
from conftest import free_port, run_portico, start_server

FUNCTIONS = {
    "hello": "handlers.openapi_rest:hello",
    "raises": "handlers.non_proxy:raises",
    "echo_event": "handlers.non_proxy:echo_event",
}
STAGE = "test"
UPSTREAM_HEADER = "integration.response.header.X-Upstream"
UPSTREAM_TYPE = "integration.response.header.Content-Type"
NOT_FOUND_TEMPLATE = '{"message": "Pet $input.params(\'petId\') not found"}'
PNG = b"\x89PNG\r\n\x1a\n\x00\xff\x00binary"
# What differs between two answers to the same request: ids and dates.
PER_REQUEST_HEADERS = {"date", "x-amzn-requestid", "x-amz-apigw-id", "x-amzn-trace-id", "server"}


# ---------------------------------------------------------------------------------------- backend


class PetsBackend:
    """A real HTTP server: `GET /pets/{id}` answers a pet (200) for ids below 100, else 404;
    `GET /logo` answers PNG bytes. Records the headers of the last request."""

    def __init__(self) -> None:
        self.last_headers: dict[str, str] = {}
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                backend.last_headers = {k.lower(): v for k, v in self.headers.items()}
                if self.path == "/logo":
                    self._send(200, "image/png", PNG)
                    return
                pet_id = self.path.rsplit("/", 1)[-1]
                if pet_id.isdigit() and int(pet_id) < 100:
                    body = {"item": {"id": int(pet_id), "type": "dog", "price": 249.99}}
                    self._send(200, "application/json", json.dumps(body).encode())
                else:
                    self._send(404, "application/json", b'{"message": "no such pet"}')

            def _send(self, status: int, content_type: str, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("X-Upstream", "pets")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------------------- document


def petstore(backend_url: str) -> dict[str, Any]:
    """The document, as AWS's "x-amazon-apigateway-integration" and "Enable CORS" examples write
    it: lower-case integration types, `when_no_match`, responses keyed by selection pattern."""
    cors_headers = {
        "Access-Control-Allow-Headers": {"schema": {"type": "string"}},
        "Access-Control-Allow-Methods": {"schema": {"type": "string"}},
        "Access-Control-Allow-Origin": {"schema": {"type": "string"}},
    }
    return {
        "openapi": "3.0.1",
        "info": {"title": "portico-petstore", "version": "2026-11-30"},
        "servers": [
            {
                "url": "https://{restapi_id}.execute-api.us-east-1.amazonaws.com/{basePath}",
                "variables": {"restapi_id": {"default": "example"}, "basePath": {"default": STAGE}},
            }
        ],
        "x-amazon-apigateway-request-validators": {
            "all": {"validateRequestBody": True, "validateRequestParameters": True},
            "params-only": {"validateRequestBody": False, "validateRequestParameters": True},
        },
        # Every method without its own validator checks its parameters.
        "x-amazon-apigateway-request-validator": "params-only",
        "x-amazon-apigateway-binary-media-types": ["image/png"],
        "x-amazon-apigateway-gateway-responses": {
            "DEFAULT_4XX": {
                "responseParameters": {"gatewayresponse.header.Access-Control-Allow-Origin": "'*'"},
                "responseTemplates": {"application/json": '{"message": $context.error.messageString}'},
            },
            "BAD_REQUEST_BODY": {
                "statusCode": "422",
                "responseParameters": {"gatewayresponse.header.X-Validation": "'failed'"},
                "responseTemplates": {
                    "application/json": '{"error": "$context.error.validationErrorString"}'
                },
            },
        },
        "paths": {
            "/hello": {
                "get": {
                    "responses": {"200": {"description": "200 response"}},
                    "x-amazon-apigateway-integration": {
                        "type": "aws_proxy",
                        "httpMethod": "POST",
                        "uri": invocation_uri("hello"),
                        "passthroughBehavior": "when_no_match",
                    },
                }
            },
            "/greeting": {
                "get": {
                    "parameters": [
                        {"name": "name", "in": "query", "required": True, "schema": {"type": "string"}},
                        {"name": "fail", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": {"description": "200 response"},
                        "404": {"description": "404 response"},
                    },
                    "x-amazon-apigateway-integration": {
                        "type": "aws",
                        "httpMethod": "POST",
                        "uri": invocation_uri("raises"),
                        "passthroughBehavior": "when_no_templates",
                        "requestTemplates": {
                            "application/json": (
                                '{"name": "$input.params(\'name\')", '
                                '"raise": "$util.urlDecode($input.params(\'fail\'))"}'
                            )
                        },
                        "responses": {
                            "default": {
                                "statusCode": "200",
                                "responseTemplates": {
                                    "application/json": (
                                        '{"greeting": "Hello, $input.path(\'$.returned.name\')!"}'
                                    )
                                },
                            },
                            ".*not found.*": {
                                "statusCode": "404",
                                "responseTemplates": {
                                    "application/json": '{"error": "$input.path(\'$.errorMessage\')"}'
                                },
                            },
                        },
                    },
                }
            },
            "/pets": {
                "options": {
                    "responses": {"200": {"description": "200 response", "headers": cors_headers}},
                    "x-amazon-apigateway-integration": {
                        "type": "mock",
                        "requestTemplates": {"application/json": '{"statusCode": 200}'},
                        "passthroughBehavior": "when_no_match",
                        "responses": {
                            "default": {
                                "statusCode": "200",
                                "responseParameters": {
                                    "method.response.header.Access-Control-Allow-Methods": "'OPTIONS,POST'",
                                    "method.response.header.Access-Control-Allow-Headers": (
                                        "'Content-Type,X-Amz-Date,Authorization,X-Api-Key'"
                                    ),
                                    "method.response.header.Access-Control-Allow-Origin": "'*'",
                                },
                                "responseTemplates": {"application/json": "{}"},
                            }
                        },
                    },
                },
                "post": {
                    "requestBody": {
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewPet"}}},
                        "required": True,
                    },
                    "responses": {"201": {"description": "201 response"}},
                    "x-amazon-apigateway-request-validator": "all",
                    "x-amazon-apigateway-integration": {
                        "type": "aws",
                        "httpMethod": "POST",
                        "uri": invocation_uri("echo_event"),
                        "passthroughBehavior": "when_no_match",
                        "responses": {"default": {"statusCode": "201"}},
                    },
                },
            },
            "/pets/{petId}": {
                "get": {
                    "parameters": [
                        {"name": "petId", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": {
                            "description": "200 response",
                            "headers": {"X-Upstream": {"schema": {"type": "string"}}},
                        },
                        "404": {"description": "404 response"},
                    },
                    "x-amazon-apigateway-integration": {
                        "type": "http",
                        "httpMethod": "GET",
                        "uri": backend_url + "/pets/{id}",
                        "passthroughBehavior": "when_no_match",
                        "requestParameters": {
                            "integration.request.path.id": "method.request.path.petId",
                            "integration.request.header.X-Source": "'portico'",
                        },
                        "responses": {
                            "default": {
                                "statusCode": "200",
                                "responseParameters": {"method.response.header.X-Upstream": UPSTREAM_HEADER},
                                "responseTemplates": {
                                    "application/json": (
                                        '{"id": "$input.params(\'petId\')", '
                                        '"type": "$input.path(\'$.item.type\')"}'
                                    )
                                },
                            },
                            "404": {
                                "statusCode": "404",
                                "responseTemplates": {"application/json": NOT_FOUND_TEMPLATE},
                            },
                        },
                    },
                }
            },
            "/logo": {
                "get": {
                    "responses": {
                        "200": {
                            "description": "200 response",
                            "headers": {"Content-Type": {"schema": {"type": "string"}}},
                        }
                    },
                    "x-amazon-apigateway-integration": {
                        "type": "http",
                        "httpMethod": "GET",
                        "uri": backend_url + "/logo",
                        "responses": {
                            "default": {
                                "statusCode": "200",
                                "responseParameters": {"method.response.header.Content-Type": UPSTREAM_TYPE},
                            }
                        },
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "PetType": {"type": "string", "enum": ["dog", "cat", "fish"]},
                "NewPet": {
                    "type": "object",
                    "required": ["type", "price"],
                    "properties": {
                        "type": {"$ref": "#/components/schemas/PetType"},
                        "price": {"type": "number", "minimum": 25, "maximum": 500},
                    },
                },
            }
        },
        # Portico's own: where the Lambda URIs' functions live when the file is served.
        "x-portico": {"functions": FUNCTIONS},
    }


# The calls every deployment answers: (method, path, request headers, JSON body).
CALLS: list[tuple[str, str, dict[str, str], Any]] = [
    ("GET", "/hello?name=Ana", {}, None),
    ("GET", "/greeting?name=Ana", {}, None),
    ("GET", "/greeting?name=Ana&fail=Pet%20not%20found", {}, None),
    ("GET", "/greeting", {}, None),
    ("GET", "/pets/7", {}, None),
    ("GET", "/pets/404", {}, None),
    ("OPTIONS", "/pets", {"origin": "https://example.com", "access-control-request-method": "POST"}, None),
    ("POST", "/pets", {}, {"type": "cat", "price": 30}),
    ("POST", "/pets", {}, {"type": "bird", "price": 30}),
    ("GET", "/logo", {"accept": "image/png"}, None),
    ("GET", "/nowhere", {}, None),
]


class Deployment:
    """Somewhere the document is served: a base URL and the Host to send (None: any)."""

    def __init__(self, base: str, host: str | None = None) -> None:
        self.base, self.host = base, host

    def call(self, method: str, path: str, headers: dict[str, str], body: Any) -> httpx.Response:
        sent = {**headers, **({"host": self.host} if self.host else {})}
        return httpx.request(
            method, self.base + path, headers=sent, timeout=10, **({"json": body} if body is not None else {})
        )

    def answers(self) -> list[tuple[int, dict[str, str], bytes]]:
        """Every call's status, headers (but per-request ones) and body."""
        out = []
        for call in CALLS:
            response = self.call(*call)
            headers = {k: v for k, v in response.headers.items() if k not in PER_REQUEST_HEADERS}
            out.append((response.status_code, headers, response.content))
        return out


# ---------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def backend() -> Iterator[PetsBackend]:
    server = PetsBackend()
    yield server
    server.close()


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> Iterator:
    """`start(config, functions=None, extra_args=None) -> Server`, all stopped at the end."""
    tmp = tmp_path_factory.mktemp("openapi_rest")
    started = []

    def start(config, functions=None, workers=1, extra_args=None):
        server = start_server(config, tmp, functions, workers, extra_args)
        started.append(server)
        return server

    start.tmp = tmp  # type: ignore[attr-defined]
    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def admin(servers) -> AdminServer:
    return start_admin_server(servers, servers.tmp, functions=FUNCTIONS)


def imported(admin: AdminServer, body: bytes) -> Deployment:
    """`body` imported with boto3, deployed to the stage and served (waited for)."""
    apigw = admin.client("apigateway")
    api_id = apigw.import_rest_api(body=body)["id"]
    apigw.create_deployment(restApiId=api_id, stageName=STAGE)
    deployment = Deployment(f"{admin.url}/{STAGE}", admin.host(api_id))
    wait_for(lambda: deployment.call("GET", "/hello", {}, None).status_code == 200, timeout=5)
    return deployment


def written(tmp: Path, name: str, document: dict[str, Any]) -> Path:
    path = tmp / name
    path.write_text(
        yaml.safe_dump(document, sort_keys=False) if name.endswith(".yaml") else json.dumps(document)
    )
    return path


@pytest.fixture(scope="module")
def document(backend) -> dict[str, Any]:
    return petstore(backend.url)


@pytest.fixture(scope="module")
def from_admin(admin, document) -> Deployment:
    return imported(admin, json.dumps(document).encode())


@pytest.fixture(scope="module")
def from_file(servers, document) -> Deployment:
    server = servers(written(servers.tmp, "petstore.yaml", document))
    return Deployment(f"{server.url}/{STAGE}")


# ---------------------------------------------------------------------------------------- tests


def test_the_imported_document_serves_as_aws_documents(from_admin, backend):
    """Each route answers as AWS's docs say it would."""
    _check_aws_behaviour(from_admin, backend)


def test_the_same_document_served_as_a_config_file(from_file, backend):
    _check_aws_behaviour(from_file, backend)


def test_the_file_and_the_import_answer_alike(from_admin, from_file):
    assert from_file.answers() == from_admin.answers()


# The calls whose answers need none of API Gateway's extensions but the integration (validators,
# gateway responses and binary media types are `extensions=apigateway`'s).
INTEGRATION_ONLY_CALLS = [0, 1, 2, 4, 5, 6, 7]


@pytest.mark.parametrize("extensions", ["apigateway", "integrations"])
@pytest.mark.parametrize("export_type", ["oas30", "swagger"])
def test_the_export_serves_and_imports_alike(admin, servers, from_admin, export_type, extensions):
    """GetExport of the deployed stage served as a config file and imported again. With all of API
    Gateway's extensions: the same answers as the original import. With the integrations only:
    the same answers where nothing else mattered, and, as AWS's export leaves them out, no request
    validation, gateway responses or binary media types."""
    apigw = admin.client("apigateway")
    api_id = from_admin.host.split(".", 1)[0]
    exported = apigw.get_export(
        restApiId=api_id,
        stageName=STAGE,
        exportType=export_type,
        parameters={"extensions": extensions},
        accepts="application/yaml",
    )["body"].read()
    document = yaml.safe_load(exported)
    assert ("swagger" in document) == (export_type == "swagger")
    assert "x-portico" not in document  # the export knows nothing of Portico: functions by flag
    expected = from_admin.answers()
    name = f"exported-{export_type}-{extensions}.yaml"
    served = Deployment(f"{servers(written(servers.tmp, name, document), functions=FUNCTIONS).url}/{STAGE}")
    reimported = imported(admin, exported)
    for deployment in (served, reimported):
        answers = deployment.answers()
        if extensions == "apigateway":
            assert answers == expected
            continue
        assert [answers[i] for i in INTEGRATION_ONLY_CALLS] == [expected[i] for i in INTEGRATION_ONLY_CALLS]
        unvalidated, bird, nowhere = answers[3], answers[8], answers[10]
        assert (unvalidated[0], json.loads(unvalidated[2])) == (200, {"greeting": "Hello, !"})
        assert (bird[0], json.loads(bird[2])) == (201, {"type": "bird", "price": 30})
        assert "access-control-allow-origin" not in nowhere[1]


def _check_aws_behaviour(deployment: Deployment, backend: PetsBackend) -> None:
    def call(method: str, path: str, headers: dict[str, str] | None = None, body: Any = None):
        return deployment.call(method, path, headers or {}, body)

    # Lambda proxy: the event names the resource, the path and the stage; the function's headers.
    hello = call("GET", "/hello?name=Ana")
    assert hello.status_code == 200
    assert hello.headers["x-handler"] == "hello"
    assert hello.json() == {"resource": "/hello", "path": "/hello", "stage": STAGE, "name": "Ana"}

    # Lambda non-proxy: the request template is the event, the response template the answer; an
    # error whose message matches `.*not found.*` selects 404 and its template.
    greeting = call("GET", "/greeting?name=Ana")
    assert (greeting.status_code, greeting.json()) == (200, {"greeting": "Hello, Ana!"})
    assert greeting.headers["content-type"] == "application/json"
    missing = call("GET", "/greeting?name=Ana&fail=Pet%20not%20found")
    assert (missing.status_code, missing.json()) == (404, {"error": "Pet not found"})
    # The document's default validator checks parameters: AWS's message, through DEFAULT_4XX.
    unnamed = call("GET", "/greeting")
    assert (unnamed.status_code, unnamed.json()) == (
        400,
        {"message": "Missing required request parameters: [name]"},
    )
    assert unnamed.headers["access-control-allow-origin"] == "*"
    assert unnamed.headers["x-amzn-errortype"] == "BadRequestException"

    # HTTP non-proxy: the path parameter and a static header reach the backend; the answer is the
    # response template's, with the backend's header mapped; a 404 selects the `404` response.
    pet = call("GET", "/pets/7")
    assert (pet.status_code, pet.json()) == (200, {"id": "7", "type": "dog"})
    assert pet.headers["x-upstream"] == "pets"
    assert backend.last_headers["x-source"] == "portico"
    gone = call("GET", "/pets/404")
    assert (gone.status_code, gone.json()) == (404, {"message": "Pet 404 not found"})
    assert "x-upstream" not in gone.headers

    # MOCK CORS preflight ("Enable CORS on a resource using the API Gateway console").
    preflight = call(
        "OPTIONS", "/pets", {"origin": "https://example.com", "access-control-request-method": "POST"}
    )
    assert (preflight.status_code, preflight.json()) == (200, {})
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert preflight.headers["access-control-allow-methods"] == "OPTIONS,POST"
    assert (
        preflight.headers["access-control-allow-headers"] == "Content-Type,X-Amz-Date,Authorization,X-Api-Key"
    )

    # A validated body: passed through to the function (no template) and back, 201; a bad one is
    # refused before the function with the customised BAD_REQUEST_BODY (422, its header and the
    # validator's words).
    created = call("POST", "/pets", body={"type": "cat", "price": 30})
    assert (created.status_code, created.json()) == (201, {"type": "cat", "price": 30})
    refused = call("POST", "/pets", body={"type": "bird", "price": 30})
    assert refused.status_code == 422
    assert refused.headers["x-validation"] == "failed"
    assert refused.json() == {
        "error": '[instance value ("bird") not found in enum (possible values: ["dog","cat","fish"])]'
    }

    # A binary media type: the backend's PNG bytes reach a client accepting image/png untouched.
    logo = call("GET", "/logo", {"accept": "image/png"})
    assert (logo.status_code, logo.content, logo.headers["content-type"]) == (200, PNG, "image/png")

    # No such resource: 403 Missing Authentication Token, with DEFAULT_4XX's header.
    nowhere = call("GET", "/nowhere")
    assert (nowhere.status_code, nowhere.json()) == (403, {"message": "Missing Authentication Token"})
    assert nowhere.headers["access-control-allow-origin"] == "*"


# ---------------------------------------------------------------------------------------- problems


def _problems(tmp_path: Path, document: dict[str, Any]) -> str:
    """What `portico check` says of `document` (it must refuse it)."""
    path = written(tmp_path, "broken.json", document)
    result = run_portico("check", str(path))
    assert result.returncode == 2, result.stdout
    assert "Traceback" not in result.stderr
    return result.stderr


def _integration(document: dict[str, Any], path: str, verb: str) -> dict[str, Any]:
    return document["paths"][path][verb]["x-amazon-apigateway-integration"]


def _set_integration_type(document, value):
    _integration(document, "/pets/{petId}", "get")["type"] = value


def _unknown_validator(document, value):
    document["paths"]["/pets"]["post"]["x-amazon-apigateway-request-validator"] = "strict"


def _response_without_status(document, value):
    del _integration(document, "/greeting", "get")["responses"][".*not found.*"]["statusCode"]


def _undeclared_status(document, value):
    _integration(document, "/greeting", "get")["responses"][".*not found.*"]["statusCode"] = "418"


def _no_integration(document, value):
    del document["paths"]["/hello"]["get"]["x-amazon-apigateway-integration"]


def _unknown_scheme(document, value):
    document["paths"]["/hello"]["get"]["security"] = [{"cognito": []}]


def _bad_gateway_response(document, value):
    document["x-amazon-apigateway-gateway-responses"]["DEFAULT_4XX"]["statusCode"] = "99"


def _unregistered_function(document, value):
    document["x-portico"] = {
        "functions": {"raises": FUNCTIONS["raises"], "echo_event": FUNCTIONS["echo_event"]}
    }


def _http_swagger(document, value):
    document.clear()
    document.update(swagger_petstore())
    document["x-portico"]["protocolType"] = "HTTP"


def _bad_handler(document, value):
    document["x-portico"]["functions"] = {**FUNCTIONS, "hello": "not a handler"}


def _typo_member(document, value):
    _integration(document, "/hello", "get")["timeoutInMilis"] = 1000


@pytest.mark.parametrize(
    ("breaks", "where", "reason"),
    [
        (
            _set_integration_type,
            "paths./pets/{petId}.get.x-amazon-apigateway-integration.type",
            "Input should be 'AWS_PROXY'",
        ),
        (
            _unknown_validator,
            "paths./pets.post.x-amazon-apigateway-request-validator",
            "no request validator 'strict'",
        ),
        (
            _response_without_status,
            "paths./greeting.get.x-amazon-apigateway-integration.responses..*not found.*.statusCode",
            "required",
        ),
        (
            _undeclared_status,
            "paths./greeting.get.x-amazon-apigateway-integration.responses..*not found.*",
            "the operation declares no responses.418",
        ),
        (_no_integration, "paths./hello.get", "no x-amazon-apigateway-integration"),
        (_unknown_scheme, "paths./hello.get.security[0].cognito", "no security scheme 'cognito'"),
        (
            _bad_gateway_response,
            "x-amazon-apigateway-gateway-responses.DEFAULT_4XX.statusCode",
            "greater than",
        ),
        (_unregistered_function, "paths./hello.get.x-amazon-apigateway-integration", "hello"),
        (_http_swagger, "x-portico.protocolType", "swagger 2.0 documents are REST APIs"),
        (_bad_handler, "x-portico.functions.hello.handler", "expected `module.path:attribute`"),
        (_typo_member, "paths./hello.get.x-amazon-apigateway-integration.timeoutInMilis", "not a member"),
    ],
)
def test_a_malformed_document_names_the_field_and_the_reason(tmp_path, breaks, where, reason):
    document = petstore("http://127.0.0.1:9")
    breaks(document, None)
    message = _problems(tmp_path, document)
    assert str(tmp_path / "broken.json") in message
    assert f"- {where}: " in message, message
    assert reason in message.split(f"- {where}: ", 1)[1].splitlines()[0], message


def test_which_documents_are_rest_apis():
    from portico.config.loader import parse_config

    route = {"x-amazon-apigateway-integration": {"type": "aws_proxy", "uri": "hello", "httpMethod": "POST"}}
    http_api = {"openapi": "3.0.1", "info": {"title": "t"}, "paths": {"/a": {"get": route}}}
    assert parse_config(json.dumps(http_api)).apis[0].protocol == "HTTP"
    told = {**http_api, "x-portico": {"protocolType": "REST"}}
    assert parse_config(json.dumps(told)).apis[0].protocol == "REST"
    assert (
        parse_config(json.dumps({**http_api, "x-portico": {"protocolType": "HTTP"}})).apis[0].protocol
        == "HTTP"
    )
    swagger = {"swagger": "2.0", "info": {"title": "t"}, "basePath": "/v1", "paths": {"/a": {"get": route}}}
    config = parse_config(json.dumps(swagger))
    assert (config.apis[0].protocol, config.apis[0].stages[0].name) == ("REST", "v1")
    for extension in (
        {"x-amazon-apigateway-binary-media-types": ["image/png"]},
        {"x-amazon-apigateway-api-key-source": "HEADER"},
    ):
        assert parse_config(json.dumps({**http_api, **extension})).apis[0].protocol == "REST"
    keyed = {
        **http_api,
        "components": {
            "securitySchemes": {"api_key": {"type": "apiKey", "name": "x-api-key", "in": "header"}}
        },
        "paths": {"/a": {"get": {**route, "security": [{"api_key": []}]}}},
    }
    rest = parse_config(json.dumps(keyed)).apis[0]
    assert (rest.protocol, rest.routes[0].apiKeyRequired, rest.stages[0].name) == ("REST", True, "prod")
    # The stage: a server URL's path, or x-portico's own stages.
    served = {**keyed, "servers": [{"url": "https://api.example.com/live"}]}
    assert parse_config(json.dumps(served)).apis[0].stages[0].name == "live"
    staged = {**keyed, "x-portico": {"stages": [{"stageName": "beta", "variables": {"fn": "hello"}}]}}
    stage = parse_config(json.dumps(staged)).apis[0].stages[0]
    assert (stage.name, stage.variables) == ("beta", {"fn": "hello"})


def test_portico_serve_of_a_broken_document_exits_with_the_problem(tmp_path):
    document = petstore("http://127.0.0.1:9")
    _set_integration_type(document, "htp")
    path = written(tmp_path, "broken.yaml", document)
    result = run_portico("serve", str(path), "--port", str(free_port()))
    assert result.returncode == 2
    assert f"invalid configuration in {path}" in result.stderr
    assert "paths./pets/{petId}.get.x-amazon-apigateway-integration.type: Input should be" in result.stderr
    assert "Traceback" not in result.stderr
    assert re.search(r"^portico: ", result.stderr, re.M)


# ---------------------------------------------------------------------------------------- swagger

API_KEY = "openapiRestTesterKey0123456789"
SWAGGER_FUNCTIONS = {**FUNCTIONS, "token_authorizer": "handlers.authorizers:token_authorizer"}


def swagger_petstore() -> dict[str, Any]:
    """A swagger 2.0 document with what the OpenAPI 3 one lacks: `x-amazon-apigateway-any-method`
    on a greedy path, an API key requirement, a TOKEN Lambda authorizer, a body parameter whose
    model references another definition, and `basePath` naming the stage."""
    mock_ok = {
        "type": "mock",
        "requestTemplates": {"application/json": '{"statusCode": 200}'},
        "responses": {"default": {"statusCode": "200", "responseTemplates": {"application/json": "{}"}}},
    }

    def answering(template: str) -> dict[str, Any]:
        default = {**mock_ok["responses"]["default"], "responseTemplates": {"application/json": template}}
        return {**mock_ok, "responses": {"default": default}}

    ok = {"200": {"description": "200 response"}}
    return {
        "swagger": "2.0",
        "info": {"title": "portico-swagger-petstore", "version": "1"},
        "basePath": "/v1",
        "schemes": ["https"],
        "x-amazon-apigateway-request-validators": {"body": {"validateRequestBody": True}},
        "securityDefinitions": {
            "api_key": {"type": "apiKey", "name": "x-api-key", "in": "header"},
            "token": {
                "type": "apiKey",
                "name": "Authorization",
                "in": "header",
                "x-amazon-apigateway-authtype": "custom",
                "x-amazon-apigateway-authorizer": {
                    "type": "token",
                    "authorizerUri": invocation_uri("token_authorizer"),
                    "authorizerResultTtlInSeconds": 0,
                },
            },
        },
        "paths": {
            "/{proxy+}": {
                "x-amazon-apigateway-any-method": {
                    "parameters": [{"name": "proxy", "in": "path", "required": True, "type": "string"}],
                    "responses": {},
                    "x-amazon-apigateway-integration": {
                        "type": "aws_proxy",
                        "httpMethod": "POST",
                        "uri": invocation_uri("hello"),
                    },
                }
            },
            "/secure": {
                "get": {
                    "responses": ok,
                    "security": [{"api_key": []}],
                    "x-amazon-apigateway-integration": answering('{"secure": true}'),
                }
            },
            "/guarded": {
                "get": {
                    "responses": ok,
                    "security": [{"token": []}],
                    "x-amazon-apigateway-integration": answering(
                        '{"principal": "$context.authorizer.principalId"}'
                    ),
                }
            },
            "/orders": {
                "post": {
                    "parameters": [
                        {
                            "in": "body",
                            "name": "Order",
                            "required": True,
                            "schema": {"$ref": "#/definitions/Order"},
                        }
                    ],
                    "responses": ok,
                    "x-amazon-apigateway-request-validator": "body",
                    "x-amazon-apigateway-integration": answering('{"ordered": true}'),
                }
            },
        },
        "definitions": {
            "Pet": {
                "type": "object",
                "required": ["type"],
                "properties": {"type": {"type": "string", "enum": ["dog", "cat"]}},
            },
            "Order": {
                "type": "object",
                "required": ["pet"],
                "properties": {
                    "pet": {"$ref": "#/definitions/Pet"},
                    "quantity": {"type": "integer", "minimum": 1},
                },
            },
        },
        "x-portico": {
            "id": "swaggerpets",
            "functions": SWAGGER_FUNCTIONS,
            "apiKeys": [{"name": "tester", "value": API_KEY, "enabled": True}],
            "usagePlans": [
                {
                    "name": "testers",
                    "apiStages": [{"apiId": "swaggerpets", "stage": "v1"}],
                    "apiKeys": ["tester"],
                }
            ],
        },
    }


SWAGGER_CALLS: list[tuple[str, str, dict[str, str], Any]] = [
    ("GET", "/things/a/b", {}, None),
    ("DELETE", "/things", {}, None),
    ("GET", "/secure", {}, None),
    ("GET", "/secure", {"x-api-key": API_KEY}, None),
    ("GET", "/guarded", {"authorization": "allow"}, None),
    ("GET", "/guarded", {"authorization": "deny"}, None),
    ("GET", "/guarded", {}, None),
    ("POST", "/orders", {}, {"pet": {"type": "dog"}, "quantity": 2}),
    ("POST", "/orders", {}, {"pet": {"type": "bird"}}),
]


def test_a_swagger_document_imports_and_serves_alike(servers, tmp_path_factory):
    document = swagger_petstore()
    tmp = tmp_path_factory.mktemp("swagger")
    admin = start_admin_server(servers, tmp, functions=SWAGGER_FUNCTIONS)
    apigw = admin.client("apigateway")
    api_id = apigw.import_rest_api(body=json.dumps(document).encode())["id"]
    apigw.create_deployment(restApiId=api_id, stageName="v1")
    key = apigw.create_api_key(name="tester", value=API_KEY, enabled=True)
    plan = apigw.create_usage_plan(name="testers", apiStages=[{"apiId": api_id, "stage": "v1"}])
    apigw.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
    from_admin = Deployment(f"{admin.url}/v1", admin.host(api_id))
    wait_for(lambda: from_admin.call("GET", "/secure", {"x-api-key": API_KEY}, None).status_code == 200)
    from_file = Deployment(f"{servers(written(tmp, 'swagger.yaml', document)).url}/v1")

    def answers(deployment: Deployment) -> list[tuple[int, str]]:
        return [(r.status_code, r.text) for r in (deployment.call(*call) for call in SWAGGER_CALLS)]

    expected = answers(from_admin)
    assert answers(from_file) == expected
    hello = json.loads(expected[0][1])
    assert (expected[0][0], hello["resource"], hello["path"], hello["stage"]) == (
        200,
        "/{proxy+}",
        "/things/a/b",
        "v1",
    )
    assert expected[1][0] == 200  # ANY
    assert [status for status, _ in expected[2:]] == [403, 200, 200, 403, 401, 200, 400]
    assert json.loads(expected[2][1]) == {"message": "Forbidden"}
    assert json.loads(expected[4][1]) == {"principal": "user"}
    assert json.loads(expected[6][1]) == {"message": "Unauthorized"}
    assert json.loads(expected[8][1]) == {"message": "Invalid request body"}
