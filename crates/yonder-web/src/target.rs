//! The connection to the target, kept alive for every page.
//!
//! A [`TargetLink`] holds the current [`Client`] and the connection's state
//! as a small state machine: `Connected` → (a health check fails)
//! `Reconnecting` → `Connected` with a new generation, or `Lost` once the
//! retry budget is spent. Pages are told every change; on a new generation
//! they re-open their streams (terminals re-attach at the last byte shown:
//! the terminals live in the target's daemon and survived the drop).

use futures::future::BoxFuture;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use yonder_client::Client;

/// Makes a new connection to the target (the CLI's `connect`).
pub type Connector = Arc<dyn Fn() -> BoxFuture<'static, Result<Client, String>> + Send + Sync>;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum TargetState {
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
    fn generation(self) -> u64 {
        match self {
            Self::Connected { generation }
            | Self::Reconnecting { generation, .. }
            | Self::Lost { generation } => generation,
        }
    }
}

pub struct TargetLink {
    client: RwLock<Client>,
    state: watch::Sender<TargetState>,
    connector: Option<Connector>,
}

impl std::fmt::Debug for TargetLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetLink")
            .field("state", &*self.state.borrow())
            .finish()
    }
}

impl TargetLink {
    pub fn new(client: Client, connector: Option<Connector>) -> Arc<Self> {
        Arc::new(Self {
            client: RwLock::new(client),
            state: watch::Sender::new(TargetState::Connected { generation: 1 }),
            connector,
        })
    }

    /// The current client (cheap: clones share the connection).
    pub fn client(&self) -> Client {
        self.client
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<TargetState> {
        self.state.subscribe()
    }

    /// Checks the link and reconnects when it fails; runs for the life of
    /// the server.
    pub async fn supervise(self: Arc<Self>) {
        let Some(connector) = self.connector.clone() else {
            return;
        };
        loop {
            tokio::time::sleep(HEALTH_INTERVAL).await;
            let c = self.client();
            let healthy = matches!(
                tokio::time::timeout(HEALTH_TIMEOUT, c.info()).await,
                Ok(Ok(_))
            );
            if healthy {
                continue;
            }
            let generation = self.state.borrow().generation();
            tracing::warn!("lost the connection to the target; reconnecting");
            let mut reconnected = false;
            for attempt in 0..RECONNECT_ATTEMPTS {
                self.state.send_replace(TargetState::Reconnecting {
                    generation,
                    attempt: attempt + 1,
                });
                tokio::time::sleep(RECONNECT_DELAYS[attempt.min(RECONNECT_DELAYS.len() - 1)]).await;
                match connector().await {
                    Ok(c) => {
                        *self.client.write().unwrap_or_else(|e| e.into_inner()) = c;
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
}
