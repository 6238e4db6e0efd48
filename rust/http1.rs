//! HTTP/1.x response heads for Portico's upstream client (`portico.integrations.upstream`).
//!
//! httparse does the parsing: strict status line (`HTTP/1.x NNN reason`), token header names,
//! field values without control characters, CRLF or bare LF line ends, no obs-fold. Whitespace
//! between a header name and its colon is tolerated in responses (RFC 9112 §5.1: a proxy removes it).
//! `Framing` summarises what the body framing depends on (RFC 9112 §6.3): the Content-Length,
//! Transfer-Encoding and Connection headers; the caller decides from it and the status.

use httparse::{Header, ParserConfig, Response, Status, EMPTY_HEADER};

/// Headers parsed without a heap allocation; a head with more is parsed again into a vector.
const STACK_HEADERS: usize = 64;

/// A complete response head at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Bytes taken by the status line, the headers and the empty line.
    pub consumed: usize,
    pub status: u16,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
}

/// Why a response head is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    Malformed(httparse::Error),
    Status(u16),
    ContentLength,
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeadError::Malformed(e) => write!(f, "{e}"),
            HeadError::Status(code) => write!(f, "invalid status code {code}"),
            HeadError::ContentLength => write!(f, "invalid or conflicting Content-Length"),
        }
    }
}

/// What the body framing and connection reuse depend on, gathered from the headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Framing {
    /// The Content-Length (identical repeated values accepted), None when absent.
    pub content_length: Option<u64>,
    /// A Transfer-Encoding header is present.
    pub transfer_encoding: bool,
    /// The last transfer coding is `chunked`.
    pub chunked: bool,
    /// `Connection` carries the `close` token.
    pub close: bool,
    /// `Connection` carries the `keep-alive` token.
    pub keep_alive: bool,
}

/// Framing flags as handed to Python (`Framing::flags`).
pub const TRANSFER_ENCODING: u8 = 1;
pub const CHUNKED: u8 = 2;
pub const CLOSE: u8 = 4;
pub const KEEP_ALIVE: u8 = 8;

impl Framing {
    /// Gather the framing headers; Err for an invalid or conflicting Content-Length.
    pub fn of(headers: &[Header<'_>]) -> Result<Framing, HeadError> {
        let mut f = Framing::default();
        for h in headers {
            let name = h.name.as_bytes();
            if name.eq_ignore_ascii_case(b"content-length") {
                for part in h.value.split(|&b| b == b',') {
                    let part = part.trim_ascii();
                    let n = parse_decimal(part).ok_or(HeadError::ContentLength)?;
                    match f.content_length {
                        Some(prev) if prev != n => return Err(HeadError::ContentLength),
                        _ => f.content_length = Some(n),
                    }
                }
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                f.transfer_encoding = true;
                // The last coding of the last header decides.
                if let Some(last) = h.value.rsplit(|&b| b == b',').next() {
                    f.chunked = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
                }
            } else if name.eq_ignore_ascii_case(b"connection") {
                for token in h.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        f.close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        f.keep_alive = true;
                    }
                }
            }
        }
        Ok(f)
    }

    pub fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.transfer_encoding {
            flags |= TRANSFER_ENCODING;
        }
        if self.chunked {
            flags |= CHUNKED;
        }
        if self.close {
            flags |= CLOSE;
        }
        if self.keep_alive {
            flags |= KEEP_ALIVE;
        }
        flags
    }
}

/// 1 to 19 ASCII digits (no sign, no blank): the value, else None.
fn parse_decimal(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 19 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(text.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

fn config() -> ParserConfig {
    let mut config = ParserConfig::default();
    config.allow_spaces_after_header_name_in_responses(true);
    config
}

fn parse_into<'b>(
    buf: &'b [u8],
    headers: &mut [Header<'b>],
) -> Result<Option<(Head, usize)>, httparse::Error> {
    let mut resp = Response::new(headers);
    match config().parse_response(&mut resp, buf)? {
        Status::Partial => Ok(None),
        Status::Complete(consumed) => {
            // Complete implies both are set.
            let status = resp.code.unwrap_or(0);
            let minor = resp.version.unwrap_or(0);
            Ok(Some((
                Head {
                    consumed,
                    status,
                    minor,
                },
                resp.headers.len(),
            )))
        }
    }
}

/// Parse the response head at the start of `buf` and hand it, with its headers, to `f`.
/// `Ok(None)` while the head is incomplete.
pub fn with_response_head<R>(
    buf: &[u8],
    f: impl FnOnce(Head, &[Header<'_>]) -> R,
) -> Result<Option<R>, HeadError> {
    let mut stack = [EMPTY_HEADER; STACK_HEADERS];
    let (head, count, heap);
    match parse_into(buf, &mut stack) {
        Ok(None) => return Ok(None),
        Ok(Some((h, n))) => {
            check(h)?;
            return Ok(Some(f(h, &stack[..n])));
        }
        Err(httparse::Error::TooManyHeaders) => {
            // Every header takes a line: the line count bounds them.
            let lines = buf.iter().filter(|&&b| b == b'\n').count() + 1;
            let mut more = vec![EMPTY_HEADER; lines];
            match parse_into(buf, &mut more) {
                Ok(None) => return Ok(None),
                Ok(Some((h, n))) => {
                    head = h;
                    count = n;
                    heap = more;
                }
                Err(e) => return Err(HeadError::Malformed(e)),
            }
        }
        Err(e) => return Err(HeadError::Malformed(e)),
    }
    check(head)?;
    Ok(Some(f(head, &heap[..count])))
}

fn check(head: Head) -> Result<(), HeadError> {
    if (100..=999).contains(&head.status) {
        Ok(())
    } else {
        Err(HeadError::Status(head.status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Owned = (Head, Vec<(String, Vec<u8>)>);

    fn parse(buf: &[u8]) -> Result<Option<Owned>, HeadError> {
        with_response_head(buf, |h, hs| {
            (
                h,
                hs.iter()
                    .map(|x| (x.name.to_string(), x.value.to_vec()))
                    .collect(),
            )
        })
    }

    #[test]
    fn complete_head() {
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b c\r\n\r\nok";
        let (head, headers) = parse(buf).unwrap().unwrap();
        assert_eq!(
            head,
            Head {
                consumed: buf.len() - 2,
                status: 200,
                minor: 1
            }
        );
        assert_eq!(headers[0], ("Content-Length".to_string(), b"2".to_vec()));
        assert_eq!(headers[1], ("X-A".to_string(), b"b c".to_vec()));
    }

    #[test]
    fn incomplete_at_every_split() {
        let buf = b"HTTP/1.0 404 Not Found\r\nServer: x\r\n\r\n";
        for i in 0..buf.len() {
            assert_eq!(parse(&buf[..i]).unwrap(), None, "split at {i}");
        }
        let (head, _) = parse(buf).unwrap().unwrap();
        assert_eq!(
            (head.status, head.minor, head.consumed),
            (404, 0, buf.len())
        );
    }

    #[test]
    fn refuses_malformed_heads() {
        for bad in [
            &b"HTTP/1.1 20 OK\r\n\r\n"[..],
            b"HTTP/2 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\x01b\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
            b"HTTP/1.1 000 Zero\r\n\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn many_headers_fall_back_to_the_heap() {
        let mut buf = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..500 {
            buf.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
        }
        buf.extend_from_slice(b"\r\n");
        let (head, headers) = parse(&buf).unwrap().unwrap();
        assert_eq!(head.consumed, buf.len());
        assert_eq!(headers.len(), 500);
        assert_eq!(headers[499], ("X-499".to_string(), b"499".to_vec()));
    }

    fn framing(head: &[u8]) -> Result<Framing, HeadError> {
        with_response_head(head, |_, hs| Framing::of(hs))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn framing_headers() {
        let f =
            framing(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: Keep-Alive, X\r\n\r\n");
        assert_eq!(
            f.unwrap(),
            Framing {
                content_length: Some(12),
                keep_alive: true,
                ..Framing::default()
            }
        );
        let f = framing(b"HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\ncontent-length: 7\r\n\r\n")
            .unwrap();
        assert_eq!(f.content_length, Some(7));
        let f = framing(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: Chunked\r\n\r\n",
        )
        .unwrap();
        assert_eq!(f.flags(), TRANSFER_ENCODING | CHUNKED);
        let f = framing(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        assert_eq!(f.flags(), TRANSFER_ENCODING | CLOSE);
        for bad in [
            &b"1, 2"[..],
            b"-1",
            b"+1",
            b"1 2",
            b"",
            b"0x10",
            b"99999999999999999999",
        ] {
            let mut head = b"HTTP/1.1 200 OK\r\nContent-Length: ".to_vec();
            head.extend_from_slice(bad);
            head.extend_from_slice(b"\r\n\r\n");
            assert_eq!(
                framing(&head),
                Err(HeadError::ContentLength),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn tolerates_space_before_colon_and_bare_lf() {
        let (_, headers) = parse(b"HTTP/1.1 200 OK\nX-A : 1\n\n").unwrap().unwrap();
        assert_eq!(headers[0], ("X-A".to_string(), b"1".to_vec()));
    }
}
