//! The cache phase (see `crate::cache` and docs/pipeline.md): around the integration, for
//! routes whose stage caches them. AWS's rules ("Cache settings for REST APIs in API Gateway"):
//!
//! - Stage-wide caching (`*/*`) caches GET requests only; a method's own setting caches every
//!   request of that method (`CachedMethods`).
//! - The key is the method, the resource path and the integration's `cacheKeyParameters`.
//! - `Cache-Control: max-age=0` asks for a fresh answer that replaces the entry; when the method
//!   requires authorization for it (`requireAuthorizationForCacheControl`, the default), only a
//!   caller allowed `execute-api:InvalidateCache` on the method's ARN (a SigV4 signer of an
//!   `AWS_IAM` method) gets one; any other caller is refused with 403, or served as if the
//!   header were not there, with or without a warning header
//!   (`unauthorizedCacheControlHeaderStrategy`).
//! - Whatever the integration answers is cached, whatever its status (API Gateway has no setting
//!   to leave some statuses out), up to AWS's 1,048,576 bytes of body; the gateway's own answers
//!   (an integration that failed or timed out) never are.
//!
//! A hit is answered here, by the core, without the integration and without Python.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Method, Response};
use http_body_util::BodyExt;
use hyper::body::Frame;

use super::body::{self, full, PipelineBody};
use super::{Connection, Exchange, Failure, Integrated, Pipeline};
use crate::auth::execute_api_arn;
use crate::auth::iam::{self, Decision as IamDecision};
use crate::auth::policy::Request as PolicyRequest;
use crate::cache::{self, Entry, Flight, KeyRequest, Landed, Lookup, MAX_CACHED_BODY};
use crate::gateway::{Decision, Snapshot};
use crate::integrations::Integration;
use crate::pipeline::responses::ErrorType;
use crate::spec::{CachedMethods, UnauthorizedCacheControl};
use crate::throttle::monotonic_ns;
use crate::usage::Counter;

/// What a caller that may not invalidate the cache is told under `SUCCEED_WITH_RESPONSE_HEADER`
/// (AWS documents a warning header without its text; this is RFC 9111's `Warning` with the
/// miscellaneous warn-code).
const WARNING: HeaderName = HeaderName::from_static("warning");
const NOT_INVALIDATED: HeaderValue = HeaderValue::from_static(
    "199 - \"Cache-Control: max-age=0 ignored: not authorized to invalidate the cache\"",
);

/// Whether the request asks for a fresh answer: a `max-age=0` directive in `Cache-Control`.
fn asks_fresh(headers: &HeaderMap) -> bool {
    headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|directive| {
            let Some((name, value)) = directive.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("max-age")
                && value.trim().trim_matches('"').parse::<u64>() == Ok(0)
        })
}

/// A cached answer, as sent.
fn answer(entry: &Entry) -> Response<PipelineBody> {
    let mut response = Response::new(full(entry.body.clone()));
    *response.status_mut() = entry.status;
    *response.headers_mut() = entry.headers.clone();
    response
}

/// A response body read up to `limit` bytes: whole, or (past the limit, failed, or carrying
/// trailers) a body that yields what was read, then the rest.
enum Collected {
    Whole(Bytes),
    Partial(PipelineBody),
}

async fn collect(mut body: PipelineBody, limit: usize) -> Collected {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut size = 0;
    loop {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if size + data.len() <= limit => {
                    size += data.len();
                    chunks.push(data);
                }
                Ok(data) => {
                    let mut frames: Vec<Frame<Bytes>> =
                        chunks.into_iter().map(Frame::data).collect();
                    frames.push(Frame::data(data));
                    return Collected::Partial(body::prefixed(frames, body));
                }
                Err(trailers) => {
                    let mut frames: Vec<Frame<Bytes>> =
                        chunks.into_iter().map(Frame::data).collect();
                    frames.push(trailers);
                    return Collected::Partial(body::prefixed(frames, body));
                }
            },
            Some(Err(error)) => {
                return Collected::Partial(body::failed(concat(chunks, size), error))
            }
        }
    }
    Collected::Whole(concat(chunks, size))
}

fn concat(mut chunks: Vec<Bytes>, size: usize) -> Bytes {
    if chunks.len() == 1 {
        return chunks.pop().unwrap_or_default();
    }
    let mut out = BytesMut::with_capacity(size);
    for chunk in chunks {
        out.extend_from_slice(&chunk);
    }
    out.freeze()
}

impl Pipeline {
    /// The integration, through the stage's cache when the route's answers are cached.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn integrate_cached(
        &self,
        snap: &Snapshot,
        parts: &http::request::Parts,
        body: PipelineBody,
        conn: &Connection,
        ex: &mut Exchange,
        d: &Decision<'_>,
        params: &[(&str, &str)],
    ) -> Result<Response<PipelineBody>, Failure> {
        let serving = ex.serving.clone();
        let cached = serving.as_deref().and_then(|s| {
            let route = &s.routes[ex.route?];
            // A streaming integration's answers are never cached, nor answered from the cache:
            // API Gateway has no endpoint cache for them.
            if route.integration.streams() {
                return None;
            }
            let rc = route.cache.as_ref()?;
            let applies = rc.methods == CachedMethods::All || parts.method == Method::GET;
            Some((s.cache.as_ref()?, rc, &s.counter)).filter(|_| applies)
        });
        let Some((stage_cache, rc, counter)) = cached else {
            return self
                .integrate_timed(snap, parts, body, conn, ex, d, params)
                .await;
        };
        let store = &stage_cache.store;
        // Counted per process (`Gateway.cache_stats`) and per stage across the node's workers
        // (the usage table behind `/metrics`).
        let tally = self.gateway.tally();
        let hit = || {
            store.count_hit();
            tally.bump(counter, Counter::CacheHit);
        };
        let miss = || {
            store.count_miss();
            tally.bump(counter, Counter::CacheMiss);
        };
        let key = cache::key(
            &rc.key,
            &KeyRequest {
                method: parts.method.as_str(),
                resource_path: &rc.namespace,
                variant: &stage_cache.variant,
                raw_query: parts.uri.query().unwrap_or(""),
                headers: &parts.headers,
                path_params: params,
            },
        );

        let mut warn = false;
        if asks_fresh(&parts.headers) {
            if !rc.require_authorization || self.may_invalidate(snap, parts, conn, ex, d) {
                miss();
                let flight = store.refresh(key);
                return self
                    .fill(flight, rc.ttl_ns, snap, parts, body, conn, ex, d, params)
                    .await;
            }
            match rc.unauthorized {
                UnauthorizedCacheControl::FailWith403 => {
                    return Err(Failure::new(
                        ErrorType::AccessDenied,
                        "Cache-Control: max-age=0 from a caller not allowed execute-api:InvalidateCache",
                    ))
                }
                UnauthorizedCacheControl::SucceedWithResponseHeader => warn = true,
                UnauthorizedCacheControl::SucceedWithoutResponseHeader => {}
            }
        }

        let mut body = Some(body);
        let mut response = loop {
            match store.lookup(&key, monotonic_ns()) {
                Lookup::Hit(entry) => {
                    hit();
                    break answer(&entry);
                }
                Lookup::Lead(flight) => {
                    miss();
                    let body = body.take().unwrap_or_else(body::empty);
                    break self
                        .fill(flight, rc.ttl_ns, snap, parts, body, conn, ex, d, params)
                        .await?;
                }
                Lookup::Wait(mut landing) => {
                    let landed = landing.wait_for(Option::is_some).await.map(|l| l.clone());
                    match landed {
                        Ok(Some(Landed::Stored(entry))) => {
                            hit();
                            break answer(&entry);
                        }
                        // Not cacheable: ask the integration as if nothing were cached.
                        Ok(_) => {
                            miss();
                            let body = body.take().unwrap_or_else(body::empty);
                            break self
                                .integrate_timed(snap, parts, body, conn, ex, d, params)
                                .await?;
                        }
                        // The leading request went away before its answer: look up again.
                        Err(_) => continue,
                    }
                }
            }
        };
        if warn {
            response.headers_mut().insert(WARNING, NOT_INVALIDATED);
        }
        Ok(response)
    }

    /// Ask the integration for the answer of `flight`'s key, and store it when it can be cached.
    #[allow(clippy::too_many_arguments)]
    async fn fill(
        &self,
        flight: Flight,
        ttl_ns: u64,
        snap: &Snapshot,
        parts: &http::request::Parts,
        body: PipelineBody,
        conn: &Connection,
        ex: &mut Exchange,
        d: &Decision<'_>,
        params: &[(&str, &str)],
    ) -> Result<Response<PipelineBody>, Failure> {
        let response = match self
            .integrate_timed(snap, parts, body, conn, ex, d, params)
            .await
        {
            Ok(response) => response,
            Err(failure) => {
                flight.abandon();
                return Err(failure);
            }
        };
        let (head, body) = response.into_parts();
        match collect(body, MAX_CACHED_BODY).await {
            Collected::Whole(bytes) => {
                // Copies of their own: what a front door read may share a larger buffer (a header
                // value, a body frame), which an entry must not keep alive past its weight.
                let mut headers = HeaderMap::with_capacity(head.headers.len());
                for (name, value) in &head.headers {
                    if name != TRANSFER_ENCODING && name != CONTENT_LENGTH {
                        if let Ok(value) = HeaderValue::from_bytes(value.as_bytes()) {
                            headers.append(name.clone(), value);
                        }
                    }
                }
                let expires = monotonic_ns().saturating_add(ttl_ns);
                let body = Bytes::copy_from_slice(&bytes);
                let entry = Entry::new(head.status, headers, body, expires, flight.key_len());
                flight.store(Arc::new(entry));
                Ok(Response::from_parts(head, full(bytes)))
            }
            Collected::Partial(body) => {
                flight.abandon();
                Ok(Response::from_parts(head, body))
            }
        }
    }

    /// The integration, its status and latency noted for the access log.
    #[allow(clippy::too_many_arguments)]
    async fn integrate_timed(
        &self,
        snap: &Snapshot,
        parts: &http::request::Parts,
        body: PipelineBody,
        conn: &Connection,
        ex: &mut Exchange,
        d: &Decision<'_>,
        params: &[(&str, &str)],
    ) -> Result<Response<PipelineBody>, Failure> {
        let started = Instant::now();
        let result = self.integrate(snap, parts, body, conn, ex, d, params).await;
        if let Ok(response) = &result {
            ex.integration = Some(Integrated {
                status: response.status().as_u16(),
                latency_ms: started.elapsed().as_millis() as u64,
                lambda: matches!(
                    ex.route().map(|r| &r.integration),
                    Some(Integration::LambdaProxy(_))
                ),
            });
        }
        result
    }

    /// May this request's caller invalidate the cache entry: a SigV4 signer (of an `AWS_IAM`
    /// method) whose identity policy, with the API's resource policy, allows
    /// `execute-api:InvalidateCache` on the method's ARN.
    fn may_invalidate(
        &self,
        snap: &Snapshot,
        parts: &http::request::Parts,
        conn: &Connection,
        ex: &Exchange,
        d: &Decision<'_>,
    ) -> bool {
        let (Some(identity), Some(api)) = (&ex.auth.iam, ex.api.map(|a| snap.api(a))) else {
            return false;
        };
        let Some(principal) = snap.principals.get(&identity.access_key) else {
            return false;
        };
        let resource_policy = match &api.policy {
            None => None,
            Some(Ok(policy)) => Some(policy),
            Some(Err(_)) => return false,
        };
        let settings = &snap.settings;
        let stage = ex.serving.as_deref().map_or("", |s| &*s.stage);
        let arn = execute_api_arn(
            &settings.region,
            &settings.account_id,
            &api.id,
            stage,
            parts.method.as_str(),
            d.path,
        );
        let request = PolicyRequest {
            action: "execute-api:InvalidateCache",
            resource: &arn,
            principal: Some(&identity.user_arn),
            principal_account: Some(&identity.account_id),
            source_ip: conn.client_ip,
        };
        iam::authorize(principal, resource_policy, &settings.account_id, &request)
            == IamDecision::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_zero_asks_for_a_fresh_answer() {
        let asks = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for v in values {
                headers.append(CACHE_CONTROL, HeaderValue::from_str(v).unwrap());
            }
            asks_fresh(&headers)
        };
        assert!(asks(&["max-age=0"]));
        assert!(asks(&["no-store, Max-Age = 0"]));
        assert!(asks(&["public", "max-age=\"0\""]));
        assert!(!asks(&["max-age=10"]));
        assert!(!asks(&["no-cache"]));
        assert!(!asks(&["s-maxage=0"]));
        assert!(!asks(&[]));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn bodies_past_the_limit_are_passed_on_whole() {
        use http_body_util::BodyExt;
        let body = body::prefixed(
            vec![Frame::data(Bytes::from_static(b"abc"))],
            full(Bytes::from_static(b"defgh")),
        );
        let Collected::Partial(rest) = collect(body, 4).await else {
            panic!("over the limit")
        };
        assert_eq!(&rest.collect().await.unwrap().to_bytes()[..], b"abcdefgh");
        let Collected::Whole(whole) = collect(full(Bytes::from_static(b"abcd")), 4).await else {
            panic!()
        };
        assert_eq!(&whole[..], b"abcd");
    }
}
