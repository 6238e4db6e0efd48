"""apigatewayv2: the HTTP and WebSocket API management API, one module per resource family.

Importing the package imports every handler module, which registers its operations (see
`portico.control.registry.load_handlers`); `common` is what they share."""

from portico.control.apigatewayv2 import (
    apis,
    authorizers,
    deployments,
    domains,
    integrations,
    models,
    openapi,
    routes,
    stages,
    tags,
)

__all__ = [
    "apis",
    "authorizers",
    "deployments",
    "domains",
    "integrations",
    "models",
    "openapi",
    "routes",
    "stages",
    "tags",
]
