//! The hand-off to the Python side: where the pipeline calls the user's code (Lambda handlers,
//! plugins) and waits for the answer without holding a thread or the GIL.
//!
//! The pipeline queues a `Call` and awaits a oneshot `Reply`. Python threads, started and grown
//! by the Python side (`portico/serve/user_code.py`), block in `next_job` with the GIL released
//! and run one call at a time; busy threads take the next call without sleeping.
//!
//! A queued call wakes an idle thread only when no thread is working: a working thread takes the
//! next call as soon as it is done, without a hand-off. When calls wait and the threads make no
//! progress (none took a call for `STALL`: a handler is slow or blocked), the supervisor wakes an
//! idle thread, or has the Python side start another, up to `max_threads`. So a slow handler never
//! delays another for much longer than `STALL`, and quick handlers keep to the one thread that
//! keeps up with them: every extra runnable thread would contend for the GIL (measured: 33
//! threads for 32 concurrent trivial calls instead of one cost a third of the throughput).

use std::collections::VecDeque;
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

#[derive(Debug)]
pub enum Call {
    Lambda(LambdaCall),
    Plugin {
        hook: Hook,
        request: Arc<PluginRequest>,
        /// The integration's response (`OnResponse` only).
        response: Option<PluginResponse>,
    },
}

#[derive(Debug)]
pub enum Reply {
    /// The handler's result as JSON, or how and why the function failed.
    Lambda(Result<Vec<u8>, (ErrorType, String)>),
    /// `on_request` returned None: go on.
    Continue,
    /// The response to send.
    Respond(PluginResponse),
    /// A plugin raised: the gateway response to answer with, and why.
    Failed(ErrorType, String),
}

/// One queued call and where its reply goes. Dropping it unanswered fails the call.
pub struct Job {
    pub call: Call,
    reply: oneshot::Sender<Reply>,
}

impl Job {
    pub fn reply(self, reply: Reply) {
        let _ = self.reply.send(reply);
    }

    /// Split into the call and a replier, for calls whose arguments are moved out first.
    pub fn into_parts(self) -> (Call, Replier) {
        (self.call, Replier(self.reply))
    }
}

pub struct Replier(oneshot::Sender<Reply>);

impl Replier {
    pub fn reply(self, reply: Reply) {
        let _ = self.0.send(reply);
    }
}

/// How long queued calls wait on threads that take none before another thread is put to work.
/// Longer than a scheduler time slice, so that a thread the OS merely preempted is not taken for
/// a blocked one.
pub const STALL: Duration = Duration::from_millis(10);

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    idle: usize,
    threads: usize,
    /// Calls taken so far: progress, as the supervisor sees it.
    taken: u64,
    closed: bool,
}

pub struct Invoker {
    state: Mutex<State>,
    work: Condvar,
    grow: Condvar,
    max_threads: usize,
}

impl Invoker {
    pub fn new(max_threads: usize) -> Invoker {
        Invoker {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            grow: Condvar::new(),
            max_threads: max_threads.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `call`; the reply arrives on the receiver (an error if it is dropped unanswered).
    pub fn call(&self, call: Call) -> oneshot::Receiver<Reply> {
        let (tx, rx) = oneshot::channel();
        let mut st = self.lock();
        if st.closed {
            return rx; // tx dropped: the caller sees the Python side gone
        }
        st.queue.push_back(Job { call, reply: tx });
        let working = st.threads - st.idle;
        if working == 0 && st.idle > 0 {
            self.work.notify_one();
        } else {
            // A working thread takes it when done; the supervisor watches for a stall.
            self.grow.notify_one();
        }
        drop(st);
        rx
    }

    /// The next call, waiting for one (a Python thread calls this with the GIL released); None
    /// once closed.
    pub fn next_job(&self) -> Option<Job> {
        let mut st = self.lock();
        loop {
            if let Some(job) = st.queue.pop_front() {
                st.taken += 1;
                return Some(job);
            }
            if st.closed {
                st.threads = st.threads.saturating_sub(1);
                return None;
            }
            st.idle += 1;
            st = self.work.wait(st).unwrap_or_else(|e| e.into_inner());
            st.idle -= 1;
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
}
