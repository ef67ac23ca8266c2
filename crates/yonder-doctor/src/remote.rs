//! Checks of one SSH host, from the outside in: the resolved config (`ssh
//! -G`), the name, the TCP port (timed), the SSH banner, the host key
//! against known_hosts (`ssh-keyscan`), the auth methods offered, a key
//! login without any prompt (BatchMode), and, once logged in, the remote
//! home's modes (sshd's StrictModes), the prerequisites of the yonder
//! server and what yonder has installed there.
//!
//! Also `keys copy`: the public key appended to the remote
//! `authorized_keys` once, over one ssh connection whose prompts go through
//! yonder's askpass.
//!
//! Remote commands follow the SSH target's rule: one line of POSIX sh with
//! no single quote, backslash, `!` or newline, so any login shell passes it
//! to `sh -c` unchanged.

use crate::sshconfig::{self, Resolved};
use crate::{Check, Fix, FixAction, Paths};
use std::io::Read;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use yonder_target::Target;

/// TCP connect and banner wait: long enough for a slow VPN, short enough
/// that a black-holed port does not stall the doctor.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// ssh's own ConnectTimeout for the login checks (seconds).
const SSH_CONNECT_TIMEOUT: &str = "ConnectTimeout=10";

/// Below this much free space the server install (about 20 MiB) and its
/// logs may not fit.
const MIN_FREE_KIB: u64 = 100 * 1024;

const BEGIN: &str = "___YONDER_DOCTOR_BEGIN___";
const END: &str = "___YONDER_DOCTOR_END___";

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{0} is not an SSH host: doctor checks SSH hosts (for local, run `yonder doctor`)")]
    NotSsh(String),
    #[error(transparent)]
    Parse(#[from] yonder_target::ParseTargetError),
    #[error(transparent)]
    Config(#[from] sshconfig::ConfigError),
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Ssh(yonder_target::ssh::SshError),
    #[error("{path}: {detail}")]
    Key { path: PathBuf, detail: String },
    #[error("the remote side failed: {0}")]
    Remote(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// An SSH destination as the user typed it.
#[derive(Debug, Clone)]
pub struct Host {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// What the user typed (for messages and `yonder doctor TARGET`).
    pub display: String,
}

impl Host {
    pub fn parse(target: &str) -> Result<Self, RemoteError> {
        match target.parse::<Target>()? {
            Target::Ssh { user, host, port } => Ok(Self {
                user,
                host,
                port,
                display: target.to_string(),
            }),
            _ => Err(RemoteError::NotSsh(target.into())),
        }
    }

    /// `-p`/`-l` for ssh.
    fn dest_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(p) = self.port {
            a.extend(["-p".to_string(), p.to_string()]);
        }
        if let Some(u) = &self.user {
            a.extend(["-l".to_string(), u.clone()]);
        }
        a
    }

    /// An ssh command to this host with the user's config and `extra`
    /// options; never through a shared master (each check stands alone).
    fn ssh(&self, paths: &Paths, extra: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(&paths.ssh);
        c.args(paths.config_args())
            .args(self.dest_args())
            .args(["-o", "ControlMaster=no", "-o", "ControlPath=none"])
            .args(["-o", SSH_CONNECT_TIMEOUT])
            .args(extra)
            .arg(&self.host);
        c
    }
}

/// The seed's table: how to install an SSH server, per OS.
pub const SERVER_INSTALL: &str = "install and start an SSH server there: \
Debian/Ubuntu `sudo apt-get install openssh-server`; \
RHEL/Fedora/CentOS `sudo yum install openssh-server && sudo systemctl start sshd.service && sudo systemctl enable sshd.service`; \
SUSE `sudo zypper install openssh`; \
macOS: System Settings > General > Sharing > Remote Login; \
Windows 10 1809+/Server 2019+: `Add-WindowsCapability -Online -Name OpenSSH.Server~~~~0.0.1.0` then `Start-Service sshd`";

/// Everything learned about the host, as checks. With `interactive`, a
/// host where key login needs a prompt is logged in to once through
/// askpass (password, passphrase, 2FA) for the remote checks; otherwise
/// those are skipped. Call from a blocking thread inside a tokio runtime.
pub fn check(paths: &Paths, target: &str, interactive: bool) -> Result<Vec<Check>, RemoteError> {
    let host = Host::parse(target)?;
    let mut out = Vec::new();
    let resolved = match sshconfig::resolve(paths, &host.host, &host.dest_args()) {
        Ok(r) => r,
        Err(sshconfig::ConfigError::Syntax(errs)) => {
            for e in errs {
                out.push(
                    Check::problem(
                        "remote-config",
                        format!("ssh_config error: {e}"),
                        "ssh stops at any config error, so no connection is possible",
                    )
                    .with_fix(Fix::manual(format!("edit {} line {}", e.file, e.line))),
                );
            }
            return Ok(out);
        }
        Err(e) => return Err(e.into()),
    };
    let hostname = resolved.get("hostname").unwrap_or(&host.host).to_string();
    let port: u16 = resolved
        .get("port")
        .and_then(|p| p.parse().ok())
        .unwrap_or(22);
    let user = resolved.get("user").unwrap_or("").to_string();
    out.push(Check::ok(
        "remote-resolved",
        format!(
            "{} is {user}@{hostname} port {port} (from ssh -G)",
            host.display
        ),
    ));
    out.extend(identity_checks(paths, &host, &resolved));
    let proxied = resolved.get("proxyjump").is_some_and(|v| v != "none")
        || resolved.get("proxycommand").is_some_and(|v| v != "none");
    if proxied {
        out.push(Check::ok(
            "remote-proxy",
            "reached through ProxyJump/ProxyCommand: name and port are checked by the jump host",
        ));
    } else {
        // Name resolution.
        let t0 = Instant::now();
        let addrs: Vec<std::net::SocketAddr> = match (hostname.as_str(), port).to_socket_addrs() {
            Ok(a) => a.collect(),
            Err(e) => {
                out.push(
                    Check::problem(
                        "remote-dns",
                        format!("{hostname} does not resolve: {e}"),
                        "no address, no connection",
                    )
                    .with_fix(Fix::manual(format!(
                        "check the spelling, or set `HostName` for {} in {}",
                        host.host,
                        paths.tilde(&paths.config)
                    ))),
                );
                return Ok(out);
            }
        };
        out.push(Check::ok(
            "remote-dns",
            format!(
                "{hostname} resolves to {} ({} ms)",
                addrs
                    .iter()
                    .map(|a| a.ip().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                t0.elapsed().as_millis()
            ),
        ));
        // TCP and banner.
        match tcp_banner(&addrs) {
            Ok((addr, took, banner)) => out.push(Check::ok(
                "remote-tcp",
                format!(
                    "port {port} at {} answers in {} ms: {banner}",
                    addr.ip(),
                    took.as_millis()
                ),
            )),
            Err(e) => {
                out.push(
                    Check::problem(
                        "remote-tcp",
                        format!("cannot reach port {port} on {hostname}: {e}"),
                        "sshd is not running there, listens on another port, or a firewall blocks it",
                    )
                    .with_fix(Fix::manual(format!(
                        "check the port (`Port` in your ssh_config); if no SSH server runs there, {SERVER_INSTALL}"
                    ))),
                );
                return Ok(out);
            }
        }
    }
    // Host key.
    let known = host_key_check(&host, &hostname, port, &resolved, paths);
    let host_key_ok =
        known.status != crate::Status::Problem && known.id != "remote-host-key-unknown";
    out.push(known);
    if !host_key_ok {
        return Ok(out);
    }
    // Auth methods, then a key login with no prompt.
    let methods = auth_methods(paths, &host);
    match &methods {
        Some(m) => out.push(Check::ok(
            "remote-auth-methods",
            format!("the server offers: {m}"),
        )),
        None => out.push(Check::warning(
            "remote-auth-methods",
            "could not list the server's auth methods",
            "ssh gave no `Permission denied (…)` line for the none method",
        )),
    }
    let probe = run_probe(paths, &host, true);
    match probe {
        Ok(text) => {
            out.push(Check::ok(
                "remote-key-login",
                "key login works without a prompt (BatchMode)",
            ));
            out.extend(remote_checks(&host, &text, paths));
        }
        Err(e) => {
            let mut c = Check::warning(
                "remote-key-login",
                format!("no login without a prompt: {e}"),
                "yonder will ask for a password (or passphrase) on each new connection; a key in the agent avoids that",
            );
            if methods.as_deref().is_some_and(|m| m.contains("publickey")) {
                c = c.with_fix(Fix::manual(format!(
                    "yonder keys copy {} (after `yonder keys generate` if you have no key)",
                    host.display
                )));
            }
            out.push(c);
            if interactive {
                // Log in the way the user can (askpass) to see why: often
                // the remote modes StrictModes rejects.
                let script = format!("sh -c '{}'", probe_script());
                let handle = tokio::runtime::Handle::current();
                match handle.block_on(run_with_askpass(paths, &host, &script, None, &[])) {
                    Ok((true, text, _)) if text.contains(END) => {
                        out.extend(remote_checks(&host, &text, paths));
                    }
                    Ok((_, _, err)) => out.push(Check::warning(
                        "remote-login",
                        format!(
                            "the remote checks need a login: {}",
                            yonder_target::ssh::classify(&host.display, &err)
                        ),
                        "modes and prerequisites on the host could not be checked",
                    )),
                    Err(e) => out.push(Check::warning(
                        "remote-login",
                        format!("the remote checks need a login: {e}"),
                        "modes and prerequisites on the host could not be checked",
                    )),
                }
            } else {
                out.push(Check::warning(
                    "remote-login",
                    "remote modes and prerequisites were not checked (no key login, and no terminal to ask for a password)",
                    "run `yonder doctor HOST` in a terminal to log in with a password for these checks",
                ));
            }
        }
    }
    Ok(out)
}

/// The IdentityFiles ssh will offer this host: which exist, which are
/// missing (only when named in a config: the defaults are optional), and
/// PuTTY keys that OpenSSH cannot read.
fn identity_checks(paths: &Paths, host: &Host, resolved: &Resolved) -> Vec<Check> {
    let mut out = Vec::new();
    let mut present = Vec::new();
    for id in resolved.all("identityfile") {
        let p = expand_tilde(id, &paths.home);
        let is_default = crate::local::DEFAULT_IDENTITIES.contains(&id.as_str());
        if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("ppk")) {
            out.push(
                Check::problem(
                    "remote-identity-ppk",
                    format!("IdentityFile {id} for {} is a PuTTY key", host.display),
                    "OpenSSH cannot read .ppk files, so this key is never offered",
                )
                .with_fix(Fix::manual(format!(
                    "yonder keys import-ppk {id}, then point IdentityFile at the converted key"
                ))),
            );
        } else if p.exists() {
            present.push(paths.tilde(&p));
        } else if !is_default {
            out.push(
                Check::warning(
                    "remote-identity-missing",
                    format!("IdentityFile {id} for {} does not exist", host.display),
                    "ssh skips it; the login may fall back to a password",
                )
                .with_fix(Fix::manual(format!(
                    "fix the IdentityFile line in {}, or `yonder keys generate --file {id}`",
                    paths.tilde(&paths.config)
                ))),
            );
        }
    }
    out.push(Check::ok(
        "remote-identities",
        if present.is_empty() {
            format!(
                "no key file is offered to {} (agent keys still are)",
                host.display
            )
        } else {
            format!("keys offered to {}: {}", host.display, present.join(", "))
        },
    ));
    out
}

fn tcp_banner(
    addrs: &[std::net::SocketAddr],
) -> Result<(std::net::SocketAddr, Duration, String), String> {
    let mut last = String::from("no address");
    for a in addrs {
        let t0 = Instant::now();
        match std::net::TcpStream::connect_timeout(a, CONNECT_TIMEOUT) {
            Ok(mut s) => {
                let took = t0.elapsed();
                let _ = s.set_read_timeout(Some(CONNECT_TIMEOUT));
                let mut buf = [0u8; 256];
                let n = s.read(&mut buf).unwrap_or(0);
                let banner = String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .find(|l| l.starts_with("SSH-"))
                    .map(|l| l.trim().to_string())
                    .unwrap_or_else(|| "no SSH banner (is this an SSH server?)".into());
                return Ok((*a, took, banner));
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// `[host]:port` as known_hosts writes non-22 ports.
fn known_hosts_name(hostname: &str, port: u16) -> String {
    if port == 22 {
        hostname.to_string()
    } else {
        format!("[{hostname}]:{port}")
    }
}

fn host_key_check(
    host: &Host,
    hostname: &str,
    port: u16,
    resolved: &Resolved,
    paths: &Paths,
) -> Check {
    let scan = std::process::Command::new("ssh-keyscan")
        .args([
            "-T",
            &CONNECT_TIMEOUT.as_secs().to_string(),
            "-p",
            &port.to_string(),
            hostname,
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let scanned: Vec<(String, String)> = match &scan {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let _ = it.next()?;
                Some((it.next()?.to_string(), it.next()?.to_string()))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    if scanned.is_empty() {
        return Check::warning(
            "remote-host-key",
            "could not read the host key with ssh-keyscan",
            "the host key cannot be compared with known_hosts",
        );
    }
    let name = known_hosts_name(hostname, port);
    let mut known_blobs: Vec<String> = Vec::new();
    for f in resolved
        .all("userknownhostsfile")
        .iter()
        .chain(resolved.all("globalknownhostsfile"))
    {
        for file in f.split_whitespace() {
            let file = expand_tilde(file, &paths.home);
            if !file.exists() {
                continue;
            }
            if let Ok(o) = std::process::Command::new("ssh-keygen")
                .args(["-F", &name, "-f"])
                .arg(&file)
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
            {
                for l in String::from_utf8_lossy(&o.stdout).lines() {
                    if l.starts_with('#') {
                        continue;
                    }
                    let parts: Vec<&str> = l.split_whitespace().collect();
                    // [marker] hosts type blob
                    if let Some(i) = parts.iter().position(|p| {
                        p.starts_with("ssh-") || p.starts_with("ecdsa-") || p.starts_with("sk-")
                    }) && let Some(b) = parts.get(i + 1)
                    {
                        known_blobs.push(b.to_string());
                    }
                }
            }
        }
    }
    let fps: Vec<String> = scanned
        .iter()
        .filter_map(|(t, b)| {
            ssh_key::PublicKey::from_openssh(&format!("{t} {b}"))
                .ok()
                .map(|k| format!("{t} {}", k.fingerprint(ssh_key::HashAlg::Sha256)))
        })
        .collect();
    if scanned.iter().any(|(_, b)| known_blobs.contains(b)) {
        Check::ok(
            "remote-host-key",
            format!(
                "the host key of {name} is known ({})",
                fps.first().cloned().unwrap_or_default()
            ),
        )
    } else if !known_blobs.is_empty() {
        Check::problem(
            "remote-host-key",
            format!("the host key of {name} DIFFERS from the one in known_hosts; it now offers {}", fps.join(", ")),
            "this can mean someone is intercepting the connection; ssh and yonder refuse to connect",
        )
        .with_fix(Fix::manual(format!(
            "if the change is expected (reinstalled server), `ssh-keygen -R '{name}'` and connect again"
        )))
    } else {
        Check {
            id: "remote-host-key-unknown".into(),
            ..Check::warning(
                "remote-host-key",
                format!("the host key of {name} is not yet known: {}", fps.join(", ")),
                "the first connection asks you to accept it; compare the fingerprint with the one the server's admin gives you",
            )
            .with_fix(Fix::manual(format!(
                "connect once (`ssh {}` or any yonder command) and answer yes if the fingerprint is right",
                host.display
            )))
        }
    }
}

fn expand_tilde(p: &str, home: &Path) -> PathBuf {
    match p.strip_prefix("~/") {
        Some(rest) => home.join(rest),
        None => PathBuf::from(p),
    }
}

fn auth_methods(paths: &Paths, host: &Host) -> Option<String> {
    let out = host
        .ssh(
            paths,
            &[
                "-o",
                "BatchMode=yes",
                "-o",
                "PreferredAuthentications=none",
                "-T",
            ],
        )
        .arg("true")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().find(|l| l.contains("Permission denied ("))?;
    Some(
        line.split("Permission denied (")
            .nth(1)?
            .split(')')
            .next()?
            .to_string(),
    )
}

/// The remote script: markers, then `key=value` lines.
fn probe_script() -> String {
    let install = std::env::var("YONDER_SERVER_INSTALL_PATH")
        .ok()
        .filter(|p| !p.is_empty() && safe_word(p))
        .unwrap_or_else(|| yonder_target::ssh::DEFAULT_INSTALL_PATH.into());
    let dir = if install.starts_with('/') {
        install
    } else {
        format!("$HOME/{install}")
    };
    [
        format!("echo {BEGIN}"),
        "echo home=$HOME".into(),
        "echo uid=$(id -u)".into(),
        "echo os=$(uname -s)".into(),
        "echo arch=$(uname -m)".into(),
        "for p in $HOME $HOME/.ssh $HOME/.ssh/authorized_keys; do if [ -e $p ]; then echo ls=$(ls -ldn $p); else echo missing=$p; fi; done".into(),
        format!("d={dir}"),
        // A script without `#!` runs through sh's ENOEXEC fallback, but a
        // noexec mount still refuses it (EACCES): that is the check.
        "if mkdir -p $d 2>/dev/null && t=$d/.yonder-doctor-$$ && echo exit 0 > $t 2>/dev/null && chmod 700 $t && $t; then echo install=ok; else echo install=fail; fi; rm -f $d/.yonder-doctor-$$".into(),
        "set -- $(df -Pk $d 2>/dev/null | tail -n 1); echo free=$4".into(),
        "for v in $d/*/yonder; do [ -x $v ] && echo version=$v; done".into(),
        "if ps -u $(id -u) -o args= 2>/dev/null | grep -q \"[y]onder server daemon\"; then echo daemon=running; else echo daemon=none; fi".into(),
        format!("echo {END}"),
    ]
    .join("; ")
}

fn safe_word(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-/+@:=,".contains(c))
}

fn run_probe(paths: &Paths, host: &Host, batch: bool) -> Result<String, String> {
    let script = probe_script();
    let mut c = host.ssh(
        paths,
        &[
            "-T",
            "-o",
            if batch {
                "BatchMode=yes"
            } else {
                "BatchMode=no"
            },
        ],
    );
    c.arg(format!("sh -c '{script}'"));
    let out = c
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", paths.ssh))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || !stdout.contains(END) {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(yonder_target::ssh::classify(&host.display, &err).to_string());
    }
    Ok(stdout)
}

/// `drwxrwxr-x` → 0o775 (special bits ignored: StrictModes looks at rwx).
pub fn mode_from_ls(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    if b.len() < 10 {
        return None;
    }
    let mut m = 0;
    for (i, c) in b[1..10].iter().enumerate() {
        let on = !matches!(c, b'-' | b'S' | b'T');
        if on {
            m |= 1 << (8 - i);
        }
    }
    Some(m)
}

/// Checks from the probe's output.
pub fn remote_checks(host: &Host, text: &str, _paths: &Paths) -> Vec<Check> {
    let body = text
        .split(BEGIN)
        .nth(1)
        .and_then(|t| t.split(END).next())
        .unwrap_or("");
    let mut out = Vec::new();
    let mut uid = String::new();
    let mut home = String::new();
    let mut versions = Vec::new();
    let (mut os, mut arch) = (String::new(), String::new());
    for l in body.lines() {
        let Some((k, v)) = l.trim().split_once('=') else {
            continue;
        };
        match k {
            "uid" => uid = v.into(),
            "home" => home = v.into(),
            "os" => os = v.into(),
            "arch" => arch = v.into(),
            "version" => versions.push(v.to_string()),
            "ls" => {
                let f: Vec<&str> = v.split_whitespace().collect();
                if f.len() < 9 {
                    continue;
                }
                let (Some(mode), owner, path) = (mode_from_ls(f[0]), f[2], f[8..].join(" ")) else {
                    continue;
                };
                let which = if path == home {
                    ("remote-perm-home", "~", "go-w")
                } else if path.ends_with("/.ssh") {
                    ("remote-perm-ssh-dir", "~/.ssh", "700")
                } else {
                    (
                        "remote-perm-authorized-keys",
                        "~/.ssh/authorized_keys",
                        "600",
                    )
                };
                let mut problems = Vec::new();
                if owner != uid {
                    problems.push(format!("owned by uid {owner}, not you ({uid})"));
                }
                if mode & 0o022 != 0 {
                    problems.push(format!("mode {mode:03o} is group/world-writable"));
                }
                if problems.is_empty() {
                    out.push(Check::ok(
                        which.0,
                        format!("remote {} mode {mode:03o}", which.1),
                    ));
                } else {
                    let mut c = Check::problem(
                        which.0,
                        format!("remote {}: {}", which.1, problems.join(", ")),
                        "sshd's StrictModes ignores authorized_keys below a group/world-writable or foreign-owned path: key login fails",
                    );
                    if owner == uid && safe_word(&path) {
                        c = c.with_fix(Fix::auto(
                            format!("ssh {} chmod {} {path}", host.display, which.2),
                            FixAction::RemoteChmod {
                                host: host.display.clone(),
                                path: path.clone(),
                                mode: which.2.into(),
                            },
                        ));
                    } else {
                        c = c.with_fix(Fix::manual(format!(
                            "as root on the host: chown {uid} {path}"
                        )));
                    }
                    out.push(c);
                }
            }
            _ => {}
        }
    }
    let kv = |key: &str| {
        body.lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(&format!("{key}="))
                    .map(str::to_string)
            })
            .unwrap_or_default()
    };
    let supported = os == "Linux" && yonder_target::ssh::normalize_arch(&arch).is_some();
    out.push(if supported {
        Check::ok(
            "remote-platform",
            format!("{os} {arch} with a POSIX sh: supported"),
        )
    } else {
        Check::problem(
            "remote-platform",
            format!("{os} {arch}: the yonder server runs on Linux x86_64 and aarch64 only"),
            "yonder cannot install its server there",
        )
    });
    out.push(if kv("install") == "ok" {
        Check::ok(
            "remote-install-dir",
            "the install directory is writable and can run programs",
        )
    } else {
        Check::problem(
            "remote-install-dir",
            "the install directory is not writable or is mounted noexec",
            "the server binary must be written there and run",
        )
        .with_fix(Fix::manual(
            "set YONDER_SERVER_INSTALL_PATH to a writable, executable directory on that host",
        ))
    });
    match kv("free").parse::<u64>() {
        Ok(kib) if kib >= MIN_FREE_KIB => out.push(Check::ok(
            "remote-disk",
            format!("{} MiB free for the server", kib / 1024),
        )),
        Ok(kib) => out.push(Check::warning(
            "remote-disk",
            format!("only {} MiB free where the server goes", kib / 1024),
            "installing the server (about 20 MiB) may fail",
        )),
        Err(_) => {}
    }
    out.push(Check::ok(
        "remote-yonder",
        format!(
            "yonder server versions installed: {}; daemon {}",
            if versions.is_empty() {
                "none (installed on first use)".to_string()
            } else {
                versions
                    .iter()
                    .filter_map(|v| v.rsplit('/').nth(1))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            if kv("daemon") == "running" {
                "running"
            } else {
                "not running"
            }
        ),
    ));
    out
}

/// Applies a remote chmod fix over one ssh (prompts through askpass when a
/// terminal is there).
pub async fn apply_remote_chmod(
    paths: &Paths,
    target: &str,
    path: &str,
    mode: &str,
) -> Result<(), RemoteError> {
    if !safe_word(path) || !safe_word(mode) {
        return Err(RemoteError::Remote(format!("unsafe path {path:?}")));
    }
    let host = Host::parse(target)?;
    let (ok, _out, err) = run_with_askpass(
        paths,
        &host,
        &format!("sh -c 'chmod {mode} {path}'"),
        None,
        &[],
    )
    .await?;
    if ok {
        Ok(())
    } else {
        Err(RemoteError::Ssh(yonder_target::ssh::classify(
            &host.display,
            &err,
        )))
    }
}

async fn run_with_askpass(
    paths: &Paths,
    host: &Host,
    remote: &str,
    stdin: Option<Vec<u8>>,
    extra: &[&str],
) -> Result<(bool, String, String), RemoteError> {
    let dir = tempdir_private()?;
    let askpass =
        yonder_target::askpass::AskpassServer::start(dir.path(), Default::default()).await?;
    let std_cmd = host.ssh(paths, &[&["-T"], extra].concat());
    let mut c = tokio::process::Command::from(std_cmd);
    c.arg(remote);
    askpass.configure(&mut c);
    c.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|source| RemoteError::Spawn {
        program: paths.ssh.clone(),
        source,
    })?;
    if let Some(data) = stdin {
        use tokio::io::AsyncWriteExt;
        let mut w = child.stdin.take().expect("piped");
        tokio::spawn(async move {
            let _ = w.write_all(&data).await;
        });
    }
    let out = child.wait_with_output().await?;
    drop(askpass);
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// A private (0700) scratch directory for the askpass socket.
fn tempdir_private() -> std::io::Result<TempDir> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    let mut rnd = [0u8; 6];
    ssh_key::getrandom::fill(&mut rnd).map_err(|e| std::io::Error::other(e.to_string()))?;
    let name: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
    let p = base.join(format!("yonder-doctor-{name}"));
    std::fs::DirBuilder::new().mode(0o700).create(&p)?;
    Ok(TempDir(p))
}

#[derive(Debug)]
struct TempDir(PathBuf);
impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The key line arrives on stdin: nothing user-controlled is in the
/// command line. umask 077 makes a new ~/.ssh 0700 and a new file 0600.
/// `set -f`: a `*` in the key's comment is not a glob; `printf %s`: a
/// backslash in it is not an escape (dash's echo would expand it).
pub const COPY_SCRIPT: &str = "umask 077; set -f; read -r k; set -- $k; f=$HOME/.ssh/authorized_keys; \
        mkdir -p $HOME/.ssh || exit 3; \
        if [ -f $f ] && grep -q -F -- \"$2\" $f; then echo ___YONDER_PRESENT___; exit 0; fi; \
        if [ -s $f ] && [ $(tail -c 1 $f | wc -l) -eq 0 ]; then echo >> $f; fi; \
        { printf %s \"$k\"; echo; } >> $f || exit 4; echo ___YONDER_ADDED___";

/// What `keys copy` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOutcome {
    pub host: String,
    pub added: bool,
    pub key_login_works: bool,
    pub fingerprint: String,
}

impl std::fmt::Display for CopyOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.added {
            write!(
                f,
                "{}: added {} to ~/.ssh/authorized_keys",
                self.host, self.fingerprint
            )?;
        } else {
            write!(
                f,
                "{}: {} was already in ~/.ssh/authorized_keys (nothing changed)",
                self.host, self.fingerprint
            )?;
        }
        if self.key_login_works {
            write!(f, "; key login works")
        } else {
            write!(
                f,
                "; key login without a prompt does not work yet (a passphrase-protected key needs ssh-agent; or run `yonder doctor {}`)",
                self.host
            )
        }
    }
}

/// Appends the public key at `pub_path` to the host's authorized_keys
/// unless it is already there (same key blob), creating `~/.ssh` (0700)
/// and the file (0600) as needed, over one connection; then tries a key
/// login with no prompt.
pub async fn copy_id(
    paths: &Paths,
    target: &str,
    pub_path: &Path,
) -> Result<CopyOutcome, RemoteError> {
    let host = Host::parse(target)?;
    let text = std::fs::read_to_string(pub_path).map_err(|e| RemoteError::Key {
        path: pub_path.into(),
        detail: e.to_string(),
    })?;
    let key = ssh_key::PublicKey::from_openssh(text.trim()).map_err(|e| RemoteError::Key {
        path: pub_path.into(),
        detail: format!("not an OpenSSH public key ({e}); give the .pub file"),
    })?;
    let line = key.to_openssh().map_err(|e| RemoteError::Key {
        path: pub_path.into(),
        detail: e.to_string(),
    })?;
    let script = COPY_SCRIPT;
    // The private key beside the .pub, when there, so a second run logs in
    // with it instead of asking for the password again.
    let private = pub_path.with_extension("");
    let mut extra: Vec<String> = Vec::new();
    if private != pub_path && private.exists() {
        extra.push("-i".into());
        extra.push(private.display().to_string());
    }
    let extra_ref: Vec<&str> = extra.iter().map(String::as_str).collect();
    let (ok, out, err) = run_with_askpass(
        paths,
        &host,
        &format!("sh -c '{script}'"),
        Some(format!("{line}\n").into_bytes()),
        &extra_ref,
    )
    .await?;
    let added = if out.contains("___YONDER_ADDED___") {
        true
    } else if out.contains("___YONDER_PRESENT___") {
        false
    } else if !ok {
        return Err(RemoteError::Ssh(yonder_target::ssh::classify(
            &host.display,
            &err,
        )));
    } else {
        return Err(RemoteError::Remote(format!(
            "unexpected answer: {}",
            out.trim()
        )));
    };
    // Verify: a key login with nothing to ask.
    let mut verify_args: Vec<&str> = vec!["-T", "-o", "BatchMode=yes"];
    verify_args.extend(extra_ref.iter());
    let key_login_works = host
        .ssh(paths, &verify_args)
        .arg("true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    Ok(CopyOutcome {
        host: host.display,
        added,
        key_login_works,
        fingerprint: key.fingerprint(ssh_key::HashAlg::Sha256).to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_script_is_safe_for_any_login_shell() {
        for c in ['\'', '\\', '!', '\n'] {
            assert!(!COPY_SCRIPT.contains(c), "{c:?} in {COPY_SCRIPT}");
        }
    }

    #[test]
    fn ls_modes_are_read() {
        assert_eq!(mode_from_ls("drwx------"), Some(0o700));
        assert_eq!(mode_from_ls("drwxrwxr-x."), Some(0o775));
        assert_eq!(mode_from_ls("-rw-r--r--+"), Some(0o644));
        assert_eq!(mode_from_ls("drwxr-xr-t"), Some(0o755));
        assert_eq!(mode_from_ls("drwxr-xr-T"), Some(0o754));
        assert_eq!(mode_from_ls("short"), None);
    }

    #[test]
    fn the_probe_script_is_safe_for_any_login_shell() {
        let s = probe_script();
        assert!(!s.contains('\''), "{s}");
        assert!(!s.contains('!'), "{s}");
        assert!(!s.contains('\n'), "{s}");
        assert!(!s.contains('\\'), "{s}");
    }

    #[test]
    fn remote_modes_are_judged_like_strict_modes() {
        let host = Host::parse("u@h").unwrap();
        let text = format!(
            "noise\n{BEGIN}\nhome=/home/u\nuid=1001\nos=Linux\narch=x86_64\n\
             ls=drwxrwxr-x 5 1001 1001 4096 Nov 25 10:00 /home/u\n\
             ls=drwx------ 2 1001 1001 4096 Nov 25 10:00 /home/u/.ssh\n\
             ls=-rw-r--r-- 1 0 0 100 Nov 25 10:00 /home/u/.ssh/authorized_keys\n\
             install=ok\nfree=5000000\ndaemon=none\n{END}\n"
        );
        let paths = Paths::from_env().unwrap();
        let c = remote_checks(&host, &text, &paths);
        let by = |id: &str| c.iter().find(|c| c.id == id).unwrap();
        assert_eq!(by("remote-perm-home").status, crate::Status::Problem);
        assert!(by("remote-perm-home").fix.as_ref().unwrap().automatic);
        assert_eq!(by("remote-perm-ssh-dir").status, crate::Status::Ok);
        let ak = by("remote-perm-authorized-keys");
        assert_eq!(ak.status, crate::Status::Problem);
        assert!(ak.summary.contains("owned by uid 0"), "{}", ak.summary);
        assert!(!ak.fix.as_ref().unwrap().automatic);
        assert_eq!(by("remote-platform").status, crate::Status::Ok);
    }
}
