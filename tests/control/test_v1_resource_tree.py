"""Property: after random CreateResource / UpdateResource moves, every resource's `path` is its
parent's path + "/" + pathPart (handlers called directly, no HTTP)."""

from __future__ import annotations

import contextlib
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portico.control.apigateway.resources import create_resource, get_resources, update_resource
from portico.control.apigateway.restapis import create_rest_api
from portico.control.errors import ServiceError
from portico.control.registry import AdminRequest
from portico.control.store import Store

PARTS = st.sampled_from(["a", "b", "c", "{id}", "{name}", "{proxy+}", "x.y", "z-1"])


def _request(store: Store) -> AdminRequest:
    return AdminRequest(
        store=store, service="apigateway", operation="x", account_id="0", region="us-east-1", request_id="r"
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    creates=st.lists(st.tuples(st.integers(0, 50), PARTS), min_size=1, max_size=12),
    moves=st.lists(
        st.tuples(st.integers(0, 50), st.integers(0, 50), st.one_of(st.none(), PARTS)), max_size=12
    ),
)
def test_paths_follow_parents(creates, moves) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        store = Store(data_dir)
        request = _request(store)
        api = create_rest_api(request, {"name": "prop"})
        ids = [api["rootResourceId"]]
        for parent_index, part in creates:
            params = {"restApiId": api["id"], "parentId": ids[parent_index % len(ids)], "pathPart": part}
            with contextlib.suppress(ServiceError):
                ids.append(create_resource(request, params)["id"])
        for child_index, parent_index, part in moves:
            if len(ids) < 2:
                break
            child = ids[1 + child_index % (len(ids) - 1)]
            ops = [{"op": "replace", "path": "/parentId", "value": ids[parent_index % len(ids)]}]
            if part is not None:
                ops.append({"op": "replace", "path": "/pathPart", "value": part})
            with contextlib.suppress(ServiceError):
                update_resource(
                    request, {"restApiId": api["id"], "resourceId": child, "patchOperations": ops}
                )
        resources = {
            r["id"]: r for r in get_resources(request, {"restApiId": api["id"], "limit": 500})["items"]
        }
        store.close()
    assert len(resources) == len(ids)
    for resource in resources.values():
        if resource["id"] == api["rootResourceId"]:
            assert resource["path"] == "/"
            continue
        parent = resources[resource["parentId"]]
        assert resource["path"] == parent["path"].rstrip("/") + "/" + resource["pathPart"]
        assert not parent.get("pathPart", "").endswith("+}")
        siblings = [r for r in resources.values() if r.get("parentId") == resource["parentId"]]
        assert len({s["pathPart"] for s in siblings}) == len(siblings)
        assert sum(1 for s in siblings if s["pathPart"].startswith("{")) <= 1
