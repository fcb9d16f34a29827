//! Progress of long work (captioning a folder, eval, quantize, models pull, profile): a bar with rate and ETA
//! on standard error when it is a terminal; nothing when it is not, when the report is JSON on standard
//! output, or with `--quiet`. Messages printed while the bar is shown go above it.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

/// `--quiet`: no progress bar anywhere.
static QUIET: AtomicBool = AtomicBool::new(false);

pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar over `len` items labelled `what`, shown only when standard error is a terminal, `--quiet` was not
    /// given and `hidden` is false (a JSON report going to standard output).
    pub fn new(len: u64, what: &str, hidden: bool) -> Progress {
        if hidden || QUIET.load(Ordering::Relaxed) || !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {per_sec} ETA {eta} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr()).with_style(style);
        bar.set_prefix(what.to_string());
        Progress { bar: Some(bar) }
    }

    /// One item done; `msg` names it.
    pub fn inc(&self, msg: &str) {
        if let Some(b) = &self.bar {
            b.set_message(msg.to_string());
            b.inc(1);
        }
    }

    /// Runs `f` (which prints to the terminal) with the bar cleared, then redraws it.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(b) => b.suspend(f),
            None => f(),
        }
    }

    /// An `error:` line on standard error, above the bar.
    pub fn error(&self, msg: &str) {
        self.suspend(|| eprintln!("error: {msg}"));
    }

    /// A warning through the log, above the bar.
    pub fn warn(&self, msg: &str) {
        self.suspend(|| log::warn!("{msg}"));
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
