//! The one poller of the tests.

use std::future::Future;
use std::time::Duration;

/// Polls `probe` every 20 ms until it answers `Ok`, and returns that value.
/// Panics after `within` with `what` and the last `Err` the probe gave, so a
/// failure says what was seen instead of merely timing out.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(last) if tokio::time::Instant::now() >= deadline => {
                panic!("timed out after {within:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
