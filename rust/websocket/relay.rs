//! The `@connections` API reaching a connection wherever it is held (docs/websocket.md, "Several
//! workers and nodes").
//!
//! A connection lives in the process that accepted it. Its id starts with that process's owner
//! tag (`registry::owner_of`), so the process answering `PostToConnection`, `GetConnection` or
//! `DeleteConnection` knows who holds it without a lookup table, and hands the operation over:
//!
//! - **its own**: done here (`perform`);
//! - **another worker of this node**: each worker listens on a Unix socket named by its tag in the
//!   node's relay directory (the server's private socket directory): one request, one answer,
//!   JSON, on a connection of its own. No such socket: not on this node. Refused: a worker that
//!   died (the kernel closed its socket), so its connections are gone (410).
//! - **another node** (cluster mode): each worker subscribes to the Redis channel
//!   `portico:ws:{tag}`; the operation is published there with a correlation id and the
//!   requester's own channel for the answer. `PUBLISH` reaching nobody means no process holds the
//!   tag: 410 at once (503 just after Redis came back: `RESUBSCRIBE_GRACE`). Redis lost, or no answer within `RELAY_TIMEOUT`: `Outcome::Unreachable`
//!   (503): the connection may well be open, so it is not called gone.
//!
//! Nothing here runs Python: the relay is tasks of the core's runtime.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

use super::registry::{owner_of, Registry};
use super::Outgoing;
use crate::cluster::{Cluster, HEALTH_INTERVAL};

/// The longest an operation waits on another process (a hung worker or node, a frozen Redis).
/// Longer than the cluster's per-request timeout, which bounds decisions a node can also make on
/// its own: a relayed operation has nothing to fall back on.
pub const RELAY_TIMEOUT: Duration = Duration::from_secs(2);
/// After this worker (re)subscribes, a `PUBLISH` that reaches nobody may only mean that the holder
/// has not resubscribed yet (Redis came back): every worker resubscribes within a few
/// `HEALTH_INTERVAL`s of its supervisor reconnecting, so until then it is 503, not 410.
const RESUBSCRIBE_GRACE: Duration = Duration::from_millis(1500);
/// The Redis channels of the workers' tags.
const CHANNEL_PREFIX: &str = "portico:ws:";
/// The largest request a worker reads from its socket: a 128 KB post, JSON-escaped.
const MAX_REQUEST_BYTES: u64 = 1 << 20;
/// The largest answer (a `GetConnection` description is a few hundred bytes).
const MAX_ANSWER_BYTES: u64 = 64 << 10;

/// The `@connections` operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Post,
    Get,
    Delete,
}

/// `PostToConnection`'s data: a text frame when it is UTF-8, a binary one (base64 on the way)
/// otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "lowercase")]
pub enum Payload {
    Text(String),
    Binary(String),
}

impl Payload {
    pub fn of(data: bytes::Bytes) -> Payload {
        match String::from_utf8(data.to_vec()) {
            Ok(text) => Payload::Text(text),
            Err(_) => Payload::Binary(base64::engine::general_purpose::STANDARD.encode(&data)),
        }
    }

    fn into_frame(self) -> Option<Message> {
        match self {
            Payload::Text(text) => Some(Message::Text(text.into())),
            Payload::Binary(b64) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .ok()
                .map(|data| Message::Binary(data.into())),
        }
    }
}

/// An operation on one connection, as it travels to the process holding it (already authorized
/// by the process the client called).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub op: Operation,
    pub api_id: String,
    pub stage: String,
    pub connection_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Payload>,
    /// When the asking process stops waiting (epoch ms; 0: it waits as long as it takes). A
    /// request that reaches its holder later (a hung worker or Redis going again) is not carried
    /// out: the caller was told 503, and the post must not arrive after all.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub expires_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What became of an operation: the `@connections` API's answer (`Pipeline::manage_connection`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum Outcome {
    /// 200.
    Posted,
    /// 200 with `GetConnection`'s description.
    Described { connection: serde_json::Value },
    /// 204: the connection is being closed.
    Deleted,
    /// 410 `GoneException`: no open connection of that id on that API's stage.
    Gone,
    /// 429 `LimitExceededException`: too many frames waiting for the connection.
    LimitExceeded,
    /// 503: the process holding the connection could not be asked (Redis lost, no answer in time).
    Unreachable,
}

/// What travels on a worker's Redis channel: operations for its connections, and the answers to
/// the operations it sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum Envelope {
    #[serde(rename_all = "camelCase")]
    Request {
        id: u64,
        reply_to: String,
        request: Request,
    },
    Reply {
        id: u64,
        outcome: Outcome,
    },
}

/// The operation on a connection this process holds.
pub fn perform(registry: &Registry, request: Request) -> Outcome {
    if request.expires_ms != 0 && crate::time::wall_clock_ms() > request.expires_ms {
        return Outcome::Unreachable;
    }
    let Some(connection) = registry.get(&request.connection_id, &request.api_id, &request.stage) else {
        return Outcome::Gone;
    };
    match request.op {
        Operation::Get => Outcome::Described {
            connection: connection.describe(),
        },
        Operation::Delete => {
            connection.send(Outgoing::Close);
            Outcome::Deleted
        }
        Operation::Post => {
            let Some(frame) = request.data.and_then(Payload::into_frame) else {
                return Outcome::Posted;
            };
            if connection.send(Outgoing::Frame(frame)) {
                Outcome::Posted
            } else {
                Outcome::LimitExceeded
            }
        }
    }
}

fn channel(tag: &str) -> String {
    format!("{CHANNEL_PREFIX}{tag}")
}

/// The Unix socket of the worker whose tag is `tag`, in the node's relay directory.
pub fn socket_path(dir: &Path, tag: &str) -> PathBuf {
    dir.join(format!("ws-{tag}.sock"))
}

async fn read_limited<R: AsyncRead + Unpin>(reader: R, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut limited = reader.take(limit + 1);
    limited.read_to_end(&mut out).await?;
    if out.len() as u64 > limit {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "too long"));
    }
    Ok(out)
}

/// One worker's relay: its socket, its Redis subscription, the answers it waits for.
pub struct Relay {
    registry: Arc<Registry>,
    /// The node's relay directory (None: this process is alone, e.g. `--no-edge`).
    dir: Option<PathBuf>,
    /// This worker's socket, removed when it stops.
    socket: Mutex<Option<PathBuf>>,
    cluster: Option<Arc<Cluster>>,
    /// Operations sent through Redis, by correlation id.
    waiting: Mutex<HashMap<u64, oneshot::Sender<Outcome>>>,
    next_id: AtomicU64,
    /// Whether this worker's Redis channel is subscribed (answers can come back).
    subscribed: AtomicBool,
    /// Since when, when it was lost before (None: not subscribed, or since the start).
    subscribed_at: Mutex<Option<tokio::time::Instant>>,
}

impl Relay {
    pub fn new(registry: Arc<Registry>, dir: Option<PathBuf>, cluster: Option<Arc<Cluster>>) -> Relay {
        Relay {
            registry,
            dir,
            socket: Mutex::new(None),
            cluster,
            waiting: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            subscribed: AtomicBool::new(false),
            subscribed_at: Mutex::new(None),
        }
    }

    /// Listen on this worker's socket and subscribe to its channel (in cluster mode), on the
    /// runtime of `handle`.
    pub fn start(self: &Arc<Self>, handle: &tokio::runtime::Handle) -> std::io::Result<()> {
        if let Some(dir) = &self.dir {
            let path = socket_path(dir, self.registry.owner());
            let listener = {
                let _guard = handle.enter();
                bind(&path)?
            };
            *self.socket.lock().unwrap_or_else(|e| e.into_inner()) = Some(path);
            handle.spawn(self.clone().serve(listener));
        }
        if self.cluster.is_some() {
            handle.spawn(self.clone().subscribe());
        }
        Ok(())
    }

    /// Remove this worker's socket (it stops: operations for its connections are refused, 410).
    pub fn stop(&self) {
        if let Some(path) = self.socket.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = std::fs::remove_file(path);
        }
    }

    /// The operation, done by the process holding the connection.
    pub async fn reach(&self, mut request: Request) -> Outcome {
        let Some(tag) = owner_of(&request.connection_id).map(str::to_owned) else {
            return Outcome::Gone;
        };
        if tag == self.registry.owner() {
            return perform(&self.registry, request);
        }
        // Node clocks agree to well within `RELAY_TIMEOUT` (NTP).
        request.expires_ms = crate::time::wall_clock_ms() + RELAY_TIMEOUT.as_millis() as u64;
        if let Some(dir) = &self.dir {
            match UnixStream::connect(socket_path(dir, &tag)).await {
                Ok(stream) => return ask_worker(stream, &request).await,
                // No worker of this node has that tag: another node's, if any.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                // Refused: the worker died, and its connections with it.
                Err(_) => return Outcome::Gone,
            }
        }
        match &self.cluster {
            Some(cluster) => self.ask_node(cluster, &tag, request).await,
            None => Outcome::Gone,
        }
    }

    /// Through Redis: publish on the holder's channel and wait for its answer on ours.
    async fn ask_node(&self, cluster: &Cluster, tag: &str, request: Request) -> Outcome {
        if !self.subscribed.load(Ordering::Acquire) {
            return Outcome::Unreachable;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let envelope = Envelope::Request {
            id,
            reply_to: channel(self.registry.owner()),
            request,
        };
        let Ok(payload) = serde_json::to_vec(&envelope) else {
            return Outcome::Unreachable;
        };
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).insert(id, tx);
        let deadline = tokio::time::Instant::now() + RELAY_TIMEOUT;
        let outcome = match cluster.publish(&channel(tag), &payload, RELAY_TIMEOUT).await {
            None => Outcome::Unreachable,
            // Nobody holds that tag (any more): its process ended, or never was; unless Redis has
            // just come back and the holder may not have resubscribed yet.
            Some(0) if self.just_resubscribed() => Outcome::Unreachable,
            Some(0) => Outcome::Gone,
            Some(_) => match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(outcome)) => outcome,
                _ => Outcome::Unreachable,
            },
        };
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        outcome
    }

    fn just_resubscribed(&self) -> bool {
        let since = *self.subscribed_at.lock().unwrap_or_else(|e| e.into_inner());
        since.is_some_and(|at| at.elapsed() < RESUBSCRIBE_GRACE)
    }

    /// Answer the operations other workers of this node send to this worker's socket.
    async fn serve(self: Arc<Self>, listener: UnixListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let registry = self.registry.clone();
            tokio::spawn(async move {
                let (reader, mut writer) = stream.into_split();
                let asked = tokio::time::timeout(RELAY_TIMEOUT, read_limited(reader, MAX_REQUEST_BYTES)).await;
                let Ok(Ok(raw)) = asked else { return };
                let Ok(request) = serde_json::from_slice::<Request>(&raw) else {
                    return;
                };
                let outcome = perform(&registry, request);
                if let Ok(answer) = serde_json::to_vec(&outcome) {
                    let _ = writer.write_all(&answer).await;
                    let _ = writer.shutdown().await;
                }
            });
        }
    }

    /// Keep this worker's channel subscribed while Redis is reachable: the cluster's supervisor
    /// (`Cluster::supervise`) says when it is lost and back; pub/sub needs a connection of its own.
    async fn subscribe(self: Arc<Self>) {
        let Some(cluster) = self.cluster.clone() else { return };
        let own = channel(self.registry.owner());
        let mut retry = tokio::time::interval(HEALTH_INTERVAL);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Whether a subscription was lost before (other workers resubscribe meanwhile).
        let mut lost = false;
        loop {
            retry.tick().await;
            if !cluster.is_up() {
                continue;
            }
            let connected = tokio::time::timeout(RELAY_TIMEOUT, async {
                let mut pubsub = cluster.client().get_async_pubsub().await?;
                pubsub.subscribe(&own).await?;
                Ok::<_, redis::RedisError>(pubsub)
            })
            .await;
            let Ok(Ok(pubsub)) = connected else { continue };
            if lost {
                *self.subscribed_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(tokio::time::Instant::now());
            }
            self.subscribed.store(true, Ordering::Release);
            let mut messages = pubsub.into_on_message();
            let mut check = tokio::time::interval(HEALTH_INTERVAL);
            loop {
                tokio::select! {
                    message = messages.next() => match message {
                        Some(message) => self.clone().on_envelope(&cluster, message.get_payload_bytes()),
                        None => break,
                    },
                    _ = check.tick() => if !cluster.is_up() { break },
                }
            }
            self.subscribed.store(false, Ordering::Release);
            lost = true;
            *self.subscribed_at.lock().unwrap_or_else(|e| e.into_inner()) = None;
            // Answers to what was sent before cannot come back on this subscription.
            for (_, waiting) in self.waiting.lock().unwrap_or_else(|e| e.into_inner()).drain() {
                let _ = waiting.send(Outcome::Unreachable);
            }
        }
    }

    fn on_envelope(self: Arc<Self>, cluster: &Arc<Cluster>, raw: &[u8]) {
        match serde_json::from_slice::<Envelope>(raw) {
            Ok(Envelope::Reply { id, outcome }) => {
                if let Some(waiting) = self.waiting.lock().unwrap_or_else(|e| e.into_inner()).remove(&id) {
                    let _ = waiting.send(outcome);
                }
            }
            Ok(Envelope::Request { id, reply_to, request }) => {
                let outcome = perform(&self.registry, request);
                let cluster = cluster.clone();
                tokio::spawn(async move {
                    if let Ok(answer) = serde_json::to_vec(&Envelope::Reply { id, outcome }) {
                        cluster.publish(&reply_to, &answer, RELAY_TIMEOUT).await;
                    }
                });
            }
            Err(_) => {}
        }
    }
}

/// Listen at `path`; a socket left there by a worker that died (refusing) is replaced.
fn bind(path: &Path) -> std::io::Result<UnixListener> {
    match UnixListener::bind(path) {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                // A live worker with the same tag (36 random bits: about never).
                return Err(e);
            }
            std::fs::remove_file(path)?;
            UnixListener::bind(path)
        }
        other => other,
    }
}

/// Another worker of this node: one request, one answer, on a connection of their own.
async fn ask_worker(stream: UnixStream, request: &Request) -> Outcome {
    let Ok(raw) = serde_json::to_vec(request) else {
        return Outcome::Unreachable;
    };
    let exchange = async {
        let (reader, mut writer) = stream.into_split();
        writer.write_all(&raw).await?;
        writer.shutdown().await?;
        read_limited(reader, MAX_ANSWER_BYTES).await
    };
    match tokio::time::timeout(RELAY_TIMEOUT, exchange).await {
        Ok(Ok(answer)) => serde_json::from_slice(&answer).unwrap_or(Outcome::Unreachable),
        _ => Outcome::Unreachable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::websocket::registry::Connection;
    use tokio::sync::mpsc;

    fn request(op: Operation, id: &str, data: Option<Payload>) -> Request {
        Request {
            op,
            api_id: "api1".into(),
            stage: "prod".into(),
            connection_id: id.into(),
            data,
            expires_ms: 0,
        }
    }

    #[test]
    fn messages_keep_their_shape_on_the_wire() {
        let post = request(Operation::Post, "AbCdEf123456789=", Some(Payload::of(bytes::Bytes::from_static(b"hi"))));
        let text = serde_json::to_string(&post).unwrap();
        assert_eq!(
            text,
            r#"{"op":"POST","apiId":"api1","stage":"prod","connectionId":"AbCdEf123456789=","data":{"kind":"text","data":"hi"}}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), post);
        let get = request(Operation::Get, "AbCdEf123456789=", None);
        assert!(!serde_json::to_string(&get).unwrap().contains("data"));
        let binary = Payload::of(bytes::Bytes::from_static(&[0xff, 0, 1]));
        assert_eq!(binary, Payload::Binary("/wAB".into()));
        assert_eq!(binary.into_frame(), Some(Message::Binary(vec![0xff, 0, 1].into())));
        let envelope = Envelope::Request {
            id: 7,
            reply_to: channel("tagtag"),
            request: get,
        };
        let text = serde_json::to_string(&envelope).unwrap();
        assert!(text.starts_with(r#"{"type":"request","id":7,"replyTo":"portico:ws:tagtag","#), "{text}");
        assert_eq!(serde_json::from_str::<Envelope>(&text).unwrap(), envelope);
        let reply = Envelope::Reply {
            id: 7,
            outcome: Outcome::Described {
                connection: serde_json::json!({"connectedAt": "x"}),
            },
        };
        let text = serde_json::to_string(&reply).unwrap();
        assert_eq!(text, r#"{"type":"reply","id":7,"outcome":{"outcome":"described","connection":{"connectedAt":"x"}}}"#);
        assert_eq!(serde_json::from_str::<Envelope>(&text).unwrap(), reply);
        assert_eq!(serde_json::to_string(&Outcome::Gone).unwrap(), r#"{"outcome":"gone"}"#);
    }

    fn holding(registry: &Registry, queue: usize) -> (Box<str>, mpsc::Receiver<Outgoing>) {
        let (tx, rx) = mpsc::channel(queue);
        let id = registry.connection_id();
        registry.insert(Arc::new(Connection::new(id.clone(), "api1", "prod", 5, "10.0.0.1", None, tx)));
        (id, rx)
    }

    #[test]
    fn operations_on_a_held_connection() {
        let registry = Registry::default();
        let (id, mut rx) = holding(&registry, 1);
        let post = request(Operation::Post, &id, Some(Payload::Text("hello".into())));
        assert_eq!(perform(&registry, post.clone()), Outcome::Posted);
        assert!(matches!(rx.try_recv(), Ok(Outgoing::Frame(Message::Text(t))) if t.as_str() == "hello"));
        assert_eq!(perform(&registry, post.clone()), Outcome::Posted);
        assert_eq!(perform(&registry, post), Outcome::LimitExceeded, "the queue is full");
        assert!(matches!(perform(&registry, request(Operation::Get, &id, None)), Outcome::Described { .. }));
        let mut elsewhere = request(Operation::Get, &id, None);
        elsewhere.stage = "dev".into();
        assert_eq!(perform(&registry, elsewhere), Outcome::Gone);
        rx.try_recv().unwrap();
        assert_eq!(perform(&registry, request(Operation::Delete, &id, None)), Outcome::Deleted);
        assert!(matches!(rx.try_recv(), Ok(Outgoing::Close)));
        registry.remove(&id);
        assert_eq!(perform(&registry, request(Operation::Get, &id, None)), Outcome::Gone);
    }

    #[test]
    fn a_request_past_its_deadline_is_not_carried_out() {
        let registry = Registry::default();
        let (id, mut rx) = holding(&registry, 4);
        let mut late = request(Operation::Post, &id, Some(Payload::Text("late".into())));
        late.expires_ms = crate::time::wall_clock_ms() - 1;
        assert_eq!(perform(&registry, late.clone()), Outcome::Unreachable);
        assert!(rx.try_recv().is_err(), "nothing was sent");
        late.expires_ms = crate::time::wall_clock_ms() + 60_000;
        let text = serde_json::to_string(&late).unwrap();
        assert!(text.contains(r#""expiresMs":"#), "{text}");
        assert_eq!(perform(&registry, serde_json::from_str(&text).unwrap()), Outcome::Posted);
    }

    #[test]
    fn workers_of_a_node_reach_each_other_through_their_sockets() {
        let dir = std::env::temp_dir().join(format!("portico-relay-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (a, b) = (Arc::new(Registry::default()), Arc::new(Registry::default()));
        let relay_a = Arc::new(Relay::new(a.clone(), Some(dir.clone()), None));
        let relay_b = Arc::new(Relay::new(b.clone(), Some(dir.clone()), None));
        relay_a.start(rt.handle()).unwrap();
        relay_b.start(rt.handle()).unwrap();
        let (held_by_b, mut rx) = holding(&b, 4);
        let (held_by_a, _rx_a) = holding(&a, 4);
        rt.block_on(async {
            let post = request(Operation::Post, &held_by_b, Some(Payload::Text("across".into())));
            assert_eq!(relay_a.reach(post).await, Outcome::Posted);
            assert!(matches!(rx.try_recv(), Ok(Outgoing::Frame(Message::Text(t))) if t.as_str() == "across"));
            let got = relay_a.reach(request(Operation::Get, &held_by_b, None)).await;
            assert!(matches!(got, Outcome::Described { connection } if connection["identity"]["sourceIp"] == "10.0.0.1"));
            assert!(matches!(relay_b.reach(request(Operation::Get, &held_by_a, None)).await, Outcome::Described { .. }));
            // A tag nobody on the node has, and an id of another shape: gone, no wait.
            let stranger = format!("zzzzzz{}", &held_by_b[6..]);
            assert_eq!(relay_a.reach(request(Operation::Get, &stranger, None)).await, Outcome::Gone);
            assert_eq!(relay_a.reach(request(Operation::Get, "not-an-id", None)).await, Outcome::Gone);
        });
        // B stops: its socket is gone, and so are its connections for A.
        relay_b.stop();
        rt.block_on(async {
            assert_eq!(relay_a.reach(request(Operation::Get, &held_by_b, None)).await, Outcome::Gone);
        });
        // A socket whose worker died refuses: gone as well, and a new worker may take its place.
        let dead = socket_path(&dir, b.owner());
        drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
        rt.block_on(async {
            assert_eq!(relay_a.reach(request(Operation::Get, &held_by_b, None)).await, Outcome::Gone);
        });
        let _guard = rt.enter();
        assert!(bind(&dead).is_ok(), "a dead worker's socket is replaced");
        relay_a.stop();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
