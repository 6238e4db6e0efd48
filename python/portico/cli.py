"""The `portico` command line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from portico import __version__

DEFAULT_CONFIG_NAMES = ("portico.yaml", "portico.yml", "openapi.yaml", "openapi.json")
DEFAULT_DATA_DIR = "./.portico"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="portico",
        description="Portico: a self-hosted API gateway with Amazon API Gateway's wire formats.",
    )
    parser.add_argument("--version", action="version", version=f"portico {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="serve the APIs of a config file (Portico YAML or an OpenAPI 3 document)",
        description=(
            "Validate CONFIG and serve its APIs. CONFIG is a Portico YAML file or an OpenAPI 3 "
            "document in AWS's HTTP API import format (x-amazon-apigateway-integration). "
            "Without CONFIG, the first of portico.yaml, portico.yml, openapi.yaml, openapi.json "
            "in the current directory is used."
        ),
    )
    serve.add_argument("config", nargs="?", help="configuration file")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on (default: 8080)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes sharing the port; throttle limits hold for all of them together (default: 1)",
    )
    serve.add_argument(
        "--function",
        action="append",
        default=[],
        metavar="NAME=MODULE:ATTR",
        help="register a Lambda handler under NAME (repeatable); modules load from the working directory",
    )
    serve.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE:ATTR",
        help="add a pipeline plugin (a portico.dataplane.plugins.Plugin subclass or instance; repeatable)",
    )
    serve.add_argument(
        "--no-edge",
        dest="edge",
        action="store_false",
        help=(
            "serve every request through the Python pipeline on Granian, without the Rust edge in "
            "front (which answers plugin-free HTTP_PROXY and MOCK routes, 404s and 429s itself)"
        ),
    )
    serve.add_argument(
        "--tls-cert",
        metavar="FILE",
        help=(
            "serve https with this PEM certificate chain (leaf first); with --tls-key, in place of "
            "the config's settings.tls. Read again when it changes or on SIGHUP"
        ),
    )
    serve.add_argument("--tls-key", metavar="FILE", help="the PEM private key of --tls-cert (not encrypted)")
    serve.add_argument(
        "--tls-truststore",
        metavar="FILE",
        help="mTLS: PEM CA certificates that issue the client certificates (others get 403 Forbidden)",
    )
    serve.add_argument(
        "--check", action="store_true", help="validate the configuration and exit without serving"
    )
    serve.add_argument(
        "--admin-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve the admin API (apigateway and apigatewayv2, SigV4-signed) on PORT (default: none)",
    )
    serve.add_argument(
        "--admin-host", default="127.0.0.1", help="address of the admin API (default: 127.0.0.1)"
    )
    serve.add_argument(
        "--data-dir",
        default=None,
        help=(
            "state directory: the admin API's (default: ./.portico with --admin-port), and where usage "
            "plans' request counts are kept across restarts (without it, a config file's usage plans "
            "count from zero at every start)"
        ),
    )
    serve.add_argument(
        "--admin-key",
        default=None,
        metavar="ID:SECRET",
        help="admin credentials (or env PORTICO_ADMIN_KEY); default: generated into DATA_DIR/admin-key",
    )

    serve.add_argument(
        "--redis",
        default=None,
        metavar="URL",
        help=(
            "cluster mode: share token buckets, quotas and usage counts, and the admin API's changes, "
            "with every node on this Redis (redis://[:PASSWORD@]HOST:PORT/DB)"
        ),
    )
    serve.add_argument(
        "--redis-fail",
        choices=("open", "closed"),
        default="open",
        help=(
            "while Redis is unreachable: open, each node applies its own throttles and quotas "
            "(default); closed, requests with throttles or quotas are refused with 429"
        ),
    )
    serve.add_argument(
        "--redis-timeout-ms",
        type=float,
        default=5.0,
        metavar="MS",
        help="the longest a request waits on Redis before it is decided as --redis-fail says (default: 5)",
    )
    serve.add_argument(
        "--redis-lease-ms",
        type=float,
        default=20.0,
        metavar="MS",
        help=(
            "a worker may take a shared bucket's tokens in blocks, while the bucket has room, and spend "
            "them for this long without asking Redis: over any window t the nodes admit at most "
            "burst + rate * (t + MS); 0 asks Redis for every request (default: 20)"
        ),
    )

    check = commands.add_parser("check", help="validate a config file and print what it serves")
    check.add_argument("config", nargs="?", help="configuration file")
    check.add_argument("--function", action="append", default=[], metavar="NAME=MODULE:ATTR")

    from portico import admin_cli, bench_cli

    bench_cli.register(commands)
    admin_cli.register(commands)
    return parser


def _find_config(given: str | None, required: bool = True) -> str | None:
    """The config file to serve; None when there is none and none is `required` (with the admin
    API, Portico can start empty and serve only what the admin API creates)."""
    if given:
        return given
    for name in DEFAULT_CONFIG_NAMES:
        if Path(name).is_file():
            return name
    if not required:
        return None
    raise SystemExit(
        "portico: no CONFIG given and none of "
        + ", ".join(DEFAULT_CONFIG_NAMES)
        + " in the current directory"
    )


def _validate(config_path: str | None, functions: list[str], plugins: list[str] = ()):
    from portico.compile.files import CompileError, compile_config
    from portico.config.loader import ConfigFileError
    from portico.config.models import Config
    from portico.dataplane.build import build_registry, compile_file
    from portico.dataplane.plugins import load_plugins

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        load_plugins(plugins)
        if config_path is None:
            return compile_config(Config(), build_registry(Config(), functions))
        return compile_file(config_path, functions)
    except ConfigFileError as exc:
        print(f"portico: {exc}", file=sys.stderr)
    except CompileError as exc:
        problems = "\n".join(f"  - {line}" for line in str(exc).splitlines())
        print(f"portico: invalid configuration in {config_path}:\n{problems}", file=sys.stderr)
    except ValueError as exc:  # a --function spec that cannot be loaded
        print(f"portico: {exc}", file=sys.stderr)
    raise SystemExit(2)


def _tls_options(args: argparse.Namespace, config_path: str | None):
    """The public port's TLS: the --tls-* flags when any is given, else the config's settings.tls
    (its relative paths taken from the config file's directory); None for plain http."""
    from portico.serve.process import TlsOptions

    if args.tls_cert or args.tls_key or args.tls_truststore:
        if not (args.tls_cert and args.tls_key):
            raise SystemExit("portico: --tls-cert and --tls-key go together (--tls-truststore needs both)")
        return TlsOptions(
            os.path.abspath(args.tls_cert),
            os.path.abspath(args.tls_key),
            os.path.abspath(args.tls_truststore) if args.tls_truststore else None,
            names=("--tls-cert", "--tls-key", "--tls-truststore"),
        )
    if config_path is None:
        return None
    from portico.config.loader import load_config

    tls = load_config(config_path).settings.tls
    if tls is None:
        return None
    base = os.path.dirname(config_path)
    mtls = tls.mutualTlsAuthentication
    return TlsOptions(
        os.path.join(base, tls.certificateFile),
        os.path.join(base, tls.privateKeyFile),
        os.path.join(base, mtls.truststoreFile) if mtls else None,
    )


def _describe(compiled, host: str, port: int, scheme: str = "http") -> str:
    lines = []
    for api in compiled.apis:
        lines.append(f"API {api['name']} (id {api['id']})")
        for stage in api["stages"]:
            name = stage["name"]
            base = f"{scheme}://{host}:{port}" + ("" if name == "$default" else f"/{name}")
            lines.append(f"  stage {name}: {base}  (or {scheme}://{api['id']}.execute-api.localhost:{port})")
        routes = api["routes"] or next((s.get("routes", []) for s in api["stages"]), [])
        for route in routes:
            lines.append(f"    {route['key']}")
    return "\n".join(lines)


def _take_admin_key(args: argparse.Namespace) -> str | None:
    """The admin key configured for this server (`--admin-key`, else `PORTICO_ADMIN_KEY`), taken
    out of the environment before any user code loads: Lambda handlers and plugins run in
    processes that inherit it (the admin process is handed the key explicitly)."""
    from portico.control.keys import ENV_ADMIN_KEY

    from_env = os.environ.pop(ENV_ADMIN_KEY, None)
    return args.admin_key or from_env


def _serve(args: argparse.Namespace) -> int:
    admin_key = _take_admin_key(args)
    found = _find_config(args.config, required=args.admin_port is None)
    config_path = os.path.abspath(found) if found else None
    compiled = _validate(config_path, args.function, args.plugin)
    tls = _tls_options(args, config_path)
    if tls is not None and not args.edge:
        raise SystemExit("portico: TLS is served by the edge; it cannot be combined with --no-edge")
    scheme = "https" if tls is not None else "http"
    if args.check:
        if tls is not None:
            from portico.serve.process import check_tls

            for warning in check_tls(tls):
                print(f"portico: truststore warning: {warning}")
        print(_describe(compiled, args.host, args.port, scheme))
        return 0
    if args.workers < 1:
        raise SystemExit("portico: --workers must be at least 1")

    from portico.serve.process import RedisOptions, ServeOptions, serve

    redis = None
    if args.redis is not None:
        redis = RedisOptions(args.redis, args.redis_fail, args.redis_timeout_ms, args.redis_lease_ms)
        problem = redis.problem()
        if problem:
            raise SystemExit(f"portico: --redis: {problem}")

    options = ServeOptions(
        config_path=config_path,
        host=args.host,
        port=args.port,
        workers=args.workers,
        functions=list(args.function),
        plugins=list(args.plugin),
        edge=args.edge,
        tls=tls,
        redis=redis,
    )
    if tls is not None:
        from portico.serve.process import check_tls

        check_tls(tls)  # an unusable file stops here, before anything is described or bound
    print(_describe(compiled, args.host, args.port, scheme), flush=True)
    config = compiled.config
    options.usage_flush_interval_ms = config.settings.usageFlushIntervalMs
    if args.admin_port is not None or (args.data_dir and config.usagePlans):
        options.usage_dir = os.path.abspath(args.data_dir or DEFAULT_DATA_DIR)
        _prepare_usage_store(options.usage_dir, config)
    elif any(plan.quota is not None for plan in config.usagePlans):
        print(
            "portico: usage plans' quotas count from zero at every start: "
            "give --data-dir to keep their counts",
            flush=True,
        )
    account = config.settings.accountThrottle
    return serve(
        options,
        start_admin=lambda: _start_admin(args, admin_key, account.throttle()),
        stop_admin=_stop_admin,
        data_dir=os.path.abspath(args.data_dir or DEFAULT_DATA_DIR),
    )


def _prepare_usage_store(data_dir: str, config) -> None:
    """Create the store the usage counts go to, and record when the config's plans' quotas were
    first served (the period that takes their `offset`), before any worker compiles them."""
    from portico import _core
    from portico.compile.usage_plans import file_quota_since, load_durable_usage
    from portico.control.store import Store

    store = Store(data_dir)
    try:
        since = file_quota_since(config, load_durable_usage(store), _core.wall_clock_ms())
        store.record_quota_since(since)
    finally:
        store.close()


def _start_admin(args: argparse.Namespace, admin_key: str | None, account_throttle: dict | None = None):
    """Start the admin API in a child process (None without --admin-port), handing it the key
    (`admin_key`, else the one in the data directory) and the account's throttle (`get_account`
    shows it). Prints where the generated admin key lives, never the secret."""
    if args.admin_port is None:
        return None
    import multiprocessing
    import time

    from portico.control.keys import AdminKeyError, load_or_create_admin_key
    from portico.control.server import run_admin_server

    data_dir = os.path.abspath(args.data_dir or DEFAULT_DATA_DIR)
    try:
        access_key_id, secret, key_path = load_or_create_admin_key(data_dir, admin_key)
    except (AdminKeyError, OSError) as exc:
        raise SystemExit(f"portico: admin key: {exc}") from None
    from portico.serve import admin_principal
    from portico.serve.worker import ENV_SHARED_USAGE

    # The workers, forked later, verify AWS_IAM routes' signatures by the admin key too.
    admin_principal.share(access_key_id, secret)
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    process = context.Process(
        target=run_admin_server,
        args=(args.admin_host, args.admin_port, data_dir, (access_key_id, secret)),
        kwargs={
            "ready": ready,
            "exit_with_parent": True,
            "account_throttle": account_throttle,
            # The workers' usage counters (set by `serve` before the admin API starts).
            "usage_path": os.environ.get(ENV_SHARED_USAGE),
            # Cluster mode: its changes are journaled for the other nodes (`portico.control.replica`).
            "journal": args.redis is not None,
        },
        name="portico-admin",
        daemon=True,
    )
    process.start()
    deadline = time.monotonic() + 30
    while not ready.wait(0.1):
        if not process.is_alive() or time.monotonic() > deadline:
            _stop_admin(process)
            raise SystemExit(f"portico: the admin API could not start on {args.admin_host}:{args.admin_port}")
    where = f"in {key_path}" if key_path else "from --admin-key / PORTICO_ADMIN_KEY"
    print(
        f"portico: admin API on http://{args.admin_host}:{args.admin_port} (apigateway, apigatewayv2); "
        f"access key {access_key_id}, secret {where}; state in {data_dir}",
        flush=True,
    )
    return process


def _stop_admin(process) -> None:
    if process.is_alive():
        process.terminate()
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join(5)


def _check(args: argparse.Namespace) -> int:
    config_path = _find_config(args.config)
    compiled = _validate(config_path, args.function)
    print(f"{config_path}: OK")
    print(_describe(compiled, "127.0.0.1", 8080))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "check":
        return _check(args)
    if args.command == "bench":
        from portico import bench_cli

        return bench_cli.run(args)
    if args.command is not None:
        from portico import admin_cli

        return admin_cli.run(args)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
