//! A real terminal for tests: a private tmux server (its own socket) whose
//! panes run a client; the test types into them and reads the screen.
//! The server is killed when the [`Tmux`] is dropped, pass or fail.

use super::DEADLINE;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// A tmux server whose socket lives in `dir` (started by the first
    /// session).
    pub fn new(dir: &Path) -> Self {
        Tmux {
            socket: dir.join("tmux.sock").display().to_string(),
        }
    }

    /// `tmux -S SOCKET ARGS...`'s stdout; the command must succeed.
    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        assert!(out.status.success(), "tmux {args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    }

    /// A detached session `name` of `cols`×`rows` running `command` (a
    /// shell command line).
    pub fn start(&self, name: &str, cols: u16, rows: u16, command: &str) {
        let (x, y) = (cols.to_string(), rows.to_string());
        self.run(&["new-session", "-d", "-s", name, "-x", &x, "-y", &y, command]);
    }

    /// Types `line` and Enter into the session.
    pub fn type_line(&self, name: &str, line: &str) {
        self.run(&["send-keys", "-t", name, line, "Enter"]);
    }

    pub fn resize(&self, name: &str, cols: u16, rows: u16) {
        let (x, y) = (cols.to_string(), rows.to_string());
        self.run(&["resize-window", "-t", name, "-x", &x, "-y", &y]);
    }

    /// What the session's screen shows now.
    pub fn screen(&self, name: &str) -> String {
        self.run(&["capture-pane", "-p", "-t", name])
    }

    /// Waits until the screen shows `needle`; returns the screen.
    pub fn wait_for(&self, name: &str, needle: &str) -> String {
        let start = Instant::now();
        loop {
            let t = self.screen(name);
            if t.contains(needle) {
                return t;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "pane never showed {needle:?}:\n{t}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-S", &self.socket, "kill-server"])
            .output();
    }
}
