//! The SSH target: the user's own OpenSSH client, one master connection per
//! host, the server installed over that connection, and `yonder server
//! proxy` run through it.
//!
//! Everything goes through `ssh` so that every ssh_config feature works
//! (Include, Match, ProxyJump, certificates, agents, hardware keys). Every
//! prompt (password, passphrase, 2FA, unknown host key) reaches the user
//! through `SSH_ASKPASS` pointing at yonder itself ([`crate::askpass`]).
//! Host-key checking is never weakened.
//!
//! Remote commands are single-line `sh -c '…'` strings with no single quote,
//! backslash, `!` or newline inside, so the user's login shell (bash, zsh,
//! fish, tcsh) passes them to a POSIX `sh` unchanged.

use crate::askpass::{AskpassServer, Prompter};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use yonder_client::Client;

/// Kept by the master after the last session ends, so the next `yonder`
/// command within this time reuses the authenticated connection.
const CONTROL_PERSIST_SECS: u32 = 600;

/// Keepalives on the master: a dead link is noticed within about 15 s even
/// when TCP would wait for minutes.
const SERVER_ALIVE_INTERVAL: u32 = 5;
const SERVER_ALIVE_COUNT: u32 = 3;

/// Where the server goes on the remote, relative to its home directory
/// (like VS Code's remote.SSH.serverInstallPath).
pub const DEFAULT_INSTALL_PATH: &str = ".yonder/server";

/// Installed versions kept on the remote besides the current one.
const KEEP_VERSIONS: usize = 3;

/// Markers around the probe's output: rc files may print anything before it.
const PROBE_BEGIN: &str = "___YONDER_PROBE_BEGIN___";
const PROBE_END: &str = "___YONDER_PROBE_END___";

/// Upload buffer for the server binary.
const UPLOAD_CHUNK: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error(
        "{host}: the host name could not be resolved (check the name, or its HostName in ~/.ssh/config)"
    )]
    HostNotFound { host: String },
    #[error("{host}: connection refused (is sshd running there, on the right port?)")]
    ConnectionRefused { host: String },
    #[error("{host}: the connection timed out (host down, or a firewall in the way?)")]
    Timeout { host: String },
    #[error(
        "{host}: authentication failed; the server offered: {methods} (check your key with `ssh-add -l`, or run `yonder doctor {host}`)"
    )]
    AuthFailed { host: String, methods: String },
    #[error(
        "{host}: THE HOST KEY HAS CHANGED. This can mean someone is intercepting the connection. \
         yonder never accepts a changed key: if the change is expected, remove the old key with \
         `ssh-keygen -R {host}` and connect again"
    )]
    HostKeyChanged { host: String },
    #[error("{host}: the host key was not accepted, so yonder did not connect")]
    HostKeyRefused { host: String },
    #[error(
        "{host}: ssh refuses your configuration's file permissions: {detail} (run `yonder doctor --fix`)"
    )]
    BadPermissions { host: String, detail: String },
    #[error("{host}: ssh failed: {detail}")]
    Other { host: String, detail: String },
    #[error(
        "cannot run {program} ({source}): install the OpenSSH client for SSH targets; wsl:// targets need Windows, where wsl.exe exists"
    )]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{1}: {0}")]
    Remote(String, String),
    #[error("{host}: the remote is {os}, which this yonder cannot serve yet (Linux only)")]
    UnsupportedOs { host: String, os: String },
    #[error(
        "{host}: no yonder server build for {arch}: expected {path} (build one, see README: static musl builds)"
    )]
    NoBinaryForArch {
        host: String,
        arch: String,
        path: PathBuf,
    },
    #[error(
        "{host}: cannot install the server in {dir}: {detail} (set YONDER_SERVER_INSTALL_PATH to a writable, executable location)"
    )]
    Install {
        host: String,
        dir: String,
        detail: String,
    },
    #[error("{host}: unsafe characters in {what} {value:?}")]
    Unsafe {
        host: String,
        what: &'static str,
        value: String,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Classifies ssh's stderr into a specific, actionable error.
pub fn classify(host: &str, stderr: &str) -> SshError {
    let host = host.to_string();
    let s = stderr;
    if s.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
        return SshError::HostKeyChanged { host };
    }
    if s.contains("Host key verification failed") {
        return SshError::HostKeyRefused { host };
    }
    if s.contains("Could not resolve hostname") || s.contains("Name or service not known") {
        return SshError::HostNotFound { host };
    }
    if s.contains("Connection refused") {
        return SshError::ConnectionRefused { host };
    }
    if s.contains("timed out") {
        return SshError::Timeout { host };
    }
    if let Some(line) = s
        .lines()
        .find(|l| l.contains("Bad owner or permissions on"))
    {
        return SshError::BadPermissions {
            host,
            detail: line.trim().to_string(),
        };
    }
    if let Some(line) = s.lines().find(|l| l.contains("Permission denied (")) {
        let methods = line
            .split("Permission denied (")
            .nth(1)
            .and_then(|r| r.split(')').next())
            .unwrap_or("")
            .to_string();
        return SshError::AuthFailed { host, methods };
    }
    let detail = s
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or("unknown error (no message from ssh)")
        .trim()
        .to_string();
    SshError::Other { host, detail }
}

/// What the probe found on the remote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probe {
    pub os: String,
    pub arch: String,
    pub home: String,
    pub shell: String,
    /// `yonder server version` of the installed binary, when it runs.
    pub installed: Option<String>,
}

/// Whether the probe's output is a Windows shell refusing `sh` (cmd.exe or
/// PowerShell, the shells of Windows' OpenSSH server).
fn windows_shell(out: &str, err: &str) -> bool {
    [out, err].iter().any(|t| {
        t.contains("is not recognized as an internal or external command")
            || t.contains("is not recognized as the name of a cmdlet")
    })
}

/// Parses the probe's output, ignoring everything outside the markers.
pub fn parse_probe(stdout: &str) -> Option<Probe> {
    let begin = stdout.rfind(PROBE_BEGIN)?;
    let body = &stdout[begin + PROBE_BEGIN.len()..];
    let body = &body[..body.find(PROBE_END)?];
    let mut p = Probe::default();
    for line in body.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim_end_matches('\r').to_string();
        match k.trim() {
            "os" => p.os = v,
            "arch" => p.arch = v,
            "home" => p.home = v,
            "shell" => p.shell = v,
            "installed" if !v.is_empty() => p.installed = Some(v),
            _ => {}
        }
    }
    (!p.os.is_empty()).then_some(p)
}

/// `uname -m` to the architecture names Rust uses.
pub fn normalize_arch(uname_m: &str) -> Option<&'static str> {
    match uname_m.trim() {
        "x86_64" | "amd64" => Some("x86_64"),
        "aarch64" | "arm64" => Some("aarch64"),
        a if a.starts_with("armv8") => Some("aarch64"),
        _ => None,
    }
}

/// POSIX `cksum` (CRC-32 over the data and then its length), the one
/// checksum every POSIX remote can compute without extra tools.
pub fn posix_cksum(data: &[u8]) -> u32 {
    fn table() -> [u32; 256] {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = (i as u32) << 24;
            for _ in 0..8 {
                c = if c & 0x8000_0000 != 0 {
                    (c << 1) ^ 0x04C1_1DB7
                } else {
                    c << 1
                };
            }
            *e = c;
        }
        t
    }
    let t = table();
    let mut crc = 0u32;
    let mut feed = |b: u8| crc = (crc << 8) ^ t[((crc >> 24) ^ u32::from(b)) as usize];
    for &b in data {
        feed(b);
    }
    let mut len = data.len() as u64;
    while len != 0 {
        feed((len & 0xff) as u8);
        len >>= 8;
    }
    !crc
}

/// Characters allowed in text we splice into remote command lines.
fn is_safe(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/+@:= ,".contains(c))
}

/// Settings from the environment (the CLI documents each).
#[derive(Debug, Clone)]
pub struct SshSettings {
    /// The ssh program (`YONDER_SSH`, default `ssh`).
    pub program: String,
    /// An ssh_config file instead of ~/.ssh/config (`YONDER_SSH_CONFIG`).
    pub config_file: Option<PathBuf>,
    /// Install path on the remote, relative to its home (`YONDER_SERVER_INSTALL_PATH`).
    pub install_path: String,
    /// Directory with server builds for other architectures
    /// (`YONDER_SERVER_BINARIES`), named `yonder-<arch>-linux`.
    pub binaries: Option<PathBuf>,
    /// The remote daemon's runtime directory, relative to the remote home
    /// (`YONDER_REMOTE_RUNTIME_DIR`); default: the remote's own default.
    pub remote_run_dir: Option<String>,
}

impl SshSettings {
    pub fn from_env() -> Self {
        let var = |k| std::env::var(k).ok().filter(|v: &String| !v.is_empty());
        Self {
            program: var("YONDER_SSH").unwrap_or_else(|| "ssh".into()),
            config_file: var("YONDER_SSH_CONFIG").map(PathBuf::from),
            install_path: var("YONDER_SERVER_INSTALL_PATH")
                .unwrap_or_else(|| DEFAULT_INSTALL_PATH.into()),
            binaries: var("YONDER_SERVER_BINARIES").map(PathBuf::from),
            remote_run_dir: var("YONDER_REMOTE_RUNTIME_DIR"),
        }
    }
}

/// Reports progress to whoever started the connection.
pub trait ConnectReporter: Send + Sync {
    fn status(&self, _message: &str) {}
    fn upload(&self, _sent: u64, _total: u64) {}
}

/// A reporter that says nothing.
#[derive(Debug)]
pub struct Quiet;
impl ConnectReporter for Quiet {}

/// One SSH destination and the ssh arguments that reach it through
/// yonder's master connection.
#[derive(Debug, Clone)]
pub struct SshHost {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub settings: SshSettings,
    /// Directory of yonder's ControlMaster sockets (0700).
    pub control_dir: PathBuf,
    /// False when the master could not be used: one ssh per session.
    pub multiplex: bool,
    /// The command channel: ssh, or WSL's `wsl.exe`. Probe, install and
    /// proxy are the same over both; this is the one seam between them.
    pub via: Via,
    /// Who answers ssh's prompts (password, passphrase, host key).
    pub prompter: Prompter,
}

/// How remote commands reach the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    Ssh,
    /// `PROGRAM -d DISTRO -e sh -c REMOTE` (PROGRAM is `wsl.exe`, or
    /// `YONDER_WSL`). No master connection, no prompts: WSL needs no login.
    Wsl {
        program: String,
        distro: String,
    },
    /// `ENGINE exec -i [-u USER] [-e K=V]... ID sh -c REMOTE`: a container
    /// through its engine's CLI; nothing is published, no login needed.
    Container {
        program: String,
        id: String,
        user: Option<String>,
        env: Vec<(String, String)>,
    },
}

/// The argv that runs the POSIX sh command line `remote` in a container.
pub fn container_argv(
    program: &str,
    id: &str,
    user: Option<&str>,
    env: &[(String, String)],
    remote: &str,
) -> Vec<String> {
    let mut a = vec![program.to_string(), "exec".into(), "-i".into()];
    if let Some(u) = user {
        a.extend(["-u".into(), u.to_string()]);
    }
    for (k, v) in env {
        a.extend(["-e".into(), format!("{k}={v}")]);
    }
    a.extend([id.to_string(), "sh".into(), "-c".into(), remote.to_string()]);
    a
}

/// The argv that runs the POSIX sh command line `remote` in a WSL distro.
pub fn wsl_argv(program: &str, distro: &str, remote: &str) -> Vec<String> {
    [program, "-d", distro, "-e", "sh", "-c", remote]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

impl SshHost {
    /// The WSL distribution `distro` through `wsl.exe`.
    pub fn wsl(distro: String, settings: SshSettings) -> Self {
        let program = std::env::var("YONDER_WSL")
            .ok()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "wsl.exe".into());
        Self {
            user: None,
            host: format!("wsl://{distro}"),
            port: None,
            settings,
            control_dir: PathBuf::new(),
            multiplex: true,
            via: Via::Wsl { program, distro },
            prompter: Prompter::default(),
        }
    }

    /// A container through `program` (docker or podman); `display` names
    /// it in messages.
    pub fn container(
        display: String,
        program: String,
        id: String,
        user: Option<String>,
        env: Vec<(String, String)>,
        settings: SshSettings,
    ) -> Self {
        Self {
            user: None,
            host: display,
            port: None,
            settings,
            control_dir: PathBuf::new(),
            multiplex: true,
            via: Via::Container {
                program,
                id,
                user,
                env,
            },
            prompter: Prompter::default(),
        }
    }

    /// Options every ssh invocation gets, then the destination.
    fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(f) = &self.settings.config_file {
            a.push("-F".into());
            a.push(f.display().to_string());
        }
        if self.multiplex {
            a.push("-o".into());
            // %C: a hash of local host, remote host, port and user: short, so
            // the socket path fits in sun_path.
            a.push(format!("ControlPath={}/%C", self.control_dir.display()));
        }
        if let Some(p) = self.port {
            a.push("-p".into());
            a.push(p.to_string());
        }
        if let Some(u) = &self.user {
            a.push("-l".into());
            a.push(u.clone());
        }
        a.extend(extra.iter().map(|s| s.to_string()));
        // The host was validated not to start with '-' when the target was
        // parsed; `--` is not used because ssh would then take the command
        // as part of the destination list on some versions.
        a.push(self.host.clone());
        a
    }

    /// The program that carries remote commands (ssh or wsl.exe).
    fn program_name(&self) -> String {
        match &self.via {
            Via::Ssh => self.settings.program.clone(),
            Via::Wsl { program, .. } | Via::Container { program, .. } => program.clone(),
        }
    }

    fn command(&self, extra: &[&str], remote: Option<&str>) -> tokio::process::Command {
        let argv = match &self.via {
            Via::Ssh => None,
            // ssh's own options (`extra`) mean nothing to wsl.exe or an engine.
            Via::Wsl { program, distro } => {
                Some(wsl_argv(program, distro, remote.unwrap_or("true")))
            }
            Via::Container {
                program,
                id,
                user,
                env,
            } => Some(container_argv(
                program,
                id,
                user.as_deref(),
                env,
                remote.unwrap_or("true"),
            )),
        };
        if let Some(argv) = argv {
            let mut c = tokio::process::Command::new(&argv[0]);
            c.args(&argv[1..]);
            return c;
        }
        let mut c = tokio::process::Command::new(&self.settings.program);
        c.args(self.args(extra));
        if let Some(r) = remote {
            c.arg(r);
        }
        c
    }

    /// Is yonder's master for this host up?
    async fn master_alive(&self) -> bool {
        if !self.multiplex {
            return false;
        }
        let mut c = self.command(&["-O", "check"], None);
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c.status().await.is_ok_and(|s| s.success())
    }

    /// Starts the master connection, relaying every prompt through askpass.
    async fn start_master(&mut self, reporter: &dyn ConnectReporter) -> Result<(), SshError> {
        let askpass = AskpassServer::start(&self.control_dir, self.prompter.clone()).await?;
        let log_path = self
            .control_dir
            .join(format!("master-{}.log", std::process::id()));
        let log = std::fs::File::create(&log_path)?;
        reporter.status(&format!("connecting to {}", self.host));
        let persist = format!("ControlPersist={CONTROL_PERSIST_SECS}");
        let alive = format!("ServerAliveInterval={SERVER_ALIVE_INTERVAL}");
        let count = format!("ServerAliveCountMax={SERVER_ALIVE_COUNT}");
        let mut c = self.command(
            &[
                "-f",
                "-N",
                "-o",
                "ControlMaster=yes",
                "-o",
                &persist,
                "-o",
                &alive,
                "-o",
                &count,
            ],
            None,
        );
        askpass.configure(&mut c);
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        let status = c.status().await.map_err(|source| SshError::Spawn {
            program: self.program_name(),
            source,
        })?;
        let stderr = std::fs::read_to_string(&log_path).unwrap_or_default();
        let _ = std::fs::remove_file(&log_path);
        drop(askpass);
        if status.success() {
            return Ok(());
        }
        // A config or platform that cannot multiplex: one ssh per session.
        if stderr.contains("ControlSocket")
            || stderr.contains("unix_listener")
            || stderr.contains("mux_client")
        {
            tracing::warn!(
                "{}: cannot use a master connection ({}); every session will authenticate separately",
                self.host,
                stderr.trim()
            );
            eprintln!(
                "yonder: {}: no connection sharing here; each session authenticates separately",
                self.host
            );
            self.multiplex = false;
            return Ok(());
        }
        Err(classify(&self.host, &stderr))
    }

    /// Runs a short remote command, returns its stdout; feeds `stdin`.
    async fn run(
        &self,
        remote: &str,
        stdin: Option<&[u8]>,
    ) -> Result<(std::process::ExitStatus, String, String), SshError> {
        let askpass = if self.multiplex {
            None
        } else {
            Some(AskpassServer::start(&self.control_dir, self.prompter.clone()).await?)
        };
        let mut c = self.command(&["-T", "-o", "ControlMaster=no"], Some(remote));
        if let Some(a) = &askpass {
            a.configure(&mut c);
        }
        c.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().map_err(|source| SshError::Spawn {
            program: self.program_name(),
            source,
        })?;
        if let Some(data) = stdin {
            let mut w = child.stdin.take().expect("piped");
            let data = data.to_vec();
            tokio::spawn(async move {
                let _ = w.write_all(&data).await;
            });
        }
        let out = child.wait_with_output().await?;
        Ok((
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    fn install_dir_expr(&self) -> Result<String, SshError> {
        let p = self.settings.install_path.trim_end_matches('/');
        if !is_safe(p) || p.contains(' ') {
            return Err(SshError::Unsafe {
                host: self.host.clone(),
                what: "install path",
                value: p.into(),
            });
        }
        Ok(if p.starts_with('/') {
            p.to_string()
        } else {
            format!("$HOME/{p}")
        })
    }

    pub async fn probe(&self) -> Result<Probe, SshError> {
        let dir = self.install_dir_expr()?;
        let ver = yonder_proto::YONDER_VERSION;
        let script = format!(
            "echo {PROBE_BEGIN}; echo os=$(uname -s); echo arch=$(uname -m); echo home=$HOME; echo shell=$SHELL; \
             b=\"{dir}/{ver}/yonder\"; if [ -x \"$b\" ] && v=$(\"$b\" server version 2>/dev/null); then echo installed=$v; else echo installed=; fi; \
             echo {PROBE_END}"
        );
        let (status, out, err) = self.run(&format!("sh -c '{script}'"), None).await?;
        if !out.contains(PROBE_END) && windows_shell(&out, &err) {
            return Err(SshError::UnsupportedOs {
                host: self.host.clone(),
                os: "Windows (a Linux distro in WSL there works: run its own sshd and \
                     connect to that)"
                    .into(),
            });
        }
        if !status.success() && !out.contains(PROBE_END) {
            return Err(classify(&self.host, &err));
        }
        parse_probe(&out).ok_or_else(|| {
            SshError::Remote(
                format!(
                    "the remote did not answer the probe (output: {:?})",
                    out.chars().take(300).collect::<String>()
                ),
                self.host.clone(),
            )
        })
    }

    /// The server binary for the remote's architecture.
    fn server_binary(&self, probe: &Probe, own_exe: &Path) -> Result<PathBuf, SshError> {
        if probe.os != "Linux" {
            return Err(SshError::UnsupportedOs {
                host: self.host.clone(),
                os: probe.os.clone(),
            });
        }
        let arch = normalize_arch(&probe.arch).ok_or_else(|| SshError::UnsupportedOs {
            host: self.host.clone(),
            os: format!("Linux on {}", probe.arch),
        })?;
        if arch == std::env::consts::ARCH && std::env::consts::OS == "linux" {
            return Ok(own_exe.to_path_buf());
        }
        let dir = self
            .settings
            .binaries
            .clone()
            .unwrap_or_else(|| own_exe.parent().map(Path::to_path_buf).unwrap_or_default());
        let path = dir.join(format!("yonder-{arch}-linux"));
        if path.is_file() {
            Ok(path)
        } else {
            Err(SshError::NoBinaryForArch {
                host: self.host.clone(),
                arch: arch.into(),
                path,
            })
        }
    }

    /// Uploads the server through the connection: a temp name, checksum
    /// verified with POSIX cksum, a test run, then an atomic rename. Two
    /// clients installing at once each use their own temp name, and either
    /// rename leaves a complete binary.
    pub async fn install(
        &self,
        binary: &Path,
        reporter: &dyn ConnectReporter,
    ) -> Result<(), SshError> {
        let data = tokio::fs::read(binary).await?;
        let total = data.len() as u64;
        let sum = posix_cksum(&data);
        let dir = self.install_dir_expr()?;
        let ver = yonder_proto::YONDER_VERSION;
        let mut rnd = [0u8; 6];
        getrandom::fill(&mut rnd).map_err(|e| std::io::Error::other(e.to_string()))?;
        let tmp = format!(
            ".upload-{}",
            rnd.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        reporter.status(&format!(
            "installing the yonder server on {} ({} MiB)",
            self.host,
            total >> 20
        ));
        let upload = format!(
            "sh -c 'umask 077 && mkdir -p \"{dir}/{ver}\" && exec cat > \"{dir}/{ver}/{tmp}\"'"
        );
        let mut c = self.command(&["-T", "-o", "ControlMaster=no"], Some(&upload));
        let askpass = if self.multiplex {
            None
        } else {
            Some(AskpassServer::start(&self.control_dir, self.prompter.clone()).await?)
        };
        if let Some(a) = &askpass {
            a.configure(&mut c);
        }
        c.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = c.spawn().map_err(|source| SshError::Spawn {
            program: self.program_name(),
            source,
        })?;
        let mut w = child.stdin.take().expect("piped");
        let mut err_pipe = child.stderr.take().expect("piped");
        let err_task = tokio::spawn(async move {
            let mut s = String::new();
            let _ = err_pipe.read_to_string(&mut s).await;
            s
        });
        let mut sent = 0u64;
        let mut write_err = None;
        for chunk in data.chunks(UPLOAD_CHUNK) {
            if let Err(e) = w.write_all(chunk).await {
                write_err = Some(e);
                break;
            }
            sent += chunk.len() as u64;
            reporter.upload(sent, total);
        }
        drop(w);
        let status = child.wait().await?;
        let stderr = err_task.await.unwrap_or_default();
        if write_err.is_some() || !status.success() {
            return Err(SshError::Install {
                host: self.host.clone(),
                dir: format!("{dir}/{ver}"),
                detail: format!("the upload failed: {}", stderr.trim()),
            });
        }
        let finish = format!(
            "sh -c 'cd \"{dir}/{ver}\" || exit 3; set -- $(cksum < {tmp}); if [ \"$1 $2\" != \"{sum} {total}\" ]; then rm -f {tmp}; echo CKSUM-MISMATCH $1 $2; exit 4; fi; \
             chmod 700 {tmp} && if ./{tmp} server version > /dev/null 2>&1; then mv -f {tmp} yonder; else rm -f {tmp}; echo CANNOT-EXECUTE; exit 5; fi; \
             cd .. && ls -1t | awk \"NR>{KEEP_VERSIONS}\" | while read v; do [ \"$v\" = \"{ver}\" ] || rm -rf \"./$v\"; done; echo INSTALLED'"
        );
        let (status, out, err) = self.run(&finish, None).await?;
        if status.success() && out.contains("INSTALLED") {
            return Ok(());
        }
        let detail = if out.contains("CKSUM-MISMATCH") {
            format!(
                "the uploaded file is damaged (checksum {} instead of {sum} {total})",
                out.trim()
            )
        } else if out.contains("CANNOT-EXECUTE") {
            "the uploaded server cannot run there (is that file system mounted noexec?)".to_string()
        } else {
            format!("{}{}", out.trim(), err.trim())
        };
        Err(SshError::Install {
            host: self.host.clone(),
            dir: format!("{dir}/{ver}"),
            detail,
        })
    }

    /// The installed server's path on the remote, quoted for its shell.
    fn remote_exe(&self, probe: &Probe) -> Result<String, SshError> {
        let dir = self.install_dir_expr()?.replace("$HOME", &probe.home);
        if dir.contains('\'') || dir.contains('\\') || dir.contains('!') {
            return Err(SshError::Unsafe {
                host: self.host.clone(),
                what: "home directory",
                value: probe.home.clone(),
            });
        }
        Ok(format!("'{dir}/{}/yonder'", yonder_proto::YONDER_VERSION))
    }

    /// Starts `yonder server proxy` on the remote through the master and
    /// returns its stdio as one stream.
    async fn proxy(&self, probe: &Probe) -> Result<ChildStream, SshError> {
        let mut remote = format!("exec {} server proxy", self.remote_exe(probe)?);
        if let Some(r) = &self.settings.remote_run_dir {
            if !is_safe(r) || r.contains(' ') {
                return Err(SshError::Unsafe {
                    host: self.host.clone(),
                    what: "remote runtime directory",
                    value: r.clone(),
                });
            }
            let abs = if r.starts_with('/') {
                r.clone()
            } else {
                format!("{}/{r}", probe.home)
            };
            remote.push_str(&format!(" --run-dir '{abs}'"));
        }
        let askpass = if self.multiplex {
            None
        } else {
            Some(AskpassServer::start(&self.control_dir, self.prompter.clone()).await?)
        };
        let mut c = self.command(&["-T", "-o", "ControlMaster=no"], Some(&remote));
        if let Some(a) = &askpass {
            a.configure(&mut c);
        }
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        c.kill_on_drop(true);
        let mut child = c.spawn().map_err(|source| SshError::Spawn {
            program: self.program_name(),
            source,
        })?;
        let stdout = child.stdout.take().expect("piped");
        let stdin = child.stdin.take().expect("piped");
        {
            use std::os::fd::AsFd;
            yonder_proto::limits::grow_pipe(stdout.as_fd());
            yonder_proto::limits::grow_pipe(stdin.as_fd());
        }
        Ok(ChildStream::new(
            tokio::io::join(stdout, stdin),
            (child, askpass),
        ))
    }
}

/// A child's stdio as one duplex stream that owns the child (and kills it
/// when the connection is dropped), and the askpass server its prompts use.
pub type ChildStream = yonder_proto::guarded::Guarded<
    tokio::io::Join<tokio::process::ChildStdout, tokio::process::ChildStdin>,
    (tokio::process::Child, Option<AskpassServer>),
>;

/// The master socket's name as ssh itself computes it (`%C`: a hash of
/// the effective user, host name and port), from `ssh -G`: two aliases of
/// one host share one master, so they must share one lock.
async fn master_identity(h: &SshHost) -> Option<String> {
    control_path(h)
        .await?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

/// The master's control socket for `h`, `%C` expanded by `ssh -G`; `None`
/// for WSL and containers, or when ssh cannot resolve the configuration.
pub(crate) async fn control_path(h: &SshHost) -> Option<PathBuf> {
    if !matches!(h.via, Via::Ssh) {
        return None;
    }
    let mut c = h.command(&["-G"], None);
    c.stdin(Stdio::null()).stderr(Stdio::null());
    let out = c.output().await.ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("controlpath "))
        .map(|p| PathBuf::from(p.trim()))
}

/// An exclusive flock on a per-destination file in the control directory.
async fn master_lock(h: &SshHost) -> Result<std::fs::File, SshError> {
    use std::os::fd::AsRawFd;
    let fallback = || {
        format!(
            "{}@{}:{}",
            h.user.as_deref().unwrap_or(""),
            h.host,
            h.port.unwrap_or(0)
        )
    };
    let name: String = master_identity(h)
        .await
        .unwrap_or_else(fallback)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = h.control_dir.join(format!("{name}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    tokio::task::spawn_blocking(move || {
        // SAFETY: flock on a descriptor we own; blocks until the holder is done.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(file)
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))?
    .map_err(SshError::Io)
}

/// Connects to an SSH target: master, probe, install when needed, proxy.
pub async fn connect(
    user: Option<String>,
    host: String,
    port: Option<u16>,
    control_dir: PathBuf,
    own_exe: &Path,
    reporter: &dyn ConnectReporter,
    prompter: Prompter,
) -> Result<Client, crate::TargetError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&control_dir)
        .map_err(SshError::Io)?;
    let mut h = SshHost {
        user,
        host,
        port,
        settings: SshSettings::from_env(),
        control_dir,
        multiplex: true,
        via: Via::Ssh,
        prompter,
    };
    // One master per host even when several yonder commands start at once:
    // the first takes this lock and starts it, the others wait and reuse it.
    if !h.master_alive().await {
        let lock = master_lock(&h).await?;
        if !h.master_alive().await {
            h.start_master(reporter).await?;
        }
        drop(lock);
    }
    bootstrap(&h, own_exe, reporter).await
}

/// Connects to a WSL distribution with the same probe, install and proxy
/// steps as SSH, through `wsl.exe` instead of ssh.
pub async fn connect_wsl(
    distro: String,
    own_exe: &Path,
    reporter: &dyn ConnectReporter,
) -> Result<Client, crate::TargetError> {
    let h = SshHost::wsl(distro, SshSettings::from_env());
    bootstrap(&h, own_exe, reporter).await
}

/// Connects to a container with the same probe, install and proxy steps,
/// through `ENGINE exec -i`.
pub async fn connect_container(
    h: SshHost,
    own_exe: &Path,
    reporter: &dyn ConnectReporter,
) -> Result<Client, crate::TargetError> {
    bootstrap(&h, own_exe, reporter).await
}

/// Probe, install when missing, then `yonder server proxy` as the stream.
async fn bootstrap(
    h: &SshHost,
    own_exe: &Path,
    reporter: &dyn ConnectReporter,
) -> Result<Client, crate::TargetError> {
    let mut probe = h.probe().await?;
    let want = format!(
        "yonder {} protocol {}",
        yonder_proto::YONDER_VERSION,
        yonder_proto::PROTOCOL_VERSION
    );
    if probe.installed.as_deref() != Some(want.as_str()) {
        let bin = h.server_binary(&probe, own_exe)?;
        h.install(&bin, reporter).await?;
        probe = h.probe().await?;
        if probe.installed.as_deref() != Some(want.as_str()) {
            return Err(SshError::Install {
                host: h.host.clone(),
                dir: h.settings.install_path.clone(),
                detail: format!("after installing, the server reports {:?}", probe.installed),
            }
            .into());
        }
    }
    // Large files go on sessions of their own through the master (see
    // `yonder_proto::bulk`); without a master each would mean a new login.
    let bulk = match (&h.via, h.multiplex) {
        (Via::Ssh, true) => match (control_path(h).await, h.remote_exe(&probe)) {
            (Some(control), Ok(exe)) => Some(SshBulk {
                host: h.clone(),
                control,
                remote: format!("exec {exe} server bulk"),
            }),
            _ => None,
        },
        _ => None,
    };
    let stream = h.proxy(&probe).await?;
    let endpoint = format!("the yonder server on {}", h.host);
    // After a drop the client dials again the same way: the master
    // connection (started again if it died, asking the user through the
    // same prompter), then a new proxy to the same installed server.
    let redial_host = h.clone();
    let redial: yonder_client::Redial = Arc::new(move || {
        let (mut h, probe) = (redial_host.clone(), probe.clone());
        Box::pin(async move {
            eprintln!("yonder: the connection to {} dropped; reconnecting", h.host);
            if matches!(h.via, Via::Ssh) && h.multiplex {
                let lock = master_lock(&h).await.map_err(std::io::Error::other)?;
                if !h.master_alive().await {
                    h.start_master(&Quiet)
                        .await
                        .map_err(std::io::Error::other)?;
                }
                drop(lock);
            }
            let s = h.proxy(&probe).await.map_err(std::io::Error::other)?;
            eprintln!("yonder: reconnected to {}", h.host);
            Ok(Box::new(s) as Box<dyn yonder_client::Io>)
        })
    });
    // A first connect can take a moment (the daemon starts on the remote).
    let client = tokio::time::timeout(
        Duration::from_secs(60),
        Client::over_stream_redialing(stream, &[], &endpoint, redial),
    )
    .await
    .map_err(|_| {
        SshError::Remote(
            "the server did not answer within 60 s".into(),
            h.host.clone(),
        )
    })??;
    Ok(match bulk {
        Some(b) => client.with_bulk(Arc::new(b)),
        None => client,
    })
}

/// The bulk channel over yonder's ssh master: `yonder server bulk` as one
/// more session, started the way `ssh -S CONTROL HOST CMD` starts one (the
/// ssh process hands its pipes to the master and waits; the master moves
/// the bytes).
struct SshBulk {
    host: SshHost,
    control: PathBuf,
    /// The remote command: the installed server's bulk mode.
    remote: String,
}

impl yonder_client::bulk::BulkOpener for SshBulk {
    fn open(&self) -> std::io::Result<std::process::Child> {
        // Only through a live master: never a second login (which could ask
        // for a password in the middle of a copy).
        if !self.control.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no ssh master at {}", self.control.display()),
            ));
        }
        let c = self.host.command(
            &["-T", "-o", "ControlMaster=no", "-o", "BatchMode=yes"],
            Some(&self.remote),
        );
        let c = c.as_std();
        std::process::Command::new(c.get_program())
            .args(c.get_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    }

    fn describe(&self) -> String {
        format!("the ssh master for {}", self.host.host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_survives_shell_noise() {
        let out = "motd-noise\nWelcome!\n___YONDER_PROBE_BEGIN___\nos=Linux\narch=x86_64\nhome=/home/u\nshell=/usr/bin/fish\ninstalled=\n___YONDER_PROBE_END___\nbye\n";
        let p = parse_probe(out).unwrap();
        assert_eq!(
            (p.os.as_str(), p.arch.as_str(), p.home.as_str(), p.installed),
            ("Linux", "x86_64", "/home/u", None)
        );
        let crlf = "___YONDER_PROBE_BEGIN___\r\nos=Linux\r\narch=aarch64\r\nhome=/h\r\ninstalled=yonder 0.1.0 protocol 1\r\n___YONDER_PROBE_END___";
        let p = parse_probe(crlf).unwrap();
        assert_eq!(p.arch, "aarch64");
        assert_eq!(p.installed.as_deref(), Some("yonder 0.1.0 protocol 1"));
        assert!(parse_probe("no markers here").is_none());
        assert!(
            parse_probe("___YONDER_PROBE_BEGIN___\nos=Linux\n").is_none(),
            "unterminated"
        );
    }

    #[test]
    fn wsl_runs_the_same_remote_command_lines_through_wsl_exe() {
        assert_eq!(
            wsl_argv(
                "wsl.exe",
                "Ubuntu-22.04",
                "exec '/home/u/.yonder/server/0.1.0/yonder' server proxy"
            ),
            [
                "wsl.exe",
                "-d",
                "Ubuntu-22.04",
                "-e",
                "sh",
                "-c",
                "exec '/home/u/.yonder/server/0.1.0/yonder' server proxy"
            ]
        );
        let h = SshHost::wsl("Debian".into(), SshSettings::from_env());
        let c = h.command(&["-T", "-o", "ControlMaster=no"], Some("sh -c 'echo hi'"));
        let argv: Vec<_> = std::iter::once(c.as_std().get_program())
            .chain(c.as_std().get_args())
            .collect();
        let program = std::env::var("YONDER_WSL")
            .ok()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "wsl.exe".into());
        assert_eq!(
            argv,
            [
                program.as_str(),
                "-d",
                "Debian",
                "-e",
                "sh",
                "-c",
                "sh -c 'echo hi'"
            ]
            .map(std::ffi::OsStr::new)
        );
        assert_eq!(h.host, "wsl://Debian");
    }

    #[test]
    fn a_windows_remote_is_named() {
        // What cmd.exe and PowerShell print for `sh -c …` (no Windows sshd
        // runs here).
        let cmd = "'sh' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n";
        let ps = "sh : The term 'sh' is not recognized as the name of a cmdlet, function, script file, or operable program.";
        assert!(windows_shell("", cmd));
        assert!(windows_shell(ps, ""));
        assert!(!windows_shell("motd", "sh: 1: uname: not found"));
        let e = SshError::UnsupportedOs {
            host: "h".into(),
            os: "Windows".into(),
        };
        assert!(e.to_string().contains("Linux only"), "{e}");
    }

    #[test]
    fn arches_normalise() {
        assert_eq!(normalize_arch("x86_64"), Some("x86_64"));
        assert_eq!(normalize_arch("arm64"), Some("aarch64"));
        assert_eq!(normalize_arch("armv8l"), Some("aarch64"));
        assert_eq!(normalize_arch("mips"), None);
    }

    #[test]
    fn cksum_matches_posix() {
        // `printf abc | cksum` prints 1219131554 3.
        assert_eq!(posix_cksum(b"abc"), 1_219_131_554);
        assert_eq!(posix_cksum(b""), 4_294_967_295);
    }

    #[test]
    fn ssh_errors_are_specific() {
        let c = |s| classify("h", s).to_string();
        assert!(
            c("ssh: Could not resolve hostname h: Name or service not known")
                .contains("could not be resolved")
        );
        assert!(c("ssh: connect to host h port 22: Connection refused").contains("refused"));
        assert!(c("ssh: connect to host h port 22: Connection timed out").contains("timed out"));
        assert!(
            c("u@h: Permission denied (publickey,password).")
                .contains("offered: publickey,password")
        );
        assert!(
            c("@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n")
                .contains("ssh-keygen -R h")
        );
        assert!(c("Host key verification failed.").contains("not accepted"));
        assert!(c("Bad owner or permissions on /root/.ssh/config").contains("yonder doctor"));
        assert!(
            c("kex_exchange_identification: read: Connection reset by peer")
                .contains("Connection reset")
        );
    }

    #[test]
    fn only_safe_text_reaches_remote_command_lines() {
        assert!(is_safe(".yonder/server"));
        for bad in ["a'b", "a\\b", "a!b", "a\nb", "$(id)", "`id`", "a;b", ""] {
            assert!(!is_safe(bad), "{bad:?}");
        }
    }
}
