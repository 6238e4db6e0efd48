//! Access logs in AWS's `$context.*` format language (`accessLogSettings.format`), and the
//! writer that puts them in a file, on stdout or on stderr off the request path.
//!
//! Pure Rust, no PyO3.
//!
//! * [`AccessLogFormat`] is compiled once from the format string into literal parts and known
//!   variables; [`AccessLogFormat::render`] appends one line for a [`LogRecord`] (borrowed
//!   values the pipeline already holds). Values are inserted as AWS inserts them: not quoted,
//!   not escaped (a JSON-looking format stays the user's business, as on AWS), except CR and LF,
//!   written as `\r` and `\n` so that one request stays one line in a file. Anything unknown,
//!   absent or empty prints `-`, as AWS prints it.
//! * [`AccessLogWriter`] owns one dedicated thread per destination. `write_line` appends to a
//!   shared buffer under a mutex (no I/O, no allocation once the buffer has grown) and wakes
//!   the thread only when it sleeps; the thread writes whatever has queued up in as few
//!   `write` calls as possible, each of whole lines, to a file opened `O_APPEND`, so processes
//!   appending to the same file never interleave partial lines. `flush` waits until every line
//!   handed in before it is written; dropping the writer flushes and joins the thread.
//! * Log rotation: `reopen()`, a SIGHUP (after [`install_sighup_reopen`]), or the path no longer
//!   naming the open file (checked at most once a second) make the thread close and reopen the
//!   path before it writes again. No line is lost or written twice: each goes to the old file or
//!   the new one.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::mem::{self, ManuallyDrop};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::FromRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// The record
// ---------------------------------------------------------------------------------------------

/// Which AWS flavour a format follows where they differ (only `$context.requestTimeEpoch`:
/// seconds for HTTP APIs, milliseconds for REST APIs).
pub use crate::spec::ApiKind;

/// The caller, as `$context.identity.*` names it. `None` (or "") prints `-`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Identity<'a> {
    /// Peer address of the TCP connection (`sourceIp`).
    pub source_ip: &'a str,
    /// The `User-Agent` header.
    pub user_agent: Option<&'a str>,
    /// REST: the API key of a method that requires one, and its id.
    pub api_key: Option<&'a str>,
    pub api_key_id: Option<&'a str>,
    /// IAM-signed requests.
    pub caller: Option<&'a str>,
    pub user: Option<&'a str>,
    pub user_arn: Option<&'a str>,
    pub account_id: Option<&'a str>,
    pub access_key: Option<&'a str>,
    pub principal_org_id: Option<&'a str>,
    /// Requests signed with Amazon Cognito identity-pool credentials.
    pub cognito_authentication_provider: Option<&'a str>,
    pub cognito_authentication_type: Option<&'a str>,
    pub cognito_identity_id: Option<&'a str>,
    pub cognito_identity_pool_id: Option<&'a str>,
    /// mTLS: the client's certificate (`clientCert.*`).
    pub client_cert: Option<&'a crate::auth::ClientCert>,
}

impl<'a> Identity<'a> {
    /// The same identity with the signer of an `AWS_IAM` route or `$connect` (its access key id;
    /// never the secret).
    pub fn signed_by(self, iam: Option<&'a crate::auth::IamIdentity>) -> Identity<'a> {
        Identity {
            caller: iam.map(|i| i.caller.as_str()),
            user: iam.map(|i| i.user.as_str()),
            user_arn: iam.map(|i| i.user_arn.as_str()),
            account_id: iam.map(|i| i.account_id.as_str()),
            access_key: iam.map(|i| i.access_key.as_str()),
            ..self
        }
    }
}

/// The values of one answered request that an access log format can name. Every field is
/// borrowed from what the pipeline already holds; `None` (or an empty string) prints `-`.
/// Build it with `LogRecord { request_id, ..., ..Default::default() }`.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogRecord<'a> {
    // --- the request
    pub request_id: &'a str,
    /// `extendedRequestId`; `None` prints `request_id` (HTTP APIs: "equivalent to requestId").
    pub extended_request_id: Option<&'a str>,
    pub http_method: &'a str,
    /// The raw request path as received (`/stage/...` when the stage is in the path).
    pub path: &'a str,
    /// For example `HTTP/1.1`.
    pub protocol: &'a str,
    /// The `Host` header as received; `domainPrefix` is its first label.
    pub domain_name: Option<&'a str>,
    /// When the request arrived, wall clock, milliseconds since the Unix epoch
    /// (`requestTime`, `requestTimeEpoch`).
    pub request_time_epoch_ms: u64,
    pub identity: Identity<'a>,

    // --- what answered it
    pub account_id: Option<&'a str>,
    pub api_id: Option<&'a str>,
    pub stage: Option<&'a str>,
    /// HTTP APIs: the matched route key, `GET /pets/{id}`.
    pub route_key: Option<&'a str>,
    /// REST APIs: the matched resource's path template and id.
    pub resource_path: Option<&'a str>,
    pub resource_id: Option<&'a str>,
    /// Custom domains: the API mapping's path the request matched.
    pub base_path_matched: Option<&'a str>,
    pub xray_trace_id: Option<&'a str>,

    // --- the response
    pub status: u16,
    /// Body bytes sent to the client.
    pub response_length: u64,
    /// From the request's arrival to the response, in ms.
    pub response_latency_ms: u64,
    /// HTTP APIs' `dataProcessed`, bytes.
    pub data_processed: Option<u64>,

    // --- a gateway error (a gateway response)
    pub error_message: Option<&'a str>,
    /// The gateway response type, `THROTTLED`, `MISSING_AUTHENTICATION_TOKEN`...
    pub error_response_type: Option<&'a str>,
    /// REST: `error.validationErrorString`.
    pub error_validation: Option<&'a str>,

    // --- the integration
    /// What the integration answered (for a Lambda proxy, the function's `statusCode`):
    /// `integration.status`; also `integrationStatus` when `integration_service_status` is None.
    pub integration_status: Option<u16>,
    /// For Lambda integrations, the Lambda service's own status of the invocation (200 when
    /// the function ran, whatever it returned): `integration.integrationStatus` and
    /// `integrationStatus`.
    pub integration_service_status: Option<u16>,
    pub integration_latency_ms: Option<u64>,
    /// `integration.error` and `integrationErrorMessage`.
    pub integration_error: Option<&'a str>,
    /// The integration's request id (a Lambda invocation's request id):
    /// `integration.requestId`, `awsEndpointRequestId`.
    pub integration_request_id: Option<&'a str>,
    /// `integration.responseTransferMode`: `BUFFERED` or `STREAMED` ("Troubleshoot issues with
    /// response streaming in API Gateway").
    pub response_transfer_mode: Option<&'a str>,

    // --- authorizers
    /// A Lambda authorizer's `context` map, values stringified: `$context.authorizer.KEY`.
    pub authorizer: &'a [(&'a str, &'a str)],
    /// A JWT / Cognito authorizer's claims: `$context.authorizer.claims.KEY`.
    pub claims: &'a [(&'a str, &'a str)],
    /// `authorizer.principalId`; `None` looks `principalId` up in `authorizer`.
    pub authorizer_principal_id: Option<&'a str>,
    pub authorizer_error: Option<&'a str>,
    pub authorizer_status: Option<u16>,
    pub authorizer_latency_ms: Option<u64>,
    /// The authorizer function's own invocation (REST).
    pub authorizer_integration_status: Option<u16>,
    pub authorizer_integration_latency_ms: Option<u64>,
    pub authorizer_request_id: Option<&'a str>,
    /// REST's whole authorization step (`authorize.*`).
    pub authorize_status: Option<u16>,
    pub authorize_latency_ms: Option<u64>,
    pub authorize_error: Option<&'a str>,

    // --- WebSocket APIs ("Configure logging for WebSocket APIs in API Gateway")
    pub connection_id: Option<&'a str>,
    /// `CONNECT`, `MESSAGE` or `DISCONNECT`.
    pub event_type: Option<&'a str>,
    /// A message's id (`MESSAGE` only).
    pub message_id: Option<&'a str>,
    /// When the connection opened, ms since the Unix epoch.
    pub connected_at_ms: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// The format
// ---------------------------------------------------------------------------------------------

/// A field of `$context.identity.clientCert` (mTLS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientCertField {
    Pem,
    SubjectDn,
    IssuerDn,
    SerialNumber,
    NotBefore,
    NotAfter,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Var {
    AccountId,
    ApiId,
    AuthorizerKey(Box<str>),
    AuthorizerClaim(Box<str>),
    AuthorizerPrincipalId,
    AuthorizerError,
    AuthorizerStatus,
    AuthorizerLatency,
    AuthorizerIntegrationStatus,
    AuthorizerIntegrationLatency,
    AuthorizerRequestId,
    AuthorizeError,
    AuthorizeLatency,
    AuthorizeStatus,
    BasePathMatched,
    ConnectedAt,
    ConnectionId,
    EventType,
    MessageId,
    DataProcessed,
    DomainName,
    DomainPrefix,
    ErrorMessage,
    ErrorMessageString,
    ErrorResponseType,
    ErrorValidation,
    ExtendedRequestId,
    HttpMethod,
    IdSourceIp,
    IdUserAgent,
    IdApiKey,
    IdApiKeyId,
    IdCaller,
    IdUser,
    IdUserArn,
    IdAccountId,
    IdAccessKey,
    IdPrincipalOrgId,
    IdCognitoProvider,
    IdCognitoType,
    IdCognitoIdentityId,
    IdCognitoPoolId,
    IdClientCert(ClientCertField),
    IntegrationError,
    IntegrationLatency,
    IntegrationRequestId,
    IntegrationResponseTransferMode,
    /// `integration.status`: what the integration (function code) answered.
    IntegrationStatus,
    /// `integrationStatus` and `integration.integrationStatus`: the Lambda service's status.
    IntegrationServiceStatus,
    Path,
    Protocol,
    RequestId,
    RequestTime,
    RequestTimeEpochS,
    RequestTimeEpochMs,
    ResourceId,
    ResourcePath,
    ResponseLatency,
    ResponseLength,
    RouteKey,
    Stage,
    Status,
    XrayTraceId,
    /// Unknown, or known to AWS but never set here (WAF, mTLS, VPC endpoints, overrides...).
    Absent,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Lit(Box<str>),
    Var(Var),
}

/// A compiled `accessLogSettings.format`.
#[derive(Clone, Debug)]
pub struct AccessLogFormat {
    parts: Vec<Part>,
}

const PREFIX: &str = "$context.";

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.'
}

fn variable(name: &str, kind: ApiKind) -> Var {
    use Var::*;
    if let Some(key) = name.strip_prefix("authorizer.") {
        return match key {
            "principalId" => AuthorizerPrincipalId,
            "error" => AuthorizerError,
            "status" => AuthorizerStatus,
            "latency" => AuthorizerLatency,
            "integrationStatus" => AuthorizerIntegrationStatus,
            "integrationLatency" => AuthorizerIntegrationLatency,
            "requestId" => AuthorizerRequestId,
            // AWS: "Calling $context.authorizer.claims returns null."
            "claims" => Absent,
            _ => match key.strip_prefix("claims.") {
                Some(claim) => AuthorizerClaim(claim.into()),
                None => AuthorizerKey(key.into()),
            },
        };
    }
    match name {
        "accountId" => AccountId,
        "apiId" => ApiId,
        "authorize.error" => AuthorizeError,
        "authorize.latency" => AuthorizeLatency,
        "authorize.status" => AuthorizeStatus,
        "awsEndpointRequestId" | "integration.requestId" => IntegrationRequestId,
        "customDomain.basePathMatched" => BasePathMatched,
        "connectedAt" => ConnectedAt,
        "connectionId" => ConnectionId,
        "eventType" => EventType,
        "messageId" => MessageId,
        "dataProcessed" => DataProcessed,
        "domainName" => DomainName,
        "domainPrefix" => DomainPrefix,
        "error.message" => ErrorMessage,
        "error.messageString" => ErrorMessageString,
        "error.responseType" => ErrorResponseType,
        "error.validationErrorString" => ErrorValidation,
        "extendedRequestId" => ExtendedRequestId,
        "httpMethod" => HttpMethod,
        "identity.sourceIp" => IdSourceIp,
        "identity.userAgent" => IdUserAgent,
        "identity.apiKey" => IdApiKey,
        "identity.apiKeyId" => IdApiKeyId,
        "identity.caller" => IdCaller,
        "identity.user" => IdUser,
        "identity.userArn" => IdUserArn,
        "identity.accountId" => IdAccountId,
        "identity.accessKey" => IdAccessKey,
        "identity.principalOrgId" => IdPrincipalOrgId,
        "identity.cognitoAuthenticationProvider" => IdCognitoProvider,
        "identity.cognitoAuthenticationType" => IdCognitoType,
        "identity.cognitoIdentityId" => IdCognitoIdentityId,
        "identity.cognitoIdentityPoolId" => IdCognitoPoolId,
        "identity.clientCert.clientCertPem" => IdClientCert(ClientCertField::Pem),
        "identity.clientCert.subjectDN" => IdClientCert(ClientCertField::SubjectDn),
        "identity.clientCert.issuerDN" => IdClientCert(ClientCertField::IssuerDn),
        "identity.clientCert.serialNumber" => IdClientCert(ClientCertField::SerialNumber),
        "identity.clientCert.validity.notBefore" => IdClientCert(ClientCertField::NotBefore),
        "identity.clientCert.validity.notAfter" => IdClientCert(ClientCertField::NotAfter),
        "integration.error" | "integrationErrorMessage" => IntegrationError,
        "integration.latency" | "integrationLatency" => IntegrationLatency,
        "integration.status" => IntegrationStatus,
        "integration.responseTransferMode" => IntegrationResponseTransferMode,
        "integration.integrationStatus" | "integrationStatus" => IntegrationServiceStatus,
        "path" => Path,
        "protocol" => Protocol,
        "requestId" => RequestId,
        "requestTime" => RequestTime,
        "requestTimeEpoch" => match kind {
            ApiKind::Http | ApiKind::Websocket => RequestTimeEpochS,
            ApiKind::Rest => RequestTimeEpochMs,
        },
        "resourceId" => ResourceId,
        "resourcePath" => ResourcePath,
        "responseLatency" => ResponseLatency,
        "responseLength" => ResponseLength,
        "routeKey" => RouteKey,
        "stage" => Stage,
        "status" => Status,
        "xrayTraceId" => XrayTraceId,
        _ => Absent,
    }
}

impl AccessLogFormat {
    /// Compiles an HTTP API format (`requestTimeEpoch` in seconds).
    pub fn compile(format: &str) -> AccessLogFormat {
        AccessLogFormat::compile_for(format, ApiKind::Http)
    }

    /// Compiles a format for an HTTP or a REST API. A variable is `$context.` followed by the
    /// longest run of `[A-Za-z0-9_.]` (trailing dots stay literal text); AWS allows a newline
    /// only at the end of a format, and that one is dropped (the writer ends every line).
    pub fn compile_for(format: &str, kind: ApiKind) -> AccessLogFormat {
        let format = format.strip_suffix('\n').unwrap_or(format);
        let format = format.strip_suffix('\r').unwrap_or(format);
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = format;
        while let Some(at) = rest.find(PREFIX) {
            let after = &rest[at + PREFIX.len()..];
            let mut len = after.bytes().take_while(|&b| is_name_byte(b)).count();
            while len > 0 && after.as_bytes()[len - 1] == b'.' {
                len -= 1;
            }
            if len == 0 {
                literal.push_str(&rest[..at + PREFIX.len()]);
                rest = after;
                continue;
            }
            literal.push_str(&rest[..at]);
            if !literal.is_empty() {
                parts.push(Part::Lit(mem::take(&mut literal).into_boxed_str()));
            }
            parts.push(Part::Var(variable(&after[..len], kind)));
            rest = &after[len..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Lit(literal.into_boxed_str()));
        }
        AccessLogFormat { parts }
    }

    /// Appends the line for `rec` to `out`, without a newline.
    pub fn render(&self, rec: &LogRecord, out: &mut String) {
        for part in &self.parts {
            match part {
                Part::Lit(text) => out.push_str(text),
                Part::Var(var) => render_var(var, rec, out),
            }
        }
    }
}

/// Appends `$context.NAME` for `rec` as an access log renders it (unset values as `-`); false,
/// appending nothing, for a name access logs do not know. For gateway-response templates and
/// header mappings (`crate::pipeline::gateway_responses`).
pub fn render_context(name: &str, kind: ApiKind, rec: &LogRecord, out: &mut String) -> bool {
    let var = variable(name, kind);
    if var == Var::Absent {
        return false;
    }
    render_var(&var, rec, out);
    true
}

fn lookup<'a>(map: &[(&'a str, &'a str)], key: &str) -> Option<&'a str> {
    map.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

fn render_var(var: &Var, rec: &LogRecord, out: &mut String) {
    use Var::*;
    let id = &rec.identity;
    match var {
        AccountId => push_opt(out, rec.account_id),
        ApiId => push_opt(out, rec.api_id),
        AuthorizerKey(key) => push_opt(out, lookup(rec.authorizer, key)),
        AuthorizerClaim(key) => push_opt(out, lookup(rec.claims, key)),
        AuthorizerPrincipalId => push_opt(
            out,
            rec.authorizer_principal_id
                .or_else(|| lookup(rec.authorizer, "principalId")),
        ),
        AuthorizerError => push_opt(out, rec.authorizer_error),
        AuthorizerStatus => push_num(out, rec.authorizer_status.map(u64::from)),
        AuthorizerLatency => push_num(out, rec.authorizer_latency_ms),
        AuthorizerIntegrationStatus => {
            push_num(out, rec.authorizer_integration_status.map(u64::from))
        }
        AuthorizerIntegrationLatency => push_num(out, rec.authorizer_integration_latency_ms),
        AuthorizerRequestId => push_opt(out, rec.authorizer_request_id),
        AuthorizeError => push_opt(out, rec.authorize_error),
        AuthorizeLatency => push_num(out, rec.authorize_latency_ms),
        AuthorizeStatus => push_num(out, rec.authorize_status.map(u64::from)),
        BasePathMatched => push_opt(out, rec.base_path_matched),
        ConnectedAt => push_num(out, rec.connected_at_ms),
        ConnectionId => push_opt(out, rec.connection_id),
        EventType => push_opt(out, rec.event_type),
        MessageId => push_opt(out, rec.message_id),
        DataProcessed => push_num(out, rec.data_processed),
        DomainName => push_opt(out, rec.domain_name),
        DomainPrefix => push_opt(out, rec.domain_name.map(domain_prefix)),
        ErrorMessage => push_opt(out, rec.error_message),
        ErrorMessageString => match rec.error_message {
            Some(message) if !message.is_empty() => {
                out.push('"');
                push_value(out, message);
                out.push('"');
            }
            _ => out.push('-'),
        },
        ErrorResponseType => push_opt(out, rec.error_response_type),
        ErrorValidation => push_opt(out, rec.error_validation),
        ExtendedRequestId => push_str(out, rec.extended_request_id.unwrap_or(rec.request_id)),
        HttpMethod => push_str(out, rec.http_method),
        IdSourceIp => push_str(out, id.source_ip),
        IdUserAgent => push_opt(out, id.user_agent),
        IdApiKey => push_opt(out, id.api_key),
        IdApiKeyId => push_opt(out, id.api_key_id),
        IdCaller => push_opt(out, id.caller),
        IdUser => push_opt(out, id.user),
        IdUserArn => push_opt(out, id.user_arn),
        IdAccountId => push_opt(out, id.account_id),
        IdAccessKey => push_opt(out, id.access_key),
        IdPrincipalOrgId => push_opt(out, id.principal_org_id),
        IdCognitoProvider => push_opt(out, id.cognito_authentication_provider),
        IdCognitoType => push_opt(out, id.cognito_authentication_type),
        IdCognitoIdentityId => push_opt(out, id.cognito_identity_id),
        IdCognitoPoolId => push_opt(out, id.cognito_identity_pool_id),
        IdClientCert(field) => push_opt(
            out,
            id.client_cert.map(|c| match field {
                ClientCertField::Pem => c.pem.as_str(),
                ClientCertField::SubjectDn => &c.subject_dn,
                ClientCertField::IssuerDn => &c.issuer_dn,
                ClientCertField::SerialNumber => &c.serial_number,
                ClientCertField::NotBefore => &c.not_before,
                ClientCertField::NotAfter => &c.not_after,
            }),
        ),
        IntegrationError => push_opt(out, rec.integration_error),
        IntegrationLatency => push_num(out, rec.integration_latency_ms),
        IntegrationRequestId => push_opt(out, rec.integration_request_id),
        IntegrationResponseTransferMode => push_opt(out, rec.response_transfer_mode),
        IntegrationStatus => push_num(out, rec.integration_status.map(u64::from)),
        IntegrationServiceStatus => push_num(
            out,
            rec.integration_service_status
                .or(rec.integration_status)
                .map(u64::from),
        ),
        Path => push_str(out, rec.path),
        Protocol => push_str(out, rec.protocol),
        RequestId => push_str(out, rec.request_id),
        RequestTime => crate::time::push_clf_time(out, rec.request_time_epoch_ms),
        RequestTimeEpochS => push_u64(out, rec.request_time_epoch_ms / 1000),
        RequestTimeEpochMs => push_u64(out, rec.request_time_epoch_ms),
        ResourceId => push_opt(out, rec.resource_id),
        ResourcePath => push_opt(out, rec.resource_path),
        ResponseLatency => push_u64(out, rec.response_latency_ms),
        ResponseLength => push_u64(out, rec.response_length),
        RouteKey => push_opt(out, rec.route_key),
        Stage => push_opt(out, rec.stage),
        Status => push_u64(out, u64::from(rec.status)),
        XrayTraceId => push_opt(out, rec.xray_trace_id),
        Absent => out.push('-'),
    }
}

/// The first label of a `Host` (without its port when it has no dot).
fn domain_prefix(host: &str) -> &str {
    match host.find('.') {
        Some(dot) => &host[..dot],
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    }
}

#[inline]
fn push_opt(out: &mut String, value: Option<&str>) {
    match value {
        Some(value) => push_str(out, value),
        None => out.push('-'),
    }
}

#[inline]
fn push_str(out: &mut String, value: &str) {
    if value.is_empty() {
        out.push('-');
    } else {
        push_value(out, value);
    }
}

/// As-is, but CR and LF as `\r` and `\n`: a file gets one line per request.
#[inline]
fn push_value(out: &mut String, value: &str) {
    if !value.bytes().any(|b| b == b'\n' || b == b'\r') {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

#[inline]
fn push_num(out: &mut String, value: Option<u64>) {
    match value {
        Some(n) => push_u64(out, n),
        None => out.push('-'),
    }
}

fn push_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&buf[at..]).unwrap_or("-"));
}

// ---------------------------------------------------------------------------------------------
// The writer
// ---------------------------------------------------------------------------------------------

/// Where an access log goes: `accessLog.destination` is `stdout`, `stderr` or a file path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    Stdout,
    Stderr,
    File(PathBuf),
}

impl Destination {
    /// `"stdout"`, `"stderr"`, or anything else as a file path.
    pub fn parse(destination: &str) -> Destination {
        match destination {
            "stdout" => Destination::Stdout,
            "stderr" => Destination::Stderr,
            path => Destination::File(PathBuf::from(path)),
        }
    }
}

/// Bumped by the SIGHUP handler; every writer thread compares it with the value it last saw.
static SIGHUP_GENERATION: AtomicUsize = AtomicUsize::new(0);

/// Makes a SIGHUP reopen every access log file (of every writer, present or future) before
/// its next write, within 250 ms when idle. Idempotent. The handler only bumps an atomic
/// counter, and any handler installed before it keeps being called (signal-hook chains it);
/// a handler installed later with a plain `sigaction` (Python's `signal.signal`) replaces it.
pub fn install_sighup_reopen() -> io::Result<()> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = INSTALLED.get_or_init(|| {
        // SAFETY: the action only does an atomic add, which is async-signal-safe.
        let registered = unsafe {
            signal_hook::low_level::register(signal_hook::consts::SIGHUP, || {
                SIGHUP_GENERATION.fetch_add(1, Ordering::SeqCst);
            })
        };
        registered.map(|_| ()).map_err(|e| e.to_string())
    });
    result.clone().map_err(io::Error::other)
}

/// How many SIGHUPs arrived since [`install_sighup_reopen`]: other things a SIGHUP re-reads
/// (the listener's TLS certificate, `crate::tls`) compare it with the count they last saw.
pub fn sighup_count() -> usize {
    SIGHUP_GENERATION.load(Ordering::SeqCst)
}

/// How long the idle writer thread sleeps between looks at the SIGHUP counter.
const IDLE_TICK: Duration = Duration::from_millis(250);
/// How long the writer naps between batches under load: a line reaches the file within this.
const BATCH_INTERVAL: Duration = Duration::from_millis(5);
/// Lines pending past this many bytes wake the writer before its nap ends.
const WAKE_BYTES: usize = 256 * 1024;
/// How often (at most) the thread checks that the path still names the open file.
const PATH_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Largest single `write` to a pipe or terminal (POSIX `PIPE_BUF`: atomic up to this size).
const STD_CHUNK: usize = 4096;
/// Largest single `write` to a file.
const FILE_CHUNK: usize = 1 << 20;
/// A batch buffer that grew past this is given back after use.
const KEEP_CAPACITY: usize = 1 << 20;

struct State {
    /// Lines handed in and not yet taken by the thread, each ending in `\n`.
    pending: Vec<u8>,
    /// Lines handed in so far.
    handed_in: u64,
    /// Lines the thread is done with (written, or reported as failed).
    done: u64,
    /// The thread sleeps with nothing to write and must be woken for new lines. Between batches
    /// it naps instead (`BATCH_INTERVAL`), and lines handed in meanwhile wake nobody: under load
    /// the thread writes a batch per nap rather than being woken per line (a futex wake per
    /// request cost the pipeline's thread about 7% of its time).
    idle: bool,
    /// `flush` waits: write without finishing the nap.
    flushing: bool,
    reopen: bool,
    closing: bool,
    /// The thread has exited (only after `closing`, or if it panicked).
    gone: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer thread.
    wake: Condvar,
    /// Wakes `flush` callers.
    written: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One access log destination and its writer thread. `Send + Sync`: share it (in an `Arc`)
/// between the workers of one process. Create it after any `fork`: the thread does not survive
/// one.
pub struct AccessLogWriter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl AccessLogWriter {
    /// Opens the destination (a file `O_APPEND|O_CREAT`, mode 0644) and starts its thread.
    pub fn open(destination: Destination) -> io::Result<AccessLogWriter> {
        let sink = Sink::open(destination)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pending: Vec::new(),
                handed_in: 0,
                done: 0,
                idle: false,
                flushing: false,
                reopen: false,
                closing: false,
                gone: false,
            }),
            wake: Condvar::new(),
            written: Condvar::new(),
        });
        let for_thread = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("portico-access-log".into())
            .spawn(move || run(for_thread, sink))?;
        Ok(AccessLogWriter {
            shared,
            thread: Some(thread),
        })
    }

    /// Hands one line (without its newline) to the writer thread: a copy into the shared
    /// buffer, never I/O.
    pub fn write_line(&self, line: &str) {
        let mut st = self.shared.lock();
        if st.gone {
            return;
        }
        st.pending.reserve(line.len() + 1);
        st.pending.extend_from_slice(line.as_bytes());
        st.pending.push(b'\n');
        st.handed_in += 1;
        self.wake_locked(st);
    }

    /// Renders `rec` with `format` (in a per-thread buffer) and hands the line in.
    pub fn log(&self, format: &AccessLogFormat, rec: &LogRecord) {
        thread_local! {
            static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        LINE.with(|line| match line.try_borrow_mut() {
            Ok(mut line) => {
                line.clear();
                format.render(rec, &mut line);
                self.write_line(&line);
            }
            Err(_) => {
                let mut line = String::new();
                format.render(rec, &mut line);
                self.write_line(&line);
            }
        });
    }

    /// Blocks until every line handed in before this call has been written.
    pub fn flush(&self) {
        let mut st = self.shared.lock();
        let target = st.handed_in;
        if st.done < target {
            st.flushing = true;
            self.shared.wake.notify_one();
        }
        while st.done < target && !st.gone {
            st = self
                .shared
                .written
                .wait(st)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Makes the thread close and reopen the file before its next write (after logrotate
    /// renamed it). Lines handed in before this call go to the old file or the new one; lines
    /// handed in after it, to the new one. Nothing for stdout and stderr.
    pub fn reopen(&self) {
        let mut st = self.shared.lock();
        st.reopen = true;
        drop(st);
        self.shared.wake.notify_one();
    }

    fn wake_locked(&self, mut st: MutexGuard<'_, State>) {
        if st.idle || st.pending.len() >= WAKE_BYTES {
            st.idle = false;
            drop(st);
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for AccessLogWriter {
    fn drop(&mut self) {
        {
            let mut st = self.shared.lock();
            st.closing = true;
            st.idle = false;
        }
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Marks the thread gone however it ends, so `flush` never waits for a thread that is gone.
struct GoneOnExit(Arc<Shared>);

impl Drop for GoneOnExit {
    fn drop(&mut self) {
        self.0.lock().gone = true;
        self.0.written.notify_all();
    }
}

fn run(shared: Arc<Shared>, mut sink: Sink) {
    let _gone = GoneOnExit(Arc::clone(&shared));
    let mut batch: Vec<u8> = Vec::new();
    let mut seen_hup = SIGHUP_GENERATION.load(Ordering::SeqCst);
    let mut last_check = Instant::now();
    loop {
        let (upto, closing, reopen_asked) = {
            let mut st = shared.lock();
            // Whether the thread has napped since its last batch.
            let mut napped = false;
            loop {
                if st.closing || st.reopen || (!st.pending.is_empty() && (napped || st.flushing)) {
                    break;
                }
                if st.pending.len() >= WAKE_BYTES {
                    break;
                }
                if sink.is_file()
                    && (SIGHUP_GENERATION.load(Ordering::SeqCst) != seen_hup
                        || last_check.elapsed() >= PATH_CHECK_INTERVAL)
                {
                    break;
                }
                if st.pending.is_empty() && napped {
                    // Nothing came during the nap: sleep until a line comes.
                    st.idle = true;
                    st = shared
                        .wake
                        .wait_timeout(st, IDLE_TICK)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                    st.idle = false;
                } else {
                    st = shared
                        .wake
                        .wait_timeout(st, BATCH_INTERVAL)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                    napped = true;
                }
            }
            st.flushing = false;
            mem::swap(&mut batch, &mut st.pending);
            (
                st.handed_in,
                st.closing && st.pending.is_empty(),
                mem::take(&mut st.reopen),
            )
        };
        // The batch is taken before the counter is read: lines handed in after a SIGHUP (or a
        // `reopen()`) always go to the reopened file.
        let generation = SIGHUP_GENERATION.load(Ordering::SeqCst);
        let mut reopen = reopen_asked || generation != seen_hup;
        seen_hup = generation;
        if sink.is_file() && (reopen || last_check.elapsed() >= PATH_CHECK_INTERVAL) {
            last_check = Instant::now();
            reopen = reopen || sink.moved();
        }
        if reopen {
            sink.reopen();
        }
        if !batch.is_empty() {
            sink.write_lines(&batch);
            batch.clear();
            if batch.capacity() > KEEP_CAPACITY {
                batch = Vec::new();
            }
        }
        shared.lock().done = upto;
        shared.written.notify_all();
        if closing {
            return;
        }
    }
}

enum Sink {
    /// fd 1 or 2, borrowed (never closed).
    Std(ManuallyDrop<File>),
    File {
        path: PathBuf,
        file: File,
        /// (st_dev, st_ino) of `file`.
        id: (u64, u64),
        last_error: Option<Instant>,
    },
}

fn open_append(path: &PathBuf) -> io::Result<(File, (u64, u64))> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(path)?;
    let meta = file.metadata()?;
    Ok((file, (meta.dev(), meta.ino())))
}

impl Sink {
    fn open(destination: Destination) -> io::Result<Sink> {
        Ok(match destination {
            // SAFETY: fds 1 and 2 stay owned by the process; ManuallyDrop never closes them.
            Destination::Stdout => Sink::Std(ManuallyDrop::new(unsafe { File::from_raw_fd(1) })),
            Destination::Stderr => Sink::Std(ManuallyDrop::new(unsafe { File::from_raw_fd(2) })),
            Destination::File(path) => {
                let (file, id) = open_append(&path)?;
                Sink::File {
                    path,
                    file,
                    id,
                    last_error: None,
                }
            }
        })
    }

    fn is_file(&self) -> bool {
        matches!(self, Sink::File { .. })
    }

    /// The path no longer names the open file (renamed, removed, replaced).
    fn moved(&self) -> bool {
        match self {
            Sink::Std(_) => false,
            Sink::File { path, id, .. } => match std::fs::metadata(path) {
                Ok(meta) => (meta.dev(), meta.ino()) != *id,
                Err(_) => true,
            },
        }
    }

    /// Reopens the path; on failure keeps writing to the open file and tries again later.
    fn reopen(&mut self) {
        if let Sink::File {
            path,
            file,
            id,
            last_error,
        } = self
        {
            match open_append(path) {
                Ok((new_file, new_id)) => {
                    *file = new_file;
                    *id = new_id;
                }
                Err(e) => report(
                    last_error,
                    format_args!("cannot reopen {}: {e}", path.display()),
                ),
            }
        }
    }

    /// Writes whole lines, in as few `write` calls as the chunk size allows.
    fn write_lines(&mut self, mut data: &[u8]) {
        let limit = if self.is_file() {
            FILE_CHUNK
        } else {
            STD_CHUNK
        };
        while !data.is_empty() {
            let n = chunk_len(data, limit);
            let result = match self {
                Sink::Std(out) => out.write_all(&data[..n]),
                Sink::File { file, .. } => file.write_all(&data[..n]),
            };
            if let Err(e) = result {
                match self {
                    Sink::File {
                        path, last_error, ..
                    } => {
                        let lines = data[..n].iter().filter(|&&b| b == b'\n').count();
                        report(
                            last_error,
                            format_args!("lost {lines} lines writing {}: {e}", path.display()),
                        );
                    }
                    // Nowhere to report a broken stdout or stderr.
                    Sink::Std(_) => {}
                }
            }
            data = &data[n..];
        }
    }
}

/// Bytes of `data` to write at once: everything up to `limit`, cut after a newline; a single
/// line longer than `limit` goes alone.
fn chunk_len(data: &[u8], limit: usize) -> usize {
    if data.len() <= limit {
        return data.len();
    }
    match data[..limit].iter().rposition(|&b| b == b'\n') {
        Some(end) => end + 1,
        None => data[limit..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(data.len(), |end| limit + end + 1),
    }
}

/// An I/O error on stderr, at most once every 10 seconds per file.
fn report(last: &mut Option<Instant>, message: std::fmt::Arguments) {
    if last.map_or(true, |at| at.elapsed() >= Duration::from_secs(10)) {
        *last = Some(Instant::now());
        eprintln!("portico: access log: {message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::path::Path;

    fn full_record() -> LogRecord<'static> {
        static AUTHORIZER: [(&str, &str); 3] = [
            ("user", "alice"),
            ("numKey", "1"),
            ("principalId", "p-from-map"),
        ];
        static CLAIMS: [(&str, &str); 1] = [("sub", "abc-123")];
        LogRecord {
            request_id: "req-1",
            extended_request_id: Some("ext-1"),
            http_method: "GET",
            path: "/prod/pets/7",
            protocol: "HTTP/1.1",
            domain_name: Some("api.example.com"),
            request_time_epoch_ms: 1_583_349_317_135,
            identity: Identity {
                source_ip: "10.0.0.1",
                user_agent: Some("curl/8.0"),
                api_key: Some("key-value"),
                api_key_id: Some("key-id"),
                caller: Some("caller-1"),
                user: Some("user-1"),
                user_arn: Some("arn:aws:iam::123:user/u"),
                account_id: Some("123"),
                access_key: Some("AKIA1"),
                principal_org_id: Some("o-1"),
                cognito_authentication_provider: Some("prov"),
                cognito_authentication_type: Some("authenticated"),
                cognito_identity_id: Some("cid"),
                cognito_identity_pool_id: Some("pool"),
                client_cert: None,
            },
            account_id: Some("000000000000"),
            api_id: Some("abc123"),
            stage: Some("prod"),
            route_key: Some("GET /pets/{id}"),
            resource_path: Some("/pets/{id}"),
            resource_id: Some("r1"),
            base_path_matched: Some("v1"),
            xray_trace_id: Some("Root=1-abc"),
            status: 502,
            response_length: 1234,
            response_latency_ms: 17,
            data_processed: Some(2048),
            error_message: Some("Internal server error"),
            error_response_type: Some("INTEGRATION_FAILURE"),
            error_validation: Some("bad body"),
            integration_status: Some(500),
            integration_service_status: Some(200),
            integration_latency_ms: Some(12),
            integration_error: Some("boom"),
            integration_request_id: Some("lambda-req"),
            response_transfer_mode: Some("STREAMED"),
            authorizer: &AUTHORIZER,
            claims: &CLAIMS,
            authorizer_principal_id: Some("p-1"),
            authorizer_error: Some("denied"),
            authorizer_status: Some(200),
            authorizer_latency_ms: Some(3),
            authorizer_integration_status: Some(201),
            authorizer_integration_latency_ms: Some(2),
            authorizer_request_id: Some("auth-req"),
            authorize_status: Some(200),
            authorize_latency_ms: Some(4),
            authorize_error: Some("nope"),
            connection_id: Some("conn-1"),
            event_type: Some("MESSAGE"),
            message_id: Some("msg-1"),
            connected_at_ms: Some(1_583_349_316_000),
        }
    }

    fn render(format: &str, rec: &LogRecord) -> String {
        let mut out = String::new();
        AccessLogFormat::compile(format).render(rec, &mut out);
        out
    }

    #[test]
    fn client_certificates_are_named_as_aws_names_them() {
        let cert = crate::auth::ClientCert {
            pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
            subject_dn: "CN=client,O=Example".into(),
            issuer_dn: "CN=Example CA".into(),
            serial_number: "a1:b2".into(),
            not_before: "May 28 12:30:02 2019 GMT".into(),
            not_after: "Aug  5 09:36:04 2021 GMT".into(),
        };
        let mut rec = full_record();
        rec.identity.client_cert = Some(&cert);
        let format = "$context.identity.clientCert.subjectDN|$context.identity.clientCert.issuerDN|\
                      $context.identity.clientCert.serialNumber|$context.identity.clientCert.validity.notBefore|\
                      $context.identity.clientCert.validity.notAfter|$context.identity.clientCert.clientCertPem";
        assert_eq!(
            render(format, &rec),
            "CN=client,O=Example|CN=Example CA|a1:b2|May 28 12:30:02 2019 GMT|Aug  5 09:36:04 2021 GMT|\
             -----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n"
        );
        rec.identity.client_cert = None;
        assert_eq!(render("<$context.identity.clientCert.subjectDN>", &rec), "<->");
    }

    #[test]
    fn every_variable_renders_its_field() {
        let rec = full_record();
        let cases: &[(&str, &str)] = &[
            ("accountId", "000000000000"),
            ("apiId", "abc123"),
            ("authorizer.user", "alice"),
            ("authorizer.numKey", "1"),
            ("authorizer.missing", "-"),
            ("authorizer.claims.sub", "abc-123"),
            ("authorizer.claims.email", "-"),
            ("authorizer.claims", "-"),
            ("authorizer.principalId", "p-1"),
            ("authorizer.error", "denied"),
            ("authorizer.status", "200"),
            ("authorizer.latency", "3"),
            ("authorizer.integrationStatus", "201"),
            ("authorizer.integrationLatency", "2"),
            ("authorizer.requestId", "auth-req"),
            ("authorize.error", "nope"),
            ("authorize.latency", "4"),
            ("authorize.status", "200"),
            ("awsEndpointRequestId", "lambda-req"),
            ("awsEndpointRequestId2", "-"),
            ("customDomain.basePathMatched", "v1"),
            ("connectionId", "conn-1"),
            ("connectedAt", "1583349316000"),
            ("eventType", "MESSAGE"),
            ("messageId", "msg-1"),
            ("dataProcessed", "2048"),
            ("domainName", "api.example.com"),
            ("domainPrefix", "api"),
            ("error.message", "Internal server error"),
            ("error.messageString", "\"Internal server error\""),
            ("error.responseType", "INTEGRATION_FAILURE"),
            ("error.validationErrorString", "bad body"),
            ("extendedRequestId", "ext-1"),
            ("integration.responseTransferMode", "STREAMED"),
            ("httpMethod", "GET"),
            ("identity.sourceIp", "10.0.0.1"),
            ("identity.userAgent", "curl/8.0"),
            ("identity.apiKey", "key-value"),
            ("identity.apiKeyId", "key-id"),
            ("identity.caller", "caller-1"),
            ("identity.user", "user-1"),
            ("identity.userArn", "arn:aws:iam::123:user/u"),
            ("identity.accountId", "123"),
            ("identity.accessKey", "AKIA1"),
            ("identity.principalOrgId", "o-1"),
            ("identity.cognitoAuthenticationProvider", "prov"),
            ("identity.cognitoAuthenticationType", "authenticated"),
            ("identity.cognitoIdentityId", "cid"),
            ("identity.cognitoIdentityPoolId", "pool"),
            ("identity.clientCert.subjectDN", "-"),
            ("integration.error", "boom"),
            ("integrationErrorMessage", "boom"),
            ("integration.latency", "12"),
            ("integrationLatency", "12"),
            ("integration.requestId", "lambda-req"),
            ("integration.status", "500"),
            ("integration.integrationStatus", "200"),
            ("integrationStatus", "200"),
            ("path", "/prod/pets/7"),
            ("protocol", "HTTP/1.1"),
            ("requestId", "req-1"),
            ("requestTime", "04/Mar/2020:19:15:17 +0000"),
            ("requestTimeEpoch", "1583349317"),
            ("resourceId", "r1"),
            ("resourcePath", "/pets/{id}"),
            ("responseLatency", "17"),
            ("responseLength", "1234"),
            ("routeKey", "GET /pets/{id}"),
            ("stage", "prod"),
            ("status", "502"),
            ("xrayTraceId", "Root=1-abc"),
            ("wafResponseCode", "-"),
            ("unknownThing", "-"),
        ];
        for (name, want) in cases {
            assert_eq!(
                render(&format!("<$context.{name}>"), &rec),
                format!("<{want}>"),
                "{name}"
            );
        }
    }

    #[test]
    fn websocket_variables() {
        let rec = LogRecord {
            request_id: "r",
            connection_id: Some("BFaT_fALIAMCKug="),
            event_type: Some("MESSAGE"),
            message_id: Some("AAAAmessageid0A="),
            connected_at_ms: Some(1_707_502_303_419),
            route_key: Some("sendmessage"),
            status: 200,
            ..Default::default()
        };
        assert_eq!(
            render("$context.connectionId $context.eventType $context.messageId $context.connectedAt $context.routeKey $context.status", &rec),
            "BFaT_fALIAMCKug= MESSAGE AAAAmessageid0A= 1707502303419 sendmessage 200"
        );
    }

    #[test]
    fn absent_values_print_a_dash() {
        let rec = LogRecord {
            request_id: "r",
            http_method: "GET",
            path: "/",
            protocol: "HTTP/1.1",
            ..Default::default()
        };
        let names = [
            "accountId",
            "apiId",
            "stage",
            "routeKey",
            "resourcePath",
            "resourceId",
            "domainName",
            "domainPrefix",
            "identity.sourceIp",
            "identity.userAgent",
            "identity.caller",
            "identity.user",
            "authorizer.x",
            "authorizer.principalId",
            "authorizer.claims.sub",
            "error.message",
            "error.messageString",
            "error.responseType",
            "integrationStatus",
            "integration.status",
            "integrationLatency",
            "integrationErrorMessage",
            "dataProcessed",
            "xrayTraceId",
            "connectionId",
            "connectedAt",
            "eventType",
            "messageId",
        ];
        for name in names {
            assert_eq!(render(&format!("$context.{name}"), &rec), "-", "{name}");
        }
        // extendedRequestId falls back to requestId; integrationStatus to integration.status.
        assert_eq!(render("$context.extendedRequestId", &rec), "r");
        let rec = LogRecord {
            integration_status: Some(204),
            ..rec
        };
        assert_eq!(
            render(
                "$context.integrationStatus $context.integration.integrationStatus",
                &rec
            ),
            "204 204"
        );
        // principalId found in the authorizer's map when not given on its own.
        let map = [("principalId", "from-map")];
        let rec = LogRecord {
            authorizer: &map,
            ..rec
        };
        assert_eq!(render("$context.authorizer.principalId", &rec), "from-map");
        // Empty strings print "-" too.
        let rec = LogRecord {
            stage: Some(""),
            ..rec
        };
        assert_eq!(render("$context.stage", &rec), "-");
    }

    #[test]
    fn compiles_literals_and_variables() {
        let format =
            AccessLogFormat::compile("a $context.requestId b $context.status$context.stage");
        assert_eq!(
            format.parts,
            vec![
                Part::Lit("a ".into()),
                Part::Var(Var::RequestId),
                Part::Lit(" b ".into()),
                Part::Var(Var::Status),
                Part::Var(Var::Stage),
            ]
        );
        let rec = full_record();
        // Trailing dots stay literal; a bare prefix is literal; other `$` text is literal.
        assert_eq!(render("id=$context.requestId.", &rec), "id=req-1.");
        assert_eq!(
            render("$context. $context.$stageVariables.x $", &rec),
            "$context. $context.$stageVariables.x $"
        );
        // A name runs as long as it can: `statusCode` is not `status`.
        assert_eq!(render("$context.statusCode", &rec), "-");
        assert_eq!(render("$context.status-$context.stage", &rec), "502-prod");
        // The one newline AWS allows at the end is dropped (the writer ends lines).
        assert_eq!(render("$context.requestId\n", &rec), "req-1");
        assert_eq!(render("", &rec), "");
        assert_eq!(render("no variables", &rec), "no variables");
        // Multi-byte text around variables.
        assert_eq!(render("é$context.stageü", &rec), "éprodü");
    }

    #[test]
    fn values_are_not_escaped_except_line_breaks() {
        let rec = LogRecord {
            identity: Identity {
                user_agent: Some("a \"quoted\" \\ agent"),
                ..Default::default()
            },
            error_message: Some("line1\nline2\r"),
            ..full_record()
        };
        assert_eq!(
            render(
                r#"{"ua":"$context.identity.userAgent","err":$context.error.messageString}"#,
                &rec
            ),
            r#"{"ua":"a "quoted" \ agent","err":"line1\nline2\r"}"#
        );
    }

    #[test]
    fn request_time_and_epoch() {
        let at = |ms: u64| LogRecord {
            request_time_epoch_ms: ms,
            ..Default::default()
        };
        assert_eq!(
            render("$context.requestTime", &at(0)),
            "01/Jan/1970:00:00:00 +0000"
        );
        assert_eq!(
            render("$context.requestTime", &at(1_709_164_799_999)),
            "28/Feb/2024:23:59:59 +0000"
        );
        assert_eq!(
            render("$context.requestTime", &at(1_709_164_800_000)),
            "29/Feb/2024:00:00:00 +0000"
        );
        assert_eq!(
            render("$context.requestTime", &at(951_868_800_000)),
            "01/Mar/2000:00:00:00 +0000"
        );
        assert_eq!(
            render("$context.requestTime", &at(4_102_444_799_000)),
            "31/Dec/2099:23:59:59 +0000"
        );
        let rec = at(1_583_349_317_135);
        assert_eq!(render("$context.requestTimeEpoch", &rec), "1583349317");
        let mut out = String::new();
        AccessLogFormat::compile_for("$context.requestTimeEpoch", ApiKind::Rest)
            .render(&rec, &mut out);
        assert_eq!(out, "1583349317135");
    }

    #[test]
    fn default_portico_format() {
        let rec = LogRecord {
            route_key: Some("GET /ok"),
            status: 200,
            ..full_record()
        };
        assert_eq!(
            render(
                "$context.identity.sourceIp - - [$context.requestTime] \"$context.httpMethod $context.routeKey \
                 $context.protocol\" $context.status $context.responseLength $context.requestId",
                &rec
            ),
            "10.0.0.1 - - [04/Mar/2020:19:15:17 +0000] \"GET GET /ok HTTP/1.1\" 200 1234 req-1"
        );
    }

    #[test]
    fn chunks_end_on_line_boundaries() {
        assert_eq!(chunk_len(b"ab\ncd\n", 10), 6);
        assert_eq!(chunk_len(b"ab\ncd\nef\n", 7), 6);
        assert_eq!(chunk_len(b"abcdefgh\nij\n", 4), 9);
        assert_eq!(chunk_len(b"abcdefgh", 4), 8);
    }

    // --- writer

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("portico-access-log-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn lines(path: &Path) -> Vec<String> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                assert!(
                    text.is_empty() || text.ends_with('\n'),
                    "partial last line in {}",
                    path.display()
                );
                text.lines().map(str::to_owned).collect()
            }
            Err(_) => Vec::new(),
        }
    }

    /// Every expected line appears exactly once across `files`.
    fn assert_exactly_once(files: &[&Path], expected: impl IntoIterator<Item = String>) {
        let mut seen = HashSet::new();
        for file in files {
            for line in lines(file) {
                assert!(seen.insert(line.clone()), "duplicate line {line:?}");
            }
        }
        let expected: HashSet<String> = expected.into_iter().collect();
        assert_eq!(seen.len(), expected.len());
        assert_eq!(seen, expected);
    }

    #[test]
    fn many_threads_lose_and_repeat_nothing() {
        let dir = temp_dir("threads");
        let path = dir.join("access.log");
        let writer = Arc::new(AccessLogWriter::open(Destination::File(path.clone())).unwrap());
        let (threads, per_thread) = (8, 5000);
        let pad = "x".repeat(100);
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let writer = Arc::clone(&writer);
                let pad = pad.clone();
                std::thread::spawn(move || {
                    for i in 0..per_thread {
                        writer.write_line(&format!("{t}-{i}-{pad}"));
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        drop(Arc::into_inner(writer).unwrap()); // Drop flushes and joins.
        let expected = (0..threads).flat_map(|t| (0..per_thread).map(move |i| (t, i)));
        assert_exactly_once(&[&path], expected.map(|(t, i)| format!("{t}-{i}-{pad}")));
        // Each thread's lines keep their order.
        let mut last = vec![-1i64; threads];
        for line in lines(&path) {
            let mut fields = line.split('-');
            let t: usize = fields.next().unwrap().parse().unwrap();
            let i: i64 = fields.next().unwrap().parse().unwrap();
            assert!(i > last[t]);
            last[t] = i;
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn flush_waits_for_every_line_handed_in() {
        let dir = temp_dir("flush");
        let path = dir.join("access.log");
        let writer = AccessLogWriter::open(Destination::File(path.clone())).unwrap();
        writer.flush(); // Nothing handed in: returns at once.
        for round in 0..20 {
            for i in 0..50 {
                writer.write_line(&format!("{round}-{i}"));
            }
            writer.flush();
            assert_eq!(lines(&path).len(), (round + 1) * 50);
        }
        let format = AccessLogFormat::compile("$context.requestId $context.status");
        writer.log(
            &format,
            &LogRecord {
                request_id: "via-log",
                status: 201,
                ..Default::default()
            },
        );
        writer.flush();
        assert_eq!(lines(&path).last().unwrap(), "via-log 201");
        drop(writer);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rename_then_reopen_loses_nothing() {
        let dir = temp_dir("reopen");
        let path = dir.join("access.log");
        let rotated = dir.join("access.log.1");
        let writer = Arc::new(AccessLogWriter::open(Destination::File(path.clone())).unwrap());
        let background = {
            let writer = Arc::clone(&writer);
            std::thread::spawn(move || {
                for i in 0..20_000 {
                    writer.write_line(&format!("before-{i}"));
                    if i % 1000 == 0 {
                        std::thread::yield_now();
                    }
                }
            })
        };
        std::thread::sleep(Duration::from_millis(5));
        std::fs::rename(&path, &rotated).unwrap();
        writer.reopen();
        for i in 0..100 {
            writer.write_line(&format!("after-{i}"));
        }
        background.join().unwrap();
        writer.flush();
        let expected = (0..20_000)
            .map(|i| format!("before-{i}"))
            .chain((0..100).map(|i| format!("after-{i}")));
        assert_exactly_once(&[&path, &rotated], expected);
        let new_lines: HashSet<String> = lines(&path).into_iter().collect();
        assert!((0..100).all(|i| new_lines.contains(&format!("after-{i}"))));
        drop(writer);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sighup_reopens_after_install() {
        install_sighup_reopen().unwrap();
        install_sighup_reopen().unwrap(); // Idempotent.
        let dir = temp_dir("sighup");
        let path = dir.join("access.log");
        let rotated = dir.join("access.log.1");
        let writer = AccessLogWriter::open(Destination::File(path.clone())).unwrap();
        writer.write_line("old");
        writer.flush();
        std::fs::rename(&path, &rotated).unwrap();
        // SAFETY: the handler is installed above, so SIGHUP does not end the test process.
        assert_eq!(unsafe { libc::raise(libc::SIGHUP) }, 0);
        writer.write_line("new");
        writer.flush();
        assert_eq!(lines(&rotated), vec!["old".to_owned()]);
        assert_eq!(lines(&path), vec!["new".to_owned()]);
        // Idle: the writer reopens on its own within a tick, creating the file.
        std::fs::rename(&path, &rotated).unwrap();
        assert_eq!(unsafe { libc::raise(libc::SIGHUP) }, 0);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !path.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(path.exists());
        drop(writer);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_moved_file_is_reopened_without_a_signal() {
        let dir = temp_dir("moved");
        let path = dir.join("access.log");
        let rotated = dir.join("access.log.1");
        let writer = AccessLogWriter::open(Destination::File(path.clone())).unwrap();
        writer.write_line("old");
        writer.flush();
        std::fs::rename(&path, &rotated).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !path.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(path.exists(), "not reopened within 5 s");
        writer.write_line("new");
        writer.flush();
        assert_eq!(lines(&rotated), vec!["old".to_owned()]);
        assert_eq!(lines(&path), vec!["new".to_owned()]);
        // Removed outright: recreated too.
        std::fs::remove_file(&path).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !path.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        writer.write_line("again");
        drop(writer);
        assert_eq!(lines(&path), vec!["again".to_owned()]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn file_mode_and_std_destinations() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("mode");
        let path = dir.join("access.log");
        drop(AccessLogWriter::open(Destination::File(path.clone())).unwrap());
        // 0644, less whatever the umask takes away.
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o644, 0);
        assert_eq!(mode & 0o600, 0o600);
        assert!(AccessLogWriter::open(Destination::File(dir.join("no/such/dir/log"))).is_err());
        assert_eq!(Destination::parse("stdout"), Destination::Stdout);
        assert_eq!(Destination::parse("stderr"), Destination::Stderr);
        assert_eq!(
            Destination::parse("/var/log/a.log"),
            Destination::File("/var/log/a.log".into())
        );
        // stdout: opened, flushed and closed without closing fd 1.
        let writer = AccessLogWriter::open(Destination::Stdout).unwrap();
        writer.reopen();
        writer.flush();
        drop(writer);
        assert_ne!(unsafe { libc::fcntl(1, libc::F_GETFD) }, -1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
