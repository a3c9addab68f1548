//! How much work a command does at once: batch size, workers and lease, resolved once from
//! the command line (and defaults) into a [`RunPlan`] that every layer below reads, so that
//! no setting is resolved, or capped, in two places.

use std::fmt;
use std::num::NonZeroUsize;
use std::str::FromStr;
use std::time::Duration;

use crate::limits::Limits;

/// Wallets per batch (per transaction and per call into the component): at least 1, at most
/// [`BatchSize::MAX`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BatchSize(u32);

impl BatchSize {
    /// The largest batch rotor moves: a batch of 10,000 2 KiB wallets with their replacements
    /// needs ~60 MiB of component memory, and larger ones go no faster.
    pub const MAX: u32 = 10_000;

    /// Measured with `rotor bench` on 2 cores: 250 moved as fast as 500 or 1000 and kept the
    /// process under 45 MiB instead of about 100.
    pub const DEFAULT: BatchSize = BatchSize(250);

    /// `wallets` per batch, if within 1..=[`BatchSize::MAX`].
    pub fn new(wallets: u32) -> Result<BatchSize, String> {
        if (1..=Self::MAX).contains(&wallets) {
            Ok(BatchSize(wallets))
        } else {
            Err(format!("a batch holds 1 to {} wallets, not {wallets}", Self::MAX))
        }
    }

    /// The number of wallets.
    pub fn get(self) -> u32 {
        self.0
    }

    /// No larger than what the sandbox lets a component read or write in one call.
    pub fn within(self, limits: &Limits) -> BatchSize {
        BatchSize(self.0.min(limits.max_batch_rows).max(1))
    }
}

impl Default for BatchSize {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl FromStr for BatchSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wallets: u32 = s.trim().parse().map_err(|_| format!("{s:?} is not a number of wallets"))?;
        BatchSize::new(wallets)
    }
}

impl fmt::Display for BatchSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Default rotation lease, and claim on a key range: long enough for any batch, short enough
/// to take over from a rotor that died on another host without much wait.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// One worker per core, up to [`RunPlan::MAX_WORKERS`]: the component's crypto runs on every
/// core while the database writes.
pub fn default_workers() -> NonZeroUsize {
    let cores = std::thread::available_parallelism().unwrap_or(NonZeroUsize::new(2).expect("2 is not 0"));
    cores.min(NonZeroUsize::new(RunPlan::MAX_WORKERS).expect("MAX_WORKERS is not 0"))
}

/// How a command spreads its work, resolved once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunPlan {
    /// Wallets per batch, within the sandbox's `max-batch-rows`.
    pub batch_size: BatchSize,
    /// Component instances working at once in this process.
    pub workers: NonZeroUsize,
    /// How long a claim on a key range, or the rotation lease, lasts without progress.
    pub lease_ttl: Duration,
}

impl Default for RunPlan {
    fn default() -> Self {
        RunPlan { batch_size: BatchSize::DEFAULT, workers: default_workers(), lease_ttl: DEFAULT_LEASE }
    }
}

impl RunPlan {
    /// The plan for what a command line asked (`None`: the default), with the batch size
    /// capped by `limits`.
    pub fn resolve(
        batch_size: Option<BatchSize>,
        workers: Option<NonZeroUsize>,
        lease_ttl: Option<Duration>,
        limits: &Limits,
    ) -> RunPlan {
        let default = RunPlan::default();
        RunPlan {
            batch_size: batch_size.unwrap_or(default.batch_size).within(limits),
            workers: workers.unwrap_or(default.workers),
            lease_ttl: lease_ttl.unwrap_or(default.lease_ttl),
        }
    }

    /// Most workers a plan should have: each holds two of the pool's 64 connections (see
    /// [`RunPlan::connections`]), so more would only wait for one.
    pub const MAX_WORKERS: usize = 31;

    /// Database connections this plan needs: each worker writes one batch while reading the
    /// next, plus a few for claims and the journal. Connections open only when needed.
    pub fn connections(&self) -> u32 {
        let workers = u32::try_from(self.workers.get()).unwrap_or(u32::MAX);
        workers.saturating_mul(2).saturating_add(2).clamp(4, 64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_size_is_between_one_and_the_cap() {
        assert_eq!(BatchSize::new(1).unwrap().get(), 1);
        assert_eq!(BatchSize::new(BatchSize::MAX).unwrap().get(), BatchSize::MAX);
        assert!(BatchSize::new(0).unwrap_err().contains("1 to 10000"));
        assert!(BatchSize::new(BatchSize::MAX + 1).is_err());
        assert_eq!("250".parse::<BatchSize>().unwrap(), BatchSize::DEFAULT);
        assert!("lots".parse::<BatchSize>().unwrap_err().contains("\"lots\""));
    }

    #[test]
    fn the_sandbox_caps_the_batch_once() {
        let limits = Limits { max_batch_rows: 100, ..Limits::default() };
        let plan = RunPlan::resolve(Some(BatchSize::new(5000).unwrap()), None, None, &limits);
        assert_eq!(plan.batch_size.get(), 100);
        let plan = RunPlan::resolve(Some(BatchSize::new(50).unwrap()), None, None, &limits);
        assert_eq!(plan.batch_size.get(), 50);
    }

    #[test]
    fn what_the_command_line_leaves_out_takes_the_defaults() {
        let plan = RunPlan::resolve(None, None, None, &Limits::default());
        assert_eq!(plan, RunPlan::default());
        assert_eq!(plan.lease_ttl, DEFAULT_LEASE);
        let four = NonZeroUsize::new(4).unwrap();
        let plan = RunPlan::resolve(None, Some(four), Some(Duration::from_secs(5)), &Limits::default());
        assert_eq!((plan.workers, plan.lease_ttl), (four, Duration::from_secs(5)));
    }

    #[test]
    fn the_pool_grows_with_the_workers() {
        let plan = |n| RunPlan { workers: NonZeroUsize::new(n).unwrap(), ..RunPlan::default() };
        assert_eq!(plan(1).connections(), 4);
        assert_eq!(plan(8).connections(), 18);
        assert_eq!(plan(1000).connections(), 64);
    }
}
