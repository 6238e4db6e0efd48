//! Bodies as the pipeline moves them: one boxed type for requests and responses of both front
//! doors, the payload limit on request bodies, and a response body that reports when it ends.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, SizeHint};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body whose every read must make progress within `timeout`: a stalled peer is cut (with an
/// error, and `stalled` set), a slow one is not. The timer moves on only when it fires, not on
/// every frame. Used for upstream responses (`timeoutInMillis`) and for request bodies
/// (`settings.bodyTimeoutMillis`).
pub struct Idle<B> {
    inner: B,
    timeout: std::time::Duration,
    progress: tokio::time::Instant,
    deadline: Pin<Box<tokio::time::Sleep>>,
    stalled: Option<Arc<AtomicBool>>,
    /// When the whole body must have ended (a streamed response's integration timeout).
    until: Option<tokio::time::Instant>,
}

impl<B> Idle<B> {
    pub fn new(inner: B, timeout: std::time::Duration, stalled: Option<Arc<AtomicBool>>) -> Self {
        Idle {
            inner,
            timeout,
            progress: tokio::time::Instant::now(),
            deadline: Box::pin(tokio::time::sleep(timeout)),
            stalled,
            until: None,
        }
    }

    /// Each read within `idle`, and the whole body over by `until`: past either, the body fails.
    pub fn within(inner: B, idle: std::time::Duration, until: tokio::time::Instant) -> Self {
        let now = tokio::time::Instant::now();
        Idle {
            inner,
            timeout: idle,
            progress: now,
            deadline: Box::pin(tokio::time::sleep_until((now + idle).min(until))),
            stalled: None,
            until: Some(until),
        }
    }
}

impl<B> Body for Idle<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.until.is_some_and(|until| until <= tokio::time::Instant::now()) {
            return Poll::Ready(Some(Err("the stream passed its integration timeout".into())));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.progress = tokio::time::Instant::now();
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => loop {
                match this.deadline.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) => {
                        let idle_due = this.progress + this.timeout;
                        let due = this.until.map_or(idle_due, |until| idle_due.min(until));
                        if due <= tokio::time::Instant::now() {
                            if let Some(flag) = &this.stalled {
                                flag.store(true, Ordering::Relaxed);
                            }
                            // An error aborts the exchange: never a truncated body passed off
                            // as whole.
                            return Poll::Ready(Some(Err("body read timed out".into())));
                        }
                        this.deadline.as_mut().reset(due);
                    }
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
/// A response body held to a bandwidth: the first `free` bytes as fast as they come, the rest at
/// `rate` bytes a second (a chunk is passed on once the bytes before its end may have been sent).
pub struct Paced<B> {
    inner: B,
    free: u64,
    rate: u64,
    sent: u64,
    /// When the first `free` bytes were used up.
    since: Option<tokio::time::Instant>,
    /// A chunk read, waiting for its time.
    held: Option<(Frame<Bytes>, Pin<Box<tokio::time::Sleep>>)>,
}

impl<B> Paced<B> {
    pub fn new(inner: B, free: u64, rate: u64) -> Self {
        Paced {
            inner,
            free,
            rate: rate.max(1),
            sent: 0,
            since: None,
            held: None,
        }
    }
}

impl<B> Body for Paced<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some((_, wait)) = &mut this.held {
            if wait.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let (frame, _) = this.held.take().expect("held just now");
            return Poll::Ready(Some(Ok(frame)));
        }
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(other) => return Poll::Ready(other.map(|f| f.map_err(Into::into))),
            Poll::Pending => return Poll::Pending,
        };
        this.sent += frame.data_ref().map_or(0, |d| d.len() as u64);
        if this.sent <= this.free {
            return Poll::Ready(Some(Ok(frame)));
        }
        let now = tokio::time::Instant::now();
        let since = *this.since.get_or_insert(now);
        let paced = this.sent - this.free;
        let due = since + std::time::Duration::from_nanos(paced.saturating_mul(1_000_000_000) / this.rate);
        if due <= now {
            return Poll::Ready(Some(Ok(frame)));
        }
        let mut wait = Box::pin(tokio::time::sleep_until(due));
        if wait.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Ok(frame)));
        }
        this.held = Some((frame, wait));
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none() && self.inner.is_end_stream()
    }
}

/// Every body the pipeline handles: the edge's and the embedded app's requests, every response.
pub type PipelineBody = BoxBody<Bytes, BoxError>;

pub fn empty() -> PipelineBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

pub fn full(bytes: impl Into<Bytes>) -> PipelineBody {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// A body that yields `data`, then fails with `error`: what was read of a body that failed.
pub fn failed(data: Bytes, error: BoxError) -> PipelineBody {
    Failed {
        data: (!data.is_empty()).then_some(data),
        error: Some(error),
    }
    .boxed()
}

struct Failed {
    data: Option<Bytes>,
    error: Option<BoxError>,
}

impl Body for Failed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.error.take().map(Err))
    }
}


/// A body that yields `frames`, then what `rest` yields: a body whose start was read already.
pub fn prefixed(frames: Vec<Frame<Bytes>>, rest: PipelineBody) -> PipelineBody {
    Prefixed {
        frames: frames.into(),
        rest,
    }
    .boxed()
}

struct Prefixed {
    frames: std::collections::VecDeque<Frame<Bytes>>,
    rest: PipelineBody,
}

impl Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(frame) = self.frames.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && self.rest.is_end_stream()
    }
}

/// Why a request body could not be read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// It passed the payload limit: AWS's 413.
    TooLarge,
    /// Its framing was broken (a malformed chunked encoding, data past a chunk's size), or it
    /// ended early (the client went away): 400, as AWS and nginx answer a malformed request.
    Broken,
}

/// What became of a request body read through a `LimitedBody`: set as it fails, read once the
/// integration has answered (or failed), so that the answer names the client's fault rather
/// than an integration failure.
#[derive(Debug, Default)]
pub struct BodyState {
    over: AtomicBool,
    broken: AtomicBool,
}

impl BodyState {
    /// Why the body failed, if it did.
    pub fn error(&self) -> Option<BodyError> {
        if self.over.load(Ordering::Relaxed) {
            Some(BodyError::TooLarge)
        } else if self.broken.load(Ordering::Relaxed) {
            Some(BodyError::Broken)
        } else {
            None
        }
    }
}

/// A request body cut (with an error) once it passes the payload limit; its `BodyState` tells
/// why it failed (over the limit, or broken by the client).
pub struct LimitedBody {
    inner: PipelineBody,
    left: u64,
    state: Arc<BodyState>,
}

impl LimitedBody {
    pub fn new(inner: PipelineBody, limit: u64) -> (LimitedBody, Arc<BodyState>) {
        let state = Arc::new(BodyState::default());
        (
            LimitedBody {
                inner,
                left: limit,
                state: state.clone(),
            },
            state,
        )
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let size = frame.data_ref().map_or(0, |d| d.len() as u64);
                if size > this.left {
                    this.state.over.store(true, Ordering::Relaxed);
                    return Poll::Ready(Some(Err("request body over the payload limit".into())));
                }
                this.left -= size;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                // The front door could not read the body: its framing is broken, or the client
                // went away.
                this.state.broken.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(e)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Read a whole request body (for integrations that need it whole, as Lambda does).
pub async fn read_all(body: PipelineBody, limit: u64) -> Result<Bytes, BodyError> {
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    let (limited, state) = LimitedBody::new(body, limit);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(_) => Err(state.error().unwrap_or(BodyError::Broken)),
    }
}

/// Read a request body to its end and drop it (for integrations that answer without it, as
/// MOCK does): the request is answered only once it has arrived whole and within `limit`.
pub async fn drain(body: PipelineBody, limit: u64) -> Result<(), BodyError> {
    if body.is_end_stream() {
        return Ok(());
    }
    let (mut limited, state) = LimitedBody::new(body, limit);
    while let Some(frame) = limited.frame().await {
        if frame.is_err() {
            return Err(state.error().unwrap_or(BodyError::Broken));
        }
    }
    Ok(())
}

/// A request body that, dropped before its end, leaves what is unread in `Leftover` instead of
/// dropping it: the pipeline answers some requests before reading their body (an unknown route, a
/// refusal, an upstream's early answer), and hyper closes a connection whose request body was not
/// read to its end. A client still uploading then gets a reset instead of the answer. Draining the
/// leftover (within the payload limit and the body timeout) keeps the answer and the connection,
/// as nginx's lingering close and AWS's buffering front end do.
pub struct Reclaimable {
    inner: Option<PipelineBody>,
    /// The body ended (or failed): nothing to reclaim.
    finished: bool,
    leftover: Leftover,
}

/// Where a `Reclaimable` leaves the unread rest of its body.
#[derive(Clone, Default)]
pub struct Leftover(Arc<std::sync::Mutex<Option<PipelineBody>>>);

impl Leftover {
    pub fn take(&self) -> Option<PipelineBody> {
        self.0.lock().ok()?.take()
    }
}

impl Reclaimable {
    pub fn new(inner: PipelineBody) -> (Reclaimable, Leftover) {
        let leftover = Leftover::default();
        let body = Reclaimable {
            inner: Some(inner),
            finished: false,
            leftover: leftover.clone(),
        };
        (body, leftover)
    }
}

impl Body for Reclaimable {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.finished = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map(|b| b.size_hint()).unwrap_or_else(|| SizeHint::with_exact(0))
    }
}

impl Drop for Reclaimable {
    fn drop(&mut self) {
        if let Some(body) = self.inner.take() {
            if !self.finished && !body.is_end_stream() {
                if let Ok(mut slot) = self.leftover.0.lock() {
                    *slot = Some(body);
                }
            }
        }
    }
}

/// A response body that calls `done(bytes sent, completed)` once, when it ends, fails or is
/// dropped (the client went away): where the access-log line is written.
pub struct Reported<F: FnOnce(u64, bool) + Send + 'static> {
    inner: PipelineBody,
    sent: u64,
    done: Option<F>,
}

impl<F: FnOnce(u64, bool) + Send + 'static> Reported<F> {
    pub fn new(inner: PipelineBody, done: F) -> Self {
        Reported {
            inner,
            sent: 0,
            done: Some(done),
        }
    }

    fn finish(&mut self, completed: bool) {
        if let Some(done) = self.done.take() {
            done(self.sent, completed);
        }
    }
}

impl<F: FnOnce(u64, bool) + Send + Unpin + 'static> Body for Reported<F> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                this.sent += frame.data_ref().map_or(0, |d| d.len() as u64);
                if this.inner.is_end_stream() {
                    this.finish(true);
                }
            }
            Poll::Ready(Some(Err(_))) => this.finish(false),
            Poll::Ready(None) => this.finish(true),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<F: FnOnce(u64, bool) + Send + 'static> Drop for Reported<F> {
    fn drop(&mut self) {
        let completed = self.inner.is_end_stream();
        if let Some(done) = self.done.take() {
            done(self.sent, completed);
        }
    }
}

/// A response body fed chunk by chunk from another thread (the Python side); an `Err` chunk
/// aborts the connection, so the client never mistakes a truncated body for a whole one.
pub struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, String>>,
    done: bool,
}

impl ChannelBody {
    pub fn new(rx: tokio::sync::mpsc::Receiver<Result<Bytes, String>>) -> Self {
        ChannelBody { rx, done: false }
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(chunk))) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
            Poll::Ready(Some(Err(why))) => {
                self.done = true;
                Poll::Ready(Some(Err(why.into())))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request body of these chunks, as a front door feeds it (an `Err` is a broken read).
    fn body_of(chunks: &[Result<&'static str, &'static str>]) -> PipelineBody {
        let (tx, rx) = tokio::sync::mpsc::channel(chunks.len().max(1));
        for chunk in chunks {
            tx.try_send(chunk.map(|c| Bytes::from_static(c.as_bytes())).map_err(str::to_owned)).unwrap();
        }
        ChannelBody::new(rx).boxed()
    }

    #[test]
    fn a_body_is_read_whole_or_its_fault_is_named() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            assert_eq!(drain(body_of(&[Ok("ab"), Ok("cd")]), 4).await, Ok(()));
            assert_eq!(drain(body_of(&[Ok("ab"), Ok("cde")]), 4).await, Err(BodyError::TooLarge));
            assert_eq!(drain(body_of(&[Ok("ab"), Err("bad chunk size")]), 4).await, Err(BodyError::Broken));
            assert_eq!(drain(empty(), 0).await, Ok(()));
            assert_eq!(read_all(body_of(&[Ok("ab"), Ok("c")]), 4).await, Ok(Bytes::from_static(b"abc")));
            assert_eq!(read_all(body_of(&[Ok("abcde")]), 4).await, Err(BodyError::TooLarge));
            assert_eq!(read_all(body_of(&[Err("the client went away")]), 4).await, Err(BodyError::Broken));
        });
    }

    #[test]
    fn the_state_tells_over_the_limit_from_broken() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let (limited, state) = LimitedBody::new(body_of(&[Ok("ab"), Err("bad chunk size")]), 10);
            assert!(limited.collect().await.is_err());
            assert_eq!(state.error(), Some(BodyError::Broken));
            let (limited, state) = LimitedBody::new(body_of(&[Ok("ab")]), 10);
            assert!(limited.collect().await.is_ok());
            assert_eq!(state.error(), None);
        });
    }
}
