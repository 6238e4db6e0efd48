//! Limits on the request head: AWS counts the request line and every header against 10,240
//! bytes (`settings.headerLimitBytes`), answering 414 when the URI alone is too long and 431
//! otherwise. Checked before any work on the head's content.

use crate::pipeline::responses::ErrorType;

/// The head's size as counted here: method, path, query, each header's name and value plus four
/// bytes of framing (`: ` and CRLF), and twelve for the request line's spaces, version and CRLF.
pub fn head_size(parts: &http::request::Parts) -> (usize, usize) {
    let uri = parts.uri.path().len() + parts.uri.query().map_or(0, str::len);
    let mut size = parts.method.as_str().len() + uri + 12;
    for (name, value) in &parts.headers {
        size += name.as_str().len() + value.len() + 4;
    }
    (size, uri)
}

/// HTTP/1.1 requires exactly one Host header, and a non-empty one when the target has no
/// authority (RFC 9112 §3.2): without it the API cannot be told, and AWS and nginx answer 400.
pub fn check_host(parts: &http::request::Parts) -> Result<(), ErrorType> {
    if parts.version == http::Version::HTTP_10 || parts.version == http::Version::HTTP_09 {
        return Ok(());
    }
    let mut hosts = parts.headers.get_all(http::header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(host), None) if !host.is_empty() => Ok(()),
        _ => Err(ErrorType::BadRequest),
    }
}

pub fn check_head(parts: &http::request::Parts, limit: usize) -> Result<(), ErrorType> {
    let (size, uri) = head_size(parts);
    if size <= limit {
        Ok(())
    } else if uri > limit {
        Err(ErrorType::UriTooLong)
    } else {
        Err(ErrorType::HeadersTooLarge)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(path: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().method("GET").uri(path);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn http_1_1_needs_exactly_one_host() {
        assert_eq!(check_host(&parts("/", &[("host", "a")])), Ok(()));
        assert_eq!(check_host(&parts("/", &[])), Err(ErrorType::BadRequest));
        assert_eq!(check_host(&parts("/", &[("host", "")])), Err(ErrorType::BadRequest));
        assert_eq!(check_host(&parts("/", &[("host", "a"), ("host", "b")])), Err(ErrorType::BadRequest));
        let mut old = parts("/", &[]);
        old.version = http::Version::HTTP_10;
        assert_eq!(check_host(&old), Ok(()));
    }

    #[test]
    fn a_long_uri_is_414_and_long_headers_431() {
        assert_eq!(check_head(&parts("/a?b=c", &[("x", "y")]), 100), Ok(()));
        let long = format!("/{}", "a".repeat(200));
        assert_eq!(check_head(&parts(&long, &[]), 100), Err(ErrorType::UriTooLong));
        let big = "v".repeat(200);
        assert_eq!(check_head(&parts("/", &[("x", &big)]), 100), Err(ErrorType::HeadersTooLarge));
        // GET (3) + "/a?b=c" (5 counted: path and query without '?') + 12 + "x" "y" + 4
        assert_eq!(head_size(&parts("/a?b=c", &[("x", "y")])).0, 3 + 5 + 12 + 6);
    }
}
