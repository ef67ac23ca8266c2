//! At most once for retried requests.
//!
//! A client that loses its connection while a change (remove, rename,
//! mkdir, copy, symlink, write) is in flight cannot know whether the server
//! applied it. It reconnects and sends the request again with the same
//! request id (the `yonder-request-id` header, [`yonder_proto::REQUEST_ID_HEADER`]).
//! The daemon outlives connections, so it remembers the outcome of each
//! request id it completed successfully for a while and answers a repeat
//! from memory instead of applying the change twice (a second `rm` would
//! say "not found", a second rename would fail or move something else).
//!
//! The change itself runs as its own task: a dropped connection does not
//! cancel it half-way, and a repeat that arrives while it still runs waits
//! for its outcome. Failures are not remembered: a failed change did not
//! happen, so running it again is what a retry should do.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use yonder_proto::RemoteError;
use yonder_proto::pb::ErrorKind;

/// How long an outcome is kept: longer than any client keeps retrying
/// (about two minutes of reconnect attempts).
const KEEP: Duration = Duration::from_secs(10 * 60);

/// Outcomes kept at most (the oldest go first): bounds memory whatever a
/// client sends.
const MAX_ENTRIES: usize = 16 * 1024;

/// Longest request id accepted (a UUID is 36 characters).
const MAX_ID: usize = 64;

type Outcome = Result<Arc<dyn Any + Send + Sync>, RemoteError>;

enum Entry {
    /// Still running: repeats wait for the outcome here.
    Running(watch::Receiver<Option<Outcome>>),
    Done(Arc<dyn Any + Send + Sync>),
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Completion order, for expiry.
    done: VecDeque<(Instant, String)>,
}

/// The daemon's memory of completed request ids.
#[derive(Default)]
pub struct Replay {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay")
            .field("entries", &self.lock().entries.len())
            .finish()
    }
}

/// The request id of `req`, if it carries a usable one.
pub fn request_id<T>(req: &tonic::Request<T>) -> Result<Option<String>, RemoteError> {
    let Some(v) = req.metadata().get(yonder_proto::REQUEST_ID_HEADER) else {
        return Ok(None);
    };
    let id = v.to_str().unwrap_or_default();
    if id.is_empty()
        || id.len() > MAX_ID
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(RemoteError::new(
            ErrorKind::InvalidArgument,
            format!(
                "bad {} header: 1 to {MAX_ID} letters, digits, '-' or '_'",
                yonder_proto::REQUEST_ID_HEADER
            ),
        ));
    }
    Ok(Some(id.to_string()))
}

impl Replay {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `change` once per request id: a repeat of a completed id gets
    /// the first outcome, a repeat of a running one waits for it. Without
    /// an id it just runs.
    pub async fn run<T, F>(
        self: &Arc<Self>,
        id: Option<String>,
        change: F,
    ) -> Result<T, RemoteError>
    where
        T: Clone + Send + Sync + 'static,
        F: Future<Output = Result<T, RemoteError>> + Send + 'static,
    {
        let Some(id) = id else {
            return change.await;
        };
        let mut waiting = {
            let mut inner = self.lock();
            Self::expire(&mut inner);
            match inner.entries.get(&id) {
                Some(Entry::Done(v)) => return Self::cast(Ok(v.clone())),
                Some(Entry::Running(rx)) => Some(rx.clone()),
                None => {
                    let (tx, rx) = watch::channel(None);
                    inner.entries.insert(id.clone(), Entry::Running(rx.clone()));
                    let this = self.clone();
                    let id = id.clone();
                    // Its own task: finishes even if this connection drops.
                    tokio::spawn(async move {
                        let outcome: Outcome = change
                            .await
                            .map(|v| Arc::new(v) as Arc<dyn Any + Send + Sync>);
                        this.finish(&id, &outcome);
                        let _ = tx.send(Some(outcome));
                    });
                    Some(rx)
                }
            }
        };
        let rx = waiting.as_mut().expect("set above");
        loop {
            if let Some(outcome) = rx.borrow_and_update().clone() {
                return Self::cast(outcome);
            }
            if rx.changed().await.is_err() {
                // The task ended without a word (a panic in the change).
                return Err(RemoteError::new(
                    ErrorKind::Internal,
                    "the operation ended without an outcome",
                ));
            }
        }
    }

    fn finish(&self, id: &str, outcome: &Outcome) {
        let mut inner = self.lock();
        match outcome {
            Ok(v) => {
                inner.entries.insert(id.to_string(), Entry::Done(v.clone()));
                inner.done.push_back((Instant::now(), id.to_string()));
            }
            // A failed change did not happen: a retry runs it again.
            Err(_) => {
                inner.entries.remove(id);
            }
        }
        Self::expire(&mut inner);
    }

    fn expire(inner: &mut Inner) {
        let now = Instant::now();
        while let Some((at, _)) = inner.done.front() {
            if now.duration_since(*at) < KEEP && inner.done.len() <= MAX_ENTRIES {
                break;
            }
            let (_, id) = inner.done.pop_front().expect("front exists");
            inner.entries.remove(&id);
        }
    }

    fn cast<T: Clone + 'static>(outcome: Outcome) -> Result<T, RemoteError> {
        outcome.and_then(|v| {
            v.downcast_ref::<T>().cloned().ok_or_else(|| {
                RemoteError::new(
                    ErrorKind::Conflict,
                    "this request id was already used for a different operation",
                )
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn a_repeated_id_is_applied_once() {
        let r = Arc::new(Replay::default());
        let runs = Arc::new(AtomicU32::new(0));
        for _ in 0..3 {
            let runs = runs.clone();
            let v: u32 = r
                .run(Some("abc".into()), async move {
                    Ok(runs.fetch_add(1, Ordering::SeqCst) + 7)
                })
                .await
                .unwrap();
            assert_eq!(v, 7, "the first outcome every time");
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Without an id, or with another, it runs again.
        let runs2 = runs.clone();
        r.run(
            None,
            async move { Ok(runs2.fetch_add(1, Ordering::SeqCst)) },
        )
        .await
        .unwrap();
        let runs3 = runs.clone();
        r.run(Some("other".into()), async move {
            Ok(runs3.fetch_add(1, Ordering::SeqCst))
        })
        .await
        .unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_failure_is_not_remembered_and_a_repeat_waits_for_a_running_one() {
        let r = Arc::new(Replay::default());
        let e: Result<(), _> = r
            .run(Some("f".into()), async {
                Err(RemoteError::new(ErrorKind::NotFound, "gone"))
            })
            .await;
        assert_eq!(e.unwrap_err().kind, ErrorKind::NotFound);
        let ok: u8 = r.run(Some("f".into()), async { Ok(1) }).await.unwrap();
        assert_eq!(ok, 1, "ran again after the failure");

        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let r2 = r.clone();
        let first = tokio::spawn(async move {
            r2.run(Some("slow".into()), async move {
                let _ = go_rx.await;
                Ok(5u8)
            })
            .await
        });
        tokio::task::yield_now().await;
        let r3 = r.clone();
        let second =
            tokio::spawn(async move { r3.run(Some("slow".into()), async { Ok(9u8) }).await });
        tokio::task::yield_now().await;
        let _ = go_tx.send(());
        assert_eq!(first.await.unwrap().unwrap(), 5);
        assert_eq!(
            second.await.unwrap().unwrap(),
            5,
            "the repeat got the first outcome"
        );
    }

    #[tokio::test]
    async fn the_first_caller_going_away_does_not_cancel_the_change() {
        let r = Arc::new(Replay::default());
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let r2 = r.clone();
        let caller = tokio::spawn(async move {
            r2.run(Some("d".into()), async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = done_tx.send(());
                Ok(())
            })
            .await
        });
        tokio::task::yield_now().await;
        caller.abort();
        done_rx.await.expect("the change ran to the end");
        r.run(Some("d".into()), async {
            Err::<(), _>(RemoteError::new(ErrorKind::Internal, "ran twice"))
        })
        .await
        .expect("the first outcome, not a second run");
    }

    #[test]
    fn hostile_ids_are_refused() {
        let mut req = tonic::Request::new(());
        assert_eq!(request_id(&req).unwrap(), None);
        req.metadata_mut()
            .insert(yonder_proto::REQUEST_ID_HEADER, "a/../b".parse().unwrap());
        assert!(request_id(&req).is_err());
        req.metadata_mut().insert(
            yonder_proto::REQUEST_ID_HEADER,
            "x".repeat(65).parse().unwrap(),
        );
        assert!(request_id(&req).is_err());
        req.metadata_mut().insert(
            yonder_proto::REQUEST_ID_HEADER,
            "0b8e-4c1f_A".parse().unwrap(),
        );
        assert_eq!(request_id(&req).unwrap().as_deref(), Some("0b8e-4c1f_A"));
    }
}
