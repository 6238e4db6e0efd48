//! Response streaming: a REST API proxy integration (`HTTP_PROXY`, `AWS_PROXY`) with
//! `responseTransferMode: STREAM` passes its answer on as it comes, held to AWS's limits for
//! streamed responses ("Stream the integration response for your proxy integrations in API
//! Gateway" in the developer guide):
//!
//! - the whole response, from the call to its last byte, within the integration's
//!   `timeoutInMillis` (which may be raised to 15 minutes for a streaming integration: a stream
//!   lasts at most that long);
//! - an idle timeout between reads: 5 minutes (AWS's, for Regional and private endpoints);
//! - the first 10 MB of each response at full speed, the rest at 2 MB/s;
//! - past a limit the stream is cut: the connection closes short of the body's end, so the client
//!   never mistakes a truncated body for a whole one.
//!
//! Features that need the whole answer do not apply to a streamed one: the stage cache, and
//! plugins' `on_response` hooks (see docs/pipeline.md).

use std::time::Duration;

use http_body_util::BodyExt;

use crate::pipeline::body::{Idle, Paced, PipelineBody};

/// The longest `timeoutInMillis` of a streaming integration: 15 minutes.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// How long a stream may pass without data: AWS's idle timeout for Regional and private endpoints.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// The bytes of each streamed response sent without a bandwidth limit: 10 MB.
pub const UNLIMITED_BYTES: u64 = 10 * 1024 * 1024;
/// The bandwidth of a streamed response past its first 10 MB: 2 MB/s.
pub const LIMITED_BYTES_PER_SECOND: u64 = 2 * 1024 * 1024;

/// A streamed body held to AWS's limits: over by `started + timeout` (15 minutes at most), each
/// read within the idle timeout (or the time left, when shorter), paced past its first 10 MB.
pub fn bounded(body: PipelineBody, started: tokio::time::Instant, timeout: Duration) -> PipelineBody {
    let until = started + timeout.min(MAX_TIMEOUT);
    let timed = Idle::within(body, IDLE_TIMEOUT, until);
    Paced::new(timed, UNLIMITED_BYTES, LIMITED_BYTES_PER_SECOND).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use hyper::body::Body;
    use tokio::time::Instant;

    use crate::pipeline::body::ChannelBody;

    fn channel() -> (tokio::sync::mpsc::Sender<Result<Bytes, String>>, PipelineBody) {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        (tx, ChannelBody::new(rx).boxed())
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_stream_is_cut_at_its_timeout_even_while_data_flows() {
        let (tx, body) = channel();
        let started = Instant::now();
        let mut body = bounded(body, started, Duration::from_secs(10));
        let feeder = tokio::spawn(async move {
            // A chunk a second, forever: never idle.
            while tx.send(Ok(Bytes::from_static(b"tick"))).await.is_ok() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let mut chunks = 0;
        let error = loop {
            match body.frame().await {
                Some(Ok(_)) => chunks += 1,
                Some(Err(e)) => break e,
                None => panic!("the stream ended"),
            }
        };
        assert!(error.to_string().contains("integration timeout"), "{error}");
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        assert_eq!(chunks, 10);
        drop(body);
        feeder.await.unwrap();
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn an_idle_stream_is_cut_after_five_minutes_and_a_slow_one_is_not() {
        let (tx, body) = channel();
        let started = Instant::now();
        let mut body = bounded(body, started, MAX_TIMEOUT);
        // Slow: a chunk every 4 minutes goes through.
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_secs(240)).await;
            tx.send(Ok(Bytes::from_static(b"slow"))).await.unwrap();
            assert!(body.frame().await.unwrap().is_ok());
        }
        // Silent for five minutes: cut.
        let error = body.frame().await.unwrap().unwrap_err();
        assert!(error.to_string().contains("timed out"), "{error}");
        assert_eq!(started.elapsed(), Duration::from_secs(480 + 300));
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_timeout_past_fifteen_minutes_is_held_to_them() {
        let (tx, body) = channel();
        let started = Instant::now();
        let mut body = bounded(body, started, Duration::from_secs(3600));
        let feeder = tokio::spawn(async move {
            while tx.send(Ok(Bytes::from_static(b"tick"))).await.is_ok() {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        });
        while let Some(Ok(_)) = body.frame().await {}
        assert_eq!(started.elapsed(), MAX_TIMEOUT);
        drop(body);
        feeder.await.unwrap();
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn past_the_first_ten_megabytes_a_stream_runs_at_two_megabytes_a_second() {
        const MB: usize = 1024 * 1024;
        let (tx, body) = channel();
        let started = Instant::now();
        let mut body = bounded(body, started, MAX_TIMEOUT);
        let feeder = tokio::spawn(async move {
            for _ in 0..16 {
                if tx.send(Ok(Bytes::from(vec![b'x'; MB]))).await.is_err() {
                    return;
                }
            }
        });
        let mut received = 0;
        let mut at_ten = None;
        while let Some(frame) = body.frame().await {
            received += frame.unwrap().into_data().unwrap().len();
            if received == 10 * MB {
                at_ten = Some(started.elapsed());
            }
        }
        assert!(body.is_end_stream());
        assert_eq!(received, 16 * MB);
        // The first 10 MB at once; the 6 MB after them take 3 s.
        assert_eq!(at_ten, Some(Duration::ZERO));
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        feeder.await.unwrap();
    }
}
