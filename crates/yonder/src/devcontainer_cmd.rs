//! `yonder up`, `read-configuration`, `stop`, `down` and `ps`: dev containers.

use crate::cli::{DevContainerArgs, UpArgs};
use crate::{EXIT_FAILURE, Exit};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;
use yonder_devcontainer::engine::Engine;
use yonder_devcontainer::up::{self, UpOptions};

fn fail(json_out: bool, e: anyhow::Error) -> anyhow::Error {
    if json_out {
        // The reference CLI's error shape, for tools that read stdout.
        println!(
            "{}",
            json!({
                "outcome": "error",
                "message": format!("{e:#}"),
                "description": "An error occurred setting up the container.",
            })
        );
    }
    anyhow::Error::new(Exit {
        code: EXIT_FAILURE,
        error: Some(e),
    })
}

fn resolve(a: &DevContainerArgs) -> anyhow::Result<up::Resolved> {
    Ok(up::resolve(&a.workspace_folder, a.config.as_deref())?)
}

fn engine(p: Option<&Path>) -> anyhow::Result<Engine> {
    Ok(Engine::detect(p)?)
}

pub async fn up(run_dir: Option<&Path>, a: UpArgs) -> anyhow::Result<()> {
    // `up` always prints one JSON line, like the reference CLI.
    let started = Instant::now();
    let r = resolve(&a.common).map_err(|e| fail(true, e))?;
    let engine = engine(a.common.docker_path.as_deref()).map_err(|e| fail(true, e))?;
    let opts = UpOptions {
        remove_existing: a.remove_existing,
        rebuild: a.rebuild,
        skip_non_blocking: a.skip_non_blocking_commands,
        skip_post_attach: a.skip_post_attach,
    };
    let outcome = up::up(&engine, &r, &opts)
        .await
        .map_err(|e| fail(true, e.into()))?;
    let version = yonder_proto::YONDER_VERSION;
    if !a.no_server && !up::server_known(&r.devcontainer_id, &outcome.container_id, version) {
        // Connecting once installs the server (or finds it installed), so
        // the first `yonder exec` after `up` answers at once.
        let target = format!("devcontainer:{}", r.workspace.display());
        if outcome.created {
            eprintln!("Installing the yonder server in the container...");
        }
        // The engine the user chose also carries the connection.
        let (_, client) = crate::connect_with(run_dir, &target, Some(&engine.program))
            .await
            .map_err(|e| fail(true, e))?;
        client.info().await.map_err(|e| fail(true, e.into()))?;
        up::note_server(&r.devcontainer_id, &outcome.container_id, version);
    }
    if let Some(alias) = a.ssh_alias {
        let target = format!("devcontainer:{}", r.workspace.display());
        crate::bridge_cmd::add_alias(&target, Some(alias), None, true)
            .map_err(|e| fail(true, e))?;
    }
    eprintln!(
        "Dev container {} is up ({:.1} s)",
        up::short(&outcome.container_id),
        started.elapsed().as_secs_f64()
    );
    println!("{}", outcome.json());
    Ok(())
}

/// Where tools start in a dev container: its workspace folder (`None` for
/// other targets, or when the config cannot be read).
pub fn workspace_folder(t: &yonder_target::Target) -> Option<String> {
    match t {
        yonder_target::Target::DevContainer { folder } => {
            up::resolve(folder, None).ok().map(|r| r.workspace_folder)
        }
        _ => None,
    }
}

pub async fn read_configuration(a: DevContainerArgs) -> anyhow::Result<()> {
    let r = resolve(&a)?;
    for w in &r.file.warnings {
        eprintln!("warning: {w}");
    }
    // Merging needs the engine; without one the config alone is printed.
    let engine = Engine::detect(a.docker_path.as_deref()).ok();
    let v = up::read_configuration(engine.as_ref(), &r).await;
    if a.json {
        println!("{v}");
    } else {
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(())
}

pub async fn stop(a: DevContainerArgs) -> anyhow::Result<()> {
    let r = resolve(&a)?;
    let engine = engine(a.docker_path.as_deref())?;
    match up::stop(&engine, &r).await? {
        Some(id) => eprintln!("Stopped dev container {}", up::short(&id)),
        None => eprintln!("No dev container for {}", r.workspace.display()),
    }
    Ok(())
}

pub async fn down(a: DevContainerArgs, volumes: bool) -> anyhow::Result<()> {
    let r = resolve(&a)?;
    let engine = engine(a.docker_path.as_deref())?;
    match up::down(&engine, &r, volumes).await? {
        Some(id) => eprintln!("Removed dev container {}", up::short(&id)),
        None => eprintln!("No dev container for {}", r.workspace.display()),
    }
    Ok(())
}

pub async fn ps(docker_path: Option<PathBuf>, json_out: bool) -> anyhow::Result<()> {
    let engine = engine(docker_path.as_deref())?;
    let list = up::list(&engine).await?;
    if json_out {
        let v: Vec<_> = list
            .iter()
            .map(|c| {
                json!({
                    "containerId": c.id,
                    "name": c.name,
                    "state": c.status,
                    "folder": c.labels.get(up::LABEL_FOLDER),
                    "configFile": c.labels.get(up::LABEL_CONFIG),
                    "image": c.image,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(());
    }
    println!("{:<14}{:<10}FOLDER", "CONTAINER", "STATE");
    for c in &list {
        println!(
            "{:<14}{:<10}{}",
            up::short(&c.id),
            c.status,
            c.labels.get(up::LABEL_FOLDER).map_or("", String::as_str)
        );
    }
    Ok(())
}
