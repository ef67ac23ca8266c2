//! Features from OCI registries (`ghcr.io/devcontainers/features/node:1`),
//! fetched with the OCI distribution API and cached.
//!
//! A feature is an OCI artifact whose one layer
//! (`application/vnd.devcontainers.layer.v1+tar`) is a tar of the feature
//! folder (spec: docs/specs/devcontainer-features-distribution.md). Fetching
//! is: manifest (with an anonymous bearer token when the registry asks for
//! one), then the layer blob, checked against its digest and unpacked into
//! the cache under its digest. When the registry cannot be reached, the last
//! fetched version of the same reference is used, with a warning, so an
//! offline laptop keeps working.
//!
//! Registries on loopback (`localhost`, `127.0.0.1`, `[::1]`) are spoken to
//! over plain HTTP, as Docker does; every other over HTTPS.

use sha2::Digest;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Registries answer in well under this; a stalled one must not hang `up`.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);
/// A feature layer is a few KiB of scripts; refuse absurd downloads.
pub(crate) const MAX_LAYER: u64 = 256 << 20;
const LAYER_TYPE: &str = "application/vnd.devcontainers.layer.v1+tar";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciRef {
    pub registry: String,
    pub path: String,
    /// A tag, or `sha256:…` for a digest.
    pub reference: String,
}

impl std::fmt::Display for OciRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sep = if self.reference.starts_with("sha256:") {
            '@'
        } else {
            ':'
        };
        write!(f, "{}/{}{sep}{}", self.registry, self.path, self.reference)
    }
}

/// Parses `REGISTRY/PATH[:TAG|@DIGEST]`; `None` when it is not one.
pub fn parse(s: &str) -> Option<OciRef> {
    // A URL (a tarball feature) is not a registry reference.
    if s.contains("://") {
        return None;
    }
    let (registry, rest) = s.split_once('/')?;
    if registry.starts_with('.')
        || !(registry.contains('.') || registry.contains(':') || registry == "localhost")
    {
        return None;
    }
    let (path, reference) = if let Some((p, d)) = rest.split_once('@') {
        (p, d.to_string())
    } else {
        match rest.rsplit_once(':') {
            Some((p, t)) if !t.contains('/') => (p, t.to_string()),
            _ => (rest, "latest".to_string()),
        }
    };
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c);
    if path.is_empty() || !path.chars().all(ok) || reference.is_empty() {
        return None;
    }
    Some(OciRef {
        registry: registry.to_string(),
        path: path.to_string(),
        reference,
    })
}

/// Whether `host` (without a port) is this machine's loopback, where plain
/// HTTP cannot be intercepted by anyone else on the network.
pub(crate) fn is_loopback(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "[::1]") || host.starts_with("127.")
}

fn base_url(r: &OciRef) -> String {
    let host = r.registry.split(':').next().unwrap_or("");
    let plain = is_loopback(host);
    format!("{}://{}", if plain { "http" } else { "https" }, r.registry)
}

/// The feature folder's id (the last path part).
pub fn feature_id(r: &OciRef) -> String {
    r.path.rsplit('/').next().unwrap_or(&r.path).to_string()
}

pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(HTTP_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into()
}

/// An anonymous token from the realm a 401 names.
fn token(agent: &ureq::Agent, challenge: &str) -> Result<String, String> {
    let params: std::collections::HashMap<String, String> = challenge
        .trim_start_matches("Bearer ")
        .split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        })
        .collect();
    let realm = params
        .get("realm")
        .ok_or("the registry's 401 names no realm")?;
    let mut req = agent.get(realm);
    for k in ["service", "scope"] {
        if let Some(v) = params.get(k) {
            req = req.query(k, v);
        }
    }
    let mut resp = req
        .call()
        .map_err(|e| format!("token request to {realm}: {e}"))?;
    if resp.status() != 200 {
        return Err(format!("token request to {realm}: HTTP {}", resp.status()));
    }
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("token from {realm}: {e}"))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("token from {realm}: {e}"))?;
    v.get("token")
        .or_else(|| v.get("access_token"))
        .and_then(|t| t.as_str())
        .map(String::from)
        .ok_or_else(|| format!("{realm} returned no token"))
}

fn get(
    agent: &ureq::Agent,
    url: &str,
    accept: &str,
    bearer: &mut Option<String>,
) -> Result<ureq::http::Response<ureq::Body>, String> {
    for _ in 0..2 {
        let mut req = agent.get(url).header("Accept", accept);
        if let Some(t) = bearer.as_deref() {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let resp = req.call().map_err(|e| format!("GET {url}: {e}"))?;
        if resp.status() == 401 && bearer.is_none() {
            let challenge = resp
                .headers()
                .get("www-authenticate")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("")
                .to_string();
            *bearer = Some(token(agent, &challenge)?);
            continue;
        }
        if resp.status() != 200 {
            return Err(format!("GET {url}: HTTP {}", resp.status()));
        }
        return Ok(resp);
    }
    Err(format!("GET {url}: refused even with a token"))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn ref_file(cache: &Path, reference: &str) -> PathBuf {
    let name: String = reference
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    cache.join("refs").join(name)
}

/// Fetches `r` into `cache` (or finds it there) and returns the unpacked folder.
pub fn fetch(r: &OciRef, cache: &Path) -> Result<PathBuf, String> {
    match fetch_online(r, cache) {
        Ok(p) => Ok(p),
        Err(e) => {
            // Offline: the last version fetched for this reference.
            let dir = cached_ref(cache, &r.to_string()).ok_or_else(|| e.clone())?;
            eprintln!("warning: {r}: {e}; using the copy fetched earlier");
            Ok(dir)
        }
    }
}

fn fetch_online(r: &OciRef, cache: &Path) -> Result<PathBuf, String> {
    let agent = agent();
    let base = base_url(r);
    let mut bearer = None;
    let url = format!("{base}/v2/{}/manifests/{}", r.path, r.reference);
    let mut resp = get(
        &agent,
        &url,
        "application/vnd.oci.image.manifest.v1+json",
        &mut bearer,
    )?;
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("{url}: {e}"))?;
    let manifest: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{url}: the manifest is not JSON: {e}"))?;
    let layer = manifest
        .get("layers")
        .and_then(|l| l.as_array())
        .and_then(|l| {
            l.iter()
                .find(|x| x.get("mediaType").and_then(|m| m.as_str()) == Some(LAYER_TYPE))
                .or_else(|| l.first())
        })
        .ok_or_else(|| format!("{url}: the manifest has no layers"))?;
    let digest = layer
        .get("digest")
        .and_then(|d| d.as_str())
        .filter(|d| {
            d.starts_with("sha256:")
                && d.len() == 71
                && d[7..].chars().all(|c| c.is_ascii_hexdigit())
        })
        .ok_or_else(|| format!("{url}: the layer has no sha256 digest"))?
        .to_string();
    let dir = cache.join("blobs").join(&digest[7..]);
    if !dir.is_dir() {
        let url = format!("{base}/v2/{}/blobs/{digest}", r.path);
        let resp = get(&agent, &url, "*/*", &mut bearer)?;
        let mut bytes = Vec::new();
        resp.into_body()
            .into_reader()
            .take(MAX_LAYER + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{url}: {e}"))?;
        if bytes.len() as u64 > MAX_LAYER {
            return Err(format!("{url}: the layer is larger than {MAX_LAYER} bytes"));
        }
        let got = hex(&sha2::Sha256::digest(&bytes));
        if got != digest[7..] {
            return Err(format!(
                "{url}: the layer's sha256 is {got}, not the manifest's {digest}"
            ));
        }
        unpack_into(&dir, &bytes, &r.to_string())?;
    }
    note_ref(cache, &r.to_string(), &digest[7..]);
    Ok(dir)
}

/// Unpacks the tar `bytes` (gzip'd or not) as the folder `dir`: beside it
/// first, then renamed, so a half-unpacked folder is never used.
pub(crate) fn unpack_into(dir: &Path, bytes: &[u8], what: &str) -> Result<(), String> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    // gzip's magic number; feature tarballs are usually .tgz.
    let reader: Box<dyn Read + '_> = if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(bytes))
    } else {
        Box::new(bytes)
    };
    // `unpack` refuses entries that would land outside `tmp` (.. or /).
    let unpacked = tar::Archive::new(reader).unpack(&tmp);
    if let Err(e) = unpacked {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(format!("{what}: not a valid tar archive: {e}"));
    }
    match std::fs::rename(&tmp, dir) {
        Ok(()) => Ok(()),
        // Another `up` unpacked the same content first.
        Err(_) if dir.is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(())
        }
        Err(e) => Err(format!("{}: {e}", dir.display())),
    }
}

/// Remembers that `reference` last resolved to the blob `digest_hex`, for
/// use when its source cannot be reached.
pub(crate) fn note_ref(cache: &Path, reference: &str, digest_hex: &str) {
    let rf = ref_file(cache, reference);
    if let Some(p) = rf.parent() {
        let _ = std::fs::create_dir_all(p);
    }
    let _ = std::fs::write(rf, digest_hex);
}

/// The folder `reference` last resolved to, if it is still in the cache.
pub(crate) fn cached_ref(cache: &Path, reference: &str) -> Option<PathBuf> {
    let digest = std::fs::read_to_string(ref_file(cache, reference)).ok()?;
    let dir = cache.join("blobs").join(digest.trim());
    dir.is_dir().then_some(dir)
}

/// Where fetched features are kept: `$XDG_CACHE_HOME/yonder/features`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("YONDER_CACHE_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(d).join("features");
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(d).join("yonder/features");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".cache/yonder/features")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_like_docker() {
        let r = parse("ghcr.io/devcontainers/features/node:1").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.path.as_str(), r.reference.as_str()),
            ("ghcr.io", "devcontainers/features/node", "1")
        );
        assert_eq!(base_url(&r), "https://ghcr.io");
        let r = parse("127.0.0.1:5000/f/hello").unwrap();
        assert_eq!(r.reference, "latest");
        assert_eq!(base_url(&r), "http://127.0.0.1:5000");
        assert_eq!(feature_id(&r), "hello");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(parse(&format!("localhost/x@{d}")).unwrap().reference, d);
        assert!(parse("node").is_none());
        assert!(parse("http://127.0.0.1:80/devcontainer-feature-x.tgz").is_none());
        assert!(parse("./local").is_none());
        assert!(parse("ghcr.io/UPPER/x:1").is_none());
    }
}
