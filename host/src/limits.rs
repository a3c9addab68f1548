//! What one component run may consume: CPU time in the guest, real time (host calls included),
//! linear memory, and the size of what crosses the boundary. A component over a limit is
//! stopped with a [`LimitExceeded`] error that names the limit and how to raise it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The limits of one run. `rotor.toml`'s `[limits]` table overrides the defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Limits {
    /// CPU time the component may spend in its own code over the whole run (time in host calls,
    /// waiting for Vault or the database, does not count).
    pub cpu_seconds: u64,
    /// Longest the component may compute without calling the host: catches a loop long before
    /// the run's whole budget is gone.
    pub call_seconds: u64,
    /// Real time one run (one instance: a command, or one of its workers) may take, time in host
    /// calls included: the component cannot keep itself alive by calling the host.
    pub wall_seconds: u64,
    /// Real time one call into the component may take, time in host calls included. Calls that
    /// walk the whole wallet table (see [`CallBound`]) are one run each and have `wall_seconds`.
    pub call_wall_seconds: u64,
    /// Linear memory one instance may grow to.
    pub memory_mib: u64,
    /// Largest batch of wallets the host reads or writes in one call.
    pub max_batch_rows: u32,
    /// Largest ciphertext the host accepts from the component.
    pub max_value_kib: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // Re-encrypting a million 2 KiB wallets costs ~75 s of wasm CPU on this kind of
            // machine; an hour leaves room for 40 million before anyone must raise it.
            cpu_seconds: 3600,
            // A batch of 10,000 legacy wallets tried against a dozen archived keys takes a few
            // seconds; a minute without a host call is a component that has lost its way.
            call_seconds: 60,
            // The bench rotates 1,000,000 wallets in 27-39 s (re-wrap) and ~60 s (--reencrypt) on
            // 2 cores; an hour covers ~35 million re-encrypted at that pace, or a slower machine
            // and database with room to spare. A rotation stopped by it resumes where it stopped
            // with the next `rotor rotate`, which is a run of its own.
            wall_seconds: 3600,
            // A quick call (open, seal, history, prune, migrate-kek, the codec) takes
            // milliseconds. Two minutes is longer than a Vault fail-over rotor rides out
            // (`retry-for`, 60 s, plus a request's 10 s timeout) and the database's 10 s busy
            // timeout, so that an outage is reported as the outage, not as this limit.
            call_wall_seconds: 120,
            // A batch of 10,000 2 KiB wallets with their replacements needs ~60 MiB.
            memory_mib: 256,
            max_batch_rows: 10_000,
            max_value_kib: 1024,
        }
    }
}

impl Limits {
    /// `memory_mib` in bytes, as wasmtime's limiter counts; saturates rather than overflows.
    pub fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }

    /// `max_value_kib` in bytes, the unit the capabilities compare ciphertext lengths in.
    pub fn max_value_bytes(&self) -> usize {
        usize::try_from(self.max_value_kib.saturating_mul(1 << 10)).unwrap_or(usize::MAX)
    }

    /// Refuses limits that would stop every run or make the caps meaningless.
    pub fn check(&self) -> Result<(), String> {
        let positive = [
            ("cpu-seconds", self.cpu_seconds),
            ("call-seconds", self.call_seconds),
            ("wall-seconds", self.wall_seconds),
            ("call-wall-seconds", self.call_wall_seconds),
            ("memory-mib", self.memory_mib),
            ("max-batch-rows", self.max_batch_rows.into()),
            ("max-value-kib", self.max_value_kib),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(format!("limits.{name} must be at least 1"));
        }
        if self.memory_mib < 16 {
            return Err("limits.memory-mib must be at least 16: a component needs a few MiB to start".into());
        }
        Ok(())
    }
}

/// Why the host stopped a component.
#[derive(Debug, thiserror::Error)]
pub enum LimitExceeded {
    /// The whole run's guest CPU time passed `cpu-seconds`.
    #[error(
        "the component used {used:.1?} of CPU time, over this run's limit of {limit:?}; if the work is \
         genuine, raise limits.cpu-seconds in rotor.toml"
    )]
    Cpu {
        /// Guest CPU time when the component was stopped.
        used: Duration,
        /// The run's `cpu-seconds`.
        limit: Duration,
    },
    /// One stretch of computing without a host call passed `call-seconds`.
    #[error(
        "the component computed for {spent:.1?} without calling the host, over the limit of {limit:?} \
         (a loop that does not end?); if the work is genuine, raise limits.call-seconds in rotor.toml"
    )]
    Call {
        /// Guest CPU time since the component last called the host or was called.
        spent: Duration,
        /// The run's `call-seconds`.
        limit: Duration,
    },
    #[error(
        "the component ran for {elapsed:.1?} of real time, over this run's limit of {limit:?} (time \
         in host calls counts); if the work is genuine, raise limits.wall-seconds in rotor.toml"
    )]
    /// Over `wall-seconds`: real time since the run began.
    Wall {
        /// Real time since the run began.
        elapsed: Duration,
        /// `wall-seconds`.
        limit: Duration,
    },
    #[error(
        "the component's {export} ran for {elapsed:.1?} of real time, over the limit of {limit:?} \
         per call (time in host calls counts); if the work is genuine, raise \
         limits.call-wall-seconds in rotor.toml"
    )]
    /// Over `call-wall-seconds`: real time since the host called `export`.
    CallWall {
        /// The export called, as the WIT names it.
        export: &'static str,
        /// Real time since the call began.
        elapsed: Duration,
        /// `call-wall-seconds`.
        limit: Duration,
    },
    /// The component tried to grow its linear memory past `memory-mib`.
    #[error(
        "the component tried to grow its memory to {desired_mib} MiB, over this run's limit of \
         {limit_mib} MiB; if the work is genuine, raise limits.memory-mib in rotor.toml"
    )]
    Memory {
        /// The size the component asked to grow its memory to, rounded up.
        desired_mib: u64,
        /// The run's `memory-mib`.
        limit_mib: u64,
    },
}

/// A reading of a monotonic clock cheap enough to take at every switch between guest and host.
///
/// On Linux it is `CLOCK_MONOTONIC_COARSE`: a value the kernel updates at each of its ticks (1
/// to 10 ms apart, as the kernel was built), read from memory, where `Instant` reads the CPU's time-stamp counter. With
/// three readings per host call, the precise clock took 5% of `rotor validate`'s CPU. The
/// limits are whole seconds, checked at each 100 ms epoch, so the resolution costs nothing
/// there; and the guest's many short stretches still add up right, since a kernel tick falls
/// inside a stretch in proportion to its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Moment(Duration);

impl Moment {
    /// Now.
    #[cfg(target_os = "linux")]
    pub fn now() -> Moment {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
        // A monotonic clock counts from boot: neither field is ever negative.
        Moment(Duration::new(now.tv_sec.unsigned_abs(), now.tv_nsec.unsigned_abs() as u32))
    }

    /// Now.
    #[cfg(not(target_os = "linux"))]
    pub fn now() -> Moment {
        static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        Moment(ORIGIN.get_or_init(std::time::Instant::now).elapsed())
    }

    /// Time from `earlier` to this moment; zero if `earlier` is later.
    pub fn since(self, earlier: Moment) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// Time since this moment.
    pub fn elapsed(self) -> Duration {
        Moment::now().since(self)
    }
}

impl std::ops::Add<Duration> for Moment {
    type Output = Moment;

    fn add(self, later: Duration) -> Moment {
        Moment(self.0 + later)
    }
}

/// How often the engine's epoch advances, and so how late past its budget a component may be
/// stopped.
pub const EPOCH_TICK: Duration = Duration::from_millis(100);

/// CPU time spent in the guest: the store's call hook marks each switch between guest and
/// host, and the epoch callback compares the totals with the budgets at every tick.
#[derive(Debug)]
pub struct GuestClock {
    budget: Duration,
    per_call: Duration,
    used: Duration,
    /// When the guest last got control, while it has it.
    running_since: Option<Moment>,
    /// Calls into the host (imports, and the runtime's own libcalls) and into the guest.
    contacts: u64,
    /// `contacts` at the last tick.
    contacts_at_tick: u64,
    /// `used` when the guest last called the host or was called: the start of its current
    /// stretch of computing alone.
    stretch_start: Duration,
}

impl GuestClock {
    /// A clock with nothing used, holding the run's `cpu-seconds` and `call-seconds` budgets.
    pub fn new(limits: &Limits) -> GuestClock {
        GuestClock {
            budget: Duration::from_secs(limits.cpu_seconds),
            per_call: Duration::from_secs(limits.call_seconds),
            used: Duration::ZERO,
            running_since: None,
            contacts: 0,
            contacts_at_tick: 0,
            stretch_start: Duration::ZERO,
        }
    }

    /// The guest got control: called from the host, or a host call returned.
    pub fn enter_guest(&mut self, called: bool) {
        if called {
            self.contacts += 1;
        }
        self.running_since.get_or_insert_with(Moment::now);
    }

    /// The host got control: the guest called it, or returned.
    pub fn leave_guest(&mut self, calling_host: bool) {
        if calling_host {
            self.contacts += 1;
        }
        if let Some(since) = self.running_since.take() {
            self.used += since.elapsed();
        }
    }

    /// Guest time so far.
    pub fn used(&self) -> Duration {
        self.used + self.running_since.map_or(Duration::ZERO, |since| since.elapsed())
    }

    /// At each epoch tick, from inside the runtime's epoch check (itself one call into the
    /// host): `Err` once the guest is over either budget.
    pub fn tick(&mut self) -> Result<(), LimitExceeded> {
        let others = (self.contacts - self.contacts_at_tick).saturating_sub(1);
        self.contacts_at_tick = self.contacts;
        let used = self.used();
        if others > 0 {
            // The guest talked to the host since the last tick: a new stretch begins.
            self.stretch_start = used;
        }
        let spent = used.saturating_sub(self.stretch_start);
        if spent > self.per_call {
            return Err(LimitExceeded::Call { spent, limit: self.per_call });
        }
        if used > self.budget {
            return Err(LimitExceeded::Cpu { used, limit: self.budget });
        }
        Ok(())
    }
}

/// Which real-time limit one call into the component has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallBound {
    /// A call that handles one wallet or one record (`export` names it): `call-wall-seconds`.
    Quick(&'static str),
    /// A call that may walk the whole wallet table (validate, a rotation's set-up and moves, an
    /// audit; a component may check every wallet before it starts a rotation): it is the run,
    /// and `wall-seconds` bounds it.
    Run,
}

/// Real time since the run began and since the current call began, host calls included.
///
/// Checked at every epoch tick and whenever the guest calls the host, so a component stops at
/// most one tick after its deadline whether it computes or keeps calling the host. A host call
/// already under way is not cut short: it is bounded by the host's own timeouts (Vault's
/// request timeout and `retry-for`, the database's busy and acquire timeouts), and the guest
/// then gets its answer and at most one tick to return before the next check stops it.
#[derive(Debug)]
pub struct WallClock {
    started: Moment,
    run_limit: Duration,
    call_limit: Duration,
    /// The current call's start and name, for a call with a limit of its own.
    call: Option<(Moment, &'static str)>,
}

impl WallClock {
    /// A run starting now.
    pub fn new(limits: &Limits) -> WallClock {
        WallClock::starting_at(limits, Moment::now())
    }

    fn starting_at(limits: &Limits, started: Moment) -> WallClock {
        WallClock {
            started,
            run_limit: Duration::from_secs(limits.wall_seconds),
            call_limit: Duration::from_secs(limits.call_wall_seconds),
            call: None,
        }
    }

    /// The host is about to call into the component.
    pub fn begin_call(&mut self, bound: CallBound) {
        self.call = match bound {
            CallBound::Quick(export) => Some((Moment::now(), export)),
            CallBound::Run => None,
        };
    }

    /// `Err` once the run or the current call is past its limit.
    pub fn check(&self) -> Result<(), LimitExceeded> {
        self.check_at(Moment::now())
    }

    fn check_at(&self, now: Moment) -> Result<(), LimitExceeded> {
        let elapsed = now.since(self.started);
        if elapsed > self.run_limit {
            return Err(LimitExceeded::Wall { elapsed, limit: self.run_limit });
        }
        if let Some((since, export)) = self.call {
            let elapsed = now.since(since);
            if elapsed > self.call_limit {
                return Err(LimitExceeded::CallWall { export, elapsed, limit: self.call_limit });
            }
        }
        Ok(())
    }
}

/// The store's resource limiter: memory up to the limit, and the small fixed counts of
/// instances, tables and memories a component needs.
#[derive(Debug)]
pub struct MemoryCap {
    limit_bytes: usize,
}

impl MemoryCap {
    /// A limiter that refuses memory past the run's `memory-mib`.
    pub fn new(limits: &Limits) -> MemoryCap {
        MemoryCap { limit_bytes: limits.memory_bytes() }
    }
}

const MIB: usize = 1 << 20;

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit_bytes {
            tracing::warn!(desired_mib = desired / MIB, "component stopped: over its memory limit");
            return Err(LimitExceeded::Memory {
                desired_mib: desired.div_ceil(MIB) as u64,
                limit_mib: (self.limit_bytes / MIB) as u64,
            }
            .into());
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Function tables of compiled Rust stay in the thousands.
        Ok(desired <= 1 << 16)
    }

    fn instances(&self) -> usize {
        // A wasip2 component is a handful of core instances (the module, its adapter, shims).
        16
    }

    fn tables(&self) -> usize {
        16
    }

    fn memories(&self) -> usize {
        16
    }
}

/// The limit the error chain of a failed call hit, if that is why it failed.
pub fn exceeded(error: &wasmtime::Error) -> Option<&LimitExceeded> {
    error.downcast_ref::<LimitExceeded>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One epoch check, as the runtime makes it: a call into the host, then the tick.
    fn epoch_check(clock: &mut GuestClock) -> Result<(), LimitExceeded> {
        clock.leave_guest(true);
        let verdict = clock.tick();
        clock.enter_guest(false);
        verdict
    }

    #[test]
    fn the_guest_clock_counts_guest_time_only() {
        let limits = Limits { cpu_seconds: 1, call_seconds: 10, ..Limits::default() };
        let mut clock = GuestClock::new(&limits);
        clock.enter_guest(true);
        std::thread::sleep(Duration::from_millis(50));
        clock.leave_guest(true);
        std::thread::sleep(Duration::from_millis(400)); // host time: not counted
        let used = clock.used();
        // The coarse clock may read up to one kernel tick (at most 10 ms) short.
        assert!(used >= Duration::from_millis(40) && used < Duration::from_millis(400), "{used:?}");
        assert!(clock.tick().is_ok());
        clock.used = Duration::from_millis(1500);
        assert!(matches!(clock.tick(), Err(LimitExceeded::Cpu { .. })));
    }

    /// Stretches far shorter than the coarse clock's resolution still add up to about their
    /// real total: a component cannot hide its computing between frequent host calls.
    #[test]
    fn short_stretches_add_up_to_their_real_total() {
        let spin = |length: Duration| {
            let started = std::time::Instant::now();
            while started.elapsed() < length {
                std::hint::spin_loop();
            }
        };
        let mut clock = GuestClock::new(&Limits::default());
        let mut real = Duration::ZERO;
        for _ in 0..4000 {
            let started = std::time::Instant::now();
            clock.enter_guest(false);
            spin(Duration::from_micros(100));
            clock.leave_guest(true);
            real += started.elapsed();
            spin(Duration::from_micros(50));
        }
        let (used, real) = (clock.used().as_secs_f64(), real.as_secs_f64());
        assert!(used > real * 0.5 && used < real * 1.5, "counted {used:.3} s of {real:.3} s");
    }

    #[test]
    fn a_stretch_without_host_calls_is_limited_and_epoch_checks_do_not_reset_it() {
        let limits = Limits { cpu_seconds: 100, call_seconds: 1, ..Limits::default() };
        // 600 ms into a stretch of guest code, checked by two epoch ticks on the way.
        let computing = || {
            let mut clock = GuestClock::new(&limits);
            clock.enter_guest(true);
            for ms in [100, 600] {
                clock.used = Duration::from_millis(ms);
                assert!(epoch_check(&mut clock).is_ok());
            }
            clock
        };
        let mut clock = computing();
        clock.used = Duration::from_millis(1300);
        assert!(matches!(epoch_check(&mut clock), Err(LimitExceeded::Call { .. })));

        // A call into the host between ticks starts a new stretch.
        let mut clock = computing();
        clock.leave_guest(true);
        clock.enter_guest(false);
        clock.used = Duration::from_millis(1300);
        assert!(epoch_check(&mut clock).is_ok());
    }

    #[test]
    fn the_wall_clock_bounds_the_run_and_each_quick_call() {
        let limits = Limits { wall_seconds: 10, call_wall_seconds: 2, ..Limits::default() };
        let start = Moment::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut clock = WallClock::starting_at(&limits, start);
        assert!(clock.check_at(at(9_000)).is_ok(), "no call limit outside a quick call");

        clock.begin_call(CallBound::Quick("open-wallet"));
        let began = Moment::now();
        assert!(clock.check_at(began + Duration::from_millis(1_900)).is_ok());
        match clock.check_at(began + Duration::from_millis(2_100)) {
            Err(error @ LimitExceeded::CallWall { export: "open-wallet", .. }) => {
                let message = error.to_string();
                assert!(message.contains("limits.call-wall-seconds"), "{message}");
                assert!(message.contains("open-wallet"), "{message}");
            }
            other => panic!("{other:?}"),
        }

        // A call that is the run is bounded by the run's limit only; the run's limit counts
        // from the start of the run, not of the call.
        clock.begin_call(CallBound::Run);
        assert!(clock.check_at(at(9_900)).is_ok());
        match clock.check_at(at(10_100)) {
            Err(error @ LimitExceeded::Wall { .. }) => {
                assert!(error.to_string().contains("limits.wall-seconds"), "{error}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn zero_limits_are_refused() {
        assert!(Limits::default().check().is_ok());
        let error = Limits { call_seconds: 0, ..Limits::default() }.check().unwrap_err();
        assert!(error.contains("limits.call-seconds"), "{error}");
        let error = Limits { wall_seconds: 0, ..Limits::default() }.check().unwrap_err();
        assert!(error.contains("limits.wall-seconds"), "{error}");
    }
}
