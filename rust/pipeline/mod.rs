//! The request pipeline: every built-in phase of the gateway, in one explicit chain, run for both
//! front doors (the edge's listener, `crate::edge`, and the embedded ASGI app, `crate::embed`).
//!
//! ```text
//! limits -> select API and stage -> mTLS -> route -> CORS preflight -> throttle -> authorize
//!        -> usage plan -> validate -> plugins' on_request
//!        -> integrate (HTTP_PROXY, MOCK: here; AWS_PROXY: the Python side runs the handler)
//!        -> CORS headers -> plugins' on_response -> gateway response -> access log
//! ```
//!
//! A phase that fails returns an `ErrorType`; the gateway-response phase turns it into AWS's
//! answer for the API's kind. Python is on the path only where the user's code runs: Lambda
//! handlers and plugins (`crate::invoke`). See docs/pipeline.md.

pub mod access_log;
mod authorize;
pub mod body;
mod cache;
pub mod cors;
pub mod gateway_responses;
mod iam;
pub mod limits;
pub mod mapping;
pub mod responses;
mod usage_plan;
pub mod validate;
mod websocket;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN, USER_AGENT};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Body as _;
use smallvec::SmallVec;

use crate::access_log::{Identity, LogRecord};
use crate::auth::mtls::{self, ClientAuth};
use crate::auth::{AuthContext, Granted};
use crate::cluster::{Spend, Spent};
use crate::gateway::{ApiKind, Decision, Gateway, Outcome, RouteRuntime, Serving, Snapshot};
use crate::ids::IdGenerator;
use crate::integrations::http_proxy::{Target, UpstreamClient};
use crate::integrations::parameter_mapping::{read_prefix, BodyNeed, ResponseMapping, Values, BODY_SELECTION_LIMIT};
use crate::integrations::{non_proxy, Integration};
use crate::invoke::{Call, Hook, Invoker, PluginRequest, PluginResponse, Reply, ReplyBody};
use crate::lambda::EventSource;
use crate::spec::TransferMode;
use crate::throttle::monotonic_ns;
use body::{empty, full, BodyError, LimitedBody, PipelineBody, Reported};
use cors::Cors;
use responses::ErrorType;

/// Cluster mode, failing closed: when a client refused because Redis cannot decide may retry.
pub(crate) const UNAVAILABLE_RETRY_NS: u64 = 1_000_000_000;

/// The header every HTTP API answer carries: the request's id.
const REQUEST_ID: HeaderName = HeaderName::from_static("apigw-requestid");
/// REST APIs' answers carry `$context.requestId` and `$context.extendedRequestId` ("Variables for
/// access logging" in the API Gateway developer guide).
const AMZN_REQUEST_ID: HeaderName = HeaderName::from_static("x-amzn-requestid");
const APIGW_ID: HeaderName = HeaderName::from_static("x-amz-apigw-id");

/// Who sent a request, as the front door knows it.
#[derive(Debug, Clone)]
pub struct Connection {
    pub client_ip: IpAddr,
    pub scheme: &'static str,
    /// mTLS (a TLS listener with a truststore): the client's certificate, trusted or refused.
    pub client_auth: Option<Arc<ClientAuth>>,
}

/// A phase's failure: the gateway response to answer with, and why (for the operator's log and
/// `$context.integrationErrorMessage`; clients never see it).
#[derive(Debug, Default)]
pub struct Failure {
    pub error: ErrorType,
    pub detail: String,
    /// The client's message, where AWS words it per request (`$context.error.message`: a
    /// signature's canonical request, an explicit deny); None: the type's own.
    pub message: Option<String>,
    /// Headers the answer carries (`WWW-Authenticate` of a JWT authorizer).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// REST APIs' request validation: `$context.error.validationErrorString`.
    pub validation: Option<String>,
}

impl From<ErrorType> for Failure {
    fn from(error: ErrorType) -> Self {
        Failure {
            error,
            ..Failure::default()
        }
    }
}

impl Failure {
    pub fn new(error: ErrorType, detail: impl Into<String>) -> Failure {
        Failure {
            error,
            detail: detail.into(),
            ..Failure::default()
        }
    }

    /// With the client's message in place of the type's.
    pub fn saying(mut self, message: impl Into<String>) -> Failure {
        self.message = Some(message.into());
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Failure {
        self.headers.push((name, value));
        self
    }
}

fn fail<T>(error: ErrorType, detail: impl Into<String>) -> Result<T, Failure> {
    Err(Failure::new(error, detail))
}

/// What the pipeline learns about a request as it goes, for the later phases and the log.
struct Exchange {
    /// `$context.requestId`: HTTP APIs' 16-character id; a UUID once the request is known to
    /// reach a REST API.
    request_id: String,
    /// REST APIs' `$context.extendedRequestId` (the 16-character id). None for HTTP APIs (and
    /// requests no API claims), whose extended id is their request id.
    extended_request_id: Option<String>,
    started: Instant,
    epoch_ms: u64,
    api: Option<usize>,
    serving: Option<Arc<Serving>>,
    route: Option<usize>,
    /// For a request addressed path-style, the path as the stage's own host would see it.
    path_style: Option<String>,
    /// What the authorize phase learned (the caller, an authorizer's grant, the API key).
    auth: AuthContext,
    /// The routed path's variables, for gateway responses' `method.request.path.X`.
    path_params: Option<PathParams>,
    /// What the integration answered; None when the gateway answered itself or from its cache.
    integration: Option<Integrated>,
    error: Option<Failure>,
    /// What is left of the key's quota, for `RateLimit-*` headers (`settings.rateLimitHeaders`).
    quota: Option<crate::usage::QuotaState>,
    /// A front door's hand-over of the connection, for a WebSocket handshake: the edge's, or
    /// the embedded door's for an ASGI `websocket` scope.
    upgrade: Option<websocket::Upgrade>,
    /// A WebSocket handshake: the connection it opens, as `$connect`'s authorizer and the
    /// access log see it (`websocket`).
    websocket: Option<Box<crate::websocket::events::ConnectionContext>>,
}

/// An integration's answer, for the access log (`$context.integrationStatus`,
/// `$context.integrationLatency`: absent for an answer from the stage's cache, as on AWS).
#[derive(Debug, Clone, Copy)]
struct Integrated {
    status: u16,
    latency_ms: u64,
    /// A Lambda function answered (the Lambda service's own status is then 200).
    lambda: bool,
}

impl Exchange {
    /// The request is a REST API's: its id becomes a UUID, and the id drawn so far its extended id.
    fn issue_rest_ids(&mut self, ids: &IdGenerator) {
        if self.extended_request_id.is_none() {
            self.extended_request_id = Some(std::mem::replace(&mut self.request_id, ids.uuid()));
        }
    }

    /// `$context.extendedRequestId`.
    fn extended_request_id(&self) -> &str {
        self.extended_request_id.as_deref().unwrap_or(&self.request_id)
    }

    fn route(&self) -> Option<&RouteRuntime> {
        Some(&self.serving.as_ref()?.routes[self.route?])
    }

    /// The path as addressed to the stage (`$context.path`, the event's raw path).
    fn addressed_path<'p>(&'p self, parts: &'p http::request::Parts) -> &'p str {
        self.path_style.as_deref().unwrap_or(parts.uri.path())
    }
}

pub struct Pipeline {
    pub gateway: Arc<Gateway>,
    pub invoker: Arc<Invoker>,
    /// Shared with the WebSocket connections' sessions (one pointer each, not a client copy).
    upstream: Arc<UpstreamClient>,
    ids: IdGenerator,
    /// The WebSocket connections this process holds (`crate::websocket`).
    pub websockets: Arc<crate::websocket::Registry>,
    /// How `@connections` reaches the connections of other workers and nodes, once the edge
    /// listens (`crate::edge::Server::start_relay`).
    pub relay: std::sync::OnceLock<Arc<crate::websocket::relay::Relay>>,
}

/// The core's wall clock (`crate::time::wall_clock_ms`: the system's, or a test's).
fn epoch_ms() -> u64 {
    crate::time::wall_clock_ms()
}

fn header_str<'h>(headers: &'h HeaderMap, name: HeaderName) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn protocol(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    }
}

impl Pipeline {
    pub fn new(gateway: Arc<Gateway>, invoker: Arc<Invoker>) -> Result<Pipeline, String> {
        let ca_file = gateway.snapshot().settings.upstream_ca_file.clone();
        Ok(Pipeline {
            gateway,
            invoker,
            upstream: Arc::new(UpstreamClient::new(ca_file.as_deref())?),
            ids: IdGenerator::new(),
            websockets: Arc::default(),
            relay: std::sync::OnceLock::new(),
        })
    }

    /// Run one request through every phase; the response always comes back (errors become
    /// gateway responses).
    pub async fn handle(&self, req: Request<PipelineBody>, conn: Connection) -> Response<PipelineBody> {
        let snap = self.gateway.snapshot();
        let (mut parts, body) = req.into_parts();
        let upgrade = match parts.extensions.remove::<hyper::upgrade::OnUpgrade>() {
            Some(edge) => Some(websocket::Upgrade::Edge(edge)),
            None => parts
                .extensions
                .remove::<crate::embed::EmbeddedSocket>()
                .and_then(|socket| socket.take())
                .map(websocket::Upgrade::Embedded),
        };
        let mut ex = Exchange {
            request_id: self.ids.request_id(),
            extended_request_id: None,
            started: Instant::now(),
            epoch_ms: epoch_ms(),
            api: None,
            serving: None,
            route: None,
            path_style: None,
            auth: AuthContext {
                client_cert: mtls::trusted_cert(&conn),
                ..AuthContext::default()
            },
            path_params: None,
            integration: None,
            error: None,
            quota: None,
            upgrade,
            websocket: None,
        };
        // A body the pipeline does not read to its end is read (and dropped) before answering.
        let (body, leftover) = if body.is_end_stream() {
            (body, None)
        } else {
            let (body, leftover) = body::Reclaimable::new(body);
            (body.boxed(), Some(leftover))
        };
        let mut response = match self.run(&snap, &parts, body, &conn, &mut ex).await {
            Ok(response) => response,
            Err(failure) => {
                let response = self.gateway_response(&snap, &ex, &parts, &conn, &failure);
                if matches!(
                    failure.error,
                    ErrorType::FunctionError | ErrorType::IntegrationFailure | ErrorType::MalformedResponse
                ) {
                    eprintln!(
                        "portico: request {}: {}: {}",
                        ex.request_id,
                        failure.error.name(),
                        failure.detail
                    );
                }
                ex.error = Some(failure);
                response
            }
        };
        if let Some(rest) = leftover.and_then(|l| l.take()) {
            let closing = response.headers().get(http::header::CONNECTION).is_some_and(|v| v == "close");
            let settings = &snap.settings;
            let idle = body::Idle::new(rest, settings.body_timeout, None).boxed();
            if closing || body::drain(idle, settings.payload_limit).await.is_err() {
                // Too much, too slow or malformed: answer, then close instead of reading on.
                response
                    .headers_mut()
                    .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            }
        }
        set_request_id_headers(&ex, response.headers_mut());
        if let Some(quota) = &ex.quota {
            response
                .headers_mut()
                .extend(usage_plan::quota_headers(quota));
        }
        self.access_log(snap, parts, conn, ex, response)
    }

    async fn run(
        &self,
        snap: &Arc<Snapshot>,
        parts: &http::request::Parts,
        body: PipelineBody,
        conn: &Connection,
        ex: &mut Exchange,
    ) -> Result<Response<PipelineBody>, Failure> {
        // limits: the request line and headers, before any work on their content.
        let settings = &snap.settings;
        limits::check_head(parts, settings.header_limit)?;
        limits::check_host(parts).map_err(|e| Failure::new(e, "no Host header, or more than one"))?;

        // select API and stage, route: no tokens spent yet.
        let host = header_str(&parts.headers, HOST).unwrap_or("");
        let raw_path = parts.uri.path();
        let mut d = snap.classify(host, parts.method.as_str(), raw_path);
        ex.api = d.api;
        if d.api.is_some_and(|a| snap.api(a).kind == ApiKind::Rest) {
            ex.issue_rest_ids(&self.ids);
        }
        ex.serving = snap.serving(&d).cloned();
        ex.path_style = d.path_style.then(|| stage_path(&d, ex.serving.as_deref()));

        // mTLS: every request of a connection whose client certificate is missing or untrusted
        // is refused, whatever it asks for (the API and stage are known, for the access log).
        if let Some(refused) = mtls::refusal(conn) {
            return Err(refused);
        }

        // WebSocket APIs: the handshake and the `@connections` API (`websocket`).
        if d.outcome == Outcome::Route && d.api.is_some_and(|a| snap.api(a).kind == ApiKind::Websocket) {
            return self.websocket(snap, parts, body, conn, ex, &d).await;
        }

        // CORS preflight: answered by the gateway whatever the route.
        if let Some(cors) = self.cors(snap, ex) {
            if cors::is_preflight(&parts.method, &parts.headers) {
                let mut response = Response::new(empty());
                *response.status_mut() = StatusCode::NO_CONTENT;
                cors.preflight(parts.headers.get(ORIGIN), response.headers_mut());
                return Ok(response);
            }
        }
        match d.outcome {
            Outcome::Route => {}
            Outcome::BadRequest => return fail(ErrorType::BadRequest, "malformed request path"),
            Outcome::NotFound | Outcome::Throttled => {
                let rest = d.api.is_some_and(|a| snap.api(a).kind == ApiKind::Rest);
                // REST APIs answer an unknown path, method or stage with 403.
                let error = if rest {
                    ErrorType::MissingAuthenticationToken
                } else {
                    ErrorType::ResourceNotFound
                };
                return fail(error, "no route matched");
            }
        }
        ex.route = d.route;
        ex.path_params = PathParams::of(&d, raw_path);
        // A request body must keep coming: each read makes progress within the body timeout.
        let (mut body, stalled) = if body.is_end_stream() {
            (body, None)
        } else {
            let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let idle = body::Idle::new(body, settings.body_timeout, Some(stalled.clone()));
            (idle.boxed(), Some(stalled))
        };

        // throttle: the route's bucket (its method's, else the stage's), then the account's.
        match self.gateway.cluster() {
            None => snap.spend_with_clock(&mut d, self.gateway.buckets(), monotonic_ns),
            Some(cluster) => {
                if let Some(chain) = snap.chain(&d) {
                    let spends: SmallVec<[Spend; 2]> = chain
                        .iter()
                        .map(|b| Spend {
                            hash: b.hash,
                            limit: b.limit,
                        })
                        .collect();
                    match cluster.spend(&spends, None).await {
                        Spent::Admitted => {}
                        Spent::Refused { index, wait_ns } => {
                            d.throttle(chain[index].burst, wait_ns)
                        }
                        Spent::Unavailable => d.throttle(chain[0].burst, UNAVAILABLE_RETRY_NS),
                    }
                }
            }
        }
        if d.outcome == Outcome::Throttled {
            if let Some(serving) = ex.serving.as_deref() {
                self.gateway.tally().bump(&serving.counter, crate::usage::Counter::Throttled);
            }
            return Err(usage_plan::throttled(snap, d.retry_after_ms, d.throttle_burst));
        }

        // authorize: the resource policy, the route's authorization, its API key.
        if let Err(failure) = self.authorize(snap, parts, conn, ex, &d, &mut body).await {
            if stalled.as_ref().is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed)) {
                return fail(ErrorType::RequestTimeout, "the client stopped sending its body");
            }
            return Err(failure);
        }

        // usage plan: the API key's plan's throttle (its method's, else the plan's), then its quota.
        self.usage_plan(snap, ex).await?;

        // validate (REST APIs' request validators): required parameters, then the body against
        // its model; a body read for it is handed on as read.
        if let Err(failure) = self.validate(snap, parts, ex, &d, &mut body).await {
            if stalled.as_ref().is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed)) {
                return fail(ErrorType::RequestTimeout, "the client stopped sending its body");
            }
            return Err(failure);
        }

        let params: Vec<(&str, &str)> = d.params().collect();
        let hooks = settings.plugins;
        let plugin_request = (hooks.on_request || hooks.on_response)
            .then(|| Arc::new(self.plugin_request(snap, parts, conn, ex, &d, &params)));

        // plugins' on_request: they may answer instead of the integration.
        if let (true, Some(request)) = (hooks.on_request, &plugin_request) {
            let reply = self.invoker.call(Call::Plugin {
                hook: Hook::OnRequest,
                request: request.clone(),
                response: None,
            });
            match reply.await {
                Ok(Reply::Continue) => {}
                Ok(Reply::Respond(r)) => return self.plugin_answer(snap, parts, ex, request, r).await,
                Ok(Reply::Failed(error, why)) => return fail(error, why),
                _ => return fail(ErrorType::IntegrationFailure, "the Python side stopped"),
            }
        }

        // integrate, through the stage's cache when it caches the route
        let integrated = self.integrate_cached(snap, parts, body, conn, ex, &d, &params).await;
        if stalled.is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed)) {
            return fail(ErrorType::RequestTimeout, "the client stopped sending its body");
        }
        let mut response = integrated?;
        if let Some(cors) = self.cors(snap, ex) {
            cors.apply(parts.headers.get(ORIGIN), response.headers_mut());
        }
        // A streamed answer is not held back for plugins' on_response hooks, which need it whole
        // (as API Gateway applies no feature that buffers the response to a streamed one).
        let streamed = || ex.route().is_some_and(|r| r.integration.streams());
        match (hooks.on_response && !streamed(), plugin_request) {
            (true, Some(request)) => self.on_response(request, response).await,
            _ => Ok(response),
        }
    }

    /// The CORS policy of the deployment serving a request (the API's before a stage is known).
    fn cors<'s>(&self, snap: &'s Snapshot, ex: &'s Exchange) -> Option<&'s Cors> {
        match &ex.serving {
            Some(serving) => serving.cors.as_deref(),
            None => ex.api.and_then(|a| snap.api(a).cors.as_deref()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn integrate(
        &self,
        snap: &Snapshot,
        parts: &http::request::Parts,
        body: PipelineBody,
        conn: &Connection,
        ex: &Exchange,
        d: &Decision<'_>,
        params: &[(&str, &str)],
    ) -> Result<Response<PipelineBody>, Failure> {
        let Some(route) = ex.route() else {
            return fail(ErrorType::IntegrationFailure, "no route");
        };
        let settings = &snap.settings;
        // Every integration's request body is held to the payload limit; one declared over it is
        // refused before anything is read or reaches an upstream.
        if declared_length(&parts.headers).is_some_and(|n| n > settings.payload_limit) {
            return fail(ErrorType::RequestTooLarge, "declared Content-Length over the payload limit");
        }
        match &route.integration {
            Integration::Mock(mock) => {
                // A MOCK answers without the body, but only once it has arrived whole and within
                // the limit, as any other integration's.
                body::drain(body, settings.payload_limit).await.map_err(body_failure)?;
                let mut response = Response::new(full(mock.body.clone()));
                *response.status_mut() = mock.status;
                *response.headers_mut() = mock.headers.clone();
                Ok(response)
            }
            Integration::HttpProxy(proxy) => {
                // REST `requestParameters`: the request the proxy passes on, mapped first.
                let (rest_mapped, body) = match &proxy.rest_parameters {
                    None => (None, body),
                    Some(mapping) => {
                        let (mapped, body) = self.map_proxy_request(snap, mapping, parts, body, conn, ex, d, params).await?;
                        (Some(mapped), body)
                    }
                };
                let mapped_params = rest_mapped.as_ref().map(MappedProxyRequest::params);
                let (parts, params) = match (&rest_mapped, &mapped_params) {
                    (Some(m), Some(p)) => (&m.parts, &p[..]),
                    _ => (parts, params),
                };
                let (limited, state) = LimitedBody::new(body, settings.payload_limit);
                let mut body = limited.boxed();
                // HTTP APIs' request parameters, resolved once (reading what they need of the body).
                let mut mapped = None;
                if let Some(mapping) = &proxy.mapping.request {
                    let (read, whole) = match read_for(mapping.body_need(), body, settings.payload_limit).await {
                        Ok(read) => read,
                        Err(_) => return Err(body_failure(state.error().unwrap_or(BodyError::Broken))),
                    };
                    body = whole;
                    mapped = Some(self.in_context(snap, parts, conn, ex, None, |context| {
                        mapping.resolve(&Values {
                            headers: &parts.headers,
                            raw_query: parts.uri.query().unwrap_or(""),
                            path: d.path,
                            path_params: params,
                            body: &read,
                            context,
                        })
                    }));
                }
                let target = Target {
                    api_path: d.path,
                    params,
                    client_ip: conn.client_ip,
                    host: header_str(&parts.headers, HOST).unwrap_or(""),
                    scheme: conn.scheme,
                    mapped: mapped.as_ref(),
                };
                let trace = || self.ids.trace_id(ex.epoch_ms / 1000);
                let called = proxy
                    .call(&self.upstream, parts, body, target, settings.header_limit, &trace)
                    .await;
                match (called, state.error()) {
                    (Ok(response), _) => match &proxy.mapping.response {
                        Some(mapping) => self.map_response(mapping, response, snap, parts, conn, ex, d, params).await,
                        None => Ok(response),
                    },
                    // The client's body failed, not the upstream: the client's fault is answered.
                    (Err(_), Some(body)) => Err(body_failure(body)),
                    (Err((error, detail)), None) => fail(error, detail),
                }
            }
            Integration::LambdaProxy(lambda) => {
                let body = body::read_all(body, settings.payload_limit).await.map_err(body_failure)?;
                // HTTP APIs' request parameters change the request the event describes.
                let mapped = lambda.mapping.request.as_ref().map(|mapping| {
                    let resolved = self.in_context(snap, parts, conn, ex, None, |context| {
                        mapping.resolve(&Values {
                            headers: &parts.headers,
                            raw_query: parts.uri.query().unwrap_or(""),
                            path: d.path,
                            path_params: params,
                            body: &body,
                            context,
                        })
                    });
                    let mut headers = parts.headers.clone();
                    resolved.apply_headers(&mut headers);
                    (headers, resolved.apply_query(parts.uri.query().unwrap_or("")), resolved.path())
                });
                let api = snap.api(ex.api.unwrap_or(0));
                let serving = ex.serving.as_deref();
                let trace = self.ids.trace_id(ex.epoch_ms / 1000);
                let source = EventSource {
                    format: lambda.format,
                    request_id: &ex.request_id,
                    extended_request_id: ex.extended_request_id(),
                    trace_id: &trace,
                    method: parts.method.as_str(),
                    raw_path: match &mapped {
                        Some((_, _, Some(path))) => path,
                        _ => ex.path_style.as_deref().unwrap_or(parts.uri.path()),
                    },
                    path: match &mapped {
                        Some((_, _, Some(path))) => path,
                        _ => d.path,
                    },
                    raw_query: mapped.as_ref().map_or(parts.uri.query().unwrap_or(""), |(_, q, _)| q),
                    headers: mapped.as_ref().map_or(&parts.headers, |(h, _, _)| h),
                    host: header_str(&parts.headers, HOST).unwrap_or(""),
                    scheme: conn.scheme,
                    protocol: protocol(parts.version),
                    client_ip: &conn.client_ip.to_string(),
                    time_epoch_ms: ex.epoch_ms,
                    account_id: &settings.account_id,
                    api_id: &api.id,
                    stage: serving.map_or("", |s| &s.stage),
                    deployment_id: serving.map_or("", |s| &s.deployment_id),
                    route_key: &route.key,
                    resource_path: &route.resource_path,
                    path_params: params,
                    stage_variables: serving.map_or(&[], |s| &s.variables),
                    body: &body,
                    binary_media_types: &api.binary_media_types,
                    auth: &ex.auth,
                };
                let accept = header_str(&parts.headers, ACCEPT);
                if lambda.transfer_mode() == TransferMode::Stream {
                    let (region, account) = (&settings.region, &settings.account_id);
                    let invocation = self.ids.uuid();
                    let streamed = lambda.invoke_streaming(&self.invoker, &source, accept, region, account, invocation);
                    return streamed.await.or_else(|(error, detail)| fail(error, detail));
                }
                match lambda
                    .invoke(
                        &self.invoker,
                        &source,
                        accept,
                        &settings.region,
                        &settings.account_id,
                        self.ids.uuid(),
                    )
                    .await
                {
                    Ok(r) => {
                        let response = response_of(r.status, r.headers, full(r.body));
                        match &lambda.mapping.response {
                            Some(mapping) => self.map_response(mapping, response, snap, parts, conn, ex, d, params).await,
                            None => Ok(response),
                        }
                    }
                    Err((error, detail)) => fail(error, detail),
                }
            }
            Integration::NonProxy(integration) => {
                let body = body::read_all(body, settings.payload_limit).await.map_err(body_failure)?;
                let ids = self.event_ids(ex, conn);
                let source = rest_event_source(snap, parts, conn, ex, d, params, &route.resource_path, &ids, &body);
                let served = integration
                    .serve(non_proxy::Exchange {
                        parts,
                        body: body.clone(),
                        source: &source,
                        client: &self.upstream,
                        invoker: &self.invoker,
                        region: &settings.region,
                        account_id: &settings.account_id,
                        invocation_id: self.ids.uuid(),
                        payload_limit: settings.payload_limit,
                    })
                    .await;
                served.map_err(|(error, detail)| {
                    if error == ErrorType::ApiConfigurationError {
                        eprintln!("portico: request {}: {detail}", ex.request_id);
                    }
                    Failure::new(error, detail)
                })
            }
            Integration::Unavailable(detail) => {
                eprintln!(
                    "portico: request {}: execution failed due to configuration error: {detail}",
                    ex.request_id
                );
                fail(ErrorType::ApiConfigurationError, detail.to_string())
            }
            Integration::Unset => fail(ErrorType::ApiConfigurationError, "the route has no integration"),
            // Compiled only for WebSocket routes, which `websocket` serves.
            Integration::Websocket(_) => fail(ErrorType::ApiConfigurationError, "a WebSocket integration"),
        }
    }

    /// The ids a REST event carries beyond the request's own.
    fn event_ids(&self, ex: &Exchange, conn: &Connection) -> EventIds {
        EventIds {
            trace: self.ids.trace_id(ex.epoch_ms / 1000),
            extended: ex.extended_request_id().to_owned(),
            client_ip: conn.client_ip.to_string(),
        }
    }

    /// REST `HTTP_PROXY` with `requestParameters`: the client's request with the mapped headers
    /// (replacing the client's of the same name) and query parameters (after the client's), and
    /// the path parameters the URI is filled from (mapped ones first). A mapping that reads the
    /// body has it read first (within the payload limit).
    #[allow(clippy::too_many_arguments)]
    async fn map_proxy_request(
        &self,
        snap: &Snapshot,
        mapping: &mapping::RequestParameters,
        parts: &http::request::Parts,
        body: PipelineBody,
        conn: &Connection,
        ex: &Exchange,
        d: &Decision<'_>,
        params: &[(&str, &str)],
    ) -> Result<(MappedProxyRequest, PipelineBody), Failure> {
        let (read, body) = if mapping.needs_body() {
            let read = body::read_all(body, snap.settings.payload_limit).await.map_err(body_failure)?;
            (read.clone(), full(read))
        } else {
            (Bytes::new(), body)
        };
        let serving = ex.serving.as_deref();
        let context = match (mapping.needs_context(), ex.route()) {
            (true, Some(route)) => {
                let ids = self.event_ids(ex, conn);
                let source = rest_event_source(snap, parts, conn, ex, d, params, &route.resource_path, &ids, &read);
                Some(non_proxy::context_of(&source))
            }
            _ => None,
        };
        let mapped = mapping.apply(&mapping::MethodRequest {
            headers: &parts.headers,
            raw_query: parts.uri.query().unwrap_or(""),
            path_params: params,
            stage_variables: serving.map_or(&[], |s| &s.variables),
            body: &read,
            context: context.as_ref(),
        });
        if let Some(name) = mapped.reserved_header() {
            let detail = format!("execution failed due to configuration error: {name} header already present");
            eprintln!("portico: request {}: {detail}", ex.request_id);
            return fail(ErrorType::ApiConfigurationError, detail);
        }
        let mut headers = parts.headers.clone();
        for (name, _) in &mapped.headers {
            headers.remove(name);
        }
        for (name, value) in &mapped.headers {
            if let Some(value) = mapping::text_header(value) {
                headers.append(name.clone(), value);
            }
        }
        let mut path_and_query = parts.uri.path().to_owned();
        let mut query: Vec<String> = parts.uri.query().filter(|q| !q.is_empty()).map(str::to_owned).into_iter().collect();
        for (name, value) in &mapped.query {
            let mut pair = String::new();
            non_proxy::query_pair(name, value, &mut pair);
            query.push(pair);
        }
        if !query.is_empty() {
            path_and_query.push('?');
            path_and_query.push_str(&query.join("&"));
        }
        let uri = Uri::try_from(path_and_query.as_str()).map_err(|e| Failure::new(ErrorType::BadRequest, e.to_string()))?;
        let (mut new_parts, ()) = Request::builder()
            .method(parts.method.clone())
            .uri(uri)
            .version(parts.version)
            .body(())
            .map_err(|e| Failure::new(ErrorType::BadRequest, e.to_string()))?
            .into_parts();
        new_parts.headers = headers;
        let mut path: Vec<(String, String)> = mapped.path;
        path.extend(params.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Ok((MappedProxyRequest { parts: new_parts, path }, body))
    }

    /// HTTP APIs' response parameters: the mappings of the integration's status applied to its
    /// answer (reading what they need of its body, which then passes on whole).
    #[allow(clippy::too_many_arguments)]
    async fn map_response(
        &self,
        mapping: &ResponseMapping,
        response: Response<PipelineBody>,
        snap: &Snapshot,
        parts: &http::request::Parts,
        conn: &Connection,
        ex: &Exchange,
        d: &Decision<'_>,
        params: &[(&str, &str)],
    ) -> Result<Response<PipelineBody>, Failure> {
        let (mut head, body) = response.into_parts();
        let need = mapping.body_need(head.status);
        let (read, body) = read_for(need, body, snap.settings.payload_limit)
            .await
            .map_err(|e| Failure::new(ErrorType::IntegrationFailure, format!("reading the integration's response: {e}")))?;
        let answered = head.headers.clone();
        let mut status = head.status;
        let applied = self.in_context(snap, parts, conn, ex, Some(status.as_u16()), |context| {
            mapping.apply(
                &mut status,
                &mut head.headers,
                &Values {
                    headers: &answered,
                    raw_query: parts.uri.query().unwrap_or(""),
                    path: d.path,
                    path_params: params,
                    body: &read,
                    context,
                },
            )
        });
        applied.map_err(|why| Failure::new(ErrorType::MalformedResponse, why))?;
        head.status = status;
        Ok(Response::from_parts(head, body))
    }

    /// Run `f` with `$context.NAME` for HTTP APIs' parameter mappings: the request as an access
    /// log renders it so far (`integration_status` once the integration answered); a value an
    /// access log prints as `-` is absent.
    fn in_context<R>(
        &self,
        snap: &Snapshot,
        parts: &http::request::Parts,
        conn: &Connection,
        ex: &Exchange,
        integration_status: Option<u16>,
        f: impl FnOnce(&(dyn Fn(&str, &mut String) -> bool + Sync)) -> R,
    ) -> R {
        let text = RecordText::new(conn, ex);
        let pairs = text.authorizer_pairs();
        let record = LogRecord {
            extended_request_id: Some(ex.extended_request_id()),
            status: integration_status.unwrap_or(0),
            integration_status,
            ..request_record(snap, parts, conn, ex, &text, &pairs)
        };
        let api = ex.api.map(|a| snap.api(a));
        let kind = api.map_or(ApiKind::Http, |a| a.kind);
        let context = |name: &str, out: &mut String| {
            let start = out.len();
            if !crate::access_log::render_context(name, kind, &record, out) || &out[start..] == "-" {
                out.truncate(start);
                return false;
            }
            true
        };
        f(&context)
    }

    // ------------------------------------------------------------------------------ plugins

    fn plugin_request(
        &self,
        snap: &Snapshot,
        parts: &http::request::Parts,
        conn: &Connection,
        ex: &Exchange,
        d: &Decision<'_>,
        params: &[(&str, &str)],
    ) -> PluginRequest {
        let api = ex.api.map(|a| snap.api(a));
        let serving = ex.serving.as_deref();
        let route = ex.route();
        PluginRequest {
            request_id: ex.request_id.clone(),
            method: parts.method.as_str().to_owned(),
            raw_path: parts.uri.path().to_owned(),
            path: d.path.to_owned(),
            raw_query: parts.uri.query().unwrap_or("").to_owned(),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| (Bytes::copy_from_slice(n.as_str().as_bytes()), Bytes::copy_from_slice(v.as_bytes())))
                .collect(),
            host: header_str(&parts.headers, HOST).unwrap_or("").to_owned(),
            scheme: conn.scheme,
            protocol: protocol(parts.version),
            client_ip: conn.client_ip.to_string(),
            time_epoch_ms: ex.epoch_ms,
            account_id: snap.settings.account_id.to_string(),
            api_id: api.map_or(String::new(), |a| a.id.to_string()),
            api_name: api.map_or(String::new(), |a| a.name.to_string()),
            api_kind: match api.map(|a| a.kind) {
                Some(ApiKind::Rest) => "rest",
                Some(ApiKind::Websocket) => "websocket",
                _ => "http",
            },
            stage: serving.map_or(String::new(), |s| s.stage.to_string()),
            deployment_id: serving.map_or(String::new(), |s| s.deployment_id.to_string()),
            is_canary: serving.is_some_and(|s| s.is_canary),
            stage_variables: serving
                .map(|s| s.variables.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
                .unwrap_or_default(),
            route_key: route.map_or(String::new(), |r| r.key.to_string()),
            resource_path: route.map_or(String::new(), |r| r.resource_path.to_string()),
            path_params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    /// An answer a plugin gave instead of the integration: it passes the response phases too.
    async fn plugin_answer(
        &self,
        snap: &Snapshot,
        parts: &http::request::Parts,
        ex: &Exchange,
        request: &Arc<PluginRequest>,
        answer: PluginResponse,
    ) -> Result<Response<PipelineBody>, Failure> {
        let mut response = plugin_response(answer)?;
        if let Some(cors) = self.cors(snap, ex) {
            cors.apply(parts.headers.get(ORIGIN), response.headers_mut());
        }
        if snap.settings.plugins.on_response {
            return self.on_response(request.clone(), response).await;
        }
        Ok(response)
    }

    async fn on_response(
        &self,
        request: Arc<PluginRequest>,
        response: Response<PipelineBody>,
    ) -> Result<Response<PipelineBody>, Failure> {
        let (parts, body) = response.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => return fail(ErrorType::IntegrationFailure, format!("reading the response: {e}")),
        };
        let headers = parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().iter().map(|&b| b as char).collect()))
            .collect();
        let reply = self.invoker.call(Call::Plugin {
            hook: Hook::OnResponse,
            request,
            response: Some(PluginResponse {
                status: parts.status.as_u16(),
                headers,
                body: ReplyBody::Bytes(body),
            }),
        });
        match reply.await {
            Ok(Reply::Respond(r)) => plugin_response(r),
            Ok(Reply::Failed(error, why)) => fail(error, why),
            _ => fail(ErrorType::IntegrationFailure, "the Python side stopped"),
        }
    }

    // ------------------------------------------------------------------------------ answers

    /// The gateway response for `error`, worded for the API's kind, with the deployment's CORS.
    fn gateway_response(
        &self,
        snap: &Snapshot,
        ex: &Exchange,
        parts: &http::request::Parts,
        conn: &Connection,
        failure: &Failure,
    ) -> Response<PipelineBody> {
        let error = failure.error;
        let kind = ex.api.map_or(ApiKind::Http, |a| snap.api(a).kind);
        let answer = error.response(kind);
        // The API's customisation (REST APIs' PutGatewayResponse), if one applies.
        let custom = self.customised(snap, ex, parts, conn, failure, &answer);
        let (custom_headers, custom_body, custom_status) = match custom {
            Some(c) => (c.headers, c.body, c.status),
            None => (Vec::new(), None, None),
        };
        let (content_type, body) = match custom_body {
            Some((content_type, body)) => (content_type, body),
            None => (
                HeaderValue::from_static("application/json"),
                answer.body_with(failure.message.as_deref()),
            ),
        };
        let mut response = Response::new(full(body));
        *response.status_mut() = custom_status
            .unwrap_or_else(|| StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, content_type);
        for (name, value) in custom_headers {
            headers.insert(name, value);
        }
        if let Some(t) = answer.error_type {
            headers.insert("x-amzn-errortype", HeaderValue::from_static(t));
        }
        if matches!(
            error,
            ErrorType::RequestTooLarge
                | ErrorType::RequestTimeout
                | ErrorType::MalformedBody
                | ErrorType::ClientCertificateRefused
        ) {
            // The rest of the body is not worth reading, or cannot be framed: close rather than
            // drain it. A connection refused by mTLS is closed too, as AWS fails it.
            headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        for (name, value) in &failure.headers {
            headers.append(name.clone(), value.clone());
        }
        if let Some(cors) = self.cors(snap, ex) {
            cors.apply(parts.headers.get(ORIGIN), headers);
        }
        response
    }

    /// A REST API's customised gateway response for `failure`, rendered for this request.
    fn customised(
        &self,
        snap: &Snapshot,
        ex: &Exchange,
        parts: &http::request::Parts,
        conn: &Connection,
        failure: &Failure,
        answer: &responses::GatewayResponse,
    ) -> Option<gateway_responses::Rendered> {
        let api = snap.api(ex.api?);
        let custom = api.gateway_responses.as_deref()?;
        let serving = ex.serving.as_deref();
        let message = failure.message.as_deref().or(answer.message);
        let text = RecordText::new(conn, ex);
        let pairs = text.authorizer_pairs();
        let record = LogRecord {
            status: answer.status,
            error_message: message,
            error_response_type: Some(failure.error.name()),
            error_validation: failure.validation.as_deref(),
            ..request_record(snap, parts, conn, ex, &text, &pairs)
        };
        let params: Vec<(&str, &str)> = ex
            .path_params
            .as_ref()
            .map(|p| p.pairs(parts.uri.path()).collect())
            .unwrap_or_default();
        let cx = gateway_responses::RenderContext {
            headers: &parts.headers,
            raw_query: parts.uri.query().unwrap_or(""),
            path_params: &params,
            stage_variables: serving.map_or(&[], |s| &s.variables),
            record: &record,
            kind: api.kind,
            message,
            response_type: failure.error.name(),
        };
        custom.render(failure.error.name(), answer.status, header_str(&parts.headers, ACCEPT), &cx)
    }

    /// The access-log phase: when the response body has gone (or failed), one line per log.
    /// The request head and what the pipeline learned move into the body's end: nothing is
    /// copied for the log.
    fn access_log(
        &self,
        snap: Arc<Snapshot>,
        parts: http::request::Parts,
        conn: Connection,
        ex: Exchange,
        response: Response<PipelineBody>,
    ) -> Response<PipelineBody> {
        let stage_log = ex.serving.as_ref().and_then(|s| s.access_log.clone());
        let global = snap.settings.access_log.clone();
        if stage_log.is_none() && global.is_none() {
            return response;
        }
        let status = match response.status().as_u16() {
            // An accepted WebSocket handshake is logged as AWS logs `$connect`'s success.
            101 if ex.websocket.is_some() => 200,
            status => status,
        };
        let write = move |sent: u64, _completed: bool| {
            // A HEAD answer carries no body, whatever its length says.
            let sent = if parts.method == http::Method::HEAD { 0 } else { sent };
            let api = ex.api.map(|a| snap.api(a));
            let route = ex.route();
            let error = ex.error.as_ref();
            let text = RecordText::new(&conn, &ex);
            let pairs = text.authorizer_pairs();
            let authorizer_latency_ms = match &ex.auth.granted {
                Granted::Lambda { latency_ms, .. } => Some(*latency_ms),
                _ => None,
            };
            let record = LogRecord {
                status,
                response_length: sent,
                error_message: error.map(|f| f.detail.as_str()),
                error_response_type: error.map(|f| f.error.name()),
                error_validation: error.and_then(|f| f.validation.as_deref()),
                integration_status: ex.integration.map(|i| i.status),
                integration_service_status: ex.integration.filter(|i| i.lambda).map(|_| 200),
                integration_latency_ms: ex.integration.map(|i| i.latency_ms),
                integration_error: error.map(|f| f.detail.as_str()),
                response_transfer_mode: route.map(|r| if r.integration.streams() { "STREAMED" } else { "BUFFERED" }),
                authorizer_latency_ms,
                ..request_record(&snap, &parts, &conn, &ex, &text, &pairs)
            };
            let kind = api.map_or(ApiKind::Http, |a| a.kind);
            for log in stage_log.iter().chain(global.iter()) {
                log.log(kind, &record);
            }
        };
        let (parts, body) = response.into_parts();
        Response::from_parts(parts, Reported::new(body, write).boxed())
    }
}

/// What every `LogRecord` of a request borrows beyond the request itself: the client's address
/// as text, the authorizer's values as text and the API key masked (its value never reaches a
/// record: see `api_key_mask`).
struct RecordText {
    ip: [u8; 48],
    ip_len: usize,
    authorizer_values: std::collections::BTreeMap<String, String>,
    masked_key: Option<String>,
}

impl RecordText {
    fn new(conn: &Connection, ex: &Exchange) -> RecordText {
        let mut ip = [0u8; 48];
        let ip_len = ip_text(conn.client_ip, &mut ip).len();
        // `$context.authorizer.claims.NAME` (a JWT's claims) and `$context.authorizer.NAME` (a
        // Lambda authorizer's context), values as the event renders them.
        let authorizer_values = match &ex.auth.granted {
            Granted::Jwt { claims, .. } => crate::auth::flatten_claims(claims),
            Granted::Lambda { context, .. } => crate::auth::flatten_claims(context),
            Granted::Nothing => Default::default(),
        };
        let masked_key = ex.auth.api_key.as_ref().map(|k| api_key_mask(&k.value));
        RecordText { ip, ip_len, authorizer_values, masked_key }
    }

    fn authorizer_pairs(&self) -> Vec<(&str, &str)> {
        self.authorizer_values.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }
}

/// The request as the access log, gateway responses' templates and HTTP APIs' `$context`
/// mappings read it: one record, which each completes with what it knows (the status, the
/// error, the integration's answer).
fn request_record<'a>(
    snap: &'a Snapshot,
    parts: &'a http::request::Parts,
    conn: &'a Connection,
    ex: &'a Exchange,
    text: &'a RecordText,
    authorizer_pairs: &'a [(&'a str, &'a str)],
) -> LogRecord<'a> {
    let api = ex.api.map(|a| snap.api(a));
    let route = ex.route();
    let (claims, authorizer, principal_id) = match &ex.auth.granted {
        Granted::Lambda { principal_id, .. } => (&[][..], authorizer_pairs, principal_id.as_deref()),
        _ => (authorizer_pairs, &[][..], None),
    };
    let iam = ex.auth.iam.as_ref();
    LogRecord {
        request_id: &ex.request_id,
        extended_request_id: ex.extended_request_id.as_deref(),
        http_method: parts.method.as_str(),
        path: ex.addressed_path(parts),
        protocol: protocol(parts.version),
        domain_name: Some(header_str(&parts.headers, HOST).unwrap_or("")),
        request_time_epoch_ms: ex.epoch_ms,
        identity: Identity {
            source_ip: std::str::from_utf8(&text.ip[..text.ip_len]).unwrap_or(""),
            user_agent: header_str(&parts.headers, USER_AGENT),
            api_key: text.masked_key.as_deref(),
            api_key_id: ex.auth.api_key.as_ref().map(|k| k.id.as_str()),
            client_cert: conn.client_auth.as_deref().and_then(ClientAuth::cert).map(|c| &**c),
            ..Default::default()
        }
        .signed_by(iam),
        account_id: Some(&snap.settings.account_id),
        api_id: api.map(|a| &*a.id),
        stage: ex.serving.as_deref().map(|s| &*s.stage),
        route_key: route.map(|r| &*r.key),
        resource_path: route.map(|r| &*r.resource_path),
        response_latency_ms: ex.started.elapsed().as_millis() as u64,
        claims,
        authorizer,
        authorizer_principal_id: principal_id,
        // A WebSocket handshake: the connection it opens (`websocket`).
        connection_id: ex.websocket.as_deref().map(|c| &*c.connection_id),
        event_type: ex.websocket.as_ref().map(|_| "CONNECT"),
        connected_at_ms: ex.websocket.as_deref().map(|c| c.connected_at_ms),
        ..Default::default()
    }
}

/// The headers naming the request, as its API's kind names it: `apigw-requestid` (HTTP APIs), or
/// `x-amzn-RequestId` and `x-amz-apigw-id` (REST APIs: on every answer, gateway responses
/// included).
fn set_request_id_headers(ex: &Exchange, headers: &mut HeaderMap) {
    let Ok(id) = HeaderValue::from_str(&ex.request_id) else {
        return;
    };
    match ex.extended_request_id.as_deref().map(HeaderValue::from_str) {
        None => {
            headers.insert(REQUEST_ID, id);
        }
        Some(extended) => {
            headers.insert(AMZN_REQUEST_ID, id);
            if let Ok(extended) = extended {
                headers.insert(APIGW_ID, extended);
            }
        }
    }
}

/// The ids of a REST event made for one integration call.
struct EventIds {
    trace: String,
    extended: String,
    client_ip: String,
}

/// A request as a REST event (and a mapping template's `$context`) sees it.
#[allow(clippy::too_many_arguments)]
fn rest_event_source<'a>(
    snap: &'a Snapshot,
    parts: &'a http::request::Parts,
    conn: &'a Connection,
    ex: &'a Exchange,
    d: &'a Decision<'_>,
    params: &'a [(&'a str, &'a str)],
    resource_path: &'a str,
    ids: &'a EventIds,
    body: &'a [u8],
) -> EventSource<'a> {
    let api = snap.api(ex.api.unwrap_or(0));
    let serving = ex.serving.as_deref();
    let settings = &snap.settings;
    EventSource {
        format: crate::lambda::PayloadFormat::RestV1,
        request_id: &ex.request_id,
        extended_request_id: &ids.extended,
        trace_id: &ids.trace,
        method: parts.method.as_str(),
        raw_path: ex.path_style.as_deref().unwrap_or(parts.uri.path()),
        path: d.path,
        raw_query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        host: header_str(&parts.headers, HOST).unwrap_or(""),
        scheme: conn.scheme,
        protocol: protocol(parts.version),
        client_ip: &ids.client_ip,
        time_epoch_ms: ex.epoch_ms,
        account_id: &settings.account_id,
        api_id: &api.id,
        stage: serving.map_or("", |s| &s.stage),
        deployment_id: serving.map_or("", |s| &s.deployment_id),
        route_key: ex.route().map_or("", |r| &r.key),
        resource_path,
        path_params: params,
        stage_variables: serving.map_or(&[], |s| &s.variables),
        body,
        binary_media_types: &api.binary_media_types,
        auth: &ex.auth,
    }
}

/// A REST `HTTP_PROXY` request with its `requestParameters` applied.
struct MappedProxyRequest {
    parts: http::request::Parts,
    /// Path parameters the URI is filled from: the mapped ones, then the route's.
    path: Vec<(String, String)>,
}

impl MappedProxyRequest {
    fn params(&self) -> Vec<(&str, &str)> {
        self.path.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }
}

/// A routed request's path variables: names and byte ranges into the raw path.
struct PathParams {
    names: Arc<[Box<str>]>,
    ranges: smallvec::SmallVec<[(u32, u32); 4]>,
    /// Where the API's path starts in the raw path.
    offset: usize,
}

impl PathParams {
    fn of(d: &Decision<'_>, raw_path: &str) -> Option<PathParams> {
        let names = d.param_names.clone()?;
        if d.params.is_empty() || !raw_path.ends_with(d.path) {
            return None;
        }
        Some(PathParams {
            names,
            ranges: d.params.clone(),
            offset: raw_path.len() - d.path.len(),
        })
    }

    fn pairs<'p>(&'p self, raw_path: &'p str) -> impl Iterator<Item = (&'p str, &'p str)> {
        self.names.iter().zip(self.ranges.iter()).filter_map(move |(name, (s, e))| {
            let value = raw_path.get(self.offset + *s as usize..self.offset + *e as usize)?;
            Some((&**name, value))
        })
    }
}

/// An API key as logs and gateway-response templates show it: `****` and its last four
/// characters, never the value (AWS's `$context.identity.apiKey` prints it whole).
pub(crate) fn api_key_mask(value: &str) -> String {
    let tail: String = value.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    if value.chars().count() <= 8 {
        return "****".to_owned();
    }
    format!("****{tail}")
}

/// `ip` as text, written into `buf` (no allocation).
pub(crate) fn ip_text(ip: IpAddr, buf: &mut [u8; 48]) -> &str {
    use std::io::Write;
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cursor, "{ip}");
    let n = cursor.position() as usize;
    std::str::from_utf8(&buf[..n]).unwrap_or("")
}

/// A response from parts given as text (the Python side's and Lambda's).
pub(crate) fn response_of(status: u16, headers: Vec<(String, String)>, body: PipelineBody) -> Response<PipelineBody> {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let map = response.headers_mut();
    for (name, value) in headers {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        if name == CONTENT_LENGTH || name == http::header::TRANSFER_ENCODING {
            continue;
        }
        let bytes: Vec<u8> = value.chars().map(|c| u32::from(c).min(255) as u8).collect();
        if let Ok(value) = HeaderValue::from_bytes(&bytes) {
            map.append(name, value);
        }
    }
    response
}

fn plugin_response(r: PluginResponse) -> Result<Response<PipelineBody>, Failure> {
    let body = match r.body {
        ReplyBody::Bytes(b) => full(b),
        ReplyBody::Stream(rx) => body::ChannelBody::new(rx).boxed(),
    };
    if !(100..=599).contains(&r.status) {
        return fail(ErrorType::IntegrationFailure, format!("a plugin answered status {}", r.status));
    }
    Ok(response_of(r.status, r.headers, body))
}

/// The answer to a request body that could not be read whole.
fn body_failure(error: BodyError) -> Failure {
    match error {
        BodyError::TooLarge => Failure::new(ErrorType::RequestTooLarge, "body passed the payload limit"),
        BodyError::Broken => Failure::new(
            ErrorType::MalformedBody,
            "the request body could not be read: malformed, or cut short",
        ),
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// The path as addressed to the stage: a path-style request (`/restapis/{id}/{stage}/
/// _user_request_/orders`) is seen as the stage's own host would see it (`/{stage}/orders`, or
/// `/orders` on an HTTP API's `$default` stage), so that handlers and frameworks route it.
fn stage_path(d: &Decision<'_>, serving: Option<&Serving>) -> String {
    match serving {
        Some(s) if &*s.stage != "$default" => format!("/{}{}", s.stage, if d.path == "/" { "" } else { d.path }),
        _ => d.path.to_owned(),
    }
}

/// Read what a parameter mapping needs of `body` (`BodyNeed`): (what was read, the whole body
/// again). A whole body is read up to `limit` bytes.
async fn read_for(need: BodyNeed, body: PipelineBody, limit: u64) -> Result<(Bytes, PipelineBody), body::BoxError> {
    match need {
        BodyNeed::None => Ok((Bytes::new(), body)),
        BodyNeed::Prefix => read_prefix(body, BODY_SELECTION_LIMIT).await,
        BodyNeed::Whole => read_prefix(body, usize::try_from(limit).unwrap_or(usize::MAX)).await,
    }
}
