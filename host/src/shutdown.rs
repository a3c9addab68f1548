//! Stopping cleanly on SIGTERM or SIGINT (Kubernetes, systemd and Ctrl-C all ask this way).
//!
//! A rotation that is asked to stop abandons the batches in flight (their transactions roll
//! back), gives its key ranges and the rotation lease back so that the next rotor goes on at
//! once, and fails with [`Interrupted`]; the command prints its usual error (JSON with `--json`)
//! and exits 128 + the signal's number. Commands that write nothing are simply dropped.

use std::fmt;
use std::sync::{Arc, OnceLock};

/// The signals rotor stops on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM (`kill`, Kubernetes, systemd).
    Terminate,
}

impl Signal {
    /// The shell's convention: 128 + the signal's number.
    pub fn exit_code(self) -> u8 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        })
    }
}

/// Whether, and by which signal, the process was asked to stop. Cheap to clone; clones share.
#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    signal: OnceLock<Signal>,
    notify: tokio::sync::Notify,
}

impl Shutdown {
    /// A shutdown that only [`Shutdown::trigger`] sets (the demo, tests).
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// A shutdown set by the first SIGTERM or SIGINT this process receives. Call it inside the
    /// runtime.
    pub fn on_signals() -> std::io::Result<Shutdown> {
        use tokio::signal::unix::{SignalKind, signal};
        let shutdown = Shutdown::new();
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let setter = shutdown.clone();
        tokio::spawn(async move {
            let received = tokio::select! {
                _ = terminate.recv() => Signal::Terminate,
                _ = interrupt.recv() => Signal::Interrupt,
            };
            tracing::warn!(
                "{received} received: stopping (the current batches roll back; again to quit at once)"
            );
            setter.trigger(received);
            // Listening replaced the signals' default action: a second one (Ctrl-C pressed
            // twice) ends the process now, as an operator expects. Nothing is half-written by
            // that either: every batch is one transaction.
            let again = tokio::select! {
                _ = terminate.recv() => Signal::Terminate,
                _ = interrupt.recv() => Signal::Interrupt,
            };
            eprintln!("{again} received again: quitting without cleaning up (claims run out on their own)");
            std::process::exit(i32::from(again.exit_code()));
        });
        Ok(shutdown)
    }

    /// Asks everything watching this shutdown to stop.
    pub fn trigger(&self, signal: Signal) {
        if self.inner.signal.set(signal).is_ok() {
            self.inner.notify.notify_waiters();
        }
    }

    /// The signal received, if any.
    pub fn requested(&self) -> Option<Signal> {
        self.inner.signal.get().copied()
    }

    /// Resolves once a signal is received.
    pub async fn wait(&self) -> Signal {
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            // Registered before looking, so a trigger in between is not missed.
            notified.as_mut().enable();
            if let Some(signal) = self.requested() {
                return signal;
            }
            notified.await;
        }
    }
}

/// A command stopped by a signal before it finished. What it says is what the operator needs:
/// what was left, and what resumes it.
#[derive(Debug)]
pub struct Interrupted {
    /// The signal that stopped it.
    pub signal: Signal,
    /// What was left undone and which command resumes it, in words for the operator.
    pub what: String,
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "interrupted by {}: {}", self.signal, self.what)
    }
}

impl std::error::Error for Interrupted {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_trigger_wakes_every_waiter_once() {
        let shutdown = Shutdown::new();
        assert_eq!(shutdown.requested(), None);
        let waiter = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { shutdown.wait().await }
        });
        tokio::task::yield_now().await;
        shutdown.trigger(Signal::Terminate);
        shutdown.trigger(Signal::Interrupt); // the first signal is the one reported
        assert_eq!(waiter.await.unwrap(), Signal::Terminate);
        assert_eq!(shutdown.wait().await, Signal::Terminate);
        assert_eq!(Signal::Terminate.exit_code(), 143);
        assert_eq!(Signal::Interrupt.exit_code(), 130);
    }
}
