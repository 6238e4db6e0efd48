//! JWT authorizers (HTTP APIs) and Cognito user pool authorizers (REST APIs), verified in the core.
//!
//! As "Control access to HTTP APIs with JWT authorizers in API Gateway" lists the checks: the
//! token is the identity source's value, bare or after `Bearer `; it is decoded; its signature is
//! checked with the issuer's key named by its `kid` (keys from the issuer's OpenID discovery
//! document, `{issuer}/.well-known/openid-configuration` -> `jwks_uri`); then `iss` must be the
//! issuer, `aud` one of the audiences (`client_id` when there is no `aud`), `exp` after now,
//! `nbf` and `iat` before now, and when the route names `authorizationScopes`, `scope` (space
//! separated) or `scp` must hold one of them. A failure is 401 `{"message":"Unauthorized"}` with
//! `www-authenticate: Bearer scope="..." error="invalid_token" error_description="..."` ("Trouble-
//! shooting issues with HTTP API JWT authorizers"); a missing scope is 403 `{"message":"Forbidden"}`
//! with `error="insufficient_scope"`.
//!
//! Cognito user pool authorizers of REST APIs ("Integrate a REST API with an Amazon Cognito user
//! pool") check the same signature and times against the user pools' issuers
//! (`https://cognito-idp.REGION.amazonaws.com/POOL_ID`): a method without scopes takes ID tokens
//! (`token_use` `id`), one with scopes takes access tokens (`token_use` `access`) holding one of
//! them; every failure is 401 `{"message":"Unauthorized"}`.
//!
//! Keys: the issuer's keys are kept process-wide, by issuer URL, so that a redeploy or a reload
//! does not fetch them again. A `kid` not among them fetches them again, once for every request
//! waiting on it, and not again within `RETRY_AFTER_MISS` of a fetch that failed or did not hold
//! the `kid` (so a flood of made-up `kid`s cannot hammer the issuer; the 10 s is the penalty box
//! of AWS's own verifier, aws-jwt-verify). While the issuer is down its keys are served from the
//! cache. Fetches use AWS's bounds (1500 ms, 150,000 bytes) and the upstream client's trust;
//! plain http only for issuers on loopback.
//!
//! Tokens: a verified token is remembered (by the whole token) until its `exp`, in a bounded
//! cache per authorizer, so that a repeated token costs a lookup, not a signature check; a hit is
//! still held to `exp`, to its key being the issuer's, and to the route's scopes.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::header::{HeaderName, HeaderValue};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use super::{Granted, IdentitySource};
use crate::integrations::http_proxy::UpstreamClient;
use crate::lambda::event::parse_query;
use crate::spec::AuthorizerSpec;

/// AWS: "API Gateway has a 1500 ms timeout" for the discovery document and the keys.
pub const FETCH_TIMEOUT: Duration = Duration::from_millis(1500);
/// AWS: the discovery document and the keys may be up to 150,000 bytes.
pub const FETCH_LIMIT: usize = 150_000;
/// After a fetch that failed or lacked the wanted `kid`, unknown `kid`s wait this long before
/// another fetch.
pub const RETRY_AFTER_MISS: Duration = Duration::from_secs(10);
/// Verified tokens kept per authorizer, weighed by their bytes.
const TOKEN_CACHE_BYTES: u64 = 16 << 20;
const TOKEN_CACHE_ITEMS: usize = 8192;

// The `error_description`s of `www-authenticate`. AWS documents the audience text; the expiry
// text and the segments text are what AWS answers (as observed in responses); the others keep
// their wording.
const SEGMENTS: &str = "token contains an invalid number of segments";
const MALFORMED: &str = "token is malformed";
const NONE_ALG: &str = "'none' signature type is not allowed";
const UNKNOWN_KID: &str = "the token's kid does not match a key of the issuer";
const BAD_SIGNATURE: &str = "signature is invalid";
const BAD_ISSUER: &str = "the token does not have a valid issuer";
const BAD_AUDIENCE: &str = "the token does not have a valid audience";
const EXPIRED: &str = "the token has expired";
const NOT_YET: &str = "the token is not valid yet";
const ISSUED_LATER: &str = "the token was issued in the future";
const NO_SCOPE: &str = "the token does not have the required scope";
const ID_TOKEN_WANTED: &str = "the method takes ID tokens";
const ACCESS_TOKEN_WANTED: &str = "the method takes access tokens";

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The identity source is absent or empty: 401 before any key work.
    Missing,
    /// The token does not verify: 401, `error="invalid_token"` and why.
    Invalid(Cow<'static, str>),
    /// A valid token without one of the route's scopes: 403 on HTTP APIs (401 on REST).
    Scope,
}

impl Rejection {
    /// What the log says (never the token).
    pub fn describe(&self) -> &str {
        match self {
            Rejection::Missing => "no token in the identity source",
            Rejection::Invalid(why) => why,
            Rejection::Scope => NO_SCOPE,
        }
    }

    /// The `www-authenticate` header of an HTTP API's answer: `Bearer` alone for a missing token
    /// (as AWS answers), else the route's scopes, the error and its description.
    pub fn www_authenticate(&self, route_scopes: &[Box<str>]) -> HeaderValue {
        let (error, description) = match self {
            Rejection::Missing => return HeaderValue::from_static("Bearer"),
            Rejection::Invalid(why) => ("invalid_token", &**why),
            Rejection::Scope => ("insufficient_scope", NO_SCOPE),
        };
        let scopes: Vec<&str> = route_scopes.iter().map(|s| &**s).collect();
        let text = format!(
            "Bearer scope=\"{}\" error=\"{error}\" error_description=\"{}\"",
            quoted(&scopes.join(" ")),
            quoted(description)
        );
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }
}

/// `text` fit for a quoted-string of a header: printable ASCII, `"` and `\` escaped.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out
}

fn invalid(why: &'static str) -> Rejection {
    Rejection::Invalid(Cow::Borrowed(why))
}

// ---------------------------------------------------------------------------------------------
// The authorizer

#[derive(Debug)]
enum Flavor {
    /// HTTP APIs: `aud` (or `client_id`) must be one of these.
    Jwt { audience: Vec<Box<str>> },
    /// REST APIs: ID tokens for methods without scopes, access tokens for methods with.
    Cognito,
}

#[derive(Debug)]
enum Source {
    Header(HeaderName),
    Query(String),
}

/// A JWT or Cognito user pool authorizer, compiled once per deployment.
pub struct JwtAuthorizer {
    id: Box<str>,
    flavor: Flavor,
    source: Source,
    /// The issuer (JWT) or the user pools' issuers (Cognito).
    issuers: Vec<Arc<Issuer>>,
    verified: quick_cache::sync::Cache<Box<str>, Arc<Verified>, TokenWeight>,
}

impl fmt::Debug for JwtAuthorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthorizer")
            .field("id", &self.id)
            .field("flavor", &self.flavor)
            .field("source", &self.source)
            .field("issuers", &self.issuers.iter().map(|i| &*i.url).collect::<Vec<_>>())
            .finish()
    }
}

/// A verified token, as remembered.
#[derive(Debug)]
struct Verified {
    claims: Arc<Map<String, Value>>,
    /// `exp`, seconds since the epoch.
    exp: f64,
    /// Which of the authorizer's issuers, and the key that signed it.
    issuer: usize,
    kid: Box<str>,
    /// `scope` and `scp`.
    scopes: Vec<Box<str>>,
    /// Cognito's `token_use`.
    token_use: Option<Box<str>>,
    /// Bytes held, for the cache's weight.
    size: usize,
}

#[derive(Clone, Copy)]
struct TokenWeight;

impl quick_cache::Weighter<Box<str>, Arc<Verified>> for TokenWeight {
    fn weight(&self, token: &Box<str>, verified: &Arc<Verified>) -> u64 {
        (token.len() + verified.size) as u64
    }
}

impl JwtAuthorizer {
    /// A `JWT` or `COGNITO_USER_POOLS` authorizer of the spec.
    pub fn compile(spec: &AuthorizerSpec) -> Result<JwtAuthorizer, String> {
        let (id, source, urls, flavor) = match spec {
            AuthorizerSpec::Jwt {
                id,
                identity_source,
                issuer,
                audience,
                ..
            } => (
                id,
                identity_source,
                std::slice::from_ref(issuer),
                Flavor::Jwt {
                    audience: audience.iter().map(|a| a.as_str().into()).collect(),
                },
            ),
            AuthorizerSpec::Cognito {
                id,
                identity_source,
                issuers,
                ..
            } => (id, identity_source, issuers.as_slice(), Flavor::Cognito),
            AuthorizerSpec::Lambda { id, .. } => return Err(format!("authorizer {id} is not a JWT authorizer")),
        };
        let at = format!("authorizer {id}");
        let source = match IdentitySource::parse(source).map_err(|e| format!("{at}: {e}"))? {
            IdentitySource::Header(name) => {
                Source::Header(HeaderName::try_from(name).map_err(|e| format!("{at}: identity source: {e}"))?)
            }
            IdentitySource::Query(name) => Source::Query(name),
            _ => {
                return Err(format!(
                    "{at}: the identity source of a JWT authorizer is a header or a query string parameter"
                ))
            }
        };
        if urls.is_empty() {
            return Err(format!("{at}: no issuer"));
        }
        let mut issuers = Vec::with_capacity(urls.len());
        for url in urls {
            check_url(url).map_err(|e| format!("{at}: issuer {e}"))?;
            issuers.push(issuer(url));
        }
        Ok(JwtAuthorizer {
            id: id.as_str().into(),
            flavor,
            source,
            issuers,
            verified: quick_cache::sync::Cache::with_weighter(TOKEN_CACHE_ITEMS, TOKEN_CACHE_BYTES, TokenWeight),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The token of a request: the identity source's value, without a `Bearer ` prefix. None
    /// when the source is absent or empty.
    pub fn token<'r>(&self, parts: &'r http::request::Parts) -> Option<Cow<'r, str>> {
        let raw: Cow<'r, str> = match &self.source {
            Source::Header(name) => String::from_utf8_lossy(parts.headers.get(name)?.as_bytes()),
            Source::Query(name) => {
                parse_query(parts.uri.query()?)
                    .into_iter()
                    .find(|(k, _)| k.as_ref() == name.as_str())?
                    .1
            }
        };
        let range = bare_token(&raw)?;
        Some(match raw {
            Cow::Borrowed(text) => Cow::Borrowed(&text[range]),
            Cow::Owned(text) => Cow::Owned(text[range].to_owned()),
        })
    }

    /// Authorize a request for a route naming `scopes`, at `now_ms` (epoch milliseconds): what
    /// the token grants, or why it is refused.
    pub async fn authorize(
        &self,
        parts: &http::request::Parts,
        scopes: &[Box<str>],
        now_ms: u64,
        client: &UpstreamClient,
    ) -> Result<Granted, Rejection> {
        let token = self.token(parts).ok_or(Rejection::Missing)?;
        self.authorize_token(&token, scopes, now_ms, client).await
    }

    /// `authorize`, for a token already read.
    pub async fn authorize_token(
        &self,
        token: &str,
        scopes: &[Box<str>],
        now_ms: u64,
        client: &UpstreamClient,
    ) -> Result<Granted, Rejection> {
        let now = now_ms as f64 / 1000.0;
        let verified = match self.remembered(token, now) {
            Some(verified) => verified,
            None => {
                let verified = Arc::new(self.verify(token, now, client).await?);
                self.verified.insert(token.into(), verified.clone());
                verified
            }
        };
        self.grant(&verified, scopes)
    }

    /// A token verified before, still within its `exp` and signed by a key the issuer still
    /// publishes.
    fn remembered(&self, token: &str, now: f64) -> Option<Arc<Verified>> {
        let verified = self.verified.get(token)?;
        (now < verified.exp && self.issuers[verified.issuer].has(&verified.kid)).then_some(verified)
    }

    /// What a verified token grants on a route naming `scopes`.
    fn grant(&self, verified: &Verified, scopes: &[Box<str>]) -> Result<Granted, Rejection> {
        if let Flavor::Cognito = self.flavor {
            let wanted = if scopes.is_empty() { "id" } else { "access" };
            if verified.token_use.as_deref() != Some(wanted) {
                return Err(invalid(if scopes.is_empty() {
                    ID_TOKEN_WANTED
                } else {
                    ACCESS_TOKEN_WANTED
                }));
            }
        }
        if !scopes.is_empty() && !verified.scopes.iter().any(|s| scopes.contains(s)) {
            return Err(Rejection::Scope);
        }
        let scopes = match self.flavor {
            Flavor::Jwt { .. } if !scopes.is_empty() => Some(verified.scopes.iter().map(|s| s.to_string()).collect()),
            _ => None,
        };
        Ok(Granted::Jwt {
            claims: verified.claims.clone(),
            scopes,
        })
    }

    /// Verify a token not seen before (or no longer remembered), in AWS's order.
    async fn verify(&self, token: &str, now: f64, client: &UpstreamClient) -> Result<Verified, Rejection> {
        let mut parts = token.split('.');
        let (Some(header64), Some(payload64), Some(signature64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid(SEGMENTS));
        };
        let header = decode_object(header64).ok_or_else(|| invalid(MALFORMED))?;
        let claims = decode_object(payload64).ok_or_else(|| invalid(MALFORMED))?;
        let alg = match header.get("alg") {
            Some(Value::String(name)) => algorithm(name)?,
            _ => return Err(invalid(MALFORMED)),
        };
        let kid = match header.get("kid") {
            Some(Value::String(kid)) => kid.as_str(),
            _ => return Err(invalid(UNKNOWN_KID)),
        };
        // A Cognito authorizer serves several user pools: the token's `iss` names whose keys.
        let issuer = match self.flavor {
            Flavor::Jwt { .. } => 0,
            Flavor::Cognito => {
                let iss = claims.get("iss").and_then(Value::as_str);
                self.issuers
                    .iter()
                    .position(|i| Some(&*i.url) == iss)
                    .ok_or_else(|| invalid(BAD_ISSUER))?
            }
        };
        let key = self.issuers[issuer]
            .key(kid, client)
            .await
            .ok_or_else(|| invalid(UNKNOWN_KID))?;
        if !key.accepts(alg) {
            return Err(Rejection::Invalid(Cow::Owned(signing_method_invalid(alg_name(alg)))));
        }
        let message = &token[..header64.len() + 1 + payload64.len()];
        if !matches!(
            jsonwebtoken::crypto::verify(signature64, message.as_bytes(), &key.decoding, alg),
            Ok(true)
        ) {
            return Err(invalid(BAD_SIGNATURE));
        }

        // The claims, in AWS's order.
        if claims.get("iss").and_then(Value::as_str) != Some(&*self.issuers[issuer].url) {
            return Err(invalid(BAD_ISSUER));
        }
        if let Flavor::Jwt { audience } = &self.flavor {
            // `client_id` counts only when there is no `aud`.
            let matches = |v: &Value| v.as_str().is_some_and(|a| audience.iter().any(|x| &**x == a));
            let valid = match (claims.get("aud"), claims.get("client_id")) {
                (Some(Value::Array(auds)), _) => auds.iter().any(matches),
                (Some(aud), _) => matches(aud),
                (None, Some(client_id)) => matches(client_id),
                (None, None) => false,
            };
            if !valid {
                return Err(invalid(BAD_AUDIENCE));
            }
        }
        // A claim that is absent reads as 0: no `exp` has expired; no `nbf` or `iat` is no bar.
        let time = |name: &str| claims.get(name).map_or(Some(0.0), Value::as_f64);
        let exp = match time("exp") {
            Some(exp) if now < exp => exp,
            _ => return Err(invalid(EXPIRED)),
        };
        if !time("nbf").is_some_and(|nbf| nbf <= now) {
            return Err(invalid(NOT_YET));
        }
        if !time("iat").is_some_and(|iat| iat <= now) {
            return Err(invalid(ISSUED_LATER));
        }
        let scopes = token_scopes(&claims);
        let token_use = claims.get("token_use").and_then(Value::as_str).map(Into::into);
        Ok(Verified {
            size: payload64.len() + 128,
            claims: Arc::new(claims),
            exp,
            issuer,
            kid: kid.into(),
            scopes,
            token_use,
        })
    }
}

/// Where the token is in an identity source's value: AWS takes "only the token, or the token
/// prefixed with Bearer". None when nothing is left.
fn bare_token(text: &str) -> Option<std::ops::Range<usize>> {
    let start = text.len() - text.trim_start().len();
    let trimmed = text.trim();
    let mut token = trimmed;
    if token
        .get(..7)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("bearer "))
    {
        token = token[7..].trim_start();
    }
    let begin = start + (trimmed.len() - token.len());
    (!token.is_empty()).then(|| begin..begin + token.len())
}

/// A base64url JSON object (a token's header or payload).
fn decode_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// The algorithms a token may be signed with: RSA (PKCS#1 v1.5 and PSS), ECDSA P-256 and P-384,
/// Ed25519. `none` and the HMAC ones (no shared secret exists here) are refused.
fn algorithm(name: &str) -> Result<Algorithm, Rejection> {
    Ok(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ if name.eq_ignore_ascii_case("none") => return Err(invalid(NONE_ALG)),
        other => return Err(Rejection::Invalid(Cow::Owned(signing_method_invalid(other)))),
    })
}

fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
    }
}

/// AWS's wording for an algorithm it does not take (observed: `signing method ES256 is invalid`).
fn signing_method_invalid(alg: &str) -> String {
    let name: String = alg
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(32)
        .collect();
    format!("signing method {name} is invalid")
}

/// The token's scopes: `scope` (space separated) and `scp` (a list, or space separated).
fn token_scopes(claims: &Map<String, Value>) -> Vec<Box<str>> {
    let mut out: Vec<Box<str>> = Vec::new();
    if let Some(Value::String(s)) = claims.get("scope") {
        out.extend(s.split_whitespace().map(Into::into));
    }
    match claims.get("scp") {
        Some(Value::String(s)) => out.extend(s.split_whitespace().map(Into::into)),
        Some(Value::Array(items)) => out.extend(items.iter().filter_map(Value::as_str).map(Into::into)),
        _ => {}
    }
    out
}

/// An issuer (or a JWKS URL) must be https, or plain http on loopback.
pub fn check_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let host = uri.host().unwrap_or("");
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => Ok(()),
        Some("http") if is_loopback(host) => Ok(()),
        _ => Err(format!("{url:?} must be an https:// URL (plain http only on loopback)")),
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

// ---------------------------------------------------------------------------------------------
// Issuers and their keys

/// A verification key of an issuer.
struct Key {
    decoding: DecodingKey,
    family: Family,
    /// The key's own `alg`, when it names one: only that algorithm.
    alg: Option<Algorithm>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl Key {
    fn accepts(&self, alg: Algorithm) -> bool {
        let family = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => Family::Rsa,
            Algorithm::ES256 => Family::P256,
            Algorithm::ES384 => Family::P384,
            Algorithm::EdDSA => Family::Ed25519,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => return false,
        };
        family == self.family && self.alg.map_or(true, |a| a == alg)
    }

    /// A JWK as a verification key; None for keys that cannot verify a token here (encryption
    /// keys, symmetric keys, curves without an algorithm above).
    fn from_jwk(jwk: &Jwk) -> Option<Key> {
        if matches!(
            jwk.common.public_key_use,
            Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
        ) {
            return None;
        }
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Family::Rsa,
            AlgorithmParameters::EllipticCurve(p) => match p.curve {
                EllipticCurve::P256 => Family::P256,
                EllipticCurve::P384 => Family::P384,
                _ => return None,
            },
            AlgorithmParameters::OctetKeyPair(p) => match p.curve {
                EllipticCurve::Ed25519 => Family::Ed25519,
                _ => return None,
            },
            AlgorithmParameters::OctetKey(_) => return None,
        };
        let alg = match jwk.common.key_algorithm {
            None => None,
            Some(named) => Some(match named {
                KeyAlgorithm::RS256 => Algorithm::RS256,
                KeyAlgorithm::RS384 => Algorithm::RS384,
                KeyAlgorithm::RS512 => Algorithm::RS512,
                KeyAlgorithm::PS256 => Algorithm::PS256,
                KeyAlgorithm::PS384 => Algorithm::PS384,
                KeyAlgorithm::PS512 => Algorithm::PS512,
                KeyAlgorithm::ES256 => Algorithm::ES256,
                KeyAlgorithm::ES384 => Algorithm::ES384,
                KeyAlgorithm::EdDSA => Algorithm::EdDSA,
                _ => return None,
            }),
        };
        Some(Key {
            decoding: DecodingKey::from_jwk(jwk).ok()?,
            family,
            alg,
        })
    }
}

type KeySet = HashMap<Box<str>, Arc<Key>>;

/// The keys of one issuer, shared by every authorizer naming it, for the life of the process.
pub struct Issuer {
    url: Box<str>,
    keys: ArcSwap<KeySet>,
    /// Bumped by every fetch that got keys.
    generation: AtomicU64,
    /// Held while fetching: requests wanting a fetch wait for the one in flight.
    fetching: tokio::sync::Mutex<Misses>,
    /// Fetches attempted, for the tests.
    fetches: AtomicU64,
}

#[derive(Default)]
struct Misses {
    /// When a fetch last failed or lacked the `kid` it was made for.
    last: Option<Instant>,
}

/// The process's issuers, by URL.
fn issuers() -> &'static Mutex<HashMap<Box<str>, Arc<Issuer>>> {
    static ISSUERS: OnceLock<Mutex<HashMap<Box<str>, Arc<Issuer>>>> = OnceLock::new();
    ISSUERS.get_or_init(Default::default)
}

/// The issuer at `url` (created on first use).
pub fn issuer(url: &str) -> Arc<Issuer> {
    let mut all = issuers().lock().unwrap_or_else(|e| e.into_inner());
    all.entry(url.into())
        .or_insert_with(|| {
            Arc::new(Issuer {
                url: url.into(),
                keys: ArcSwap::from_pointee(KeySet::new()),
                generation: AtomicU64::new(0),
                fetching: tokio::sync::Mutex::new(Misses::default()),
                fetches: AtomicU64::new(0),
            })
        })
        .clone()
}

impl Issuer {
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many times its keys were fetched (or tried).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn has(&self, kid: &str) -> bool {
        self.keys.load().contains_key(kid)
    }

    /// The key `kid`, fetching the issuer's keys when it is not among those held (unless a
    /// fetch is barred, see `RETRY_AFTER_MISS`).
    async fn key(&self, kid: &str, client: &UpstreamClient) -> Option<Arc<Key>> {
        if let Some(key) = self.keys.load().get(kid) {
            return Some(key.clone());
        }
        let seen = self.generation.load(Ordering::Acquire);
        let mut misses = self.fetching.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            // Fetched while this request waited: those are the issuer's keys now.
            return self.keys.load().get(kid).cloned();
        }
        if misses.last.is_some_and(|t| t.elapsed() < RETRY_AFTER_MISS) {
            return None;
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match fetch_keys(&self.url, client).await {
            Ok(keys) => {
                let found = keys.get(kid).cloned();
                self.keys.store(Arc::new(keys));
                self.generation.fetch_add(1, Ordering::AcqRel);
                misses.last = if found.is_some() { None } else { Some(Instant::now()) };
                found
            }
            Err(why) => {
                misses.last = Some(Instant::now());
                eprintln!(
                    "portico: JWT issuer {}: its keys could not be fetched ({why}); the keys held are used, \
                     and unknown kids are refused for {} s",
                    self.url,
                    RETRY_AFTER_MISS.as_secs()
                );
                None
            }
        }
    }
}

/// The issuer's keys: its discovery document's `jwks_uri`, then that key set.
async fn fetch_keys(issuer: &str, client: &UpstreamClient) -> Result<KeySet, String> {
    let discovery = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
    let body = client.get(&discovery, FETCH_TIMEOUT, FETCH_LIMIT).await?;
    let document: Value = serde_json::from_slice(&body).map_err(|e| format!("{discovery}: not JSON: {e}"))?;
    let jwks_uri = document
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{discovery}: no jwks_uri"))?;
    check_url(jwks_uri).map_err(|e| format!("{discovery}: jwks_uri {e}"))?;
    let body = client.get(jwks_uri, FETCH_TIMEOUT, FETCH_LIMIT).await?;
    parse_jwks(&body).map_err(|e| format!("{jwks_uri}: {e}"))
}

/// A JWK set's verification keys, by `kid` (keys without one cannot be named by a token).
fn parse_jwks(body: &[u8]) -> Result<KeySet, String> {
    let document: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let keys = document
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("no \"keys\" list")?;
    let mut out = KeySet::new();
    for value in keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value.clone()) else {
            continue;
        };
        let (Some(kid), Some(key)) = (jwk.common.key_id.as_deref(), Key::from_jwk(&jwk)) else {
            continue;
        };
        out.entry(kid.into()).or_insert_with(|| Arc::new(key));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
