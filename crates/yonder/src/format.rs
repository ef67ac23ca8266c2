//! Rendering results for people and for `--json`.

use serde::Serialize;
use std::io::Write;
use std::path::Path;
use yonder_client::{FileType, Metadata, SystemInfo};

pub fn type_name(t: FileType) -> &'static str {
    match t {
        FileType::File => "file",
        FileType::Directory => "directory",
        FileType::Symlink => "symlink",
        FileType::Other => "other",
        FileType::Unspecified => "unknown",
    }
}

/// `drwxr-xr-x`-style mode string.
pub fn mode_string(t: FileType, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(match t {
        FileType::Directory => 'd',
        FileType::Symlink => 'l',
        FileType::Other => '?',
        _ => '-',
    });
    let bits = [
        (0o400, 'r'),
        (0o200, 'w'),
        (0o100, 'x'),
        (0o40, 'r'),
        (0o20, 'w'),
        (0o10, 'x'),
        (0o4, 'r'),
        (0o2, 'w'),
        (0o1, 'x'),
    ];
    for (i, (bit, c)) in bits.iter().enumerate() {
        let on = mode & bit != 0;
        let special = match i {
            2 => mode & 0o4000 != 0,
            5 => mode & 0o2000 != 0,
            8 => mode & 0o1000 != 0,
            _ => false,
        };
        s.push(match (special, on, i) {
            (true, true, 8) => 't',
            (true, false, 8) => 'T',
            (true, true, _) => 's',
            (true, false, _) => 'S',
            (false, true, _) => *c,
            (false, false, _) => '-',
        });
    }
    s
}

/// UTC time from nanoseconds since the epoch, as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
pub fn utc(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Metadata as JSON. Paths that are not UTF-8 are shown lossily in `path`
/// and exactly, as an array of bytes, in `path_bytes`.
#[derive(Debug, Serialize)]
pub struct JsonMetadata {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_bytes: Option<Vec<u8>>,
    #[serde(rename = "type")]
    pub file_type: &'static str,
    pub size: u64,
    pub mode: String,
    pub uid: u32,
    pub gid: u32,
    pub mtime: String,
    pub mtime_ns: i64,
    pub atime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
    pub nlink: u64,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symlink_target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symlink_target_type: Option<&'static str>,
}

pub fn json_metadata(path: &Path, m: &Metadata) -> JsonMetadata {
    use std::os::unix::ffi::OsStrExt;
    let raw = path.as_os_str().as_bytes();
    let path_str = path.to_string_lossy().into_owned();
    let ft = m.file_type();
    JsonMetadata {
        path_bytes: std::str::from_utf8(raw).is_err().then(|| raw.to_vec()),
        path: path_str,
        file_type: type_name(ft),
        size: m.size,
        mode: format!("{:04o}", m.mode),
        uid: m.uid,
        gid: m.gid,
        mtime: utc(m.mtime_ns),
        mtime_ns: m.mtime_ns,
        atime_ns: m.atime_ns,
        ctime_ns: m.ctime_ns,
        inode: m.inode,
        nlink: m.nlink,
        version: m.version.clone(),
        symlink_target: m
            .symlink_target
            .as_ref()
            .map(|t| String::from_utf8_lossy(t).into_owned()),
        symlink_target_type: (ft == FileType::Symlink).then(|| match m.symlink_target_type() {
            FileType::Unspecified => "dangling",
            t => type_name(t),
        }),
    }
}

pub fn print_stat(path: &Path, m: &Metadata, json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &json_metadata(path, m))?;
        writeln!(out)?;
        return Ok(());
    }
    let ft = m.file_type();
    writeln!(out, "  Path: {}", path.display())?;
    write!(out, "  Type: {}", type_name(ft))?;
    if let Some(t) = &m.symlink_target {
        let tt = match m.symlink_target_type() {
            FileType::Unspecified => "dangling",
            t => type_name(t),
        };
        write!(out, " -> {} ({tt})", String::from_utf8_lossy(t))?;
    }
    writeln!(out)?;
    writeln!(out, "  Size: {}", m.size)?;
    writeln!(out, "  Mode: {:04o} ({})", m.mode, mode_string(ft, m.mode))?;
    writeln!(out, " Owner: uid {} gid {}", m.uid, m.gid)?;
    writeln!(out, "Modify: {}", utc(m.mtime_ns))?;
    writeln!(out, "Change: {}", utc(m.ctime_ns))?;
    writeln!(out, " Inode: {}  Links: {}", m.inode, m.nlink)?;
    writeln!(out, "Version: {}", m.version)?;
    Ok(())
}

pub fn print_info(info: &SystemInfo, json: bool) -> anyhow::Result<()> {
    let home = String::from_utf8_lossy(&info.home);
    let shell = String::from_utf8_lossy(&info.shell);
    if json {
        let v = serde_json::json!({
            "os": info.os, "arch": info.arch, "kernel": info.kernel, "hostname": info.hostname,
            "user": info.user, "uid": info.uid, "gid": info.gid, "home": home, "shell": shell,
            "yonder_version": info.yonder_version, "protocol_version": info.protocol_version,
            "daemon_pid": info.daemon_pid,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("      os: {} ({})", info.os, info.arch);
        println!("  kernel: {}", info.kernel);
        println!("hostname: {}", info.hostname);
        println!(
            "    user: {} (uid {}, gid {})",
            info.user, info.uid, info.gid
        );
        println!("    home: {home}");
        println!("   shell: {shell}");
        println!(
            "  yonder: {} (protocol {}, daemon pid {})",
            info.yonder_version, info.protocol_version, info.daemon_pid
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            utc(951_782_400_000_000_001),
            "2000-02-29T00:00:00.000000001Z"
        );
        assert_eq!(utc(-1), "1969-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn mode_strings_show_special_bits() {
        assert_eq!(mode_string(FileType::Directory, 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(FileType::File, 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(FileType::Directory, 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(FileType::File, 0o2640), "-rw-r-S---");
    }
}
