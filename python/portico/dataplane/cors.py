"""HTTP API CORS (AWS `corsConfiguration`): preflight answered by the gateway, headers on responses.

As in API Gateway, configured CORS headers replace whatever the integration sent.
"""

from __future__ import annotations

from portico.config.models import Cors

_CORS_PREFIX = "access-control-"


class CorsPolicy:
    """A compiled `corsConfiguration`."""

    __slots__ = ("_allow_all", "_credentials", "_expose", "_origins", "_preflight_static")

    def __init__(self, cors: Cors) -> None:
        self._origins = frozenset(origin.lower() for origin in cors.allowOrigins)
        self._allow_all = "*" in self._origins
        self._credentials = cors.allowCredentials
        self._expose = ", ".join(cors.exposeHeaders)
        static: list[tuple[str, str]] = []
        if cors.allowMethods:
            static.append(("access-control-allow-methods", ", ".join(m.upper() for m in cors.allowMethods)))
        if cors.allowHeaders:
            static.append(("access-control-allow-headers", ", ".join(h.lower() for h in cors.allowHeaders)))
        if cors.maxAge is not None:
            static.append(("access-control-max-age", str(cors.maxAge)))
        self._preflight_static = static

    def _allow_origin(self, origin: str | None) -> str | None:
        if origin is None:
            return None
        if origin.lower() in self._origins:
            return origin
        if self._allow_all:
            return "*"
        return None

    def _common(self, origin: str | None) -> list[tuple[str, str]]:
        allowed = self._allow_origin(origin)
        if allowed is None:
            return []
        headers = [("access-control-allow-origin", allowed)]
        if self._credentials:
            headers.append(("access-control-allow-credentials", "true"))
        return headers

    def preflight_headers(self, origin: str | None) -> list[tuple[str, str]]:
        """Headers of the 204 the gateway answers a preflight with."""
        headers = self._common(origin)
        if headers:
            headers.extend(self._preflight_static)
        return headers

    def apply(self, headers: list[tuple[str, str]], origin: str | None) -> list[tuple[str, str]]:
        """Response headers with the integration's CORS headers replaced by the configured ones."""
        kept = [(name, value) for name, value in headers if not name.startswith(_CORS_PREFIX)]
        cors = self._common(origin)
        if cors and self._expose:
            cors.append(("access-control-expose-headers", self._expose))
        return kept + cors


def is_preflight(method: str, origin: str | None, request_method: str | None) -> bool:
    return method == "OPTIONS" and origin is not None and request_method is not None
