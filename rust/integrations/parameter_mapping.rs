//! HTTP APIs' parameter mapping ("Transform API requests and responses for HTTP APIs in API
//! Gateway" in the developer guide): an integration's `requestParameters` change the request
//! before it reaches the integration, its `responseParameters` (per status code) the answer before
//! it reaches the client. docs/pipeline.md, "Parameter mapping (HTTP APIs)".
//!
//! - Request keys: `append|overwrite|remove:header.NAME`, `append|overwrite|remove:querystring.NAME`,
//!   `overwrite:path`. Response keys (under a status code, 200-599): `append|overwrite|remove:header.NAME`,
//!   `overwrite:statuscode`. Reserved headers cannot be mapped.
//! - Values: AWS's selection expressions: `$request.header.NAME`, `$request.querystring.NAME`,
//!   `$request.body[.JSONPath]`, `$request.path`, `$request.path.NAME`, `$context.NAME`,
//!   `$stageVariables.NAME` (requests), `$response.header.NAME`, `$response.body[.JSONPath]`,
//!   `$context.NAME`, `$stageVariables.NAME` (responses), static text, and mixtures of them with
//!   `${...}` delimiting a variable (`\$` is a literal `$`).
//!
//! The one rule for what is valid: the admin API and the config file ask `problem` (through
//! `portico._core.http_mapping_problem`), the core compiles with the same parser. Stage variables
//! are filled in when a stage's routes are compiled; every other value is resolved once per request.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::Frame;

use crate::jsonpath::JsonPath;
use crate::pipeline::body::{prefixed, PipelineBody};

/// "When you specify a JSON path, API Gateway truncates the request body at 100 KB and then
/// applies the selection expression."
pub const BODY_SELECTION_LIMIT: usize = 100 * 1024;

/// Headers "reserved" by AWS: no mapping may name them ("Reserved headers").
const RESERVED: [&str; 18] = [
    "authorization",
    "connection",
    "content-encoding",
    "content-length",
    "content-location",
    "forwarded",
    "keep-alive",
    "origin",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "via",
];
const RESERVED_PREFIXES: [&str; 4] = ["access-control-", "apigw-", "x-amz-", "x-amzn-"];

/// Whether AWS reserves header `name` (any case).
pub fn is_reserved(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    RESERVED.contains(&lower.as_str()) || RESERVED_PREFIXES.iter().any(|p| lower.starts_with(p))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    // Applied in this order: removals, then overwrites, then appends.
    Remove,
    Overwrite,
    Append,
}

/// Which side a mapping is on: what its values may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Request,
    Response,
}

/// Where a value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    RequestHeader(HeaderName),
    RequestQuery(Box<str>),
    /// None: the whole body.
    RequestBody(Option<JsonPath>),
    RequestPath,
    RequestPathParam(Box<str>),
    ResponseHeader(HeaderName),
    ResponseBody(Option<JsonPath>),
    Context(Box<str>),
    /// Filled in per stage (`bind`).
    StageVariable(Box<str>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(Box<str>),
    Var(Source),
}

/// A compiled value expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr {
    parts: Vec<Part>,
}

/// How much of a body a mapping reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum BodyNeed {
    #[default]
    None,
    /// A JSONPath: the first `BODY_SELECTION_LIMIT` bytes.
    Prefix,
    /// `$request.body` / `$response.body`: all of it.
    Whole,
}

fn name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

/// AWS's detail for a value it refuses.
fn bad_value(value: &str) -> String {
    format!("Invalid mapping expression specified: {value}")
}

impl Expr {
    /// Parse a value of `side`'s mappings. The error is AWS's detail.
    pub fn parse(value: &str, side: Side) -> Result<Expr, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = value;
        while let Some(at) = rest.find(['$', '\\']) {
            text.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if rest.as_bytes()[at] == b'\\' {
                // `\$` is a literal dollar sign; any other backslash is text.
                if let Some(tail) = after.strip_prefix('$') {
                    text.push('$');
                    rest = tail;
                } else {
                    text.push('\\');
                    rest = after;
                }
                continue;
            }
            let (name, tail) = if let Some(braced) = after.strip_prefix('{') {
                let close = braced.find('}').ok_or_else(|| bad_value(value))?;
                (&braced[..close], &braced[close + 1..])
            } else {
                (&after[..bare_len(after)], &after[bare_len(after)..])
            };
            let source = source(name, side).ok_or_else(|| bad_value(value))?;
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text).into()));
            }
            parts.push(Part::Var(source));
            rest = tail;
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text.into()));
        }
        Ok(Expr { parts })
    }

    /// With each stage variable replaced by its value on a stage (an unset one is empty).
    pub fn bind(mut self, variables: &[(Box<str>, Box<str>)]) -> Expr {
        for part in &mut self.parts {
            if let Part::Var(Source::StageVariable(name)) = part {
                let value = variables
                    .iter()
                    .find(|(k, _)| **k == **name)
                    .map_or("", |(_, v)| &**v);
                *part = Part::Text(value.into());
            }
        }
        self
    }

    /// Static text (no variable), if it is.
    fn as_static(&self) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var(_) => return None,
            }
        }
        Some(out)
    }

    fn body_need(&self) -> BodyNeed {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Var(Source::RequestBody(None) | Source::ResponseBody(None)) => BodyNeed::Whole,
                Part::Var(Source::RequestBody(Some(_)) | Source::ResponseBody(Some(_))) => BodyNeed::Prefix,
                _ => BodyNeed::None,
            })
            .max()
            .unwrap_or_default()
    }

    /// The value for one request: None when every variable in it is absent and it has no text
    /// of its own (the mapping then does nothing); absent variables of a mixture are empty.
    fn resolve(&self, values: &Values<'_>, json: &mut LazyJson<'_>) -> Option<String> {
        let mut out = String::new();
        let mut found = false;
        for part in &self.parts {
            match part {
                Part::Text(t) => {
                    out.push_str(t);
                    found = true;
                }
                Part::Var(source) => found |= values.push(source, json, &mut out),
            }
        }
        found.then_some(out)
    }
}

/// The length of a bare variable's name: name characters, and brackets of a body's JSONPath.
fn bare_len(after: &str) -> usize {
    let bytes = after.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if name_byte(bytes[i]) {
            i += 1;
        } else if bytes[i] == b'[' {
            match after[i..].find(']') {
                Some(close) => i += close + 1,
                None => break,
            }
        } else {
            break;
        }
    }
    // A trailing dot ends a sentence, not a name.
    while i > 0 && bytes[i - 1] == b'.' {
        i -= 1;
    }
    i
}

fn header_name(name: &str) -> Option<HeaderName> {
    HeaderName::from_bytes(name.as_bytes()).ok()
}

fn plain_name(name: &str) -> Option<Box<str>> {
    (!name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.'))
    .then(|| name.into())
}

/// The source a variable name names on `side`, if it is one.
fn source(name: &str, side: Side) -> Option<Source> {
    if let Some(var) = name.strip_prefix("context.") {
        // "Only the special characters . and _ are supported."
        return plain_name(var).map(Source::Context);
    }
    if let Some(var) = name.strip_prefix("stageVariables.") {
        return (!var.is_empty() && var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
            .then(|| Source::StageVariable(var.into()));
    }
    let body = |rest: &str| -> Option<Option<JsonPath>> {
        if rest.is_empty() {
            return Some(None);
        }
        if !rest.starts_with(['.', '[']) {
            return None;
        }
        JsonPath::parse(rest).ok().map(Some)
    };
    match side {
        Side::Request => {
            let rest = name.strip_prefix("request.")?;
            if let Some(header) = rest.strip_prefix("header.") {
                return header_name(header).map(Source::RequestHeader);
            }
            if let Some(query) = rest.strip_prefix("querystring.") {
                return (!query.is_empty()).then(|| Source::RequestQuery(query.into()));
            }
            if rest == "path" {
                return Some(Source::RequestPath);
            }
            if let Some(param) = rest.strip_prefix("path.") {
                return (!param.is_empty()).then(|| Source::RequestPathParam(param.into()));
            }
            body(rest.strip_prefix("body")?).map(Source::RequestBody)
        }
        Side::Response => {
            let rest = name.strip_prefix("response.")?;
            if let Some(header) = rest.strip_prefix("header.") {
                return header_name(header).map(Source::ResponseHeader);
            }
            body(rest.strip_prefix("body")?).map(Source::ResponseBody)
        }
    }
}

/// A mapping's target.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Header(HeaderName),
    Query(Box<str>),
    Path,
    Status,
}

/// Parse a key of `side`'s mappings. The error is AWS's detail.
fn parse_key(key: &str, side: Side) -> Result<(Action, Target), String> {
    let bad = || match side {
        Side::Request => format!("Invalid Request Actioned Parameter destination specified: {key}"),
        Side::Response => format!("Invalid Response Actioned Parameter destination specified: {key}"),
    };
    let (action, target) = key.split_once(':').ok_or_else(bad)?;
    let action = match action {
        "append" => Action::Append,
        "overwrite" => Action::Overwrite,
        "remove" => Action::Remove,
        _ => return Err(bad()),
    };
    let target = if let Some(name) = target.strip_prefix("header.") {
        if is_reserved(name) {
            return Err(bad());
        }
        Target::Header(header_name(name).ok_or_else(bad)?)
    } else if let (Side::Request, Some(name)) = (side, target.strip_prefix("querystring.")) {
        if name.is_empty()
            || name
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(bad());
        }
        Target::Query(name.into())
    } else if side == Side::Request && target == "path" && action == Action::Overwrite {
        Target::Path
    } else if side == Side::Response && target == "statuscode" && action == Action::Overwrite {
        Target::Status
    } else {
        return Err(bad());
    };
    Ok((action, target))
}

/// A response-parameters key: a status code 200-599.
fn parse_status(key: &str) -> Result<u16, String> {
    key.parse::<u16>()
        .ok()
        .filter(|s| (200..=599).contains(s) && key.len() == 3)
        .ok_or_else(|| format!("Invalid status code specified: {key}. It must be between 200 and 599"))
}

/// Why one mapping cannot be configured (AWS's detail, which the admin API wraps in its
/// "Invalid mapping expression specified: Validation Result: ..." message), or None.
/// `status`: the response-parameters key, None for a request parameter.
pub fn problem(status: Option<&str>, key: &str, value: &str) -> Option<String> {
    let side = if status.is_some() {
        Side::Response
    } else {
        Side::Request
    };
    if let Some(status) = status {
        if let Err(e) = parse_status(status) {
            return Some(e);
        }
    }
    let (action, target) = match parse_key(key, side) {
        Ok(parsed) => parsed,
        Err(e) => return Some(e),
    };
    if action == Action::Remove {
        return None;
    }
    let expr = match Expr::parse(value, side) {
        Ok(expr) => expr,
        Err(e) => return Some(e),
    };
    if target == Target::Status {
        if let Some(text) = expr.as_static() {
            if status_of(&text).is_none() {
                return Some(bad_value(value));
            }
        }
    }
    None
}

fn status_of(text: &str) -> Option<StatusCode> {
    text.trim()
        .parse::<u16>()
        .ok()
        .filter(|s| (100..=599).contains(s))
        .and_then(|s| StatusCode::from_u16(s).ok())
}

// ---------------------------------------------------------------------------------------------
// Compiled mappings

/// An integration's mappings, compiled for one stage (an integration without any: both None).
#[derive(Debug, Clone, Default)]
pub struct Mapping {
    pub request: Option<RequestMapping>,
    pub response: Option<ResponseMapping>,
}

impl Mapping {
    pub fn compile(
        request: &[(String, String)],
        response: &[(String, Vec<(String, String)>)],
        variables: &[(Box<str>, Box<str>)],
    ) -> Result<Mapping, String> {
        Ok(Mapping {
            request: RequestMapping::compile(request, variables)?,
            response: ResponseMapping::compile(response, variables)?,
        })
    }
}

/// An integration's `requestParameters`, compiled for one stage.
#[derive(Debug, Clone, Default)]
pub struct RequestMapping {
    headers: Vec<(Action, HeaderName, Expr)>,
    query: Vec<(Action, Box<str>, Expr)>,
    path: Option<Expr>,
    body: BodyNeed,
}

/// The mappings of one status code of an integration's `responseParameters`.
#[derive(Debug, Clone, Default)]
struct StatusMapping {
    headers: Vec<(Action, HeaderName, Expr)>,
    status: Option<Expr>,
    body: BodyNeed,
}

/// An integration's `responseParameters`, compiled for one stage.
#[derive(Debug, Clone, Default)]
pub struct ResponseMapping {
    by_status: Vec<(u16, StatusMapping)>,
}

fn compiled_expr(value: &str, side: Side, variables: &[(Box<str>, Box<str>)]) -> Result<Expr, String> {
    Expr::parse(value, side).map(|e| e.bind(variables))
}

impl RequestMapping {
    /// None for an integration without request parameters.
    pub fn compile(
        parameters: &[(String, String)],
        variables: &[(Box<str>, Box<str>)],
    ) -> Result<Option<RequestMapping>, String> {
        if parameters.is_empty() {
            return Ok(None);
        }
        let mut out = RequestMapping::default();
        for (key, value) in parameters {
            let at = |e: String| format!("request_parameters[{key:?}]: {e}");
            let (action, target) = parse_key(key, Side::Request).map_err(at)?;
            let expr = if action == Action::Remove {
                Expr { parts: Vec::new() }
            } else {
                compiled_expr(value, Side::Request, variables).map_err(at)?
            };
            out.body = out.body.max(expr.body_need());
            match target {
                Target::Header(name) => out.headers.push((action, name, expr)),
                Target::Query(name) => out.query.push((action, name, expr)),
                Target::Path => out.path = Some(expr),
                Target::Status => unreachable!("a request key is never the status"),
            }
        }
        out.headers.sort_by_key(|(action, _, _)| *action);
        out.query.sort_by_key(|(action, _, _)| *action);
        Ok(Some(out))
    }

    /// How much of the request body the mapping reads.
    pub fn body_need(&self) -> BodyNeed {
        self.body
    }

    /// The mapping's values for one request.
    pub fn resolve(&self, values: &Values<'_>) -> ResolvedRequest {
        let mut json = LazyJson::new(values.body);
        ResolvedRequest {
            headers: self
                .headers
                .iter()
                .map(|(action, name, expr)| {
                    let value = match action {
                        Action::Remove => None,
                        _ => expr.resolve(values, &mut json).and_then(|v| header_value(&v)),
                    };
                    (*action, name.clone(), value)
                })
                .collect(),
            query: self
                .query
                .iter()
                .map(|(action, name, expr)| {
                    let value = match action {
                        Action::Remove => None,
                        _ => expr.resolve(values, &mut json),
                    };
                    (*action, name.clone(), value)
                })
                .collect(),
            path: self.path.as_ref().and_then(|e| e.resolve(values, &mut json)),
        }
    }
}

/// A header value from mapped text (bytes as given; control characters make it unusable).
fn header_value(text: &str) -> Option<HeaderValue> {
    HeaderValue::from_bytes(text.as_bytes()).ok()
}

/// What a request's mapping resolved to: applied to the headers, query and path the integration
/// receives.
#[derive(Debug, Clone, Default)]
pub struct ResolvedRequest {
    headers: Vec<(Action, HeaderName, Option<HeaderValue>)>,
    query: Vec<(Action, Box<str>, Option<String>)>,
    path: Option<String>,
}

impl ResolvedRequest {
    /// Apply the header mappings to `headers`.
    pub fn apply_headers(&self, headers: &mut HeaderMap) {
        apply_header_ops(self.headers.iter().map(|(a, n, v)| (*a, n, v.as_ref())), headers);
    }

    /// The query string after the mappings (raw, without '?').
    pub fn apply_query(&self, raw_query: &str) -> String {
        if self.query.is_empty() {
            return raw_query.to_owned();
        }
        let mut pairs: Vec<Cow<'_, str>> = raw_query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(Cow::Borrowed)
            .collect();
        let named = |piece: &str, name: &str| {
            crate::lambda::event::parse_query(piece)
                .first()
                .is_some_and(|(n, _)| n == name)
        };
        for (action, name, value) in &self.query {
            match (action, value) {
                (Action::Remove, _) => pairs.retain(|p| !named(p, name)),
                (Action::Overwrite, Some(value)) => {
                    pairs.retain(|p| !named(p, name));
                    pairs.push(Cow::Owned(query_pair(name, value)));
                }
                (Action::Append, Some(value)) => pairs.push(Cow::Owned(query_pair(name, value))),
                (_, None) => {}
            }
        }
        pairs.join("&")
    }

    /// The path the integration receives, when `overwrite:path` gave one: raw, starting with '/'.
    pub fn path(&self) -> Option<String> {
        let value = self.path.as_deref()?;
        let mut out = String::with_capacity(value.len() + 1);
        if !value.starts_with('/') {
            out.push('/');
        }
        encode_into(&mut out, value, |b| {
            b.is_ascii_graphic()
                && !matches!(
                    b,
                    b'?' | b'#' | b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
                )
        });
        Some(out)
    }

    pub fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.query.is_empty() && self.path.is_none()
    }
}

fn query_pair(name: &str, value: &str) -> String {
    let mut out = String::with_capacity(name.len() + value.len() + 1);
    let keep = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
    encode_into(&mut out, name, keep);
    out.push('=');
    encode_into(&mut out, value, keep);
    out
}

/// `text` percent-encoded into `out`, keeping the bytes `keep` accepts (and any `%XX` escape
/// already there, so that raw values pass unchanged).
fn encode_into(out: &mut String, text: &str, keep: impl Fn(u8) -> bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let escape = b == b'%'
            && bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
        if keep(b) && (b != b'%' || escape) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

/// Header operations in order: a removal drops every value, an overwrite replaces them with its
/// value, an append adds its value to those there, comma-joined ("API Gateway combines multiple
/// header values with commas"). An operation whose value is absent does nothing.
fn apply_header_ops<'h>(
    ops: impl Iterator<Item = (Action, &'h HeaderName, Option<&'h HeaderValue>)>,
    headers: &mut HeaderMap,
) {
    for (action, name, value) in ops {
        match (action, value) {
            (Action::Remove, _) => {
                headers.remove(name);
            }
            (Action::Overwrite, Some(value)) => {
                headers.insert(name.clone(), value.clone());
            }
            (Action::Append, Some(value)) => {
                let joined = joined(headers, name).map(|existing| {
                    let mut bytes = existing;
                    bytes.push(b',');
                    bytes.extend_from_slice(value.as_bytes());
                    bytes
                });
                match joined.and_then(|b| HeaderValue::from_bytes(&b).ok()) {
                    Some(v) => {
                        headers.insert(name.clone(), v);
                    }
                    None => {
                        headers.insert(name.clone(), value.clone());
                    }
                }
            }
            (_, None) => {}
        }
    }
}

/// Every value of `name`, comma-joined; None when there is none.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<Vec<u8>> {
    let mut values = headers.get_all(name).iter();
    let mut out = values.next()?.as_bytes().to_vec();
    for v in values {
        out.push(b',');
        out.extend_from_slice(v.as_bytes());
    }
    Some(out)
}

impl ResponseMapping {
    /// None for an integration without response parameters.
    pub fn compile(
        parameters: &[(String, Vec<(String, String)>)],
        variables: &[(Box<str>, Box<str>)],
    ) -> Result<Option<ResponseMapping>, String> {
        let mut by_status = Vec::new();
        for (status, mappings) in parameters {
            let code = parse_status(status).map_err(|e| format!("response_parameters[{status:?}]: {e}"))?;
            let mut out = StatusMapping::default();
            for (key, value) in mappings {
                let at = |e: String| format!("response_parameters[{status:?}][{key:?}]: {e}");
                let (action, target) = parse_key(key, Side::Response).map_err(at)?;
                let expr = if action == Action::Remove {
                    Expr { parts: Vec::new() }
                } else {
                    compiled_expr(value, Side::Response, variables).map_err(at)?
                };
                out.body = out.body.max(expr.body_need());
                match target {
                    Target::Header(name) => out.headers.push((action, name, expr)),
                    Target::Status => out.status = Some(expr),
                    Target::Query(_) | Target::Path => {
                        unreachable!("a response key is a header or the status")
                    }
                }
            }
            out.headers.sort_by_key(|(action, _, _)| *action);
            if !out.headers.is_empty() || out.status.is_some() {
                by_status.push((code, out));
            }
        }
        Ok((!by_status.is_empty()).then_some(ResponseMapping { by_status }))
    }

    /// How much of the body an answer of `status` must be read for.
    pub fn body_need(&self, status: StatusCode) -> BodyNeed {
        self.of(status).map_or(BodyNeed::None, |m| m.body)
    }

    fn of(&self, status: StatusCode) -> Option<&StatusMapping> {
        self.by_status
            .iter()
            .find(|(code, _)| *code == status.as_u16())
            .map(|(_, m)| m)
    }

    /// Apply the mappings of the answer's status to it: its headers, then its status. `values`
    /// carries the answer's headers and (as much as `body_need` asked for of) its body. Err:
    /// the status a mapping gave is not one.
    pub fn apply(
        &self,
        status: &mut StatusCode,
        headers: &mut HeaderMap,
        values: &Values<'_>,
    ) -> Result<(), String> {
        let Some(mapping) = self.of(*status) else {
            return Ok(());
        };
        let mut json = LazyJson::new(values.body);
        let resolved: Vec<(Action, &HeaderName, Option<HeaderValue>)> = mapping
            .headers
            .iter()
            .map(|(action, name, expr)| {
                let value = match action {
                    Action::Remove => None,
                    _ => expr.resolve(values, &mut json).and_then(|v| header_value(&v)),
                };
                (*action, name, value)
            })
            .collect();
        let new_status = match &mapping.status {
            Some(expr) => match expr.resolve(values, &mut json) {
                Some(text) => Some(status_of(&text).ok_or_else(|| {
                    format!("overwrite:statuscode mapped {text:?}, which is not a status code")
                })?),
                None => None,
            },
            None => None,
        };
        apply_header_ops(resolved.iter().map(|(a, n, v)| (*a, *n, v.as_ref())), headers);
        if let Some(s) = new_status {
            *status = s;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// What values are read from

/// What a request (or its answer) offers a mapping, borrowed from the pipeline.
pub struct Values<'a> {
    /// The client's request headers (a request mapping), or the integration's answer's (a
    /// response mapping).
    pub headers: &'a HeaderMap,
    pub raw_query: &'a str,
    /// The request path without the stage.
    pub path: &'a str,
    pub path_params: &'a [(&'a str, &'a str)],
    /// What was read of the body (see `BodyNeed`).
    pub body: &'a [u8],
    /// `$context.NAME` appended to the string; false when the request has no such value.
    pub context: &'a (dyn Fn(&str, &mut String) -> bool + Sync),
}

/// The body parsed as JSON on first use (a body cut at the selection limit does not parse, and
/// its JSONPaths select nothing).
struct LazyJson<'a> {
    body: &'a [u8],
    parsed: Option<Option<serde_json::Value>>,
}

impl<'a> LazyJson<'a> {
    fn new(body: &'a [u8]) -> Self {
        LazyJson { body, parsed: None }
    }

    fn get(&mut self) -> Option<&serde_json::Value> {
        let body = self.body;
        self.parsed
            .get_or_insert_with(|| serde_json::from_slice(&body[..body.len().min(BODY_SELECTION_LIMIT)]).ok())
            .as_ref()
    }
}

impl Values<'_> {
    /// Append `source`'s value; false when it is absent.
    fn push(&self, source: &Source, json: &mut LazyJson<'_>, out: &mut String) -> bool {
        match source {
            Source::RequestHeader(name) | Source::ResponseHeader(name) => match joined(self.headers, name) {
                Some(bytes) => {
                    out.push_str(&String::from_utf8_lossy(&bytes));
                    true
                }
                None => false,
            },
            Source::RequestQuery(name) => {
                let values: Vec<_> = crate::lambda::event::parse_query(self.raw_query)
                    .into_iter()
                    .filter(|(n, _)| n == &**name)
                    .map(|(_, v)| v)
                    .collect();
                if values.is_empty() {
                    return false;
                }
                out.push_str(&values.join(","));
                true
            }
            Source::RequestPath => {
                out.push_str(self.path);
                true
            }
            Source::RequestPathParam(name) => match self.path_params.iter().find(|(n, _)| *n == &**name) {
                Some((_, value)) => {
                    out.push_str(value);
                    true
                }
                None => false,
            },
            Source::RequestBody(None) | Source::ResponseBody(None) => {
                if self.body.is_empty() {
                    return false;
                }
                out.push_str(&String::from_utf8_lossy(self.body));
                true
            }
            Source::RequestBody(Some(path)) | Source::ResponseBody(Some(path)) => {
                match json.get().and_then(|doc| path.text(doc)) {
                    Some(text) => {
                        out.push_str(&text);
                        true
                    }
                    None => false,
                }
            }
            Source::Context(name) => {
                let start = out.len();
                if !(self.context)(name, out) {
                    out.truncate(start);
                    return false;
                }
                true
            }
            // Bound at compilation: a stage variable never reaches a request.
            Source::StageVariable(_) => false,
        }
    }
}

/// Read `body` until `limit` bytes (or its end): (what was read, the whole body again).
pub async fn read_prefix(
    body: PipelineBody,
    limit: usize,
) -> Result<(Bytes, PipelineBody), crate::pipeline::body::BoxError> {
    let mut body = body;
    let mut frames: Vec<Frame<Bytes>> = Vec::new();
    let mut read = bytes::BytesMut::new();
    while read.len() < limit {
        match body.frame().await {
            None => break,
            Some(Err(e)) => return Err(e),
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    read.extend_from_slice(data);
                }
                frames.push(frame);
            }
        }
    }
    Ok((read.freeze(), prefixed(frames, body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_context(_: &str, _: &mut String) -> bool {
        false
    }

    fn values<'a>(
        headers: &'a HeaderMap,
        query: &'a str,
        body: &'a [u8],
        params: &'a [(&'a str, &'a str)],
    ) -> Values<'a> {
        Values {
            headers,
            raw_query: query,
            path: "/pets/7",
            path_params: params,
            body,
            context: &no_context,
        }
    }

    fn request(parameters: &[(&str, &str)]) -> RequestMapping {
        let parameters: Vec<(String, String)> = parameters
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let vars: Vec<(Box<str>, Box<str>)> = vec![("env".into(), "prod".into())];
        RequestMapping::compile(&parameters, &vars).unwrap().unwrap()
    }

    #[test]
    fn keys_and_values_aws_refuses() {
        assert_eq!(problem(None, "append:header.x-a", "$request.header.b"), None);
        assert_eq!(problem(None, "overwrite:path", "/v2/${request.path.id}"), None);
        assert_eq!(problem(None, "remove:querystring.q", "''"), None);
        assert_eq!(
            problem(None, "append:querystring.q", "${request.body.items[0].id}-x"),
            None
        );
        assert_eq!(
            problem(None, "append:header.x-amzn-trace-id", "a").as_deref(),
            Some("Invalid Request Actioned Parameter destination specified: append:header.x-amzn-trace-id")
        );
        for key in [
            "append:header.Authorization",
            "overwrite:header.Access-Control-Allow-Origin",
            "append:header.apigw-x",
            "overwrite:header.Via",
        ] {
            assert!(problem(None, key, "a").is_some(), "{key}");
        }
        for key in [
            "append:path",
            "remove:path",
            "add:header.a",
            "append:body.a",
            "append:header.",
            "overwrite:statuscode",
        ] {
            assert!(problem(None, key, "a").is_some(), "{key}");
        }
        assert_eq!(
            problem(
                None,
                "append:header.a",
                "$context.authorizer.claims['custom:api_key']"
            )
            .as_deref(),
            Some("Invalid mapping expression specified: $context.authorizer.claims['custom:api_key']")
        );
        for value in [
            "$foo.bar",
            "$request.nothing",
            "$request.body..a",
            "${request.header.a",
            "$response.header.a",
        ] {
            assert!(problem(None, "append:header.a", value).is_some(), "{value}");
        }
        assert_eq!(problem(Some("404"), "overwrite:statuscode", "403"), None);
        assert_eq!(
            problem(
                Some("500"),
                "append:header.a",
                "$response.header.b $context.requestId"
            ),
            None
        );
        assert!(problem(Some("500"), "overwrite:statuscode", "forbidden").is_some());
        assert!(problem(Some("500"), "append:header.a", "$request.header.b").is_some());
        assert!(problem(Some("500"), "append:querystring.a", "x").is_some());
        assert!(problem(Some("199"), "append:header.a", "x").is_some());
        assert!(problem(Some("2xx"), "append:header.a", "x").is_some());
    }

    #[test]
    fn values_resolve_from_every_source() {
        let mut headers = HeaderMap::new();
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        let context =
            |name: &str, out: &mut String| (name == "requestId").then(|| out.push_str("rid")).is_some();
        let body = br#"{"user": {"name": "ann"}, "n": [1, 2]}"#;
        let params = [("id", "7")];
        let v = Values {
            context: &context,
            ..values(&headers, "q=x&q=y&s=%20z", body, &params)
        };
        let m = request(&[
            ("overwrite:header.h1", "$request.header.x-a"),
            (
                "overwrite:header.h2",
                "${request.querystring.q}|${request.querystring.s}",
            ),
            ("overwrite:header.h3", "$request.body.user.name"),
            ("overwrite:header.h4", "$request.path.id at $request.path"),
            (
                "overwrite:header.h5",
                "$context.requestId:$stageVariables.env:$stageVariables.none",
            ),
            ("overwrite:header.h6", "cost \\$5"),
            ("overwrite:header.h7", "$request.body.n"),
            ("overwrite:header.h8", "$request.header.missing"),
            ("overwrite:header.h9", "$context.missing"),
        ]);
        let mut out = HeaderMap::new();
        m.resolve(&v).apply_headers(&mut out);
        assert_eq!(out["h1"], "1,2");
        assert_eq!(out["h2"], "x,y| z");
        assert_eq!(out["h3"], "ann");
        assert_eq!(out["h4"], "7 at /pets/7");
        assert_eq!(out["h5"], "rid:prod:");
        assert_eq!(out["h6"], "cost $5");
        assert_eq!(out["h7"], "[1,2]");
        assert!(out.get("h8").is_none() && out.get("h9").is_none());
    }

    #[test]
    fn header_operations_apply_in_order() {
        let headers = HeaderMap::new();
        let v = values(&headers, "", b"", &[]);
        let m = request(&[
            ("append:header.x-list", "b"),
            ("remove:header.x-gone", "''"),
            ("overwrite:header.x-set", "new"),
            ("append:header.x-new", "n"),
        ]);
        let mut out = HeaderMap::new();
        out.append("x-list", HeaderValue::from_static("a"));
        out.append("x-gone", HeaderValue::from_static("1"));
        out.append("x-set", HeaderValue::from_static("old1"));
        out.append("x-set", HeaderValue::from_static("old2"));
        m.resolve(&v).apply_headers(&mut out);
        assert_eq!(out["x-list"], "a,b");
        assert!(out.get("x-gone").is_none());
        assert_eq!(out.get_all("x-set").iter().collect::<Vec<_>>(), ["new"]);
        assert_eq!(out["x-new"], "n");
    }

    #[test]
    fn query_and_path_operations() {
        let headers = HeaderMap::new();
        let params = [("id", "a b")];
        let v = values(&headers, "keep=1&drop=2&set=3&set=4", b"", &params);
        let m = request(&[
            ("remove:querystring.drop", ""),
            ("overwrite:querystring.set", "x y&z"),
            ("append:querystring.keep", "2"),
            ("append:querystring.new", "$request.querystring.missing"),
            ("overwrite:path", "items/${request.path.id}?"),
        ]);
        let resolved = m.resolve(&v);
        assert_eq!(
            resolved.apply_query("keep=1&drop=2&set=3&set=4"),
            "keep=1&set=x%20y%26z&keep=2"
        );
        assert_eq!(resolved.path().as_deref(), Some("/items/a%20b%3F"));
        let raw = request(&[("overwrite:path", "/a%2Fb/c")]).resolve(&v);
        assert_eq!(raw.path().as_deref(), Some("/a%2Fb/c"));
    }

    #[test]
    fn responses_map_per_status() {
        let parameters = vec![
            (
                "500".to_owned(),
                vec![
                    ("overwrite:statuscode".to_owned(), "403".to_owned()),
                    (
                        "append:header.x-err".to_owned(),
                        "$response.body.error".to_owned(),
                    ),
                    ("remove:header.server".to_owned(), "''".to_owned()),
                ],
            ),
            (
                "404".to_owned(),
                vec![(
                    "overwrite:header.x-env".to_owned(),
                    "$stageVariables.env".to_owned(),
                )],
            ),
        ];
        let vars: Vec<(Box<str>, Box<str>)> = vec![("env".into(), "prod".into())];
        let m = ResponseMapping::compile(&parameters, &vars).unwrap().unwrap();
        let mut upstream = HeaderMap::new();
        upstream.insert("server", HeaderValue::from_static("x"));
        let body = br#"{"error": "boom"}"#;
        let v = values(&upstream, "", body, &[]);
        assert_eq!(m.body_need(StatusCode::INTERNAL_SERVER_ERROR), BodyNeed::Prefix);
        assert_eq!(m.body_need(StatusCode::OK), BodyNeed::None);
        let (mut status, mut headers) = (StatusCode::INTERNAL_SERVER_ERROR, upstream.clone());
        m.apply(&mut status, &mut headers, &v).unwrap();
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(headers["x-err"], "boom");
        assert!(headers.get("server").is_none());
        let (mut status, mut headers) = (StatusCode::NOT_FOUND, HeaderMap::new());
        m.apply(&mut status, &mut headers, &v).unwrap();
        assert_eq!(
            (status, &headers["x-env"]),
            (StatusCode::NOT_FOUND, &HeaderValue::from_static("prod"))
        );
        let (mut status, mut headers) = (StatusCode::OK, HeaderMap::new());
        m.apply(&mut status, &mut headers, &v).unwrap();
        assert!(status == StatusCode::OK && headers.is_empty());
        let bad = vec![(
            "200".to_owned(),
            vec![("overwrite:statuscode".to_owned(), "$response.header.s".to_owned())],
        )];
        let m = ResponseMapping::compile(&bad, &[]).unwrap().unwrap();
        let mut h = HeaderMap::new();
        h.insert("s", HeaderValue::from_static("nope"));
        let v = values(&h, "", b"", &[]);
        assert!(m
            .apply(&mut StatusCode::OK.clone(), &mut HeaderMap::new(), &v)
            .is_err());
    }

    #[test]
    fn a_truncated_body_selects_nothing() {
        let headers = HeaderMap::new();
        let mut body = br#"{"a": ""#.to_vec();
        body.extend(std::iter::repeat(b'x').take(BODY_SELECTION_LIMIT));
        body.extend_from_slice(br#"", "b": 1}"#);
        let v = values(&headers, "", &body, &[]);
        let m = request(&[
            ("overwrite:header.b", "$request.body.b"),
            ("overwrite:header.w", "${request.body}"),
        ]);
        let mut out = HeaderMap::new();
        m.resolve(&v).apply_headers(&mut out);
        assert!(out.get("b").is_none());
        assert_eq!(out["w"].len(), body.len());
        assert_eq!(m.body_need(), BodyNeed::Whole);
    }
}
