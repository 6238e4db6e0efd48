"""Mapping templates (VTL): AWS's documented examples and outputs, the console's pass-through template,
overrides, the limits, and properties over arbitrary payloads and arbitrary template texts."""

from __future__ import annotations

import base64
import json
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portico.templates import MappingTemplate, Rendered, TemplateError, TemplateInput, limits

# The API Gateway console's "Method Request passthrough" template, as users paste it.
PASSTHROUGH = (
    "##  See http://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-mapping-template-reference.html\n"
    "##  This template will pass through all parameters including path, querystring, header, "
    "stage variables, and context through to the integration endpoint via the body/payload\n"
    + """#set($allParams = $input.params())
{
"body-json" : $input.json('$'),
"params" : {
#foreach($type in $allParams.keySet())
    #set($params = $allParams.get($type))
"$type" : {
    #foreach($paramName in $params.keySet())
    "$paramName" : "$util.escapeJavaScript($params.get($paramName))"
        #if($foreach.hasNext),#end
    #end
}
    #if($foreach.hasNext),#end
#end
},
"stage-variables" : {
#foreach($key in $stageVariables.keySet())
"$key" : "$util.escapeJavaScript($stageVariables.get($key))"
    #if($foreach.hasNext),#end
#end
},
"context" : {
    "account-id" : "$context.identity.accountId",
    "api-id" : "$context.apiId",
    "api-key" : "$context.identity.apiKey",
    "authorizer-principal-id" : "$context.authorizer.principalId",
    "caller" : "$context.identity.caller",
    "cognito-authentication-provider" : "$context.identity.cognitoAuthenticationProvider",
    "cognito-authentication-type" : "$context.identity.cognitoAuthenticationType",
    "cognito-identity-id" : "$context.identity.cognitoIdentityId",
    "cognito-identity-pool-id" : "$context.identity.cognitoIdentityPoolId",
    "http-method" : "$context.httpMethod",
    "stage" : "$context.stage",
    "source-ip" : "$context.identity.sourceIp",
    "user" : "$context.identity.user",
    "user-agent" : "$context.identity.userAgent",
    "user-arn" : "$context.identity.userArn",
    "request-id" : "$context.requestId",
    "resource-id" : "$context.resourceId",
    "resource-path" : "$context.resourcePath"
    }
}
"""
)


def request(
    body: str = "",
    *,
    kind: str = "request",
    params: dict[str, dict[str, str]] | None = None,
    context: dict[str, Any] | None = None,
    stage_variables: dict[str, str] | None = None,
) -> TemplateInput:
    return TemplateInput(
        kind=kind,  # type: ignore[typeddict-item]
        body=body,
        params=params if params is not None else {"path": {}, "querystring": {}, "header": {}},
        context=context if context is not None else {},
        stage_variables=stage_variables if stage_variables is not None else {},
    )


def render(source: str, body: str = "", **fields: Any) -> str:
    return MappingTemplate.compile(source).render(request(body, **fields))["output"]


def rendered(source: str, body: str = "", **fields: Any) -> Rendered:
    return MappingTemplate.compile(source).render(request(body, **fields))


# --- $input -------------------------------------------------------------------------------------------


def test_input_body_is_the_raw_payload_and_an_empty_payload_is_an_empty_object() -> None:
    assert render("$input.body", '{"a": 1}') == '{"a": 1}'
    assert render("[$input.body]", "not json at all") == "[not json at all]"
    assert render("$input.body", "") == "{}"


def test_input_json_example_of_the_reference_passes_the_body_and_a_parameter() -> None:
    # "Example JSON mapping template using $input" (AWS's mapping template reference).
    source = '{\n    "name" : "$input.params(\'name\')",\n    "body" : $input.json(\'$\') \n}'
    body = '{"mykey": {"x": [1, 2.5, "y", null, true]}}'
    output = render(source, body, params={"path": {}, "querystring": {"name": "me"}, "header": {}})
    assert json.loads(output) == {"name": "me", "body": json.loads(body)}
    mykey = render("$input.json('$.mykey')", body)
    assert mykey == '{"x":[1,2.5,"y",null,true]}'


def test_input_path_size_and_json_of_the_things_example() -> None:
    # "Example request and response using $input": POST /things/abc.
    body = '{\n    "things" : {\n        "1" : {},\n        "2" : {},\n        "3" : {}\n    }\n}'
    source = (
        '{\n    "id" : "$input.params(\'id\')",\n    "count" : "$input.path(\'$.things\').size()",\n'
        "    \"things\" : $input.json('$.things')\n}"
    )
    output = render(source, body, params={"path": {"id": "abc"}, "querystring": {}, "header": {}})
    assert json.loads(output) == {"id": "abc", "count": "3", "things": {"1": {}, "2": {}, "3": {}}}
    escaped = render("$util.escapeJavaScript($input.json('$.things'))", body)
    assert escaped == '{\\"1\\":{},\\"2\\":{},\\"3\\":{}}'


def test_input_path_pets_example_of_mapping_templates() -> None:
    # "Mapping template example" (Mapping templates for REST APIs).
    body = json.dumps(
        [
            {"id": 1, "type": "dog", "price": 249.99},
            {"id": 2, "type": "cat", "price": 124.99},
            {"id": 3, "type": "fish", "price": 0.99},
        ]
    )
    source = """#set($inputRoot = $input.path('$'))
[
#foreach($elem in $inputRoot)
  {
    "description" : "Item $elem.id is a $elem.type.",
    "askingPrice" : $elem.price
  }#if($foreach.hasNext),#end

#end
]"""
    assert json.loads(render(source, body)) == [
        {"description": "Item 1 is a dog.", "askingPrice": 249.99},
        {"description": "Item 2 is a cat.", "askingPrice": 124.99},
        {"description": "Item 3 is a fish.", "askingPrice": 0.99},
    ]
    assert render("$input.path('$').size()", body) == "3"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$", '{"a":{"b":[1,{"c":"x"}],"d-e":2,"f g":3}}'),
        ("$.a.b", '[1,{"c":"x"}]'),
        ("$['a']['f g']", "3"),
        ("$.a.d-e", "2"),
        ("$.a.b[0]", "1"),
        ("$.a.b[1].c", '"x"'),
        ("$.a.b[*]", '[1,{"c":"x"}]'),
        ("$..c", '["x"]'),  # indefinite paths answer a list, even of one match
        ("$.a.b[?(@.c == 'x')].c", '["x"]'),
        ("$.missing", "null"),
        ("$.a.missing[*]", "[]"),
    ],
)
def test_input_json_answers_jsonpath_results_as_json(path: str, expected: str) -> None:
    body = '{"a": {"b": [1, {"c": "x"}], "d-e": 2, "f g": 3}}'
    assert render(f'$input.json("{path}")', body) == expected


def test_input_path_values_print_as_java_maps_and_json_arrays() -> None:
    body = '{"a": 1, "b": [{"c": 5}], "n": null, "t": true, "s": "x"}'
    assert render("$input.path('$')", body) == '{a=1, b=[{"c":5}], n=null, t=true, s=x}'
    assert render("$input.path('$').b", body) == '[{"c":5}]'
    assert render("[$input.path('$.n')][$input.path('$.missing')]", body) == "[][]"
    assert render("$input.path('$.t') $input.path('$.a') $input.path('$.s').length()", body) == "true 1 1"


def test_input_path_maps_and_lists_iterate_and_answer_java_methods() -> None:
    body = '{"m": {"x": 1, "y": 2}, "l": ["p", "q", "r"]}'
    source = (
        "#set($m = $input.path('$.m'))#set($l = $input.path('$.l'))"
        "#foreach($k in $m.keySet())$k=$m.get($k);#end|"
        "#foreach($v in $m)$v;#end|"  # a map iterates its values
        "#foreach($e in $m.entrySet())$e.key:$e.value;#end|"
        "$l.size() $l.get(1) $l[2] $l.contains('q') $l.indexOf('r') $m.containsKey('x') $m.isEmpty()"
    )
    assert render(source, body) == "x=1;y=2;|1;2;|x:1;y:2;|3 q r true 2 true false"


def test_input_params_searches_path_then_querystring_then_header() -> None:
    params = {
        "path": {"id": "from-path"},
        "querystring": {"id": "from-query", "q": "query"},
        "header": {"id": "from-header", "X-Trace": "t-1", "Accept": "a/b"},
    }
    source = "$input.params('id') $input.params('q') $input.params('X-Trace') $input.params('accept')"
    assert render(source, params=params) == "from-path query t-1 a/b"
    assert render("[$input.params('absent')]", params=params) == "[]"
    assert render(
        "$input.params().querystring.q $input.params().get('header').get('X-Trace')", params=params
    ) == ("query t-1")
    assert render("$input.params()", params=params) == (
        "{path={id=from-path}, querystring={id=from-query, q=query}, "
        "header={id=from-header, X-Trace=t-1, Accept=a/b}}"
    )


def test_all_parameters_example_of_the_reference() -> None:
    # "Parameter mapping template example": every parameter through a JSON payload.
    source = """#set($allParams = $input.params())
{
  "params" : {
    #foreach($type in $allParams.keySet())
    #set($params = $allParams.get($type))
    "$type" : {
      #foreach($paramName in $params.keySet())
      "$paramName" : "$util.escapeJavaScript($params.get($paramName))"
      #if($foreach.hasNext),#end
      #end
    }
    #if($foreach.hasNext),#end
    #end
  }
}"""
    params = {"path": {"p": "1"}, "querystring": {"q": 'it\'s "quoted"'}, "header": {"h": "x", "H2": "y"}}
    output = render(source, params=params)
    assert json.loads(output.replace("\\'", "'")) == {"params": params}


def test_a_payload_that_is_not_json_fails_only_when_jsonpath_reads_it() -> None:
    with pytest.raises(TemplateError, match="not JSON"):
        render("$input.json('$')", "<xml/>")
    with pytest.raises(TemplateError, match="not JSON"):
        render("$input.path('$.a')", "a=b&c=d")
    assert render("$util.urlDecode($input.body)", "a=b+c&d=%C3%A9") == "a=b c&d=é"


def test_a_payload_that_is_one_json_string_is_that_string() -> None:
    assert (
        render("$input.json('$')|$input.path('$')|$input.json('$.a')", '"{not json"')
        == '"{not json"|{not json|null'
    )


def test_input_json_of_an_empty_payload_is_an_empty_object() -> None:
    assert render("$input.json('$')") == "{}"
    assert render("$input.path('$').size()") == "0"


# --- $util --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("it's", "it\\'s"),  # AWS: "turns any regular single quotes (') into escaped ones (\')"
        ('say "hi"', 'say \\"hi\\"'),
        ("back\\slash", "back\\\\slash"),
        ("a/b", "a\\/b"),
        ("tab\tnew\nline\rfeed\fbs\b", "tab\\tnew\\nline\\rfeed\\fbs\\b"),
        ("\x01\x1f", "\\u0001\\u001F"),
        ("café ✓", "caf\\u00E9 \\u2713"),
        ("emoji 😀", "emoji \\uD83D\\uDE00"),
        ("plain-text_123", "plain-text_123"),
    ],
)
def test_util_escape_javascript_follows_java_script_string_rules(text: str, escaped: str) -> None:
    body = json.dumps({"v": text})
    assert render("$util.escapeJavaScript($input.path('$.v'))", body) == escaped


def test_util_escape_javascript_then_replace_all_gives_json_as_the_reference_shows() -> None:
    # The reference's own recipe: $util.escapeJavaScript(data).replaceAll("\\'","'")
    body = json.dumps({"v": 'it\'s "x"'})
    source = '{"v": "$util.escapeJavaScript($input.path(\'$.v\')).replaceAll("\\\\\'","\'")"}'
    assert json.loads(render(source, body)) == {"v": 'it\'s "x"'}


def test_util_parse_json_example_of_the_reference() -> None:
    body = '{"errorMessage":"{\\"key1\\":\\"var1\\",\\"key2\\":{\\"arr\\":[1,2,3]}}"}'
    source = (
        "#set ($errorMessageObj = $util.parseJson($input.path('$.errorMessage')))\n"
        '{\n   "errorMessageObjKey2ArrVal" : $errorMessageObj.key2.arr[0]\n}\n'
    )
    assert render(source, body) == '{\n   "errorMessageObjKey2ArrVal" : 1\n}\n'
    with pytest.raises(TemplateError, match="parseJson"):
        render("$util.parseJson('{not json')")


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("a b", "a+b"),
        ("x=a+b&c", "x%3Da%2Bb%26c"),
        ("é/~", "%C3%A9%2F%7E"),  # URLEncoder escapes '~' and non-ASCII as UTF-8
        ("-_.*", "-_.*"),
    ],
)
def test_util_url_encode_and_decode_are_form_encoding(text: str, encoded: str) -> None:
    body = json.dumps({"v": text, "e": encoded})
    assert render("$util.urlEncode($input.path('$.v'))", body) == encoded
    assert render("$util.urlDecode($input.path('$.e'))", body) == text


def test_util_url_decode_refuses_a_broken_escape_as_java_does() -> None:
    with pytest.raises(TemplateError, match="URLDecoder"):
        render("$util.urlDecode('100%')")


@pytest.mark.parametrize("text", ["", "hello", "héllo wörld ✓", '{"json": [1, 2]}'])
def test_util_base64_encode_and_decode_use_utf8(text: str) -> None:
    encoded = base64.b64encode(text.encode()).decode()
    body = json.dumps({"v": text, "e": encoded})
    assert render("$util.base64Encode($input.path('$.v'))", body) == encoded
    assert render("$util.base64Decode($input.path('$.e'))", body) == text


def test_util_base64_decode_is_lenient_about_padding_and_alphabet() -> None:
    assert render("$util.base64Decode('aGk')") == "hi"
    assert render("$util.base64Decode('-_8')") == base64.urlsafe_b64decode("-_8=").decode(errors="replace")


def test_util_functions_aws_does_not_document_render_nothing() -> None:
    assert render("[$util.toJson($input.path('$'))][$util.time.nowISO8601()]") == "[][]"


# --- $context and $stageVariables ---------------------------------------------------------------------


def test_context_variables_example_of_the_reference() -> None:
    context = {
        "stage": "prod",
        "requestId": "abcdefg-000-000-0000-abcdefg",
        "apiId": "abcd1234",
        "resourcePath": "/",
        "resourceId": "efg567",
        "httpMethod": "GET",
        "identity": {
            "sourceIp": "192.0.2.1",
            "userAgent": "curl/7.84.0",
            "accountId": "111122223333",
            "apiKey": "MyTestKey",
            "caller": "ABCD-0000-12345",
            "user": "ABCD-0000-12345",
            "userArn": "arn:aws:sts::111122223333:assumed-role/Admin/carlos-salazar",
        },
    }
    source = """{
    "stage" : "$context.stage",
    "request_id" : "$context.requestId",
    "api_id" : "$context.apiId",
    "resource_path" : "$context.resourcePath",
    "resource_id" : "$context.resourceId",
    "http_method" : "$context.httpMethod",
    "source_ip" : "$context.identity.sourceIp",
    "user-agent" : "$context.identity.userAgent",
    "account_id" : "$context.identity.accountId",
    "api_key" : "$context.identity.apiKey",
    "caller" : "$context.identity.caller",
    "user" : "$context.identity.user",
    "user_arn" : "$context.identity.userArn"
}"""
    assert json.loads(render(source, context=context)) == {
        "stage": "prod",
        "request_id": "abcdefg-000-000-0000-abcdefg",
        "api_id": "abcd1234",
        "resource_path": "/",
        "resource_id": "efg567",
        "http_method": "GET",
        "source_ip": "192.0.2.1",
        "user-agent": "curl/7.84.0",
        "account_id": "111122223333",
        "api_key": "MyTestKey",
        "caller": "ABCD-0000-12345",
        "user": "ABCD-0000-12345",
        "user_arn": "arn:aws:sts::111122223333:assumed-role/Admin/carlos-salazar",
    }


def test_context_authorizer_values_are_stringified_and_claims_alone_is_null() -> None:
    context = {
        "authorizer": {
            "principalId": "user-1",
            "key": "value",
            "numKey": 1,
            "boolKey": True,
            "claims": {"sub": "abc-123", "email": "a@example.com"},
        }
    }
    source = (
        "$context.authorizer.key $context.authorizer.numKey $context.authorizer.boolKey "
        "$context.authorizer.numKey.length() [$context.authorizer.claims] $context.authorizer.claims.sub "
        "#if($context.authorizer.claims)set#{else}null#end"
    )
    assert render(source, context=context) == "value 1 true 1 [] abc-123 null"


def test_stage_variables_in_all_three_syntaxes() -> None:
    variables = {"url": "example.com", "name-with-dash": "d"}
    source = "$stageVariables.url $stageVariables['url'] ${stageVariables['url']} "
    source += "$stageVariables['name-with-dash']"
    assert render(source, stage_variables=variables) == "example.com example.com example.com d"
    assert render("[$stageVariables.absent]", stage_variables=variables) == "[]"


def test_passthrough_template_renders_every_parameter_stage_variable_and_context_value() -> None:
    body = json.dumps({"order": {"id": 7, "items": ["a", "b"]}, "note": 'it\'s "quoted"\n'})
    params = {
        "path": {"id": "7"},
        "querystring": {"expand": "items", "q": "a b"},
        "header": {"Host": "api.example.com", "X-Quote": 'say "hi" / it\'s'},
    }
    context = {
        "apiId": "a1b2c3",
        "httpMethod": "POST",
        "stage": "prod",
        "requestId": "req-1",
        "resourceId": "res-1",
        "resourcePath": "/orders/{id}",
        "identity": {"sourceIp": "198.51.100.7", "userAgent": "curl/8", "accountId": "123"},
        "authorizer": {"principalId": "user-1"},
    }
    output = render(PASSTHROUGH, body, params=params, context=context, stage_variables={"env": "prod"})
    event = json.loads(output.replace("\\'", "'"))  # escapeJavaScript escapes ', which JSON does not know
    assert event["body-json"] == json.loads(body)
    assert event["params"] == params
    assert list(event["params"]) == ["path", "querystring", "header"]
    assert event["stage-variables"] == {"env": "prod"}
    assert event["context"] == {
        "account-id": "123",
        "api-id": "a1b2c3",
        "api-key": "",
        "authorizer-principal-id": "user-1",
        "caller": "",
        "cognito-authentication-provider": "",
        "cognito-authentication-type": "",
        "cognito-identity-id": "",
        "cognito-identity-pool-id": "",
        "http-method": "POST",
        "stage": "prod",
        "source-ip": "198.51.100.7",
        "user": "",
        "user-agent": "curl/8",
        "user-arn": "",
        "request-id": "req-1",
        "resource-id": "res-1",
        "resource-path": "/orders/{id}",
    }


def test_passthrough_template_of_a_get_without_body_or_parameters() -> None:
    event = json.loads(render(PASSTHROUGH, "", context={"httpMethod": "GET"}))
    assert event["body-json"] == {}
    assert event["params"] == {"path": {}, "querystring": {}, "header": {}}
    assert event["stage-variables"] == {}
    assert event["context"]["http-method"] == "GET"


# --- overrides ----------------------------------------------------------------------------------------


def test_request_template_overrides_headers_query_strings_and_path_parameters() -> None:
    source = (
        "#set($context.requestOverride.header.X-Request-Id = $input.params('id'))\n"
        "#set($context.requestOverride.header.multi = ['1', '2'])\n"
        "#set($context.requestOverride.querystring.page = 2)\n"
        "#set($context.requestOverride.path.id = \"p-$input.params('id')\")\n"
        "#set($context.responseOverride.status = 418)\n"  # not a request template's to set: ignored
        "body"
    )
    result = rendered(source, params={"path": {"id": "9"}, "querystring": {}, "header": {}})
    assert result["output"] == "body"
    assert result["overrides"] == {
        "header": {"X-Request-Id": "9", "multi": ["1", "2"]},
        "querystring": {"page": "2"},
        "path": {"id": "p-9"},
    }


def test_response_template_overrides_status_and_headers_only() -> None:
    source = (
        "#set($inputRoot = $input.path('$'))\n"
        "#if($inputRoot.error)\n#set($context.responseOverride.status = 400)\n#end\n"
        "#set($context.responseOverride.header.X-Error = $inputRoot.error)\n"
        "#set($context.requestOverride.header.Ignored = 'x')\n"
        "$inputRoot.error"
    )
    result = rendered(source, '{"error": "bad input"}', kind="response")
    assert result == {"output": "bad input", "overrides": {"status": 400, "header": {"X-Error": "bad input"}}}
    assert rendered(source, '{"ok": true}', kind="response")["overrides"] == {}
    assert rendered("#set($context.responseOverride.status = '201')", kind="response")["overrides"] == {
        "status": 201
    }


def test_a_response_override_status_that_is_no_status_code_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="status"):
        rendered("#set($context.responseOverride.status = 'teapot')", kind="response")


def test_a_response_template_reads_the_request_overrides_it_was_given() -> None:
    context = {"requestOverride": {"header": {"X-From-Request": "r"}, "querystring": {}, "path": {}}}
    result = rendered("$context.requestOverride.header.X-From-Request", kind="response", context=context)
    assert result == {"output": "r", "overrides": {}}


# --- directives ---------------------------------------------------------------------------------------


def test_set_if_elseif_else() -> None:
    source = "#foreach($n in [5, 2, 0])#if($n > 3)big#elseif($n > 1)mid#{else}small#end #end"
    assert render(source) == "big mid small "


def test_null_and_false_are_false_everything_else_is_true() -> None:
    source = (
        "#if($missing)1#{else}0#end#if(!$missing)1#{else}0#end#if('')1#{else}0#end#if(false)1#{else}0#end"
    )
    assert render(source) == "0110"


def test_set_to_null_leaves_the_variable_unchanged_as_velocity_does() -> None:
    assert render("#set($a = 'kept')#set($a = $input.path('$.missing'))$a", '{"x": 1}') == "kept"


def test_foreach_velocity_has_next_and_counters() -> None:
    source = "#foreach($x in ['a', 'b', 'c'])$velocityCount:$foreach.index:$x#if($velocityHasNext),#end#end"
    assert render(source) == "1:0:a,2:1:b,3:2:c"


def test_break_leaves_the_innermost_foreach_only() -> None:
    source = "#foreach($i in [1..3])#foreach($j in [1..3])#if($j == 2)#break#end$i$j #end#end"
    assert render(source) == "11 21 31 "
    assert render("#foreach($i in [1..9])$i#if($i == 3)#break($foreach)#end#end") == "123"
    assert render("a#break b") == "a"  # at the top, #break ends the template


def test_macro_with_arguments_and_recursion_within_the_nesting_limit() -> None:
    source = "#macro(countdown $n)$n#if($n > 0) #set($m = $n - 1)#countdown($m)#end#end#countdown(5)"
    assert render(source) == "5 4 3 2 1 0"
    source = '#macro(item $name $price){"name": "$name", "price": $price}#end[#item(\'a\' 1), #item(\'b\' 2)]'
    assert json.loads(render(source)) == [{"name": "a", "price": 1}, {"name": "b", "price": 2}]


def test_macros_are_defined_when_parsed_and_unknown_macros_print_as_text() -> None:
    assert render('#greet("ada")\n#macro(greet $name)Hello, $name#end') == "Hello, ada\n"
    assert render("#foreach($i in [1..2])#macro(twice)x#end#twice()#end") == "xx"
    assert render("#notAMacro(1) #evaluate('#macro(e $a)[$a]#end')#e(5)") == "#notAMacro(1) [5]"


def test_define_blocks_render_where_referenced() -> None:
    source = (
        "#define($pair){\"k\": \"$k\"}#end[#foreach($k in ['a', 'b'])$pair#if($foreach.hasNext),#end#end]"
    )
    assert json.loads(render(source)) == [{"k": "a"}, {"k": "b"}]


def test_output_is_always_utf8_encodable() -> None:
    result = rendered(
        "$input.path('$.s')#set($context.requestOverride.header.h = $input.path('$.s'))", '{"s": "a\\ud800b"}'
    )
    assert result == {"output": "a?b", "overrides": {"header": {"h": "a?b"}}}


def test_ranges_count_up_and_down() -> None:
    assert render("#foreach($i in [3..1])$i#end #set($n = 2)#foreach($i in [0..$n])$i#end") == "321 012"


def test_java_string_methods() -> None:
    body = json.dumps({"s": "  Hello, World  "})
    source = (
        "#set($s = $input.path('$.s').trim())"
        "$s.length() $s.toUpperCase() $s.substring(0, 5) $s.indexOf('o') $s.replace('l', 'L') "
        "$s.contains('World') $s.startsWith('Hell') $s.endsWith('!') $s.split(', ').size() "
        "$s.replaceAll('(\\w+), (\\w+)', '$2 $1') $s.matches('H.*d') $s.charAt(1)"
    )
    assert render(source, body) == "12 HELLO, WORLD Hello 4 HeLLo, WorLd true true false 2 World Hello true e"


def test_velocity_operators() -> None:
    source = (
        "#set($a = 7)#set($b = 2)$a/$b=$math #set($q = $a / $b)$q #set($r = $a % $b)$r ${a}${b} "
        "#set($s = 'x' + $a)$s"
    )
    assert render(source) == "7/2= 3 1 72 x7"
    assert render("#set($x = 'abc' * 3)[$x]#set($y = 1 / 0)[$y]") == "[][]"
    assert render("#if('7' == 7)eq#end #if(-7 % 2 == -1)java#end") == "eq java"


# --- errors -------------------------------------------------------------------------------------------


def test_syntax_errors_name_the_line_and_column() -> None:
    with pytest.raises(TemplateError, match=r"line 2, column 11: expected expression"):
        MappingTemplate.compile("ok\n#set($a = )\n")
    with pytest.raises(TemplateError, match="#end"):
        MappingTemplate.compile("#if($a)")


def test_render_errors_name_the_line_and_the_expression() -> None:
    with pytest.raises(TemplateError, match=r"line 3, column 1: .*substring"):
        render("a\nb\n$input.body.substring(5, 1)", '"abc"')


def test_python_internals_are_unreachable() -> None:
    source = (
        "[$util.__class__][$input.__init__][$input.body.__class__.__mro__]"
        "[$input.body.format('{0.__class__}')][$input.body.center(1000)][$input.body.upper()]"
        "[$context.__class__][$context.items()][$stageVariables.copy()]"
    )
    assert render(source, '"x"') == "[]" * 9


def test_compiled_templates_are_cached_by_their_text() -> None:
    source = "cached $input.body"
    assert MappingTemplate.compile(source).tree is MappingTemplate.compile(source).tree
    with pytest.raises(TemplateError) as first:
        MappingTemplate.compile("#foreach(")
    with pytest.raises(TemplateError) as second:
        MappingTemplate.compile("#foreach(")
    assert first.value is second.value


def test_one_compiled_template_renders_from_many_threads() -> None:
    template = MappingTemplate.compile("#foreach($i in [1..200])$input.path('$.n')#end")
    outputs: dict[int, str] = {}

    def work(number: int) -> None:
        outputs[number] = template.render(request(json.dumps({"n": number})))["output"]

    threads = [threading.Thread(target=work, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outputs == {number: str(number) * 200 for number in range(8)}


# --- limits -------------------------------------------------------------------------------------------


def test_templates_over_300_kb_are_refused_at_compile() -> None:
    largest = "x" * limits.MAX_TEMPLATE_BYTES
    assert MappingTemplate.compile(largest).render(request())["output"] == largest
    with pytest.raises(TemplateError, match=r"307200"):
        MappingTemplate.compile(largest + "x")
    with pytest.raises(TemplateError, match="bytes"):
        MappingTemplate.compile("é" * (limits.MAX_TEMPLATE_BYTES // 2 + 1))  # counted in UTF-8 bytes


def test_foreach_stops_after_1000_iterations_as_velocity_maxloops_does() -> None:
    assert render("#set($n = 0)#foreach($i in [1..5000])#set($n = $n + 1)#end$n") == "1000"
    body = json.dumps(list(range(1500)))
    assert render("#foreach($i in $input.path('$'))#set($last = $i)#end$last", body) == "999"
    nested = "#set($n = 0)#foreach($i in [1..1001])#foreach($j in [1..2])#set($n = $n + 1)#end#end$n"
    assert render(nested) == "2000"  # each loop counts its own iterations


def test_macro_recursion_is_bounded() -> None:
    with pytest.raises(TemplateError, match="nest deeper than 20"):
        render("#macro(again)#again()#end#again()")
    with pytest.raises(TemplateError, match="nest deeper than 20"):
        render("#set($t = '#evaluate($t)')#evaluate($t)")


def test_output_and_built_strings_are_bounded() -> None:
    with pytest.raises(TemplateError, match="characters"):
        render("#set($s = 'xxxxxxxxxxxxxxxx')#foreach($i in [1..40])#set($s = \"$s$s\")#end$s.length()")
    with pytest.raises(TemplateError, match="characters"):
        render("#set($s = 'x')#foreach($i in [1..30])#set($s = $s + $s)#end")
    with pytest.raises(TemplateError, match="characters"):
        chunk = "y" * 100_000
        render(f"#foreach($i in [1..1000])#foreach($j in [1..1000]){chunk}#end#end")


def test_values_too_large_to_print_are_refused() -> None:
    doubling = "#set($a = ['x'])#foreach($i in [1..40])#set($a = [$a, $a])#end"
    with pytest.raises(TemplateError, match="elements"):
        render(doubling + "$a")
    with pytest.raises(TemplateError, match="elements"):
        render(doubling + "$a.toString()")
    with pytest.raises(TemplateError, match="elements"):
        render(doubling + "$util.base64Encode($a)")
    assert render(doubling + "$a.size()") == "2"


@contextmanager
def render_seconds(seconds: float) -> Iterator[None]:
    saved = limits.RENDER_SECONDS
    limits.RENDER_SECONDS = seconds
    try:
        yield
    finally:
        limits.RENDER_SECONDS = saved


def test_rendering_is_bounded_in_time() -> None:
    with render_seconds(0.2), pytest.raises(TemplateError, match=r"longer than 0\.2 s"):
        render("#foreach($a in [1..1000])#foreach($b in [1..1000])#foreach($c in [1..1000])x#end#end#end")


def test_a_backtracking_regex_is_bounded_in_time() -> None:
    body = json.dumps({"s": "a" * 40 + "!"})
    with render_seconds(0.2), pytest.raises(TemplateError, match=r"(?i)time"):
        render("$input.path('$.s').matches('(a|a)+b')", body)


# --- properties ---------------------------------------------------------------------------------------


class Hang(Exception):
    pass


@contextmanager
def alarm(seconds: float) -> Iterator[None]:
    """Fails the test if the block runs longer than `seconds` (a hang), instead of waiting forever."""

    def expired(signum: int, frame: Any) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=40,
)

PAYLOAD_TEMPLATES = [
    MappingTemplate.compile(source)
    for source in (
        "$input.json('$')",
        PASSTHROUGH,
        "#set($r = $input.path('$'))$r #foreach($x in $r)$x,$util.escapeJavaScript($x)#end $r.size()",
        "$input.json('$..*') $input.json('$[0]') $input.json('$.a.b') $input.path('$[*]')",
        "#foreach($k in $input.path('$').keySet())$k=$input.path('$').get($k)#end",
        "$util.base64Encode($input.body) $util.urlEncode($input.body) $util.parseJson($input.body)",
    )
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values)
def test_arbitrary_json_payloads_render_or_fail_with_template_error(value: Any) -> None:
    body = json.dumps(value)
    params = {"path": {"p": "1"}, "querystring": {"q": body[:20]}, "header": {"h": body[-20:]}}
    with alarm(30):
        for template in PAYLOAD_TEMPLATES:
            with suppress(TemplateError):
                template.render(request(body, params=params))
        output = PAYLOAD_TEMPLATES[0].render(request(body))["output"]
        assert json.loads(output) == value or "\\ud" in body.lower()  # lone surrogates print as "?"


@settings(max_examples=200, deadline=None)
@given(body=st.text(max_size=200))
def test_arbitrary_payload_texts_render_or_fail_with_template_error(body: str) -> None:
    with alarm(30):
        for template in PAYLOAD_TEMPLATES:
            with suppress(TemplateError):
                template.render(request(body))


FRAGMENTS = [
    "#set($a = 1)",
    '#set($s = "$s$s")',
    "#set($s = 'x')",
    "#set($l = [1..1000])",
    "#set($m = {'k': $a})",
    "#if($a)",
    "#if(!$x)",
    "#elseif($a > 1)",
    "#else",
    "#end",
    "#{end}",
    "#foreach($i in $l)",
    "#foreach($i in [1..1000])",
    "#foreach($k in $input.path('$'))",
    "#break",
    "#stop",
    "#macro(m $p)",
    "#m($a)",
    "#m()",
    "#define($d)",
    "$d",
    "#evaluate($s)",
    "#evaluate('#m(1)')",
    "$a",
    "$!a",
    "${a}",
    "$s.length()",
    "$s.replaceAll('(x+)+y', '$1')",
    "$l.size()",
    "$l.get(5)",
    "$m.k",
    "$m.put('k', $s)",
    "$input.json('$')",
    "$input.path('$.a[*]')",
    "$input.params('x')",
    "$util.escapeJavaScript($s)",
    "$util.parseJson($s)",
    "$util.base64Decode($s)",
    "$context.requestOverride.header",
    "#set($context.responseOverride.status = $a)",
    "$stageVariables['v']",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "'",
    '"',
    "#",
    "$",
    "##",
    "#*",
    "*#",
    ",",
    " ",
    "\n",
    "==",
    "+",
    "*",
    "/",
    "%",
    "1",
    "-1",
    "x",
    "[1..",
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    source=st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=3), max_size=25).map("".join),
    kind=st.sampled_from(["request", "response"]),
)
def test_arbitrary_templates_compile_and_render_or_fail_with_template_error(source: str, kind: str) -> None:
    with render_seconds(0.5), alarm(30):
        try:
            template = MappingTemplate.compile(source)
        except TemplateError:
            return
        try:
            result = template.render(
                request('{"a": [1, 2, {"b": "x"}]}', kind=kind, stage_variables={"v": "1"})
            )
        except TemplateError:
            return
        assert len(result["output"]) <= limits.MAX_OUTPUT_CHARS
        result["output"].encode("utf-8")
        assert set(result["overrides"]) <= (
            {"header", "querystring", "path"}
            if kind == "request"
            else {
                "status",
                "header",
            }
        )
