//! `yonder forward`: ssh -L / -R style TCP forwarding and VS Code style
//! auto-forwarding of the target's listening ports.
//!
//! Every forwarded connection is its own call on the one connection to the
//! target (see `yonder_client::forward`), except local forwards on an SSH
//! target: those go to yonder's ssh master ([`yonder_target::mux`]), which
//! carries them like `ssh -L`, with the call as the fallback. A failure of one connection (the
//! far side refused, reset) closes that connection and is logged; the
//! forwarder keeps serving the others. Losing the target ends the command.

use crate::cli::ForwardArgs;
use crate::{EXIT_USAGE, Exit, connect};
use anyhow::Context as _;
use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use yonder_client::Client;
use yonder_target::mux::MasterForward;

/// Forwarded connections open at once, per forwarder process. Beyond this,
/// new connections wait in the kernel's accept backlog instead of each
/// costing a task, a socket and a stream window here.
const MAX_CONNECTIONS: usize = 1024;

/// Pause after a failed `accept` (EMFILE, ENOBUFS): these clear up as other
/// connections close; retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Where listeners bind unless the user names an address: only this
/// machine's programs can reach a forwarded port.
const DEFAULT_BIND: &str = "127.0.0.1";

/// One `[BIND:]PORT:HOST:HOSTPORT` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// `None`: [`DEFAULT_BIND`].
    pub bind: Option<String>,
    /// 0 picks a free port.
    pub port: u16,
    pub host: String,
    pub host_port: u16,
}

impl Spec {
    fn bind(&self) -> &str {
        self.bind.as_deref().unwrap_or(DEFAULT_BIND)
    }
    fn to(&self) -> String {
        host_port(&self.host, self.host_port)
    }
}

/// Splits at colons; a field in brackets (an IPv6 address) may contain
/// colons and loses its brackets.
fn fields(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        let (field, after) = if let Some(inner) = rest.strip_prefix('[') {
            let end = inner
                .find(']')
                .ok_or_else(|| format!("unclosed '[' in {s:?}"))?;
            let field = &inner[..end];
            if field.is_empty() || field.contains('[') {
                return Err(format!("bad bracketed address in {s:?}"));
            }
            let after = &inner[end + 1..];
            if !after.is_empty() && !after.starts_with(':') {
                return Err(format!("expected ':' after ']' in {s:?}"));
            }
            (field, after)
        } else {
            let end = rest.find(':').unwrap_or(rest.len());
            let field = &rest[..end];
            if field.contains('[') || field.contains(']') {
                return Err(format!("stray bracket in {s:?}"));
            }
            (field, &rest[end..])
        };
        out.push(field.to_string());
        match after.strip_prefix(':') {
            Some(r) => rest = r,
            None => return Ok(out),
        }
    }
}

fn port(s: &str, what: &str, zero_ok: bool) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(0) if !zero_ok => Err(format!("{what} must not be 0")),
        Ok(p) if s.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => Err(format!("{what} {s:?} is not a port number (0-65535)")),
    }
}

/// Parses `[BIND:]PORT:HOST:HOSTPORT`.
pub fn parse_spec(s: &str) -> Result<Spec, String> {
    let f = fields(s)?;
    let (bind, rest) = match f.len() {
        3 => (None, &f[..]),
        4 => (Some(f[0].clone()), &f[1..]),
        _ => {
            return Err(format!(
                "{s:?}: expected [BIND:]PORT:HOST:PORT (put IPv6 addresses in brackets, e.g. [::1])"
            ));
        }
    };
    if bind.as_deref() == Some("") {
        return Err(format!("{s:?}: empty bind address"));
    }
    if rest[1].is_empty() {
        return Err(format!("{s:?}: empty host"));
    }
    Ok(Spec {
        bind,
        port: port(&rest[0], "listening port", true)?,
        host: rest[1].clone(),
        host_port: port(&rest[2], "destination port", false)?,
    })
}

/// `host:port`, with brackets around an IPv6 address.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn usage(msg: String) -> anyhow::Error {
    anyhow::Error::new(Exit {
        code: EXIT_USAGE,
        error: Some(anyhow::anyhow!(msg)),
    })
}

/// Prints one mapping line as soon as it is live.
fn announce(json: bool, kind: &str, listen: &str, to: &str, extra: Option<(u32, &str)>) {
    if json {
        let mut v = serde_json::json!({ "kind": kind, "listen": listen, "to": to });
        if let Some((pid, process)) = extra {
            v["pid"] = pid.into();
            v["process"] = process.into();
        }
        println!("{v}");
    } else {
        let owner = match extra {
            Some((pid, p)) if pid != 0 => format!(" ({p}, pid {pid})"),
            _ => String::new(),
        };
        let line = match kind {
            "local" => format!("forwarding {listen} -> {to} on the target"),
            "remote" => format!("forwarding {listen} on the target -> {to} here"),
            "auto" => format!("forwarding {listen} -> {to} on the target{owner}"),
            _ => format!("stopped forwarding {listen} -> {to} (no longer listening){owner}"),
        };
        println!("{line}");
    }
}

/// Serves one local listener: each connection becomes a `Dial` to
/// `host:port` on the target, or, on an SSH target whose master is at
/// `master` (its control socket), a channel of the master itself.
async fn serve_local(
    listener: TcpListener,
    client: Client,
    host: String,
    port: u16,
    limit: Arc<Semaphore>,
    master: Option<PathBuf>,
) {
    let master = master.map(|p| Arc::new(MasterForward::new(p)));
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let (sock, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("accepting a connection to forward: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        let (client, host, master) = (client.clone(), host.clone(), master.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let to = host_port(&host, port);
            // The ssh master carries the connection as it would for
            // `ssh -L`: no process of ours in the data path.
            let mut refusal = None;
            if let Some(m) = &master {
                match m.open(sock.as_fd(), &host, port).await {
                    Some(Ok(session)) => {
                        tracing::debug!(
                            "connection from {peer} to {to}: carried by the ssh master (channel {})",
                            session.id
                        );
                        drop(sock);
                        return session.finished().await;
                    }
                    Some(Err(e)) if e.socket_untouched() => {
                        tracing::debug!("connection from {peer} to {to}: {e}; through the server");
                        refusal = Some(e);
                    }
                    Some(Err(e)) => return tracing::warn!("connection from {peer} to {to}: {e}"),
                    None => tracing::debug!("connection from {peer} to {to}: through the server"),
                }
            }
            // A daemon on this machine hands over the connected socket.
            match client.dial_direct(&host, port).await {
                Ok(Some(far)) => {
                    if let Err(e) = yonder_client::direct::relay_sockets(sock, far).await {
                        tracing::debug!("connection from {peer} to {to}: {e}");
                    }
                    return;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!("connection from {peer} to {to} on the target: {e}");
                    return;
                }
            }
            match client.dial(&host, port).await {
                Ok(t) => {
                    if let (Some(m), Some(e)) = (&master, &refusal) {
                        m.fallback_worked(e);
                    }
                    if let Err(e) = t.relay(sock).await {
                        tracing::debug!("connection from {peer} to {to}: {e}");
                    }
                }
                // Dropping `sock` closes the local connection: the client
                // sees what it would see if it had connected directly.
                Err(e) => tracing::warn!("connection from {peer} to {to} on the target: {e}"),
            }
        });
    }
}

/// Claims each connection the target accepted and relays it to
/// `host:port` here. Returns when the target stops listening.
async fn serve_remote(
    mut listener: yonder_client::forward::RemoteListener,
    client: Client,
    spec: Spec,
    limit: Arc<Semaphore>,
) -> anyhow::Error {
    let to = spec.to();
    while let Some(id) = listener.next().await {
        let id = match id {
            Ok(id) => id,
            Err(e) => return anyhow::Error::new(e).context(format!("forwarding to {to}")),
        };
        let Ok(permit) = limit.clone().acquire_owned().await else {
            break;
        };
        let (client, host, port, to) = (
            client.clone(),
            spec.host.clone(),
            spec.host_port,
            to.clone(),
        );
        tokio::spawn(async move {
            let _permit = permit;
            let tunnel = match client.accept(id).await {
                Ok(t) => t,
                Err(e) => return tracing::warn!("claiming a connection for {to}: {e}"),
            };
            // Dropping the tunnel on failure closes the connection on the
            // target.
            match TcpStream::connect((host.as_str(), port)).await {
                Ok(sock) => {
                    let _ = sock.set_nodelay(true);
                    if let Err(e) = tunnel.relay(sock).await {
                        tracing::debug!("connection to {to}: {e}");
                    }
                }
                Err(e) => tracing::warn!("connecting to {to} for a forwarded connection: {e}"),
            }
        });
    }
    anyhow::anyhow!(
        "the target stopped listening on port {} (forwarded to {to})",
        listener.port
    )
}

/// Listens on the target again after the connection dropped, with the
/// client's redial; `None` when there is no way back.
async fn relisten(
    client: &Client,
    spec: &Spec,
    port: u16,
) -> Option<yonder_client::forward::RemoteListener> {
    if !client.redials() {
        return None;
    }
    for delay in crate::REOPEN_DELAYS_MS {
        tokio::time::sleep(Duration::from_millis(delay)).await;
        match client.listen(spec.bind(), port).await {
            Ok(l) => {
                eprintln!(
                    "yonder: listening on {} on the target again",
                    host_port(spec.bind(), port)
                );
                return Some(l);
            }
            Err(e) => tracing::warn!("listening again on the target: {e}"),
        }
    }
    None
}

/// Watches the target's ports again after a dropped connection.
async fn rewatch_ports(
    client: &Client,
) -> Option<yonder_client::RemoteStream<yonder_proto::pb::PortEvent>> {
    if !client.redials() {
        return None;
    }
    for delay in crate::REOPEN_DELAYS_MS {
        tokio::time::sleep(Duration::from_millis(delay)).await;
        match client.watch_ports(None).await {
            Ok(s) => return Some(s),
            Err(e) => tracing::warn!("watching the target's ports again: {e}"),
        }
    }
    None
}

/// The address to dial for a port the target listens on: a wildcard
/// listener is reached on loopback.
fn dial_host(address: &str) -> String {
    match address {
        "0.0.0.0" => "127.0.0.1".into(),
        "::" => "::1".into(),
        a => a.into(),
    }
}

/// One auto-forwarded port of the target.
struct AutoForward {
    /// The target's addresses listening on this port (0.0.0.0 and :: often
    /// both); the forward stops when the last one goes.
    addresses: HashSet<String>,
    listen: SocketAddr,
    to: String,
    task: tokio::task::JoinHandle<()>,
}

/// Follows the target's listening ports, forwarding each to the same local
/// port when free (else any free one) until it disappears.
async fn auto_forward(
    client: Client,
    local_target: bool,
    own_ports: Arc<Mutex<HashSet<u16>>>,
    json: bool,
    limit: Arc<Semaphore>,
    master: Option<PathBuf>,
) -> anyhow::Error {
    let mut events = match client.watch_ports(None).await {
        Ok(s) => s,
        Err(e) => return anyhow::Error::new(e).context("watching the target's ports"),
    };
    eprintln!("yonder: watching the target for listening ports");
    let me = std::process::id();
    let mut active: HashMap<u16, AutoForward> = HashMap::new();
    loop {
        let ev = match events.next().await {
            Some(Ok(ev)) => ev,
            failed => {
                // The connection dropped: watch again once the client is
                // back (the target reports its open ports anew; forwards
                // already running keep their local listeners).
                let e = match failed {
                    Some(Err(e)) => anyhow::Error::new(e),
                    _ => anyhow::anyhow!("the stream ended"),
                };
                match rewatch_ports(&client).await {
                    Some(again) => {
                        events = again;
                        continue;
                    }
                    None => return e.context("watching the target's ports"),
                }
            }
        };
        let Ok(port) = u16::try_from(ev.port) else {
            continue;
        };
        if ev.open {
            // On the local target our own listeners show up too; forwarding
            // them would chase our own tail.
            let ours = own_ports
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&port);
            if local_target && (ev.pid == me || ours) {
                continue;
            }
            if let Some(a) = active.get_mut(&port) {
                a.addresses.insert(ev.address);
                continue;
            }
            let listener = match TcpListener::bind((DEFAULT_BIND, port)).await {
                Ok(l) => Ok(l),
                Err(_) => TcpListener::bind((DEFAULT_BIND, 0)).await,
            };
            let listener = match listener.and_then(|l| Ok((l.local_addr()?, l))) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!("cannot listen locally to forward port {port}: {e}");
                    continue;
                }
            };
            let (listen, listener) = listener;
            own_ports
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(listen.port());
            let host = dial_host(&ev.address);
            let to = host_port(&host, port);
            announce(
                json,
                "auto",
                &listen.to_string(),
                &to,
                Some((ev.pid, &ev.process)),
            );
            let task = tokio::spawn(serve_local(
                listener,
                client.clone(),
                host,
                port,
                limit.clone(),
                master.clone(),
            ));
            active.insert(
                port,
                AutoForward {
                    addresses: HashSet::from([ev.address]),
                    listen,
                    to,
                    task,
                },
            );
        } else if let Some(a) = active.get_mut(&port) {
            a.addresses.remove(&ev.address);
            if a.addresses.is_empty() {
                let a = active.remove(&port).expect("present");
                a.task.abort();
                own_ports
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&a.listen.port());
                announce(json, "auto-stopped", &a.listen.to_string(), &a.to, None);
            }
        }
    }
}

/// A dev container's `forwardPorts` (with their `portsAttributes` labels)
/// as local forwards to the same port numbers.
pub fn devcontainer_ports(target: &str) -> anyhow::Result<Vec<(Spec, Option<String>)>> {
    let Some(folder) = target.strip_prefix("devcontainer:") else {
        return Ok(Vec::new());
    };
    let r = yonder_devcontainer::up::resolve(Path::new(folder), None)?;
    let value = &r.value;
    let mut out = Vec::new();
    for p in value
        .get("forwardPorts")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
    {
        let (host, port) = match p {
            serde_json::Value::Number(n) => (
                "127.0.0.1".to_string(),
                n.as_u64().and_then(|n| u16::try_from(n).ok()),
            ),
            serde_json::Value::String(s) => match s.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().ok()),
                None => ("127.0.0.1".to_string(), s.parse().ok()),
            },
            _ => continue,
        };
        let Some(port) = port.filter(|p| *p != 0) else {
            anyhow::bail!(
                "{}: forwardPorts entry {p} is not a port",
                r.file.path.display()
            );
        };
        let label = value
            .pointer(&format!("/portsAttributes/{port}/label"))
            .and_then(serde_json::Value::as_str)
            .map(String::from);
        out.push((
            Spec {
                bind: None,
                port,
                host,
                host_port: port,
            },
            label,
        ));
    }
    Ok(out)
}

/// Listens for each of `ports` here (the same port number when free, else
/// any) and forwards to the target; returns the addresses taken. For
/// sessions that forward a dev container's ports while they run.
pub async fn forward_ports(
    client: &Client,
    ports: Vec<(Spec, Option<String>)>,
) -> anyhow::Result<Vec<SocketAddr>> {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut taken = Vec::new();
    for (spec, label) in ports {
        let listener = match TcpListener::bind((spec.bind(), spec.port)).await {
            Ok(l) => l,
            Err(_) => TcpListener::bind((spec.bind(), 0))
                .await
                .with_context(|| format!("listening on {}", spec.bind()))?,
        };
        let addr = listener.local_addr()?;
        let label = label.map(|l| format!(" ({l})")).unwrap_or_default();
        eprintln!("forwarding {addr} -> {}{label}", spec.to());
        taken.push(addr);
        tokio::spawn(serve_local(
            listener,
            client.clone(),
            spec.host.clone(),
            spec.host_port,
            limit.clone(),
            None,
        ));
    }
    Ok(taken)
}

pub async fn run(run_dir: Option<&Path>, args: ForwardArgs) -> anyhow::Result<()> {
    let local: Vec<Spec> = args
        .local
        .iter()
        .map(|s| parse_spec(s))
        .collect::<Result<_, _>>()
        .map_err(usage)?;
    let remote: Vec<Spec> = args
        .remote
        .iter()
        .map(|s| parse_spec(s))
        .collect::<Result<_, _>>()
        .map_err(|e| usage(format!("--remote {e}")))?;
    // A dev container with nothing named: its configured forwardPorts.
    let mut local = local;
    if local.is_empty() && remote.is_empty() && !args.auto {
        local = devcontainer_ports(&args.target)?
            .into_iter()
            .map(|(s, _)| s)
            .collect();
    }
    if local.is_empty() && remote.is_empty() && !args.auto {
        return Err(usage(
            "nothing to forward: give [BIND:]PORT:HOST:PORT, --remote [BIND:]PORT:HOST:PORT or --auto (or forwardPorts in a dev container's config)"
                .into(),
        ));
    }
    let (target, client) = connect(run_dir, &args.target).await?;
    // An SSH target: connections may ride on the master (see serve_local).
    let master = if args.through_server {
        None
    } else {
        yonder_target::mux::control_socket(&target, run_dir).await
    };
    tracing::debug!("ssh master control socket: {master:?}");
    // Before the first mapping is printed: whoever reads it may stop us at
    // once, and must get a clean exit rather than the default action.
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let own_ports = Arc::new(Mutex::new(HashSet::new()));
    // The first fatal error of any forward ends the command.
    let (fatal_tx, mut fatal_rx) = mpsc::channel::<anyhow::Error>(1);

    for spec in local {
        let listener = TcpListener::bind((spec.bind(), spec.port))
            .await
            .with_context(|| format!("listening on {}", host_port(spec.bind(), spec.port)))?;
        let addr = listener.local_addr()?;
        own_ports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(addr.port());
        announce(args.json, "local", &addr.to_string(), &spec.to(), None);
        tokio::spawn(serve_local(
            listener,
            client.clone(),
            spec.host.clone(),
            spec.host_port,
            limit.clone(),
            master.clone(),
        ));
    }
    for spec in remote {
        let l = client
            .listen(spec.bind(), spec.port)
            .await
            .with_context(|| {
                format!(
                    "listening on {} on the target",
                    host_port(spec.bind(), spec.port)
                )
            })?;
        announce(
            args.json,
            "remote",
            &host_port(spec.bind(), l.port),
            &spec.to(),
            None,
        );
        let (c, tx, limit) = (client.clone(), fatal_tx.clone(), limit.clone());
        tokio::spawn(async move {
            let mut l = l;
            loop {
                let port = l.port;
                let e = serve_remote(l, c.clone(), spec.clone(), limit.clone()).await;
                // After a dropped connection the target's listener is gone:
                // listen again on the same port once the client is back.
                match relisten(&c, &spec, port).await {
                    Some(again) => l = again,
                    None => {
                        let _ = tx.send(e).await;
                        return;
                    }
                }
            }
        });
    }
    if args.auto {
        let (c, tx, own, limit) = (
            client.clone(),
            fatal_tx.clone(),
            own_ports.clone(),
            limit.clone(),
        );
        let local_target = target.is_local();
        let json = args.json;
        let master = master.clone();
        tokio::spawn(async move {
            let e = auto_forward(c, local_target, own, json, limit, master).await;
            let _ = tx.send(e).await;
        });
    }
    drop(fatal_tx);

    tokio::select! {
        _ = int.recv() => Ok(()),
        _ = term.recv() => Ok(()),
        // With only local forwards no sender is left and this branch is
        // disabled: only a signal ends the command.
        Some(e) = fatal_rx.recv() => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(bind: Option<&str>, port: u16, host: &str, host_port: u16) -> Spec {
        Spec {
            bind: bind.map(Into::into),
            port,
            host: host.into(),
            host_port,
        }
    }

    #[test]
    fn parses_the_ssh_forms() {
        assert_eq!(
            parse_spec("8080:localhost:80"),
            Ok(spec(None, 8080, "localhost", 80))
        );
        assert_eq!(
            parse_spec("0:db.internal:5432"),
            Ok(spec(None, 0, "db.internal", 5432))
        );
        assert_eq!(
            parse_spec("0.0.0.0:8080:localhost:80"),
            Ok(spec(Some("0.0.0.0"), 8080, "localhost", 80))
        );
        assert_eq!(
            parse_spec("[::1]:8080:[fe80::1]:80"),
            Ok(spec(Some("::1"), 8080, "fe80::1", 80))
        );
        assert_eq!(
            parse_spec("9000:[::1]:9001"),
            Ok(spec(None, 9000, "::1", 9001))
        );
        assert_eq!(
            parse_spec("localhost:65535:127.0.0.1:1"),
            Ok(spec(Some("localhost"), 65535, "127.0.0.1", 1))
        );
    }

    #[test]
    fn rejects_hostile_and_malformed_specs() {
        for bad in [
            "",
            ":",
            "8080",
            "8080:localhost",
            "8080::80",             // empty host
            ":8080:localhost:80",   // empty bind
            "8080:localhost:0",     // destination port 0
            "8080:localhost:65536", // out of range
            "-1:localhost:80",
            "+80:localhost:80", // u16::from_str accepts a plus sign
            "80 :localhost:80",
            "99999999999999999999:h:80",
            "::1:8080:localhost:80",  // IPv6 without brackets
            "[::1:8080:localhost:80", // unclosed bracket
            "[]:8080:localhost:80",
            "[::1]x:8080:localhost:80",
            "a]:8080:localhost:80",
            "[[::1]]:8080:localhost:80",
            "1:2:3:4:5",
            "a:b:c:d",
            "8080:localhost:80:",
        ] {
            assert!(parse_spec(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn ipv6_hosts_print_in_brackets() {
        assert_eq!(host_port("::1", 80), "[::1]:80");
        assert_eq!(host_port("localhost", 80), "localhost:80");
        assert_eq!(dial_host("::"), "::1");
        assert_eq!(dial_host("0.0.0.0"), "127.0.0.1");
        assert_eq!(dial_host("10.0.0.5"), "10.0.0.5");
    }
}
