"""airspeed-ext (the Velocity engine LocalStack runs for AWS's dialect) with the Velocity 1.7 semantics and
bounds API Gateway templates need.

airspeed parses a template into a tree of elements; `compile_tree` then adjusts each element once, through
its public attributes, where airspeed differs from Velocity or from what a shared worker can afford:

- `#foreach` stops after 1,000 iterations, as Velocity's `directive.foreach.maxloops` does (the AWS quota);
  it iterates a map's values; and `#break` (which airspeed lacks; added as a user-defined directive) leaves
  the innermost `#foreach`, macro or template.
- `$a.b` / `$a.b(..)` resolve through the Java method tables of `values` rather than Python attributes, so a
  template reaches neither Python internals nor Python-only methods.
- conditions treat only null and false as false; `#set` to null leaves the target unchanged; operators
  follow Velocity (string `+`, integer division, null for arithmetic on non-numbers).
- every string built and every character written counts against the render's budget (`limits`), and each
  loop iteration, macro call and `#evaluate` checks the render's deadline and nesting depth.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

import airspeed
from airspeed import operators as vtl

from portico.templates import limits
from portico.templates.values import (
    OPERATORS,
    VtlList,
    VtlMap,
    VtlRange,
    call_method,
    get_index,
    get_property,
    java_str,
    render_str,
    truthy,
)


class _ScopeExit(limits.LimitExceeded):
    """Leaves the innermost `#foreach` (after `#break`, or its 1,000th iteration), macro or template."""

    def __init__(self) -> None:
        super().__init__("#break outside of any scope")


class BreakDirective(airspeed.UserDefinedDirective):
    """Velocity 1.7's `#break` and `#break($foreach)`."""

    START = re.compile(r"#(?:break|\{break\})(?:\(\s*\$[a-zA-Z_][\w-]*\s*\))?(.*)$", re.S)

    def parse(self) -> None:
        self.identity_match(self.START)

    def evaluate(self, stream: Any, namespace: Any, loader: Any) -> None:
        raise _ScopeExit()


airspeed.UserDefinedDirective.DIRECTIVES.append(BreakDirective)


class Output:
    """The stream a render (or an interpolated string) writes to, bounded by the render's budget."""

    __slots__ = ("budget", "parts", "stop")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.stop = False  # set by #stop
        self.budget = limits.current()

    def write(self, text: str) -> None:
        if not self.stop and text:
            limits.check_produced(len(text), self.budget)
            self.parts.append(text)

    def getvalue(self) -> str:
        return "".join(self.parts)


def _lookup(namespace: Any, name: str) -> Any:
    try:
        return namespace[name]
    except KeyError:
        return None


def _run_definition(definition: Any, namespace: Any, arguments: list[Any], loader: Any) -> str:
    """A `#define` block referenced as `$name`: its rendered text."""
    output = Output()
    definition.execute_function(output, namespace, arguments, loader)
    return output.getvalue()


def _resolver(node: Any) -> Callable[..., Any]:
    """`$name`, `$value.name`, `$value.name(arguments)`, each optionally followed by `[index]`."""
    name: str = node.name
    parameters = node.parameters
    index = node.index

    def calculate(current: Any, loader: Any, top_namespace: Any) -> Any:
        arguments = parameters.calculate(top_namespace, loader) if parameters is not None else None
        if isinstance(current, vtl.LocalNamespace):
            value = _lookup(current, name)
            if isinstance(value, vtl._FunctionDefinition):
                value = _run_definition(value, top_namespace, arguments or [], loader)
        elif arguments is not None:
            value = call_method(current, name, arguments)
        else:
            value = get_property(current, name)
        if index is not None:
            value = get_index(value, index.calculate(top_namespace, loader))
        return value

    return calculate


def _reference_writer(node: Any) -> Callable[..., None]:
    """`$ref` in text: its Java string; null renders nothing (or the `${ref|alternate}` value)."""

    def evaluate_raw(stream: Any, namespace: Any, loader: Any) -> None:
        if node.expression is None:
            stream.write(node.my_text())
            return
        value = node.expression.calculate(namespace, loader)
        if value is None and node.alternate is not None:
            value = node.alternate.calculate(namespace, loader)
        stream.write(render_str(value))

    return evaluate_raw


def _set_variable(namespace: Any, name: str, value: Any) -> None:
    """Velocity has one context per template: `#set` inside a `#foreach` or macro changes the template's
    variable (airspeed would keep it in the iteration's scope), except a loop or macro variable itself."""
    scope = namespace.find_outermost(name)
    if scope is None:
        scope = namespace
        while isinstance(scope.parent, vtl.LocalNamespace):
            scope = scope.parent
    scope[name] = value


def _assigner(node: Any) -> Callable[..., None]:
    """`#set`: Velocity 1.7 leaves the target unchanged when the value is null."""

    def evaluate_raw(stream: Any, namespace: Any, loader: Any) -> None:
        value = node.value.calculate(namespace, loader)
        if value is None:
            return
        if not node.terms:
            _set_variable(namespace, node.root_term, value)
            return
        target = _lookup(namespace, node.root_term)
        for term in node.terms[:-1]:
            target = get_index(target, term.calculate(namespace, loader))
        key = node.terms[-1].calculate(namespace, loader)
        settable = isinstance(target, MutableMapping) or (
            isinstance(target, list) and isinstance(key, int) and 0 <= key < len(target)
        )
        if settable:
            target[key] = value
        elif target is not None:
            raise ValueError(f"cannot set {java_str(key)} on {java_str(target)}")

    return evaluate_raw


def _loop_items(value_node: Any) -> Callable[..., Any]:
    """What `#foreach` iterates: a list, or a map's values (Velocity iterates a map's values)."""
    calculate = value_node.calculate

    def items(namespace: Any, loader: Any) -> Any:
        value = calculate(namespace, loader)
        if isinstance(value, Mapping):
            return VtlList(value.values())
        if isinstance(value, (list, VtlRange)):
            return value
        return None  # Velocity skips a #foreach over anything else

    return items


class LoopBody:
    """Runs in place of a `#foreach` body: stops the loop after its 1,000th iteration or at the deadline."""

    __slots__ = ("block",)

    def __init__(self, block: Any) -> None:
        self.block = block

    def evaluate(self, stream: Any, namespace: Any, loader: Any) -> None:
        if dict.__getitem__(namespace, "foreach")["count"] > limits.MAX_FOREACH_ITERATIONS:
            raise _ScopeExit()
        limits.check_time()
        self.block.evaluate(stream, namespace, loader)


class Loop:
    """Runs in place of a `#foreach` element: the scope that `#break` and the iteration limit leave."""

    __slots__ = ("foreach",)

    def __init__(self, foreach: Any) -> None:
        self.foreach = foreach

    def evaluate(self, stream: Any, namespace: Any, loader: Any) -> None:
        with contextlib.suppress(_ScopeExit):
            self.foreach.evaluate(stream, namespace, loader)


def _scoped(execute_function: Callable[..., None]) -> Callable[..., None]:
    """A macro or `#define` call: one nesting level, and a scope `#break` leaves."""

    def execute(stream: Any, namespace: Any, arguments: list[Any], loader: Any) -> None:
        with limits.Nested(), contextlib.suppress(_ScopeExit):
            execute_function(stream, namespace, arguments, loader)

    return execute


def _evaluator(node: Any) -> Callable[..., None]:
    """`#evaluate($text)`: compiled with the same adjustments and bounds, and cached like any template;
    its macros join the template's."""
    from portico.templates import compiled_tree  # the compile cache lives with the interface

    def evaluate_raw(stream: Any, namespace: Any, loader: Any) -> None:
        source = node.value.calculate(namespace, loader)
        if source is None:
            return
        tree = compiled_tree(java_str(source))
        namespace.top().update(tree.portico_macros)
        with limits.Nested(), contextlib.suppress(_ScopeExit):
            tree.evaluate(stream, namespace, loader)

    return evaluate_raw


def _macro_caller(node: Any) -> Callable[..., None]:
    """`#name(arguments)`: a macro defined anywhere in the template (Velocity defines macros when it parses,
    so a call may come first); a call to no macro is text, as Velocity prints it."""
    key = "#" + node.macro_name

    def evaluate_raw(stream: Any, namespace: Any, loader: Any) -> None:
        macro = _lookup(namespace, key)
        if macro is None:
            stream.write(node.my_text())
            return
        arguments = [argument.calculate(namespace, loader) for argument in node.args]
        macro.execute_function(stream, namespace, arguments, loader)

    return evaluate_raw


def _no_op(stream: Any, namespace: Any, loader: Any) -> None:
    """A `#macro` definition renders nothing where it stands; it was registered with its template."""


def _interpolator(node: Any) -> Callable[..., str]:
    def calculate(namespace: Any, loader: Any) -> str:
        output = Output()
        node.block.evaluate(output, namespace, loader)
        return output.getvalue()

    return calculate


def _array(node: Any) -> Callable[..., Any]:
    values = node.values

    def calculate(namespace: Any, loader: Any) -> Any:
        if isinstance(values, vtl.Range):
            first = values.value1.calculate(namespace, loader)
            last = values.value2.calculate(namespace, loader)
            if not all(isinstance(end, int) and not isinstance(end, bool) for end in (first, last)):
                return None  # Velocity answers null for a range over non-integers
            return VtlRange(first, last)
        return VtlList(values.calculate(namespace, loader))

    return calculate


def _adjust(node: Any) -> None:
    """Give one element Velocity's semantics and the render bounds (see the module's docstring)."""
    if isinstance(node, vtl.Block):
        node.children = [
            Loop(child) if isinstance(child, vtl.ForeachDirective) else child for child in node.children
        ]
    elif isinstance(node, vtl.ForeachDirective):
        node.block = LoopBody(node.block)
        node.value.calculate = _loop_items(node.value)
    elif isinstance(node, vtl.NameOrCall):
        node.calculate = _resolver(node)
    elif isinstance(node, vtl.FormalReference):
        node.evaluate_raw = _reference_writer(node)
    elif isinstance(node, vtl.Assignment):
        node.evaluate_raw = _assigner(node)
    elif isinstance(node, vtl.BinaryOperator):
        node.apply_to = OPERATORS.get(node.my_text().strip(), node.apply_to)
    elif isinstance(node, vtl.UnaryOperatorValue):
        operand = node.value
        node.calculate = lambda namespace, loader: not truthy(operand.calculate(namespace, loader))
    elif isinstance(node, vtl.Condition):
        expression = node.expression
        node.calculate = lambda namespace, loader: truthy(expression.calculate(namespace, loader))
    elif isinstance(node, vtl.ElseifBlock):
        condition = node.condition
        node.calculate = lambda namespace, loader: condition.calculate(namespace, loader)
    elif isinstance(node, vtl.InterpolatedStringLiteral):
        node.calculate = _interpolator(node)
    elif isinstance(node, vtl.ArrayLiteral):
        node.calculate = _array(node)
    elif isinstance(node, vtl.DictionaryLiteral):
        literal = vtl.DictionaryLiteral.calculate
        node.calculate = lambda namespace, loader: VtlMap(literal(node, namespace, loader))
    elif isinstance(node, vtl._FunctionDefinition):
        node.execute_function = _scoped(node.execute_function)
        if isinstance(node, vtl.MacroDefinition):
            node.evaluate_raw = _no_op
    elif isinstance(node, vtl.MacroCall):
        node.evaluate_raw = _macro_caller(node)
    elif isinstance(node, vtl.EvaluateDirective) and not isinstance(node, vtl.ReturnDirective):
        node.evaluate_raw = _evaluator(node)


def _children(node: Any) -> list[Any]:
    found: list[Any] = []
    for value in vars(node).values():
        owner = getattr(value, "__self__", None)  # airspeed keeps some children only as bound methods,
        if isinstance(owner, vtl._Element) and owner is not node:  # e.g. a parenthesised expression
            found.append(owner)
        elif isinstance(value, vtl._Element):
            found.append(value)
        elif isinstance(value, list):
            found.extend(item for item in value if isinstance(item, vtl._Element))
        elif isinstance(value, dict):
            found.extend(item for pair in value.items() for item in pair if isinstance(item, vtl._Element))
    return found


def compile_tree(source: str) -> Any:
    """Parse `source` and adjust every element; airspeed's syntax errors propagate."""
    template = airspeed.Template(source)
    template.ensure_compiled()
    macros: dict[str, Any] = {}
    pending = [template.root_element]
    while pending:  # iterative, so a deeply nested template cannot exhaust the stack here
        node = pending.pop()
        pending.extend(reversed(_children(node)))
        if isinstance(node, vtl.MacroDefinition):
            macros.setdefault("#" + node.function_name.lower(), node)  # the first definition wins
        _adjust(node)
    template.root_element.portico_macros = macros
    return template.root_element


def render_tree(tree: Any, namespace: dict[str, Any]) -> str:
    """Render an adjusted tree within the limits; `#break` at the top ends the template."""
    token = limits.start(limits.RENDER_SECONDS)
    output = Output()
    namespace.update(tree.portico_macros)
    try:
        tree.evaluate(output, namespace, vtl.NullLoader())
    except _ScopeExit:
        pass
    finally:
        limits.finish(token)
    return output.getvalue()
