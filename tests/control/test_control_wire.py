"""The model-driven rest-json layer, without a server."""

from __future__ import annotations

import json

import pytest

from portico.control.errors import BadRequestException, NotFoundException, UnknownOperationException
from portico.control.wire import get_service, parse_query, service_for_path

v1 = get_service("apigateway")
v2 = get_service("apigatewayv2")


def test_every_operation_of_both_models_is_reachable() -> None:
    for service in (v1, v2):
        for name in service.model.operation_names:
            operation = service.operation(name)
            uri, _, query = operation.http["requestUri"].partition("?")
            path = uri.replace("{", "x").replace("+}", "").replace("}", "")
            match = service.match(operation.http["method"], path, parse_query(query))
            assert match.name == name, (name, path)


def test_decoded_segments_and_query_literals() -> None:
    match = v2.match("DELETE", "/v2/apis/abc/stages/%24default/routesettings/GET%20%2Fx%2F%7Bid%7D")
    assert match.name == "DeleteRouteSettings"
    assert match.path_params == {"apiId": "abc", "stageName": "$default", "routeKey": "GET /x/{id}"}
    assert v1.match("POST", "/restapis", parse_query("mode=import")).name == "ImportRestApi"
    assert v1.match("POST", "/restapis").name == "CreateRestApi"
    assert v1.match("PUT", "/restapis/abc", parse_query("mode=merge")).name == "PutRestApi"
    with pytest.raises(UnknownOperationException):
        v2.match("GET", "/v2/nothing")
    with pytest.raises(UnknownOperationException):
        v2.match("POST", "/v2/apis/abc")  # a path that exists, a verb that does not
    assert service_for_path("/v2/apis") == "apigatewayv2" and service_for_path("/restapis") == "apigateway"
    assert service_for_path("/v2") == "apigatewayv2" and service_for_path("/v2x") == "apigateway"


def test_parse_types_from_query_headers_and_body() -> None:
    query = parse_query("limit=5&embed=methods&embed=x&position=abc")
    params = v1.parse(v1.match("GET", "/restapis/r1/resources", query), query)
    assert params == {"restApiId": "r1", "limit": 5, "embed": ["methods", "x"], "position": "abc"}

    query = parse_query("mode=import&failonwarnings=true&basepath=ignore&endpointConfigurationTypes=REGIONAL")
    params = v1.parse(v1.match("POST", "/restapis", query), query, {}, b"openapi: 3.0.1\n")
    assert params == {
        "failOnWarnings": True,
        "parameters": {"basepath": "ignore", "endpointConfigurationTypes": "REGIONAL"},
        "body": b"openapi: 3.0.1\n",
    }

    match = v1.match("GET", "/restapis/r1/stages/prod/exports/oas30")
    params = v1.parse(match, parse_query("extensions=apigateway"), {"accept": "application/yaml"})
    assert params["accepts"] == "application/yaml" and params["parameters"] == {"extensions": "apigateway"}

    body = json.dumps({"name": "n", "protocolType": "HTTP", "corsConfiguration": {"maxAge": 5}}).encode()
    params = v2.parse(v2.match("POST", "/v2/apis"), (), {}, body)
    assert params == {"Name": "n", "ProtocolType": "HTTP", "CorsConfiguration": {"MaxAge": 5}}

    query = parse_query("failOnWarnings=nope")
    with pytest.raises(BadRequestException, match="Member must be of type boolean"):
        v2.parse(v2.match("PUT", "/v2/apis", query), query, {}, b'{"body": "x"}')
    with pytest.raises(BadRequestException, match="must be a string"):
        v2.parse(v2.match("POST", "/v2/apis"), (), {}, b'{"name": 1, "protocolType": "HTTP"}')
    with pytest.raises(BadRequestException, match="Could not parse request body into json"):
        v2.parse(v2.match("POST", "/v2/apis"), (), {}, b"[1, 2]")
    with pytest.raises(BadRequestException, match="2 validation errors detected"):
        v2.parse(v2.match("POST", "/v2/apis"), (), {}, b"{}")


def test_serialise_names_timestamps_and_payloads() -> None:
    status, headers, body = v2.serialise(
        v2.operation("CreateApi"), {"ApiId": "a1", "Name": "n", "CreatedDate": 1584883333, "Tags": None}
    )
    assert status == 201 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"apiId": "a1", "name": "n", "createdDate": "2020-03-22T13:22:13Z"}

    status, _, body = v1.serialise(
        v1.operation("GetRestApis"), {"items": [{"id": "r", "createdDate": 1584883333.0}], "position": None}
    )
    assert status == 200 and json.loads(body) == {"item": [{"id": "r", "createdDate": 1584883333}]}

    status, headers, body = v1.serialise(
        v1.operation("GetExport"),
        {"body": b"openapi: 3.0.1\n", "contentType": "application/yaml", "contentDisposition": "attachment"},
    )
    assert (status, body) == (200, b"openapi: 3.0.1\n")
    assert headers == {"Content-Type": "application/yaml", "Content-Disposition": "attachment"}

    assert v1.serialise(v1.operation("DeleteRestApi"), None) == (202, {}, b"")
    assert v2.serialise(v2.operation("DeleteApi"), None) == (204, {}, b"")


def test_errors() -> None:
    status, headers, body = v2.serialise_error(NotFoundException("gone", resourceType="Api"))
    assert status == 404 and headers["x-amzn-ErrorType"] == "NotFoundException"
    assert json.loads(body) == {"message": "gone", "resourceType": "Api"}
    from portico.control.errors import ServiceError, TooManyRequestsException

    status, headers, body = v1.serialise_error(TooManyRequestsException("slow down", retryAfterSeconds="3"))
    assert status == 429 and headers["Retry-After"] == "3" and json.loads(body) == {"message": "slow down"}
    assert v1.serialise_error(ServiceError("ConflictException", "x"))[0] == 409  # status from the model
    assert v1.serialise_error(ServiceError("Odd", "x", status=418))[0] == 418
