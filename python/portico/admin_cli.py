"""`portico apis | import | export | deploy`: the CLI side of the admin API.

These commands talk to a running Portico through the same SigV4-signed admin API that boto3 and
the AWS CLI use (they are boto3 clients themselves), so they can do nothing a script could not.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

DEFAULT_ADMIN_URL = "http://127.0.0.1:8081"
ENV_ADMIN_URL = "PORTICO_ADMIN_URL"


def add_admin_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(ENV_ADMIN_URL, DEFAULT_ADMIN_URL),
        help=f"the admin API of a running Portico (env {ENV_ADMIN_URL}; default {DEFAULT_ADMIN_URL})",
    )
    parser.add_argument(
        "--admin-key",
        default=None,
        metavar="ID:SECRET",
        help="admin credentials (env PORTICO_ADMIN_KEY; default: read from DATA_DIR/admin-key)",
    )
    parser.add_argument(
        "--data-dir", default="./.portico", help="where to find the admin key (default ./.portico)"
    )


def register(commands: argparse._SubParsersAction) -> None:
    """Add the admin commands to the `portico` parser."""
    apis = commands.add_parser("apis", help="list the APIs of a running Portico, with stages and routes")
    add_admin_arguments(apis)

    imp = commands.add_parser(
        "import",
        help="import an OpenAPI document as a new API (OpenAPI 3: HTTP API; Swagger 2 or --rest: REST API)",
    )
    imp.add_argument("file", help="OpenAPI document (JSON or YAML)")
    imp.add_argument(
        "--rest", action="store_true", help="import as a REST API (apigateway) even if OpenAPI 3"
    )
    imp.add_argument("--fail-on-warnings", action="store_true")
    add_admin_arguments(imp)

    exp = commands.add_parser("export", help="print an API as OpenAPI 3 with x-amazon-apigateway extensions")
    exp.add_argument("api_id")
    exp.add_argument("--stage", help="stage to export (required for REST APIs)")
    exp.add_argument("--format", choices=["json", "yaml"], default="yaml")
    exp.add_argument("-o", "--output", help="write to this file instead of standard output")
    add_admin_arguments(exp)

    dep = commands.add_parser("deploy", help="deploy an API's current state to a stage")
    dep.add_argument("api_id")
    dep.add_argument("--stage", required=True, help="stage name (created if it does not exist)")
    dep.add_argument("--description", default="")
    add_admin_arguments(dep)


def _clients(args: argparse.Namespace) -> tuple[Any, Any]:
    import boto3
    from botocore.config import Config

    from portico.control.keys import AdminKeyError, load_or_create_admin_key, parse_admin_key

    try:
        configured = args.admin_key or os.environ.get("PORTICO_ADMIN_KEY")
        if configured:
            access_key_id, secret = parse_admin_key(configured)
        else:
            key_file = Path(args.data_dir) / "admin-key"
            if not key_file.is_file():
                raise SystemExit(
                    f"portico: no admin key: pass --admin-key ID:SECRET, set PORTICO_ADMIN_KEY, "
                    f"or point --data-dir at the server's data directory (no {key_file})"
                )
            access_key_id, secret, _ = load_or_create_admin_key(args.data_dir)
    except AdminKeyError as exc:
        raise SystemExit(f"portico: {exc}") from None
    session = boto3.session.Session(
        aws_access_key_id=access_key_id, aws_secret_access_key=secret, region_name="us-east-1"
    )
    config = Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=60)
    v2 = session.client("apigatewayv2", endpoint_url=args.admin_url, config=config)
    v1 = session.client("apigateway", endpoint_url=args.admin_url, config=config)
    return v2, v1


def _is_http_api(v2: Any, api_id: str) -> bool:
    try:
        v2.get_api(ApiId=api_id)
        return True
    except v2.exceptions.NotFoundException:
        return False


def _all(method: Any, key: str, token_key: str, token_arg: str, **kwargs: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    token = None
    while True:
        page = method(**kwargs, **({token_arg: token} if token else {}))
        items.extend(page.get(key, []))
        token = page.get(token_key)
        if not token:
            return items


def cmd_apis(args: argparse.Namespace) -> int:
    v2, v1 = _clients(args)
    lines: list[str] = []
    for api in _all(v2.get_apis, "Items", "NextToken", "NextToken"):
        api_id = api["ApiId"]
        lines.append(f"{api_id}  {api['ProtocolType']:<9} {api['Name']}")
        for stage in _all(v2.get_stages, "Items", "NextToken", "NextToken", ApiId=api_id):
            auto = " (auto-deploy)" if stage.get("AutoDeploy") else ""
            lines.append(f"    stage {stage['StageName']}: deployment {stage.get('DeploymentId', '-')}{auto}")
        for route in _all(v2.get_routes, "Items", "NextToken", "NextToken", ApiId=api_id):
            lines.append(f"    route {route['RouteKey']} -> {route.get('Target', '-')}")
    for api in _all(v1.get_rest_apis, "items", "position", "position"):
        api_id = api["id"]
        lines.append(f"{api_id}  REST      {api['name']}")
        for stage in v1.get_stages(restApiId=api_id).get("item", []):
            canary = stage.get("canarySettings")
            extra = f" (canary {canary.get('percentTraffic', 0)}%)" if canary else ""
            lines.append(
                f"    stage {stage['stageName']}: deployment {stage.get('deploymentId', '-')}{extra}"
            )
        for resource in _all(
            v1.get_resources, "items", "position", "position", restApiId=api_id, embed=["methods"]
        ):
            for method in sorted(resource.get("resourceMethods") or {}):
                lines.append(f"    {method} {resource['path']}")
    print("\n".join(lines) if lines else "no APIs")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    v2, v1 = _clients(args)
    text = Path(args.file).read_text(encoding="utf-8")
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SystemExit(f"portico: {args.file}: not valid JSON or YAML: {exc}") from None
    rest = args.rest or (isinstance(document, dict) and "swagger" in document)
    if rest:
        api = v1.import_rest_api(body=text.encode(), failOnWarnings=args.fail_on_warnings)
        print(f"imported REST API {api['id']} ({api['name']})")
    else:
        api = v2.import_api(Body=text, FailOnWarnings=args.fail_on_warnings)
        print(f"imported HTTP API {api['ApiId']} ({api['Name']})")
    for warning in api.get("warnings") or api.get("Warnings") or []:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    v2, v1 = _clients(args)
    if _is_http_api(v2, args.api_id):
        kwargs: dict[str, Any] = {
            "ApiId": args.api_id,
            "Specification": "OAS30",
            "OutputType": args.format.upper(),
        }
        if args.stage:
            kwargs["StageName"] = args.stage
        body = v2.export_api(**kwargs)["body"].read()
    else:
        if not args.stage:
            raise SystemExit("portico: exporting a REST API needs --stage")
        accept = "application/yaml" if args.format == "yaml" else "application/json"
        body = v1.get_export(
            restApiId=args.api_id,
            stageName=args.stage,
            exportType="oas30",
            accepts=accept,
            parameters={"extensions": "integrations"},
        )["body"].read()
    if args.output:
        Path(args.output).write_bytes(body)
    else:
        sys.stdout.write(body.decode())
        if not body.endswith(b"\n"):
            sys.stdout.write("\n")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    v2, v1 = _clients(args)
    if _is_http_api(v2, args.api_id):
        stages = {
            s["StageName"] for s in _all(v2.get_stages, "Items", "NextToken", "NextToken", ApiId=args.api_id)
        }
        if args.stage not in stages:
            v2.create_stage(ApiId=args.api_id, StageName=args.stage)
        deployment = v2.create_deployment(
            ApiId=args.api_id, StageName=args.stage, Description=args.description
        )
        deployment_id = deployment["DeploymentId"]
    else:
        deployment = v1.create_deployment(
            restApiId=args.api_id, stageName=args.stage, description=args.description
        )
        deployment_id = deployment["id"]
    print(json.dumps({"apiId": args.api_id, "stage": args.stage, "deploymentId": deployment_id}))
    return 0


COMMANDS = {"apis": cmd_apis, "import": cmd_import, "export": cmd_export, "deploy": cmd_deploy}


def run(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return COMMANDS[args.command](args)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        print(f"portico: {error.get('Code', 'Error')}: {error.get('Message', exc)}", file=sys.stderr)
    except BotoCoreError as exc:
        print(f"portico: cannot talk to the admin API at {args.admin_url}: {exc}", file=sys.stderr)
    return 1
