"""apigatewayv2: what the handler modules share (loading children, snapshots, autoDeploy).

Documents (service "apigatewayv2") follow the shared storage contract: kind "route" /
"integration" / "authorizer" / "model" / "stage" / "deployment" with parent = ApiId, kind
"routeresponse" with parent f"{ApiId}/{RouteId}", kind "integrationresponse" with parent
f"{ApiId}/{IntegrationId}". Stage ids are f"{ApiId}/{StageName}".

autoDeploy: `changed(request, tx, api_id)` is called by every write that changes what a deployment
captures (the API doc, routes, integrations, authorizers, models, route/integration responses). In
the same transaction it snapshots the API into a new deployment (AutoDeployed true) and points
every stage with AutoDeploy true at it.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from portico.control import ids
from portico.control.errors import NotFoundException
from portico.control.registry import AdminRequest

SERVICE = "apigatewayv2"
API_KIND = "api"
ROUTE = "route"
INTEGRATION = "integration"
AUTHORIZER = "authorizer"
MODEL = "model"
STAGE = "stage"
DEPLOYMENT = "deployment"
ROUTE_RESPONSE = "routeresponse"
INTEGRATION_RESPONSE = "integrationresponse"

# Unreferenced automatic deployments kept per API (older ones are pruned: with autoDeploy every
# route change makes one, each holding a full snapshot).
AUTO_DEPLOYMENT_HISTORY = 25


def api_not_found(request: AdminRequest, api_id: str) -> NotFoundException:
    return NotFoundException(
        f"Invalid API identifier specified {request.account_id}:{api_id}", ResourceType="Api"
    )


def load_api(request: AdminRequest, tx, api_id: str) -> dict[str, Any]:
    """The API document, or AWS's NotFoundException."""
    api = tx.get(SERVICE, API_KIND, api_id)
    if api is None:
        raise api_not_found(request, api_id)
    return api


def now() -> float:
    return round(time.time(), 3)


def not_found(message: str, resource_type: str | None = None) -> NotFoundException:
    return NotFoundException(message, ResourceType=resource_type)


def load_child(tx, kind: str, api_id: str, child_id: str, label: str) -> dict[str, Any]:
    """A route / integration / authorizer / model of the API, or AWS's NotFoundException."""
    doc = tx.get(SERVICE, kind, child_id, parent=api_id)
    if doc is None:
        raise not_found(f"Invalid {label} identifier specified {child_id}", label)
    return doc


def load_route(tx, api_id: str, route_id: str) -> dict[str, Any]:
    return load_child(tx, ROUTE, api_id, route_id, "Route")


def load_integration(tx, api_id: str, integration_id: str) -> dict[str, Any]:
    return load_child(tx, INTEGRATION, api_id, integration_id, "Integration")


def stage_id(api_id: str, stage_name: str) -> str:
    return f"{api_id}/{stage_name}"


def load_stage(tx, api_id: str, stage_name: str) -> dict[str, Any]:
    doc = tx.get(SERVICE, STAGE, stage_id(api_id, stage_name), parent=api_id)
    if doc is None:
        raise not_found(f"Invalid stage identifier specified {stage_name}", "Stage")
    return doc


def public(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy without private (`_`-prefixed) keys."""
    return {k: copy.deepcopy(v) for k, v in doc.items() if not k.startswith("_")}


def snapshot(tx, api_id: str) -> dict[str, Any]:
    """An immutable copy of everything a deployment captures."""
    api = tx.get(SERVICE, API_KIND, api_id) or {}
    routes = tx.list(SERVICE, ROUTE, api_id)
    integrations = tx.list(SERVICE, INTEGRATION, api_id)
    route_responses: list[dict[str, Any]] = []
    for route in routes:
        for response in tx.list(SERVICE, ROUTE_RESPONSE, f"{api_id}/{route['RouteId']}"):
            route_responses.append({**response, "RouteId": route["RouteId"]})
    integration_responses: list[dict[str, Any]] = []
    for integration in integrations:
        parent = f"{api_id}/{integration['IntegrationId']}"
        for response in tx.list(SERVICE, INTEGRATION_RESPONSE, parent):
            integration_responses.append({**response, "IntegrationId": integration["IntegrationId"]})
    return {
        "Api": public(api),
        "Routes": routes,
        "Integrations": integrations,
        "Authorizers": tx.list(SERVICE, AUTHORIZER, api_id),
        "Models": tx.list(SERVICE, MODEL, api_id),
        "RouteResponses": route_responses,
        "IntegrationResponses": integration_responses,
    }


def create_deployment(tx, api_id: str, description: str | None = None, auto: bool = False) -> dict[str, Any]:
    """Snapshot the API into a new deployment document (stored) and return it."""
    deployment_id = ids.short_id()
    doc: dict[str, Any] = {
        "DeploymentId": deployment_id,
        "DeploymentStatus": "DEPLOYED",
        "AutoDeployed": auto,
        "CreatedDate": now(),
        "_snapshot": snapshot(tx, api_id),
    }
    if description is not None:
        doc["Description"] = description
    tx.put(SERVICE, DEPLOYMENT, deployment_id, doc, parent=api_id)
    return doc


def point_stage(stage: dict[str, Any], deployment_id: str) -> None:
    stage["DeploymentId"] = deployment_id
    stage["LastUpdatedDate"] = now()
    stage["LastDeploymentStatusMessage"] = f"Successfully deployed stage with deployment ID '{deployment_id}'"


def auto_deploy(tx, api_id: str, stages: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """Deploy the API to its autoDeploy stages (all of them, or `stages`); None if there are none."""
    if stages is None:
        stages = [s for s in tx.list(SERVICE, STAGE, api_id) if s.get("AutoDeploy")]
    if not stages:
        return None
    deployment = create_deployment(tx, api_id, auto=True)
    for stage in stages:
        point_stage(stage, deployment["DeploymentId"])
        tx.put(SERVICE, STAGE, stage_id(api_id, stage["StageName"]), stage, parent=api_id)
    _prune_auto_deployments(tx, api_id, deployment["DeploymentId"])
    return deployment


def _prune_auto_deployments(tx, api_id: str, newest: str) -> None:
    api = tx.get(SERVICE, API_KIND, api_id)
    if api is None:
        return
    history = [d for d in api.get("_autoDeployments", []) if d != newest] + [newest]
    if len(history) > AUTO_DEPLOYMENT_HISTORY:
        used = {s.get("DeploymentId") for s in tx.list(SERVICE, STAGE, api_id)}
        excess = len(history) - AUTO_DEPLOYMENT_HISTORY
        kept = []
        for deployment_id in history:
            if excess > 0 and deployment_id not in used:
                tx.delete(SERVICE, DEPLOYMENT, deployment_id)
                excess -= 1
            else:
                kept.append(deployment_id)
        history = kept
    api["_autoDeployments"] = history
    tx.put(SERVICE, API_KIND, api_id, api)


def changed(tx, api_id: str) -> None:
    """Call after any write that changes what a deployment of `api_id` captures."""
    auto_deploy(tx, api_id)
