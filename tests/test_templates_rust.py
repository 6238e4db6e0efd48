"""The core's VTL engine (`rust/templates/`) against the Python engine (`portico.templates`), the
reference it repeats (docs/mapping-templates.md): every template of tests/test_templates.py, templates
generated from the constructs both render, and arbitrary texts render the same in both, or the core's
engine leaves the template to the Python one (it does not compile it, or its render defers); and a
REST MOCK served by `portico serve` answers as the Python engine renders its templates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portico import _core
from portico.templates import MappingTemplate, TemplateError, TemplateInput

TESTS_DIR = Path(__file__).parent
RECORD_ENV = "PORTICO_VTL_DIFFERENTIAL"


def python_render(source: str, request: TemplateInput) -> tuple[str, dict[str, Any]] | TemplateError:
    try:
        rendered = MappingTemplate.compile(source).render(request)
    except TemplateError as error:
        return error
    return rendered["output"], rendered["overrides"]


def rust_render(source: str, request: TemplateInput) -> tuple[str, dict[str, Any]] | str | None:
    """The core's result; None: not compiled; "deferred: ..." / "failed: ...": no result."""
    try:
        result = _core.render_template(source, json.dumps(request))
    except ValueError as error:
        return str(error)
    if result is None:
        return None
    output, overrides = result
    return output, json.loads(overrides)


def disagreement(source: str, request: TemplateInput, python: Any, rust: Any) -> str | None:
    """Why the two engines' results for one render are not the same, or None."""
    if rust is None or (isinstance(rust, str) and rust.startswith("deferred: ")):
        return None  # the Python engine renders it: the same by construction
    if isinstance(python, TemplateError):
        return f"Python failed ({python}) but the core gave {rust!r} for {source!r} / {request!r}"
    if rust != python:
        return f"Python gave {python!r}, the core {rust!r} for {source!r} / {request!r}"
    return None


def request_of(body: str = "", kind: str = "request", **fields: Any) -> TemplateInput:
    return TemplateInput(
        kind=kind,  # type: ignore[typeddict-item]
        body=body,
        params=fields.get("params", {"path": {}, "querystring": {}, "header": {}}),
        context=fields.get("context", {}),
        stage_variables=fields.get("stage_variables", {}),
    )


# ------------------------------------------------------------- every render of tests/test_templates.py


class Recorder:
    """A pytest plugin (`-p test_templates_rust` in a child pytest): every render the Python engine
    does in that run is also rendered by the core's engine and compared; the tally goes to the file
    named by $PORTICO_VTL_DIFFERENTIAL."""

    def __init__(self) -> None:
        self.tally = {"renders": 0, "rust": 0, "deferred": 0, "not_compiled": 0, "disagreements": []}
        self.original = MappingTemplate.render

    def install(self) -> None:
        recorder = self

        def render(template: MappingTemplate, request: TemplateInput) -> Any:
            error: TemplateError | None = None
            try:
                rendered = recorder.original(template, request)
            except TemplateError as exc:
                error = exc
            recorder.compare(template.source, request, error or (rendered["output"], rendered["overrides"]))
            if error is not None:
                raise error
            return rendered

        MappingTemplate.render = render  # type: ignore[method-assign]

    def compare(self, source: str, request: TemplateInput, python: Any) -> None:
        try:
            as_json = json.dumps(request)
        except (TypeError, ValueError):
            return
        self.tally["renders"] += 1
        rust = rust_render(source, json.loads(as_json))
        if rust is None:
            self.tally["not_compiled"] += 1
        elif isinstance(rust, str) and rust.startswith("deferred: "):
            self.tally["deferred"] += 1
        else:
            self.tally["rust"] += 1
        why = disagreement(source, request, python, rust)
        if why is not None and len(self.tally["disagreements"]) < 20:
            self.tally["disagreements"].append(why[:2000])


_recorder: Recorder | None = None


def pytest_configure(config: Any) -> None:
    """Only when loaded as a plugin of the child run (pytest does not call a test module's hooks)."""
    global _recorder
    if os.environ.get(RECORD_ENV):
        _recorder = Recorder()
        _recorder.install()


def pytest_unconfigure(config: Any) -> None:
    if _recorder is not None:
        Path(os.environ[RECORD_ENV]).write_text(json.dumps(_recorder.tally))


def test_every_render_of_the_python_engines_tests_is_the_same_in_the_core(tmp_path: Path) -> None:
    tally_file = tmp_path / "tally.json"
    env = dict(os.environ, **{RECORD_ENV: str(tally_file)})
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), env.get("PYTHONPATH", "")])
    # The tests that shrink the time limit are left out: the core renders within its own.
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "test_templates_rust",
            "-k",
            "not in_time",
            str(TESTS_DIR / "test_templates.py"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=TESTS_DIR.parent,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    tally = json.loads(tally_file.read_text())
    assert tally["disagreements"] == []
    # Most of those templates are the core's to render (macros, #define, regexes are not).
    assert tally["rust"] > tally["renders"] / 3, tally


# ------------------------------------------------------------------------------ generated templates

NAMES = ["a", "b", "item", "m", "l"]
PATHS = ["$", "$.a", "$.b", "$.a.b", "$.a[0]", "$['a']", "$.a[*]", "$.*", "$.l[1]", "$..a", "$.a[-1]"]
METHODS = [
    "size()",
    "length()",
    "isEmpty()",
    "empty",
    "keySet()",
    "values()",
    "get(0)",
    "get('a')",
    "contains('a')",
    "substring(1)",
    "substring(1, 2)",
    "indexOf('a')",
    "trim()",
    "toUpperCase()",
    "toString()",
    "intValue()",
    "add(1)",
    "put('k', 2)",
    "entrySet()",
    "class",
    "replace('a', 'b')",
    "startsWith('a')",
    "endsWith('}')",
    "charAt(0)",
    "split(',')",
    "split('a', 2)",
    "replaceAll('a', '$0$0')",
    "replaceFirst(',', '\\\\')",
    "replaceAll('.', 'x')",
    "matches('ab')",
    "replaceAll('\\\\x', '$1')",
    "equals(1)",
    "remove(0)",
]

literals = st.one_of(
    st.integers(-3, 12).map(str),
    st.sampled_from(["0.5", "-1.25", "2.0", "1e3", "true", "false", "null", "TRUE"]),
    st.text(alphabet="ab ,'$x{}", max_size=6).map(lambda s: "'" + s.replace("'", "") + "'"),
    st.text(alphabet='ab $x"', max_size=6).map(lambda s: '"' + s.replace('"', "") + '"'),
)


def _references() -> st.SearchStrategy[str]:
    base = st.one_of(
        st.sampled_from(NAMES).map(lambda n: "$" + n),
        st.sampled_from(PATHS).map(lambda p: f"$input.path('{p}')"),
        st.sampled_from(PATHS).map(lambda p: f"$input.json('{p}')"),
        st.sampled_from(
            [
                "$input.body",
                "$input.params()",
                "$input.params('id')",
                "$input.params('X-Head')",
                "$stageVariables.env",
                "$context.httpMethod",
                "$context.authorizer.claims.sub",
                "$foreach.count",
                "$velocityCount",
                "$foreach.hasNext",
                "$util.escapeJavaScript($a)",
                "$util.urlEncode($a)",
                "$util.base64Encode($input.body)",
                "$util.parseJson($input.body)",
                "$context.requestOverride",
            ]
        ),
    )
    return st.tuples(base, st.lists(st.sampled_from([*METHODS, "[0]", "['a']", ".a"]), max_size=2)).map(
        lambda t: t[0] + "".join(m if m.startswith("[") or m.startswith(".") else "." + m for m in t[1])
    )


references = _references()
values = st.recursive(
    st.one_of(literals, references),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.tuples(inner, inner).map(lambda t: "{" + t[0] + ": " + t[1] + "}"),
        st.tuples(st.integers(-2, 4), st.integers(-2, 4)).map(lambda t: f"[{t[0]}..{t[1]}]"),
        st.tuples(
            inner,
            st.sampled_from(["+", "-", "*", "/", "%", "==", "!=", "<", ">=", "&&", "||", "and", "eq", "lt"]),
            inner,
        ).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        inner.map(lambda v: "!" + v),
    ),
    max_leaves=4,
)
blocks = st.recursive(
    st.one_of(
        st.text(alphabet='ab \n{}:,"\\#', max_size=5),
        references,
        references.map(lambda r: "$!{" + r[1:] + "}"),
        st.tuples(st.sampled_from(NAMES), values).map(lambda t: f"#set(${t[0]} = {t[1]})"),
        st.tuples(st.sampled_from(NAMES), values).map(lambda t: f"#set(${t[0]} = {t[1]})\n"),
        values.map(lambda v: f"#set($context.requestOverride.header.X = {v})"),
        st.sampled_from(
            ["#break", "#stop", "## note\n", "#* c *#", "#end", "#else", "#{end}", "\\$a", "#x(1)"]
        ),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map("".join),
        st.tuples(values, inner, inner).map(lambda t: f"#if({t[0]})\n{t[1]}#else {t[2]}#end\n"),
        st.tuples(values, inner, values, inner).map(lambda t: f"#if({t[0]}){t[1]}#elseif({t[2]}){t[3]}#end"),
        st.tuples(st.sampled_from(NAMES), values, inner).map(
            lambda t: f"#foreach(${t[0]} in {t[1]})\n{t[2]}#end"
        ),
    ),
    max_leaves=8,
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet='ab,é "\\', max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "l", "0"]), inner, max_size=3)
    ),
    max_leaves=6,
)
bodies = st.one_of(json_values.map(json.dumps), st.sampled_from(["", "not json", "[1, 2", '"text"']))
params = st.fixed_dictionaries(
    {
        "path": st.dictionaries(
            st.sampled_from(["id", "a"]), st.text(alphabet="ab1 ", max_size=3), max_size=2
        ),
        "querystring": st.dictionaries(
            st.sampled_from(["id", "q"]), st.text(alphabet="ab1", max_size=3), max_size=2
        ),
        "header": st.dictionaries(
            st.sampled_from(["x-head", "X-Other"]), st.text(alphabet="ab", max_size=3), max_size=2
        ),
    }
)
CONTEXT = {
    "httpMethod": "POST",
    "authorizer": {"claims": {"sub": "u"}, "n": 1.5},
    "identity": {"sourceIp": "1.2.3.4"},
}


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=blocks, body=bodies, given_params=params, kind=st.sampled_from(["request", "response"]))
def test_generated_templates_render_the_same_in_both_engines(
    source: str, body: str, given_params: dict[str, Any], kind: str
) -> None:
    request = request_of(body, kind, params=given_params, context=CONTEXT, stage_variables={"env": "prod"})
    why = disagreement(source, request, python_render(source, request), rust_render(source, request))
    assert why is None, why


@settings(max_examples=300, deadline=None)
@given(
    source=st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=60)
    | st.text(alphabet="$#(){}[]'\"!.,*\\ \nabif=endset0123foreach in|", max_size=60)
)
def test_arbitrary_texts_never_crash_and_render_as_the_python_engine_does(source: str) -> None:
    request = request_of('{"a": [1, {"b": "x"}]}', context=CONTEXT)
    rust = rust_render(source, request)  # returns, whatever the text: no crash, no hang
    assert rust is None or isinstance(rust, (tuple, str))
    why = disagreement(source, request, python_render(source, request), rust)
    assert why is None, why


def test_the_core_compiles_the_common_constructs_and_leaves_the_rest() -> None:
    compiled = [
        "$input.json('$')",
        "#set($x = $input.path('$.a'))\n#foreach($i in $x)$i.b#if($foreach.hasNext),#end#end",
        '{"id": "$util.escapeJavaScript($input.params(\'id\'))"}',
        "#if($input.params('n') == 'x')a#elseif($x > 2)b#else c#end",
    ]
    left = ["#macro(m $a)$a#end#m(1)", "#define($d)x#end$d", "#evaluate('$x')", "café $x", "#if($a"]
    assert [_core.vtl_compiles(s) for s in compiled] == [True] * len(compiled)
    assert [_core.vtl_compiles(s) for s in left] == [False] * len(left)
    # A regular expression compiles, but its render defers to the Python engine.
    assert (
        rust_render("#set($s = 'a1')$s.matches('[a-z][0-9]')", request_of())
        == "deferred: a regular expression"
    )


# ------------------------------------------------------------------------------------ served end to end


def test_a_rest_mock_renders_its_templates_in_either_engine_as_before(portico) -> None:
    """A MOCK's response templates: one the core renders, one whose render it defers (a regular
    expression), one it does not compile (a macro); each answers what the Python engine renders."""
    rendered_here = (
        "#set($n = $input.params('n'))#foreach($i in [1..3])$i#if($foreach.hasNext),#end#end|$n|"
        "$stageVariables.realm\n#set($context.responseOverride.status = 201)"
        "#set($context.responseOverride.header.X-Rendered = 'core')"
    )
    deferred = "#set($n = $input.params('n'))$n.matches('[0-9]+')|$stageVariables.realm"
    not_compiled = "#macro(twice $v)$v$v#end#twice($input.params('n'))|$stageVariables.realm"
    assert _core.vtl_compiles(rendered_here) and _core.vtl_compiles(deferred)
    assert not _core.vtl_compiles(not_compiled)

    def route(path: str, template: str) -> dict[str, Any]:
        return {
            "routeKey": f"GET /{path}",
            "integration": {
                "type": "MOCK",
                "requestTemplates": {"application/json": '{"statusCode": 200}'},
                "integrationResponses": {
                    "200": {
                        "responseTemplates": {"application/json": template},
                        "responseParameters": {"method.response.header.X-Static": "'s'"},
                    }
                },
            },
            "methodResponses": {"200": {"responseParameters": {"method.response.header.X-Static": False}}},
        }

    config = {
        "apis": [
            {
                "name": "vtl",
                "id": "vtlapi",
                "protocolType": "REST",
                "routes": [
                    route("core", rendered_here),
                    route("deferred", deferred),
                    route("macro", not_compiled),
                ],
                "stages": [{"stageName": "prod", "variables": {"realm": "file"}}],
            }
        ]
    }
    server = portico(config)
    url = server.url + "/prod"
    for path, template in [("core", rendered_here), ("deferred", deferred), ("macro", not_compiled)]:
        answer = httpx.get(url + f"/{path}?n=5")
        request = request_of(
            "",
            "response",
            params={"path": {}, "querystring": {"n": "5"}, "header": {}},
            stage_variables={"realm": "file"},
        )
        python = python_render(template, request)
        assert not isinstance(python, TemplateError)
        output, overrides = python
        assert answer.text == output
        assert answer.status_code == overrides.get("status", 200)
        assert answer.headers.get("x-rendered") == overrides.get("header", {}).get("X-Rendered")
    assert httpx.get(url + "/core?n=5").text == "1,2,3|5|file\n"
