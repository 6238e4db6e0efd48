//! `HTTP_PROXY`: the request goes to the integration's URL and the response streams back, both
//! ways without buffering, with API Gateway's header rules (docs/pipeline.md, "HTTP_PROXY").
//!
//! The URL is compiled per stage (stage variables filled in); `{name}` path-parameter markers are
//! filled per request with the raw values the client sent, the authority included (a host taken
//! from a path parameter). `https://` upstreams go through rustls with the system's roots, or the
//! PEM bundle of `settings.upstreamCaFile`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode, Uri};
use hyper::body::Body;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::pipeline::body::{empty, Idle, PipelineBody};
use crate::pipeline::responses::ErrorType;
use crate::spec::TransferMode;

const VIA: &str = "HTTP/1.1 AmazonAPIGateway";
/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded either way.
pub const HOP_BY_HOP: [&str; 10] = [
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

/// The pooled upstream client of every `HTTP_PROXY` route: http and https, keep-alive.
pub struct UpstreamClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, PipelineBody>,
}

impl UpstreamClient {
    /// `ca_file`: a PEM bundle trusted instead of the system's roots.
    pub fn new(ca_file: Option<&str>) -> Result<UpstreamClient, String> {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match ca_file {
            None => builder
                .with_native_roots()
                .map_err(|e| format!("the system's CA roots: {e}"))?,
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                let pem = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
                for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                    let cert = cert.map_err(|e| format!("{path}: {e}"))?;
                    roots.add(cert).map_err(|e| format!("{path}: {e}"))?;
                }
                if roots.is_empty() {
                    return Err(format!("{path}: no certificate in the file"));
                }
                let config = rustls::ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                builder.with_tls_config(config)
            }
        };
        let connector = builder.https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(usize::MAX)
            .build(connector);
        Ok(UpstreamClient { client })
    }

    /// GET `url` for the core itself (a JWT issuer's discovery document and keys), with the same
    /// trust as upstreams: the body of a 200 answer, read whole within `timeout` and refused
    /// past `limit` bytes. Errors say what failed, for the operator's log.
    pub async fn get(&self, url: &str, timeout: Duration, limit: usize) -> Result<Bytes, String> {
        let uri = Uri::try_from(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        let mut request = Request::new(empty());
        *request.uri_mut() = uri;
        request
            .headers_mut()
            .insert(http::header::ACCEPT, HeaderValue::from_static("application/json"));
        let fetch = async {
            let response = self.client.request(request).await.map_err(|e| format!("GET {url}: {e}"))?;
            if response.status() != StatusCode::OK {
                return Err(format!("GET {url}: status {}", response.status()));
            }
            if declared_over(response.headers(), limit) {
                return Err(format!("GET {url}: the body is over {limit} bytes"));
            }
            let limited = http_body_util::Limited::new(response.into_body(), limit);
            match http_body_util::BodyExt::collect(limited).await {
                Ok(collected) => Ok(collected.to_bytes()),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    Err(format!("GET {url}: the body is over {limit} bytes"))
                }
                Err(e) => Err(format!("GET {url}: {e}")),
            }
        };
        tokio::time::timeout(timeout, fetch)
            .await
            .map_err(|_| format!("GET {url}: no answer within {} ms", timeout.as_millis()))?
    }
}

impl UpstreamClient {
    /// Send `request` and read the whole answer within `timeout`, its body up to `limit` bytes:
    /// the backend of a non-proxy `HTTP` integration (`crate::integrations::non_proxy`), whose
    /// answer is mapped before anything reaches the client. Errors as REST APIs answer them.
    pub(crate) async fn exchange(
        &self,
        request: Request<PipelineBody>,
        timeout: Duration,
        limit: usize,
    ) -> Result<(http::response::Parts, Bytes), (ErrorType, String)> {
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| (ErrorType::IntegrationFailure, format!("the upstream request failed: {e}")))?;
            let (parts, body) = response.into_parts();
            if declared_over(&parts.headers, limit) {
                return Err((ErrorType::MalformedResponse, format!("the upstream's body is over {limit} bytes")));
            }
            match http_body_util::BodyExt::collect(http_body_util::Limited::new(body, limit)).await {
                Ok(collected) => Ok((parts, collected.to_bytes())),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    Err((ErrorType::MalformedResponse, format!("the upstream's body is over {limit} bytes")))
                }
                Err(e) => Err((ErrorType::IntegrationFailure, format!("reading the upstream's body: {e}"))),
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| (ErrorType::IntegrationTimeout, "no response within the timeout".to_owned()))?
    }
}

/// Whether `headers` declare a body longer than `limit`.
fn declared_over(headers: &HeaderMap, limit: usize) -> bool {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > limit as u64)
}

/// Where the request goes: the URL's parts, compiled for one stage.
#[derive(Debug)]
enum Url {
    /// The authority is fixed: `{name}` markers may remain in the path and query.
    Fixed {
        origin: Box<str>,
        path: Box<str>,
        query: Box<str>,
        append_path: bool,
        /// The gateway's own address toward the upstream (`Forwarded: by=`).
        by: Box<str>,
    },
    /// The authority holds a path-parameter marker: split after filling, per request.
    PerRequest { url: Box<str>, route_is_default: bool },
}

/// A compiled `HTTP_PROXY` integration.
#[derive(Debug)]
pub struct HttpProxy {
    url: Url,
    method: Option<Method>,
    timeout: Duration,
    user_agent: HeaderValue,
    /// REST APIs' `requestParameters`, applied over what the proxy passes on
    /// (`crate::pipeline::mapping`); None: none.
    pub rest_parameters: Option<Box<crate::pipeline::mapping::RequestParameters>>,
    /// HTTP APIs' parameter mapping (`requestParameters`, `responseParameters`).
    pub mapping: super::parameter_mapping::Mapping,
    /// `STREAM`: the body is held to the limits of streamed responses (`super::streaming`).
    transfer_mode: TransferMode,
}

/// `uri` with each `${stageVariables.NAME}` replaced (an unset variable is empty, as on AWS).
pub fn substitute_stage_variables(uri: &str, variables: &[(Box<str>, Box<str>)]) -> String {
    const MARK: &str = "${stageVariables.";
    let mut out = String::with_capacity(uri.len());
    let mut rest = uri;
    while let Some(start) = rest.find(MARK) {
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        out.push_str(&rest[..start]);
        let name = &rest[start + MARK.len()..start + end];
        if let Some((_, v)) = variables.iter().find(|(k, _)| &**k == name) {
            out.push_str(v);
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

/// (origin `scheme://authority`, path, query) of an absolute http(s) URL.
fn split_url(url: &str) -> Option<(&str, &str, &str)> {
    let scheme_end = url.find("://")?;
    let rest_start = scheme_end + 3;
    let path_start = url[rest_start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| rest_start + i);
    let (origin, tail) = url.split_at(path_start);
    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
    Some((origin, path, query))
}

fn host_of(origin: &str) -> &str {
    let authority = &origin[origin.find("://").map_or(0, |i| i + 3)..];
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(h, _)| h);
    }
    authority.split_once(':').map_or(authority, |(h, _)| h)
}

/// The gateway's own address toward `host` (a routing lookup; nothing is sent), "unknown" for a
/// name (resolving it here would block; the client resolves it when connecting).
fn egress_ip(host: &str) -> String {
    let Ok(ip) = host.parse::<IpAddr>() else {
        return "unknown".into();
    };
    let bind: std::net::SocketAddr = if ip.is_ipv6() {
        "[::]:0".parse().expect("literal")
    } else {
        "0.0.0.0:0".parse().expect("literal")
    };
    std::net::UdpSocket::bind(bind)
        .and_then(|s| {
            s.connect((ip, 9))?;
            s.local_addr()
        })
        .map_or_else(|_| "unknown".into(), |a| a.ip().to_string())
}

impl HttpProxy {
    /// Compile `uri` for a stage with `variables`. `route_key` `$default` appends the API path.
    pub fn compile(
        uri: &str,
        method: Option<&str>,
        timeout_ms: u64,
        route_key: &str,
        api_id: &str,
        variables: &[(Box<str>, Box<str>)],
    ) -> Result<HttpProxy, String> {
        let lower = uri.to_ascii_lowercase();
        if !lower.starts_with("http://") && !lower.starts_with("https://") {
            return Err(format!("HTTP_PROXY uri must be an absolute http(s) URL: {uri:?}"));
        }
        let filled = substitute_stage_variables(uri, variables);
        let route_is_default = route_key == "$default";
        let (origin, path, query) =
            split_url(&filled).ok_or_else(|| format!("not an absolute URL: {filled:?}"))?;
        let url = if origin.contains('{') {
            Url::PerRequest {
                url: filled.as_str().into(),
                route_is_default,
            }
        } else {
            Uri::try_from(origin).map_err(|e| format!("{origin:?}: {e}"))?;
            Url::Fixed {
                origin: origin.into(),
                path: path.into(),
                query: query.into(),
                append_path: route_is_default || path.is_empty() || path == "/",
                by: egress_ip(host_of(origin)).into(),
            }
        };
        let method = match method.map(str::to_ascii_uppercase).as_deref() {
            None | Some("ANY") | Some("") => None,
            Some(m) => Some(Method::from_bytes(m.as_bytes()).map_err(|e| e.to_string())?),
        };
        Ok(HttpProxy {
            url,
            method,
            timeout: Duration::from_millis(timeout_ms.max(50)),
            user_agent: HeaderValue::from_str(&format!("AmazonAPIGateway_{api_id}"))
                .map_err(|e| e.to_string())?,
            rest_parameters: None,
            mapping: Default::default(),
            transfer_mode: TransferMode::Buffered,
        })
    }

    /// With the integration's `responseTransferMode`.
    pub fn with_transfer_mode(mut self, mode: TransferMode) -> HttpProxy {
        self.transfer_mode = mode;
        self
    }

    pub fn transfer_mode(&self) -> TransferMode {
        self.transfer_mode
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The upstream URL and the `Forwarded: by=` address for this request.
    fn url(&self, target: &Target<'_>, raw_query: &str) -> Result<(String, String), ErrorType> {
        match &self.url {
            Url::Fixed {
                origin,
                path,
                query,
                append_path,
                by,
            } => Ok((
                build_url(origin, &fill(path, target.params), &fill(query, target.params), *append_path, target, raw_query),
                by.to_string(),
            )),
            Url::PerRequest {
                url,
                route_is_default,
            } => {
                let filled = fill(url, target.params);
                let (origin, path, query) = split_url(&filled).ok_or(ErrorType::IntegrationFailure)?;
                let append = *route_is_default || path.is_empty() || path == "/";
                Ok((
                    build_url(origin, path, query, append, target, raw_query),
                    egress_ip(host_of(origin)),
                ))
            }
        }
    }

    /// Send the request upstream; the response head once it arrives (its body streams). A head
    /// over `head_limit` bytes (counted as `response_head_size` does) is not passed on: API
    /// Gateway cannot return it either. Errors carry the detail for the operator's log.
    pub async fn call(
        &self,
        client: &UpstreamClient,
        parts: &http::request::Parts,
        body: PipelineBody,
        target: Target<'_>,
        head_limit: usize,
        trace_id: &(dyn Fn() -> String + Sync),
    ) -> Result<Response<PipelineBody>, (ErrorType, String)> {
        let (mut url, by) = self
            .url(&target, parts.uri.query().unwrap_or(""))
            .map_err(|e| (e, "the upstream URL could not be built".to_owned()))?;
        if let Some(mapped) = target.mapped {
            url = mapped_url(&url, mapped);
        }
        let uri = Uri::try_from(url.as_str())
            .map_err(|e| (ErrorType::IntegrationFailure, format!("the upstream URL {url:?}: {e}")))?;
        let method = self.method.clone().unwrap_or_else(|| parts.method.clone());
        let mut headers = upstream_request_headers(
            &parts.headers,
            &self.user_agent,
            &by,
            &target.client_ip,
            target.host,
            target.scheme,
            trace_id,
        );
        if let Some(mapped) = target.mapped {
            mapped.apply_headers(&mut headers);
        }
        match parts.headers.get(CONTENT_LENGTH) {
            Some(length) if length.as_bytes() != b"0" => {
                headers.insert(CONTENT_LENGTH, length.clone());
            }
            // Methods that carry a body say it is empty.
            _ if body.is_end_stream() && matches!(method, Method::POST | Method::PUT | Method::PATCH) => {
                headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
            }
            _ => {}
        }
        let body = if body.is_end_stream() { empty() } else { body };
        let mut upstream_req = Request::new(body);
        *upstream_req.method_mut() = method.clone();
        *upstream_req.uri_mut() = uri;
        *upstream_req.headers_mut() = headers;
        let started = tokio::time::Instant::now();
        let response = match tokio::time::timeout(self.timeout, client.client.request(upstream_req)).await {
            Err(_) => return Err((ErrorType::IntegrationTimeout, "no response within the timeout".into())),
            Ok(Err(e)) if head_too_large(&e) => {
                return Err((
                    ErrorType::MalformedResponse,
                    format!("the upstream's response head is too large to read (over {head_limit} bytes)"),
                ))
            }
            Ok(Err(e)) => return Err((ErrorType::IntegrationFailure, format!("the upstream request failed: {e}"))),
            Ok(Ok(response)) => response,
        };
        let (mut parts, body) = response.into_parts();
        let head = response_head_size(&parts.headers);
        if head > head_limit {
            // Dropping the body aborts the upstream connection.
            return Err((
                ErrorType::MalformedResponse,
                format!("the upstream's response headers are {head} bytes, over the {head_limit}-byte limit"),
            ));
        }
        let status = parts.status;
        filter_response_headers(&mut parts.headers);
        let no_body = method == Method::HEAD
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || status.is_informational();
        let body = if no_body {
            empty()
        } else if self.transfer_mode == TransferMode::Stream {
            // The whole response within `timeoutInMillis`, held to AWS's streaming limits.
            let body = http_body_util::BodyExt::boxed(http_body_util::BodyExt::map_err(body, Into::into));
            super::streaming::bounded(body, started, self.timeout)
        } else {
            // `timeoutInMillis` applies to each read of the body: a stalled upstream is cut.
            http_body_util::BodyExt::boxed(Idle::new(body, self.timeout, None))
        };
        Ok(Response::from_parts(parts, body))
    }
}

/// A response head's headers as counted against the header limit: each name and value plus four
/// bytes of framing (`: ` and CRLF), as the request's are (`crate::pipeline::limits::head_size`).
pub fn response_head_size(headers: &HeaderMap) -> usize {
    headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum()
}

/// Whether the client failed because the upstream's response head did not fit its read buffer.
fn head_too_large(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_parse_too_large) {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Where a request goes within its API, and who sent it.
pub struct Target<'a> {
    /// The path the API sees (stage removed).
    pub api_path: &'a str,
    /// The route's path parameters, raw, as the client sent them.
    pub params: &'a [(&'a str, &'a str)],
    pub client_ip: IpAddr,
    pub host: &'a str,
    pub scheme: &'a str,
    /// HTTP APIs' request parameter mapping, resolved for this request.
    pub mapped: Option<&'a super::parameter_mapping::ResolvedRequest>,
}

/// `url` with a request mapping's query operations applied to its query, and its path replaced
/// by an `overwrite:path`.
fn mapped_url(url: &str, mapped: &super::parameter_mapping::ResolvedRequest) -> String {
    let Some((origin, path, query)) = split_url(url) else {
        return url.to_owned();
    };
    let path = mapped.path().unwrap_or_else(|| path.to_owned());
    let query = mapped.apply_query(query);
    let mut out = String::with_capacity(origin.len() + path.len() + query.len() + 1);
    out.push_str(origin);
    out.push_str(if path.is_empty() { "/" } else { &path });
    if !query.is_empty() {
        out.push('?');
        out.push_str(&query);
    }
    out
}

/// The URL from its parts: the API path appended for `$default` routes and path-less URIs, the
/// client's raw query after the URI's own.
fn build_url(origin: &str, path: &str, own_query: &str, append: bool, target: &Target<'_>, raw_query: &str) -> String {
    let mut url = String::with_capacity(origin.len() + path.len() + target.api_path.len() + 32);
    url.push_str(origin);
    if append || path.is_empty() || path == "/" {
        url.push_str(path.trim_end_matches('/'));
        url.push_str(if target.api_path.is_empty() { "/" } else { target.api_path });
    } else {
        url.push_str(path);
    }
    match (own_query.is_empty(), raw_query.is_empty()) {
        (true, true) => {}
        (false, true) => {
            url.push('?');
            url.push_str(own_query);
        }
        (true, false) => {
            url.push('?');
            url.push_str(raw_query);
        }
        (false, false) => {
            url.push('?');
            url.push_str(own_query);
            url.push('&');
            url.push_str(raw_query);
        }
    }
    url
}

/// `template` with each `{name}` (or `{name+}`) replaced by that path parameter's value ("" when
/// absent).
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
        let name = rest[open + 1..open + close].trim_end_matches('+');
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

/// The upstream request's headers ("HTTP proxy integrations" in the API Gateway developer guide; docs/pipeline.md): hop-by-hop ones and those the client's
/// `Connection` names are dropped, as are Host, Content-Length and Expect; `X-Forwarded-*` and any
/// `Forwarded` are folded into one `Forwarded` to which this hop is appended; `Via`,
/// `X-Amzn-Trace-Id` (when the client sent none) and `User-Agent` (likewise) are added.
pub fn upstream_request_headers(
    client: &HeaderMap,
    user_agent: &HeaderValue,
    by: &str,
    client_ip: &IpAddr,
    host: &str,
    scheme: &str,
    trace_id: &(dyn Fn() -> String + Sync),
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
            "host" | "content-length" | "expect" => {}
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
    // This hop, written in one buffer (`by=..;for=..;host=..;proto=..`).
    let mut hop = String::with_capacity(by.len() + host.len() + 64);
    hop.push_str("by=");
    push_forwarded(&mut hop, by);
    hop.push_str(";for=");
    let mut ip = [0u8; 48];
    push_forwarded(&mut hop, crate::pipeline::ip_text(*client_ip, &mut ip));
    hop.push_str(";host=");
    push_forwarded(&mut hop, host);
    hop.push_str(";proto=");
    hop.push_str(scheme);
    let xff = special.get("x-forwarded-for");
    let xfh = special.get("x-forwarded-host");
    let xfp = special.get("x-forwarded-proto");
    let forwarded = if special.get("forwarded").is_none() && xff.is_none() && xfh.is_none() && xfp.is_none() {
        hop
    } else {
        let mut elements: Vec<String> = Vec::new();
        if let Some(forwarded) = special.get("forwarded") {
            elements.push(forwarded.clone());
        }
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
        elements.join(", ")
    };
    if let Some(v) = header_value(forwarded) {
        out.append("forwarded", v);
    }
    match special.get("via") {
        Some(prev) => {
            if let Some(v) = header_value(format!("{prev}, {VIA}")) {
                out.append("via", v);
            }
        }
        None => {
            out.append("via", HeaderValue::from_static(VIA));
        }
    }
    let trace = match special.get("x-amzn-trace-id") {
        Some(t) if has_trace_root(t) => t.clone(),
        _ => trace_id(),
    };
    if let Some(v) = header_value(trace) {
        out.append("x-amzn-trace-id", v);
    }
    match special.get("user-agent").and_then(|ua| header_value(ua.clone())) {
        Some(v) => {
            out.append("user-agent", v);
        }
        None => {
            out.append("user-agent", user_agent.clone());
        }
    }
    out
}

/// A header value from text kept as latin-1 (one byte per character), without a copy when the
/// text is ASCII.
fn header_value(text: String) -> Option<HeaderValue> {
    if text.is_ascii() {
        HeaderValue::from_maybe_shared(Bytes::from(text)).ok()
    } else {
        HeaderValue::from_bytes(&latin1(&text)).ok()
    }
}

/// `value` as an RFC 7239 value, appended to `out` (see `forwarded_value`).
fn push_forwarded(out: &mut String, value: &str) {
    if is_token(value) {
        out.push_str(value);
    } else {
        out.push_str(&forwarded_value(value));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(path: &str, query: &str, append: bool) -> HttpProxy {
        HttpProxy {
            url: Url::Fixed {
                origin: "http://up:8080".into(),
                path: path.into(),
                query: query.into(),
                append_path: append,
                by: "10.0.0.1".into(),
            },
            method: None,
            timeout: Duration::from_secs(1),
            user_agent: HeaderValue::from_static("AmazonAPIGateway_abc"),
            rest_parameters: None,
            mapping: Default::default(),
            transfer_mode: TransferMode::Buffered,
        }
    }

    fn at<'a>(api_path: &'a str, params: &'a [(&'a str, &'a str)]) -> Target<'a> {
        Target {
            api_path,
            params,
            client_ip: "127.0.0.1".parse().unwrap(),
            host: "h",
            scheme: "http",
            mapped: None,
        }
    }

    fn upstream_url(p: &HttpProxy, target: &Target<'_>, raw_query: &str) -> String {
        p.url(target, raw_query).unwrap().0
    }

    #[test]
    fn stage_variables_and_a_host_from_a_path_parameter() {
        let vars: Vec<(Box<str>, Box<str>)> = vec![("up".into(), "10.1.2.3:81".into())];
        let p = HttpProxy::compile("http://${stageVariables.up}/a/{proxy+}", None, 1000, "ANY /{proxy+}", "x", &vars)
            .unwrap();
        assert_eq!(upstream_url(&p, &at("/q", &[("proxy", "b/c")]), ""), "http://10.1.2.3:81/a/b/c");
        let p = HttpProxy::compile("https://{host}/v1", None, 1000, "GET /{host}", "x", &[]).unwrap();
        let (url, by) = p.url(&at("/example.com", &[("host", "example.com")]), "x=1").unwrap();
        assert_eq!((url.as_str(), by.as_str()), ("https://example.com/v1?x=1", "unknown"));
        assert!(HttpProxy::compile("ftp://x/", None, 1000, "GET /", "x", &[]).is_err());
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
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let ua = HeaderValue::from_static("AmazonAPIGateway_abc");
        let out = upstream_request_headers(&client, &ua, "10.0.0.1", &ip, "api.example", "http", &|| "Root=1-x".into());
        assert_eq!(out.get("accept").unwrap(), "*/*");
        for gone in ["host", "connection", "x-secret", "keep-alive", "x-forwarded-for"] {
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
        let ua = HeaderValue::from_static("AmazonAPIGateway_abc");
        let out = upstream_request_headers(&client, &ua, "10.0.0.1", &ip, "h", "http", &|| "new".into());
        assert_eq!(out.get("x-amzn-trace-id").unwrap(), "Self=1;Root=1-abc");
        assert_eq!(out.get("user-agent").unwrap(), "curl");
        assert_eq!(out.get("forwarded").unwrap(), "by=10.0.0.1;for=\"[::1]\";host=h;proto=http");
    }

    #[test]
    fn a_response_head_is_counted_as_a_request_s() {
        let mut headers = HeaderMap::new();
        headers.append("x-a", HeaderValue::from_static("12345"));
        headers.append("x-a", HeaderValue::from_static("6"));
        assert_eq!(response_head_size(&headers), (3 + 5 + 4) + (3 + 1 + 4));
        assert_eq!(response_head_size(&HeaderMap::new()), 0);
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
