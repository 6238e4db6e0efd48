//! The connections this node holds: what the `@connections` API reads (`GetConnection`) and
//! where it posts (`PostToConnection`) or closes (`DeleteConnection`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::ids::IdGenerator;

/// What a connection's task is asked to do.
#[derive(Debug)]
pub enum Outgoing {
    /// Send a frame (a route's answer, an error frame, a `PostToConnection`).
    Frame(Message),
    /// `DeleteConnection`: close it.
    Close,
}

/// Frames waiting for one connection; past this a `PostToConnection` is refused (429) rather than
/// letting a client that does not read hold the gateway's memory.
pub const OUTGOING_QUEUE: usize = 1024;

/// A connection as the `@connections` API sees it.
#[derive(Debug)]
pub struct Connection {
    pub id: Box<str>,
    pub api_id: Box<str>,
    pub stage: Box<str>,
    pub connected_at_ms: u64,
    pub source_ip: Box<str>,
    pub user_agent: Option<Box<str>>,
    /// When the client last sent a message or control frame, or was sent one.
    last_active_ms: AtomicU64,
    tx: mpsc::Sender<Outgoing>,
}

impl Connection {
    pub fn new(
        id: Box<str>,
        api_id: &str,
        stage: &str,
        connected_at_ms: u64,
        source_ip: &str,
        user_agent: Option<&str>,
        tx: mpsc::Sender<Outgoing>,
    ) -> Connection {
        Connection {
            id,
            api_id: api_id.into(),
            stage: stage.into(),
            connected_at_ms,
            source_ip: source_ip.into(),
            user_agent: user_agent.map(Into::into),
            last_active_ms: AtomicU64::new(connected_at_ms),
            tx,
        }
    }

    pub fn touch(&self, now_ms: u64) {
        self.last_active_ms.fetch_max(now_ms, Ordering::Relaxed);
    }

    pub fn last_active_ms(&self) -> u64 {
        self.last_active_ms.load(Ordering::Relaxed)
    }

    /// Queue `outgoing` for the connection's task; false when its queue is full or it is gone.
    pub fn send(&self, outgoing: Outgoing) -> bool {
        self.tx.try_send(outgoing).is_ok()
    }

    /// `GetConnection`'s answer.
    pub fn describe(&self) -> serde_json::Value {
        let mut identity = serde_json::json!({ "sourceIp": &*self.source_ip });
        if let Some(agent) = &self.user_agent {
            identity["userAgent"] = serde_json::Value::from(&**agent);
        }
        serde_json::json!({
            "connectedAt": iso8601(self.connected_at_ms),
            "identity": identity,
            "lastActiveAt": iso8601(self.last_active_ms()),
        })
    }
}

/// The connections of every WebSocket API this node serves, by connection id.
pub struct Registry {
    connections: Mutex<HashMap<Box<str>, Arc<Connection>>>,
    /// Connection ids, and the request and message ids of their events.
    pub ids: IdGenerator,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            connections: Mutex::new(HashMap::new()),
            ids: IdGenerator::new(),
        }
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Arc<Connection>>> {
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new connection id, shaped as AWS's (`BFaT_fALIAMCKug=`: 16 characters ending in `=`),
    /// of URL-safe characters.
    pub fn connection_id(&self) -> Box<str> {
        self.ids.request_id().replace('+', "-").replace('/', "_").into()
    }

    pub fn insert(&self, connection: Arc<Connection>) {
        self.lock().insert(connection.id.clone(), connection);
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// The open connection `id` of API `api_id`'s stage `stage`.
    pub fn get(&self, id: &str, api_id: &str, stage: &str) -> Option<Arc<Connection>> {
        self.lock()
            .get(id)
            .filter(|c| &*c.api_id == api_id && &*c.stage == stage)
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// ISO 8601 in UTC with milliseconds, as the `@connections` API's timestamps
/// (`2024-02-09T18:11:43.419Z`).
pub fn iso8601(epoch_ms: u64) -> String {
    let secs = epoch_ms / 1000;
    let (year, month, day) = crate::time::civil_from_days((secs / 86_400) as i64);
    let tod = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        tod / 3600,
        tod / 60 % 60,
        tod % 60,
        epoch_ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_ids_are_shaped_as_aws_ones() {
        let registry = Registry::default();
        let a = registry.connection_id();
        let b = registry.connection_id();
        assert_ne!(a, b);
        for id in [&a, &b] {
            assert_eq!(id.len(), 16, "{id}");
            assert!(id.ends_with('='), "{id}");
            assert!(id[..15].bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'), "{id}");
        }
    }

    #[test]
    fn iso_times() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_707_502_303_419), "2024-02-09T18:11:43.419Z");
    }

    #[test]
    fn a_connection_is_found_only_on_its_own_stage() {
        let registry = Registry::default();
        let (tx, mut rx) = mpsc::channel(1);
        let id = registry.connection_id();
        registry.insert(Arc::new(Connection::new(id.clone(), "api1", "prod", 5, "10.0.0.1", None, tx)));
        assert!(registry.get(&id, "api1", "prod").is_some());
        assert!(registry.get(&id, "api1", "dev").is_none());
        assert!(registry.get(&id, "api2", "prod").is_none());
        let found = registry.get(&id, "api1", "prod").unwrap();
        assert!(found.send(Outgoing::Close));
        assert!(!found.send(Outgoing::Close), "the queue is full");
        assert!(matches!(rx.try_recv(), Ok(Outgoing::Close)));
        registry.remove(&id);
        assert!(registry.get(&id, "api1", "prod").is_none());
        assert!(registry.is_empty());
    }
}
