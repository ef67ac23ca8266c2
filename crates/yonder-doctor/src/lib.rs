//! The user's SSH setup, checked and repaired: `yonder doctor` and the key
//! helpers.
//!
//! A doctor run is a list of [`Check`]s, each `ok`, `warning` or `problem`,
//! with one line of why and the exact fix. A fix the program can apply
//! itself carries a [`FixAction`]; the binary asks before applying it.
//!
//! - [`local`]: the SSH client, `~/.ssh` modes and owner, keys, ssh_config.
//! - [`remote`]: one SSH host: name, port, host key, auth, remote modes,
//!   prerequisites for the yonder server.
//! - [`keys`]: generate keys, import PuTTY `.ppk`, describe and write keys.
//! - [`sshconfig`]: ssh_config errors and the multiplexing block.
//! - [`edit`]: atomic file replacement with a timestamped backup.

pub mod edit;
pub mod keys;
pub mod local;
pub mod remote;
pub mod sshconfig;

use serde::Serialize;
use std::path::PathBuf;

/// How a check came out. Only `Problem` makes `yonder doctor` fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warning,
    Problem,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Problem => "problem",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Stable identifier for tools (`ssh-client`, `perm-ssh-dir`, …).
    pub id: String,
    pub status: Status,
    /// What was found, in one line.
    pub summary: String,
    /// Why it matters (empty for plain ok results).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub why: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<Fix>,
}

impl Check {
    pub fn ok(id: &str, summary: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            status: Status::Ok,
            summary: summary.into(),
            why: String::new(),
            fix: None,
        }
    }

    pub fn warning(id: &str, summary: impl Into<String>, why: impl Into<String>) -> Self {
        Self {
            status: Status::Warning,
            why: why.into(),
            ..Self::ok(id, summary)
        }
    }

    pub fn problem(id: &str, summary: impl Into<String>, why: impl Into<String>) -> Self {
        Self {
            status: Status::Problem,
            why: why.into(),
            ..Self::ok(id, summary)
        }
    }

    pub fn with_fix(mut self, fix: Fix) -> Self {
        self.fix = Some(fix);
        self
    }
}

/// How to fix a finding: always the exact command or steps for a human;
/// an [`FixAction`] when yonder can do it itself (`--fix`).
#[derive(Debug, Clone, Serialize)]
pub struct Fix {
    /// The command to run or the steps to take, exactly.
    pub command: String,
    /// Whether `yonder doctor --fix` can apply it.
    pub automatic: bool,
    #[serde(skip)]
    pub action: Option<FixAction>,
}

impl Fix {
    /// A fix only the user can apply.
    pub fn manual(command: impl Into<String>) -> Self {
        Self {
            command: command.into(),
            automatic: false,
            action: None,
        }
    }

    /// A fix yonder can apply.
    pub fn auto(command: impl Into<String>, action: FixAction) -> Self {
        Self {
            command: command.into(),
            automatic: true,
            action: Some(action),
        }
    }
}

/// What `--fix` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FixAction {
    /// Change a local path's permission bits.
    Chmod { path: PathBuf, mode: u32 },
    /// Remove group/other write bits from a path on an SSH host (run with
    /// `chmod go-w` there).
    RemoteChmod {
        host: String,
        path: String,
        mode: String,
    },
    /// Turn on connection sharing for every host in the user's ssh_config.
    Multiplex { config: PathBuf, host: String },
    /// Convert a PuTTY key next to itself (`KEY.ppk` → `KEY`, `KEY.pub`).
    ConvertPpk { ppk: PathBuf },
}

/// Is anything a problem?
pub fn has_problem(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.status == Status::Problem)
}

/// Where the user's SSH files are: `$HOME/.ssh` and the config file yonder
/// uses (`YONDER_SSH_CONFIG`, else `~/.ssh/config`).
#[derive(Debug, Clone)]
pub struct Paths {
    pub home: PathBuf,
    pub ssh_dir: PathBuf,
    pub config: PathBuf,
    /// Whether the config was named explicitly (then `ssh -F` is passed).
    pub config_explicit: bool,
    /// The ssh program (`YONDER_SSH`, default `ssh`).
    pub ssh: String,
}

impl Paths {
    /// From the environment: `HOME`, `YONDER_SSH_CONFIG`, `YONDER_SSH`.
    pub fn from_env() -> Option<Self> {
        let home = PathBuf::from(std::env::var_os("HOME").filter(|h| !h.is_empty())?);
        let var = |k| std::env::var(k).ok().filter(|v: &String| !v.is_empty());
        let explicit = var("YONDER_SSH_CONFIG").map(PathBuf::from);
        Some(Self {
            ssh_dir: home.join(".ssh"),
            config: explicit.clone().unwrap_or_else(|| home.join(".ssh/config")),
            config_explicit: explicit.is_some(),
            ssh: var("YONDER_SSH").unwrap_or_else(|| "ssh".into()),
            home,
        })
    }

    /// Arguments that select the config file for `ssh`/`ssh -G`.
    pub fn config_args(&self) -> Vec<String> {
        if self.config_explicit {
            vec!["-F".into(), self.config.display().to_string()]
        } else {
            Vec::new()
        }
    }

    /// `p` for a shell command line: `~/…` when under the home directory
    /// and free of shell-special characters, else single-quoted.
    pub fn shell_path(&self, p: &std::path::Path) -> String {
        let t = self.tilde(p);
        let plain = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "~/._-+@%=:,".contains(c))
        };
        if plain(&t) {
            t
        } else {
            format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
        }
    }

    /// `~/…` for messages when `p` is under the home directory.
    pub fn tilde(&self, p: &std::path::Path) -> String {
        match p.strip_prefix(&self.home) {
            Ok(rest) if rest.as_os_str().is_empty() => "~".into(),
            Ok(rest) => format!("~/{}", rest.display()),
            Err(_) => p.display().to_string(),
        }
    }
}
