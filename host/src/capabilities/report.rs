//! The `report` import: the component's log lines and its progress.
//!
//! A component's log line is text from code the host does not trust, printed beside the host's
//! own. So each line is marked as the component's (`[component] `, and the `rotor::component`
//! target in JSON), has its newlines and other control characters escaped so that it stays one
//! line and cannot draw a line of the host's, is cut at [`MAX_LINE_BYTES`], and a run prints at
//! most [`MAX_LINES`] of them; the rest are counted and the count is logged.

use std::fmt::Write as _;

use wasmtime::component::{HasData, Linker};

use crate::bindings::report;
use crate::progress::Reporter;

/// Longest component log line printed, in bytes of escaped text; the rest is cut, and the cut
/// is said. rotor's own components log lines of under 200 bytes.
pub const MAX_LINE_BYTES: usize = 2048;

/// Most component log lines one run prints. rotor's own components log a few lines per
/// rotation (one per phase) and one per finding of an audit check.
pub const MAX_LINES: u32 = 1000;

/// Where a component's reports go: the log (as `rotor::component`) and the command's progress.
pub struct Report {
    reporter: Reporter,
    /// Lines logged so far, printed or not.
    lines: u64,
}

impl Report {
    /// Progress goes to `reporter`.
    pub fn new(reporter: Reporter) -> Report {
        Report { reporter, lines: 0 }
    }

    /// The command's progress display.
    pub fn reporter(&self) -> &Reporter {
        &self.reporter
    }

    fn dropped(&self) -> u64 {
        self.lines.saturating_sub(MAX_LINES.into())
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        let dropped = self.dropped();
        if dropped > 0 {
            tracing::warn!(
                target: "rotor::component",
                dropped,
                "[component] {dropped} further log line(s) of the component were dropped (at most {MAX_LINES} per run)"
            );
        }
    }
}

/// `message` as one printable line of at most [`MAX_LINE_BYTES`] (plus the note of a cut):
/// control characters (newlines, escapes, bidi overrides…) and backslashes escaped as Rust's
/// `Debug` would, quotes left as they are. Reads no further into `message` than the cut.
pub fn one_line(message: &str) -> String {
    let mut line = String::with_capacity(message.len().min(MAX_LINE_BYTES) + 48);
    for (at, c) in message.char_indices() {
        let before = line.len();
        match c {
            '"' | '\'' => line.push(c),
            c => line.extend(c.escape_debug()),
        }
        if line.len() > MAX_LINE_BYTES {
            line.truncate(before);
            let _ = write!(line, "… [{} more bytes cut]", message.len() - at);
            break;
        }
    }
    line
}

/// Links `report` (both worlds import it) into `linker`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut Report,
) -> wasmtime::Result<()> {
    report::add_to_linker::<T, HasReport>(linker, get)
}

struct HasReport;

impl HasData for HasReport {
    type Data<'a> = &'a mut Report;
}

impl report::Host for Report {
    async fn log(&mut self, level: report::Level, message: String) -> wasmtime::Result<()> {
        self.lines += 1;
        if self.lines > MAX_LINES.into() {
            if self.lines == u64::from(MAX_LINES) + 1 {
                tracing::warn!(
                    target: "rotor::component",
                    "[component] log limit of {MAX_LINES} lines per run reached: further lines are dropped and counted"
                );
            }
            return Ok(());
        }
        let line = one_line(&message);
        match level {
            report::Level::Debug => tracing::debug!(target: "rotor::component", "[component] {line}"),
            report::Level::Info => tracing::info!(target: "rotor::component", "[component] {line}"),
            report::Level::Warn => tracing::warn!(target: "rotor::component", "[component] {line}"),
            report::Level::Error => tracing::error!(target: "rotor::component", "[component] {line}"),
        }
        Ok(())
    }

    async fn progress(&mut self, done: u64, total: u64) -> wasmtime::Result<()> {
        self.reporter.progress(done, total);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_stays_one_printable_line() {
        let forged = "done\n INFO rotor: every batch was cross-checked\r\x1b[2K\u{202e}\\";
        let line = one_line(forged);
        assert_eq!(line, r"done\n INFO rotor: every batch was cross-checked\r\u{1b}[2K\u{202e}\\");
        assert!(!line.chars().any(char::is_control), "{line:?}");
        // Quotes and ordinary Unicode are left as they are.
        assert_eq!(one_line("wallet \"a\" → v2, l'été"), "wallet \"a\" → v2, l'été");
    }

    #[test]
    fn a_long_log_line_is_cut_and_the_cut_is_said() {
        let long = "é".repeat(1 << 20); // 2 MiB
        let line = one_line(&long);
        let (kept, note) = line.split_once('…').unwrap();
        assert!(kept.len() <= MAX_LINE_BYTES && kept.len() > MAX_LINE_BYTES - 4, "{}", kept.len());
        assert_eq!(note, format!(" [{} more bytes cut]", long.len() - kept.len()));

        // Escaping counts towards the cap: a line of newlines is cut too, never split mid-escape.
        let line = one_line(&"\n".repeat(10_000));
        assert!(line.starts_with(r"\n\n") && line.len() < MAX_LINE_BYTES + 48, "{}", line.len());
        assert!(line.contains(&format!("… [{} more bytes cut]", 10_000 - MAX_LINE_BYTES / 2)), "{line}");
        assert_eq!(one_line(&"x".repeat(MAX_LINE_BYTES)), "x".repeat(MAX_LINE_BYTES));
    }
}
