//! Port forwards started from the ports panel.
//!
//! Forwards belong to the `yonder web` process, not to one page: they keep
//! serving across page reloads, and every page sees the same list. Each one
//! listens on 127.0.0.1 (the target's port number when it is free here,
//! otherwise any free port) and relays every connection through
//! [`Client::dial`] to the target.

use crate::target::TargetLink;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

/// Pause after a failed accept (e.g. out of file descriptors) so the loop
/// does not spin while the condition lasts.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(200);

/// One active forward.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ForwardInfo {
    /// The target's port.
    pub port: u16,
    /// Where the target connects (`127.0.0.1`, `::1`, or a listening address).
    pub host: String,
    /// Our port on 127.0.0.1.
    pub local_port: u16,
}

struct Active {
    info: ForwardInfo,
    task: AbortHandle,
}

/// The process's forwards, keyed by the target's port.
pub struct Forwards {
    link: Arc<TargetLink>,
    web_port: u16,
    active: Arc<Mutex<BTreeMap<u16, Active>>>,
}

impl std::fmt::Debug for Forwards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwards").finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where to connect on the target for a socket listening on `address`: a
/// wildcard address is reached through loopback.
pub fn dial_host(address: &str) -> String {
    match address {
        "" | "0.0.0.0" => "127.0.0.1".into(),
        "::" => "::1".into(),
        a => a.into(),
    }
}

impl Forwards {
    pub fn new(link: Arc<TargetLink>, web_port: u16) -> Self {
        Self {
            link,
            web_port,
            active: Arc::default(),
        }
    }

    /// Ports this process listens on (the workbench and every forward): on
    /// the `local` target they show up among the target's ports, and the
    /// panel hides them.
    pub fn own_ports(&self) -> HashSet<u16> {
        let mut s: HashSet<u16> = lock(&self.active)
            .values()
            .map(|a| a.info.local_port)
            .collect();
        s.insert(self.web_port);
        s
    }

    pub fn list(&self) -> Vec<ForwardInfo> {
        lock(&self.active)
            .values()
            .map(|a| a.info.clone())
            .collect()
    }

    /// Starts forwarding the target's `port` (an existing forward is
    /// returned as it is).
    pub async fn start(&self, port: u16, address: &str) -> std::io::Result<ForwardInfo> {
        if let Some(a) = lock(&self.active).get(&port) {
            return Ok(a.info.clone());
        }
        let listener = match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => l,
            Err(_) => TcpListener::bind(("127.0.0.1", 0)).await?,
        };
        let info = ForwardInfo {
            port,
            host: dial_host(address),
            local_port: listener.local_addr()?.port(),
        };
        let link = self.link.clone();
        let host = info.host.clone();
        let task = tokio::spawn(async move {
            loop {
                let sock = match listener.accept().await {
                    Ok((sock, _)) => sock,
                    Err(e) => {
                        tracing::warn!("forward of port {port}: accept: {e}");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                let _ = sock.set_nodelay(true);
                // The current connection: forwards keep working after the
                // target link was re-made.
                let link = link.clone();
                let host = host.clone();
                tokio::spawn(async move {
                    let client = match link.client().await {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!("forward of port {port}: {e}");
                            return;
                        }
                    };
                    match client.dial(&host, port).await {
                        Ok(t) => {
                            if let Err(e) = t.relay(sock).await {
                                tracing::debug!("forward of port {port} ended: {e}");
                            }
                        }
                        Err(e) => tracing::warn!("forward to {host}:{port} on the target: {e}"),
                    }
                });
            }
        })
        .abort_handle();
        let mut active = lock(&self.active);
        // Two pages may have raced: keep the first, stop ours.
        if let Some(a) = active.get(&port) {
            task.abort();
            return Ok(a.info.clone());
        }
        active.insert(
            port,
            Active {
                info: info.clone(),
                task,
            },
        );
        Ok(info)
    }

    /// Stops forwarding the target's `port`; false if it was not forwarded.
    pub fn stop(&self, port: u16) -> bool {
        match lock(&self.active).remove(&port) {
            Some(a) => {
                a.task.abort();
                true
            }
            None => false,
        }
    }
}

impl Drop for Forwards {
    fn drop(&mut self) {
        for a in lock(&self.active).values() {
            a.task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::dial_host;

    #[test]
    fn wildcards_are_reached_through_loopback() {
        assert_eq!(dial_host("0.0.0.0"), "127.0.0.1");
        assert_eq!(dial_host("::"), "::1");
        assert_eq!(dial_host("127.0.0.1"), "127.0.0.1");
        assert_eq!(dial_host("10.1.2.3"), "10.1.2.3");
    }
}
