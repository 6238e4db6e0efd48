//! The second front door: requests an ASGI server hands to the embedded app
//! (`portico.dataplane.app.DataPlane`) run through the same pipeline as the edge's.
//!
//! Python submits the request head with a token and feeds its body; the pipeline runs on the
//! core's thread; what Python waits for (the response head, each body chunk) is posted to a
//! completion queue, and an eventfd the ASGI server's loop watches says when it has something:
//! the loop drains it and resolves its futures itself, with no thread in between. The core's
//! thread never takes the GIL.
//!
//! A WebSocket scope is submitted the same way, as its opening handshake: the ASGI server
//! terminates the protocol, and the connection the pipeline holds (`crate::pipeline::websocket`)
//! reads the messages Python feeds (`SocketFeed`) and posts the frames it sends as completions
//! (`FrameSink`), where the edge reads and writes a tungstenite stream.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Sink, Stream};
use http::header::{HeaderName, HeaderValue};
use http::{Request, Version};
use http_body_util::BodyExt;
use hyper::body::Body;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::edge::Server;
use crate::pipeline::body::{empty, failed, ChannelBody, PipelineBody};
use crate::pipeline::Connection;

/// What Python waits for.
#[derive(Debug)]
pub enum Completion {
    /// The response head, with the whole body when it is small and known (else it is pulled
    /// with `pull`).
    Head {
        token: u64,
        status: u16,
        headers: Vec<(Bytes, Bytes)>,
        whole: Option<Bytes>,
    },
    /// One body chunk (`more`: whether others follow).
    Chunk { token: u64, data: Bytes, more: bool },
    /// The body failed mid-way: the server must abort the connection.
    Abort { token: u64, error: String },
    /// A WebSocket frame for the client (`websocket.send`): text or binary.
    Frame { token: u64, message: Message },
    /// Close the WebSocket connection (`websocket.close`).
    Close { token: u64, code: u16, reason: String },
    /// The pipeline no longer holds the connection: the ASGI app returns.
    SocketEnd { token: u64 },
}

/// The embedded door's state: completions to hand to Python and the bodies being pulled.
pub struct Embedded {
    queue: Mutex<VecDeque<Completion>>,
    /// Readable while completions wait (an eventfd: written when the queue stops being empty).
    ready: OwnedFd,
    bodies: Mutex<HashMap<u64, Slot>>,
}

/// A response body between pulls, or being read for one.
enum Slot {
    Idle(PipelineBody),
    /// A pull reads the body; dropping the sender (`discard`) stops it and drops the body, so
    /// that a producer (a streaming handler) learns at once that nobody reads any more.
    Pulling { _stop: tokio::sync::oneshot::Sender<()> },
}

/// A request head as the ASGI server gave it.
pub struct Head {
    pub token: u64,
    pub method: String,
    /// Raw path and query (`/a%2Fb?x=1`).
    pub target: String,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub client_ip: IpAddr,
    pub scheme: &'static str,
    pub version: Version,
    /// Whether a body follows (Content-Length or Transfer-Encoding given).
    pub has_body: bool,
}

/// A message of the client's as the held connection reads it (what tungstenite's stream yields
/// at the edge).
pub type Inbound = Result<Message, WsError>;

/// Messages buffered ahead of the held connection.
const SOCKET_MESSAGES: usize = 64;

/// Frames handed to Python and not yet sent by the ASGI server: past this many the connection's
/// sink is not ready, so its outgoing queue fills and `@connections` posts are refused
/// (`LimitExceededException`) for a client that does not read, as at the edge, whose socket
/// writes stall.
const SEND_WINDOW: usize = 64;

/// What the ASGI server has not sent yet of a connection's frames; closed once the client is gone.
#[derive(Default)]
pub struct SendWindow {
    in_flight: std::sync::atomic::AtomicUsize,
    closed: std::sync::atomic::AtomicBool,
    waker: futures_util::task::AtomicWaker,
}

impl SendWindow {
    /// The ASGI server sent one frame.
    pub fn sent(&self) {
        use std::sync::atomic::Ordering;
        let _ = self.in_flight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        self.waker.wake();
    }

    /// The client is gone: frames go nowhere now (a sink waiting for room fails).
    pub fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::Release);
        self.waker.wake();
    }
}

/// An embedded WebSocket handshake's connection, in the request's extensions until the pipeline
/// takes it (extensions must be `Clone`: the parts are taken once).
#[derive(Clone)]
pub struct EmbeddedSocket(Arc<Mutex<Option<SocketParts>>>);

impl EmbeddedSocket {
    pub fn take(&self) -> Option<SocketParts> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// What the pipeline holds of an embedded connection.
pub struct SocketParts {
    token: u64,
    door: Arc<Embedded>,
    accepted: oneshot::Receiver<()>,
    incoming: mpsc::Receiver<Inbound>,
    window: Arc<SendWindow>,
}

impl SocketParts {
    /// Once the ASGI server has accepted the connection (as hyper's `OnUpgrade` resolves once
    /// the 101 is written): where frames go, and the client's messages. None: the client went
    /// away first.
    pub async fn open(self) -> Option<(FrameSink, InboundStream)> {
        self.accepted.await.ok()?;
        let sink = FrameSink {
            token: self.token,
            door: self.door,
            window: self.window,
        };
        Some((sink, InboundStream(self.incoming)))
    }
}

/// The client's messages, as Python feeds them.
pub struct InboundStream(mpsc::Receiver<Inbound>);

impl Stream for InboundStream {
    type Item = Inbound;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Inbound>> {
        self.0.poll_recv(cx)
    }
}

/// The frames the gateway sends, posted to Python as completions, at most `SEND_WINDOW` of them
/// unsent. Dropped: the connection is over, and Python's app returns.
pub struct FrameSink {
    token: u64,
    door: Arc<Embedded>,
    window: Arc<SendWindow>,
}

/// The client is gone: a frame cannot be sent (as a failed write at the edge).
#[derive(Debug)]
pub struct Gone;

impl Sink<Message> for FrameSink {
    type Error = Gone;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Gone>> {
        use std::sync::atomic::Ordering;
        let window = &self.window;
        for _ in 0..2 {
            if window.closed.load(Ordering::Acquire) {
                return Poll::Ready(Err(Gone));
            }
            if window.in_flight.load(Ordering::Acquire) < SEND_WINDOW {
                return Poll::Ready(Ok(()));
            }
            // Registered, then checked again: a `sent` in between is not missed.
            window.waker.register(cx.waker());
        }
        Poll::Pending
    }
    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), Gone> {
        let token = self.token;
        match message {
            Message::Text(_) | Message::Binary(_) => {
                self.window.in_flight.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                self.door.post(Completion::Frame { token, message });
            }
            Message::Close(frame) => {
                let (code, reason) = frame.map_or((1000, String::new()), |f| (u16::from(f.code), f.reason.to_string()));
                self.door.post(Completion::Close { token, code, reason });
            }
            // Pings and pongs are the ASGI server's.
            _ => {}
        }
        Ok(())
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Gone>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Gone>> {
        Poll::Ready(Ok(()))
    }
}

impl Drop for FrameSink {
    fn drop(&mut self) {
        self.door.post(Completion::SocketEnd { token: self.token });
    }
}

/// Python's side of an embedded connection: it says when the ASGI server accepted it and feeds
/// the client's messages.
pub struct SocketFeed {
    pub accepted: Option<oneshot::Sender<()>>,
    pub incoming: Option<mpsc::Sender<Inbound>>,
    pub window: Arc<SendWindow>,
}

/// What `SocketFeed::send` did: queued, full (try again soon), or nobody reads any more.
pub enum Fed {
    Queued,
    Full,
    Closed,
}

impl SocketFeed {
    /// A message of the client's. The ASGI server has joined its frames already, so AWS's 128 KB
    /// message limit is kept here (a larger one closes the connection with 1009, as at the edge).
    pub fn message(&self, message: Message) -> Fed {
        let size = message.len();
        let item = if size > crate::websocket::MAX_MESSAGE_BYTES {
            Err(WsError::Capacity(CapacityError::MessageTooLong {
                size,
                max_size: crate::websocket::MAX_MESSAGE_BYTES,
            }))
        } else {
            Ok(message)
        };
        self.send(item)
    }

    pub fn send(&self, item: Inbound) -> Fed {
        use tokio::sync::mpsc::error::TrySendError;
        let Some(tx) = self.incoming.as_ref() else {
            return Fed::Closed;
        };
        match tx.try_send(item) {
            Ok(()) => Fed::Queued,
            Err(TrySendError::Full(_)) => Fed::Full,
            Err(TrySendError::Closed(_)) => Fed::Closed,
        }
    }
}

/// The sending end of a request body fed by Python.
pub type BodyFeed = mpsc::Sender<Result<Bytes, String>>;

/// Bodies up to this size are sent with the response head.
const WHOLE_BODY_MAX: u64 = 64 * 1024;

/// Request bodies buffered ahead of the pipeline (chunks as the ASGI server delivers them).
const FEED_CHUNKS: usize = 64;

impl Embedded {
    pub fn new() -> std::io::Result<Arc<Embedded>> {
        // SAFETY: eventfd returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Arc::new(Embedded {
            queue: Mutex::new(VecDeque::new()),
            // SAFETY: a descriptor of our own, closed with the struct.
            ready: unsafe { OwnedFd::from_raw_fd(fd) },
            bodies: Mutex::new(HashMap::new()),
        }))
    }

    /// The descriptor that is readable while completions wait.
    pub fn ready_fd(&self) -> i32 {
        self.ready.as_raw_fd()
    }

    fn post(&self, completion: Completion) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let was_empty = q.is_empty();
        q.push_back(completion);
        drop(q);
        if was_empty {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a local; an eventfd that is full already is readable.
            unsafe { libc::write(self.ready.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    /// Every completion waiting (none blocks): the eventfd is reset first, so a completion posted
    /// meanwhile makes it readable again.
    pub fn take(&self) -> Vec<Completion> {
        let mut count: u64 = 0;
        // SAFETY: reads 8 bytes into a local; EAGAIN (nothing to reset) is fine.
        unsafe { libc::read(self.ready.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect()
    }

    /// Start a request; returns where its body goes (None when it has none).
    pub fn submit(self: &Arc<Self>, server: &Server, head: Head) -> Result<Option<BodyFeed>, String> {
        self.start(server, head, None)
    }

    /// Start a WebSocket scope's opening handshake; returns where the client's messages go.
    pub fn submit_socket(self: &Arc<Self>, server: &Server, head: Head) -> Result<SocketFeed, String> {
        let (accepted_tx, accepted) = oneshot::channel();
        let (incoming_tx, incoming) = mpsc::channel(SOCKET_MESSAGES);
        let window = Arc::new(SendWindow::default());
        let socket = EmbeddedSocket(Arc::new(Mutex::new(Some(SocketParts {
            token: head.token,
            door: self.clone(),
            accepted,
            incoming,
            window: window.clone(),
        }))));
        self.start(server, head, Some(socket))?;
        Ok(SocketFeed {
            accepted: Some(accepted_tx),
            incoming: Some(incoming_tx),
            window,
        })
    }

    fn start(self: &Arc<Self>, server: &Server, head: Head, socket: Option<EmbeddedSocket>) -> Result<Option<BodyFeed>, String> {
        let mut builder = Request::builder()
            .method(head.method.as_str())
            .uri(head.target.as_str())
            .version(head.version);
        for (name, value) in &head.headers {
            let name = HeaderName::from_bytes(name).map_err(|e| e.to_string())?;
            let value = HeaderValue::from_bytes(value).map_err(|e| e.to_string())?;
            builder = builder.header(name, value);
        }
        let (feed, body) = if head.has_body {
            let (tx, rx) = mpsc::channel(FEED_CHUNKS);
            (Some(tx), ChannelBody::new(rx).boxed())
        } else {
            (None, empty())
        };
        if let Some(socket) = socket {
            builder = builder.extension(socket);
        }
        let request = builder.body(body).map_err(|e| e.to_string())?;
        let conn = Connection {
            client_ip: head.client_ip,
            scheme: head.scheme,
            client_auth: None,
        };
        let pipeline = server.pipeline.clone();
        let guard = server.inflight().enter();
        let me = self.clone();
        let token = head.token;
        server.spawn(async move {
            let response = pipeline.handle(request, conn).await;
            let (parts, body) = response.into_parts();
            let headers = parts
                .headers
                .iter()
                .map(|(n, v)| (Bytes::copy_from_slice(n.as_str().as_bytes()), Bytes::copy_from_slice(v.as_bytes())))
                .collect();
            // A small body of known size comes with the head: one hand-off instead of two.
            let small = body.size_hint().exact().is_some_and(|n| n <= WHOLE_BODY_MAX);
            let whole = if small {
                let mut body = body;
                let mut data = bytes::BytesMut::new();
                loop {
                    match body.frame().await {
                        None => break Some(data.freeze()),
                        Some(Ok(frame)) => {
                            if let Ok(chunk) = frame.into_data() {
                                data.extend_from_slice(&chunk);
                            }
                        }
                        Some(Err(e)) => {
                            // As through the edge, which sent the head already: the head, what
                            // came of the body, then the connection aborted.
                            me.bodies
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(token, Slot::Idle(failed(data.freeze(), e)));
                            break None;
                        }
                    }
                }
            } else {
                me.bodies
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(token, Slot::Idle(body));
                None
            };
            me.post(Completion::Head {
                token,
                status: parts.status.as_u16(),
                headers,
                whole,
            });
            drop(guard);
        });
        Ok(feed)
    }

    /// Ask for the next chunk of `token`'s response body (posted as a `Chunk` or `Abort`).
    pub fn pull(self: &Arc<Self>, server: &Server, token: u64) {
        let (stop_tx, mut stop) = tokio::sync::oneshot::channel();
        let body = {
            let mut bodies = self.bodies.lock().unwrap_or_else(|e| e.into_inner());
            match bodies.remove(&token) {
                Some(Slot::Idle(body)) => {
                    bodies.insert(token, Slot::Pulling { _stop: stop_tx });
                    Some(body)
                }
                Some(pulling) => {
                    bodies.insert(token, pulling);
                    return; // one pull at a time
                }
                None => None,
            }
        };
        let Some(mut body) = body else {
            self.post(Completion::Chunk {
                token,
                data: Bytes::new(),
                more: false,
            });
            return;
        };
        let me = self.clone();
        server.spawn(async move {
            loop {
                let frame = tokio::select! {
                    frame = body.frame() => frame,
                    // Discarded: nobody reads any more; the body is dropped here.
                    _ = &mut stop => return,
                };
                let completion = match frame {
                    None => Completion::Chunk {
                        token,
                        data: Bytes::new(),
                        more: false,
                    },
                    Some(Err(e)) => Completion::Abort {
                        token,
                        error: e.to_string(),
                    },
                    Some(Ok(frame)) => {
                        let Ok(data) = frame.into_data() else {
                            continue; // trailers: not carried over ASGI
                        };
                        if data.is_empty() && !body.is_end_stream() {
                            continue;
                        }
                        Completion::Chunk {
                            token,
                            data,
                            more: !body.is_end_stream(),
                        }
                    }
                };
                {
                    let mut bodies = me.bodies.lock().unwrap_or_else(|e| e.into_inner());
                    if !matches!(bodies.remove(&token), Some(Slot::Pulling { .. })) {
                        return; // discarded meanwhile
                    }
                    if matches!(completion, Completion::Chunk { more: true, .. }) {
                        bodies.insert(token, Slot::Idle(body));
                    }
                }
                me.post(completion);
                return;
            }
        });
    }

    /// Drop `token`'s response body (the client went away).
    pub fn discard(&self, token: u64) {
        self.bodies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&token);
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};

    fn socket(door: &Arc<Embedded>) -> (SocketFeed, SocketParts) {
        let (accepted_tx, accepted) = oneshot::channel();
        let (incoming_tx, incoming) = mpsc::channel(SOCKET_MESSAGES);
        let window = Arc::new(SendWindow::default());
        let parts = SocketParts {
            token: 7,
            door: door.clone(),
            accepted,
            incoming,
            window: window.clone(),
        };
        let feed = SocketFeed {
            accepted: Some(accepted_tx),
            incoming: Some(incoming_tx),
            window,
        };
        (feed, parts)
    }

    #[tokio::test]
    async fn messages_in_frames_out_and_the_end_posted() {
        let door = Embedded::new().unwrap();
        let (mut feed, parts) = socket(&door);
        feed.accepted.take().unwrap().send(()).unwrap();
        let (mut sink, mut stream) = parts.open().await.expect("accepted");
        assert!(matches!(feed.message(Message::Text("hi".into())), Fed::Queued));
        // AWS's 128 KB message limit, kept by the core since the ASGI server joins the frames.
        let big = "x".repeat(crate::websocket::MAX_MESSAGE_BYTES + 1);
        assert!(matches!(feed.message(Message::Text(big.into())), Fed::Queued));
        assert!(matches!(stream.next().await, Some(Ok(Message::Text(t))) if t.as_str() == "hi"));
        assert!(matches!(stream.next().await, Some(Err(WsError::Capacity(_)))));
        feed.incoming.take();
        assert!(stream.next().await.is_none(), "a lost connection ends the stream");

        sink.send(Message::Text("answer".into())).await.unwrap();
        sink.send(Message::Close(None)).await.unwrap();
        drop(sink);
        let posted = door.take();
        assert!(matches!(&posted[0], Completion::Frame { token: 7, message: Message::Text(t) } if t.as_str() == "answer"));
        assert!(matches!(&posted[1], Completion::Close { token: 7, code: 1000, .. }));
        assert!(matches!(posted[2], Completion::SocketEnd { token: 7 }));
        assert!(matches!(feed.message(Message::Text("late".into())), Fed::Closed));
    }

    #[tokio::test]
    async fn frames_wait_for_the_server_to_send_and_fail_once_the_client_is_gone() {
        use futures_util::FutureExt;
        let door = Embedded::new().unwrap();
        let (mut feed, parts) = socket(&door);
        feed.accepted.take().unwrap().send(()).unwrap();
        let (mut sink, _stream) = parts.open().await.expect("accepted");
        for n in 0..SEND_WINDOW {
            sink.send(Message::Text(n.to_string().into())).await.unwrap();
        }
        // The window is full: the next frame waits until the server has sent one.
        let mut next = Box::pin(sink.send(Message::Text("one more".into())));
        assert!(next.as_mut().now_or_never().is_none());
        feed.window.sent();
        assert!(next.as_mut().now_or_never().is_some_and(|r| r.is_ok()));
        drop(next);
        let mut waiting = Box::pin(sink.send(Message::Text("never sent".into())));
        assert!(waiting.as_mut().now_or_never().is_none());
        feed.window.close();
        assert!(matches!(waiting.as_mut().now_or_never(), Some(Err(Gone))));
        assert_eq!(door.take().len(), SEND_WINDOW + 1);
    }

    #[tokio::test]
    async fn a_connection_never_accepted_does_not_open() {
        let door = Embedded::new().unwrap();
        let (feed, parts) = socket(&door);
        drop(feed);
        assert!(parts.open().await.is_none());
        assert!(door.take().is_empty(), "nothing to end: it never began");
    }
}
