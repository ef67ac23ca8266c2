//! `yonder web TARGET [FOLDER]`: serves the browser workbench for the target
//! on 127.0.0.1 (see the `yonder-web` crate) and opens a browser.

use crate::cli::WebArgs;
use crate::connect;
use anyhow::Context as _;
use std::path::Path;
use yonder_client::FileType;
use yonder_web::{WebOptions, WebServer};

pub async fn run(run_dir: Option<&Path>, args: WebArgs) -> anyhow::Result<()> {
    let (target, client) = connect(run_dir, &args.target).await?;
    // As elsewhere in the CLI: on `local` a relative folder means the
    // current directory, on other targets the home directory (the daemon's
    // working directory, which `canonicalize(".")` resolves).
    let folder = match (&args.folder, target.is_local()) {
        (Some(f), true) => std::path::absolute(f)?,
        (Some(f), false) => f.clone(),
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
    // When the link to the target drops (ssh killed, network gone), the
    // server connects again the same way.
    let run_dir_owned = run_dir.map(Path::to_path_buf);
    let target_arg = args.target.clone();
    let connector: yonder_web::Connector = std::sync::Arc::new(move || {
        let run_dir = run_dir_owned.clone();
        let target = target_arg.clone();
        Box::pin(async move {
            connect(run_dir.as_deref(), &target)
                .await
                .map(|(_, c)| c)
                .map_err(|e| format!("{e:#}"))
        })
    });
    let server = WebServer::bind(
        client,
        Some(connector),
        WebOptions {
            port: args.port,
            root: root.clone(),
            target: target.to_string(),
        },
    )
    .await?;
    let url = server.url();
    eprintln!(
        "yonder web: {target}:{} at http://{} (Ctrl-C stops it)",
        root.display(),
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
