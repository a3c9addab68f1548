//! How much work a run does at once, unless the command line or rotor.toml says otherwise.

/// Wallets per batch unless --batch-size says otherwise: measured with `rotor bench` on 2 cores,
/// 250 moved as fast as 500 or 1000 and kept the process under 45 MiB instead of about 100.
pub const DEFAULT_BATCH: u32 = 250;

/// One worker per core: the component's crypto runs on every core while the database
/// writes.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}
