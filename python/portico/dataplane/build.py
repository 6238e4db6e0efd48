"""Assembling a data plane from a configuration: the one place that wires the pieces.

Used by the CLI's workers and by applications that embed Portico as a library.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from portico.compile.files import (
    CompiledConfig,
    CompileError,
    assemble,
    compile_config,
    compile_file_apis,
    deployment_id_of,
)
from portico.compile.usage_plans import DurableUsage, file_usage_plans, load_durable_usage
from portico.config.loader import load_config, relocate
from portico.config.models import Config
from portico.control.store import Store
from portico.dataplane.app import DataPlane
from portico.dataplane.plugins import Plugin
from portico.integrations.functions import FunctionRegistry

logger = logging.getLogger("portico.dataplane")


def _durable_usage(usage_store: Store | str | Path) -> DurableUsage | None:
    """What the data directory keeps of the config's usage plans' usage (None when it cannot be
    read: counting starts from zero, with a log line)."""
    store = usage_store if isinstance(usage_store, Store) else Store(usage_store, read_only=True)
    try:
        return load_durable_usage(store)
    except Exception:
        logger.exception("the usage plans' durable counts could not be read; counting from zero")
        return None
    finally:
        store.close()


def build_registry(config: Config, function_specs: Sequence[str] = ()) -> FunctionRegistry:
    """Functions declared in the config, then `NAME=module:attr` specs (which win on a clash)."""
    registry = FunctionRegistry()
    for name, function in config.functions.items():
        registry.load(name, function.handler)
    for spec in function_specs:
        registry.register_spec(spec)
    return registry


def compile_file(path: str | Path, function_specs: Sequence[str] = ()) -> CompiledConfig:
    """Load, validate and compile a config file without serving it (raises on any problem)."""
    config = load_config(path)
    try:
        return compile_config(config, build_registry(config, function_specs))
    except CompileError as exc:
        # An OpenAPI document's problems are named by its own fields.
        raise CompileError("\n".join(relocate(config, line) for line in str(exc).splitlines())) from None


def build_dataplane(
    config: str | Path | Config,
    *,
    function_specs: Sequence[str] = (),
    registry: FunctionRegistry | None = None,
    shared_buckets_path: str | None = None,
    shared_usage_path: str | None = None,
    plugins: Sequence[Plugin] = (),
    store: Store | str | Path | None = None,
    usage_store: Store | str | Path | None = None,
    max_threads: int = 256,
    admin_key: tuple[str, str] | None = None,
    redis: dict[str, Any] | None = None,
) -> DataPlane:
    """An ASGI app serving `config` (a file path or a `Config`) through the core's pipeline.

    With `store` (a control-plane `Store` or its data directory), it also serves the APIs created
    through the admin API, and follows every change: it polls the store's generation every 200 ms
    (from ASGI lifespan startup) and swaps in the rebuilt configuration without dropping requests.
    `max_threads` bounds the threads that run Lambda handlers and plugins; one function holds at
    most its concurrency limit of them (`settings.functionConcurrency`), so a hung one leaves the
    rest to the others. `admin_key` (access key id, secret): the admin API's key, which signs
    requests to `AWS_IAM` routes as the root of the gateway's account.

    `shared_buckets_path`, `shared_usage_path`: the files the token buckets and the usage plans'
    counters live in, shared by every process serving the same port (else this process's own).
    `usage_store` (without `store`): the data directory whose durable usage counts the config
    file's usage plans go on from (with `store`, the store's own).
    `redis` (cluster mode: `url`, `fail`, `timeout_ms`): the Redis whose buckets and usage counts
    this data plane shares with the other nodes' (see "Cluster mode" in docs/pipeline.md).
    """
    if not isinstance(config, Config):
        config = load_config(config)
    if registry is None:
        registry = build_registry(config, function_specs)
    deployment_id = deployment_id_of(config)
    file_apis = compile_file_apis(config, registry, deployment_id)
    common = {
        "registry": registry,
        "shared_buckets_path": shared_buckets_path,
        "shared_usage_path": shared_usage_path,
        "plugins": plugins,
        "max_threads": max_threads,
        "redis": redis,
    }
    if store is None:
        plans = None
        if usage_store is not None:
            plans = file_usage_plans(config, _durable_usage(usage_store))
        compiled = assemble(config, file_apis, deployment_id, admin_key=admin_key, usage_plans=plans)
        return DataPlane(compiled, **common)  # type: ignore[arg-type]
    from portico.compile.store import StoreSource

    if not isinstance(store, Store):
        # Read-only: the data plane never writes the store, so a full or failing disk cannot
        # touch it; the admin process owns (and creates) the database.
        store = Store(store, read_only=True)
    source = StoreSource(store, config, registry, file_apis, admin_key)
    generation: int | None = None
    try:
        # The generation is read first: a write racing with this build is picked up by the first poll.
        generation = source.generation()
        compiled = source.build()
    except Exception:  # a store the compiler cannot read must not keep the file's APIs from serving
        logger.exception("the admin-created APIs could not be loaded; serving the config file's only")
        # Usage plans count from zero: what the store keeps of their usage cannot be read either.
        compiled, generation = assemble(config, file_apis, deployment_id, admin_key=admin_key), None
    return DataPlane(compiled, source=source, generation=generation, **common)  # type: ignore[arg-type]
