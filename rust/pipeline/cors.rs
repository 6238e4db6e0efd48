//! CORS for HTTP APIs (`corsConfiguration`): the gateway answers preflight requests itself and
//! sets the configured headers on every response, replacing any the integration sent. See
//! "Configuring CORS for an HTTP API" in the API Gateway developer guide.

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::spec::CorsSpec;

const ALLOW_ORIGIN: HeaderName = http::header::ACCESS_CONTROL_ALLOW_ORIGIN;
const ALLOW_CREDENTIALS: HeaderName = http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS;
const EXPOSE_HEADERS: HeaderName = http::header::ACCESS_CONTROL_EXPOSE_HEADERS;

/// A compiled `corsConfiguration`.
#[derive(Debug)]
pub struct Cors {
    /// Allowed origins, lower-cased.
    origins: Vec<Box<str>>,
    allow_all: bool,
    credentials: bool,
    expose: Option<HeaderValue>,
    /// Allow-Methods, Allow-Headers and Max-Age: the same on every preflight answer.
    preflight: Vec<(HeaderName, HeaderValue)>,
}

fn joined(values: impl Iterator<Item = String>) -> Option<HeaderValue> {
    let text = values.collect::<Vec<_>>().join(", ");
    if text.is_empty() {
        None
    } else {
        HeaderValue::from_str(&text).ok()
    }
}

impl Cors {
    pub fn compile(spec: &CorsSpec) -> Cors {
        let origins: Vec<Box<str>> = spec
            .allow_origins
            .iter()
            .map(|o| o.to_ascii_lowercase().into_boxed_str())
            .collect();
        let mut preflight = Vec::new();
        if let Some(v) = joined(spec.allow_methods.iter().map(|m| m.to_ascii_uppercase())) {
            preflight.push((http::header::ACCESS_CONTROL_ALLOW_METHODS, v));
        }
        if let Some(v) = joined(spec.allow_headers.iter().map(|h| h.to_ascii_lowercase())) {
            preflight.push((http::header::ACCESS_CONTROL_ALLOW_HEADERS, v));
        }
        if let Some(age) = spec.max_age {
            preflight.push((http::header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(age)));
        }
        Cors {
            allow_all: origins.iter().any(|o| &**o == "*"),
            origins,
            credentials: spec.allow_credentials,
            expose: joined(spec.expose_headers.iter().cloned()),
            preflight,
        }
    }

    /// The Allow-Origin value for a request from `origin`: the origin itself when listed, `*`
    /// when every origin is allowed, none otherwise.
    fn allowed(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        let origin = origin?;
        let text = origin.to_str().ok()?;
        if self.origins.iter().any(|o| o.eq_ignore_ascii_case(text)) {
            return Some(origin.clone());
        }
        self.allow_all.then(|| HeaderValue::from_static("*"))
    }

    fn common(&self, allowed: HeaderValue, out: &mut HeaderMap) {
        out.insert(ALLOW_ORIGIN, allowed);
        if self.credentials {
            out.insert(ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
    }

    /// The headers of the 204 the gateway answers a preflight with (none for a refused origin).
    pub fn preflight(&self, origin: Option<&HeaderValue>, out: &mut HeaderMap) {
        if let Some(allowed) = self.allowed(origin) {
            self.common(allowed, out);
            for (name, value) in &self.preflight {
                out.insert(name.clone(), value.clone());
            }
        }
    }

    /// Replace a response's CORS headers with the configured ones.
    pub fn apply(&self, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
        let theirs: Vec<HeaderName> = headers
            .keys()
            .filter(|n| n.as_str().starts_with("access-control-"))
            .cloned()
            .collect();
        for name in theirs {
            headers.remove(name);
        }
        if let Some(allowed) = self.allowed(origin) {
            self.common(allowed, headers);
            if let Some(expose) = &self.expose {
                headers.insert(EXPOSE_HEADERS, expose.clone());
            }
        }
    }
}

/// A CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
pub fn is_preflight(method: &http::Method, headers: &HeaderMap) -> bool {
    method == http::Method::OPTIONS
        && headers.contains_key(http::header::ORIGIN)
        && headers.contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str]) -> Cors {
        Cors::compile(&CorsSpec {
            allow_origins: origins.iter().map(|o| o.to_string()).collect(),
            allow_methods: vec!["get".into(), "POST".into()],
            allow_headers: vec!["X-Api-Key".into()],
            expose_headers: vec!["x-total".into()],
            max_age: Some(600),
            allow_credentials: true,
        })
    }

    #[test]
    fn preflight_answers_listed_origins_only() {
        let c = cors(&["https://App.example"]);
        let mut out = HeaderMap::new();
        c.preflight(Some(&HeaderValue::from_static("https://app.example")), &mut out);
        assert_eq!(out["access-control-allow-origin"], "https://app.example");
        assert_eq!(out["access-control-allow-methods"], "GET, POST");
        assert_eq!(out["access-control-allow-headers"], "x-api-key");
        assert_eq!(out["access-control-max-age"], "600");
        assert_eq!(out["access-control-allow-credentials"], "true");
        let mut out = HeaderMap::new();
        c.preflight(Some(&HeaderValue::from_static("https://evil.example")), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn responses_get_the_configured_headers_instead_of_the_integrations() {
        let c = cors(&["*"]);
        let mut headers = HeaderMap::new();
        headers.insert("access-control-allow-origin", HeaderValue::from_static("https://x"));
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        c.apply(Some(&HeaderValue::from_static("https://any.example")), &mut headers);
        assert_eq!(headers["access-control-allow-origin"], "*");
        assert_eq!(headers["access-control-expose-headers"], "x-total");
        assert_eq!(headers["content-type"], "text/plain");
        let mut headers = HeaderMap::new();
        headers.insert("access-control-allow-origin", HeaderValue::from_static("https://x"));
        c.apply(None, &mut headers);
        assert!(headers.is_empty());
    }
}
