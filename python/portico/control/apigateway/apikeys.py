"""apigateway (v1): API keys, usage plans, usage-plan keys and usage.

Documents (service "apigateway", parent None unless noted):
- kind "apikey", id the key id: the `ApiKey` shape's members (`value` always stored; answers
  include it only when asked, like AWS); `stageKeys` as "restApiId/stageName" strings.
- kind "usageplan", id the plan id: the `UsagePlan` shape's members.
- kind "usageplankey", id f"{usagePlanId}/{keyId}", parent usagePlanId: {id (the key id), type}.
  `value` and `name` are read from the API key when answering.
- kind "usagecredit", id f"{usagePlanId}/{keyId}/{period}/{index}", parent usagePlanId:
  {planId, keyId, period, index, credit}: requests UpdateUsage added to (or took off) the quota of
  one period, so that what remained was the value it set; the core applies it at the next reload.

Usage itself is not a document: the data plane counts each key's requests in shared memory and
the usage writer keeps them in the store's `usage` table, per UTC day (`Store.write_usage`);
GetUsage reads those, plus the counts not written yet when the data plane is reachable. When
each plan's quota was set (its initial period, which takes `offset` off the limit) is in the
`quota_since` table. Quota periods are the core's (`_core.quota_period`: UTC days, weeks from
Sunday, months).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from portico import _core
from portico.compile.usage_plans import CREDIT_KIND, DAY_MS
from portico.config.models import method_throttle_route
from portico.control import ids
from portico.control.apigateway.common import SERVICE
from portico.control.apigateway.stages import KIND as STAGE_KIND
from portico.control.apigateway.stages import stage_key
from portico.control.apigatewayv2.common import API_KIND as V2_API
from portico.control.apigatewayv2.common import SERVICE as V2
from portico.control.apigatewayv2.common import STAGE as V2_STAGE
from portico.control.apigatewayv2.common import stage_id as v2_stage_id
from portico.control.errors import BadRequestException, ConflictException, NotFoundException
from portico.control.patch import apply_patch
from portico.control.registry import AdminRequest, copy_given, operation, paginate
from portico.control.wire import get_service

KEY_KIND = "apikey"
PLAN_KIND = "usageplan"
PLAN_KEY_KIND = "usageplankey"
EPOCH = dt.date(1970, 1, 1)
API_KEY_PATHS = {
    "replace": ("/name", "/description", "/enabled", "/customerId", "/value"),
    "add": ("/stageKeys",),
    "remove": ("/stageKeys", "/description", "/customerId"),
}
PLAN_PATHS = {
    "replace": (
        "/name",
        "/description",
        "/productCode",
        "/throttle/rateLimit",
        "/throttle/burstLimit",
        "/quota/limit",
        "/quota/period",
        "/quota/offset",
        "/apiStages/*/throttle/*/rateLimit",
        "/apiStages/*/throttle/*/burstLimit",
    ),
    "add": ("/apiStages", "/throttle/rateLimit", "/throttle/burstLimit", "/quota/limit", "/quota/period"),
    "remove": (
        "/apiStages",
        "/throttle",
        "/quota",
        "/description",
        "/productCode",
        "/apiStages/*/throttle/*",
    ),
}


def _now() -> int:
    return int(time.time())


# -- API keys -----------------------------------------------------------------------------------


def load_key(tx, key_id: str) -> dict[str, Any]:
    key = tx.get(SERVICE, KEY_KIND, key_id)
    if key is None:
        raise NotFoundException("Invalid API Key identifier specified")
    return key


def _check_value(tx, value: str, key_id: str | None = None) -> None:
    if not 20 <= len(value) <= 128 or not value.isascii() or not value.isalnum():
        raise BadRequestException("API Key value should be at least 20 characters")
    for other in tx.list(SERVICE, KEY_KIND):
        if other.get("value") == value and other["id"] != key_id:
            raise ConflictException("API Key already exists")


def _stage_key_text(tx, text: str) -> str:
    api_id, _, stage = text.partition("/")
    if not stage or tx.get(SERVICE, STAGE_KIND, stage_key(api_id, stage)) is None:
        raise BadRequestException(f"Invalid stage key specified: {text}")
    return text


def _shown_key(key: dict[str, Any], include_value: bool) -> dict[str, Any]:
    out = dict(key)
    if not include_value:
        out.pop("value", None)
    return out


@operation(SERVICE, "CreateApiKey")
def create_api_key(request: AdminRequest, params: dict) -> dict:
    now = _now()
    key: dict[str, Any] = {
        "id": ids.api_key_id(),
        "value": params.get("value") or ids.api_key_value(),
        "enabled": bool(params.get("enabled", False)),
        "createdDate": now,
        "lastUpdatedDate": now,
        "stageKeys": [],
        "tags": params.get("tags") or {},
    }
    copy_given(params, key, ("name", "description", "customerId"))
    with request.store.transaction() as tx:
        _check_value(tx, key["value"])
        for stage in params.get("stageKeys") or ():
            text = _stage_key_text(tx, f"{stage.get('restApiId')}/{stage.get('stageName')}")
            if text not in key["stageKeys"]:
                key["stageKeys"].append(text)
        tx.put(SERVICE, KEY_KIND, key["id"], key)
    return key


@operation(SERVICE, "GetApiKey")
def get_api_key(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        key = load_key(tx, params["apiKey"])
    return _shown_key(key, bool(params.get("includeValue")))


@operation(SERVICE, "GetApiKeys")
def get_api_keys(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        keys = tx.list(SERVICE, KEY_KIND)
    if params.get("nameQuery"):
        keys = [k for k in keys if (k.get("name") or "").startswith(params["nameQuery"])]
    if params.get("customerId"):
        keys = [k for k in keys if k.get("customerId") == params["customerId"]]
    page, position = paginate(keys, params.get("position"), params.get("limit"))
    include = bool(params.get("includeValues"))
    return {"items": [_shown_key(k, include) for k in page], "position": position}


@operation(SERVICE, "UpdateApiKey")
def update_api_key(request: AdminRequest, params: dict) -> dict:
    with request.store.transaction() as tx:
        key = load_key(tx, params["apiKey"])
        for op in params.get("patchOperations") or ():
            if op.get("path") == "/stageKeys" and op.get("op") in ("add", "remove"):
                text = str(op.get("value") or "")
                if op["op"] == "add":
                    if text not in key["stageKeys"]:
                        key["stageKeys"].append(_stage_key_text(tx, text))
                elif text in key["stageKeys"]:
                    key["stageKeys"].remove(text)
                continue
            key = apply_patch(key, [op], get_service(SERVICE).shape("ApiKey"), API_KEY_PATHS)
        if not key.get("value"):
            raise BadRequestException("API Key value should be at least 20 characters")
        _check_value(tx, key["value"], key["id"])
        key["lastUpdatedDate"] = _now()
        tx.put(SERVICE, KEY_KIND, key["id"], key)
    return _shown_key(key, False)


@operation(SERVICE, "DeleteApiKey")
def delete_api_key(request: AdminRequest, params: dict) -> None:
    with request.store.transaction() as tx:
        key = load_key(tx, params["apiKey"])
        for plan in tx.list(SERVICE, PLAN_KIND):
            tx.delete(SERVICE, PLAN_KEY_KIND, f"{plan['id']}/{key['id']}")
        tx.delete(SERVICE, KEY_KIND, key["id"])


# -- usage plans --------------------------------------------------------------------------------


def load_plan(tx, plan_id: str) -> dict[str, Any]:
    plan = tx.get(SERVICE, PLAN_KIND, plan_id)
    if plan is None:
        raise NotFoundException("Invalid Usage Plan ID specified")
    return plan


def _check_api_stage(tx, api_id: str, stage: str) -> None:
    """A REST API's stage, or a WebSocket API's (whose `$connect` can require a key, "Usage plans"
    in the developer guide); HTTP APIs have no API keys."""
    if tx.get(SERVICE, STAGE_KIND, stage_key(api_id, stage)) is not None:
        return
    api = tx.get(V2, V2_API, api_id)
    v2_stage = tx.get(V2, V2_STAGE, v2_stage_id(api_id, stage), parent=api_id)
    if api is None or api.get("ProtocolType") != "WEBSOCKET" or v2_stage is None:
        raise BadRequestException(f"Invalid API Stage {{api: {api_id}, stage: {stage}}} specified")


def _check_plan(plan: dict[str, Any]) -> None:
    quota = plan.get("quota")
    if quota is not None:
        if quota.get("period") not in ("DAY", "WEEK", "MONTH"):
            raise BadRequestException("Quota period must be one of DAY, WEEK or MONTH")
        if quota.get("limit", 0) < 0:
            raise BadRequestException("Quota limit should be a positive integer")
        if quota.get("offset", 0) < 0:
            raise BadRequestException("Quota offset should be a positive integer")
    throttles = [plan.get("throttle")]
    for stage in plan.get("apiStages") or ():
        for key, settings in (stage.get("throttle") or {}).items():
            if method_throttle_route(key) is None:
                raise BadRequestException(
                    f"Invalid method throttle key: {key}. Expected /{{resourcePath}}/{{method}}"
                )
            throttles.append(settings)
    for throttle in throttles:
        if throttle is not None and (throttle.get("rateLimit", 0) < 0 or throttle.get("burstLimit", 0) < 0):
            raise BadRequestException("Throttle limits should be positive")


def _now_ms() -> int:
    """The data plane's clock (a test's, when it moves it)."""
    return _core.wall_clock_ms()


def _record_quota_since(tx, plan: dict[str, Any]) -> None:
    """When the plan's quota was set: its period is the initial one, with `offset` taken off."""
    tx.set_quota_since(plan["id"], _now_ms() if plan.get("quota") else None)


@operation(SERVICE, "CreateUsagePlan")
def create_usage_plan(request: AdminRequest, params: dict) -> dict:
    plan: dict[str, Any] = {
        "id": ids.random_id(6),
        "name": params["name"],
        "apiStages": params.get("apiStages") or [],
        "tags": params.get("tags") or {},
    }
    copy_given(params, plan, ("description", "throttle", "quota"))
    if "quota" in plan:
        plan["quota"].setdefault("offset", 0)
    _check_plan(plan)
    with request.store.transaction() as tx:
        for stage in plan["apiStages"]:
            _check_api_stage(tx, stage.get("apiId", ""), stage.get("stage", ""))
        tx.put(SERVICE, PLAN_KIND, plan["id"], plan)
        _record_quota_since(tx, plan)
    return plan


@operation(SERVICE, "GetUsagePlan")
def get_usage_plan(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        return load_plan(tx, params["usagePlanId"])


@operation(SERVICE, "GetUsagePlans")
def get_usage_plans(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        plans = tx.list(SERVICE, PLAN_KIND)
        if params.get("keyId"):
            plans = [p for p in plans if tx.exists(SERVICE, PLAN_KEY_KIND, f"{p['id']}/{params['keyId']}")]
    page, position = paginate(plans, params.get("position"), params.get("limit"))
    return {"items": page, "position": position}


def _patch_api_stages(tx, plan: dict[str, Any], op: dict[str, Any]) -> bool:
    """`add|remove /apiStages` value "apiId:stage"; False if `op` is not one of those."""
    if op.get("path") != "/apiStages" or op.get("op") not in ("add", "remove"):
        return False
    api_id, _, stage = str(op.get("value") or "").partition(":")
    if not api_id or not stage:
        raise BadRequestException("Invalid API Stage specified: expected apiId:stage")
    stages = plan.setdefault("apiStages", [])
    existing = [s for s in stages if s.get("apiId") == api_id and s.get("stage") == stage]
    if op["op"] == "add":
        _check_api_stage(tx, api_id, stage)
        if not existing:
            stages.append({"apiId": api_id, "stage": stage})
    else:
        if not existing:
            raise NotFoundException(f"Invalid API Stage {{api: {api_id}, stage: {stage}}} specified")
        stages.remove(existing[0])
    return True


def _patch_stage_throttle(plan: dict[str, Any], op: dict[str, Any]) -> bool:
    """`/apiStages/{apiId:stage}/throttle/{resourcePath}/{METHOD}/{rateLimit|burstLimit}`."""
    path = str(op.get("path") or "")
    if not path.startswith("/apiStages/"):
        return False
    parts = path.split("/")
    # ["", "apiStages", "apiId:stage", "throttle", "~1pets", "GET", "rateLimit"?]
    if len(parts) < 6 or parts[3] != "throttle":
        return False
    api_id, _, stage = parts[2].partition(":")
    matches = [s for s in plan.get("apiStages") or () if s.get("apiId") == api_id and s.get("stage") == stage]
    if not matches:
        raise NotFoundException(f"Invalid API Stage {{api: {api_id}, stage: {stage}}} specified")
    target = matches[0].setdefault("throttle", {})
    resource = parts[4].replace("~1", "/").replace("~0", "~")
    key = f"{resource}/{parts[5]}"
    if len(parts) == 6:
        if op.get("op") == "remove":
            target.pop(key, None)
            return True
        raise BadRequestException(f"Invalid patch path '{path}'")
    field = parts[6]
    if field not in ("rateLimit", "burstLimit"):
        raise BadRequestException(f"Invalid patch path '{path}'")
    try:
        value = float(op.get("value")) if field == "rateLimit" else int(op.get("value"))
    except (TypeError, ValueError):
        raise BadRequestException(f"Invalid value '{op.get('value')}' for path '{path}'") from None
    if op.get("op") == "remove":
        target.get(key, {}).pop(field, None)
    else:
        target.setdefault(key, {})[field] = value
    return True


@operation(SERVICE, "UpdateUsagePlan")
def update_usage_plan(request: AdminRequest, params: dict) -> dict:
    shape = get_service(SERVICE).shape("UsagePlan")
    with request.store.transaction() as tx:
        plan = load_plan(tx, params["usagePlanId"])
        for op in params.get("patchOperations") or ():
            if _patch_api_stages(tx, plan, op) or _patch_stage_throttle(plan, op):
                continue
            plan = apply_patch(plan, [op], shape, PLAN_PATHS)
        if "quota" in plan:
            plan["quota"].setdefault("offset", 0)
            plan["quota"].setdefault("period", "MONTH")
        _check_plan(plan)
        tx.put(SERVICE, PLAN_KIND, plan["id"], plan)
        _record_quota_since(tx, plan)
    return plan


@operation(SERVICE, "DeleteUsagePlan")
def delete_usage_plan(request: AdminRequest, params: dict) -> None:
    with request.store.transaction() as tx:
        plan = load_plan(tx, params["usagePlanId"])
        tx.delete_under(SERVICE, plan["id"])
        tx.delete(SERVICE, PLAN_KIND, plan["id"])
        tx.delete_usage(plan["id"])


# -- usage-plan keys ----------------------------------------------------------------------------


def _plan_key_view(tx, key_id: str) -> dict[str, Any]:
    key = tx.get(SERVICE, KEY_KIND, key_id) or {}
    out = {"id": key_id, "type": "API_KEY", "value": key.get("value")}
    if key.get("name") is not None:
        out["name"] = key["name"]
    return out


@operation(SERVICE, "CreateUsagePlanKey")
def create_usage_plan_key(request: AdminRequest, params: dict) -> dict:
    plan_id, key_id = params["usagePlanId"], params["keyId"]
    if params["keyType"] != "API_KEY":
        raise BadRequestException("Invalid key type specified: only API_KEY is supported")
    with request.store.transaction() as tx:
        plan = load_plan(tx, plan_id)
        load_key(tx, key_id)
        if tx.exists(SERVICE, PLAN_KEY_KIND, f"{plan_id}/{key_id}"):
            raise ConflictException("Usage Plan Key already exists")
        stages = {(s.get("apiId"), s.get("stage")) for s in plan.get("apiStages") or ()}
        for other in tx.list(SERVICE, PLAN_KIND):
            if other["id"] == plan_id or not tx.exists(SERVICE, PLAN_KEY_KIND, f"{other['id']}/{key_id}"):
                continue
            shared = stages & {(s.get("apiId"), s.get("stage")) for s in other.get("apiStages") or ()}
            if shared:
                api_id, stage = sorted(shared)[0]
                raise ConflictException(
                    f"API Key {key_id} is already associated with a usage plan for stage {api_id}:{stage}"
                )
        tx.put(
            SERVICE, PLAN_KEY_KIND, f"{plan_id}/{key_id}", {"id": key_id, "type": "API_KEY"}, parent=plan_id
        )
        return _plan_key_view(tx, key_id)


def _load_plan_key(tx, plan_id: str, key_id: str) -> dict[str, Any]:
    load_plan(tx, plan_id)
    doc = tx.get(SERVICE, PLAN_KEY_KIND, f"{plan_id}/{key_id}")
    if doc is None:
        raise NotFoundException("Invalid Usage Plan Key identifier specified")
    return doc


@operation(SERVICE, "GetUsagePlanKey")
def get_usage_plan_key(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        _load_plan_key(tx, params["usagePlanId"], params["keyId"])
        return _plan_key_view(tx, params["keyId"])


@operation(SERVICE, "GetUsagePlanKeys")
def get_usage_plan_keys(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        load_plan(tx, params["usagePlanId"])
        keys = [
            _plan_key_view(tx, doc["id"]) for doc in tx.list(SERVICE, PLAN_KEY_KIND, params["usagePlanId"])
        ]
    if params.get("nameQuery"):
        keys = [k for k in keys if (k.get("name") or "").startswith(params["nameQuery"])]
    page, position = paginate(keys, params.get("position"), params.get("limit"))
    return {"items": page, "position": position}


@operation(SERVICE, "DeleteUsagePlanKey")
def delete_usage_plan_key(request: AdminRequest, params: dict) -> None:
    with request.store.transaction() as tx:
        _load_plan_key(tx, params["usagePlanId"], params["keyId"])
        tx.delete(SERVICE, PLAN_KEY_KIND, f"{params['usagePlanId']}/{params['keyId']}")


# -- usage --------------------------------------------------------------------------------------


def _parse_day(text: str, member: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except (TypeError, ValueError):
        raise BadRequestException(f"Invalid {member} specified: {text}. Expected format yyyy-MM-dd") from None


def _day_number(day: dt.date) -> int:
    return (day - EPOCH).days


class _Usage:
    """One plan's usage, as durable in the store and as the data plane counts it now."""

    def __init__(self, request: AdminRequest, tx, plan: dict[str, Any], key_ids: list[str], first_day: int):
        self.plan = plan
        self.quota = plan.get("quota") or None
        self.since = tx.quota_since().get(plan["id"])
        self.used: dict[tuple[str, int], int] = {}
        for _, key_id, day, used in tx.usage(first_day, plan["id"]):
            self.used[(key_id, day)] = used
        # What the workers counted and the writer has not written yet (counts only grow).
        for slot, used in request.data_plane.pending_days(plan["id"], set(key_ids)).items():
            self.used[slot] = max(used, self.used.get(slot, 0))
        self.credits: dict[tuple[str, int], int] = {}
        if self.quota:
            for doc in tx.list(SERVICE, CREDIT_KIND, plan["id"]):
                if doc.get("period") == self.quota.get("period"):
                    self.credits[(doc["keyId"], int(doc["index"]))] = int(doc["credit"])

    def period(self, day: int) -> tuple[int, int, int]:
        """(index, first day, first day after) of the quota period holding `day`."""
        return _core.quota_period(self.quota["period"], day * DAY_MS)

    def allowed(self, key_id: str, index: int, credit: int | None = None) -> int:
        quota = self.quota
        if credit is None:
            credit = self.credits.get((key_id, index), 0)
        return _core.quota_limit(
            quota["period"],
            int(quota.get("limit", 0)),
            int(quota.get("offset", 0)),
            self.since,
            index,
            credit,
        )

    def used_through(self, key_id: str, day: int) -> int:
        """Requests of the quota period holding `day`, up to and including it."""
        _, start, _ = self.period(day)
        return sum(self.used.get((key_id, d), 0) for d in range(start, day + 1))

    def day(self, key_id: str, day: int) -> list[int]:
        """[used, remaining]: that day's requests, and what was left of the quota after it."""
        used = self.used.get((key_id, day), 0)
        if not self.quota:
            return [used, 0]
        index, _, _ = self.period(day)
        return [used, max(self.allowed(key_id, index) - self.used_through(key_id, day), 0)]


def _first_day(start: dt.date, plan: dict[str, Any]) -> int:
    """The first day whose counts a report from `start` needs: its quota period's first."""
    first = _day_number(start)
    quota = plan.get("quota") or {}
    if quota.get("period") in ("DAY", "WEEK", "MONTH"):
        first = _core.quota_period(quota["period"], first * DAY_MS)[1]
    return first


@operation(SERVICE, "GetUsage")
def get_usage(request: AdminRequest, params: dict) -> dict:
    start = _parse_day(params["startDate"], "startDate")
    end = _parse_day(params["endDate"], "endDate")
    if end < start:
        raise BadRequestException("The endDate must not be before the startDate")
    if (end - start).days > 90:
        raise BadRequestException("The usage date range cannot exceed 90 days")
    with request.store.read() as tx:
        plan = load_plan(tx, params["usagePlanId"])
        key_ids = [doc["id"] for doc in tx.list(SERVICE, PLAN_KEY_KIND, plan["id"])]
        if params.get("keyId"):
            key_ids = [k for k in key_ids if k == params["keyId"]]
        page, position = paginate(key_ids, params.get("position"), params.get("limit"))
        usage = _Usage(request, tx, plan, page, _first_day(start, plan))
    days = range(_day_number(start), _day_number(end) + 1)
    return {
        "usagePlanId": plan["id"],
        "startDate": start.isoformat(),
        "endDate": end.isoformat(),
        "items": {key_id: [usage.day(key_id, day) for day in days] for key_id in page},
        "position": position,
    }


@operation(SERVICE, "UpdateUsage")
def update_usage(request: AdminRequest, params: dict) -> dict:
    """Set what remains of a key's quota in the current period: the difference to what the
    counts leave is kept as the period's credit, which the data plane applies at its next reload
    (within a second) and which lapses with the period."""
    plan_id, key_id = params["usagePlanId"], params["keyId"]
    today = _now_ms() // DAY_MS
    with request.store.transaction() as tx:
        plan = load_plan(tx, plan_id)
        _load_plan_key(tx, plan_id, key_id)
        for op in params.get("patchOperations") or ():
            if op.get("op") != "replace" or op.get("path") != "/remaining":
                raise BadRequestException(
                    f"Invalid patch path  '{op.get('path')}' specified for op '{op.get('op')}'. "
                    "Must be one of: [/remaining]"
                )
            try:
                remaining = int(op.get("value"))
            except (TypeError, ValueError):
                raise BadRequestException(
                    f"Invalid value '{op.get('value')}' for path '/remaining'"
                ) from None
            if remaining < 0:
                raise BadRequestException("The remaining quota should be a positive integer")
            if not plan.get("quota"):
                raise BadRequestException("The usage plan has no quota")
            usage = _Usage(request, tx, plan, [key_id], _first_day(EPOCH + dt.timedelta(days=today), plan))
            index, _, _ = usage.period(today)
            period = plan["quota"]["period"]
            credit = remaining - usage.allowed(key_id, index, 0) + usage.used_through(key_id, today)
            tx.put(
                SERVICE,
                CREDIT_KIND,
                f"{plan_id}/{key_id}/{period}/{index}",
                {"planId": plan_id, "keyId": key_id, "period": period, "index": index, "credit": credit},
                parent=plan_id,
            )
        usage = _Usage(request, tx, plan, [key_id], _first_day(EPOCH + dt.timedelta(days=today), plan))
        values = {key_id: [usage.day(key_id, today)]}
    day = (EPOCH + dt.timedelta(days=today)).isoformat()
    return {"usagePlanId": plan_id, "startDate": day, "endDate": day, "items": values}
