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

    pub fn finish(&self) {
        if self.shown.load(Ordering::Relaxed) {
            self.bar.finish_and_clear();
        }
    }
}
