//! The request body on its way to a region node: streamed as it arrives, never buffered,
//! and cut off with an error once it exceeds the size limit (the proxy then answers 413).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// Why the request body stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// More bytes than the limit.
    #[error("request body exceeds the limit")]
    TooLarge,
    /// The client's stream failed.
    #[error("client body: {0}")]
    Client(#[from] hyper::Error),
}

/// A client body with a byte limit.
pub(crate) struct LimitedBody {
    inner: Incoming,
    remaining: u64,
    tripped: Arc<AtomicBool>,
}

impl LimitedBody {
    /// Wraps `inner`; `tripped` is set when the limit is exceeded, so the caller can tell a
    /// 413 from an upstream failure.
    #[must_use]
    pub(crate) fn new(inner: Incoming, limit: u64, tripped: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            remaining: limit,
            tripped,
        }
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > this.remaining {
                        this.tripped.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(BodyError::TooLarge)));
                    }
                    this.remaining -= n;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Client(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
