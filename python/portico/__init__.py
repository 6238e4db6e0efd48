"""Portico: a self-hosted API gateway with Amazon API Gateway's wire formats.

The library API: `build_dataplane` (an ASGI app serving a configuration through the core's
pipeline), `Plugin` (hooks on that pipeline), and what hooks see: `RequestContext`, `Response`,
`GatewayError` and `ErrorType`.
"""

from portico.dataplane.build import build_dataplane
from portico.dataplane.context import RequestContext, Response
from portico.dataplane.errors import ErrorType, GatewayError
from portico.dataplane.plugins import Plugin

__all__ = [
    "ErrorType",
    "GatewayError",
    "Plugin",
    "RequestContext",
    "Response",
    "__version__",
    "build_dataplane",
]
__version__ = "0.1.0"
