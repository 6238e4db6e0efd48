"""apigateway: the REST API management API (API Gateway v1), one module per resource family.

Importing the package imports every handler module, which registers its operations (see
`portico.control.registry.load_handlers`)."""

from portico.control.apigateway import (
    account,
    apikeys,
    authorizers,
    deployments,
    gateway_responses,
    methods,
    models,
    openapi,
    resources,
    restapis,
    stages,
)

__all__ = [
    "account",
    "apikeys",
    "authorizers",
    "deployments",
    "gateway_responses",
    "methods",
    "models",
    "openapi",
    "resources",
    "restapis",
    "stages",
]
