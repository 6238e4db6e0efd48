"""Compilation: everything Portico serves becomes one `Spec` for the core (`compile.spec`).

- `files`: the APIs a config file (or an imported OpenAPI document) declares;
- `store`: the stages the admin API deployed (`portico.control`'s SQLite store);
- `assemble`: both, under the gateway settings of the config file.

Compilation validates and translates; it never runs per request. The result is immutable and
cheap to rebuild: the data plane swaps the core's snapshot when the store's generation moves.
"""

from __future__ import annotations

from portico.compile.files import (
    CompiledConfig,
    CompileError,
    assemble,
    compile_config,
    compile_file_apis,
    deployment_id_of,
)

__all__ = [
    "CompileError",
    "CompiledConfig",
    "assemble",
    "compile_config",
    "compile_file_apis",
    "deployment_id_of",
]
