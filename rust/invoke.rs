//! The hand-off to the Python side: where the pipeline calls the user's code (Lambda handlers,
//! plugins) and waits for the answer without holding a thread or the GIL.
//!
//! The pipeline queues a `Call` and awaits a oneshot `Reply`. Python threads, started and grown
//! by the Python side (`portico/serve/user_code.py`), block in `next_job` with the GIL released
//! and run one call at a time; busy threads take the next call without sleeping.
//!
//! A queued call wakes an idle thread only when no thread is working (and an idle thread is left
//! for each waiting call): a working thread takes the next call as soon as it is done, without a
//! hand-off. When calls wait and the threads make no
//! progress (none took a call for `STALL`: a handler is slow or blocked), the supervisor wakes an
//! idle thread, or has the Python side start another, up to `max_threads`. So a slow handler never
//! delays another for much longer than `STALL`, and quick handlers keep to the one thread that
//! keeps up with them: every extra runnable thread would contend for the GIL (measured: 33
//! threads for 32 concurrent trivial calls instead of one cost a third of the throughput).
//!
//! One function cannot take the capacity of the others: each Lambda call counts against its
//! function's concurrency limit from the moment it is queued until the Python side is done with
//! it, which for a handler that outlives its timeout is when the handler returns (a Python thread
//! cannot be stopped). A call past the limit is refused at once, without Python, as Lambda
//! throttles an invocation past a function's reserved concurrency
//! (<https://docs.aws.amazon.com/lambda/latest/dg/lambda-concurrency.html>). So a hung function
//! holds at most its limit of threads, and the queue holds at most the limits' sum of calls.
//! Queued calls whose caller has gone (timed out, disconnected) are dropped, never run.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::pipeline::responses::ErrorType;
use tokio::sync::{mpsc, oneshot};

/// An `AWS_PROXY` invocation: the function URI (stage variables filled in), the event as JSON.
#[derive(Debug)]
pub struct LambdaCall {
    /// The invocation's id (`context.aws_request_id`).
    pub invocation_id: String,
    pub uri: Box<str>,
    pub event: Vec<u8>,
    pub timeout_ms: u64,
    pub region: Box<str>,
    pub account_id: Box<str>,
}

/// A request as a plugin sees it (`portico.dataplane.context.RequestContext`).
#[derive(Debug, Default)]
pub struct PluginRequest {
    pub request_id: String,
    pub method: String,
    pub raw_path: String,
    pub path: String,
    pub raw_query: String,
    pub headers: Vec<(Bytes, Bytes)>,
    pub host: String,
    pub scheme: &'static str,
    pub protocol: &'static str,
    pub client_ip: String,
    pub time_epoch_ms: u64,
    pub account_id: String,
    pub api_id: String,
    pub api_name: String,
    pub api_kind: &'static str,
    pub stage: String,
    pub deployment_id: String,
    pub is_canary: bool,
    pub stage_variables: Vec<(String, String)>,
    pub route_key: String,
    pub resource_path: String,
    pub path_params: Vec<(String, String)>,
}

/// A response handed to or from Python.
#[derive(Debug)]
pub struct PluginResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: ReplyBody,
}

#[derive(Debug)]
pub enum ReplyBody {
    Bytes(Bytes),
    /// Chunks sent by Python as it produces them; an `Err` aborts the response.
    Stream(mpsc::Receiver<Result<Bytes, String>>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    OnRequest,
    OnResponse,
}

/// A mapping template holding VTL, to render on the Python side (`portico/serve/templates.py`):
/// its source text (compiled there once, by this text) and the `TemplateInput` as JSON.
#[derive(Debug)]
pub struct RenderCall {
    pub source: Arc<str>,
    pub input: Vec<u8>,
}

/// A rendered template: its output and its overrides (a JSON object), or why it failed.
#[derive(Debug)]
pub struct RenderedTemplate {
    pub output: String,
    pub overrides: Vec<u8>,
}

#[derive(Debug)]
pub enum Call {
    Lambda(LambdaCall),
    /// An `AWS_PROXY` call of a streaming integration (`responseTransferMode: STREAM`): a handler
    /// that returns a generator answers with `Reply::LambdaStream`, any other as `Lambda` does.
    LambdaStream(LambdaCall),
    /// A REST mapping template (`crate::pipeline::mapping`).
    Render(RenderCall),
    Plugin {
        hook: Hook,
        request: Arc<PluginRequest>,
        /// The integration's response (`OnResponse` only).
        response: Option<PluginResponse>,
    },
}

/// How a Lambda call failed.
#[derive(Debug)]
pub struct LambdaError {
    /// The gateway response an integration answers with (`FUNCTION_ERROR`, ...).
    pub error: ErrorType,
    /// Why, for the log.
    pub detail: String,
    /// Lambda's `errorMessage` when the handler raised: what a Lambda authorizer's
    /// `Unauthorized` is recognised by.
    pub error_message: Option<String>,
    /// When the handler raised: the error as Lambda's Invoke returns it
    /// (`{"errorMessage", "errorType", "requestId", "stackTrace"}`), what a non-proxy (`AWS`)
    /// integration selects its response by and passes on.
    pub error_payload: Option<Vec<u8>>,
}

/// A streaming handler's answer: its metadata, then its body as it produces it.
#[derive(Debug)]
pub struct LambdaStream {
    /// The metadata as JSON (`statusCode`, `headers`, `multiValueHeaders`, `cookies`).
    pub metadata: Vec<u8>,
    /// The body's chunks; an `Err` is the handler failing mid-way. The channel is bounded: a
    /// slow client holds the handler back. Dropping the receiver stops the handler.
    pub body: mpsc::Receiver<Result<Bytes, String>>,
}

#[derive(Debug)]
pub enum Reply {
    /// The handler's result as JSON, or how and why the function failed.
    Lambda(Result<Vec<u8>, LambdaError>),
    /// A streaming handler's answer (`Call::LambdaStream` only).
    LambdaStream(LambdaStream),
    /// `on_request` returned None: go on.
    Continue,
    /// The response to send.
    Respond(PluginResponse),
    /// A plugin raised: the gateway response to answer with, and why.
    Failed(ErrorType, String),
    /// A mapping template's output, or why it could not be rendered.
    Rendered(Result<RenderedTemplate, String>),
}

/// One queued call and where its reply goes. Dropping it unanswered fails the call.
pub struct Job {
    pub call: Call,
    replier: Replier,
}

impl Job {
    pub fn reply(self, reply: Reply) {
        self.replier.reply(reply);
    }

    /// Split into the call and a replier, for calls whose arguments are moved out first.
    pub fn into_parts(self) -> (Call, Replier) {
        (self.call, self.replier)
    }

    /// The caller stopped waiting (it timed out, or its client went away).
    fn abandoned(&self) -> bool {
        self.replier.tx.is_closed()
    }
}

/// Where a call's reply goes. While it lives, the call counts against its function's limit.
pub struct Replier {
    tx: oneshot::Sender<Reply>,
    _in_flight: Option<InFlight>,
}

impl Replier {
    pub fn reply(self, reply: Reply) {
        let _ = self.tx.send(reply);
    }

    /// Reply, the call still counting against its function's concurrency until the returned
    /// hold is dropped: a streaming handler runs on after its answer has begun.
    pub fn reply_holding(self, reply: Reply) -> Held {
        let _ = self.tx.send(reply);
        Held {
            _in_flight: self._in_flight,
        }
    }
}

/// A call's place in its function's concurrency, kept while its handler streams.
pub struct Held {
    _in_flight: Option<InFlight>,
}

/// One call in flight of a function: counted while it lives.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A Lambda call refused because its function has `limit` calls in flight already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub limit: usize,
}

/// How long queued calls wait on threads that take none before another thread is put to work.
/// Longer than a scheduler time slice, so that a thread the OS merely preempted is not taken for
/// a blocked one.
pub const STALL: Duration = Duration::from_millis(10);

/// An idle thread beyond the first exits after this long without a call: the threads a burst or
/// a hung function needed are given back once it is over.
pub const IDLE_EXIT: Duration = Duration::from_secs(60);

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    idle: usize,
    threads: usize,
    /// Calls taken so far: progress, as the supervisor sees it.
    taken: u64,
    closed: bool,
    /// Lambda calls in flight, by function name.
    in_flight: HashMap<Box<str>, Arc<AtomicUsize>>,
}

pub struct Invoker {
    state: Mutex<State>,
    work: Condvar,
    grow: Condvar,
    max_threads: usize,
    idle_exit: Duration,
}

impl Invoker {
    pub fn new(max_threads: usize) -> Invoker {
        Invoker::with_idle_exit(max_threads, IDLE_EXIT)
    }

    pub fn with_idle_exit(max_threads: usize, idle_exit: Duration) -> Invoker {
        Invoker {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            grow: Condvar::new(),
            max_threads: max_threads.max(1),
            idle_exit,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `call`; the reply arrives on the receiver (an error if it is dropped unanswered).
    pub fn call(&self, call: Call) -> oneshot::Receiver<Reply> {
        let mut st = self.lock();
        self.enqueue(&mut st, call, None)
    }

    /// Queue a call of `function`, unless it has `limit` calls in flight already.
    pub fn call_function(
        &self,
        call: LambdaCall,
        function: &str,
        limit: usize,
    ) -> Result<oneshot::Receiver<Reply>, Throttled> {
        self.call_counted(Call::Lambda(call), function, limit)
    }

    fn call_counted(&self, call: Call, function: &str, limit: usize) -> Result<oneshot::Receiver<Reply>, Throttled> {
        let mut st = self.lock();
        let count = match st.in_flight.get(function) {
            Some(count) => count.clone(),
            None => {
                let count = Arc::new(AtomicUsize::new(0));
                st.in_flight.insert(function.into(), count.clone());
                count
            }
        };
        // Decrements happen outside the lock, so the count only errs towards allowing.
        if count.load(Ordering::Acquire) >= limit {
            return Err(Throttled { limit });
        }
        count.fetch_add(1, Ordering::AcqRel);
        Ok(self.enqueue(&mut st, call, Some(InFlight(count))))
    }

    /// As `call_function`, for a streaming integration (`Call::LambdaStream`).
    pub fn call_function_streaming(
        &self,
        call: LambdaCall,
        function: &str,
        limit: usize,
    ) -> Result<oneshot::Receiver<Reply>, Throttled> {
        self.call_counted(Call::LambdaStream(call), function, limit)
    }

    fn enqueue(&self, st: &mut State, call: Call, in_flight: Option<InFlight>) -> oneshot::Receiver<Reply> {
        let (tx, rx) = oneshot::channel();
        if st.closed {
            return rx; // tx dropped: the caller sees the Python side gone
        }
        st.queue.push_back(Job {
            call,
            replier: Replier {
                tx,
                _in_flight: in_flight,
            },
        });
        let working = st.threads - st.idle;
        // Wake an idle thread when none is working and there is one for each waiting call (a
        // thread woken for an earlier call is still counted idle until it runs). Otherwise a
        // working thread takes the call when done and the supervisor watches for a stall: two
        // calls queued at once for one idle thread must not leave the second waiting on the first
        // (a hung handler would hold it for as long as it hangs).
        if working == 0 && st.idle > 0 && st.queue.len() <= st.idle {
            self.work.notify_one();
        } else {
            self.grow.notify_one();
        }
        rx
    }

    /// The next call, waiting for one (a Python thread calls this with the GIL released); None
    /// once closed, or when the thread should exit (idle for `idle_exit`, and not the last).
    pub fn next_job(&self) -> Option<Job> {
        let mut st = self.lock();
        loop {
            while let Some(job) = st.queue.pop_front() {
                st.taken += 1;
                if job.abandoned() {
                    continue; // nobody waits for it: do not run the user's code for nothing
                }
                return Some(job);
            }
            if st.closed {
                st.threads = st.threads.saturating_sub(1);
                return None;
            }
            st.idle += 1;
            let (guard, waited) = self
                .work
                .wait_timeout(st, self.idle_exit)
                .unwrap_or_else(|e| e.into_inner());
            st = guard;
            st.idle -= 1;
            if waited.timed_out() && st.queue.is_empty() && st.threads > 1 {
                st.threads -= 1;
                return None;
            }
        }
    }

    /// For the Python side's supervisor: watch the queue while calls wait; wake an idle thread,
    /// or return true to have another started (counted as started), when the threads took no call
    /// for `STALL`; false once closed.
    pub fn wait_for_growth(&self) -> bool {
        let mut st = self.lock();
        // The progress count last seen, and since when it has not moved.
        let mut seen: Option<(u64, Instant)> = None;
        loop {
            if st.closed {
                return false;
            }
            if st.queue.is_empty() {
                seen = None;
                st = self.grow.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            if st.threads == 0 {
                st.threads += 1;
                return true;
            }
            let now = Instant::now();
            match seen {
                Some((taken, since)) if taken == st.taken => {
                    if now.duration_since(since) >= STALL {
                        seen = Some((taken, now));
                        // Calls nobody waits for any more need no thread.
                        st.queue.retain(|job| !job.abandoned());
                        if st.queue.is_empty() {
                            continue;
                        }
                        if st.idle > 0 {
                            self.work.notify_one();
                        } else if st.threads < self.max_threads {
                            st.threads += 1;
                            return true;
                        }
                    }
                }
                _ => seen = Some((st.taken, now)),
            }
            st = self.grow.wait_timeout(st, STALL).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Stop handing out calls: queued ones fail, waiting threads and the supervisor return.
    pub fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        st.queue.clear();
        drop(st);
        self.work.notify_all();
        self.grow.notify_all();
    }

    /// (threads, idle threads, queued calls), for tests and metrics.
    pub fn stats(&self) -> (usize, usize, usize) {
        let st = self.lock();
        (st.threads, st.idle, st.queue.len())
    }

    /// Calls of `function` in flight: queued, or taken and not yet answered.
    pub fn in_flight(&self, function: &str) -> usize {
        self.lock().in_flight.get(function).map_or(0, |c| c.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lambda_call() -> Call {
        Call::Lambda(LambdaCall {
            invocation_id: "i".into(),
            uri: "f".into(),
            event: b"{}".to_vec(),
            timeout_ms: 1000,
            region: "us-east-1".into(),
            account_id: "1".into(),
        })
    }

    #[test]
    fn a_call_with_no_idle_thread_asks_for_one_and_a_thread_answers_it() {
        let invoker = Arc::new(Invoker::new(4));
        let rx = invoker.call(lambda_call());
        assert!(invoker.wait_for_growth());
        let worker = invoker.clone();
        let t = std::thread::spawn(move || {
            let job = worker.next_job().unwrap();
            job.reply(Reply::Lambda(Ok(b"42".to_vec())));
            worker.next_job().is_none()
        });
        match rx.blocking_recv().unwrap() {
            Reply::Lambda(Ok(v)) => assert_eq!(v, b"42"),
            other => panic!("{other:?}"),
        }
        invoker.close();
        assert!(t.join().unwrap());
        assert!(!invoker.wait_for_growth());
    }

    #[test]
    fn growth_stops_at_the_maximum_and_dropped_jobs_fail_their_call() {
        let invoker = Invoker::new(2);
        let calls: Vec<_> = (0..5).map(|_| invoker.call(lambda_call())).collect();
        // The first thread at once; the second once the first took nothing for a while.
        assert!(invoker.wait_for_growth());
        let started = std::time::Instant::now();
        assert!(invoker.wait_for_growth());
        assert!(started.elapsed() >= STALL);
        assert_eq!(invoker.stats(), (2, 0, 5));
        drop(invoker.next_job());
        let mut calls = calls.into_iter();
        assert!(calls.next().unwrap().blocking_recv().is_err());
        invoker.close();
        assert!(calls.next().unwrap().blocking_recv().is_err());
    }

    #[test]
    fn two_calls_for_one_idle_thread_get_a_second_thread_when_the_first_hangs() {
        let invoker = Arc::new(Invoker::new(4));
        // One thread, idle.
        let first = invoker.call(lambda_call());
        assert!(invoker.wait_for_growth());
        invoker.next_job().unwrap().reply(Reply::Lambda(Ok(b"1".to_vec())));
        assert!(first.blocking_recv().is_ok());
        let worker = invoker.clone();
        let (hung_tx, hung_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            // Takes the next call and hangs on it (holds it unanswered until told).
            let job = worker.next_job().unwrap();
            hung_rx.recv().unwrap();
            drop(job);
            worker.next_job().is_none()
        });
        // The supervisor waits, the queue being empty.
        let supervisor = invoker.clone();
        let (grown_tx, grown_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || grown_tx.send(supervisor.wait_for_growth()));
        while invoker.stats() != (1, 1, 0) {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
        // Two calls queued together, before the idle thread wakes: it takes the first and hangs.
        let _calls = {
            let mut st = invoker.lock();
            (
                invoker.enqueue(&mut st, lambda_call(), None),
                invoker.enqueue(&mut st, lambda_call(), None),
            )
        };
        // The second gets a thread of its own after a stall, not after the hang.
        assert_eq!(grown_rx.recv_timeout(Duration::from_secs(5)), Ok(true));
        invoker.close();
        hung_tx.send(()).unwrap();
        assert!(thread.join().unwrap(), "a closed invoker hands out no more calls");
    }

    fn lambda_call_of(name: &str) -> LambdaCall {
        LambdaCall {
            invocation_id: "i".into(),
            uri: name.into(),
            event: b"{}".to_vec(),
            timeout_ms: 1000,
            region: "us-east-1".into(),
            account_id: "1".into(),
        }
    }

    #[test]
    fn a_function_at_its_limit_is_throttled_and_others_are_not() {
        let invoker = Invoker::new(8);
        let hung: Vec<_> = (0..2).map(|_| invoker.call_function(lambda_call_of("hung"), "hung", 2).unwrap()).collect();
        assert_eq!(invoker.call_function(lambda_call_of("hung"), "hung", 2).unwrap_err(), Throttled { limit: 2 });
        let healthy = invoker.call_function(lambda_call_of("healthy"), "healthy", 2);
        assert!(healthy.is_ok());
        assert_eq!(invoker.in_flight("hung"), 2);

        // A call whose caller timed out still counts while its handler runs...
        let taken = invoker.next_job().unwrap();
        drop(hung);
        assert_eq!(invoker.in_flight("hung"), 2);
        // ...a queued one whose caller left is dropped, never handed to a thread...
        let next = invoker.next_job().unwrap();
        assert!(matches!(&next.call, Call::Lambda(c) if &*c.uri == "healthy"));
        assert_eq!(invoker.in_flight("hung"), 1);
        // ...and the running one frees its place once answered.
        taken.reply(Reply::Lambda(Ok(b"late".to_vec())));
        assert_eq!(invoker.in_flight("hung"), 0);
        assert!(invoker.call_function(lambda_call_of("hung"), "hung", 2).is_ok());
        // Reserved concurrency 0 refuses every call, as Lambda does.
        assert!(invoker.call_function(lambda_call_of("off"), "off", 0).is_err());
    }

    #[test]
    fn idle_threads_beyond_the_first_exit() {
        let invoker = Arc::new(Invoker::with_idle_exit(4, Duration::from_millis(20)));
        let _calls: Vec<_> = (0..2).map(|_| invoker.call(lambda_call())).collect();
        assert!(invoker.wait_for_growth());
        assert!(invoker.wait_for_growth());
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let invoker = invoker.clone();
                std::thread::spawn(move || {
                    let mut taken = 0;
                    while invoker.next_job().is_some() {
                        taken += 1;
                    }
                    taken
                })
            })
            .collect();
        // One thread gives up once idle; the last one stays until the invoker closes.
        let deadline = Instant::now() + Duration::from_secs(5);
        while invoker.stats().0 > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(invoker.stats().0, 1);
        invoker.close();
        let taken: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(taken, 2);
        assert_eq!(invoker.stats().0, 0);
    }

    #[test]
    fn a_streaming_call_counts_against_its_function_until_its_stream_ends() {
        let invoker = Invoker::new(4);
        let rx = invoker.call_function_streaming(lambda_call_of("gen"), "gen", 1).unwrap();
        assert!(invoker.call_function(lambda_call_of("gen"), "gen", 1).is_err());
        let (call, replier) = invoker.next_job().unwrap().into_parts();
        assert!(matches!(call, Call::LambdaStream(_)));
        let (_tx, body) = mpsc::channel(1);
        let held = replier.reply_holding(Reply::LambdaStream(LambdaStream {
            metadata: b"{}".to_vec(),
            body,
        }));
        assert!(matches!(rx.blocking_recv().unwrap(), Reply::LambdaStream(_)));
        // Answered, and still streaming: the function's place is taken.
        assert_eq!(invoker.in_flight("gen"), 1);
        assert!(invoker.call_function(lambda_call_of("gen"), "gen", 1).is_err());
        drop(held);
        assert_eq!(invoker.in_flight("gen"), 0);
        assert!(invoker.call_function(lambda_call_of("gen"), "gen", 1).is_ok());
    }
}
