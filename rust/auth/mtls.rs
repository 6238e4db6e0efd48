//! mTLS: the client certificate a connection presented, as API Gateway hands it on
//! (`requestContext.identity.clientCert` of REST and payload 1.0 events,
//! `requestContext.authentication.clientCert` of payload 2.0, `$context.identity.clientCert.*`),
//! and the refusal of a connection whose certificate the truststore does not trust.
//!
//! AWS ("Configuring mutual TLS authentication for an HTTP API" / "... for a REST API"): a client
//! certificate that "isn't trusted, is expired, or doesn't use a supported algorithm" gets a 403
//! ("How do I troubleshoot HTTP 403 Forbidden errors from an API Gateway custom domain name that
//! requires mutual TLS?": the 403 is an HTTP answer, logged with the API's access log). So the
//! listener asks every client for a certificate, checks it once the handshake is done
//! (`crate::tls`), and the pipeline answers each request of a refused connection with 403
//! `{"message":"Forbidden"}` before anything else runs; the connection then closes.
//!
//! The certificate's fields are rendered as API Gateway shows them: distinguished names as RFC
//! 4514 strings (`CN=client,O=Example`, most specific first), the serial number as colon-separated
//! lowercase hex bytes (`a1:a1:...`), validity dates as OpenSSL prints them
//! (`May 28 12:30:02 2019 GMT`), the certificate itself as PEM.

use std::sync::Arc;

use x509_parser::asn1_rs::{Any, Tag, ToDer};
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

use super::ClientCert;
use crate::pipeline::responses::ErrorType;
use crate::pipeline::{Connection, Failure};

/// What the listener learned of a connection's client certificate (listeners with a truststore).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// The truststore trusts it: it reaches the events and the access log.
    Trusted(Arc<ClientCert>),
    /// Every request of the connection is refused. `cert`: what the client presented, when it
    /// could be read (the access log still shows it, as AWS's does, to find who was refused).
    Refused { cert: Option<Arc<ClientCert>>, reason: String },
}

impl ClientAuth {
    /// The certificate presented, trusted or not.
    pub fn cert(&self) -> Option<&Arc<ClientCert>> {
        match self {
            ClientAuth::Trusted(cert) => Some(cert),
            ClientAuth::Refused { cert, .. } => cert.as_ref(),
        }
    }
}

/// The certificate a connection's requests carry into the authorize phase and the events.
pub fn trusted_cert(conn: &Connection) -> Option<Arc<ClientCert>> {
    match conn.client_auth.as_deref() {
        Some(ClientAuth::Trusted(cert)) => Some(cert.clone()),
        _ => None,
    }
}

/// The refusal of every request on a connection whose certificate is missing or untrusted.
pub fn refusal(conn: &Connection) -> Option<Failure> {
    match conn.client_auth.as_deref() {
        Some(ClientAuth::Refused { reason, .. }) => Some(Failure::new(
            ErrorType::ClientCertificateRefused,
            format!("Access denied. Reason: {reason}"),
        )),
        _ => None,
    }
}

impl ClientCert {
    /// The certificate `der` (one X.509 certificate, DER) as API Gateway renders it.
    pub fn from_der(der: &[u8]) -> Result<ClientCert, String> {
        let (rest, cert) =
            X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
        if !rest.is_empty() {
            return Err("not an X.509 certificate: bytes after its end".into());
        }
        let validity = cert.validity();
        let mut not_before = String::new();
        crate::time::push_openssl_time(&mut not_before, validity.not_before.timestamp());
        let mut not_after = String::new();
        crate::time::push_openssl_time(&mut not_after, validity.not_after.timestamp());
        Ok(ClientCert {
            pem: pem_certificate(der),
            subject_dn: distinguished_name(cert.subject()),
            issuer_dn: distinguished_name(cert.issuer()),
            serial_number: serial_number(cert.raw_serial()),
            not_before,
            not_after,
        })
    }
}

/// `der` as a PEM `CERTIFICATE` block, lines of 64 characters, as OpenSSL writes it.
pub fn pem_certificate(der: &[u8]) -> String {
    let mut b64 = String::new();
    crate::lambda::event::base64_encode(der, &mut b64);
    let mut pem = String::with_capacity(b64.len() + b64.len() / 64 + 60);
    pem.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        // Base64 is ASCII: every chunk is a whole str.
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// A serial number's magnitude as colon-separated lowercase hex bytes (`a1:a1:...`, as in AWS's
/// samples); the sign byte DER adds before a high bit is not part of it.
pub fn serial_number(raw: &[u8]) -> String {
    let raw = match raw {
        [0, rest @ ..] if !rest.is_empty() => rest,
        _ => raw,
    };
    let mut out = String::with_capacity(raw.len() * 3);
    for (i, b) in raw.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// RFC 4514's short names (section 3); other attribute types are written as dotted OIDs.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.6" => "C",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// `name` as an RFC 4514 string: RDNs from the last to the first, separated by `,`; the
/// attributes of a multi-valued RDN joined by `+`; values of known types as escaped strings,
/// others as `#` and the hex of their DER encoding.
pub fn distinguished_name(name: &X509Name<'_>) -> String {
    let rdns: Vec<_> = name.iter_rdn().collect();
    let mut out = String::new();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = attr.attr_type().to_id_string();
            let value = attr.attr_value();
            match (short_name(&oid), string_value(value)) {
                (Some(short), Some(text)) => {
                    out.push_str(short);
                    out.push('=');
                    escape_value(&text, &mut out);
                }
                (short, _) => {
                    out.push_str(short.unwrap_or(&oid));
                    out.push_str("=#");
                    for b in value.to_der_vec().unwrap_or_default() {
                        out.push(char::from(HEX[usize::from(b >> 4)]));
                        out.push(char::from(HEX[usize::from(b & 15)]));
                    }
                }
            }
        }
    }
    out
}

/// The text of a directory string (None for other types, or malformed text).
fn string_value(value: &Any<'_>) -> Option<String> {
    let data = value.data;
    match value.header.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::NumericString | Tag::VisibleString => {
            std::str::from_utf8(data).ok().map(str::to_owned)
        }
        // T.61, read as Latin-1 as most libraries do.
        Tag::TeletexString => Some(data.iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString => {
            if data.len() % 2 != 0 {
                return None;
            }
            let units = data.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units).collect::<Result<String, _>>().ok()
        }
        Tag::UniversalString => {
            if data.len() % 4 != 0 {
                return None;
            }
            data.chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect()
        }
        _ => None,
    }
}

/// RFC 4514 section 2.4: `"+,;<>\` escaped, `#` and space escaped at the start, space at the
/// end, NUL as `\00`.
fn escape_value(value: &str, out: &mut String) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A certificate made with Python's `cryptography`: subject C=US, ST=Washington,
    /// O="Example, Inc.", OU="Payments+Ops", then a two-valued RDN (CN=" client one # ",
    /// UID=u-7), then emailAddress; issuer O="Example CA", CN="#1 Root"; serial
    /// 0xa1b2c3d4e5f60718293a4b5c6d7e8f90; valid 2024-01-05T09:07:08Z to 2034-01-02T09:07:08Z.
    const CERT_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBwjCCAWigAwIBAgIRAKGyw9Tl9gcYKTpLXG1+j5AwCgYIKoZIzj0EAwIwJzET
MBEGA1UECgwKRXhhbXBsZSBDQTEQMA4GA1UEAwwHIzEgUm9vdDAeFw0yNDAxMDUw
OTA3MDhaFw0zNDAxMDIwOTA3MDhaMIGdMQswCQYDVQQGEwJVUzETMBEGA1UECAwK
V2FzaGluZ3RvbjEWMBQGA1UECgwNRXhhbXBsZSwgSW5jLjEVMBMGA1UECwwMUGF5
bWVudHMrT3BzMSowEQYKCZImiZPyLGQBAQwDdS03MBUGA1UEAwwOIGNsaWVudCBv
bmUgIyAxHjAcBgkqhkiG9w0BCQEWD29wc0BleGFtcGxlLmNvbTBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABDh9x137vAuAU253Q0fZ2DC5GcRTk5gY67gNJzudDFSs
gQOE2S0c/CLSeMGu7NCWUCA5waZhj7Tpa/uWWOfnPiAwCgYIKoZIzj0EAwIDSAAw
RQIgRZWBcOJmy3Cz8KAZMG4HH8XjOGwZq6e1C79Sk5NR43gCIQDwVZj+Ib/q8J2x
LjRau8lbFMYUUfeOsUfo1WUBQqgEew==
-----END CERTIFICATE-----
";

    fn der_of(pem: &str) -> Vec<u8> {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .expect("a PEM certificate")
            .to_vec()
    }

    #[test]
    fn a_certificate_as_api_gateway_renders_it() {
        let der = der_of(CERT_PEM);
        let cert = ClientCert::from_der(&der).unwrap();
        // Most specific first; RFC 4514's escapes (the comma and plus in values, the CN's leading
        // and trailing spaces; a `#` only where it leads); a multi-valued RDN joined by `+` in
        // its DER order; emailAddress, which has no short name, as its OID and DER in hex.
        assert_eq!(
            cert.subject_dn,
            concat!(
                r"1.2.840.113549.1.9.1=#160f6f7073406578616d706c652e636f6d,",
                r"UID=u-7+CN=\ client one #\ ,OU=Payments\+Ops,O=Example\, Inc.,ST=Washington,C=US"
            )
        );
        assert_eq!(cert.issuer_dn, r"CN=\#1 Root,O=Example CA");
        // The high bit set: DER's sign byte (00) is not part of the number.
        assert_eq!(cert.serial_number, "a1:b2:c3:d4:e5:f6:07:18:29:3a:4b:5c:6d:7e:8f:90");
        assert_eq!(cert.not_before, "Jan  5 09:07:08 2024 GMT");
        assert_eq!(cert.not_after, "Jan  2 09:07:08 2034 GMT");
        // The PEM is the certificate again, as OpenSSL writes it.
        assert_eq!(cert.pem, CERT_PEM);
        assert_eq!(der_of(&cert.pem), der);
    }

    #[test]
    fn serial_numbers_keep_every_byte_of_their_magnitude() {
        assert_eq!(serial_number(&[0x00]), "00");
        assert_eq!(serial_number(&[0x01]), "01");
        assert_eq!(serial_number(&[0x00, 0x80]), "80");
        assert_eq!(serial_number(&[0x0a, 0x00, 0xff]), "0a:00:ff");
    }

    #[test]
    fn values_are_escaped_as_rfc_4514_says() {
        let cases = [
            ("plain", "plain"),
            ("#start", r"\#start"),
            ("mid#dle", "mid#dle"),
            (" both ", r"\ both\ "),
            ("a,b+c;d<e>f\"g\\h", r#"a\,b\+c\;d\<e\>f\"g\\h"#),
            ("nul\0", r"nul\00"),
            ("", ""),
        ];
        for (value, want) in cases {
            let mut out = String::new();
            escape_value(value, &mut out);
            assert_eq!(out, want, "{value:?}");
        }
    }

    #[test]
    fn what_is_not_one_certificate_is_refused() {
        let der = der_of(CERT_PEM);
        assert!(ClientCert::from_der(&[]).is_err());
        assert!(ClientCert::from_der(b"-----BEGIN CERTIFICATE-----").is_err());
        assert!(ClientCert::from_der(&der[..der.len() - 1]).is_err());
        let mut longer = der.clone();
        longer.push(0);
        assert!(ClientCert::from_der(&longer).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any bytes: an error or a certificate, never a panic, in bounded time.
        #[test]
        fn arbitrary_bytes_never_crash_the_parser(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let started = std::time::Instant::now();
            let _ = ClientCert::from_der(&bytes);
            prop_assert!(started.elapsed() < std::time::Duration::from_secs(1));
        }

        /// A real certificate with bytes flipped: an error, or fields that render.
        #[test]
        fn damaged_certificates_never_crash_the_parser(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)
        ) {
            let mut der = der_of(CERT_PEM);
            for (at, byte) in flips {
                let i = at.index(der.len());
                der[i] ^= byte | 1;
            }
            if let Ok(cert) = ClientCert::from_der(&der) {
                prop_assert!(cert.pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
            }
        }
    }
}
