//! Every SSH prompt reaches the user: `SSH_ASKPASS` points at a tiny script
//! that runs `yonder askpass PROMPT`, which relays the prompt over a private
//! unix socket to the yonder process that started ssh. That process asks the
//! user through its [`Prompter`] (the terminal by default; a dialog in the
//! page for `yonder web`) and sends the answer back. Passwords, key passphrases, 2FA codes and the unknown-host-key
//! question all take this path; ssh decides what to ask, yonder never
//! answers on the user's behalf.

use futures::future::BoxFuture;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// Environment variable carrying the socket path to `yonder askpass`.
pub const SOCKET_ENV: &str = "YONDER_ASKPASS_SOCKET";

/// Largest prompt accepted (ssh's are a few hundred bytes; a host-key
/// question with a long fingerprint list fits easily).
const MAX_PROMPT: u64 = 64 * 1024;

/// One question ssh asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// ssh's text, e.g. `u@h's password: ` or the unknown-host-key question.
    pub text: String,
    /// False for a yes/no question (the answer may be shown); true for a
    /// password, passphrase or one-time code (never shown, never logged).
    pub secret: bool,
}

impl Prompt {
    pub fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        let secret = !is_confirmation(&text);
        Self { text, secret }
    }
}

/// Asks the user; `None` means cancelled (ssh then gives up that method).
pub type AskFn = dyn Fn(Prompt) -> BoxFuture<'static, Option<String>> + Send + Sync;

/// Who answers ssh's prompts: the controlling terminal unless a front end
/// (the web workbench) installs its own.
#[derive(Clone, Default)]
pub struct Prompter(Option<Arc<AskFn>>);

impl std::fmt::Debug for Prompter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Prompter(custom)"
        } else {
            "Prompter(terminal)"
        })
    }
}

impl Prompter {
    /// Prompts go to `ask` instead of the terminal.
    pub fn new(ask: Arc<AskFn>) -> Self {
        Self(Some(ask))
    }

    pub async fn ask(&self, prompt: Prompt) -> Option<String> {
        match &self.0 {
            Some(f) => f(prompt).await,
            None => tokio::task::spawn_blocking(move || ask_on_terminal(&prompt.text))
                .await
                .ok()
                .flatten(),
        }
    }
}

/// The listening end, alive while ssh may prompt. Dropping it removes the
/// socket and the script.
#[derive(Debug)]
pub struct AskpassServer {
    socket: PathBuf,
    script: PathBuf,
    task: tokio::task::JoinHandle<()>,
    /// A private directory of our own, when `dir` was too deep for a socket.
    own_dir: Option<PathBuf>,
}

impl Drop for AskpassServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.script);
        if let Some(d) = &self.own_dir {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Longest unix socket path we bind: `sun_path` holds 108 bytes with the
/// terminating NUL on Linux, fewer on some systems.
const MAX_SOCKET_PATH: usize = 100;

/// A new private (0700) directory in the system's temp directory.
fn private_temp_dir(tag: &str) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let d = std::env::temp_dir().join(format!("yonder-askpass-{tag}"));
    // `create` (not recursive) fails if it exists: nobody else's directory
    // is ever used.
    std::fs::DirBuilder::new().mode(0o700).create(&d)?;
    Ok(d)
}

impl AskpassServer {
    /// Listens in `dir` (which must be private: 0700); `prompter` answers.
    pub async fn start(dir: &Path, prompter: Prompter) -> std::io::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut rnd = [0u8; 6];
        getrandom::fill(&mut rnd).map_err(|e| std::io::Error::other(e.to_string()))?;
        let tag: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
        let mut socket = dir.join(format!("askpass-{tag}.sock"));
        // A deep runtime directory cannot hold a socket: use a short
        // private one instead.
        let own_dir = if socket.as_os_str().len() > MAX_SOCKET_PATH {
            let d = private_temp_dir(&tag)?;
            socket = d.join("askpass.sock");
            Some(d)
        } else {
            None
        };
        let script = own_dir
            .as_deref()
            .unwrap_or(dir)
            .join(format!("askpass-{tag}.sh"));
        let exe_q = exe.display().to_string().replace('\'', "'\\''");
        let mut f = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o700)
            .open(&script)?;
        writeln!(f, "#!/bin/sh\nexec '{exe_q}' askpass \"$@\"")?;
        drop(f);
        let listener = UnixListener::bind(&socket)?;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(serve(s, prompter.clone()));
            }
        });
        Ok(Self {
            socket,
            script,
            task,
            own_dir,
        })
    }

    /// Points an ssh command at this askpass.
    pub fn configure(&self, cmd: &mut tokio::process::Command) {
        cmd.env("SSH_ASKPASS", &self.script);
        // Always use askpass, even with a terminal: the prompt must reach
        // whichever front end started yonder (OpenSSH 8.4+).
        cmd.env("SSH_ASKPASS_REQUIRE", "force");
        cmd.env(SOCKET_ENV, &self.socket);
        // ssh before 8.4 only uses askpass when DISPLAY is set.
        if std::env::var_os("DISPLAY").is_none() {
            cmd.env("DISPLAY", "yonder:0");
        }
    }
}

async fn serve(mut s: UnixStream, prompter: Prompter) {
    let mut prompt = Vec::new();
    if (&mut s)
        .take(MAX_PROMPT)
        .read_to_end(&mut prompt)
        .await
        .is_err()
    {
        return;
    }
    let prompt = String::from_utf8_lossy(&prompt).into_owned();
    let answer = prompter.ask(Prompt::new(prompt)).await;
    let reply = match answer {
        Some(a) => [b"1".as_slice(), a.as_bytes()].concat(),
        None => b"0".to_vec(),
    };
    let _ = s.write_all(&reply).await;
}

/// A yes/no question is answered visibly; anything else (password,
/// passphrase, one-time code) without echo.
fn is_confirmation(prompt: &str) -> bool {
    prompt.contains("(yes/no")
}

/// Asks on the controlling terminal. `None` when there is none or the user
/// ends input (ssh then treats the prompt as cancelled).
pub fn ask_on_terminal(prompt: &str) -> Option<String> {
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .ok()?;
    use std::os::fd::AsRawFd;
    let fd = tty.as_raw_fd();
    let echo = is_confirmation(prompt);
    // SAFETY: termios calls on the terminal we opened, with valid pointers.
    let saved = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) != 0 {
            return None;
        }
        let saved = t;
        if !echo {
            t.c_lflag &= !libc::ECHO;
            t.c_lflag |= libc::ICANON;
            libc::tcsetattr(fd, libc::TCSANOW, &t);
        }
        saved
    };
    let _ = write!(tty, "{prompt}");
    let _ = tty.flush();
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    let ok = loop {
        match tty.read(&mut b) {
            Ok(0) | Err(_) => break false,
            Ok(_) if b[0] == b'\n' || b[0] == b'\r' => break true,
            Ok(_) => line.push(b[0]),
        }
    };
    // SAFETY: restoring what we saved on the same descriptor.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    if !echo {
        let _ = writeln!(tty);
    }
    ok.then(|| String::from_utf8_lossy(&line).into_owned())
}

/// `yonder askpass PROMPT`: what ssh runs. Prints the answer for ssh and
/// returns the exit code (1 means cancelled).
pub fn client_main(prompt: &str) -> i32 {
    let Some(sock) = std::env::var_os(SOCKET_ENV) else {
        eprintln!(
            "yonder askpass: {SOCKET_ENV} is not set; this command is run by ssh on yonder's behalf"
        );
        return 1;
    };
    let mut s = match std::os::unix::net::UnixStream::connect(&sock) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("yonder askpass: cannot reach the yonder process that started ssh: {e}");
            return 1;
        }
    };
    if s.write_all(prompt.as_bytes()).is_err() || s.shutdown(std::net::Shutdown::Write).is_err() {
        return 1;
    }
    let mut reply = Vec::new();
    if s.read_to_end(&mut reply).is_err() || reply.first() != Some(&b'1') {
        return 1;
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&reply[1..]);
    let _ = out.write_all(b"\n");
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_yes_no_questions_echo() {
        assert!(is_confirmation(
            "Are you sure you want to continue connecting (yes/no/[fingerprint])? "
        ));
        assert!(!is_confirmation("u@h's password: "));
        assert!(!is_confirmation("Enter passphrase for key '/k': "));
        assert!(!is_confirmation("Verification code: "));
    }
}
