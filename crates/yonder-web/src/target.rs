//! The connection to the target, kept alive for every page.
//!
//! A [`TargetLink`] holds the current [`Client`] and the connection's state
//! as a small state machine: `Connecting` (ssh may be asking the user, in
//! the page) → `Connected`, or `Failed` until a page asks to retry; then
//! `Connected` → (a health check fails)
//! `Reconnecting` → `Connected` with a new generation, or `Lost` once the
//! retry budget is spent. Pages are told every change; on a new generation
//! they re-open their streams (terminals re-attach at the last byte shown:
//! the terminals live in the target's daemon and survived the drop).

use futures::future::BoxFuture;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use yonder_client::{Client, RemoteError};
use yonder_proto::pb::ErrorKind;

/// Makes a connection to the target (the CLI's `connect`) and resolves the
/// workspace folder on it: the first call opens the workbench, later ones
/// re-make a dropped link.
pub type Connector =
    Arc<dyn Fn() -> BoxFuture<'static, Result<(Client, PathBuf), String>> + Send + Sync>;

/// How often the link is checked while idle: a dead ssh connection shows
/// within about this long even when no page is doing anything.
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

/// A health check slower than this counts as a failure (a hung link).
const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);

/// Delays between reconnect attempts; the last repeats.
const RECONNECT_DELAYS: &[Duration] = &[
    Duration::from_millis(200),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
];

/// Attempts spanning about two minutes (like `yonder shell`), then "lost".
const RECONNECT_ATTEMPTS: usize = 30;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum TargetState {
    /// The first connection is being made (ssh may be asking the user).
    Connecting,
    /// The first connection failed; a `retry` from a page tries again.
    Failed {
        message: String,
    },
    /// `generation` counts connections: a new one means streams must be re-opened.
    Connected {
        generation: u64,
    },
    Reconnecting {
        generation: u64,
        attempt: usize,
    },
    Lost {
        generation: u64,
    },
}

impl TargetState {
    fn generation(&self) -> u64 {
        match *self {
            Self::Connecting | Self::Failed { .. } => 0,
            Self::Connected { generation }
            | Self::Reconnecting { generation, .. }
            | Self::Lost { generation } => generation,
        }
    }
}

pub struct TargetLink {
    client: RwLock<Option<Client>>,
    /// The workspace folder on the target, known once first connected.
    root: OnceLock<PathBuf>,
    state: watch::Sender<TargetState>,
    connector: Connector,
    /// A page asked to try the first connection again.
    retry: Notify,
}

impl std::fmt::Debug for TargetLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetLink")
            .field("state", &*self.state.borrow())
            .finish()
    }
}

impl TargetLink {
    pub fn new(connector: Connector) -> Arc<Self> {
        Arc::new(Self {
            client: RwLock::new(None),
            root: OnceLock::new(),
            state: watch::Sender::new(TargetState::Connecting),
            connector,
            retry: Notify::new(),
        })
    }

    fn current(&self) -> Option<Client> {
        self.client
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The current client (cheap: clones share the connection); waits while
    /// the first connection is being made, fails if it could not be.
    pub async fn client(&self) -> Result<Client, RemoteError> {
        let mut states = self.state.subscribe();
        loop {
            if let Some(c) = self.current() {
                return Ok(c);
            }
            if let TargetState::Failed { message } = &*states.borrow_and_update() {
                return Err(RemoteError::new(ErrorKind::Io, message.clone()));
            }
            if states.changed().await.is_err() {
                return Err(RemoteError::new(
                    ErrorKind::Io,
                    "the workbench is shutting down",
                ));
            }
        }
    }

    /// The workspace folder (absolute on the target); waits like [`Self::client`].
    pub async fn root(&self) -> Result<PathBuf, RemoteError> {
        self.client().await?;
        Ok(self.root.get().cloned().unwrap_or_default())
    }

    pub fn subscribe(&self) -> watch::Receiver<TargetState> {
        self.state.subscribe()
    }

    /// Tries the first connection again after it failed.
    pub fn retry(&self) {
        self.retry.notify_one();
    }

    /// Makes the first connection (again on `retry` when it fails).
    async fn first_connect(&self) {
        loop {
            self.state.send_replace(TargetState::Connecting);
            match (self.connector)().await {
                Ok((client, root)) => {
                    eprintln!("yonder web: connected; workspace {}", root.display());
                    let _ = self.root.set(root);
                    *self.client.write().unwrap_or_else(|e| e.into_inner()) = Some(client);
                    self.state
                        .send_replace(TargetState::Connected { generation: 1 });
                    return;
                }
                Err(message) => {
                    eprintln!(
                        "yonder web: {message}\nyonder web: fix it and press Retry in the page, or Ctrl-C"
                    );
                    self.state.send_replace(TargetState::Failed { message });
                    self.retry.notified().await;
                }
            }
        }
    }

    /// Connects, then follows the link: the client dials again by itself
    /// after a drop (pages see "reconnecting", then a new generation so
    /// they re-open their streams); if that does not bring it back, a new
    /// connection is made the way the first was. Runs for the life of the
    /// server.
    pub async fn supervise(self: Arc<Self>) {
        self.first_connect().await;
        loop {
            let Some(c) = self.current() else { return };
            // Health checks are calls: a dead link makes the client dial
            // again, which `mirror` shows; a check that fails for good
            // ends this and a new connection is made below.
            tokio::select! {
                () = self.mirror(&c) => {}
                () = Self::until_unhealthy(&c) => {}
            }
            let generation = self.state.borrow().generation();
            tracing::warn!("lost the connection to the target; connecting again");
            let mut reconnected = false;
            for attempt in 0..RECONNECT_ATTEMPTS {
                self.state.send_replace(TargetState::Reconnecting {
                    generation,
                    attempt: attempt + 1,
                });
                tokio::time::sleep(RECONNECT_DELAYS[attempt.min(RECONNECT_DELAYS.len() - 1)]).await;
                match (self.connector)().await {
                    Ok((c, _)) => {
                        *self.client.write().unwrap_or_else(|e| e.into_inner()) = Some(c);
                        self.state.send_replace(TargetState::Connected {
                            generation: generation + 1,
                        });
                        tracing::info!("reconnected to the target");
                        reconnected = true;
                        break;
                    }
                    Err(e) => tracing::warn!("reconnecting to the target: {e}"),
                }
            }
            if !reconnected {
                self.state.send_replace(TargetState::Lost { generation });
                return;
            }
        }
    }

    /// Shows the client's own redials to the pages; returns only if the
    /// client's transport is gone.
    async fn mirror(&self, c: &Client) {
        let mut link = c.link_status();
        let mut seen = link.borrow_and_update().connections;
        while link.changed().await.is_ok() {
            let st = *link.borrow_and_update();
            let generation = self.state.borrow().generation();
            if !st.up {
                tracing::warn!("lost the connection to the target; reconnecting");
                self.state.send_replace(TargetState::Reconnecting {
                    generation,
                    attempt: 1,
                });
            } else if st.connections != seen {
                seen = st.connections;
                tracing::info!("reconnected to the target");
                self.state.send_replace(TargetState::Connected {
                    generation: generation + 1,
                });
            }
        }
    }

    /// Returns when a health check fails (or hangs).
    async fn until_unhealthy(c: &Client) {
        loop {
            tokio::time::sleep(HEALTH_INTERVAL).await;
            let healthy = matches!(
                tokio::time::timeout(HEALTH_TIMEOUT, c.info()).await,
                Ok(Ok(_))
            );
            if !healthy {
                return;
            }
        }
    }
}
