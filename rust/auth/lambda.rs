//! Lambda authorizers: the user's function decides, run by the Python side through the function
//! registry (`crate::invoke`), as "Use API Gateway Lambda authorizers" (REST APIs) and "Control
//! access to HTTP APIs with AWS Lambda authorizers" in the API Gateway developer guide describe.
//!
//! - Identity sources are read first: one missing or empty answers 401 without calling the
//!   function; so does a REST `TOKEN` that does not match `identityValidationExpression`.
//! - The event is the one AWS sends: REST `TOKEN` (`type`, `authorizationToken`, `methodArn`);
//!   REST `REQUEST` and HTTP APIs' payload 1.0 and 2.0 (the proxy event of the request, without
//!   its body, with `type`, `methodArn`/`routeArn` and the identity values: "Input to an API
//!   Gateway Lambda authorizer"); a WebSocket API's `$connect` REQUEST authorizer gets the
//!   handshake as `$connect`'s event shows it (`crate::websocket::events::authorizer_request`).
//! - The answer is an IAM policy (`principalId`, `policyDocument`, `context`,
//!   `usageIdentifierKey`), or, for HTTP APIs' 2.0 simple responses, `isAuthorized` and `context`
//!   ("Output from an API Gateway Lambda authorizer"). A policy is evaluated against the
//!   request's ARN (`crate::auth::policy`): an explicit deny, or no allow, is 403. A function that
//!   fails with the message `Unauthorized` is 401; any other failure, a timeout or an answer that
//!   cannot be read is AWS's 500, and nothing reaches the integration.
//! - Answers are cached per authorizer and stage, by identity values, for
//!   `authorizerResultTtlInSeconds`; a cached policy is evaluated again against each request's
//!   ARN (so a policy naming one resource denies the others for the TTL, as on AWS). The caches
//!   live outside the snapshot (`Caches`, kept by the gateway): a reload that leaves an
//!   authorizer unchanged keeps its cache, and `FlushStageAuthorizersCache` (a new cache epoch
//!   in the stage's spec) starts the stage's caches afresh.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use regex::Regex;
use serde_json::{Map, Value};

use super::policy::{Policy, Request as PolicyRequest, Verdict};
use super::{AuthScope, Granted, IdentitySource};
use crate::gateway::ApiKind;
use crate::ids::IdGenerator;
use crate::integrations::lambda_proxy::{function_name, resolve};
use crate::invoke::{Invoker, LambdaCall, Reply};
use crate::lambda::event::{build_authorizer_event, parse_query, AuthorizerHead};
use crate::lambda::{EventSource, PayloadFormat};
use crate::pipeline::responses::{json_string, ErrorType};
use crate::pipeline::Failure;
use crate::spec::AuthorizerEvent;
use crate::websocket::events::{authorizer_request, ConnectionContext, EventIds};

/// The most results one authorizer's cache holds for a stage; past it, expired results go first,
/// then any others (a flood of distinct tokens cannot grow memory without bound).
pub const CACHE_CAPACITY: usize = 10_000;
/// `authorizerResultTtlInSeconds` is at most an hour.
const MAX_TTL: Duration = Duration::from_secs(3600);
/// The message of a REST API's explicit deny (the default ACCESS_DENIED text covers the rest).
const EXPLICIT_DENY: &str = "User is not authorized to access this resource with an explicit deny";

/// A Lambda authorizer, compiled for one stage.
#[derive(Debug)]
pub struct LambdaAuthorizer {
    pub id: Box<str>,
    pub name: Box<str>,
    event: AuthorizerEvent,
    /// The function URI, stage variables filled in.
    uri: Box<str>,
    /// The function's name, whose calls in flight count against `concurrency`.
    function: Box<str>,
    concurrency: usize,
    sources: Vec<IdentitySource>,
    /// REST `TOKEN`: the whole token must match.
    validation: Option<Regex>,
    ttl: Duration,
    simple_responses: bool,
    timeout: Duration,
    cache: Arc<ResultCache>,
}

impl LambdaAuthorizer {
    pub fn compile(
        spec: &crate::spec::AuthorizerSpec,
        scope: &mut AuthScope<'_>,
    ) -> Result<LambdaAuthorizer, String> {
        let crate::spec::AuthorizerSpec::Lambda {
            id,
            name,
            uri,
            event,
            identity_sources,
            validation_expression,
            ttl_s,
            simple_responses,
            timeout_ms,
        } = spec
        else {
            return Err("not a Lambda authorizer".into());
        };
        let sources = identity_sources
            .iter()
            .map(|s| IdentitySource::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        if *event == AuthorizerEvent::Token && !matches!(sources.as_slice(), [IdentitySource::Header(_)]) {
            return Err("a TOKEN authorizer reads its token from one header (method.request.header.NAME)".into());
        }
        let validation = match validation_expression.as_deref() {
            Some(expression) if *event == AuthorizerEvent::Token && !expression.is_empty() => Some(
                Regex::new(&format!("^(?:{expression})$"))
                    .map_err(|e| format!("identityValidationExpression {expression:?} is not a regular expression: {e}"))?,
            ),
            _ => None,
        };
        if *simple_responses && *event != AuthorizerEvent::Http20 {
            return Err("simple responses need payload format 2.0".into());
        }
        let uri: Box<str> = resolve(uri, scope.variables).map_err(String::from)?;
        let function: Box<str> = function_name(&uri).into();
        if function.is_empty() {
            return Err(format!("authorizer URI {uri:?} names no function"));
        }
        let cache = scope.lambda_caches.claim(CacheKey {
            api: scope.api_id.into(),
            stage: scope.stage.into(),
            authorizer: format!("{spec:?}").into(),
            uri: uri.clone(),
            epoch: scope.authorizer_cache_epoch,
        });
        Ok(LambdaAuthorizer {
            id: id.as_str().into(),
            name: name.as_str().into(),
            event: *event,
            concurrency: scope.settings.concurrency_of(&function),
            function,
            uri,
            sources,
            validation,
            ttl: Duration::from_secs(*ttl_s).min(MAX_TTL),
            simple_responses: *simple_responses,
            timeout: Duration::from_millis((*timeout_ms).max(1)),
            cache,
        })
    }

    /// The authorizer's name, or its id, for the log.
    fn label(&self) -> &str {
        if self.name.is_empty() {
            &self.id
        } else {
            &self.name
        }
    }

    /// The proxy-event shape the authorizer's REQUEST event is made from (None: a TOKEN event).
    pub fn payload_format(&self) -> Option<PayloadFormat> {
        match self.event {
            AuthorizerEvent::Token => None,
            AuthorizerEvent::Request => Some(PayloadFormat::RestV1),
            AuthorizerEvent::Http10 => Some(PayloadFormat::HttpV1),
            AuthorizerEvent::Http20 => Some(PayloadFormat::HttpV2),
        }
    }

    /// How many results the cache holds (tests, metrics).
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Decide on one request: what the authorizer granted, or the gateway response to answer.
    pub async fn authorize(&self, request: AuthRequest<'_>) -> Result<Granted, Failure> {
        let values = self.identity(&request.source)?;
        if let (Some(validation), [token]) = (&self.validation, values.as_slice()) {
            if !validation.is_match(token) {
                return Err(Failure::new(
                    ErrorType::Unauthorized,
                    format!("authorizer {}: the token does not match identityValidationExpression", self.label()),
                ));
            }
        }
        let key = (!self.ttl.is_zero() && !values.is_empty()).then(|| cache_key(&values));
        if let Some(answer) = key.as_deref().and_then(|k| self.cache.get(k, Instant::now())) {
            // Answered from the cache: no event is built, no id drawn.
            return self.grant(&answer, &request, 0);
        }
        let started = Instant::now();
        let answer = Arc::new(self.invoke(&request, &values).await?);
        let latency_ms = started.elapsed().as_millis() as u64;
        if let Some(key) = key {
            self.cache.put(key, answer.clone(), Instant::now() + self.ttl);
        }
        self.grant(&answer, &request, latency_ms)
    }

    /// The identity-source values, in order: one missing or empty is a 401.
    fn identity(&self, src: &EventSource<'_>) -> Result<Vec<String>, Failure> {
        let rest = matches!(self.event, AuthorizerEvent::Token | AuthorizerEvent::Request);
        let mut values = Vec::with_capacity(self.sources.len());
        for source in &self.sources {
            match identity_value(source, src, rest).filter(|v| !v.is_empty()) {
                Some(value) => values.push(value),
                None => {
                    return Err(Failure::new(
                        ErrorType::Unauthorized,
                        format!("authorizer {}: identity source {} missing or empty", self.label(), describe(source)),
                    ))
                }
            }
        }
        Ok(values)
    }

    fn event(&self, request: &AuthRequest<'_>, values: &[String]) -> Vec<u8> {
        if let (Some(cx), AuthorizerEvent::Request) = (request.connection, self.event) {
            let src = &request.source;
            let ids = EventIds {
                request_id: src.request_id,
                extended_request_id: src.extended_request_id,
                time_ms: src.time_epoch_ms,
            };
            return authorizer_request(cx, ids, src.headers, src.raw_query, request.arn, src.stage_variables);
        }
        match self.event {
            AuthorizerEvent::Token => format!(
                r#"{{"type":"TOKEN","authorizationToken":{},"methodArn":{}}}"#,
                json_string(values.first().map_or("", String::as_str)),
                json_string(request.arn)
            )
            .into_bytes(),
            _ => {
                // The trace id a proxy event carries, drawn only when the function is called.
                let trace = request.ids.trace_id(request.source.time_epoch_ms / 1000);
                let source = EventSource {
                    trace_id: &trace,
                    ..request.source
                };
                build_authorizer_event(
                    &source,
                    &AuthorizerHead {
                        arn: request.arn,
                        identity: values,
                    },
                )
            }
        }
    }

    /// Call the function and read its answer.
    async fn invoke(&self, request: &AuthRequest<'_>, values: &[String]) -> Result<Answer, Failure> {
        let call = LambdaCall {
            invocation_id: request.ids.uuid(),
            uri: self.uri.clone(),
            event: self.event(request, values),
            timeout_ms: self.timeout.as_millis() as u64,
            region: request.region.into(),
            account_id: request.source.account_id.into(),
        };
        let failed = |error: ErrorType, why: String| Failure::new(error, format!("authorizer {}: {why}", self.label()));
        // A function that cannot be called (throttled, gone) is an authorizer API Gateway cannot
        // reach: AUTHORIZER_CONFIGURATION_ERROR ("Gateway response types" in the developer guide).
        let reply = self
            .invoker_call(request.invoker, call)
            .map_err(|why| failed(ErrorType::AuthorizerConfigurationError, why))?;
        let result = match tokio::time::timeout(self.timeout, reply).await {
            Err(_) => {
                return Err(failed(
                    ErrorType::AuthorizerFailure,
                    format!("no answer within {} ms", self.timeout.as_millis()),
                ))
            }
            Ok(Err(_)) => return Err(failed(ErrorType::AuthorizerConfigurationError, "the Python side stopped".into())),
            Ok(Ok(Reply::Lambda(Ok(result)))) => result,
            // `raise Exception("Unauthorized")`: AWS's documented way to answer 401.
            Ok(Ok(Reply::Lambda(Err(e)))) if e.error_message.as_deref() == Some("Unauthorized") => {
                return Err(Failure::new(
                    ErrorType::Unauthorized,
                    format!("authorizer {}: the function answered Unauthorized", self.label()),
                ))
            }
            Ok(Ok(Reply::Lambda(Err(e)))) => {
                let error = match e.error {
                    ErrorType::IntegrationTimeout => ErrorType::AuthorizerFailure,
                    _ => ErrorType::AuthorizerConfigurationError,
                };
                return Err(failed(error, e.detail));
            }
            Ok(Ok(_)) => return Err(failed(ErrorType::AuthorizerConfigurationError, "unexpected reply".into())),
        };
        if let Some(why) = crate::lambda::response::payload_too_large(&result) {
            return Err(failed(ErrorType::AuthorizerConfigurationError, why));
        }
        parse_answer(&result, self.mode()).map_err(|why| failed(ErrorType::AuthorizerConfigurationError, why))
    }

    fn invoker_call(
        &self,
        invoker: &Invoker,
        call: LambdaCall,
    ) -> Result<tokio::sync::oneshot::Receiver<Reply>, String> {
        invoker
            .call_function(call, &self.function, self.concurrency)
            .map_err(|t| format!("function {} throttled: {} calls in flight already", self.function, t.limit))
    }

    fn mode(&self) -> Mode {
        match (self.event, self.simple_responses) {
            (AuthorizerEvent::Http20, true) => Mode::Simple,
            (AuthorizerEvent::Http20, false) => Mode::Policy { scalar_context: false },
            _ => Mode::Policy { scalar_context: true },
        }
    }

    /// What `answer` grants this request (a cached policy is evaluated again for each ARN).
    fn grant(&self, answer: &Answer, request: &AuthRequest<'_>, latency_ms: u64) -> Result<Granted, Failure> {
        match answer {
            Answer::Simple { authorized: true, context } => Ok(Granted::Lambda {
                principal_id: None,
                context: context.clone(),
                usage_identifier_key: None,
                latency_ms,
            }),
            Answer::Simple { authorized: false, .. } => Err(Failure::new(
                ErrorType::AccessDenied,
                format!("authorizer {}: isAuthorized is false", self.label()),
            )),
            Answer::Policy {
                principal_id,
                policy,
                context,
                usage_identifier_key,
            } => {
                let verdict = policy.evaluate(&PolicyRequest {
                    action: "execute-api:Invoke",
                    resource: request.arn,
                    principal: None,
                    principal_account: None,
                    source_ip: request.client_ip,
                });
                match verdict {
                    Verdict::Allow => Ok(Granted::Lambda {
                        principal_id: principal_id.clone(),
                        context: context.clone(),
                        usage_identifier_key: usage_identifier_key.clone(),
                        latency_ms,
                    }),
                    Verdict::Deny => {
                        let failure = Failure::new(
                            ErrorType::AccessDenied,
                            format!("authorizer {}: the policy denies {}", self.label(), request.arn),
                        );
                        Err(match request.kind {
                            ApiKind::Rest => failure.saying(EXPLICIT_DENY),
                            ApiKind::Http | ApiKind::Websocket => failure,
                        })
                    }
                    Verdict::Implicit => Err(Failure::new(
                        ErrorType::AccessDenied,
                        format!("authorizer {}: the policy allows nothing of {}", self.label(), request.arn),
                    )),
                }
            }
        }
    }
}

/// One request, as an authorizer needs it.
pub struct AuthRequest<'a> {
    pub invoker: &'a Invoker,
    /// The request as a proxy event would show it, in the authorizer's `payload_format` (its
    /// body left empty: authorizers are not given it; its trace id is drawn from `ids` when an
    /// event is built).
    pub source: EventSource<'a>,
    pub ids: &'a IdGenerator,
    pub kind: ApiKind,
    /// `methodArn` / `routeArn`: the request's actual method and path.
    pub arn: &'a str,
    pub region: &'a str,
    pub client_ip: IpAddr,
    /// A WebSocket API's `$connect`: the connection being opened, whose handshake the event
    /// describes (`crate::websocket::events::authorizer_request`).
    pub connection: Option<&'a ConnectionContext>,
}

fn describe(source: &IdentitySource) -> String {
    match source {
        IdentitySource::Header(name) => format!("header {name}"),
        IdentitySource::Query(name) => format!("query string {name}"),
        IdentitySource::StageVariable(name) => format!("stage variable {name}"),
        IdentitySource::Context(name) => format!("context variable {name}"),
    }
}

/// The value of one identity source. REST APIs read the last of repeated headers and query
/// parameters (as their events' single-value maps do), HTTP APIs all of them comma-joined.
fn identity_value(source: &IdentitySource, src: &EventSource<'_>, rest: bool) -> Option<String> {
    let join = |values: Vec<String>| -> Option<String> {
        if values.is_empty() {
            None
        } else if rest {
            values.into_iter().next_back()
        } else {
            Some(values.join(","))
        }
    };
    match source {
        IdentitySource::Header(name) => join(
            src.headers
                .get_all(name.as_str())
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect(),
        ),
        IdentitySource::Query(name) => join(
            parse_query(src.raw_query)
                .into_iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
                .collect(),
        ),
        IdentitySource::StageVariable(name) => src
            .stage_variables
            .iter()
            .find(|(k, _)| &**k == name)
            .map(|(_, v)| v.to_string()),
        IdentitySource::Context(name) => context_value(name, src),
    }
}

/// `$context` variables an identity source may name.
fn context_value(name: &str, src: &EventSource<'_>) -> Option<String> {
    let value = match name {
        "accountId" => src.account_id,
        "apiId" => src.api_id,
        "domainName" => src.host,
        "httpMethod" => src.method,
        "identity.sourceIp" => src.client_ip,
        "identity.userAgent" => src.headers.get(http::header::USER_AGENT)?.to_str().ok()?,
        "path" => src.raw_path,
        "protocol" => src.protocol,
        "requestId" => src.request_id,
        "resourcePath" => src.resource_path,
        "routeKey" => src.route_key,
        "stage" => src.stage,
        _ => return None,
    };
    Some(value.to_owned())
}

/// The identity values as one cache key (length-prefixed, so no two lists share a key).
fn cache_key(values: &[String]) -> Box<str> {
    use std::fmt::Write as _;
    let mut key = String::with_capacity(values.iter().map(|v| v.len() + 8).sum());
    for value in values {
        let _ = write!(key, "{}:{value}", value.len());
    }
    key.into()
}

// ------------------------------------------------------------------------------------- answers

/// How an answer is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// An IAM policy. REST APIs and HTTP payload 1.0 allow only strings, numbers and booleans
    /// as `context` values; HTTP payload 2.0 allows any JSON.
    Policy { scalar_context: bool },
    /// HTTP payload 2.0 with `enableSimpleResponses`: `isAuthorized` and `context`.
    Simple,
}

/// What an authorizer answered, read.
#[derive(Debug)]
pub enum Answer {
    Policy {
        principal_id: Option<String>,
        policy: Policy,
        context: Map<String, Value>,
        usage_identifier_key: Option<String>,
    },
    Simple {
        authorized: bool,
        context: Map<String, Value>,
    },
}

/// Read a function's result (JSON) as an authorizer answer; anything else is refused with why.
pub fn parse_answer(result: &[u8], mode: Mode) -> Result<Answer, String> {
    let value: Value = serde_json::from_slice(result).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let Value::Object(mut answer) = value else {
        return Err("the answer is not a JSON object".into());
    };
    let context = match answer.remove("context") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(context)) => context,
        Some(_) => return Err("context must be an object".into()),
    };
    match mode {
        Mode::Simple => match answer.get("isAuthorized") {
            Some(Value::Bool(authorized)) => Ok(Answer::Simple {
                authorized: *authorized,
                context,
            }),
            _ => Err("a simple response needs isAuthorized, true or false".into()),
        },
        Mode::Policy { scalar_context } => {
            if scalar_context {
                if let Some((key, _)) = context
                    .iter()
                    .find(|(_, v)| !matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_)))
                {
                    return Err(format!("context value {key:?} is not a string, number or boolean"));
                }
            }
            let policy = match answer.get("policyDocument") {
                None | Some(Value::Null) => return Err("the answer has no policyDocument".into()),
                Some(document) => Policy::parse(document).map_err(|e| format!("policyDocument: {e}"))?,
            };
            Ok(Answer::Policy {
                principal_id: optional_string(&answer, "principalId")?,
                policy,
                context,
                usage_identifier_key: optional_string(&answer, "usageIdentifierKey")?,
            })
        }
    }
}

fn optional_string(answer: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match answer.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{name} must be a string")),
    }
}

// ---------------------------------------------------------------------------------------- caches

/// Cached answers by identity values, with when each expires (ahash: keys are clients' tokens,
/// hashed with a per-process random seed).
type Entries = HashMap<Box<str>, (Instant, Arc<Answer>), ahash::RandomState>;

/// One authorizer's cached answers for one stage, by identity values.
pub struct ResultCache {
    entries: Mutex<Entries>,
    capacity: usize,
}

impl std::fmt::Debug for ResultCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ResultCache({} entries)", self.len())
    }
}

impl ResultCache {
    pub fn new(capacity: usize) -> ResultCache {
        ResultCache {
            entries: Mutex::new(HashMap::with_hasher(ahash::RandomState::new())),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, key: &str, now: Instant) -> Option<Arc<Answer>> {
        let mut entries = self.lock();
        match entries.get(key) {
            Some((expires, answer)) if *expires > now => Some(answer.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn put(&self, key: Box<str>, answer: Arc<Answer>, expires: Instant) {
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            let now = Instant::now();
            entries.retain(|_, (e, _)| *e > now);
            // Still full of live answers: drop a quarter, whichever they are.
            if entries.len() >= self.capacity {
                let drop: Vec<Box<str>> = entries.keys().take(self.capacity / 4 + 1).cloned().collect();
                for k in drop {
                    entries.remove(&k);
                }
            }
        }
        entries.insert(key, (expires, answer));
    }
}

/// Which cache an authorizer uses: its API, stage, whole spec (a changed authorizer starts
/// afresh), function and the stage's cache epoch (moved by `FlushStageAuthorizersCache`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    api: Box<str>,
    stage: Box<str>,
    authorizer: Box<str>,
    uri: Box<str>,
    epoch: u64,
}

/// Every Lambda authorizer's cache, kept by the gateway across snapshots. A reload compiles
/// against a successor that takes over the caches of authorizers still there, unchanged.
#[derive(Default)]
pub struct Caches {
    caches: HashMap<CacheKey, Arc<ResultCache>>,
    inherited: HashMap<CacheKey, Arc<ResultCache>>,
}

impl Caches {
    pub fn claim(&mut self, key: CacheKey) -> Arc<ResultCache> {
        if let Some(cache) = self.caches.get(&key) {
            return cache.clone();
        }
        let cache = self
            .inherited
            .remove(&key)
            .unwrap_or_else(|| Arc::new(ResultCache::new(CACHE_CAPACITY)));
        self.caches.insert(key, cache.clone());
        cache
    }

    /// The caches for the next snapshot: those its authorizers claim again are kept.
    pub fn successor(&self) -> Caches {
        Caches {
            caches: HashMap::new(),
            inherited: self.caches.clone(),
        }
    }

    pub fn len(&self) -> usize {
        self.caches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.caches.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const ARN: &str = "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/GET/pets/7";

    fn policy_answer(document: Value, extra: Value) -> Value {
        let mut answer = json!({"principalId": "user", "policyDocument": document});
        answer.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        answer
    }

    fn parse(answer: &Value, mode: Mode) -> Result<Answer, String> {
        parse_answer(answer.to_string().as_bytes(), mode)
    }

    const REST: Mode = Mode::Policy { scalar_context: true };
    const V2: Mode = Mode::Policy { scalar_context: false };

    fn allow(resource: &str) -> Value {
        json!({"Version": "2012-10-17", "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": resource}]})
    }

    fn verdict(answer: &Answer, arn: &str) -> Verdict {
        let Answer::Policy { policy, .. } = answer else { panic!("not a policy") };
        policy.evaluate(&PolicyRequest {
            action: "execute-api:Invoke",
            resource: arn,
            principal: None,
            principal_account: None,
            source_ip: "192.0.2.1".parse().unwrap(),
        })
    }

    #[test]
    fn a_policy_answer_keeps_principal_context_and_usage_key() {
        let answer = parse(
            &policy_answer(allow(ARN), json!({"context": {"s": "v", "n": 1, "b": true}, "usageIdentifierKey": "key-1"})),
            REST,
        )
        .unwrap();
        assert_eq!(verdict(&answer, ARN), Verdict::Allow);
        let Answer::Policy { principal_id, context, usage_identifier_key, .. } = answer else { unreachable!() };
        assert_eq!(principal_id.as_deref(), Some("user"));
        assert_eq!(Value::Object(context), json!({"s": "v", "n": 1, "b": true}));
        assert_eq!(usage_identifier_key.as_deref(), Some("key-1"));
    }

    #[test]
    fn rest_context_values_are_scalars_and_v2_ones_anything() {
        for bad in [json!({"o": {"a": 1}}), json!({"a": [1]}), json!({"z": null})] {
            let answer = policy_answer(allow(ARN), json!({ "context": bad }));
            assert!(parse(&answer, REST).unwrap_err().contains("context value"), "{answer}");
        }
        let nested = policy_answer(allow(ARN), json!({"context": {"o": {"a": [1, 2]}}}));
        assert!(parse(&nested, V2).is_ok());
        assert!(parse(&policy_answer(allow(ARN), json!({"context": "x"})), V2).is_err());
    }

    #[test]
    fn malformed_answers_are_refused_with_a_reason() {
        for (answer, reason) in [
            (json!([1]), "object"),
            (json!({"principalId": "u"}), "policyDocument"),
            (json!({"principalId": "u", "policyDocument": {"Statement": {"Effect": "Maybe"}}}), "policyDocument"),
            (policy_answer(allow(ARN), json!({"principalId": 7})), "principalId"),
            (policy_answer(allow(ARN), json!({"usageIdentifierKey": ["k"]})), "usageIdentifierKey"),
        ] {
            let error = parse(&answer, REST).unwrap_err();
            assert!(error.contains(reason), "{answer}: {error}");
        }
        assert!(parse_answer(b"not json", REST).unwrap_err().contains("JSON"));
        assert!(parse_answer(b"null", REST).is_err());
    }

    #[test]
    fn simple_responses_need_a_boolean() {
        match parse(&json!({"isAuthorized": true, "context": {"a": [1]}}), Mode::Simple).unwrap() {
            Answer::Simple { authorized, context } => {
                assert!(authorized);
                assert_eq!(Value::Object(context), json!({"a": [1]}));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&json!({"isAuthorized": false}), Mode::Simple).unwrap(),
            Answer::Simple { authorized: false, .. }
        ));
        for bad in [json!({"isAuthorized": "true"}), json!({}), json!({"isAuthorized": 1})] {
            assert!(parse(&bad, Mode::Simple).is_err(), "{bad}");
        }
        // A policy answer where a simple one is expected allows nothing.
        assert!(parse(&policy_answer(allow("*"), json!({})), Mode::Simple).is_err());
    }

    #[test]
    fn a_cached_policy_is_evaluated_against_each_arn() {
        // The classic {proxy+} case: the policy names the first request's ARN only.
        let answer = parse(&policy_answer(allow(ARN), json!({})), REST).unwrap();
        assert_eq!(verdict(&answer, ARN), Verdict::Allow);
        assert_eq!(
            verdict(&answer, "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/GET/pets/8"),
            Verdict::Implicit
        );
        let deny = json!({"Statement": [
            {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": "*"},
            {"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": "arn:aws:execute-api:*:*:abc123/*/DELETE/*"}
        ]});
        let answer = parse(&policy_answer(deny, json!({})), REST).unwrap();
        assert_eq!(verdict(&answer, ARN), Verdict::Allow);
        assert_eq!(
            verdict(&answer, "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/DELETE/pets/7"),
            Verdict::Deny
        );
    }

    #[test]
    fn cache_keys_never_collide_across_lists() {
        let a = cache_key(&["a,b".into(), "c".into()]);
        let b = cache_key(&["a".into(), "b,c".into()]);
        assert_ne!(a, b);
        assert_ne!(cache_key(&["1:".into()]), cache_key(&["".into(), "".into()]));
    }

    #[test]
    fn the_cache_expires_and_stays_bounded() {
        let cache = ResultCache::new(8);
        let answer = Arc::new(parse(&json!({"isAuthorized": true}), Mode::Simple).unwrap());
        let now = Instant::now();
        cache.put("a".into(), answer.clone(), now + Duration::from_secs(60));
        assert!(cache.get("a", now).is_some());
        assert!(cache.get("a", now + Duration::from_secs(61)).is_none());
        assert!(cache.is_empty(), "an expired answer is dropped when seen");
        for i in 0..100 {
            cache.put(format!("k{i}").into(), answer.clone(), now + Duration::from_secs(60));
            assert!(cache.len() <= 8);
        }
        assert!(cache.get("k99", now).is_some(), "the newest answer is kept");
    }

    #[test]
    fn a_successor_keeps_only_the_caches_claimed_again() {
        let key = |authorizer: &str, epoch: u64| CacheKey {
            api: "a".into(),
            stage: "prod".into(),
            authorizer: authorizer.into(),
            uri: "f".into(),
            epoch,
        };
        let mut caches = Caches::default();
        let kept = caches.claim(key("one", 0));
        let _dropped = caches.claim(key("two", 0));
        assert!(Arc::ptr_eq(&kept, &caches.claim(key("one", 0))));
        let mut next = caches.successor();
        assert!(Arc::ptr_eq(&kept, &next.claim(key("one", 0))));
        assert_eq!(next.len(), 1);
        // A new epoch (FlushStageAuthorizersCache) is a new cache.
        let mut flushed = next.successor();
        assert!(!Arc::ptr_eq(&kept, &flushed.claim(key("one", 1))));
    }

    proptest! {
        #[test]
        fn no_malformed_answer_panics_or_allows_without_an_allow(text in "\\PC{0,300}") {
            for mode in [REST, V2, Mode::Simple] {
                if let Ok(answer) = parse_answer(text.as_bytes(), mode) {
                    if let Answer::Policy { .. } = &answer {
                        // Whatever it is, it allows only where a statement allows.
                        let _ = verdict(&answer, ARN);
                    }
                }
            }
        }

        #[test]
        fn answers_built_from_parts_parse_or_are_refused(
            effect in prop_oneof![Just("Allow"), Just("Deny"), Just("allow"), Just("")],
            resource in prop_oneof![Just(json!(ARN)), Just(json!("*")), Just(json!(7)), Just(json!([ARN]))],
            context in prop_oneof![Just(json!({})), Just(json!({"a": {"b": 1}})), Just(json!({"a": 1})), Just(json!(3))],
        ) {
            let answer = json!({"principalId": "p", "policyDocument": {"Statement": [{"Effect": effect, "Action": "execute-api:Invoke", "Resource": resource}]}, "context": context});
            if let Ok(parsed) = parse(&answer, REST) {
                prop_assert!(matches!(effect, "Allow" | "Deny"));
                let allowed = verdict(&parsed, ARN) == Verdict::Allow;
                prop_assert_eq!(allowed, effect == "Allow");
            }
        }
    }
}
