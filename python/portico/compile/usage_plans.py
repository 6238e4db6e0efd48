"""Compiling usage plans (the config file's `usagePlans` and the admin API's) into the spec.

A plan reaches the core with its throttle, its quota (and when the quota was set: its period is
the initial one, `offset` fewer), its stages with their per-method throttles, and its keys, each
with what is durable of its usage (`DurableUsage`): recent days' request counts, and the credits
UpdateUsage granted. The core counts from there (`rust/usage.rs`); the usage writer makes its
counts durable again (`portico.serve.usage`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from portico import _core
from portico.compile import spec as S
from portico.config.models import Config, method_throttle_route
from portico.control.store import Store

__all__ = [
    "CREDIT_KIND",
    "DAY_MS",
    "DurableUsage",
    "file_quota_since",
    "file_usage_plans",
    "load_durable_usage",
    "store_usage_plans",
]

log = logging.getLogger("portico.compile")

V1 = "apigateway"
# Documents of the credits UpdateUsage grants: id "{plan}/{key}/{period}/{index}", parent the plan,
# {"period": "DAY"|"WEEK"|"MONTH", "index": period index, "credit": requests added to the limit}.
CREDIT_KIND = "usagecredit"
DAY_MS = 86_400_000
# The days of durable counts read: a month's, whatever the period, and a margin (each key carries
# those of its current period only).
DAYS_KEPT = 40
# What an unset rate or burst means next to a set one: AWS's account defaults.
ACCOUNT_RATE = 10000.0
ACCOUNT_BURST = 5000


@dataclass(slots=True)
class DurableUsage:
    """What the store keeps of usage plans' usage, read once per build (at `now_ms`)."""

    days: dict[tuple[str, str], list[tuple[int, int]]] = field(default_factory=dict)
    since: dict[str, int] = field(default_factory=dict)
    credits: dict[tuple[str, str, str], list[tuple[int, int]]] = field(default_factory=dict)
    now_ms: int = field(default_factory=_core.wall_clock_ms)

    def key_spec(self, plan_id: str, key_id: str, period: str | None) -> S.PlanKeySpec:
        """A plan key with what the core can still need of its usage: the days of the current
        quota period (and yesterday's, which the core keeps counting), the credits of the current
        period and later."""
        today = self.now_ms // DAY_MS
        first_day, index = today - 1, None
        if period:
            index, start, _ = _core.quota_period(period, self.now_ms)
            first_day = min(first_day, start)
        days = [(d, n) for d, n in self.days.get((plan_id, key_id), []) if d >= first_day]
        credits = (
            [(i, c) for i, c in self.credits.get((plan_id, key_id, period), []) if i >= index]
            if period
            else []
        )
        return S.plan_key(key_id, days, credits)


def load_durable_usage(store: Store, now_ms: int | None = None) -> DurableUsage:
    """The store's durable usage: the last `DAYS_KEPT` days' counts, when quotas were set, and
    UpdateUsage's credits."""
    now_ms = _core.wall_clock_ms() if now_ms is None else now_ms
    first_day = now_ms // DAY_MS - DAYS_KEPT
    days: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    credits: dict[tuple[str, str, str], list[tuple[int, int]]] = defaultdict(list)
    with store.read() as tx:
        for plan_id, key_id, day, used in tx.usage(first_day):
            days[(plan_id, key_id)].append((day, used))
        since = tx.quota_since()
        for doc in tx.list(V1, CREDIT_KIND):
            plan_id, key_id = doc.get("planId"), doc.get("keyId")
            if plan_id and key_id and doc.get("period") in ("DAY", "WEEK", "MONTH"):
                credits[(plan_id, key_id, doc["period"])].append((int(doc["index"]), int(doc["credit"])))
    return DurableUsage(dict(days), since, dict(credits), now_ms)


def _throttle(value: Any) -> S.LimitSpec | None:
    """AWS's `ThrottleSettings` as the core's limit: a missing or negative member is the account's."""
    if not isinstance(value, dict):
        return None
    rate, burst = value.get("rateLimit"), value.get("burstLimit")
    has_rate = isinstance(rate, int | float) and rate >= 0
    has_burst = isinstance(burst, int | float) and burst >= 0
    if not has_rate and not has_burst:
        return None
    return S.limit(float(rate) if has_rate else ACCOUNT_RATE, int(burst) if has_burst else ACCOUNT_BURST)


def _quota(value: Any, since_ms: int | None) -> S.QuotaSpec | None:
    if not isinstance(value, dict) or value.get("period") not in ("DAY", "WEEK", "MONTH"):
        return None
    limit, offset = value.get("limit"), value.get("offset") or 0
    if not isinstance(limit, int) or limit < 0 or not isinstance(offset, int) or offset < 0:
        return None
    return S.quota(limit, value["period"], offset, since_ms)


def _method_throttle(throttle: Any, where: str) -> dict[str, S.LimitSpec]:
    out: dict[str, S.LimitSpec] = {}
    for key, settings in (throttle or {}).items() if isinstance(throttle, dict) else ():
        limit = _throttle(settings)
        if limit is None:
            continue
        if not isinstance(key, str) or method_throttle_route(key) is None:
            log.warning("%s: per-method throttle %r names no /{resourcePath}/{METHOD}: ignored", where, key)
            continue
        out[key] = limit
    return out


def _plan(
    plan_id: str,
    throttle: Any,
    quota: Any,
    api_stages: Iterable[dict[str, Any]],
    key_ids: Iterable[str],
    durable: DurableUsage,
    since_ms: int | None,
) -> S.UsagePlanSpec:
    quota_spec = _quota(quota, since_ms)
    period = quota_spec["period"] if quota_spec else None
    stages = [
        S.plan_stage(
            str(s.get("apiId")),
            str(s.get("stage")),
            _method_throttle(s.get("throttle"), f"usage plan {plan_id}"),
        )
        for s in api_stages
        if s.get("apiId") and s.get("stage")
    ]
    keys = [durable.key_spec(plan_id, key_id, period) for key_id in key_ids]
    return S.usage_plan(plan_id, stages, keys, _throttle(throttle), quota_spec)


def file_quota_since(config: Config, durable: DurableUsage | None, now_ms: int) -> dict[str, int | None]:
    """When each of the config file's plans had its quota set: recorded in the store the first
    time the plan is served with one (the server records it, `Store.record_quota_since`), else now."""
    out: dict[str, int | None] = {}
    for plan in config.usagePlans:
        if plan.quota is None:
            out[plan.plan_id] = None
        else:
            recorded = durable.since.get(plan.plan_id) if durable is not None else None
            out[plan.plan_id] = recorded if recorded is not None else now_ms
    return out


def file_usage_plans(config: Config, durable: DurableUsage | None = None) -> list[S.UsagePlanSpec]:
    """The config file's usage plans; `durable`: what the store keeps of their usage (None: none
    is kept, counts start from zero)."""
    durable = durable or DurableUsage()
    key_ids = {key.name: key.key_id for key in config.apiKeys}
    since = file_quota_since(config, durable, _core.wall_clock_ms())
    return [
        _plan(
            plan.plan_id,
            plan.throttle.model_dump() if plan.throttle else None,
            plan.quota.model_dump() if plan.quota else None,
            [s.model_dump() for s in plan.apiStages],
            [key_ids[name] for name in plan.apiKeys if name in key_ids],
            durable,
            since.get(plan.plan_id),
        )
        for plan in config.usagePlans
    ]


def store_usage_plans(store: Store, durable: DurableUsage, served_keys: set[str]) -> list[S.UsagePlanSpec]:
    """The admin API's usage plans, holding those of their keys the spec serves (`served_keys`)."""
    out: list[S.UsagePlanSpec] = []
    with store.read() as tx:
        for plan in tx.list(V1, "usageplan"):
            plan_id = plan.get("id")
            if not plan_id:
                continue
            key_ids = [doc.get("id") for doc in tx.list(V1, "usageplankey", plan_id)]
            out.append(
                _plan(
                    plan_id,
                    plan.get("throttle"),
                    plan.get("quota"),
                    plan.get("apiStages") or (),
                    [k for k in key_ids if k in served_keys],
                    durable,
                    durable.since.get(plan_id),
                )
            )
    return out
