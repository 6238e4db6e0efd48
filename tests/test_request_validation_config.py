"""Request validation declared in a config file (`models`, `requestValidators`, routes'
`requestValidatorId` / `requestParameters` / `requestModels`), served by the embedded data plane;
and hypothesis: arbitrary JSON bodies (and arbitrary bytes) against a few schemas never crash the
core, and the core's verdict agrees with the `jsonschema` package's Draft4Validator."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from referencing import Registry
from referencing.jsonschema import DRAFT4

from portico.config.loader import ConfigFileError, parse_config
from portico.dataplane.build import build_dataplane
from portico.integrations.functions import FunctionRegistry

PET = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 8, "pattern": "^[A-Za-z]"},
        "type": {"type": "string", "enum": ["dog", "cat", "fish"]},
        "price": {"type": "number", "minimum": 25, "maximum": 500, "exclusiveMaximum": True},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    },
    "required": ["name", "type"],
    "additionalProperties": False,
}
# The schemas the property test draws from: every draft 4 keyword family, and `$ref`s between
# models by URI and by name.
SCHEMAS: dict[str, dict[str, Any]] = {
    "Pet": PET,
    "Numbers": {
        "type": "array",
        "items": {"type": ["integer", "null"], "minimum": -5, "maximum": 5, "multipleOf": 1},
        "minItems": 1,
        "maxItems": 4,
    },
    "Choice": {
        "anyOf": [{"type": "string", "maxLength": 3}, {"type": "boolean"}],
        "not": {"enum": ["no", False]},
    },
    "Exclusive": {
        "oneOf": [
            {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
            {"type": "object", "properties": {"b": {"type": "string"}}, "required": ["b"]},
        ],
        "minProperties": 1,
        "maxProperties": 2,
        "patternProperties": {"^x-": {"type": "string"}},
    },
    "Order": {
        "type": "object",
        "properties": {
            "pet": {"$ref": "https://apigateway.amazonaws.com/restapis/shop/models/Pet"},
            "others": {"type": "array", "items": {"$ref": "Pet"}, "uniqueItems": True},
            "count": {"type": "integer"},
        },
        "required": ["pet"],
    },
}


def _config() -> str:
    routes = [
        {
            "routeKey": f"POST /{name.lower()}",
            "integration": {"type": "MOCK", "statusCode": 200, "body": "passed"},
            "requestValidatorId": "body",
            "requestModels": {"application/json": name},
        }
        for name in SCHEMAS
    ]
    routes += [
        {
            "routeKey": "GET /pets/{petId}",
            "integration": {"type": "MOCK", "statusCode": 200, "body": "passed"},
            "requestValidatorId": "all",
            "requestParameters": {
                "method.request.path.petId": True,
                "method.request.querystring.q": True,
                "method.request.header.x-id": True,
                "method.request.querystring.optional": False,
            },
            "requestModels": {"$default": "Error"},
        },
        {
            "routeKey": "POST /anything",
            "integration": {"type": "MOCK", "statusCode": 200, "body": "passed"},
            "requestModels": {"application/json": "Pet"},
        },
    ]
    api = {
        "name": "shop",
        "id": "shop",
        "protocolType": "REST",
        "stages": [{"name": "prod"}],
        "models": {
            name: {"schema": json.dumps(schema) if name == "Order" else schema}
            for name, schema in SCHEMAS.items()
        },
        "requestValidators": {
            "body": {"validateRequestBody": True},
            "all": {"validateRequestBody": True, "validateRequestParameters": True},
        },
        "routes": routes,
        "gatewayResponses": {
            "BAD_REQUEST_BODY": {
                "responseTemplates": {
                    "application/json": '{"message": $context.error.messageString, '
                    '"why": "$context.error.validationErrorString"}'
                }
            }
        },
    }
    return yaml.safe_dump({"apis": [api]}, sort_keys=False)


class Client:
    """The embedded data plane on an event loop of its own, called synchronously (hypothesis'
    examples are plain functions)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        app = build_dataplane(parse_config(_config()), registry=FunctionRegistry())
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shop")

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.loop.run_until_complete(self.client.request(method, path, **kwargs))

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()


@pytest.fixture(scope="module")
def shop():
    client = Client()
    yield client
    client.close()


def test_a_config_file_declares_models_validators_and_methods(shop):
    ok = shop.request("POST", "/prod/pet", json={"name": "Rex", "type": "dog", "price": 30})
    assert (ok.status_code, ok.text) == (200, "passed")
    refused = shop.request("POST", "/prod/pet", json={"name": "Rex", "type": "cow"})
    assert refused.status_code == 400
    assert refused.json() == {
        "message": "Invalid request body",
        "why": '[instance value ("cow") not found in enum (possible values: ["dog","cat","fish"])]',
    }
    order = {"pet": {"name": "Rex", "type": "dog"}, "others": [{"name": "Ada", "type": "cat"}]}
    assert shop.request("POST", "/prod/order", json=order).status_code == 200
    order["others"].append({"name": "Ada", "type": "cat"})
    assert "duplicate" in shop.request("POST", "/prod/order", json=order).json()["why"]

    missing = shop.request("GET", "/prod/pets/1")
    assert (missing.status_code, missing.json()) == (
        400,
        {"message": "Missing required request parameters: [x-id, q]"},
    )
    assert missing.headers["x-amzn-errortype"] == "BadRequestException"
    found = shop.request("GET", "/prod/pets/1?q=a", headers={"x-id": "1"})
    assert found.status_code == 200
    # `$default` applies whatever the media type: the default Error model ({"message": string}).
    typed = shop.request(
        "GET",
        "/prod/pets/1?q=a",
        headers={"x-id": "1", "content-type": "text/plain"},
        content=b'{"message": 1}',
    )
    assert typed.status_code == 400
    # No validator: not validated.
    assert shop.request("POST", "/prod/anything", content=b"not json").status_code == 200


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda api: api["routes"][0].update(requestValidatorId="nope"), "unknown request validator 'nope'"),
        (
            lambda api: api["routes"][0].update(requestModels={"application/json": "Nope"}),
            "unknown model 'Nope'",
        ),
        (
            lambda api: api["routes"][0].update(requestParameters={"method.request.body.x": True}),
            "is not a method request parameter",
        ),
        (lambda api: api["models"].update({"bad-name": {"schema": {}}}), "letters and digits"),
        (lambda api: api["models"].update({"Text": {"schema": "[1, 2]"}}), "schema must be a JSON object"),
        (
            lambda api: api.update(protocolType="HTTP", stages=[{"name": "$default"}]),
            "only REST APIs have it",
        ),
    ],
)
def test_a_config_file_refuses_what_cannot_be_served(change, problem):
    doc = yaml.safe_load(_config())
    change(doc["apis"][0])
    with pytest.raises(ConfigFileError) as refused:
        parse_config(yaml.safe_dump(doc))
    assert problem in str(refused.value)


# Integers within 64 bits: the core reads JSON numbers as 64-bit integers or doubles (one past 64
# bits is a double, not an integer: docs/pipeline.md, "Request validation").
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def _json_values() -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | INT64
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.sampled_from(["dog", "cat", "fish", "no", "x-y", "Rex", "", "é", "a" * 9])
        | st.text(max_size=12)
    )
    keys = st.sampled_from(["name", "type", "price", "tags", "pet", "others", "count", "a", "b", "x-1", "z"])
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=5) | st.dictionaries(keys | st.text(max_size=5), children, max_size=5)
        ),
        max_leaves=20,
    )


def _uri(name: str) -> str:
    return f"https://apigateway.amazonaws.com/restapis/shop/models/{name}"


# The reference's copies of the models carry their URI as draft 4's `id`, so that a bare name
# (`"$ref": "Pet"`) resolves against it as the core resolves it.
_REFERENCE = {name: {**schema, "id": _uri(name)} for name, schema in SCHEMAS.items()}
_REGISTRY = Registry().with_resources((_uri(n), DRAFT4.create_resource(s)) for n, s in _REFERENCE.items())


def _reference_verdict(name: str, instance: Any) -> bool:
    """What the `jsonschema` package's Draft4Validator says of `instance`."""
    return jsonschema.Draft4Validator(_REFERENCE[name], registry=_REGISTRY).is_valid(instance)


def _strict_json(body: bytes) -> Any:
    """`body` as JSON (RFC 8259: UTF-8, no NaN or Infinity), as the core reads it."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(body.decode("utf-8"), parse_constant=refuse)


def _near(name: str) -> st.SearchStrategy[Any]:
    """Values close to `name`'s model: mostly of its shape, each part sometimes off by a little."""
    anything = _json_values()
    good_name = st.sampled_from(["Rex", "ada", "Zed", "Bo"])
    kind = st.sampled_from(["dog", "cat", "fish"])
    word = st.sampled_from(["Bartholomew", "", "7up", "cow", "no", "ok", "é"])
    price = st.integers(20, 510) | st.floats(24, 501, allow_nan=False) | st.sampled_from([25, 500, 499.5])
    shaped = st.fixed_dictionaries(
        {"name": st.one_of(good_name, good_name, word, anything), "type": st.one_of(kind, kind, word)},
        optional={
            "price": price,
            "tags": st.lists(good_name | kind, max_size=3) | st.lists(INT64, min_size=1, max_size=4),
        },
    )
    pet = st.one_of(
        shaped, shaped, shaped, st.fixed_dictionaries({"name": good_name, "type": kind, "x": anything})
    )
    return {
        "Pet": pet,
        "Numbers": st.lists(st.integers(-7, 7) | st.none() | st.floats(-6, 6, allow_nan=False), max_size=5),
        "Choice": word | st.booleans() | st.text(max_size=5),
        "Exclusive": st.dictionaries(
            st.sampled_from(["a", "b", "x-1", "x-2", "z"]), st.integers(-3, 3) | word, max_size=4
        ),
        "Order": st.fixed_dictionaries(
            {"pet": pet}, optional={"others": st.lists(pet, max_size=3), "count": price | word}
        ),
    }[name]


def _valid(name: str) -> st.SearchStrategy[Any]:
    """Values `name`'s model accepts, by construction."""
    pet = st.fixed_dictionaries(
        {
            "name": st.sampled_from(["Rex", "ada", "Zed", "Bo"]),
            "type": st.sampled_from(["dog", "cat", "fish"]),
        },
        optional={
            "price": st.integers(25, 499) | st.floats(25, 499.9),
            "tags": st.lists(st.text(max_size=3), max_size=3),
        },
    )
    return {
        "Pet": pet,
        "Numbers": st.lists(st.integers(-5, 5) | st.none(), min_size=1, max_size=4),
        "Choice": st.text(max_size=3).filter(lambda t: t != "no") | st.just(True),
        "Exclusive": st.fixed_dictionaries({"a": INT64}, optional={"x-1": st.text(max_size=3)})
        | st.fixed_dictionaries({"b": st.text(max_size=3)}, optional={"x-2": st.text(max_size=3)}),
        "Order": st.fixed_dictionaries(
            {"pet": pet},
            optional={"others": st.lists(pet, max_size=2, unique_by=json.dumps), "count": INT64},
        ),
    }[name]


@st.composite
def _bodies(draw: st.DrawFn) -> tuple[str, Any]:
    """A model's name and a body: one it accepts, one close to it, or any JSON value."""
    name = draw(st.sampled_from(sorted(SCHEMAS)))
    kind = draw(st.integers(0, 2))
    return name, draw((_valid(name), _near(name), _json_values())[kind])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_bodies())
def test_arbitrary_json_bodies_agree_with_draft4(shop, case):
    name, instance = case
    response = shop.request(
        "POST",
        f"/prod/{name.lower()}",
        content=json.dumps(instance).encode(),
        headers={"content-type": "application/json"},
    )
    expected = _reference_verdict(name, instance)
    event(f"{name} {'valid' if expected else 'invalid'}")
    assert response.status_code == (200 if expected else 400), (name, instance, response.text)
    if not expected:
        why = response.json()["why"]
        assert why.startswith("[") and why.endswith("]"), why


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(SCHEMAS)), body=st.binary(max_size=64))
def test_arbitrary_bytes_never_crash_and_only_json_passes(shop, name, body):
    response = shop.request(
        "POST", f"/prod/{name.lower()}", content=body, headers={"content-type": "application/json"}
    )
    try:
        instance = _strict_json(body) if body else {}
        expected = _reference_verdict(name, instance)
    except ValueError:
        expected = False  # not JSON (or not UTF-8): an invalid body
    assert response.status_code == (200 if expected else 400), (name, body, response.text)
