//! Editing a user's file without ever damaging it: the new text goes to a
//! temporary file in the same directory (same mode), is synced, the old
//! file is copied to a timestamped backup, and only then is the temporary
//! renamed over the original. Any failure before the rename leaves the
//! original exactly as it was.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("{path}: {what}: {source}")]
pub struct EditError {
    pub path: PathBuf,
    pub what: &'static str,
    pub source: std::io::Error,
}

/// A name beside `path` for a temporary file: hidden, unique per process
/// and call.
pub fn temp_name(path: &Path) -> PathBuf {
    let mut rnd = [0u8; 4];
    let _ = ssh_key::getrandom::fill(&mut rnd);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(
        ".{name}.yonder-tmp-{}-{:02x}{:02x}{:02x}{:02x}",
        std::process::id(),
        rnd[0],
        rnd[1],
        rnd[2],
        rnd[3]
    ))
}

/// `YYYYmmdd-HHMMSS` in UTC for backup names (sortable, no `:` for
/// Windows-shared folders).
pub fn timestamp(now: std::time::SystemTime) -> String {
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm,
    // https://howardhinnant.github.io/date_algorithms.html#civil_from_days).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Replaces `path`'s contents with `text` atomically. When the file
/// existed, a copy is kept as `PATH.yonder-backup-TIMESTAMP` and returned.
/// A new file gets `new_mode`; an existing one keeps its mode.
pub fn replace_file(path: &Path, text: &str, new_mode: u32) -> Result<Option<PathBuf>, EditError> {
    let err = |what| {
        move |source| EditError {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    let old = match std::fs::metadata(path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(err("reading its metadata")(e)),
    };
    let mode = old
        .as_ref()
        .map_or(new_mode, |m| m.permissions().mode() & 0o7777);
    let tmp = temp_name(path);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(err("creating a temporary file beside it"))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.set_permissions(std::fs::Permissions::from_mode(mode)))
            .and_then(|()| f.sync_all())
            .map_err(err("writing the temporary file"))?;
        let backup = if old.is_some() {
            let b = backup_name(path);
            std::fs::copy(path, &b).map_err(err("keeping a backup"))?;
            Some(b)
        } else {
            None
        };
        std::fs::rename(&tmp, path).map_err(err("renaming the new version into place"))?;
        Ok(backup)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn backup_name(path: &Path) -> PathBuf {
    let stamp = timestamp(std::time::SystemTime::now());
    let base = format!("{}.yonder-backup-{stamp}", path.display());
    // Two edits within one second: number the later backups.
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while candidate.exists() {
        candidate = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(timestamp(UNIX_EPOCH), "19700101-000000");
        // 2024-02-29T23:59:59Z, a leap day.
        assert_eq!(
            timestamp(UNIX_EPOCH + Duration::from_secs(1_709_251_199)),
            "20240229-235959"
        );
        assert_eq!(
            timestamp(UNIX_EPOCH + Duration::from_secs(4_102_444_800)),
            "21000101-000000"
        );
    }

    #[test]
    fn replacing_keeps_mode_and_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config");
        std::fs::write(&p, "old\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let b = replace_file(&p, "new\n", 0o600).unwrap().unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new\n");
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "old\n");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let b2 = replace_file(&p, "newer\n", 0o600).unwrap().unwrap();
        assert_ne!(b, b2);
        let fresh = dir.path().join("fresh");
        assert!(replace_file(&fresh, "x", 0o600).unwrap().is_none());
        assert_eq!(
            std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn a_failed_edit_leaves_the_file_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing-dir/config");
        assert!(replace_file(&p, "x", 0o600).is_err());
        assert!(!p.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
