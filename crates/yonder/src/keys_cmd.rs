//! `yonder keys …` and `yonder ssh-config …`: the key helpers over
//! `yonder_doctor::{keys, sshconfig, remote}`.

use crate::cli::{KeyTypeArg, KeysOp};
use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};
use yonder_doctor::keys::{self, KeyType};
use yonder_doctor::sshconfig::{self, EditOutcome};

pub async fn run(op: KeysOp) -> anyhow::Result<()> {
    match op {
        KeysOp::Generate {
            key_type,
            bits,
            comment,
            file,
            passphrase_prompt,
            passphrase_file,
        } => generate(
            key_type,
            bits,
            comment,
            file,
            passphrase_prompt,
            passphrase_file,
        ),
        KeysOp::Copy { target, key } => copy(&target, key).await,
        KeysOp::ImportPpk {
            file,
            out,
            passphrase_file,
            no_passphrase,
            new_passphrase_file,
            new_passphrase_prompt,
            add_to_host,
        } => {
            let new = if no_passphrase {
                NewPassphrase::None
            } else if let Some(f) = new_passphrase_file {
                NewPassphrase::Given(read_passphrase_file(&f)?)
            } else if new_passphrase_prompt {
                NewPassphrase::Given(prompt_new_passphrase()?)
            } else {
                NewPassphrase::Same
            };
            let out = import_ppk(&file, out, passphrase_file.as_deref(), new)?;
            if let Some(host) = add_to_host {
                let paths = yonder_doctor::Paths::from_env().context("HOME is not set")?;
                let key = std::path::absolute(&out).unwrap_or(out);
                match sshconfig::add_identity(&paths.config, &host, &key)? {
                    EditOutcome::AlreadyThere => println!(
                        "{}: {host} already uses {}",
                        paths.config.display(),
                        key.display()
                    ),
                    EditOutcome::Added { backup } => {
                        println!(
                            "{}: added `IdentityFile {}` for {host}",
                            paths.config.display(),
                            key.display()
                        );
                        if let Some(b) = backup {
                            println!("backup of the previous version: {}", b.display());
                        }
                    }
                }
            }
            Ok(())
        }
    }
}

fn home() -> anyhow::Result<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .context("HOME is not set: cannot find ~/.ssh")
}

/// The first line of a passphrase file (scripts and tests; like puttygen's
/// `--old-passphrase FILE`).
fn read_passphrase_file(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the passphrase file {}", path.display()))?;
    Ok(text
        .lines()
        .next()
        .unwrap_or("")
        .trim_end_matches('\r')
        .to_string())
}

fn prompt(question: &str) -> anyhow::Result<String> {
    yonder_target::askpass::ask_on_terminal(question).with_context(|| {
        format!(
            "{} needs a terminal to ask on (or use the --…-file option)",
            question.trim()
        )
    })
}

fn prompt_new_passphrase() -> anyhow::Result<String> {
    let a = prompt("New passphrase (empty for none): ")?;
    let b = prompt("Same passphrase again: ")?;
    if a != b {
        bail!("the two passphrases differ; nothing was written");
    }
    Ok(a)
}

fn generate(
    key_type: KeyTypeArg,
    bits: Option<u32>,
    comment: Option<String>,
    file: Option<PathBuf>,
    passphrase_prompt: bool,
    passphrase_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    let kind = match key_type {
        KeyTypeArg::Ed25519 => KeyType::Ed25519,
        KeyTypeArg::Rsa => KeyType::Rsa,
    };
    if bits.is_some() && kind != KeyType::Rsa {
        bail!("--bits applies to RSA keys only (ed25519 keys have one size)");
    }
    let path = match file {
        Some(f) => f,
        None => home()?.join(".ssh").join(kind.default_file_name()),
    };
    // Refuse before asking for a passphrase or spending time on RSA.
    for p in [path.clone(), keys::public_path(&path)] {
        if p.symlink_metadata().is_ok() {
            return Err(keys::KeyError::Exists { path: p }.into());
        }
    }
    let passphrase = match (passphrase_prompt, passphrase_file) {
        (_, Some(f)) => Some(read_passphrase_file(&f)?),
        (true, None) => Some(prompt_new_passphrase()?),
        (false, None) => None,
    };
    let comment = comment.unwrap_or_else(default_comment);
    let key = keys::generate(kind, bits, &comment)?;
    let pub_path = keys::write_key_pair(&key, &path, passphrase.as_deref())?;
    println!("private key: {} (0600)", path.display());
    println!("public key:  {} (0644)", pub_path.display());
    println!("fingerprint: {}", key.fingerprint(keys::HashAlg::Sha256));
    println!("next: `yonder keys copy HOST` puts it on a host");
    Ok(())
}

fn default_comment() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "user".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host}")
}

enum NewPassphrase {
    Same,
    None,
    Given(String),
}

/// Converts; returns where the OpenSSH key went.
fn import_ppk(
    file: &Path,
    out: Option<PathBuf>,
    passphrase_file: Option<&Path>,
    new: NewPassphrase,
) -> anyhow::Result<PathBuf> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the PuTTY key {}", file.display()))?;
    let out = match out {
        Some(o) => o,
        None => match file.extension() {
            Some(e) if e.eq_ignore_ascii_case("ppk") => file.with_extension(""),
            _ => bail!(
                "{}: does not end in .ppk, so there is no default output name: give --out PATH",
                file.display()
            ),
        },
    };
    for p in [out.clone(), keys::public_path(&out)] {
        if p.symlink_metadata().is_ok() {
            return Err(keys::KeyError::Exists { path: p }.into());
        }
    }
    let passphrase = if keys::ppk_is_encrypted(&text) {
        Some(match passphrase_file {
            Some(f) => read_passphrase_file(f)?,
            None => prompt(&format!("Passphrase for {}: ", file.display()))?,
        })
    } else {
        None
    };
    let key = keys::import_ppk(file, &text, passphrase.as_deref())?;
    let new_pass = match new {
        NewPassphrase::Same => passphrase,
        NewPassphrase::None => None,
        NewPassphrase::Given(p) => Some(p).filter(|p| !p.is_empty()),
    };
    let pub_path = keys::write_key_pair(&key, &out, new_pass.as_deref())?;
    let info = keys::describe_public(key.public_key(), new_pass.is_some());
    println!(
        "converted {} ({} {} bits{})",
        file.display(),
        info.algorithm,
        info.bits,
        if new_pass.is_some() {
            ", passphrase-protected"
        } else {
            ", no passphrase"
        }
    );
    println!("private key: {} (0600)", out.display());
    println!("public key:  {} (0644)", pub_path.display());
    println!("fingerprint: {}", info.fingerprint);
    if let Some(w) = info.weakness() {
        eprintln!("yonder: warning: this key is weak: {w}; consider `yonder keys generate`");
    }
    println!(
        "to use it for a host: --add-to-host HOST, or add `IdentityFile {}` to its Host block",
        out.display()
    );
    Ok(out)
}

async fn copy(target: &str, key: Option<PathBuf>) -> anyhow::Result<()> {
    let paths = yonder_doctor::Paths::from_env().context("HOME is not set")?;
    let key = match key {
        Some(k) => k,
        None => ["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"]
            .iter()
            .map(|n| paths.ssh_dir.join(n))
            .find(|p| p.exists())
            .with_context(|| {
                format!(
                    "no public key in {} (id_ed25519.pub, id_ecdsa.pub, id_rsa.pub): make one with `yonder keys generate`, or name one with --key",
                    paths.ssh_dir.display()
                )
            })?,
    };
    let outcome = yonder_doctor::remote::copy_id(&paths, target, &key)
        .await
        .with_context(|| format!("copying {} to {target}", key.display()))?;
    println!("{outcome}");
    Ok(())
}

/// `ssh-config multiplex HOST`.
pub fn multiplex(host: String) -> anyhow::Result<()> {
    {
        {
            let paths = yonder_doctor::Paths::from_env().context("HOME is not set")?;
            match sshconfig::add_multiplex(&paths.config, &paths.ssh_dir, &host)? {
                EditOutcome::AlreadyThere => println!(
                    "{}: connection sharing for {host} is already set up (nothing changed)",
                    paths.config.display()
                ),
                EditOutcome::Added { backup } => {
                    println!(
                        "{}: added connection sharing for {host} (ControlMaster auto, ControlPersist {})",
                        paths.config.display(),
                        sshconfig::CONTROL_PERSIST
                    );
                    if let Some(b) = backup {
                        println!("backup of the previous version: {}", b.display());
                    }
                }
            }
            Ok(())
        }
    }
}
