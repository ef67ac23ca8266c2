//! `yonder shell` and `yonder terminals`.

use crate::cli::TerminalsOp;
use crate::{EXIT_UNREACHABLE, Exit, connect, exit_with};
use std::ffi::OsString;
use std::io::IsTerminal;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use yonder_client::Client;
use yonder_client::terminal::{OpenTerminal, TerminalEvent};
use yonder_target::Target;

/// Puts the local terminal in raw mode and restores it on drop (also when
/// unwinding), so a crash never leaves the user's terminal unusable.
struct RawMode {
    fd: i32,
    saved: libc::termios,
}

impl RawMode {
    fn enable() -> Option<Self> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        let fd = stdin.as_raw_fd();
        // SAFETY: tcgetattr/tcsetattr on our own stdin with valid termios
        // out-parameters.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut saved) != 0 {
                return None;
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            if libc::tcsetattr(fd, libc::TCSANOW, &raw) != 0 {
                return None;
            }
            Some(Self { fd, saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restoring the attributes we saved from the same fd.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

/// The local window size, when stdout or stdin is a terminal.
fn window_size() -> Option<(u16, u16)> {
    for fd in [libc::STDOUT_FILENO, libc::STDIN_FILENO, libc::STDERR_FILENO] {
        // SAFETY: TIOCGWINSZ writes a winsize into a valid out-parameter.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0
            && ws.ws_row > 0
            && ws.ws_col > 0
        {
            return Some((ws.ws_row, ws.ws_col));
        }
    }
    None
}

pub async fn shell(
    run_dir: Option<&Path>,
    target: &str,
    cwd: Option<PathBuf>,
    command: Vec<OsString>,
) -> anyhow::Result<()> {
    let (t, client) = connect(run_dir, target).await?;
    // A dev container's forwardPorts are forwarded while the shell runs
    // (the reference CLI has no forwarding at all; VS Code does this).
    let ports = crate::forward_cmd::devcontainer_ports(target)?;
    crate::forward_cmd::forward_ports(&client, ports).await?;
    let cwd = cwd.or_else(|| crate::devcontainer_cmd::workspace_folder(&t).map(PathBuf::from));
    let (rows, cols) = window_size().unwrap_or((24, 80));
    let mut argv = command.into_iter();
    let program = argv.next().map(PathBuf::from);
    let cwd = match cwd {
        Some(c) if t.is_local() => Some(std::path::absolute(c)?),
        Some(c) => Some(c),
        None if t.is_local() => Some(std::env::current_dir()?),
        None => None,
    };
    let mut env = Vec::new();
    if let Some(term) = std::env::var_os("TERM") {
        env.push(("TERM".into(), term));
    }
    if let Some(ct) = std::env::var_os("COLORTERM") {
        env.push(("COLORTERM".into(), ct));
    }
    let info = client
        .open_terminal(OpenTerminal {
            program,
            args: argv.collect(),
            cwd,
            env,
            rows,
            cols,
        })
        .await?;
    attach(run_dir, &client, &t, target, &info.id).await
}

/// Pauses between reconnect attempts after a dropped connection: quick at
/// first (a blip), then every 8 s; about two minutes in all, enough for a
/// Wi-Fi handover, a VPN reconnect or a laptop waking up. After that yonder
/// gives up; the terminal keeps running on the target.
const RECONNECT_DELAYS_MS: [u64; 18] = [
    250, 500, 1000, 2000, 4000, 8000, 8000, 8000, 8000, 8000, 8000, 8000, 8000, 8000, 8000, 8000,
    8000, 8000,
];

/// What the local terminal sends while attached.
enum Input {
    Data(bytes::Bytes),
    Resize(u16, u16),
}

/// Attaches this process's terminal to a remote one until it exits. When
/// the connection drops, shows that it is reconnecting, reconnects with
/// backoff and resumes from the last byte it showed, so the output from the
/// gap is replayed once and nothing is repeated.
async fn attach(
    run_dir: Option<&Path>,
    client: &Client,
    t: &Target,
    target: &str,
    id: &str,
) -> anyhow::Result<()> {
    let mut session = client.attach_terminal(id, None).await?;
    if let Some((rows, cols)) = window_size() {
        let _ = session.writer().resize(rows, cols).await;
    }
    let raw = RawMode::enable();
    let (in_tx, mut in_rx) = tokio::sync::mpsc::channel::<Input>(64);
    let tx = in_tx.clone();
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx
                        .send(Input::Data(bytes::Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    if let Ok(mut winch) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
    {
        let tx = in_tx.clone();
        tokio::spawn(async move {
            while winch.recv().await.is_some() {
                if let Some((rows, cols)) = window_size()
                    && tx.send(Input::Resize(rows, cols)).await.is_err()
                {
                    return;
                }
            }
        });
    }
    drop(in_tx);
    let mut stdout = tokio::io::stdout();
    let mut next_offset: Option<u64> = None;
    let result = 'session: loop {
        let w = session.writer();
        let ev = tokio::select! {
            ev = session.next() => ev,
            Some(input) = in_rx.recv() => {
                // Input typed while the link is down has nowhere to go; it
                // is dropped rather than replayed late into a shell.
                let _ = match input {
                    Input::Data(d) => w.write(d).await,
                    Input::Resize(r, c) => w.resize(r, c).await,
                };
                continue;
            }
        };
        match ev {
            Some(Ok(TerminalEvent::Data { offset, data })) => {
                stdout.write_all(&data).await?;
                stdout.flush().await?;
                next_offset = Some(offset + data.len() as u64);
            }
            Some(Ok(TerminalEvent::Lost(n))) => {
                stdout
                    .write_all(
                        format!("\r\n[yonder: {n} bytes of output were dropped]\r\n").as_bytes(),
                    )
                    .await?;
            }
            Some(Ok(TerminalEvent::Exit(status))) => break Ok(status.as_shell_code()),
            None => break Ok(0),
            Some(Err(e)) => {
                let msg =
                    format!("\r\n[yonder: lost the connection to {t} ({e}); reconnecting...]\r\n");
                stdout.write_all(msg.as_bytes()).await?;
                stdout.flush().await?;
                for delay in RECONNECT_DELAYS_MS {
                    tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                    let Ok((_, c)) = connect(run_dir, target).await else {
                        continue;
                    };
                    match c.attach_terminal(id, next_offset).await {
                        Ok(s) => {
                            session = s;
                            if let Some((rows, cols)) = window_size() {
                                let _ = session.writer().resize(rows, cols).await;
                            }
                            stdout.write_all(b"[yonder: reconnected]\r\n").await?;
                            stdout.flush().await?;
                            continue 'session;
                        }
                        Err(err) if err.kind == yonder_proto::pb::ErrorKind::NotFound => {
                            // Reached the target, but the terminal is gone:
                            // it exited (or was killed) while we were away.
                            break 'session Err(err);
                        }
                        Err(_) => continue,
                    }
                }
                break Err(e);
            }
        }
    };
    drop(raw);
    match result {
        Ok(0) => Ok(()),
        Ok(code) => Err(exit_with(code)),
        Err(e) if e.kind == yonder_proto::pb::ErrorKind::NotFound => {
            Err(anyhow::Error::new(Exit {
                code: EXIT_UNREACHABLE,
                error: Some(anyhow::anyhow!(
                    "terminal {id} on {t} ended while the connection was down"
                )),
            }))
        }
        Err(e) => Err(anyhow::Error::new(Exit {
            code: EXIT_UNREACHABLE,
            error: Some(anyhow::anyhow!(
                "lost the connection to {t} ({e}) and could not reconnect; terminal {id} keeps \
                 running there: re-attach with `yonder terminals {target} attach {id}`"
            )),
        })),
    }
}

pub async fn terminals(
    run_dir: Option<&Path>,
    target: &str,
    json: bool,
    op: Option<TerminalsOp>,
) -> anyhow::Result<()> {
    let (t, client) = connect(run_dir, target).await?;
    match op {
        Some(TerminalsOp::Attach { id }) => attach(run_dir, &client, &t, target, &id).await,
        Some(TerminalsOp::Kill { id }) => Ok(client.kill_terminal(&id, 0).await?),
        None => {
            let list = client.list_terminals().await?;
            if json {
                let v: Vec<_> = list
                    .iter()
                    .map(|i| {
                        serde_json::json!({
                            "id": i.id, "pid": i.pid, "command": i.command,
                            "cwd": String::from_utf8_lossy(&i.cwd),
                            "started": crate::format::utc(i.started_ns),
                            "attached": i.attached,
                            "rows": i.size.map(|s| s.rows), "cols": i.size.map(|s| s.cols),
                            "output_bytes": i.output_end,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            if list.is_empty() {
                eprintln!("no terminals on {t}");
                return Ok(());
            }
            println!(
                "{:<8}  {:>7}  {:<19}  {:<8}  {:<24}  COMMAND",
                "ID", "PID", "STARTED (UTC)", "ATTACHED", "CWD"
            );
            for i in list {
                let started = crate::format::utc(i.started_ns);
                println!(
                    "{:<8}  {:>7}  {:<19}  {:<8}  {:<24}  {}",
                    i.id,
                    i.pid,
                    &started[..19],
                    if i.attached > 0 {
                        format!("yes ({})", i.attached)
                    } else {
                        "no".into()
                    },
                    String::from_utf8_lossy(&i.cwd),
                    i.command
                );
            }
            Ok(())
        }
    }
}
