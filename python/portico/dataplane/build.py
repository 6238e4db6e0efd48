"""Assembling a data plane from a configuration file: the one place that wires the pieces.

Used by the CLI's workers and by applications that embed Portico as a library.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from portico.config.compile import CompiledConfig, compile_config
from portico.config.loader import load_config
from portico.config.models import Config
from portico.dataplane.app import DataPlane
from portico.dataplane.plugins import Plugin
from portico.integrations.functions import FunctionRegistry
from portico.integrations.http_proxy import make_transport


def build_registry(config: Config, function_specs: Sequence[str] = ()) -> FunctionRegistry:
    """Functions declared in the config, then `NAME=module:attr` specs (which win on a clash)."""
    registry = FunctionRegistry()
    for name, target in config.functions.items():
        registry.load(name, target)
    for spec in function_specs:
        registry.register_spec(spec)
    return registry


def compile_file(path: str | Path, function_specs: Sequence[str] = ()) -> CompiledConfig:
    """Load, validate and compile a config file without serving it (raises on any problem)."""
    config = load_config(path)
    return compile_config(config, build_registry(config, function_specs))


def build_dataplane(
    config: str | Path | Config,
    *,
    function_specs: Sequence[str] = (),
    registry: FunctionRegistry | None = None,
    shared_buckets_path: str | None = None,
    plugins: Sequence[Plugin] = (),
) -> DataPlane:
    """An ASGI app serving `config` (a file path or a `Config`)."""
    if not isinstance(config, Config):
        config = load_config(config)
    if registry is None:
        registry = build_registry(config, function_specs)
    transport = make_transport()
    compiled = compile_config(config, registry, transport)
    return DataPlane(
        compiled,
        shared_buckets_path=shared_buckets_path,
        plugins=plugins,
        on_shutdown=[transport.close],
    )
