"""apigateway (v1): account settings and tags.

- kind "account", id "account" (parent None): the `Account` shape's members.
- kind "tags", id the resource ARN (parent None): {"tags": {...}}. Tags of REST APIs, stages,
  API keys and usage plans are also kept in those documents' own `tags` member."""

from __future__ import annotations

import re
from typing import Any

from portico.control.apigateway.common import SERVICE
from portico.control.apigateway.stages import KIND as STAGE_KIND
from portico.control.apigateway.stages import stage_key
from portico.control.errors import BadRequestException, NotFoundException
from portico.control.patch import apply_patch
from portico.control.registry import AdminRequest, operation
from portico.control.wire import get_service

ACCOUNT_KIND = "account"
TAGS_KIND = "tags"
ACCOUNT_PATHS = {"replace": ("/cloudwatchRoleArn",), "add": ("/features",), "remove": ("/features",)}
_ARN = re.compile(r"^arn:aws[a-z-]*:apigateway:([a-z0-9-]*)::(/.*)$")


def default_account() -> dict[str, Any]:
    return {
        "throttleSettings": {"burstLimit": 5000, "rateLimit": 10000.0},
        "features": ["UsagePlans"],
        "apiKeyVersion": "4",
    }


def _shown(request: AdminRequest, account: dict[str, Any]) -> dict[str, Any]:
    """The account as served: `throttleSettings` is the data plane's account bucket (the config
    file's `settings.accountThrottle`, AWS's 10,000/5,000 by default), read-only as on AWS."""
    out = dict(account)
    out.pop("throttleSettings", None)
    settings = request.data_plane.throttle_settings()
    if request.data_plane.account_throttle is None and request.data_plane.usage_path is None:
        settings = default_account()["throttleSettings"]  # the admin API alone: AWS's defaults
    if settings is not None:
        out["throttleSettings"] = settings
    return out


@operation(SERVICE, "GetAccount")
def get_account(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        return _shown(request, tx.get(SERVICE, ACCOUNT_KIND, "account") or default_account())


@operation(SERVICE, "UpdateAccount")
def update_account(request: AdminRequest, params: dict) -> dict:
    shape = get_service(SERVICE).shape("Account")
    with request.store.transaction() as tx:
        account = tx.get(SERVICE, ACCOUNT_KIND, "account") or default_account()
        for op in params.get("patchOperations") or ():
            if op.get("path") == "/features" and op.get("op") in ("add", "remove"):
                features = account.setdefault("features", [])
                for feature in str(op.get("value") or "").split(","):
                    feature = feature.strip()
                    if op["op"] == "add" and feature and feature not in features:
                        features.append(feature)
                    elif op["op"] == "remove" and feature in features:
                        features.remove(feature)
                continue
            account = apply_patch(account, [op], shape, ACCOUNT_PATHS)
        tx.put(SERVICE, ACCOUNT_KIND, "account", account)
    return _shown(request, account)


# -- tags ---------------------------------------------------------------------------------------


def _tagged(tx, arn: str) -> tuple[str, str, str | None, dict[str, Any]]:
    """(kind, store id, parent, document) of the resource an ARN names."""
    match = _ARN.match(arn)
    if not match:
        raise BadRequestException(f"Invalid ARN specified in the request: {arn}")
    parts = match.group(2).strip("/").split("/")
    found: tuple[str, str, str | None] | None = None
    if len(parts) == 2 and parts[0] == "restapis":
        found = ("restapi", parts[1], None)
    elif len(parts) == 4 and parts[0] == "restapis" and parts[2] == "stages":
        found = (STAGE_KIND, stage_key(parts[1], parts[3]), parts[1])
    elif len(parts) == 2 and parts[0] == "apikeys":
        found = ("apikey", parts[1], None)
    elif len(parts) == 2 and parts[0] == "usageplans":
        found = ("usageplan", parts[1], None)
    if found is None:
        raise BadRequestException(f"Invalid ARN specified in the request: {arn}")
    doc = tx.get(SERVICE, found[0], found[1])
    if doc is None:
        raise NotFoundException("Invalid resource identifier specified")
    return found[0], found[1], found[2], doc


def _save_tags(tx, arn: str, kind: str, store_id: str, parent: str | None, doc: dict, tags: dict) -> None:
    doc["tags"] = tags
    tx.put(SERVICE, kind, store_id, doc, parent=parent)
    if tags:
        tx.put(SERVICE, TAGS_KIND, arn, {"tags": tags})
    else:
        tx.delete(SERVICE, TAGS_KIND, arn)


@operation(SERVICE, "GetTags")
def get_tags(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        _, _, _, doc = _tagged(tx, params["resourceArn"])
    return {"tags": doc.get("tags") or {}}


@operation(SERVICE, "TagResource")
def tag_resource(request: AdminRequest, params: dict) -> None:
    arn = params["resourceArn"]
    with request.store.transaction() as tx:
        kind, store_id, parent, doc = _tagged(tx, arn)
        tags = {**(doc.get("tags") or {}), **(params.get("tags") or {})}
        if len(tags) > 50:
            raise BadRequestException("A resource can have at most 50 tags")
        _save_tags(tx, arn, kind, store_id, parent, doc, tags)


@operation(SERVICE, "UntagResource")
def untag_resource(request: AdminRequest, params: dict) -> None:
    arn = params["resourceArn"]
    with request.store.transaction() as tx:
        kind, store_id, parent, doc = _tagged(tx, arn)
        tags = {k: v for k, v in (doc.get("tags") or {}).items() if k not in set(params.get("tagKeys") or ())}
        _save_tags(tx, arn, kind, store_id, parent, doc, tags)
