//! Reading a request body with a size limit and a time limit, for every
//! route that takes one (the webhook, the status page's login form).

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::StreamExt;

/// How long a client may take to send the whole body once its headers are
/// in. hyper bounds the headers (`service::HEADER_READ_TIMEOUT`) but nothing
/// else bounds the body: a client trickling one byte a second would hold a
/// connection and a handler for as long as it liked.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a body was not read; each caller maps these to its answer.
pub enum BodyError {
    /// Over the limit, by `Content-Length` or while reading.
    TooLarge,
    /// Not fully arrived within [`BODY_READ_TIMEOUT`].
    Timeout,
    Read(warp::Error),
}

/// The body, refused as soon as it is known to exceed `limit` (from
/// `declared` before reading, or while reading a chunked body) or when it
/// has not fully arrived within [`BODY_READ_TIMEOUT`].
///
/// # Errors
/// [`BodyError`] saying which.
pub async fn read<S, B>(declared: Option<u64>, stream: S, limit: usize) -> Result<Bytes, BodyError>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    tokio::time::timeout(BODY_READ_TIMEOUT, collect(declared, stream, limit)).await.unwrap_or(Err(BodyError::Timeout))
}

async fn collect<S, B>(declared: Option<u64>, stream: S, limit: usize) -> Result<Bytes, BodyError>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut buf = BytesMut::with_capacity(declared.map_or(4096, |n| n as usize));
    tokio::pin!(stream);
    while let Some(chunk) = stream.next().await {
        let mut chunk = chunk.map_err(BodyError::Read)?;
        if buf.len() + chunk.remaining() > limit {
            return Err(BodyError::TooLarge);
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            buf.put_slice(part);
            chunk.advance(n);
        }
    }
    Ok(buf.freeze())
}
