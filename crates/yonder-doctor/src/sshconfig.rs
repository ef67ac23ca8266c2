//! ssh_config: what OpenSSH makes of it and one careful edit.
//!
//! yonder never parses ssh_config itself to decide anything: `ssh -G HOST`
//! prints the fully resolved settings (Include, Match, Host patterns, the
//! system file) and reports syntax errors with file and line, so the answer
//! is always the one `ssh` itself would act on.
//!
//! The one edit is the multiplexing block (`yonder ssh-config multiplex`):
//! a marked `Host` block appended at the end of the file, so that anything
//! the user set for a host earlier still wins (ssh uses the first value it
//! obtains for each option).

use crate::Paths;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// ControlPersist written by the multiplex block: a reconnect within this
/// time (a new terminal, an editor reload) needs no new login or 2FA code.
pub const CONTROL_PERSIST: &str = "10m";

/// Where the sockets go, relative to `~/.ssh`. `%C` is a hash of the
/// connection's endpoints: short, so it fits the ~100-byte unix socket
/// path limit wherever home is.
pub const SOCKETS_DIR: &str = "sockets";

/// A host name `ssh -G` can resolve without matching any real `Host`
/// pattern but `*`: used to ask what applies to "every host".
pub const ANY_HOST: &str = "yonder-doctor-any-host.invalid";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot run {program}: {source} (install the OpenSSH client)")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{}", errors_text(.0))]
    Syntax(Vec<SyntaxError>),
    #[error("ssh -G {host} failed: {detail}")]
    Other { host: String, detail: String },
    #[error("{0:?} is not a host name or pattern ssh_config accepts (no spaces, quotes or #)")]
    BadHost(String),
    #[error(transparent)]
    Edit(#[from] crate::edit::EditError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn errors_text(e: &[SyntaxError]) -> String {
    e.iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// One error OpenSSH reported in a config file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SyntaxError {
    pub file: String,
    pub line: u32,
    pub message: String,
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// Picks `FILE line N: MESSAGE` (and `FILE: line N: MESSAGE`) out of ssh's
/// stderr; OpenSSH uses both forms (readconf.c).
pub fn parse_errors(stderr: &str) -> Vec<SyntaxError> {
    let mut out = Vec::new();
    for l in stderr.lines() {
        let Some(at) = l.find(" line ") else { continue };
        let file = l[..at].trim_end_matches(':').trim();
        let rest = &l[at + " line ".len()..];
        let Some((num, msg)) = rest.split_once(':') else {
            continue;
        };
        let Ok(line) = num.trim().parse() else {
            continue;
        };
        // A file name with spaces is believed only if it exists: other
        // messages ("Warning: … line …") must not pass for config errors.
        if file.is_empty() || (file.contains(' ') && !Path::new(file).exists()) {
            continue;
        }
        out.push(SyntaxError {
            file: file.to_string(),
            line,
            message: msg.trim().to_string(),
        });
    }
    out
}

/// The resolved settings for a host: lower-case keyword → values in order
/// (`identityfile` repeats).
#[derive(Debug, Clone, Default)]
pub struct Resolved(pub BTreeMap<String, Vec<String>>);

impl Resolved {
    pub fn parse(stdout: &str) -> Self {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for l in stdout.lines() {
            let l = l.trim();
            if l.is_empty() {
                continue;
            }
            let (k, v) = l.split_once(' ').unwrap_or((l, ""));
            m.entry(k.to_ascii_lowercase())
                .or_default()
                .push(v.to_string());
        }
        Self(m)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.first()).map(String::as_str)
    }

    pub fn all(&self, key: &str) -> &[String] {
        self.0.get(key).map_or(&[], Vec::as_slice)
    }

    /// Does this host share connections (ControlMaster auto/yes/ask…)?
    pub fn multiplexed(&self) -> bool {
        !matches!(self.get("controlmaster"), None | Some("false" | "no"))
            && !matches!(self.get("controlpath"), None | Some("none"))
    }
}

/// Runs `ssh -G host` with the user's config.
pub fn resolve(paths: &Paths, host: &str, extra: &[String]) -> Result<Resolved, ConfigError> {
    let out = std::process::Command::new(&paths.ssh)
        .args(paths.config_args())
        .args(extra)
        .arg("-G")
        .arg(host)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ConfigError::Spawn {
            program: paths.ssh.clone(),
            source,
        })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors = parse_errors(&stderr);
    if !errors.is_empty() {
        return Err(ConfigError::Syntax(errors));
    }
    if !out.status.success() {
        return Err(ConfigError::Other {
            host: host.into(),
            detail: stderr.trim().to_string(),
        });
    }
    Ok(Resolved::parse(&String::from_utf8_lossy(&out.stdout)))
}

/// Host names and patterns we are willing to write into a `Host` line.
fn host_ok(host: &str) -> bool {
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-*?!@:[]%".contains(c))
}

fn markers(host: &str) -> (String, String) {
    (
        format!("# BEGIN yonder multiplex {host}"),
        format!("# END yonder multiplex {host}"),
    )
}

/// The block `yonder ssh-config multiplex HOST` appends.
pub fn multiplex_block(host: &str, sockets: &str) -> String {
    let (begin, end) = markers(host);
    format!(
        "{begin}\n\
         # Share one login per host: later connections (and 2FA prompts) reuse it.\n\
         Host {host}\n  \
         ControlMaster auto\n  \
         ControlPath {sockets}/%C\n  \
         ControlPersist {CONTROL_PERSIST}\n\
         {end}\n"
    )
}

/// The config text with the block added, or `None` if it is already there.
pub fn with_multiplex(text: &str, host: &str, sockets: &str) -> Option<String> {
    let (begin, _) = markers(host);
    if text.lines().any(|l| l.trim() == begin) {
        return None;
    }
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(&multiplex_block(host, sockets));
    Some(out)
}

/// What an edit of the config did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditOutcome {
    Added { backup: Option<PathBuf> },
    AlreadyThere,
}

/// Adds the multiplex block for `host` (`*` for all) to `config` and
/// creates the sockets directory (0700).
pub fn add_multiplex(
    config: &Path,
    ssh_dir: &Path,
    host: &str,
) -> Result<EditOutcome, ConfigError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !host_ok(host) {
        return Err(ConfigError::BadHost(host.into()));
    }
    let sockets = ssh_dir.join(SOCKETS_DIR);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ConfigError::Io { path, source }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&sockets)
        .map_err(io(&sockets))?;
    std::fs::set_permissions(&sockets, std::fs::Permissions::from_mode(0o700))
        .map_err(io(&sockets))?;
    let text = match std::fs::read_to_string(config) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(config)(e)),
    };
    // ssh expands `~` in ControlPath to the passwd entry's home (not
    // $HOME): write `~/…` only when that is where the sockets are, which
    // keeps the file portable; otherwise the absolute path.
    let home_rel = match passwd_home() {
        Some(h) if sockets.starts_with(&h) => format!(
            "~/{}",
            sockets.strip_prefix(&h).unwrap_or(&sockets).display()
        ),
        _ => sockets.display().to_string(),
    };
    match with_multiplex(&text, host, &home_rel) {
        None => Ok(EditOutcome::AlreadyThere),
        Some(new) => {
            let backup = crate::edit::replace_file(config, &new, 0o600)?;
            Ok(EditOutcome::Added { backup })
        }
    }
}

/// This user's home directory from the passwd database (what ssh uses).
pub fn passwd_home() -> Option<PathBuf> {
    use std::ffi::CStr;
    use std::os::unix::ffi::OsStrExt;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: getpwuid_r with a valid passwd struct and a buffer we own; the
    // returned pointers point into `buf`, read before it is dropped.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            libc::getuid(),
            &mut pw,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() || pw.pw_dir.is_null() {
            return None;
        }
        let dir = CStr::from_ptr(pw.pw_dir);
        Some(PathBuf::from(std::ffi::OsStr::from_bytes(dir.to_bytes())))
    }
}

/// The config text with `IdentityFile key` for `host` added in a marked
/// block at the end (ssh collects every IdentityFile that applies, so this
/// adds a key without displacing others), or `None` if that exact block is
/// already there.
pub fn with_identity(text: &str, host: &str, key: &str) -> Option<String> {
    let begin = format!("# BEGIN yonder identity {host} {key}");
    if text.lines().any(|l| l.trim() == begin) {
        return None;
    }
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(&format!(
        "{begin}\nHost {host}\n  IdentityFile {key}\n# END yonder identity {host} {key}\n"
    ));
    Some(out)
}

/// Adds `IdentityFile key` for `host` to `config` (atomic, with backup).
pub fn add_identity(config: &Path, host: &str, key: &Path) -> Result<EditOutcome, ConfigError> {
    if !host_ok(host) || host == "*" {
        return Err(ConfigError::BadHost(host.into()));
    }
    let key_s = key.display().to_string();
    if key_s
        .chars()
        .any(|c| c.is_whitespace() || c == '"' || c == '#')
    {
        return Err(ConfigError::BadHost(format!(
            "{host} (key path {key_s:?} has spaces, quotes or #)"
        )));
    }
    let text = match std::fs::read_to_string(config) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(ConfigError::Io {
                path: config.into(),
                source,
            });
        }
    };
    match with_identity(&text, host, &key_s) {
        None => Ok(EditOutcome::AlreadyThere),
        Some(new) => Ok(EditOutcome::Added {
            backup: crate::edit::replace_file(config, &new, 0o600)?,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_block_is_added_once() {
        let t = with_identity("Host a\n  User x", "devbox", "/k/id").unwrap();
        assert!(t.starts_with("Host a\n  User x\n\n# BEGIN yonder identity devbox /k/id\nHost devbox\n  IdentityFile /k/id\n"));
        assert_eq!(with_identity(&t, "devbox", "/k/id"), None);
    }

    #[test]
    fn errors_are_read_with_file_and_line() {
        let stderr = "cfg/config: line 2: Bad configuration option: foo\n\
                      cfg/config line 3: Bad port 'notanumber'.\n\
                      /etc/ssh/ssh_config.d/x.conf line 15: no argument after keyword \"hostname\"\n\
                      cfg/config: terminating, 3 bad configuration options\n\
                      Warning: Permanently added 'the line 4: x' to the list\n";
        let e = parse_errors(stderr);
        assert_eq!(e.len(), 3, "{e:?}");
        assert_eq!(
            e[0],
            SyntaxError {
                file: "cfg/config".into(),
                line: 2,
                message: "Bad configuration option: foo".into()
            }
        );
        assert_eq!(e[1].line, 3);
        assert_eq!(e[2].file, "/etc/ssh/ssh_config.d/x.conf");
        assert_eq!(
            e[2].to_string(),
            "/etc/ssh/ssh_config.d/x.conf:15: no argument after keyword \"hostname\""
        );
        assert!(parse_errors("").is_empty());
    }

    #[test]
    fn resolved_settings_repeat_and_know_multiplexing() {
        let r = Resolved::parse(
            "user root\nidentityfile ~/.ssh/id_rsa\nidentityfile ~/.ssh/id_ed25519\ncontrolmaster false\ncontrolpath none\n",
        );
        assert_eq!(r.all("identityfile").len(), 2);
        assert!(!r.multiplexed());
        let r = Resolved::parse("controlmaster auto\ncontrolpath ~/.ssh/sockets/%C\n");
        assert!(r.multiplexed());
    }

    #[test]
    fn the_multiplex_block_is_added_once_and_keeps_every_line() {
        let original = "# my settings\nHost a\n  User me # trailing\n\n# end";
        let new = with_multiplex(original, "*", "~/.ssh/sockets").unwrap();
        assert!(new.starts_with("# my settings\nHost a\n  User me # trailing\n\n# end\n\n"));
        assert!(new.contains("Host *\n  ControlMaster auto\n  ControlPath ~/.ssh/sockets/%C\n"));
        assert_eq!(with_multiplex(&new, "*", "~/.ssh/sockets"), None);
        let both = with_multiplex(&new, "devbox", "~/.ssh/sockets").unwrap();
        assert_eq!(both.matches("ControlMaster auto").count(), 2);
        assert!(!host_ok("a b"));
        assert!(!host_ok("a\nProxyCommand x"));
        assert!(host_ok("*.example.com"));
    }
}
