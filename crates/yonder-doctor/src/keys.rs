//! SSH keys: generate new ones, import PuTTY `.ppk` files, describe the keys
//! a user has (type, size, encrypted or not) and write key pairs safely.
//!
//! Keys are written in OpenSSH's own format, private 0600 and public 0644,
//! through a temporary file that is hard-linked into place: an existing key
//! is never overwritten (the link fails) and a half-written key never
//! appears under the final name.

use ssh_key::private::{KeypairData, RsaKeypair};
use ssh_key::public::KeyData;
use ssh_key::rand_core::UnwrapErr;
use ssh_key::{Algorithm, LineEnding, PrivateKey, PublicKey};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub use ssh_key::HashAlg;

/// RSA keys smaller than this are weak (NIST SP 800-131A disallows < 2048
/// bits since 2013; OpenSSH 8.8+ refuses < 1024 outright).
pub const MIN_RSA_BITS: u32 = 2048;

/// RSA size when the user names none: OpenSSH's own `ssh-keygen` default.
pub const DEFAULT_RSA_BITS: u32 = 3072;

/// Largest RSA size accepted: beyond this, generation takes minutes and
/// some servers refuse the key.
pub const MAX_RSA_BITS: u32 = 16384;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "{path}: already exists; yonder never overwrites a key (choose another --file, or move it away)"
    )]
    Exists { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: not a PuTTY key file (it should start with `PuTTY-User-Key-File-2:` or `-3:`)"
    )]
    NotPpk { path: PathBuf },
    #[error("{path}: the key is encrypted: a passphrase is needed")]
    PassphraseNeeded { path: PathBuf },
    #[error("{path}: wrong passphrase, or the file is damaged (its MAC does not match)")]
    BadPassphraseOrCorrupt { path: PathBuf },
    #[error("{path}: cannot read the PuTTY key: {detail}")]
    BadPpk { path: PathBuf, detail: String },
    #[error("RSA keys must have between {MIN_RSA_BITS} and {MAX_RSA_BITS} bits (got {0})")]
    BadBits(u32),
    #[error("cannot {what}: {detail}")]
    Crypto { what: &'static str, detail: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The key types `yonder keys generate` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Ed25519,
    Rsa,
}

impl KeyType {
    /// The file name OpenSSH looks for by default (`~/.ssh/id_…`).
    pub fn default_file_name(self) -> &'static str {
        match self {
            KeyType::Ed25519 => "id_ed25519",
            KeyType::Rsa => "id_rsa",
        }
    }
}

/// Makes a new private key. `bits` applies to RSA only.
pub fn generate(kind: KeyType, bits: Option<u32>, comment: &str) -> Result<PrivateKey, KeyError> {
    let mut rng = UnwrapErr(ssh_key::getrandom::SysRng);
    let mut key = match kind {
        KeyType::Ed25519 => PrivateKey::random(&mut rng, Algorithm::Ed25519),
        KeyType::Rsa => {
            let bits = bits.unwrap_or(DEFAULT_RSA_BITS);
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return Err(KeyError::BadBits(bits));
            }
            RsaKeypair::random(&mut rng, bits as usize)
                .and_then(|kp| PrivateKey::try_from(KeypairData::from(kp)))
        }
    }
    .map_err(|e| KeyError::Crypto {
        what: "generate the key",
        detail: e.to_string(),
    })?;
    key.set_comment(comment);
    Ok(key)
}

/// Is this PuTTY key file encrypted? (`Encryption: none` means no.)
pub fn ppk_is_encrypted(text: &str) -> bool {
    text.lines()
        .find_map(|l| l.strip_prefix("Encryption:"))
        .is_some_and(|v| v.trim() != "none")
}

/// The PPK format version (2 or 3) from the first line.
pub fn ppk_version(text: &str) -> Option<u8> {
    let first = text.lines().next()?;
    let rest = first.strip_prefix("PuTTY-User-Key-File-")?;
    rest.split(':').next()?.parse().ok()
}

/// Decodes a PuTTY key (v2 or v3; RSA, DSA, ECDSA, Ed25519), decrypting it
/// with `passphrase` when it is encrypted. `path` only names the file in
/// errors.
pub fn import_ppk(
    path: &Path,
    text: &str,
    passphrase: Option<&str>,
) -> Result<PrivateKey, KeyError> {
    // Old PuTTY on Windows writes CRLF; the decoder wants plain lines.
    let text = text.replace("\r\n", "\n");
    if ppk_version(&text).is_none() {
        return Err(KeyError::NotPpk {
            path: path.to_path_buf(),
        });
    }
    let encrypted = ppk_is_encrypted(&text);
    if encrypted && passphrase.is_none() {
        return Err(KeyError::PassphraseNeeded {
            path: path.to_path_buf(),
        });
    }
    let pass = if encrypted {
        passphrase.map(str::to_string)
    } else {
        None
    };
    PrivateKey::from_ppk(&text, pass).map_err(|e| {
        let detail = e.to_string();
        if detail.to_ascii_lowercase().contains("mac") {
            KeyError::BadPassphraseOrCorrupt {
                path: path.to_path_buf(),
            }
        } else {
            KeyError::BadPpk {
                path: path.to_path_buf(),
                detail,
            }
        }
    })
}

/// Writes `key` to `path` (0600) and its public half to `path.pub` (0644),
/// encrypted with `passphrase` when given. Refuses if either exists.
pub fn write_key_pair(
    key: &PrivateKey,
    path: &Path,
    passphrase: Option<&str>,
) -> Result<PathBuf, KeyError> {
    let pub_path = public_path(path);
    for p in [path, pub_path.as_path()] {
        if p.symlink_metadata().is_ok() {
            return Err(KeyError::Exists { path: p.into() });
        }
    }
    let key = match passphrase {
        Some(pw) if !pw.is_empty() => {
            let mut rng = UnwrapErr(ssh_key::getrandom::SysRng);
            key.encrypt(&mut rng, pw).map_err(|e| KeyError::Crypto {
                what: "encrypt the key",
                detail: e.to_string(),
            })?
        }
        _ => key.clone(),
    };
    let private = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| KeyError::Crypto {
            what: "encode the key",
            detail: e.to_string(),
        })?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| KeyError::Crypto {
            what: "encode the public key",
            detail: e.to_string(),
        })?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir))?;
    }
    write_new(path, private.as_bytes(), 0o600)?;
    if let Err(e) = write_new(&pub_path, format!("{public}\n").as_bytes(), 0o644) {
        // Never leave half a pair behind.
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(pub_path)
}

/// `KEY.pub` beside `KEY`.
pub fn public_path(private: &Path) -> PathBuf {
    let mut s = private.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// Creates `path` with `data` and `mode`, failing if it exists; never
/// visible half-written.
pub fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<(), KeyError> {
    let tmp = crate::edit::temp_name(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    let res = (|| {
        f.write_all(data)?;
        // The umask may have narrowed the mode; set exactly what we promise.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        // link(2) fails with EEXIST instead of replacing: no overwrite race.
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    match res {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(KeyError::Exists { path: path.into() })
        }
        Err(e) => Err(io_err(path)(e)),
    }
}

/// What a key file is, as far as can be told without its passphrase.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyInfo {
    /// `ssh-ed25519`, `ssh-rsa`, `ecdsa-sha2-nistp256`, `ssh-dss`, …
    pub algorithm: String,
    /// Modulus size for RSA/DSA, curve size for ECDSA, 256 for Ed25519.
    pub bits: u32,
    pub encrypted: bool,
    /// `SHA256:…`, like `ssh-keygen -l`.
    pub fingerprint: String,
    pub comment: String,
}

impl KeyInfo {
    /// Why this key is weak, if it is.
    pub fn weakness(&self) -> Option<String> {
        if self.algorithm == "ssh-dss" {
            return Some(
                "DSA keys are disabled by default since OpenSSH 7.0 and removed in 10.0".into(),
            );
        }
        if self.algorithm == "ssh-rsa" && self.bits < MIN_RSA_BITS {
            return Some(format!(
                "RSA with {} bits is below the {MIN_RSA_BITS} bits considered safe",
                self.bits
            ));
        }
        None
    }
}

fn mpint_bits(bytes: &[u8]) -> u32 {
    let bytes = match bytes.iter().position(|b| *b != 0) {
        Some(i) => &bytes[i..],
        None => return 0,
    };
    (bytes.len() as u32) * 8 - bytes[0].leading_zeros()
}

/// Describes a public key.
pub fn describe_public(key: &PublicKey, encrypted: bool) -> KeyInfo {
    let bits = match key.key_data() {
        KeyData::Rsa(k) => k.key_size(),
        KeyData::Dsa(k) => mpint_bits(k.p().as_bytes()),
        KeyData::Ecdsa(k) => match k.curve() {
            ssh_key::EcdsaCurve::NistP256 => 256,
            ssh_key::EcdsaCurve::NistP384 => 384,
            ssh_key::EcdsaCurve::NistP521 => 521,
        },
        KeyData::Ed25519(_) => 256,
        _ => 0,
    };
    KeyInfo {
        algorithm: key.algorithm().as_str().to_string(),
        bits,
        encrypted,
        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
        comment: key.comment().as_str_lossy().to_string(),
    }
}

/// Describes an OpenSSH private key file (encrypted ones too: their public
/// half is stored in the clear), or `None` if it is not one.
pub fn describe_private_text(text: &str) -> Option<KeyInfo> {
    let key = PrivateKey::from_openssh(text).ok()?;
    let mut info = describe_public(key.public_key(), key.is_encrypted());
    if info.comment.is_empty() {
        info.comment = key.comment().as_str_lossy().to_string();
    }
    Some(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppk_headers_are_read_strictly() {
        assert_eq!(ppk_version("PuTTY-User-Key-File-3: ssh-ed25519\n"), Some(3));
        assert_eq!(ppk_version("PuTTY-User-Key-File-2: ssh-rsa\r\n"), Some(2));
        assert_eq!(ppk_version("-----BEGIN OPENSSH PRIVATE KEY-----"), None);
        assert_eq!(ppk_version(""), None);
        assert!(ppk_is_encrypted(
            "PuTTY-User-Key-File-3: x\nEncryption: aes256-cbc\n"
        ));
        assert!(!ppk_is_encrypted(
            "PuTTY-User-Key-File-3: x\nEncryption: none\n"
        ));
    }

    #[test]
    fn not_a_ppk_is_named_as_such() {
        let e = import_ppk(Path::new("k.ppk"), "hello\n", None).unwrap_err();
        assert!(matches!(e, KeyError::NotPpk { .. }), "{e}");
        assert!(e.to_string().contains("k.ppk"));
    }

    #[test]
    fn a_generated_key_is_written_once_with_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/id_ed25519");
        let key = generate(KeyType::Ed25519, None, "me@here").unwrap();
        let pub_path = write_key_pair(&key, &p, None).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), 0o600);
        assert_eq!(mode(&pub_path), 0o644);
        assert_eq!(mode(p.parent().unwrap()), 0o700);
        let info = describe_private_text(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(info.algorithm, "ssh-ed25519");
        assert_eq!(info.comment, "me@here");
        assert!(!info.encrypted);
        let again = generate(KeyType::Ed25519, None, "x").unwrap();
        let before = std::fs::read(&p).unwrap();
        let e = write_key_pair(&again, &p, None).unwrap_err();
        assert!(matches!(e, KeyError::Exists { .. }), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), before, "the old key is intact");
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 2);
    }

    #[test]
    fn weak_keys_are_named() {
        let k = |alg: &str, bits| KeyInfo {
            algorithm: alg.into(),
            bits,
            encrypted: false,
            fingerprint: String::new(),
            comment: String::new(),
        };
        assert!(k("ssh-dss", 1024).weakness().is_some());
        assert!(k("ssh-rsa", 1024).weakness().unwrap().contains("1024"));
        assert!(k("ssh-rsa", 2048).weakness().is_none());
        assert!(k("ssh-ed25519", 256).weakness().is_none());
        assert_eq!(mpint_bits(&[0, 0x80, 0]), 16);
        assert_eq!(mpint_bits(&[0x01]), 1);
    }
}
