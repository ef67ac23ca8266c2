//! Docker Compose configurations: `dockerComposeFile` + `service`.
//!
//! yonder runs the compose CLI the user has (`docker compose`,
//! `docker-compose`, or `podman-compose` with Podman), with one extra
//! override file it writes: the dev container's labels (the reference CLI's
//! id labels and metadata, so both tools find the container), its
//! containerEnv, user, mounts and run options, and the keep-alive entrypoint
//! when `overrideCommand` is true. The override is JSON, which every YAML
//! parser reads, so no YAML writer is needed.
//!
//! When features or the UID update apply, yonder needs the primary
//! service's image first: it reads the compose files (YAML) for the
//! service's `image` or `build`, builds or pulls that with the engine,
//! extends it (`-features`, `-uid`), and the override points the service at
//! the result, as the reference CLI's start override does. Compose then
//! finds the image present and builds nothing for that service.

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

/// Where the primary service's image comes from, merged over the compose
/// files (a later file's keys win).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceSource {
    pub image: Option<String>,
    /// The `build` object (a string is its `context`).
    pub build: Option<serde_json::Map<String, Value>>,
    pub entrypoint: Option<Value>,
    pub command: Option<Value>,
}

/// The image yonder made for the primary service (features, `-uid`), with
/// its `inspect`, for the override to point the service at.
#[derive(Debug, Clone, Copy)]
pub struct Extended<'a> {
    pub image: &'a str,
    pub inspect: &'a Value,
}

/// An image's `Entrypoint`/`Cmd` as argv.
fn image_argv(inspect: &Value, key: &str) -> Vec<String> {
    match inspect.pointer(key) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Compose's variable interpolation in `s`: `$$` is a `$`; `${VAR}`,
/// `${VAR:-default}` (unset or empty) and `${VAR-default}` (unset), and
/// `$VAR`. Other forms (`:?`, `:+`) are left as written.
pub fn interpolate(s: &str, var: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
        } else if let Some(body) = after.strip_prefix('{')
            && let Some(end) = body.find('}')
        {
            let inner = &body[..end];
            let value = if let Some((name, dflt)) = inner.split_once(":-") {
                var(name)
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| dflt.into())
            } else if let Some((name, dflt)) = inner.split_once('-') {
                var(name).unwrap_or_else(|| dflt.into())
            } else if inner.contains(['?', '+', ':']) {
                format!("${{{inner}}}")
            } else {
                var(inner).unwrap_or_default()
            };
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            let n = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if n == 0 {
                out.push('$');
            } else {
                out.push_str(&var(&after[..n]).unwrap_or_default());
            }
            rest = &after[n..];
        }
    }
    out.push_str(rest);
    out
}

fn interpolate_value(v: &Value, var: &dyn Fn(&str) -> Option<String>) -> Value {
    match v {
        Value::String(s) => Value::String(interpolate(s, var)),
        Value::Array(a) => Value::Array(a.iter().map(|x| interpolate_value(x, var)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), interpolate_value(x, var)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The variables compose interpolates with: the environment, then the
/// `.env` file of the project folder (the first compose file's).
fn compose_vars(r: &Resolved) -> impl Fn(&str) -> Option<String> {
    let dir = files(r)
        .first()
        .and_then(|f| f.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let dotenv: Vec<(String, String)> = std::fs::read_to_string(dir.join(".env"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        })
        .collect();
    move |k: &str| {
        std::env::var(k)
            .ok()
            .or_else(|| dotenv.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }
}

/// Reads `service`'s `image` and `build` from the compose files, with
/// compose's variable interpolation.
pub fn service_source(r: &Resolved, service: &str) -> Result<ServiceSource, UpError> {
    let mut out = ServiceSource::default();
    let mut found = false;
    let vars = compose_vars(r);
    for f in files(r) {
        let text = std::fs::read_to_string(&f)
            .map_err(|e| UpError::Other(format!("cannot read {}: {e}", f.display())))?;
        let doc: Value = serde_norway::from_str(&text).map_err(|e| {
            UpError::Other(format!("{}: not a valid compose file: {e}", f.display()))
        })?;
        let Some(svc) = doc.pointer(&format!("/services/{service}")) else {
            continue;
        };
        let svc = &interpolate_value(svc, &vars);
        found = true;
        if let Some(i) = svc.get("image").and_then(Value::as_str) {
            out.image = Some(i.to_string());
        }
        if let Some(e) = svc.get("entrypoint") {
            out.entrypoint = Some(e.clone());
        }
        if let Some(c) = svc.get("command") {
            out.command = Some(c.clone());
        }
        match svc.get("build") {
            Some(Value::String(ctx)) => {
                out.build
                    .get_or_insert_with(Default::default)
                    .insert("context".into(), json!(ctx));
            }
            Some(Value::Object(b)) => {
                let into = out.build.get_or_insert_with(Default::default);
                for (k, v) in b {
                    into.insert(k.clone(), v.clone());
                }
            }
            _ => {}
        }
    }
    if !found {
        return Err(UpError::Other(format!(
            "{}: service {service:?} is not in the compose files {}",
            r.file.path.display(),
            files(r)
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if out.image.is_none() && out.build.is_none() {
        return Err(UpError::Other(format!(
            "{}: compose service {service:?} has neither `image` nor `build`",
            r.file.path.display()
        )));
    }
    Ok(out)
}

/// `build.args` as `K=V` (a map, or a list of `K=V`; a bare `K` takes the
/// local environment's value, as compose does).
fn build_args(b: &serde_json::Map<String, Value>) -> Vec<String> {
    match b.get("args") {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                Value::Null => format!("{k}={}", std::env::var(k).unwrap_or_default()),
                other => format!("{k}={other}"),
            })
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(|s| {
                if s.contains('=') {
                    s.to_string()
                } else {
                    format!("{s}={}", std::env::var(s).unwrap_or_default())
                }
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The primary service's image, built (its `build`, tagged as the folder's
/// image) or pulled when missing, with its `inspect`.
pub async fn prepare_image(
    engine: &Engine,
    r: &Resolved,
    no_cache: bool,
) -> Result<(String, Value), UpError> {
    let service = r
        .value
        .get("service")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let src = service_source(r, service)?;
    let inspect = |name: String| async move {
        let i = engine.inspect_image(&name).await?.ok_or_else(|| {
            UpError::Other(format!("the image {name} is there but cannot be inspected"))
        })?;
        Ok::<_, UpError>((name, i))
    };
    if let Some(b) = &src.build {
        // Relative paths are relative to the first compose file's folder.
        let dir = files(r)
            .first()
            .and_then(|f| f.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| r.workspace.clone());
        let context = dir.join(b.get("context").and_then(Value::as_str).unwrap_or("."));
        let dockerfile = context.join(
            b.get("dockerfile")
                .and_then(Value::as_str)
                .unwrap_or("Dockerfile"),
        );
        let tag = crate::up::image_name(&r.workspace);
        let mut args: Vec<String> = vec![
            "build".into(),
            "-f".into(),
            dockerfile.display().to_string(),
            "-t".into(),
            tag.clone(),
        ];
        if let Some(t) = b.get("target").and_then(Value::as_str) {
            args.extend(["--target".into(), t.into()]);
        }
        for a in build_args(b) {
            args.extend(["--build-arg".into(), a]);
        }
        if no_cache {
            args.push("--no-cache".into());
        }
        args.push(context.display().to_string());
        eprintln!(
            "Building the image of compose service {service:?} from {}...",
            dockerfile.display()
        );
        engine.run_visible(&args).await?;
        return inspect(tag).await;
    }
    let image = src.image.unwrap_or_default();
    if engine.inspect_image(&image).await?.is_none() {
        eprintln!("Pulling {image}...");
        engine.run_visible(&["pull", image.as_str()]).await?;
    }
    inspect(image).await
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
    extended: Option<Extended<'_>>,
) -> Result<PathBuf, UpError> {
    let mut labels: Vec<String> = r
        .id_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    labels.push(format!("{LABEL_METADATA}={metadata_label}"));
    labels.push(format!("{LABEL_HASH}={}", r.content_hash()));
    let mut svc = json!({ "labels": labels });
    if let Some(x) = extended {
        svc["image"] = json!(x.image);
    }
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
    // The keep-alive wrapper runs features' entrypoints first, as on the
    // single-container path, then `"$@"`. With overrideCommand that is
    // nothing; otherwise it is the service's own command, after the image's
    // entrypoint, which the wrapper replaces and so must repeat. `$` is
    // doubled because compose interpolates it.
    //
    // podman-compose 1.0.3 merges override files by appending lists and
    // refuses a list over a string, so `command` keeps the type the
    // service's has, and a service with an `entrypoint` of its own is not
    // wrapped for feature entrypoints (docker compose would replace both).
    let keep_alive = merged.override_command == Some(true);
    let feature_entrypoints = !merged.entrypoints.is_empty() && extended.is_some();
    if keep_alive || feature_entrypoints {
        let src = service_source(r, service)?;
        let script = format!(
            "echo Container started\ntrap \"exit 0\" 15\n{}\nexec \"$@\"\nwhile sleep 1 & wait $!; do :; done",
            merged.entrypoints.join("\n")
        );
        let mut entrypoint = vec!["/bin/sh".to_string(), "-c".into(), script, "-".into()];
        let dollars = |v: Vec<String>| -> Vec<String> {
            v.into_iter().map(|a| a.replace('$', "$$")).collect()
        };
        if keep_alive {
            svc["entrypoint"] = json!(dollars(entrypoint));
            svc["command"] = match src.command {
                Some(Value::String(_)) => json!(""),
                _ => json!([]),
            };
        } else if src.entrypoint.is_some() {
            eprintln!(
                "warning: compose service {service:?} sets its own entrypoint; the entrypoints of its features are not run (set \"overrideCommand\": true to run them)"
            );
        } else if let Some(x) = extended {
            entrypoint.extend(image_argv(x.inspect, "/Config/Entrypoint"));
            svc["entrypoint"] = json!(dollars(entrypoint));
            // Setting an entrypoint drops the image's CMD, so it is given
            // back unless the compose file has a command (which stays).
            if src.command.is_none() {
                svc["command"] = json!(dollars(image_argv(x.inspect, "/Config/Cmd")));
            }
        }
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
    extended: Option<Extended<'_>>,
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
    let over = write_override(r, &service, merged, metadata_label, extended)?;
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

    fn resolved(files: &[(&str, &str)], config: &str) -> (tempfile::TempDir, Resolved) {
        let d = tempfile::tempdir().unwrap();
        let dc = d.path().join(".devcontainer");
        std::fs::create_dir_all(&dc).unwrap();
        std::fs::write(dc.join("devcontainer.json"), config).unwrap();
        for (name, text) in files {
            std::fs::write(dc.join(name), text).unwrap();
        }
        let r = crate::up::resolve(d.path(), None).unwrap();
        (d, r)
    }

    #[test]
    fn the_service_source_merges_over_the_compose_files() {
        let (_d, r) = resolved(
            &[
                (
                    "a.yml",
                    "services:\n  app:\n    build: ./ctx\n    command: x\n  db:\n    image: pg\n",
                ),
                (
                    "b.yml",
                    "services:\n  app:\n    image: named:1\n    build:\n      dockerfile: Other\n      args: [A=1, B]\n",
                ),
            ],
            r#"{"dockerComposeFile": ["a.yml", "b.yml"], "service": "app"}"#,
        );
        let s = service_source(&r, "app").unwrap();
        assert_eq!(s.image.as_deref(), Some("named:1"));
        let b = s.build.unwrap();
        assert_eq!(b["context"], "./ctx");
        assert_eq!(b["dockerfile"], "Other");
        assert_eq!(build_args(&b)[0], "A=1");
        assert_eq!(
            service_source(&r, "db").unwrap(),
            ServiceSource {
                image: Some("pg".into()),
                ..Default::default()
            }
        );
        let e = service_source(&r, "nope").unwrap_err().to_string();
        assert!(e.contains("\"nope\" is not in the compose files"), "{e}");
    }

    #[test]
    fn variables_interpolate_like_compose() {
        let var = |k: &str| match k {
            "TAG" => Some("1.2".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        assert_eq!(interpolate("img:${TAG}", &var), "img:1.2");
        assert_eq!(interpolate("img:$TAG-x", &var), "img:1.2-x");
        assert_eq!(
            interpolate("${NOPE:-dflt} ${EMPTY:-e} ${EMPTY-f}", &var),
            "dflt e "
        );
        assert_eq!(interpolate("${NOPE-g}$$HOME $", &var), "g$HOME $");
        assert_eq!(
            interpolate("${NOPE:?must be set} ${unclosed", &var),
            "${NOPE:?must be set} ${unclosed"
        );
    }

    #[test]
    fn a_broken_compose_file_is_named() {
        let (_d, r) = resolved(
            &[("a.yml", "services:\n  app: [unclosed\n")],
            r#"{"dockerComposeFile": "a.yml", "service": "app"}"#,
        );
        let e = service_source(&r, "app").unwrap_err().to_string();
        assert!(e.contains("a.yml: not a valid compose file"), "{e}");
    }

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
