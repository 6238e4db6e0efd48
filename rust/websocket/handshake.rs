//! The opening handshake (RFC 6455 §4.2): what makes a request an upgrade to a WebSocket, the
//! `Sec-WebSocket-Accept` key, and the subprotocol a `$connect` answer chose.

use http::header::{HeaderMap, CONNECTION, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE};
use http::Method;

/// Whether a request asks to upgrade to a WebSocket (`Upgrade: websocket`).
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case("websocket")))
}

/// The client's key when the request is a well-formed opening handshake: a GET with
/// `Connection: Upgrade`, `Upgrade: websocket`, `Sec-WebSocket-Version: 13` and a key.
pub fn client_key<'h>(method: &Method, headers: &'h HeaderMap) -> Option<&'h str> {
    let connection_upgrade = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case("upgrade")));
    let version_13 = headers.get(SEC_WEBSOCKET_VERSION).is_some_and(|v| v.as_bytes() == b"13");
    if method != Method::GET || !connection_upgrade || !wants_upgrade(headers) || !version_13 {
        return None;
    }
    headers.get(SEC_WEBSOCKET_KEY).and_then(|v| v.to_str().ok()).filter(|k| !k.is_empty())
}

/// `Sec-WebSocket-Accept` for a client's key.
pub fn accept_key(client_key: &str) -> String {
    tokio_tungstenite::tungstenite::handshake::derive_accept_key(client_key.as_bytes())
}

/// The subprotocol a `$connect` answer chose: its `Sec-WebSocket-Protocol` header (AWS: "the
/// $connect integration must return the Sec-WebSocket-Protocol header with one of the
/// subprotocols the client asked for"); None when it names none the client offered.
pub fn chosen_subprotocol<'a>(answer_headers: &'a [(String, String)], offered: &HeaderMap) -> Option<&'a str> {
    let chosen = answer_headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-protocol"))
        .map(|(_, v)| v.trim())?;
    let offered_it = offered
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|p| p.trim() == chosen));
    offered_it.then_some(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_rfc_example_key() {
        // RFC 6455 §1.3's example.
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn an_opening_handshake_needs_every_header() {
        let good = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        assert_eq!(client_key(&Method::GET, &headers(&good)), Some("dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(client_key(&Method::POST, &headers(&good)), None);
        for missing in 0..good.len() {
            let fewer: Vec<_> = good.iter().enumerate().filter(|(i, _)| *i != missing).map(|(_, p)| *p).collect();
            assert_eq!(client_key(&Method::GET, &headers(&fewer)), None, "without {:?}", good[missing]);
        }
    }

    #[test]
    fn the_subprotocol_must_be_one_offered() {
        let offered = headers(&[("sec-websocket-protocol", "chat, superchat")]);
        let answer = vec![("Sec-WebSocket-Protocol".to_string(), "chat".to_string())];
        assert_eq!(chosen_subprotocol(&answer, &offered), Some("chat"));
        let other = vec![("sec-websocket-protocol".to_string(), "mqtt".to_string())];
        assert_eq!(chosen_subprotocol(&other, &offered), None);
        assert_eq!(chosen_subprotocol(&[], &offered), None);
    }
}
