"""Gateway.decide through the Python API: API/stage selection, fallbacks, throttling, swap, errors."""

from __future__ import annotations

import json
import threading

import pytest

from portico._core import ConfigError, Decided, Gateway, Verdict

HTTP_ID = "a1b2c3d4e5"
REST_ID = "Rest123456"


def spec(**overrides) -> str:
    doc = {
        "apis": [
            {
                "id": HTTP_ID,
                "kind": "http",
                "routes": [
                    "GET /pets/dog/1",
                    "GET /pets/dog/{id}",
                    "GET /pets/{proxy+}",
                    "$default",
                    "POST /limited",
                    "DELETE /never",
                ],
                "stages": [
                    {"name": "$default", "default_throttle": None, "route_throttle": {}},
                    {
                        "name": "prod",
                        "default_throttle": {"rate": 1.0, "burst": 2},
                        "route_throttle": {"DELETE /never": {"rate": 0, "burst": 10}},
                    },
                ],
            },
            {
                "id": REST_ID,
                "kind": "rest",
                "routes": ["GET /items/{id}", "ANY /{proxy+}"],
                "stages": [{"name": "v1"}],
            },
            {"id": "nodefault", "kind": "http", "routes": ["GET /a"], "stages": [{"name": "dev"}]},
        ],
        "default_api": 0,
        "account_throttle": None,
    }
    doc.update(overrides)
    return json.dumps(doc)


@pytest.fixture
def gateway() -> Gateway:
    return Gateway(spec())


def summary(v: Verdict):
    return (v.kind, v.api_index, v.stage_index, v.route_index, v.path, v.path_params)


def test_decisions_are_distinct_and_named():
    decisions = (Decided.Route, Decided.NotFound, Decided.Throttled, Decided.BadRequest)
    assert len({int(k) for k in decisions}) == 4
    assert [repr(k) for k in decisions] == [
        "Decided.Route",
        "Decided.NotFound",
        "Decided.Throttled",
        "Decided.BadRequest",
    ]
    assert issubclass(ConfigError, ValueError)


def test_host_selects_api(gateway):
    host = f"{HTTP_ID.upper()}.execute-api.us-east-1.amazonaws.com:443"
    assert summary(gateway.decide(host, "GET", "/pets/dog/2")) == (
        Decided.Route,
        0,
        0,
        1,
        "/pets/dog/2",
        {"id": "2"},
    )
    assert summary(gateway.decide(host, "GET", "/pets/dog/1")) == (
        Decided.Route,
        0,
        0,
        0,
        "/pets/dog/1",
        None,
    )
    assert summary(gateway.decide(host, "GET", "/pets/cat/1/")) == (
        Decided.Route,
        0,
        0,
        2,
        "/pets/cat/1/",
        {"proxy": "cat/1"},
    )
    v = gateway.decide("rest123456.execute-api.localhost", "GET", "/v1/items/a%20b")
    assert summary(v) == (Decided.Route, 1, 0, 0, "/items/a%20b", {"id": "a%20b"})
    assert v.retry_after_ms == 0


def test_unknown_host_uses_default_api(gateway):
    assert gateway.decide("example.com", "GET", "/pets/dog/1").api_index == 0
    assert gateway.decide("zzz.execute-api.local", "GET", "/pets/dog/1").api_index == 0
    no_default = Gateway(spec(default_api=None))
    assert summary(no_default.decide("example.com", "GET", "/pets/dog/1")) == (
        Decided.NotFound,
        -1,
        -1,
        -1,
        "/pets/dog/1",
        None,
    )


def test_default_route_fallback(gateway):
    v = gateway.decide("h", "POST", "/test/5")
    assert summary(v) == (Decided.Route, 0, 0, 3, "/test/5", None)
    assert gateway.decide("h", "GET", "/").route_index == 3
    # No $default route: not found, with the API and stage set.
    v = gateway.decide("nodefault.execute-api.x", "GET", "/dev/b")
    assert summary(v) == (Decided.NotFound, 2, 0, -1, "/b", None)


def test_stage_selection(gateway):
    assert summary(gateway.decide("h", "GET", "/prod/pets/dog/2/")) == (
        Decided.Route,
        0,
        1,
        1,
        "/pets/dog/2/",
        {"id": "2"},
    )
    assert summary(gateway.decide("h", "GET", "/prod")) == (Decided.Route, 0, 1, 3, "/", None)
    assert summary(gateway.decide("h", "GET", "/prod/")) == (Decided.Route, 0, 1, 3, "/", None)
    # "$default" is not a path prefix; anything else is the $default stage with the path unchanged.
    assert gateway.decide("h", "GET", "/$default/x").path == "/$default/x"
    assert gateway.decide("h", "GET", "/production").stage_index == 0
    # HTTP API without a $default stage needs the stage segment.
    assert summary(gateway.decide("nodefault.execute-api.x", "GET", "/a")) == (
        Decided.NotFound,
        2,
        -1,
        -1,
        "/a",
        None,
    )
    assert summary(gateway.decide("nodefault.execute-api.x", "GET", "/dev/a")) == (
        Decided.Route,
        2,
        0,
        0,
        "/a",
        None,
    )
    # REST: the first segment is always the stage.
    assert gateway.decide("rest123456.execute-api.x", "GET", "/items/1").kind == Decided.NotFound
    assert gateway.decide("rest123456.execute-api.x", "GET", "/v2/items/1").stage_index == -1


def test_path_style(gateway):
    v = gateway.decide("localhost", "GET", f"/restapis/{REST_ID}/v1/_user_request_/items/7")
    assert summary(v) == (Decided.Route, 1, 0, 0, "/items/7", {"id": "7"})
    v = gateway.decide("localhost", "GET", f"/restapis/{HTTP_ID}/%24default/_user_request_/pets/dog/1")
    assert summary(v) == (Decided.Route, 0, 0, 0, "/pets/dog/1", None)
    v = gateway.decide("localhost", "GET", f"/restapis/{HTTP_ID}/prod/_user_request_")
    assert summary(v) == (Decided.Route, 0, 1, 3, "/", None)
    assert gateway.decide("h", "GET", f"/restapis/{REST_ID.lower()}/v1/_user_request_/x").api_index == -1
    v = gateway.decide("h", "GET", f"/restapis/{REST_ID}/v9/_user_request_/x")
    assert (v.kind, v.api_index, v.stage_index) == (Decided.NotFound, 1, -1)


def test_bad_requests(gateway):
    for path in ["/%zz", "/a%2", "/a%", "pets", "", "/\udcff"]:
        assert gateway.decide("h", "GET", path).kind == Decided.BadRequest, path
    assert gateway.decide("\udcff", "\udcff", "/pets/dog/1").kind == Decided.Route  # never raises
    assert gateway.decide("h", "GET", "/pets/%2F%2f").kind == Decided.Route


def test_huge_paths(gateway):
    assert gateway.decide("h", "GET", "/a" * 10_000).route_index == 3
    assert gateway.decide("h", "GET", "/" * 20_000).route_index == 3
    v = gateway.decide("h", "GET", "/pets" * 10_000)
    assert v.route_index == 2 and len(v.path_params["proxy"]) == 5 * 10_000 - 6


def test_throttling(gateway):
    assert gateway.decide("h", "GET", "/prod/pets/dog/1").kind == Decided.Route
    assert gateway.decide("h", "GET", "/prod/pets/dog/1").kind == Decided.Route
    v = gateway.decide("h", "GET", "/prod/pets/dog/1")
    assert (v.kind, v.api_index, v.stage_index, v.route_index) == (Decided.Throttled, 0, 1, 0)
    assert 0 < v.retry_after_ms <= 1000
    assert gateway.decide("h", "GET", "/prod/pets/dog/2").kind == Decided.Route  # its own bucket
    assert gateway.decide("h", "GET", "/pets/dog/1").kind == Decided.Route  # $default stage: unthrottled
    v = gateway.decide("h", "DELETE", "/prod/never")
    assert (v.kind, v.retry_after_ms) == (Decided.Throttled, 2**64 - 1)
    # Bucket state survives a swap for keys that still exist.
    gateway.swap(spec())
    assert gateway.decide("h", "GET", "/prod/pets/dog/1").kind == Decided.Throttled


def test_account_throttle_shared_between_gateways(tmp_path):
    doc = spec(account_throttle={"rate": 0.001, "burst": 3})
    first = Gateway(doc, str(tmp_path / "b"))
    second = Gateway(doc, str(tmp_path / "b"))
    kinds = [g.decide("h", "GET", "/x").kind for g in (first, second, first, second)]
    assert kinds == [Decided.Route, Decided.Route, Decided.Route, Decided.Throttled]


def test_swap_while_deciding(gateway):
    other = json.dumps(
        {
            "apis": [{"id": "n", "kind": "http", "routes": ["GET /new"], "stages": [{"name": "$default"}]}],
            "default_api": 0,
        }
    )
    errors = []
    stop = threading.Event()

    def decide_loop():
        try:
            while not stop.is_set():
                v = gateway.decide("h", "GET", "/new")
                assert v.kind == Decided.Route and v.route_index in (0, 3)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=decide_loop) for _ in range(2)]
    for t in threads:
        t.start()
    for i in range(200):
        gateway.swap(other if i % 2 else spec())
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    gateway.swap(other)
    assert summary(gateway.decide("h", "GET", "/new")) == (Decided.Route, 0, 0, 0, "/new", None)
    with pytest.raises(ConfigError):
        gateway.swap("{")
    assert gateway.decide("h", "GET", "/new").kind == Decided.Route  # a failed swap keeps the old snapshot


def api_with(**fields) -> str:
    api = {"id": "x", "kind": "http", "routes": [], "stages": [{"name": "$default"}]}
    api.update(fields)
    return json.dumps({"apis": [api]})


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("not json", "not valid JSON"),
        (json.dumps({}), "missing field `apis`"),
        (
            api_with(routes=["GET /a", "GET /b", "POST /c", "GETT /x"]),
            'apis[0].routes[3]: "GETT /x": unknown method',
        ),
        (api_with(routes=["GET /a", "GET /a"]), 'apis[0].routes[1]: "GET /a": duplicate route'),
        (api_with(routes=["GET /{a+}/b"]), "must be the last segment"),
        (api_with(kind="soap"), "apis[0].kind"),
        (api_with(stages=[{"name": "p"}, {"name": "p"}]), 'apis[0].stages[1].name: "p": duplicate stage'),
        (
            api_with(stages=[{"name": "p", "default_throttle": {"rate": -1, "burst": 1}}]),
            "apis[0].stages[0].default_throttle.rate",
        ),
        (
            api_with(stages=[{"name": "p", "route_throttle": {"GET /nope": {"rate": 1, "burst": 1}}}]),
            'apis[0].stages[0].route_throttle: "GET /nope": no such route',
        ),
        (json.dumps({"apis": [], "default_api": 2}), "default_api"),
    ],
)
def test_config_errors(doc, message):
    with pytest.raises(ConfigError) as info:
        Gateway(doc)
    assert message in str(info.value)


def test_verdict_is_frozen(gateway):
    v = gateway.decide("h", "GET", "/pets/dog/2")
    with pytest.raises(AttributeError):
        v.kind = Decided.NotFound  # type: ignore[misc]
    assert "kind=Decided.Route" in repr(v)
