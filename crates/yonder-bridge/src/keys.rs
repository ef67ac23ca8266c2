//! The bridge's keys: its stable per-target host key, and the client keys it
//! accepts.
//!
//! The host key is what an SSH client's known_hosts pins, so it must be the
//! same on every start of the bridge for a given target: it is generated
//! once (Ed25519), stored 0600 in a 0700 directory, and loaded afterwards.
//!
//! Client keys: the bridge runs as the local user and is reached only
//! through a ProxyCommand that user runs, so the channel is already the
//! user's. Requiring a key the user holds anyway (a `~/.ssh/*.pub` or an
//! ssh-agent identity) keeps "someone who can feed bytes to the proxy" from
//! being enough, at no cost to the user.

use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{PrivateKey, PublicKey};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long we wait for the ssh-agent to list its keys. A wedged agent must
/// not hang every connection; the `.pub` files still count.
const AGENT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: not an OpenSSH private key ({reason}); move it away and the bridge makes a new one (clients will then see a changed host key)"
    )]
    Parse { path: PathBuf, reason: String },
    #[error("{path}: is readable by others (mode {mode:o}); run: chmod 600 {path}")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("cannot make a host key: {0}")]
    Generate(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A file name for `target` in the host key directory: readable, and unique
/// (a hash of the whole name tells apart targets that sanitize alike).
pub fn host_key_file_name(target: &str) -> String {
    let mut name: String = target
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    // FNV-1a: stable across versions and platforms, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in target.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    name.push_str(&format!("-{:08x}", h as u32));
    name
}

/// Loads the host key at `path`, or makes one there when it is missing. Two
/// bridges starting at once agree on one key: the new key is written to a
/// temporary file and linked into place only if no key appeared meanwhile.
pub fn load_or_create_host_key(path: &Path) -> Result<PrivateKey, KeyError> {
    match std::fs::read_to_string(path) {
        Ok(text) => return parse_host_key(path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path)(e)),
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyError::Generate(e.to_string()))?;
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    key.set_comment("yonder ssh bridge host key");
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    // A name no other writer uses (process and thread alike).
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| KeyError::Generate(e.to_string()))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}-{:016x}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id(),
        u64::from_ne_bytes(nonce)
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io_err(&tmp))?;
    drop(f);
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(key),
        // Another bridge won the race: use its key.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path).map_err(io_err(path))?;
            parse_host_key(path, &text)
        }
        Err(e) => Err(io_err(path)(e)),
    }
}

fn parse_host_key(path: &Path, text: &str) -> Result<PrivateKey, KeyError> {
    let mode = std::fs::metadata(path)
        .map_err(io_err(path))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_path_buf(),
            mode: mode & 0o777,
        });
    }
    PrivateKey::from_openssh(text).map_err(|e| KeyError::Parse {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The public keys in one `.pub` or authorized_keys-style text: the first
/// key of each line; blank lines, comments and options we cannot parse are
/// skipped.
pub fn parse_public_keys(text: &str) -> Vec<PublicKey> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| PublicKey::from_openssh(l).ok())
        .collect()
}

/// The keys the local user holds: every `DIR/*.pub` (normally `~/.ssh`),
/// and the identities of the ssh-agent at `$SSH_AUTH_SOCK` if there is one.
pub async fn user_keys(ssh_dir: &Path) -> Vec<PublicKey> {
    let mut keys = Vec::new();
    if let Ok(rd) = std::fs::read_dir(ssh_dir) {
        let mut paths: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pub"))
            .collect();
        paths.sort();
        for p in paths {
            if let Ok(text) = std::fs::read_to_string(&p) {
                keys.extend(parse_public_keys(&text));
            }
        }
    }
    let agent = async {
        let mut agent = russh::keys::agent::client::AgentClient::connect_env()
            .await
            .ok()?;
        agent.request_identities().await.ok()
    };
    if let Ok(Some(ids)) = tokio::time::timeout(AGENT_TIMEOUT, agent).await {
        for id in ids {
            keys.push(id.public_key().into_owned());
        }
    }
    keys
}

/// Whether `offered` is one of `allowed` (the key material, not comments).
pub fn is_allowed(allowed: &[PublicKey], offered: &PublicKey) -> bool {
    allowed.iter().any(|k| k.key_data() == offered.key_data())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_key_is_stable_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join(host_key_file_name("local"));
        let a = load_or_create_host_key(&path).unwrap();
        let b = load_or_create_host_key(&path).unwrap();
        assert_eq!(a.public_key().key_data(), b.public_key().key_data());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dmode & 0o777, 0o700);
        // A key others can read is refused with the fix in the message.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_or_create_host_key(&path).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        // Garbage is reported, never replaced.
        std::fs::write(&path, "garbage").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = load_or_create_host_key(&path).unwrap_err().to_string();
        assert!(e.contains("not an OpenSSH private key"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "garbage");
    }

    /// Clients often open several connections at once (VS Code does): the
    /// bridges they start must agree on one key.
    #[test]
    fn bridges_starting_at_once_agree_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let p = path.clone();
                std::thread::spawn(move || {
                    load_or_create_host_key(&p)
                        .unwrap()
                        .public_key()
                        .to_openssh()
                        .unwrap()
                })
            })
            .collect();
        let keys: std::collections::HashSet<String> =
            threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(keys.len(), 1);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary files left behind");
    }

    #[test]
    fn file_names_are_safe_and_distinct() {
        let a = host_key_file_name("ssh://u@h:22");
        let b = host_key_file_name("ssh://u@h_22");
        assert_ne!(a, b);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
            "{a}"
        );
        assert!(!host_key_file_name("../../etc/passwd").contains('/'));
    }

    #[test]
    fn public_key_lines_skip_noise() {
        let k = PrivateKey::from(Ed25519Keypair::from_seed(&[7; 32]));
        let line = k.public_key().to_openssh().unwrap();
        let text = format!("# comment\n\nnot a key\n{line} me@host\n");
        let keys = parse_public_keys(&text);
        assert_eq!(keys.len(), 1);
        assert!(is_allowed(&keys, k.public_key()));
        let other = PrivateKey::from(Ed25519Keypair::from_seed(&[8; 32]));
        assert!(!is_allowed(&keys, other.public_key()));
    }
}
