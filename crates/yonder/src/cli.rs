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
    /// Open an interactive shell (or COMMAND) in a terminal that survives disconnects.
    ///
    /// The terminal lives on the target: if the connection drops or this client
    /// is killed, the shell keeps running; `yonder terminals TARGET attach ID`
    /// re-attaches. Exits with the shell's exit status.
    Shell {
        target: String,
        /// Working directory on the target.
        #[arg(long, value_name = "DIR")]
        cwd: Option<PathBuf>,
        /// Run this instead of the login shell.
        #[arg(last = true, value_name = "COMMAND [ARGS]...")]
        command: Vec<std::ffi::OsString>,
    },
    /// List the target's terminals, or attach to or kill one.
    Terminals {
        target: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        op: Option<TerminalsOp>,
    },
    /// Search file contents on the target, like rg (prints path:line:column:text).
    Search(SearchArgs),
    /// Find files by name on the target, fuzzy-ranked (for quick open).
    Find(FindArgs),
    /// Forward TCP ports between here and the target, like ssh -L / -R.
    Forward(ForwardArgs),
    /// Open the browser workbench on the target: file tree, editors, terminals, search, ports.
    ///
    /// Serves on 127.0.0.1 and prints a URL with a one-time token; opens the
    /// browser when there is a display. Stop it with Ctrl-C.
    Web(WebArgs),
    /// Show the target's OS, architecture, user and yonder version.
    Info {
        target: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Bring a project's dev container up: build, create or start it, run its
    /// lifecycle commands, and put the yonder server inside.
    ///
    /// Prints one JSON line on stdout like the reference dev container CLI
    /// (`{"outcome":"success","containerId":…}`); progress goes to stderr.
    /// Afterwards every command works against `devcontainer:FOLDER`.
    Up(UpArgs),
    /// Print a dev container's configuration: substituted, and merged with
    /// image or container metadata when there is any.
    ReadConfiguration(DevContainerArgs),
    /// Stop a project's dev container (it is kept for the next `up`).
    Stop(DevContainerArgs),
    /// Remove a project's dev container.
    Down {
        #[command(flatten)]
        common: DevContainerArgs,
        /// Also remove the container's anonymous volumes.
        #[arg(long)]
        volumes: bool,
    },
    /// List dev containers (any folder) with their folders and state.
    Ps {
        /// Container engine CLI (docker or podman); default: found on PATH.
        #[arg(long, value_name = "PATH", env = "YONDER_DOCKER_PATH")]
        docker_path: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Speak the SSH server protocol on stdin/stdout for TARGET (an ssh ProxyCommand).
    ///
    /// Lets ssh, sftp, scp, rsync, sshfs and editors' Remote-SSH reach any yonder
    /// target: `ProxyCommand yonder ssh-proxy TARGET`. `yonder ssh-config add`
    /// writes that for you.
    SshProxy(SshProxyArgs),
    /// Check the SSH setup here (and TARGET's): each finding with why and the exact fix.
    ///
    /// Exit code 0 when nothing is a problem (warnings are fine), 1 otherwise.
    Doctor(DoctorArgs),
    /// SSH keys: generate one, copy it to a host, import a PuTTY key.
    Keys {
        #[command(subcommand)]
        op: KeysOp,
    },
    /// Your ssh_config: `Host` entries that reach yonder targets through
    /// ssh-proxy, and connection sharing (atomic edits, with backups).
    SshConfig {
        #[command(subcommand)]
        op: SshConfigOp,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Relays an ssh prompt to the yonder process that started ssh (run by ssh).
    #[command(hide = true)]
    Askpass {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        prompt: Vec<String>,
    },
    /// The server side: what runs on a target.
    #[command(hide = true)]
    Server {
        #[command(subcommand)]
        command: ServerCommand,
    },
}

#[derive(Debug, Args)]
pub struct DevContainerArgs {
    /// The project folder (default: the current directory).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub workspace_folder: PathBuf,
    /// The devcontainer.json to use (default: found as the spec orders it).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Container engine CLI (docker or podman); default: docker when its
    /// daemon answers, else podman.
    #[arg(long, value_name = "PATH", env = "YONDER_DOCKER_PATH")]
    pub docker_path: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub common: DevContainerArgs,
    /// Remove an existing container first and create a new one.
    #[arg(long, alias = "remove-existing-container")]
    pub remove_existing: bool,
    /// Recreate the container (rebuilding its image) when its configuration
    /// changed since it was made.
    #[arg(long)]
    pub rebuild: bool,
    /// Stop after the `waitFor` lifecycle command (default updateContentCommand).
    #[arg(long)]
    pub skip_non_blocking_commands: bool,
    /// Do not run postAttachCommand.
    #[arg(long)]
    pub skip_post_attach: bool,
    /// Do not install the yonder server in the container.
    #[arg(long)]
    pub no_server: bool,
    /// Also write an ssh_config `Host ALIAS` that reaches this dev container
    /// through `yonder ssh-proxy` (for VS Code Remote-SSH, JetBrains, sftp…).
    #[arg(long, value_name = "ALIAS")]
    pub ssh_alias: Option<String>,
}

#[derive(Debug, Args)]
pub struct SshProxyArgs {
    pub target: String,
    /// The host key file (default: ~/.yonder/ssh-bridge/host-keys/<target>; made on first use).
    #[arg(long, value_name = "FILE")]
    pub host_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Also check this SSH host (name, port, host key, login, remote modes,
    /// prerequisites); a `container://`/`devcontainer:` target checks the engine.
    pub target: Option<String>,
    /// Apply the fixes yonder can apply (asks before each unless --yes).
    #[arg(long)]
    pub fix: bool,
    /// With --fix: apply without asking.
    #[arg(long, requires = "fix")]
    pub yes: bool,
    /// Print JSON: {"checks": [{id, status, summary, why, fix: {command, automatic}}],
    /// "problems", "warnings", "fixed"}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyTypeArg {
    Ed25519,
    Rsa,
}

#[derive(Debug, Subcommand)]
pub enum KeysOp {
    /// Make a new key pair in OpenSSH format (private 0600, .pub 0644); never overwrites.
    Generate {
        #[arg(long = "type", short = 't', value_enum, default_value = "ed25519")]
        key_type: KeyTypeArg,
        /// RSA size in bits (default 3072; 2048 to 16384).
        #[arg(long, short = 'b')]
        bits: Option<u32>,
        /// The key's comment (default USER@HOSTNAME).
        #[arg(long, short = 'C')]
        comment: Option<String>,
        /// Where to write the private key (default ~/.ssh/id_ed25519 or id_rsa).
        #[arg(long, short = 'f', value_name = "PATH")]
        file: Option<PathBuf>,
        /// Protect the key with a passphrase, asked on the terminal (twice).
        #[arg(long)]
        passphrase_prompt: bool,
        /// Protect the key with the passphrase on this file's first line (for scripts).
        #[arg(long, value_name = "FILE", conflicts_with = "passphrase_prompt")]
        passphrase_file: Option<PathBuf>,
    },
    /// Append your public key to TARGET's ~/.ssh/authorized_keys (once), then check key login works.
    Copy {
        /// The SSH host (as for ssh: an alias, USER@HOST:PORT, ssh://…).
        target: String,
        /// The public key to copy (default: the first of ~/.ssh/id_ed25519.pub, id_ecdsa.pub, id_rsa.pub).
        #[arg(long, value_name = "PUB")]
        key: Option<PathBuf>,
    },
    /// Convert a PuTTY .ppk key (v2 or v3, any type) to an OpenSSH key and .pub.
    ///
    /// The new key keeps the PuTTY key's passphrase unless --no-passphrase or a
    /// new passphrase is given.
    ImportPpk {
        /// The PuTTY key file (`.ppk`).
        file: PathBuf,
        /// Where to write the OpenSSH key (default: FILE without .ppk); never overwrites.
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
        /// The PuTTY key's passphrase, from this file's first line (else asked on the terminal).
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
        /// Write the new key without a passphrase.
        #[arg(long, conflicts_with_all = ["new_passphrase_file", "new_passphrase_prompt"])]
        no_passphrase: bool,
        /// Protect the new key with this file's first line instead.
        #[arg(long, value_name = "FILE")]
        new_passphrase_file: Option<PathBuf>,
        /// Protect the new key with a new passphrase, asked on the terminal.
        #[arg(long, conflicts_with = "new_passphrase_file")]
        new_passphrase_prompt: bool,
        /// Also add `IdentityFile OUT` for this host to your ssh_config (atomic, with backup).
        #[arg(long, value_name = "HOST")]
        add_to_host: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SshConfigOp {
    /// Write a `Host ALIAS` entry for TARGET (into ~/.ssh/yonder.conf, included from ~/.ssh/config).
    Add {
        target: String,
        /// The host name to use with ssh (default: yonder-<target>).
        #[arg(long, value_name = "ALIAS")]
        name: Option<String>,
        /// The SSH user name to write (default: the local user).
        #[arg(long)]
        user: Option<String>,
    },
    /// Remove the `Host ALIAS` entry that `add` wrote.
    Remove { alias: String },
    /// List the entries that `add` wrote.
    List,
    /// Share one login per host (ControlMaster auto, ControlPath, ControlPersist 10m).
    ///
    /// Appends a marked `Host HOST` block to your ssh_config (`*`: every
    /// host), keeps every existing line and comment, creates ~/.ssh/sockets
    /// (0700), keeps a timestamped backup; running it again changes nothing.
    Multiplex {
        #[arg(default_value = "*", value_name = "HOST|*")]
        host: String,
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

#[derive(Debug, Subcommand)]
pub enum TerminalsOp {
    /// Re-attach to a terminal: its recent output, then live.
    Attach { id: String },
    /// End a terminal (SIGHUP to its process group, like closing the window).
    Kill { id: String },
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    pub target: String,
    /// A regular expression (Rust regex syntax, like rg), or a literal with -F.
    pub pattern: String,
    /// Where to search (default: the current directory on `local`, home elsewhere).
    pub path: Option<PathBuf>,
    /// Case-insensitive.
    #[arg(short = 'i', long)]
    pub ignore_case: bool,
    /// Case-insensitive unless the pattern has an uppercase letter.
    #[arg(short = 'S', long)]
    pub smart_case: bool,
    /// Match whole words only.
    #[arg(short = 'w', long)]
    pub word_regexp: bool,
    /// Treat the pattern as a literal string.
    #[arg(short = 'F', long)]
    pub fixed_strings: bool,
    /// Include or (with a leading !) exclude files matching GLOB (repeatable).
    #[arg(short = 'g', long = "glob", value_name = "GLOB")]
    pub globs: Vec<String>,
    /// Search hidden files and directories.
    #[arg(long)]
    pub hidden: bool,
    /// Do not honour .gitignore/.ignore files.
    #[arg(long)]
    pub no_ignore: bool,
    /// Follow symbolic links.
    #[arg(short = 'L', long)]
    pub follow: bool,
    /// Stop after this many matching lines in total.
    #[arg(short = 'm', long, value_name = "NUM")]
    pub max_count: Option<u64>,
    /// Skip files larger than this many bytes.
    #[arg(long, value_name = "BYTES")]
    pub max_filesize: Option<u64>,
    /// Lines of context after each match.
    #[arg(short = 'A', long, value_name = "NUM")]
    pub after_context: Option<u32>,
    /// Lines of context before each match.
    #[arg(short = 'B', long, value_name = "NUM")]
    pub before_context: Option<u32>,
    /// Lines of context before and after each match.
    #[arg(short = 'C', long, value_name = "NUM")]
    pub context: Option<u32>,
    /// Print JSON lines (one object per match or context line, then a summary).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct FindArgs {
    pub target: String,
    /// Characters of the name, in order (fuzzy, like an editor's quick open).
    pub query: String,
    /// Where to look (default: the current directory on `local`, home elsewhere).
    pub path: Option<PathBuf>,
    /// How many results to print.
    #[arg(short = 'n', long, default_value_t = 20)]
    pub max: u32,
    /// Include hidden files and directories.
    #[arg(long)]
    pub hidden: bool,
    /// Do not honour .gitignore/.ignore files.
    #[arg(long)]
    pub no_ignore: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ForwardArgs {
    pub target: String,
    /// Local to remote, like ssh -L: [BIND:]LOCALPORT:HOST:PORT (LOCALPORT 0 picks a free port).
    #[arg(value_name = "[BIND:]LOCALPORT:HOST:PORT")]
    pub local: Vec<String>,
    /// Remote to local, like ssh -R: [BIND:]REMOTEPORT:HOST:PORT (repeatable).
    #[arg(
        long = "remote",
        short = 'R',
        value_name = "[BIND:]REMOTEPORT:HOST:PORT"
    )]
    pub remote: Vec<String>,
    /// Forward every port the target's processes start listening on, to the
    /// same local port when free (else a free one), like VS Code's auto-forward.
    #[arg(long)]
    pub auto: bool,
    /// On an SSH target, carry every local forward's connections through the
    /// yonder server instead of handing them to the ssh master: slower, but a
    /// connection stays open for the client after the far side closes its
    /// direction (the master ends it then).
    #[arg(long)]
    pub through_server: bool,
    /// Print the mappings as JSON lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WebArgs {
    pub target: String,
    /// The folder to open (default: the current directory on `local`, the home directory elsewhere).
    pub folder: Option<std::path::PathBuf>,
    /// Port on 127.0.0.1 (default: a random free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Do not open a browser; just print the URL.
    #[arg(long)]
    pub no_open: bool,
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
    /// Watch a directory tree and print changes as they happen.
    Watch {
        path: PathBuf,
        /// Do not report paths matching GLOB (gitignore syntax; repeatable).
        #[arg(long = "ignore", value_name = "GLOB")]
        ignore: Vec<String>,
        /// Also honour .gitignore files in the tree.
        #[arg(long)]
        gitignore: bool,
        /// Poll instead of using kernel events (for mounts that deliver none).
        #[arg(long)]
        poll: bool,
        /// Polling interval in milliseconds.
        #[arg(long, value_name = "MS")]
        poll_interval: Option<u32>,
        /// Quiet period before changes are reported, in milliseconds.
        #[arg(long, value_name = "MS")]
        debounce: Option<u32>,
        /// At most this many kernel watches; the rest of the tree is polled.
        #[arg(long, value_name = "N")]
        max_watches: Option<u32>,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
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
        /// End a terminal that has had no client attached for this many seconds.
        #[arg(long, value_name = "SECS", default_value_t = yonder_server::ops::terminal::DEFAULT_TERMINAL_GRACE.as_secs())]
        terminal_grace: u64,
    },
    /// Relay stdin/stdout to the daemon, starting it when none runs.
    Proxy,
    /// Print the version and protocol (used by installers to check a binary).
    Version,
    /// Serve SFTP on stdin/stdout (started on the target by ssh-proxy).
    Sftp,
    /// Send or receive one file on stdin/stdout (the bulk channel of large
    /// `fs put`/`fs get` over SSH, started on its own ssh session).
    Bulk,
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
