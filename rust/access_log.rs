//! Interim access-log formatter and writer (replaced by the batching writer thread).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Mutex;

#[derive(Default)]
pub struct LogRecord<'a> {
    pub request_id: &'a str,
    pub api_id: &'a str,
    pub stage: &'a str,
    pub route_key: &'a str,
    pub http_method: &'a str,
    pub path: &'a str,
    pub protocol: &'a str,
    pub status: u16,
    pub response_length: u64,
    pub response_latency_ms: u64,
    pub request_time_epoch_ms: u64,
    pub source_ip: &'a str,
    pub user_agent: &'a str,
    pub domain_name: &'a str,
    pub error_message: &'a str,
}

enum Part {
    Text(String),
    Var(String),
}

pub struct AccessLogFormat {
    parts: Vec<Part>,
}

impl AccessLogFormat {
    pub fn compile(format: &str) -> AccessLogFormat {
        let mut parts = Vec::new();
        let mut rest = format;
        while let Some(i) = rest.find("$context.") {
            parts.push(Part::Text(rest[..i].to_string()));
            let after = &rest[i + 9..];
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .unwrap_or(after.len());
            parts.push(Part::Var(after[..end].to_string()));
            rest = &after[end..];
        }
        parts.push(Part::Text(rest.to_string()));
        AccessLogFormat { parts }
    }

    pub fn render(&self, r: &LogRecord<'_>, out: &mut String) {
        use std::fmt::Write as _;
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => {
                    let _ = match v.as_str() {
                        "requestId" | "extendedRequestId" => write!(out, "{}", r.request_id),
                        "apiId" => write!(out, "{}", r.api_id),
                        "stage" => write!(out, "{}", r.stage),
                        "routeKey" => write!(out, "{}", r.route_key),
                        "httpMethod" => write!(out, "{}", r.http_method),
                        "path" => write!(out, "{}", r.path),
                        "protocol" => write!(out, "{}", r.protocol),
                        "status" => write!(out, "{}", r.status),
                        "responseLength" => write!(out, "{}", r.response_length),
                        "responseLatency" => write!(out, "{}", r.response_latency_ms),
                        "requestTimeEpoch" => write!(out, "{}", r.request_time_epoch_ms),
                        "identity.sourceIp" => write!(out, "{}", r.source_ip),
                        "identity.userAgent" => write!(out, "{}", r.user_agent),
                        "domainName" => write!(out, "{}", r.domain_name),
                        "integrationErrorMessage" | "error.messageString" => {
                            write!(out, "{}", r.error_message)
                        }
                        _ => write!(out, "-"),
                    };
                }
            }
        }
    }
}

pub enum Destination {
    Stdout,
    Stderr,
    File(PathBuf),
}

pub struct AccessLogWriter {
    destination: Destination,
    file: Mutex<Option<File>>,
}

impl AccessLogWriter {
    pub fn open(destination: Destination) -> io::Result<AccessLogWriter> {
        let file = match &destination {
            Destination::File(p) => Some(OpenOptions::new().create(true).append(true).open(p)?),
            _ => None,
        };
        Ok(AccessLogWriter {
            destination,
            file: Mutex::new(file),
        })
    }

    pub fn write_line(&self, mut line: String) {
        line.push('\n');
        let _ = match &self.destination {
            Destination::Stdout => io::stdout().write_all(line.as_bytes()),
            Destination::Stderr => io::stderr().write_all(line.as_bytes()),
            Destination::File(_) => match self.file.lock().unwrap().as_mut() {
                Some(f) => f.write_all(line.as_bytes()),
                None => Ok(()),
            },
        };
    }

    pub fn flush(&self) {}

    pub fn reopen(&self) {}
}
