//! The core's runtime and its first front door, the edge: hyper's HTTP/1.1 server on the public
//! listener, on a tokio thread of the core's own, running every request through the pipeline.
//!
//! Requests that need the user's Python (Lambda handlers, plugins) are handed to the Python
//! side's threads in process (`crate::invoke`); nothing else touches the GIL.
//!
//! With a TLS configuration (`crate::tls`), each accepted connection makes its handshake first
//! (within `HANDSHAKE_TIMEOUT`), its requests are seen as https, and with mTLS they carry what
//! the truststore said of the client's certificate; a task re-reads the certificate files when
//! they change or on SIGHUP, for the handshakes that follow.
//!
//! Shutdown (`Server::stop`) stops accepting first, lets requests in flight finish (idle
//! keep-alive connections are closed), then ends the runtime; the caller flushes the access logs.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{watch, Notify};

use crate::pipeline::{Connection, Pipeline};
use crate::tls::TlsListener;

/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The first byte of a TLS connection: a handshake record's content type.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// How often the TLS files (and the SIGHUP count) are looked at.
const TLS_RELOAD_CHECK: Duration = Duration::from_secs(1);

/// Connections (edge) and requests (embedded app) in progress; `stop` waits for none.
#[derive(Default)]
pub struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

impl InFlight {
    pub fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.clone())
    }
}

pub struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// The core's runtime thread with the pipeline it serves.
pub struct Server {
    pub pipeline: Arc<Pipeline>,
    handle: tokio::runtime::Handle,
    stopping: watch::Sender<bool>,
    inflight: Arc<InFlight>,
    finish: Mutex<Option<(tokio::sync::oneshot::Sender<Duration>, std::thread::JoinHandle<()>)>>,
}

impl Server {
    pub fn start(pipeline: Arc<Pipeline>) -> std::io::Result<Server> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let inflight = Arc::new(InFlight::default());
        let (finish_tx, finish_rx) = tokio::sync::oneshot::channel::<Duration>();
        let draining = inflight.clone();
        let thread = std::thread::Builder::new()
            .name("portico-core".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let grace = finish_rx.await.unwrap_or(Duration::ZERO);
                    // Requests in flight finish (within the grace period) before the runtime ends.
                    let _ = tokio::time::timeout(grace, async {
                        loop {
                            let idle = draining.idle.notified();
                            if draining.count.load(Ordering::Acquire) == 0 {
                                return;
                            }
                            idle.await;
                        }
                    })
                    .await;
                });
                runtime.shutdown_timeout(Duration::from_millis(100));
            })?;
        if let Some(cluster) = pipeline.gateway.cluster() {
            // Requests are served once the first connection attempt is over (or a second has
            // passed): until then they would be decided on the node's own tables.
            let (told, first) = std::sync::mpsc::channel();
            handle.spawn(cluster.clone().supervise(Some(told)));
            let _ = first.recv_timeout(Duration::from_secs(1));
        }
        let (stopping, _) = watch::channel(false);
        Ok(Server {
            pipeline,
            handle,
            stopping,
            inflight,
            finish: Mutex::new(Some((finish_tx, thread))),
        })
    }

    pub fn inflight(&self) -> &Arc<InFlight> {
        &self.inflight
    }

    /// Run `future` on the core's thread.
    pub fn spawn<F: Future<Output = ()> + Send + 'static>(&self, future: F) {
        self.handle.spawn(future);
    }

    /// Let `@connections` reach the connections of the node's other workers (their sockets in
    /// `relay_dir`, the node's private socket directory) and, in cluster mode, of other nodes
    /// (`crate::websocket::relay`). Once; a later call changes nothing.
    pub fn start_relay(&self, relay_dir: Option<std::path::PathBuf>) -> std::io::Result<()> {
        use crate::websocket::relay::Relay;
        let pipeline = &self.pipeline;
        if pipeline.relay.get().is_some() {
            return Ok(());
        }
        let relay = Arc::new(Relay::new(
            pipeline.websockets.clone(),
            relay_dir,
            pipeline.gateway.cluster().cloned(),
        ));
        relay.start(&self.handle)?;
        let _ = pipeline.relay.set(relay);
        Ok(())
    }

    /// Serve the public `listener` (already bound and listening) until `stop`: with TLS when
    /// `tls` is given, plain HTTP otherwise.
    pub fn listen(&self, listener: std::net::TcpListener, tls: Option<Arc<TlsListener>>) -> std::io::Result<()> {
        listener.set_nonblocking(true)?;
        let listener = {
            let _guard = self.handle.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let pipeline = self.pipeline.clone();
        let stopping = self.stopping.subscribe();
        let inflight = self.inflight.clone();
        if let Some(tls) = &tls {
            self.handle.spawn(watch_tls(tls.clone(), self.stopping.subscribe()));
        }
        self.handle
            .spawn(accept_loop(listener, tls, pipeline, stopping, inflight));
        Ok(())
    }

    /// Stop accepting, let what is in flight finish within `grace`, end the runtime thread.
    /// Blocks the caller until then; later calls return at once.
    pub fn stop(&self, grace: Duration) {
        let _ = self.stopping.send(true);
        if let Some(relay) = self.pipeline.relay.get() {
            relay.stop();
        }
        let finish = self.finish.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((tx, thread)) = finish {
            let _ = tx.send(grace);
            let _ = thread.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop(Duration::ZERO);
    }
}

/// Re-read the TLS files when they change or a SIGHUP comes, until `stop`.
async fn watch_tls(tls: Arc<TlsListener>, mut stopping: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(TLS_RELOAD_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopping.changed() => return,
        }
        let reading = tls.clone();
        let Ok(refreshed) = tokio::task::spawn_blocking(move || reading.refresh()).await else {
            continue;
        };
        match refreshed {
            None => {}
            Some(Ok(loaded)) => {
                eprintln!(
                    "portico: TLS: read {} again; new connections use it",
                    tls.files().certificate.display()
                );
                for warning in &loaded.warnings {
                    eprintln!("portico: TLS: truststore warning: {warning}");
                }
            }
            Some(Err(e)) => eprintln!("portico: TLS: {e}; still serving the previous certificate"),
        }
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<TlsListener>>,
    pipeline: Arc<Pipeline>,
    mut stopping: watch::Receiver<bool>,
    inflight: Arc<InFlight>,
) {
    // Since when accept() fails for want of file descriptors: said once when it starts and once
    // when it ends, since clients meanwhile wait in the listen queue with nothing else to show why.
    let mut out_of_descriptors: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopping.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                if let Some(since) = out_of_descriptors.take() {
                    eprintln!(
                        "portico: edge: accepting connections again after {:.1} s without file descriptors",
                        since.elapsed().as_secs_f64()
                    );
                }
                accepted
            }
            Err(e) => {
                let descriptors = matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE));
                if descriptors && out_of_descriptors.is_none() {
                    out_of_descriptors = Some(Instant::now());
                    eprintln!(
                        "portico: edge: cannot accept connections: {e} (this process's limit: {}); new \
                         connections wait in the listen queue until some close or the limit is raised \
                         (`ulimit -n`, LimitNOFILE= under systemd)",
                        open_files_limit()
                    );
                }
                // Out of descriptors or a connection reset before accept: back off, keep serving.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let pipeline = pipeline.clone();
        let mut stopping = stopping.clone();
        let guard = inflight.enter();
        let tls = tls.clone();
        tokio::task::spawn(async move {
            let Some(tls) = tls else {
                let conn_info = Connection {
                    client_ip: peer.ip(),
                    scheme: "http",
                    client_auth: None,
                };
                serve(stream, conn_info, pipeline, stopping).await;
                drop(guard);
                return;
            };
            // The configuration as it is now: a reload later does not touch this connection.
            let loaded = tls.current();
            let acceptor = tokio_rustls::TlsAcceptor::from(loaded.config.clone());
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, async move {
                // What does not open with a TLS handshake record (plain HTTP on the TLS port) is
                // closed without a word, as a TLS endpoint does.
                let mut first = [0u8; 1];
                match stream.peek(&mut first).await {
                    Ok(1) if first[0] == TLS_HANDSHAKE_RECORD => acceptor.accept(stream).await.ok(),
                    _ => None,
                }
            });
            let stream = tokio::select! {
                done = handshake => match done {
                    Ok(Some(stream)) => stream,
                    // Not TLS, a failed or too slow handshake: closed.
                    _ => return,
                },
                _ = stopping.changed() => return,
            };
            let conn_info = Connection {
                client_ip: peer.ip(),
                scheme: "https",
                client_auth: loaded.client_auth(stream.get_ref().1).map(Arc::new),
            };
            serve(stream, conn_info, pipeline, stopping).await;
            drop(guard);
        });
    }
}

/// RLIMIT_NOFILE's soft limit of this process, for the message above.
fn open_files_limit() -> String {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct it is given, nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return "unknown".to_string();
    }
    format!("{} open files", limit.rlim_cur)
}

/// Serve one connection's requests (HTTP/1.1, keep-alive) until it closes or `stop`.
async fn serve<I>(io: I, conn_info: Connection, pipeline: Arc<Pipeline>, mut stopping: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let pipeline = pipeline.clone();
        let conn_info = conn_info.clone();
        async move {
            let req = req.map(|b| b.map_err(Into::into).boxed());
            Ok::<_, Infallible>(pipeline.handle(req, conn_info).await)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        // A client that shuts its side after sending the request still gets the answer
        // whole, as from nginx (hyper would otherwise abort the response on that EOF).
        .half_close(true)
        .serve_connection(TokioIo::new(io), service)
        // A WebSocket handshake hands the connection over to `crate::pipeline::websocket`.
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stopping.changed() => {
            // Finish the request in progress, then close instead of keeping alive.
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
