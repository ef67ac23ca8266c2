//! Checks of this machine's SSH setup: the client, `~/.ssh` modes and
//! owner, the keys (weak, passphrase without agent, PuTTY files), the
//! ssh_config (errors with file:line) and connection sharing.
//!
//! The rules are OpenSSH's own: the client ignores a private key that others
//! can read ("UNPROTECTED PRIVATE KEY FILE") and refuses a config file
//! others can write ("Bad owner or permissions"); sshd's StrictModes ignores
//! `authorized_keys` when it, `~/.ssh` or `~` is group/world-writable or
//! owned by someone else.

use crate::keys::{self, KeyInfo};
use crate::sshconfig::{self, ConfigError};
use crate::{Check, Fix, FixAction, Paths};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Every local check, in the order they are printed.
pub fn check(paths: &Paths) -> Vec<Check> {
    let mut out = vec![ssh_client(paths)];
    out.extend(permissions(paths));
    out.extend(key_checks(paths));
    out.extend(config_checks(paths));
    out
}

/// The seed's table: how to install an OpenSSH client on this OS.
pub fn client_install_command() -> &'static str {
    if cfg!(target_os = "macos") {
        return "macOS ships the OpenSSH client: check that /usr/bin is on your PATH";
    }
    if cfg!(windows) {
        return "Windows 10 1803+: Settings > Apps > Optional features > OpenSSH Client, or `Add-WindowsCapability -Online -Name OpenSSH.Client~~~~0.0.1.0`; older Windows: install Git for Windows and use its ssh";
    }
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let ids: String = os_release
        .lines()
        .filter(|l| l.starts_with("ID=") || l.starts_with("ID_LIKE="))
        .collect::<Vec<_>>()
        .join(" ");
    if ["debian", "ubuntu"].iter().any(|d| ids.contains(d)) {
        "sudo apt-get install openssh-client"
    } else if ["rhel", "fedora", "centos"].iter().any(|d| ids.contains(d)) {
        "sudo yum install openssh"
    } else if ids.contains("suse") {
        "sudo zypper install openssh"
    } else if ids.contains("alpine") {
        "sudo apk add openssh-client"
    } else {
        "install your distribution's OpenSSH client package (Debian/Ubuntu: `sudo apt-get install openssh-client`; RHEL/Fedora/CentOS: `sudo yum install openssh`)"
    }
}

fn ssh_client(paths: &Paths) -> Check {
    match std::process::Command::new(&paths.ssh)
        .arg("-V")
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) => {
            let v = String::from_utf8_lossy(&o.stderr);
            let v = v.lines().next().unwrap_or("").trim();
            Check::ok("ssh-client", format!("ssh client: {v}"))
        }
        Err(e) => Check::problem(
            "ssh-client",
            format!("no ssh client ({}: {e})", paths.ssh),
            "yonder drives your own OpenSSH client for every SSH host",
        )
        .with_fix(Fix::manual(client_install_command())),
    }
}

/// `uid` of this process.
fn my_uid() -> u32 {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() }
}

/// Judges one path: `want` is the most it may allow and the mode a fix
/// sets; a bit in `bad_bits` beyond it is a problem, any other extra bit a
/// warning.
fn mode_check(
    paths: &Paths,
    id: &str,
    path: &Path,
    want: u32,
    bad_bits: u32,
    why: &str,
) -> Option<Check> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    // A symlinked key or config is the user's choice; judge what it points at.
    let meta = if meta.file_type().is_symlink() {
        std::fs::metadata(path).ok()?
    } else {
        meta
    };
    let name = paths.tilde(path);
    let mode = meta.permissions().mode() & 0o7777;
    if meta.uid() != my_uid() && meta.uid() != 0 {
        return Some(
            Check::problem(
                id,
                format!("{name} belongs to uid {}, not to you", meta.uid()),
                "OpenSSH refuses files and directories owned by someone else",
            )
            .with_fix(Fix::manual(format!(
                "sudo chown {} {}",
                my_uid(),
                paths.shell_path(path)
            ))),
        );
    }
    let perm = mode & 0o777;
    // Stricter than asked (a 0400 key, a 0500 ~/.ssh) is fine.
    if perm & !want == 0 {
        return Some(Check::ok(id, format!("{name} mode {perm:03o}")));
    }
    let fix = Fix::auto(
        format!("chmod {want:03o} {}", paths.shell_path(path)),
        FixAction::Chmod {
            path: path.to_path_buf(),
            mode: want,
        },
    );
    let c = if perm & bad_bits != 0 {
        Check::problem(
            id,
            format!("{name} mode {perm:03o} (should be {want:03o})"),
            why,
        )
    } else {
        Check::warning(
            id,
            format!("{name} mode {perm:03o} (should be {want:03o})"),
            "others can read it; OpenSSH's own recommendation is the stricter mode",
        )
    };
    Some(c.with_fix(fix))
}

/// Private key files in `~/.ssh`: anything that starts like a private key.
fn private_key_files(ssh_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(ssh_dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if !p.is_file() {
            continue;
        }
        let mut head = [0u8; 64];
        let n = std::fs::File::open(&p)
            .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
            .unwrap_or(0);
        let head = String::from_utf8_lossy(&head[..n]);
        if head.starts_with("-----BEGIN") && head.contains("PRIVATE KEY") {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn ppk_files(ssh_dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(ssh_dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.extension().is_some_and(|e| e.eq_ignore_ascii_case("ppk")) && p.is_file()
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn permissions(paths: &Paths) -> Vec<Check> {
    let mut out = Vec::new();
    if let Some(c) = mode_check(
        paths,
        "perm-home",
        &paths.home,
        // Keep the home's own mode minus group/world write.
        std::fs::metadata(&paths.home).map_or(0o755, |m| m.permissions().mode() & 0o755),
        0o022,
        "sshd's StrictModes ignores your authorized_keys when your home is group/world-writable",
    ) {
        out.push(c);
    }
    if !paths.ssh_dir.is_dir() {
        out.push(
            Check::warning(
                "perm-ssh-dir",
                format!("{} does not exist", paths.tilde(&paths.ssh_dir)),
                "no keys, config or known hosts yet",
            )
            .with_fix(Fix::manual("yonder keys generate")),
        );
        return out;
    }
    out.extend(mode_check(
        paths,
        "perm-ssh-dir",
        &paths.ssh_dir,
        0o700,
        0o022,
        "sshd's StrictModes ignores authorized_keys in a group/world-writable ~/.ssh",
    ));
    if paths.config.starts_with(&paths.ssh_dir) {
        out.extend(mode_check(
            paths,
            "perm-config",
            &paths.config,
            0o600,
            0o022,
            "ssh refuses a config file others can write (\"Bad owner or permissions\")",
        ));
    }
    out.extend(mode_check(
        paths,
        "perm-authorized-keys",
        &paths.ssh_dir.join("authorized_keys"),
        0o600,
        0o022,
        "sshd's StrictModes ignores an authorized_keys file others can write",
    ));
    for k in private_key_files(&paths.ssh_dir) {
        out.extend(mode_check(
            paths,
            "perm-private-key",
            &k,
            0o600,
            0o077,
            "ssh ignores a private key others can read (\"UNPROTECTED PRIVATE KEY FILE\")",
        ));
    }
    out
}

fn agent_running() -> bool {
    if std::env::var_os("SSH_AUTH_SOCK").is_none_or(|s| s.is_empty()) {
        return false;
    }
    // ssh-add -l: 0 keys listed, 1 agent has no keys, 2 no agent.
    std::process::Command::new("ssh-add")
        .arg("-l")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| matches!(s.code(), Some(0 | 1)))
}

/// ssh's default identities (`ssh -G` lists them when none is configured):
/// missing ones are normal.
pub(crate) const DEFAULT_IDENTITIES: &[&str] = &[
    "~/.ssh/id_rsa",
    "~/.ssh/id_ecdsa",
    "~/.ssh/id_ecdsa_sk",
    "~/.ssh/id_ed25519",
    "~/.ssh/id_ed25519_sk",
    "~/.ssh/id_xmss",
    "~/.ssh/id_dsa",
];

fn expand(p: &str, home: &Path) -> PathBuf {
    match p.strip_prefix("~/") {
        Some(r) => home.join(r),
        None => PathBuf::from(p),
    }
}

fn key_checks(paths: &Paths) -> Vec<Check> {
    let mut out = Vec::new();
    let files = private_key_files(&paths.ssh_dir);
    let mut infos: Vec<(PathBuf, Option<KeyInfo>)> = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let info = keys::describe_private_text(&text).or_else(|| {
            // Old PEM keys: the .pub beside them tells the type.
            let p = std::fs::read_to_string(keys::public_path(f)).ok()?;
            let pk = ssh_key::PublicKey::from_openssh(p.trim()).ok()?;
            Some(keys::describe_public(&pk, text.contains("ENCRYPTED")))
        });
        infos.push((f.clone(), info));
    }
    if files.is_empty() {
        out.push(
            Check::warning(
                "keys",
                format!("no private keys in {}", paths.tilde(&paths.ssh_dir)),
                "without a key every login asks for a password",
            )
            .with_fix(Fix::manual(
                "yonder keys generate, then yonder keys copy HOST",
            )),
        );
    } else {
        let list = infos
            .iter()
            .map(|(p, i)| match i {
                Some(i) => format!(
                    "{} ({} {}{})",
                    paths.tilde(p),
                    i.algorithm,
                    i.bits,
                    if i.encrypted { ", passphrase" } else { "" }
                ),
                None => format!("{} (unknown format)", paths.tilde(p)),
            })
            .collect::<Vec<_>>()
            .join(", ");
        out.push(Check::ok("keys", format!("keys: {list}")));
    }
    for (p, i) in &infos {
        if let Some(w) = i.as_ref().and_then(KeyInfo::weakness) {
            out.push(
                Check::warning("key-weak", format!("{} is weak", paths.tilde(p)), w).with_fix(
                    Fix::manual(
                        "yonder keys generate (ed25519), then yonder keys copy HOST for each host",
                    ),
                ),
            );
        }
    }
    if infos
        .iter()
        .any(|(_, i)| i.as_ref().is_some_and(|i| i.encrypted))
        && !agent_running()
    {
        out.push(
            Check::warning(
                "key-agent",
                "a key has a passphrase and no ssh-agent is running",
                "every new connection asks for the passphrase (yonder relays the prompt); an agent, or connection sharing, asks once",
            )
            .with_fix(Fix::manual("eval \"$(ssh-agent)\" && ssh-add")),
        );
    }
    // Configured identity files that do not exist.
    if let Ok(r) = sshconfig::resolve(paths, sshconfig::ANY_HOST, &[]) {
        for id in r.all("identityfile") {
            if DEFAULT_IDENTITIES.contains(&id.as_str()) {
                continue;
            }
            let p = expand(id, &paths.home);
            if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("ppk")) {
                continue; // reported below with the other PuTTY keys
            }
            if !p.exists() {
                out.push(
                    Check::warning(
                        "key-missing",
                        format!("IdentityFile {id} does not exist"),
                        "ssh skips it; the login may fall back to a password",
                    )
                    .with_fix(Fix::manual(format!(
                        "fix the IdentityFile line in {}, or `yonder keys generate --file {id}`",
                        paths.tilde(&paths.config)
                    ))),
                );
            }
        }
    }
    let mut ppks = ppk_files(&paths.ssh_dir);
    let config_text = std::fs::read_to_string(&paths.config).unwrap_or_default();
    for r in referenced_ppks(&config_text) {
        let p = expand(&r, &paths.home);
        if !ppks.contains(&p) && p.is_file() {
            ppks.push(p);
        }
    }
    for ppk in ppks {
        let converted = ppk.with_extension("");
        if converted.exists() {
            continue;
        }
        let encrypted = std::fs::read_to_string(&ppk).is_ok_and(|t| keys::ppk_is_encrypted(&t));
        let cmd = format!("yonder keys import-ppk {}", paths.shell_path(&ppk));
        out.push(
            Check::warning(
                "key-ppk",
                format!("{} is a PuTTY key", paths.tilde(&ppk)),
                "OpenSSH cannot read PuTTY keys; convert it once",
            )
            .with_fix(if encrypted {
                Fix::manual(format!("{cmd} (asks for its passphrase)"))
            } else {
                Fix::auto(cmd, FixAction::ConvertPpk { ppk: ppk.clone() })
            }),
        );
    }
    out
}

/// `IdentityFile …ppk` values in a config file's text (any Host block).
/// Only used to offer conversions: what ssh does is decided by `ssh -G`.
pub fn referenced_ppks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for l in text.lines() {
        let l = l.trim();
        if l.starts_with('#') {
            continue;
        }
        let (k, v) = match l.find(|c: char| c.is_whitespace() || c == '=') {
            Some(i) => (
                &l[..i],
                l[i..].trim_start_matches(|c: char| c.is_whitespace() || c == '='),
            ),
            None => continue,
        };
        if !k.eq_ignore_ascii_case("identityfile") {
            continue;
        }
        let v = v.trim().trim_matches('"');
        if v.to_ascii_lowercase().ends_with(".ppk") {
            out.push(v.to_string());
        }
    }
    out
}

fn config_checks(paths: &Paths) -> Vec<Check> {
    let mut out = Vec::new();
    if !paths.config.exists() {
        out.push(Check::ok(
            "ssh-config",
            format!("no {} (ssh's defaults apply)", paths.tilde(&paths.config)),
        ));
    }
    match sshconfig::resolve(paths, sshconfig::ANY_HOST, &[]) {
        Ok(r) => {
            if paths.config.exists() {
                out.push(Check::ok(
                    "ssh-config",
                    format!("{} parses without errors", paths.tilde(&paths.config)),
                ));
            }
            if r.multiplexed() {
                out.push(Check::ok(
                    "multiplex",
                    "connection sharing (ControlMaster) is on for every host",
                ));
            } else {
                out.push(
                    Check::warning(
                        "multiplex",
                        "connection sharing (ControlMaster) is off",
                        "plain ssh, scp and git log in (and ask for 2FA) on every connection; yonder shares its own connections either way",
                    )
                    .with_fix(Fix::auto(
                        "yonder ssh-config multiplex '*'",
                        FixAction::Multiplex {
                            config: paths.config.clone(),
                            host: "*".into(),
                        },
                    )),
                );
            }
        }
        Err(ConfigError::Syntax(errs)) => {
            for e in errs {
                let file = e.file.clone();
                out.push(
                    Check::problem(
                        "ssh-config",
                        format!(
                            "{}:{}: {}",
                            paths.tilde(Path::new(&file)),
                            e.line,
                            e.message
                        ),
                        "ssh refuses to connect anywhere while its config has an error",
                    )
                    .with_fix(Fix::manual(format!(
                        "edit {} line {}",
                        paths.tilde(Path::new(&file)),
                        e.line
                    ))),
                );
            }
        }
        Err(e) => out.push(Check::problem(
            "ssh-config",
            format!("cannot read the ssh configuration: {e}"),
            "ssh resolves every host through it",
        )),
    }
    out
}

/// The container engine CLI: `docker`, else `podman`, on PATH. Only
/// whether one is there; talking to it is the container target's job.
pub fn container_engine() -> Check {
    // The engine the user chose for dev containers (`--docker-path`'s variable).
    if let Some(chosen) = std::env::var_os("YONDER_DOCKER_PATH").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(&chosen);
        let found = if p.components().count() > 1 {
            p.is_file().then(|| p.clone())
        } else {
            let path = std::env::var_os("PATH").unwrap_or_default();
            std::env::split_paths(&path)
                .map(|d| d.join(&p))
                .find(|p| p.is_file())
        };
        return match found {
            Some(f) => Check::ok(
                "container-engine",
                format!("container engine: {} (YONDER_DOCKER_PATH)", f.display()),
            ),
            None => Check::problem(
                "container-engine",
                format!(
                    "YONDER_DOCKER_PATH names {}, which is not there",
                    p.display()
                ),
                "containers and dev containers are run through that CLI",
            )
            .with_fix(Fix::manual(
                "install it, or unset YONDER_DOCKER_PATH to use docker or podman from PATH",
            )),
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for engine in ["docker", "podman"] {
        if let Some(p) = std::env::split_paths(&path)
            .map(|d| d.join(engine))
            .find(|p| p.is_file())
        {
            return Check::ok(
                "container-engine",
                format!("container engine: {engine} ({})", p.display()),
            );
        }
    }
    Check::problem(
        "container-engine",
        "no container engine: neither docker nor podman is on PATH",
        "containers and dev containers are run through a docker-compatible CLI",
    )
    .with_fix(Fix::manual(
        "install one: Debian/Ubuntu `sudo apt-get install podman` (or Docker Engine: https://docs.docker.com/engine/install/); \
         RHEL/Fedora `sudo dnf install podman`; macOS/Windows: Docker Desktop or Podman Desktop",
    ))
}

/// Applies a local fix.
pub fn apply(paths: &Paths, action: &FixAction) -> Result<String, String> {
    match action {
        FixAction::Chmod { path, mode } => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(format!("{} is now {mode:03o}", paths.tilde(path)))
        }
        FixAction::Multiplex { config, host } => {
            match sshconfig::add_multiplex(config, &paths.ssh_dir, host)
                .map_err(|e| e.to_string())?
            {
                sshconfig::EditOutcome::AlreadyThere => {
                    Ok("connection sharing was already set up".into())
                }
                sshconfig::EditOutcome::Added { backup } => Ok(match backup {
                    Some(b) => format!(
                        "connection sharing added to {} (backup: {})",
                        paths.tilde(config),
                        paths.tilde(&b)
                    ),
                    None => format!("connection sharing added to {}", paths.tilde(config)),
                }),
            }
        }
        FixAction::ConvertPpk { ppk } => {
            let text =
                std::fs::read_to_string(ppk).map_err(|e| format!("{}: {e}", ppk.display()))?;
            let key = keys::import_ppk(ppk, &text, None).map_err(|e| e.to_string())?;
            let out = ppk.with_extension("");
            keys::write_key_pair(&key, &out, None).map_err(|e| e.to_string())?;
            Ok(format!("converted to {}", paths.tilde(&out)))
        }
        FixAction::RemoteChmod { .. } => Err("a remote fix: applied by the remote checks".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppk_identity_files_are_found_in_any_form() {
        let text = "Host a\n  IdentityFile ~/keys/work.ppk\n\tidentityfile=\"/x y/k.PPK\"\n\
                    # IdentityFile ~/commented.ppk\n  IdentityFile ~/.ssh/id_ed25519\n  IdentityFileX a.ppk\nIdentityFile\n";
        assert_eq!(referenced_ppks(text), vec!["~/keys/work.ppk", "/x y/k.PPK"]);
    }
}
