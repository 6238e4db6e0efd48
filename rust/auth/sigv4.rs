//! AWS Signature Version 4, as API Gateway verifies it on `AWS_IAM` routes and methods: the
//! signature a request presents (the `Authorization` header, or a presigned query string), and
//! the canonical request and string to sign it must have been computed over.
//!
//! Canonical request ("Create a signed AWS API request" in the IAM user guide; botocore's
//! `SigV4Auth` is the reference client):
//! - the method;
//! - the canonical URI: the path as sent (still percent-encoded), dot segments and empty segments
//!   removed, then percent-encoded once more (every byte but the unreserved `A-Za-z0-9-_.~` and
//!   `/`): "each path segment URI-encoded twice" for every service but S3. `/a%20b` is signed as
//!   `/a%2520b`, `/%C3%A9` as `/%25C3%25A9`, `/a%2Fb` as `/a%252Fb`;
//! - the canonical query: every `name=value` pair decoded and encoded again (unreserved bytes
//!   only), sorted by name then value; a bare `name` is `name=`; the presigned form leaves its
//!   `X-Amz-Signature` out;
//! - the signed headers, lower-cased, each `name:values` (values trimmed, inner runs of white
//!   space made one space, repeated headers joined by `,`), then the list of their names;
//! - the payload's hex SHA-256 (`X-Amz-Content-Sha256` when the request sends one).
//!
//! The string to sign is `AWS4-HMAC-SHA256`, the request date, the credential scope
//! (`DATE/REGION/execute-api/aws4_request`) and the canonical request's hex SHA-256; the
//! signature is its HMAC-SHA256 under the key derived from `AWS4` + the secret, the date, the
//! region, the service and `aws4_request`. It is checked with `ring::hmac::verify` (constant
//! time). AWS's refusals are kept with their exact texts (`Refusal`).

use std::fmt;

use http::HeaderMap;
use ring::{digest, hmac};

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The service every signature to API Gateway's execute-api is scoped to.
pub const SERVICE: &str = "execute-api";
const TERMINATOR: &str = "aws4_request";
/// SHA-256 of nothing: the payload hash of a request without a body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// How far a request's date may be from the gateway's clock, either way.
pub const MAX_SKEW_S: i64 = 5 * 60;
/// The longest validity a presigned request may ask for (`X-Amz-Expires`): seven days.
pub const MAX_EXPIRES_S: i64 = 7 * 24 * 3600;

pub const SIGNATURE_MISMATCH: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";
const QUERY_PARAMETERS_REQUIRED: &str = "AWS query-string parameters must include 'X-Amz-Algorithm', 'X-Amz-Credential', 'X-Amz-Signature', 'X-Amz-Date', 'X-Amz-SignedHeaders'. Re-examine the query-string parameters.";

/// Why a signature is refused, with AWS's words for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Neither an `Authorization` header nor a presigned query string
    /// (`MissingAuthenticationTokenException`).
    Missing,
    /// A signature that cannot be read (`IncompleteSignatureException`): the message.
    Incomplete(String),
    /// A signature that does not hold (`InvalidSignatureException`): why, for the operator's log
    /// (never the message: a canonical request can hold a session token), and the message.
    Invalid(&'static str, String),
    /// An access key the gateway does not know, or a session token that is not its own
    /// (`UnrecognizedClientException`).
    Unrecognized,
}

/// Where a request carries its signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`
    Header,
    /// `?X-Amz-Algorithm=...&X-Amz-Credential=...&X-Amz-Signature=...` (a presigned URL).
    Query,
}

/// A request's signature, as it presents it (query-string values decoded).
#[derive(Clone)]
pub struct Presented {
    pub form: Form,
    pub access_key_id: String,
    pub scope_date: String,
    pub region: String,
    pub service: String,
    pub terminator: String,
    /// As listed, lower-cased.
    pub signed_headers: Vec<String>,
    pub signature: String,
    /// The request's date as it is signed (`yyyymmddThhmmssZ`; a `Date` header converted).
    pub amz_date: String,
    pub epoch_s: i64,
    /// A presigned request's `X-Amz-Expires`.
    pub expires_s: Option<i64>,
    /// `X-Amz-Security-Token` (header, or query parameter of a presigned request).
    pub security_token: Option<String>,
}

impl fmt::Debug for Presented {
    /// Without the signature and the session token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Presented")
            .field("form", &self.form)
            .field("access_key_id", &self.access_key_id)
            .field("scope", &self.scope())
            .field("signed_headers", &self.signed_headers)
            .field("amz_date", &self.amz_date)
            .field("expires_s", &self.expires_s)
            .finish_non_exhaustive()
    }
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(|v| latin1(v.as_bytes()))
}

/// Header bytes as the characters a client signed (HTTP header values are ISO-8859-1).
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

impl Presented {
    /// Read the signature of a request (`Authorization` wins over a presigned query string).
    pub fn parse(headers: &HeaderMap, raw_query: &str) -> Result<Presented, Refusal> {
        if let Some(value) = headers.get(http::header::AUTHORIZATION) {
            return Presented::from_header(&latin1(value.as_bytes()), headers);
        }
        Presented::from_query(raw_query).unwrap_or(Err(Refusal::Missing))
    }

    /// `DATE/REGION/SERVICE/aws4_request`, as presented.
    pub fn scope(&self) -> String {
        format!("{}/{}/{}/{}", self.scope_date, self.region, self.service, self.terminator)
    }

    fn from_header(value: &str, headers: &HeaderMap) -> Result<Presented, Refusal> {
        let trimmed = value.trim();
        let (algorithm, rest) = match trimmed.find(|c: char| c.is_ascii_whitespace()) {
            Some(i) => (&trimmed[..i], &trimmed[i..]),
            None => (trimmed, ""),
        };
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for token in rest.split(|c: char| c == ',' || c.is_ascii_whitespace()).filter(|t| !t.is_empty()) {
            let Some((key, item)) = token.split_once('=') else {
                return Err(Refusal::Incomplete(format!(
                    "'{token}' not a valid key=value pair (missing equal-sign) in Authorization header: '{value}'."
                )));
            };
            let slot = match key {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed,
                "Signature" => &mut signature,
                _ => continue,
            };
            slot.get_or_insert(item);
        }
        let date = header_text(headers, "x-amz-date").map(|d| (d, true)).or_else(|| header_text(headers, "date").map(|d| (d, false)));
        let mut missing = String::new();
        for (absent, name) in [(credential.is_none(), "Credential"), (signature.is_none(), "Signature"), (signed.is_none(), "SignedHeaders")] {
            if absent {
                missing.push_str(&format!("Authorization header requires '{name}' parameter. "));
            }
        }
        if date.is_none() {
            missing.push_str("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ");
        }
        let (Some(credential), Some(signed), Some(signature), Some((date, amz))) = (credential, signed, signature, date) else {
            return Err(Refusal::Incomplete(format!("{missing}Authorization={value}")));
        };
        if algorithm != ALGORITHM {
            return Err(Refusal::Incomplete(format!("Unsupported AWS 'algorithm': '{algorithm}'.")));
        }
        let epoch_s = if amz { parse_basic(&date) } else { parse_basic(&date).or_else(|| parse_http_date(&date)) }
            .ok_or_else(|| bad_date(&date))?;
        Presented::assemble(
            Form::Header,
            credential,
            signed,
            signature,
            epoch_s,
            None,
            header_text(headers, "x-amz-security-token"),
        )
    }

    /// None: the query string carries no signature.
    fn from_query(raw_query: &str) -> Option<Result<Presented, Refusal>> {
        let mut params: [Option<String>; 7] = Default::default();
        const NAMES: [&str; 7] = [
            "X-Amz-Algorithm",
            "X-Amz-Credential",
            "X-Amz-Signature",
            "X-Amz-Date",
            "X-Amz-SignedHeaders",
            "X-Amz-Expires",
            "X-Amz-Security-Token",
        ];
        for pair in raw_query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !key.starts_with("X-Amz-") && !key.contains('%') {
                continue;
            }
            let key = percent_decode(key);
            if let Some(i) = NAMES.iter().position(|n| n.as_bytes() == key.as_slice()) {
                params[i].get_or_insert_with(|| String::from_utf8_lossy(&percent_decode(value)).into_owned());
            }
        }
        let [algorithm, credential, signature, date, signed, expires, token] = params;
        if algorithm.is_none() && credential.is_none() && signature.is_none() {
            return None;
        }
        Some((|| {
            let (Some(algorithm), Some(credential), Some(signature), Some(date), Some(signed)) =
                (algorithm, credential, signature, date, signed)
            else {
                return Err(Refusal::Incomplete(QUERY_PARAMETERS_REQUIRED.into()));
            };
            if algorithm != ALGORITHM {
                return Err(Refusal::Incomplete(format!(
                    "X-Amz-Algorithm only supports \"{ALGORITHM}\" but was \"{algorithm}\"."
                )));
            }
            let expires = match expires {
                None => None,
                Some(text) => {
                    let seconds: i64 = text
                        .parse()
                        .map_err(|_| Refusal::Incomplete("X-Amz-Expires should be a number".into()))?;
                    if seconds < 0 {
                        return Err(Refusal::Incomplete("X-Amz-Expires must be non-negative".into()));
                    }
                    if seconds > MAX_EXPIRES_S {
                        return Err(Refusal::Incomplete(format!(
                            "X-Amz-Expires must be less than a week (in seconds) that is {MAX_EXPIRES_S}"
                        )));
                    }
                    Some(seconds)
                }
            };
            let epoch_s = parse_basic(&date).ok_or_else(|| bad_date(&date))?;
            Presented::assemble(Form::Query, &credential, &signed, &signature, epoch_s, expires, token)
        })())
    }

    fn assemble(
        form: Form,
        credential: &str,
        signed: &str,
        signature: &str,
        epoch_s: i64,
        expires_s: Option<i64>,
        security_token: Option<String>,
    ) -> Result<Presented, Refusal> {
        let parts: Vec<&str> = credential.split('/').collect();
        let [access_key_id, scope_date, region, service, terminator] = parts[..] else {
            let last = parts.last().copied().unwrap_or("");
            return Err(Refusal::Invalid(
                "malformed credential scope",
                format!("Credential should be scoped with a valid terminator: '{TERMINATOR}', not '{last}'. "),
            ));
        };
        Ok(Presented {
            form,
            access_key_id: access_key_id.into(),
            scope_date: scope_date.into(),
            region: region.into(),
            service: service.into(),
            terminator: terminator.into(),
            signed_headers: signed.split(';').filter(|h| !h.is_empty()).map(|h| h.trim().to_ascii_lowercase()).collect(),
            signature: signature.into(),
            amz_date: format_basic(epoch_s),
            epoch_s,
            expires_s,
            security_token,
        })
    }

    /// The checks that need no secret: the credential scope (`region` is the gateway's), the
    /// request's date against `now_s`, and the signed headers.
    pub fn check(&self, region: &str, now_s: i64) -> Result<(), Refusal> {
        if self.terminator != TERMINATOR {
            return Err(Refusal::Invalid(
                "malformed credential scope",
                format!("Credential should be scoped with a valid terminator: '{TERMINATOR}', not '{}'. ", self.terminator),
            ));
        }
        if self.region != region {
            return Err(Refusal::Invalid(
                "credential scoped to another region",
                format!("Credential should be scoped to a valid region, not '{}'. ", self.region),
            ));
        }
        if self.service != SERVICE {
            return Err(Refusal::Invalid(
                "credential scoped to another service",
                format!("Credential should be scoped to correct service: '{SERVICE}'. "),
            ));
        }
        let signed = &self.amz_date;
        let now = || format_basic(now_s);
        match self.expires_s {
            Some(expires) if now_s > self.epoch_s.saturating_add(expires) => {
                return Err(Refusal::Invalid(
                    "presigned request expired",
                    format!(
                        "Signature expired: {signed} is now earlier than {} ({} - {expires} sec.)",
                        format_basic(now_s - expires),
                        now()
                    ),
                ));
            }
            None if self.epoch_s < now_s - MAX_SKEW_S => {
                return Err(Refusal::Invalid(
                    "signature expired",
                    format!(
                        "Signature expired: {signed} is now earlier than {} ({} - 5 min.)",
                        format_basic(now_s - MAX_SKEW_S),
                        now()
                    ),
                ));
            }
            _ => {}
        }
        if self.epoch_s > now_s + MAX_SKEW_S {
            return Err(Refusal::Invalid(
                "signature not yet current",
                format!(
                    "Signature not yet current: {signed} is still later than {} ({} + 5 min.)",
                    format_basic(now_s + MAX_SKEW_S),
                    now()
                ),
            ));
        }
        if self.scope_date != signed[..8] {
            return Err(Refusal::Invalid(
                "credential scope date is not the request's",
                format!(
                    "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{signed}'.",
                    self.scope_date,
                    &signed[..8]
                ),
            ));
        }
        if !self.signed_headers.iter().any(|h| h == "host") {
            return Err(Refusal::Invalid(
                "host not signed",
                "'Host' must be a 'SignedHeader' in the AWS Authorization.".into(),
            ));
        }
        Ok(())
    }

    /// The canonical request for this signature over the request as it arrived.
    pub fn canonical_request(&self, method: &str, raw_path: &str, raw_query: &str, headers: &HeaderMap, payload_hash: &str) -> String {
        let mut out = String::with_capacity(256 + raw_path.len() + raw_query.len());
        out.push_str(method);
        out.push('\n');
        out.push_str(&canonical_uri(raw_path));
        out.push('\n');
        out.push_str(&canonical_query(raw_query, self.form == Form::Query));
        out.push('\n');
        for name in &self.signed_headers {
            out.push_str(name);
            out.push(':');
            let mut first = true;
            for value in headers.get_all(name.as_str()) {
                if !first {
                    out.push(',');
                }
                first = false;
                let text = latin1(value.as_bytes());
                let mut words = text.split_whitespace();
                if let Some(word) = words.next() {
                    out.push_str(word);
                    for word in words {
                        out.push(' ');
                        out.push_str(word);
                    }
                }
            }
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.signed_headers.join(";"));
        out.push('\n');
        out.push_str(payload_hash);
        out
    }

    pub fn string_to_sign(&self, canonical_request: &str) -> String {
        format!("{ALGORITHM}\n{}\n{}\n{}", self.amz_date, self.scope(), sha256_hex(canonical_request.as_bytes()))
    }

    /// Verify the signature against `secret` in constant time; a mismatch is AWS's refusal,
    /// showing the canonical request and string to sign the gateway computed (neither holds the
    /// secret).
    pub fn verify(&self, secret: &str, canonical_request: &str) -> Result<(), Refusal> {
        self.verify_with(&self.signing_key(secret), canonical_request)
    }

    /// The key this signature's scope is signed with, from `secret`.
    pub fn signing_key(&self, secret: &str) -> hmac::Key {
        signing_key(secret, &self.scope_date, &self.region, &self.service)
    }

    /// `verify` with the scope's signing key already derived (`signing_key`).
    pub fn verify_with(&self, key: &hmac::Key, canonical_request: &str) -> Result<(), Refusal> {
        let to_sign = self.string_to_sign(canonical_request);
        let matches = decode_hex32(&self.signature).is_some_and(|tag| hmac::verify(key, to_sign.as_bytes(), &tag).is_ok());
        if matches {
            return Ok(());
        }
        Err(Refusal::Invalid(
            "signature does not match",
            format!(
                "{SIGNATURE_MISMATCH}\n\nThe Canonical String for this request should have been\n'{canonical_request}'\n\nThe String-to-Sign should have been\n'{to_sign}'\n"
            ),
        ))
    }
}

fn bad_date(text: &str) -> Refusal {
    Refusal::Incomplete(format!(
        "Date must be in ISO-8601 'basic format'. Got '{text}'. See http://en.wikipedia.org/wiki/ISO_8601"
    ))
}

/// The key a signature of `date` (`yyyymmdd`), `region` and `service` is made with.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> hmac::Key {
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in [date, region, service, TERMINATOR] {
        key = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), part.as_bytes()).as_ref().to_vec();
    }
    hmac::Key::new(hmac::HMAC_SHA256, &key)
}

/// The hex signature of `string_to_sign` (what a client sends).
pub fn sign(key: &hmac::Key, string_to_sign: &str) -> String {
    hex(hmac::sign(key, string_to_sign.as_bytes()).as_ref())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, bytes).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

fn decode_hex32(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = (hex_value(bytes[2 * i])? << 4) | hex_value(bytes[2 * i + 1])?;
    }
    Some(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

// ------------------------------------------------------------------------------ canonical parts

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// Percent-encode every byte but the unreserved ones (and `/` when `keep_slash`), upper-case hex.
fn percent_encode(bytes: &[u8], keep_slash: bool, out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if unreserved(b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(DIGITS[usize::from(b >> 4)]));
            out.push(char::from(DIGITS[usize::from(b & 15)]));
        }
    }
}

/// Decode `%XX` escapes; a `%` not followed by two hex digits stays as it is, and `+` is a `+`.
pub(crate) fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(|&b| hex_value(b)),
                bytes.get(i + 2).and_then(|&b| hex_value(b)),
            ) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// RFC 3986's "Remove Dot Segments", with empty segments removed too (as AWS signers do).
fn remove_dot_segments(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    let mut kept: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            s => kept.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    if path.starts_with('/') {
        out.push('/');
    }
    out.push_str(&kept.join("/"));
    if path.ends_with('/') && !kept.is_empty() {
        out.push('/');
    }
    out
}

/// The canonical URI of a path as sent: normalized, then encoded once more.
pub fn canonical_uri(raw_path: &str) -> String {
    let normalized = remove_dot_segments(raw_path);
    let mut out = String::with_capacity(normalized.len() + 16);
    percent_encode(normalized.as_bytes(), true, &mut out);
    out
}

/// The canonical query string: pairs decoded, encoded again, sorted by name then value.
/// `presigned`: `X-Amz-Signature` is not part of what was signed.
pub fn canonical_query(raw_query: &str, presigned: bool) -> String {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key);
        if presigned && key == b"X-Amz-Signature" {
            continue;
        }
        let (mut k, mut v) = (String::new(), String::new());
        percent_encode(&key, false, &mut k);
        percent_encode(&percent_decode(value), false, &mut v);
        pairs.push((k, v));
    }
    pairs.sort_unstable();
    let mut out = String::with_capacity(raw_query.len() + 8);
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

// ------------------------------------------------------------------------------ dates

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

fn epoch_of(year: i64, month: u32, day: u32, h: u32, m: u32, s: u32) -> Option<i64> {
    let valid = (1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month) && h < 24 && m < 60 && s < 60;
    valid.then(|| days_from_civil(year, month, day) * 86_400 + i64::from(h * 3600 + m * 60 + s))
}

fn digits(text: &str) -> Option<u32> {
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())).then(|| text.parse().ok()).flatten()
}

/// `yyyymmddThhmmssZ` (ISO 8601 basic format, UTC) to seconds since the epoch.
pub fn parse_basic(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| text.get(r).and_then(digits);
    epoch_of(i64::from(n(0..4)?), n(4..6)?, n(6..8)?, n(9..11)?, n(11..13)?, n(13..15)?)
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110's IMF-fixdate) to seconds.
pub fn parse_http_date(text: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let rest = text.trim().split_once(", ")?.1;
    let mut fields = rest.split(' ');
    let day = digits(fields.next()?)?;
    let month_name = fields.next()?;
    let month = MONTHS.iter().position(|m| *m == month_name)? as u32 + 1;
    let year = digits(fields.next()?)?;
    let mut clock = fields.next()?.split(':');
    let (h, m, s) = (digits(clock.next()?)?, digits(clock.next()?)?, digits(clock.next()?)?);
    if fields.next()? != "GMT" || fields.next().is_some() || clock.next().is_some() {
        return None;
    }
    epoch_of(i64::from(year), month, day, h, m, s)
}

/// Seconds since the epoch as `yyyymmddThhmmssZ`.
pub fn format_basic(epoch_s: i64) -> String {
    let (year, month, day) = civil_from_days(epoch_s.div_euclid(86_400));
    let tod = epoch_s.rem_euclid(86_400);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        tod / 3600,
        tod / 60 % 60,
        tod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    // AWS's SigV4 test suite (https://docs.aws.amazon.com/general/latest/gr/signature-v4-test-suite.html):
    // every case signs for this key, region, service and time.
    const AKID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const DATE: &str = "20150830T123600Z";

    fn suite_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("example.amazonaws.com"));
        headers.insert("x-amz-date", HeaderValue::from_static(DATE));
        headers
    }

    fn suite_signature(method: &str, query: &str) -> (String, String) {
        let mut headers = suite_headers();
        headers.insert(
            "authorization",
            HeaderValue::from_str(&format!(
                "{ALGORITHM} Credential={AKID}/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=00"
            ))
            .unwrap(),
        );
        let presented = Presented::parse(&headers, query).unwrap();
        let canonical = presented.canonical_request(method, "/", query, &headers, EMPTY_SHA256);
        let key = signing_key(SECRET, "20150830", "us-east-1", "service");
        (canonical.clone(), sign(&key, &presented.string_to_sign(&canonical)))
    }

    #[test]
    fn aws_test_suite_get_vanilla() {
        let (canonical, signature) = suite_signature("GET", "");
        assert_eq!(
            canonical,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n".to_owned() + EMPTY_SHA256
        );
        assert_eq!(sha256_hex(canonical.as_bytes()), "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63");
        assert_eq!(signature, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
    }

    #[test]
    fn aws_test_suite_query_order_and_post_vanilla() {
        let (_, signature) = suite_signature("GET", "Param2=value2&Param1=value1");
        assert_eq!(signature, "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
        let (_, signature) = suite_signature("POST", "");
        assert_eq!(signature, "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b");
    }

    #[test]
    fn a_signature_verifies_and_a_tampered_one_shows_the_canonical_request() {
        let (canonical, signature) = suite_signature("GET", "");
        let mut headers = suite_headers();
        let value = format!("{ALGORITHM} Credential={AKID}/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature={signature}");
        headers.insert("authorization", HeaderValue::from_str(&value).unwrap());
        let presented = Presented::parse(&headers, "").unwrap();
        assert_eq!(presented.verify(SECRET, &canonical), Ok(()));
        assert!(presented.verify("another secret", &canonical).is_err());
        let tampered = canonical.replace("GET", "PUT");
        let Err(Refusal::Invalid(_, message)) = presented.verify(SECRET, &tampered) else {
            panic!("a tampered request verified");
        };
        assert!(message.starts_with(SIGNATURE_MISMATCH));
        assert!(message.contains(&format!("The Canonical String for this request should have been\n'{tampered}'\n\n")));
        assert!(message.contains("The String-to-Sign should have been\n'AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"));
        assert!(!message.contains(SECRET));
    }

    #[test]
    fn canonical_uris_encode_the_sent_path_once_more() {
        for (raw, canonical) in [
            ("", "/"),
            ("/", "/"),
            ("/a%20b/%C3%A9", "/a%2520b/%25C3%25A9"),
            ("/a%2Fb", "/a%252Fb"),
            ("/a//b/./c/../d/", "/a/b/d/"),
            ("/..", "/"),
            ("/a:b@c!$'()*+,;=", "/a%3Ab%40c%21%24%27%28%29%2A%2B%2C%3B%3D"),
            ("/~user/-_.", "/~user/-_."),
            ("/\u{1234}", "/%E1%88%B4"),
        ] {
            assert_eq!(canonical_uri(raw), canonical, "{raw:?}");
        }
    }

    #[test]
    fn canonical_queries_sort_decoded_pairs() {
        assert_eq!(canonical_query("b=2&a=1&a=0&c", false), "a=0&a=1&b=2&c=");
        assert_eq!(canonical_query("q=a%20b&r=a+b&s=%7e&t=%zz&&u=", false), "q=a%20b&r=a%2Bb&s=~&t=%25zz&u=");
        assert_eq!(canonical_query("X-Amz-Signature=abc&x=1", true), "x=1");
        assert_eq!(canonical_query("X-Amz-Signature=abc&x=1", false), "X-Amz-Signature=abc&x=1");
        assert_eq!(canonical_query("%C3%A9=%2F", false), "%C3%A9=%2F");
    }

    #[test]
    fn header_values_are_trimmed_and_repeats_joined() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("h"));
        headers.append("x-a", HeaderValue::from_static("  one   two\tthree "));
        headers.append("x-a", HeaderValue::from_static("four"));
        headers.insert("x-amz-date", HeaderValue::from_static(DATE));
        headers.insert(
            "authorization",
            HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=K/20150830/r/execute-api/aws4_request, SignedHeaders=Host;X-A;x-missing, Signature=00"),
        );
        let presented = Presented::parse(&headers, "").unwrap();
        let canonical = presented.canonical_request("GET", "/", "", &headers, EMPTY_SHA256);
        assert!(canonical.contains("\nhost:h\nx-a:one two three,four\nx-missing:\n\nhost;x-a;x-missing\n"), "{canonical}");
    }

    fn header_refusal(authorization: &str, date: bool) -> Refusal {
        let mut headers = HeaderMap::new();
        if date {
            headers.insert("x-amz-date", HeaderValue::from_static(DATE));
        }
        headers.insert("authorization", HeaderValue::from_str(authorization).unwrap());
        Presented::parse(&headers, "").unwrap_err()
    }

    #[test]
    fn malformed_authorization_headers_as_aws_words_them() {
        assert_eq!(
            header_refusal("Bearer abc.def", true),
            Refusal::Incomplete(
                "'abc.def' not a valid key=value pair (missing equal-sign) in Authorization header: 'Bearer abc.def'.".into()
            )
        );
        assert_eq!(
            header_refusal("eyJhbGciOi", false),
            Refusal::Incomplete(
                "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. \
                 Authorization header requires 'SignedHeaders' parameter. Authorization header requires existence of either a \
                 'X-Amz-Date' or a 'Date' header. Authorization=eyJhbGciOi"
                    .into()
            )
        );
        assert!(matches!(
            header_refusal("AWS4-HMAC-SHA512 Credential=a/b/c/d/e, SignedHeaders=host, Signature=00", true),
            Refusal::Incomplete(m) if m.contains("AWS4-HMAC-SHA512")
        ));
        assert!(matches!(
            header_refusal("AWS4-HMAC-SHA256 Credential=a/b, SignedHeaders=host, Signature=00", true),
            Refusal::Invalid(_, m) if m.contains("valid terminator")
        ));
        let mut headers = HeaderMap::new();
        headers.insert("x-amz-date", HeaderValue::from_static("2015-08-30T12:36:00Z"));
        headers.insert("authorization", HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=a/b/c/d/e, SignedHeaders=host, Signature=00"));
        assert!(matches!(Presented::parse(&headers, ""), Err(Refusal::Incomplete(m)) if m.starts_with("Date must be in ISO-8601 'basic format'. Got '2015-08-30T12:36:00Z'.")));
        assert!(matches!(Presented::parse(&HeaderMap::new(), "a=1"), Err(Refusal::Missing)));
    }

    #[test]
    fn presigned_query_strings() {
        let query = "a=1&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20150830%2Fus-east-1%2Fexecute-api%2Faws4_request\
                     &X-Amz-Date=20150830T123600Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Security-Token=tok%2B1&X-Amz-Signature=ff";
        let p = Presented::parse(&HeaderMap::new(), query).unwrap();
        assert_eq!((p.form, p.access_key_id.as_str(), p.region.as_str(), p.service.as_str()), (Form::Query, "AKID", "us-east-1", SERVICE));
        assert_eq!((p.expires_s, p.security_token.as_deref(), p.signed_headers.clone()), (Some(60), Some("tok+1"), vec!["host".to_owned()]));
        let now = parse_basic(DATE).unwrap();
        assert_eq!(p.check("us-east-1", now + 60), Ok(()));
        assert!(matches!(p.check("us-east-1", now + 61), Err(Refusal::Invalid(_, m)) if m == "Signature expired: 20150830T123600Z is now earlier than 20150830T123601Z (20150830T123701Z - 60 sec.)"));
        assert!(!format!("{p:?}").contains("tok"), "Debug shows no token");
        for incomplete in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Signature=ff&X-Amz-Credential=a%2Fb",
        ] {
            assert_eq!(Presented::parse(&HeaderMap::new(), incomplete).unwrap_err(), Refusal::Incomplete(QUERY_PARAMETERS_REQUIRED.into()));
        }
        let huge = query.replace("X-Amz-Expires=60", "X-Amz-Expires=604801");
        assert!(matches!(Presented::parse(&HeaderMap::new(), &huge), Err(Refusal::Incomplete(m)) if m.contains("less than a week")));
    }

    proptest::proptest! {
        /// Whatever a client sends as its signature, reading and checking it never panics and
        /// never accepts (the proptest runner bounds each case's time).
        #[test]
        fn arbitrary_signatures_never_verify(authorization in "\\PC{0,200}", query in "[ -~]{0,200}", date in "[0-9TZ]{0,20}") {
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_str(&authorization) {
                headers.insert("authorization", value);
            }
            if let Ok(value) = HeaderValue::from_str(&date) {
                headers.insert("x-amz-date", value);
            }
            headers.insert("host", HeaderValue::from_static("h"));
            if let Ok(presented) = Presented::parse(&headers, &query) {
                let _ = presented.check("us-east-1", parse_basic(DATE).unwrap());
                let canonical = presented.canonical_request("GET", "/", &query, &headers, EMPTY_SHA256);
                proptest::prop_assert!(presented.verify(SECRET, &canonical).is_err());
            }
        }

        /// Canonical parts of any path and query are well-formed and stable.
        #[test]
        fn canonical_parts_are_encoded(path in "[ -~]{0,80}", query in "[ -~]{0,80}") {
            let uri = canonical_uri(&format!("/{path}"));
            proptest::prop_assert!(uri.starts_with('/'));
            proptest::prop_assert!(uri.bytes().all(|b| unreserved(b) || b == b'/' || b == b'%'));
            let q = canonical_query(&query, false);
            proptest::prop_assert_eq!(canonical_query(&q, false), q.clone());
        }
    }

    #[test]
    fn dates_are_checked_as_aws_words_it() {
        let mut headers = HeaderMap::new();
        headers.insert("x-amz-date", HeaderValue::from_static("20170212T175938Z"));
        headers.insert("authorization", HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=K/20170212/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature=00"));
        let p = Presented::parse(&headers, "").unwrap();
        let now = parse_basic("20170215T150034Z").unwrap();
        // AWS's documented sample of the message.
        assert_eq!(
            p.check("us-east-1", now),
            Err(Refusal::Invalid(
                "signature expired",
                "Signature expired: 20170212T175938Z is now earlier than 20170215T145534Z (20170215T150034Z - 5 min.)".into()
            ))
        );
        let signed = parse_basic("20170212T175938Z").unwrap();
        assert_eq!(p.check("us-east-1", signed - 300), Ok(()));
        assert_eq!(p.check("us-east-1", signed + 300), Ok(()));
        assert!(matches!(p.check("us-east-1", signed - 301), Err(Refusal::Invalid(_, m)) if m.starts_with("Signature not yet current: 20170212T175938Z is still later than 20170212T175937Z (20170212T175437Z + 5 min.)")));
        assert!(matches!(p.check("eu-west-1", signed), Err(Refusal::Invalid(_, m)) if m == "Credential should be scoped to a valid region, not 'us-east-1'. "));
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), parse_basic("19941106T084937Z"));
        assert_eq!(parse_basic("20160229T000000Z").map(format_basic).as_deref(), Some("20160229T000000Z"));
        for bad in ["20150229T000000Z", "20151301T000000Z", "2015083T123600Z", "20150830T246000Z", "+0150830T123600Z"] {
            assert_eq!(parse_basic(bad), None, "{bad}");
        }
    }
}
