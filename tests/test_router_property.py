"""The Rust route trie agrees with a brute-force reference of AWS's HTTP API route selection."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portico._core import ConfigError, Router

VERBS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
LITERAL, PARAM, GREEDY = 0, 1, 2


# ---------------------------------------------------------------------------------------------
# Reference matcher: enumerate every route, keep those that match, pick the best by precedence.


def parse_route(key: str) -> tuple[str, list[tuple[int, str]]]:
    method, path = key.split(" ", 1)
    segments: list[tuple[int, str]] = []
    if path != "/":
        for seg in path[1:].split("/"):
            if seg.startswith("{") and seg.endswith("+}"):
                segments.append((GREEDY, seg[1:-2]))
            elif seg.startswith("{"):
                segments.append((PARAM, seg[1:-1]))
            else:
                segments.append((LITERAL, seg))
    return method, segments


def shape(segments: list[tuple[int, str]]) -> tuple:
    """Two routes with the same shape and method are duplicates (variable names do not count)."""
    return tuple((kind, value if kind == LITERAL else "") for kind, value in segments)


def match_segments(segments: list[tuple[int, str]], path: str) -> dict[str, str] | None:
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    request = [] if path == "/" else path[1:].split("/")
    params: dict[str, str] = {}
    for i, (kind, value) in enumerate(segments):
        if i >= len(request):
            return None
        if kind == LITERAL:
            if request[i] != value:
                return None
        elif kind == PARAM:
            if request[i] == "":
                return None
            params[value] = request[i]
        else:
            if request[i] == "":
                return None
            params[value] = "/".join(request[i:])
            return params
    return params if len(segments) == len(request) else None


def reference_lookup(routes: dict[str, int], method: str, path: str) -> tuple[int, dict[str, str]] | None:
    best = None
    for key, route_id in routes.items():
        route_method, segments = parse_route(key)
        if route_method != "ANY" and route_method != method:
            continue
        params = match_segments(segments, path)
        if params is None:
            continue
        # Lexicographic: literal < param < greedy at each segment, then explicit method < ANY.
        rank = (tuple(kind for kind, _ in segments), route_method == "ANY")
        if best is None or rank < best[0]:
            best = (rank, route_id, params)
    return None if best is None else (best[1], best[2])


# ---------------------------------------------------------------------------------------------
# Strategies

literal = st.sampled_from(["a", "b", "c", "pets", "a%20b"])


@st.composite
def route_keys(draw) -> str:
    method = draw(st.sampled_from(["GET", "POST", "HEAD", "OPTIONS", "ANY", "ANY"]))
    n = draw(st.integers(0, 4))
    segments = []
    for i in range(n):
        kind = draw(
            st.sampled_from([LITERAL, LITERAL, PARAM, GREEDY] if i == n - 1 else [LITERAL, LITERAL, PARAM])
        )
        suffix = draw(st.sampled_from(["x", "y"]))
        if kind == LITERAL:
            segments.append(draw(literal))
        elif kind == PARAM:
            segments.append(f"{{v{i}{suffix}}}")
        else:
            segments.append(f"{{g{suffix}+}}")
    return f"{method} /" + "/".join(segments)


@st.composite
def request_paths(draw) -> str:
    segs = draw(st.lists(st.sampled_from(["a", "b", "c", "pets", "a%20b", "", "zz"]), max_size=6))
    return "/" + "/".join(segs) + draw(st.sampled_from(["", "", "/"]))


def path_for(data, key: str) -> str:
    """A request path built from a route key (so that it usually matches it or a sibling)."""
    parts = []
    for kind, value in parse_route(key)[1]:
        if kind == LITERAL:
            parts.append(value)
        elif kind == PARAM:
            parts.append(data.draw(st.sampled_from(["a", "b", "7", "a%2Fb"])))
        else:
            parts.extend(data.draw(st.lists(st.sampled_from(["a", "pets", "x", ""]), min_size=1, max_size=3)))
    return "/" + "/".join(parts) + data.draw(st.sampled_from(["", "/"]))


request_methods = st.sampled_from([*VERBS, "ANY", "BREW", "get"])


@settings(max_examples=400, deadline=None)
@given(keys=st.lists(route_keys(), min_size=1, max_size=14), data=st.data())
def test_router_agrees_with_reference(keys, data):
    requests = data.draw(st.lists(st.tuples(request_methods, request_paths()), max_size=10))
    for _ in range(10):
        key = data.draw(st.sampled_from(keys))
        method = data.draw(st.one_of(st.just(key.split(" ")[0]), request_methods))
        requests.append((method, path_for(data, key)))
    router = Router()
    accepted: dict[str, int] = {}
    seen: set[tuple] = set()
    for i, key in enumerate(keys):
        method, segments = parse_route(key)
        ident = (method, shape(segments))
        if ident in seen:
            with pytest.raises(ConfigError):
                router.insert(key, i)
            continue
        router.insert(key, i)
        seen.add(ident)
        accepted[key] = i
    for method, path in requests:
        assert router.lookup(method, path) == reference_lookup(accepted, method, path), (
            method,
            path,
            accepted,
        )


# ---------------------------------------------------------------------------------------------
# Cases recorded against AWS


def make(*keys: str) -> Router:
    router = Router()
    for i, key in enumerate(keys):
        router.insert(key, i)
    return router


def test_options_falls_back_to_greedy_route():
    router = make("POST /test", "OPTIONS /{proxy+}")
    assert router.lookup("OPTIONS", "/test") == (1, {"proxy": "test"})
    assert router.lookup("POST", "/test") == (0, {})


def test_backtracks_to_root_greedy():
    router = make("GET /part1", "GET /part1/hardcoded-value", "GET /{param+}")
    assert router.lookup("GET", "/part1/random-value") == (2, {"param": "part1/random-value"})


def test_greedy_root_does_not_match_slash():
    router = make("GET /{proxy+}")
    assert router.lookup("GET", "/") is None
    assert router.lookup("GET", "/proxy-value//double-slash") == (0, {"proxy": "proxy-value//double-slash"})


def test_trailing_slash():
    router = make("GET /foo")
    assert router.lookup("GET", "/foo/") == (0, {})


def test_http_api_doc_example():
    router = make("GET /pets/dog/1", "GET /pets/dog/{id}", "GET /pets/{proxy+}", "ANY /{proxy+}")
    assert router.lookup("GET", "/pets/dog/1") == (0, {})
    assert router.lookup("GET", "/pets/dog/2") == (1, {"id": "2"})
    assert router.lookup("GET", "/pets/cat/1") == (2, {"proxy": "cat/1"})
    assert router.lookup("POST", "/test/5") == (3, {"proxy": "test/5"})
    without_root_greedy = make("GET /pets/dog/1", "GET /pets/dog/{id}", "GET /pets/{proxy+}")
    assert without_root_greedy.lookup("POST", "/test/5") is None  # the gateway then uses $default


def test_methods():
    router = make("GET /a", "ANY /a", "GET /b")
    assert router.lookup("GET", "/a") == (0, {})
    assert router.lookup("DELETE", "/a") == (1, {})
    assert router.lookup("BREW", "/a") == (1, {})
    assert router.lookup("HEAD", "/b") is None  # HEAD is never served by GET


def test_param_names_per_route():
    router = make("GET /pets/{id}", "POST /pets/{petId}")
    assert router.lookup("GET", "/pets/1") == (0, {"id": "1"})
    assert router.lookup("POST", "/pets/1") == (1, {"petId": "1"})


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("GETT /x", "unknown method"),
        ("GET x", "must start with '/'"),
        ("GET /a//b", "empty path segment"),
        ("GET /{a+}/b", "must be the last segment"),
        ("GET /{a", "malformed"),
        ("$default", "$default"),
    ],
)
def test_invalid_keys(key, reason):
    with pytest.raises(ConfigError) as info:
        Router().insert(key, 0)
    assert key in str(info.value) and reason in str(info.value)


def test_duplicate_key():
    router = make("GET /pets/{id}")
    with pytest.raises(ConfigError, match="duplicate route"):
        router.insert("GET /pets/{name}", 1)


def test_huge_paths():
    router = make("GET /a/{x}", "ANY /a/a/{rest+}")
    assert router.lookup("GET", "/a" * 10_000)[0] == 1
    assert router.lookup("GET", "/" * 20_000) is None
    assert router.lookup("GET", "/b" * 10_000) is None
