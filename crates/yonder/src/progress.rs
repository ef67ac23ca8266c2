//! A progress bar for transfers that shows itself only on a terminal and only
//! once the transfer has taken over a second: quick copies stay quiet.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Transfers shorter than this never show a bar.
const SHOW_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
    tty: bool,
    shown: AtomicBool,
}

impl Progress {
    pub fn new(total: Option<u64>, what: &str) -> Self {
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::hidden());
        let style = if total.is_some() {
            ProgressStyle::with_template(
                "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
        } else {
            ProgressStyle::with_template("{msg} {spinner} {bytes} {bytes_per_sec}")
        };
        if let Ok(s) = style {
            bar.set_style(s);
        }
        bar.set_message(what.to_string());
        Self {
            bar,
            started: Instant::now(),
            tty: std::io::stderr().is_terminal(),
            shown: AtomicBool::new(false),
        }
    }

    pub fn add(&self, n: u64) {
        self.bar.inc(n);
        if self.tty && !self.shown.load(Ordering::Relaxed) && self.started.elapsed() >= SHOW_AFTER {
            self.shown.store(true, Ordering::Relaxed);
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
    }

    /// Moves by `n` bytes: back when a transfer starts over.
    pub fn step(&self, n: i64) {
        if n >= 0 {
            self.add(n as u64);
        } else {
            self.bar.dec(n.unsigned_abs());
        }
    }

    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    pub fn finish(&self) {
        if self.shown.load(Ordering::Relaxed) {
            self.bar.finish_and_clear();
        }
    }
}

/// Shows what a slow connect is doing: a status line, and a bar while the
/// server is uploaded.
#[derive(Debug, Default)]
pub struct ConnectProgress {
    upload: std::sync::Mutex<Option<Progress>>,
}

impl yonder_target::ssh::ConnectReporter for ConnectProgress {
    fn status(&self, message: &str) {
        tracing::info!("{message}");
        if std::io::stderr().is_terminal() && message.starts_with("installing") {
            eprintln!("yonder: {message}");
        }
    }

    fn upload(&self, sent: u64, total: u64) {
        let mut g = self.upload.lock().unwrap_or_else(|e| e.into_inner());
        let p = g.get_or_insert_with(|| Progress::new(Some(total), "uploading the server"));
        p.add(sent.saturating_sub(p.position()));
        if sent >= total {
            p.finish();
        }
    }
}
