//! Customised gateway responses (REST APIs' `PutGatewayResponse`), compiled once per snapshot and
//! applied by the gateway-response phase.
//!
//! As "Setting up gateway responses to customize error responses" in the API Gateway developer
//! guide describes them:
//! * resolution: the response customised for the failure's own type; else, for a type with no
//!   customisation of its own, `DEFAULT_4XX` / `DEFAULT_5XX` by the built-in status's class; else
//!   the built-in response. A class default's status, when set, replaces the status of every type
//!   of its class that has none of its own. `REQUEST_TOO_LARGE` cannot be customised.
//! * `responseParameters`: `gatewayresponse.header.NAME` from `'static'`,
//!   `method.request.header.X`, `method.request.querystring.X`, `method.request.path.X`,
//!   `stageVariables.X` or `context.X`. A value that is absent for a request adds no header.
//! * `responseTemplates`: "not processed by the Velocity Template Language (VTL) engine", simple
//!   variable substitution only (`$context.error.messageString`, `$context.error.message`,
//!   `$context.error.responseType`, any other `$context.NAME` an access log knows,
//!   `$stageVariables.NAME`); the template is chosen by the request's `Accept`
//!   (`application/json` otherwise). A customised response without templates keeps AWS's default
//!   body (`{"message":$context.error.messageString}`).
//!
//! `x-amzn-ErrorType` stays on every customised response. HTTP APIs have no gateway responses.

use std::collections::HashMap;

use http::header::{HeaderName, HeaderValue};
use http::StatusCode;

use crate::access_log::{render_context, LogRecord};
use crate::lambda::event::parse_query;
use crate::spec::{ApiKind, GatewayResponseSpec};

/// The response types `PutGatewayResponse` accepts (AWS `GatewayResponseType`).
const TYPES: &[&str] = &[
    "ACCESS_DENIED",
    "API_CONFIGURATION_ERROR",
    "AUTHORIZER_CONFIGURATION_ERROR",
    "AUTHORIZER_FAILURE",
    "BAD_REQUEST_BODY",
    "BAD_REQUEST_PARAMETERS",
    "DEFAULT_4XX",
    "DEFAULT_5XX",
    "EXPIRED_TOKEN",
    "INTEGRATION_FAILURE",
    "INTEGRATION_TIMEOUT",
    "INVALID_API_KEY",
    "INVALID_SIGNATURE",
    "MISSING_AUTHENTICATION_TOKEN",
    "QUOTA_EXCEEDED",
    "REQUEST_TOO_LARGE",
    "RESOURCE_NOT_FOUND",
    "THROTTLED",
    "UNAUTHORIZED",
    "UNSUPPORTED_MEDIA_TYPE",
    "WAF_FILTERED",
];

/// Where a header's value comes from (a `responseParameters` value).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Static(HeaderValue),
    Header(HeaderName),
    Query(Box<str>),
    Path(Box<str>),
    StageVariable(Box<str>),
    Context(Box<str>),
}

impl Source {
    fn parse(expression: &str) -> Result<Source, String> {
        let e = expression.trim();
        let bad = || format!("{expression:?}: not a mapping expression ('static', method.request.header.X, method.request.querystring.X, method.request.path.X, stageVariables.X, context.X)");
        if e.len() >= 2 && e.starts_with('\'') && e.ends_with('\'') {
            return HeaderValue::from_str(&e[1..e.len() - 1])
                .map(Source::Static)
                .map_err(|_| format!("{expression:?}: not a valid header value"));
        }
        let named = |name: &str| (!name.is_empty()).then(|| Box::<str>::from(name)).ok_or_else(bad);
        if let Some(name) = e.strip_prefix("method.request.header.") {
            return HeaderName::from_bytes(name.as_bytes()).map(Source::Header).map_err(|_| bad());
        }
        if let Some(name) = e.strip_prefix("method.request.querystring.") {
            return named(name).map(Source::Query);
        }
        if let Some(name) = e.strip_prefix("method.request.path.") {
            return named(name).map(Source::Path);
        }
        if let Some(name) = e.strip_prefix("stageVariables.") {
            return named(name).map(Source::StageVariable);
        }
        if let Some(name) = e.strip_prefix("context.") {
            return named(name).map(Source::Context);
        }
        Err(bad())
    }
}

/// A piece of a body template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(Box<str>),
    /// `$context.error.messageString`: the message as a JSON string (`null` when there is none).
    MessageString,
    /// `$context.error.message`: the message as it is.
    Message,
    /// `$context.error.responseType`.
    ResponseType,
    /// Any other `$context.NAME`, rendered as an access log renders it.
    Context(Box<str>),
    StageVariable(Box<str>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Template {
    pieces: Vec<Piece>,
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.'
}

impl Template {
    /// Splits `text` into literal text and variables. Never fails: anything that is not a
    /// variable is text.
    fn parse(text: &str) -> Template {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            literal.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let (kind, prefix_len) = if after.starts_with("context.") {
                (true, "context.".len())
            } else if after.starts_with("stageVariables.") {
                (false, "stageVariables.".len())
            } else {
                literal.push('$');
                rest = after;
                continue;
            };
            let name_area = &after[prefix_len..];
            let mut len = name_area.bytes().take_while(|&b| is_name_byte(b)).count();
            while len > 0 && name_area.as_bytes()[len - 1] == b'.' {
                len -= 1;
            }
            if len == 0 {
                literal.push('$');
                rest = after;
                continue;
            }
            let name = &name_area[..len];
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal).into()));
            }
            pieces.push(match (kind, name) {
                (true, "error.messageString") => Piece::MessageString,
                (true, "error.message") => Piece::Message,
                (true, "error.responseType") => Piece::ResponseType,
                (true, name) => Piece::Context(name.into()),
                (false, name) => Piece::StageVariable(name.into()),
            });
            rest = &name_area[len..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal.into()));
        }
        Template { pieces }
    }
}

/// One customised response type.
#[derive(Debug, Clone)]
struct Custom {
    status: Option<StatusCode>,
    headers: Vec<(HeaderName, Source)>,
    /// (content type, template), in the spec's order (content types sorted).
    templates: Vec<(Box<str>, HeaderValue, Template)>,
}

/// An API's customised gateway responses.
#[derive(Debug, Default)]
pub struct GatewayResponses {
    by_type: HashMap<&'static str, Custom>,
}

/// What a request offers the rendering: everything is borrowed from the exchange.
pub struct RenderContext<'a> {
    pub headers: &'a http::HeaderMap,
    pub raw_query: &'a str,
    pub path_params: &'a [(&'a str, &'a str)],
    pub stage_variables: &'a [(Box<str>, Box<str>)],
    /// The request as an access log sees it, for `$context.NAME` / `context.NAME`.
    pub record: &'a LogRecord<'a>,
    pub kind: ApiKind,
    /// `$context.error.message` (None: no message, rendered `null` as a JSON string).
    pub message: Option<&'a str>,
    /// `$context.error.responseType`.
    pub response_type: &'a str,
}

/// A customised answer: replaces the built-in status, adds headers, and replaces the body when
/// a template applies.
#[derive(Debug, PartialEq, Eq)]
pub struct Rendered {
    pub status: Option<StatusCode>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// (content type, body).
    pub body: Option<(HeaderValue, String)>,
}

impl GatewayResponses {
    pub fn compile(specs: &[GatewayResponseSpec]) -> Result<GatewayResponses, String> {
        let mut by_type = HashMap::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let at = format!("gateway_responses[{i}]");
            let Some(&name) = TYPES.iter().find(|t| **t == spec.response_type) else {
                return Err(format!("{at}.response_type: {:?}: not a gateway response type", spec.response_type));
            };
            let status = match spec.status {
                None => None,
                Some(s) if (100..=599).contains(&s) => StatusCode::from_u16(s).ok(),
                Some(s) => return Err(format!("{at}.status: {s}: not an HTTP status")),
            };
            let mut headers = Vec::new();
            for (key, value) in &spec.headers {
                // `gatewayresponse.querystring.X` / `.path.X` are accepted by AWS and have no
                // effect on a response; only headers are sent.
                let name = key.strip_prefix("gatewayresponse.header.").unwrap_or(key);
                if key.starts_with("gatewayresponse.") && !key.starts_with("gatewayresponse.header.") {
                    continue;
                }
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("{at}.headers: {key:?}: not a header name"))?;
                let source = Source::parse(value).map_err(|e| format!("{at}.headers[{key:?}]: {e}"))?;
                headers.push((name, source));
            }
            let mut templates = Vec::new();
            for (content_type, text) in &spec.templates {
                let value = HeaderValue::from_str(content_type.trim())
                    .map_err(|_| format!("{at}.templates: {content_type:?}: not a content type"))?;
                templates.push((content_type.trim().to_ascii_lowercase().into(), value, Template::parse(text)));
            }
            if by_type.insert(name, Custom { status, headers, templates }).is_some() {
                return Err(format!("{at}.response_type: {name}: customised twice"));
            }
        }
        Ok(GatewayResponses { by_type })
    }

    pub fn is_empty(&self) -> bool {
        self.by_type.is_empty()
    }

    /// The customisation of a failure of type `name` whose built-in status is `status`, if any.
    pub fn render(&self, name: &str, status: u16, accept: Option<&str>, cx: &RenderContext<'_>) -> Option<Rendered> {
        if name == "REQUEST_TOO_LARGE" {
            return None;
        }
        let class = if status >= 500 { "DEFAULT_5XX" } else { "DEFAULT_4XX" };
        let class = self.by_type.get(class);
        let (custom, status) = match self.by_type.get(name) {
            Some(own) => (own, own.status.or_else(|| class.and_then(|c| c.status))),
            None => {
                let class = class?;
                (class, class.status)
            }
        };
        let headers = custom
            .headers
            .iter()
            .filter_map(|(name, source)| Some((name.clone(), value_of(source, cx)?)))
            .collect();
        let body = choose(&custom.templates, accept).map(|(content_type, template)| {
            let mut out = String::new();
            render_template(template, cx, &mut out);
            (content_type.clone(), out)
        });
        Some(Rendered { status, headers, body })
    }
}

/// The template for `accept`: the first media type it names that has one, else
/// `application/json`'s, else the first.
fn choose<'t>(templates: &'t [(Box<str>, HeaderValue, Template)], accept: Option<&str>) -> Option<(&'t HeaderValue, &'t Template)> {
    let find = |wanted: &str| templates.iter().find(|(ct, _, _)| ct.eq_ignore_ascii_case(wanted));
    let by_accept = accept.and_then(|accept| {
        accept
            .split(',')
            .map(|part| part.split(';').next().unwrap_or("").trim())
            .filter(|media| !media.is_empty() && *media != "*/*")
            .find_map(find)
    });
    by_accept
        .or_else(|| find("application/json"))
        .or_else(|| templates.first())
        .map(|(_, value, template)| (value, template))
}

fn value_of(source: &Source, cx: &RenderContext<'_>) -> Option<HeaderValue> {
    match source {
        Source::Static(v) => Some(v.clone()),
        Source::Header(name) => cx.headers.get(name).cloned(),
        Source::Query(name) => {
            let pairs = parse_query(cx.raw_query);
            let (_, value) = pairs.into_iter().find(|(k, _)| k == &**name)?;
            HeaderValue::from_str(&value).ok()
        }
        Source::Path(name) => {
            let (_, value) = cx.path_params.iter().find(|(k, _)| *k == &**name)?;
            HeaderValue::from_str(value).ok()
        }
        Source::StageVariable(name) => {
            let (_, value) = cx.stage_variables.iter().find(|(k, _)| **k == **name)?;
            HeaderValue::from_str(value).ok()
        }
        Source::Context(name) => {
            let mut out = String::new();
            context_value(name, cx, &mut out);
            HeaderValue::from_str(&out).ok()
        }
    }
}

fn context_value(name: &str, cx: &RenderContext<'_>, out: &mut String) {
    match name {
        "error.messageString" => out.push_str(&message_string(cx.message)),
        "error.message" => out.push_str(cx.message.unwrap_or("")),
        "error.responseType" => out.push_str(cx.response_type),
        name => {
            if !render_context(name, cx.kind, cx.record, out) {
                out.push('-');
            }
        }
    }
}

fn message_string(message: Option<&str>) -> String {
    match message {
        Some(m) => serde_json::Value::String(m.to_owned()).to_string(),
        None => "null".to_owned(),
    }
}

fn render_template(template: &Template, cx: &RenderContext<'_>, out: &mut String) {
    for piece in &template.pieces {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::MessageString => out.push_str(&message_string(cx.message)),
            Piece::Message => out.push_str(cx.message.unwrap_or("")),
            Piece::ResponseType => out.push_str(cx.response_type),
            Piece::Context(name) => context_value(name, cx, out),
            Piece::StageVariable(name) => {
                if let Some((_, value)) = cx.stage_variables.iter().find(|(k, _)| **k == **name) {
                    out.push_str(value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn spec(kind: &str, status: Option<u16>, headers: &[(&str, &str)], templates: &[(&str, &str)]) -> GatewayResponseSpec {
        GatewayResponseSpec {
            response_type: kind.into(),
            status,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            templates: templates.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        }
    }

    struct Fixture {
        headers: http::HeaderMap,
        variables: Vec<(Box<str>, Box<str>)>,
    }

    fn fixture() -> Fixture {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-client", HeaderValue::from_static("c-7"));
        Fixture {
            headers,
            variables: vec![("realm".into(), "blue".into())],
        }
    }

    fn render(responses: &GatewayResponses, name: &str, status: u16, accept: Option<&str>, message: Option<&str>) -> Option<Rendered> {
        let f = fixture();
        let record = LogRecord {
            request_id: "req-1",
            http_method: "GET",
            path: "/prod/pets/7",
            stage: Some("prod"),
            ..Default::default()
        };
        let cx = RenderContext {
            headers: &f.headers,
            raw_query: "q=a%20b&q=second",
            path_params: &[("id", "7")],
            stage_variables: &f.variables,
            record: &record,
            kind: ApiKind::Rest,
            message,
            response_type: name,
        };
        responses.render(name, status, accept, &cx)
    }

    #[test]
    fn the_specific_type_wins_then_its_class_then_nothing() {
        let responses = GatewayResponses::compile(&[
            spec("UNAUTHORIZED", Some(418), &[("gatewayresponse.header.x-kind", "'own'")], &[]),
            spec("DEFAULT_4XX", Some(400), &[("gatewayresponse.header.x-kind", "'class'")], &[]),
        ])
        .unwrap();
        let own = render(&responses, "UNAUTHORIZED", 401, None, Some("Unauthorized")).unwrap();
        assert_eq!(own.status, Some(StatusCode::IM_A_TEAPOT));
        assert_eq!(own.headers, vec![(HeaderName::from_static("x-kind"), HeaderValue::from_static("own"))]);
        assert_eq!(own.body, None);
        let class = render(&responses, "INVALID_API_KEY", 403, None, Some("Forbidden")).unwrap();
        assert_eq!(class.status, Some(StatusCode::BAD_REQUEST));
        assert_eq!(class.headers[0].1, "class");
        // A 5xx type has no customisation: the built-in answer.
        assert_eq!(render(&responses, "AUTHORIZER_FAILURE", 500, None, None), None);
        // REQUEST_TOO_LARGE cannot be customised, not even by its class.
        assert_eq!(render(&responses, "REQUEST_TOO_LARGE", 413, None, None), None);
    }

    #[test]
    fn a_class_status_applies_to_a_type_customised_without_one() {
        let responses = GatewayResponses::compile(&[
            spec("ACCESS_DENIED", None, &[], &[("application/json", "{\"d\":1}")]),
            spec("DEFAULT_4XX", Some(409), &[], &[]),
        ])
        .unwrap();
        let rendered = render(&responses, "ACCESS_DENIED", 403, None, None).unwrap();
        assert_eq!(rendered.status, Some(StatusCode::CONFLICT));
        let only_class = GatewayResponses::compile(&[spec("DEFAULT_5XX", None, &[("h", "'v'")], &[])]).unwrap();
        assert_eq!(render(&only_class, "INTEGRATION_FAILURE", 504, None, None).unwrap().status, None);
    }

    #[test]
    fn header_values_come_from_every_source() {
        let responses = GatewayResponses::compile(&[spec(
            "DEFAULT_4XX",
            None,
            &[
                ("gatewayresponse.header.a", "'static value'"),
                ("gatewayresponse.header.b", "method.request.header.X-Client"),
                ("gatewayresponse.header.c", "method.request.querystring.q"),
                ("gatewayresponse.header.d", "method.request.path.id"),
                ("gatewayresponse.header.e", "stageVariables.realm"),
                ("gatewayresponse.header.f", "context.requestId"),
                ("gatewayresponse.header.g", "method.request.header.absent"),
                ("gatewayresponse.querystring.ignored", "'x'"),
            ],
            &[],
        )])
        .unwrap();
        let rendered = render(&responses, "MISSING_AUTHENTICATION_TOKEN", 403, None, Some("m")).unwrap();
        let got: Vec<(String, String)> = rendered
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        let want: Vec<(String, String)> = [("a", "static value"), ("b", "c-7"), ("c", "a b"), ("d", "7"), ("e", "blue"), ("f", "req-1")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn templates_substitute_simple_variables_only() {
        let template = concat!(
            r#"{"m":$context.error.messageString,"raw":"$context.error.message","#,
            r#""t":"$context.error.responseType","id":"$context.requestId","stage":"$context.stage","#,
            r##""v":"$stageVariables.realm","none":"$stageVariables.nope","cost":"$5","vtl":"#if($x)""##,
            r#","dot":"$context.stage."}"#
        );
        let responses = GatewayResponses::compile(&[spec("UNAUTHORIZED", None, &[], &[("application/json", template)])]).unwrap();
        let rendered = render(&responses, "UNAUTHORIZED", 401, None, Some("say \"no\"")).unwrap();
        let (content_type, body) = rendered.body.unwrap();
        assert_eq!(content_type, "application/json");
        assert_eq!(
            body,
            r##"{"m":"say \"no\"","raw":"say "no"","t":"UNAUTHORIZED","id":"req-1","stage":"prod","v":"blue","none":"","cost":"$5","vtl":"#if($x)","dot":"prod."}"##
        );
        // No message: messageString renders null, as AWS's default template does.
        let (_, body) = render(&responses, "UNAUTHORIZED", 401, None, None).unwrap().body.unwrap();
        assert!(body.starts_with(r#"{"m":null,"raw":"","#), "{body}");
    }

    #[test]
    fn the_template_follows_accept() {
        let responses = GatewayResponses::compile(&[spec(
            "DEFAULT_4XX",
            None,
            &[],
            &[("application/json", "json"), ("application/xml", "<xml/>"), ("text/plain", "text")],
        )])
        .unwrap();
        let body = |accept| render(&responses, "THROTTLED", 429, accept, None).unwrap().body.unwrap();
        assert_eq!(body(None).1, "json");
        assert_eq!(body(Some("text/plain")).1, "text");
        assert_eq!(body(Some("image/png, application/xml;q=0.9")).1, "<xml/>");
        assert_eq!(body(Some("*/*")).1, "json");
        assert_eq!(body(Some("image/png")).0, "application/json");
        let xml_only = GatewayResponses::compile(&[spec("DEFAULT_4XX", None, &[], &[("application/xml", "<x/>")])]).unwrap();
        assert_eq!(render(&xml_only, "THROTTLED", 429, None, None).unwrap().body.unwrap().1, "<x/>");
    }

    #[test]
    fn bad_customisations_are_refused_at_compilation() {
        for bad in [
            spec("NOT_A_TYPE", None, &[], &[]),
            spec("UNAUTHORIZED", Some(700), &[], &[]),
            spec("UNAUTHORIZED", None, &[("gatewayresponse.header.bad name", "'v'")], &[]),
            spec("UNAUTHORIZED", None, &[("gatewayresponse.header.x", "method.request.body.x")], &[]),
            spec("UNAUTHORIZED", None, &[("gatewayresponse.header.x", "'line\nbreak'")], &[]),
        ] {
            assert!(GatewayResponses::compile(std::slice::from_ref(&bad)).is_err(), "{bad:?}");
        }
        let twice = [spec("UNAUTHORIZED", None, &[], &[]), spec("UNAUTHORIZED", None, &[], &[])];
        assert!(GatewayResponses::compile(&twice).unwrap_err().contains("twice"));
    }

    proptest::proptest! {
        #[test]
        fn any_template_renders(text in "\\PC*", message in proptest::option::of("\\PC*")) {
            let responses = GatewayResponses::compile(&[spec("DEFAULT_4XX", None, &[], &[("application/json", &text)])]).unwrap();
            let rendered = render(&responses, "UNAUTHORIZED", 401, Some(&text), message.as_deref());
            proptest::prop_assert!(rendered.is_some());
        }

        #[test]
        fn text_without_variables_is_kept(text in "[^$]*") {
            proptest::prop_assert_eq!(Template::parse(&text).pieces.len(), usize::from(!text.is_empty()));
        }
    }
}

#[cfg(test)]
mod mask_tests {
    #[test]
    fn api_keys_are_masked_to_their_last_four_characters() {
        use crate::pipeline::api_key_mask;
        assert_eq!(api_key_mask("abcdefghijklmnopqrstuvwxyz"), "****wxyz");
        assert_eq!(api_key_mask("short"), "****");
        assert!(!api_key_mask("0123456789abcdefghij").contains("0123"));
    }
}
