//! The client's response made of what a Lambda proxy handler returned (the response formats of
//! "Set up Lambda proxy integrations in API Gateway" and "Create AWS Lambda proxy integrations for
//! HTTP APIs", payload 1.0 and 2.0, in the API Gateway developer guide).
//!
//! The handler's result arrives as the JSON its runtime wrote. It is read with the semantics of
//! the Python's `orjson.loads` (objects keep their key order, a repeated key keeps its first
//! place and its last value; integers beyond 64 bits become floats; nesting deeper than 1024 is
//! an error), and numbers turn into text as Python's `str()` does.

use bytes::Bytes;

use crate::json;

use super::{media_matches, media_type, py_strip, OrderedMap, PayloadFormat};

/// Lambda's limit for a synchronous invocation's response payload (6 MB). A larger payload is a
/// function error (not a malformed response): the caller checks it, see [`payload_too_large`].
pub const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

/// The response API Gateway sends the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaResponse {
    pub status: u16,
    /// Lower-case names, in order, repeats kept (Set-Cookie etc.).
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// Why a handler's result cannot become a response (API Gateway answers 500/502 "malformed").
/// The text is the Python GatewayError's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

/// The FUNCTION_ERROR message when a payload is over Lambda's 6 MB limit (checked by the caller
/// before `parse_response`, since it is not a malformed response).
pub fn payload_too_large(result: &[u8]) -> Option<String> {
    (result.len() > MAX_PAYLOAD_BYTES).then(|| format!("response payload of {} bytes exceeds 6 MB", result.len()))
}

/// `result` is the handler's return value serialized as JSON (as Lambda's runtime serializes it).
/// `accept` is the request's Accept header (REST binary handling).
pub fn parse_response(
    format: PayloadFormat,
    result: &[u8],
    accept: Option<&str>,
    binary_media_types: &[Box<str>],
) -> Result<LambdaResponse, Malformed> {
    let value = parse_json(result).ok_or_else(|| malformed("the function's output is not JSON"))?;
    match format {
        PayloadFormat::HttpV2 => parse_v2(value, result),
        PayloadFormat::RestV1 => parse_v1(value, accept, binary_media_types, false),
        PayloadFormat::HttpV1 => parse_v1(value, None, &[], true),
    }
}

fn malformed(reason: &str) -> Malformed {
    Malformed(format!("Malformed Lambda proxy response: {reason}"))
}

const JSON_CT: (&str, &str) = ("content-type", "application/json");
/// HTTP APIs answer a structured 2.0 response without a content-type with text/plain.
const TEXT_CT: (&str, &str) = ("content-type", "text/plain; charset=utf-8");

/// Response headers a REST API renames to `x-amzn-Remapped-<name>` for proxy integrations.
fn is_rest_remapped(name: &str) -> bool {
    matches!(name, "connection" | "content-length" | "date" | "server")
}

/// Headers the server owns (framing); dropped from HTTP API responses.
fn is_http_dropped(name: &str) -> bool {
    matches!(
        name,
        "connection" | "content-length" | "transfer-encoding" | "keep-alive"
    )
}

fn header(pair: (&str, &str)) -> (String, String) {
    (pair.0.to_owned(), pair.1.to_owned())
}

fn lower(name: &str) -> String {
    if name.is_ascii() {
        name.to_ascii_lowercase()
    } else {
        name.to_lowercase()
    }
}

/// Whether the first media type of Accept matches the API's binaryMediaTypes (REST rule, §2.4).
/// A missing Accept, and `Accept: */*`, match only a `*/*` entry.
pub fn accept_is_binary(accept: Option<&str>, binary_media_types: &[Box<str>]) -> bool {
    if binary_media_types.is_empty() {
        return false;
    }
    let media = match accept {
        Some(accept) if !accept.is_empty() => media_type(accept.split(',').next().unwrap_or("")),
        _ => String::new(),
    };
    binary_media_types.iter().any(|pattern| {
        let pattern = super::media_lower(py_strip(pattern));
        pattern == "*/*" || (!media.is_empty() && media_matches(&pattern, &media))
    })
}

// -------------------------------------------------------------------------------------------------
// Field readers (the Python `_status`, `_header_text`, `_body_text`, `_is_b64`, `_b64decode`)

fn status_of(value: Option<&J>) -> Result<u16, Malformed> {
    let status: Result<i128, String> = match value {
        None | Some(J::Null) => return Ok(200),
        Some(J::Bool(_)) => return Err(malformed("statusCode is not a number")),
        Some(J::Int(n)) => Ok(*n),
        Some(J::Str(s)) => {
            let text = py_strip(s);
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(malformed(&format!("statusCode {} is not a number", py_str_repr(s))));
            }
            let digits = text.trim_start_matches('0');
            match digits.parse::<i128>() {
                Ok(n) => Ok(n),
                Err(_) if digits.is_empty() => Ok(0),
                Err(_) => Err(digits.to_owned()),
            }
        }
        Some(J::Float(f)) if f.fract() == 0.0 => {
            if f.abs() < 1e30 {
                Ok(*f as i128)
            } else {
                Err(format!("{f:.0}"))
            }
        }
        Some(other) => return Err(malformed(&format!("statusCode {} is not an integer", py_repr(other)))),
    };
    match status {
        Ok(n) if (100..=599).contains(&n) => Ok(n as u16),
        Ok(n) => Err(malformed(&format!("statusCode {n} is not an HTTP status"))),
        Err(text) => Err(malformed(&format!("statusCode {text} is not an HTTP status"))),
    }
}

/// A header value as API Gateway's deserialiser reads it: scalars become text, structures fail.
fn header_text(name: &str, value: &J) -> Result<String, Malformed> {
    match value {
        J::Str(s) => Ok(s.clone()),
        J::Bool(b) => Ok(if *b { "true" } else { "false" }.to_owned()),
        J::Int(n) => Ok(n.to_string()),
        J::Float(f) => Ok(py_float_repr(*f)),
        _ => Err(malformed(&format!(
            "header {} has a non-scalar value",
            py_str_repr(name)
        ))),
    }
}

fn body_text(value: Option<&J>) -> Result<String, Malformed> {
    match value {
        None | Some(J::Null) => Ok(String::new()),
        Some(J::Str(s)) => Ok(s.clone()),
        Some(J::Bool(b)) => Ok(if *b { "true" } else { "false" }.to_owned()),
        Some(J::Int(n)) => Ok(n.to_string()),
        Some(J::Float(f)) => Ok(py_float_repr(*f)),
        Some(_) => Err(malformed("body is not a string")),
    }
}

fn is_b64(value: Option<&J>) -> Result<bool, Malformed> {
    match value {
        None | Some(J::Null) | Some(J::Bool(false)) => Ok(false),
        Some(J::Bool(true)) => Ok(true),
        Some(J::Str(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(J::Str(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(malformed("isBase64Encoded is not a boolean")),
    }
}

/// `base64.b64decode(body, validate=True)` after removing MIME-style line breaks, with CPython
/// 3.11's strict-mode rules: only alphabet characters, no leading `=`, decoding stops at the pad
/// that completes a quantum (anything after it is an error), an incomplete quantum is an error,
/// `=` where a quantum starts is skipped, leftover bits are ignored.
pub(super) fn b64decode(body: &str) -> Result<Vec<u8>, Malformed> {
    let bad = || malformed("body is not valid base64");
    let cleaned: Vec<u8> = body.bytes().filter(|&b| b != b'\r' && b != b'\n').collect();
    if cleaned.first() == Some(&b'=') {
        return Err(bad());
    }
    let mut out = Vec::with_capacity(cleaned.len() / 4 * 3 + 2);
    let mut quad_pos = 0u32;
    let mut left: u32 = 0;
    let mut pads = 0u32;
    let mut padding_started = false;
    for (i, &c) in cleaned.iter().enumerate() {
        if c == b'=' {
            padding_started = true;
            if quad_pos >= 2 {
                pads += 1;
                if quad_pos + pads >= 4 {
                    if i + 1 < cleaned.len() {
                        return Err(bad());
                    }
                    return Ok(out);
                }
            }
            continue;
        }
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(bad()),
        };
        if padding_started {
            return Err(bad());
        }
        pads = 0;
        left = (left << 6) | u32::from(v);
        quad_pos = (quad_pos + 1) % 4;
        match quad_pos {
            2 => out.push((left >> 4) as u8),
            3 => out.push((left >> 2) as u8),
            0 => out.push(left as u8),
            _ => {}
        }
        left &= match quad_pos {
            1 => 0x3f,
            2 => 0x0f,
            3 => 0x03,
            _ => 0,
        };
    }
    if quad_pos != 0 {
        return Err(bad());
    }
    Ok(out)
}

// -------------------------------------------------------------------------------------------------
// Format 1.0 (REST APIs and HTTP APIs with payloadFormatVersion 1.0)

const V1_KEYS: [&str; 5] = ["statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"];

fn parse_v1(
    result: J,
    accept: Option<&str>,
    binary_media_types: &[Box<str>],
    http_api: bool,
) -> Result<LambdaResponse, Malformed> {
    let J::Obj(result) = result else {
        return Err(malformed("the function's output is not a JSON object"));
    };
    for (key, _) in &result.entries {
        if !V1_KEYS.contains(&key.as_str()) {
            return Err(malformed(&format!("unexpected key {}", py_str_repr(key))));
        }
    }
    let status = status_of(result.get("statusCode"))?;
    let (merged, suppress_ct) = merge_v1_headers(&result)?;

    let text = body_text(result.get("body"))?;
    let body = if is_b64(result.get("isBase64Encoded"))? && (http_api || accept_is_binary(accept, binary_media_types)) {
        Bytes::from(b64decode(&text)?)
    } else {
        Bytes::from(text.into_bytes())
    };
    let headers = v1_headers(merged, suppress_ct, http_api);
    Ok(LambdaResponse { status, headers, body })
}

/// The headers of a 1.0 response (or a streamed response's metadata): name (lower-case) ->
/// values, in first-seen order; multiValueHeaders first, then headers (one header with both
/// values; an identical name + value pair appears once). And whether `"Content-Type": null`
/// switched the default content type off.
fn merge_v1_headers(result: &OrderedMap<String, J>) -> Result<(OrderedMap<String, Vec<String>>, bool), Malformed> {
    let mut merged: OrderedMap<String, Vec<String>> = OrderedMap::new();
    let mut suppress_ct = false;
    match result.get("multiValueHeaders") {
        None | Some(J::Null) => {}
        Some(J::Obj(multi)) => {
            for (name, values) in &multi.entries {
                let values = match values {
                    J::Null => continue,
                    J::Arr(values) => values,
                    _ => {
                        return Err(malformed(&format!(
                            "multiValueHeaders {} is not a list",
                            py_str_repr(name)
                        )))
                    }
                };
                let lname = lower(name);
                if merged.get(&lname).is_none() {
                    merged.push_new(lname.clone(), Vec::new());
                }
                let bucket = merged.get_mut(&lname).expect("just added");
                for value in values {
                    if !matches!(value, J::Null) {
                        bucket.push(header_text(name, value)?);
                    }
                }
            }
        }
        Some(_) => return Err(malformed("multiValueHeaders is not an object")),
    }
    match result.get("headers") {
        None | Some(J::Null) => {}
        Some(J::Obj(single)) => {
            for (name, value) in &single.entries {
                let lname = lower(name);
                if matches!(value, J::Null) {
                    // `"Content-Type": null` switches the default content type off.
                    if lname == "content-type" {
                        suppress_ct = true;
                    }
                    continue;
                }
                let text = header_text(name, value)?;
                match merged.get_mut(&lname) {
                    None => merged.push_new(lname, vec![text]),
                    Some(bucket) => {
                        if !bucket.contains(&text) {
                            bucket.push(text);
                        }
                    }
                }
            }
        }
        Some(_) => return Err(malformed("headers is not an object")),
    }
    Ok((merged, suppress_ct))
}

/// Merged 1.0 headers as sent: HTTP APIs drop the framing headers; REST APIs rename theirs to
/// `x-amzn-Remapped-*`; `application/json` when no content type was given.
fn v1_headers(merged: OrderedMap<String, Vec<String>>, suppress_ct: bool, http_api: bool) -> Vec<(String, String)> {
    let has_ct = merged.get("content-type").is_some_and(|values| !values.is_empty());
    let mut headers = Vec::new();
    for (lname, values) in merged.entries {
        if http_api {
            if is_http_dropped(&lname) {
                continue;
            }
            for value in values {
                headers.push((lname.clone(), value));
            }
        } else {
            if lname == "transfer-encoding" {
                continue;
            }
            let out_name = if is_rest_remapped(&lname) {
                format!("x-amzn-remapped-{lname}")
            } else {
                lname
            };
            for value in values {
                headers.push((out_name.clone(), value));
            }
        }
    }
    if !suppress_ct && !has_ct {
        headers.push(header(JSON_CT));
    }
    headers
}

// -------------------------------------------------------------------------------------------------
// Streamed responses (REST APIs, `responseTransferMode: STREAM`)

const PRELUDE_KEYS: [&str; 4] = ["statusCode", "headers", "multiValueHeaders", "cookies"];

/// The head of a streamed response: the metadata a streaming handler sends before its body
/// ("Set up a Lambda proxy integration with payload response streaming in API Gateway": `headers`,
/// `multiValueHeaders`, `cookies`, `statusCode`), read with the 1.0 response's rules (REST APIs);
/// each of `cookies` becomes a `set-cookie` header. Its body is the chunks that follow, as they
/// are, without base64 (a streamed response needs no binary media types).
pub fn parse_stream_prelude(metadata: &[u8]) -> Result<(u16, Vec<(String, String)>), Malformed> {
    let value = parse_json(metadata).ok_or_else(|| malformed("the stream's metadata is not JSON"))?;
    let J::Obj(result) = value else {
        return Err(malformed("the stream's metadata is not a JSON object"));
    };
    for (key, _) in &result.entries {
        if !PRELUDE_KEYS.contains(&key.as_str()) {
            return Err(malformed(&format!("unexpected key {} in the stream's metadata", py_str_repr(key))));
        }
    }
    let status = status_of(result.get("statusCode"))?;
    let (mut merged, suppress_ct) = merge_v1_headers(&result)?;
    match result.get("cookies") {
        None | Some(J::Null) => {}
        Some(J::Arr(cookies)) => {
            for cookie in cookies {
                let J::Str(cookie) = cookie else {
                    return Err(malformed("cookies is not a list of strings"));
                };
                match merged.get_mut("set-cookie") {
                    Some(bucket) => bucket.push(cookie.clone()),
                    None => merged.push_new("set-cookie".to_owned(), vec![cookie.clone()]),
                }
            }
        }
        Some(_) => return Err(malformed("cookies is not a list")),
    }
    Ok((status, v1_headers(merged, suppress_ct, false)))
}

// -------------------------------------------------------------------------------------------------
// Format 2.0 (HTTP APIs)

/// A JSON object with `statusCode` is the structured form; any other valid JSON is a 200
/// `application/json` response whose body is the JSON text (a string: the string itself).
fn parse_v2(result: J, raw: &[u8]) -> Result<LambdaResponse, Malformed> {
    let result = match result {
        J::Obj(obj) if obj.get("statusCode").is_some() => obj,
        J::Str(s) => return Ok(inferred(Bytes::from(s.into_bytes()))),
        _ => return Ok(inferred(Bytes::copy_from_slice(raw.trim_ascii()))),
    };
    // Structured form. Unknown keys (multiValueHeaders included) are ignored by HTTP APIs.
    let status = status_of(result.get("statusCode"))?;
    let mut headers = Vec::new();
    let mut has_ct = false;
    match result.get("headers") {
        None | Some(J::Null) => {}
        Some(J::Obj(single)) => {
            for (name, value) in &single.entries {
                let lname = lower(name);
                if lname == "content-type" {
                    has_ct = true;
                }
                if matches!(value, J::Null) || is_http_dropped(&lname) {
                    continue;
                }
                let text = header_text(name, value)?;
                headers.push((lname, text));
            }
        }
        Some(_) => return Err(malformed("headers is not an object")),
    }
    match result.get("cookies") {
        None | Some(J::Null) => {}
        Some(J::Arr(cookies)) => {
            for cookie in cookies {
                if !matches!(cookie, J::Null) {
                    headers.push(("set-cookie".to_owned(), header_text("set-cookie", cookie)?));
                }
            }
        }
        Some(_) => return Err(malformed("cookies is not a list")),
    }
    if !has_ct {
        headers.push(header(TEXT_CT));
    }
    let text = body_text(result.get("body"))?;
    let body = if is_b64(result.get("isBase64Encoded"))? {
        Bytes::from(b64decode(&text)?)
    } else {
        Bytes::from(text.into_bytes())
    };
    Ok(LambdaResponse { status, headers, body })
}

fn inferred(body: Bytes) -> LambdaResponse {
    LambdaResponse {
        status: 200,
        headers: vec![header(JSON_CT)],
        body,
    }
}

// -------------------------------------------------------------------------------------------------
// JSON, read as orjson reads it into Python objects

/// A JSON value as the Python object orjson makes of it.
pub(super) enum J {
    Null,
    Bool(bool),
    /// An integer literal within orjson's 64-bit range (i64::MIN..=u64::MAX).
    Int(i128),
    /// A literal with a fraction or exponent, or an integer beyond 64 bits.
    Float(f64),
    Str(String),
    Arr(Vec<J>),
    /// Python dict semantics: a repeated key keeps its first place and takes the last value.
    Obj(OrderedMap<String, J>),
}

/// orjson's reading: integers within its 64-bit range (`i64::MIN..=u64::MAX`) exact, other numbers
/// (and integers past that range) as finite doubles, and at most 1,024 levels of nesting.
struct Orjson;

impl json::Build for Orjson {
    type Value = J;
    type Object = OrderedMap<String, J>;
    const MAX_DEPTH: usize = 1024;

    fn null() -> J {
        J::Null
    }
    fn boolean(value: bool) -> J {
        J::Bool(value)
    }
    fn number(literal: &str, integral: bool) -> Option<J> {
        if integral {
            if let Ok(n) = literal.parse::<i128>() {
                if (i128::from(i64::MIN)..=i128::from(u64::MAX)).contains(&n) {
                    return Some(J::Int(n));
                }
            }
        }
        let f: f64 = literal.parse().ok()?;
        f.is_finite().then_some(J::Float(f))
    }
    fn string(value: String) -> J {
        J::Str(value)
    }
    fn array(items: Vec<J>) -> J {
        J::Arr(items)
    }
    fn insert(object: &mut OrderedMap<String, J>, key: String, value: J) {
        object.insert(key, value);
    }
    fn object(object: OrderedMap<String, J>) -> J {
        J::Obj(object)
    }
}

pub(super) fn parse_json(input: &[u8]) -> Option<J> {
    json::parse::<Orjson>(std::str::from_utf8(input).ok()?)
}

// -------------------------------------------------------------------------------------------------
// Python text of values (str() of numbers, repr() in messages)

/// Python's `repr(float)` (= `str(float)`): shortest round-trip digits, exponent form when the
/// decimal exponent is below -4 or at least 16.
fn py_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.to_owned();
    }
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').expect("LowerExp has an exponent");
    let exp: i32 = exp.parse().expect("LowerExp exponent");
    let digits: String = mantissa.chars().filter(|&c| c != '.').collect();
    let mut out = String::with_capacity(digits.len() + 8);
    if x < 0.0 {
        out.push('-');
    }
    let decpt = exp + 1;
    if !(-3..=16).contains(&decpt) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push_str(&format!("e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs()));
    } else if decpt <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat('0').take((-decpt) as usize));
        out.push_str(&digits);
    } else if decpt as usize >= digits.len() {
        out.push_str(&digits);
        out.extend(std::iter::repeat('0').take(decpt as usize - digits.len()));
        out.push_str(".0");
    } else {
        out.push_str(&digits[..decpt as usize]);
        out.push('.');
        out.push_str(&digits[decpt as usize..]);
    }
    out
}

/// Python's `repr(str)` (for messages; non-ASCII characters are taken as printable).
fn py_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || ('\x7f'..='\u{a0}').contains(&c) => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `repr()` of the object orjson makes of a JSON value (for messages).
fn py_repr(value: &J) -> String {
    match value {
        J::Null => "None".to_owned(),
        J::Bool(true) => "True".to_owned(),
        J::Bool(false) => "False".to_owned(),
        J::Int(n) => n.to_string(),
        J::Float(f) => py_float_repr(*f),
        J::Str(s) => py_str_repr(s),
        J::Arr(items) => format!("[{}]", items.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        J::Obj(obj) => format!(
            "{{{}}}",
            obj.entries
                .iter()
                .map(|(k, v)| format!("{}: {}", py_str_repr(k), py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    //! Port of tests/test_lambda_responses.py. The Python hands the parser Python objects; here
    //! they arrive as the JSON a runtime writes for them (`json.dumps`: `{"a": 1}`).

    use super::*;

    fn types(t: &[&str]) -> Vec<Box<str>> {
        t.iter().map(|s| Box::from(*s)).collect()
    }

    fn v1_with(result: &str, accept: Option<&str>, binary: &[&str]) -> Result<LambdaResponse, Malformed> {
        parse_response(PayloadFormat::RestV1, result.as_bytes(), accept, &types(binary))
    }

    fn v1(result: &str) -> LambdaResponse {
        v1_with(result, None, &[]).expect("well-formed")
    }

    fn http_v1(result: &str) -> LambdaResponse {
        parse_response(PayloadFormat::HttpV1, result.as_bytes(), None, &[]).expect("well-formed")
    }

    fn v2(result: &str) -> Result<LambdaResponse, Malformed> {
        parse_response(PayloadFormat::HttpV2, result.as_bytes(), None, &[])
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn named<'r>(response: &'r LambdaResponse, name: &str) -> Vec<(&'r str, &'r str)> {
        response
            .headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    fn has(response: &LambdaResponse, name: &str, value: &str) -> bool {
        response.headers.iter().any(|(k, v)| k == name && v == value)
    }

    const JSON: (&str, &str) = ("content-type", "application/json");

    fn b64(data: &[u8]) -> String {
        let mut out = String::new();
        crate::lambda::event::base64_encode(data, &mut out);
        out
    }

    // ---------------------------------------------------------------------------------------------
    // 1.0

    #[test]
    fn v1_status_only_defaults_to_json_content_type() {
        let response = v1(r#"{"statusCode": 200}"#);
        assert_eq!(response.status, 200);
        assert_eq!(response.body, Bytes::new());
        assert_eq!(response.headers, h(&[JSON]));
    }

    #[test]
    fn v1_numeric_string_status() {
        assert_eq!(v1(r#"{"statusCode": "201"}"#).status, 201);
    }

    #[test]
    fn v1_headers_without_status_is_200() {
        let response = v1(r#"{"headers": {"X-Test": "y"}}"#);
        assert_eq!(response.status, 200);
        assert_eq!(response.headers, h(&[("x-test", "y"), JSON]));
    }

    #[test]
    fn v1_empty_object_is_200_empty() {
        let response = v1("{}");
        assert_eq!(response.status, 200);
        assert_eq!(response.body, Bytes::new());
    }

    #[test]
    fn v1_malformed() {
        for result in [
            r#"{"statusCode": "test"}"#,
            r#"{"statusCode": 200, "wrongValue": 1}"#,
            r#""plain string""#,
            r#"["a", "list"]"#,
            "42",
            "null",
            r#"{"statusCode": true}"#,
            r#"{"statusCode": 99}"#,
            r#"{"statusCode": 200, "multiValueHeaders": {"test-multi": "notalist"}}"#,
            r#"{"statusCode": 200, "multiValueHeaders": ["x"]}"#,
            r#"{"statusCode": 200, "headers": ["x"]}"#,
            r#"{"statusCode": 200, "headers": {"x": {"nested": 1}}}"#,
            r#"{"statusCode": 200, "headers": {"x": ["list"]}}"#,
            r#"{"statusCode": 200, "body": {"an": "object"}}"#,
            r#"{"statusCode": 200, "body": ["list"]}"#,
            r#"{"statusCode": 200, "isBase64Encoded": "maybe"}"#,
        ] {
            let err = v1_with(result, None, &[]).expect_err(result);
            assert!(
                err.0.starts_with("Malformed Lambda proxy response: "),
                "{result}: {}",
                err.0
            );
        }
    }

    #[test]
    fn v1_malformed_messages_match_python() {
        let msg = |result: &str| {
            v1_with(result, None, &[])
                .unwrap_err()
                .0
                .trim_start_matches("Malformed Lambda proxy response: ")
                .to_owned()
        };
        assert_eq!(msg(r#"{"statusCode": "test"}"#), "statusCode 'test' is not a number");
        assert_eq!(
            msg(r#"{"statusCode": 200, "wrongValue": 1}"#),
            "unexpected key 'wrongValue'"
        );
        assert_eq!(msg(r#""plain string""#), "the function's output is not a JSON object");
        assert_eq!(msg(r#"{"statusCode": true}"#), "statusCode is not a number");
        assert_eq!(msg(r#"{"statusCode": 99}"#), "statusCode 99 is not an HTTP status");
        assert_eq!(msg(r#"{"statusCode": 200.5}"#), "statusCode 200.5 is not an integer");
        assert_eq!(
            msg(r#"{"statusCode": [1, {"a": null}]}"#),
            "statusCode [1, {'a': None}] is not an integer"
        );
        assert_eq!(
            msg(r#"{"statusCode": 1e300}"#),
            format!("statusCode {:.0} is not an HTTP status", 1e300)
        );
        assert_eq!(
            msg(r#"{"multiValueHeaders": {"test-multi": "x"}}"#),
            "multiValueHeaders 'test-multi' is not a list"
        );
        assert_eq!(
            msg(r#"{"headers": {"x": ["list"]}}"#),
            "header 'x' has a non-scalar value"
        );
        assert_eq!(msg(r#"{"body": {"an": "object"}}"#), "body is not a string");
        assert_eq!(msg(r#"{"isBase64Encoded": 1}"#), "isBase64Encoded is not a boolean");
        assert_eq!(msg("not json"), "the function's output is not JSON");
    }

    #[test]
    fn v1_header_values_are_stringified() {
        let response = v1(r#"{"statusCode": 200, "headers": {"test": true, "off": false, "n": 5, "f": 1.5}}"#);
        assert!(has(&response, "test", "true"));
        assert!(has(&response, "off", "false"));
        assert!(has(&response, "n", "5"));
        assert!(has(&response, "f", "1.5"));
    }

    #[test]
    fn v1_null_headers_ok() {
        let response = v1(r#"{"statusCode": 204, "headers": null, "multiValueHeaders": null, "body": null}"#);
        assert_eq!(response.status, 204);
        assert_eq!(response.headers, h(&[JSON]));
        assert_eq!(response.body, Bytes::new());
    }

    #[test]
    fn v1_multi_value_headers_repeat() {
        let response = v1(r#"{"statusCode": 200, "multiValueHeaders": {"test-multi": ["v1", "v2"]}}"#);
        assert_eq!(
            named(&response, "test-multi"),
            [("test-multi", "v1"), ("test-multi", "v2")]
        );
    }

    #[test]
    fn v1_headers_and_multi_value_headers_merge() {
        let response = v1(r#"{"multiValueHeaders": {"tesT-Multi": ["a"]}, "headers": {"test-multi": "b"}}"#);
        assert_eq!(
            named(&response, "test-multi"),
            [("test-multi", "a"), ("test-multi", "b")]
        );
        // an identical name + value pair appears once
        let same = v1(r#"{"multiValueHeaders": {"X": ["a", "b"]}, "headers": {"x": "a"}}"#);
        assert_eq!(named(&same, "x"), [("x", "a"), ("x", "b")]);
    }

    #[test]
    fn v1_explicit_content_type_and_null_content_type() {
        let response = v1(r#"{"headers": {"Content-Type": "text/html"}, "body": "<p>"}"#);
        assert_eq!(response.headers, h(&[("content-type", "text/html")]));
        assert_eq!(response.body, "<p>");
        // "Content-Type": null switches the default off (aws/aws-sam-cli#1218)
        assert_eq!(v1(r#"{"headers": {"Content-Type": null}}"#).headers, h(&[]));
    }

    #[test]
    fn v1_body_scalars() {
        assert_eq!(v1(r#"{"body": "héllo"}"#).body, "héllo".as_bytes());
        assert_eq!(v1(r#"{"body": 5}"#).body, "5");
        assert_eq!(v1(r#"{"body": true}"#).body, "true");
    }

    #[test]
    fn v1_base64_body_needs_binary_accept_on_rest() {
        let encoded = b64(b"\x89PNG");
        let result = format!(
            r#"{{"statusCode": 200, "headers": {{"content-type": "image/png"}}, "isBase64Encoded": true, "body": "{encoded}"}}"#
        );
        let body = |accept: Option<&str>, binary: &[&str]| v1_with(&result, accept, binary).unwrap().body;
        // Accept not in binaryMediaTypes: the base64 text is sent
        assert_eq!(body(Some("text/html"), &["image/png"]), encoded.as_bytes());
        assert_eq!(body(None, &["image/png"]), encoded.as_bytes());
        assert_eq!(body(Some("image/png"), &[]), encoded.as_bytes());
        // first Accept media type matches: decoded
        assert_eq!(body(Some("image/png"), &["image/png"]), &b"\x89PNG"[..]);
        assert_eq!(body(Some("image/webp;q=0.9, text/html"), &["image/*"]), &b"\x89PNG"[..]);
        assert_eq!(body(None, &["*/*"]), &b"\x89PNG"[..]);
        // only the first media type counts
        assert_eq!(body(Some("text/html, image/png"), &["image/png"]), encoded.as_bytes());
        // HTTP APIs have no binaryMediaTypes: always decoded
        assert_eq!(http_v1(&result).body, &b"\x89PNG"[..]);
    }

    #[test]
    fn v1_bad_base64_is_malformed() {
        let result = r#"{"isBase64Encoded": true, "body": "***"}"#;
        let err = v1_with(result, Some("image/png"), &["image/png"]).unwrap_err();
        assert_eq!(err.0, "Malformed Lambda proxy response: body is not valid base64");
    }

    #[test]
    fn accept_is_binary_rules() {
        assert!(accept_is_binary(Some("image/png"), &types(&["image/png"])));
        assert!(accept_is_binary(Some("IMAGE/PNG; q=1"), &types(&["image/png"])));
        assert!(!accept_is_binary(Some("*/*"), &types(&["image/png"])));
        assert!(accept_is_binary(Some("*/*"), &types(&["*/*"])));
        assert!(!accept_is_binary(None, &types(&[])));
    }

    #[test]
    fn v1_rest_remaps_framing_headers_http_drops_them() {
        let result =
            r#"{"headers": {"Content-Length": "3", "Date": "x", "Transfer-Encoding": "chunked"}, "body": "abc"}"#;
        let rest = v1(result);
        assert!(has(&rest, "x-amzn-remapped-content-length", "3"));
        assert!(has(&rest, "x-amzn-remapped-date", "x"));
        assert!(rest.headers.iter().all(|(name, _)| name != "transfer-encoding"));
        let http = http_v1(result);
        assert!(http
            .headers
            .iter()
            .all(|(name, _)| name != "content-length" && name != "transfer-encoding"));
    }

    #[test]
    fn v1_raw_bytes_must_be_json() {
        for result in ["not json", "{oops"] {
            let err = v1_with(result, None, &[]).unwrap_err();
            assert_eq!(
                err.0,
                "Malformed Lambda proxy response: the function's output is not JSON"
            );
        }
    }

    #[test]
    fn v1_raw_bytes_that_are_json_work() {
        // awslambdaric sends a handler's bytes as the payload as they are.
        assert_eq!(v1(r#"{"statusCode": 202}"#).status, 202);
    }

    // test_v1_unserialisable_is_function_error / test_v2_unserialisable_is_function_error: a set,
    // an arbitrary object or bytes inside the result cannot reach JSON at all; the caller's
    // serializer reports them (FUNCTION_ERROR, "Runtime.MarshalError").

    #[test]
    fn response_header_names_are_lower_case() {
        let response = v1(r#"{"headers": {"X-UPPER": "1"}, "multiValueHeaders": {"X-Multi": ["2"]}}"#);
        assert!(response.headers.iter().all(|(name, _)| *name == name.to_lowercase()));
    }

    // ---------------------------------------------------------------------------------------------
    // 2.0

    #[test]
    fn v2_inferred() {
        for (result, body) in [
            (r#""Hello from Lambda!""#, "Hello from Lambda!"),
            (
                r#"{"message": "Hello from Lambda!"}"#,
                r#"{"message": "Hello from Lambda!"}"#,
            ),
            (r#"{"a": 1, "b": [1, 2]}"#, r#"{"a": 1, "b": [1, 2]}"#),
            (r#"[1, "x"]"#, r#"[1, "x"]"#),
            ("42", "42"),
            ("1.5", "1.5"),
            ("true", "true"),
            ("null", "null"),
            (r#"{"body": "x", "headers": {}}"#, r#"{"body": "x", "headers": {}}"#),
            // Decimal("2"): the Python runtime writes an integral Decimal as an integer
            (r#"{"price": 2}"#, r#"{"price": 2}"#),
            ("{\"name\": \"h\u{e9}\"}", "{\"name\": \"h\u{e9}\"}"),
        ] {
            let response = v2(result).expect(result);
            assert_eq!(response.status, 200, "{result}");
            assert_eq!(response.headers, h(&[JSON]), "{result}");
            assert_eq!(response.body, body.as_bytes(), "{result}");
        }
    }

    #[test]
    fn v2_inferred_from_raw_bytes() {
        assert_eq!(v2(r#"{"k": "v"}"#).unwrap().body, r#"{"k": "v"}"#);
        assert_eq!(v2(r#"  {"k": "v"}  "#).unwrap().body, r#"{"k": "v"}"#);
        assert_eq!(v2(r#""text""#).unwrap().body, "text");
        assert_eq!(v2(r#""a\nb\u00e9""#).unwrap().body, "a\nb\u{e9}");
        let err = v2("raw bytes are not JSON").unwrap_err();
        assert_eq!(
            err.0,
            "Malformed Lambda proxy response: the function's output is not JSON"
        );
    }

    #[test]
    fn v2_structured() {
        let response = v2(r#"{
            "statusCode": 201,
            "headers": {"Content-Type": "text/html", "X-Flag": true},
            "cookies": ["a=1; Path=/", "b=2"],
            "body": "<p>made</p>"
        }"#)
        .unwrap();
        assert_eq!(response.status, 201);
        assert_eq!(response.body, "<p>made</p>");
        assert_eq!(
            response.headers,
            h(&[
                ("content-type", "text/html"),
                ("x-flag", "true"),
                ("set-cookie", "a=1; Path=/"),
                ("set-cookie", "b=2")
            ])
        );
    }

    #[test]
    fn v2_structured_keeps_header_order() {
        let response = v2(r#"{"statusCode": 200, "headers": {"Z": "1", "a": "2", "M": "3", "a": "4"}}"#).unwrap();
        // a repeated key keeps its first place and its last value (a Python dict)
        assert_eq!(response.headers, h(&[("z", "1"), ("a", "4"), ("m", "3"), TEXT_CT]));
    }

    #[test]
    fn v2_structured_defaults() {
        let response = v2(r#"{"statusCode": 200}"#).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body, Bytes::new());
        assert_eq!(response.headers, h(&[("content-type", "text/plain; charset=utf-8")]));
        assert_eq!(v2(r#"{"statusCode": "404"}"#).unwrap().status, 404);
    }

    #[test]
    fn v2_base64_always_decoded() {
        let payload: Vec<u8> = (0..=255).collect();
        let result = format!(
            r#"{{"statusCode": 200, "isBase64Encoded": true, "body": "{}"}}"#,
            b64(&payload)
        );
        assert_eq!(v2(&result).unwrap().body, payload);
    }

    #[test]
    fn v2_ignores_unknown_keys_and_multi_value_headers() {
        let response =
            v2(r#"{"statusCode": 200, "multiValueHeaders": {"x": ["1"]}, "extra": 1, "body": "ok"}"#).unwrap();
        assert_eq!(response.body, "ok");
        assert!(response.headers.iter().all(|(name, _)| name != "x"));
    }

    #[test]
    fn v2_malformed() {
        for result in [
            r#"{"statusCode": "nope"}"#,
            r#"{"statusCode": 1000}"#,
            r#"{"statusCode": 200, "headers": "x"}"#,
            r#"{"statusCode": 200, "headers": {"x": {"a": 1}}}"#,
            r#"{"statusCode": 200, "cookies": "a=1"}"#,
            r#"{"statusCode": 200, "body": {"an": "object"}}"#,
            r#"{"statusCode": 200, "isBase64Encoded": true, "body": "%%%"}"#,
        ] {
            let err = v2(result).expect_err(result);
            assert!(
                err.0.starts_with("Malformed Lambda proxy response: "),
                "{result}: {}",
                err.0
            );
        }
    }

    #[test]
    fn payload_size_limit() {
        let big = format!("\"{}\"", "x".repeat(MAX_PAYLOAD_BYTES + 1));
        assert_eq!(
            payload_too_large(big.as_bytes()),
            Some(format!("response payload of {} bytes exceeds 6 MB", big.len()))
        );
        let body = format!(
            r#"{{"statusCode": 200, "body": "{}"}}"#,
            "x".repeat(MAX_PAYLOAD_BYTES + 1)
        );
        assert!(payload_too_large(body.as_bytes()).is_some());
        assert_eq!(payload_too_large(br#"{"statusCode": 200}"#), None);
    }

    // ---------------------------------------------------------------------------------------------
    // Beyond the Python tests: the pieces that stand in for Python's runtime

    #[test]
    fn float_text_is_pythons_str() {
        for (literal, text) in [
            ("1.5", "1.5"),
            ("1e+20", "1e+20"),
            ("1e+16", "1e+16"),
            ("1000000000000000.0", "1000000000000000.0"),
            ("1e-05", "1e-05"),
            ("0.0001", "0.0001"),
            ("123456789.123", "123456789.123"),
            ("1.5e+300", "1.5e+300"),
            ("5e-324", "5e-324"),
            ("0.1", "0.1"),
            ("100.0", "100.0"),
            ("2.5e-07", "2.5e-07"),
            ("9999999999999998.0", "9999999999999998.0"),
            ("1.7976931348623157e+308", "1.7976931348623157e+308"),
            ("123456789.0", "123456789.0"),
            ("0.30000000000000004", "0.30000000000000004"),
            ("1e+22", "1e+22"),
            ("1.2345678901234567e+19", "1.2345678901234567e+19"),
            ("-0.0", "-0.0"),
            ("-2.5", "-2.5"),
        ] {
            assert_eq!(py_float_repr(literal.parse().unwrap()), text, "{literal}");
        }
    }

    #[test]
    fn json_reading_is_orjsons() {
        let ok = |s: &str| parse_json(s.as_bytes()).is_some();
        for good in [
            " {} ",
            "[]  \n",
            "1.5E+3",
            r#""\u00e9""#,
            r#""\ud83d\ude00""#,
            "\"\x7f\"",
            "-0",
            "-0.0",
            "1e-400",
        ] {
            assert!(ok(good), "{good}");
        }
        for bad in [
            "\u{feff}{}",
            "\x0c{}",
            "\"\x01\"",
            "1.",
            ".5",
            "-",
            "1e",
            "1e+",
            "-01",
            "01",
            r#""\udc00""#,
            r#""\ud800""#,
            r#""\x""#,
            "tru",
            "nul",
            "[1 2]",
            "[1,]",
            r#"{"a" 1}"#,
            "{1:2}",
            "{}x",
            "1e400",
            "",
        ] {
            assert!(!ok(bad), "{bad:?}");
        }
        assert!(parse_json(b"\"\xff\"").is_none());
        let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(ok(&nest(1024)));
        assert!(!ok(&nest(1025)));
        // integers past 64 bits are floats, as orjson makes them
        assert_eq!(v1(r#"{"body": 18446744073709551615}"#).body, "18446744073709551615");
        assert_eq!(v1(r#"{"body": 18446744073709551616}"#).body, "1.8446744073709552e+19");
        assert_eq!(v1(r#"{"body": -9223372036854775809}"#).body, "-9.223372036854776e+18");
        assert_eq!(v1(r#"{"body": -0}"#).body, "0");
        assert_eq!(v1(r#"{"body": 1E2}"#).body, "100.0");
    }

    /// `base64.b64decode(validate=True)` on CPython 3.11, every string of up to 6 `Q`/`=`
    /// characters plus hand-picked ones (expectations from the Python).
    #[test]
    fn base64_decoding_is_cpythons() {
        let cases: &[(&str, Option<&str>)] = &[
            ("QUJD=", Some("414243")),
            ("QUJD==", Some("414243")),
            ("QQ=", None),
            ("QQ==", Some("41")),
            ("QR==", Some("41")),
            ("QUI", None),
            ("QUI=", Some("4142")),
            ("QUI==", None),
            ("Q", None),
            ("Q===", None),
            ("", Some("")),
            ("=", None),
            ("QUJDQQ==QQ", None),
            ("QU\nJD", Some("414243")),
            ("QUJD\r\n", Some("414243")),
            ("QU JD", None),
            ("QQ==\n", Some("41")),
            ("Q=Q=", None),
            ("QUJ=D", None),
            ("UJ//", Some("509fff")),
            ("\n", Some("")),
            ("\r\r", Some("")),
            ("QQ====D", None),
            ("A=\r", None),
            ("é", None),
        ];
        let hex = |b: Vec<u8>| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        for (input, want) in cases {
            assert_eq!(b64decode(input).ok().map(hex).as_deref(), *want, "{input:?}");
        }
        // All strings of up to 6 characters over {Q, =}: only these decode.
        let good = ["", "QQ==", "QQQ=", "QQQQ", "QQQQ=", "QQQQ=="];
        for n in 0..=6u32 {
            for bits in 0..(1u32 << n) {
                let s: String = (0..n).map(|i| if bits >> i & 1 == 1 { '=' } else { 'Q' }).collect();
                assert_eq!(b64decode(&s).is_ok(), good.contains(&s.as_str()), "{s:?}");
            }
        }
    }

    fn pairs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
        headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
    }

    #[test]
    fn a_stream_prelude_is_read_with_the_rest_rules_and_its_cookies_set() {
        let (status, headers) = parse_stream_prelude(
            br#"{"statusCode": 201, "headers": {"Content-Type": "text/event-stream", "Date": "d"},
                 "multiValueHeaders": {"X-Multi": ["1", "2"]}, "cookies": ["a=1", "b=2; Secure"]}"#,
        )
        .unwrap();
        assert_eq!(status, 201);
        assert_eq!(
            pairs(&headers),
            [
                ("x-multi", "1"),
                ("x-multi", "2"),
                ("content-type", "text/event-stream"),
                ("x-amzn-remapped-date", "d"),
                ("set-cookie", "a=1"),
                ("set-cookie", "b=2; Secure"),
            ]
        );
        // Empty metadata: 200, API Gateway's default content type.
        let (status, headers) = parse_stream_prelude(b"{}").unwrap();
        assert_eq!((status, pairs(&headers)), (200, vec![("content-type", "application/json")]));
        let (status, headers) = parse_stream_prelude(br#"{"statusCode": "404", "headers": {"content-type": null}}"#).unwrap();
        assert_eq!((status, headers.len()), (404, 0));
    }

    #[test]
    fn a_malformed_stream_prelude_is_refused() {
        for (metadata, why) in [
            (&b"not json"[..], "is not JSON"),
            (b"[1]", "not a JSON object"),
            (br#"{"body": "x"}"#, "unexpected key 'body'"),
            (br#"{"statusCode": 99}"#, "not an HTTP status"),
            (br#"{"cookies": "a=1"}"#, "cookies is not a list"),
            (br#"{"cookies": [1]}"#, "not a list of strings"),
            (br#"{"headers": ["x"]}"#, "headers is not an object"),
        ] {
            let error = parse_stream_prelude(metadata).unwrap_err();
            assert!(error.0.starts_with("Malformed Lambda proxy response: "), "{error:?}");
            assert!(error.0.contains(why), "{metadata:?}: {error:?}");
        }
    }
}
