//! The command line, as clap types. Each doc comment is the `--help` text.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// yonder: work on other machines as if they were here.
///
/// TARGET is `local`, an SSH host (`HOST`, `USER@HOST:PORT`, `ssh://…`),
/// `container://NAME`, `devcontainer:PATH` or `wsl://DISTRO`. This version
/// serves `local`; the others are recognised and report that they are not yet
/// supported.
///
/// Exit codes: 0 success; 1 the operation failed (not found, permission
/// denied, conflict, …); 2 usage error; 255 the target could not be reached
/// (no server, refused handshake, version mismatch). `yonder exec` exits with
/// the program's own code, or 128+N when signal N ended it.
#[derive(Debug, Parser)]
#[command(
    name = "yonder",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// The daemon's runtime directory (default: $XDG_RUNTIME_DIR/yonder or ~/.yonder/run).
    #[arg(
        long,
        global = true,
        env = "YONDER_RUNTIME_DIR",
        value_name = "DIR",
        hide_env_values = true
    )]
    pub run_dir: Option<PathBuf>,

    /// Log more (repeat for more detail) to stderr.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a program on the target; its output streams back and its exit code becomes yonder's.
    ///
    /// The program and its arguments reach the target exactly as given: no shell
    /// re-splits them. To use shell syntax, run a shell: `yonder exec T -- sh -c 'a | b'`.
    Exec(ExecArgs),
    /// File operations on the target.
    Fs(FsArgs),
    /// Show the target's OS, architecture, user and yonder version.
    Info {
        target: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// The server side: what runs on a target.
    #[command(hide = true)]
    Server {
        #[command(subcommand)]
        command: ServerCommand,
    },
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    pub target: String,
    /// Working directory on the target (default: the home directory; for
    /// `local`, the current directory).
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Set an environment variable for the program (repeatable).
    #[arg(long = "env", short = 'e', value_name = "K=V")]
    pub env: Vec<String>,
    /// Do not forward this process's stdin (the program sees end of file).
    #[arg(short = 'n', long)]
    pub no_stdin: bool,
    /// The program, then its arguments.
    #[arg(last = true, required = true, value_name = "PROGRAM [ARGS]...")]
    pub argv: Vec<std::ffi::OsString>,
}

#[derive(Debug, Args)]
pub struct FsArgs {
    pub target: String,
    #[command(subcommand)]
    pub op: FsOp,
}

#[derive(Debug, Subcommand)]
pub enum FsOp {
    /// List a directory (or describe a file).
    Ls {
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Long format: type and mode, size, modification time, name.
        #[arg(short = 'l')]
        long: bool,
        /// Include names that start with a dot.
        #[arg(short = 'a', long)]
        all: bool,
        /// Print JSON (one array of entries with their metadata).
        #[arg(long)]
        json: bool,
    },
    /// Describe a path (symlinks are described, not followed, unless -L).
    Stat {
        path: PathBuf,
        /// Follow a final symlink.
        #[arg(short = 'L', long)]
        follow: bool,
        #[arg(long)]
        json: bool,
    },
    /// Print files to stdout.
    Cat {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Copy a local file or tree to the target (`-` reads stdin).
    Put { local: PathBuf, remote: PathBuf },
    /// Copy a file or tree from the target (`-` writes stdout).
    Get { remote: PathBuf, local: PathBuf },
    /// Remove files, or trees with -r.
    Rm {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Remove directories and their contents.
        #[arg(short = 'r', long)]
        recursive: bool,
        /// Ignore paths that do not exist.
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Rename or move a path (replaces an existing destination unless -n).
    Mv {
        from: PathBuf,
        to: PathBuf,
        /// Fail instead of replacing an existing destination.
        #[arg(short = 'n', long)]
        no_clobber: bool,
    },
    /// Copy a path on the target (trees with -r).
    Cp {
        from: PathBuf,
        to: PathBuf,
        #[arg(short = 'r', long)]
        recursive: bool,
        /// Fail instead of replacing an existing destination.
        #[arg(short = 'n', long)]
        no_clobber: bool,
    },
    /// Create directories.
    Mkdir {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Create parents as needed; an existing directory is fine.
        #[arg(short = 'p', long)]
        parents: bool,
        /// Mode in octal (through the umask), e.g. 750.
        #[arg(short = 'm', long, value_parser = parse_mode)]
        mode: Option<u32>,
    },
    /// Change permission bits (octal, e.g. 644).
    Chmod {
        #[arg(value_parser = parse_mode)]
        mode: u32,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Create a symbolic link LINK pointing at TARGET.
    Ln {
        /// Required, for familiarity with `ln -s`: only symbolic links exist here.
        #[arg(short = 's', required = true)]
        symbolic: bool,
        target: PathBuf,
        link: PathBuf,
    },
    /// Print a symlink's target.
    Readlink { path: PathBuf },
    /// Print the absolute path with every symlink resolved.
    Realpath { path: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Run the per-user daemon (normally started on demand).
    Daemon {
        /// Also listen on TCP: `tcp` is 127.0.0.1 on a random port;
        /// `tcp:ADDR:PORT` binds exactly that (a non-loopback address needs this).
        /// The token is written to tcp.json in the runtime directory (mode 0600).
        #[arg(long, value_name = "tcp[:ADDR:PORT]", value_parser = parse_listen)]
        listen: Vec<std::net::SocketAddr>,
        /// Exit after this many seconds with no client (0: never).
        #[arg(long, value_name = "SECS", default_value_t = yonder_server::daemon::DEFAULT_IDLE_TIMEOUT.as_secs())]
        idle_timeout: u64,
    },
    /// Relay stdin/stdout to the daemon, starting it when none runs.
    Proxy,
    /// Print the version and protocol (used by installers to check a binary).
    Version,
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let m = u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .map_err(|_| format!("{s:?} is not an octal mode"))?;
    if m > 0o7777 {
        return Err(format!("{s:?} is larger than 7777"));
    }
    Ok(m)
}

fn parse_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    match s {
        "tcp" => Ok(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        _ => s
            .strip_prefix("tcp:")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| {
                format!("{s:?}: expected `tcp` or `tcp:ADDR:PORT` (e.g. tcp:127.0.0.1:7000)")
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn modes_and_listen_addresses_parse_strictly() {
        assert_eq!(parse_mode("755"), Ok(0o755));
        assert_eq!(parse_mode("0o4755"), Ok(0o4755));
        assert!(parse_mode("9").is_err());
        assert!(parse_mode("17777").is_err());
        assert_eq!(parse_listen("tcp").unwrap().to_string(), "127.0.0.1:0");
        assert_eq!(
            parse_listen("tcp:[::1]:7000").unwrap().to_string(),
            "[::1]:7000"
        );
        assert!(parse_listen("0.0.0.0:1").is_err());
    }
}
