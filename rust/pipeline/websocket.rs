//! The WebSocket phase (`crate::websocket`): a WebSocket API's stage serves the opening
//! handshake at its root and the `@connections` management API below it.
//!
//! The handshake runs `$connect` (its answer's 2xx status accepts the connection, any other
//! refuses it with that status); the accepted connection is held by a task of the core's runtime,
//! which routes each text message by the API's `routeSelectionExpression`, invokes the route's
//! integration and, for a two-way route, sends its answer back. `$disconnect` is invoked once,
//! after the connection ends however it ends.
//!
//! Both front doors hand over the connection (`Upgrade`): the edge's hyper upgrade, read and
//! written as a tungstenite stream, or the embedded ASGI door's socket, whose messages Python
//! feeds and whose frames go back as completions (`crate::embed`). Everything past the
//! handshake's transport (`converse`) is the same code for both.

mod access;

use access::{Logged, Outcome};

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use http::header::{HeaderValue, CONNECTION, CONTENT_TYPE, HOST, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_PROTOCOL, UPGRADE, USER_AGENT};
use http::{HeaderName, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::body::{self, empty, full, PipelineBody};
use super::{epoch_ms, fail, header_str, ip_text, Connection, Exchange, Failure, Pipeline};
use crate::auth::{execute_api_arn, sigv4};
use crate::gateway::{Api, ApiKind, Decision, Gateway, MessageBuckets, RouteRuntime, Serving, Snapshot};
use crate::integrations::http_proxy::UpstreamClient;
use crate::invoke::Invoker;
use crate::pipeline::responses::ErrorType;
use crate::pipeline::validate::{MessageRefusal, Violations};
use crate::websocket::events::{self, ConnectionContext, Disconnect, EventIds};
use crate::websocket::integration::{invoke, Invocation, Reply};
use crate::websocket::registry::{self, OUTGOING_QUEUE};
use crate::websocket::relay::{self, Operation, Payload};
use crate::websocket::selection::RouteSelection;
use crate::websocket::{handshake, Outgoing, Registry, MAX_FRAME_BYTES, MAX_MESSAGE_BYTES, READ_BUFFER_BYTES};

/// How a front door hands over a WebSocket handshake's connection.
pub(crate) enum Upgrade {
    /// The edge's: the HTTP/1.1 connection itself, once the 101 is written.
    Edge(hyper::upgrade::OnUpgrade),
    /// The embedded ASGI door's: the ASGI server holds the connection and speaks the protocol.
    Embedded(crate::embed::SocketParts),
}

/// How long the gateway waits for the client's answer to a close frame it sent.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
const ERROR_TYPE: HeaderName = HeaderName::from_static("x-amzn-errortype");

/// A connection's part that outlives the handshake's request: what its events say, what it
/// serves, and where its frames go.
struct Session {
    cx: ConnectionContext,
    serving: Arc<Serving>,
    selection: Arc<RouteSelection>,
    invoker: Arc<Invoker>,
    /// HTTP and HTTP_PROXY integrations' client (the pipeline's pool).
    client: Arc<UpstreamClient>,
    registry: Arc<Registry>,
    connection: Arc<registry::Connection>,
    region: Box<str>,
    account_id: Box<str>,
    /// `settings.websocketIdleTimeoutSeconds`, `settings.websocketMaxConnectionSeconds`.
    idle_timeout: Duration,
    max_connection: Duration,
    /// The stage's and the account's buckets its messages spend (`access`); None: no throttle.
    buckets: Option<MessageBuckets>,
    gateway: Arc<Gateway>,
}

impl Session {
    fn route(&self, key: &str) -> Option<&RouteRuntime> {
        self.serving.routes.iter().find(|r| &*r.key == key)
    }

    /// A message's or `$disconnect`'s invocation (no headers or query string: the handshake's
    /// are `$connect`'s only, as on AWS).
    fn invocation<'a>(&'a self, event: Vec<u8>, body: &'a str) -> Invocation<'a> {
        static NO_HEADERS: std::sync::OnceLock<http::HeaderMap> = std::sync::OnceLock::new();
        Invocation {
            invoker: &self.invoker,
            client: &self.client,
            region: &self.region,
            account_id: &self.account_id,
            invocation_id: self.registry.ids.uuid(),
            event,
            headers: NO_HEADERS.get_or_init(http::HeaderMap::new),
            raw_query: "",
            body,
            stage_variables: &self.serving.variables,
        }
    }

    fn send_text(&self, text: String) {
        self.connection.send(Outgoing::Frame(Message::Text(text.into())));
    }

    /// Answer a message with the error frame its outcome names (`Forbidden`, `Too Many
    /// Requests`, ...), logged first; the connection stays open.
    fn refuse(&self, line: &Logged<'_>) {
        self.log_event(line);
        if let (_, Some(message), _) = line.outcome.refusal() {
            self.send_text(events::error_frame(message, &self.cx.connection_id, line.request_id));
        }
    }

    /// One text message: its route, its integration, and for a two-way route the answer.
    async fn on_message(self: Arc<Self>, text: String) {
        let request_id = self.registry.ids.request_id();
        let message_id = self.registry.connection_id();
        let arrived = std::time::Instant::now();
        let ids = EventIds {
            request_id: &request_id,
            extended_request_id: &request_id,
            time_ms: epoch_ms(),
        };
        // The message's access-log line, completed at each way out (`access`).
        let line = Logged {
            event_type: "MESSAGE",
            arrived,
            request_id: &request_id,
            message_id: Some(&message_id),
            time_ms: ids.time_ms,
            route_key: None,
            outcome: Outcome::NoRoute,
        };
        // `$connect` and `$disconnect` are never a message's route.
        let selected = self
            .selection
            .select(&text)
            .filter(|key| key != "$connect" && key != "$disconnect")
            .and_then(|key| self.route(&key));
        let Some(route) = selected.or_else(|| self.route("$default")) else {
            return self.refuse(&line);
        };
        let line = Logged { route_key: Some(&route.key), ..line };
        // The route's and the account's buckets (`access`): a throttled message is answered and
        // the connection stays open.
        let index = self.serving.routes.iter().position(|r| std::ptr::eq(r, route)).unwrap_or(usize::MAX);
        if !self.admit_message(index).await {
            return self.refuse(&Logged { outcome: Outcome::Throttled, ..line });
        }
        // The route's model ("Request validation for WebSocket APIs"): a message that does not
        // match is answered and the connection stays open.
        if let Some(validation) = &route.validation {
            match validation.check_message(&text) {
                Ok(()) => {}
                Err(MessageRefusal::Invalid(Violations(violations))) => {
                    return self.refuse(&Logged { outcome: Outcome::Invalid(&violations), ..line });
                }
                Err(MessageRefusal::Configuration(why)) => {
                    eprintln!("portico: WebSocket message {request_id} ({}): {why}", route.key);
                    return self.refuse(&Logged { outcome: Outcome::Failed(&why), ..line });
                }
            }
        }
        let event = events::message(&self.cx, ids, &route.key, &message_id, &text);
        let started = std::time::Instant::now();
        match invoke(route, self.invocation(event, &text)).await {
            Err(why) => {
                eprintln!("portico: WebSocket message {request_id} ({}): {why}", route.key);
                self.refuse(&Logged { outcome: Outcome::Failed(&why), ..line });
            }
            Ok(answer) => {
                let integrated = Outcome::Integrated {
                    status: answer.status,
                    latency_ms: started.elapsed().as_millis() as u64,
                };
                // Logged before the answer goes: a client reading it finds the line written.
                self.log_event(&Logged { outcome: integrated, ..line });
                match (route.two_way, answer.body) {
                    (true, Some(Reply::Text(text))) => self.send_text(text),
                    (true, Some(Reply::Binary(bytes))) => {
                        self.connection.send(Outgoing::Frame(Message::Binary(bytes)));
                    }
                    _ => {}
                }
            }
        }
    }

    /// `$disconnect`, once the connection has ended.
    async fn on_disconnect(&self, how: &Disconnect) {
        let request_id = self.registry.ids.request_id();
        let ids = EventIds {
            request_id: &request_id,
            extended_request_id: &request_id,
            time_ms: epoch_ms(),
        };
        // Every connection's end is logged, with or without a `$disconnect` route.
        let mut logged = Logged {
            event_type: "DISCONNECT",
            arrived: std::time::Instant::now(),
            request_id: &request_id,
            message_id: None,
            time_ms: ids.time_ms,
            route_key: Some("$disconnect"),
            outcome: Outcome::Done,
        };
        let Some(route) = self.route("$disconnect") else {
            self.log_event(&logged);
            return;
        };
        let event = events::disconnect(&self.cx, ids, how);
        match invoke(route, self.invocation(event, "")).await {
            Err(why) => {
                eprintln!("portico: WebSocket $disconnect of {}: {why}", self.cx.connection_id);
                logged.outcome = Outcome::Failed(&why);
                self.log_event(&logged);
            }
            Ok(answer) => {
                let latency_ms = logged.arrived.elapsed().as_millis() as u64;
                logged.outcome = Outcome::Integrated { status: answer.status, latency_ms };
                self.log_event(&logged);
            }
        }
    }
}

/// Hold an accepted connection until it ends, then forget it and run `$disconnect`.
async fn hold(session: Arc<Session>, upgrade: Upgrade, mut outgoing: mpsc::Receiver<Outgoing>) {
    let how = match upgrade {
        Upgrade::Edge(upgrade) => match upgrade.await {
            Err(_) => Disconnect::abnormal(),
            Ok(upgraded) => {
                // tungstenite allocates its read buffer up front (128 KiB by default): that was
                // 96% of an idle connection's memory (`python benches/websocket.py`). 4 KiB holds
                // most messages whole; a larger one is read in several passes.
                let config = WebSocketConfig::default()
                    .read_buffer_size(READ_BUFFER_BYTES)
                    .max_frame_size(Some(MAX_FRAME_BYTES))
                    .max_message_size(Some(MAX_MESSAGE_BYTES));
                let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
                let (sink, stream) = ws.split();
                converse(&session, sink, stream, &mut outgoing).await
            }
        },
        Upgrade::Embedded(socket) => match socket.open().await {
            None => Disconnect::abnormal(),
            Some((sink, stream)) => converse(&session, sink, stream, &mut outgoing).await,
        },
    };
    session.registry.remove(&session.cx.connection_id);
    session.on_disconnect(&how).await;
}

fn close_frame(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    }))
}

/// Read the client's messages and write the gateway's frames until the connection ends; how it
/// ended. The stream ends (or fails) when the connection is lost.
async fn converse<Si, St>(session: &Arc<Session>, mut sink: Si, mut stream: St, outgoing: &mut mpsc::Receiver<Outgoing>) -> Disconnect
where
    Si: Sink<Message> + Unpin,
    St: Stream<Item = Result<Message, WsError>> + Unpin,
{
    // Once the gateway has sent a close frame: how the connection ended, and until when the
    // client's answer is waited for.
    let mut closing: Option<(Disconnect, tokio::time::Instant)> = None;
    // AWS's idle timeout counts messages either way (not control frames), and its connection
    // limit the whole life of the connection.
    let opened = tokio::time::Instant::now();
    let mut last_message = opened;
    loop {
        let deadline = closing.as_ref().map(|(_, at)| *at);
        let expiry = (last_message + session.idle_timeout).min(opened + session.max_connection);
        tokio::select! {
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    last_message = tokio::time::Instant::now();
                    session.connection.touch(epoch_ms());
                    if closing.is_none() {
                        tokio::spawn(session.clone().on_message(text.as_str().to_owned()));
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    // "API Gateway WebSocket APIs don't currently support binary frames in incoming
                    // message payloads ... disconnects the client with code 1003."
                    if closing.is_none() {
                        let _ = sink.send(close_frame(1003, "Binary frames are not supported")).await;
                        let how = Disconnect::server_closed(1003, "Binary frames are not supported");
                        closing = Some((how, tokio::time::Instant::now() + CLOSE_WAIT));
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    if let Some((how, _)) = closing {
                        return how;
                    }
                    // The edge's tungstenite has queued the answering close frame: send it (the
                    // ASGI server answers it itself).
                    let _ = sink.flush().await;
                    return match frame {
                        Some(f) => Disconnect::client_closed(Some(u16::from(f.code)), &f.reason),
                        None => Disconnect::client_closed(None, ""),
                    };
                }
                Some(Ok(_)) => session.connection.touch(epoch_ms()),
                Some(Err(WsError::Capacity(_))) => {
                    // A frame over 32 KB or a message over 128 KB (`crate::embed::SocketFeed`
                    // for the embedded door's messages).
                    let _ = sink.send(close_frame(1009, "Message too big")).await;
                    return Disconnect::server_closed(1009, "Message too big");
                }
                Some(Err(_)) | None => {
                    return closing.map_or_else(Disconnect::abnormal, |(how, _)| how);
                }
            },
            next = outgoing.recv() => match next {
                Some(Outgoing::Frame(message)) => {
                    if closing.is_none() {
                        if sink.send(message).await.is_err() {
                            return Disconnect::abnormal();
                        }
                        last_message = tokio::time::Instant::now();
                    }
                }
                Some(Outgoing::Close) => {
                    if closing.is_none() {
                        let _ = sink.send(close_frame(1000, "")).await;
                        // AWS's `$disconnect` after a DeleteConnection: 1000, "Connection Closed Normally".
                        let how = Disconnect::server_closed(1000, "Connection Closed Normally");
                        closing = Some((how, tokio::time::Instant::now() + CLOSE_WAIT));
                    }
                }
                // The registry's entry and the message tasks hold senders while the connection lives.
                None => return closing.map_or_else(Disconnect::abnormal, |(how, _)| how),
            },
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {
                return closing.map_or_else(Disconnect::abnormal, |(how, _)| how);
            }
            _ = tokio::time::sleep_until(expiry), if closing.is_none() => {
                // Idle too long, or connected too long: closed as going away.
                let _ = sink.send(close_frame(1001, "Going away")).await;
                let how = Disconnect::server_closed(1001, "Going away");
                closing = Some((how, tokio::time::Instant::now() + CLOSE_WAIT));
            }
        }
    }
}

/// An answer with a status, and a JSON body when there is one.
fn answer(status: u16, body: Option<Bytes>) -> Response<PipelineBody> {
    let mut response = match body {
        Some(body) => {
            let mut r = Response::new(full(body));
            r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        None => Response::new(empty()),
    };
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
}

/// An `@connections` error as the management API's clients read it (`x-amzn-ErrorType`).
fn service_error(status: u16, error_type: &'static str, message: Option<&str>) -> Response<PipelineBody> {
    let body = serde_json::json!({ "message": message }).to_string();
    let mut response = answer(status, Some(body.into()));
    response.headers_mut().insert(ERROR_TYPE, HeaderValue::from_static(error_type));
    response
}

impl Pipeline {
    /// A request to a WebSocket API's stage: the handshake at its root, `@connections/{id}`.
    pub(super) async fn websocket(
        &self,
        snap: &Arc<Snapshot>,
        parts: &http::request::Parts,
        body: PipelineBody,
        conn: &Connection,
        ex: &mut Exchange,
        d: &Decision<'_>,
    ) -> Result<Response<PipelineBody>, Failure> {
        let (Some(api), Some(serving)) = (d.api.map(|a| snap.api(a)), ex.serving.clone()) else {
            return fail(ErrorType::ResourceNotFound, "no stage");
        };
        if let Some(id) = d.path.strip_prefix("/@connections/") {
            return self.manage_connection(snap, parts, body, conn, ex, api, &serving, id).await;
        }
        if d.path != "/" {
            return fail(ErrorType::ResourceNotFound, "a WebSocket API answers at its stage's root");
        }
        let Some(key) = handshake::client_key(&parts.method, &parts.headers) else {
            let error = if handshake::wants_upgrade(&parts.headers) {
                ErrorType::BadRequest
            } else {
                ErrorType::ResourceNotFound
            };
            return fail(error, "not a WebSocket opening handshake");
        };
        let Some(upgrade) = ex.upgrade.take() else {
            return fail(ErrorType::ResourceNotFound, "the request came with no connection to hold (an HTTP scope)");
        };
        let Some(selection) = api.route_selection.clone() else {
            return fail(ErrorType::ApiConfigurationError, "a WebSocket API without routeSelectionExpression");
        };
        let settings = &snap.settings;
        let connect_route = serving.routes.iter().find(|r| &*r.key == "$connect");
        let mut ip = [0u8; 48];
        let cx = ConnectionContext {
            api_id: api.id.clone(),
            stage: serving.stage.clone(),
            domain_name: header_str(&parts.headers, HOST).unwrap_or("").into(),
            connection_id: self.websockets.connection_id(),
            connected_at_ms: ex.epoch_ms,
            source_ip: ip_text(conn.client_ip, &mut ip).into(),
            user_agent: header_str(&parts.headers, USER_AGENT).map(Into::into),
            iam: None,
            authorizer: None,
            api_key: None,
        };
        // `$connect`'s throttle, authorization and API key (`access`).
        let cx = self.admit_connection(snap, parts, body, conn, ex, d, cx).await?;
        let mut subprotocol = None;
        if let Some(route) = connect_route {
            let ids = EventIds {
                request_id: &ex.request_id,
                extended_request_id: &ex.request_id,
                time_ms: ex.epoch_ms,
            };
            let raw_query = parts.uri.query().unwrap_or("");
            let event = events::connect(&cx, ids, &parts.headers, raw_query);
            let call = Invocation {
                invoker: &self.invoker,
                client: &self.upstream,
                region: &settings.region,
                account_id: &settings.account_id,
                invocation_id: self.ids.uuid(),
                event,
                headers: &parts.headers,
                raw_query,
                body: "",
                stage_variables: &serving.variables,
            };
            match invoke(route, call).await {
                Err(why) => {
                    eprintln!("portico: WebSocket $connect {}: {why}", ex.request_id);
                    return Ok(answer(500, Some(Bytes::from_static(br#"{"message": "Internal server error"}"#))));
                }
                Ok(connected) => match connected.status {
                    Some(status) if (200..300).contains(&status) => {
                        subprotocol = handshake::chosen_subprotocol(&connected.headers, &parts.headers)
                            .and_then(|p| HeaderValue::from_str(p).ok());
                    }
                    // The integration refused the connection: the client sees its status.
                    Some(status) if (400..600).contains(&status) => {
                        return Ok(answer(status, connected.body.map(Reply::into_bytes)))
                    }
                    _ => {
                        eprintln!(
                            "portico: WebSocket $connect {}: the answer has no statusCode of 200-599",
                            ex.request_id
                        );
                        return Ok(answer(502, Some(Bytes::from_static(br#"{"message": "Internal server error"}"#))));
                    }
                },
            }
        }
        let (tx, rx) = mpsc::channel(OUTGOING_QUEUE);
        let connection = Arc::new(registry::Connection::new(
            cx.connection_id.clone(),
            &cx.api_id,
            &cx.stage,
            cx.connected_at_ms,
            &cx.source_ip,
            cx.user_agent.as_deref(),
            tx,
        ));
        self.websockets.insert(connection.clone());
        let session = Arc::new(Session {
            cx,
            serving,
            selection,
            invoker: self.invoker.clone(),
            client: self.upstream.clone(),
            registry: self.websockets.clone(),
            connection,
            region: settings.region.clone(),
            account_id: settings.account_id.clone(),
            idle_timeout: settings.websocket_idle_timeout,
            max_connection: settings.websocket_max_connection,
            buckets: access::message_buckets(snap, d),
            gateway: self.gateway.clone(),
        });
        tokio::spawn(hold(session, upgrade, rx));

        let mut response = Response::new(empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(accept) = HeaderValue::from_str(&handshake::accept_key(key)) {
            headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
        }
        if let Some(protocol) = subprotocol {
            headers.insert(SEC_WEBSOCKET_PROTOCOL, protocol);
        }
        Ok(response)
    }

    /// The `@connections` API: `POST` sends the body to the connection, `GET` describes it,
    /// `DELETE` closes it; SigV4-signed by a principal allowed `execute-api:ManageConnections`.
    #[allow(clippy::too_many_arguments)]
    async fn manage_connection(
        &self,
        snap: &Arc<Snapshot>,
        parts: &http::request::Parts,
        mut body: PipelineBody,
        conn: &Connection,
        ex: &mut Exchange,
        api: &Api,
        serving: &Serving,
        raw_id: &str,
    ) -> Result<Response<PipelineBody>, Failure> {
        let method = parts.method.as_str();
        if !matches!(method, "GET" | "POST" | "DELETE") || raw_id.is_empty() || raw_id.contains('/') {
            return fail(ErrorType::ResourceNotFound, "no such @connections operation");
        }
        let settings = &snap.settings;
        let arn = execute_api_arn(
            &settings.region,
            &settings.account_id,
            &api.id,
            &serving.stage,
            method,
            &format!("/@connections/{raw_id}"),
        );
        self.authorize_iam(snap, parts, conn, ex, ApiKind::Websocket, None, &arn, "execute-api:ManageConnections", &mut body)
            .await?;
        let id = String::from_utf8_lossy(&sigv4::percent_decode(raw_id)).into_owned();
        let (op, data) = match method {
            "GET" => (Operation::Get, None),
            "DELETE" => (Operation::Delete, None),
            _ => match body::read_all(body, MAX_MESSAGE_BYTES as u64).await {
                Ok(data) => (Operation::Post, Some(Payload::of(data))),
                Err(_) => return Ok(service_error(413, "PayloadTooLargeException", Some("Request Too Long"))),
            },
        };
        let request = relay::Request {
            op,
            api_id: api.id.to_string(),
            stage: serving.stage.to_string(),
            connection_id: id,
            data,
            expires_ms: 0,
        };
        // The connection may be held by another worker or node: its id names the process.
        let outcome = match self.relay.get() {
            Some(relay) => relay.reach(request).await,
            None => relay::perform(&self.websockets, request),
        };
        Ok(match outcome {
            relay::Outcome::Posted => answer(200, None),
            relay::Outcome::Described { connection } => answer(200, Some(connection.to_string().into())),
            relay::Outcome::Deleted => answer(204, None),
            relay::Outcome::Gone => service_error(410, "GoneException", None),
            relay::Outcome::LimitExceeded => service_error(429, "LimitExceededException", Some("Too many messages waiting")),
            // AWS documents no such answer (its connections never live behind a lost link): a
            // retryable 503, not 410, since the connection may well be open (docs/websocket.md).
            relay::Outcome::Unreachable => service_error(
                503,
                "ServiceUnavailableException",
                Some("The process holding the connection cannot be reached"),
            ),
        })
    }
}
