//! The event an AWS_PROXY integration hands the function: payload 2.0 (HTTP APIs), 1.0 for HTTP
//! APIs (`"version": "1.0"`) and the REST shape ("Lambda proxy integrations" in the API Gateway
//! developer guide).
//!
//! The JSON is written directly, keys in the Python dicts' order.

use std::borrow::Cow;
use std::fmt::Write as _;

use smallvec::SmallVec;

use super::{media_matches, media_type, py_strip, OrderedMap, PayloadFormat};
use crate::auth::{claim_text, flatten_claims, AuthContext, ClientCert, Granted};

/// One request as the pipeline saw it: everything an AWS_PROXY event is built from.
pub struct EventSource<'a> {
    pub format: PayloadFormat,
    /// API Gateway's request id.
    pub request_id: &'a str,
    /// REST: requestContext.extendedRequestId (HTTP APIs use `request_id`).
    pub extended_request_id: &'a str,
    /// The X-Amzn-Trace-Id value the gateway adds when the client sent none (or an empty one).
    pub trace_id: &'a str,
    pub method: &'a str,
    /// The path as the client addressed the API (percent-encoding kept, stage segment included).
    pub raw_path: &'a str,
    /// The path the API sees (stage segment removed): the REST event's `path`.
    pub path: &'a str,
    /// The query string, without '?'.
    pub raw_query: &'a str,
    /// Request headers as received (names lower-case); values are decoded as UTF-8 with
    /// replacement characters, like the Python `RequestContext.headers`.
    pub headers: &'a http::HeaderMap,
    pub host: &'a str,
    /// "http" / "https" ("" means https).
    pub scheme: &'a str,
    /// "HTTP/1.1".
    pub protocol: &'a str,
    pub client_ip: &'a str,
    pub time_epoch_ms: u64,
    pub account_id: &'a str,
    pub api_id: &'a str,
    /// Stage name ("$default" for HTTP APIs' default stage).
    pub stage: &'a str,
    /// REST: requestContext.deploymentId (the stage's deployment).
    pub deployment_id: &'a str,
    /// "GET /pets/{id}" or "$default".
    pub route_key: &'a str,
    /// "/pets/{id}" ("$default" for the default route).
    pub resource_path: &'a str,
    /// Raw values, as the client sent them.
    pub path_params: &'a [(&'a str, &'a str)],
    pub stage_variables: &'a [(Box<str>, Box<str>)],
    pub body: &'a [u8],
    /// REST APIs' binaryMediaTypes (ignored by HTTP APIs).
    pub binary_media_types: &'a [Box<str>],
    /// What the authorize phase learned: `requestContext.authorizer`, `identity`,
    /// `authentication`.
    pub auth: &'a AuthContext,
}

/// The event as JSON bytes (what Lambda hands the handler).
pub fn build_event(src: &EventSource<'_>) -> Vec<u8> {
    let out = match src.format {
        PayloadFormat::HttpV2 => build_v2(src, None),
        PayloadFormat::RestV1 => build_v1(src, true, None),
        PayloadFormat::HttpV1 => build_v1(src, false, None),
    };
    out.into_bytes()
}

/// What a Lambda authorizer's `REQUEST` event adds to the request's proxy event: the ARN it
/// decides on and the identity-source values.
pub struct AuthorizerHead<'a> {
    /// `methodArn` (REST, HTTP 1.0) or `routeArn` (HTTP 2.0).
    pub arn: &'a str,
    pub identity: &'a [String],
}

/// A Lambda authorizer's `REQUEST` event ("Input to an API Gateway Lambda authorizer", "Control
/// access to HTTP APIs with AWS Lambda authorizers"): the proxy event of `src.format` without its
/// body (nor `isBase64Encoded`, nor an `authorizer` of its own), headed by `type: REQUEST`, the
/// ARN and, for HTTP APIs, `identitySource` (2.0: the values; 1.0: comma-joined, also as
/// `authorizationToken`).
pub fn build_authorizer_event(src: &EventSource<'_>, head: &AuthorizerHead<'_>) -> Vec<u8> {
    let out = match src.format {
        PayloadFormat::HttpV2 => build_v2(src, Some(head)),
        PayloadFormat::RestV1 => build_v1(src, true, Some(head)),
        PayloadFormat::HttpV1 => build_v1(src, false, Some(head)),
    };
    out.into_bytes()
}

/// What a REST API's mapping templates see of a request (`$input.params()`, `$context`), built
/// with the rules of the REST proxy event (header names, the gateway's headers, query values).
pub struct TemplateView {
    /// `{"path": {...}, "querystring": {...}, "header": {...}}` (last values).
    pub params: String,
    /// The REST event's `requestContext` object.
    pub context: String,
}

/// The REST `$input.params()` and `$context` of `src` (its `format` is ignored: REST's).
pub fn template_view(src: &EventSource<'_>) -> TemplateView {
    let scan = scan_headers(src.headers, true, false);
    let gateway = gateway_headers(src, &scan);
    let mut j = Json::with_capacity(capacity(src));
    j.open('{');
    j.key("path");
    j.str_map(src.path_params.iter().copied());
    j.key("querystring");
    let query = parse_query(src.raw_query);
    j.str_map(query.iter().map(|(k, v)| (&**k, &**v)));
    j.key("header");
    let mut headers: Vec<(&str, &str)> = scan
        .groups
        .iter()
        .map(|(name, values)| (rest_name(name), values.last().map_or("", |v| v)))
        .collect();
    if !scan.has_host && !src.host.is_empty() {
        headers.push(("Host", src.host));
    }
    headers.extend(gateway.iter().map(|(name, value)| (rest_name(name), &**value)));
    j.str_map(headers.into_iter());
    j.close('}');
    let params = j.out;
    let mut j = Json::with_capacity(1024);
    write_request_context(&mut j, src, true, true, scan.user_agent.as_deref());
    TemplateView { params, context: j.out }
}

/// A string as JSON text (for callers composing JSON around the views above).
pub fn json_string_into(out: &mut String, s: &str) {
    write_str(out, s);
}

// -------------------------------------------------------------------------------------------------
// Header rules

/// Hop-by-hop headers: never part of the event.
fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection" | "keep-alive" | "proxy-connection" | "te" | "trailer" | "transfer-encoding" | "upgrade"
    )
}

/// REST APIs drop these too before the integration sees the request; HTTP APIs keep them.
fn is_dropped_rest_only(name: &str) -> bool {
    matches!(
        name,
        "content-length"
            | "content-md5"
            | "expect"
            | "max-forwards"
            | "proxy-authenticate"
            | "server"
            | "www-authenticate"
    )
}

const XFF: &str = "x-forwarded-for";
const XFP: &str = "x-forwarded-port";
const XFPROTO: &str = "x-forwarded-proto";
const TRACE: &str = "x-amzn-trace-id";

/// The canonical casing REST events show some names in.
fn rest_name(name: &str) -> &str {
    match name {
        "host" => "Host",
        "authorization" => "Authorization",
        "user-agent" => "User-Agent",
        XFF => "X-Forwarded-For",
        XFP => "X-Forwarded-Port",
        XFPROTO => "X-Forwarded-Proto",
        TRACE => "X-Amzn-Trace-Id",
        other => other,
    }
}

/// Whether an HTTP API hands a request body of this Content-Type over as text.
pub fn is_text_media_type_http_api(content_type: Option<&str>) -> bool {
    let media = media_type(content_type.unwrap_or(""));
    media.starts_with("text/")
        || matches!(
            media.as_str(),
            "application/json" | "application/xml" | "application/javascript"
        )
}

/// Whether `content_type` matches one of a REST API's binaryMediaTypes (`type/sub`, `type/*`, `*/*`).
pub fn is_binary_media_type(content_type: Option<&str>, binary_media_types: &[Box<str>]) -> bool {
    if binary_media_types.is_empty() {
        return false;
    }
    let media = media_type(content_type.unwrap_or(""));
    binary_media_types.iter().any(|pattern| {
        let pattern = super::media_lower(py_strip(pattern));
        pattern == "*/*" || media_matches(&pattern, &media)
    })
}

/// (domainPrefix, X-Forwarded-Port) of a Host header value.
fn host_parts<'h>(host: &'h str, scheme: &str) -> (&'h str, &'h str) {
    let mut hostname = host;
    let mut port = "";
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        if let Some(end) = rest.find(']') {
            hostname = &rest[..end];
            if let Some(p) = rest[end + 1..].strip_prefix(':') {
                if is_digits(p) {
                    port = p;
                }
            }
        }
    } else if let Some(colon) = host.rfind(':') {
        let maybe_port = &host[colon + 1..];
        if is_digits(maybe_port) {
            hostname = &host[..colon];
            port = maybe_port;
        }
    }
    if port.is_empty() {
        port = if scheme == "http" { "80" } else { "443" };
    }
    let prefix = hostname.split('.').next().unwrap_or("");
    (prefix, port)
}

/// `str.isdigit()` for the ASCII digits (hosts are ASCII).
fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// What the request headers give every event: the kept headers, and the ones the gateway reads.
struct Scan<'a> {
    /// Kept headers by name, in first-seen order, each with its values in order.
    groups: Vec<(&'a str, SmallVec<[Cow<'a, str>; 1]>)>,
    cookies: Vec<Cow<'a, str>>,
    xff: Option<String>,
    trace: Option<Cow<'a, str>>,
    content_type: Option<Cow<'a, str>>,
    /// v2: the first non-empty User-Agent; v1: the first one.
    user_agent: Option<Cow<'a, str>>,
    has_host: bool,
}

/// One pass over the headers, value by value as the Python loop goes (values decoded as UTF-8
/// with replacement characters).
fn scan_headers<'a>(headers: &'a http::HeaderMap, rest: bool, v2: bool) -> Scan<'a> {
    let mut scan = Scan {
        groups: Vec::with_capacity(headers.keys_len()),
        cookies: Vec::new(),
        xff: None,
        trace: None,
        content_type: None,
        user_agent: None,
        has_host: false,
    };
    for (name, value) in headers.iter() {
        let name = name.as_str();
        if is_hop_by_hop(name) || (rest && is_dropped_rest_only(name)) {
            continue;
        }
        let value = String::from_utf8_lossy(value.as_bytes());
        if v2 && name == "cookie" {
            match value {
                Cow::Borrowed(value) => scan.cookies.extend(
                    value
                        .split(';')
                        .map(py_strip)
                        .filter(|c| !c.is_empty())
                        .map(Cow::Borrowed),
                ),
                // Not valid UTF-8 (rare): the replaced text is owned.
                Cow::Owned(value) => scan.cookies.extend(
                    value
                        .split(';')
                        .map(py_strip)
                        .filter(|c| !c.is_empty())
                        .map(|c| Cow::Owned(c.to_owned())),
                ),
            }
            continue;
        }
        match name {
            XFF => {
                match &mut scan.xff {
                    Some(xff) if !xff.is_empty() => {
                        xff.push_str(", ");
                        xff.push_str(&value);
                    }
                    _ => scan.xff = Some(value.into_owned()),
                }
                continue;
            }
            TRACE => {
                if scan.trace.is_none() {
                    scan.trace = Some(value);
                }
                continue;
            }
            XFP | XFPROTO => continue,
            "content-type" if scan.content_type.is_none() => scan.content_type = Some(value.clone()),
            "user-agent" => {
                let take = if v2 {
                    scan.user_agent.as_deref().map_or(true, str::is_empty)
                } else {
                    scan.user_agent.is_none()
                };
                if take {
                    scan.user_agent = Some(value.clone());
                }
            }
            "host" => scan.has_host = true,
            _ => {}
        }
        // HeaderMap yields a name's values one after the other; look further back only if not.
        match scan.groups.last_mut() {
            Some((last, values)) if *last == name => values.push(value),
            _ => match scan.groups.iter_mut().find(|(seen, _)| *seen == name) {
                Some((_, values)) => values.push(value),
                None => scan.groups.push((name, smallvec::smallvec![value])),
            },
        }
    }
    scan
}

/// X-Forwarded-For / -Port / -Proto and X-Amzn-Trace-Id as API Gateway sets them.
fn gateway_headers<'s>(src: &'s EventSource<'_>, scan: &'s Scan<'_>) -> [(&'static str, Cow<'s, str>); 4] {
    let xff = match scan.xff.as_deref() {
        Some(xff) if !xff.is_empty() => Cow::Owned(format!("{xff}, {}", src.client_ip)),
        _ => Cow::Borrowed(src.client_ip),
    };
    let (_, port) = host_parts(src.host, src.scheme);
    let proto = if src.scheme.is_empty() { "https" } else { src.scheme };
    let trace = match scan.trace.as_deref() {
        Some(t) if !t.is_empty() => Cow::Borrowed(t),
        _ => Cow::Borrowed(src.trace_id),
    };
    [
        (TRACE, trace),
        (XFF, xff),
        (XFP, Cow::Borrowed(port)),
        (XFPROTO, Cow::Borrowed(proto)),
    ]
}

// -------------------------------------------------------------------------------------------------
// Query strings

/// Decoded (name, value) pairs of a raw query string, in order: `+` is a space, %XX decoded
/// (`urllib.parse.unquote`). Empty pieces are skipped; a piece without `=` has the value "".
pub fn parse_query(raw: &str) -> Vec<(Cow<'_, str>, Cow<'_, str>)> {
    raw.split('&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
            (unquote_plus(name), unquote_plus(value))
        })
        .collect()
}

fn unquote_plus(s: &str) -> Cow<'_, str> {
    let s: Cow<'_, str> = if s.contains('+') {
        Cow::Owned(s.replace('+', " "))
    } else {
        Cow::Borrowed(s)
    };
    if !s.contains('%') {
        return s;
    }
    Cow::Owned(unquote(&s))
}

/// `urllib.parse.unquote`: each maximal ASCII run is %-decoded to bytes and read as UTF-8 with
/// replacement characters; non-ASCII text is kept as it is; a `%` not followed by two hex digits
/// stays literal.
fn unquote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while !rest.is_empty() {
        let ascii_len = rest.bytes().position(|b| !b.is_ascii()).unwrap_or(rest.len());
        let (ascii, tail) = rest.split_at(ascii_len);
        if !ascii.is_empty() {
            let bytes = ascii.as_bytes();
            let mut decoded = Vec::with_capacity(bytes.len());
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%' && i + 2 < bytes.len() {
                    if let (Some(h), Some(l)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                        decoded.push(h << 4 | l);
                        i += 3;
                        continue;
                    }
                }
                decoded.push(bytes[i]);
                i += 1;
            }
            out.push_str(&String::from_utf8_lossy(&decoded));
        }
        let non_ascii_len = tail
            .char_indices()
            .find(|(_, c)| c.is_ascii())
            .map_or(tail.len(), |(i, _)| i);
        out.push_str(&tail[..non_ascii_len]);
        rest = &tail[non_ascii_len..];
    }
    out
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

// -------------------------------------------------------------------------------------------------
// Small pieces

/// `12/Mar/2020:19:03:58 +0000` (requestContext.time / requestTime).
pub fn format_request_time(epoch_ms: u64) -> String {
    let mut out = String::with_capacity(26);
    crate::time::push_clf_time(&mut out, epoch_ms);
    out
}

/// A stable REST resource id (6 lower-case alphanumerics), the Python's
/// `blake2b(f"{api_id}\0{resource_path}", digest_size=8)` read big-endian, in base 36 (low first).
pub fn rest_resource_id(api_id: &str, resource_path: &str) -> String {
    let mut data = Vec::with_capacity(api_id.len() + 1 + resource_path.len());
    data.extend_from_slice(api_id.as_bytes());
    data.push(0);
    data.extend_from_slice(resource_path.as_bytes());
    let mut digest = u64::from_be_bytes(blake2b_64(&data));
    let alphabet = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(6);
    for _ in 0..6 {
        out.push(alphabet[(digest % 36) as usize] as char);
        digest /= 36;
    }
    out
}

const BLAKE2B_IV: [u64; 8] = [
    0x6a09_e667_f3bc_c908,
    0xbb67_ae85_84ca_a73b,
    0x3c6e_f372_fe94_f82b,
    0xa54f_f53a_5f1d_36f1,
    0x510e_527f_ade6_82d1,
    0x9b05_688c_2b3e_6c1f,
    0x1f83_d9ab_fb41_bd6b,
    0x5be0_cd19_137e_2179,
];

const BLAKE2B_SIGMA: [[usize; 16]; 10] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
    [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
    [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
    [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
    [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
    [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
    [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
    [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
    [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
];

/// BLAKE2b (RFC 7693), unkeyed, 8-byte digest.
fn blake2b_64(data: &[u8]) -> [u8; 8] {
    let mut h = BLAKE2B_IV;
    h[0] ^= 0x0101_0000 ^ 8;
    let mut counter: u128 = 0;
    let mut rest = data;
    while rest.len() > 128 {
        counter += 128;
        blake2b_compress(&mut h, &rest[..128], counter, false);
        rest = &rest[128..];
    }
    counter += rest.len() as u128;
    let mut block = [0u8; 128];
    block[..rest.len()].copy_from_slice(rest);
    blake2b_compress(&mut h, &block, counter, true);
    h[0].to_le_bytes()
}

fn blake2b_compress(h: &mut [u64; 8], block: &[u8], counter: u128, last: bool) {
    let mut m = [0u64; 16];
    for (word, chunk) in m.iter_mut().zip(block.chunks_exact(8)) {
        *word = u64::from_le_bytes(chunk.try_into().expect("8-byte chunk"));
    }
    let mut v = [0u64; 16];
    v[..8].copy_from_slice(h);
    v[8..].copy_from_slice(&BLAKE2B_IV);
    v[12] ^= counter as u64;
    v[13] ^= (counter >> 64) as u64;
    if last {
        v[14] = !v[14];
    }
    fn g(v: &mut [u64; 16], a: usize, b: usize, c: usize, d: usize, x: u64, y: u64) {
        v[a] = v[a].wrapping_add(v[b]).wrapping_add(x);
        v[d] = (v[d] ^ v[a]).rotate_right(32);
        v[c] = v[c].wrapping_add(v[d]);
        v[b] = (v[b] ^ v[c]).rotate_right(24);
        v[a] = v[a].wrapping_add(v[b]).wrapping_add(y);
        v[d] = (v[d] ^ v[a]).rotate_right(16);
        v[c] = v[c].wrapping_add(v[d]);
        v[b] = (v[b] ^ v[c]).rotate_right(63);
    }
    for round in 0..12 {
        let s = &BLAKE2B_SIGMA[round % 10];
        g(&mut v, 0, 4, 8, 12, m[s[0]], m[s[1]]);
        g(&mut v, 1, 5, 9, 13, m[s[2]], m[s[3]]);
        g(&mut v, 2, 6, 10, 14, m[s[4]], m[s[5]]);
        g(&mut v, 3, 7, 11, 15, m[s[6]], m[s[7]]);
        g(&mut v, 0, 5, 10, 15, m[s[8]], m[s[9]]);
        g(&mut v, 1, 6, 11, 12, m[s[10]], m[s[11]]);
        g(&mut v, 2, 7, 8, 13, m[s[12]], m[s[13]]);
        g(&mut v, 3, 4, 9, 14, m[s[14]], m[s[15]]);
    }
    for i in 0..8 {
        h[i] ^= v[i] ^ v[i + 8];
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub(crate) fn base64_encode(data: &[u8], out: &mut String) {
    out.reserve(data.len().div_ceil(3) * 4);
    let mut chunks = data.chunks_exact(3);
    for c in &mut chunks {
        let v = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
        for shift in [18, 12, 6, 0] {
            out.push(B64[((v >> shift) & 63) as usize] as char);
        }
    }
    match *chunks.remainder() {
        [a] => {
            let v = u32::from(a) << 16;
            out.push(B64[(v >> 18) as usize & 63] as char);
            out.push(B64[(v >> 12) as usize & 63] as char);
            out.push_str("==");
        }
        [a, b] => {
            let v = (u32::from(a) << 16) | (u32::from(b) << 8);
            out.push(B64[(v >> 18) as usize & 63] as char);
            out.push(B64[(v >> 12) as usize & 63] as char);
            out.push(B64[(v >> 6) as usize & 63] as char);
            out.push('=');
        }
        _ => {}
    }
}

// -------------------------------------------------------------------------------------------------
// JSON writing

/// A JSON writer that places the commas: every value (and key) starts with `sep`.
struct Json {
    out: String,
    first: bool,
}

impl Json {
    fn with_capacity(n: usize) -> Self {
        Json {
            out: String::with_capacity(n),
            first: true,
        }
    }

    fn sep(&mut self) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
    }

    fn open(&mut self, c: char) {
        self.sep();
        self.out.push(c);
        self.first = true;
    }

    fn close(&mut self, c: char) {
        self.out.push(c);
        self.first = false;
    }

    fn key(&mut self, k: &str) {
        self.sep();
        write_str(&mut self.out, k);
        self.out.push(':');
        self.first = true;
    }

    fn str(&mut self, s: &str) {
        self.sep();
        write_str(&mut self.out, s);
    }

    fn raw(&mut self, s: &str) {
        self.sep();
        self.out.push_str(s);
    }

    fn null(&mut self) {
        self.raw("null");
    }

    fn bool(&mut self, b: bool) {
        self.raw(if b { "true" } else { "false" });
    }

    fn u64(&mut self, n: u64) {
        self.sep();
        let _ = write!(self.out, "{n}");
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.str(s),
            None => self.null(),
        }
    }

    fn kv(&mut self, k: &str, v: &str) {
        self.key(k);
        self.str(v);
    }

    /// An object of string pairs with dict semantics (a repeated name: last value, first place).
    fn str_map<'p>(&mut self, pairs: impl Iterator<Item = (&'p str, &'p str)>) {
        let mut map: OrderedMap<&str, &str> = OrderedMap::new();
        for (k, v) in pairs {
            map.insert(k, v);
        }
        self.open('{');
        for (k, v) in &map.entries {
            self.kv(k, v);
        }
        self.close('}');
    }
}

fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            out.push_str("\\u00");
            out.push(b"0123456789abcdef"[(b >> 4) as usize] as char);
            out.push(b"0123456789abcdef"[(b & 15) as usize] as char);
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// The event's body: text when allowed and valid UTF-8, else base64. Returns isBase64Encoded.
fn write_body(j: &mut Json, body: &[u8], as_binary: bool) -> bool {
    if !as_binary {
        if let Ok(text) = std::str::from_utf8(body) {
            j.str(text);
            return false;
        }
    }
    j.sep();
    j.out.push('"');
    base64_encode(body, &mut j.out);
    j.out.push('"');
    true
}

fn capacity(src: &EventSource<'_>) -> usize {
    let headers: usize = src.headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 8).sum();
    1024 + 2 * headers + 2 * src.raw_query.len() + src.body.len() * 4 / 3 + 3 * src.raw_path.len()
}

// -------------------------------------------------------------------------------------------------
// Payload format 2.0 (HTTP APIs)

fn build_v2(src: &EventSource<'_>, authorizer: Option<&AuthorizerHead<'_>>) -> String {
    let scan = scan_headers(src.headers, false, true);
    let mut j = Json::with_capacity(capacity(src));
    j.open('{');
    j.kv("version", "2.0");
    if let Some(head) = authorizer {
        j.kv("type", "REQUEST");
        j.kv("routeArn", head.arn);
        j.key("identitySource");
        j.open('[');
        for value in head.identity {
            j.str(value);
        }
        j.close(']');
    }
    j.kv("routeKey", src.route_key);
    j.kv("rawPath", src.raw_path);
    j.kv("rawQueryString", src.raw_query);
    if !scan.cookies.is_empty() {
        j.key("cookies");
        j.open('[');
        for cookie in &scan.cookies {
            j.str(cookie);
        }
        j.close(']');
    }
    j.key("headers");
    j.open('{');
    let mut joined = String::new();
    for (name, values) in &scan.groups {
        j.key(name);
        if let [value] = values.as_slice() {
            j.str(value);
        } else {
            joined.clear();
            for (i, value) in values.iter().enumerate() {
                if i > 0 {
                    joined.push(',');
                }
                joined.push_str(value);
            }
            j.str(&joined);
        }
    }
    if !scan.has_host && !src.host.is_empty() {
        j.kv("host", src.host);
    }
    for (name, value) in gateway_headers(src, &scan) {
        j.kv(name, &value);
    }
    j.close('}');
    if !src.raw_query.is_empty() {
        let mut query: OrderedMap<Cow<'_, str>, String> = OrderedMap::new();
        for (name, value) in parse_query(src.raw_query) {
            match query.get_mut(&name) {
                Some(prev) => {
                    prev.push(',');
                    prev.push_str(&value);
                }
                None => query.push_new(name, value.into_owned()),
            }
        }
        if !query.entries.is_empty() {
            j.key("queryStringParameters");
            j.open('{');
            for (name, value) in &query.entries {
                j.kv(name, value);
            }
            j.close('}');
        }
    }
    let (prefix, _) = host_parts(src.host, src.scheme);
    j.key("requestContext");
    j.open('{');
    j.kv("accountId", src.account_id);
    j.kv("apiId", src.api_id);
    write_v2_auth(&mut j, src.auth);
    j.kv("domainName", src.host);
    j.kv("domainPrefix", prefix);
    j.key("http");
    j.open('{');
    j.kv("method", src.method);
    j.kv("path", src.raw_path);
    j.kv("protocol", src.protocol);
    j.kv("sourceIp", src.client_ip);
    j.kv("userAgent", scan.user_agent.as_deref().unwrap_or(""));
    j.close('}');
    j.kv("requestId", src.request_id);
    j.kv("routeKey", src.route_key);
    j.kv("stage", src.stage);
    j.kv("time", &format_request_time(src.time_epoch_ms));
    j.key("timeEpoch");
    j.u64(src.time_epoch_ms);
    j.close('}');
    let mut is_b64 = false;
    if !src.body.is_empty() && authorizer.is_none() {
        j.key("body");
        is_b64 = write_body(
            &mut j,
            src.body,
            !is_text_media_type_http_api(scan.content_type.as_deref()),
        );
    }
    if !src.path_params.is_empty() {
        j.key("pathParameters");
        j.str_map(src.path_params.iter().copied());
    }
    if authorizer.is_none() {
        j.key("isBase64Encoded");
        j.bool(is_b64);
    }
    if !src.stage_variables.is_empty() {
        j.key("stageVariables");
        j.str_map(src.stage_variables.iter().map(|(k, v)| (&**k, &**v)));
    }
    j.close('}');
    j.out
}

// -------------------------------------------------------------------------------------------------
// Payload format 1.0 (REST APIs, and HTTP APIs with payloadFormatVersion 1.0)

fn write_identity(j: &mut Json, source_ip: &str, user_agent: Option<&str>, auth: &AuthContext) {
    let iam = auth.iam.as_ref();
    j.open('{');
    j.key("accessKey");
    j.opt_str(iam.map(|i| i.access_key.as_str()));
    j.key("accountId");
    j.opt_str(iam.map(|i| i.account_id.as_str()));
    if let Some(key) = &auth.api_key {
        j.kv("apiKey", &key.value);
        j.kv("apiKeyId", &key.id);
    }
    j.key("caller");
    j.opt_str(iam.map(|i| i.caller.as_str()));
    if let Some(cert) = &auth.client_cert {
        j.key("clientCert");
        write_client_cert(j, cert);
    }
    for key in [
        "cognitoAuthenticationProvider",
        "cognitoAuthenticationType",
        "cognitoIdentityId",
        "cognitoIdentityPoolId",
        "principalOrgId",
    ] {
        j.key(key);
        j.null();
    }
    j.kv("sourceIp", source_ip);
    j.key("user");
    j.opt_str(iam.map(|i| i.user.as_str()));
    j.key("userAgent");
    j.opt_str(user_agent);
    j.key("userArn");
    j.opt_str(iam.map(|i| i.user_arn.as_str()));
    j.close('}');
}

/// `clientCert` of `identity` (payload 1.0) and `authentication` (2.0).
fn write_client_cert(j: &mut Json, cert: &ClientCert) {
    j.open('{');
    j.kv("clientCertPem", &cert.pem);
    j.kv("subjectDN", &cert.subject_dn);
    j.kv("issuerDN", &cert.issuer_dn);
    j.kv("serialNumber", &cert.serial_number);
    j.key("validity");
    j.open('{');
    j.kv("notBefore", &cert.not_before);
    j.kv("notAfter", &cert.not_after);
    j.close('}');
    j.close('}');
}

/// A JSON value as is (a Lambda authorizer's context, in 2.0 events).
fn write_value(j: &mut Json, value: &serde_json::Value) {
    j.raw(&value.to_string());
}

/// Payload 1.0's `requestContext.authorizer`: a Lambda authorizer's principal and context (its
/// values as strings), or a JWT's claims; for HTTP APIs, the claims/scopes pair even when empty.
fn write_v1_authorizer(j: &mut Json, auth: &AuthContext, rest: bool) {
    match &auth.granted {
        Granted::Nothing if rest => {}
        Granted::Nothing => {
            j.key("authorizer");
            j.open('{');
            j.key("claims");
            j.null();
            j.key("scopes");
            j.null();
            j.close('}');
        }
        Granted::Jwt { claims, scopes } => {
            j.key("authorizer");
            j.open('{');
            j.key("claims");
            write_claims(j, claims, scopes.as_deref(), !rest || scopes.is_some());
            j.close('}');
        }
        Granted::Lambda {
            principal_id,
            context,
            latency_ms,
            ..
        } => {
            j.key("authorizer");
            j.open('{');
            for (k, v) in context {
                j.kv(k, &claim_text(v));
            }
            j.key("principalId");
            j.opt_str(principal_id.as_deref());
            j.key("integrationLatency");
            j.u64(*latency_ms);
            j.close('}');
        }
    }
}

/// A JWT's claims (as strings) and, when `with_scopes`, its `scopes` (null when none).
fn write_claims(j: &mut Json, claims: &serde_json::Map<String, serde_json::Value>, scopes: Option<&[String]>, with_scopes: bool) {
    j.open('{');
    for (k, v) in flatten_claims(claims) {
        j.kv(&k, &v);
    }
    j.close('}');
    if with_scopes {
        j.key("scopes");
        match scopes {
            Some(scopes) => {
                j.open('[');
                for s in scopes {
                    j.str(s);
                }
                j.close(']');
            }
            None => j.null(),
        }
    }
}

/// Payload 2.0's `authentication` (mTLS) and `authorizer` (`jwt`, `lambda` or `iam`).
fn write_v2_auth(j: &mut Json, auth: &AuthContext) {
    if let Some(cert) = &auth.client_cert {
        j.key("authentication");
        j.open('{');
        j.key("clientCert");
        write_client_cert(j, cert);
        j.close('}');
    }
    match (&auth.granted, &auth.iam) {
        (Granted::Jwt { claims, scopes }, _) => {
            j.key("authorizer");
            j.open('{');
            j.key("jwt");
            j.open('{');
            j.key("claims");
            write_claims(j, claims, scopes.as_deref(), true);
            j.close('}');
            j.close('}');
        }
        (Granted::Lambda { context, .. }, _) => {
            j.key("authorizer");
            j.open('{');
            j.key("lambda");
            write_value(j, &serde_json::Value::Object(context.clone()));
            j.close('}');
        }
        (Granted::Nothing, Some(iam)) => {
            j.key("authorizer");
            j.open('{');
            j.key("iam");
            j.open('{');
            j.kv("accessKey", &iam.access_key);
            j.kv("accountId", &iam.account_id);
            j.kv("callerId", &iam.caller);
            j.key("cognitoIdentity");
            j.null();
            j.key("principalOrgId");
            j.null();
            j.kv("userArn", &iam.user_arn);
            j.kv("userId", &iam.caller);
            j.close('}');
            j.close('}');
        }
        (Granted::Nothing, None) => {}
    }
}

/// Payload 1.0's `requestContext` (REST APIs': also `$context` of mapping templates).
fn write_request_context(j: &mut Json, src: &EventSource<'_>, rest: bool, with_authorizer: bool, user_agent: Option<&str>) {
    let (prefix, _) = host_parts(src.host, src.scheme);
    j.open('{');
    j.kv("accountId", src.account_id);
    j.kv("apiId", src.api_id);
    if with_authorizer {
        write_v1_authorizer(j, src.auth, rest);
    }
    if rest {
        j.kv("deploymentId", src.deployment_id);
    }
    j.kv("domainName", src.host);
    j.kv("domainPrefix", prefix);
    // HTTP APIs' request ids already have the extended form.
    j.kv(
        "extendedRequestId",
        if rest { src.extended_request_id } else { src.request_id },
    );
    j.kv("httpMethod", src.method);
    j.key("identity");
    write_identity(j, src.client_ip, user_agent, src.auth);
    // REST: requestContext.path carries the stage while `path` does not; HTTP API 1.0 events
    // carry the stage segment in both.
    j.kv("path", src.raw_path);
    j.kv("protocol", src.protocol);
    j.kv("requestId", src.request_id);
    j.kv("requestTime", &format_request_time(src.time_epoch_ms));
    j.key("requestTimeEpoch");
    j.u64(src.time_epoch_ms);
    j.key("resourceId");
    if rest {
        j.str(&rest_resource_id(src.api_id, src.resource_path));
    } else {
        j.null();
    }
    j.kv("resourcePath", src.resource_path);
    j.kv("stage", src.stage);
    j.close('}');
}

fn build_v1(src: &EventSource<'_>, rest: bool, authorizer: Option<&AuthorizerHead<'_>>) -> String {
    let scan = scan_headers(src.headers, rest, false);
    let gateway = gateway_headers(src, &scan);
    let name_of = |name: &'static str| if rest { rest_name(name) } else { name };
    let add_host = !scan.has_host && !src.host.is_empty();

    let mut j = Json::with_capacity(capacity(src));
    j.open('{');
    if !rest {
        j.kv("version", "1.0");
    }
    if let Some(head) = authorizer {
        j.kv("type", "REQUEST");
        j.kv("methodArn", head.arn);
        if !rest {
            let joined = head.identity.join(",");
            j.kv("identitySource", &joined);
            j.kv("authorizationToken", &joined);
        }
    }
    j.kv("resource", src.resource_path);
    j.kv("path", if rest { src.path } else { src.raw_path });
    j.kv("httpMethod", src.method);

    j.key("headers");
    j.open('{');
    for (name, values) in &scan.groups {
        let name = if rest { rest_name(name) } else { name };
        j.kv(name, values.last().map_or("", |v| v));
    }
    if add_host {
        j.kv(name_of("host"), src.host);
    }
    for (name, value) in &gateway {
        j.kv(name_of(name), value);
    }
    j.close('}');

    j.key("multiValueHeaders");
    j.open('{');
    for (name, values) in &scan.groups {
        j.key(if rest { rest_name(name) } else { name });
        j.open('[');
        for value in values {
            j.str(value);
        }
        j.close(']');
    }
    let single = |j: &mut Json, name: &str, value: &str| {
        j.key(name);
        j.open('[');
        j.str(value);
        j.close(']');
    };
    if add_host {
        single(&mut j, name_of("host"), src.host);
    }
    for (name, value) in &gateway {
        single(&mut j, name_of(name), value);
    }
    j.close('}');

    // queryStringParameters (last value wins) and multiValueQueryStringParameters, or nulls.
    let mut query: OrderedMap<Cow<'_, str>, Vec<Cow<'_, str>>> = OrderedMap::new();
    for (name, value) in parse_query(src.raw_query) {
        match query.get_mut(&name) {
            Some(values) => values.push(value),
            None => query.push_new(name, vec![value]),
        }
    }
    j.key("queryStringParameters");
    if query.entries.is_empty() {
        j.null();
    } else {
        j.open('{');
        for (name, values) in &query.entries {
            j.kv(name, values.last().map_or("", |v| v));
        }
        j.close('}');
    }
    j.key("multiValueQueryStringParameters");
    if query.entries.is_empty() {
        j.null();
    } else {
        j.open('{');
        for (name, values) in &query.entries {
            j.key(name);
            j.open('[');
            for value in values {
                j.str(value);
            }
            j.close(']');
        }
        j.close('}');
    }

    let params_and_variables = |j: &mut Json| {
        j.key("pathParameters");
        if src.path_params.is_empty() {
            j.null();
        } else {
            j.str_map(src.path_params.iter().copied());
        }
        j.key("stageVariables");
        if src.stage_variables.is_empty() {
            j.null();
        } else {
            j.str_map(src.stage_variables.iter().map(|(k, v)| (&**k, &**v)));
        }
    };
    if rest {
        params_and_variables(&mut j);
    }

    j.key("requestContext");
    write_request_context(&mut j, src, rest, authorizer.is_none(), scan.user_agent.as_deref());

    if !rest {
        params_and_variables(&mut j);
    }
    if authorizer.is_some() {
        j.close('}');
        return j.out;
    }
    j.key("body");
    let mut is_b64 = false;
    if src.body.is_empty() {
        j.null();
    } else {
        let content_type = scan.content_type.as_deref();
        let as_binary = if rest {
            is_binary_media_type(content_type, src.binary_media_types)
        } else {
            !is_text_media_type_http_api(content_type)
        };
        is_b64 = write_body(&mut j, src.body, as_binary);
    }
    j.key("isBase64Encoded");
    j.bool(is_b64);
    j.close('}');
    j.out
}

#[cfg(test)]
mod tests {
    //! Port of tests/test_lambda_events.py (same inputs, same expectations).

    use super::*;
    use crate::lambda::response::{parse_json, J};
    use http::{HeaderMap, HeaderName, HeaderValue};
    use proptest::prelude::*;
    use serde_json::{json, Value};

    /// 2020-03-12T19:03:58.390Z, the instant of AWS's documented 2.0 sample event.
    const EPOCH_MS: u64 = 1_584_039_838_390;
    const TRACE_ID: &str = "Root=1-5e6a8a9e-0123456789abcdef01234567";
    const EXTENDED_ID: &str = "TWegAcC4EowCHnA=";

    /// The Python tests' `make_ctx`, with the same defaults.
    struct Ctx {
        format: PayloadFormat,
        method: String,
        path: String,
        raw_path: Option<String>,
        raw_query: String,
        headers: Option<Vec<(String, Vec<u8>)>>,
        host: String,
        scheme: String,
        client_ip: String,
        api_id: String,
        stage: String,
        stage_variables: Vec<(Box<str>, Box<str>)>,
        route_key: String,
        resource_path: Option<String>,
        path_params: Vec<(String, String)>,
        request_id: String,
        time_epoch_ms: u64,
        binary_media_types: Vec<Box<str>>,
        auth: AuthContext,
        /// A Lambda authorizer's REQUEST event instead of the proxy event: (ARN, identity values).
        authorizer: Option<(String, Vec<String>)>,
    }

    fn ctx(format: PayloadFormat) -> Ctx {
        Ctx {
            format,
            method: "GET".into(),
            path: "/my/path".into(),
            raw_path: None,
            raw_query: String::new(),
            headers: None,
            host: "abc123.execute-api.us-east-1.amazonaws.com".into(),
            scheme: "https".into(),
            client_ip: "192.0.2.1".into(),
            api_id: "abc123".into(),
            stage: "$default".into(),
            stage_variables: Vec::new(),
            route_key: "$default".into(),
            resource_path: None,
            path_params: Vec::new(),
            request_id: "JKJaXmPLvHcESHA=".into(),
            time_epoch_ms: EPOCH_MS,
            binary_media_types: Vec::new(),
            auth: AuthContext::default(),
            authorizer: None,
        }
    }

    fn v2() -> Ctx {
        ctx(PayloadFormat::HttpV2)
    }

    fn http_v1() -> Ctx {
        ctx(PayloadFormat::HttpV1)
    }

    /// The Python tests' `rest_ctx`.
    fn rest() -> Ctx {
        let mut c = ctx(PayloadFormat::RestV1);
        c.stage = "prod".into();
        c.route_key = "ANY /{proxy+}".into();
        c.resource_path = Some("/{proxy+}".into());
        c.path = "/proxy-value".into();
        c.path_params = vec![("proxy".into(), "proxy-value".into())];
        c.request_id = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef".into();
        c
    }

    impl Ctx {
        fn headers(mut self, headers: &[(&str, &str)]) -> Self {
            self.headers = Some(
                headers
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
                    .collect(),
            );
            self
        }

        fn vars(mut self, vars: &[(&str, &str)]) -> Self {
            self.stage_variables = vars.iter().map(|(k, v)| (Box::from(*k), Box::from(*v))).collect();
            self
        }

        fn params(mut self, params: &[(&str, &str)]) -> Self {
            self.path_params = params.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
            self
        }

        fn binary(mut self, types: &[&str]) -> Self {
            self.binary_media_types = types.iter().map(|t| Box::from(*t)).collect();
            self
        }

        fn build_raw(&self, body: &[u8]) -> String {
            let raw_path = match &self.raw_path {
                Some(p) => p.clone(),
                None if self.stage == "$default" => self.path.clone(),
                None => format!("/{}{}", self.stage, self.path),
            };
            let pairs = match &self.headers {
                Some(h) => h.clone(),
                None => vec![
                    ("host".into(), self.host.clone().into_bytes()),
                    ("user-agent".into(), b"curl/8.5.0".to_vec()),
                    ("accept".into(), b"*/*".to_vec()),
                ],
            };
            let mut headers = HeaderMap::new();
            for (k, v) in pairs {
                headers.append(
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_bytes(&v).unwrap(),
                );
            }
            let resource_path = match &self.resource_path {
                Some(r) => r.clone(),
                None => self
                    .route_key
                    .split_once(' ')
                    .map_or(self.route_key.clone(), |(_, r)| r.to_owned()),
            };
            let params: Vec<(&str, &str)> = self.path_params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let src = EventSource {
                format: self.format,
                request_id: &self.request_id,
                extended_request_id: EXTENDED_ID,
                trace_id: TRACE_ID,
                method: &self.method,
                raw_path: &raw_path,
                path: &self.path,
                raw_query: &self.raw_query,
                headers: &headers,
                host: &self.host,
                scheme: &self.scheme,
                protocol: "HTTP/1.1",
                client_ip: &self.client_ip,
                time_epoch_ms: self.time_epoch_ms,
                account_id: "123456789012",
                api_id: &self.api_id,
                stage: &self.stage,
                deployment_id: "dep123",
                route_key: &self.route_key,
                resource_path: &resource_path,
                path_params: &params,
                stage_variables: &self.stage_variables,
                body,
                binary_media_types: &self.binary_media_types,
                auth: &self.auth,
            };
            let event = match &self.authorizer {
                Some((arn, identity)) => build_authorizer_event(&src, &AuthorizerHead { arn, identity }),
                None => build_event(&src),
            };
            String::from_utf8(event).expect("events are UTF-8")
        }

        fn build(&self, body: &[u8]) -> Value {
            serde_json::from_str(&self.build_raw(body)).expect("events are JSON")
        }

        /// The keys of the event (or of the object at `path` in it), in the order written.
        fn keys(&self, path: &[&str]) -> Vec<String> {
            self.keys_with_body(b"", path)
        }

        fn keys_with_body(&self, body: &[u8], path: &[&str]) -> Vec<String> {
            let raw = self.build_raw(body);
            let mut value = parse_json(raw.as_bytes()).expect("events are JSON");
            for step in path {
                let J::Obj(obj) = value else { panic!("not an object") };
                value = obj.entries.into_iter().find(|(k, _)| k == step).expect("key").1;
            }
            let J::Obj(obj) = value else { panic!("not an object") };
            obj.entries.into_iter().map(|(k, _)| k).collect()
        }
    }

    fn is_trace(value: &Value) -> bool {
        let s = value.as_str().unwrap();
        s.len() == 40
            && s.starts_with("Root=1-")
            && s.as_bytes()[15] == b'-'
            && s[7..15]
                .bytes()
                .chain(s[16..].bytes())
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    }

    fn b64(data: &[u8]) -> String {
        let mut out = String::new();
        base64_encode(data, &mut out);
        out
    }

    // ---------------------------------------------------------------------------------------------
    // 2.0

    #[test]
    fn v2_documented_shape() {
        let mut c = v2()
            .headers(&[
                ("host", "abc123.execute-api.us-east-1.amazonaws.com"),
                ("user-agent", "agent"),
                ("header2", "value1"),
                ("header2", "value2"),
                ("content-type", "text/plain"),
                ("cookie", "cookie1=a; cookie2=b"),
            ])
            .params(&[("parameter1", "value1")])
            .vars(&[("stageVariable1", "value1")]);
        c.method = "POST".into();
        c.raw_query = "parameter1=value1&parameter1=value2&parameter2=value".into();
        let event = c.build(b"Hello from Lambda");
        assert_eq!(
            c.keys_with_body(b"Hello from Lambda", &[]),
            [
                "version",
                "routeKey",
                "rawPath",
                "rawQueryString",
                "cookies",
                "headers",
                "queryStringParameters",
                "requestContext",
                "body",
                "pathParameters",
                "isBase64Encoded",
                "stageVariables",
            ]
        );
        assert_eq!(event["version"], "2.0");
        assert_eq!(event["routeKey"], "$default");
        assert_eq!(event["rawPath"], "/my/path");
        assert_eq!(
            event["rawQueryString"],
            "parameter1=value1&parameter1=value2&parameter2=value"
        );
        assert_eq!(event["cookies"], json!(["cookie1=a", "cookie2=b"]));
        assert_eq!(
            event["queryStringParameters"],
            json!({"parameter1": "value1,value2", "parameter2": "value"})
        );
        assert_eq!(event["body"], "Hello from Lambda");
        assert_eq!(event["isBase64Encoded"], false);
        assert_eq!(event["pathParameters"], json!({"parameter1": "value1"}));
        assert_eq!(event["stageVariables"], json!({"stageVariable1": "value1"}));
        let headers = &event["headers"];
        assert_eq!(headers["header2"], "value1,value2");
        assert!(headers.get("cookie").is_none());
        assert_eq!(headers["x-forwarded-for"], "192.0.2.1");
        assert_eq!(headers["x-forwarded-port"], "443");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert!(is_trace(&headers["x-amzn-trace-id"]));
        assert_eq!(
            event["requestContext"],
            json!({
                "accountId": "123456789012",
                "apiId": "abc123",
                "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
                "domainPrefix": "abc123",
                "http": {
                    "method": "POST",
                    "path": "/my/path",
                    "protocol": "HTTP/1.1",
                    "sourceIp": "192.0.2.1",
                    "userAgent": "agent",
                },
                "requestId": "JKJaXmPLvHcESHA=",
                "routeKey": "$default",
                "stage": "$default",
                "time": "12/Mar/2020:19:03:58 +0000",
                "timeEpoch": EPOCH_MS,
            })
        );
        assert_eq!(
            c.keys_with_body(b"x", &["requestContext"]),
            [
                "accountId",
                "apiId",
                "domainName",
                "domainPrefix",
                "http",
                "requestId",
                "routeKey",
                "stage",
                "time",
                "timeEpoch"
            ]
        );
        assert_eq!(
            c.keys_with_body(b"x", &["requestContext", "http"]),
            ["method", "path", "protocol", "sourceIp", "userAgent"]
        );
        // Header names in the order seen, then the ones the gateway sets.
        assert_eq!(
            c.keys_with_body(b"x", &["headers"]),
            [
                "host",
                "user-agent",
                "header2",
                "content-type",
                "x-amzn-trace-id",
                "x-forwarded-for",
                "x-forwarded-port",
                "x-forwarded-proto",
            ]
        );
    }

    #[test]
    fn v2_omits_empty_members() {
        let event = v2().build(b"");
        for key in [
            "cookies",
            "queryStringParameters",
            "pathParameters",
            "stageVariables",
            "body",
        ] {
            assert!(event.get(key).is_none(), "{key}");
        }
        assert_eq!(event["rawQueryString"], "");
        assert_eq!(event["isBase64Encoded"], false);
    }

    #[test]
    fn v2_named_stage_raw_path() {
        let mut c = v2();
        c.stage = "dev".into();
        c.path = "/testApi".into();
        c.route_key = "GET /testApi".into();
        let event = c.build(b"");
        assert_eq!(event["rawPath"], "/dev/testApi");
        assert_eq!(event["requestContext"]["http"]["path"], "/dev/testApi");
        assert_eq!(event["requestContext"]["stage"], "dev");
        assert_eq!(event["routeKey"], "GET /testApi");
    }

    #[test]
    fn v2_repeated_cookie_headers_and_no_space() {
        let event = v2()
            .headers(&[("cookie", "a=1; b=2"), ("x", "1"), ("cookie", "c=3;d=4")])
            .build(b"");
        assert_eq!(event["cookies"], json!(["a=1", "b=2", "c=3", "d=4"]));
        assert!(event["headers"].get("cookie").is_none());
    }

    #[test]
    fn v2_base64_rule() {
        let cases: [(Option<&str>, bool); 12] = [
            (Some("text/plain"), false),
            (Some("text/html; charset=utf-8"), false),
            (Some("application/json"), false),
            (Some("Application/JSON; charset=UTF-8"), false),
            (Some("application/xml"), false),
            (Some("application/javascript"), false),
            (None, true),
            (Some("application/octet-stream"), true),
            (Some("application/x-www-form-urlencoded"), true),
            (Some("image/png"), true),
            (Some("multipart/form-data; boundary=x"), true),
            (Some("application/problem+json"), true),
        ];
        for (content_type, binary) in cases {
            let mut headers = vec![("host", "h.example.com")];
            if let Some(ct) = content_type {
                headers.push(("content-type", ct));
            }
            let mut c = v2().headers(&headers);
            c.method = "POST".into();
            let event = c.build(b"hello");
            assert_eq!(event["isBase64Encoded"], binary, "{content_type:?}");
            assert_eq!(
                event["body"],
                if binary { b64(b"hello") } else { "hello".into() },
                "{content_type:?}"
            );
            assert_eq!(is_text_media_type_http_api(content_type), !binary, "{content_type:?}");
        }
    }

    #[test]
    fn v2_binary_body_round_trips() {
        let payload: Vec<u8> = (0..=255).collect();
        let mut c = v2().headers(&[("content-type", "application/octet-stream")]);
        c.method = "POST".into();
        let event = c.build(&payload);
        assert_eq!(event["isBase64Encoded"], true);
        assert_eq!(event["body"], b64(&payload));
        assert_eq!(
            crate::lambda::response::b64decode(event["body"].as_str().unwrap()).unwrap(),
            payload
        );
    }

    #[test]
    fn v2_invalid_utf8_text_body_is_base64() {
        let mut c = v2().headers(&[("content-type", "text/plain")]);
        c.method = "POST".into();
        let event = c.build(b"\xff\xfe");
        assert_eq!(event["isBase64Encoded"], true);
        assert_eq!(event["body"], "//4=");
    }

    #[test]
    fn forwarded_headers_append_and_port_from_host() {
        let mut c = v2().headers(&[
            ("host", "localhost:8080"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "spoofed"),
            ("x-amzn-trace-id", "Root=1-5e7fe714-fee6909429159440eb352c40"),
        ]);
        c.host = "localhost:8080".into();
        c.scheme = "http".into();
        let event = c.build(b"");
        let headers = &event["headers"];
        assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 192.0.2.1");
        assert_eq!(headers["x-forwarded-port"], "8080");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-amzn-trace-id"], "Root=1-5e7fe714-fee6909429159440eb352c40");
        let context = &event["requestContext"];
        assert_eq!(context["domainName"], "localhost:8080");
        assert_eq!(context["domainPrefix"], "localhost");
    }

    #[test]
    fn host_added_and_hop_by_hop_dropped() {
        let mut c = v2().headers(&[("connection", "keep-alive"), ("content-length", "3")]);
        c.host = "api.example.com".into();
        let headers = c.build(b"abc")["headers"].clone();
        assert_eq!(headers["host"], "api.example.com");
        assert!(headers.get("connection").is_none());
        assert_eq!(headers["content-length"], "3"); // HTTP APIs keep it
        let rest = ctx(PayloadFormat::RestV1)
            .headers(&[("content-length", "3")])
            .build(b"abc");
        assert!(rest["headers"].get("content-length").is_none());
    }

    // ---------------------------------------------------------------------------------------------
    // 1.0 for HTTP APIs

    #[test]
    fn http_v1_shape_and_nulls() {
        let c = http_v1();
        let event = c.build(b"");
        assert_eq!(
            c.keys(&[]),
            [
                "version",
                "resource",
                "path",
                "httpMethod",
                "headers",
                "multiValueHeaders",
                "queryStringParameters",
                "multiValueQueryStringParameters",
                "requestContext",
                "pathParameters",
                "stageVariables",
                "body",
                "isBase64Encoded",
            ]
        );
        assert_eq!(event["version"], "1.0");
        assert_eq!(event["resource"], "$default");
        for key in [
            "queryStringParameters",
            "multiValueQueryStringParameters",
            "pathParameters",
            "stageVariables",
            "body",
        ] {
            assert_eq!(event.get(key), Some(&Value::Null), "{key}");
        }
        assert_eq!(event["isBase64Encoded"], false);
        let context = &event["requestContext"];
        assert_eq!(context["authorizer"], json!({"claims": null, "scopes": null}));
        assert_eq!(context["resourceId"], Value::Null);
        assert_eq!(context["resourcePath"], "$default");
        assert_eq!(context["stage"], "$default");
        assert_eq!(context["extendedRequestId"], "JKJaXmPLvHcESHA=");
        assert_eq!(context["requestId"], "JKJaXmPLvHcESHA=");
        assert_eq!(context["requestTime"], "12/Mar/2020:19:03:58 +0000");
        assert_eq!(context["requestTimeEpoch"], EPOCH_MS);
        assert!(context.get("deploymentId").is_none());
        assert_eq!(context["identity"]["sourceIp"], "192.0.2.1");
        assert_eq!(context["identity"]["userAgent"], "curl/8.5.0");
        assert_eq!(context["identity"]["accessKey"], Value::Null);
        assert_eq!(
            c.keys(&["requestContext"]),
            [
                "accountId",
                "apiId",
                "authorizer",
                "domainName",
                "domainPrefix",
                "extendedRequestId",
                "httpMethod",
                "identity",
                "path",
                "protocol",
                "requestId",
                "requestTime",
                "requestTimeEpoch",
                "resourceId",
                "resourcePath",
                "stage",
            ]
        );
    }

    #[test]
    fn http_v1_repeats_last_value_wins() {
        let mut c = http_v1()
            .headers(&[("x-rep", "one"), ("x-rep", "two"), ("cookie", "c=1")])
            .params(&[("id", "7")])
            .vars(&[("color", "blue")]);
        c.raw_query = "a=1&a=2&b=x%20y".into();
        c.route_key = "GET /items/{id}".into();
        c.stage = "dev".into();
        c.path = "/items/7".into();
        let event = c.build(b"");
        assert_eq!(event["headers"]["x-rep"], "two");
        assert_eq!(event["multiValueHeaders"]["x-rep"], json!(["one", "two"]));
        assert_eq!(event["headers"]["cookie"], "c=1");
        assert_eq!(event["queryStringParameters"], json!({"a": "2", "b": "x y"}));
        assert_eq!(
            event["multiValueQueryStringParameters"],
            json!({"a": ["1", "2"], "b": ["x y"]})
        );
        assert_eq!(event["pathParameters"], json!({"id": "7"}));
        assert_eq!(event["stageVariables"], json!({"color": "blue"}));
        assert_eq!(event["resource"], "/items/{id}");
        assert_eq!(event["path"], "/dev/items/7");
        assert_eq!(event["requestContext"]["path"], "/dev/items/7");
        assert_eq!(event["requestContext"]["resourcePath"], "/items/{id}");
        // every header name is lower-case for HTTP APIs
        for name in event["headers"].as_object().unwrap().keys() {
            assert_eq!(name, &name.to_lowercase());
        }
    }

    #[test]
    fn http_v1_base64_uses_http_api_rule() {
        let mut c = http_v1()
            .headers(&[("content-type", "application/octet-stream")])
            .binary(&["application/json"]);
        c.method = "POST".into();
        let event = c.build(b"\x00\x01"); // binaryMediaTypes ignored
        assert_eq!(event["isBase64Encoded"], true);
        assert_eq!(event["body"], "AAE=");
        let mut t = http_v1().headers(&[("content-type", "application/json")]);
        t.method = "POST".into();
        let text = t.build(b"{}");
        assert_eq!(text["body"], "{}");
        assert_eq!(text["isBase64Encoded"], false);
    }

    // ---------------------------------------------------------------------------------------------
    // 1.0 for REST APIs

    #[test]
    fn rest_shape() {
        let c = rest();
        let event = c.build(b"");
        assert!(event.get("version").is_none());
        assert_eq!(
            c.keys(&[]),
            [
                "resource",
                "path",
                "httpMethod",
                "headers",
                "multiValueHeaders",
                "queryStringParameters",
                "multiValueQueryStringParameters",
                "pathParameters",
                "stageVariables",
                "requestContext",
                "body",
                "isBase64Encoded",
            ]
        );
        assert_eq!(event["resource"], "/{proxy+}");
        assert_eq!(event["path"], "/proxy-value");
        assert_eq!(event["pathParameters"], json!({"proxy": "proxy-value"}));
        assert_eq!(event["queryStringParameters"], Value::Null);
        assert_eq!(event["stageVariables"], Value::Null);
        assert_eq!(event["body"], Value::Null);
        let context = &event["requestContext"];
        assert_eq!(
            c.keys(&["requestContext"]),
            [
                "accountId",
                "apiId",
                "deploymentId",
                "domainName",
                "domainPrefix",
                "extendedRequestId",
                "httpMethod",
                "identity",
                "path",
                "protocol",
                "requestId",
                "requestTime",
                "requestTimeEpoch",
                "resourceId",
                "resourcePath",
                "stage",
            ]
        );
        assert_eq!(context["path"], "/prod/proxy-value");
        assert_eq!(context["stage"], "prod");
        assert_eq!(context["deploymentId"], "dep123");
        assert_eq!(context["requestId"], "c6af9ac6-7b61-11e6-9a41-93e8deadbeef");
        let extended = context["extendedRequestId"].as_str().unwrap();
        assert!(extended.len() == 16 && extended.ends_with('=') && extended[..15].bytes().all(|b| B64.contains(&b)));
        let resource_id = context["resourceId"].as_str().unwrap();
        assert!(
            resource_id.len() == 6
                && resource_id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        assert_eq!(context["resourcePath"], "/{proxy+}");
        assert!(context.get("authorizer").is_none());
        assert_eq!(
            c.keys(&["requestContext", "identity"]),
            [
                "accessKey",
                "accountId",
                "caller",
                "cognitoAuthenticationProvider",
                "cognitoAuthenticationType",
                "cognitoIdentityId",
                "cognitoIdentityPoolId",
                "principalOrgId",
                "sourceIp",
                "user",
                "userAgent",
                "userArn",
            ]
        );
    }

    #[test]
    fn rest_header_names_and_added_headers() {
        let c = rest().headers(&[
            ("host", "h.example.com"),
            ("user-agent", "ua"),
            ("authorization", "t"),
            ("x-a", "1"),
        ]);
        let headers = c.build(b"")["headers"].clone();
        assert_eq!(headers["Host"], "h.example.com");
        assert_eq!(headers["User-Agent"], "ua");
        assert_eq!(headers["Authorization"], "t");
        assert_eq!(headers["x-a"], "1");
        assert_eq!(headers["X-Forwarded-For"], "192.0.2.1");
        assert_eq!(headers["X-Forwarded-Port"], "443");
        assert_eq!(headers["X-Forwarded-Proto"], "https");
        assert!(is_trace(&headers["X-Amzn-Trace-Id"]));
        let multi = c.build(b"")["multiValueHeaders"].clone();
        assert_eq!(multi["Host"], json!(["h.example.com"]));
        assert_eq!(multi["X-Forwarded-Proto"], json!(["https"]));
    }

    /// Python: the id is made once per request and kept in `ctx.extra`; here the caller makes it
    /// and every build of the request's event carries it.
    #[test]
    fn rest_extended_request_id_comes_from_the_source() {
        let c = rest();
        let first = c.build(b"")["requestContext"]["extendedRequestId"].clone();
        assert_eq!(first, EXTENDED_ID);
        assert_eq!(c.build(b"")["requestContext"]["extendedRequestId"], first);
    }

    #[test]
    fn rest_base64_follows_binary_media_types() {
        let mut c = rest().headers(&[("content-type", "image/png")]);
        c.method = "POST".into();
        let text = c.build(b"png");
        assert_eq!(text["isBase64Encoded"], false);
        assert_eq!(text["body"], "png");
        let binary = c.binary(&["image/*"]).build(b"png");
        assert_eq!(binary["isBase64Encoded"], true);
        assert_eq!(binary["body"], b64(b"png"));
        // No Content-Type: text unless */* is a binary media type.
        let mut bare = rest().headers(&[]);
        bare.method = "POST".into();
        assert_eq!(bare.build(b"x")["isBase64Encoded"], false);
        assert_eq!(bare.binary(&["*/*"]).build(b"x")["isBase64Encoded"], true);
    }

    #[test]
    fn is_binary_media_type_patterns() {
        let types = |t: &[&str]| t.iter().map(|s| Box::from(*s)).collect::<Vec<Box<str>>>();
        assert!(is_binary_media_type(Some("image/png"), &types(&["image/png"])));
        assert!(is_binary_media_type(Some("image/png; q=1"), &types(&["image/*"])));
        assert!(is_binary_media_type(Some("text/plain"), &types(&["*/*"])));
        assert!(!is_binary_media_type(Some("image/png"), &types(&[])));
        assert!(!is_binary_media_type(Some("text/plain"), &types(&["image/*"])));
        assert!(!is_binary_media_type(None, &types(&["image/*"])));
    }

    /// Python: mutating one event must not reach the configuration. Rust events are fresh bytes;
    /// what is left to check is that the values are all there, every time.
    #[test]
    fn events_share_nothing_with_the_configuration() {
        for format in [PayloadFormat::HttpV2, PayloadFormat::HttpV1] {
            let c = ctx(format).vars(&[("a", "1")]).params(&[("id", "1")]);
            let (first, second) = (c.build(b""), c.build(b""));
            assert_eq!(first, second);
            assert_eq!(first["stageVariables"], json!({"a": "1"}));
            assert_eq!(first["pathParameters"], json!({"id": "1"}));
            assert_eq!(&*c.stage_variables[0].1, "1");
        }
    }

    #[test]
    fn request_time_format() {
        assert_eq!(format_request_time(1_583_349_317_135), "04/Mar/2020:19:15:17 +0000");
        assert_eq!(format_request_time(1_583_348_638_390), "04/Mar/2020:19:03:58 +0000");
        assert_eq!(format_request_time(0), "01/Jan/1970:00:00:00 +0000");
        // leap days and the end of a century (values from the Python)
        assert_eq!(format_request_time(951_782_400_000), "29/Feb/2000:00:00:00 +0000");
        assert_eq!(format_request_time(4_102_444_799_999), "31/Dec/2099:23:59:59 +0000");
        assert_eq!(format_request_time(1_709_164_800_000), "29/Feb/2024:00:00:00 +0000");
    }

    // ---------------------------------------------------------------------------------------------
    // Query strings

    fn pairs(raw: &str) -> Vec<(String, String)> {
        parse_query(raw)
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    fn owned(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn parse_query_edges() {
        assert_eq!(pairs(""), owned(&[]));
        assert_eq!(pairs("a"), owned(&[("a", "")]));
        assert_eq!(pairs("a=&b=1&&c"), owned(&[("a", ""), ("b", "1"), ("c", "")]));
        assert_eq!(pairs("k%20ey=v+a%2Bl=ue"), owned(&[("k ey", "v a+l=ue")]));
        assert_eq!(pairs("x=%E2%82%AC"), owned(&[("x", "\u{20ac}")]));
    }

    /// urllib.parse.unquote's corner cases (expectations from the Python).
    #[test]
    fn parse_query_unquote_like_python() {
        let r = "\u{fffd}";
        assert_eq!(pairs("a%2"), owned(&[("a%2", "")]));
        assert_eq!(pairs("%zz=%4"), owned(&[("%zz", "%4")]));
        assert_eq!(pairs("x=%E2%82"), owned(&[("x", r)]));
        assert_eq!(pairs("x=%C3%A9\u{e9}%41"), owned(&[("x", "\u{e9}\u{e9}A")]));
        assert_eq!(pairs("%\u{20ac}41=1"), owned(&[("%\u{20ac}41", "1")]));
        assert_eq!(
            pairs("k=%E2\u{e9}%82%AC"),
            vec![("k".into(), format!("{r}\u{e9}{r}{r}"))]
        );
        assert_eq!(pairs("a+b=c+%2B"), owned(&[("a b", "c +")]));
        assert_eq!(pairs("=v"), owned(&[("", "v")]));
        assert_eq!(pairs("=="), owned(&[("", "=")]));
        assert_eq!(pairs("a=b=c&&&"), owned(&[("a", "b=c")]));
        assert_eq!(
            pairs("%F0%9F%98%80=%ff%fe"),
            vec![("\u{1f600}".into(), format!("{r}{r}"))]
        );
    }

    /// Python's `urlencode` (quote_plus of each name and value).
    fn urlencode(pairs: &[(String, String)]) -> String {
        let enc = |s: &str| {
            let mut out = String::new();
            for &b in s.as_bytes() {
                match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => out.push(b as char),
                    b' ' => out.push('+'),
                    _ => out.push_str(&format!("%{b:02X}")),
                }
            }
            out
        };
        pairs
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    fn text(min: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(any::<char>(), min..=12).prop_map(String::from_iter)
    }

    fn grouped(pairs: &[(String, String)]) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for (k, v) in pairs {
            match out.iter_mut().find(|(name, _)| name == k) {
                Some((_, values)) => values.push(v.clone()),
                None => out.push((k.clone(), vec![v.clone()])),
            }
        }
        out
    }

    proptest! {
        #[test]
        fn query_round_trips_v1_multi_value(p in proptest::collection::vec((text(1), text(0)), 0..=8)) {
            let raw = urlencode(&p);
            let mut c = http_v1();
            c.raw_query = raw.clone();
            let event = c.build(b"");
            prop_assert_eq!(pairs(&raw), p.clone());
            let groups = grouped(&p);
            let (multi, single) = if groups.is_empty() {
                (Value::Null, Value::Null)
            } else {
                (
                    Value::Object(groups.iter().map(|(k, v)| (k.clone(), json!(v))).collect()),
                    Value::Object(groups.iter().map(|(k, v)| (k.clone(), json!(v.last().unwrap()))).collect()),
                )
            };
            prop_assert_eq!(&event["multiValueQueryStringParameters"], &multi);
            prop_assert_eq!(&event["queryStringParameters"], &single);
        }

        #[test]
        fn query_round_trips_v2_comma_joined(p in proptest::collection::vec((text(1), text(0)), 0..=8)) {
            let raw = urlencode(&p);
            let mut c = v2();
            c.raw_query = raw.clone();
            let event = c.build(b"");
            let joined: serde_json::Map<String, Value> =
                grouped(&p).into_iter().map(|(k, v)| (k, json!(v.join(",")))).collect();
            let got = event.get("queryStringParameters").cloned().unwrap_or(json!({}));
            prop_assert_eq!(got, Value::Object(joined));
            prop_assert_eq!(&event["rawQueryString"], &json!(raw));
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Beyond the Python tests: pieces checked against the Python's output

    #[test]
    fn resource_id_matches_python() {
        assert_eq!(rest_resource_id("abc123", "/{proxy+}"), "nk1ykb");
        assert_eq!(rest_resource_id("", ""), "0u9qmi");
        assert_eq!(
            rest_resource_id(&"x".repeat(100), &format!("/{}", "y".repeat(200))),
            "shvvpu"
        );
        assert_eq!(rest_resource_id("abc123", "/"), "4etrck");
    }

    #[test]
    fn blake2b_matches_hashlib() {
        let hex = |d: [u8; 8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(hex(blake2b_64(b"")), "e4a6a0577479b2b4");
        assert_eq!(hex(blake2b_64(&[b'a'; 300])), "8b397aa4c75429a2");
        assert_eq!(hex(blake2b_64(&[b'a'; 256])), "78b03efd0a5ea28b");
        assert_eq!(hex(blake2b_64(&[b'a'; 128])), "f06643fe9c7e18da");
    }

    #[test]
    fn host_parts_like_python() {
        for (host, http, https) in [
            ("[::1]:8080", ("::1", "8080"), ("::1", "8080")),
            ("[::1]", ("::1", "80"), ("::1", "443")),
            ("[]:80", ("", "80"), ("", "80")),
            ("[::1]x", ("::1", "80"), ("::1", "443")),
            ("h:", ("h:", "80"), ("h:", "443")),
            ("a.b.c:99", ("a", "99"), ("a", "99")),
            ("::1", (":", "1"), (":", "1")),
            ("", ("", "80"), ("", "443")),
            ("localhost", ("localhost", "80"), ("localhost", "443")),
            ("x.y:0x1", ("x", "80"), ("x", "443")),
        ] {
            assert_eq!(host_parts(host, "http"), http, "{host}");
            assert_eq!(host_parts(host, "https"), https, "{host}");
        }
    }

    #[test]
    fn header_values_decode_like_python_and_strings_are_escaped() {
        let mut c = v2().headers(&[("x-bin", "")]);
        c.headers = Some(vec![
            ("x-bin".into(), b"a\xffb".to_vec()),
            ("cookie".into(), b"k=\xe9; j=\"q\"".to_vec()),
            ("x-tab".into(), b"a\tb".to_vec()),
        ]);
        c.raw_path = Some("/p\"\\\u{1}".into());
        let event = c.build(b"");
        assert_eq!(event["headers"]["x-bin"], "a\u{fffd}b");
        assert_eq!(event["headers"]["x-tab"], "a\tb");
        assert_eq!(event["cookies"], json!(["k=\u{fffd}", "j=\"q\""]));
        assert_eq!(event["rawPath"], "/p\"\\\u{1}");
    }

    #[test]
    fn empty_client_headers_fall_back_to_gateway_values() {
        // An empty X-Amzn-Trace-Id gets the gateway's; an empty first X-Forwarded-For is replaced
        // by the next one; v2 takes the first non-empty User-Agent, v1 the first one.
        let headers = [
            ("x-amzn-trace-id", ""),
            ("x-forwarded-for", ""),
            ("x-forwarded-for", "198.51.100.1"),
            ("user-agent", ""),
            ("user-agent", "second"),
        ];
        let event = v2().headers(&headers).build(b"");
        assert_eq!(event["headers"]["x-amzn-trace-id"], TRACE_ID);
        assert_eq!(event["headers"]["x-forwarded-for"], "198.51.100.1, 192.0.2.1");
        assert_eq!(event["requestContext"]["http"]["userAgent"], "second");
        assert_eq!(event["headers"]["user-agent"], ",second");
        let event = http_v1().headers(&headers).build(b"");
        assert_eq!(event["requestContext"]["identity"]["userAgent"], "");
        let event = http_v1().headers(&[]).build(b"");
        assert_eq!(event["requestContext"]["identity"]["userAgent"], Value::Null);
    }

    fn lambda_grant() -> AuthContext {
        let context = json!({"tenant": "t1", "admin": true, "n": 3});
        AuthContext {
            granted: Granted::Lambda {
                principal_id: Some("user|a1".into()),
                context: context.as_object().unwrap().clone(),
                usage_identifier_key: None,
                latency_ms: 12,
            },
            api_key: Some(crate::auth::ApiKeyIdentity {
                value: "k".repeat(20),
                id: "key1".into(),
                index: 0,
                plan_key: None,
            }),
            ..AuthContext::default()
        }
    }

    #[test]
    fn rest_events_carry_the_authorizer_context_as_strings_and_the_api_key() {
        let mut c = ctx(PayloadFormat::RestV1);
        c.auth = lambda_grant();
        let event = c.build(b"");
        let authorizer = &event["requestContext"]["authorizer"];
        assert_eq!(
            authorizer,
            &json!({"tenant": "t1", "admin": "true", "n": "3", "principalId": "user|a1", "integrationLatency": 12})
        );
        assert_eq!(event["requestContext"]["identity"]["apiKey"], "k".repeat(20));
        assert_eq!(event["requestContext"]["identity"]["apiKeyId"], "key1");
        // Without authorization, REST events have no authorizer at all.
        assert!(ctx(PayloadFormat::RestV1).build(b"")["requestContext"].get("authorizer").is_none());
    }

    #[test]
    fn v2_events_carry_lambda_jwt_and_iam_grants_as_aws_nests_them() {
        let mut c = ctx(PayloadFormat::HttpV2);
        c.auth = lambda_grant();
        let event = c.build(b"");
        assert_eq!(event["requestContext"]["authorizer"], json!({"lambda": {"tenant": "t1", "admin": true, "n": 3}}));

        let claims = json!({"sub": "u1", "groups": ["a", "b"], "exp": 1700000000});
        c.auth = AuthContext {
            granted: Granted::Jwt {
                claims: std::sync::Arc::new(claims.as_object().unwrap().clone()),
                scopes: Some(vec!["read".into()]),
            },
            ..AuthContext::default()
        };
        let event = c.build(b"");
        assert_eq!(
            event["requestContext"]["authorizer"],
            json!({"jwt": {"claims": {"sub": "u1", "groups": "[a b]", "exp": "1700000000"}, "scopes": ["read"]}})
        );

        c.auth = AuthContext {
            iam: Some(crate::auth::IamIdentity {
                access_key: "AKIDEXAMPLE".into(),
                account_id: "123456789012".into(),
                caller: "AIDAEXAMPLE".into(),
                user: "AIDAEXAMPLE".into(),
                user_arn: "arn:aws:iam::123456789012:user/alice".into(),
            }),
            ..AuthContext::default()
        };
        let event = c.build(b"");
        assert_eq!(event["requestContext"]["authorizer"]["iam"]["accessKey"], "AKIDEXAMPLE");
        assert_eq!(event["requestContext"]["authorizer"]["iam"]["userArn"], "arn:aws:iam::123456789012:user/alice");
        let mut v1 = ctx(PayloadFormat::RestV1);
        v1.auth = c.auth.clone();
        assert_eq!(v1.build(b"")["requestContext"]["identity"]["userArn"], "arn:aws:iam::123456789012:user/alice");
        assert!(ctx(PayloadFormat::HttpV2).build(b"")["requestContext"].get("authorizer").is_none());
    }

    fn authorizer_event(mut c: Ctx) -> Ctx {
        let arn = format!("arn:aws:execute-api:us-east-1:123456789012:{}/{}/GET/my/path", c.api_id, c.stage);
        c.authorizer = Some((arn, vec!["tok".into(), "t1".into()]));
        c.params(&[("id", "7")]).vars(&[("realm", "north")])
    }

    #[test]
    fn authorizer_events_are_the_proxy_event_headed_by_type_arn_and_identity_without_the_body() {
        let mut c = authorizer_event(rest());
        c.auth = lambda_grant();
        assert_eq!(
            c.keys_with_body(b"secret body", &[]),
            [
                "type",
                "methodArn",
                "resource",
                "path",
                "httpMethod",
                "headers",
                "multiValueHeaders",
                "queryStringParameters",
                "multiValueQueryStringParameters",
                "pathParameters",
                "stageVariables",
                "requestContext"
            ]
        );
        let event = c.build(b"secret body");
        assert_eq!(event["type"], "REQUEST");
        assert_eq!(event["methodArn"], "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/GET/my/path");
        assert!(event["requestContext"].get("authorizer").is_none());

        let c = authorizer_event(http_v1());
        assert_eq!(
            c.keys(&[])[..5],
            ["version", "type", "methodArn", "identitySource", "authorizationToken"]
        );
        let event = c.build(b"x");
        assert_eq!((&event["identitySource"], &event["authorizationToken"]), (&json!("tok,t1"), &json!("tok,t1")));
        assert!(event.get("body").is_none() && event.get("isBase64Encoded").is_none());
        assert!(event["requestContext"].get("authorizer").is_none());

        let c = authorizer_event(v2());
        assert_eq!(c.keys(&[])[..4], ["version", "type", "routeArn", "identitySource"]);
        let event = c.build(b"x");
        assert_eq!(event["identitySource"], json!(["tok", "t1"]));
        assert_eq!(event["pathParameters"], json!({"id": "7"}));
        assert_eq!(event["stageVariables"], json!({"realm": "north"}));
        assert!(event.get("body").is_none() && event.get("isBase64Encoded").is_none());
        // The proxy events themselves are unchanged.
        let proxy = v2().build(b"x");
        assert!(proxy.get("body").is_some() && proxy.get("isBase64Encoded").is_some());
    }
}
