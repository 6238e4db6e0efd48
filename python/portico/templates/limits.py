"""The bounds that keep one template render from hanging or exhausting a worker.

AWS documents two quotas for mapping templates ("Quotas for configuring and running a REST API in API
Gateway"): a template is at most 300 KB, and a `#foreach ... #end` loop runs at most 1,000 iterations.
The rest are Portico's, chosen so that a render stays far below what would hurt a worker while no real
template comes near them:

- output and every string a render builds: 10 MiB, API Gateway's payload quota (a larger result could never
  be sent on), and 40 MiB for all strings one render builds together (a loop cannot grow memory unbounded);
- nesting of macros, `#define` blocks and `#evaluate`: 20 levels, Velocity's own default for
  `velocimacro.max.depth`;
- wall-clock time: 5 s per render (regular expressions get what is left of it), well under API Gateway's
  29 s integration timeout, so a runaway template fails fast instead of holding a worker.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass

from airspeed import TemplateExecutionError

MAX_TEMPLATE_BYTES = 300 * 1024
MAX_FOREACH_ITERATIONS = 1000
MAX_OUTPUT_CHARS = 10 * 1024 * 1024
MAX_PRODUCED_CHARS = 4 * MAX_OUTPUT_CHARS
MAX_NESTING = 20
RENDER_SECONDS = 5.0


class LimitExceeded(TemplateExecutionError):
    """A render went past one of the bounds. It derives from airspeed's execution error so that airspeed
    passes it through unchanged instead of wrapping it at every level."""

    def __init__(self, message: str) -> None:
        Exception.__init__(self, message)
        self.msg = message

    def __str__(self) -> str:
        return self.msg


@dataclass
class Budget:
    """What one render has used so far."""

    deadline: float
    produced: int = 0
    nesting: int = 0


_budget: ContextVar[Budget | None] = ContextVar("portico_template_budget", default=None)


def start(seconds: float) -> object:
    return _budget.set(Budget(deadline=time.monotonic() + seconds))


def finish(token: object) -> None:
    _budget.reset(token)  # type: ignore[arg-type]


def current() -> Budget | None:
    return _budget.get()


def check_produced(chars: int, budget: Budget | None = None) -> None:
    """Count `chars` more characters built by this render (`budget`: the render's, when the caller has it)."""
    if budget is None:
        budget = _budget.get()
        if budget is None:
            return
    if chars > MAX_OUTPUT_CHARS:
        raise LimitExceeded(f"a value of {chars} characters is larger than the {MAX_OUTPUT_CHARS} allowed")
    budget.produced += chars
    if budget.produced > MAX_PRODUCED_CHARS:
        raise LimitExceeded(f"the template built more than {MAX_PRODUCED_CHARS} characters of strings")


def check_time() -> None:
    budget = _budget.get()
    if budget is not None and time.monotonic() > budget.deadline:
        raise LimitExceeded(f"rendering took longer than {RENDER_SECONDS:g} s")


def regex_timeout() -> float | None:
    """Seconds left for one regular expression (Java's regexes can backtrack without end too)."""
    budget = _budget.get()
    if budget is None:
        return RENDER_SECONDS
    return max(budget.deadline - time.monotonic(), 0.001)


class Nested:
    """One level of macro, `#define` or `#evaluate` nesting, for a `with` block."""

    def __enter__(self) -> None:
        budget = _budget.get()
        if budget is None:
            return
        if budget.nesting >= MAX_NESTING:
            raise LimitExceeded(f"macros, #define and #evaluate nest deeper than {MAX_NESTING} levels")
        check_time()
        budget.nesting += 1

    def __exit__(self, *exc_info: object) -> None:
        budget = _budget.get()
        if budget is not None:
            budget.nesting -= 1
