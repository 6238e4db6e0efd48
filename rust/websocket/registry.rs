//! The connections this process holds: what the `@connections` API reads (`GetConnection`) and
//! where it posts (`PostToConnection`) or closes (`DeleteConnection`).
//!
//! Every connection id this process issues starts with its owner tag (`OWNER_TAG_LEN` random
//! characters drawn at start), so that any worker of any node knows which process holds a
//! connection from its id alone (`crate::websocket::relay`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::ids::{random_u64, IdGenerator};

/// Base64url: connection ids travel in URL paths (`@connections/{id}`) and name Unix sockets.
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// Characters of a connection id that name the process holding it: 36 random bits, so that two
/// of a thousand processes share a tag with a chance of about 7 in a million.
pub const OWNER_TAG_LEN: usize = 6;
/// AWS's connection ids: 16 characters ending in `=` (`BFaT_fALIAMCKug=`).
pub const CONNECTION_ID_LEN: usize = 16;
/// The characters after the tag and before `=`: 54 bits of a per-process counter.
const SERIAL_LEN: usize = CONNECTION_ID_LEN - OWNER_TAG_LEN - 1;
const SERIAL_MASK: u64 = (1 << (6 * SERIAL_LEN)) - 1;

fn push_url_safe(out: &mut String, value: u64, chars: usize) {
    for i in (0..chars).rev() {
        out.push(URL_SAFE[((value >> (6 * i)) & 63) as usize] as char);
    }
}

/// The owner tag of a connection id shaped as this gateway issues them; None for any other id
/// (no process holds it).
pub fn owner_of(connection_id: &str) -> Option<&str> {
    let shaped = connection_id.len() == CONNECTION_ID_LEN
        && connection_id.ends_with('=')
        && connection_id.as_bytes()[..CONNECTION_ID_LEN - 1].iter().all(|c| URL_SAFE.contains(c));
    shaped.then(|| &connection_id[..OWNER_TAG_LEN])
}

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

/// The connections of every WebSocket API this process serves, by connection id.
pub struct Registry {
    connections: Mutex<HashMap<Box<str>, Arc<Connection>>>,
    /// The request ids of connections' events.
    pub ids: IdGenerator,
    /// This process's owner tag: the first characters of every connection id it issues.
    owner: Box<str>,
    /// Counts connection (and message) ids from a random start.
    serial: AtomicU64,
}

impl Default for Registry {
    fn default() -> Self {
        let mut owner = String::with_capacity(OWNER_TAG_LEN);
        push_url_safe(&mut owner, random_u64(), OWNER_TAG_LEN);
        Registry {
            connections: Mutex::new(HashMap::new()),
            ids: IdGenerator::new(),
            owner: owner.into(),
            serial: AtomicU64::new(random_u64()),
        }
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Arc<Connection>>> {
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This process's owner tag.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// A new connection id, shaped as AWS's (`BFaT_fALIAMCKug=`: 16 characters ending in `=`), of
    /// URL-safe characters: the owner tag, then the counter scrambled by an odd multiplier (a
    /// bijection modulo 2^54: unique in this process, and consecutive ids do not look consecutive).
    pub fn connection_id(&self) -> Box<str> {
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        let scrambled = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) & SERIAL_MASK;
        let mut id = String::with_capacity(CONNECTION_ID_LEN);
        id.push_str(&self.owner);
        push_url_safe(&mut id, scrambled, SERIAL_LEN);
        id.push('=');
        id.into()
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
    fn connection_ids_carry_their_owner_tag() {
        let (a, b) = (Registry::default(), Registry::default());
        assert_ne!(a.owner(), b.owner(), "each process draws its own tag");
        assert_eq!(a.owner().len(), OWNER_TAG_LEN);
        let ids: std::collections::HashSet<Box<str>> = (0..10_000).map(|_| a.connection_id()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(50) {
            assert_eq!(owner_of(id), Some(a.owner()), "{id}");
        }
        assert_eq!(owner_of(&b.connection_id()), Some(b.owner()));
        // Ids this gateway never issued are nobody's.
        for foreign in ["", "short=", "BFaT_fALIAMCKug", "BFaT_fALIAMCKug==", "BFaT/fALIAMCKug=", "BFaT_fALIAMCKugé"] {
            assert_eq!(owner_of(foreign), None, "{foreign}");
        }
        assert_eq!(owner_of("BFaT_fALIAMCKug="), Some("BFaT_f"));
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
