//! Container checks for `yonder doctor`: does the engine answer, does a
//! container run, can it read the project through a bind mount (the
//! "file sharing" problem of Docker Desktop and SELinux hosts).

use crate::engine::{Engine, EngineKind};
use std::path::Path;

/// One finding: `(id, ok, summary, why, fix)`; the binary turns these into
/// doctor checks.
#[derive(Debug, Clone)]
pub struct Finding {
    pub id: &'static str,
    /// `Some(true)` ok, `Some(false)` problem, `None` a warning.
    pub ok: Option<bool>,
    pub summary: String,
    pub why: String,
    pub fix: Option<String>,
}

fn finding(
    id: &'static str,
    ok: Option<bool>,
    summary: String,
    why: &str,
    fix: Option<String>,
) -> Finding {
    Finding {
        id,
        ok,
        summary,
        why: why.into(),
        fix,
    }
}

/// Checks `engine`; with `workspace` (a folder with a dev container config
/// whose image is present) also runs a container that reads it.
pub async fn check(engine: &Engine, workspace: Option<&Path>) -> Vec<Finding> {
    let mut out = Vec::new();
    let name = engine.program.display().to_string();
    match engine.run(&["info", "--format", "{{json .}}"]).await {
        Ok(_) => out.push(finding(
            "container-engine-answers",
            Some(true),
            format!("{name} answers"),
            "",
            None,
        )),
        Err(e) => {
            let fix = match engine.kind {
                EngineKind::Docker => {
                    "start the Docker daemon (`sudo systemctl start docker`, or Docker Desktop), or use Podman: `sudo apt-get install podman` and YONDER_DOCKER_PATH=podman"
                }
                EngineKind::Podman => {
                    "run `podman info` to see why; on hosts where crun fails, set `runtime = \"runc\"` and `cgroup_manager = \"cgroupfs\"` in containers.conf"
                }
            };
            out.push(finding(
                "container-engine-answers",
                Some(false),
                format!("{name} does not answer: {e}"),
                "every container and dev container command goes through it",
                Some(fix.into()),
            ));
            return out;
        }
    }
    if engine.kind == EngineKind::Podman {
        if std::fs::read_to_string("/sys/fs/selinux/enforce").is_ok_and(|s| s.trim() == "1") {
            out.push(finding(
                "container-selinux",
                None,
                "SELinux is enforcing".into(),
                "bind mounts of your project are refused unless relabelled; yonder up adds --security-opt label=disable for dev containers, but containers you start yourself need it (or :z)",
                Some("for your own containers: podman run --security-opt label=disable …".into()),
            ));
        }
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        if uid != 0 {
            let user = std::env::var("USER").unwrap_or_default();
            let mapped = std::fs::read_to_string("/etc/subuid").is_ok_and(|s| {
                s.lines().any(|l| {
                    l.starts_with(&format!("{user}:")) || l.starts_with(&format!("{uid}:"))
                })
            });
            if !mapped {
                out.push(finding(
                    "container-userns",
                    Some(false),
                    format!("rootless Podman: {user} has no range in /etc/subuid"),
                    "rootless containers need subordinate user ids for their user namespace",
                    Some(format!("sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user} && podman system migrate")),
                ));
            }
        }
    }
    let Some(ws) = workspace else { return out };
    let Ok(r) = crate::up::resolve(ws, None) else {
        return out;
    };
    let Some(image) = r.value.get("image").and_then(|v| v.as_str()) else {
        return out;
    };
    if !matches!(engine.inspect_image(image).await, Ok(Some(_))) {
        out.push(finding(
            "container-runs",
            None,
            format!("not checked: the image {image} is not present yet"),
            "yonder up pulls it; then doctor can run a test container",
            None,
        ));
        return out;
    }
    let mount = format!(
        "type=bind,source={},target=/yonder-doctor,readonly",
        r.workspace.display()
    );
    let mut args = vec!["run", "--rm", "--mount", mount.as_str()];
    if engine.kind == EngineKind::Podman {
        args.extend(["--security-opt", "label=disable"]);
    }
    args.extend([
        "--entrypoint",
        "/bin/sh",
        image,
        "-c",
        "ls -a /yonder-doctor",
    ]);
    match engine.run(&args).await {
        Ok(listing) => {
            out.push(finding(
                "container-runs",
                Some(true),
                format!("a test container of {image} runs"),
                "",
                None,
            ));
            if listing
                .lines()
                .any(|l| l == ".devcontainer" || l == ".devcontainer.json")
            {
                out.push(finding(
                    "container-file-sharing",
                    Some(true),
                    format!("{} is readable inside a container", r.workspace.display()),
                    "",
                    None,
                ));
            } else {
                out.push(finding(
                    "container-file-sharing",
                    Some(false),
                    format!("{} looks empty inside a container", r.workspace.display()),
                    "the engine cannot share this folder (Docker Desktop's file sharing settings, or a remote engine through DOCKER_HOST that sees its own disk)",
                    Some("share the folder in Docker Desktop (Settings > Resources > File sharing), or keep the project on the engine's host".into()),
                ));
            }
        }
        Err(e) => out.push(finding(
            "container-runs",
            Some(false),
            format!("a test container of {image} does not run: {e}"),
            "dev containers of this project cannot start either",
            Some(format!(
                "run `{name} run --rm {image} true` to see the engine's own error"
            )),
        )),
    }
    out
}
