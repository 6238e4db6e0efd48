"""HTTP APIs' parameter mapping, as configuration: which `requestParameters` / `responseParameters`
an integration may have ("Transform API requests and responses for HTTP APIs in API Gateway").

The rule itself is the core's (`portico._core.http_mapping_problem`, the parser the core compiles
mappings with); this module walks an integration's maps and words the refusal as AWS does for the
admin API, or names the field for the config file.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = [
    "MAPPING_ERROR",
    "applies_to",
    "http_mapping_problems",
    "merged_request_parameters",
    "merged_response_parameters",
]

# AWS's BadRequestException message for a mapping it refuses; `{}` is the detail.
MAPPING_ERROR = "Invalid mapping expression specified: Validation Result: warnings : [], errors : [{}]"


def applies_to(integration_type: str | None, subtype: str | None = None) -> bool:
    """Whether an HTTP API integration's parameters are parameter mappings: HTTP_PROXY, and
    AWS_PROXY without an `IntegrationSubtype` (an AWS service integration's parameters are the
    service action's, a different thing)."""
    return integration_type == "HTTP_PROXY" or (integration_type == "AWS_PROXY" and not subtype)


def http_mapping_problems(request_parameters: Any, response_parameters: Any) -> Iterator[tuple[str, str]]:
    """(where, AWS's detail) for every mapping that cannot be configured; `where` names the entry
    (`requestParameters['append:header.x']`, `responseParameters['500']['overwrite:statuscode']`)."""
    from portico import _core  # the compiled core: loaded only where mappings are checked

    if request_parameters is not None and not isinstance(request_parameters, dict):
        yield "requestParameters", "requestParameters must map keys to values"
        request_parameters = {}
    for key, value in (request_parameters or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            yield f"requestParameters[{key!r}]", "keys and values are strings"
            continue
        problem = _core.http_mapping_problem(None, key, value)
        if problem:
            yield f"requestParameters[{key!r}]", problem
    if response_parameters is not None and not isinstance(response_parameters, dict):
        yield "responseParameters", "responseParameters must map status codes to mappings"
        response_parameters = {}
    for status, mappings in (response_parameters or {}).items():
        if not isinstance(mappings, dict):
            yield f"responseParameters[{status!r}]", "each status code maps keys to values"
            continue
        for key, value in mappings.items():
            if not isinstance(key, str) or not isinstance(value, str):
                yield f"responseParameters[{status!r}][{key!r}]", "keys and values are strings"
                continue
            problem = _core.http_mapping_problem(str(status), key, value)
            if problem:
                yield f"responseParameters[{status!r}][{key!r}]", problem


def merged_request_parameters(stored: dict[str, str] | None, given: dict[str, str]) -> dict[str, str]:
    """UpdateIntegration's `RequestParameters`: each given key replaces the stored one; a key
    given an empty value removes it ("Remove configured parameter mappings" in the guide)."""
    out = dict(stored or {})
    for key, value in given.items():
        if value == "":
            out.pop(key, None)
        else:
            out[key] = value
    return out


def merged_response_parameters(
    stored: dict[str, dict[str, str]] | None, given: dict[str, dict[str, str]]
) -> dict[str, dict[str, str]]:
    """UpdateIntegration's `ResponseParameters`: a status code given `{}` loses its mappings;
    otherwise its keys merge as `merged_request_parameters` merges them."""
    out = {status: dict(mappings) for status, mappings in (stored or {}).items()}
    for status, mappings in given.items():
        if not mappings:
            out.pop(status, None)
            continue
        merged = merged_request_parameters(out.get(status), mappings)
        if merged:
            out[status] = merged
        else:
            out.pop(status, None)
    return out
