//! `yonder ssh-proxy`, `yonder ssh-config` and the target side of the SSH
//! bridge's SFTP (`yonder server sftp`).

use crate::cli::{SshConfigOp, SshProxyArgs};
use crate::{EXIT_UNREACHABLE, EXIT_USAGE, Exit};
use anyhow::Context as _;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use yonder_bridge::{BridgeConfig, BridgeError, keys, ssh_config};
use yonder_target::Target;

/// Where yonder keeps the bridge's files: `~/.yonder/ssh-bridge`.
fn bridge_dir() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("$HOME is not set: the bridge keeps its host keys under ~/.yonder")?;
    Ok(PathBuf::from(home).join(".yonder").join("ssh-bridge"))
}

fn ssh_dir() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("$HOME is not set: cannot find ~/.ssh")?;
    Ok(PathBuf::from(home).join(".ssh"))
}

fn host_key_path(target: &Target) -> anyhow::Result<PathBuf> {
    Ok(bridge_dir()?
        .join("host-keys")
        .join(keys::host_key_file_name(&target.to_string())))
}

/// Fails as ssh does when it cannot reach a host: exit code 255.
fn unreachable(e: anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(Exit {
        code: EXIT_UNREACHABLE,
        error: Some(e),
    })
}

pub async fn ssh_proxy(run_dir: Option<&Path>, args: SshProxyArgs) -> anyhow::Result<()> {
    let target: Target = args.target.parse().map_err(|e| {
        anyhow::Error::new(Exit {
            code: EXIT_USAGE,
            error: Some(anyhow::Error::new(e)),
        })
    })?;
    let key_path = match args.host_key {
        Some(p) => p,
        None => host_key_path(&target).map_err(unreachable)?,
    };
    let host_key = keys::load_or_create_host_key(&key_path)
        .context("the SSH bridge's host key")
        .map_err(unreachable)?;
    let ssh = ssh_dir().map_err(unreachable)?;
    let allowed_keys = keys::user_keys(&ssh).await;
    if allowed_keys.is_empty() {
        return Err(unreachable(anyhow::anyhow!(
            "no key to accept: the bridge lets in only keys you hold, and there is no {}/*.pub and no ssh-agent key; make one with `ssh-keygen -t ed25519`",
            ssh.display()
        )));
    }
    let run_dir = run_dir.map(Path::to_path_buf);
    let name = args.target.clone();
    let connect = async move {
        match crate::connect(run_dir.as_deref(), &name).await {
            Ok((_, client)) => Ok(client),
            Err(e) => {
                let message = format!("{e:#}");
                // ssh shows a ProxyCommand's stderr to the user as is.
                eprintln!("yonder: {message}");
                Err(message)
            }
        }
    };
    // ssh runs us in its own process group: a closed terminal window
    // (SIGHUP) or a Ctrl-C (SIGINT) meant for ssh reaches us too. Outliving
    // them lets ssh's exit end our stdin, and the session then ends cleanly
    // (programs ended, terminals hung up) instead of leaving shells behind.
    use tokio::signal::unix::{SignalKind, signal};
    let _hangup = signal(SignalKind::hangup()).context("installing a SIGHUP handler")?;
    let _interrupt = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
    let stdio = proxy_stdio();
    let config = BridgeConfig {
        host_key,
        allowed_keys,
    };
    match yonder_bridge::serve(stdio, connect, config).await {
        Ok(()) => Ok(()),
        // Already printed by `connect`.
        Err(BridgeError::Target(_)) => Err(crate::exit_with(EXIT_UNREACHABLE.into())),
        Err(e) => Err(unreachable(anyhow::Error::new(e))),
    }
}

/// A duplex byte stream, boxed: the proxy's stdio is one of two kinds.
trait Duplex: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Duplex for T {}

/// ssh's pipes to its ProxyCommand, polled directly (non-blocking, 1 MiB
/// pipes); tokio's stdin and stdout would hand every read and write to a
/// blocking thread, two thread hops per chunk on the bridge's data path.
/// A terminal or a file on stdio (someone running `ssh-proxy` by hand)
/// falls back to those.
fn proxy_stdio() -> Box<dyn Duplex> {
    let fds = (|| {
        let read = std::io::stdin().as_fd().try_clone_to_owned()?;
        let write = std::io::stdout().as_fd().try_clone_to_owned()?;
        yonder_server::stdio::StdioStream::new(read, write)
    })();
    match fds {
        Ok(s) => Box::new(s),
        Err(e) => {
            tracing::debug!("stdio through tokio's blocking threads: {e}");
            Box::new(tokio::io::join(tokio::io::stdin(), tokio::io::stdout()))
        }
    }
}

/// `yonder server sftp`: SFTP on stdin/stdout, on the target.
pub async fn sftp_server() -> anyhow::Result<()> {
    // Plain files on fds 0 and 1: Rust's stdout is line-buffered, which
    // would split binary replies at every newline byte.
    let input = std::fs::File::from(std::io::stdin().as_fd().try_clone_to_owned()?);
    let output = std::fs::File::from(std::io::stdout().as_fd().try_clone_to_owned()?);
    let home = yonder_bridge::sftp::home_dir();
    tokio::task::spawn_blocking(move || yonder_bridge::sftp::serve(input, output, home))
        .await?
        .context("serving SFTP")
}

pub fn ssh_config(op: SshConfigOp) -> anyhow::Result<()> {
    let files = ssh_config::Files::in_dir(&ssh_dir()?);
    match op {
        SshConfigOp::Add { target, name, user } => add_alias(&target, name, user, false),
        SshConfigOp::Multiplex { host } => crate::keys_cmd::multiplex(host),
        SshConfigOp::Remove { alias } => {
            if files.remove(&alias)? {
                println!("removed {alias} from {}", files.managed.display());
                Ok(())
            } else {
                Err(anyhow::Error::new(Exit {
                    code: crate::EXIT_FAILURE,
                    error: Some(anyhow::anyhow!(
                        "no host {alias:?} in {} (`yonder ssh-config list` shows them)",
                        files.managed.display()
                    )),
                }))
            }
        }
        SshConfigOp::List => {
            for (alias, target) in files.list()? {
                println!("{alias}\t{target}");
            }
            Ok(())
        }
    }
}

/// `ssh-config add`: writes the `Host` entry for `target` (and trusts its
/// host key). Messages go to stderr when `quiet_stdout` (for `yonder up`,
/// whose stdout is one JSON line).
pub fn add_alias(
    target: &str,
    name: Option<String>,
    user: Option<String>,
    quiet_stdout: bool,
) -> anyhow::Result<()> {
    macro_rules! say {
        ($($t:tt)*) => {
            if quiet_stdout { eprintln!($($t)*) } else { println!($($t)*) }
        };
    }
    let files = ssh_config::Files::in_dir(&ssh_dir()?);
    let t: Target = target.parse().map_err(|e| {
        anyhow::Error::new(Exit {
            code: EXIT_USAGE,
            error: Some(anyhow::Error::new(e)),
        })
    })?;
    let canonical = t.to_string();
    let alias = name.unwrap_or_else(|| ssh_config::default_alias(&canonical));
    ssh_config::check_alias(&alias).map_err(|e| {
        anyhow::Error::new(Exit {
            code: EXIT_USAGE,
            error: Some(anyhow::Error::new(e)),
        })
    })?;
    let user = match user {
        Some(u) => u,
        None => std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .context("$USER is not set: pass --user")?,
    };
    let exe = std::env::current_exe().context("cannot find the yonder executable")?;
    // Make the host key now and trust it, so the first `ssh ALIAS`
    // asks no question and later ones still check it.
    let key =
        keys::load_or_create_host_key(&host_key_path(&t)?).context("the SSH bridge's host key")?;
    let known_hosts = bridge_dir()?.join("known_hosts");
    let entry = ssh_config::Entry {
        alias: alias.clone(),
        target: canonical.clone(),
        user,
        yonder: exe,
        host_key_alias: ssh_config::host_key_alias(&canonical),
        known_hosts: known_hosts.clone(),
    };
    let public = key
        .public_key()
        .to_openssh()
        .context("encoding the host key")?;
    ssh_config::trust_host_key(&known_hosts, &entry.host_key_alias, &public)?;
    let changed = files.add(&entry)?;
    if changed.include_added {
        say!(
            "added `Include {}` at the top of {} (backup: {}.yonder-backup)",
            files.managed.display(),
            files.main.display(),
            files.main.display()
        );
    }
    say!(
        "{} {alias} -> {canonical} in {}; connect with: ssh {alias}",
        if changed.replaced { "updated" } else { "added" },
        files.managed.display()
    );
    Ok(())
}
