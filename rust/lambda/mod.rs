//! The Lambda proxy integration (AWS_PROXY): the event API Gateway hands the function (`event`)
//! and the HTTP response made of what the function returned (`response`).
//!
//! The formats of "Set up Lambda proxy integrations in API Gateway" and "Create AWS Lambda proxy
//! integrations for HTTP APIs" in the API Gateway developer guide: payload 1.0 (REST and HTTP
//! APIs) and 2.0, their keys, values and orders, and the malformed-response cases.
//!
//! What the caller (`crate::integrations::lambda_proxy`) does around them:
//! - REST APIs always use [`PayloadFormat::RestV1`]; HTTP APIs pick by payloadFormatVersion.
//! - It hands over the request's ids (a REST API's `requestId` is a UUID and its
//!   `extendedRequestId` the 16-character form; an HTTP API's are one 16-character id, see
//!   `crate::pipeline`), and makes the X-Amzn-Trace-Id the gateway adds
//!   (`crate::ids::IdGenerator::trace_id`).
//! - The handler's result reaches [`parse_response`] as JSON. A result that cannot be serialized
//!   (`Runtime.MarshalError`) and one over 6 MB ([`response::payload_too_large`]) are function
//!   errors, reported before parsing. For a 2.0 result without `statusCode`, the response body is
//!   the JSON text as given (trimmed): serialize as the Python runtime does
//!   (`json.dumps(result, ensure_ascii=False)`, Decimal as int/float) to keep `{"a": 1}` spacing.

pub mod event;
pub mod response;

pub use event::{build_event, EventSource};
pub use response::{parse_response, parse_stream_prelude, LambdaResponse, Malformed};

use std::collections::HashMap;

/// Which event / response shape an integration uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    /// REST APIs (always payload 1.0, REST requestContext, binaryMediaTypes).
    RestV1,
    /// HTTP APIs with payloadFormatVersion 1.0.
    HttpV1,
    /// HTTP APIs with payloadFormatVersion 2.0.
    HttpV2,
}

/// Python's `str.isspace` (what `str.strip()` removes): Unicode White_Space plus U+001C-U+001F.
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Python's `str.strip()`.
fn py_strip(s: &str) -> &str {
    s.trim_matches(py_isspace)
}

/// The media type of a Content-Type / Accept entry: before any `;`, stripped, lower-case.
fn media_type(content_type: &str) -> String {
    let media = match content_type.find(';') {
        Some(semi) => &content_type[..semi],
        None => content_type,
    };
    media_lower(py_strip(media))
}

fn media_lower(s: &str) -> String {
    if s.is_ascii() {
        s.to_ascii_lowercase()
    } else {
        s.to_lowercase()
    }
}

/// Whether `media` (already a lower-case media type, possibly "") matches a binaryMediaTypes
/// pattern (`type/sub`, `type/*`); `*/*` is handled by the callers, whose rules differ.
fn media_matches(pattern: &str, media: &str) -> bool {
    pattern == media
        || (!media.is_empty() && pattern.ends_with("/*") && media.starts_with(&pattern[..pattern.len() - 1]))
}

/// An insertion-ordered string-keyed map with Python dict semantics (a key keeps the position of
/// its first insertion). Linear lookups while small, hashed beyond that.
struct OrderedMap<K, V> {
    entries: Vec<(K, V)>,
    index: Option<HashMap<String, usize>>,
}

const LINEAR_LIMIT: usize = 16;

impl<K: AsRef<str>, V> Default for OrderedMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: AsRef<str>, V> OrderedMap<K, V> {
    fn new() -> Self {
        OrderedMap {
            entries: Vec::new(),
            index: None,
        }
    }

    fn position(&self, key: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.entries.iter().position(|(k, _)| k.as_ref() == key),
        }
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        let i = self.position(key)?;
        Some(&mut self.entries[i].1)
    }

    fn get(&self, key: &str) -> Option<&V> {
        self.position(key).map(|i| &self.entries[i].1)
    }

    /// Adds a key that is not in the map yet.
    fn push_new(&mut self, key: K, value: V) {
        let i = self.entries.len();
        if let Some(index) = &mut self.index {
            index.insert(key.as_ref().to_owned(), i);
        } else if i == LINEAR_LIMIT {
            let mut index: HashMap<String, usize> = self
                .entries
                .iter()
                .enumerate()
                .map(|(j, (k, _))| (k.as_ref().to_owned(), j))
                .collect();
            index.insert(key.as_ref().to_owned(), i);
            self.index = Some(index);
        }
        self.entries.push((key, value));
    }

    /// `dict[key] = value`.
    fn insert(&mut self, key: K, value: V) {
        match self.get_mut(key.as_ref()) {
            Some(slot) => *slot = value,
            None => self.push_new(key, value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_map_keeps_first_position_last_value_past_the_linear_limit() {
        let mut map: OrderedMap<String, usize> = OrderedMap::new();
        for round in 0..2 {
            for i in 0..40 {
                map.insert(format!("k{i}"), round * 100 + i);
            }
        }
        assert_eq!(map.entries.len(), 40);
        assert_eq!(map.entries[0], ("k0".to_owned(), 100));
        assert_eq!(map.entries[39], ("k39".to_owned(), 139));
        assert_eq!(map.get("k20"), Some(&120));
        assert_eq!(map.get("nope"), None);
    }

    #[test]
    fn py_strip_removes_python_whitespace() {
        assert_eq!(py_strip("\x1c a \u{3000}\t"), "a");
        assert_eq!(media_type(" Image/PNG ; q=1"), "image/png");
        assert_eq!(media_type(""), "");
    }
}
