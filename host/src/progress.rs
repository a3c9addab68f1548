//! Progress of a long command: a bar with rate and ETA on a terminal, nothing otherwise.
//!
//! The bar goes to stderr, but it is drawn only when stdout is a terminal too: output redirected
//! to a file or pipe (a cron job, `| jq`) means nobody watches the bar.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

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
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} wallets, {rate}, ETA {eta}")
                .expect("static template")
                .with_key("rate", |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                    let _ = out.write_str(&rate(state.per_sec()));
                })
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        Reporter { bar: Some(bar) }
    }

    /// No bar: for output nobody watches.
    pub fn silent() -> Reporter {
        Reporter { bar: None }
    }

    /// `done` of `total` wallets handled so far.
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

/// A rate as a whole number of wallets per second with thousands separators, "1,038 wallets/s":
/// indicatif's own `{per_sec}` shows four decimals, which nobody reads on a moving bar.
pub fn rate(per_sec: f64) -> String {
    // Before the first wallet, or with a clock that did not move, indicatif may report NaN or ∞.
    let whole = if per_sec.is_finite() && per_sec > 0.0 { per_sec.round() as u64 } else { 0 };
    let digits = whole.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    format!("{grouped} wallets/s")
}

#[cfg(test)]
mod tests {
    use super::rate;

    #[test]
    fn rate_is_whole_wallets_per_second_with_thousands_separators() {
        assert_eq!(rate(1038.2458), "1,038 wallets/s");
        assert_eq!(rate(0.4), "0 wallets/s");
        assert_eq!(rate(999.5), "1,000 wallets/s");
        assert_eq!(rate(42.0), "42 wallets/s");
        assert_eq!(rate(123_456.7), "123,457 wallets/s");
        assert_eq!(rate(1_234_567.0), "1,234,567 wallets/s");
        assert_eq!(rate(f64::NAN), "0 wallets/s");
        assert_eq!(rate(f64::INFINITY), "0 wallets/s");
        assert_eq!(rate(-3.0), "0 wallets/s");
    }
}
