//! TLS on the public listener (the edge), and mTLS: rustls with the ring provider, TLS 1.2 and
//! 1.3 (what AWS's `TLS_1_2` security policy serves), HTTP/1.1 by ALPN.
//!
//! * The certificate chain and its private key come from PEM files; with a truststore (a PEM
//!   bundle of CA certificates, as AWS's `mutualTlsAuthentication.truststoreUri` names one) every
//!   client is asked for a certificate. Following AWS, a missing or untrusted one does not fail
//!   the handshake: the connection's requests are answered 403 (`crate::auth::mtls`). The
//!   client's proof that it holds the certificate's key (its handshake signature) is checked in
//!   the handshake; the chain is checked against the truststore right after it.
//! * The files are read again when they change (their inode, size or times, looked at every
//!   second) or on SIGHUP: new handshakes use what was read, connections already open keep
//!   theirs. A file that cannot be used leaves the previous configuration serving, and says why.
//!   At startup, the same error stops the server (`portico serve` checks before it binds).

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};

use crate::auth::mtls::ClientAuth;
use crate::auth::ClientCert;

/// The files a TLS listener serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain, leaf first (PEM).
    pub certificate: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1; not encrypted).
    pub private_key: PathBuf,
    /// CA certificates trusted for client certificates (PEM bundle): mTLS when given.
    pub truststore: Option<PathBuf>,
}

/// Which of the files an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    Certificate,
    PrivateKey,
    Truststore,
}

impl TlsFile {
    /// The name Python maps to the setting or flag that named the file.
    pub fn name(self) -> &'static str {
        match self {
            TlsFile::Certificate => "certificate",
            TlsFile::PrivateKey => "privateKey",
            TlsFile::Truststore => "truststore",
        }
    }
}

/// Why a TLS configuration cannot be used, naming the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    pub file: TlsFile,
    pub path: PathBuf,
    pub why: String,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.why)
    }
}

impl std::error::Error for TlsError {}

/// One reading of the files: what new handshakes use.
pub struct Loaded {
    pub config: Arc<ServerConfig>,
    /// The truststore's verifier (mTLS), run on each connection once its handshake is done.
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    /// Truststore certificates that were left out, and why (AWS's "truststore warnings").
    pub warnings: Vec<String>,
}

impl fmt::Debug for Loaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loaded")
            .field("mtls", &self.verifier.is_some())
            .field("warnings", &self.warnings)
            .finish()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Loaded {
    /// Read and check every file.
    pub fn read(files: &TlsFiles) -> Result<Loaded, TlsError> {
        let provider = provider();
        let cert_err = |why: String| TlsError {
            file: TlsFile::Certificate,
            path: files.certificate.clone(),
            why,
        };
        let key_err = |why: String| TlsError {
            file: TlsFile::PrivateKey,
            path: files.private_key.clone(),
            why,
        };
        let chain = read_certificates(&files.certificate).map_err(cert_err)?;
        let key_pem = std::fs::read(&files.private_key).map_err(|e| key_err(format!("cannot read it: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            key_err(match e {
                pem::Error::NoItemsFound => "no private key in it (a PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE \
                                             KEY block; encrypted keys are not supported)"
                    .into(),
                other => format!("malformed PEM: {other}"),
            })
        })?;
        let signing_key = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| key_err(format!("unusable private key: {e}")))?;
        let certified = CertifiedKey::new(chain, signing_key);
        if let Err(e) = certified.keys_match() {
            return Err(match e {
                rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => key_err(format!(
                    "this key does not match the certificate of {}",
                    files.certificate.display()
                )),
                rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown) => {
                    key_err("the key's public part cannot be compared with the certificate".into())
                }
                other => cert_err(format!("the first certificate cannot be used: {other}")),
            });
        }

        let mut warnings = Vec::new();
        let verifier = match &files.truststore {
            None => None,
            Some(path) => {
                let (verifier, warned) = read_truststore(path, provider.clone()).map_err(|why| TlsError {
                    file: TlsFile::Truststore,
                    path: path.clone(),
                    why,
                })?;
                warnings = warned;
                Some(verifier)
            }
        };
        let builder = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| cert_err(format!("no TLS version to serve: {e}")))?;
        let builder = match &verifier {
            Some(verifier) => builder.with_client_cert_verifier(Arc::new(Deferred(verifier.clone()))),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Loaded {
            config: Arc::new(config),
            verifier,
            warnings,
        })
    }

    /// What the truststore says of the certificate a connection presented (None without mTLS).
    pub fn client_auth(&self, conn: &rustls::ServerConnection) -> Option<ClientAuth> {
        let verifier = self.verifier.as_ref()?;
        let Some((end_entity, intermediates)) = conn.peer_certificates().and_then(|chain| chain.split_first()) else {
            return Some(ClientAuth::Refused {
                cert: None,
                reason: "No client certificate".into(),
            });
        };
        let cert = match ClientCert::from_der(end_entity) {
            Ok(cert) => Arc::new(cert),
            Err(why) => {
                return Some(ClientAuth::Refused {
                    cert: None,
                    reason: format!("Invalid client certificate: {why}"),
                })
            }
        };
        Some(match verifier.verify_client_cert(end_entity, intermediates, UnixTime::now()) {
            Ok(_) => ClientAuth::Trusted(cert),
            Err(e) => ClientAuth::Refused {
                reason: refusal_reason(&e, &cert),
                cert: Some(cert),
            },
        })
    }
}

/// Why a client certificate was refused, in the words of AWS's execution log where it has some
/// ("Access denied. Reason: Could not find issuer for certificate", "... self signed
/// certificate", "... Client cert using an insecure Signature Algorithm"), OpenSSL's otherwise.
fn refusal_reason(e: &rustls::Error, cert: &ClientCert) -> String {
    #[allow(deprecated)]
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer if cert.subject_dn == cert.issuer_dn => "self signed certificate".into(),
            CertificateError::UnknownIssuer => "Could not find issuer for certificate".into(),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "certificate has expired".into(),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "certificate is not yet valid".into()
            }
            CertificateError::UnsupportedSignatureAlgorithm
            | CertificateError::UnsupportedSignatureAlgorithmContext { .. }
            | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
                "Client cert using an insecure Signature Algorithm".into()
            }
            CertificateError::BadSignature => "certificate signature failure".into(),
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "unsupported certificate purpose".into()
            }
            other => format!("{other:?}"),
        },
        other => other.to_string(),
    }
}

/// The certificates of a PEM file, each checked to be X.509.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("malformed PEM: {e}"))?;
    if chain.is_empty() {
        return Err("no certificate in it (a PEM CERTIFICATE block)".into());
    }
    for (i, der) in chain.iter().enumerate() {
        ClientCert::from_der(der).map_err(|why| format!("certificate #{} in it: {why}", i + 1))?;
    }
    Ok(chain)
}

/// The truststore's verifier, and the certificates left out (with why).
fn read_truststore(
    path: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<(Arc<dyn ClientCertVerifier>, Vec<String>), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("malformed PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in it (a PEM CERTIFICATE block)".into());
    }
    let mut roots = RootCertStore::empty();
    let mut warnings = Vec::new();
    for (i, der) in certs.into_iter().enumerate() {
        let subject = ClientCert::from_der(&der).map(|c| c.subject_dn);
        let added = match &subject {
            Ok(_) => roots.add(der).map_err(|e| e.to_string()),
            Err(why) => Err(why.clone()),
        };
        if let Err(why) = added {
            let subject = subject.map(|s| format!(" ({s})")).unwrap_or_default();
            warnings.push(format!("{}: certificate #{}{subject} left out: {why}", path.display(), i + 1));
        }
    }
    if roots.is_empty() {
        return Err(format!("no usable CA certificate in it ({})", warnings.join("; ")));
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| format!("unusable truststore: {e}"))?;
    Ok((verifier, warnings))
}

/// Asks for a client certificate without requiring one, and leaves the chain's verdict to
/// `Loaded::client_auth` (AWS answers an untrusted certificate with 403, not a failed
/// handshake). The handshake signature, the proof that the client holds the certificate's key,
/// is checked here as usual.
#[derive(Debug)]
struct Deferred(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for Deferred {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// What says a file changed: its device and inode (a file replaced by a rename, a symlink
/// pointed elsewhere), size and times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    })
}

/// What was last looked at: the SIGHUP count and the files' stamps.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    hup: usize,
    stamps: [Option<Stamp>; 3],
}

/// A TLS listener's configuration, read again when its files change or on SIGHUP.
pub struct TlsListener {
    files: TlsFiles,
    current: ArcSwap<Loaded>,
    seen: Mutex<Seen>,
}

impl fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsListener").field("files", &self.files).finish()
    }
}

impl TlsListener {
    pub fn new(files: TlsFiles) -> Result<TlsListener, TlsError> {
        let seen = Seen {
            hup: crate::access_log::sighup_count(),
            stamps: Self::stamps(&files),
        };
        let loaded = Loaded::read(&files)?;
        Ok(TlsListener {
            files,
            current: ArcSwap::from_pointee(loaded),
            seen: Mutex::new(seen),
        })
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    fn stamps(files: &TlsFiles) -> [Option<Stamp>; 3] {
        [
            stamp(&files.certificate),
            stamp(&files.private_key),
            files.truststore.as_deref().and_then(stamp),
        ]
    }

    /// What new handshakes use.
    pub fn current(&self) -> Arc<Loaded> {
        self.current.load_full()
    }

    /// Read the files again if they changed, or a SIGHUP came, since the last look: None when
    /// nothing did; the error when they cannot be used (the previous reading keeps serving, and
    /// is not tried again before the files change again). Blocking file I/O.
    pub fn refresh(&self) -> Option<Result<Arc<Loaded>, TlsError>> {
        let now = Seen {
            hup: crate::access_log::sighup_count(),
            stamps: Self::stamps(&self.files),
        };
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if *seen == now {
                return None;
            }
            // Taken before reading: a file changed while being read is read again next time.
            *seen = now;
        }
        Some(Loaded::read(&self.files).map(|loaded| {
            let loaded = Arc::new(loaded);
            self.current.store(loaded.clone());
            loaded
        }))
    }
}
