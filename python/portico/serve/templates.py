"""Mapping templates on the Python side: compiled once per deployment, rendered when the core asks.

The core decides everything about a REST API's non-proxy integration (`rust/pipeline/mapping.rs`):
which template applies, what it sees (`$input`, `$context`, `$stageVariables`, as a
`TemplateInput` built in Rust) and what its output and overrides do. A template holding VTL (`$`
or `#`) is rendered here, by the engine of `portico.templates`, through the same queue as Lambda
handlers (`rust/invoke.rs`, `Call::Render`).

Templates are compiled once, by their source text: `retain` is given every template of the
deployment being served (at start and at each reload) and compiles the new ones ahead, dropping
those no longer served; a template first seen by `get` (a request in flight on the previous
deployment) is compiled then. A template that does not compile is remembered as such and fails
every request that uses it with AWS's 500, as on AWS, without being compiled again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["CompiledTemplates", "TemplateFailure", "template_sources"]

log = logging.getLogger("portico.templates")


class TemplateFailure(Exception):
    """A template that cannot be compiled or rendered; str() says why."""


def _engine() -> tuple[type, type[Exception]]:
    """(MappingTemplate, TemplateError) of the VTL engine (`portico.templates`), imported when a
    template first needs it."""
    from portico.templates import MappingTemplate, TemplateError

    return MappingTemplate, TemplateError


class CompiledTemplates:
    """Compiled templates by source text, shared by the threads that render them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # source -> the compiled template, or why it does not compile
        self._compiled: dict[str, Any] = {}

    def _compile(self, source: str) -> Any:
        try:
            template_class, template_error = _engine()
        except ImportError as exc:
            return TemplateFailure(f"no VTL engine is installed: {exc}")
        try:
            return template_class.compile(source)
        except template_error as exc:
            return TemplateFailure(str(exc))
        except Exception as exc:  # an engine bug: this template fails, the worker goes on
            log.exception("compiling a mapping template failed")
            return TemplateFailure(repr(exc))

    def get(self, source: str) -> Any:
        """The compiled template (raises TemplateFailure for one that does not compile)."""
        found = self._compiled.get(source)
        if found is None:
            found = self._compile(source)
            with self._lock:
                found = self._compiled.setdefault(source, found)
        if isinstance(found, TemplateFailure):
            raise found
        return found

    def retain(self, sources: Iterable[str]) -> None:
        """Serve these templates from now on: compile the new ones, forget the others."""
        wanted = set(sources)
        fresh = {source: self._compile(source) for source in wanted if source not in self._compiled}
        for compiled in fresh.values():
            if isinstance(compiled, TemplateFailure):
                log.warning("a mapping template does not compile (its requests answer 500): %s", compiled)
        with self._lock:
            kept = {s: c for s, c in self._compiled.items() if s in wanted}
            kept.update(fresh)
            self._compiled = kept

    def __len__(self) -> int:
        return len(self._compiled)

    def render(self, source: str, template_input: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """(output, overrides) of `source` for `template_input` (raises TemplateFailure)."""
        template = self.get(source)
        _, template_error = _engine()
        try:
            rendered = template.render(template_input)
        except template_error as exc:
            raise TemplateFailure(str(exc)) from None
        return rendered["output"], rendered.get("overrides") or {}


def _has_vtl(text: Any) -> bool:
    return isinstance(text, str) and ("$" in text or "#" in text)


def template_sources(spec: dict[str, Any]) -> Iterator[str]:
    """Every template of a spec that holds VTL (what the Python side renders): those of its
    non-proxy integrations (REST and WebSocket APIs'), in every API, stage and canary."""

    def routes() -> Iterator[dict[str, Any]]:
        for api in spec.get("apis") or ():
            yield from api.get("routes") or ()
            for stage in api.get("stages") or ():
                yield from stage.get("routes") or ()
                yield from (stage.get("canary") or {}).get("routes") or ()

    for route in routes():
        integration = route.get("integration") if isinstance(route, dict) else None
        if not integration or integration.get("type") not in ("NON_PROXY", "WEBSOCKET"):
            continue
        for _, text in integration.get("request_templates") or ():
            if _has_vtl(text):
                yield text
        for response in integration.get("responses") or ():
            for _, text in response.get("templates") or ():
                if _has_vtl(text):
                    yield text
