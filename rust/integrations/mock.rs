//! `MOCK`: the same response every time, without a backend.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use http::StatusCode;

#[derive(Debug)]
pub struct Mock {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Mock {
    /// Header names are lower-cased; `Content-Type: application/json` is added when none is given
    /// (API Gateway always sends one); Content-Length and Transfer-Encoding are the server's.
    pub fn compile(status: u16, headers: &[(String, String)], body: &str) -> Result<Mock, String> {
        let status = StatusCode::from_u16(status)
            .ok()
            .filter(|s| (100..=599).contains(&s.as_u16()))
            .ok_or_else(|| format!("MOCK statusCode out of range: {status}"))?;
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|e| format!("MOCK header {name:?}: {e}"))?;
            if name == http::header::CONTENT_LENGTH || name == http::header::TRANSFER_ENCODING {
                continue;
            }
            let value = HeaderValue::from_str(value).map_err(|e| format!("MOCK header {name}: {e}"))?;
            map.append(name, value);
        }
        if !map.contains_key(CONTENT_TYPE) {
            map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        Ok(Mock {
            status,
            headers: map,
            body: Bytes::copy_from_slice(body.as_bytes()),
        })
    }
}
