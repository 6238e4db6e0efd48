//! Who may open a WebSocket connection, and how often its messages may come
//! (`crate::pipeline::websocket`).
//!
//! - `$connect` is the only route AWS authorizes ("Controlling and managing access to a WebSocket
//!   API"), with the same authorize phase as every other route (`authorize`): `AWS_IAM`, a Lambda
//!   REQUEST authorizer (`CUSTOM`) and the API key, held to its usage plan as REST APIs' keys are
//!   ("Usage plans" in the developer guide: WebSocket stages can be in usage plans). What it
//!   learns (the signer, the authorizer's grant, the key) stays with the connection, for every
//!   later event.
//! - Throttling ("Throttle requests to your WebSocket APIs"): the stage's `defaultRouteSettings`
//!   and `routeSettings` buckets, then the account's, as HTTP APIs spend them: a handshake spends
//!   `$connect`'s (refused with 429), each message its route's (refused with the error frame
//!   `{"message": "Too Many Requests", ...}`, the connection kept open). The buckets are the
//!   gateway's token buckets, or Redis's in cluster mode (what Redis cannot decide is decided as
//!   `--redis-fail` decides requests: on the node's own buckets, or refused).

use smallvec::SmallVec;

use super::Session;
use crate::access_log::{Identity, LogRecord};
use crate::spec::ApiKind;
use crate::cluster::{Spend, Spent};
use crate::gateway::{Bucket, Decision, Gateway, MessageBuckets, Snapshot};
use crate::pipeline::body::PipelineBody;
use crate::pipeline::usage_plan::throttled;
use crate::pipeline::{Connection, Exchange, Failure, Pipeline, UNAVAILABLE_RETRY_NS};
use crate::throttle::{monotonic_ns, NEVER};
use crate::usage::Counter;
use crate::websocket::events::{authorizer_context, ConnectionContext};

/// A bucket's refusal: its size and how long until it has a token (ns; `NEVER`: never).
struct Refusal {
    burst: u64,
    wait_ns: u64,
}

/// Spend one token from each bucket of `chain` in order (the route's, then the account's); the
/// first that refuses stops it.
async fn spend(gateway: &Gateway, chain: &[Bucket]) -> Result<(), Refusal> {
    if chain.is_empty() {
        return Ok(());
    }
    match gateway.cluster() {
        None => {
            let now_ns = monotonic_ns();
            for bucket in chain {
                let wait_ns = gateway.buckets().try_acquire(bucket.hash, &bucket.limit, now_ns);
                if wait_ns != 0 {
                    return Err(Refusal { burst: bucket.burst, wait_ns });
                }
            }
            Ok(())
        }
        Some(cluster) => {
            let spends: SmallVec<[Spend; 2]> = chain.iter().map(|b| Spend { hash: b.hash, limit: b.limit }).collect();
            match cluster.spend(&spends, None).await {
                Spent::Admitted => Ok(()),
                Spent::Refused { index, wait_ns } => Err(Refusal { burst: chain[index].burst, wait_ns }),
                Spent::Unavailable => Err(Refusal { burst: chain[0].burst, wait_ns: UNAVAILABLE_RETRY_NS }),
            }
        }
    }
}

impl Pipeline {
    /// Throttle and authorize the handshake opening `cx` as its `$connect` route asks; `cx` with
    /// what was learned. The connection stays in `ex` for the access log, refused or not.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn admit_connection(
        &self,
        snap: &Snapshot,
        parts: &http::request::Parts,
        mut body: PipelineBody,
        conn: &Connection,
        ex: &mut Exchange,
        d: &Decision<'_>,
        cx: ConnectionContext,
    ) -> Result<ConnectionContext, Failure> {
        ex.route = ex.serving.as_ref().and_then(|s| s.routes.iter().position(|r| &*r.key == "$connect"));
        ex.websocket = Some(Box::new(cx.clone()));
        if let Some(buckets) = snap.message_buckets(d) {
            let chain = match ex.route {
                Some(index) => buckets.chain(index),
                None => buckets.account.into_iter().collect(),
            };
            if let Err(refusal) = spend(&self.gateway, &chain).await {
                if let Some(serving) = ex.serving.as_deref() {
                    self.gateway.tally().bump(&serving.counter, Counter::Throttled);
                }
                let wait_ms = if refusal.wait_ns == NEVER { NEVER } else { refusal.wait_ns.div_ceil(1_000_000) };
                return Err(throttled(snap, wait_ms, refusal.burst));
            }
        }
        self.authorize(snap, parts, conn, ex, d, &mut body).await?;
        // The key's usage plan: its throttle and quota count handshakes, as they count requests.
        self.usage_plan(snap, ex).await?;
        let mut cx = cx;
        cx.iam = ex.auth.iam.clone();
        cx.authorizer = authorizer_context(&ex.auth.granted);
        cx.api_key = ex.auth.api_key.clone();
        ex.websocket = Some(Box::new(cx.clone()));
        Ok(cx)
    }
}

impl Session {
    /// Whether a message of the route at `index` of the connection's routes may go on: false when
    /// its route's or the account's bucket refuses it (counted as throttled for the stage).
    pub(super) async fn admit_message(&self, index: usize) -> bool {
        let Some(buckets) = &self.buckets else {
            return true;
        };
        if spend(&self.gateway, &buckets.chain(index)).await.is_ok() {
            return true;
        }
        self.gateway.tally().bump(&self.serving.counter, Counter::Throttled);
        false
    }
}

/// The buckets a connection opened through decision `d` spends (None: nothing throttles).
pub(super) fn message_buckets(snap: &Snapshot, d: &Decision<'_>) -> Option<MessageBuckets> {
    snap.message_buckets(d).filter(|b| b.account.is_some() || b.routes.iter().any(Option::is_some))
}

/// What became of one event of a connection after its handshake (a message, its end).
#[derive(Clone, Copy)]
pub(super) enum Outcome<'a> {
    /// No route takes the message, nor `$default`: AWS's `Forbidden` frame.
    NoRoute,
    /// A bucket refused it: the `Too Many Requests` frame.
    Throttled,
    /// Its route's model refused it (the `validationErrorString`): the `Invalid request body`
    /// frame.
    Invalid(&'a str),
    /// The integration failed (why, for `$context.integrationErrorMessage`).
    Failed(&'a str),
    /// The integration answered (an `AWS_PROXY` function's `statusCode`, if any).
    Integrated { status: Option<u16>, latency_ms: u64 },
    /// Nothing to integrate (a connection's end without a `$disconnect` route).
    Done,
}

impl Outcome<'_> {
    /// The gateway's own answer: the status logged, AWS's error frame message and the gateway
    /// response type (None: the integration's answer, or nothing).
    pub(super) fn refusal(&self) -> (u16, Option<&'static str>, Option<&'static str>) {
        match self {
            Outcome::NoRoute => (403, Some("Forbidden"), Some("ACCESS_DENIED")),
            Outcome::Throttled => (429, Some("Too Many Requests"), Some("THROTTLED")),
            Outcome::Invalid(_) => (400, Some("Invalid request body"), Some("BAD_REQUEST_BODY")),
            Outcome::Failed(_) => (500, Some("Internal server error"), Some("INTEGRATION_FAILURE")),
            Outcome::Integrated { .. } | Outcome::Done => (200, None, None),
        }
    }
}

/// One access-log line of a connection's event ("Configure logging for WebSocket APIs in API
/// Gateway": `$context.connectionId`, `eventType`, `messageId`, `connectedAt`...).
#[derive(Clone, Copy)]
pub(super) struct Logged<'a> {
    /// `MESSAGE` or `DISCONNECT` (the handshake's `CONNECT` line is the pipeline's own).
    pub event_type: &'static str,
    pub arrived: std::time::Instant,
    pub request_id: &'a str,
    pub message_id: Option<&'a str>,
    pub time_ms: u64,
    pub route_key: Option<&'a str>,
    pub outcome: Outcome<'a>,
}

impl Session {
    /// Write `logged` to the stage's access log and the gateway's, as a request's line is written:
    /// with the connection's caller, authorizer grant and API key (masked).
    pub(super) fn log_event(&self, logged: &Logged<'_>) {
        let snap = self.gateway.snapshot();
        let stage_log = self.serving.access_log.as_ref();
        let global = snap.settings.access_log.as_ref();
        if stage_log.is_none() && global.is_none() {
            return;
        }
        let cx = &self.cx;
        let (status, error, response_type) = logged.outcome.refusal();
        let (integration_status, integration_latency_ms) = match logged.outcome {
            Outcome::Integrated { status, latency_ms } => (status, Some(latency_ms)),
            _ => (None, None),
        };
        let integration_error = match logged.outcome {
            Outcome::Failed(why) => Some(why),
            _ => None,
        };
        let validation_error = match logged.outcome {
            Outcome::Invalid(violations) => Some(violations),
            _ => None,
        };
        let values: Vec<(&str, String)> = cx
            .authorizer
            .iter()
            .flat_map(|map| map.iter())
            .map(|(k, v)| (k.as_str(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
            .collect();
        let authorizer: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let masked_key = cx.api_key.as_ref().map(|k| crate::pipeline::api_key_mask(&k.value));
        let record = LogRecord {
            request_id: logged.request_id,
            domain_name: Some(&cx.domain_name),
            request_time_epoch_ms: logged.time_ms,
            identity: Identity {
                source_ip: &cx.source_ip,
                user_agent: cx.user_agent.as_deref(),
                api_key: masked_key.as_deref(),
                api_key_id: cx.api_key.as_ref().map(|k| k.id.as_str()),
                ..Default::default()
            }
            .signed_by(cx.iam.as_ref()),
            account_id: Some(&self.account_id),
            api_id: Some(&cx.api_id),
            stage: Some(&cx.stage),
            route_key: logged.route_key,
            status,
            response_latency_ms: logged.arrived.elapsed().as_millis() as u64,
            error_message: error,
            error_response_type: response_type,
            integration_status,
            integration_latency_ms,
            integration_error,
            error_validation: validation_error,
            authorizer: &authorizer,
            connection_id: Some(&cx.connection_id),
            event_type: Some(logged.event_type),
            message_id: logged.message_id,
            connected_at_ms: Some(cx.connected_at_ms),
            ..Default::default()
        };
        for log in stage_log.into_iter().chain(global) {
            log.log(ApiKind::Websocket, &record);
        }
    }
}
