//! The container engine, driven through its docker-compatible CLI.
//!
//! yonder never talks to an engine's API: it runs `docker` or `podman` the
//! way a user would, so a remote engine through `DOCKER_HOST` (including
//! `ssh://`), rootless Podman and Docker contexts all work unchanged.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "no container engine found: neither docker nor podman is on PATH. Install one (Debian/Ubuntu: `sudo apt-get install podman`), or point --docker-path (or YONDER_DOCKER_PATH) at it"
    )]
    Missing,
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("`{program} {args}` failed ({status}): {stderr}")]
    Failed {
        program: PathBuf,
        args: String,
        status: String,
        stderr: String,
    },
    #[error("{program} printed something unexpected for `{what}`: {detail}")]
    Unexpected {
        program: PathBuf,
        what: String,
        detail: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Docker,
    Podman,
}

/// A docker-compatible CLI.
#[derive(Debug, Clone)]
pub struct Engine {
    pub program: PathBuf,
    pub kind: EngineKind,
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl Engine {
    /// `explicit` (`--docker-path`), else `YONDER_DOCKER_PATH`, else `docker`
    /// when its daemon answers, else `podman`, else whichever exists.
    pub fn detect(explicit: Option<&Path>) -> Result<Engine, EngineError> {
        let chosen = explicit.map(Path::to_path_buf).or_else(|| {
            std::env::var_os("YONDER_DOCKER_PATH")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        let program = match chosen {
            Some(p) => {
                if p.components().count() > 1 && !p.is_file() {
                    return Err(EngineError::Spawn {
                        program: p,
                        source: std::io::Error::from(std::io::ErrorKind::NotFound),
                    });
                }
                p
            }
            None => {
                let docker = on_path("docker");
                let podman = on_path("podman");
                match (docker, podman) {
                    (Some(d), Some(p)) => {
                        // A docker client with no daemon behind it is common
                        // (this project's CI has one); Podman then does the work.
                        // Without DOCKER_HOST or the default socket there is
                        // nothing to ask (saves ~80 ms per command).
                        let maybe = std::env::var_os("DOCKER_HOST").is_some_and(|v| !v.is_empty())
                            || std::env::var_os("DOCKER_CONTEXT").is_some()
                            || Path::new("/var/run/docker.sock").exists();
                        let answers = maybe
                            && std::process::Command::new(&d)
                                .args(["version", "--format", "{{.Server.Version}}"])
                                .stdin(Stdio::null())
                                .stdout(Stdio::null())
                                .stderr(Stdio::null())
                                .status()
                                .is_ok_and(|s| s.success());
                        if answers { d } else { p }
                    }
                    (Some(d), None) => d,
                    (None, Some(p)) => p,
                    (None, None) => return Err(EngineError::Missing),
                }
            }
        };
        let name = program
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let kind = if name.contains("podman") {
            EngineKind::Podman
        } else {
            // `docker` may be Podman's docker-compatible wrapper.
            let out = std::process::Command::new(&program)
                .arg("-v")
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .map_err(|source| {
                    if source.kind() == std::io::ErrorKind::NotFound {
                        EngineError::Missing
                    } else {
                        EngineError::Spawn {
                            program: program.clone(),
                            source,
                        }
                    }
                })?;
            if String::from_utf8_lossy(&out.stdout)
                .to_lowercase()
                .contains("podman")
            {
                EngineKind::Podman
            } else {
                EngineKind::Docker
            }
        };
        Ok(Engine { program, kind })
    }

    pub fn command(&self) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.program);
        c.stdin(Stdio::null()).kill_on_drop(true);
        c
    }

    /// Runs the CLI and returns its stdout; a failure carries its stderr.
    pub async fn run<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Result<String, EngineError> {
        let mut c = self.command();
        c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        let out = c
            .output()
            .await
            .map_err(|source| self.spawn_error(source))?;
        if !out.status.success() {
            return Err(self.failed(args, &out.status, &out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs the CLI with its output going to our stderr (build logs).
    pub async fn run_visible<S: AsRef<std::ffi::OsStr>>(
        &self,
        args: &[S],
    ) -> Result<(), EngineError> {
        let mut c = self.command();
        c.args(args)
            .stdout(Stdio::from(std::io::stderr().as_fd_owned()));
        c.stderr(Stdio::inherit());
        let status = c
            .status()
            .await
            .map_err(|source| self.spawn_error(source))?;
        if !status.success() {
            return Err(self.failed(args, &status, b"see the output above"));
        }
        Ok(())
    }

    pub fn spawn_error(&self, source: std::io::Error) -> EngineError {
        if source.kind() == std::io::ErrorKind::NotFound {
            EngineError::Missing
        } else {
            EngineError::Spawn {
                program: self.program.clone(),
                source,
            }
        }
    }

    fn failed<S: AsRef<std::ffi::OsStr>>(
        &self,
        args: &[S],
        status: &std::process::ExitStatus,
        stderr: &[u8],
    ) -> EngineError {
        let args: Vec<String> = args
            .iter()
            .take(4)
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        EngineError::Failed {
            program: self.program.clone(),
            args: args.join(" "),
            status: status.to_string(),
            stderr: String::from_utf8_lossy(stderr).trim().to_string(),
        }
    }

    /// Ids of containers (running or not) carrying every label.
    pub async fn find(&self, labels: &[(String, String)]) -> Result<Vec<String>, EngineError> {
        let mut args = vec![
            "ps".to_string(),
            "-a".into(),
            "-q".into(),
            "--no-trunc".into(),
        ];
        for (k, v) in labels {
            args.push("--filter".into());
            args.push(if v.is_empty() {
                format!("label={k}")
            } else {
                format!("label={k}={v}")
            });
        }
        Ok(self
            .run(&args)
            .await?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect())
    }

    /// `inspect` of containers; missing ones are simply absent.
    pub async fn inspect(&self, ids: &[String]) -> Result<Vec<Container>, EngineError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec!["inspect".to_string(), "--type".into(), "container".into()];
        args.extend(ids.iter().cloned());
        let mut c = self.command();
        c.args(&args).stdout(Stdio::piped()).stderr(Stdio::piped());
        let out = c
            .output()
            .await
            .map_err(|source| self.spawn_error(source))?;
        // With several ids, one missing makes the command fail but the
        // others are still printed.
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(vec![]));
        let list: Vec<Container> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Container::from_inspect)
            .collect();
        if list.is_empty() && !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.contains("no such") || stderr.contains("No such") {
                return Ok(Vec::new());
            }
            return Err(self.failed(&args, &out.status, &out.stderr));
        }
        Ok(list)
    }

    /// `inspect --type image`, or `None` when the image is not present.
    pub async fn inspect_image(&self, image: &str) -> Result<Option<Value>, EngineError> {
        let mut c = self.command();
        c.args(["inspect", "--type", "image", image])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let out = c
            .output()
            .await
            .map_err(|source| self.spawn_error(source))?;
        if !out.status.success() {
            return Ok(None);
        }
        let v: Value =
            serde_json::from_slice(&out.stdout).map_err(|e| EngineError::Unexpected {
                program: self.program.clone(),
                what: format!("inspect {image}"),
                detail: e.to_string(),
            })?;
        Ok(v.as_array().and_then(|a| a.first()).cloned())
    }
}

/// What yonder needs from `inspect` of a container.
#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub image: String,
    pub created: String,
    pub started_at: String,
    pub status: String,
    pub running: bool,
    pub labels: BTreeMap<String, String>,
    pub env: Vec<String>,
    pub user: String,
}

impl Container {
    pub fn from_inspect(v: &Value) -> Option<Container> {
        let s = |p: &str| {
            v.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let id = s("/Id");
        if id.is_empty() {
            return None;
        }
        let labels = v
            .pointer("/Config/Labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let env = v
            .pointer("/Config/Env")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        Some(Container {
            name: s("/Name").trim_start_matches('/').to_string(),
            image: s("/Config/Image"),
            created: s("/Created"),
            started_at: s("/State/StartedAt"),
            status: s("/State/Status"),
            running: v
                .pointer("/State/Running")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            labels,
            env,
            user: s("/Config/User"),
            id,
        })
    }

    /// The value of `VAR` in the container's environment.
    pub fn env_var(&self, var: &str) -> Option<String> {
        self.env.iter().find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == var).then(|| v.to_string())
        })
    }
}

trait AsFdOwned {
    fn as_fd_owned(&self) -> std::os::fd::OwnedFd;
}

impl AsFdOwned for std::io::Stderr {
    fn as_fd_owned(&self) -> std::os::fd::OwnedFd {
        use std::os::fd::AsFd;
        self.as_fd()
            .try_clone_to_owned()
            .expect("stderr can be duplicated")
    }
}
