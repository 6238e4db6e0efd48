"""REST stages' `methodSettings`, as the core applies them: throttles and the stage cache.

One reading of AWS's `MethodSetting` members for both compilers (the admin API's stages in the
store and the config file's), over their AWS-shaped dicts: keys are `*/*` (every method) or
`{resource path without its leading slash}/{METHOD}`; a member a method's own entry leaves unset
is the `*/*` entry's, else AWS's default.

The stage cache ("Cache settings for REST APIs in API Gateway" in the developer guide): caching
enabled stage-wide (`*/*`) caches GET requests only; a method's own `cachingEnabled` caches every
request of that method; a TTL of 0 disables caching (default 300 s, at most 3600).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from portico.compile import spec as S
from portico.config.models import method_setting_route_key

__all__ = ["ACCOUNT_BURST", "ACCOUNT_RATE", "cache_capacity_bytes", "stage_cache", "throttle", "throttles"]

# What an unset rate or burst means next to a set one: AWS's account defaults.
ACCOUNT_RATE = 10000.0
ACCOUNT_BURST = 5000
DEFAULT_TTL_S = 300
DEFAULT_UNAUTHORIZED = "SUCCEED_WITH_RESPONSE_HEADER"
_UNAUTHORIZED = ("FAIL_WITH_403", "SUCCEED_WITH_RESPONSE_HEADER", "SUCCEED_WITHOUT_RESPONSE_HEADER")

Settings = Mapping[str, Mapping[str, Any]]


def throttle(rate: Any, burst: Any) -> S.LimitSpec | None:
    """A core throttle from AWS's pair; a negative or missing member is unset (AWS shows -1)."""
    has_rate = isinstance(rate, int | float) and rate >= 0
    has_burst = isinstance(burst, int | float) and burst >= 0
    if not has_rate and not has_burst:
        return None
    return S.limit(float(rate) if has_rate else ACCOUNT_RATE, int(burst) if has_burst else ACCOUNT_BURST)


def _by_route(settings: Settings) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    for key, setting in settings.items():
        route_key = method_setting_route_key(key)
        if route_key is not None:
            out[route_key] = setting
    return out


def throttles(settings: Settings, keys: Iterable[str]) -> tuple[S.LimitSpec | None, dict[str, S.LimitSpec]]:
    """(stage default throttle, per route key) of the routes `keys`."""
    known = set(keys)
    base = settings.get("*/*") or {}
    default = throttle(base.get("throttlingRateLimit"), base.get("throttlingBurstLimit"))
    per_route: dict[str, S.LimitSpec] = {}
    for route_key, setting in _by_route(settings).items():
        limit = throttle(setting.get("throttlingRateLimit"), setting.get("throttlingBurstLimit"))
        if limit is not None and route_key in known:
            per_route[route_key] = limit
    return default, per_route


def cache_capacity_bytes(cluster_size: Any, cap: int | None = None) -> int:
    """A cache's byte budget: its `cacheClusterSize` in GB (GiB of memory), at most `cap`."""
    try:
        size = float(cluster_size if cluster_size is not None else S.CACHE_CLUSTER_GB[0])
    except (TypeError, ValueError):
        size = float(S.CACHE_CLUSTER_GB[0])
    capacity = max(int(size * 2**30), 1)
    return min(capacity, cap) if cap is not None else capacity


def stage_cache(
    settings: Settings, keys: Iterable[str], capacity_bytes: int, epoch: int = 0
) -> S.StageCacheSpec:
    """The cache of a stage whose `cacheClusterEnabled` is true, for the routes `keys`."""
    base = settings.get("*/*") or {}
    own_settings = _by_route(settings)
    routes: dict[str, S.RouteCacheSpec] = {}
    for route_key in keys:
        method = route_key.partition(" ")[0]
        own = own_settings.get(route_key) or {}

        def member(name: str, default: Any, own: Mapping[str, Any] = own) -> Any:
            value = own.get(name)
            if value is None:
                value = base.get(name)
            return default if value is None else value

        explicit = own.get("cachingEnabled") is not None
        if not member("cachingEnabled", False):
            continue
        # Stage-wide caching is GET's only; an ANY route caches its GET requests.
        if not explicit and method not in ("GET", "ANY"):
            continue
        ttl = int(member("cacheTtlInSeconds", DEFAULT_TTL_S))
        if ttl <= 0:
            continue
        unauthorized = member("unauthorizedCacheControlHeaderStrategy", DEFAULT_UNAUTHORIZED)
        routes[route_key] = S.route_cache(
            min(ttl, 3600),
            "ALL" if explicit else "GET",
            require_authorization=bool(member("requireAuthorizationForCacheControl", True)),
            unauthorized=unauthorized if unauthorized in _UNAUTHORIZED else DEFAULT_UNAUTHORIZED,
        )
    return S.stage_cache(capacity_bytes, routes, epoch)
