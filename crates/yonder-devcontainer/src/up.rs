//! `up`: from a config to a running, set-up container; plus `stop`, `down`
//! and finding the container of a folder.
//!
//! The container is labelled as the reference CLI labels it
//! (`devcontainer.local_folder`, `devcontainer.config_file`,
//! `devcontainer.metadata`), so either tool finds and reuses the other's
//! containers; lifecycle "run once" markers live where the reference CLI keeps
//! them (`~/.devcontainer/.<hook>Marker` in the container), for the same
//! reason. yonder adds one label of its own, `yonder.config_hash`, to notice
//! a config that changed since the container was made.

use crate::config::{self, ConfigError, ConfigFile};
use crate::engine::{Container, Engine, EngineError, EngineKind};
use crate::lifecycle::{self, LifecycleError, Place};
use crate::metadata::{self, Merged, Origin};
use crate::vars::{self, LocalVars, Resolved as Var, VarError};
use serde_json::{Map, Value, json};
use sha2::Digest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const LABEL_FOLDER: &str = "devcontainer.local_folder";
pub const LABEL_CONFIG: &str = "devcontainer.config_file";
pub const LABEL_METADATA: &str = "devcontainer.metadata";
pub const LABEL_HASH: &str = "yonder.config_hash";
/// The host folder bind-mounted at [`CONTAINER_RUN`]: the server in the
/// container keeps its sockets there, so a client on the host reaches it
/// without `exec` (and the engine's stdio relay) in between.
pub const LABEL_HOST_RUN: &str = "yonder.host_run";
/// Where [`LABEL_HOST_RUN`]'s folder appears in the container. Each user
/// gets a private (0700) subfolder, as in /tmp.
pub const CONTAINER_RUN: &str = "/run/yonder-host";

/// A new, empty host folder to share with a container about to be created
/// (`STATE_DIR/dc/RANDOM`, mode 1777 inside the user's private (0700) `dc`
/// folder; see [`LABEL_HOST_RUN`]). `None` if it cannot be made: the
/// container then works through `exec` alone.
fn host_run_base() -> PathBuf {
    state_dir().join("dc")
}

/// A file in each shared folder naming the engine program whose container
/// uses it: only that engine can tell whether the folder is still in use.
const HOST_RUN_ENGINE: &str = ".engine";

/// A shared folder no container of this engine names any more (removed with
/// `podman rm` rather than `yonder down`) is deleted once it is this old: a
/// younger one may belong to an `up` that has not created its container yet.
const HOST_RUN_SWEEP_AGE: Duration = Duration::from_secs(10 * 60);

/// Deletes shared folders left by this engine's containers that are gone.
/// Folders of other engines, or without the marker (made by an older
/// yonder), are left alone. Best effort: any error leaves things as they are.
async fn sweep_host_run_dirs(engine: &Engine) {
    let Ok(entries) = std::fs::read_dir(host_run_base()) else {
        return;
    };
    let Ok(ids) = engine
        .find(&[(LABEL_HOST_RUN.to_string(), String::new())])
        .await
    else {
        return;
    };
    let Ok(containers) = engine.inspect(&ids).await else {
        return;
    };
    let used: std::collections::HashSet<PathBuf> = containers
        .iter()
        .filter_map(|c| c.labels.get(LABEL_HOST_RUN).map(PathBuf::from))
        .collect();
    let ours = engine.program.to_string_lossy();
    for e in entries.flatten() {
        let dir = e.path();
        let mine = std::fs::read_to_string(dir.join(HOST_RUN_ENGINE)).is_ok_and(|p| p == ours);
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > HOST_RUN_SWEEP_AGE);
        if mine && old && !used.contains(&dir) {
            tracing::info!("removing {}: its container is gone", dir.display());
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

fn new_host_run_dir(engine: &Engine) -> Option<PathBuf> {
    use std::hash::BuildHasher;
    use std::os::unix::fs::PermissionsExt;
    let base = host_run_base();
    std::fs::create_dir_all(&base).ok()?;
    let _ = std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700));
    let name = format!(
        "{:016x}",
        std::collections::hash_map::RandomState::new()
            .hash_one((std::process::id(), std::time::SystemTime::now()))
    );
    let dir = base.join(name);
    std::fs::create_dir(&dir).ok()?;
    std::fs::write(
        dir.join(HOST_RUN_ENGINE),
        engine.program.to_string_lossy().as_bytes(),
    )
    .ok()?;
    // Sticky and world-writable: whichever user the container runs its
    // server as makes its own 0700 folder inside.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).ok()?;
    Some(dir)
}

/// How long a user's shell may take to print its environment before the
/// probe gives up with a warning (the reference CLI's value).
const ENV_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The keep-alive entrypoint the reference CLI uses: it exits 0 on SIGTERM
/// (so `stop` is quick), runs feature entrypoints, then the image's own
/// command when `overrideCommand` is false, then sleeps.
const KEEP_ALIVE: &str = "echo Container started\ntrap \"exit 0\" 15\n{ENTRYPOINTS}\nexec \"$@\"\nwhile sleep 1 & wait $!; do :; done";

#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{path}: {source}")]
    Var { path: PathBuf, source: VarError },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error(transparent)]
    Feature(#[from] crate::features::FeatureError),
    #[error("{0}")]
    Other(String),
}

/// A config read and substituted up to phase 2, with its workspace.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub file: ConfigFile,
    pub workspace: PathBuf,
    /// Substituted (phases 1 and 2).
    pub value: Value,
    pub workspace_folder: String,
    /// `None` when the config asks for no workspace mount (`""`).
    pub workspace_mount: Option<String>,
    pub id_labels: BTreeMap<String, String>,
    pub devcontainer_id: String,
}

impl Resolved {
    pub fn is_compose(&self) -> bool {
        self.value.get("dockerComposeFile").is_some()
    }

    fn config_dir(&self) -> PathBuf {
        self.file
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.workspace.clone())
    }

    fn str(&self, key: &str) -> Option<&str> {
        self.value.get(key).and_then(Value::as_str)
    }

    /// The hash that `yonder.config_hash` stores: the config file and, for
    /// Dockerfile configs, the Dockerfile.
    pub fn content_hash(&self) -> String {
        let mut h = sha2::Sha256::new();
        h.update(self.file.text.as_bytes());
        if let Some(df) = self
            .value
            .pointer("/build/dockerfile")
            .and_then(Value::as_str)
        {
            h.update(b"\0");
            h.update(std::fs::read(self.config_dir().join(df)).unwrap_or_default());
        }
        // Local features are part of the image too.
        if let Some(f) = self.value.get("features").and_then(Value::as_object) {
            for key in f.keys().filter_map(|k| k.strip_prefix("./")) {
                for file in ["devcontainer-feature.json", "install.sh"] {
                    h.update(b"\0");
                    h.update(
                        std::fs::read(self.config_dir().join(key).join(file)).unwrap_or_default(),
                    );
                }
            }
        }
        hex(&h.finalize())
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn basename(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The git root of `dir`, which the reference CLI mounts by default.
fn git_root(dir: &Path) -> Option<PathBuf> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--show-toplevel"])
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    p.is_dir().then_some(p)
}

/// Reads the config of `workspace` and substitutes phases 1 and 2.
pub fn resolve(workspace: &Path, explicit: Option<&Path>) -> Result<Resolved, UpError> {
    let workspace = std::fs::canonicalize(workspace).map_err(|e| {
        UpError::Other(format!(
            "the workspace folder {} cannot be opened: {e}",
            workspace.display()
        ))
    })?;
    let path = config::locate(&workspace, explicit)?;
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    let file = config::read(&path)?;
    let var_err = |source| UpError::Var {
        path: path.clone(),
        source,
    };
    let env = |k: &str| std::env::var(k).ok();
    // The default mount: the git root (or the folder) under /workspaces.
    let mount_root = git_root(&workspace).unwrap_or_else(|| workspace.clone());
    let rel = workspace
        .strip_prefix(&mount_root)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut default_folder = format!("/workspaces/{}", basename(&mount_root));
    if !rel.as_os_str().is_empty() {
        default_folder = format!("{default_folder}/{}", rel.display());
    }
    let local = workspace.display().to_string();
    // containerWorkspaceFolder is itself substituted first, so that
    // "workspaceFolder": "/workspaces/${localWorkspaceFolderBasename}" works.
    let pre = LocalVars {
        local_workspace_folder: local.clone(),
        container_workspace_folder: default_folder.clone(),
    };
    let workspace_folder = match file.value.get("workspaceFolder").and_then(Value::as_str) {
        Some(w) => vars::substitute_str(w, &vars::phase1(&pre, &env)).map_err(var_err)?,
        None if file.value.get("dockerComposeFile").is_some() => "/".into(),
        None => default_folder.clone(),
    };
    let lv = LocalVars {
        local_workspace_folder: local,
        container_workspace_folder: workspace_folder.clone(),
    };
    let value = vars::substitute(&file.value, &vars::phase1(&lv, &env)).map_err(var_err)?;
    let mut id_labels = BTreeMap::new();
    id_labels.insert(LABEL_FOLDER.to_string(), workspace.display().to_string());
    id_labels.insert(LABEL_CONFIG.to_string(), path.display().to_string());
    let devcontainer_id = vars::devcontainer_id(&id_labels);
    let id2 = devcontainer_id.clone();
    let value = vars::substitute(&value, &move |name: &str, _: &[&str]| {
        Ok(if name == "devcontainerId" {
            Var::Value(id2.clone())
        } else {
            Var::Keep
        })
    })
    .map_err(var_err)?;
    let workspace_mount = match value.get("workspaceMount").and_then(Value::as_str) {
        Some("") => None,
        Some(m) => Some(m.to_string()),
        None if value.get("dockerComposeFile").is_some() => None,
        // Podman does not accept consistency=, and on Linux it means nothing.
        None => Some(format!(
            "type=bind,source={},target=/workspaces/{}",
            mount_root.display(),
            basename(&mount_root)
        )),
    };
    Ok(Resolved {
        file,
        workspace,
        value,
        workspace_folder,
        workspace_mount,
        id_labels,
        devcontainer_id,
    })
}

/// Phase 3: `${containerEnv:VAR}` from the container's environment.
pub fn substitute_container_env(v: &Value, c: &Container) -> Value {
    let get = |k: &str| c.env_var(k);
    vars::substitute(v, &|name: &str, args: &[&str]| {
        if name == "containerEnv" {
            vars::env_lookup(name, args, &get)
        } else {
            Ok(Var::Keep)
        }
    })
    .unwrap_or_else(|_| v.clone())
}

/// What `up` reports.
#[derive(Debug, Clone)]
pub struct UpOutcome {
    pub container_id: String,
    pub remote_user: String,
    pub remote_workspace_folder: String,
    pub created: bool,
    pub config_changed: bool,
    pub merged: Merged,
}

impl UpOutcome {
    /// The reference CLI's success line.
    pub fn json(&self) -> Value {
        let mut v = json!({
            "outcome": "success",
            "containerId": self.container_id,
            "remoteUser": self.remote_user,
            "remoteWorkspaceFolder": self.remote_workspace_folder,
        });
        if self.config_changed {
            v["configChanged"] = json!(true);
        }
        v
    }
}

#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    pub remove_existing: bool,
    /// Recreate the container (and rebuild its image) when the config changed.
    pub rebuild: bool,
    /// Stop after the `waitFor` hook (default updateContentCommand).
    pub skip_non_blocking: bool,
    pub skip_post_attach: bool,
}

/// yonder's own notes about dev containers it brought up, on the host: the
/// container id (so re-`up` needs one `inspect`, not a search) and which
/// lifecycle markers are known to be current (so re-`up` of a running
/// container needs no `exec`). A stale or missing file only costs time.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct HostState {
    container_id: String,
    created: String,
    started_at: String,
}

pub fn state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("YONDER_STATE_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(d).join("yonder");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".local/state/yonder")
}

fn state_path(id: &str) -> PathBuf {
    state_dir().join("devcontainers").join(format!("{id}.json"))
}

fn load_state(id: &str) -> Option<HostState> {
    serde_json::from_slice(&std::fs::read(state_path(id)).ok()?).ok()
}

fn save_state(id: &str, s: &HostState) {
    let p = state_path(id);
    if let Some(d) = p.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    let tmp = p.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, serde_json::to_vec(s).unwrap_or_default()).is_ok() {
        let _ = std::fs::rename(&tmp, &p);
    }
}

fn forget_state(id: &str) {
    let _ = std::fs::remove_file(state_path(id));
    let _ = std::fs::remove_file(state_path(id).with_extension("server"));
}

/// Whether the yonder server `version` is known to be installed in this
/// container (noted by [`note_server`] after a successful connect).
pub fn server_known(devcontainer_id: &str, container_id: &str, version: &str) -> bool {
    std::fs::read_to_string(state_path(devcontainer_id).with_extension("server"))
        .is_ok_and(|s| s.trim() == format!("{container_id} {version}"))
}

pub fn note_server(devcontainer_id: &str, container_id: &str, version: &str) {
    let p = state_path(devcontainer_id).with_extension("server");
    if let Some(d) = p.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    let _ = std::fs::write(p, format!("{container_id} {version}\n"));
}

/// The container of `r`: the remembered one if its labels still match,
/// else a search by the id labels.
pub async fn find_container(engine: &Engine, r: &Resolved) -> Result<Option<Container>, UpError> {
    let matches = |c: &Container| {
        c.status != "removing"
            && r.id_labels
                .iter()
                .all(|(k, v)| c.labels.get(k).is_some_and(|x| x == v))
    };
    if let Some(s) = load_state(&r.devcontainer_id)
        && let Some(c) = engine.inspect(&[s.container_id]).await?.into_iter().next()
        && matches(&c)
    {
        return Ok(Some(c));
    }
    let labels: Vec<(String, String)> = r.id_labels.clone().into_iter().collect();
    let ids = engine.find(&labels).await?;
    Ok(engine.inspect(&ids).await?.into_iter().find(matches))
}

/// Docker image names allow only `[a-z0-9._-]` here.
pub(crate) fn image_name(workspace: &Path) -> String {
    let base: String = basename(workspace)
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .collect();
    let h = hex(&sha2::Sha256::digest(
        workspace.display().to_string().as_bytes(),
    ));
    format!("vsc-{base}-{h}")
}

/// A `mounts` entry as a `--mount` argument.
fn mount_arg(m: &Value) -> Option<String> {
    match m {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => {
            let t = o.get("type").and_then(Value::as_str).unwrap_or("bind");
            let dst = o.get("target").and_then(Value::as_str)?;
            Some(match o.get("source").and_then(Value::as_str) {
                Some(src) => format!("type={t},src={src},dst={dst}"),
                None => format!("type={t},dst={dst}"),
            })
        }
        _ => None,
    }
}

pub(crate) fn image_metadata(image: &Value) -> Vec<Value> {
    image
        .pointer("/Config/Labels")
        .and_then(|l| l.get(LABEL_METADATA))
        .and_then(Value::as_str)
        .and_then(|s| metadata::parse_label(s).ok())
        .unwrap_or_default()
}

/// Builds (Dockerfile) or finds/pulls (image) the image; returns its name and inspect.
async fn prepare_image(
    engine: &Engine,
    r: &Resolved,
    no_cache: bool,
    inspected: Option<Value>,
) -> Result<(String, Value), UpError> {
    if let Some(df) = r.value.pointer("/build/dockerfile").and_then(Value::as_str) {
        let dir = r.config_dir();
        let dockerfile = dir.join(df);
        if !dockerfile.is_file() {
            return Err(UpError::Other(format!(
                "{}: the Dockerfile {} does not exist",
                r.file.path.display(),
                dockerfile.display()
            )));
        }
        let context = match r.value.pointer("/build/context").and_then(Value::as_str) {
            Some(c) => dir.join(c),
            None => dockerfile.parent().map(Path::to_path_buf).unwrap_or(dir),
        };
        let name = image_name(&r.workspace);
        let mut args: Vec<String> = vec![
            "build".into(),
            "-f".into(),
            dockerfile.display().to_string(),
            "-t".into(),
            name.clone(),
        ];
        if let Some(t) = r.value.pointer("/build/target").and_then(Value::as_str) {
            args.extend(["--target".into(), t.into()]);
        }
        match r.value.pointer("/build/cacheFrom") {
            Some(Value::String(s)) => args.extend(["--cache-from".into(), s.clone()]),
            Some(Value::Array(a)) => {
                for s in a.iter().filter_map(Value::as_str) {
                    args.extend(["--cache-from".into(), s.into()]);
                }
            }
            _ => {}
        }
        if no_cache {
            args.push("--no-cache".into());
        }
        if let Some(m) = r.value.pointer("/build/args").and_then(Value::as_object) {
            for (k, v) in m {
                if let Some(v) = v.as_str() {
                    args.extend(["--build-arg".into(), format!("{k}={v}")]);
                }
            }
        }
        for o in r
            .value
            .pointer("/build/options")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(o) = o.as_str() {
                args.push(o.into());
            }
        }
        args.push(context.display().to_string());
        eprintln!("Building the image from {}...", dockerfile.display());
        engine.run_visible(&args).await?;
        let inspect = engine.inspect_image(&name).await?.ok_or_else(|| {
            UpError::Other(format!(
                "the image {name} was built but cannot be inspected"
            ))
        })?;
        return Ok((name, inspect));
    }
    let image = r
        .str("image")
        .ok_or_else(|| UpError::Other("the config has no image".into()))?
        .to_string();
    if let Some(i) = inspected {
        return Ok((image, i));
    }
    if let Some(i) = engine.inspect_image(&image).await? {
        return Ok((image, i));
    }
    eprintln!("Pulling {image}...");
    engine.run_visible(&["pull", image.as_str()]).await?;
    let i = engine
        .inspect_image(&image)
        .await?
        .ok_or_else(|| UpError::Other(format!("{image} was pulled but cannot be inspected")))?;
    Ok((image, i))
}

/// The `run` arguments for a new container.
fn run_args(
    r: &Resolved,
    engine: &Engine,
    merged: &Merged,
    image: &str,
    image_inspect: &Value,
    metadata_label: &str,
    host_run: Option<&Path>,
) -> Vec<String> {
    let mut a: Vec<String> = vec!["run".into(), "-d".into()];
    if let Some(h) = host_run {
        a.extend([
            "--mount".into(),
            format!("type=bind,source={},target={CONTAINER_RUN}", h.display()),
            "-l".into(),
            format!("{LABEL_HOST_RUN}={}", h.display()),
        ]);
    }
    match r.value.get("appPort") {
        Some(Value::Array(list)) => list.iter().for_each(|p| push_port(&mut a, p)),
        Some(p) => push_port(&mut a, p),
        None => {}
    }
    if let Some(m) = &r.workspace_mount {
        a.extend(["--mount".into(), m.clone()]);
    }
    for m in merged.mounts.iter().filter_map(mount_arg) {
        a.extend(["--mount".into(), m]);
    }
    for (k, v) in &r.id_labels {
        a.extend(["-l".into(), format!("{k}={v}")]);
    }
    a.extend(["-l".into(), format!("{LABEL_METADATA}={metadata_label}")]);
    a.extend(["-l".into(), format!("{LABEL_HASH}={}", r.content_hash())]);
    for (k, v) in &merged.container_env {
        if let Some(v) = v.as_str() {
            a.extend(["-e".into(), format!("{k}={v}")]);
        }
    }
    if let Some(u) = &merged.container_user {
        a.extend(["-u".into(), u.clone()]);
    }
    let run_args = config_run_args(r);
    if engine.kind == EngineKind::Podman {
        // SELinux hosts would otherwise refuse the workspace bind mount
        // (devcontainers/cli#914); harmless elsewhere.
        a.extend(["--security-opt".into(), "label=disable".into()]);
        // Rootless Podman maps the user's own UID into the container, which
        // does what updateRemoteUserUID does on Docker (the spec allows
        // skipping the UID update then). Rootful Podman refuses keep-id.
        let image_user = image_inspect
            .pointer("/Config/User")
            .and_then(Value::as_str)
            .unwrap_or("");
        let remote = crate::uid::effective_remote_user(merged, image_user);
        if crate::uid::keep_id(engine.kind, crate::uid::Host::current(), &remote, &run_args) {
            a.push("--userns=keep-id".into());
        }
    }
    a.extend(run_args);
    if merged.init {
        a.push("--init".into());
    }
    if merged.privileged {
        a.push("--privileged".into());
    }
    for c in &merged.cap_add {
        a.extend(["--cap-add".into(), c.clone()]);
    }
    for s in &merged.security_opt {
        a.extend(["--security-opt".into(), s.clone()]);
    }
    a.extend([
        "--entrypoint".into(),
        "/bin/sh".into(),
        image.into(),
        "-c".into(),
    ]);
    a.push(KEEP_ALIVE.replace("{ENTRYPOINTS}", &merged.entrypoints.join("\n")));
    a.push("-".into());
    // Only an explicit `false` keeps the image's own entrypoint and command.
    if merged.override_command == Some(false) {
        for key in ["/Config/Entrypoint", "/Config/Cmd"] {
            match image_inspect.pointer(key) {
                Some(Value::Array(l)) => {
                    a.extend(l.iter().filter_map(|x| x.as_str().map(String::from)))
                }
                Some(Value::String(s)) => a.push(s.clone()),
                _ => {}
            }
        }
    }
    a
}

/// Builds `<folder image>-features` from `image` with `features` installed
/// and returns it with its `inspect`.
async fn build_features(
    engine: &Engine,
    r: &Resolved,
    features: &[crate::features::Feature],
    snippet: &Value,
    image: &str,
    inspect: &Value,
) -> Result<(String, Value), UpError> {
    let mut base_meta = image_metadata(inspect);
    let mut with_conf = base_meta.clone();
    with_conf.push(snippet.clone());
    let pre = metadata::merge(&with_conf);
    let base_user = inspect
        .pointer("/Config/User")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let container_user = pre.container_user.clone().unwrap_or_else(|| {
        if base_user.is_empty() {
            "root".into()
        } else {
            base_user.clone()
        }
    });
    let remote_user = pre
        .remote_user
        .clone()
        .unwrap_or_else(|| container_user.clone());
    base_meta.extend(features.iter().map(crate::features::snippet));
    let label = serde_json::to_string(&base_meta).expect("json");
    let tag = format!("{}-features", image_name(&r.workspace));
    let spec = crate::features::BuildSpec {
        base: image,
        base_user: &base_user,
        remote_user: &remote_user,
        container_user: &container_user,
        label: &label,
        tag: &tag,
    };
    crate::features::build(engine, &spec, features).await?;
    let inspect = engine.inspect_image(&tag).await?.ok_or_else(|| {
        UpError::Other(format!("the image {tag} was built but cannot be inspected"))
    })?;
    Ok((tag, inspect))
}

/// Whether a compose config may need the UID update, so yonder must make
/// the service's image itself: a non-root Linux user, the update not turned
/// off, and a remote user named in the config, or an image-only service
/// (whose `USER` may name one). A service built from a Dockerfile with no
/// user named in the config is left to compose, as before (a known gap).
fn compose_may_update_uid(r: &Resolved, m: &Merged) -> bool {
    let host = crate::uid::Host::current();
    if !host.linux || host.uid == 0 || m.update_remote_user_uid == Some(false) {
        return false;
    }
    if m.remote_user.is_some() || m.container_user.is_some() {
        return crate::uid::plan(m, "", EngineKind::Docker, host, &[]).is_some();
    }
    let service = r.str("service").unwrap_or_default();
    crate::compose::service_source(r, service).is_ok_and(|s| s.build.is_none())
}

/// The config's `runArgs` (strings only).
fn config_run_args(r: &Resolved) -> Vec<String> {
    r.value
        .get("runArgs")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// `updateRemoteUserUID`: builds `<image>-uid` when the plan says so and
/// returns the image to run.
async fn update_uid(
    engine: &Engine,
    r: &Resolved,
    merged: &Merged,
    image: String,
    inspect: &Value,
) -> Result<String, UpError> {
    let image_user = inspect
        .pointer("/Config/User")
        .and_then(Value::as_str)
        .unwrap_or("");
    let Some(plan) = crate::uid::plan(
        merged,
        image_user,
        engine.kind,
        crate::uid::Host::current(),
        &config_run_args(r),
    ) else {
        return Ok(image);
    };
    // The reference CLI's name: the folder's image (or the image built from
    // it, such as `-features`) with `-uid`.
    let folder = image_name(&r.workspace);
    let base = if image.starts_with(&folder) {
        image.clone()
    } else {
        folder
    };
    let tag = format!("{base}-uid");
    crate::uid::build(engine, &image, &tag, &plan).await?;
    Ok(tag)
}

fn push_port(a: &mut Vec<String>, p: &Value) {
    match p {
        Value::Number(n) => a.extend(["-p".into(), format!("127.0.0.1:{n}:{n}")]),
        Value::String(s) => a.extend(["-p".into(), s.clone()]),
        _ => {}
    }
}

/// Warns about host requirements this machine does not meet.
fn check_host_requirements(m: &Merged) {
    let h = &m.host_requirements;
    if let Some(want) = h.get("cpus").and_then(Value::as_u64) {
        let have = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        if have < want {
            eprintln!("warning: hostRequirements asks for {want} CPUs; this host has {have}");
        }
    }
    if let Some(want) = h.get("memory").and_then(Value::as_str) {
        let have = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .map(|kb| kb * 1024)
        });
        if let (Some(w), Some(h)) = (metadata::parse_size(want), have)
            && h < w
        {
            eprintln!(
                "warning: hostRequirements asks for {want} of memory; this host has {} MiB",
                h >> 20
            );
        }
    }
    if h.get("gpu").is_some_and(|g| g == &json!(true)) {
        eprintln!(
            "warning: hostRequirements asks for a GPU; yonder does not pass GPUs through yet"
        );
    }
}

/// The snippets a container's metadata label holds, without its trailing
/// devcontainer.json entry (replaced by the current config's).
fn container_metadata(c: &Container) -> Vec<Value> {
    let mut list = c
        .labels
        .get(LABEL_METADATA)
        .and_then(|s| metadata::parse_label(s).ok())
        .unwrap_or_default();
    if list.last().is_some_and(|l| l.get("id").is_none()) {
        list.pop();
    }
    list
}

/// The user tools run as: remoteUser, else the container's user, else root.
pub fn remote_user(merged: &Merged, c: &Container) -> String {
    merged
        .remote_user
        .clone()
        .or_else(|| merged.container_user.clone())
        .or_else(|| (!c.user.is_empty()).then(|| c.user.clone()))
        .unwrap_or_else(|| "root".into())
}

/// The remote environment: `remoteEnv` after phase 3 (`null` unsets).
pub fn remote_env(merged: &Merged, c: &Container) -> Vec<(String, String)> {
    let v = substitute_container_env(&Value::Object(merged.remote_env.clone()), c);
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs the user's shell as `userEnvProbe` says and returns its environment.
async fn probe_env(engine: &Engine, id: &str, user: &str, probe: &str) -> Vec<(String, String)> {
    let flags = match probe {
        "none" => return Vec::new(),
        "loginShell" => "-lc",
        "interactiveShell" => "-ic",
        _ => "-lic",
    };
    let mark = "yonder-env-7f3a9c";
    let script = format!(
        "s=$(getent passwd \"$(id -un)\" 2>/dev/null | cut -d: -f7); [ -x \"$s\" ] || s=/bin/sh; exec \"$s\" {flags} 'printf %s {mark}; cat /proc/self/environ; printf %s {mark}'"
    );
    let mut c = engine.command();
    c.args(["exec", "-u", user, id, "/bin/sh", "-c", &script])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let out = match tokio::time::timeout(ENV_PROBE_TIMEOUT, c.output()).await {
        Ok(Ok(o)) => o.stdout,
        Ok(Err(_)) => return Vec::new(),
        Err(_) => {
            eprintln!(
                "warning: userEnvProbe: the shell of {user} did not print its environment within {} s; using the container's",
                ENV_PROBE_TIMEOUT.as_secs()
            );
            return Vec::new();
        }
    };
    let text = String::from_utf8_lossy(&out);
    let mut parts = text.split(mark);
    let (Some(_), Some(env)) = (parts.next(), parts.next()) else {
        return Vec::new();
    };
    env.split('\0')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| !k.is_empty() && *k != "PWD" && *k != "SHLVL" && *k != "_")
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Hooks run once per container, then per start, then per attach.
const ONCE: [&str; 3] = [
    "onCreateCommand",
    "updateContentCommand",
    "postCreateCommand",
];

/// Which markers are not current yet (the hooks that are due).
async fn due_hooks(
    engine: &Engine,
    c: &Container,
    user: &str,
) -> Result<Vec<&'static str>, UpError> {
    let script = "d=\"$HOME/.devcontainer\"; for h in onCreateCommand updateContentCommand postCreateCommand; do c=$(cat \"$d/.${h}Marker\" 2>/dev/null || echo ENOENT); [ \"$c\" = \"$1\" ] || echo $h; done; c=$(cat \"$d/.postStartCommandMarker\" 2>/dev/null || echo ENOENT); [ \"$c\" = \"$2\" ] || echo postStartCommand";
    let out = engine
        .run(&[
            "exec",
            "-u",
            user,
            c.id.as_str(),
            "/bin/sh",
            "-c",
            script,
            "sh",
            c.created.as_str(),
            c.started_at.as_str(),
        ])
        .await?;
    Ok(out
        .lines()
        .filter_map(|l| {
            [
                "onCreateCommand",
                "updateContentCommand",
                "postCreateCommand",
                "postStartCommand",
            ]
            .into_iter()
            .find(|h| *h == l.trim())
        })
        .collect())
}

/// Shell code that writes the markers of `hooks` (the reference CLI's
/// files and contents: the container's Created time, or StartedAt for
/// postStartCommand).
fn marker_script(c: &Container, hooks: &[&str]) -> String {
    let clean = |t: &str| t.replace(['\'', '\\'], "");
    let mut script = String::from("d=\"$HOME/.devcontainer\"; mkdir -p \"$d\"");
    for h in hooks {
        let ts = if *h == "postStartCommand" {
            clean(&c.started_at)
        } else {
            clean(&c.created)
        };
        script.push_str(&format!(" && echo '{ts}' > \"$d/.{h}Marker\""));
    }
    script
}

async fn write_markers(
    engine: &Engine,
    c: &Container,
    user: &str,
    hooks: &[&str],
) -> Result<(), UpError> {
    if hooks.is_empty() {
        return Ok(());
    }
    let script = marker_script(c, hooks);
    engine
        .run(&[
            "exec",
            "-u",
            user,
            c.id.as_str(),
            "/bin/sh",
            "-c",
            script.as_str(),
        ])
        .await?;
    Ok(())
}

/// Brings the dev container of `r` up.
pub async fn up(engine: &Engine, r: &Resolved, opts: &UpOptions) -> Result<UpOutcome, UpError> {
    for w in &r.file.warnings {
        eprintln!("warning: {w}");
    }
    // Features are read (and their order checked) before anything runs, so
    // a bad feature fails fast.
    let features = match r.value.get("features").and_then(Value::as_object) {
        Some(f) if !f.is_empty() => {
            // Registry fetches are blocking HTTP: keep them off the reactor.
            let list = tokio::task::block_in_place(|| crate::features::read(&r.file.path, f))?;
            let over: Vec<String> = r
                .value
                .get("overrideFeatureInstallOrder")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            crate::features::order(&r.file.path, list, &over)?
        }
        _ => Vec::new(),
    };
    // initializeCommand: on the host, in the workspace, on every up.
    if let Some(cmd) = r.value.get("initializeCommand") {
        let origin = Origin {
            command: cmd.clone(),
            origin: "devcontainer.json".into(),
        };
        lifecycle::run_hook(
            &Place::Host { cwd: &r.workspace },
            "initializeCommand",
            &[origin],
        )
        .await?;
    }
    // Looking for the container and inspecting the image are independent:
    // both at once save one engine round trip when a container is made.
    let image_ref = r
        .str("image")
        .filter(|_| !r.is_compose() && r.value.get("build").is_none());
    let (existing, pre_inspect) = tokio::join!(find_container(engine, r), async {
        match image_ref {
            Some(i) => engine.inspect_image(i).await.ok().flatten(),
            None => None,
        }
    });
    let mut existing = existing?;
    let mut config_changed = false;
    if let Some(c) = &existing {
        let changed = c
            .labels
            .get(LABEL_HASH)
            .is_some_and(|h| *h != r.content_hash());
        if opts.remove_existing
            || (opts.rebuild && changed)
            || (opts.rebuild && !c.labels.contains_key(LABEL_HASH))
        {
            eprintln!("Removing the existing container {}...", short(&c.id));
            engine.run(&["rm", "-f", c.id.as_str()]).await?;
            forget_state(&r.devcontainer_id);
            existing = None;
        } else if changed {
            config_changed = true;
            eprintln!(
                "warning: {} changed since container {} was created; run `yonder up --rebuild` to recreate it with the new configuration",
                r.file.path.display(),
                short(&c.id)
            );
        }
    }
    let snippet = metadata::snippet(&r.value);
    let (container, merged, created) = match existing {
        Some(c) => {
            let mut snippets = container_metadata(&c);
            snippets.push(snippet);
            let merged = metadata::merge(&snippets);
            let c = if c.running {
                c
            } else {
                eprintln!("Starting container {}...", short(&c.id));
                engine.run(&["start", c.id.as_str()]).await?;
                engine
                    .inspect(std::slice::from_ref(&c.id))
                    .await?
                    .into_iter()
                    .next()
                    .ok_or_else(|| {
                        UpError::Other(format!(
                            "container {} vanished while starting",
                            short(&c.id)
                        ))
                    })?
            };
            (c, merged, false)
        }
        None if r.is_compose() => {
            // Features and the UID update need the service's image, which
            // yonder then extends and points the service at (the reference
            // CLI's "start override"); without them compose makes the image.
            let may_update_uid =
                compose_may_update_uid(r, &metadata::merge(std::slice::from_ref(&snippet)));
            let (extended, mut snippets) = if !features.is_empty() || may_update_uid {
                let (mut image, mut inspect) =
                    crate::compose::prepare_image(engine, r, opts.rebuild).await?;
                if !features.is_empty() {
                    (image, inspect) =
                        build_features(engine, r, &features, &snippet, &image, &inspect).await?;
                }
                let mut snippets = image_metadata(&inspect);
                snippets.push(snippet.clone());
                let merged = metadata::merge(&snippets);
                let image = update_uid(engine, r, &merged, image, &inspect).await?;
                (Some((image, inspect)), snippets)
            } else {
                (None, vec![snippet.clone()])
            };
            let pre = metadata::merge(&snippets);
            let label = serde_json::to_string(&snippets).expect("json");
            let ext = extended
                .as_ref()
                .map(|(image, inspect)| crate::compose::Extended { image, inspect });
            let id = crate::compose::create(engine, r, &pre, &label, ext).await?;
            let c = engine
                .inspect(std::slice::from_ref(&id))
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    UpError::Other(format!("container {} cannot be inspected", short(&id)))
                })?;
            if extended.is_none() {
                // The service's image may carry metadata of its own.
                snippets = match engine.inspect_image(&c.image).await? {
                    Some(i) => image_metadata(&i),
                    None => Vec::new(),
                };
                snippets.push(snippet);
            }
            (c, metadata::merge(&snippets), true)
        }
        None => {
            let (mut image, mut inspect) =
                prepare_image(engine, r, opts.rebuild, pre_inspect).await?;
            if !features.is_empty() {
                (image, inspect) =
                    build_features(engine, r, &features, &snippet, &image, &inspect).await?;
            }
            let mut snippets = image_metadata(&inspect);
            snippets.push(snippet);
            let merged = metadata::merge(&snippets);
            check_host_requirements(&merged);
            // The -uid image has the same entrypoint, command and labels, so
            // `inspect` still describes it.
            let image = update_uid(engine, r, &merged, image, &inspect).await?;
            let label = serde_json::to_string(&snippets).expect("json");
            // A folder name with a comma would break the --mount syntax.
            sweep_host_run_dirs(engine).await;
            let host_run = new_host_run_dir(engine).filter(|h| !h.to_string_lossy().contains(','));
            let args = run_args(
                r,
                engine,
                &merged,
                &image,
                &inspect,
                &label,
                host_run.as_deref(),
            );
            eprintln!("Creating the container from {image}...");
            let id = engine.run(&args).await?.trim().to_string();
            let c = engine
                .inspect(std::slice::from_ref(&id))
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    UpError::Other(format!(
                        "container {} was created but cannot be inspected",
                        short(&id)
                    ))
                })?;
            if !c.running {
                let logs = engine.run(&["logs", id.as_str()]).await.unwrap_or_default();
                return Err(UpError::Other(format!(
                    "container {} exited right after starting ({}): {}",
                    short(&id),
                    c.status,
                    logs.trim()
                )));
            }
            (c, merged, true)
        }
    };
    let user = remote_user(&merged, &container);
    // Lifecycle hooks. The host notes make a re-up of a running container
    // skip the marker check entirely.
    let known = load_state(&r.devcontainer_id).is_some_and(|s| {
        s.container_id == container.id
            && s.created == container.created
            && s.started_at == container.started_at
    });
    let due = if known {
        Vec::new()
    } else if created {
        // A container made just now has no markers: every hook is due.
        vec![
            "onCreateCommand",
            "updateContentCommand",
            "postCreateCommand",
            "postStartCommand",
        ]
    } else {
        due_hooks(engine, &container, &user).await?
    };
    let wait_for = merged
        .wait_for
        .clone()
        .unwrap_or_else(|| "updateContentCommand".into());
    let mut hooks: Vec<&str> = due.clone();
    if !opts.skip_post_attach {
        hooks.push("postAttachCommand");
    }
    let have_commands = hooks.iter().any(|h| !merged.hook(h).is_empty());
    let env = if have_commands {
        let mut env = probe_env(
            engine,
            &container.id,
            &user,
            merged
                .user_env_probe
                .as_deref()
                .unwrap_or("loginInteractiveShell"),
        )
        .await;
        for (k, v) in remote_env(&merged, &container) {
            env.retain(|(x, _)| *x != k);
            env.push((k, v));
        }
        env
    } else {
        Vec::new()
    };
    // Markers are written by the same `exec` as the hook's command when it
    // has one (one round trip fewer per hook); hooks without commands leave
    // their markers to the next hook that runs (or to none: a missing
    // marker of an empty hook only means a check next time).
    let mut pending: Vec<&str> = Vec::new();
    let mut done: Vec<&str> = Vec::new();
    let mut stopped_early = false;
    for hook in &hooks {
        let commands = merged.hook(hook);
        let marks = *hook != "postAttachCommand";
        if !commands.is_empty() {
            let mut with = pending.clone();
            if marks {
                with.push(hook);
            }
            let single = commands.len() == 1 && !commands[0].command.is_object();
            let script = (single && !with.is_empty()).then(|| marker_script(&container, &with));
            let place = Place::Container {
                engine,
                id: &container.id,
                user: &user,
                workdir: &r.workspace_folder,
                env: &env,
                after: script.as_deref(),
            };
            if let Err(e) = lifecycle::run_hook(&place, hook, commands).await {
                write_markers(engine, &container, &user, &pending).await?;
                return Err(e.into());
            }
            if !single {
                write_markers(engine, &container, &user, &with).await?;
            }
            pending.clear();
        } else if marks {
            pending.push(hook);
        }
        if marks {
            done.push(hook);
        }
        if opts.skip_non_blocking && *hook == wait_for {
            stopped_early = true;
            break;
        }
    }
    if !stopped_early && ONCE.iter().all(|h| !due.contains(h) || done.contains(h)) {
        save_state(
            &r.devcontainer_id,
            &HostState {
                container_id: container.id.clone(),
                created: container.created.clone(),
                started_at: container.started_at.clone(),
            },
        );
    }
    Ok(UpOutcome {
        container_id: container.id.clone(),
        remote_user: user,
        remote_workspace_folder: r.workspace_folder.clone(),
        created,
        config_changed,
        merged,
    })
}

pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// `read-configuration`: the substituted config, the workspace, and the
/// merged configuration when a container (or the image) is there to merge.
pub async fn read_configuration(engine: Option<&Engine>, r: &Resolved) -> Value {
    let mut configuration = r.value.clone();
    if let Some(o) = configuration.as_object_mut() {
        o.insert(
            "configFilePath".into(),
            json!(r.file.path.display().to_string()),
        );
    }
    let mut out = json!({
        "configuration": configuration,
        "workspace": {
            "workspaceFolder": r.workspace_folder,
            "workspaceMount": r.workspace_mount,
        },
    });
    if let Some(engine) = engine {
        let snippet = metadata::snippet(&r.value);
        let mut container = None;
        let snippets = match find_container(engine, r).await {
            Ok(Some(c)) => {
                let mut s = container_metadata(&c);
                s.push(snippet);
                container = Some(c);
                s
            }
            _ => match r.str("image") {
                Some(i) => match engine.inspect_image(i).await {
                    Ok(Some(v)) => {
                        let mut s = image_metadata(&v);
                        s.push(snippet);
                        s
                    }
                    _ => vec![snippet],
                },
                None => vec![snippet],
            },
        };
        let m = metadata::merge(&snippets);
        let mut merged = Map::new();
        merged.insert("remoteUser".into(), json!(m.remote_user));
        merged.insert("containerUser".into(), json!(m.container_user));
        let remote_env = match &container {
            Some(c) => substitute_container_env(&Value::Object(m.remote_env.clone()), c),
            None => Value::Object(m.remote_env.clone()),
        };
        merged.insert("remoteEnv".into(), remote_env);
        merged.insert(
            "containerEnv".into(),
            Value::Object(m.container_env.clone()),
        );
        merged.insert("init".into(), json!(m.init));
        merged.insert("privileged".into(), json!(m.privileged));
        merged.insert("capAdd".into(), json!(m.cap_add));
        merged.insert("securityOpt".into(), json!(m.security_opt));
        merged.insert("mounts".into(), json!(m.mounts));
        merged.insert("forwardPorts".into(), json!(m.forward_ports));
        merged.insert(
            "portsAttributes".into(),
            Value::Object(m.ports_attributes.clone()),
        );
        for (hook, list) in &m.hooks {
            merged.insert(
                format!("{hook}s"),
                Value::Array(list.iter().map(|o| o.command.clone()).collect()),
            );
        }
        out["mergedConfiguration"] = Value::Object(merged);
    }
    out
}

/// Dev containers known to the engine (any folder).
pub async fn list(engine: &Engine) -> Result<Vec<Container>, UpError> {
    let ids = engine
        .find(&[(LABEL_FOLDER.to_string(), String::new())])
        .await?;
    Ok(engine.inspect(&ids).await?)
}

/// `stop`: stops the folder's container (keeps it for the next up).
pub async fn stop(engine: &Engine, r: &Resolved) -> Result<Option<String>, UpError> {
    let Some(c) = find_container(engine, r).await? else {
        return Ok(None);
    };
    if c.running {
        engine.run(&["stop", c.id.as_str()]).await?;
    }
    Ok(Some(c.id))
}

/// `down`: removes the folder's container (and its anonymous volumes with
/// `volumes`).
pub async fn down(engine: &Engine, r: &Resolved, volumes: bool) -> Result<Option<String>, UpError> {
    let Some(c) = find_container(engine, r).await? else {
        return Ok(None);
    };
    if r.is_compose() {
        crate::compose::down(engine, r, volumes).await?;
        forget_state(&r.devcontainer_id);
        return Ok(Some(c.id));
    }
    let mut args = vec!["rm", "-f"];
    if volumes {
        args.push("-v");
    }
    args.push(c.id.as_str());
    engine.run(&args).await?;
    forget_state(&r.devcontainer_id);
    // The folder shared with it, if it is one of ours.
    if let Some(h) = c.labels.get(LABEL_HOST_RUN).map(PathBuf::from)
        && h.parent() == Some(host_run_base().as_path())
    {
        let _ = std::fs::remove_dir_all(&h);
    }
    Ok(Some(c.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_are_docker_safe() {
        let n = image_name(Path::new("/home/u/My Project!"));
        assert!(n.starts_with("vsc-myproject-"), "{n}");
        assert!(
            n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
        );
    }

    #[test]
    fn mount_objects_become_mount_arguments() {
        assert_eq!(
            mount_arg(&json!({"type": "volume", "source": "cache", "target": "/c"})).unwrap(),
            "type=volume,src=cache,dst=/c"
        );
        assert_eq!(
            mount_arg(&json!("type=bind,source=/a,target=/b")).unwrap(),
            "type=bind,source=/a,target=/b"
        );
    }

    #[test]
    fn resolve_substitutes_phases_one_and_two() {
        let d = tempfile::tempdir().unwrap();
        let w = d.path().join("proj");
        std::fs::create_dir_all(w.join(".devcontainer")).unwrap();
        std::fs::write(
            w.join(".devcontainer/devcontainer.json"),
            r#"{ "image": "x", "workspaceFolder": "/src/${localWorkspaceFolderBasename}",
                 "containerEnv": {"W": "${containerWorkspaceFolder}", "ID": "${devcontainerId}",
                                  "P": "${containerEnv:PATH}", "H": "${localEnv:YONDER_NOPE:dflt}"} }"#,
        )
        .unwrap();
        let r = resolve(&w, None).unwrap();
        assert_eq!(r.workspace_folder, "/src/proj");
        let env = &r.value["containerEnv"];
        assert_eq!(env["W"], "/src/proj");
        assert_eq!(env["ID"], r.devcontainer_id.as_str());
        assert_eq!(env["P"], "${containerEnv:PATH}");
        assert_eq!(env["H"], "dflt");
        let canon = std::fs::canonicalize(&w).unwrap();
        assert_eq!(
            r.workspace_mount.as_deref().unwrap(),
            format!(
                "type=bind,source={},target=/workspaces/proj",
                canon.display()
            )
        );
    }
}
