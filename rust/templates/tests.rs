//! The engine's own checks; tests/test_templates_rust.py compares it with the Python engine.

use super::*;

fn input(body: &str) -> String {
    let mut out = String::from("{\"kind\":\"request\",\"body\":");
    value::json_string(&mut out, body);
    out.push_str(",\"params\":{\"path\":{\"id\":\"7\"},\"querystring\":{\"q\":\"x\"},\"header\":{\"X-Ab\":\"h\"}},\"context\":{\"httpMethod\":\"POST\",\"authorizer\":{\"n\":1,\"claims\":{\"sub\":\"u\"}}},\"stage_variables\":{\"env\":\"prod\"}}");
    out
}

fn render(source: &str, body: &str) -> Result<Rendered, RenderError> {
    compile(source).expect("compiles").render(&input(body))
}

fn out(source: &str, body: &str) -> String {
    render(source, body).expect("renders").output
}

#[test]
fn references_and_text() {
    assert_eq!(out("a $x b ${x} $!x \\$y $", "{}"), "a  b   $y $");
    assert_eq!(out("$input.params('id')-$input.params('x-ab')", "{}"), "7-h");
    assert_eq!(out("$stageVariables.env ${stageVariables['env']}", "{}"), "prod prod");
    assert_eq!(out("$context.authorizer.n|$context.authorizer.claims|$context.authorizer.claims.sub", "{}"), "1||u");
    assert_eq!(out("$input.json('$.a') $input.path('$.a').b", "{\"a\":{\"b\":[1,2.5]}}"), "{\"b\":[1,2.5]} [1,2.5]");
    assert_eq!(out("$input.path('$.a')", "{\"a\":{\"b\":1,\"c\":\"x\"}}"), "{b=1, c=x}");
}

#[test]
fn directives_and_whitespace() {
    assert_eq!(out("#set($a = 1)\n#if($a == 1)\nyes\n#else\nno\n#end\nafter", "{}"), "yes\nafter");
    assert_eq!(out("#foreach($i in [1..3])$i#if($foreach.hasNext),#end#end", "{}"), "1,2,3");
    assert_eq!(out("#foreach($i in [1..3])$velocityCount#break#end.", "{}"), "1.");
    assert_eq!(out("#foreach($i in [1..2000])$i#end", "{}").len(), 2893); // 1..=1000
    assert_eq!(out("a#stop b", "{}"), "a");
    assert_eq!(out("## c\nx #* y *# z", "{}"), "x  z");
    assert_eq!(out("#foo(1) #", "{}"), "#foo(1) #");
}

#[test]
fn operators_and_values() {
    assert_eq!(out("#set($a = 7 / 2)#set($b = -7 % 3)#set($c = 1 + 'x')$a $b $c", "{}"), "3 -1 1x");
    assert_eq!(out("#set($a = 1.0 * 3)#set($b = 1 / 0)$a $b", "{}"), "3.0 ");
    assert_eq!(out("#set($m = {'a': 1, 'b': [1, 'x']})$m $m.b.size()", "{}"), "{a=1, b=[1, x]} 2");
    assert_eq!(out("#if(1 == '1' && !false)t#end", "{}"), "t");
    assert_eq!(out("$util.escapeJavaScript(\"a'b/\")$util.urlEncode('a b*~')", "{}"), "a\\'b\\/a+b*%7E");
    assert_eq!(out("$util.base64Encode('hi') $util.base64Decode('aGk')", "{}"), "aGk= hi");
    assert_eq!(value::java_double(1e20).unwrap(), "1.0E20");
    assert_eq!(value::java_double(1.5e-5).unwrap(), "1.5E-5");
    assert_eq!(value::java_double(249.99).unwrap(), "249.99");
    assert_eq!(value::py_repr(1e16), "1e+16");
}

#[test]
fn overrides_are_returned() {
    let r = render("#set($context.requestOverride.header.X = 'v')#set($context.requestOverride.querystring.q = ['a', 1])", "{}").unwrap();
    assert_eq!(r.overrides, "{\"header\": {\"X\":\"v\"}, \"querystring\": {\"q\":[\"a\",\"1\"]}}");
}

#[test]
fn unsupported_and_deferred() {
    for source in ["#macro(m)x#end", "#define($d)x#end", "#evaluate('x')", "caf\u{e9} $x", "#set($a = 1 not 2)"] {
        assert!(matches!(compile(source), Err(CompileError::Unsupported(_))), "{source}");
    }
    assert!(matches!(compile("#if($a)"), Err(CompileError::Syntax(_))));
    assert!(matches!(render("$input.json('$..a')", "{}"), Err(RenderError::Defer(_))));
    assert!(matches!(render("$input.path('$.a')", "not json"), Err(RenderError::Defer(_))));
    assert!(matches!(render("$x.matches('a')", "{}"), Ok(_)));
    assert!(matches!(render("#set($x = 'a')$x.matches('a.')", "{}"), Err(RenderError::Defer(_))));
    assert_eq!(out("#set($x = 'a,b,,')$x.split(',') $x.replaceAll(',', '$0;') $x.matches('a,b,,')", "{}"), "[a, b] a,;b,;,; true");
}

#[test]
fn a_long_render_on_the_edge_thread_is_handed_over() {
    let program = compile("#foreach($a in [1..1000])#foreach($b in [1..1000])$b#end#end").unwrap();
    let handed = program.render_inline(&input("{}"), std::time::Duration::from_millis(1));
    assert!(matches!(handed, Err(RenderError::Defer(_))), "{handed:?}");
}
