"""User plugins: Python hooks on the request pipeline (like Kong's plugin phases).

Subclass `Plugin` and override the hooks you need; hooks you do not override cost nothing per
request. Pass instances to `DataPlane(plugins=[...])` or name them in `portico serve --plugin
module:attr`.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable

from portico.dataplane.context import RequestContext, Response


class Plugin:
    """Base class for plugins. All hooks are optional."""

    async def on_request(self, ctx: RequestContext) -> Response | None:
        """After routing and throttling, before the integration (the authorize phase).

        Return a `Response` to answer instead of the integration, or raise `GatewayError`.
        """
        return None

    async def on_response(self, ctx: RequestContext, response: Response) -> Response:
        """After the integration answered; return the response to send (possibly modified)."""
        return response


def load_plugins(targets: Iterable[str]) -> list[Plugin]:
    """Import `module:attr` plugins; a class is instantiated without arguments."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    plugins: list[Plugin] = []
    for target in targets:
        module_name, sep, attribute = target.partition(":")
        if not sep or not module_name or not attribute:
            raise ValueError(f"plugin {target!r}: expected module.path:attribute")
        try:
            found: object = importlib.import_module(module_name)
            for part in attribute.split("."):
                found = getattr(found, part)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"plugin {target!r}: {exc}") from None
        plugin = found() if isinstance(found, type) else found
        if not isinstance(plugin, Plugin):
            raise ValueError(f"plugin {target!r}: not a portico.dataplane.plugins.Plugin")
        plugins.append(plugin)
    return plugins
