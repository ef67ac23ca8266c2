//! Dev container projects for tests against real Podman: a project folder
//! with a devcontainer.json, yonder's state of its own, and the project's
//! containers removed when the test ends, pass or fail.
//!
//! The base image `localhost/yonder-test-base:bookworm-1` is a debootstrap'd
//! Debian that `scripts/setup` imports (no registry is reachable here).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const BASE: &str = "localhost/yonder-test-base:bookworm-1";

/// The Podman settings every test uses (`CONTAINERS_CONF`).
pub fn containers_conf() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/containers.conf")
}

pub fn podman() -> Command {
    let mut c = Command::new("podman");
    c.env("CONTAINERS_CONF", containers_conf());
    c
}

/// A project folder with a devcontainer.json; its containers are removed
/// when it is dropped.
pub struct Project {
    pub dir: tempfile::TempDir,
    /// yonder's state and runtime directories for this project.
    pub state: tempfile::TempDir,
}

impl Project {
    pub fn new(config: &str) -> Self {
        let dir = tempfile::Builder::new().prefix("dcproj").tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".devcontainer")).unwrap();
        std::fs::write(dir.path().join(".devcontainer/devcontainer.json"), config).unwrap();
        Project {
            dir,
            state: tempfile::tempdir().unwrap(),
        }
    }

    /// A project on the base image and nothing else.
    pub fn base() -> Self {
        Self::new(&format!(r#"{{"image": "{BASE}"}}"#))
    }

    pub fn path(&self) -> PathBuf {
        std::fs::canonicalize(self.dir.path()).unwrap()
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    pub fn target(&self) -> String {
        format!("devcontainer:{}", self.path().display())
    }

    /// The runtime folder of the root user's server in the container, as the
    /// host sees it through the folder `yonder up` shares with the container
    /// (its sockets and `daemon.log`).
    pub fn shared_root_run_dir(&self) -> PathBuf {
        self.state
            .path()
            .join("dc")
            .read_dir()
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|d| d.join(".engine").exists())
            .expect("a folder shared with the container")
            .join(format!("root-{}", env!("CARGO_PKG_VERSION")))
    }

    /// The workspace folder inside the container (the project, bind-mounted).
    pub fn workspace(&self) -> String {
        let name = self
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        format!("/workspaces/{name}")
    }

    /// The environment that points yonder at this project's state, as
    /// `NAME=VALUE` words for `env` in a shell command line.
    pub fn env_line(&self) -> String {
        format!(
            "CONTAINERS_CONF={} YONDER_STATE_DIR={} YONDER_RUNTIME_DIR={}",
            containers_conf().display(),
            self.state.path().display(),
            self.state.path().join("run").display()
        )
    }

    pub fn yonder(&self) -> Command {
        let mut c = Command::new(super::YONDER);
        c.env("CONTAINERS_CONF", containers_conf())
            .env("YONDER_STATE_DIR", self.state.path())
            .env("YONDER_RUNTIME_DIR", self.state.path().join("run"));
        c
    }

    /// `yonder up` of this project: exit code, its JSON line, stderr.
    pub fn up(&self, extra: &[&str]) -> (i32, Value, String) {
        let (code, out, err) = run_text(
            self.yonder()
                .args(["up", "--workspace-folder"])
                .arg(self.path())
                .args(extra),
        );
        let line = out.lines().last().unwrap_or("");
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("up printed no JSON line ({e}): {out:?}\n{err}"));
        (code, v, err)
    }

    pub fn up_ok(&self, extra: &[&str]) -> Value {
        let (code, v, err) = self.up(extra);
        assert_eq!(code, 0, "{v}\n{err}");
        assert_eq!(v["outcome"], "success", "{v}\n{err}");
        v
    }

    /// `yonder exec TARGET -- sh -c SCRIPT`'s stdout.
    pub fn sh(&self, script: &str) -> String {
        let (code, out, err) =
            run_text(
                self.yonder()
                    .args(["exec", &self.target(), "--", "sh", "-c", script]),
            );
        assert_eq!(code, 0, "{script}: {err}");
        out
    }
}

fn run_text(cmd: &mut Command) -> (i32, String, String) {
    let (code, out, err) = super::run(cmd);
    (code, String::from_utf8_lossy(&out).into_owned(), err)
}

impl Drop for Project {
    fn drop(&mut self) {
        let out = podman()
            .args(["ps", "-a", "-q", "--filter"])
            .arg(format!(
                "label=devcontainer.local_folder={}",
                self.path().display()
            ))
            .output()
            .unwrap();
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = podman().args(["rm", "-f", "-t", "0", id]).output();
        }
    }
}
