//! Progress of a long command: a bar with rate and ETA on a terminal, nothing otherwise.
//!
//! The bar goes to stderr, but it is drawn only when stdout is a terminal too: output redirected
//! to a file or pipe (a cron job, `| jq`) means nobody watches the bar.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Receives the component's progress reports.
#[derive(Clone)]
pub struct Reporter {
    bar: Option<ProgressBar>,
}

impl Reporter {
    /// A bar on stderr when stdout and stderr are terminals and `enabled` (off for `--json`,
    /// `--log-format json` and `-q`).
    pub fn new(label: &str, enabled: bool) -> Reporter {
        if !enabled || !std::io::stderr().is_terminal() || !std::io::stdout().is_terminal() {
            return Reporter::silent();
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} wallets, {per_sec}, ETA {eta}")
                .expect("static template")
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        Reporter { bar: Some(bar) }
    }

    pub fn silent() -> Reporter {
        Reporter { bar: None }
    }

    pub fn progress(&self, done: u64, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
        }
    }

    /// Removes the bar before the command prints its result.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
