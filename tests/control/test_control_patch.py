"""The generic v1 patchOperations applier."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portico.control.errors import BadRequestException
from portico.control.patch import apply_patch, escape, join_pointer, split_pointer, unescape
from portico.control.wire import get_service

v1 = get_service("apigateway")
REST_API = v1.shape("RestApi")
STAGE = v1.shape("Stage")
METHOD_PATH = "/methodSettings/~1users~1{id}~1GET/throttlingBurstLimit"
ALL = ("/name", "/description", "/minimumCompressionSize", "/binaryMediaTypes/*", "/tags/*", "/policy")


def test_scalar_types_sets_and_maps() -> None:
    doc = {"id": "a", "name": "n", "binaryMediaTypes": ["a/b"]}
    out = apply_patch(
        doc,
        [
            {"op": "replace", "path": "/minimumCompressionSize", "value": "10"},
            {"op": "add", "path": "/binaryMediaTypes/image~1png"},
            {"op": "remove", "path": "/binaryMediaTypes/a~1b"},
            {"op": "add", "path": "/tags/k~0x", "value": "v"},
            {"op": "copy", "from": "/name", "path": "/description"},
            {"op": "test", "path": "/name", "value": "n"},
        ],
        REST_API,
        ALL,
    )
    assert out == {
        "id": "a",
        "name": "n",
        "description": "n",
        "minimumCompressionSize": 10,
        "binaryMediaTypes": ["image/png"],
        "tags": {"k~x": "v"},
    }
    assert doc == {"id": "a", "name": "n", "binaryMediaTypes": ["a/b"]}  # untouched
    moved = apply_patch(out, [{"op": "move", "from": "/description", "path": "/policy"}], REST_API, ALL)
    assert moved["policy"] == "n" and "description" not in moved


def test_stage_canary_copy_and_nested_types() -> None:
    paths = ("/deploymentId", "/canarySettings/*", "/variables/*", "/methodSettings/*/*", "/tracingEnabled")
    stage = {"deploymentId": "d1", "canarySettings": {"deploymentId": "d2", "percentTraffic": 10.0}}
    out = apply_patch(
        stage,
        [
            {"op": "copy", "from": "/canarySettings/deploymentId", "path": "/deploymentId"},
            {"op": "replace", "path": "/canarySettings/percentTraffic", "value": "0.5"},
            {"op": "replace", "path": "/tracingEnabled", "value": "TRUE"},
            {
                "op": "replace",
                "path": "/methodSettings/~1users~1{id}~1GET/throttlingBurstLimit",
                "value": "7",
            },
        ],
        STAGE,
        {op: paths for op in ("add", "replace", "remove", "copy")},
    )
    assert out["deploymentId"] == "d2" and out["canarySettings"]["percentTraffic"] == 0.5
    assert out["tracingEnabled"] is True
    assert out["methodSettings"] == {"/users/{id}/GET": {"throttlingBurstLimit": 7}}


def test_errors() -> None:
    with pytest.raises(BadRequestException) as raised:
        apply_patch({}, [{"op": "replace", "path": "/id", "value": "x"}], REST_API, ["/name", "/description"])
    assert raised.value.message == (
        "Invalid patch path  '/id' specified for op 'replace'. Must be one of: [/name, /description]"
    )
    with pytest.raises(BadRequestException, match="expected integer"):
        apply_patch({}, [{"op": "replace", "path": "/minimumCompressionSize", "value": "x"}], REST_API, ALL)
    with pytest.raises(BadRequestException, match="Test operation failed"):
        apply_patch({"name": "a"}, [{"op": "test", "path": "/name", "value": "b"}], REST_API, ALL)
    with pytest.raises(BadRequestException, match="Must be one of"):
        apply_patch(
            {}, [{"op": "replace", "path": "/apiKeySource", "value": "X"}], REST_API, ["/apiKeySource"]
        )


segment_text = st.text(min_size=1, max_size=10)


@given(st.lists(st.text(max_size=10), min_size=1, max_size=5))
def test_pointer_escape_round_trip(segments) -> None:
    assert split_pointer(join_pointer(segments)) == segments
    for segment in segments:
        assert unescape(escape(segment)) == segment
        assert "/" not in escape(segment)


@settings(max_examples=200)
@given(
    st.dictionaries(segment_text, st.text(max_size=5), max_size=4),
    st.lists(segment_text, max_size=4, unique=True),
    segment_text,
    st.text(max_size=5),
    st.booleans(),
)
def test_add_then_remove_is_identity(tags, media_types, key, value, on_map) -> None:
    doc = {"name": "n", "tags": dict(tags), "binaryMediaTypes": list(media_types)}
    if on_map:
        path = "/tags/" + escape(key)
        present = key in tags
    else:
        path = "/binaryMediaTypes/" + escape(key)
        present = key in media_types
    added = apply_patch(doc, [{"op": "add", "path": path, "value": value}], REST_API, ALL)
    if on_map:
        assert added["tags"][key] == value
    else:
        assert key in added["binaryMediaTypes"]
    remove = [{"op": "remove", "path": path}]
    removed = apply_patch(added, remove, REST_API, ALL)
    assert removed == apply_patch(doc, remove, REST_API, ALL)
    if not present:
        assert removed == doc
