//! The bench's own load generator: bare hyper HTTP/1.1 keep-alive
//! connections, optionally paced to a fixed rate (which `wrk` cannot do,
//! and Debian has no `wrk2`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// How long a run goes on.
#[derive(Clone, Copy, Debug)]
pub enum Bound {
    Requests(usize),
    Time(Duration),
}

/// What a load run measured, from the client's side.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub requests: u64,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Answers other than 2xx.
    pub non_2xx: u64,
    /// Connections refused or broken, requests that got no answer.
    pub socket_errors: u64,
    pub socket_detail: String,
    /// Requests sent after the prepared ones ran out (repeats of earlier
    /// ones, answered as duplicates).
    pub wrapped: u64,
}

/// Builds request `i` of a run.
pub type MakeRequest = Arc<dyn Fn(usize) -> hyper::Request<Full<bytes::Bytes>> + Send + Sync>;

fn percentile(sorted: &[u32], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Duration::from_micros(u64::from(sorted[idx]))
}

/// Sends requests over `connections` keep-alive connections until `bound`,
/// request `i` built by `make(i)` and counted good when it answers 2xx.
///
/// `rate > 0` paces the offered load to that many requests per second, and
/// a request's latency then counts from when it was due, not from when a
/// connection was free to send it: a slow answer delays the requests queued
/// behind it, and they count that wait (as `wrk2` does). Unpaced, latency
/// counts from the send.
///
/// Each connection is a bare hyper HTTP/1.1 client connection: the load
/// generator shares the two cores with the service, so the less it spends
/// per request (no pool, no URL parsing), the more the figures say about the
/// service.
pub async fn drive(
    connections: usize,
    bound: Bound,
    rate: u64,
    addr: &str,
    make: MakeRequest,
) -> anyhow::Result<Outcome> {
    let next = Arc::new(AtomicUsize::new(0));
    let non_2xx = Arc::new(AtomicU64::new(0));
    let socket = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let (limit, deadline) = match bound {
        Bound::Requests(n) => (n, None),
        Bound::Time(d) => (usize::MAX, Some(started + d)),
    };
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (next, non_2xx, socket, make, addr) =
            (next.clone(), non_2xx.clone(), socket.clone(), make.clone(), addr.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut sender: Option<SendRequest<Full<bytes::Bytes>>> = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= limit {
                    return lat;
                }
                let due = if rate > 0 {
                    let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                    due
                } else {
                    Instant::now()
                };
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return lat;
                }
                if sender.is_none() {
                    sender = connect(&addr).await.ok();
                }
                let answered = match sender.as_mut() {
                    Some(s) => match s.send_request(make(i)).await {
                        Ok(r) => {
                            let status = r.status();
                            r.into_body().collect().await.ok().map(|_| status.is_success())
                        }
                        Err(_) => None,
                    },
                    None => None,
                };
                lat.push(due.elapsed().as_micros().min(u32::MAX as u128) as u32);
                match answered {
                    Some(true) => {}
                    Some(false) => {
                        non_2xx.fetch_add(1, Ordering::Relaxed);
                    }
                    None => {
                        sender = None;
                        socket.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await?);
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let socket_errors = socket.load(Ordering::Relaxed);
    Ok(Outcome {
        requests: latencies.len() as u64,
        elapsed,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        max: percentile(&latencies, 1.0),
        non_2xx: non_2xx.load(Ordering::Relaxed),
        socket_errors,
        socket_detail: format!("refused, reset or unanswered {socket_errors}"),
        wrapped: 0,
    })
}

/// One HTTP/1.1 connection to `addr`, its driver running in the background.
async fn connect(addr: &str) -> anyhow::Result<SendRequest<Full<bytes::Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}
