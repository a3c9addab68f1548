//! The `report` import: the component's log lines and its progress.

use wasmtime::component::{HasData, Linker};

use crate::bindings::report;
use crate::progress::Reporter;

/// Where a component's reports go: the log (as `rotor::component`) and the command's progress.
pub struct Report {
    reporter: Reporter,
}

impl Report {
    /// Progress goes to `reporter`.
    pub fn new(reporter: Reporter) -> Report {
        Report { reporter }
    }

    /// The command's progress display.
    pub fn reporter(&self) -> &Reporter {
        &self.reporter
    }
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
        match level {
            report::Level::Debug => tracing::debug!(target: "rotor::component", "{message}"),
            report::Level::Info => tracing::info!(target: "rotor::component", "{message}"),
            report::Level::Warn => tracing::warn!(target: "rotor::component", "{message}"),
            report::Level::Error => tracing::error!(target: "rotor::component", "{message}"),
        }
        Ok(())
    }

    async fn progress(&mut self, done: u64, total: u64) -> wasmtime::Result<()> {
        self.reporter.progress(done, total);
        Ok(())
    }
}
