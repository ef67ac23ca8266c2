//! `yonder web TARGET [FOLDER]`: serves the browser workbench for the target
//! on 127.0.0.1 (see the `yonder-web` crate) and opens a browser.

use crate::cli::WebArgs;
use crate::{EXIT_USAGE, Exit, connect_prompting};
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use yonder_client::{Client, FileType};
use yonder_target::Target;
use yonder_target::askpass::Prompter;
use yonder_web::{Prompts, WebOptions, WebServer};

pub async fn run(run_dir: Option<&Path>, args: WebArgs) -> anyhow::Result<()> {
    // A target that cannot be parsed is a usage error, said at once.
    let target: Target = args.target.parse().map_err(|e| {
        anyhow::Error::new(Exit {
            code: EXIT_USAGE,
            error: Some(anyhow::Error::new(e)),
        })
    })?;
    // The page is served before the target is reached: ssh's questions
    // (password, passphrase, 2FA, host key) are asked in it.
    let prompts = Prompts::new();
    let prompter = prompts.prompter(target.to_string());
    let run_dir_owned = run_dir.map(Path::to_path_buf);
    let target_arg = args.target.clone();
    let folder_arg = args.folder.clone();
    // The first call opens the workbench; when the link to the target drops
    // (ssh killed, network gone) later calls connect again the same way.
    let connector: yonder_web::Connector = std::sync::Arc::new(move || {
        let run_dir = run_dir_owned.clone();
        let target = target_arg.clone();
        let folder = folder_arg.clone();
        let prompter = prompter.clone();
        Box::pin(async move {
            open_folder(run_dir.as_deref(), &target, folder.as_deref(), prompter)
                .await
                .map_err(|e| format!("{e:#}"))
        })
    });
    let server = WebServer::bind(
        connector,
        prompts,
        WebOptions {
            port: args.port,
            target: target.to_string(),
        },
    )
    .await?;
    let url = server.url();
    eprintln!(
        "yonder web: {target} at http://{} (Ctrl-C stops it)",
        server.local_addr()
    );
    // The URL (with its one-time token) alone on stdout, for scripts.
    println!("{url}");
    if !args.no_open && has_display() {
        open_browser(&url);
    }
    tokio::select! {
        r = server.run() => r.context("serving the workbench"),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// Connects to `target` and resolves the workspace folder on it.
async fn open_folder(
    run_dir: Option<&Path>,
    target: &str,
    folder: Option<&Path>,
    prompter: Prompter,
) -> anyhow::Result<(Client, PathBuf)> {
    let (target, client) = connect_prompting(run_dir, target, None, prompter).await?;
    // As elsewhere in the CLI: on `local` a relative folder means the
    // current directory, on other targets the home directory (the daemon's
    // working directory, which `canonicalize(".")` resolves).
    let folder = match (folder, target.is_local()) {
        (Some(f), true) => std::path::absolute(f)?,
        (Some(f), false) => f.to_path_buf(),
        (None, true) => std::env::current_dir().context("reading the current directory")?,
        (None, false) => ".".into(),
    };
    let root = client
        .canonicalize(&folder)
        .await
        .with_context(|| format!("opening {} on {target}", folder.display()))?;
    let meta = client.stat(&root, true).await?;
    if meta.file_type() != FileType::Directory {
        anyhow::bail!("{} on {target} is not a folder", root.display());
    }
    Ok((client, root))
}

/// A graphical session to open a browser in (X11 or Wayland).
fn has_display() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

fn open_browser(url: &str) {
    let r = std::process::Command::new("xdg-open")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match r {
        // Reap it when it ends (xdg-open returns once the browser has it).
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
        }
        Err(e) => {
            eprintln!("yonder web: could not open a browser ({e}); open the URL above yourself")
        }
    }
}
