//! Docker Compose configurations: `dockerComposeFile` + `service`.
//!
//! yonder runs the compose CLI the user has (`docker compose`,
//! `docker-compose`, or `podman-compose` with Podman), with one extra
//! override file it writes: the dev container's labels (the reference CLI's
//! id labels and metadata, so both tools find the container), its
//! containerEnv, user, mounts and run options, and the keep-alive entrypoint
//! when `overrideCommand` is true. The override is JSON, which every YAML
//! parser reads, so no YAML writer is needed.

use crate::engine::{Engine, EngineKind};
use crate::metadata::Merged;
use crate::up::{LABEL_HASH, LABEL_METADATA, Resolved, UpError};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// The compose CLI as argv before the subcommand.
#[derive(Debug, Clone)]
pub struct ComposeCli(pub Vec<String>);

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

impl ComposeCli {
    /// `YONDER_DOCKER_COMPOSE_PATH`, else `podman-compose` for Podman,
    /// else `docker compose` (v2) when it answers, else `docker-compose`.
    pub fn detect(engine: &Engine) -> Result<Self, UpError> {
        if let Some(p) = std::env::var_os("YONDER_DOCKER_COMPOSE_PATH").filter(|v| !v.is_empty()) {
            return Ok(Self(vec![p.to_string_lossy().into_owned()]));
        }
        if engine.kind == EngineKind::Podman && on_path("podman-compose") {
            return Ok(Self(vec!["podman-compose".into()]));
        }
        let v2 = std::process::Command::new(&engine.program)
            .args(["compose", "version", "--short"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if v2 {
            return Ok(Self(vec![
                engine.program.display().to_string(),
                "compose".into(),
            ]));
        }
        if on_path("docker-compose") {
            return Ok(Self(vec!["docker-compose".into()]));
        }
        Err(UpError::Other(
            "no Docker Compose CLI found: install podman-compose (with Podman) or docker-compose, or set YONDER_DOCKER_COMPOSE_PATH".into(),
        ))
    }
}

/// The compose files, relative to the config's folder.
pub fn files(r: &Resolved) -> Vec<PathBuf> {
    let dir = r.file.path.parent().unwrap_or(Path::new("."));
    match r.value.get("dockerComposeFile") {
        Some(Value::String(s)) => vec![dir.join(s)],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(|s| dir.join(s))
            .collect(),
        _ => Vec::new(),
    }
}

fn clean_name(s: &str) -> String {
    s.to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// The project name, by the reference CLI's rules: `COMPOSE_PROJECT_NAME`,
/// else `<folder>_devcontainer` when the first file is in `.devcontainer/`,
/// else the first file's folder name.
pub fn project_name(r: &Resolved) -> String {
    if let Ok(p) = std::env::var("COMPOSE_PROJECT_NAME")
        && !p.is_empty()
    {
        return clean_name(&p);
    }
    let first = files(r).into_iter().next().unwrap_or_default();
    let dir = first.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    if dir == r.workspace.join(".devcontainer") {
        clean_name(&format!("{}_devcontainer", name(&r.workspace)))
    } else {
        clean_name(&name(&dir))
    }
}

/// `type=bind,source=a,target=b` or `{type, source, target}` as the short
/// `source:target` syntax compose files use.
fn short_volume(m: &Value) -> Option<String> {
    let (src, dst) = match m {
        Value::Object(o) => (
            o.get("source").and_then(Value::as_str).map(String::from),
            o.get("target").and_then(Value::as_str)?.to_string(),
        ),
        Value::String(s) => {
            let mut src = None;
            let mut dst = None;
            for part in s.split(',') {
                match part.split_once('=') {
                    Some(("source" | "src", v)) => src = Some(v.to_string()),
                    Some(("target" | "dst" | "destination", v)) => dst = Some(v.to_string()),
                    _ => {}
                }
            }
            (src, dst?)
        }
        _ => return None,
    };
    Some(match src {
        Some(s) => format!("{s}:{dst}"),
        None => dst,
    })
}

fn override_path(r: &Resolved) -> PathBuf {
    crate::up::state_dir()
        .join("compose")
        .join(format!("{}.json", r.devcontainer_id))
}

/// Writes the override file for `service`.
fn write_override(
    r: &Resolved,
    service: &str,
    merged: &Merged,
    metadata_label: &str,
) -> Result<PathBuf, UpError> {
    let mut labels: Vec<String> = r
        .id_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    labels.push(format!("{LABEL_METADATA}={metadata_label}"));
    labels.push(format!("{LABEL_HASH}={}", r.content_hash()));
    let mut svc = json!({ "labels": labels });
    let env: Vec<String> = merged
        .container_env
        .iter()
        .filter_map(|(k, v)| Some(format!("{k}={}", v.as_str()?.replace('$', "$$"))))
        .collect();
    if !env.is_empty() {
        svc["environment"] = json!(env);
    }
    if let Some(u) = &merged.container_user {
        svc["user"] = json!(u);
    }
    if merged.init {
        svc["init"] = json!(true);
    }
    if merged.privileged {
        svc["privileged"] = json!(true);
    }
    if !merged.cap_add.is_empty() {
        svc["cap_add"] = json!(merged.cap_add);
    }
    if !merged.security_opt.is_empty() {
        svc["security_opt"] = json!(merged.security_opt);
    }
    let vols: Vec<String> = merged.mounts.iter().filter_map(short_volume).collect();
    if !vols.is_empty() {
        svc["volumes"] = json!(vols);
    }
    if merged.override_command == Some(true) {
        svc["entrypoint"] = json!([
            "/bin/sh",
            "-c",
            "echo Container started\ntrap \"exit 0\" 15\nexec \"$$@\"\nwhile sleep 1 & wait $$!; do :; done",
            "-"
        ]);
        svc["command"] = json!([]);
    }
    let doc = json!({ "services": { service: svc } });
    let path = override_path(r);
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)
            .map_err(|e| UpError::Other(format!("cannot create {}: {e}", d.display())))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&doc).expect("json"))
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| UpError::Other(format!("cannot write {}: {e}", path.display())))?;
    Ok(path)
}

fn base_args(r: &Resolved, cli: &ComposeCli, extra_file: Option<&Path>) -> Vec<String> {
    let mut a: Vec<String> = cli.0[1..].to_vec();
    a.extend(["-p".into(), project_name(r)]);
    for f in files(r) {
        a.extend(["-f".into(), f.display().to_string()]);
    }
    if let Some(f) = extra_file {
        a.extend(["-f".into(), f.display().to_string()]);
    }
    a
}

async fn run_compose(cli: &ComposeCli, args: &[String], cwd: &Path) -> Result<(), UpError> {
    let mut c = tokio::process::Command::new(&cli.0[0]);
    c.args(args)
        .current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::from(
            std::os::fd::AsFd::as_fd(&std::io::stderr())
                .try_clone_to_owned()
                .map_err(|e| UpError::Other(e.to_string()))?,
        ))
        .kill_on_drop(true);
    let status = c
        .status()
        .await
        .map_err(|e| UpError::Other(format!("cannot run {}: {e}", cli.0[0])))?;
    if !status.success() {
        return Err(UpError::Other(format!(
            "`{} {}` failed ({status}); see its output above",
            cli.0.join(" "),
            args.iter().take(8).cloned().collect::<Vec<_>>().join(" ")
        )));
    }
    Ok(())
}

/// Starts the services and returns the primary service's container id.
pub async fn create(
    engine: &Engine,
    r: &Resolved,
    merged: &Merged,
    metadata_label: &str,
) -> Result<String, UpError> {
    let service = r
        .value
        .get("service")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    for f in files(r) {
        if !f.is_file() {
            return Err(UpError::Other(format!(
                "{}: the compose file {} does not exist",
                r.file.path.display(),
                f.display()
            )));
        }
    }
    let cli = ComposeCli::detect(engine)?;
    let over = write_override(r, &service, merged, metadata_label)?;
    let mut args = base_args(r, &cli, Some(&over));
    args.extend(["up".into(), "-d".into()]);
    let mut services: Vec<String> = r
        .value
        .get("runServices")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if !services.is_empty() && !services.contains(&service) {
        services.push(service.clone());
    }
    args.extend(services);
    eprintln!("Starting the compose project {}...", project_name(r));
    let cwd = files(r)
        .first()
        .and_then(|f| f.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| r.workspace.clone());
    run_compose(&cli, &args, &cwd).await?;
    let labels = vec![
        ("com.docker.compose.project".to_string(), project_name(r)),
        ("com.docker.compose.service".to_string(), service.clone()),
    ];
    let ids = engine.find(&labels).await?;
    ids.into_iter().next().ok_or_else(|| {
        UpError::Other(format!(
            "the compose project {} started, but no container of service {service:?} was found",
            project_name(r)
        ))
    })
}

/// `compose down` for the whole project.
pub async fn down(engine: &Engine, r: &Resolved, volumes: bool) -> Result<(), UpError> {
    let cli = ComposeCli::detect(engine)?;
    let over = override_path(r);
    let mut args = base_args(r, &cli, over.is_file().then_some(over.as_path()));
    args.push("down".into());
    if volumes {
        args.push("-v".into());
    }
    let cwd = files(r)
        .first()
        .and_then(|f| f.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| r.workspace.clone());
    run_compose(&cli, &args, &cwd).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_become_short_volumes() {
        assert_eq!(
            short_volume(&json!("type=volume,source=cache,target=/c")).unwrap(),
            "cache:/c"
        );
        assert_eq!(
            short_volume(&json!({"type": "bind", "source": "/a", "target": "/b"})).unwrap(),
            "/a:/b"
        );
        assert_eq!(
            short_volume(&json!({"type": "volume", "target": "/anon"})).unwrap(),
            "/anon"
        );
    }
}
