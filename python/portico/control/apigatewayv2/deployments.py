"""apigatewayv2: deployments. Documents: kind "deployment", id DeploymentId, parent ApiId:
GetDeploymentResponse members plus the private `_snapshot` (see `common.snapshot`)."""

from __future__ import annotations

from typing import Any

from portico.control.apigatewayv2.common import (
    DEPLOYMENT,
    SERVICE,
    STAGE,
    create_deployment,
    load_api,
    load_stage,
    not_found,
    point_stage,
    stage_id,
)
from portico.control.errors import BadRequestException
from portico.control.registry import AdminRequest, operation, paginate


def load_deployment(tx, api_id: str, deployment_id: str) -> dict[str, Any]:
    doc = tx.get(SERVICE, DEPLOYMENT, deployment_id, parent=api_id)
    if doc is None:
        raise not_found(f"Invalid Deployment identifier specified {deployment_id}", "Deployment")
    return doc


@operation(SERVICE, "CreateDeployment")
def create_deployment_op(request: AdminRequest, params: dict) -> dict:
    api_id = params["ApiId"]
    with request.store.transaction() as tx:
        load_api(request, tx, api_id)
        stage = None
        if params.get("StageName"):
            stage = load_stage(tx, api_id, params["StageName"])
            if stage.get("AutoDeploy"):
                raise BadRequestException(
                    f"Stage {params['StageName']} has AutoDeploy enabled: "
                    "its deployments are managed automatically"
                )
        deployment = create_deployment(tx, api_id, params.get("Description"))
        if stage is not None:
            point_stage(stage, deployment["DeploymentId"])
            tx.put(SERVICE, STAGE, stage_id(api_id, stage["StageName"]), stage, parent=api_id)
    return deployment


@operation(SERVICE, "GetDeployment")
def get_deployment(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        load_api(request, tx, params["ApiId"])
        return load_deployment(tx, params["ApiId"], params["DeploymentId"])


@operation(SERVICE, "GetDeployments")
def get_deployments(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        load_api(request, tx, params["ApiId"])
        items = tx.list(SERVICE, DEPLOYMENT, params["ApiId"])
    page, token = paginate(items, params.get("NextToken"), params.get("MaxResults"), default=100)
    return {"Items": page, "NextToken": token}


@operation(SERVICE, "UpdateDeployment")
def update_deployment(request: AdminRequest, params: dict) -> dict:
    api_id = params["ApiId"]
    with request.store.transaction() as tx:
        load_api(request, tx, api_id)
        deployment = load_deployment(tx, api_id, params["DeploymentId"])
        if params.get("Description") is not None:
            deployment["Description"] = params["Description"]
        tx.put(SERVICE, DEPLOYMENT, deployment["DeploymentId"], deployment, parent=api_id)
    return deployment


@operation(SERVICE, "DeleteDeployment")
def delete_deployment(request: AdminRequest, params: dict) -> None:
    api_id, deployment_id = params["ApiId"], params["DeploymentId"]
    with request.store.transaction() as tx:
        load_api(request, tx, api_id)
        load_deployment(tx, api_id, deployment_id)
        if any(s.get("DeploymentId") == deployment_id for s in tx.list(SERVICE, STAGE, api_id)):
            raise BadRequestException("Active stages pointing to this deployment must be moved or deleted")
        tx.delete(SERVICE, DEPLOYMENT, deployment_id)
        api = tx.get(SERVICE, "api", api_id)
        if api is not None and deployment_id in api.get("_autoDeployments", []):
            api["_autoDeployments"].remove(deployment_id)
            tx.put(SERVICE, "api", api_id, api)
