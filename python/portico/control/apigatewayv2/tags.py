"""apigatewayv2: TagResource / UntagResource / GetTags.

Tags live on the tagged resource's own document (member `Tags`, which GetApi / GetStage /
GetDomainName / GetVpcLink return). ARNs: `arn:aws:apigateway:{region}::/apis/{apiId}`,
`.../apis/{apiId}/stages/{stageName}`, `.../domainnames/{domainName}`, `.../vpclinks/{vpcLinkId}`."""

from __future__ import annotations

import re
from typing import Any

from portico.control.apigatewayv2.common import API_KIND, SERVICE, STAGE, not_found, stage_id
from portico.control.errors import BadRequestException
from portico.control.registry import AdminRequest, operation

_ARN = re.compile(r"^arn:aws[a-z-]*:apigateway:([a-z0-9-]*)::(/.+)$")
MAX_TAGS = 50


def _locate(resource_arn: str) -> tuple[str, str, str | None]:
    """(kind, id, parent) of the document an ARN names."""
    match = _ARN.match(resource_arn)
    if match is None:
        raise BadRequestException(f"Invalid resource ARN specified {resource_arn}")
    parts = match.group(2).strip("/").split("/")
    if len(parts) == 2 and parts[0] == "apis":
        return API_KIND, parts[1], None
    if len(parts) == 4 and parts[0] == "apis" and parts[2] == "stages":
        return STAGE, stage_id(parts[1], parts[3]), parts[1]
    if len(parts) == 2 and parts[0] == "domainnames":
        return "domainname", parts[1], None
    if len(parts) == 2 and parts[0] == "vpclinks":
        return "vpclink", parts[1], None
    raise BadRequestException(f"Tagging is not supported for resource {resource_arn}")


def _load(tx, resource_arn: str) -> tuple[str, str, str | None, dict[str, Any]]:
    kind, doc_id, parent = _locate(resource_arn)
    doc = tx.get(SERVICE, kind, doc_id, parent=parent)
    if doc is None:
        raise not_found(f"Invalid resource identifier specified {resource_arn}")
    return kind, doc_id, parent, doc


@operation(SERVICE, "TagResource")
def tag_resource(request: AdminRequest, params: dict) -> dict:
    tags = params.get("Tags") or {}
    for key, value in tags.items():
        if not 1 <= len(key) <= 128 or key.lower().startswith("aws:") or len(value) > 256:
            raise BadRequestException(f"Invalid tag: {key}")
    with request.store.transaction() as tx:
        kind, doc_id, parent, doc = _load(tx, params["ResourceArn"])
        merged = {**(doc.get("Tags") or {}), **tags}
        if len(merged) > MAX_TAGS:
            raise BadRequestException(f"A resource can have at most {MAX_TAGS} tags")
        doc["Tags"] = merged
        tx.put(SERVICE, kind, doc_id, doc, parent=parent)
    return {}


@operation(SERVICE, "UntagResource")
def untag_resource(request: AdminRequest, params: dict) -> None:
    with request.store.transaction() as tx:
        kind, doc_id, parent, doc = _load(tx, params["ResourceArn"])
        tags = doc.get("Tags") or {}
        for key in params.get("TagKeys") or []:
            tags.pop(key, None)
        doc["Tags"] = tags
        tx.put(SERVICE, kind, doc_id, doc, parent=parent)


@operation(SERVICE, "GetTags")
def get_tags(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        _, _, _, doc = _load(tx, params["ResourceArn"])
    return {"Tags": doc.get("Tags") or {}}
