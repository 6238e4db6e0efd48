//! The edge: Portico's public listener, hyper's HTTP/1.1 server and pooled client on a tokio
//! thread of the core's own.
//!
//! Why: with Python on the request path, every request crosses Granian's I/O thread, its
//! scheduling thread and the event loop, and the barest ASGI proxy reaches only about half of
//! nginx's throughput on two cores (`benches/run.py`, ceiling case). Requests that need no Python
//! are therefore served here, start to finish, without touching the GIL:
//!
//! - `HTTP_PROXY` (to `http://`) and `MOCK` routes of HTTP APIs whose deployment has no plugin,
//!   CORS or access log (the data plane says which, in the table it publishes, with stage
//!   variables already filled in): routed, throttled and proxied with AWS's header rules
//!   (aws-semantics §3.2, ported from `http_proxy.py`; the same end-to-end tests check both);
//! - the 404 and 429 answers of such APIs.
//!
//! Everything else is passed, unchanged, to the Python pipeline behind Granian on a private
//! Unix socket, with the client's address in a header only the edge can sign (`EDGE_HEADER`,
//! carrying a per-server secret). A request is classified without spending throttle tokens and
//! spends them only when the edge serves it, so a request passed on is counted once, by Python.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde_json::Value;

use crate::gateway::{self, NOT_FOUND, ROUTE, THROTTLED};
use crate::ids::IdGenerator;
use crate::throttle::monotonic_ns;

/// The header that carries the client's address to the Python pipeline:
/// `<secret> <client ip> <HTTP version>`. The edge drops any a client sends.
pub const EDGE_HEADER: &str = "x-portico-edge";

const VIA: &str = "HTTP/1.1 AmazonAPIGateway";
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
];
/// `Connection` values that name no header beyond the hop-by-hop ones.
const PLAIN_CONNECTION: [&str; 6] = [
    "keep-alive",
    "close",
    "upgrade",
    "te",
    "keep-alive, te",
    "te, keep-alive",
];

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type EdgeBody = BoxBody<Bytes, BoxError>;

/// An `HTTP_PROXY` integration the edge serves: a URI whose path and query may hold `{name}`
/// path-parameter markers.
#[derive(Debug)]
pub struct FastProxy {
    origin: String,
    path: String,
    query: String,
    append_path: bool,
    method: Option<Method>,
    timeout: Duration,
    user_agent: HeaderValue,
    /// The gateway's own address toward the upstream (`Forwarded: by=`).
    by: String,
}

/// A `MOCK` integration: the same response every time.
#[derive(Debug)]
pub struct FastMock {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// How the edge serves a route.
#[derive(Debug)]
pub enum Fast {
    Proxy(FastProxy),
    Mock(FastMock),
}

/// What the data plane publishes: which routes the edge serves and which errors it answers.
pub struct Table {
    gateway: Arc<gateway::Gateway>,
    /// (API, stage, canary, route) indices of a verdict -> the proxy that serves it.
    routes: HashMap<(i64, i64, bool, i64), Arc<Fast>>,
    /// Per API index: whether the edge may answer its 404 and 429 itself.
    answers: Vec<bool>,
    /// Whether the edge answers requests that name no API (404).
    answer_unmatched: bool,
    header_limit: usize,
    payload_limit: u64,
}

impl Table {
    /// The table from the data plane's JSON (see `portico/dataplane/edge.py`).
    pub fn from_json(gateway: Arc<gateway::Gateway>, json: &str) -> Result<Table, String> {
        let spec: Value = serde_json::from_str(json).map_err(|e| format!("edge table: {e}"))?;
        let mut routes = HashMap::new();
        for r in spec.get("routes").and_then(Value::as_array).into_iter().flatten() {
            let fast = match r.get("kind").and_then(Value::as_str) {
                Some("mock") => Fast::Mock(mock_from_json(r)?),
                _ => Fast::Proxy(proxy_from_json(r)?),
            };
            let canary = r.get("canary").and_then(Value::as_bool).unwrap_or(false);
            let key = (int_of(r, "api")?, int_of(r, "stage")?, canary, int_of(r, "route")?);
            routes.insert(key, Arc::new(fast));
        }
        let answers = spec
            .get("answers")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|v| v.as_bool().unwrap_or(false)).collect())
            .unwrap_or_default();
        Ok(Table {
            gateway,
            routes,
            answers,
            answer_unmatched: spec.get("answer_unmatched").and_then(Value::as_bool).unwrap_or(false),
            header_limit: int_of(&spec, "header_limit")? as usize,
            payload_limit: int_of(&spec, "payload_limit")? as u64,
        })
    }
}

fn int_of(v: &Value, name: &str) -> Result<i64, String> {
    v.get(name)
        .and_then(Value::as_i64)
        .ok_or_else(|| format!("edge table: `{name}` must be an integer"))
}

fn text_of(v: &Value, name: &str) -> Result<String, String> {
    v.get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("edge table: `{name}` must be a string"))
}

fn proxy_from_json(r: &Value) -> Result<FastProxy, String> {
    let method = match r.get("method").and_then(Value::as_str) {
        None => None,
        Some(m) => Some(Method::from_bytes(m.as_bytes()).map_err(|e| e.to_string())?),
    };
    let api_id = text_of(r, "api_id")?;
    Ok(FastProxy {
        origin: text_of(r, "origin")?,
        path: text_of(r, "path")?,
        query: text_of(r, "query")?,
        append_path: r.get("append_path").and_then(Value::as_bool).unwrap_or(false),
        method,
        timeout: Duration::from_millis(int_of(r, "timeout_ms")?.max(50) as u64),
        user_agent: HeaderValue::from_str(&format!("AmazonAPIGateway_{api_id}")).map_err(|e| e.to_string())?,
        by: text_of(r, "by")?,
    })
}

fn mock_from_json(r: &Value) -> Result<FastMock, String> {
    let status = u16::try_from(int_of(r, "status")?)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or("edge table: bad mock status")?;
    let mut headers = HeaderMap::new();
    for pair in r.get("headers").and_then(Value::as_array).into_iter().flatten() {
        let (Some(name), Some(value)) = (pair.get(0).and_then(Value::as_str), pair.get(1).and_then(Value::as_str))
        else {
            return Err("edge table: mock headers must be [name, value] pairs".into());
        };
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
        let value = HeaderValue::from_bytes(&latin1(value)).map_err(|e| e.to_string())?;
        headers.append(name, value);
    }
    // The body travels as latin-1 text: one character per byte.
    let body = Bytes::from(latin1(&text_of(r, "body")?));
    Ok(FastMock { status, headers, body })
}

/// Connects to the Python pipeline's Unix socket (cheaper than loopback TCP for the extra hop).
#[derive(Clone)]
struct UnixConnector(Arc<std::path::PathBuf>);

impl tower_service::Service<Uri> for UnixConnector {
    type Response = TokioIo<tokio::net::UnixStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let path = self.0.clone();
        Box::pin(async move { Ok(TokioIo::new(tokio::net::UnixStream::connect(&*path).await?)) })
    }
}

struct Shared {
    table: ArcSwap<Table>,
    client: Client<HttpConnector, Incoming>,
    /// The Python pipeline (Granian) on its Unix socket; URIs name `http://portico` for it.
    backend: Client<UnixConnector, LimitedBody>,
    secret: String,
    ids: IdGenerator,
}

/// A running edge: stops (its thread ends) when dropped.
pub struct Edge {
    shared: Arc<Shared>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Edge {
    /// Serve `listener` on a thread of its own, passing what the table does not cover to the
    /// Python pipeline listening on the Unix socket `backend`.
    pub fn start(
        listener: std::net::TcpListener,
        backend: std::path::PathBuf,
        secret: String,
        table: Table,
    ) -> std::io::Result<Edge> {
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(usize::MAX)
            .build(connector);
        let backend_path = backend.clone();
        let backend = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(usize::MAX)
            .build(UnixConnector(Arc::new(backend)));
        let shared = Arc::new(Shared {
            table: ArcSwap::from_pointee(table),
            client,
            backend,
            secret,
            ids: IdGenerator::new(),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = shared.clone();
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        std::thread::Builder::new()
            .name("portico-edge".into())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::select! {
                        _ = stopped => {}
                        _ = accept_loop(listener, &backend_path, serving) => {}
                    }
                });
                runtime.shutdown_background();
            })?;
        Ok(Edge {
            shared,
            _stop: stop,
        })
    }

    /// Serve from `table` from now on (requests in flight finish on the old one).
    pub fn publish(&self, table: Table) {
        self.shared.table.store(Arc::new(table));
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, backend: &std::path::Path, shared: Arc<Shared>) {
    // Workers start before Granian listens on the pipeline's socket: clients wait in the public
    // socket's backlog until requests can be passed on, rather than getting 500s.
    while tokio::net::UnixStream::connect(backend).await.is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                // Out of descriptors or a connection reset before accept: back off, keep serving.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::task::spawn(async move {
            let service = service_fn(move |req| handle(shared.clone(), req, peer));
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<EdgeBody>, Infallible> {
    let table = shared.table.load_full();
    let snapshot = table.gateway.snapshot();
    let host = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let raw_path = req.uri().path().to_owned();
    let mut decision = snapshot.classify(&host, req.method().as_str(), &raw_path);
    match decision.kind {
        ROUTE => {
            let key = (decision.api, decision.stage, decision.canary, decision.route);
            // The limits are counted only for requests the edge could serve itself.
            let fast = table.routes.get(&key).cloned();
            if let (Some(fast), Some(body)) = (fast, within_limits(&req, &table)) {
                snapshot.spend_with_clock(&mut decision, table.gateway.buckets(), monotonic_ns);
                let id = shared.ids.request_id();
                if decision.kind == THROTTLED {
                    return Ok(answer(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests", &id));
                }
                return Ok(match &*fast {
                    Fast::Mock(mock) => mock_response(mock, &id),
                    // Refused before anything reaches the upstream, as the pipeline does.
                    Fast::Proxy(_) if body == BodyFit::TooLarge => {
                        answer(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large", &id)
                    }
                    Fast::Proxy(proxy) => {
                        let params: Vec<(&str, &str)> = decision.params().collect();
                        let target = Target {
                            api_path: decision.path,
                            params: &params,
                        };
                        proxy_request(&shared, proxy, req, &host, target, peer, id).await
                    }
                });
            }
        }
        NOT_FOUND => {
            // `answers` is false for every API that is not an HTTP API.
            let answers = if decision.api < 0 {
                table.answer_unmatched
            } else {
                table.answers.get(decision.api as usize).copied().unwrap_or(false)
            };
            if answers && within_limits(&req, &table).is_some() {
                let id = shared.ids.request_id();
                return Ok(answer(StatusCode::NOT_FOUND, "Not Found", &id));
            }
        }
        _ => {}
    }
    let rest_api = decision.api >= 0 && !snapshot.is_http_api(decision.api);
    Ok(forward(&shared, req, peer, table.payload_limit, rest_api).await)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFit {
    Fits,
    /// Declared longer than the payload limit.
    TooLarge,
}

/// Whether the edge may serve this request itself (`Some`, with how its body fits the payload
/// limit): no body (or one declared over the limit, refused unread) and a head within the header
/// limit, counted as the pipeline counts it. `None` sends the request to the pipeline.
fn within_limits(req: &Request<Incoming>, table: &Table) -> Option<BodyFit> {
    let headers = req.headers();
    if headers.contains_key(http::header::TRANSFER_ENCODING) {
        return None;
    }
    let mut fit = BodyFit::Fits;
    if let Some(length) = headers.get(CONTENT_LENGTH) {
        match length.to_str().ok().and_then(|v| v.parse::<u64>().ok()) {
            Some(0) => {}
            // Uploads go to the pipeline, whose client stops sending the moment the upstream
            // answers early; hyper reports an upstream that answers and closes mid-upload as a
            // failed request, depending on timing.
            Some(n) if n <= table.payload_limit => return None,
            Some(_) => fit = BodyFit::TooLarge,
            None => return None,
        }
    }
    let mut size = req.method().as_str().len()
        + req.uri().path().len()
        + req.uri().query().map_or(0, str::len)
        + 12;
    for (name, value) in headers {
        size += name.as_str().len() + value.len() + 4;
    }
    (size <= table.header_limit).then_some(fit)
}

fn json_body(body: Bytes) -> EdgeBody {
    Full::new(body).map_err(|never| match never {}).boxed()
}

/// An HTTP API's gateway response: `{"message": ...}` with its request id.
fn answer(status: StatusCode, message: &str, request_id: &str) -> Response<EdgeBody> {
    let body = Bytes::from(format!("{{\"message\":\"{message}\"}}"));
    let mut response = Response::new(json_body(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert("apigw-requestid", id);
    }
    response
}

fn mock_response(mock: &FastMock, request_id: &str) -> Response<EdgeBody> {
    let mut response = Response::new(json_body(mock.body.clone()));
    *response.status_mut() = mock.status;
    let headers = response.headers_mut();
    headers.clone_from(&mock.headers);
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.append("apigw-requestid", id);
    }
    response
}

// ------------------------------------------------------------------------------------------
// HTTP_PROXY (aws-semantics §3.2; the same rules as python/portico/integrations/http_proxy.py)

/// Where a request goes within its API: the path the API sees and the route's path parameters
/// (raw, as the client sent them).
struct Target<'a> {
    api_path: &'a str,
    params: &'a [(&'a str, &'a str)],
}

async fn proxy_request(
    shared: &Shared,
    proxy: &FastProxy,
    req: Request<Incoming>,
    host: &str,
    target: Target<'_>,
    peer: SocketAddr,
    request_id: String,
) -> Response<EdgeBody> {
    let url = upstream_url(proxy, &target, req.uri().query().unwrap_or(""));
    let uri = match Uri::try_from(url.as_str()) {
        Ok(uri) => uri,
        Err(_) => return answer(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", &request_id),
    };
    let (parts, body) = req.into_parts();
    let method = proxy.method.clone().unwrap_or(parts.method);
    let trace = || shared.ids.trace_id(epoch_seconds());
    let mut headers = upstream_request_headers(&parts.headers, proxy, &peer.ip(), host, &trace);
    match parts.headers.get(CONTENT_LENGTH) {
        Some(length) if length.as_bytes() != b"0" => {
            headers.insert(CONTENT_LENGTH, length.clone());
        }
        // Methods that carry a body say it is empty (as the Python transport does).
        _ if matches!(method, Method::POST | Method::PUT | Method::PATCH) => {
            headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        }
        _ => {}
    }
    let mut upstream_req = Request::new(body);
    *upstream_req.method_mut() = method.clone();
    *upstream_req.uri_mut() = uri;
    *upstream_req.headers_mut() = headers;
    let response = match tokio::time::timeout(proxy.timeout, shared.client.request(upstream_req)).await {
        Err(_) => return answer(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable", &request_id),
        Ok(Err(_)) => return answer(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", &request_id),
        Ok(Ok(response)) => response,
    };
    let (mut parts, body) = response.into_parts();
    let status = parts.status;
    filter_response_headers(&mut parts.headers);
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        parts.headers.append("apigw-requestid", id);
    }
    let no_body = method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status.is_informational();
    let body = if no_body {
        json_body(Bytes::new())
    } else {
        IdleTimeout::new(body, proxy.timeout).boxed()
    };
    Response::from_parts(parts, body)
}

fn epoch_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The upstream URL: the URI with `{name}` path parameters filled in (a missing one is empty),
/// the API path appended for `$default` routes and path-less URIs, the client's raw query after the
/// URI's own.
fn upstream_url(proxy: &FastProxy, target: &Target<'_>, raw_query: &str) -> String {
    let path = fill(&proxy.path, target.params);
    let own_query = fill(&proxy.query, target.params);
    let mut url = String::with_capacity(proxy.origin.len() + path.len() + target.api_path.len() + 32);
    url.push_str(&proxy.origin);
    // As in the pipeline: a URI whose path comes out empty gets the API path too.
    if proxy.append_path || path.is_empty() || path == "/" {
        url.push_str(path.trim_end_matches('/'));
        url.push_str(if target.api_path.is_empty() { "/" } else { target.api_path });
    } else if path.is_empty() {
        url.push('/');
    } else {
        url.push_str(&path);
    }
    let query = match (own_query.is_empty(), raw_query.is_empty()) {
        (_, true) => own_query.into_owned(),
        (true, false) => raw_query.to_owned(),
        (false, false) => format!("{own_query}&{raw_query}"),
    };
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query);
    }
    url
}

/// `template` with each `{name}` replaced by that path parameter's value ("" when absent).
fn fill<'t>(template: &'t str, params: &[(&str, &str)]) -> std::borrow::Cow<'t, str> {
    if !template.contains('{') {
        return std::borrow::Cow::Borrowed(template);
    }
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            out.push_str(&rest[open..]);
            return std::borrow::Cow::Owned(out);
        };
        let name = &rest[open + 1..open + close];
        if let Some((_, value)) = params.iter().find(|(n, _)| *n == name) {
            out.push_str(value);
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

fn is_token(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+.^_`|~-".contains(&b))
}

/// An RFC 7239 value: a token as is, anything else quoted (an IPv6 address as "[addr]").
pub fn forwarded_value(value: &str) -> String {
    if is_token(value) {
        return value.to_owned();
    }
    let mut text = value.to_owned();
    if value.contains(':') && !value.starts_with('[') && value.parse::<std::net::Ipv6Addr>().is_ok() {
        text = format!("[{value}]");
    }
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn header_text(value: &HeaderValue) -> String {
    value.as_bytes().iter().map(|&b| b as char).collect()
}

/// Whether an `X-Amzn-Trace-Id` value carries a root (`(?:^|;)\s*Root=`).
fn has_trace_root(value: &str) -> bool {
    value
        .split(';')
        .enumerate()
        .any(|(i, part)| if i == 0 { part.starts_with("Root=") } else { part.trim_start().starts_with("Root=") })
}

/// The upstream request's headers (aws-semantics §3.2): hop-by-hop ones and those the client's
/// `Connection` names are dropped, as are Host, Content-Length and Expect; `X-Forwarded-*` and any
/// `Forwarded` are folded into one `Forwarded` to which this hop is appended; `Via`,
/// `X-Amzn-Trace-Id` (when the client sent none) and `User-Agent` (likewise) are added.
pub fn upstream_request_headers(
    client: &HeaderMap,
    proxy: &FastProxy,
    client_ip: &IpAddr,
    host: &str,
    trace_id: &dyn Fn() -> String,
) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(client.len() + 4);
    let mut special: HashMap<&str, String> = HashMap::new();
    let mut connection: Option<String> = None;
    for (name, value) in client {
        let n = name.as_str();
        match n {
            "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-host" | "forwarded" | "via"
            | "x-amzn-trace-id" | "user-agent" => {
                let text = header_text(value);
                special
                    .entry(n)
                    .and_modify(|prev| {
                        prev.push_str(", ");
                        prev.push_str(&text);
                    })
                    .or_insert(text);
            }
            "connection" => {
                let text = header_text(value);
                connection = Some(match connection {
                    Some(prev) => format!("{prev}, {text}"),
                    None => text,
                });
            }
            "host" | "content-length" | "expect" | EDGE_HEADER => {}
            _ if HOP_BY_HOP.contains(&n) => {}
            _ => {
                out.append(name.clone(), value.clone());
            }
        }
    }
    if let Some(conn) = connection {
        if !PLAIN_CONNECTION.contains(&conn.to_ascii_lowercase().as_str()) {
            for token in conn.split(',') {
                if let Ok(named) = HeaderName::from_bytes(token.trim().to_ascii_lowercase().as_bytes()) {
                    out.remove(named);
                }
            }
        }
    }
    let hop = format!(
        "by={};for={};host={};proto=http",
        forwarded_value(&proxy.by),
        forwarded_value(&client_ip.to_string()),
        forwarded_value(host),
    );
    let mut elements: Vec<String> = Vec::new();
    if let Some(forwarded) = special.get("forwarded") {
        elements.push(forwarded.clone());
    }
    let xff = special.get("x-forwarded-for");
    let xfh = special.get("x-forwarded-host");
    let xfp = special.get("x-forwarded-proto");
    if xff.is_some() || xfh.is_some() || xfp.is_some() {
        let hops: Vec<&str> = xff
            .map(|v| v.split(',').map(str::trim).filter(|h| !h.is_empty()).collect())
            .unwrap_or_default();
        let mut extra = String::new();
        if let Some(h) = xfh {
            extra.push_str(";host=");
            extra.push_str(&forwarded_value(h.split(',').next().unwrap_or("").trim()));
        }
        if let Some(p) = xfp {
            extra.push_str(";proto=");
            extra.push_str(&forwarded_value(p.split(',').next().unwrap_or("").trim()));
        }
        if let Some((first, rest)) = hops.split_first() {
            elements.push(format!("for={}{extra}", forwarded_value(first)));
            elements.extend(rest.iter().map(|h| format!("for={}", forwarded_value(h))));
        } else if !extra.is_empty() {
            elements.push(extra[1..].to_owned());
        }
    }
    elements.push(hop);
    let value = |text: String| HeaderValue::from_bytes(&latin1(&text)).ok();
    if let Some(v) = value(elements.join(", ")) {
        out.append("forwarded", v);
    }
    let via = match special.get("via") {
        Some(prev) => format!("{prev}, {VIA}"),
        None => VIA.to_owned(),
    };
    if let Some(v) = value(via) {
        out.append("via", v);
    }
    let trace = match special.get("x-amzn-trace-id") {
        Some(t) if has_trace_root(t) => t.clone(),
        _ => trace_id(),
    };
    if let Some(v) = value(trace) {
        out.append("x-amzn-trace-id", v);
    }
    match special.get("user-agent").and_then(|ua| value(ua.clone())) {
        Some(v) => {
            out.append("user-agent", v);
        }
        None => {
            out.append("user-agent", proxy.user_agent.clone());
        }
    }
    out
}

fn latin1(text: &str) -> Vec<u8> {
    text.chars().map(|c| u32::from(c).min(255) as u8).collect()
}

/// The client response's headers: hop-by-hop ones and those the upstream's `Connection` names are
/// dropped; `Content-Type: application/json` is added when the upstream sent none.
pub fn filter_response_headers(headers: &mut HeaderMap) {
    let connection: Option<String> = {
        let values: Vec<String> = headers.get_all("connection").iter().map(header_text).collect();
        (!values.is_empty()).then(|| values.join(", "))
    };
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    if let Some(conn) = connection {
        if !PLAIN_CONNECTION.contains(&conn.to_ascii_lowercase().as_str()) {
            for token in conn.split(',') {
                if let Ok(named) = HeaderName::from_bytes(token.trim().to_ascii_lowercase().as_bytes()) {
                    if named != CONTENT_TYPE && named != CONTENT_LENGTH {
                        headers.remove(named);
                    }
                }
            }
        }
    }
    if !headers.contains_key(CONTENT_TYPE) {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
}

/// A response body whose every read must make progress within `timeout` (`timeoutInMillis`
/// applies to each body read, as in the Python pipeline): a stalled upstream is cut, a slow
/// client is not.
struct IdleTimeout {
    inner: Incoming,
    timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl IdleTimeout {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        IdleTimeout {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl Body for IdleTimeout {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = tokio::time::Instant::now() + this.timeout;
                this.deadline.as_mut().reset(next);
                Poll::Ready(frame.map(|f| f.map_err(BoxError::from)))
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                // An error makes hyper abort the connection: the client sees a truncated
                // response, never one that looks complete.
                Poll::Ready(()) => Poll::Ready(Some(Err("upstream body read timed out".into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// ------------------------------------------------------------------------------------------
// Passing a request on to the Python pipeline

/// A request body passed on to the pipeline, cut (with an error) once it passes the payload limit.
/// The pipeline drains bodies it answers without reading, so that its server never closes the
/// connection mid-upload (hyper would then report the request failed and drop the answer); the
/// cut bounds that draining.
struct LimitedBody {
    inner: Incoming,
    left: u64,
    over: Arc<std::sync::atomic::AtomicBool>,
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let size = frame.data_ref().map_or(0, |d| d.len() as u64);
                if size > this.left {
                    this.over.store(true, std::sync::atomic::Ordering::Relaxed);
                    return Poll::Ready(Some(Err("request body over the payload limit".into())));
                }
                this.left -= size;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

async fn forward(
    shared: &Shared,
    req: Request<Incoming>,
    peer: SocketAddr,
    payload_limit: u64,
    rest_api: bool,
) -> Response<EdgeBody> {
    let (mut parts, body) = req.into_parts();
    let over = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let body = LimitedBody {
        inner: body,
        left: payload_limit,
        over: over.clone(),
    };
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let uri = match Uri::try_from(format!("http://portico{target}")) {
        Ok(uri) => uri,
        Err(_) => {
            let id = shared.ids.request_id();
            return answer(StatusCode::BAD_REQUEST, "Bad Request", &id);
        }
    };
    let version = match parts.version {
        http::Version::HTTP_10 => "1.0",
        _ => "1.1",
    };
    parts.headers.remove(EDGE_HEADER);
    if let Ok(v) = HeaderValue::from_str(&format!("{} {} {version}", shared.secret, peer.ip())) {
        parts.headers.append(EDGE_HEADER, v);
    }
    parts.uri = uri;
    parts.version = http::Version::HTTP_11;
    let request = Request::from_parts(parts, body);
    match shared.backend.request(request).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            for name in HOP_BY_HOP {
                if name != "transfer-encoding" {
                    parts.headers.remove(name);
                }
            }
            Response::from_parts(parts, body.map_err(BoxError::from).boxed())
        }
        Err(_) => {
            let id = shared.ids.request_id();
            if !over.load(std::sync::atomic::Ordering::Relaxed) {
                return answer(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", &id);
            }
            // The pipeline refuses such a body the same way once it has counted it.
            if rest_api {
                let mut response = answer(StatusCode::PAYLOAD_TOO_LARGE, "Request Too Long", &id);
                response.headers_mut().insert(
                    "x-amzn-errortype",
                    HeaderValue::from_static("RequestTooLargeException"),
                );
                response
            } else {
                answer(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large", &id)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(path: &str, query: &str, append: bool) -> FastProxy {
        FastProxy {
            origin: "http://up:8080".into(),
            path: path.into(),
            query: query.into(),
            append_path: append,
            method: None,
            timeout: Duration::from_secs(1),
            user_agent: HeaderValue::from_static("AmazonAPIGateway_abc"),
            by: "10.0.0.1".into(),
        }
    }

    fn at<'a>(api_path: &'a str, params: &'a [(&'a str, &'a str)]) -> Target<'a> {
        Target { api_path, params }
    }

    #[test]
    fn urls_append_the_path_and_merge_queries() {
        assert_eq!(upstream_url(&proxy("", "", true), &at("/a/b", &[]), ""), "http://up:8080/a/b");
        assert_eq!(upstream_url(&proxy("/base/", "", true), &at("/a", &[]), "x=1"), "http://up:8080/base/a?x=1");
        assert_eq!(upstream_url(&proxy("/p", "k=v", false), &at("/no", &[]), "x=1"), "http://up:8080/p?k=v&x=1");
        assert_eq!(upstream_url(&proxy("/p/", "", false), &at("/no", &[]), ""), "http://up:8080/p/");
        assert_eq!(upstream_url(&proxy("/{gone}", "", false), &at("/api", &[]), ""), "http://up:8080/api");
    }

    #[test]
    fn path_parameters_fill_the_uri_raw() {
        let params = [("proxy", "a%2Fb/c"), ("id", "7")];
        let p = proxy("/items/{id}/{proxy}", "of={id}&{missing}", false);
        assert_eq!(upstream_url(&p, &at("/x", &params), "q=1"), "http://up:8080/items/7/a%2Fb/c?of=7&&q=1");
        assert_eq!(fill("/{unclosed", &params), "/{unclosed");
    }

    #[test]
    fn forwarded_values_quote_what_is_not_a_token() {
        assert_eq!(forwarded_value("10.0.0.1"), "10.0.0.1");
        assert_eq!(forwarded_value("127.0.0.1:8080"), "\"127.0.0.1:8080\"");
        assert_eq!(forwarded_value("::1"), "\"[::1]\"");
        assert_eq!(forwarded_value("a\"b"), "\"a\\\"b\"");
    }

    #[test]
    fn request_headers_follow_the_proxy_rules() {
        let mut client = HeaderMap::new();
        client.append("host", HeaderValue::from_static("api.example"));
        client.append("accept", HeaderValue::from_static("*/*"));
        client.append("connection", HeaderValue::from_static("x-secret"));
        client.append("x-secret", HeaderValue::from_static("1"));
        client.append("x-forwarded-for", HeaderValue::from_static("1.1.1.1, 2.2.2.2"));
        client.append("x-forwarded-proto", HeaderValue::from_static("https"));
        client.append("keep-alive", HeaderValue::from_static("timeout=5"));
        client.append(EDGE_HEADER, HeaderValue::from_static("forged"));
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let out = upstream_request_headers(&client, &proxy("", "", true), &ip, "api.example", &|| "Root=1-x".into());
        assert_eq!(out.get("accept").unwrap(), "*/*");
        for gone in ["host", "connection", "x-secret", "keep-alive", "x-forwarded-for", EDGE_HEADER] {
            assert!(out.get(gone).is_none(), "{gone} should be dropped");
        }
        assert_eq!(
            out.get("forwarded").unwrap(),
            "for=1.1.1.1;proto=https, for=2.2.2.2, by=10.0.0.1;for=127.0.0.1;host=api.example;proto=http"
        );
        assert_eq!(out.get("via").unwrap(), VIA);
        assert_eq!(out.get("x-amzn-trace-id").unwrap(), "Root=1-x");
        assert_eq!(out.get("user-agent").unwrap(), "AmazonAPIGateway_abc");
    }

    #[test]
    fn a_client_trace_root_is_kept() {
        let mut client = HeaderMap::new();
        client.append("x-amzn-trace-id", HeaderValue::from_static("Self=1;Root=1-abc"));
        client.append("user-agent", HeaderValue::from_static("curl"));
        let ip: IpAddr = "::1".parse().unwrap();
        let out = upstream_request_headers(&client, &proxy("", "", true), &ip, "h", &|| "new".into());
        assert_eq!(out.get("x-amzn-trace-id").unwrap(), "Self=1;Root=1-abc");
        assert_eq!(out.get("user-agent").unwrap(), "curl");
        assert_eq!(out.get("forwarded").unwrap(), "by=10.0.0.1;for=\"[::1]\";host=h;proto=http");
    }

    #[test]
    fn response_headers_drop_hops_and_default_the_type() {
        let mut headers = HeaderMap::new();
        headers.append("connection", HeaderValue::from_static("x-internal"));
        headers.append("x-internal", HeaderValue::from_static("1"));
        headers.append("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.append("x-kept", HeaderValue::from_static("1"));
        filter_response_headers(&mut headers);
        assert!(headers.get("x-internal").is_none());
        assert!(headers.get("keep-alive").is_none());
        assert_eq!(headers.get("x-kept").unwrap(), "1");
        assert_eq!(headers.get("content-type").unwrap(), "application/json");
    }
}
