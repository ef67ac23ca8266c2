//! `yonder`: the one binary that is both the CLI and the server.
//!
//! This crate parses arguments, calls the libraries and maps errors to exit
//! codes; the work lives in `yonder-client`, `yonder-server` and
//! `yonder-target`.

mod bridge_cmd;
mod cli;
mod devcontainer_cmd;
mod doctor_cmd;
mod exec_cmd;
mod format;
mod forward_cmd;
mod fs_cmd;
mod fs_tree;
mod keys_cmd;
mod progress;
mod search_cmd;
mod terminal_cmd;
mod watch_cmd;
mod web_cmd;

use anyhow::Context as _;
use clap::{CommandFactory, Parser};
use cli::{Cli, Command, ServerCommand};
use std::process::ExitCode;
use std::time::Duration;
use yonder_client::Client;
use yonder_target::{ConnectOptions, Target};

/// Pauses before opening a stream again (a watch, a remote forward's
/// listener) after the connection to the target dropped; each attempt also
/// waits for the client's own redial. About two minutes in all.
pub const REOPEN_DELAYS_MS: [u64; 12] = [
    100, 500, 1000, 2000, 4000, 8000, 8000, 8000, 8000, 8000, 8000, 8000,
];

/// Exit code when the operation failed.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for usage errors (clap uses it too).
pub const EXIT_USAGE: u8 = 2;
/// Exit code when the target could not be reached: the same as ssh's, which
/// scripts around remote tools already know.
pub const EXIT_UNREACHABLE: u8 = 255;

/// An error that carries its exit code.
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub error: Option<anyhow::Error>,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.error {
            Some(e) => write!(f, "{e:#}"),
            None => write!(f, "exit {}", self.code),
        }
    }
}

impl std::error::Error for Exit {}

/// Leaves with `code` and no message (the program's own exit code).
pub fn exit_with(code: i32) -> anyhow::Error {
    anyhow::Error::new(Exit {
        code: u8::try_from(code & 0xff).unwrap_or(EXIT_FAILURE),
        error: None,
    })
}

/// This program's executable, to start the daemon from. When another
/// install of the same version replaced our file while we run (two first
/// connects at once), Linux reports the old path with " (deleted)": the
/// new file at that path is the same version, so it is used; failing that,
/// `/proc/self/exe` still reaches the running inode.
pub fn own_exe() -> std::io::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    if exe.exists() {
        return Ok(exe);
    }
    if let Some(p) = exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        let p = std::path::PathBuf::from(p);
        if p.exists() {
            return Ok(p);
        }
    }
    Ok(std::path::PathBuf::from("/proc/self/exe"))
}

/// Parses TARGET and connects, mapping failures to [`EXIT_UNREACHABLE`] or
/// [`EXIT_USAGE`].
pub async fn connect(
    cli_run_dir: Option<&std::path::Path>,
    target: &str,
) -> anyhow::Result<(Target, Client)> {
    connect_with(cli_run_dir, target, None).await
}

/// [`connect`] with a container engine CLI chosen by the user.
pub async fn connect_with(
    cli_run_dir: Option<&std::path::Path>,
    target: &str,
    docker_path: Option<&std::path::Path>,
) -> anyhow::Result<(Target, Client)> {
    connect_prompting(cli_run_dir, target, docker_path, Default::default()).await
}

/// [`connect_with`], with ssh's prompts answered by `prompter`.
pub async fn connect_prompting(
    cli_run_dir: Option<&std::path::Path>,
    target: &str,
    docker_path: Option<&std::path::Path>,
    prompter: yonder_target::askpass::Prompter,
) -> anyhow::Result<(Target, Client)> {
    let t: Target = target.parse().map_err(|e| {
        anyhow::Error::new(Exit {
            code: EXIT_USAGE,
            error: Some(anyhow::Error::new(e)),
        })
    })?;
    let exe = own_exe().context("cannot find the yonder executable to start the daemon")?;
    let opts = ConnectOptions {
        exe,
        run_dir: cli_run_dir.map(Into::into),
        reporter: std::sync::Arc::new(progress::ConnectProgress::default()),
        docker_path: docker_path.map(Into::into),
        prompter,
    };
    match t.connect(&opts).await {
        Ok(c) => Ok((t, c)),
        Err(e) => Err(anyhow::Error::new(Exit {
            code: EXIT_UNREACHABLE,
            error: Some(anyhow::Error::new(e).context(format!("cannot reach {t}"))),
        })),
    }
}

fn init_logging(verbose: u8, daemon: bool) {
    let default = match (daemon, verbose) {
        (true, 0) => "info",
        (false, 0) => "warn",
        (_, 1) => "info",
        (_, 2) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("YONDER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

fn runtime(daemon: bool) -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    // Two workers keep the idle daemon small; blocking file work runs on
    // tokio's blocking pool, which grows on demand and shrinks when idle.
    b.worker_threads(if daemon {
        2
    } else {
        2.min(std::thread::available_parallelism().map_or(2, |n| n.get()))
    });
    b.thread_keep_alive(Duration::from_secs(10));
    b.enable_all().build()
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let run_dir = cli.run_dir.as_deref();
    match cli.command {
        Command::Exec(args) => exec_cmd::run(run_dir, args).await,
        Command::Fs(args) => fs_cmd::run(run_dir, args).await,
        Command::Shell {
            target,
            cwd,
            command,
        } => terminal_cmd::shell(run_dir, &target, cwd, command).await,
        Command::Terminals { target, json, op } => {
            terminal_cmd::terminals(run_dir, &target, json, op).await
        }
        Command::Search(args) => search_cmd::search(run_dir, args).await,
        Command::Find(args) => search_cmd::find(run_dir, args).await,
        Command::Forward(args) => forward_cmd::run(run_dir, args).await,
        Command::Web(args) => web_cmd::run(run_dir, args).await,
        Command::Info { target, json } => {
            let (_, client) = connect(run_dir, &target).await?;
            let info = client.info().await?;
            format::print_info(&info, json)
        }
        Command::Doctor(args) => doctor_cmd::run(args).await,
        Command::Keys { op } => keys_cmd::run(op).await,
        Command::Up(args) => devcontainer_cmd::up(run_dir, args).await,
        Command::ReadConfiguration(args) => devcontainer_cmd::read_configuration(args).await,
        Command::Stop(args) => devcontainer_cmd::stop(args).await,
        Command::Down { common, volumes } => devcontainer_cmd::down(common, volumes).await,
        Command::Ps { docker_path, json } => devcontainer_cmd::ps(docker_path, json).await,
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "yonder", &mut std::io::stdout());
            Ok(())
        }
        Command::SshProxy(args) => bridge_cmd::ssh_proxy(run_dir, args).await,
        Command::SshConfig { op } => bridge_cmd::ssh_config(op),
        Command::Server {
            command: ServerCommand::Sftp,
        } => bridge_cmd::sftp_server().await,
        Command::Server { command } => server(run_dir, command).await,
        Command::Askpass { prompt } => {
            let code = yonder_target::askpass::client_main(&prompt.join(" "));
            if code == 0 {
                Ok(())
            } else {
                Err(exit_with(code))
            }
        }
    }
}

async fn server(run_dir: Option<&std::path::Path>, command: ServerCommand) -> anyhow::Result<()> {
    use yonder_server::rundir::RunDir;
    let dir = match run_dir {
        Some(d) => d.to_path_buf(),
        None => RunDir::default_path()?,
    };
    match command {
        ServerCommand::Daemon {
            listen,
            idle_timeout,
            terminal_grace,
        } => {
            let run = RunDir::open(dir)?;
            let opts = yonder_server::daemon::DaemonOptions {
                run_dir: run,
                listen: listen
                    .into_iter()
                    .map(yonder_server::daemon::Listen::Tcp)
                    .collect(),
                idle_timeout: (idle_timeout > 0).then(|| Duration::from_secs(idle_timeout)),
                terminal_grace: Duration::from_secs(terminal_grace),
            };
            let outcome = yonder_server::daemon::run(opts).await?;
            tracing::info!("daemon ended: {outcome:?}");
            Ok(())
        }
        ServerCommand::Proxy => {
            let run = RunDir::open(dir)?;
            let exe = own_exe().context("cannot find the yonder executable")?;
            yonder_server::proxy::run(&run, &exe, &[])
                .await
                .map_err(|e| {
                    anyhow::Error::new(Exit {
                        code: EXIT_UNREACHABLE,
                        error: Some(anyhow::Error::new(e)),
                    })
                })
        }
        ServerCommand::Sftp => bridge_cmd::sftp_server().await,
        ServerCommand::Bulk => unreachable!("served before the runtime starts"),
        ServerCommand::Version => {
            println!(
                "yonder {} protocol {}",
                yonder_proto::YONDER_VERSION,
                yonder_proto::PROTOCOL_VERSION
            );
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let daemon = matches!(
        cli.command,
        Command::Server {
            command: ServerCommand::Daemon { .. }
        }
    );
    init_logging(cli.verbose, daemon);
    if let Command::Server {
        command: ServerCommand::Bulk,
    } = cli.command
    {
        // One blocking request on stdin/stdout: no runtime needed.
        return ExitCode::from(yonder_server::bulk::serve() as u8);
    }
    let rt = match runtime(daemon) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("yonder: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let result = rt.block_on(run(cli));
    // Do not wait for blocked stdin readers and the like.
    rt.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast::<Exit>() {
            Ok(exit) => {
                if let Some(err) = &exit.error {
                    eprintln!("yonder: {err:#}");
                }
                ExitCode::from(exit.code)
            }
            Err(e) => {
                // A broken stdout (`yonder fs local cat big | head`) is not an error.
                if e.chain().any(|c| {
                    c.downcast_ref::<std::io::Error>()
                        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
                }) {
                    return ExitCode::SUCCESS;
                }
                eprintln!("yonder: {e:#}");
                ExitCode::from(EXIT_FAILURE)
            }
        },
    }
}
