//! Dev Container Features, from local folders (`"./name"` keys), OCI
//! registries ([`crate::oci`]) or tarball URLs ([`crate::tarball`]), built
//! into an image layer on top of the config's image.
//!
//! A feature folder holds `devcontainer-feature.json` (id, options with
//! defaults, `dependsOn`, `installsAfter`, metadata such as `containerEnv`
//! and lifecycle commands) and `install.sh`, which runs as root at build time
//! with the options as environment variables (spec:
//! docs/specs/devcontainer-features.md). The install order follows
//! `dependsOn` (hard) and `installsAfter` (soft) in rounds, ties broken by
//! `overrideFeatureInstallOrder` and then by id, as the spec's
//! feature-dependencies.md describes.

use crate::engine::Engine;
use crate::metadata;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error("{config}: feature {key:?}: {message}")]
    Invalid {
        config: PathBuf,
        key: String,
        message: String,
    },
    #[error("{config}: features {0:?} depend on each other in a cycle", .cycle)]
    Cycle { config: PathBuf, cycle: Vec<String> },
}

/// One feature to install.
#[derive(Debug, Clone)]
pub struct Feature {
    /// The key in devcontainer.json (`./hello`).
    pub key: String,
    /// The `id` from devcontainer-feature.json.
    pub id: String,
    pub dir: PathBuf,
    pub manifest: Value,
    /// Option values (user's over defaults) as environment variables.
    pub env: Vec<(String, String)>,
}

/// An option name as an environment variable, exactly as the reference
/// CLI: non-word characters become `_`, leading digits/underscores one `_`,
/// upper case.
pub fn option_env_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let trimmed = s.trim_start_matches(|c: char| c.is_ascii_digit() || c == '_');
    let s = if trimmed.len() != s.len() {
        format!("_{trimmed}")
    } else {
        s
    };
    s.to_uppercase()
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Reads the features named in `features` (the config's object).
pub fn read(
    config_path: &Path,
    features: &Map<String, Value>,
) -> Result<Vec<Feature>, FeatureError> {
    let base = config_path.parent().unwrap_or(Path::new("."));
    let invalid = |key: &str, message: String| FeatureError::Invalid {
        config: config_path.into(),
        key: key.into(),
        message,
    };
    let mut out = Vec::new();
    for (key, opts) in features {
        let mut tarball_id = None;
        let dir = if let Some(rel) = key.strip_prefix("./") {
            base.join(rel)
        } else if let Some(t) = crate::tarball::parse(key) {
            let t = t.map_err(|e| invalid(key, e))?;
            eprintln!("Fetching feature {}...", t.url);
            let dir =
                crate::tarball::fetch(&t, &crate::oci::cache_dir()).map_err(|e| invalid(key, e))?;
            tarball_id = Some(t.id);
            dir
        } else if let Some(r) = crate::oci::parse(key) {
            eprintln!("Fetching feature {r}...");
            crate::oci::fetch(&r, &crate::oci::cache_dir()).map_err(|e| invalid(key, e))?
        } else {
            return Err(invalid(
                key,
                format!(
                    "a local feature must start with \"./\": prepend your Feature name with \"./\" (\"./{key}\")"
                ),
            ));
        };
        let manifest_path = dir.join("devcontainer-feature.json");
        let text = std::fs::read_to_string(&manifest_path)
            .map_err(|e| invalid(key, format!("cannot read {}: {e}", manifest_path.display())))?;
        let manifest = crate::jsonc::parse(&text)
            .map_err(|e| invalid(key, format!("{}:{e}", manifest_path.display())))?
            .value;
        if !dir.join("install.sh").is_file() {
            return Err(invalid(key, format!("{} has no install.sh", dir.display())));
        }
        let id = manifest
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(key, format!("{} has no \"id\"", manifest_path.display())))?
            .to_string();
        if let Some(want) = tarball_id
            && want != id
        {
            return Err(invalid(
                key,
                format!(
                    "the tarball is named for feature {want:?}, but its devcontainer-feature.json says \"id\": {id:?}"
                ),
            ));
        }
        // A string is shorthand for {"version": value}.
        let user: Map<String, Value> = match opts {
            Value::String(v) => [("version".to_string(), Value::String(v.clone()))]
                .into_iter()
                .collect(),
            Value::Object(m) => m.clone(),
            Value::Bool(true) | Value::Null => Map::new(),
            other => {
                return Err(invalid(
                    key,
                    format!("options must be an object, not {other}"),
                ));
            }
        };
        let mut env = Vec::new();
        if let Some(decl) = manifest.get("options").and_then(Value::as_object) {
            for (name, spec) in decl {
                let v = user
                    .get(name)
                    .or_else(|| spec.get("default"))
                    .map(value_text)
                    .unwrap_or_default();
                env.push((option_env_name(name), v));
            }
        }
        for (name, v) in &user {
            let n = option_env_name(name);
            if !env.iter().any(|(k, _)| *k == n) {
                env.push((n, value_text(v)));
            }
        }
        out.push(Feature {
            key: key.clone(),
            id,
            dir,
            manifest,
            env,
        });
    }
    Ok(out)
}

fn refs(f: &Feature, field: &str) -> Vec<String> {
    match f.manifest.get(field) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        Some(Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Whether `reference` (an id, `./key`, or a registry ref) names `f`.
fn names(reference: &str, f: &Feature) -> bool {
    let r = reference.trim_start_matches("./");
    let last = r.rsplit('/').next().unwrap_or(r);
    let last = last.split([':', '@']).next().unwrap_or(last);
    r == f.id || last == f.id || reference == f.key
}

/// Orders features in rounds: a feature is ready when everything it
/// `dependsOn` (must be present) and `installsAfter` (if present) is
/// installed; each round takes the ready ones, highest
/// `overrideFeatureInstallOrder` priority first, then by id.
pub fn order(
    config_path: &Path,
    mut features: Vec<Feature>,
    override_order: &[String],
) -> Result<Vec<Feature>, FeatureError> {
    for f in &features {
        for d in refs(f, "dependsOn") {
            if !features.iter().any(|g| names(&d, g)) {
                return Err(FeatureError::Invalid {
                    config: config_path.into(),
                    key: f.key.clone(),
                    message: format!("it dependsOn {d:?}, which is not in \"features\"; add it"),
                });
            }
        }
    }
    let priority = |f: &Feature| {
        let n = override_order.len();
        override_order
            .iter()
            .position(|o| names(o, f))
            .map_or(0, |i| n - i)
    };
    let mut done: Vec<Feature> = Vec::new();
    while !features.is_empty() {
        let ready: Vec<usize> = (0..features.len())
            .filter(|&i| {
                let f = &features[i];
                refs(f, "dependsOn")
                    .iter()
                    .chain(refs(f, "installsAfter").iter())
                    .all(|d| !features.iter().any(|g| names(d, g)))
            })
            .collect();
        if ready.is_empty() {
            return Err(FeatureError::Cycle {
                config: config_path.into(),
                cycle: features.iter().map(|f| f.key.clone()).collect(),
            });
        }
        let mut round: Vec<Feature> = Vec::new();
        for i in ready.into_iter().rev() {
            round.push(features.remove(i));
        }
        round.sort_by(|a, b| priority(b).cmp(&priority(a)).then_with(|| a.id.cmp(&b.id)));
        // Within a round, a higher override priority installs first; the
        // rest of the round waits only for ordering, not for dependencies.
        done.extend(round);
    }
    Ok(done)
}

/// The metadata snippet a feature contributes (with its id).
pub fn snippet(f: &Feature) -> Value {
    let mut s = metadata::snippet(&f.manifest);
    if let Some(o) = s.as_object_mut() {
        o.insert("id".into(), Value::String(f.id.clone()));
    }
    s
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let t = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &t)?;
        } else {
            std::fs::copy(e.path(), &t)?;
        }
    }
    Ok(())
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// What a features image is built from.
#[derive(Debug)]
pub struct BuildSpec<'a> {
    /// The image to build on, and its own `USER` (restored at the end).
    pub base: &'a str,
    pub base_user: &'a str,
    /// Told to install scripts as `_REMOTE_USER` / `_CONTAINER_USER`.
    pub remote_user: &'a str,
    pub container_user: &'a str,
    /// The `devcontainer.metadata` label of the result.
    pub label: &'a str,
    pub tag: &'a str,
}

/// Builds `spec.tag` from `spec.base` with every feature installed, in order.
pub async fn build(
    engine: &Engine,
    spec: &BuildSpec<'_>,
    features: &[Feature],
) -> Result<(), crate::up::UpError> {
    let BuildSpec {
        base,
        base_user,
        remote_user,
        container_user,
        label,
        tag,
    } = *spec;
    let ctx = tempfile_dir()?;
    let mut df = format!("FROM {base}\nUSER root\n");
    for (i, f) in features.iter().enumerate() {
        let dst = ctx.join(i.to_string());
        copy_dir(&f.dir, &dst).map_err(|e| {
            crate::up::UpError::Other(format!("cannot copy feature {}: {e}", f.dir.display()))
        })?;
        let env: String = f
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}\n", sh_quote(v)))
            .collect();
        std::fs::write(dst.join("devcontainer-features.env"), env)
            .map_err(|e| crate::up::UpError::Other(format!("cannot write feature env: {e}")))?;
        df.push_str(&format!(
            "COPY {i}/ /tmp/yonder-features/{i}/\nRUN cd /tmp/yonder-features/{i} && set -a && . ./devcontainer-features.env && set +a \\\n && export _REMOTE_USER={ru} _CONTAINER_USER={cu} \\\n && export _REMOTE_USER_HOME=\"$(getent passwd {ru} | cut -d: -f6)\" _CONTAINER_USER_HOME=\"$(getent passwd {cu} | cut -d: -f6)\" \\\n && echo 'Installing feature {id}...' && chmod +x install.sh && ./install.sh\n",
            ru = sh_quote(remote_user),
            cu = sh_quote(container_user),
            id = f.id.replace('\'', ""),
        ));
        if let Some(env) = f.manifest.get("containerEnv").and_then(Value::as_object) {
            for (k, v) in env {
                let v = value_text(v)
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('$', "\\$");
                df.push_str(&format!("ENV {k}=\"{v}\"\n"));
            }
        }
    }
    df.push_str("RUN rm -rf /tmp/yonder-features\n");
    if !base_user.is_empty() {
        df.push_str(&format!("USER {base_user}\n"));
    }
    std::fs::write(ctx.join("Dockerfile"), df).map_err(|e| {
        crate::up::UpError::Other(format!("cannot write the features Dockerfile: {e}"))
    })?;
    eprintln!("Building the features image {tag}...");
    let label = format!("{}={label}", crate::up::LABEL_METADATA);
    let r = engine
        .run_visible(&[
            "build",
            "-f",
            &ctx.join("Dockerfile").display().to_string(),
            "-t",
            tag,
            "--label",
            &label,
            &ctx.display().to_string(),
        ])
        .await;
    let _ = std::fs::remove_dir_all(&ctx);
    r?;
    Ok(())
}

pub(crate) fn tempfile_dir() -> Result<PathBuf, crate::up::UpError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let d = std::env::temp_dir().join(format!("yonder-features-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&d)
        .map_err(|e| crate::up::UpError::Other(format!("cannot make {}: {e}", d.display())))?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn option_names_become_env_names_like_the_reference_cli() {
        assert_eq!(option_env_name("version"), "VERSION");
        assert_eq!(option_env_name("install-tools"), "INSTALL_TOOLS");
        assert_eq!(option_env_name("9lives"), "_LIVES");
        assert_eq!(option_env_name("__x.y"), "_X_Y");
    }

    fn f(key: &str, id: &str, manifest: Value) -> Feature {
        Feature {
            key: key.into(),
            id: id.into(),
            dir: PathBuf::new(),
            manifest,
            env: Vec::new(),
        }
    }

    #[test]
    fn order_follows_dependencies_then_override_then_id() {
        let p = Path::new("/c.json");
        let list = vec![
            f("./b", "b", json!({"installsAfter": ["a"]})),
            f("./c", "c", json!({"dependsOn": {"./b": {}}})),
            f("./a", "a", json!({})),
            f("./z", "z", json!({})),
        ];
        let ids: Vec<String> = order(p, list.clone(), &[])
            .unwrap()
            .into_iter()
            .map(|f| f.id)
            .collect();
        assert_eq!(ids, ["a", "z", "b", "c"]);
        let ids: Vec<String> = order(p, list, &["z".into()])
            .unwrap()
            .into_iter()
            .map(|f| f.id)
            .collect();
        assert_eq!(ids, ["z", "a", "b", "c"]);
        let cyc = vec![
            f("./x", "x", json!({"dependsOn": {"y": {}}})),
            f("./y", "y", json!({"dependsOn": {"x": {}}})),
        ];
        assert!(matches!(
            order(p, cyc, &[]),
            Err(FeatureError::Cycle { .. })
        ));
        let missing = vec![f("./x", "x", json!({"dependsOn": {"ghcr.io/a/b:1": {}}}))];
        assert!(
            order(p, missing, &[])
                .unwrap_err()
                .to_string()
                .contains("not in \"features\"")
        );
    }
}
