//! `yonder doctor [TARGET] [--fix] [--yes] [--json]`: runs the checks of
//! `yonder_doctor`, prints each with its why and fix, applies fixes on
//! request, and exits 1 when a problem remains.

use crate::cli::DoctorArgs;
use anyhow::Context as _;
use std::io::IsTerminal as _;
use yonder_doctor::{Check, FixAction, Paths, Status};

async fn gather(paths: &Paths, target: Option<&str>) -> anyhow::Result<Vec<Check>> {
    // `local` is this machine: the local checks are all there is.
    let target = target.filter(|t| *t != "local");
    let mut checks = {
        let paths = paths.clone();
        tokio::task::spawn_blocking(move || yonder_doctor::local::check(&paths)).await?
    };
    // Containers: with a container target, or in a folder with a dev
    // container definition.
    let container_target = target.is_some_and(|t| {
        matches!(
            t.parse::<yonder_target::Target>(),
            Ok(yonder_target::Target::Container { .. }
                | yonder_target::Target::DevContainer { .. })
        )
    });
    let devcontainer_here = [".devcontainer/devcontainer.json", ".devcontainer.json"]
        .iter()
        .any(|p| std::path::Path::new(p).is_file());
    if container_target || devcontainer_here {
        let mut found = yonder_doctor::local::container_engine();
        let engine_ok = found.status == Status::Ok;
        // Name the engine containers will really use: the same detection as
        // `yonder up` (docker only when its daemon can answer, else podman).
        let detected = yonder_devcontainer::engine::Engine::detect(None).ok();
        if let (true, Some(e)) = (engine_ok, &detected) {
            found.summary = format!("container engine: {}", e.program.display());
        }
        checks.push(found);
        if let (true, Some(engine)) = (engine_ok, detected) {
            let ws = devcontainer_here.then(|| std::path::Path::new("."));
            for f in yonder_devcontainer::doctor::check(&engine, ws).await {
                let mut c = match f.ok {
                    Some(true) => Check::ok(f.id, f.summary),
                    Some(false) => Check::problem(f.id, f.summary, f.why),
                    None => Check::warning(f.id, f.summary, f.why),
                };
                if let Some(fix) = f.fix {
                    c = c.with_fix(yonder_doctor::Fix::manual(fix));
                }
                checks.push(c);
            }
        }
    }
    if let Some(t) = target.filter(|_| !container_target) {
        let (paths, t2) = (paths.clone(), t.to_string());
        let interactive = std::io::stdin().is_terminal();
        let remote = tokio::task::spawn_blocking(move || {
            yonder_doctor::remote::check(&paths, &t2, interactive)
        })
        .await?
        .with_context(|| format!("checking {t}"))?;
        checks.extend(remote);
    }
    Ok(checks)
}

fn print_human(checks: &[Check]) {
    for c in checks {
        println!("{:<8} {}", c.status.label(), c.summary);
        if c.status != Status::Ok && !c.why.is_empty() {
            println!("         why: {}", c.why);
        }
        if let Some(f) = &c.fix {
            println!(
                "         fix: {}{}",
                f.command,
                if f.automatic {
                    "  (yonder doctor --fix does this)"
                } else {
                    ""
                }
            );
        }
    }
    let problems = checks
        .iter()
        .filter(|c| c.status == Status::Problem)
        .count();
    let warnings = checks
        .iter()
        .filter(|c| c.status == Status::Warning)
        .count();
    println!("{problems} problem(s), {warnings} warning(s)");
}

fn ask(question: &str) -> bool {
    if !std::io::stdin().is_terminal() {
        return false;
    }
    yonder_target::askpass::ask_on_terminal(&format!("{question} (yes/no) "))
        .is_some_and(|a| matches!(a.trim(), "y" | "yes" | "Y" | "YES" | "Yes"))
}

pub async fn run(args: DoctorArgs) -> anyhow::Result<()> {
    let paths = Paths::from_env().context("HOME is not set: cannot find ~/.ssh")?;
    let mut checks = gather(&paths, args.target.as_deref()).await?;
    let mut applied: Vec<String> = Vec::new();
    if args.fix {
        if !args.json {
            print_human(&checks);
            println!();
        }
        let mut done_multiplex = false;
        for c in &checks {
            let Some(fix) = &c.fix else { continue };
            let Some(action) = &fix.action else { continue };
            if c.status == Status::Ok {
                continue;
            }
            if matches!(action, FixAction::Multiplex { .. }) {
                if done_multiplex {
                    continue;
                }
                done_multiplex = true;
            }
            if !args.yes && !ask(&format!("apply `{}`?", fix.command)) {
                if !args.json {
                    println!("skipped: {}", fix.command);
                }
                continue;
            }
            let result = match action {
                FixAction::RemoteChmod { host, path, mode } => {
                    yonder_doctor::remote::apply_remote_chmod(&paths, host, path, mode)
                        .await
                        .map(|()| format!("{host}: chmod {mode} {path}"))
                        .map_err(|e| e.to_string())
                }
                other => yonder_doctor::local::apply(&paths, other),
            };
            match result {
                Ok(msg) => {
                    if !args.json {
                        println!("fixed: {msg}");
                    }
                    applied.push(msg);
                }
                Err(e) => eprintln!("yonder: could not apply `{}`: {e}", fix.command),
            }
        }
        // What is true now.
        checks = gather(&paths, args.target.as_deref()).await?;
        if !args.json {
            println!("\nafter the fixes:");
        }
    }
    if args.json {
        let problems = checks
            .iter()
            .filter(|c| c.status == Status::Problem)
            .count();
        let warnings = checks
            .iter()
            .filter(|c| c.status == Status::Warning)
            .count();
        let v = serde_json::json!({
            "checks": checks,
            "problems": problems,
            "warnings": warnings,
            "fixed": applied,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_human(&checks);
    }
    if yonder_doctor::has_problem(&checks) {
        return Err(crate::exit_with(i32::from(crate::EXIT_FAILURE)));
    }
    Ok(())
}
