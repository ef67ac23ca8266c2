//! Server streams of idempotent calls (a file's bytes, a directory's
//! entries, a tree, a search) that go on after the connection dropped: the
//! call is sent again, with the same backoff as one-shot calls, and told
//! where to pick up from what was already delivered.

use crate::{Client, RETRY_DELAYS_MS, RemoteStream, Result, is_link_error, remote};
use futures::Stream;
use futures::StreamExt;
use std::future::Future;
use std::time::Duration;
use tonic::{Status, Streaming};

struct Resuming<St, M, O, K> {
    inner: Streaming<M>,
    state: St,
    open: O,
    take: K,
}

/// Yields `take(state, message)` for each message of `first`. When the
/// link breaks under it (and the client redials), `open(state)` makes the
/// call again: `state` says what the caller has already had, so `open`
/// asks for the rest (a read from the next byte) or `take` leaves out what
/// was seen (a directory's names). An error `open` returns that is not a
/// broken link ends the stream with it (a file that changed meanwhile).
fn resuming<St, M, T, O, Fut, K>(
    redials: bool,
    first: Streaming<M>,
    state: St,
    open: O,
    take: K,
) -> impl Stream<Item = Result<T, Status>> + Send + 'static
where
    St: Send + 'static,
    M: Send + 'static,
    T: Send + 'static,
    O: FnMut(&mut St) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Streaming<M>, Status>> + Send + 'static,
    K: FnMut(&mut St, M) -> T + Send + 'static,
{
    let r = Resuming {
        inner: first,
        state,
        open,
        take,
    };
    futures::stream::unfold(Some(r), move |r| async move {
        let mut r = r?;
        let mut attempt = 0;
        loop {
            let broke = match r.inner.message().await {
                Ok(Some(m)) => {
                    let t = (r.take)(&mut r.state, m);
                    return Some((Ok(t), Some(r)));
                }
                Ok(None) => return None,
                Err(s) if redials && is_link_error(&s) => s,
                Err(s) => return Some((Err(s), None)),
            };
            let mut last = broke;
            loop {
                let Some(&pause) = RETRY_DELAYS_MS.get(attempt) else {
                    return Some((Err(last), None));
                };
                tracing::warn!(
                    "the connection dropped ({}); asking again for the rest",
                    last.message()
                );
                tokio::time::sleep(Duration::from_millis(pause)).await;
                attempt += 1;
                match (r.open)(&mut r.state).await {
                    Ok(s) => {
                        r.inner = s;
                        break;
                    }
                    Err(s) if is_link_error(&s) => last = s,
                    Err(s) => return Some((Err(s), None)),
                }
            }
        }
    })
}

impl Client {
    /// Makes the streaming call `call(state, false)`, again while the link
    /// is down (as one-shot calls are), then [`resuming`] its stream:
    /// `call(state, true)` is the call made again after a drop.
    pub(crate) async fn resumable<St, M, T, C, Fut, K>(
        &self,
        mut state: St,
        mut call: C,
        take: K,
    ) -> Result<impl Stream<Item = Result<T, Status>> + Send + 'static>
    where
        St: Send + 'static,
        M: Send + 'static,
        T: Send + 'static,
        C: FnMut(&mut St, bool) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Streaming<M>, Status>> + Send + 'static,
        K: FnMut(&mut St, M) -> T + Send + 'static,
    {
        let first = self.retrying(|| call(&mut state, false)).await?;
        let again = move |st: &mut St| call(st, true);
        Ok(resuming(self.redials(), first, state, again, take))
    }
}

/// One item per element of each batch a stream delivers; an error as is.
pub(crate) fn flatten<T: Send + 'static>(
    batches: impl Stream<Item = Result<Vec<T>, Status>> + Send + 'static,
) -> RemoteStream<T> {
    let s = batches.flat_map(|batch| {
        let items: Vec<Result<T>> = match batch {
            Ok(b) => b.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(remote(e))],
        };
        futures::stream::iter(items)
    });
    RemoteStream { inner: Box::pin(s) }
}
