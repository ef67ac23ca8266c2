//! `Host` entries that reach yonder targets through `yonder ssh-proxy`.
//!
//! yonder owns one file, `~/.ssh/yonder.conf`, made of marked blocks:
//!
//! ```text
//! # BEGIN yonder ALIAS
//! Host ALIAS
//!     ProxyCommand '/usr/bin/yonder' ssh-proxy 'TARGET'
//!     ...
//! # END yonder ALIAS
//! ```
//!
//! and adds `Include yonder.conf` to `~/.ssh/config` once, **at the top**:
//! ssh_config applies the first value it finds, and an `Include` placed
//! after a `Host` line would only count for that host. Every write goes to
//! a temporary file renamed into place; the user's `~/.ssh/config` is
//! backed up first (`config.yonder-backup`), and a symlinked config is
//! written through its link.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The file yonder owns, next to `~/.ssh/config`.
pub const MANAGED_FILE: &str = "yonder.conf";

const BEGIN: &str = "# BEGIN yonder ";
const END: &str = "# END yonder ";
const INCLUDE_COMMENT: &str =
    "# Added by yonder: hosts from `yonder ssh-config add` (must stay above any Host line)";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "invalid host alias {0:?}: use letters, digits, '.', '-' and '_' (no spaces, wildcards or leading '-')"
    )]
    Alias(String),
    #[error(
        "{path} has a yonder block for {alias} with no `{END}{alias}` line; fix or remove it by hand"
    )]
    Unterminated { path: PathBuf, alias: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ConfigError + '_ {
    move |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One `Host` entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub alias: String,
    /// The target as yonder prints it (`local`, `ssh://…`, …).
    pub target: String,
    pub user: String,
    /// The yonder executable the ProxyCommand runs.
    pub yonder: PathBuf,
    /// The name known_hosts records the bridge's host key under.
    pub host_key_alias: String,
    /// A known_hosts file holding the bridge's host keys (checked after
    /// the user's own).
    pub known_hosts: PathBuf,
}

/// `yonder-` and the target with anything unusual replaced by `-`.
pub fn default_alias(target: &str) -> String {
    let t = target
        .trim_start_matches("ssh://")
        .trim_start_matches("container://")
        .trim_start_matches("wsl://");
    let mut s = String::from("yonder-");
    for c in t.chars() {
        s.push(if c.is_ascii_alphanumeric() || matches!(c, '.' | '_') {
            c
        } else {
            '-'
        });
    }
    s.trim_end_matches('-').to_string()
}

/// The known_hosts name for a target's bridge host key: unique per target,
/// and never a real host name (so it cannot clash with one).
pub fn host_key_alias(target: &str) -> String {
    format!("yonder-bridge.{}", crate::keys::host_key_file_name(target))
}

pub fn check_alias(alias: &str) -> Result<(), ConfigError> {
    let ok = !alias.is_empty()
        && !alias.starts_with('-')
        && alias
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Alias(alias.to_string()))
    }
}

/// Quotes for the shell that runs a ProxyCommand (`sh -c`), and doubles
/// `%`, which ssh would otherwise expand as a token (ssh_config(5) TOKENS).
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''")).replace('%', "%%")
}

/// Quotes a path for ssh_config itself (double quotes around whitespace).
fn config_path(p: &Path) -> String {
    let s = p.display().to_string();
    if s.contains(char::is_whitespace) {
        format!("\"{s}\"")
    } else {
        s
    }
}

pub fn render_block(e: &Entry) -> String {
    format!(
        "{BEGIN}{alias}\n\
         Host {alias}\n\
         \x20   # yonder target: {target}\n\
         \x20   ProxyCommand {exe} ssh-proxy {qtarget}\n\
         \x20   User {user}\n\
         \x20   HostKeyAlias {hka}\n\
         \x20   UserKnownHostsFile ~/.ssh/known_hosts {kh}\n\
         {END}{alias}\n",
        alias = e.alias,
        target = e.target,
        exe = quote(&e.yonder.display().to_string()),
        qtarget = quote(&e.target),
        user = e.user,
        hka = e.host_key_alias,
        kh = config_path(&e.known_hosts),
    )
}

/// Finds the line range of `alias`'s block: (begin line, end line inclusive).
fn find_block(
    lines: &[&str],
    alias: &str,
    path: &Path,
) -> Result<Option<(usize, usize)>, ConfigError> {
    let begin = format!("{BEGIN}{alias}");
    let end = format!("{END}{alias}");
    let Some(b) = lines.iter().position(|l| l.trim_end() == begin) else {
        return Ok(None);
    };
    match lines[b..].iter().position(|l| l.trim_end() == end) {
        Some(off) => Ok(Some((b, b + off))),
        None => Err(ConfigError::Unterminated {
            path: path.to_path_buf(),
            alias: alias.to_string(),
        }),
    }
}

/// `text` with `block` for `alias` added, or replacing the old one in place.
/// Returns the new text and whether a block was replaced.
pub fn upsert_block(
    text: &str,
    alias: &str,
    block: &str,
    path: &Path,
) -> Result<(String, bool), ConfigError> {
    let lines: Vec<&str> = text.lines().collect();
    match find_block(&lines, alias, path)? {
        Some((b, e)) => {
            let mut out = String::new();
            for l in &lines[..b] {
                out.push_str(l);
                out.push('\n');
            }
            out.push_str(block);
            for l in &lines[e + 1..] {
                out.push_str(l);
                out.push('\n');
            }
            Ok((out, true))
        }
        None => {
            let mut out = text.to_string();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            if !out.is_empty() && !out.ends_with("\n\n") {
                out.push('\n');
            }
            out.push_str(block);
            Ok((out, false))
        }
    }
}

/// `text` without `alias`'s block (and the blank line before it), or `None`
/// when there is no such block.
pub fn remove_block(text: &str, alias: &str, path: &Path) -> Result<Option<String>, ConfigError> {
    let lines: Vec<&str> = text.lines().collect();
    let Some((mut b, e)) = find_block(&lines, alias, path)? else {
        return Ok(None);
    };
    if b > 0 && lines[b - 1].trim().is_empty() {
        b -= 1;
    }
    let mut out = String::new();
    for l in lines[..b].iter().chain(&lines[e + 1..]) {
        out.push_str(l);
        out.push('\n');
    }
    Ok(Some(out))
}

/// The (alias, target) of every block.
pub fn list_blocks(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for l in text.lines() {
        let l = l.trim();
        if let Some(a) = l.strip_prefix(BEGIN) {
            current = Some(a.to_string());
        } else if let Some(t) = l.strip_prefix("# yonder target: ")
            && let Some(a) = current.take()
        {
            out.push((a, t.to_string()));
        }
    }
    out
}

/// Whether an ssh_config text already includes `managed` (an `Include`
/// line naming it relative to ~/.ssh, with `~`, or absolute; keywords in
/// any case, as ssh reads them).
pub fn has_include(text: &str, managed: &Path) -> bool {
    let name = managed
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let absolute = managed.display().to_string();
    text.lines().any(|l| {
        let mut words = l.split_whitespace();
        words
            .next()
            .is_some_and(|k| k.eq_ignore_ascii_case("include"))
            && words.any(|w| {
                let w = w.trim_matches('"');
                w == name || w == format!("~/.ssh/{name}") || w == absolute
            })
    })
}

/// `text` with the Include line put first. The path is absolute: ssh
/// resolves a relative one against the password database's home, which is
/// not always `$HOME`.
pub fn add_include(text: &str, managed: &Path) -> String {
    format!(
        "{INCLUDE_COMMENT}\nInclude {}\n\n{text}",
        config_path(managed)
    )
}

/// Replaces `path` with `contents` through a temporary file and a rename,
/// keeping the mode of the file it replaces (or `mode` for a new one).
pub fn write_atomic(path: &Path, contents: &str, mode: u32) -> Result<(), ConfigError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mode = std::fs::metadata(path).map_or(mode, |m| m.permissions().mode() & 0o7777);
    let tmp = dir.join(format!(
        ".{}.yonder-tmp{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(path)(e)
    })
}

/// The files in one `~/.ssh`.
#[derive(Debug, Clone)]
pub struct Files {
    pub dir: PathBuf,
    /// `~/.ssh/config`.
    pub main: PathBuf,
    /// `~/.ssh/yonder.conf`.
    pub managed: PathBuf,
}

/// What [`Files::add`] changed.
#[derive(Debug, Clone, Copy)]
pub struct Added {
    pub include_added: bool,
    pub replaced: bool,
}

fn read_or_empty(path: &Path) -> Result<String, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(io_err(path)(e)),
    }
}

impl Files {
    pub fn in_dir(ssh_dir: &Path) -> Self {
        Self {
            dir: ssh_dir.to_path_buf(),
            main: ssh_dir.join("config"),
            managed: ssh_dir.join(MANAGED_FILE),
        }
    }

    /// Adds (or updates) `entry`, and the Include line if missing.
    pub fn add(&self, entry: &Entry) -> Result<Added, ConfigError> {
        check_alias(&entry.alias)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io_err(&self.dir))?;
        let managed = read_or_empty(&self.managed)?;
        let (text, replaced) =
            upsert_block(&managed, &entry.alias, &render_block(entry), &self.managed)?;
        write_atomic(&self.managed, &text, 0o600)?;

        // Write through a symlinked ~/.ssh/config (dotfile managers).
        let main = std::fs::canonicalize(&self.main).unwrap_or_else(|_| self.main.clone());
        let config = read_or_empty(&main)?;
        let include_added = !has_include(&config, &self.managed);
        if include_added {
            if main.exists() {
                let backup = main.with_file_name(format!(
                    "{}.yonder-backup",
                    main.file_name().unwrap_or_default().to_string_lossy()
                ));
                std::fs::copy(&main, &backup).map_err(io_err(&backup))?;
            }
            write_atomic(&main, &add_include(&config, &self.managed), 0o600)?;
        }
        Ok(Added {
            include_added,
            replaced,
        })
    }

    /// Removes `alias`'s block; `false` if there was none.
    pub fn remove(&self, alias: &str) -> Result<bool, ConfigError> {
        let managed = read_or_empty(&self.managed)?;
        match remove_block(&managed, alias, &self.managed)? {
            Some(text) => {
                write_atomic(&self.managed, &text, 0o600)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    pub fn list(&self) -> Result<Vec<(String, String)>, ConfigError> {
        Ok(list_blocks(&read_or_empty(&self.managed)?))
    }
}

/// Adds `ALIAS KEY` to a known_hosts file unless that exact line is there.
pub fn trust_host_key(path: &Path, alias: &str, public_key: &str) -> Result<(), ConfigError> {
    let text = read_or_empty(path)?;
    let key = public_key
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let line = format!("{alias} {key}");
    if text.lines().any(|l| l.trim() == line) {
        return Ok(());
    }
    // Drop an older key for the same alias (the key file was replaced).
    let mut out: String = text
        .lines()
        .filter(|l| l.split_whitespace().next() != Some(alias))
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str(&line);
    out.push('\n');
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir))?;
    }
    write_atomic(path, &out, 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(alias: &str, target: &str) -> Entry {
        Entry {
            alias: alias.into(),
            target: target.into(),
            user: "me".into(),
            yonder: "/opt/my tools/yonder".into(),
            host_key_alias: host_key_alias(target),
            known_hosts: "/home/me/.yonder/ssh-bridge/known_hosts".into(),
        }
    }

    #[test]
    fn block_quotes_for_the_shell_and_ssh_tokens() {
        let b = render_block(&entry("dev", "container://it's%h"));
        assert!(
            b.contains(r"ProxyCommand '/opt/my tools/yonder' ssh-proxy 'container://it'\''s%%h'"),
            "{b}"
        );
        assert!(b.starts_with("# BEGIN yonder dev\nHost dev\n"), "{b}");
        assert!(b.ends_with("# END yonder dev\n"), "{b}");
        assert!(b.contains("HostKeyAlias yonder-bridge."), "{b}");
    }

    #[test]
    fn add_replace_remove_keep_the_rest() {
        let p = Path::new("/x");
        let user = "# mine\nHost other\n    User x\n";
        let (t, replaced) =
            upsert_block(user, "a", &render_block(&entry("a", "local")), p).unwrap();
        assert!(!replaced);
        let (t, _) = upsert_block(&t, "b", &render_block(&entry("b", "wsl://D")), p).unwrap();
        let (t, replaced) =
            upsert_block(&t, "a", &render_block(&entry("a", "ssh://h")), p).unwrap();
        assert!(replaced);
        assert_eq!(
            list_blocks(&t),
            vec![
                ("a".to_string(), "ssh://h".to_string()),
                ("b".to_string(), "wsl://D".to_string())
            ]
        );
        let t = remove_block(&t, "a", p).unwrap().unwrap();
        let t = remove_block(&t, "b", p).unwrap().unwrap();
        assert_eq!(t, user);
        assert!(remove_block(&t, "a", p).unwrap().is_none());
        // A block whose end marker was deleted is an error, not a guess.
        let broken = "# BEGIN yonder a\nHost a\n";
        assert!(matches!(
            remove_block(broken, "a", p),
            Err(ConfigError::Unterminated { .. })
        ));
    }

    #[test]
    fn include_detection() {
        let m = Path::new("/home/me/.ssh/yonder.conf");
        assert!(has_include("include yonder.conf\n", m));
        assert!(has_include("Include ~/.ssh/yonder.conf\n", m));
        assert!(has_include("Include a.conf \"yonder.conf\"\n", m));
        assert!(has_include("INCLUDE /home/me/.ssh/yonder.conf\n", m));
        assert!(!has_include("# Include yonder.conf\n", m));
        assert!(!has_include("Include yonder.conf.d\n", m));
        let t = add_include("Host x\n", m);
        assert!(
            t.contains("\nInclude /home/me/.ssh/yonder.conf\n\nHost x\n"),
            "{t}"
        );
    }

    #[test]
    fn aliases() {
        assert_eq!(default_alias("container://my app"), "yonder-my-app");
        assert_eq!(default_alias("ssh://me@h:22"), "yonder-me-h-22");
        assert_eq!(default_alias("local"), "yonder-local");
        assert!(check_alias("dev.box_1").is_ok());
        for bad in ["", "-oProxyCommand=x", "a b", "a*", "a#b", "a\nb"] {
            assert!(check_alias(bad).is_err(), "{bad:?}");
        }
    }
}
