//! Features referenced by a tarball URL
//! (`"https://example.com/releases/devcontainer-feature-go.tgz"`).
//!
//! The spec keeps this form as deprecated but valid
//! (devcontainer-features-distribution.md, "Directly reference a tarball").
//! As in the reference CLI, the file must be named
//! `devcontainer-feature-<id>.tgz`, and the archive holds the feature
//! folder (`devcontainer-feature.json`, `install.sh`) at its root. yonder
//! caches it like an OCI feature, under the SHA-256 of the download, and
//! uses the last download of the same URL, with a warning, when the server
//! cannot be reached.
//!
//! Only `https://` URLs are fetched, as the reference CLI requires, with one
//! exception: `http://` to a loopback host (`localhost`, `127.0.0.0/8`,
//! `[::1]`), where no one else on the network can change what is installed
//! as root into the image (the same rule [`crate::oci`] applies to
//! registries).

use sha2::Digest;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A tarball feature reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarballRef {
    pub url: String,
    /// The `<id>` of `devcontainer-feature-<id>.tgz`.
    pub id: String,
}

/// Parses `url` as a tarball feature reference: `None` when it is not a URL
/// at all, an error saying what is wrong when it is one yonder refuses.
pub fn parse(url: &str) -> Option<Result<TarballRef, String>> {
    let (scheme, _) = url.split_once("://")?;
    Some(check(url, scheme))
}

fn check(url: &str, scheme: &str) -> Result<TarballRef, String> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| format!("{url} is not a valid URL: {e}"))?;
    let host = uri.host().unwrap_or("");
    match scheme {
        "https" => {}
        "http" if crate::oci::is_loopback(host) => {}
        "http" => {
            return Err(format!(
                "{url}: features are fetched over https only (plain http is allowed for localhost); use an https:// URL"
            ));
        }
        other => {
            return Err(format!(
                "{url}: {other}:// is not supported for features; use an https:// URL, a registry reference or a local \"./NAME\" folder"
            ));
        }
    }
    let file = uri.path().rsplit('/').next().unwrap_or("");
    let id = file
        .strip_prefix("devcontainer-feature-")
        .and_then(|s| s.strip_suffix(".tgz"))
        .ok_or_else(|| {
            format!(
                "{url}: a feature tarball must be named devcontainer-feature-<id>.tgz, not {file:?}"
            )
        })?;
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "{url}: the feature id {id:?} in the file name must be letters, digits, '-' or '_'"
        ));
    }
    Ok(TarballRef {
        url: url.to_string(),
        id: id.to_string(),
    })
}

/// Fetches `t` into `cache` (or, when its server cannot be reached, finds
/// the last download there) and returns the unpacked folder.
pub fn fetch(t: &TarballRef, cache: &Path) -> Result<PathBuf, String> {
    match fetch_online(t, cache) {
        Ok(p) => Ok(p),
        Err(e) => {
            let dir = crate::oci::cached_ref(cache, &t.url).ok_or_else(|| e.clone())?;
            eprintln!("warning: {}: {e}; using the copy fetched earlier", t.url);
            Ok(dir)
        }
    }
}

fn fetch_online(t: &TarballRef, cache: &Path) -> Result<PathBuf, String> {
    let resp = crate::oci::agent()
        .get(&t.url)
        .call()
        .map_err(|e| format!("GET {}: {e}", t.url))?;
    if resp.status() != 200 {
        return Err(format!("GET {}: HTTP {}", t.url, resp.status()));
    }
    let max = crate::oci::MAX_LAYER;
    let mut bytes = Vec::new();
    resp.into_body()
        .into_reader()
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("GET {}: {e}", t.url))?;
    if bytes.len() as u64 > max {
        return Err(format!("{}: larger than {max} bytes", t.url));
    }
    if bytes.is_empty() {
        return Err(format!("{}: the server sent an empty file", t.url));
    }
    let digest: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = cache.join("blobs").join(&digest);
    if !dir.is_dir() {
        crate::oci::unpack_into(&dir, &bytes, &t.url)?;
    }
    crate::oci::note_ref(cache, &t.url, &digest);
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_schemes_and_hosts_are_checked() {
        let t = parse("https://example.com/rel/devcontainer-feature-go_1.tgz")
            .unwrap()
            .unwrap();
        assert_eq!(t.id, "go_1");
        let t = parse("http://127.0.0.1:8080/devcontainer-feature-x.tgz")
            .unwrap()
            .unwrap();
        assert_eq!(t.id, "x");
        assert!(
            parse("http://localhost/devcontainer-feature-x.tgz")
                .unwrap()
                .is_ok()
        );
        let e = parse("http://example.com/devcontainer-feature-x.tgz")
            .unwrap()
            .unwrap_err();
        assert!(e.contains("https only"), "{e}");
        let e = parse("ftp://example.com/devcontainer-feature-x.tgz")
            .unwrap()
            .unwrap_err();
        assert!(e.contains("ftp:// is not supported"), "{e}");
        let e = parse("https://example.com/feature.tgz")
            .unwrap()
            .unwrap_err();
        assert!(e.contains("devcontainer-feature-<id>.tgz"), "{e}");
        let e = parse("https://example.com/devcontainer-feature-a.b.tgz")
            .unwrap()
            .unwrap_err();
        assert!(e.contains("letters, digits"), "{e}");
        assert!(parse("./local").is_none());
        assert!(parse("ghcr.io/a/b:1").is_none());
    }

    #[test]
    fn gzip_and_plain_tars_unpack_and_hostile_paths_do_not_escape() {
        let d = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "devcontainer-feature.json", &b"{}"[..])
            .unwrap();
        let plain = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &plain).unwrap();
        let gz = gz.finish().unwrap();
        for (name, bytes) in [("p", &plain), ("g", &gz)] {
            let dir = d.path().join(name);
            crate::oci::unpack_into(&dir, bytes, name).unwrap();
            assert_eq!(
                std::fs::read_to_string(dir.join("devcontainer-feature.json")).unwrap(),
                "{}"
            );
        }
        let e = crate::oci::unpack_into(&d.path().join("bad"), &[b'x'; 1024], "bad");
        assert!(e.unwrap_err().contains("not a valid tar"));
        assert!(!d.path().join("bad").exists());
    }
}
