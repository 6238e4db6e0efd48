"""Portico's control plane: Amazon API Gateway's management APIs (apigateway and apigatewayv2),
wire-compatible with boto3 and the AWS CLI.

- `wire`: the rest-json protocol, driven by botocore's service models
- `sigv4`: Signature V4 verification
- `registry`: `@operation(service, name)` handlers, `AdminRequest`, pagination
- `store`: SQLite state (`<data-dir>/portico.db`), `keys`: admin credentials, `ids`: AWS-style ids
- `patch`: v1 `patchOperations`
- `server`: the aiohttp admin server
- handlers, one module per resource family: `apigateway/` (REST APIs: `restapis`, `resources`,
  ...) and `apigatewayv2/` (HTTP and WebSocket APIs: `apis`, `routes`, ...)
"""
