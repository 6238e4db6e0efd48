//! The access-log phase: one line per answered request, in the stage's and the gateway's
//! `$context` formats, handed to writers that work off the request path.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;

use crate::access_log::{AccessLogFormat, AccessLogWriter, Destination, LogRecord};
use crate::spec::ApiKind;
use crate::spec::AccessLogSpec;

/// A compiled access log: its format (as each API kind renders it) and the writer of its
/// destination.
pub struct AccessLog {
    http: AccessLogFormat,
    rest: AccessLogFormat,
    writer: Arc<AccessLogWriter>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessLog")
    }
}

impl AccessLog {
    pub fn log(&self, kind: ApiKind, record: &LogRecord<'_>) {
        let format = match kind {
            ApiKind::Http | ApiKind::Websocket => &self.http,
            ApiKind::Rest => &self.rest,
        };
        self.writer.log(format, record);
    }
}

/// The writers of one snapshot's access logs, by destination. A reload makes a successor that
/// takes over the writers whose destination is still used, so no line is lost or reordered.
#[derive(Default)]
pub struct LogSinks {
    writers: HashMap<String, Arc<AccessLogWriter>>,
    inherited: HashMap<String, Arc<AccessLogWriter>>,
}

impl LogSinks {
    pub fn open(&mut self, spec: &AccessLogSpec) -> io::Result<Arc<AccessLog>> {
        let destination = spec.destination.trim();
        let writer = match self.writers.get(destination) {
            Some(w) => w.clone(),
            None => {
                let w = match self.inherited.remove(destination) {
                    Some(w) => w,
                    None => Arc::new(AccessLogWriter::open(match destination {
                        "" => Destination::Stdout,
                        other => Destination::parse(other),
                    })?),
                };
                self.writers.insert(destination.to_owned(), w.clone());
                w
            }
        };
        Ok(Arc::new(AccessLog {
            http: AccessLogFormat::compile_for(&spec.format, ApiKind::Http),
            rest: AccessLogFormat::compile_for(&spec.format, ApiKind::Rest),
            writer,
        }))
    }

    /// Sinks for the next snapshot, reusing these writers where destinations stay.
    pub fn successor(&self) -> LogSinks {
        LogSinks {
            writers: HashMap::new(),
            inherited: self.writers.clone(),
        }
    }

    pub fn flush(&self) {
        for w in self.writers.values() {
            w.flush();
        }
    }
}
