//! WebSocket APIs: the third front of the core beside REST and HTTP APIs ("Working with
//! WebSocket APIs" in the API Gateway developer guide; docs/websocket.md).
//!
//! The edge hands an upgrade at `/{stage}` of a WebSocket API to `crate::pipeline::websocket`,
//! which runs `$connect`, answers the handshake and holds the connection on the core's tokio
//! runtime: no Python per connection, Python runs only when a route's handler is invoked. The
//! embedded ASGI door hands over its `websocket` scopes the same way (`crate::embed`): the ASGI
//! server speaks the protocol, the core holds the connection.
//!
//! - `handshake`: what makes a request an upgrade, the accept key, the subprotocol chosen.
//! - `selection`: a message's route by the API's `routeSelectionExpression`.
//! - `events`: the Lambda proxy events of `$connect`, messages and `$disconnect`, and AWS's
//!   error frames.
//! - `registry`: the connections this process holds, for the `@connections` API; their ids name
//!   the process (its owner tag).
//! - `relay`: the `@connections` API reaching a connection held by another worker (its Unix
//!   socket) or another node (Redis pub/sub).
//! - `integration`: what a route's integration answers (`AWS_PROXY`, `HTTP_PROXY`, `HTTP`, `AWS`,
//!   `MOCK`), with integration responses and templates.

pub mod events;
pub mod handshake;
pub mod integration;
pub mod registry;
pub mod relay;
pub mod selection;

pub use registry::{Connection, Outgoing, Registry};

/// AWS's limits ("Amazon API Gateway quotas for configuring and running a WebSocket API"):
/// 32 KB frames, 128 KB messages; a larger one closes the connection with 1009.
pub const MAX_FRAME_BYTES: usize = 32 * 1024;
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;
/// Each connection's read buffer, allocated when it opens (idle connections cost little more).
pub const READ_BUFFER_BYTES: usize = 4 * 1024;
