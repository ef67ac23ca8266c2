//! `yonder exec`.

use crate::cli::ExecArgs;
use crate::{connect, exit_with};
use anyhow::Context as _;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use yonder_client::{ExecRequest, ProcessEvent};

/// Signals that a terminal user sends to "the program": forwarded to the
/// remote program instead of killing the local client.
const FORWARDED: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

pub async fn run(run_dir: Option<&Path>, args: ExecArgs) -> anyhow::Result<()> {
    let (target, client) = connect(run_dir, &args.target).await?;
    let mut argv = args.argv.into_iter();
    let program = argv.next().context("no program given")?;
    let program = std::path::PathBuf::from(program);
    let mut req = ExecRequest::new(program.clone()).args(argv);
    for kv in &args.env {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--env {kv:?}: expected NAME=VALUE"))?;
        req.env.push((k.into(), v.into()));
    }
    req.cwd = match args.cwd {
        Some(c) if target.is_local() => Some(std::path::absolute(&c)?),
        Some(c) => Some(c),
        None if target.is_local() => Some(std::env::current_dir()?),
        // In a dev container, programs start in the workspace (as the
        // reference CLI's `exec` does).
        None => crate::devcontainer_cmd::workspace_folder(&target).map(Into::into),
    };
    // Like a shell: 127 when the program is missing, 126 when it cannot run.
    let mut proc = match client.exec(req).await {
        Ok(p) => p,
        Err(e) => {
            use yonder_proto::pb::ErrorKind;
            let about_program = e.path.as_deref() == Some(program.as_path());
            let code = match e.kind {
                ErrorKind::NotFound if about_program => 127,
                ErrorKind::PermissionDenied if about_program => 126,
                _ => crate::EXIT_FAILURE.into(),
            };
            eprintln!("yonder: {e}");
            return Err(exit_with(code));
        }
    };
    let control = proc.control();

    if args.no_stdin {
        control.close_stdin().await?;
    } else {
        let c = control.clone();
        tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match stdin.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = c.close_stdin().await;
                        return;
                    }
                    Ok(n) => {
                        if c.write_stdin(bytes::Bytes::copy_from_slice(&buf[..n]))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
    }
    for sig in FORWARDED {
        let c = control.clone();
        if let Ok(mut s) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(sig))
        {
            tokio::spawn(async move {
                while s.recv().await.is_some() {
                    let _ = c.signal(sig).await;
                }
            });
        }
    }

    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    while let Some(ev) = proc.next_event().await {
        match ev? {
            ProcessEvent::Stdout(b) => {
                stdout.write_all(&b).await?;
                stdout.flush().await?;
            }
            ProcessEvent::Stderr(b) => {
                stderr.write_all(&b).await?;
                stderr.flush().await?;
            }
            ProcessEvent::Exit(status) => {
                stdout.flush().await?;
                let code = status.as_shell_code();
                return if code == 0 {
                    Ok(())
                } else {
                    Err(exit_with(code))
                };
            }
        }
    }
    anyhow::bail!("the program's exit status never arrived")
}
