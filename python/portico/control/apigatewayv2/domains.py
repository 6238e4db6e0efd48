"""apigatewayv2: custom domain names and API mappings (stored; the data plane may route by them).

Documents: kind "domainname" (parent None, id DomainName), kind "apimapping" (parent DomainName,
id ApiMappingId: ApiId, ApiMappingId, ApiMappingKey, Stage)."""

from __future__ import annotations

import re
from typing import Any

from portico.control import ids
from portico.control.apigatewayv2.common import SERVICE, load_api, load_stage, not_found
from portico.control.errors import BadRequestException, ConflictException
from portico.control.registry import AdminRequest, copy_given, operation, paginate

DOMAIN = "domainname"
MAPPING = "apimapping"
_DOMAIN_NAME = re.compile(r"^(?=.{1,512}$)(\*\.)?([A-Za-z0-9-]+\.)+[A-Za-z0-9-]+$")
_MAPPING_KEY = re.compile(r"^[A-Za-z0-9$_.+!*'()-]+(/[A-Za-z0-9$_.+!*'()-]+)*$")
_HOSTED_ZONE = "Z1UJRXOUMOOFQ8"


def load_domain(tx, name: str) -> dict[str, Any]:
    doc = tx.get(SERVICE, DOMAIN, name)
    if doc is None:
        raise not_found(f"Invalid domain name identifier specified {name}", "DomainName")
    return doc


def _configurations(request: AdminRequest, configs: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    out = []
    for config in configs or [{}]:
        config = dict(config)
        config.setdefault("EndpointType", "REGIONAL")
        config.setdefault("SecurityPolicy", "TLS_1_2")
        config.setdefault("IpAddressType", "ipv4")
        config.setdefault("DomainNameStatus", "AVAILABLE")
        config.setdefault("HostedZoneId", _HOSTED_ZONE)
        config.setdefault(
            "ApiGatewayDomainName", f"d-{ids.random_id(10)}.execute-api.{request.region}.amazonaws.com"
        )
        out.append(config)
    return out


@operation(SERVICE, "CreateDomainName")
def create_domain_name(request: AdminRequest, params: dict) -> dict:
    name = params["DomainName"]
    if not _DOMAIN_NAME.match(name):
        raise BadRequestException(f"Invalid domain name: {name}")
    domain = {
        "DomainName": name,
        "DomainNameArn": f"arn:aws:apigateway:{request.region}::/domainnames/{name}",
        "ApiMappingSelectionExpression": "$request.basepath",
        "DomainNameConfigurations": _configurations(request, params.get("DomainNameConfigurations")),
        "RoutingMode": params.get("RoutingMode", "API_MAPPING_ONLY"),
        "Tags": params.get("Tags") or {},
    }
    if params.get("MutualTlsAuthentication") is not None:
        domain["MutualTlsAuthentication"] = params["MutualTlsAuthentication"]
    with request.store.transaction() as tx:
        if tx.exists(SERVICE, DOMAIN, name):
            raise ConflictException(f"The domain name you provided already exists: {name}")
        tx.put(SERVICE, DOMAIN, name, domain)
    return domain


@operation(SERVICE, "GetDomainName")
def get_domain_name(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        return load_domain(tx, params["DomainName"])


@operation(SERVICE, "GetDomainNames")
def get_domain_names(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        items = tx.list(SERVICE, DOMAIN)
    page, token = paginate(items, params.get("NextToken"), params.get("MaxResults"), default=100)
    return {"Items": page, "NextToken": token}


@operation(SERVICE, "UpdateDomainName")
def update_domain_name(request: AdminRequest, params: dict) -> dict:
    with request.store.transaction() as tx:
        domain = load_domain(tx, params["DomainName"])
        if params.get("DomainNameConfigurations") is not None:
            domain["DomainNameConfigurations"] = _configurations(request, params["DomainNameConfigurations"])
        copy_given(params, domain, ("MutualTlsAuthentication", "RoutingMode"))
        tx.put(SERVICE, DOMAIN, domain["DomainName"], domain)
    return domain


@operation(SERVICE, "DeleteDomainName")
def delete_domain_name(request: AdminRequest, params: dict) -> None:
    with request.store.transaction() as tx:
        load_domain(tx, params["DomainName"])
        tx.delete(SERVICE, DOMAIN, params["DomainName"])
        for mapping in tx.list(SERVICE, MAPPING, params["DomainName"]):
            tx.delete(SERVICE, MAPPING, mapping["ApiMappingId"])


def _load_mapping(tx, domain: str, mapping_id: str) -> dict[str, Any]:
    """An API mapping of the domain name; NotFound for the domain name first, then the mapping."""
    load_domain(tx, domain)
    doc = tx.get(SERVICE, MAPPING, mapping_id, parent=domain)
    if doc is None:
        raise not_found(f"Invalid API mapping identifier specified {mapping_id}", "ApiMapping")
    return doc


def _save_mapping(request: AdminRequest, tx, domain: str, mapping: dict[str, Any]) -> None:
    """Store a new or changed mapping once its API, stage and key are valid for the domain name."""
    load_api(request, tx, mapping["ApiId"])
    load_stage(tx, mapping["ApiId"], mapping["Stage"])
    key = mapping.get("ApiMappingKey") or ""
    if key and not _MAPPING_KEY.match(key):
        raise BadRequestException(f"Invalid API mapping key: {key}")
    for other in tx.list(SERVICE, MAPPING, domain):
        if (other.get("ApiMappingKey") or "") == key and other["ApiMappingId"] != mapping["ApiMappingId"]:
            raise ConflictException(
                f"An API mapping with key '{key}' already exists for domain name {domain}"
            )
    tx.put(SERVICE, MAPPING, mapping["ApiMappingId"], mapping, parent=domain)


@operation(SERVICE, "CreateApiMapping")
def create_api_mapping(request: AdminRequest, params: dict) -> dict:
    domain = params["DomainName"]
    mapping = {"ApiMappingId": ids.random_id(6), "ApiId": params["ApiId"], "Stage": params["Stage"]}
    if params.get("ApiMappingKey"):
        mapping["ApiMappingKey"] = params["ApiMappingKey"]
    with request.store.transaction() as tx:
        load_domain(tx, domain)
        _save_mapping(request, tx, domain, mapping)
    return mapping


@operation(SERVICE, "GetApiMapping")
def get_api_mapping(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        return _load_mapping(tx, params["DomainName"], params["ApiMappingId"])


@operation(SERVICE, "GetApiMappings")
def get_api_mappings(request: AdminRequest, params: dict) -> dict:
    with request.store.read() as tx:
        load_domain(tx, params["DomainName"])
        items = tx.list(SERVICE, MAPPING, params["DomainName"])
    page, token = paginate(items, params.get("NextToken"), params.get("MaxResults"), default=100)
    return {"Items": page, "NextToken": token}


@operation(SERVICE, "UpdateApiMapping")
def update_api_mapping(request: AdminRequest, params: dict) -> dict:
    domain = params["DomainName"]
    with request.store.transaction() as tx:
        mapping = _load_mapping(tx, domain, params["ApiMappingId"])
        copy_given(params, mapping, ("ApiId", "ApiMappingKey", "Stage"))
        _save_mapping(request, tx, domain, mapping)
    return mapping


@operation(SERVICE, "DeleteApiMapping")
def delete_api_mapping(request: AdminRequest, params: dict) -> None:
    with request.store.transaction() as tx:
        _load_mapping(tx, params["DomainName"], params["ApiMappingId"])
        tx.delete(SERVICE, MAPPING, params["ApiMappingId"])
