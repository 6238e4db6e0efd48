"""REST APIs' non-proxy integrations (`HTTP`, `AWS` Lambda, `MOCK`), built with boto3 through a real
`portico serve --admin-port` and called over HTTP, each answer compared with what AWS documents:
the passthrough table ("Passthrough behaviors"), integration-response selection, MOCK's
statusCode, request and response parameter mapping, templates chosen by Content-Type and Accept,
content handling ("Content type conversions in API Gateway"). HTTP integrations call a real HTTP
server of the test's own on a free loopback port."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from admin_e2e import AdminServer, invocation_uri, start_admin_server, wait_for

FUNCTIONS = {
    "echo_event": "handlers.non_proxy:echo_event",
    "raises": "handlers.non_proxy:raises",
    "binary_proxy": "handlers.non_proxy:binary_proxy",
}
INTERNAL = {"message": "Internal server error"}


# ---------------------------------------------------------------------------------------- backend


class Backend:
    """A real HTTP server: records every request it gets and answers `/status/NNN` with NNN (any
    other path: 200), a JSON body echoing the request, and headers `X-Upstream: up`, `X-Multi: a`,
    `X-Multi: b`; `/binary` answers PNG bytes (`image/png`), `/base64` their base64 (`text/plain`)."""

    PNG = b"\x89PNG\r\n\x1a\n\x00\xff"

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = {
                    "method": self.command,
                    "path": self.path,
                    "headers": [[k.lower(), v] for k, v in self.headers.items()],
                    "body": body.decode("latin-1"),
                }
                backend.requests.append(seen)
                if self.path.startswith(("/binary", "/base64")):
                    binary = self.path.startswith("/binary")
                    payload = Backend.PNG if binary else base64.b64encode(Backend.PNG)
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png" if binary else "text/plain")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                status = 200
                if self.path.startswith("/status/"):
                    status = int(self.path.split("/")[2].split("?")[0])
                payload = json.dumps({"seen": seen, "item": {"id": 7, "tags": ["a", "b"]}}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Upstream", "up")
                self.send_header("X-Multi", "a")
                self.send_header("X-Multi", "b")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def last(self) -> dict[str, Any]:
        return self.requests[-1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    server = Backend()
    yield server
    server.close()


@pytest.fixture(scope="module")
def admin(tmp_path_factory) -> Iterator[AdminServer]:
    """One `portico serve --admin-port` for the module: each test builds its own REST API."""
    from conftest import start_server

    tmp = tmp_path_factory.mktemp("non_proxy")
    started = []

    def portico(config, functions=None, workers=1, extra_args=None):
        server = start_server(config, tmp, functions, workers, extra_args)
        started.append(server)
        return server

    yield start_admin_server(portico, tmp, functions=FUNCTIONS)
    for server in started:
        server.stop()


# ---------------------------------------------------------------------------------------- helpers


class RestApi:
    """A REST API built method by method, deployed to `prod`, called through its Host."""

    def __init__(self, admin: AdminServer, name: str, **create: Any) -> None:
        self.admin = admin
        self.apigw = admin.client("apigateway")
        api = self.apigw.create_rest_api(name=name, **create)
        self.id, self.root = api["id"], api["rootResourceId"]

    def resource(self, path_part: str, parent: str | None = None) -> str:
        return self.apigw.create_resource(
            restApiId=self.id, parentId=parent or self.root, pathPart=path_part
        )["id"]

    def method(
        self,
        path_part: str,
        integration: dict[str, Any],
        responses: list[dict[str, Any]] = (),  # type: ignore[assignment]
        method_responses: dict[str, list[str]] | None = None,
        http_method: str = "GET",
        parent: str | None = None,
        request_parameters: dict[str, bool] | None = None,
    ) -> str:
        """A resource with one method: its integration, integration responses (each a
        PutIntegrationResponse's input) and method responses (status -> declared headers; by
        default one per integration response, without headers)."""
        rid = self.resource(path_part, parent)
        self.apigw.put_method(
            restApiId=self.id,
            resourceId=rid,
            httpMethod=http_method,
            authorizationType="NONE",
            **({"requestParameters": request_parameters} if request_parameters else {}),
        )
        if method_responses is None:
            method_responses = {r["statusCode"]: [] for r in responses}
        for status, headers in method_responses.items():
            self.apigw.put_method_response(
                restApiId=self.id,
                resourceId=rid,
                httpMethod=http_method,
                statusCode=status,
                responseParameters={f"method.response.header.{h}": False for h in headers},
            )
        self.apigw.put_integration(restApiId=self.id, resourceId=rid, httpMethod=http_method, **integration)
        for response in responses:
            self.apigw.put_integration_response(
                restApiId=self.id, resourceId=rid, httpMethod=http_method, **response
            )
        return rid

    def deploy(self, probe: str, method: str = "GET", **variables: str) -> None:
        """Deploy to `prod` and wait until `method probe` is served (no longer 404 or 403)."""
        self.apigw.create_deployment(restApiId=self.id, stageName="prod", variables=variables)
        wait_for(lambda: self.call(method, probe).status_code not in (403, 404), timeout=5)

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        given = kwargs.pop("headers", {})
        headers = [("host", self.admin.host(self.id)), *(given.items() if isinstance(given, dict) else given)]
        return httpx.request(method, self.admin.url + "/prod" + path, headers=headers, timeout=10, **kwargs)


def mock(templates: dict[str, str] | None = None, **more: Any) -> dict[str, Any]:
    return {"type": "MOCK", **({"requestTemplates": templates} if templates is not None else {}), **more}


def http(uri: str, method: str = "GET", **more: Any) -> dict[str, Any]:
    return {"type": "HTTP", "integrationHttpMethod": method, "uri": uri, **more}


def response(status: str, pattern: str | None = None, **more: Any) -> dict[str, Any]:
    return {"statusCode": status, **({"selectionPattern": pattern} if pattern is not None else {}), **more}


def seen_headers(backend: Backend) -> dict[str, str]:
    return dict(backend.last()["headers"])


# ---------------------------------------------------------------------------------------- MOCK


def test_mock_takes_its_status_from_the_request_template(admin):
    api = RestApi(admin, "mock-status")
    api.method(
        "ok",
        mock({"application/json": '{"statusCode": 200}'}),
        [response("200", responseTemplates={"application/json": '{"ok": true}'})],
    )
    # The form CDK writes and AWS reads: unquoted names.
    api.method(
        "js",
        mock({"application/json": "{statusCode: 404}"}),
        [response("200"), response("404", "404", responseTemplates={"application/json": '{"found": false}'})],
    )
    # No request template: the (empty) body passes through, and holds no statusCode: 500, as AWS
    # answers ("Unable to parse statusCode").
    api.method("bare", mock(), [response("200")])
    api.method("bare-post", mock(), [response("200"), response("201", "201")], http_method="POST")
    api.deploy("/ok")

    ok = api.call("GET", "/ok")
    assert (ok.status_code, ok.json(), ok.headers["content-type"]) == (200, {"ok": True}, "application/json")
    js = api.call("GET", "/js")
    assert (js.status_code, js.json()) == (404, {"found": False})
    bare = api.call("GET", "/bare")
    assert (bare.status_code, bare.json()) == (500, INTERNAL)
    assert bare.headers["x-amzn-errortype"] == "InternalServerErrorException"
    assert "Unable to parse statusCode" in admin.server.log
    # A passed-through body that names a statusCode is what MOCK reads.
    posted = api.call("POST", "/bare-post", json={"statusCode": 201})
    assert (posted.status_code, posted.text) == (201, "")


def test_mock_selection_without_a_match_or_a_method_response(admin):
    api = RestApi(admin, "mock-select")
    # No pattern matches 200 and there is no default: 500.
    api.method("nomatch", mock({"application/json": '{"statusCode": 200}'}), [response("400", r"4\d{2}")])
    # The selected status has no method response: 500 (AWS: "Output mapping refers to an invalid
    # method response").
    api.method(
        "undeclared",
        mock({"application/json": '{"statusCode": 200}'}),
        [response("201")],
        method_responses={},
    )
    api.deploy("/nomatch")
    for path in ("/nomatch", "/undeclared"):
        answer = api.call("GET", path)
        assert (answer.status_code, answer.json()) == (500, INTERNAL), path
    log = admin.server.log
    assert "No match for output mapping and no default output mapping configured" in log
    assert "Output mapping refers to an invalid method response: 201" in log


# ---------------------------------------------------------------------------------------- passthrough


@pytest.mark.parametrize("behavior", ["WHEN_NO_MATCH", "WHEN_NO_TEMPLATES", "NEVER"])
def test_every_row_of_the_passthrough_table(admin, backend, behavior):
    """Content-Type vs templates, for each passthroughBehavior: a matching template transforms; no
    match with templates defined passes through (WHEN_NO_MATCH) or answers 415; no templates at all
    passes through (WHEN_NO_MATCH, WHEN_NO_TEMPLATES) or answers 415 (NEVER)."""
    api = RestApi(admin, f"passthrough-{behavior.lower()}")
    default = [response("200")]
    api.method(
        "templated",
        http(backend.url + "/echo", "POST", passthroughBehavior=behavior,
             requestTemplates={"application/json": '{"transformed": true}'}),
        default,
        http_method="POST",
    )  # fmt: skip
    api.method(
        "untemplated",
        http(backend.url + "/echo", "POST", passthroughBehavior=behavior),
        default,
        http_method="POST",
    )
    api.deploy("/templated", "POST")

    def sent(path: str, content_type: str | None) -> tuple[int, Any]:
        headers = {"content-type": content_type} if content_type else {}
        answer = api.call("POST", path, content=b'{"original": 1}', headers=headers)
        if answer.status_code != 200:
            return answer.status_code, answer.json()
        return 200, answer.json()["seen"]["body"]

    transformed = (200, '{"transformed": true}')
    passed = (200, '{"original": 1}')
    unsupported = (415, {"message": "Unsupported Media Type"})
    # A matching template transforms, whatever the behavior (charset ignored; no Content-Type is
    # application/json).
    assert sent("/templated", "application/json") == transformed
    assert sent("/templated", "application/json; charset=UTF-8") == transformed
    assert sent("/templated", None) == transformed
    # No match, one template defined.
    assert sent("/templated", "application/xml") == (passed if behavior == "WHEN_NO_MATCH" else unsupported)
    # No template at all.
    assert sent("/untemplated", "application/xml") == (unsupported if behavior == "NEVER" else passed)
    if behavior != "WHEN_NO_MATCH":
        refused = api.call("POST", "/templated", content=b"<x/>", headers={"content-type": "application/xml"})
        assert refused.headers["x-amzn-errortype"] == "BadRequestException"


# ---------------------------------------------------------------------------------------- selection


def test_http_status_selects_the_integration_response(admin, backend):
    api = RestApi(admin, "http-select")
    responses = [
        response("200"),
        response("400", r"4\d{2}", responseTemplates={"application/json": '{"client": true}'}),
        response("502", r"5\d{2}", responseTemplates={"application/json": '{"server": true}'}),
    ]
    status = api.resource("s")
    api.method(
        "{code}",
        http(
            backend.url + "/status/{code}",
            requestParameters={"integration.request.path.code": "method.request.path.code"},
        ),
        responses,
        parent=status,
        request_parameters={"method.request.path.code": True},
    )
    api.deploy("/s/200")
    ok = api.call("GET", "/s/201")
    # The default response passes the backend's body through.
    assert (ok.status_code, ok.json()["seen"]["path"]) == (200, "/status/201")
    assert (api.call("GET", "/s/404").status_code, api.call("GET", "/s/404").json()) == (
        400,
        {"client": True},
    )
    assert (api.call("GET", "/s/503").status_code, api.call("GET", "/s/503").json()) == (
        502,
        {"server": True},
    )
    # 302 matches no pattern: the default answers it, with the default's status.
    assert api.call("GET", "/s/302").status_code == 200

    only = RestApi(admin, "http-no-default")
    only.method("x", http(backend.url + "/status/200"), [response("400", r"4\d{2}")])
    only.deploy("/x")
    answer = only.call("GET", "/x")
    assert (answer.status_code, answer.json()) == (500, INTERNAL)


# ---------------------------------------------------------------------------------------- parameters


def test_request_parameters_reach_an_http_backend(admin, backend):
    """Only mapped headers go to the backend; the query string and path are the mapped ones."""
    api = RestApi(admin, "http-params")
    api.method(
        "items",
        http(
            backend.url + "/items/{id}?fixed=1",
            "POST",
            requestParameters={
                "integration.request.path.id": "method.request.querystring.item",
                "integration.request.querystring.q": "method.request.querystring.search",
                "integration.request.querystring.tag": "method.request.multivaluequerystring.tag",
                "integration.request.header.X-Client": "method.request.header.X-Client-Id",
                "integration.request.header.X-Both": "method.request.multivalueheader.X-Two",
                "integration.request.header.X-Static": "'fixed value'",
                "integration.request.header.X-Stage": "stageVariables.realm",
                "integration.request.header.X-Request": "context.requestId",
                "integration.request.header.X-Source": "context.identity.sourceIp",
                "integration.request.header.X-Name": "method.request.body.pet.name",
                "integration.request.querystring.whole": "method.request.body",
            },
        ),
        [response("200")],
        http_method="POST",
        # AWS maps only method request parameters the method declares.
        request_parameters={
            f"method.request.{name}": False
            for name in (
                "querystring.item",
                "querystring.search",
                "querystring.tag",
                "header.X-Client-Id",
                "header.X-Two",
            )
        },
    )
    api.deploy("/items", "POST", realm="blue")
    answer = api.call(
        "POST",
        "/items?item=42&search=a+b&tag=x&tag=y&ignored=1",
        headers=[("x-client-id", "c-1"), ("x-two", "1"), ("x-two", "2"), ("x-not-mapped", "no")],
        content=b'{"pet": {"name": "Rex"}}',
    )
    assert answer.status_code == 200, answer.text
    seen = backend.last()
    assert seen["method"] == "POST"
    assert (
        seen["path"]
        == "/items/42?fixed=1&q=a%20b&tag=x&tag=y&whole=%7B%22pet%22%3A%20%7B%22name%22%3A%20%22Rex%22%7D%7D"
    )
    headers = seen["headers"]
    named = dict(headers)
    assert named["x-client"] == "c-1"
    assert [v for k, v in headers if k == "x-both"] == ["1", "2"]
    assert named["x-static"] == "fixed value"
    assert named["x-stage"] == "blue"
    assert named["x-request"] == answer.headers["x-amzn-requestid"]
    assert named["x-source"] == "127.0.0.1"
    assert named["x-name"] == "Rex"
    assert named["user-agent"] == f"AmazonAPIGateway_{api.id}"
    assert named["x-amzn-apigateway-api-id"] == api.id
    assert "x-not-mapped" not in named and "x-client-id" not in named
    # The body passes through (no template).
    assert seen["body"] == '{"pet": {"name": "Rex"}}'


def test_response_parameters_map_declared_headers(admin, backend):
    api = RestApi(admin, "response-params")
    api.method(
        "r",
        http(backend.url + "/echo"),
        [
            response(
                "200",
                responseParameters={
                    "method.response.header.X-Id": "integration.response.body.item.id",
                    "method.response.header.X-Tags": "integration.response.body.item.tags",
                    "method.response.header.X-Up": "integration.response.header.X-Upstream",
                    "method.response.header.X-All": "integration.response.multivalueheader.X-Multi",
                    "method.response.header.X-Static": "'static'",
                    "method.response.header.X-Stage": "stageVariables.realm",
                    "method.response.header.X-Request": "context.requestId",
                    "method.response.header.Content-Type": "'application/vnd.test+json'",
                },
            )
        ],
        method_responses={
            "200": ["X-Id", "X-Tags", "X-Up", "X-All", "X-Static", "X-Stage", "X-Request", "Content-Type"]
        },
    )
    api.deploy("/r", realm="green")
    answer = api.call("GET", "/r")
    assert answer.status_code == 200
    h = answer.headers
    assert (h["x-id"], h["x-tags"], h["x-up"], h["x-all"]) == ("7", '["a","b"]', "up", "a,b")
    assert (h["x-static"], h["x-stage"], h["x-request"]) == ("static", "green", h["x-amzn-requestid"])
    assert h["content-type"] == "application/vnd.test+json"
    # Only mapped headers: the backend's own do not reach the client.
    assert "x-upstream" not in h and "x-multi" not in h


def test_rest_http_proxy_request_parameters(admin, backend):
    """A REST HTTP_PROXY passes the client's request on, with the mapped parameters over it."""
    api = RestApi(admin, "proxy-params")
    pets = api.resource("pets")
    api.method(
        "{petId}",
        {
            "type": "HTTP_PROXY",
            "integrationHttpMethod": "ANY",
            "uri": backend.url + "/animals/{id}",
            "requestParameters": {
                "integration.request.path.id": "method.request.path.petId",
                "integration.request.header.X-Realm": "stageVariables.realm",
                "integration.request.header.X-Client": "method.request.header.X-Who",
                "integration.request.querystring.added": "'yes'",
            },
        },
        parent=pets,
        request_parameters={"method.request.path.petId": True, "method.request.header.X-Who": False},
    )
    api.deploy("/pets/1", realm="red")
    answer = api.call("GET", "/pets/9?q=1", headers={"x-who": "me", "x-kept": "k"})
    assert answer.status_code == 200
    seen = backend.last()
    assert seen["path"] == "/animals/9?q=1&added=yes"
    named = dict(seen["headers"])
    assert (named["x-realm"], named["x-client"], named["x-kept"]) == ("red", "me", "k")


# ---------------------------------------------------------------------------------------- templates


def test_response_template_chosen_by_accept(admin, backend):
    api = RestApi(admin, "by-accept")
    api.method(
        "page",
        http(backend.url + "/echo"),
        [
            response(
                "200",
                responseTemplates={"text/html": "<p>hello</p>", "application/json": '{"hello": true}'},
            )
        ],
    )
    api.method("raw", http(backend.url + "/echo"), [response("200")])
    api.deploy("/page")
    html = api.call("GET", "/page", headers={"accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert (html.text, html.headers["content-type"]) == ("<p>hello</p>", "text/html")
    plain = api.call("GET", "/page")
    assert (plain.json(), plain.headers["content-type"]) == ({"hello": True}, "application/json")
    # No template for the first accepted type: the first template.
    other = api.call("GET", "/page", headers={"accept": "application/xml"})
    assert other.text == "<p>hello</p>"
    # No templates: the backend's body passes, as application/json.
    raw = api.call("GET", "/raw", headers={"accept": "text/html"})
    assert raw.json()["item"]["id"] == 7
    assert raw.headers["content-type"] == "application/json"


def test_vtl_templates_see_the_request_and_set_overrides(admin, backend):
    """Templates holding VTL are rendered by the Python side with `$input`, `$context` and
    `$stageVariables` built by the core; their overrides apply after the parameter mapping."""
    api = RestApi(admin, "vtl")
    pets = api.resource("pets")
    api.method(
        "{petId}",
        http(
            backend.url + "/pets/{id}",
            "POST",
            requestParameters={
                "integration.request.path.id": "method.request.path.petId",
                "integration.request.header.X-Mapped": "'mapped'",
            },
            requestTemplates={
                "application/json": (
                    "#set($pet = $input.path('$.pet'))\n"
                    '#set($context.requestOverride.header.X-Mapped = "overridden")\n'
                    "#set($context.requestOverride.querystring.from = $context.stage)\n"
                    '{"name": "$pet.name", "legs": $input.json(\'$.pet.legs\'),'
                    ' "id": "$input.params(\'petId\')", "q": "$input.params(\'q\')",'
                    ' "agent": "$input.params().header.get(\'User-Agent\')",'
                    ' "method": "$context.httpMethod", "resource": "$context.resourcePath",'
                    ' "requestId": "$context.requestId", "ip": "$context.identity.sourceIp",'
                    ' "realm": "$stageVariables.realm"}'
                )
            },
        ),
        [
            response(
                "200",
                responseTemplates={
                    "application/json": (
                        "#set($context.responseOverride.status = 201)\n"
                        "#set($context.responseOverride.header.X-Item = \"$input.path('$.item.id')\")\n"
                        "{\"itemId\": $input.json('$.item.id'), \"sent\": $input.json('$.seen.body'),"
                        ' "overridden": "$context.requestOverride.header.X-Mapped"}'
                    )
                },
            )
        ],
        parent=pets,
        http_method="POST",
        request_parameters={"method.request.path.petId": True},
    )
    api.deploy("/pets/1", "POST", realm="blue")
    answer = api.call(
        "POST", "/pets/5?q=find", json={"pet": {"name": "Rex", "legs": 4}}, headers={"user-agent": "tester/1"}
    )
    assert answer.status_code == 201, answer.text
    assert answer.headers["x-item"] == "7"
    seen = backend.last()
    assert seen["path"] == "/pets/5?from=prod"
    assert dict(seen["headers"])["x-mapped"] == "overridden"
    sent = json.loads(seen["body"])
    assert sent == {
        "name": "Rex",
        "legs": 4,
        "id": "5",
        "q": "find",
        "agent": "tester/1",
        "method": "POST",
        "resource": "/pets/{petId}",
        "requestId": answer.headers["x-amzn-requestid"],
        "ip": "127.0.0.1",
        "realm": "blue",
    }
    body = answer.json()
    assert body["itemId"] == 7 and json.loads(body["sent"]) == sent
    assert body["overridden"] == "overridden"


def test_a_template_that_fails_answers_500_and_is_logged(admin):
    api = RestApi(admin, "broken-template")
    api.method(
        "broken",
        mock({"application/json": '{"statusCode": 200}'}),
        [response("200", responseTemplates={"application/json": "#foreach($x in [1, 2]) no end"})],
    )
    api.deploy("/broken")
    answer = api.call("GET", "/broken")
    assert (answer.status_code, answer.json()) == (500, INTERNAL)
    assert answer.headers["x-amzn-errortype"] == "InternalServerErrorException"
    line = next(line for line in admin.server.log.splitlines() if f"REST API {api.id} GET /broken" in line)
    assert 'the response template for "application/json" failed' in line


# ---------------------------------------------------------------------------------------- Lambda


def test_lambda_non_proxy_event_is_the_request_template_output(admin):
    api = RestApi(admin, "lambda-event")
    lambda_integration = {"type": "AWS", "integrationHttpMethod": "POST", "uri": invocation_uri("echo_event")}
    api.method(
        "templated",
        {**lambda_integration, "requestTemplates": {"application/json": '{"asked": "$input.params(\'q\')"}'}},
        [response("200")],
    )
    # A response template sees the invocation's request id as $context.awsEndpointRequestId.
    api.method(
        "invocation",
        lambda_integration,
        [response("200", responseTemplates={"application/json": '"$context.awsEndpointRequestId"'})],
    )
    api.method("passed", lambda_integration, [response("200")], http_method="POST")
    api.deploy("/templated")
    answer = api.call("GET", "/templated?q=pets")
    assert (answer.status_code, answer.json()) == (200, {"asked": "pets"})
    assert answer.headers["content-type"] == "application/json"
    invocation = api.call("GET", "/invocation").json()
    assert len(invocation) == 36 and invocation.count("-") == 4  # a UUID, Lambda's request id
    # No template: the body passes through as the event.
    passed = api.call("POST", "/passed", json={"message": "hello world"})
    assert (passed.status_code, passed.json()) == (200, {"message": "hello world"})


def test_lambda_errors_select_by_error_message(admin):
    """AWS's recorded case: "Error: Raising four hundred ..." matches `.*four hundred.*` (405) and
    `.+` (502), and 405 answers; a success takes the default whatever the patterns (`200` never
    matches one); an error no pattern matches takes the default with Lambda's error JSON."""
    api = RestApi(admin, "lambda-select")
    integration = {
        "type": "AWS",
        "integrationHttpMethod": "POST",
        "uri": invocation_uri("raises"),
        "requestTemplates": {"application/json": '{"raise": "$util.urlDecode($input.params(\'m\'))"}'},
    }
    api.method(
        "fn",
        integration,
        [
            response("200"),
            response(
                "405",
                ".*four hundred.*",
                responseTemplates={"application/json": '{"error": "$input.path(\'$.errorMessage\')"}'},
            ),
            response("502", ".+"),
            response("400", "200"),
        ],
    )
    api.method("plain", integration, [response("200"), response("400", "never")])
    api.deploy("/fn")
    ok = api.call("GET", "/fn")
    assert (ok.status_code, ok.json()) == (200, {"returned": {"raise": ""}})
    four = api.call("GET", "/fn?m=Error%3A+Raising+four+hundred+from+within+the+Lambda+function")
    assert (four.status_code, four.json()) == (
        405,
        {"error": "Error: Raising four hundred from within the Lambda function"},
    )
    five = api.call("GET", "/fn?m=Error%3A+five+hundred")
    assert five.status_code == 502
    assert five.json()["errorMessage"] == "Error: five hundred"
    raw = api.call("GET", "/plain?m=boom")
    assert raw.status_code == 200
    error = raw.json()
    assert list(error) == ["errorMessage", "errorType", "requestId", "stackTrace"]
    assert (error["errorMessage"], error["errorType"]) == ("boom", "ValueError")
    assert any("raise ValueError(message)" in frame for frame in error["stackTrace"])


# ---------------------------------------------------------------------------------------- binary


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def test_request_content_handling_rows(admin, backend):
    """The request table of "Content type conversions in API Gateway": a text payload passes as
    text unless CONVERT_TO_BINARY decodes it; a binary one (its Content-Type in binaryMediaTypes)
    passes as bytes unless CONVERT_TO_TEXT encodes it."""
    png = Backend.PNG
    for binary_types in ([], ["image/*"]):
        api = RestApi(admin, f"request-binary-{len(binary_types)}", binaryMediaTypes=binary_types)
        for handling in (None, "CONVERT_TO_BINARY", "CONVERT_TO_TEXT"):
            more = {"contentHandling": handling} if handling else {}
            api.method(
                (handling or "none").lower(), http(backend.url + "/echo", "POST", **more), [response("200")],
                http_method="POST",
            )  # fmt: skip
        api.deploy("/none", "POST")

        def sent(path: str, body: bytes, content_type: str, api: RestApi = api) -> bytes:
            answer = api.call("POST", path, content=body, headers={"content-type": content_type})
            assert answer.status_code == 200, (path, answer.text)
            return answer.json()["seen"]["body"].encode("latin-1")

        text = _b64(png)
        # Text data (whatever binaryMediaTypes says of other types).
        assert sent("/none", text, "text/plain") == text
        assert sent("/convert_to_binary", text, "text/plain") == png
        assert sent("/convert_to_text", text, "text/plain") == text
        if binary_types:
            # Binary data: its type is one of binaryMediaTypes.
            assert sent("/none", png, "image/png") == png
            assert sent("/convert_to_binary", png, "image/png") == png
            assert sent("/convert_to_text", png, "image/png") == text
        # CONVERT_TO_BINARY of what is not base64: AWS's 500.
        bad = api.call(
            "POST", "/convert_to_binary", content=b"not base64!", headers={"content-type": "text/plain"}
        )
        assert (bad.status_code, bad.json()) == (500, INTERNAL)


def test_response_content_handling_rows(admin, backend):
    """The response table: the integration's payload is binary when its Content-Type is one of
    binaryMediaTypes, the client takes binary when the first type of its Accept is."""
    png, text = Backend.PNG, _b64(Backend.PNG)
    for binary_types in ([], ["image/*"]):
        api = RestApi(admin, f"response-binary-{len(binary_types)}", binaryMediaTypes=binary_types)
        for source in ("binary", "base64"):
            for handling in (None, "CONVERT_TO_BINARY", "CONVERT_TO_TEXT"):
                more = {"contentHandling": handling} if handling else {}
                api.method(
                    f"{source}-{(handling or 'none').lower()}",
                    http(f"{backend.url}/{source}"),
                    [response("200", **more)],
                )
        api.deploy("/base64-none")

        def got(path: str, accept: str, api: RestApi = api) -> bytes:
            answer = api.call("GET", path, headers={"accept": accept})
            assert answer.status_code == 200, (path, accept, answer.text)
            return answer.content

        if not binary_types:
            # binaryMediaTypes undefined: only CONVERT_TO_BINARY changes the payload.
            for accept in ("text/plain", "image/png"):
                assert got("/base64-none", accept) == text
                assert got("/base64-convert_to_binary", accept) == png
                assert got("/base64-convert_to_text", accept) == text
            continue
        # Text data, a text type accepted.
        assert got("/base64-none", "text/plain") == text
        assert got("/base64-convert_to_binary", "text/plain") == png
        assert got("/base64-convert_to_text", "text/plain") == text
        # Text data, a binary type accepted.
        assert got("/base64-none", "image/png") == png
        assert got("/base64-convert_to_binary", "image/png") == png
        assert got("/base64-convert_to_text", "image/png") == text
        # Binary data, a text type accepted.
        assert got("/binary-none", "text/plain") == text
        assert got("/binary-convert_to_binary", "text/plain") == png
        assert got("/binary-convert_to_text", "text/plain") == text
        # Binary data, a binary type accepted (only the first type of Accept counts).
        assert got("/binary-none", "image/png,text/plain") == png
        assert got("/binary-convert_to_binary", "image/webp") == png
        assert got("/binary-convert_to_text", "image/png") == text
        assert got("/binary-none", "text/plain,image/png") == text


def test_proxy_integrations_follow_the_binary_rows(admin):
    """AWS_PROXY: a request whose type is one of binaryMediaTypes reaches the function
    base64-encoded; a base64 answer reaches a client accepting a binary type as bytes, any other as
    its base64 text."""
    api = RestApi(admin, "proxy-binary", binaryMediaTypes=["image/png"])
    api.method(
        "img",
        {"type": "AWS_PROXY", "integrationHttpMethod": "POST", "uri": invocation_uri("binary_proxy")},
        http_method="POST",
    )
    api.deploy("/img", "POST")
    binary = api.call(
        "POST", "/img", content=Backend.PNG, headers={"content-type": "image/png", "accept": "image/png"}
    )
    assert (binary.headers["x-request-base64"], binary.content) == ("true", Backend.PNG)
    text = api.call(
        "POST", "/img", content=b"{}", headers={"content-type": "application/json", "accept": "text/plain"}
    )
    assert (text.headers["x-request-base64"], text.content) == ("false", _b64(Backend.PNG))


# ---------------------------------------------------------------------------------------- config file


def test_a_config_file_declares_non_proxy_integrations(portico, backend):
    """The YAML config file's REST APIs have the same non-proxy integrations, with AWS's member
    names (integrationResponses and methodResponses keyed by status code)."""
    config = {
        "apis": [
            {
                "name": "file-rest",
                "id": "filerest",
                "protocolType": "REST",
                "binaryMediaTypes": ["image/*"],
                "routes": [
                    {
                        "routeKey": "GET /mock/{id}",
                        "integration": {
                            "type": "MOCK",
                            "requestTemplates": {"application/json": "{\"statusCode\": $input.params('id')}"},
                            "integrationResponses": {
                                "200": {
                                    "responseTemplates": {
                                        "application/json": '{"id": "$input.params(\'id\')"}'
                                    },
                                    "responseParameters": {
                                        "method.response.header.X-Stage": "stageVariables.realm"
                                    },
                                },
                                "404": {"selectionPattern": "404"},
                            },
                        },
                        "methodResponses": {
                            "200": {"responseParameters": {"method.response.header.X-Stage": False}},
                            "404": {},
                        },
                    },
                    {
                        "routeKey": "POST /http",
                        "integration": {
                            "type": "HTTP",
                            "integrationMethod": "PUT",
                            "uri": backend.url + "/http",
                            "requestParameters": {"integration.request.header.X-From": "'file'"},
                            "integrationResponses": {"200": {}},
                        },
                        "methodResponses": {"200": {}},
                    },
                    {
                        "routeKey": "GET /lambda",
                        "integration": {
                            "type": "AWS",
                            "uri": invocation_uri("echo_event"),
                            "requestTemplates": {"application/json": '{"q": "$input.params(\'q\')"}'},
                            "integrationResponses": {"200": {}},
                        },
                        "methodResponses": {"200": {}},
                    },
                    {
                        "routeKey": "GET /image",
                        "integration": {
                            "type": "HTTP",
                            "uri": backend.url + "/base64",
                            "integrationResponses": {"200": {"contentHandling": "CONVERT_TO_BINARY"}},
                        },
                        "methodResponses": {"200": {}},
                    },
                ],
                "stages": [{"stageName": "prod", "variables": {"realm": "file"}}],
            }
        ]
    }
    server = portico(config, functions=FUNCTIONS)
    url = server.url + "/prod"
    found = httpx.get(url + "/mock/200")
    assert (found.status_code, found.json(), found.headers["x-stage"]) == (200, {"id": "200"}, "file")
    assert httpx.get(url + "/mock/404").status_code == 404
    sent = httpx.post(url + "/http", content=b"hello")
    assert sent.status_code == 200
    seen = backend.last()
    assert (seen["method"], seen["body"], dict(seen["headers"])["x-from"]) == ("PUT", "hello", "file")
    assert httpx.get(url + "/lambda?q=x").json() == {"q": "x"}
    assert httpx.get(url + "/image").content == Backend.PNG


@pytest.mark.parametrize(
    ("integration", "route", "message"),
    [
        ({"integrationResponses": {"201": {}}}, {}, "declares no methodResponses.201"),
        (
            {"integrationResponses": {"200": {"responseParameters": {"method.response.header.X": "'v'"}}}},
            {"methodResponses": {"200": {}}},
            "is not declared in methodResponses.200",
        ),
        (
            {"integrationResponses": {"200": {"selectionPattern": "(?=a)"}}},
            {"methodResponses": {"200": {}}},
            "lookaround",
        ),
        (
            {
                "requestTemplates": {"application/json": '{"statusCode": 200}'},
                "requestParameters": {"integration.request.header.X": "method.request.nothing"},
            },
            {},
            "not a request mapping expression",
        ),
    ],
)
def test_config_file_non_proxy_checks(tmp_path, integration, route, message):
    from portico.compile.files import CompileError, compile_config
    from portico.config.loader import ConfigFileError, load_config
    from portico.integrations.functions import FunctionRegistry

    api = {
        "name": "checked",
        "protocolType": "REST",
        "routes": [{"routeKey": "GET /m", "integration": {"type": "MOCK", **integration}, **route}],
        "stages": [{"stageName": "prod"}],
    }
    path = tmp_path / "portico.yaml"
    path.write_text(json.dumps({"apis": [api]}))
    with pytest.raises((ConfigFileError, CompileError), match=message.replace(".", r"\.")):
        compile_config(load_config(path), FunctionRegistry())


# ---------------------------------------------------------------------------------------- properties

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=16,
)
# MOCK reads `statusCode` wherever it is; give it some that are there, of every kind.
BODIES = (
    JSON | st.fixed_dictionaries({"statusCode": JSON}) | st.builds(lambda n: {"statusCode": n}, st.integers())
)


@pytest.fixture(scope="module")
def fuzzed(admin) -> RestApi:
    api = RestApi(admin, "fuzzed")
    # No request template: the body passes, and MOCK reads its statusCode from it.
    statuses = [response("200"), response("404", r"4\d\d"), response("500", r"5\d\d")]
    api.method("mock", mock(), statuses, http_method="POST")
    # The body is the Lambda's event, which it returns: the response mapping reads whatever it is.
    api.method(
        "lambda",
        {"type": "AWS", "integrationHttpMethod": "POST", "uri": invocation_uri("echo_event")},
        [
            response(
                "200",
                responseParameters={"method.response.header.X-A": "integration.response.body.a[0]"},
                responseTemplates={
                    "application/json": '#set($b = $input.path(\'$\')){"a": $input.json(\'$.a\'), "b": "$b"}'
                },
            )
        ],
        method_responses={"200": ["X-A"]},
        http_method="POST",
    )
    api.deploy("/mock", "POST")
    return api


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES, raw=st.booleans())
def test_arbitrary_json_bodies_never_take_a_worker_down(admin, fuzzed, body, raw):
    """Whatever JSON (or text) a client sends, MOCK and the response mapping answer with a status
    of the method's, or AWS's 500, and the worker goes on serving."""
    content = (json.dumps(body) if not raw else str(body)).encode()
    answer = fuzzed.call("POST", "/mock", content=content)
    assert answer.status_code in (200, 404, 500), answer.text
    echoed = fuzzed.call("POST", "/lambda", content=content)
    assert echoed.status_code in (200, 500), echoed.text
    assert admin.server.process.poll() is None


@settings(max_examples=300, deadline=None)
@given(pattern=st.text(alphabet="\\.()[]{}*+?|^$&-:<=!>,aAbBdDwWsSpPQEkz0129 ", max_size=24))
def test_any_selection_pattern_is_translated_or_refused(pattern):
    """A selectionPattern the core cannot translate is refused when compiling (the route answers
    500), never a failure of the whole deployment or of a worker."""
    from portico import _core
    from portico.compile import spec as S

    spec = S.non_proxy(
        S.mock_backend(), responses=[S.integration_response(200, pattern)], method_responses=[]
    )
    problem = _core.integration_problem(S.dumps(spec), "GET /", "api")  # type: ignore[arg-type]
    assert problem is None or "selectionPattern" in problem


async def test_the_embedded_app_renders_templates_too():
    """The embedded ASGI app (`build_dataplane`) runs the same pipeline: its templates are compiled
    with the deployment and rendered by its own Python side, and a reload brings new ones."""
    from portico.compile.files import compile_config
    from portico.config.loader import parse_config
    from portico.dataplane.build import build_dataplane
    from portico.integrations.functions import FunctionRegistry

    def config(greeting: str) -> str:
        return f"""
apis:
  - name: embedded-rest
    protocolType: REST
    routes:
      - routeKey: GET /hello
        integration:
          type: MOCK
          requestTemplates: {{application/json: '{{"statusCode": 200}}'}}
          integrationResponses:
            "200": {{responseTemplates: {{application/json: '{{"{greeting}": "$input.params(''who'')"}}'}}}}
        methodResponses: {{"200": {{}}}}
    stages: [{{stageName: v1}}]
"""

    app = build_dataplane(parse_config(config("hello")))
    assert len(app.user_code.templates) == 1  # compiled with the deployment, before any request
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answer = await client.get("/v1/hello?who=you")
        assert (answer.status_code, answer.json()) == (200, {"hello": "you"})
        app.reload(compile_config(parse_config(config("bonjour")), FunctionRegistry()))
        assert len(app.user_code.templates) == 1  # the old deployment's template is dropped
        answer = await client.get("/v1/hello?who=toi")
        assert answer.json() == {"bonjour": "toi"}
