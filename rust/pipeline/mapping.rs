//! REST APIs' request and response mapping for non-proxy integrations (and the parameter mapping
//! of REST `HTTP_PROXY`), compiled once per snapshot and applied per request by
//! `crate::integrations::non_proxy`. See docs/pipeline.md, "Non-proxy integrations".
//!
//! What is decided here, as the API Gateway developer guide describes it:
//! * Parameter mapping ("Parameter mapping for REST APIs"): `integration.request.{header|
//!   querystring|path}.NAME` from `method.request.{path|querystring|multivaluequerystring|header|
//!   multivalueheader}.NAME`, `method.request.body`, `method.request.body.JSONPATH`,
//!   `stageVariables.NAME`, `context.NAME` or `'static'`; and `method.response.header.NAME` from
//!   `integration.response.header.NAME`, `integration.response.multivalueheader.NAME`,
//!   `integration.response.body`, `integration.response.body.JSONPATH`, `stageVariables.NAME`,
//!   `context.NAME` or `'static'`. A source that has no value for a request sets nothing.
//! * Template selection: a request template by the request's `Content-Type` (its media type,
//!   parameters such as `charset` ignored; absent: `application/json`), with
//!   `passthroughBehavior`'s 415 matrix ("Passthrough behaviors"); a response template by the
//!   first media type of `Accept` (absent: `application/json`; no template for it: the first).
//! * Integration response selection: `selectionPattern`, a Java regular expression matched
//!   against the whole status (or Lambda `errorMessage`), translated here into an anchored
//!   expression of the `regex` crate; what cannot be translated is refused when compiling.
//! * Content handling ("Content type conversions in API Gateway"): base64 both ways by
//!   `contentHandling` and `binaryMediaTypes`.
//!
//! A template holding no VTL (no `$`, no `#`) is its own output, here; one the core's VTL engine
//! compiles (`crate::templates`) is rendered here too; any other, or one whose render that engine
//! hands back, by the Python side (`crate::invoke::Call::Render`, `portico/serve/templates.py`).

use std::sync::Arc;

use base64::Engine as _;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use regex::Regex;
use serde_json::Value;

use crate::lambda::event::{is_binary_media_type, parse_query};
use crate::spec::{
    ContentHandling, IntegrationResponseSpec, MethodResponseSpec, PassthroughBehavior,
};

// ------------------------------------------------------------------------------------------------
// Selection patterns

/// The `regex` crate's form of a Java regular expression, anchored to match the whole input as
/// Java's `String.matches` does. Refused (with why): what Java has and the `regex` crate cannot
/// do (lookaround, backreferences, possessive quantifiers, atomic groups) and Java's escapes with
/// no equivalent. Java's `.` excludes every line terminator, its `\d`, `\w`, `\s` are ASCII.
pub fn translate_java_regex(java: &str) -> Result<String, String> {
    let chars: Vec<char> = java.chars().collect();
    let dot_all = has_dotall_flag(java);
    let mut out = String::with_capacity(java.len() + 16);
    let mut in_class = 0usize;
    let mut i = 0;
    let refuse = |what: &str| {
        Err(format!(
            "{what} cannot be translated from Java's regular expressions"
        ))
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                let Some(&n) = chars.get(i + 1) else {
                    return Err("a pattern cannot end with a backslash".into());
                };
                i += 2;
                let class = in_class > 0;
                match n {
                    'Q' => {
                        // Literal text up to `\E` (or the end).
                        let rest: String = chars[i..].iter().collect();
                        let (literal, after) = match rest.find("\\E") {
                            Some(end) => (&rest[..end], end + 2),
                            None => (&rest[..], rest.len()),
                        };
                        for ch in literal.chars() {
                            push_literal(&mut out, ch);
                        }
                        i += rest[..after].chars().count();
                    }
                    'E' => {}
                    'd' => out.push_str(if class { "0-9" } else { "[0-9]" }),
                    'D' => out.push_str("[^0-9]"),
                    'w' => out.push_str(if class { "0-9A-Za-z_" } else { "[0-9A-Za-z_]" }),
                    'W' => out.push_str("[^0-9A-Za-z_]"),
                    's' => out.push_str(if class {
                        r"\t\n\x0B\f\r "
                    } else {
                        r"[\t\n\x0B\f\r ]"
                    }),
                    'S' => out.push_str(r"[^\t\n\x0B\f\r ]"),
                    'p' | 'P' => {
                        let (name, used) = property_name(&chars[i..])?;
                        i += used;
                        out.push_str(&property(n == 'P', &name, class));
                    }
                    '1'..='9' | 'k' => return refuse("a backreference"),
                    'G' | 'Z' | 'R' | 'X' | 'h' | 'H' | 'v' | 'V' | 'N' => {
                        return refuse(&format!("\\{n}"))
                    }
                    'A' | 'z' | 'b' | 'B' | 't' | 'n' | 'r' | 'f' | 'x' | 'u' => {
                        out.push('\\');
                        out.push(n);
                    }
                    'a' => out.push_str(r"\x07"),
                    'e' => out.push_str(r"\x1B"),
                    'c' => {
                        let Some(&x) = chars.get(i) else {
                            return Err("\\c needs a character".into());
                        };
                        i += 1;
                        push_literal(&mut out, char::from_u32(u32::from(x) ^ 64).unwrap_or('\0'));
                    }
                    '0' => {
                        // Java's octal escape: \0n, \0nn, \0mnn (m <= 3).
                        let digits: String = chars[i..]
                            .iter()
                            .take(3)
                            .take_while(|d| ('0'..='7').contains(*d))
                            .collect();
                        let mut take = digits.len();
                        if take == 3 && digits.as_bytes()[0] > b'3' {
                            take = 2;
                        }
                        if take == 0 {
                            return Err("\\0 needs an octal digit".into());
                        }
                        let value = u32::from_str_radix(&digits[..take], 8).unwrap_or(0);
                        i += take;
                        push_literal(&mut out, char::from_u32(value).unwrap_or('\0'));
                    }
                    other if other.is_ascii_alphanumeric() => return refuse(&format!("\\{other}")),
                    other => push_literal(&mut out, other),
                }
                continue;
            }
            '[' => {
                in_class += 1;
                out.push('[');
                if chars.get(i + 1) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
            }
            ']' if in_class > 0 => {
                in_class -= 1;
                out.push(']');
            }
            '(' if in_class == 0 => {
                if chars.get(i + 1) == Some(&'?') {
                    let next = chars.get(i + 2).copied();
                    let after = chars.get(i + 3).copied();
                    match (next, after) {
                        (Some('='), _)
                        | (Some('!'), _)
                        | (Some('<'), Some('='))
                        | (Some('<'), Some('!')) => return refuse("a lookaround"),
                        (Some('>'), _) => return refuse("an atomic group"),
                        (Some(':'), _) | (Some('<'), _) => out.push('('),
                        _ => {
                            // Inline flags `(?idmsux-idmsux)` / `(?i:...)`: the ones both know.
                            let mut j = i + 2;
                            while let Some(&f) = chars.get(j) {
                                match f {
                                    'i' | 'm' | 's' | 'x' | '-' => j += 1,
                                    ')' | ':' => break,
                                    other => return refuse(&format!("the inline flag {other:?}")),
                                }
                            }
                            out.push('(');
                        }
                    }
                } else {
                    out.push('(');
                }
            }
            '*' | '+' | '?' | '}' if in_class == 0 => {
                out.push(c);
                if chars.get(i + 1) == Some(&'+') {
                    return refuse("a possessive quantifier");
                }
            }
            '.' if in_class == 0 && !dot_all => out.push_str(r"[^\n\r\x{85}\x{2028}\x{2029}]"),
            _ => out.push(c),
        }
        i += 1;
    }
    Ok(format!(r"\A(?:{out})\z"))
}

/// Whether a pattern turns on `DOTALL` (`(?s)`) anywhere: its `.` then matches everything.
fn has_dotall_flag(java: &str) -> bool {
    let mut rest = java;
    while let Some(at) = rest.find("(?") {
        let flags: String = rest[at + 2..]
            .chars()
            .take_while(|c| c.is_ascii_alphabetic() || *c == '-')
            .collect();
        let on = flags.split('-').next().unwrap_or("");
        if on.contains('s') {
            return true;
        }
        rest = &rest[at + 2..];
    }
    false
}

fn push_literal(out: &mut String, ch: char) {
    if regex_syntax_is_meta(ch) {
        out.push('\\');
    }
    out.push(ch);
}

fn regex_syntax_is_meta(ch: char) -> bool {
    matches!(
        ch,
        '\\' | '.'
            | '+'
            | '*'
            | '?'
            | '('
            | ')'
            | '|'
            | '['
            | ']'
            | '{'
            | '}'
            | '^'
            | '$'
            | '#'
            | '&'
            | '-'
            | '~'
    )
}

/// `{Name}` or a one-letter name after `\p`; the name and the characters used.
fn property_name(rest: &[char]) -> Result<(String, usize), String> {
    match rest.first() {
        Some('{') => {
            let end = rest
                .iter()
                .position(|c| *c == '}')
                .ok_or("\\p{ is not closed")?;
            Ok((rest[1..end].iter().collect(), end + 1))
        }
        Some(c) => Ok((c.to_string(), 1)),
        None => Err("\\p needs a property name".into()),
    }
}

/// Java's character property `name` in the `regex` crate's syntax: its POSIX classes (ASCII, as
/// in Java) become classes, `IsX` / `InX` / `javaX` names their Unicode equivalents.
fn property(negated: bool, name: &str, in_class: bool) -> String {
    let posix = match name {
        "Lower" => Some("a-z"),
        "Upper" => Some("A-Z"),
        "ASCII" => Some(r"\x00-\x7F"),
        "Alpha" => Some("a-zA-Z"),
        "Digit" => Some("0-9"),
        "Alnum" => Some("a-zA-Z0-9"),
        "Punct" => Some(r##"!-/:-@\[-`{-~"##),
        "Graph" => Some(r"!-~"),
        "Print" => Some(r" -~"),
        "Blank" => Some(r" \t"),
        "Cntrl" => Some(r"\x00-\x1F\x7F"),
        "XDigit" => Some("0-9a-fA-F"),
        "Space" => Some(r" \t\n\x0B\f\r"),
        _ => None,
    };
    if let Some(set) = posix {
        return match (negated, in_class) {
            (false, true) => set.to_owned(),
            (false, false) => format!("[{set}]"),
            (true, _) => format!("[^{set}]"),
        };
    }
    let unicode = match name {
        "javaLowerCase" => "Lowercase",
        "javaUpperCase" => "Uppercase",
        "javaWhitespace" => "White_Space",
        "javaAlphabetic" => "Alphabetic",
        other => other
            .strip_prefix("Is")
            .or_else(|| other.strip_prefix("In"))
            .unwrap_or(other),
    };
    format!("\\{}{{{unicode}}}", if negated { 'P' } else { 'p' })
}

/// A Java `selectionPattern`, compiled: matches a whole status or `errorMessage`.
pub fn selection_regex(pattern: &str) -> Result<Regex, String> {
    let translated = translate_java_regex(pattern)?;
    regex::RegexBuilder::new(&translated)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("{pattern:?} is not a usable regular expression: {e}"))
}

// ------------------------------------------------------------------------------------------------
// JSONPath into a body

/// The JSONPath expressions of REST APIs' parameter mappings (`method.request.body.a.b[0]`,
/// `integration.response.body.items[2]['id']`): `crate::jsonpath`'s (which HTTP APIs' mappings use
/// too), members and indexes only: no wildcards, recursive descent or filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath(crate::jsonpath::JsonPath);

impl JsonPath {
    pub fn parse(expression: &str) -> Result<JsonPath, String> {
        let text = expression.strip_prefix('$').unwrap_or(expression);
        // `a.b`, as written after `body.`, is relative to the root: `.a.b`.
        let rooted = if text.is_empty() || text.starts_with(['.', '[']) {
            text.to_owned()
        } else {
            format!(".{text}")
        };
        let path = crate::jsonpath::JsonPath::parse(&rooted)?;
        if path.is_multiple() {
            return Err(format!("{expression:?}: wildcards are not supported"));
        }
        Ok(JsonPath(path))
    }

    /// The value at the path, if there is one.
    pub fn find<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        self.0.select(value).into_iter().next()
    }
}

/// A JSON value as a parameter's text: a string's own text, anything else as JSON; null and
/// nothing at all are no value.
pub fn value_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The text of `context.NAME` (`identity.sourceIp`, `authorizer.claims.sub`...) in `$context`.
pub fn context_text(context: &Value, name: &str) -> Option<String> {
    let mut value = context;
    for part in name.split('.') {
        value = value.as_object()?.get(part)?;
    }
    value_text(Some(value))
}

// ------------------------------------------------------------------------------------------------
// Request parameters

/// Where a request parameter's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestSource {
    Path(Box<str>),
    Query(Box<str>),
    MultiQuery(Box<str>),
    Header(HeaderName),
    MultiHeader(HeaderName),
    Body,
    BodyPath(JsonPath),
    StageVariable(Box<str>),
    Context(Box<str>),
    Static(Box<str>),
}

/// Where a mapped request parameter goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestTarget {
    Header(HeaderName),
    Query(Box<str>),
    Path(Box<str>),
}

/// `'static'` (single-quoted) or the text after `prefix` (non-empty).
fn named<'e>(expression: &'e str, prefix: &str) -> Option<&'e str> {
    expression.strip_prefix(prefix).filter(|n| !n.is_empty())
}

fn header_name(name: &str, expression: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{expression:?}: {name:?} is not a header name"))
}

/// A quoted static value (`'text'`), if `expression` is one.
fn static_value(expression: &str) -> Option<&str> {
    (expression.len() >= 2 && expression.starts_with('\'') && expression.ends_with('\''))
        .then(|| &expression[1..expression.len() - 1])
}

impl RequestSource {
    pub fn parse(expression: &str) -> Result<RequestSource, String> {
        let e = expression.trim();
        if let Some(text) = static_value(e) {
            return Ok(RequestSource::Static(text.into()));
        }
        if e == "method.request.body" {
            return Ok(RequestSource::Body);
        }
        if let Some(path) = named(e, "method.request.body.") {
            return Ok(RequestSource::BodyPath(JsonPath::parse(path)?));
        }
        if let Some(n) = named(e, "method.request.path.") {
            return Ok(RequestSource::Path(n.into()));
        }
        if let Some(n) = named(e, "method.request.querystring.") {
            return Ok(RequestSource::Query(n.into()));
        }
        if let Some(n) = named(e, "method.request.multivaluequerystring.") {
            return Ok(RequestSource::MultiQuery(n.into()));
        }
        if let Some(n) = named(e, "method.request.header.") {
            return Ok(RequestSource::Header(header_name(n, expression)?));
        }
        if let Some(n) = named(e, "method.request.multivalueheader.") {
            return Ok(RequestSource::MultiHeader(header_name(n, expression)?));
        }
        if let Some(n) = named(e, "stageVariables.") {
            return Ok(RequestSource::StageVariable(n.into()));
        }
        if let Some(n) = named(e, "context.") {
            return Ok(RequestSource::Context(n.into()));
        }
        Err(format!(
            "{expression:?}: not a request mapping expression ('static', method.request.path.X, \
             method.request.querystring.X, method.request.multivaluequerystring.X, method.request.header.X, \
             method.request.multivalueheader.X, method.request.body, method.request.body.JSONPATH, \
             stageVariables.X, context.X)"
        ))
    }
}

impl RequestTarget {
    pub fn parse(key: &str) -> Result<RequestTarget, String> {
        let k = key.trim();
        if let Some(n) = named(k, "integration.request.header.") {
            return Ok(RequestTarget::Header(header_name(n, key)?));
        }
        if let Some(n) = named(k, "integration.request.querystring.") {
            return Ok(RequestTarget::Query(n.into()));
        }
        if let Some(n) = named(k, "integration.request.path.") {
            return Ok(RequestTarget::Path(n.into()));
        }
        Err(format!(
            "{key:?}: not an integration request parameter (integration.request.header.X, \
             integration.request.querystring.X, integration.request.path.X)"
        ))
    }
}

/// A method request as the request mapping reads it.
pub struct MethodRequest<'a> {
    pub headers: &'a HeaderMap,
    pub raw_query: &'a str,
    pub path_params: &'a [(&'a str, &'a str)],
    pub stage_variables: &'a [(Box<str>, Box<str>)],
    /// The method request's body (as received).
    pub body: &'a [u8],
    /// `$context` (None when nothing needs it).
    pub context: Option<&'a Value>,
}

/// An integration's `requestParameters`, compiled.
#[derive(Debug, Default)]
pub struct RequestParameters {
    pairs: Vec<(RequestTarget, RequestSource)>,
}

/// The integration request's parameters: headers, query string and path, each (name, value) in
/// the order mapped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Mapped {
    pub headers: Vec<(HeaderName, String)>,
    pub query: Vec<(String, String)>,
    pub path: Vec<(String, String)>,
}

/// Headers the gateway sets itself: mapping one is a configuration error (AWS's 500).
const RESERVED_TARGETS: [&str; 4] = [
    "content-length",
    "transfer-encoding",
    "x-amzn-trace-id",
    "x-amzn-apigateway-api-id",
];

impl Mapped {
    /// A mapped header the gateway sets itself, if any.
    pub fn reserved_header(&self) -> Option<&HeaderName> {
        self.headers
            .iter()
            .map(|(name, _)| name)
            .find(|name| RESERVED_TARGETS.contains(&name.as_str()))
    }
}

impl RequestParameters {
    pub fn compile(pairs: &[(String, String)]) -> Result<RequestParameters, String> {
        let mut out = Vec::with_capacity(pairs.len());
        for (target, source) in pairs {
            out.push((RequestTarget::parse(target)?, RequestSource::parse(source)?));
        }
        Ok(RequestParameters { pairs: out })
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Whether a source reads `$context` (built only then).
    pub fn needs_context(&self) -> bool {
        self.pairs
            .iter()
            .any(|(_, s)| matches!(s, RequestSource::Context(_)))
    }

    /// Whether a source reads the request's body (a streamed body is then read first).
    pub fn needs_body(&self) -> bool {
        self.pairs
            .iter()
            .any(|(_, s)| matches!(s, RequestSource::Body | RequestSource::BodyPath(_)))
    }

    /// The mapped parameters of `request`; a source without a value maps nothing.
    pub fn apply(&self, request: &MethodRequest<'_>) -> Mapped {
        let mut out = Mapped::default();
        let mut body_json: Option<Option<Value>> = None;
        for (target, source) in &self.pairs {
            let values: Vec<String> = match source {
                RequestSource::Static(text) => vec![text.to_string()],
                RequestSource::Path(name) => request
                    .path_params
                    .iter()
                    .filter(|(k, _)| *k == &**name)
                    .map(|(_, v)| v.to_string())
                    .last()
                    .into_iter()
                    .collect(),
                RequestSource::Query(name) => parse_query(request.raw_query)
                    .into_iter()
                    .filter(|(k, _)| k == &**name)
                    .map(|(_, v)| v.into_owned())
                    .last()
                    .into_iter()
                    .collect(),
                RequestSource::MultiQuery(name) => parse_query(request.raw_query)
                    .into_iter()
                    .filter(|(k, _)| k == &**name)
                    .map(|(_, v)| v.into_owned())
                    .collect(),
                RequestSource::Header(name) => request
                    .headers
                    .get_all(name)
                    .iter()
                    .last()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .into_iter()
                    .collect(),
                RequestSource::MultiHeader(name) => request
                    .headers
                    .get_all(name)
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect(),
                RequestSource::Body => {
                    vec![String::from_utf8_lossy(request.body).into_owned()]
                }
                RequestSource::BodyPath(path) => {
                    let json =
                        body_json.get_or_insert_with(|| serde_json::from_slice(request.body).ok());
                    value_text(json.as_ref().and_then(|j| path.find(j)))
                        .into_iter()
                        .collect()
                }
                RequestSource::StageVariable(name) => request
                    .stage_variables
                    .iter()
                    .find(|(k, _)| **k == **name)
                    .map(|(_, v)| v.to_string())
                    .into_iter()
                    .collect(),
                RequestSource::Context(name) => request
                    .context
                    .and_then(|c| context_text(c, name))
                    .into_iter()
                    .collect(),
            };
            if values.is_empty() {
                continue;
            }
            match target {
                RequestTarget::Header(name) => {
                    out.headers.retain(|(n, _)| n != name);
                    out.headers
                        .extend(values.into_iter().map(|v| (name.clone(), v)));
                }
                RequestTarget::Query(name) => {
                    out.query.retain(|(n, _)| n != &**name);
                    out.query
                        .extend(values.into_iter().map(|v| (name.to_string(), v)));
                }
                RequestTarget::Path(name) => {
                    out.path.retain(|(n, _)| n != &**name);
                    // A path parameter has one value: a list's values joined as a header's are.
                    out.path.push((name.to_string(), values.join(",")));
                }
            }
        }
        out
    }
}

// ------------------------------------------------------------------------------------------------
// Templates

/// A mapping template: text without VTL is its own output; VTL the core's engine compiles is
/// rendered by it (`Compiled`, with its source for the Python side should a render defer); any
/// other is rendered by the Python side (compiled there once per deployment, by its source text).
#[derive(Debug, Clone)]
pub enum Template {
    Static(Arc<str>),
    Vtl(Arc<str>),
    Compiled(Arc<crate::templates::Program>, Arc<str>),
}

impl PartialEq for Template {
    fn eq(&self, other: &Template) -> bool {
        match (self, other) {
            (Template::Static(a), Template::Static(b)) => a == b,
            (Template::Vtl(a), Template::Vtl(b)) => a == b,
            (Template::Compiled(_, a), Template::Compiled(_, b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Template {}

impl Template {
    pub fn new(source: &str) -> Template {
        if source.contains('$') || source.contains('#') {
            match crate::templates::compile(source) {
                Ok(program) => Template::Compiled(Arc::new(program), source.into()),
                Err(_) => Template::Vtl(source.into()),
            }
        } else {
            Template::Static(source.into())
        }
    }
}

/// The media type of a Content-Type or Accept entry: before any `;`, trimmed, lower-case.
pub fn media_type(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Whether a request no template matches passes to the backend as it is ("Passthrough
/// behaviors"): always with `WHEN_NO_MATCH`, only when there are no templates at all with
/// `WHEN_NO_TEMPLATES`, never with `NEVER`.
pub fn passes_through(passthrough: PassthroughBehavior, has_templates: bool) -> bool {
    match passthrough {
        PassthroughBehavior::WhenNoMatch => true,
        PassthroughBehavior::WhenNoTemplates => !has_templates,
        PassthroughBehavior::Never => false,
    }
}

/// Templates by content type (lower-case media types), in the declared order.
#[derive(Debug, Default)]
pub struct Templates {
    entries: Vec<(Box<str>, HeaderValue, Template)>,
}

/// What the integration request does with a request's body.
#[derive(Debug, PartialEq, Eq)]
pub enum RequestBody<'t> {
    /// Transform it with this template (its content type).
    Transform(&'t str, &'t Template),
    PassThrough,
    /// `passthroughBehavior` refuses it: 415.
    Unsupported,
}

impl Templates {
    pub fn compile(pairs: &[(String, String)]) -> Result<Templates, String> {
        let mut entries = Vec::with_capacity(pairs.len());
        for (content_type, source) in pairs {
            let value = HeaderValue::from_str(content_type.trim())
                .map_err(|_| format!("{content_type:?} is not a content type"))?;
            entries.push((
                media_type(content_type).into(),
                value,
                Template::new(source),
            ));
        }
        Ok(Templates { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn find(&self, media: &str) -> Option<&(Box<str>, HeaderValue, Template)> {
        self.entries.iter().find(|(ct, _, _)| **ct == *media)
    }

    /// The request template for `content_type` (absent: `application/json`), or what
    /// `passthrough` makes of a request without one ("Passthrough behaviors").
    pub fn for_request(
        &self,
        content_type: Option<&str>,
        passthrough: PassthroughBehavior,
    ) -> RequestBody<'_> {
        let media = content_type.map(media_type).filter(|m| !m.is_empty());
        let media = media.as_deref().unwrap_or("application/json");
        if let Some((ct, _, template)) = self.find(media) {
            return RequestBody::Transform(ct, template);
        }
        if passes_through(passthrough, !self.entries.is_empty()) {
            RequestBody::PassThrough
        } else {
            RequestBody::Unsupported
        }
    }

    /// The response template for `accept`: its first media type's (absent, or `*/*`, which takes
    /// anything: `application/json`'s), else the first template (None: no templates, the body
    /// passes).
    pub fn for_response(&self, accept: Option<&str>) -> Option<(&HeaderValue, &Template)> {
        let first = accept.and_then(|a| a.split(',').next()).map(media_type);
        let wanted = first
            .as_deref()
            .filter(|m| !m.is_empty() && *m != "*/*")
            .unwrap_or("application/json");
        self.find(wanted)
            .or_else(|| self.entries.first())
            .map(|(_, value, template)| (value, template))
    }

    /// The VTL sources, for the Python side to compile ahead (those the core compiled too: a
    /// render of theirs may defer to it).
    pub fn sources(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().filter_map(|(_, _, t)| match t {
            Template::Vtl(s) | Template::Compiled(_, s) => Some(&**s),
            Template::Static(_) => None,
        })
    }
}

// ------------------------------------------------------------------------------------------------
// Integration responses

/// Where a method response header's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseSource {
    Header(HeaderName),
    MultiHeader(HeaderName),
    Body,
    BodyPath(JsonPath),
    StageVariable(Box<str>),
    Context(Box<str>),
    Static(HeaderValue),
}

impl ResponseSource {
    pub fn parse(expression: &str) -> Result<ResponseSource, String> {
        let e = expression.trim();
        if let Some(text) = static_value(e) {
            return HeaderValue::from_str(text)
                .map(ResponseSource::Static)
                .map_err(|_| format!("{expression:?}: not a valid header value"));
        }
        if e == "integration.response.body" {
            return Ok(ResponseSource::Body);
        }
        if let Some(path) = named(e, "integration.response.body.") {
            return Ok(ResponseSource::BodyPath(JsonPath::parse(path)?));
        }
        if let Some(n) = named(e, "integration.response.header.") {
            return Ok(ResponseSource::Header(header_name(n, expression)?));
        }
        if let Some(n) = named(e, "integration.response.multivalueheader.") {
            return Ok(ResponseSource::MultiHeader(header_name(n, expression)?));
        }
        if let Some(n) = named(e, "stageVariables.") {
            return Ok(ResponseSource::StageVariable(n.into()));
        }
        if let Some(n) = named(e, "context.") {
            return Ok(ResponseSource::Context(n.into()));
        }
        Err(format!(
            "{expression:?}: not a response mapping expression ('static', integration.response.header.X, \
             integration.response.multivalueheader.X, integration.response.body, \
             integration.response.body.JSONPATH, stageVariables.X, context.X)"
        ))
    }
}

/// The integration's answer as the response mapping reads it.
pub struct IntegrationAnswer<'a> {
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub stage_variables: &'a [(Box<str>, Box<str>)],
    pub context: Option<&'a Value>,
}

/// One integration response, compiled with its method response.
#[derive(Debug)]
pub struct ResponseMapping {
    pub status: http::StatusCode,
    /// Whether the method declares a response of this status (one that does not answers 500).
    pub declared: bool,
    /// `method.response.header.NAME` the method response declares, and their sources.
    pub headers: Vec<(HeaderName, ResponseSource)>,
    pub templates: Templates,
    pub content_handling: Option<ContentHandling>,
}

impl ResponseMapping {
    pub fn needs_context(&self) -> bool {
        self.headers
            .iter()
            .any(|(_, s)| matches!(s, ResponseSource::Context(_)))
    }

    /// The method response's mapped headers.
    pub fn headers_of(&self, answer: &IntegrationAnswer<'_>) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::with_capacity(self.headers.len());
        let mut body_json: Option<Option<Value>> = None;
        for (name, source) in &self.headers {
            let value = match source {
                ResponseSource::Static(v) => Some(v.clone()),
                ResponseSource::Header(h) => answer.headers.get_all(h).iter().last().cloned(),
                ResponseSource::MultiHeader(h) => {
                    let values: Vec<&[u8]> = answer
                        .headers
                        .get_all(h)
                        .iter()
                        .map(HeaderValue::as_bytes)
                        .collect();
                    (!values.is_empty())
                        .then(|| HeaderValue::from_bytes(&values.join(&b","[..])).ok())
                        .flatten()
                }
                ResponseSource::Body => text_header(&String::from_utf8_lossy(answer.body)),
                ResponseSource::BodyPath(path) => {
                    let json =
                        body_json.get_or_insert_with(|| serde_json::from_slice(answer.body).ok());
                    value_text(json.as_ref().and_then(|j| path.find(j)))
                        .and_then(|t| text_header(&t))
                }
                ResponseSource::StageVariable(n) => answer
                    .stage_variables
                    .iter()
                    .find(|(k, _)| **k == **n)
                    .and_then(|(_, v)| text_header(v)),
                ResponseSource::Context(n) => answer
                    .context
                    .and_then(|c| context_text(c, n))
                    .and_then(|t| text_header(&t)),
            };
            if let Some(value) = value {
                out.push((name.clone(), value));
            }
        }
        out
    }
}

/// A header value of text (None: text no header can carry, such as a line break).
pub fn text_header(text: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(text).ok()
}

/// An integration's responses, and which answers which.
#[derive(Debug, Default)]
pub struct Responses {
    pub list: Vec<ResponseMapping>,
    /// (pattern, index into `list`), in ascending status order.
    patterns: Vec<(Regex, usize)>,
    default: Option<usize>,
}

impl Responses {
    /// Compile `responses` against the method's `method_responses`. A `responseParameters` key
    /// the method response does not declare maps nothing (AWS returns only declared headers).
    pub fn compile(
        responses: &[IntegrationResponseSpec],
        method_responses: &[MethodResponseSpec],
    ) -> Result<Responses, String> {
        let mut order: Vec<&IntegrationResponseSpec> = responses.iter().collect();
        // A status is tried by its pattern in ascending order (AWS keys them by status code).
        order.sort_by_key(|r| r.status);
        let mut out = Responses::default();
        for spec in order {
            let at = format!("integration response {}", spec.status);
            let status = http::StatusCode::from_u16(spec.status)
                .ok()
                .filter(|s| (100..=599).contains(&s.as_u16()))
                .ok_or_else(|| format!("{at}: not an HTTP status"))?;
            let method = method_responses.iter().find(|m| m.status == spec.status);
            let mut headers = Vec::new();
            for (key, expression) in &spec.parameters {
                let name = named(key.trim(), "method.response.header.")
                    .ok_or_else(|| format!("{at}: {key:?} is not method.response.header.NAME"))?;
                let name = header_name(name, key)?;
                let source = ResponseSource::parse(expression).map_err(|e| format!("{at}: {e}"))?;
                let declared = method.is_some_and(|m| {
                    m.headers
                        .iter()
                        .any(|h| h.eq_ignore_ascii_case(name.as_str()))
                });
                if declared {
                    headers.push((name, source));
                }
            }
            let index = out.list.len();
            out.list.push(ResponseMapping {
                status,
                declared: method.is_some(),
                headers,
                templates: Templates::compile(&spec.templates).map_err(|e| format!("{at}: {e}"))?,
                content_handling: spec.content_handling,
            });
            match spec.selection_pattern.as_deref().filter(|p| !p.is_empty()) {
                None => {
                    if out.default.is_none() {
                        out.default = Some(index);
                    }
                }
                Some(pattern) => {
                    let regex = selection_regex(pattern)
                        .map_err(|e| format!("{at}: selectionPattern {e}"))?;
                    out.patterns.push((regex, index));
                }
            }
        }
        Ok(out)
    }

    /// The response selected for `value` (a status, or a Lambda `errorMessage`; None: a
    /// successful Lambda call, which takes the default); None when nothing answers it.
    pub fn select(&self, value: Option<&str>) -> Option<&ResponseMapping> {
        let by_pattern = value.and_then(|v| self.patterns.iter().find(|(re, _)| re.is_match(v)));
        by_pattern
            .map(|(_, i)| *i)
            .or(self.default)
            .map(|i| &self.list[i])
    }

    pub fn sources(&self) -> impl Iterator<Item = &str> {
        self.list.iter().flat_map(|r| r.templates.sources())
    }
}

// ------------------------------------------------------------------------------------------------
// MOCK's status

/// The integer `statusCode` of a MOCK request template's output: JSON, or the relaxed form AWS
/// also reads (unquoted or single-quoted names, `{statusCode: 200}`). None: there is none.
pub fn mock_status(output: &str) -> Option<u16> {
    if let Ok(value) = serde_json::from_str::<Value>(output) {
        return value
            .get("statusCode")?
            .as_u64()
            .and_then(|n| u16::try_from(n).ok());
    }
    relaxed_status(output)
}

fn relaxed_status(text: &str) -> Option<u16> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    let bytes = inner.as_bytes();
    let mut i = 0;
    let mut depth = 0i32;
    let mut start = 0;
    let mut members = Vec::new();
    // Split on top-level commas, skipping quoted text and nested values.
    while i < bytes.len() {
        match bytes[i] {
            q @ (b'"' | b'\'') => {
                i += 1;
                while i < bytes.len() && bytes[i] != q {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth -= 1,
            b',' if depth == 0 => {
                members.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    members.push(&inner[start.min(inner.len())..]);
    for member in members {
        let Some((key, value)) = member.split_once(':') else {
            continue;
        };
        let key = key.trim().trim_matches(|c| c == '"' || c == '\'');
        if key == "statusCode" {
            return value.trim().parse::<u16>().ok();
        }
    }
    None
}

// ------------------------------------------------------------------------------------------------
// Content handling

/// A payload, as text or as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub bytes: bytes::Bytes,
    /// Whether it is binary (no template applies: it passes as it is).
    pub binary: bool,
}

fn lenient_base64() -> base64::engine::GeneralPurpose {
    base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    )
}

pub fn decode_base64(text: &[u8]) -> Result<Vec<u8>, String> {
    let compact: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    lenient_base64()
        .decode(compact)
        .map_err(|e| format!("the payload is not base64 ({e}), which CONVERT_TO_BINARY needs"))
}

pub fn encode_base64(bytes: &[u8]) -> bytes::Bytes {
    base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .into()
}

/// The integration request's payload ("API request content type conversions"): the request
/// is binary when its Content-Type is one of `binaryMediaTypes`.
pub fn convert_request(
    body: bytes::Bytes,
    content_type: Option<&str>,
    binary_media_types: &[Box<str>],
    handling: Option<ContentHandling>,
) -> Result<Payload, String> {
    let binary = is_binary_media_type(content_type, binary_media_types);
    Ok(match (binary, handling) {
        (false, Some(ContentHandling::ConvertToBinary)) => Payload {
            bytes: decode_base64(&body)?.into(),
            binary: true,
        },
        (false, _) => Payload {
            bytes: body,
            binary: false,
        },
        (true, Some(ContentHandling::ConvertToText)) => Payload {
            bytes: encode_base64(&body),
            binary: false,
        },
        (true, _) => Payload {
            bytes: body,
            binary: true,
        },
    })
}

/// The method response's payload ("API response content type conversions"): the integration's
/// answer is binary when its Content-Type is one of `binaryMediaTypes`, the client takes binary
/// when the first media type of its `Accept` is.
pub fn convert_response(
    body: bytes::Bytes,
    content_type: Option<&str>,
    accept: Option<&str>,
    binary_media_types: &[Box<str>],
    handling: Option<ContentHandling>,
) -> Result<Payload, String> {
    let binary = is_binary_media_type(content_type, binary_media_types);
    let first_accept = accept.and_then(|a| a.split(',').next());
    let accept_binary =
        first_accept.is_some_and(|a| is_binary_media_type(Some(a), binary_media_types));
    let decode = |body: &[u8]| {
        decode_base64(body).map(|b| Payload {
            bytes: b.into(),
            binary: true,
        })
    };
    match (binary, handling) {
        (false, Some(ContentHandling::ConvertToBinary)) => decode(&body),
        (false, None) if accept_binary => decode(&body),
        (false, _) => Ok(Payload {
            bytes: body,
            binary: false,
        }),
        (true, Some(ContentHandling::ConvertToText)) => Ok(Payload {
            bytes: encode_base64(&body),
            binary: false,
        }),
        (true, None) if !accept_binary => Ok(Payload {
            bytes: encode_base64(&body),
            binary: false,
        }),
        (true, _) => Ok(Payload {
            bytes: body,
            binary: true,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, input: &str) -> bool {
        selection_regex(pattern).unwrap().is_match(input)
    }

    #[test]
    fn java_patterns_match_the_whole_input() {
        assert!(matches(r"2\d{2}", "200"));
        assert!(!matches(r"2\d{2}", "2000"));
        assert!(!matches(r"2\d{2}", "x200"));
        assert!(matches("4..", "404"));
        assert!(matches(
            ".*four hundred.*",
            "Error: Raising four hundred from within the Lambda function"
        ));
        assert!(matches(".+", "anything"));
        // `.` stops at line terminators, as Java's does; (?s) lets it cross them.
        assert!(!matches(".*", "line\nbreak"));
        assert!(!matches(".*", "carriage\rreturn"));
        assert!(matches("(?s).*", "line\nbreak"));
        assert!(matches(r"(?s)Bad.*", "Bad\nthing"));
        // Java's \d, \w, \s are ASCII.
        assert!(!matches(r"\d", "٣"));
        assert!(!matches(r"\w+", "héllo"));
        assert!(matches(r"[\w-]+", "a-b_c"));
        assert!(matches(r"\p{Upper}\p{Lower}+", "Hello"));
        assert!(matches(r"\QError (1)\E.*", "Error (1) here"));
        assert!(matches("(?i)not found", "NOT FOUND"));
        assert!(matches(r"5\d\d|4(0[0-3]|29)", "429"));
    }

    #[test]
    fn what_rust_cannot_do_is_refused() {
        for pattern in [
            r"(?=a)a", r"(?!b)a", r"(?<=a)b", r"(?<!a)b", r"(a)\1", r"a++", r"(?>a)", r"\G",
            r"(?d)a", r"\R",
        ] {
            assert!(selection_regex(pattern).is_err(), "{pattern}");
        }
        assert!(selection_regex("(unclosed").is_err());
    }

    fn responses(specs: &[(u16, Option<&str>)]) -> Responses {
        let list: Vec<IntegrationResponseSpec> = specs
            .iter()
            .map(|(s, p)| IntegrationResponseSpec {
                status: *s,
                selection_pattern: p.map(str::to_owned),
                parameters: vec![],
                templates: vec![],
                content_handling: None,
            })
            .collect();
        let methods: Vec<MethodResponseSpec> = specs
            .iter()
            .map(|(s, _)| MethodResponseSpec {
                status: *s,
                headers: vec![],
            })
            .collect();
        Responses::compile(&list, &methods).unwrap()
    }

    fn selected(r: &Responses, value: Option<&str>) -> Option<u16> {
        r.select(value).map(|m| m.status.as_u16())
    }

    #[test]
    fn selection_by_pattern_then_default() {
        let r = responses(&[(200, None), (400, Some(r"4\d{2}")), (500, Some(r"5\d{2}"))]);
        assert_eq!(selected(&r, Some("201")), Some(200));
        assert_eq!(selected(&r, Some("404")), Some(400));
        assert_eq!(selected(&r, Some("503")), Some(500));
        // A successful Lambda call takes the default whatever the patterns.
        assert_eq!(selected(&r, None), Some(200));
        // AWS's recorded tie: both match, the 405 response is chosen.
        let tie = responses(&[
            (502, Some(".+")),
            (200, None),
            (405, Some(".*four hundred.*")),
        ]);
        assert_eq!(
            selected(
                &tie,
                Some("Error: Raising four hundred from within the Lambda function")
            ),
            Some(405)
        );
        assert_eq!(selected(&tie, Some("Error: five hundred")), Some(502));
        // No match and no default: nothing answers (500).
        let none = responses(&[(400, Some(r"4\d{2}"))]);
        assert_eq!(selected(&none, Some("200")), None);
        assert_eq!(selected(&none, None), None);
        // An empty pattern is the default.
        assert_eq!(
            selected(&responses(&[(302, Some(""))]), Some("500")),
            Some(302)
        );
    }

    #[test]
    fn response_headers_map_only_what_the_method_declares() {
        let spec = IntegrationResponseSpec {
            status: 200,
            selection_pattern: None,
            parameters: vec![
                (
                    "method.response.header.X-Id".into(),
                    "integration.response.body.item.id".into(),
                ),
                (
                    "method.response.header.X-Tags".into(),
                    "integration.response.body.tags".into(),
                ),
                (
                    "method.response.header.X-Up".into(),
                    "integration.response.header.X-Upstream".into(),
                ),
                (
                    "method.response.header.X-All".into(),
                    "integration.response.multivalueheader.X-Multi".into(),
                ),
                ("method.response.header.X-Fixed".into(), "'fixed'".into()),
                (
                    "method.response.header.X-Stage".into(),
                    "stageVariables.realm".into(),
                ),
                (
                    "method.response.header.X-Req".into(),
                    "context.requestId".into(),
                ),
                (
                    "method.response.header.X-Missing".into(),
                    "integration.response.body.nope".into(),
                ),
                ("method.response.header.X-Undeclared".into(), "'no'".into()),
            ],
            templates: vec![],
            content_handling: None,
        };
        let method = MethodResponseSpec {
            status: 200,
            headers: [
                "X-Id",
                "x-tags",
                "X-Up",
                "X-All",
                "X-Fixed",
                "X-Stage",
                "X-Req",
                "X-Missing",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        };
        let r = Responses::compile(&[spec], &[method]).unwrap();
        let reserved = Mapped {
            headers: vec![(HeaderName::from_static("content-length"), "1".into())],
            ..Mapped::default()
        };
        assert_eq!(
            reserved.reserved_header().map(HeaderName::as_str),
            Some("content-length")
        );
        assert!(Mapped::default().reserved_header().is_none());
        let mut headers = HeaderMap::new();
        headers.insert("x-upstream", HeaderValue::from_static("up"));
        headers.append("x-multi", HeaderValue::from_static("a"));
        headers.append("x-multi", HeaderValue::from_static("b"));
        let context = serde_json::json!({"requestId": "r-1"});
        let variables = vec![("realm".into(), "blue".into())];
        let answer = IntegrationAnswer {
            headers: &headers,
            body: br#"{"item": {"id": 7}, "tags": ["a", "b"]}"#,
            stage_variables: &variables,
            context: Some(&context),
        };
        let got: Vec<(String, String)> = r.list[0]
            .headers_of(&answer)
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        let want: Vec<(String, String)> = [
            ("x-id", "7"),
            ("x-tags", r#"["a","b"]"#),
            ("x-up", "up"),
            ("x-all", "a,b"),
            ("x-fixed", "fixed"),
            ("x-stage", "blue"),
            ("x-req", "r-1"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn request_parameters_map_every_source() {
        let pairs: Vec<(String, String)> = [
            ("integration.request.path.id", "method.request.path.petId"),
            (
                "integration.request.querystring.q",
                "method.request.querystring.search",
            ),
            (
                "integration.request.querystring.all",
                "method.request.multivaluequerystring.tag",
            ),
            (
                "integration.request.header.X-Trace",
                "method.request.header.x-client",
            ),
            (
                "integration.request.header.X-Both",
                "method.request.multivalueheader.x-two",
            ),
            ("integration.request.header.X-Body", "method.request.body"),
            (
                "integration.request.header.X-Name",
                "method.request.body.pet.name",
            ),
            (
                "integration.request.querystring.first",
                "method.request.body.list[0]",
            ),
            ("integration.request.header.X-Stage", "stageVariables.realm"),
            (
                "integration.request.header.X-Source",
                "context.identity.sourceIp",
            ),
            ("integration.request.header.X-Static", "'static value'"),
            (
                "integration.request.header.X-Absent",
                "method.request.header.nope",
            ),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let p = RequestParameters::compile(&pairs).unwrap();
        assert!(p.needs_body() && p.needs_context());
        let mut headers = HeaderMap::new();
        headers.insert("x-client", HeaderValue::from_static("c-1"));
        headers.append("x-two", HeaderValue::from_static("1"));
        headers.append("x-two", HeaderValue::from_static("2"));
        let context = serde_json::json!({"identity": {"sourceIp": "127.0.0.1"}});
        let variables = vec![("realm".into(), "blue".into())];
        let body = br#"{"pet":{"name":"Rex"},"list":[1,2]}"#;
        let request = MethodRequest {
            headers: &headers,
            raw_query: "search=a%20b&tag=x&tag=y",
            path_params: &[("petId", "42")],
            stage_variables: &variables,
            body,
            context: Some(&context),
        };
        let m = p.apply(&request);
        assert_eq!(m.path, vec![("id".to_owned(), "42".to_owned())]);
        assert_eq!(
            m.query,
            vec![
                ("q".to_owned(), "a b".to_owned()),
                ("all".to_owned(), "x".to_owned()),
                ("all".to_owned(), "y".to_owned()),
                ("first".to_owned(), "1".to_owned())
            ]
        );
        let headers: Vec<(String, String)> = m
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        assert_eq!(
            headers,
            [
                ("x-trace", "c-1"),
                ("x-both", "1"),
                ("x-both", "2"),
                ("x-body", r#"{"pet":{"name":"Rex"},"list":[1,2]}"#),
                ("x-name", "Rex"),
                ("x-stage", "blue"),
                ("x-source", "127.0.0.1"),
                ("x-static", "static value"),
            ]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
        );
        for bad in [
            ("integration.request.body", "'x'"),
            ("integration.request.header.X", "method.request.nothing.x"),
            ("integration.request.header.X", "method.request.body.a[*]"),
        ] {
            assert!(
                RequestParameters::compile(&[(bad.0.into(), bad.1.into())]).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn request_templates_by_content_type_and_the_passthrough_matrix() {
        use PassthroughBehavior::*;
        let some = Templates::compile(&[("application/json".into(), "{}".into())]).unwrap();
        let none = Templates::default();
        let json = Some("application/json; charset=UTF-8");
        let xml = Some("application/xml");
        for behavior in [WhenNoMatch, WhenNoTemplates, Never] {
            assert!(matches!(
                some.for_request(json, behavior),
                RequestBody::Transform("application/json", _)
            ));
            // No Content-Type is application/json.
            assert!(matches!(
                some.for_request(None, behavior),
                RequestBody::Transform(..)
            ));
        }
        assert_eq!(some.for_request(xml, WhenNoMatch), RequestBody::PassThrough);
        assert_eq!(
            some.for_request(xml, WhenNoTemplates),
            RequestBody::Unsupported
        );
        assert_eq!(some.for_request(xml, Never), RequestBody::Unsupported);
        assert_eq!(none.for_request(xml, WhenNoMatch), RequestBody::PassThrough);
        assert_eq!(
            none.for_request(xml, WhenNoTemplates),
            RequestBody::PassThrough
        );
        assert_eq!(none.for_request(xml, Never), RequestBody::Unsupported);
    }

    #[test]
    fn response_templates_by_the_first_accepted_type() {
        let t = Templates::compile(&[
            ("text/html".into(), "<p>hi</p>".into()),
            (
                "application/json".into(),
                r#"{"a": $input.json('$')}"#.into(),
            ),
        ])
        .unwrap();
        let chosen = |accept| {
            t.for_response(accept)
                .map(|(ct, _)| ct.to_str().unwrap().to_owned())
        };
        assert_eq!(
            chosen(Some("text/html,application/json")).as_deref(),
            Some("text/html")
        );
        assert_eq!(chosen(None).as_deref(), Some("application/json"));
        assert_eq!(chosen(Some("*/*")).as_deref(), Some("application/json"));
        assert_eq!(
            chosen(Some("application/xml, text/html")).as_deref(),
            Some("text/html")
        );
        assert_eq!(
            chosen(Some("application/json;q=0.9")).as_deref(),
            Some("application/json")
        );
        assert!(matches!(
            t.for_response(None),
            Some((_, Template::Compiled(..)))
        ));
        let macro_template = Templates::compile(&[("a/b".into(), "#macro(m)x#end".into())]).unwrap();
        assert!(matches!(
            macro_template.for_response(None),
            Some((_, Template::Vtl(_)))
        ));
        assert!(matches!(
            t.for_response(Some("text/html")),
            Some((_, Template::Static(_)))
        ));
        assert!(Templates::default()
            .for_response(Some("text/html"))
            .is_none());
    }

    #[test]
    fn mock_status_from_json_and_from_the_relaxed_form() {
        assert_eq!(mock_status(r#"{"statusCode": 200}"#), Some(200));
        assert_eq!(mock_status("{statusCode: 404}"), Some(404));
        assert_eq!(
            mock_status("{ 'statusCode' : 201, message: 'a, b', nested: {x: 1} }"),
            Some(201)
        );
        assert_eq!(mock_status(r#"{"statusCode": "200"}"#), None);
        assert_eq!(mock_status(""), None);
        assert_eq!(mock_status("not json"), None);
        assert_eq!(mock_status(r#"{"other": 1}"#), None);
    }

    #[test]
    fn content_handling_follows_aws_tables() {
        use ContentHandling::*;
        let types: Vec<Box<str>> = vec!["image/*".into()];
        let b = |s: &'static [u8]| bytes::Bytes::from_static(s);
        // Request: text stays text unless CONVERT_TO_BINARY decodes it; binary becomes base64
        // only with CONVERT_TO_TEXT.
        let text = convert_request(b(b"aGk="), Some("text/plain"), &types, None).unwrap();
        assert_eq!((text.bytes.as_ref(), text.binary), (&b"aGk="[..], false));
        let decoded = convert_request(
            b(b"aGk="),
            Some("text/plain"),
            &types,
            Some(ConvertToBinary),
        )
        .unwrap();
        assert_eq!((decoded.bytes.as_ref(), decoded.binary), (&b"hi"[..], true));
        assert!(convert_request(b(b"not base64!"), None, &types, Some(ConvertToBinary)).is_err());
        let png = convert_request(b(b"\x89PNG"), Some("image/png"), &types, None).unwrap();
        assert_eq!((png.bytes.as_ref(), png.binary), (&b"\x89PNG"[..], true));
        let png = convert_request(
            b(b"\x89PNG"),
            Some("image/png"),
            &types,
            Some(ConvertToText),
        )
        .unwrap();
        assert_eq!((png.bytes.as_ref(), png.binary), (&b"iVBORw=="[..], false));
        // Response rows.
        let resp = |body: &'static [u8], ct, accept, h| {
            convert_response(b(body), ct, accept, &types, h).unwrap()
        };
        assert_eq!(
            resp(b"aGk=", Some("text/plain"), Some("text/plain"), None)
                .bytes
                .as_ref(),
            b"aGk="
        );
        assert_eq!(
            resp(
                b"aGk=",
                Some("text/plain"),
                Some("text/plain"),
                Some(ConvertToBinary)
            )
            .bytes
            .as_ref(),
            b"hi"
        );
        assert_eq!(
            resp(b"aGk=", Some("text/plain"), Some("image/png"), None)
                .bytes
                .as_ref(),
            b"hi"
        );
        assert_eq!(
            resp(
                b"aGk=",
                Some("text/plain"),
                Some("image/png"),
                Some(ConvertToText)
            )
            .bytes
            .as_ref(),
            b"aGk="
        );
        assert_eq!(
            resp(b"hi", Some("image/png"), Some("text/plain"), None)
                .bytes
                .as_ref(),
            b"aGk="
        );
        assert_eq!(
            resp(
                b"hi",
                Some("image/png"),
                Some("text/plain"),
                Some(ConvertToBinary)
            )
            .bytes
            .as_ref(),
            b"hi"
        );
        assert_eq!(
            resp(b"hi", Some("image/png"), Some("image/png"), None)
                .bytes
                .as_ref(),
            b"hi"
        );
        assert_eq!(
            resp(
                b"hi",
                Some("image/png"),
                Some("image/png"),
                Some(ConvertToText)
            )
            .bytes
            .as_ref(),
            b"aGk="
        );
        // Without binaryMediaTypes only CONVERT_TO_BINARY changes anything.
        let none: Vec<Box<str>> = vec![];
        assert_eq!(
            convert_response(b(b"aGk="), None, Some("image/png"), &none, None)
                .unwrap()
                .bytes
                .as_ref(),
            b"aGk="
        );
        assert_eq!(
            convert_response(b(b"aGk="), None, None, &none, Some(ConvertToBinary))
                .unwrap()
                .bytes
                .as_ref(),
            b"hi"
        );
    }

    #[test]
    fn json_paths_of_members_and_indexes() {
        let v = serde_json::json!({"a": {"b": [10, {"c d": "x"}]}});
        let find = |p: &str| value_text(JsonPath::parse(p).unwrap().find(&v));
        assert_eq!(find("a.b[0]").as_deref(), Some("10"));
        assert_eq!(find("$.a.b[1]['c d']").as_deref(), Some("x"));
        assert_eq!(find("a.b").as_deref(), Some(r#"[10,{"c d":"x"}]"#));
        assert_eq!(find("a.z"), None);
        assert_eq!(find("$").as_deref(), Some(r#"{"a":{"b":[10,{"c d":"x"}]}}"#));
        assert!(JsonPath::parse("a[*]").is_err());
        assert!(JsonPath::parse("a.*").is_err());
        assert!(JsonPath::parse("a..b").is_err());
        assert!(JsonPath::parse("a[").is_err());
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// Java's quoting of a literal (`Pattern.quote`): what a literal selectionPattern is.
        fn quoted(text: &str) -> String {
            format!("\\Q{text}\\E")
        }

        proptest! {
            #[test]
            fn any_pattern_is_translated_or_refused_and_any_value_selected(
                pattern in "[\\\\.()\\[\\]{}*+?|^$&:<=!>,a-eA-EdDwWsSpPQEkz0-9 -]{0,24}",
                value in ".{0,24}",
            ) {
                let specs = [IntegrationResponseSpec {
                    status: 400,
                    selection_pattern: Some(pattern),
                    parameters: vec![],
                    templates: vec![],
                    content_handling: None,
                }];
                let methods = [MethodResponseSpec { status: 400, headers: vec![] }];
                if let Ok(responses) = Responses::compile(&specs, &methods) {
                    let _ = responses.select(Some(&value));
                }
            }

            #[test]
            fn a_quoted_literal_matches_exactly_itself(literal in ".{0,16}", value in ".{0,16}") {
                prop_assume!(!literal.contains("\\E"));
                let regex = selection_regex(&quoted(&literal)).unwrap();
                prop_assert_eq!(regex.is_match(&value), value == literal);
                prop_assert!(regex.is_match(&literal));
            }

            #[test]
            fn any_mock_output_and_json_path_is_read_without_panicking(text in ".{0,64}", path in "[a-z.\\[\\]0-9'*$]{0,16}") {
                let _ = mock_status(&text);
                if let Ok(path) = JsonPath::parse(&path) {
                    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    let _ = value_text(path.find(&value));
                }
            }
        }
    }
}
