//! Targets: where work happens, and how to get a yonder server there.
//!
//! A [`Target`] is parsed from what the user types (`local`, `host`,
//! `ssh://user@host:22`, `container://name`, `devcontainer:./path`,
//! `wsl://Debian`). [`Target::connect`] reaches its server and returns a
//! [`Client`]. `local` is the daemon on this machine, started on demand; the
//! other kinds are parsed now and connected by later work.

pub mod askpass;
pub mod mux;
pub mod ssh;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use yonder_client::{Client, ConnectError};
use yonder_devcontainer::engine::Engine;
use yonder_server::rundir::{RunDir, RunDirError};

/// A daemon that just decided to exit for idleness may close a connection it
/// accepted a moment before; one retry after this pause reaches the new one.
const IDLE_RACE_RETRY: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// This machine.
    Local,
    /// An SSH host as `ssh` knows it: an ssh_config alias or a host name.
    Ssh {
        user: Option<String>,
        host: String,
        port: Option<u16>,
    },
    /// A running container, by name or id.
    Container { name: String },
    /// The dev container of a project folder.
    DevContainer { folder: PathBuf },
    /// A WSL distribution.
    Wsl { distro: String },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid target {input:?}: {reason}")]
pub struct ParseTargetError {
    pub input: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Ssh(#[from] ssh::SshError),
    #[error("{0}")]
    Container(String),
    #[error(transparent)]
    Engine(#[from] yonder_devcontainer::engine::EngineError),
    #[error(transparent)]
    DevContainer(#[from] yonder_devcontainer::up::UpError),
}

fn err(input: &str, reason: impl Into<String>) -> ParseTargetError {
    ParseTargetError {
        input: input.into(),
        reason: reason.into(),
    }
}

/// A host name must not be empty, contain spaces or control characters, or
/// start with `-` (it would reach `ssh` as an option: CVE-2017-1000117 style).
fn check_host(input: &str, host: &str) -> Result<(), ParseTargetError> {
    if host.is_empty() {
        return Err(err(input, "the host is empty"));
    }
    if host.starts_with('-') {
        return Err(err(input, "a host cannot start with '-'"));
    }
    if host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '/' || c == '@')
    {
        return Err(err(
            input,
            "the host contains a space, '/', '@' or a control character",
        ));
    }
    Ok(())
}

fn parse_ssh(input: &str, rest: &str) -> Result<Target, ParseTargetError> {
    let (user, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => {
            if u.is_empty()
                || u.starts_with('-')
                || u.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(err(input, "invalid user name"));
            }
            (Some(u.to_string()), h)
        }
        None => (None, rest),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        // [::1] or [::1]:2222
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| err(input, "missing ']' after an IPv6 address"))?;
        match after {
            "" => (h, None),
            p => (
                h,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| err(input, "expected ':PORT' after ']'"))?,
                ),
            ),
        }
    } else if hostport.matches(':').count() > 1 {
        return Err(err(input, "an IPv6 address needs brackets: [ADDRESS]:PORT"));
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if !host.contains(':') {
        check_host(input, host)?;
    } else if host.is_empty() {
        return Err(err(input, "the host is empty"));
    }
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| err(input, format!("{p:?} is not a port number (1-65535)")))?,
        ),
    };
    Ok(Target::Ssh {
        user,
        host: host.to_string(),
        port,
    })
}

impl FromStr for Target {
    type Err = ParseTargetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "local" {
            return Ok(Target::Local);
        }
        if let Some(rest) = s.strip_prefix("ssh://") {
            return parse_ssh(s, rest.trim_end_matches('/'));
        }
        if let Some(name) = s.strip_prefix("container://") {
            if name.is_empty() || name.starts_with('-') {
                return Err(err(s, "expected container://NAME"));
            }
            return Ok(Target::Container { name: name.into() });
        }
        if let Some(path) = s.strip_prefix("devcontainer:") {
            if path.is_empty() {
                return Err(err(s, "expected devcontainer:PATH (the project folder)"));
            }
            return Ok(Target::DevContainer {
                folder: path.into(),
            });
        }
        if let Some(distro) = s.strip_prefix("wsl://") {
            if distro.is_empty() || distro.starts_with('-') {
                return Err(err(s, "expected wsl://DISTRO"));
            }
            return Ok(Target::Wsl {
                distro: distro.into(),
            });
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(err(
                s,
                format!(
                    "unknown scheme {scheme:?}; use local, HOST, ssh://, container://, devcontainer: or wsl://"
                ),
            ));
        }
        parse_ssh(s, s)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Local => f.write_str("local"),
            Target::Ssh { user, host, port } => {
                f.write_str("ssh://")?;
                if let Some(u) = user {
                    write!(f, "{u}@")?;
                }
                if host.contains(':') {
                    write!(f, "[{host}]")?
                } else {
                    f.write_str(host)?
                }
                if let Some(p) = port {
                    write!(f, ":{p}")?;
                }
                Ok(())
            }
            Target::Container { name } => write!(f, "container://{name}"),
            Target::DevContainer { folder } => write!(f, "devcontainer:{}", folder.display()),
            Target::Wsl { distro } => write!(f, "wsl://{distro}"),
        }
    }
}

/// What connecting needs from the program using this crate.
#[derive(Clone)]
pub struct ConnectOptions {
    /// The yonder executable that runs `server daemon` (usually our own).
    pub exe: PathBuf,
    /// The daemon's runtime directory; `None` for the default.
    pub run_dir: Option<PathBuf>,
    /// Told about slow steps (connecting, installing the server).
    pub reporter: Arc<dyn ssh::ConnectReporter>,
    /// The container engine CLI for container targets; `None`: found on
    /// PATH (or `YONDER_DOCKER_PATH`).
    pub docker_path: Option<PathBuf>,
    /// Who answers ssh's prompts (default: the terminal).
    pub prompter: askpass::Prompter,
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("exe", &self.exe)
            .field("run_dir", &self.run_dir)
            .finish()
    }
}

impl Target {
    /// Whether relative paths should be made absolute against the local
    /// working directory before they are sent (true only for `local`: on a
    /// remote host, relative paths mean "in the home directory", as in scp).
    pub fn is_local(&self) -> bool {
        matches!(self, Target::Local)
    }

    pub async fn connect(&self, opts: &ConnectOptions) -> Result<Client, TargetError> {
        match self {
            Target::Local => return connect_local(&opts.exe, opts.run_dir.as_deref()).await,
            Target::Ssh { user, host, port } => {
                // yonder's ControlMaster sockets live beside the daemon's
                // socket: private to the user, short paths.
                let base = match &opts.run_dir {
                    Some(d) => d.clone(),
                    None => RunDir::default_path()?,
                };
                let control = base.join("ssh");
                return ssh::connect(
                    user.clone(),
                    host.clone(),
                    *port,
                    control,
                    &opts.exe,
                    opts.reporter.as_ref(),
                    opts.prompter.clone(),
                )
                .await;
            }
            Target::Container { name } => {
                return connect_container(self, name, opts).await;
            }
            Target::DevContainer { folder } => {
                return connect_devcontainer(self, folder, opts).await;
            }
            Target::Wsl { distro } => {
                return ssh::connect_wsl(distro.clone(), &opts.exe, opts.reporter.as_ref()).await;
            }
        }
    }
}

/// `container://[USER@]NAME`: any running container, as its own user or USER.
async fn connect_container(
    t: &Target,
    name: &str,
    opts: &ConnectOptions,
) -> Result<Client, TargetError> {
    let (user, name) = match name.split_once('@') {
        Some((u, n)) => (Some(u.to_string()), n),
        None => (None, name),
    };
    let engine = Engine::detect(opts.docker_path.as_deref())?;
    let found = engine.inspect(&[name.to_string()]).await?;
    let Some(c) = found.into_iter().next() else {
        return Err(TargetError::Container(format!(
            "{t}: no container named {name:?} ({} ps lists the running ones)",
            engine.program.display()
        )));
    };
    if !c.running {
        return Err(TargetError::Container(format!(
            "{t}: container {name} is {}; start it with `{} start {name}`",
            c.status,
            engine.program.display()
        )));
    }
    let h = ssh::SshHost::container(
        t.to_string(),
        engine.program.display().to_string(),
        c.id,
        user,
        Vec::new(),
        ssh::SshSettings::from_env(),
    );
    ssh::connect_container(h, &opts.exe, opts.reporter.as_ref()).await
}

/// `devcontainer:FOLDER`: the dev container `yonder up` made for FOLDER, as
/// its remoteUser with its remoteEnv.
async fn connect_devcontainer(
    t: &Target,
    folder: &Path,
    opts: &ConnectOptions,
) -> Result<Client, TargetError> {
    use yonder_devcontainer::up;
    let r = up::resolve(folder, None)?;
    let engine = Engine::detect(opts.docker_path.as_deref())?;
    let Some(c) = up::find_container(&engine, &r).await? else {
        return Err(TargetError::Container(format!(
            "{t}: no dev container for {} yet; run `yonder up --workspace-folder {}`",
            r.workspace.display(),
            folder.display()
        )));
    };
    if !c.running {
        return Err(TargetError::Container(format!(
            "{t}: the dev container {} is {}; run `yonder up --workspace-folder {}` to start it",
            up::short(&c.id),
            c.status,
            folder.display()
        )));
    }
    let mut snippets: Vec<serde_json::Value> = c
        .labels
        .get(up::LABEL_METADATA)
        .and_then(|l| yonder_devcontainer::metadata::parse_label(l).ok())
        .unwrap_or_default();
    if snippets.last().is_some_and(|l| l.get("id").is_none()) {
        snippets.pop();
    }
    snippets.push(yonder_devcontainer::metadata::snippet(&r.value));
    let merged = yonder_devcontainer::metadata::merge(&snippets);
    let user = up::remote_user(&merged, &c);
    let env = up::remote_env(&merged, &c);
    let mut settings = ssh::SshSettings::from_env();
    // The folder shared with the container (see `up::LABEL_HOST_RUN`): its
    // server's socket is then reachable from here without `exec`.
    let shared = c
        .labels
        .get(up::LABEL_HOST_RUN)
        .filter(|_| settings.remote_run_dir.is_none())
        .filter(|_| {
            !user.is_empty()
                && user
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch))
        })
        .map(|h| {
            let leaf = format!("{user}-{}", yonder_proto::YONDER_VERSION);
            (
                Path::new(h).join(&leaf),
                format!("{}/{leaf}", up::CONTAINER_RUN),
            )
        });
    if let Some((host_dir, container_dir)) = &shared {
        if let Some(c) = connect_shared(host_dir).await {
            return Ok(c);
        }
        settings.remote_run_dir = Some(container_dir.clone());
    }
    let h = ssh::SshHost::container(
        t.to_string(),
        engine.program.display().to_string(),
        c.id,
        Some(user),
        env,
        settings,
    );
    let client = ssh::connect_container(h, &opts.exe, opts.reporter.as_ref()).await?;
    // Through `exec`, the server is installed and its daemon started in the
    // shared folder: from here on (this connection included) go direct.
    if let Some((host_dir, _)) = &shared
        && let Some(c) = connect_shared(host_dir).await
    {
        return Ok(c);
    }
    Ok(client)
}

/// Connects to a container's daemon through the socket in the folder it
/// shares with the host; `None` when that is not possible (no daemon yet,
/// its folder not ours to enter, a mount that did not happen), and the
/// caller uses `exec`.
async fn connect_shared(dir: &Path) -> Option<Client> {
    let sock = dir.join("daemon.sock");
    let stream = tokio::net::UnixStream::connect(&sock).await.ok()?;
    let endpoint = format!("the dev container's daemon ({})", sock.display());
    match Client::over_stream(stream, &[], &endpoint).await {
        Ok(c) => Some(c.with_fdpass(dir.join("fdpass.sock"))),
        Err(e) => {
            tracing::debug!("{endpoint}: {e}; using exec");
            None
        }
    }
}

async fn connect_local(exe: &Path, run_dir: Option<&Path>) -> Result<Client, TargetError> {
    let dir = match run_dir {
        Some(d) => d.to_path_buf(),
        None => RunDir::default_path()?,
    };
    let run = RunDir::open(dir)?;
    let endpoint = format!("the local daemon ({})", run.socket().display());
    let mut attempt = 0;
    loop {
        // Handed over with this process's environment (programs it starts
        // get the caller's PATH, SSH_AUTH_SOCK, ...), else the daemon's
        // socket as it was.
        let handed = yonder_server::proxy::session_stream(&run, exe, &[]).await;
        let connected = match handed {
            Ok(Some(stream)) => Client::over_stream(stream, &[], &endpoint).await,
            other => {
                if let Err(e) = other {
                    tracing::debug!("{endpoint}: handing a connection over failed: {e}");
                }
                let stream = run.connect_or_start(exe, &[]).await?;
                Client::over_stream(stream, &[], &endpoint).await
            }
        };
        match connected {
            Ok(c) => return Ok(c.with_fdpass(run.fdpass())),
            Err(ConnectError::Handshake {
                source: yonder_proto::handshake::HandshakeError::Io(_),
                ..
            }) if attempt == 0 => {
                attempt += 1;
                tokio::time::sleep(IDLE_RACE_RETRY).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssh(user: Option<&str>, host: &str, port: Option<u16>) -> Target {
        Target::Ssh {
            user: user.map(Into::into),
            host: host.into(),
            port,
        }
    }

    #[test]
    fn parses_every_kind() {
        let cases = [
            ("local", Target::Local),
            ("devbox", ssh(None, "devbox", None)),
            ("me@devbox", ssh(Some("me"), "devbox", None)),
            ("me@devbox:2222", ssh(Some("me"), "devbox", Some(2222))),
            (
                "ssh://me@devbox:2222",
                ssh(Some("me"), "devbox", Some(2222)),
            ),
            ("ssh://devbox/", ssh(None, "devbox", None)),
            ("ssh://[::1]:22", ssh(None, "::1", Some(22))),
            ("[fe80::1]", ssh(None, "fe80::1", None)),
            (
                "user.name@host@corp@jump",
                ssh(Some("user.name@host@corp"), "jump", None),
            ),
            (
                "container://web-1",
                Target::Container {
                    name: "web-1".into(),
                },
            ),
            (
                "devcontainer:./proj",
                Target::DevContainer {
                    folder: "./proj".into(),
                },
            ),
            (
                "wsl://Ubuntu-22.04",
                Target::Wsl {
                    distro: "Ubuntu-22.04".into(),
                },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<Target>().as_ref(), Ok(&want), "{input}");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "local",
            "ssh://me@devbox:2222",
            "ssh://[::1]:22",
            "container://c",
            "wsl://D",
        ] {
            let t: Target = s.parse().unwrap();
            assert_eq!(t.to_string(), s);
            assert_eq!(t.to_string().parse::<Target>().unwrap(), t);
        }
    }

    #[test]
    fn hostile_inputs_are_refused() {
        for bad in [
            "",
            "-oProxyCommand=touch /tmp/pwned",
            "ssh://-oProxyCommand=x",
            "me@",
            "@host",
            "host:0",
            "host:99999",
            "host:ssh",
            "fe80::1",
            "[::1",
            "ho st",
            "host\n",
            "ftp://host",
            "container://",
            "devcontainer:",
            "wsl://",
        ] {
            assert!(bad.parse::<Target>().is_err(), "{bad:?} should be refused");
        }
    }
}
